"""The concrete trace (issue 18, cause 7): shapes are numbers, values stop the trace with their
file and line, and tracing leaves the model as it was."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import alphaprune as ap
from alphaprune.core.graph import analyze

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _x(*size: int, seed: int = 0) -> Tensor:
    return torch.randn(size, generator=torch.Generator().manual_seed(seed))


class ValueBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(x)
        if y.mean() > 0:
            y = F.relu(y)
        return self.conv2(y)


class ItemBranch(ValueBranch):
    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(x)
        scale = y.abs().max().item()
        if scale > 1:
            y = y / scale
        return self.conv2(y)


@pytest.mark.parametrize("factory", [ValueBranch, ItemBranch])
def test_a_branch_on_values_names_the_file_and_line(factory) -> None:
    with pytest.raises(ap.UnsupportedModelError) as info:
        ap.attach_gates(factory(), example_inputs=_x(1, 3, 8, 8))
    message = str(info.value)
    assert "branches on a tensor's values" in message and "test_trace.py:" in message
    assert "if y.mean() > 0:" in message or "if scale > 1:" in message
    assert "Branching on shapes is fine" in message


class Broken(ValueBranch):
    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x)[:, :4])  # conv2 wants 8 channels


def test_any_other_failure_names_the_file_and_line_and_the_input_shape() -> None:
    with pytest.raises(ap.UnsupportedModelError) as info:
        ap.attach_gates(Broken(), example_inputs=_x(1, 3, 8, 8))
    message = str(info.value)
    assert "(1, 3, 8, 8)" in message and "test_trace.py:" in message and "example_inputs" in message


@dataclasses.dataclass
class Output:
    sample: Tensor


class DiffusersLike(nn.Module):
    """A second input with a default, ``torch.is_tensor``/``isinstance`` on it, ``len(t.shape)``
    asserted, a size check, a flag with a default and a dict output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, 16, 3, padding=1)
        self.time = nn.Linear(1, 16)
        self.mid = nn.Conv2d(16, 16, 3, padding=1)
        self.conv_out = nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, sample: Tensor, timestep: Tensor | float = 1.0, return_dict: bool = True):
        if not torch.is_tensor(timestep):
            timestep = torch.tensor([timestep], device=sample.device)
        assert isinstance(timestep, torch.Tensor) and len(timestep.shape) == 1
        if sample.shape[-1] % 4:
            raise ValueError("width must be divisible by 4")
        emb = self.time(timestep.float().view(-1, 1))[:, :, None, None]
        h = F.silu(self.conv_in(sample)) + emb
        h = F.silu(self.mid(h))
        out = self.conv_out(h)
        return {"sample": out} if return_dict else (out,)


def test_shapes_resolve_and_extra_inputs_take_their_defaults() -> None:
    torch.manual_seed(0)
    model = DiffusersLike().eval()
    inputs = (_x(2, 3, 8, 8), torch.tensor([3.0, 7.0]))
    plan = ap.attach_gates(model, keep=0.5, example_inputs=inputs)
    assert sorted(plan) == ["mid", "time"], str(plan)  # time embedding + conv_in: one stream
    ap.set_alpha(model, 0.0)
    small = ap.shrink(model, example_inputs=inputs)
    other = (_x(2, 3, 8, 8, seed=1), torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(small(*other)["sample"], model(*other)["sample"])
    assert small.mid.out_channels == 8


def test_a_missing_input_without_default_is_named() -> None:
    class TwoInputs(DiffusersLike):
        def forward(self, sample: Tensor, timestep: Tensor):  # noqa: D102
            return super().forward(sample, timestep)

    with pytest.raises(ap.UnsupportedModelError, match="timestep"):
        ap.attach_gates(TwoInputs(), example_inputs=_x(1, 3, 8, 8))


class CpuConstant(nn.Module):
    """Makes a CPU tensor in forward: the shape-only (meta) trace cannot mix it with its meta
    activations, so the trace runs on real values instead — same graph."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        offset = torch.tensor(0.5)
        return self.conv2(F.relu(self.conv1(x)) + offset)


def test_the_shape_only_trace_falls_back_to_values_and_leaves_no_trace_on_the_model() -> None:
    torch.manual_seed(0)
    model = CpuConstant().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attributes = set(vars(model))
    shapes_only = analyze(model, _x(1, 3, 8, 8), values=False)
    with_values = analyze(model, _x(1, 3, 8, 8))
    assert shapes_only.example_output is None and with_values.example_output is not None
    assert [g.name for g in shapes_only.groups] == [g.name for g in with_values.groups]
    assert set(vars(model)) == attributes  # no "_tensor_constant0" left behind
    for key, value in model.state_dict().items():
        assert value.device.type == "cpu" and torch.equal(value, before[key]), key


def _wrapped_shape_check(x: Tensor) -> Tensor:
    if x.shape[-1] > 4:  # symbolic fx cannot run this: it is hidden behind torch.fx.wrap
        return F.relu(x)
    return x


torch.fx.wrap("_wrapped_shape_check")


class Wrapped(ValueBranch):
    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(_wrapped_shape_check(self.conv1(x)))


def test_functions_hidden_from_fx_are_traced_into() -> None:
    """A ``torch.fx.wrap``-ed function would be one opaque node (pinning what it reads); the
    concrete trace runs through it, so the conv before it prunes."""
    plan = ap.attach_gates(Wrapped().eval(), example_inputs=_x(1, 3, 8, 8))
    assert list(plan) == ["conv1"]
