"""Torch-Pruning's importances as alphaprune criteria: registered by name, the same channels as
Torch-Pruning's own ranking, usable in budget mode, data-driven ones refuse a blank input."""

from __future__ import annotations

import pytest
import torch

import alphaprune as ap
from alphaprune.core.criteria import criterion_names
from alphaprune.errors import PruningError
from alphaprune.study.peers import TP_CRITERIA

tp = pytest.importorskip("torch_pruning")  # the 'compare' extra; CI installs it


def _model(batch_norm: bool = False):
    torch.manual_seed(0)
    return ap.build_autoencoder("relu2_1", batch_norm=batch_norm)


def test_the_criteria_are_registered_and_valid_in_configs():
    from alphaprune.engine.config import config_from_dict

    assert set(TP_CRITERIA) <= set(criterion_names())
    assert (
        config_from_dict({"pruning": {"criterion": "tp_taylor"}}).pruning.criterion == "tp_taylor"
    )


@pytest.mark.parametrize("name, importance", [("tp_magnitude", "GroupMagnitudeImportance")])
def test_the_channels_kept_are_torch_prunings_top_ranked(name, importance):
    model = _model()
    x = torch.rand(2, 3, 32, 32)
    reference = _model()
    dg = tp.DependencyGraph().build_dependency(reference, example_inputs=x, verbose=False)
    conv = reference.encoder[2]
    group = dg.get_pruning_group(conv, tp.prune_conv_out_channels, list(range(64)))
    scores = getattr(tp.importance, importance)(p=2)(group)
    want = set(torch.argsort(scores, descending=True)[:32].tolist())
    plan = ap.attach_gates(model, keep={"encoder.2": 0.5}, criterion=name, example_inputs=x)
    assert set(torch.nonzero(plan["encoder.2"].mask).flatten().tolist()) == want


@pytest.mark.slow  # > 5 s on a busy machine: out of the unit tier, in make test
def test_taylor_uses_gradients_of_the_reconstruction_and_leaves_none_behind():
    x = torch.rand(4, 3, 32, 32)
    taylor = ap.attach_gates(_model(), keep=0.5, criterion="tp_taylor", example_inputs=x)
    magnitude = ap.attach_gates(_model(), keep=0.5, criterion="tp_magnitude", example_inputs=x)
    assert any(
        not torch.equal(taylor[k].mask, magnitude[k].mask) for k in taylor
    )  # another ranking
    model = _model()
    ap.attach_gates(
        model, budget={"flops": 0.5}, criterion="tp_taylor", target="all", example_inputs=x
    )
    assert all(p.grad is None for p in model.parameters())
    shrunk = ap.count(ap.shrink((ap.set_alpha(model, 0.0), model)[1]), (1, 3, 32, 32))
    assert shrunk["flops"] / ap.count(_model(), (1, 3, 32, 32))["flops"] <= 0.52
    with pytest.raises(PruningError, match="real calibration images"):
        ap.attach_gates(
            _model(), keep=0.5, criterion="tp_taylor", example_inputs=torch.zeros(1, 3, 32, 32)
        )


def test_bn_scale_needs_batch_norms():
    x = torch.rand(2, 3, 32, 32)
    plan = ap.attach_gates(
        _model(batch_norm=True), keep=0.5, criterion="tp_bn_scale", example_inputs=x
    )
    assert len(plan) > 0
    with pytest.raises(PruningError, match="nothing to score"):
        ap.attach_gates(_model(), keep=0.5, criterion="tp_bn_scale", example_inputs=x)
