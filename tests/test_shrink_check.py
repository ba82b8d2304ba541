"""The report's shrink check blames the shrinking only for what shrinking did (issue 20): the
difference is judged relative to the size of the outputs, and non-finite outputs are named as
the model's problem."""

from __future__ import annotations

import pytest
import torch

import alphaprune as ap
from alphaprune.report.tables import shrink_check


def gated_autoencoder(scale: float) -> torch.nn.Module:
    torch.manual_seed(0)
    model = ap.build_autoencoder("relu2_1")
    ap.attach_gates(model, keep=0.5, example_inputs=torch.zeros(1, 3, 32, 32), alpha=0.0)
    with torch.no_grad():
        model.decoder[-1].weight.mul_(scale)
        model.decoder[-1].bias.mul_(scale)
    return model.eval()


def test_huge_outputs_do_not_fail_the_shrink_check():
    model = gated_autoencoder(1e9)
    check = shrink_check(model, ap.shrink(model), 32, tolerance=1e-4).iloc[0]
    assert check["output_scale"] > 1e6 and check["max_abs_diff"] > 1e-4  # float rounding …
    assert bool(check["passed"]) and check["relative_diff"] < 1e-4  # … at that scale


def test_a_real_difference_still_fails_it():
    model = gated_autoencoder(1.0)
    small = ap.shrink(model)
    with torch.no_grad():
        small.decoder[-1].bias.add_(0.01)
    assert not bool(shrink_check(model, small, 32, tolerance=1e-4)["passed"][0])


def test_non_finite_outputs_are_named_as_the_models_problem():
    model = gated_autoencoder(float("inf"))
    with pytest.raises(ap.UnsupportedModelError, match="gated model's own output is not finite"):
        ap.shrink(model)
    small = ap.shrink(model, verify=False)
    with pytest.raises(ValueError, match="the model itself is broken"):
        shrink_check(model, small, 32, tolerance=1e-4)
