"""``eval_mode``: a model runs in eval mode and every module gets its own training flag back,
in core (analysis, counting) and in evaluation alike."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import alphaprune as ap
from alphaprune.core.modes import eval_mode
from alphaprune.engine.evaluate import evaluate_items, reconstruct

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def mixed() -> nn.Module:
    """An autoencoder in training mode whose BatchNorms a training loop keeps in eval mode."""
    torch.manual_seed(0)
    model = ap.build_autoencoder("relu2_1", batch_norm=True).train()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()
    return model


def flags(model: nn.Module) -> list[bool]:
    return [module.training for module in model.modules()]


def test_flags_come_back_exactly():
    model = mixed()
    before = flags(model)
    assert any(before) and not all(before)
    with eval_mode(model) as inside:
        assert inside is model and not any(flags(model))
    assert flags(model) == before


def test_flags_come_back_when_the_body_raises():
    model = mixed()
    before = flags(model)
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        raise RuntimeError("boom")
    assert flags(model) == before


@pytest.mark.heavy
@pytest.mark.parametrize(
    "use",
    [
        lambda m: ap.count(m, (1, 3, 16, 16)),
        lambda m: ap.analyze(m, example_inputs=torch.rand(1, 3, 16, 16)),
        lambda m: ap.shrink(m, example_inputs=torch.rand(1, 3, 16, 16)),
        lambda m: evaluate_items(m, torch.rand(2, 3, 16, 16)),
        lambda m: reconstruct(m, torch.rand(3, 16, 16)),
    ],
    ids=["count", "analyze", "shrink", "evaluate_items", "reconstruct"],
)
def test_core_and_evaluation_leave_every_flag_as_it_was(use):
    model = mixed()
    ap.attach_gates(model, keep=0.5, alpha=0.0, example_inputs=torch.rand(1, 3, 16, 16))
    before = flags(model)
    use(model)
    assert flags(model) == before
