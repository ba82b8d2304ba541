"""``shrink`` computes exactly the gated model's function, with fewer channels at α = 0."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skimage import data as skdata
from torch import nn

from alphaprune import AlphaGate, attach_gates, build_autoencoder, count, set_alpha, shrink
from alphaprune.core.gates import prunable_layers
from alphaprune.core.layer_rules import rule_for
from alphaprune.core.shrink import input_axis, output_axis

REL_TOL = 1e-5
ABS_TOL = 1e-6


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def assert_same_function(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """max|a - b| <= 1e-5 · max|b| + 1e-6, with matching shapes."""
    assert actual.shape == expected.shape
    error = (actual - expected).abs().max().item()
    bound = REL_TOL * expected.abs().max().item() + ABS_TOL
    assert error <= bound, f"max |shrunk - gated| = {error:.3g} > {bound:.3g}"


def differs(actual: torch.Tensor, expected: torch.Tensor) -> bool:
    error = (actual - expected).abs().max().item()
    return error > 100 * (REL_TOL * expected.abs().max().item() + ABS_TOL)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_state_equal(before: dict[str, torch.Tensor], model: nn.Module) -> None:
    after = model.state_dict()
    assert list(after) == list(before)
    for key, value in before.items():
        assert after[key].shape == value.shape, key
        assert torch.equal(after[key], value), f"shrink modified '{key}' of the original model"


# ---------------------------------------------------------------------------------------------
# Random sequential architectures (property-based)
# ---------------------------------------------------------------------------------------------

MIN_SIZE, MAX_SIZE = 2, 24


def _conv_options(size: int, transposed: bool) -> list[tuple[int, int, int, int, int]]:
    """(kernel, stride, padding, output_padding, out_size) giving an output in the size range."""
    options = []
    for k in range(1, 6):
        for s in (1, 2):
            for p in (
                range(0, min(k // 2, 2) + 1) if not transposed else range(0, min(k - 1, 2) + 1)
            ):
                for op in range(s) if transposed else (0,):
                    if transposed:
                        out = (size - 1) * s - 2 * p + k + op
                    else:
                        out = (size + 2 * p - k) // s + 1
                    if MIN_SIZE <= out <= MAX_SIZE:
                        options.append((k, s, p, op, out))
    return options


def _randomise_norm(norm: nn.BatchNorm2d) -> None:
    with torch.no_grad():
        norm.weight.copy_(torch.randn(norm.num_features))  # signs mixed, some near 0
        norm.bias.copy_(torch.randn(norm.num_features))
        norm.running_mean.copy_(0.5 * torch.randn(norm.num_features))
        norm.running_var.copy_(torch.empty(norm.num_features).uniform_(0.2, 2.0))


def _resample_options(size: int) -> list[str]:
    options = ["none"]
    if size >= 4:
        options += ["max2", "avg2", "max3s2"]
    if size <= 12:
        options += ["nearest", "bilinear"]
    return options


def _resample(kind: str, size: int) -> tuple[nn.Module, int]:
    if kind == "max2":
        return nn.MaxPool2d(2), size // 2
    if kind == "avg2":
        return nn.AvgPool2d(2), size // 2
    if kind == "max3s2":
        return nn.MaxPool2d(3, stride=2, padding=1), (size - 1) // 2 + 1
    return nn.Upsample(scale_factor=2, mode=kind), 2 * size


def _nest(modules: list[nn.Module], draw, depth: int) -> list[nn.Module]:
    """Group runs of ``modules`` into nested ``nn.Sequential`` containers, at random."""
    if depth == 0 or len(modules) < 2:
        return modules
    out: list[nn.Module] = []
    i = 0
    while i < len(modules):
        length = draw(st.integers(1, len(modules) - i))
        chunk = modules[i : i + length]
        if draw(st.booleans()):
            out.append(nn.Sequential(*_nest(chunk, draw, depth - 1)))
        else:
            out.extend(chunk)
        i += length
    return out


def draw_model(draw) -> tuple[nn.Sequential, int]:
    """A random chain of convolutions ending in a 3-channel convolution, and its input size."""
    input_size = size = draw(st.integers(8, 16), label="input size")
    torch.manual_seed(draw(st.integers(0, 2**31 - 1), label="torch seed"))
    n_convs = draw(st.integers(2, 5), label="convolutions")
    modules: list[nn.Module] = []
    channels = 3
    for i in range(n_convs):
        last = i == n_convs - 1
        out_channels = 3 if last else draw(st.integers(1, 8))
        transposed = draw(st.booleans())
        k, s, p, op, size = draw(st.sampled_from(_conv_options(size, transposed)))
        bias = draw(st.booleans())
        if transposed:
            conv = nn.ConvTranspose2d(channels, out_channels, k, s, p, output_padding=op, bias=bias)
        else:
            conv = nn.Conv2d(channels, out_channels, k, s, p, bias=bias)
        modules.append(conv)
        channels = out_channels
        if last:
            break
        norm_at = draw(st.sampled_from(["none", "before act", "after act"]))
        activation = draw(st.sampled_from(["relu", "leaky", "none"]))
        block: list[nn.Module] = []
        if activation == "relu":
            block.append(nn.ReLU())
        elif activation == "leaky":
            block.append(nn.LeakyReLU(draw(st.sampled_from([0.01, 0.2]))))
        if norm_at != "none":
            norm = nn.BatchNorm2d(channels, affine=draw(st.booleans()))
            if norm.affine:
                _randomise_norm(norm)
            else:
                with torch.no_grad():
                    norm.running_mean.normal_(0.0, 0.5)
                    norm.running_var.uniform_(0.2, 2.0)
            block.insert(0 if norm_at == "before act" else len(block), norm)
        modules.extend(block)
        resample = draw(st.sampled_from(_resample_options(size)))
        if resample != "none":
            layer, size = _resample(resample, size)
            modules.append(layer)
    model = nn.Sequential(*_nest(modules, draw, depth=2))
    return model.eval(), input_size


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@pytest.mark.slow  # > 5 s on a busy machine: out of the unit tier, in make test
@given(data=st.data())
def test_shrink_matches_gated_model_on_random_chains(data) -> None:
    model, size = draw_model(data.draw)
    prunable = prunable_layers(model, "both")
    assert prunable, "every chain here has at least one convolution before the output layer"
    if data.draw(st.booleans(), label="per-layer keep"):
        names = data.draw(
            st.lists(st.sampled_from(sorted(prunable)), min_size=1, unique=True), label="gated"
        )
        keep = {name: data.draw(st.floats(0.05, 1.0), label=f"keep[{name}]") for name in names}
    else:
        keep = data.draw(st.floats(0.05, 1.0), label="keep")
    alpha = data.draw(st.sampled_from([0.0, 0.3, 1.0]), label="alpha")

    created = attach_gates(model, keep=keep, target="both", alpha=alpha)
    model.eval()
    assert set(created) == (set(keep) if isinstance(keep, dict) else set(prunable))
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = model(x)
    before = snapshot(model)

    small = shrink(model).eval()

    with torch.no_grad():
        actual = small(x)
        again = model(x)
    assert_same_function(actual, expected)
    assert_state_equal(before, model)
    assert torch.equal(again, expected), "the gated model changed its output after shrink"
    assert not any(isinstance(m, AlphaGate) for m in small.modules())
    pruned_any = any(g.num_kept < g.num_channels for g in created.values())
    if pruned_any:
        assert any(isinstance(m, AlphaGate) for m in model.modules()), "gates left the original"

    layers = dict(small.named_modules())
    for name, gate in created.items():
        expected_channels = gate.num_kept if alpha == 0.0 else gate.num_channels
        assert layers[name].out_channels == expected_channels, name
    if alpha == 0.0 and pruned_any:
        assert n_params(small) < n_params(model)
    else:
        assert n_params(small) == n_params(model)


# ---------------------------------------------------------------------------------------------
# Square consumers: folding along the wrong axis keeps shapes valid but changes the output
# ---------------------------------------------------------------------------------------------


def _square_chain(consumer: nn.Module) -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), consumer, nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1)
    ).eval()


def _fold_by_hand(gated: nn.Sequential, axis: int) -> nn.Sequential:
    """The gated chain with its one gated layer (index 2) replaced by a plain copy whose weight
    is multiplied by the gate's scale along ``axis``."""
    layers = list(copy.deepcopy(gated))
    gate = gated[2]
    assert isinstance(gate, AlphaGate)
    consumer = copy.deepcopy(gate)
    consumer.__class__ = gate.base_type
    shape = [1] * consumer.weight.dim()
    shape[axis] = -1
    with torch.no_grad():
        consumer.weight.mul_(gate.scale().to(consumer.weight.dtype).view(shape))
    layers[2] = consumer
    return nn.Sequential(*layers).eval()


@pytest.mark.parametrize("alpha", [0.0, 0.3])
@pytest.mark.parametrize(
    "kind, right_axis, wrong_axis",
    [("transposed", 0, 1), ("conv", 1, 0)],
)
def test_square_consumer_gate_folds_along_input_axis(kind, right_axis, wrong_axis, alpha) -> None:
    if kind == "transposed":
        consumer = nn.ConvTranspose2d(4, 4, kernel_size=4, stride=2, padding=1)
    else:
        consumer = nn.Conv2d(4, 4, kernel_size=3, padding=1)
    assert consumer.in_channels == consumer.out_channels == 4  # square: both axes have size 4
    assert input_axis(consumer) == right_axis and output_axis(consumer) == wrong_axis
    model = _square_chain(consumer)
    gates = attach_gates(
        model, masks={"0": torch.tensor([True, False, True, False])}, alpha=alpha, target="both"
    )
    assert list(gates) == ["0"]
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
        right = _fold_by_hand(model, right_axis)(x)
        wrong = _fold_by_hand(model, wrong_axis)(x)
        shrunk = shrink(model).eval()(x)
    assert wrong.shape == expected.shape
    assert differs(wrong, expected), "folding along the output axis should change the output"
    assert_same_function(right, expected)
    assert_same_function(shrunk, expected)


def test_transposed_producer_is_cut_on_output_axis() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Conv2d(3, 5, 3, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(5, 6, 4, stride=2, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.ConvTranspose2d(6, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 3, 1),
    ).eval()
    _randomise_norm(model[3])
    mask = torch.tensor([True, False, False, True, True, False])
    attach_gates(model, masks={"2": mask}, target="both", alpha=0.0)
    x = torch.randn(1, 3, 6, 6)
    with torch.no_grad():
        expected = model(x)
    small = shrink(model).eval()
    layers = dict(small.named_modules())
    assert layers["2"].weight.shape == (5, 3, 4, 4)  # (in, out): out axis cut to the 3 kept
    assert layers["2"].bias.shape == (3,)
    assert layers["3"].running_mean.shape == (3,) and layers["3"].num_features == 3
    assert torch.equal(layers["3"].running_var, model[3].running_var[mask])
    assert layers["5"].weight.shape == (3, 6, 3, 3)  # (in, out): in axis cut
    with torch.no_grad():
        assert_same_function(small(x), expected)


# ---------------------------------------------------------------------------------------------
# The VGG autoencoder on the bundled validation images
# ---------------------------------------------------------------------------------------------


def validation_images(size: int = 32) -> torch.Tensor:
    """Crops of skimage's astronaut (face) and chelsea (cat), as a (2, 3, size, size) batch."""
    astronaut = skdata.astronaut()[60 : 60 + 4 * size : 4, 160 : 160 + 4 * size : 4]
    chelsea = skdata.chelsea()[40 : 40 + 4 * size : 4, 100 : 100 + 4 * size : 4]
    batch = np.stack([astronaut, chelsea]).astype(np.float32) / 255.0
    assert batch.shape == (2, size, size, 3)
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()


#: Three cases cover every target, both norms and the shallowest and deepest cut in the quick
#: tier; the rest of the 30 (which the random-chain property above also covers) run with -m slow.
#: In make test-quick; the full VGG-19 (relu5_1, 2 × 20 M parameters) is heavy, the others unit.
_VGG_QUICK = {
    ("relu5_1", "both", True): pytest.mark.heavy,
    ("relu3_1", "encoder", False): (),
    ("relu1_1", "decoder", True): (),
}
_VGG_CASES = [
    pytest.param(
        layer,
        target,
        batch_norm,
        id=f"{layer}-{target}-{'bn' if batch_norm else 'plain'}",
        marks=_VGG_QUICK.get((layer, target, batch_norm), pytest.mark.slow),
    )
    for layer in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    for target in ("encoder", "decoder", "both")
    for batch_norm in (False, True)
]


@pytest.mark.parametrize(("layer", "target", "batch_norm"), _VGG_CASES)
def test_vgg_autoencoder_shrinks_exactly(layer, target, batch_norm) -> None:
    torch.manual_seed(5)
    model = build_autoencoder(layer, batch_norm=batch_norm).eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            _randomise_norm(module)
    created = attach_gates(model, keep=0.5, target=target)
    assert created and all(name.startswith(target) or target == "both" for name in created)
    set_alpha(model, 0.0)
    images = validation_images(32)
    assert images.std() > 0.05  # real image content, not a constant
    with torch.no_grad():
        expected = model(images)
    before = snapshot(model)

    small = shrink(model).eval()

    with torch.no_grad():
        actual = small(images)
    assert actual.shape == images.shape
    assert_same_function(actual, expected)
    assert_state_equal(before, model)
    assert not any(isinstance(m, AlphaGate) for m in small.modules())
    gated_cost = count(model, input_size=(1, 3, 32, 32))
    small_cost = count(small, input_size=(1, 3, 32, 32))
    assert small_cost["params"] < gated_cost["params"]
    assert small_cost["flops"] < gated_cost["flops"]
    layers = dict(small.named_modules())
    for name, gate in created.items():
        assert layers[name].out_channels == gate.num_kept < gate.num_channels


# ---------------------------------------------------------------------------------------------
# count
# ---------------------------------------------------------------------------------------------


def test_count_params_and_flops_of_a_known_chain() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1, bias=False))
    cost = count(model, input_size=(1, 3, 8, 8))
    assert cost["params"] == (4 * 3 * 9 + 4) + 3 * 4
    # a multiply-add counts 2: per output pixel 2·cin·k² per output channel (bias not counted)
    assert cost["flops"] == 2 * 64 * (4 * 3 * 9) + 2 * 64 * (3 * 4)


def test_count_restores_each_modules_mode_and_follows_dtype() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 3, 1))
    model.train()
    model[1].eval()  # e.g. a frozen BatchNorm inside a model being trained
    count(model, input_size=(1, 3, 8, 8))
    assert model.training and model[0].training and not model[1].training
    assert int(model[1].num_batches_tracked) == 0, "count must not update BatchNorm statistics"
    assert count(model.double(), input_size=(1, 3, 8, 8))["params"] == n_params(model)


def _grouped_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16),  # depthwise: whole blocks
        nn.ReLU(),
        nn.Conv2d(16, 24, 3, padding=1, groups=4),  # 4 blocks of 4 → 6: by position
        nn.ReLU(),
        nn.ConvTranspose2d(24, 12, 3, padding=1, groups=3),  # 3 blocks of 8 → 4: by position
        nn.ReLU(),
        nn.Conv2d(12, 3, 1),
    )


def test_shrunk_grouped_layers_load_into_a_fresh_model() -> None:
    """A checkpoint of a shrunk model with depthwise (whole blocks) and grouped (by position)
    convolutions gets its shapes back from the rules (``resize_to``), as a run's loader does."""
    torch.manual_seed(0)
    model = _grouped_model().eval()
    x = torch.randn(2, 3, 8, 8)
    attach_gates(model, keep=0.5, example_inputs=x)
    set_alpha(model, 0.0)
    small = shrink(model, example_inputs=x)
    assert small[4].groups == 4 and small[4].weight.shape == (12, 2, 3, 3)
    assert small[6].groups == 3 and small[6].weight.shape == (12, 2, 3, 3)
    state = small.state_dict()
    fresh = _grouped_model().eval()
    for name, module in fresh.named_modules():
        rule = rule_for(module)
        if rule is not None:
            rule.resize_to(module, state, f"{name}." if name else "")
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh(x), model(x), rtol=1e-5, atol=1e-6)
    assert [m.groups for m in fresh if hasattr(m, "groups")] == [1, 8, 4, 3, 1]
