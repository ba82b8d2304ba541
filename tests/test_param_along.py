"""A parameter wide along several axes (a position embedding) cut with the channels it meets:
read elsewhere first, tied to another module, reloaded from a shrunk state dict."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import alphaprune as ap
from alphaprune.engine.checkpoint import model_from_state


class Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, stride=4)
        self.pos = nn.Parameter(torch.randn(1, 16, 16))
        self.fc1, self.fc2 = nn.Linear(16, 24), nn.Linear(24, 7)

    def stream(self, x: Tensor, pos: Tensor) -> Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2) + pos
        return self.fc2(F.gelu(self.fc1(t))).mean(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.stream(x, self.pos)


class ReadFirst(Tokens):
    """``pos.mean()`` is computed before the add: cutting ``pos`` would change it."""

    def forward(self, x: Tensor) -> Tensor:
        m = self.pos.mean()
        return self.stream(x, self.pos) + m


class Holder(nn.Module):
    def __init__(self, pos: nn.Parameter) -> None:
        super().__init__()
        self.pos = pos


class Tied(Tokens):
    """``pos`` is held by two modules; the forward reads it through the second one."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = Holder(self.pos), Holder(self.pos)

    def forward(self, x: Tensor) -> Tensor:
        return self.stream(x, self.b.pos)


def _shrunk(model: nn.Module) -> tuple[nn.Module, Tensor]:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    ap.attach_gates(model, keep=0.5, target="all", example_inputs=(x,))
    ap.set_alpha(model, 0.0)
    return ap.shrink(model, example_inputs=(x,)), torch.randn(2, 3, 16, 16)


def test_a_parameter_read_before_it_meets_channels_is_left_whole_at_plan_time() -> None:
    torch.manual_seed(0)
    model = ReadFirst().eval()
    plan = ap.explain(model, example_inputs=(torch.randn(2, 3, 16, 16),), show=False)
    assert "pos" in plan and "left whole" in plan
    small, y = _shrunk(model)
    assert small.pos.shape == (1, 16, 16)
    torch.testing.assert_close(small(y), model(y))


def test_a_tied_parameter_is_left_whole_at_plan_time() -> None:
    torch.manual_seed(0)
    model = Tied().eval()
    small, y = _shrunk(model)
    assert small.b.pos.shape == (1, 16, 16)
    torch.testing.assert_close(small(y), model(y))


def test_a_cut_position_embedding_reloads_into_a_fresh_model() -> None:
    torch.manual_seed(0)
    model = Tokens().eval()
    small, y = _shrunk(model)
    assert small.pos.shape == (1, 16, 8)
    fresh = model_from_state({}, small.state_dict(), model=Tokens().eval())
    with torch.no_grad():
        torch.testing.assert_close(fresh(y), small(y))
