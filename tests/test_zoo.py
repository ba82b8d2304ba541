"""The zoo of issue 8: gates and exact shrink on every channel structure ``torch.fx`` traces.

For each model of ``tests/zoo.py`` (norms with random statistics, eval mode) and for
hypothesis-generated random graphs: at α = 0 and at a random α in (0, 1) the shrunk model equals
the gated one on an input it was not traced with; at α = 0 the gates change the output (they are
wired) and the parameter count drops. Plus ``strict``, untraceable models, ``target`` patterns and
the plan table.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from zoo import ZOO, RandomNet, build, randomise

import alphaprune as ap
from alphaprune.core.layer_rules import MixingRule, rule_for
from alphaprune.errors import PruningError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REL_TOL, ABS_TOL = 1e-5, 1e-6


def seeded(size: tuple[int, ...], seed: int) -> Tensor:
    return torch.randn(size, generator=torch.Generator().manual_seed(seed))


def run(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x.clone())


def assert_same(actual: Tensor, expected: Tensor, what: str = "shrunk vs gated") -> None:
    """max|a - b| <= 1e-5 · max|b| + 1e-6."""
    assert actual.shape == expected.shape, what
    error = (actual - expected).abs().max().item()
    bound = REL_TOL * expected.abs().max().item() + ABS_TOL
    assert error <= bound, f"{what}: max diff {error:.3g} > {bound:.3g}"


def differs(actual: Tensor, expected: Tensor) -> bool:
    error = (actual - expected).abs().max().item()
    return error > 100 * (REL_TOL * expected.abs().max().item() + ABS_TOL)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def out_channels(module: nn.Module) -> int:
    """Output channels of a layer (a subclass of a built-in layer: its base class's rule)."""
    rule = next((rule_for(t) for t in type(module).__mro__ if rule_for(t)), None)
    assert isinstance(rule, MixingRule), type(module)
    return rule.out_channels(module)


def name_alpha(name: str) -> float:
    """A random α in (0, 1), reproducible per model."""
    return random.Random(name).uniform(0.05, 0.95)


# ---------------------------------------------------------------------------------------------
# The zoo
# ---------------------------------------------------------------------------------------------


@pytest.fixture(params=sorted(ZOO), scope="module")
def gated(request):
    """(name, model gated at α = 1, example input, test input, output before gating, plan)."""
    name = request.param
    entry = ZOO[name]
    model = build(name)
    example, test_input = seeded(entry.input_size, 1), seeded(entry.input_size, 2)
    before = run(model, test_input)
    plan = ap.attach_gates(model, keep=0.5, target="all", example_inputs=example)
    return name, model, example, test_input, before, plan


def test_zoo_structures_are_pruned(gated):
    """The layers an entry exists for are in a pruned group, and α = 1 changes nothing."""
    name, model, _, x, before, plan = gated
    assert ap.get_alpha(model) == 1.0
    assert_same(run(model, x), before, "gated at α = 1 vs ungated")
    pruned_layers = {layer for g in plan.groups if g.gated for layer in g.layers}
    missing = [layer for layer in ZOO[name].must_prune if layer not in pruned_layers]
    assert not missing, f"{name}: {missing} not pruned\n{plan}"
    assert plan.gates, "no gated consumer"
    for group_name, group in plan.items():
        assert group.mask is not None and group.mask.dtype == torch.bool
        assert group.mask.numel() == group.num_channels
        assert 0 < group.num_kept <= group.num_channels, group_name
        if group.units > 1:  # one unit (a GroupNorm of one group) cannot lose channels
            assert group.num_kept < group.num_channels, group_name


def test_zoo_shrink_at_alpha_zero(gated):
    name, model, example, x, before, plan = gated
    ap.set_alpha(model, 0.0)
    try:
        out = run(model, x)
        assert differs(out, before), f"{name}: α = 0 does not change the output (gates not wired)"
        small = ap.shrink(model, example_inputs=example)
        assert not ap.gates(small)
        assert_same(run(small, x), out)
        assert_same(run(small, example), run(model, example), "on the example input")
        assert n_params(small) < n_params(model)
        for group_name, group in plan.items():  # the first producer keeps exactly its kept channels
            assert out_channels(small.get_submodule(group_name)) == group.num_kept, group_name
    finally:
        ap.set_alpha(model, 1.0)


def test_zoo_shrink_at_random_alpha(gated):
    name, model, example, x, before, _ = gated
    alpha = name_alpha(name)
    ap.set_alpha(model, alpha)
    try:
        assert ap.get_alpha(model) == alpha
        out = run(model, x)
        assert differs(out, before), f"{name}: α = {alpha:.3f} does not change the output"
        small = ap.shrink(model, example_inputs=example)
        assert not ap.gates(small)
        assert_same(run(small, x), out)
        assert n_params(small) == n_params(model)  # nothing is cut at 0 < α < 1
    finally:
        ap.set_alpha(model, 1.0)


def test_zoo_shrink_leaves_the_gated_model_alone(gated):
    """shrink of a model in training mode: the gated model's state (BatchNorm running
    statistics included) and modes are unchanged, and the copy keeps the modes."""
    name, model, example, x, _, _ = gated
    ap.set_alpha(model, 0.0)
    model.train()
    try:
        state = {k: v.clone() for k, v in model.state_dict().items()}
        small = ap.shrink(model, example_inputs=example)
        assert model.training and small.training
        for key, value in model.state_dict().items():
            assert torch.equal(value, state[key]), f"{name}: shrink modified '{key}'"
        model.eval()
        small.eval()
        assert_same(run(small, x), run(model, x))
    finally:
        model.eval()
        ap.set_alpha(model, 1.0)


# ---------------------------------------------------------------------------------------------
# Random graphs
# ---------------------------------------------------------------------------------------------

ACTS = [None, *RandomNet.ACTS]
NORMS = [None, "bn", "gn", "in"]


def _conv(draw, widths, src):
    width = draw(st.integers(3, 12))
    kernel, norm, act = (draw(st.sampled_from(c)) for c in ([1, 3], NORMS, ACTS))
    return ("conv", src, width, kernel, norm, act), width


def _depthwise(draw, widths, src):
    norm, act = draw(st.sampled_from([None, "bn"])), draw(st.sampled_from(ACTS))
    return ("dw", src, norm, act), widths[src]


def _grouped(kind, divisors):
    def op(draw, widths, src):
        groups = draw(st.sampled_from([g for g in divisors if widths[src] % g == 0]))
        width = groups * draw(st.integers(1, 4))
        return (kind, src, width, groups, draw(st.sampled_from(ACTS))), width

    return op


def _add(draw, widths, src):
    same = [(a, b) for a in range(len(widths)) for b in range(a + 1, len(widths))]
    a, b = draw(st.sampled_from([(a, b) for a, b in same if widths[a] == widths[b]]))
    return ("add", a, b), widths[a]


def _cat(draw, widths, src):
    a, b = (draw(st.integers(0, len(widths) - 1)) for _ in range(2))
    if widths[a] + widths[b] > 40:
        return ("conv", a, 4, 1, None, "relu"), 4
    return ("cat", a, b), widths[a] + widths[b]


def _residual(kind):
    def op(draw, widths, src):
        (_, a, b), width = _add(draw, widths, src)
        return (kind, a, b), width

    return op


def _even(kind, draw_arg):
    """An op on an even-width tensor (or a conv that makes one)."""

    def op(draw, widths, src):
        even = [i for i, w in enumerate(widths) if w % 2 == 0 and w >= 4]
        if not even:
            return ("conv", src, 2 * draw(st.integers(2, 6)), 1, None, "relu"), None
        src = draw(st.sampled_from(even))
        return (kind, src, *draw_arg(draw, widths[src])), widths[src]

    return op


def _shuffle_groups(draw, width):
    return (draw(st.sampled_from([g for g in (2, 3, 4) if width % g == 0] or [1])),)


def _split_size(draw, width):
    return (draw(st.integers(1, width - 1)),)


def _tail(draw, widths, src):
    if widths[src] < 4:
        return ("conv", src, 6, 1, None, "relu"), 6
    k = draw(st.integers(1, widths[src] - 2))
    return ("tail", src, k), widths[src] - k


#: How each kind of op draws its arguments and the width of its output.
OPS = {
    "conv": _conv,
    "dw": _depthwise,
    "group": _grouped("group", (1, 2, 3, 4)),
    "deconv": _grouped("deconv", (1, 2, 4)),
    "se": lambda draw, widths, src: (("se", src), widths[src]),
    "add": _add,
    "droppath": _residual("droppath"),
    "cat": _cat,
    "scale": lambda draw, widths, src: (("scale", src), widths[src]),
    "posbias": lambda draw, widths, src: (("posbias", src), widths[src]),
    "chunk": _even("chunk", lambda draw, width: ()),
    "split": _even("split", _split_size),
    "shuffle": _even("shuffle", _shuffle_groups),
    "chlast": lambda draw, widths, src: (("chlast", src, draw(st.integers(2, 12))), widths[src]),
    "tail": _tail,
    "attn": lambda draw, widths, src: (
        ("attn", src, draw(st.integers(2, 4)), draw(st.integers(1, 4)), draw(st.booleans())),
        widths[src],
    ),
}
PLAIN = "conv dw group deconv se cat scale posbias chunk split shuffle".split()


@st.composite
def random_nets(draw):
    stem = draw(st.integers(3, 12))
    widths = [stem]
    spec = []
    for _ in range(draw(st.integers(1, 6))):
        n = len(widths)
        kinds = PLAIN + ["chlast", "tail", "attn"]
        if any(widths[a] == widths[b] for a in range(n) for b in range(a + 1, n)):
            kinds += ["add", "droppath"]
        kind = draw(st.sampled_from(kinds))
        src = draw(st.integers(0, n - 1))
        op, width = OPS[kind](draw, widths, src)
        spec.append(op)
        widths.append(width if width is not None else op[2])
    return stem, spec, draw(st.booleans())


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same 60 graphs every run: a failure is a core bug, not bad luck
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    net=random_nets(),
    keep=st.sampled_from([0.25, 0.5, 0.75]),
    alpha=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**16),
)
@pytest.mark.slow  # > 5 s on a busy machine: out of the unit tier, in make test
def test_random_graphs_shrink_exactly(net, keep, alpha, seed):
    stem, spec, linear_head = net
    torch.manual_seed(seed)
    model = randomise(RandomNet(stem, spec, linear_head), seed).eval()
    size = (2, 3, 8, 8)
    example, x = seeded(size, seed), seeded(size, seed + 1)
    before = run(model, x)
    try:
        plan = ap.attach_gates(model, keep=keep, target="all", example_inputs=example)
    except PruningError:  # every group pinned (a split of the stem, …): nothing to test
        assume(False)
    assume(plan.gates)  # e.g. one GroupNorm block per group: nothing to remove at this keep
    assert_same(run(model, x), before, "gated at α = 1 vs ungated")
    for a in (0.0, alpha):
        ap.set_alpha(model, a)
        out = run(model, x)
        small = ap.shrink(model, example_inputs=example)
        assert_same(run(small, x), out, f"α = {a}: {spec}")
        if a == 0.0:
            assert n_params(small) < n_params(model), spec
            for group_name, group in plan.items():
                if group.consumers:  # a group nobody reads (unused branch) is not cut
                    assert out_channels(small.get_submodule(group_name)) == group.num_kept
        else:
            assert n_params(small) == n_params(model)


def test_random_net_found_by_hypothesis():
    """cat([t0, conv(t0)]) through two depthwise convs: one coupled group over two producers, and
    keep=0.25 of its units drops every channel of ``ops.0.0`` (see
    test_merged_group_never_empties_a_producer)."""
    spec = [
        ("conv", 0, 4, 1, None, None),
        ("cat", 0, 1),
        ("dw", 0, None, None),
        ("dw", 2, None, None),
    ]
    torch.manual_seed(0)
    model = randomise(RandomNet(3, spec)).eval()
    example, x = seeded((2, 3, 8, 8), 0), seeded((2, 3, 8, 8), 1)
    ap.attach_gates(model, keep=0.25, target="all", example_inputs=example)
    ap.set_alpha(model, 0.0)
    small = ap.shrink(model, example_inputs=example)
    assert_same(run(small, x), run(model, x))
    assert n_params(small) < n_params(model)


FIXED_NETS = {
    "mixed": [
        ("conv", 0, 6, 3, "bn", "relu"),
        ("cat", 0, 1),
        ("dw", 2, "bn", "silu"),
        ("group", 3, 8, 2, "gelu"),
        ("add", 0, 4),
        ("conv", 5, 6, 1, "gn", None),
    ],
    "layerscale_droppath": [
        ("conv", 0, 8, 3, "bn", "relu"),
        ("scale", 1),
        ("droppath", 0, 2),
        ("chlast", 3, 12),
        ("droppath", 3, 4),
    ],
    "chunk_shuffle": [
        ("conv", 0, 12, 1, None, "relu"),
        ("chunk", 1),
        ("shuffle", 2, 3),
        ("conv", 3, 6, 3, "bn", "silu"),
    ],
    "split": [("conv", 0, 12, 1, None, "relu"), ("split", 1, 8), ("conv", 2, 6, 3, "bn", None)],
    "tail_slice": [("conv", 0, 10, 3, None, "relu"), ("tail", 1, 3), ("conv", 2, 5, 1, None, None)],
    "position_bias": [
        ("conv", 0, 8, 3, "bn", "relu"),
        ("posbias", 1),
        ("add", 1, 2),
        ("conv", 3, 6, 1, None, "gelu"),
    ],
    "attention": [
        ("conv", 0, 8, 3, "bn", "relu"),
        ("attn", 1, 4, 3, True),
        ("add", 1, 2),
        ("attn", 3, 2, 4, False),
        ("conv", 4, 6, 1, None, "gelu"),
    ],
}


@pytest.mark.parametrize("name", sorted(FIXED_NETS))
def test_random_net_example(name):
    """Fixed random graphs, one per family of ops (every op kind pruned on every run)."""
    torch.manual_seed(0)
    model = randomise(RandomNet(8, FIXED_NETS[name], linear_head=True)).eval()
    example, x = seeded((2, 3, 8, 8), 0), seeded((2, 3, 8, 8), 1)
    plan = ap.attach_gates(model, keep=0.5, target="all", example_inputs=example)
    ap.set_alpha(model, 0.0)
    small = ap.shrink(model, example_inputs=example)
    assert_same(run(small, x), run(model, x))
    assert n_params(small) < n_params(model)
    for group_name, group in plan.items():
        assert out_channels(small.get_submodule(group_name)) == group.num_kept, group_name


# ---------------------------------------------------------------------------------------------
# Groups that cannot be pruned exactly: skipped, reported, strict
# ---------------------------------------------------------------------------------------------


class FixedReshape(nn.Module):
    """``conv1``'s channels go through ``view(b, 16, -1)``: a fixed channel count."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        y = self.conv1(F.relu(self.conv0(x)))
        y = F.relu(y).view(b, 16, h * w).view(b, 16, h, w)
        return self.conv2(y)


class ChannelSlice(nn.Module):
    """``conv1``'s output is sliced ``y[:, :4]``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(F.relu(self.conv0(x)))
        return self.conv2(F.relu(y)[:, :4])


@pytest.mark.parametrize("factory", [FixedReshape, ChannelSlice])
def test_unprunable_group_is_skipped_and_reported(factory):
    torch.manual_seed(0)
    model = factory().eval()
    x = seeded((2, 3, 16, 16), 0)
    plan = ap.attach_gates(model, keep=0.5, target="all", example_inputs=x)
    assert list(plan) == ["conv0"]  # the only prunable group
    skipped = {g.name: g.skip for g in plan.groups if g.skip}
    assert "conv1" in skipped and not next(g for g in plan.groups if g.name == "conv1").gated
    reason = skipped["conv1"]
    assert "indexing" in reason if factory is ChannelSlice else "fixed channel count" in reason
    table = str(plan)
    for name, why in skipped.items():
        assert name in table
        assert why[:30] in table, f"reason for '{name}' not in the table:\n{table}"
    assert "left whole" in table and "model output" in table and "model input" in table
    # the skipped group really is whole after shrink, and the rest is exact
    ap.set_alpha(model, 0.0)
    small = ap.shrink(model, example_inputs=x)
    assert small.conv1.out_channels == 16 and small.conv0.out_channels == 4
    y = seeded((2, 3, 16, 16), 1)
    assert_same(run(small, y), run(model, y))


@pytest.mark.parametrize("factory", [FixedReshape, ChannelSlice])
def test_strict_names_the_layer(factory):
    model = factory().eval()
    with pytest.raises(ap.UnsupportedModelError, match="conv1") as info:
        ap.attach_gates(
            model, keep=0.5, target="all", strict=True, example_inputs=seeded((1, 3, 16, 16), 0)
        )
    assert "strict" in str(info.value)
    assert not ap.gates(model), "a refused strict attach_gates must leave the model ungated"


def test_strict_passes_when_everything_prunable():
    model = build("residual_shortcut")
    plan = ap.attach_gates(model, keep=0.5, strict=True, example_inputs=seeded((1, 3, 16, 16), 0))
    assert len(plan) == 4


class InputResidual(nn.Module):
    """``x + conv(x)`` on the model input: those channels are the model's input channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, 3, 3, padding=1)
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.conv0(x)
        return self.conv2(F.relu(self.conv1(x)))


def test_strict_does_not_refuse_the_model_input_channels():
    """Issue 8: target "all" is every group *except the model's input and output channels*;
    those are not skips, so strict must not turn them into an error (as it does not for the
    output channels)."""
    model = InputResidual().eval()
    plan = ap.attach_gates(model, keep=0.5, strict=True, example_inputs=seeded((1, 3, 16, 16), 0))
    assert list(plan) == ["conv1"]


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(x)
        if y.sum() > 0:
            y = F.relu(y)
        return self.conv2(y)


def test_untraceable_model_says_so():
    model = Untraceable()
    with pytest.raises(ap.UnsupportedModelError, match="cannot be traced"):
        ap.attach_gates(model, keep=0.5, example_inputs=seeded((1, 3, 16, 16), 0))
    assert not ap.gates(model)
    with pytest.raises(ap.UnsupportedModelError, match="cannot be traced"):
        ap.explain(model, example_inputs=seeded((1, 3, 16, 16), 0))


class Traceable(Untraceable):
    """The same layers as :class:`Untraceable`, with a forward fx can trace."""

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(F.relu(self.conv1(x)))


def test_shrink_of_untraceable_gated_model_says_so():
    """Gates restored from a traceable twin's checkpoint: shrink refuses clearly, never a raw
    torch error."""
    x = seeded((1, 3, 16, 16), 0)
    twin = Traceable()
    ap.attach_gates(twin, keep=0.5, example_inputs=x)
    ap.set_alpha(twin, 0.0)
    model = Untraceable()
    ap.restore_gates(model, twin.state_dict())
    model.load_state_dict(twin.state_dict())
    assert ap.get_alpha(model) == 0.0
    with pytest.raises(ap.UnsupportedModelError, match="cannot be traced"):
        ap.shrink(model, example_inputs=x)


# ---------------------------------------------------------------------------------------------
# target patterns, plan table, explain
# ---------------------------------------------------------------------------------------------


def test_target_list_of_patterns():
    model = build("unet")
    x = seeded((1, 3, 16, 16), 0)
    plan = ap.attach_gates(model, keep=0.5, target=["enc1.*", "up?"], example_inputs=x)
    assert sorted(plan) == ["enc1.0", "enc1.2", "up1", "up2"], str(plan)
    for row in plan.groups:
        if row.name in ("enc2.0", "bottom.0", "dec2.0", "dec1.0"):
            assert not row.gated and not row.in_target and "not in target" in str(plan)
    ap.set_alpha(model, 0.0)
    small = ap.shrink(model, example_inputs=x)
    assert small.enc1[0].out_channels == 4 and small.enc1[2].out_channels == 4
    assert small.up2.out_channels == 8 and small.up1.out_channels == 4
    assert small.enc2[0].out_channels == 16 and small.dec2[0].out_channels == 16
    y = seeded((2, 3, 16, 16), 1)
    assert_same(run(small, y), run(model, y))


def test_target_pattern_matching_nothing_is_an_error():
    model = build("unet")
    with pytest.raises(ValueError, match="no prunable channel group"):
        ap.attach_gates(model, target=["nothing.*"], example_inputs=seeded((1, 3, 16, 16), 0))
    assert not ap.gates(model)


def test_explain_prints_every_group(capsys):
    model = build("squeeze_excite")
    x = seeded((1, 3, 16, 16), 0)
    ap.explain(model, example_inputs=x)
    before = capsys.readouterr().out
    for name in ("conv1.0", "se1.fc1", "conv2.0", "se2.fc1", "out", "<input of conv1.0>"):
        assert name in before
    assert "reaches the model output" in before and "model input" in before
    ap.attach_gates(model, keep=0.5, example_inputs=x)
    ap.explain(model, example_inputs=x)
    after = capsys.readouterr().out
    row = next(line for line in after.splitlines() if line.strip().startswith("conv2.0"))
    assert " 12 " in row and " 24 " in row, row  # 24 channels, 12 kept


def test_coupled_blocks_are_kept_or_dropped_whole():
    """GroupNorm blocks are kept or dropped whole; a grouped conv with several channels per block
    drops the same positions in every block (its block count stays)."""
    plan = ap.attach_gates(build("groupnorm"), example_inputs=seeded((1, 3, 16, 16), 0))
    assert (
        plan["conv1"].mask.view(4, 4).all(1).tolist()
        == plan["conv1"].mask.view(4, 4).any(1).tolist()
    )
    # conv2's stream is read by GroupNorm(6, 24) and, through the residual, GroupNorm(3, 24):
    # units of 8 channels, 2 of 3 kept
    mask2 = plan["conv2"].mask.view(3, 8)
    assert mask2.all(1).tolist() == mask2.any(1).tolist()
    assert plan["conv1"].num_kept == 8 and plan["conv2"].num_kept == 16
    plan = ap.attach_gates(build("grouped_deconv"), example_inputs=seeded((1, 3, 16, 16), 0))
    blocks = plan["conv"].mask.view(4, 4)  # read by `up` (4 blocks of 4): pruned by position
    assert bool((blocks == blocks[0]).all()) and plan["conv"].num_kept == 8


def test_shapes_that_do_not_fit_the_guessed_input_are_explained():
    """Without example_inputs a 64² input is guessed; a flatten → Linear(192) head rejects it
    with an UnsupportedModelError that asks for example_inputs (not a raw shape error)."""
    model = build("flatten_head")
    with pytest.raises(ap.UnsupportedModelError, match="example_inputs"):
        ap.attach_gates(model, keep=0.5)
    assert not ap.gates(model)


def test_count_drops_with_shrink():
    model = build("mobilenet")
    x = seeded((1, 3, 32, 32), 0)
    ap.attach_gates(model, keep=0.5, example_inputs=x)
    ap.set_alpha(model, 0.0)
    small = ap.shrink(model, example_inputs=x)
    big, little = ap.count(model, (1, 3, 32, 32)), ap.count(small, (1, 3, 32, 32))
    assert little["params"] < big["params"] and little["flops"] < big["flops"]


# ---------------------------------------------------------------------------------------------
# A group whose producers get no channel left
# ---------------------------------------------------------------------------------------------


class CatDepthwise(nn.Module):
    """``cat([a, b])`` through a depthwise conv couples ``a``'s and ``b``'s groups into one
    group; ``b``'s filters are small, so the per-group L1 ranking drops all of ``b``."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 3, padding=1)
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.out = nn.Conv2d(12, 3, 1)
        with torch.no_grad():
            self.b.weight.mul_(1e-3)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], dim=1)
        return self.out(F.relu(self.dw(y)))


@pytest.mark.parametrize(
    "how", [{"keep": 0.5}, {"budget": {"params": 0.5}}], ids=["keep", "budget"]
)
def test_merged_group_never_empties_a_producer(how):
    """A keep fraction per coupled group must not remove every output of one of its producers:
    attach_gates plans it, then shrink refuses the plan ('every output channel of 'b' is gated to
    0'), so a model that attach_gates accepted cannot be shrunk."""
    torch.manual_seed(0)
    model = CatDepthwise().eval()
    x = seeded((2, 3, 16, 16), 0)
    ap.attach_gates(model, target="all", example_inputs=x, **how)
    ap.set_alpha(model, 0.0)
    small = ap.shrink(model, example_inputs=x)
    assert 0 < small.b.out_channels
    y = seeded((2, 3, 16, 16), 1)
    assert_same(run(small, y), run(model, y))


class TiedWeights(nn.Module):
    """Two convs sharing one weight Parameter, each consuming a different pruned group."""

    def __init__(self) -> None:
        super().__init__()
        self.c0 = nn.Conv2d(3, 8, 3, padding=1)
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.b.weight = self.a.weight
        self.out = nn.Conv2d(16, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        ya = F.relu(self.a(F.relu(self.c0(x))))
        yb = F.relu(self.b(F.relu(self.c1(x))))
        return self.out(torch.cat([ya, yb], 1))


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_tied_weights_fold_each_gate_once(alpha):
    """Folding a gate must not scale a Parameter in place: ``b`` shares ``a``'s weight, so an
    in-place ``weight.mul_(scale)`` on ``a`` also scales ``b`` (and ``b``'s fold scales ``a``)."""
    torch.manual_seed(0)
    model = TiedWeights().eval()
    x = seeded((2, 3, 16, 16), 0)
    plan = ap.attach_gates(model, keep=0.5, example_inputs=x)
    assert {"a", "b"} <= set(plan.gates) and not torch.equal(
        plan.gates["a"].gate_mask, plan.gates["b"].gate_mask
    )
    ap.set_alpha(model, alpha)
    small = ap.shrink(model, example_inputs=x)
    y = seeded((2, 3, 16, 16), 1)
    assert_same(run(small, y), run(model, y))


class UnusedBranch(nn.Module):
    """``side``'s output is computed and never read."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.side = nn.Conv2d(8, 4, 3, padding=1)
        self.out = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        _ = self.side(x)
        return self.out(x)


def test_plan_matches_what_shrink_cuts():
    """Every group the plan reports as pruned to ``num_kept`` channels has exactly that many
    after shrink at α = 0. A group nobody reads gets no gate, so shrink cannot cut it: the plan
    must not report it as pruned."""
    torch.manual_seed(0)
    model = UnusedBranch().eval()
    x = seeded((1, 3, 16, 16), 0)
    plan = ap.attach_gates(model, keep=0.5, example_inputs=x)
    ap.set_alpha(model, 0.0)
    small = ap.shrink(model, example_inputs=x)
    reported = {name: group.num_kept for name, group in plan.items()}
    actual = {name: out_channels(small.get_submodule(name)) for name in reported}
    assert actual == reported, str(plan)
