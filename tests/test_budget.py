"""Budget mode: one FLOPs or params target sets every group's keep fraction."""

from __future__ import annotations

import pytest
import torch

import alphaprune as ap
from alphaprune.engine.config import ConfigError, config_from_dict

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def shrunk_ratio(model, kind: str, size: tuple[int, ...]) -> float:
    small = ap.shrink(model)
    return ap.count(small, size)[kind] / ap.count(model, size)[kind]


@pytest.mark.heavy
@pytest.mark.parametrize("kind, ratio", [("flops", 0.5), ("params", 0.3)])
def test_vgg_budget_lands_within_two_percent(kind, ratio) -> None:
    torch.manual_seed(0)
    model = ap.build_autoencoder("relu3_1")
    plan = ap.attach_gates(model, budget={kind: ratio}, target="both", alpha=0.0)
    got = shrunk_ratio(model, kind, (1, 3, 64, 64))
    assert ratio - 0.01 <= got <= ratio + 0.01, got
    keeps = {name: group.num_kept / group.num_channels for name, group in plan.items()}
    assert len(set(keeps.values())) > 3, "a global ranking gives layers different keep fractions"


def test_budget_respects_min_keep_and_round_to_on_a_unet() -> None:
    torch.manual_seed(0)
    model = ap.build_unet(width=16, depth=2)
    plan = ap.attach_gates(model, budget={"flops": 0.3}, min_keep=0.25, round_to=4, alpha=0.0)
    for name, group in plan.items():
        assert group.num_kept % 4 == 0 or group.num_kept == group.num_channels, name
        assert group.num_kept >= 0.25 * group.num_channels, name
    assert shrunk_ratio(model, "flops", (1, 3, 32, 32)) <= 0.3 + 0.02


@pytest.mark.parametrize(
    "budget, message",
    [
        ({"flops": 1.2}, r"budget\['flops'\] must be in \(0, 1\)"),
        ({"energy": 0.5}, "budget kind"),
        ({"flops": 0.5, "params": 0.5}, "budget must be one of"),
        ({"flops": float("nan")}, "must be a number"),
    ],
)
def test_bad_budgets_are_refused(budget, message) -> None:
    with pytest.raises(ValueError, match=message):
        ap.attach_gates(ap.build_autoencoder("relu1_1"), budget=budget)


def test_budget_out_of_reach_says_so() -> None:
    with pytest.raises(ValueError, match="out of reach"):
        ap.attach_gates(ap.build_autoencoder("relu2_1"), budget={"params": 0.01}, min_keep=0.5)


def test_budget_in_the_experiment_config() -> None:
    cfg = config_from_dict({"pruning": {"budget": {"flops": 0.5}, "round_to": 8}})
    assert cfg.pruning.budget == {"flops": 0.5} and cfg.pruning.round_to == 8
    with pytest.raises(ConfigError, match="pruning.budget"):
        config_from_dict({"pruning": {"budget": {"flops": 0.5, "params": 0.2}}})
    with pytest.raises(ConfigError, match="pruning.round_to"):
        config_from_dict({"pruning": {"round_to": 0}})
