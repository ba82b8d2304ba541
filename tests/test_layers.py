"""α gates: forward, state-dict round trip, α checks, channel selection and refused structures."""

from __future__ import annotations

import io
from collections import OrderedDict

import pytest
import torch
from torch import nn

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
from alphaprune.graph import UnsupportedModelError
from alphaprune.layers import prunable_layers


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
# AlphaGate
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 0.25, 1.0])
def test_gate_scales_kept_by_one_and_pruned_by_alpha(alpha) -> None:
    mask = torch.tensor([True, False, True, False, False])
    gate = AlphaGate(mask, alpha=alpha)
    x = torch.randn(2, 5, 3, 4)
    y = gate(x)
    assert y.shape == x.shape
    assert torch.equal(y[:, mask], x[:, mask])
    assert torch.allclose(y[:, ~mask], alpha * x[:, ~mask], rtol=0, atol=0)
    assert gate.num_channels == 5 and gate.num_kept == 2
    assert gate.mask.dtype == torch.bool
    assert gate.get_alpha() == alpha


def test_gate_stores_alpha_exactly_and_multiplies_in_input_dtype() -> None:
    gate = AlphaGate(torch.tensor([True, False]), alpha=0.1)
    assert gate.get_alpha() == 0.1  # float64 buffer: the value set is the value read back
    for dtype in (torch.float32, torch.float64):
        x = torch.ones(1, 2, 1, 1, dtype=dtype)
        y = gate(x)
        assert y.dtype == dtype
        assert y[0, 1, 0, 0].item() == torch.tensor(0.1, dtype=dtype).item()


def test_gate_refuses_wrong_channel_count_and_bad_alpha() -> None:
    gate = AlphaGate(torch.tensor([True, False, True]), alpha=0.5, producer="encoder.0")
    with pytest.raises(RuntimeError, match="encoder.0"):
        gate(torch.randn(1, 4, 2, 2))
    for bad in (-0.1, 1.5, float("nan"), float("inf"), "half"):
        with pytest.raises(ValueError, match="alpha"):
            AlphaGate(torch.tensor([True]), alpha=bad)
        with pytest.raises(ValueError, match="alpha"):
            gate.set_alpha(bad)
    assert gate.get_alpha() == 0.5, "a refused set_alpha must leave α unchanged"
    with pytest.raises(ValueError):
        AlphaGate(torch.tensor([], dtype=torch.bool))


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

    assert set(restored) == set(created) == {"encoder.0", "decoder.2"}
    assert set(gates(fresh)) == set(gates(model))
    for name, gate in created.items():
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
    assert get_alpha(model, per_gate=True) == {"1_gate": 0.0, "3_gate": 0.0}
    assert get_alpha(model) == 0.0


def test_get_alpha_raises_when_gates_disagree() -> None:
    model = small_chain()
    created = attach_gates(model, keep=0.5, target="both", alpha=1.0)
    created["2"].set_alpha(0.5)
    with pytest.raises(ValueError, match="disagree"):
        get_alpha(model)
    assert get_alpha(model, per_gate=True) == {"1_gate": 1.0, "3_gate": 0.5}


# ---------------------------------------------------------------------------------------------
# Which channels and which layers
# ---------------------------------------------------------------------------------------------


def test_keep_mapping_gates_only_the_named_convolutions() -> None:
    model = build_autoencoder("relu3_1")
    created = attach_gates(model, keep={"encoder.2": 0.25, "encoder.7": 0.5}, target="encoder")
    assert set(created) == {"encoder.2", "encoder.7"}
    assert created["encoder.2"].num_channels == 64 and created["encoder.2"].num_kept == 16
    assert created["encoder.7"].num_channels == 128 and created["encoder.7"].num_kept == 64
    # the gate sits right after the activation of its convolution
    assert set(gates(model)) == {"encoder.3_gate", "encoder.8_gate"}
    keys = list(model.encoder._modules)
    assert keys.index("3_gate") == keys.index("3") + 1
    assert keys.index("8_gate") == keys.index("8") + 1


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
    l1 = attach_gates(nn.Sequential(*[m for m in model]), keep=0.5, criterion="l1", target="both")
    assert l1["0"].mask.tolist() == [True, False, False, True]
    model_bn = nn.Sequential(*[m for m in model])
    bn = attach_gates(model_bn, keep=0.5, criterion="bn", target="both")
    assert bn["0"].mask.tolist() == [False, True, True, False]


def test_bn_criterion_needs_a_batchnorm_and_criterion_must_be_known() -> None:
    with pytest.raises(ValueError, match="BatchNorm2d after '0'"):
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
    assert all(g.producer != "decoder.8" for g in gates(model).values())
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
    with pytest.raises(ValueError, match="target"):
        attach_gates(small_chain(), keep=0.5, target="middle")
    with pytest.raises(ValueError, match="encoder"):  # a plain Sequential has no .encoder
        attach_gates(small_chain(), keep=0.5, target="encoder")


# ---------------------------------------------------------------------------------------------
# Structures we refuse, with the layer named
# ---------------------------------------------------------------------------------------------


def named_chain(**layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


@pytest.mark.parametrize("where", ["producer", "consumer"])
def test_grouped_convolution_raises_naming_it(where) -> None:
    grouped = nn.Conv2d(4, 4, 3, padding=1, groups=2)
    model = named_chain(
        stem=nn.Conv2d(3, 4, 3, padding=1),
        act=nn.ReLU(),
        grouped=grouped,
        act2=nn.ReLU(),
        head=nn.Conv2d(4, 3, 1),
    )
    keep = {"grouped": 0.5} if where == "producer" else {"stem": 0.5}
    with pytest.raises(UnsupportedModelError, match=r"'grouped'.*groups=2"):
        attach_gates(model, keep=keep, target="both")
    assert gates(model) == {}


def test_shrink_refuses_grouped_consumer_of_hand_placed_gate() -> None:
    model = named_chain(
        stem=nn.Conv2d(3, 4, 3, padding=1),
        gate=AlphaGate(torch.tensor([True, False, True, True]), alpha=0.0),
        grouped=nn.Conv2d(4, 4, 3, padding=1, groups=4),
        head=nn.Conv2d(4, 3, 1),
    )
    with pytest.raises(UnsupportedModelError, match="'grouped'"):
        shrink(model)


def test_module_used_twice_raises_naming_both() -> None:
    shared = nn.Conv2d(4, 4, 3, padding=1)
    nested = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Sequential(shared, nn.ReLU()),
        nn.Sequential(shared, nn.ReLU()),
        nn.Conv2d(4, 3, 1),
    )
    with pytest.raises(UnsupportedModelError, match=r"'3\.0'.*'2\.0'"):
        attach_gates(nested, keep=0.5, target="both")
    # the same object twice in one container (nn.Module.named_children would hide the repeat)
    flat = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), shared, shared, nn.Conv2d(4, 3, 1)
    )
    with pytest.raises(UnsupportedModelError, match=r"'3'.*'2'"):
        attach_gates(flat, keep=0.5, target="both")
    flat_gated = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), AlphaGate(torch.ones(4, dtype=torch.bool)), shared, shared
    )
    with pytest.raises(UnsupportedModelError, match="same module"):
        shrink(flat_gated)


def test_unsupported_module_type_raises_naming_it() -> None:
    model = named_chain(
        stem=nn.Conv2d(3, 4, 3, padding=1),
        squash=nn.Sigmoid(),
        head=nn.Conv2d(4, 3, 1),
    )
    with pytest.raises(UnsupportedModelError, match=r"'squash' \(Sigmoid\)"):
        attach_gates(model, keep=0.5, target="both")

    class Branchy(nn.Module):  # has children but is not a sequential chain
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            return x + self.a(x)

    model = named_chain(stem=nn.Conv2d(3, 4, 1), block=Branchy(), head=nn.Conv2d(4, 3, 1))
    with pytest.raises(UnsupportedModelError, match=r"'block' \(Branchy\)"):
        attach_gates(model, keep=0.5, target="both")


def test_gate_without_consumer_raises_on_shrink() -> None:
    model = named_chain(
        stem=nn.Conv2d(3, 4, 3, padding=1),
        act=nn.ReLU(),
        head=nn.Conv2d(4, 3, 1),
        late=AlphaGate(torch.tensor([True, False, True]), alpha=0.0),
    )
    with pytest.raises(UnsupportedModelError, match=r"'late'.*no consumer"):
        shrink(model)


def test_gate_without_producer_raises_on_shrink() -> None:
    model = named_chain(
        early=AlphaGate(torch.tensor([True, False, True]), alpha=0.0),
        head=nn.Conv2d(3, 3, 1),
    )
    with pytest.raises(UnsupportedModelError, match=r"'early'.*no producing"):
        shrink(model)


def test_batchnorm_between_gate_and_consumer_raises() -> None:
    model = named_chain(
        stem=nn.Conv2d(3, 4, 3, padding=1),
        act=nn.ReLU(),
        pool=nn.MaxPool2d(2),
        norm=nn.BatchNorm2d(4),
        head=nn.Conv2d(4, 3, 1),
    )
    assert prunable_layers(model, "both") == {}
    with pytest.raises(UnsupportedModelError, match=r"'norm' \(BatchNorm2d\)"):
        attach_gates(model, keep=0.5, target="both")
    by_hand = named_chain(
        stem=nn.Conv2d(3, 4, 3, padding=1),
        act=nn.ReLU(),
        gate=AlphaGate(torch.tensor([True, False, True, True]), alpha=0.5),
        norm=nn.BatchNorm2d(4),
        head=nn.Conv2d(4, 3, 1),
    )
    with pytest.raises(UnsupportedModelError, match=r"'gate'.*'norm' \(BatchNorm2d\)"):
        shrink(by_hand)


def test_gate_with_wrong_channel_count_raises_on_shrink() -> None:
    model = named_chain(
        stem=nn.Conv2d(3, 4, 3, padding=1),
        gate=AlphaGate(torch.tensor([True, False, True]), alpha=0.0),
        head=nn.Conv2d(4, 3, 1),
    )
    with pytest.raises(UnsupportedModelError, match=r"'gate' has 3 channels.*'stem' has 4"):
        shrink(model)


def test_gate_at_zero_everywhere_raises_on_shrink() -> None:
    model = small_chain()
    attach_gates(model, masks={"0": torch.zeros(6, dtype=torch.bool)}, target="both", alpha=0.0)
    with pytest.raises(UnsupportedModelError, match="every channel"):
        shrink(model)


def test_boolean_keep_is_refused():
    import alphaprune as ap

    model = ap.build_autoencoder("relu1_1")
    with pytest.raises(ValueError, match="keep must be a number"):
        ap.attach_gates(model, keep=True)
