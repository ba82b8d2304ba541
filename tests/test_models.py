"""The VGG-19 autoencoder: torchvision layout, weight loading and the mirrored decoder."""

from __future__ import annotations

import functools
import re

import pytest
import torch
from torch import nn

from alphaprune import build_autoencoder, load_vgg_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


#: torchvision's vgg19 "E" configuration, written out here independently of the library.
CFG = [
    int(item) if item != "M" else item
    for item in "64 64 M 128 128 M 256 256 256 256 M 512 512 512 512 M 512 512 512 512 M".split()
]
#: How many convolutions up to and including reluX_1.
DEPTH = {"relu1_1": 1, "relu2_1": 3, "relu3_1": 5, "relu4_1": 9, "relu5_1": 13}
#: torchvision ``features`` index of reluX_1 in vgg19 (no BN), as listed in the VGG literature.
RELU_INDEX = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu5_1": 29}


def torchvision_features(batch_norm: bool) -> dict[str, torch.Tensor]:
    """A full vgg19 / vgg19_bn state dict (``features.*`` and ``classifier.*``), random values.

    A fresh dict each call (tests delete and replace keys); the tensors are shared, read-only.
    """
    return dict(_torchvision_features(batch_norm))


@functools.lru_cache(maxsize=2)
def _torchvision_features(batch_norm: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    index, channels = 0, 3
    for item in CFG:
        if item == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = torch.randn(item, channels, 3, 3, generator=gen)
        state[f"features.{index}.bias"] = torch.randn(item, generator=gen)
        index += 1
        if batch_norm:
            state[f"features.{index}.weight"] = torch.rand(item, generator=gen) + 0.5
            state[f"features.{index}.bias"] = torch.randn(item, generator=gen)
            state[f"features.{index}.running_mean"] = torch.randn(item, generator=gen)
            state[f"features.{index}.running_var"] = torch.rand(item, generator=gen) + 0.5
            state[f"features.{index}.num_batches_tracked"] = torch.tensor(12345)
            index += 1
        index += 1  # ReLU
        channels = item
    assert index == (53 if batch_norm else 37)  # len(vgg19_bn().features), len(vgg19().features)
    # classifier keys must be ignored; small stand-ins for the real (4096, 25088) … tensors
    state["classifier.0.weight"] = torch.randn(16, 32, generator=gen)
    state["classifier.0.bias"] = torch.randn(16, generator=gen)
    state["classifier.6.weight"] = torch.randn(10, 16, generator=gen)
    return state


@pytest.mark.heavy
def test_relu_indices_of_torchvision_layout() -> None:
    for layer, index in RELU_INDEX.items():
        encoder = build_autoencoder(layer).encoder
        assert len(encoder) == index + 1
        assert isinstance(encoder[-1], nn.ReLU)
        assert sum(isinstance(m, nn.Conv2d) for m in encoder) == DEPTH[layer]


@pytest.mark.heavy
@pytest.mark.parametrize("layer", ["relu3_1", "relu5_1"])
@pytest.mark.parametrize("batch_norm", [False, True], ids=["vgg19", "vgg19_bn"])
def test_load_vgg_weights_into_encoder(layer, batch_norm) -> None:
    state = torchvision_features(batch_norm)
    model = build_autoencoder(layer, batch_norm=batch_norm)
    decoder_before = {k: v.clone() for k, v in model.decoder.state_dict().items()}

    loaded = load_vgg_weights(model, state)

    own = model.encoder.state_dict()
    assert sorted(loaded) == sorted(f"features.{k}" for k in own)
    for key, value in own.items():
        assert torch.equal(value, state[f"features.{key}"]), key
    assert not any(k.startswith("classifier") for k in loaded)
    assert all(int(k.split(".")[1]) < len(model.encoder) for k in loaded)
    deeper = [k for k in state if k.startswith("features.") and k not in loaded]
    assert deeper, "the state dict holds deeper layers, which must be ignored"
    # the decoder is untouched
    for key, value in model.decoder.state_dict().items():
        assert torch.equal(value, decoder_before[key]), key
    if batch_norm:
        assert isinstance(model.encoder[1], nn.BatchNorm2d)
        assert torch.equal(model.encoder[1].running_mean, state["features.1.running_mean"])
        assert torch.equal(model.encoder[1].running_var, state["features.1.running_var"])
        assert int(model.encoder[1].num_batches_tracked) == 12345
    else:
        assert isinstance(model.encoder[1], nn.ReLU)
    conv_keys = [k for k in loaded if k.endswith(".weight") and state[k].dim() == 4]
    assert len(conv_keys) == DEPTH[layer]


def test_vgg19_bn_without_num_batches_tracked_loads() -> None:
    """Checkpoints saved before PyTorch 0.4 (torchvision's vgg19_bn) lack the BN step counter."""
    state = {
        k: v for k, v in torchvision_features(True).items() if not k.endswith("num_batches_tracked")
    }
    model = build_autoencoder("relu2_1", batch_norm=True)
    loaded = load_vgg_weights(model, state)
    assert all(k in state for k in loaded)
    assert torch.equal(model.encoder[0].weight, state["features.0.weight"])
    assert torch.equal(model.encoder[8].running_var, state["features.8.running_var"])


@pytest.mark.parametrize(
    "drop", ["features.0.weight", "features.10.bias", "features.1.running_var"]
)
def test_missing_key_raises_naming_it(drop) -> None:
    batch_norm = drop == "features.1.running_var"
    state = torchvision_features(batch_norm)
    del state[drop]
    model = build_autoencoder("relu3_1", batch_norm=batch_norm)
    with pytest.raises(KeyError, match=drop.replace(".", r"\.")):
        load_vgg_weights(model, state)


def test_wrong_shape_raises_naming_it() -> None:
    state = torchvision_features(False)
    state["features.5.weight"] = torch.randn(128, 64, 5, 5)
    model = build_autoencoder("relu3_1")
    before = model.encoder[0].weight.clone()
    with pytest.raises(ValueError, match=r"features\.5\.weight.*\(128, 64, 5, 5\)"):
        load_vgg_weights(model, state)
    assert torch.equal(model.encoder[0].weight, before), "nothing is loaded on error"


def test_bn_layout_does_not_load_into_plain_model() -> None:
    with pytest.raises((KeyError, ValueError), match=r"features\.\d+\."):
        load_vgg_weights(build_autoencoder("relu2_1"), torchvision_features(True))


@pytest.mark.heavy
@pytest.mark.parametrize("batch_norm", [False, True], ids=["plain", "bn"])
@pytest.mark.parametrize("layer", list(DEPTH))
def test_decoder_mirrors_encoder_and_restores_shape(layer, batch_norm) -> None:
    model = build_autoencoder(layer, batch_norm=batch_norm).eval()
    last = model.decoder[-1]
    assert isinstance(last, nn.Conv2d) and last.out_channels == 3
    pools = sum(isinstance(m, nn.MaxPool2d) for m in model.encoder)
    ups = [m for m in model.decoder if isinstance(m, nn.ConvTranspose2d)]
    assert len(ups) == pools and all(m.stride == (2, 2) for m in ups)
    assert model.downsampling == 2**pools
    first = model.decoder[0]
    encoder_out = [m for m in model.encoder if isinstance(m, nn.Conv2d)][-1].out_channels
    assert first.in_channels == encoder_out
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert (norms > 0) == batch_norm
    shape = (2, 3, 16, 32)  # batch of two, not square
    with torch.no_grad():
        out = model(torch.rand(*shape))
    assert out.shape == shape


@pytest.mark.parametrize("layer", ["relu6_1", "conv3_1", "", "RELU3_1", None])
def test_bad_layer_name_raises_naming_it(layer) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(layer))):
        build_autoencoder(layer)
