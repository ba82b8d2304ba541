"""Built-in models: the VGG-19 autoencoder (torchvision's ``features.N`` layout, mirrored
transposed-convolution decoder), a small U-Net autoencoder, and users' own models from a factory
named ``"package.module:function"`` (imported, never evaluated: see
:mod:`alphaprune.engine.factories`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from alphaprune.engine.factories import call_factory, import_factory
from alphaprune.errors import ConfigError

__all__ = [
    "AutoEncoder",
    "UNet",
    "build_autoencoder",
    "build_model",
    "build_unet",
    "example_input",
    "import_factory",
    "load_vgg_weights",
    "LAYERS",
    "VGG19_CFG",
]

#: torchvision's VGG-19 configuration: output channels per conv, "M" for max-pooling.
VGG19_CFG: list[int | str] = [
    *(64, 64, "M"),
    *(128, 128, "M"),
    *(256, 256, 256, 256, "M"),
    *(512, 512, 512, 512, "M"),
    *(512, 512, 512, 512, "M"),
]
#: Encoder depth for each supported layer: how many convolutions up to and including reluX_1.
LAYERS: dict[str, int] = {"relu1_1": 1, "relu2_1": 3, "relu3_1": 5, "relu4_1": 9, "relu5_1": 13}


def _encoder(num_convs: int, batch_norm: bool) -> nn.Sequential:
    """The first ``num_convs`` convolutions of VGG-19 (with their pools), torchvision indices."""
    layers: list[nn.Module] = []
    in_channels, convs = 3, 0
    for item in VGG19_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        if convs == num_convs:
            break
        layers.append(nn.Conv2d(in_channels, int(item), kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(item)))
        layers.append(nn.ReLU(inplace=False))
        in_channels, convs = int(item), convs + 1
        if convs == num_convs:
            break
    return nn.Sequential(*layers)


def _decoder(encoder: nn.Sequential, batch_norm: bool) -> nn.Sequential:
    """Mirror ``encoder``: each conv (cin→cout) becomes conv (cout→cin), each max-pool a stride-2
    ``ConvTranspose2d``; the first encoder conv (3→c) mirrors to c→c, then a 3-channel conv."""
    layers: list[nn.Module] = []

    def block(module: nn.Module, channels: int) -> None:
        layers.append(module)
        if batch_norm:
            layers.append(nn.BatchNorm2d(channels))
        layers.append(nn.ReLU(inplace=False))

    channels = None
    for module in reversed(list(encoder)):
        if isinstance(module, nn.Conv2d):
            out = module.out_channels if module.in_channels == 3 else module.in_channels
            block(nn.Conv2d(module.out_channels, out, kernel_size=3, padding=1), out)
            channels = out
        elif isinstance(module, nn.MaxPool2d):
            block(
                nn.ConvTranspose2d(channels, channels, kernel_size=4, stride=2, padding=1), channels
            )
    layers.append(nn.Conv2d(channels, 3, kernel_size=3, padding=1))
    return nn.Sequential(*layers)


class AutoEncoder(nn.Module):
    """``decoder(encoder(x))``."""

    __jit_unused_properties__ = ["downsampling"]  # Python-side helper; keeps torch.jit.script happy

    def __init__(
        self, encoder: nn.Sequential, decoder: nn.Sequential, layer: str, batch_norm: bool
    ):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.layer = layer
        self.batch_norm = batch_norm

    @property
    def downsampling(self) -> int:
        """Factor by which the encoder shrinks height and width (inputs must be multiples)."""
        return 2 ** sum(isinstance(m, nn.MaxPool2d) for m in self.encoder.modules())

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))

    def extra_repr(self) -> str:
        return f"layer='{self.layer}', batch_norm={self.batch_norm}"


def build_autoencoder(layer: str = "relu3_1", batch_norm: bool = False) -> AutoEncoder:
    """Build a VGG-19 encoder up to ``layer`` (``relu1_1`` … ``relu5_1``) and its mirrored decoder.

    The encoder's module names equal torchvision's ``vgg19().features`` (``vgg19_bn`` with
    ``batch_norm=True``), so ImageNet weights load with :func:`load_vgg_weights`.
    """
    if layer not in LAYERS:
        raise ConfigError(f"layer must be one of {sorted(LAYERS)}, got {layer!r}")
    encoder = _encoder(LAYERS[layer], batch_norm)
    return AutoEncoder(encoder, _decoder(encoder, batch_norm), layer, batch_norm)


def load_vgg_weights(model: AutoEncoder, state_dict: Mapping[str, Tensor]) -> list[str]:
    """Load a torchvision-style VGG state dict (``features.N.weight`` …) into ``model.encoder``.

    Keys beyond the encoder's depth and the classifier are ignored; every encoder parameter must
    be present with the right shape (a missing BatchNorm ``num_batches_tracked`` counter keeps the
    model's value). Returns the loaded keys.
    """
    own = model.encoder.state_dict()
    loaded = {}
    for key in own:
        source = f"features.{key}"
        if source not in state_dict and key.endswith(".num_batches_tracked"):
            # A BatchNorm step counter, not a weight; checkpoints saved before PyTorch 0.4 (such
            # as torchvision's vgg19_bn) lack it, so the model keeps its own value.
            loaded[key] = own[key]
            continue
        if source not in state_dict:
            raise KeyError(f"VGG state dict lacks '{source}' needed by encoder layer '{key}'")
        value = torch.as_tensor(state_dict[source])
        if value.shape != own[key].shape:
            raise ConfigError(
                f"'{source}' has shape {tuple(value.shape)}, encoder expects {tuple(own[key].shape)}"
            )
        loaded[key] = value
    model.encoder.load_state_dict(loaded, strict=True)
    return [f"features.{k}" for k in loaded if f"features.{k}" in state_dict]


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """A small U-Net autoencoder: ``depth`` down blocks, stride-2 ``ConvTranspose2d`` up blocks,
    skip connections concatenated (``torch.cat``) before each up block's convolutions."""

    def __init__(self, width: int = 16, depth: int = 2, channels: int = 3) -> None:
        super().__init__()
        widths = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = channels
        for w in widths[:-1]:
            self.down.append(_double_conv(cin, w))
            cin = w
        self.pool = nn.MaxPool2d(2)
        self.bottom = _double_conv(widths[-2], widths[-1])
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w_low, w in zip(reversed(widths[1:]), reversed(widths[:-1]), strict=True):
            self.up.append(nn.ConvTranspose2d(w_low, w, kernel_size=2, stride=2))
            self.merge.append(_double_conv(2 * w, w))
        self.head = nn.Conv2d(widths[0], channels, 1)
        self.example_input_size = (1, channels, 32, 32)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips), strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def build_unet(width: int = 16, depth: int = 2, channels: int = 3) -> UNet:
    """A small U-Net autoencoder (inputs must be multiples of ``2**depth`` in size)."""
    for key, value in (("width", width), ("depth", depth), ("channels", channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"build_unet: {key} must be an integer >= 1, got {value!r}")
    return UNet(width, depth, channels)


def build_model(
    model_cfg: Mapping[str, Any], factory: str | Callable[..., nn.Module] | None = None
) -> nn.Module:
    """The model an experiment's ``model`` section describes: the built-in VGG autoencoder, or
    its ``factory`` called with its ``kwargs``. ``factory`` (a name or a callable), when given,
    is used instead of the section's: the caller vouches for it."""
    factory = factory if factory is not None else model_cfg.get("factory")
    if factory is None:
        return build_autoencoder(
            model_cfg.get("layer", "relu3_1"), model_cfg.get("batch_norm", False)
        )
    return call_factory(factory, model_cfg.get("kwargs") or {})


def example_input(model_cfg: Mapping[str, Any], crop: int) -> Tensor:
    """The input used to trace the model: ``example_input_size`` or one ``crop`` RGB image."""
    size = model_cfg.get("example_input_size") or (1, 3, crop, crop)
    return torch.zeros(*size)
