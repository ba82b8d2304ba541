"""α gates: forward, state-dict round trip, α checks, channel selection and refused structures."""

from __future__ import annotations

import copy
import io
from collections import OrderedDict

import pytest
import torch
from torch import nn

import alphaprune as ap
from alphaprune import (
    AlphaGate,
    attach_gates,
    build_autoencoder,
    gates,
    get_alpha,
    restore_gates,
    set_alpha,
    shrink,
)
from alphaprune.core.gates import prunable_layers
from alphaprune.core.graph import UnsupportedModelError


def small_chain(seed: int = 0) -> nn.Sequential:
    """conv(3→6) relu conv(6→5) relu pool conv(5→3): two prunable convolutions, '0' and '2'."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 5, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(5, 3, 3, padding=1),
    ).eval()


def outer_weight(shape: tuple[int, ...], dim0: list[float], dim1: list[float]) -> torch.Tensor:
    """A weight whose |w| summed over all axes but 0 ranks like ``dim0``, and over all but 1 like
    ``dim1`` (w[i, j] = dim0[i] · dim1[j] on every kernel tap)."""
    a = torch.tensor(dim0).view(-1, 1, 1, 1)
    b = torch.tensor(dim1).view(1, -1, 1, 1)
    return (a * b).expand(shape).clone()


# ---------------------------------------------------------------------------------------------
# Gated layers: the consumer's weight is scaled along its input axis
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 0.25, 1.0])
def test_gate_scales_kept_inputs_by_one_and_pruned_by_alpha(alpha) -> None:
    model = small_chain()
    x = torch.randn(2, 3, 8, 8)
    mask = torch.tensor([True, False, True, False, False, True])
    plan = attach_gates(model, masks={"0": mask}, alpha=alpha)
    consumer = model[2]
    assert isinstance(consumer, AlphaGate) and isinstance(consumer, nn.Conv2d)
    assert plan.gates == {"2": consumer}
    assert consumer.mask.tolist() == mask.tolist() and consumer.num_kept == 3
    hidden = model[1](model[0](x))
    expected = nn.functional.conv2d(
        hidden * torch.where(mask, 1.0, alpha).view(1, -1, 1, 1),
        consumer.weight,
        consumer.bias,
        padding=1,
    )
    torch.testing.assert_close(consumer(hidden), expected)
    assert consumer.get_alpha() == alpha


def test_gate_keeps_state_dict_keys_and_stores_alpha_exactly() -> None:
    model = small_chain()
    keys = list(model.state_dict())
    attach_gates(model, keep=0.5, alpha=0.1)
    gated_keys = list(model.state_dict())
    assert [k for k in gated_keys if "gate_" not in k] == keys  # original names unchanged
    assert {k for k in gated_keys if "gate_" in k} == {
        "2.gate_mask",
        "2.gate_alpha",
        "5.gate_mask",
        "5.gate_alpha",
    }
    assert get_alpha(model) == 0.1  # float64 buffer: the value set is the value read back
    for dtype in (torch.float16, torch.bfloat16):
        copy_ = small_chain()
        attach_gates(copy_, keep=0.5, alpha=0.1)
        copy_.to(dtype)
        assert get_alpha(copy_) == 0.1, f"{dtype} must not round α"
        assert all(g.gate_alpha.dtype == torch.float64 for g in gates(copy_).values())
        assert copy_[2].weight.dtype == dtype


def test_gate_refuses_bad_alpha_and_keeps_the_old_one() -> None:
    model = small_chain()
    attach_gates(model, keep=0.5, alpha=0.5)
    gate = model[2]
    for bad in (-0.1, 1.5, float("nan"), float("inf"), "half", True):
        with pytest.raises(ValueError, match="alpha"):
            gate.set_alpha(bad)
        with pytest.raises(ValueError, match="alpha"):
            attach_gates(small_chain(), keep=0.5, alpha=bad)
    assert gate.get_alpha() == 0.5, "a refused set_alpha must leave α unchanged"


# ---------------------------------------------------------------------------------------------
# State dict round trip
# ---------------------------------------------------------------------------------------------


def test_mask_and_alpha_round_trip_through_state_dict() -> None:
    model = build_autoencoder("relu2_1")
    created = attach_gates(model, keep={"encoder.0": 0.25, "decoder.2": 0.75}, target="both")
    set_alpha(model, 0.37)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    fresh = build_autoencoder("relu2_1")  # different random weights, no gates
    restored = restore_gates(fresh, saved)
    fresh.load_state_dict(saved)

    assert set(created) == {"encoder.0", "decoder.2"}
    assert set(restored) == set(gates(model)) == {"encoder.2", "decoder.4"}  # the consumers
    for name, gate in gates(model).items():
        again = restored[name]
        assert again.mask.dtype == torch.bool
        assert torch.equal(again.mask, gate.mask)
        assert again.get_alpha() == 0.37
    assert get_alpha(fresh) == 0.37
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), model.eval()(x))


def test_restore_gates_refuses_state_dict_of_other_architecture() -> None:
    model = build_autoencoder("relu2_1")
    attach_gates(model, keep=0.5, target="both")
    with pytest.raises(ValueError, match="different architecture"):
        restore_gates(build_autoencoder("relu1_1"), model.state_dict())


def test_restore_gates_without_gates_is_a_no_op() -> None:
    model = small_chain()
    assert restore_gates(model, small_chain(1).state_dict()) == {}
    assert gates(model) == {}


# ---------------------------------------------------------------------------------------------
# set_alpha / get_alpha
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan"), float("-inf"), None])
def test_set_alpha_outside_unit_interval_raises(bad) -> None:
    model = small_chain()
    attach_gates(model, keep=0.5, target="both", alpha=0.4)
    with pytest.raises(ValueError, match="alpha"):
        set_alpha(model, bad)
    assert get_alpha(model) == pytest.approx(0.4)


def test_set_alpha_sets_every_gate_and_needs_gates() -> None:
    model = small_chain()
    with pytest.raises(ValueError, match="no α gates"):
        set_alpha(model, 0.5)
    with pytest.raises(ValueError, match="no α gates"):
        get_alpha(model)
    attach_gates(model, keep=0.5, target="both")
    set_alpha(model, 0.0)
    assert get_alpha(model, per_gate=True) == {"2": 0.0, "5": 0.0}
    assert get_alpha(model) == 0.0


def test_get_alpha_raises_when_gates_disagree() -> None:
    model = small_chain()
    created = attach_gates(model, keep=0.5, target="both", alpha=1.0)
    created.gates["5"].set_alpha(0.5)
    with pytest.raises(ValueError, match="disagree"):
        get_alpha(model)
    assert get_alpha(model, per_gate=True) == {"2": 1.0, "5": 0.5}


# ---------------------------------------------------------------------------------------------
# Which channels and which layers
# ---------------------------------------------------------------------------------------------


def test_keep_mapping_gates_only_the_named_convolutions() -> None:
    model = build_autoencoder("relu3_1")
    created = attach_gates(model, keep={"encoder.2": 0.25, "encoder.7": 0.5}, target="encoder")
    assert set(created) == {"encoder.2", "encoder.7"}
    assert created["encoder.2"].num_channels == 64 and created["encoder.2"].num_kept == 16
    assert created["encoder.7"].num_channels == 128 and created["encoder.7"].num_kept == 64
    # the gates live in the consumers: the next convolution of each
    assert set(gates(model)) == {"encoder.5", "encoder.10"}


def test_unknown_convolution_name_raises_naming_it() -> None:
    model = build_autoencoder("relu2_1")
    with pytest.raises(ValueError, match=r"encoder\.99"):
        attach_gates(model, keep={"encoder.0": 0.5, "encoder.99": 0.5}, target="encoder")
    with pytest.raises(ValueError, match=r"decoder\.0"):  # exists, but not in the target
        attach_gates(model, keep={"decoder.0": 0.5}, target="encoder")
    with pytest.raises(ValueError, match=r"encoder\.1"):  # a ReLU, not a convolution
        attach_gates(model, masks={"encoder.1": torch.ones(64, dtype=torch.bool)}, target="both")
    assert gates(model) == {}, "a refused attach_gates must not leave gates behind"


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.01, 2, float("nan"), "most"])
def test_keep_outside_zero_one_raises(bad) -> None:
    with pytest.raises(ValueError, match="keep"):
        attach_gates(small_chain(), keep=bad, target="both")
    with pytest.raises(ValueError, match=r"keep\['2'\]"):
        attach_gates(small_chain(), keep={"0": 0.5, "2": bad}, target="both")


def test_keep_one_keeps_every_channel_and_tiny_keep_keeps_one() -> None:
    model = small_chain()
    created = attach_gates(model, keep={"0": 1.0, "2": 0.01}, target="both")
    assert bool(created["0"].mask.all())
    assert created["2"].num_kept == 1


def test_mask_of_wrong_length_raises() -> None:
    with pytest.raises(ValueError, match="'0'"):
        attach_gates(small_chain(), masks={"0": torch.ones(5, dtype=torch.bool)}, target="both")


def test_l1_on_conv_transpose_producer_scores_output_axis() -> None:
    torch.manual_seed(0)
    # ConvTranspose2d weight is (in, out, kH, kW): its output channels are dim 1.
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 3, 3, padding=1),
    )
    with torch.no_grad():
        # dim-1 (output) norms favour channels 0 and 1; dim-0 (input) norms favour 2 and 3
        model[2].weight.copy_(outer_weight((4, 4, 4, 4), [1, 1, 10, 10], [10, 10, 1, 1]))
    created = attach_gates(model, keep={"2": 0.5}, criterion="l1", target="both")
    assert created["2"].mask.tolist() == [True, True, False, False]


def test_l1_on_conv_producer_scores_dim_0() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 3, 3, padding=1),
    )
    with torch.no_grad():
        # Conv2d weight is (out, in, ...): dim-0 norms favour 1 and 3, dim-1 norms 0 and 2
        model[2].weight.copy_(outer_weight((4, 4, 3, 3), [1, 10, 1, 10], [10, 1, 10, 1]))
    created = attach_gates(model, keep={"2": 0.5}, criterion="l1", target="both")
    assert created["2"].mask.tolist() == [False, True, False, True]


def test_bn_criterion_keeps_largest_absolute_gamma() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 3, 3, padding=1),
    )
    with torch.no_grad():
        model[0].weight.copy_(outer_weight((4, 3, 3, 3), [10, 1, 1, 10], [1, 1, 1]))  # l1: 0, 3
        model[1].weight.copy_(torch.tensor([0.1, -5.0, 2.0, 0.3]))
    l1 = attach_gates(copy.deepcopy(model), keep=0.5, criterion="l1", target="both")
    assert l1["0"].mask.tolist() == [True, False, False, True]
    model_bn = copy.deepcopy(model)
    bn = attach_gates(model_bn, keep=0.5, criterion="bn", target="both")
    assert bn["0"].mask.tolist() == [False, True, True, False]


def test_bn_criterion_needs_a_batchnorm_and_criterion_must_be_known() -> None:
    with pytest.raises(ValueError, match="BatchNorm in group '0'"):
        attach_gates(small_chain(), keep=0.5, criterion="bn", target="both")
    with pytest.raises(ValueError, match="criterion"):
        attach_gates(small_chain(), keep=0.5, criterion="l2", target="both")


@pytest.mark.parametrize("target", ["encoder", "decoder", "both"])
def test_target_gates_only_convolutions_under_that_prefix(target) -> None:
    model = build_autoencoder("relu3_1")
    convs = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    output_conv = convs[-1]
    assert model.get_submodule(output_conv).out_channels == 3
    created = attach_gates(model, keep=0.5, target=target)
    expected = [
        n for n in convs if n != output_conv and (target == "both" or n.startswith(target + "."))
    ]
    assert sorted(created) == sorted(expected)
    assert sorted(prunable_layers(build_autoencoder("relu3_1"), target)) == sorted(expected)
    # the encoder's last convolution feeds the decoder, so it is prunable with target="encoder"
    if target != "decoder":
        assert "encoder.10" in created


def test_image_input_and_output_layer_are_never_gated() -> None:
    model = build_autoencoder("relu2_1")
    attach_gates(model, keep=0.5, target="both")
    set_alpha(model, 0.0)
    flat = [m for m in model.modules() if not isinstance(m, (nn.Sequential, type(model)))]
    assert not isinstance(flat[0], AlphaGate), "no gate in front of the image input"
    assert isinstance(flat[-1], nn.Conv2d) and flat[-1].out_channels == 3  # no gate after it
    assert "encoder.0" not in gates(model), "the image input is never gated"
    small = shrink(model)
    assert small.encoder[0].in_channels == 3
    assert small.encoder[0].weight.shape[1] == 3
    assert small.decoder[-1].out_channels == 3
    assert small(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)


def test_gating_twice_raises() -> None:
    model = small_chain()
    attach_gates(model, keep=0.5, target="both")
    with pytest.raises(ValueError, match="already has α gates"):
        attach_gates(model, keep=0.5, target="both")


def test_bad_target_raises() -> None:
    with pytest.raises(ValueError, match="target 'middle'"):
        attach_gates(small_chain(), keep=0.5, target="middle")
    with pytest.raises(ValueError, match="target"):
        attach_gates(small_chain(), keep=0.5, target=[1])
    with pytest.raises(ValueError, match="encoder"):  # a plain Sequential has no .encoder
        attach_gates(small_chain(), keep=0.5, target="encoder")


# ---------------------------------------------------------------------------------------------
# Structures beyond a chain (the zoo in test_zoo.py covers many more)
# ---------------------------------------------------------------------------------------------


def named_chain(**layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


def test_target_patterns_and_plain_sequential_default() -> None:
    model = build_autoencoder("relu3_1")
    created = attach_gates(model, keep=0.5, target=["encoder.[05]", "decoder.1?"])
    assert sorted(created) == ["decoder.10", "decoder.12", "encoder.0", "encoder.5"]
    assert sorted(attach_gates(small_chain(), keep=0.5)) == ["0", "2"]  # default target "all"


def test_depthwise_convolutions_prune_whole_blocks_and_grouped_ones_by_position() -> None:
    torch.manual_seed(0)
    model = named_chain(
        stem=nn.Conv2d(3, 8, 3, padding=1),
        act=nn.ReLU(),
        depthwise=nn.Conv2d(8, 8, 3, padding=1, groups=8),
        act2=nn.ReLU(),
        grouped=nn.ConvTranspose2d(8, 8, 4, stride=2, padding=1, groups=4),
        act3=nn.ReLU(),
        head=nn.Conv2d(8, 3, 1),
    ).eval()
    plan = attach_gates(model, keep=0.5, alpha=0.0)
    # stem's channels run through the depthwise conv (a channel with its output) into the
    # grouped ConvTranspose2d (4 blocks of 2): channel j of every block is one unit, so stem has
    # 2 units of 4 channels; the grouped layer's outputs are pruned by position the same way
    assert sorted(plan) == ["grouped", "stem"]
    assert plan["stem"].units == 2 and plan["stem"].kept == 1
    assert plan["stem"].mask.view(4, 2).tolist() == [plan["stem"].mask[:2].tolist()] * 4
    x = torch.randn(2, 3, 8, 8)
    small = shrink(model)
    torch.testing.assert_close(small(x), model(x), rtol=1e-5, atol=1e-6)
    assert small.grouped.groups == 4 and small.grouped.weight.shape == (4, 1, 4, 4)
    assert small.depthwise.groups == 4 and small.stem.out_channels == 4


def test_module_used_twice_shares_its_channels() -> None:
    shared = nn.Conv2d(4, 4, 3, padding=1)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Sequential(shared, nn.ReLU()),
        nn.Sequential(shared, nn.ReLU()),
        nn.Conv2d(4, 3, 1),
    ).eval()
    plan = attach_gates(model, keep=0.5, alpha=0.0)
    # the shared conv reads its own output: input and output channels are the same units
    assert sorted(plan) == ["0"]
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(shrink(model)(x), model(x), rtol=1e-5, atol=1e-6)


def test_unknown_layer_leaves_its_group_whole_and_strict_names_it() -> None:
    class Shuffle(nn.Module):  # mixes channels in a way the graph does not know
        def forward(self, x):
            return torch.roll(x, 1, dims=1)

    def build() -> nn.Sequential:
        return named_chain(
            stem=nn.Conv2d(3, 4, 3, padding=1),
            shuffle=Shuffle(),
            mid=nn.Conv2d(4, 4, 3, padding=1),
            act=nn.ReLU(),
            head=nn.Conv2d(4, 3, 1),
        )

    plan = attach_gates(build(), keep=0.5)
    assert list(plan) == ["mid"]
    skipped = {g.name: g.skip for g in plan.groups if g.skip}
    assert "roll" in skipped["stem"]
    assert "left whole" in str(plan) and "roll" in str(plan)
    with pytest.raises(UnsupportedModelError, match="'stem'.*roll"):
        attach_gates(build(), keep=0.5, strict=True)


def test_untraceable_model_says_so() -> None:
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 3, 1)

        def forward(self, x):
            if x.sum() > 0:
                return self.b(self.a(x))
            return x

    with pytest.raises(UnsupportedModelError, match="cannot be traced by torch.fx"):
        attach_gates(Branchy(), keep=0.5)


def test_checkpoint_state_from_before_the_graph_core_migrates() -> None:
    """A state dict with the old ``<anchor>_gate.mask`` modules loads into consumer gates."""
    from alphaprune.core.gates import migrate_state_dict

    model = build_autoencoder("relu1_1")
    state = model.state_dict()
    state["encoder.1_gate.mask"] = torch.tensor([True, False] * 32)
    state["encoder.1_gate.alpha"] = torch.tensor(0.25, dtype=torch.float64)
    fresh = build_autoencoder("relu1_1")
    restored = restore_gates(fresh, state)
    fresh.load_state_dict(migrate_state_dict(fresh, state))
    assert list(restored) == ["decoder.0"]
    assert get_alpha(fresh) == 0.25
    assert fresh.decoder[0].num_kept == 32


def test_boolean_keep_is_refused():
    import alphaprune as ap

    model = ap.build_autoencoder("relu1_1")
    with pytest.raises(ValueError, match="keep must be a number"):
        ap.attach_gates(model, keep=True)


# ---------------------------------------------------------------------------------------------
# Teaching it a layer (issue 18): one registration, no library edit
# ---------------------------------------------------------------------------------------------


class _SwishFn(torch.autograd.Function):
    """A custom autograd function: torch.fx cannot look into it."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return grad * (s + x * s * (1 - s))


class CustomSwish(nn.Module):
    def forward(self, x):
        return _SwishFn.apply(x)


class EinsumLinear(nn.Module):
    """Computes what ``nn.Linear`` does, with an einsum (not understood when traced through)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / in_features**0.5)
        self.bias = nn.Parameter(torch.randn(out_features) * 0.1)

    def forward(self, x):
        return torch.einsum("...i,oi->...o", x, self.weight) + self.bias


class InOutConv(nn.Module):
    """A 3×3 conv that stores its weight as ``(in, out, kH, kW)``: a layout of its own."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, (3, 3)
        self.weight = nn.Parameter(torch.randn(in_channels, out_channels, 3, 3) * 0.2)
        self.bias = nn.Parameter(torch.randn(out_channels) * 0.1)

    def forward(self, x):
        return nn.functional.conv2d(x, self.weight.transpose(0, 1), self.bias, padding=1)


class InOutConvRule(ap.MixingRule):
    """Rule for :class:`InOutConv`: input channels on weight axis 0, outputs on axis 1."""

    in_axis, out_axis = 0, 1


class Taught(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = InOutConv(3, 12)
        self.act = CustomSwish()
        self.conv2 = nn.Conv2d(12, 10, 3, padding=1)
        self.fc1 = EinsumLinear(10, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        x = self.act(self.conv2(self.act(self.conv1(x))))
        return self.fc2(self.act(self.fc1(x.mean((2, 3)))))


def test_a_layer_it_does_not_know_is_left_whole_then_taught_with_one_registration() -> None:
    """Without rules nothing prunes (an einsum, a weight read through a transpose); with
    ``ap.register_layer`` for each type (an elementwise custom autograd function, a Linear
    look-alike, a conv with its own weight layout) every group prunes and shrink is exact — no
    library edit."""
    x = torch.randn(2, 3, 8, 8)
    torch.manual_seed(0)
    model = Taught().eval()
    with pytest.raises(ap.PruningError, match="no prunable channel group"):
        attach_gates(model, keep=0.5, example_inputs=x)
    table = ap.explain(model, example_inputs=x, show=False)
    assert "einsum" in table and "conv1" not in table, table  # conv1 is not even a layer
    ap.register_layer(CustomSwish, ap.ElementwiseRule())
    ap.register_layer(EinsumLinear, ap.LinearRule())
    ap.register_layer(InOutConv, InOutConvRule())
    before = model(x)
    plan = attach_gates(model, keep=0.5, example_inputs=x)
    assert sorted(plan) == ["conv1", "conv2", "fc1"], str(plan)
    assert type(model.fc1).__name__ == "GatedEinsumLinear" and isinstance(model.fc1, AlphaGate)
    torch.testing.assert_close(model(x), before)  # α = 1 changes nothing
    set_alpha(model, 0.0)
    small = shrink(model, example_inputs=x)
    torch.testing.assert_close(small(x), model(x), rtol=1e-5, atol=1e-6)
    assert small.conv1.weight.shape == (3, 6, 3, 3) and small.conv1.out_channels == 6
    assert small.fc1.weight.shape == (8, 5) and small.fc1.in_features == 5
    assert type(small.fc1) is EinsumLinear


def test_register_layer_refuses_what_is_not_a_layer_or_a_rule() -> None:
    with pytest.raises(TypeError, match="not an nn.Module class"):
        ap.register_layer(int, ap.ElementwiseRule())
    with pytest.raises(TypeError, match="not a LayerRule"):
        ap.register_layer(CustomSwish, object())


class Conv1dChain(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(
            nn.Conv1d(2, 12, 5, padding=2),
            nn.BatchNorm1d(12),
            nn.ReLU(),
            nn.Conv1d(12, 8, 3, padding=1),
            nn.BatchNorm1d(8),
            nn.ReLU(),
            nn.Conv1d(8, 2, 1),
        )


def test_conv1d_and_batchnorm1d_prune_exactly_and_gate_on_the_input_axis() -> None:
    """Conv1d support lives in the rules and the gated layers only: the graph reads channels on
    the axis the rule names (axis -2 of a Conv1d input)."""
    torch.manual_seed(0)
    model = Conv1dChain().eval()
    with torch.no_grad():
        for bn in (model[1], model[4]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 2, 40)
    plan = attach_gates(model, keep=0.5)  # the input is guessed from the first Conv1d
    assert sorted(plan) == ["0", "3"]
    gate = model[3]
    assert type(gate).__name__ == "GatedConv1d"
    assert gate._gate_view == [1, -1, 1]
    set_alpha(model, 0.0)
    small = shrink(model, example_inputs=x)
    torch.testing.assert_close(small(x), model(x), rtol=1e-5, atol=1e-6)
    assert small[0].out_channels == 6 and small[1].num_features == 6 and small[3].in_channels == 6
