"""Pruning criteria: the registry, the built-in ``random`` control and users' own criteria."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import alphaprune as ap
from alphaprune.core.criteria import CRITERIA, criterion_names, register_criterion
from alphaprune.engine.config import ConfigError, config_from_dict
from alphaprune.errors import PruningError


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 3, 1),
    )


def _kept(model: nn.Module, criterion, seed: int = 0) -> dict[str, list[bool]]:
    torch.manual_seed(seed)
    plan = ap.attach_gates(model, keep=0.5, criterion=criterion)
    return {name: group.mask.tolist() for name, group in plan.items()}


def test_random_is_reproducible_under_the_seed_and_differs_across_seeds() -> None:
    first, again = _kept(_net(), "random", seed=3), _kept(_net(), "random", seed=3)
    other = _kept(_net(), "random", seed=4)
    assert first == again
    assert first != other
    assert first != _kept(_net(), "l1")  # not the L1 choice in disguise


def test_random_does_not_shift_the_global_generator() -> None:
    model = _net()
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    ap.attach_gates(model, keep=0.5, criterion="random")
    assert torch.equal(torch.rand(3), expected)


def test_a_registered_criterion_chooses_the_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        CRITERIA, "first_half", lambda graph, group: -torch.arange(len(group.units))
    )
    kept = _kept(_net(), "first_half")
    for mask in kept.values():
        n = len(mask)
        assert mask == [True] * (n // 2) + [False] * (n - n // 2)
    # a callable works without registering it too
    assert _kept(_net(), CRITERIA["first_half"]) == kept


def test_a_criterion_with_the_wrong_number_of_scores_is_refused() -> None:
    with pytest.raises(PruningError, match="gave 2 scores"):
        ap.attach_gates(_net(), keep=0.5, criterion=lambda graph, group: torch.ones(2))


def test_unknown_criterion_names_the_registered_ones() -> None:
    with pytest.raises(PruningError, match=r"'l1'.*'random'"):
        ap.attach_gates(_net(), criterion="l2")
    with pytest.raises(PruningError, match="callable"):
        register_criterion("bad", "not a function")


def test_the_config_takes_any_registered_criterion(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_from_dict({"pruning": {"criterion": "random"}}).pruning.criterion == "random"
    with pytest.raises(ConfigError, match="pruning.criterion: unknown criterion 'l2'"):
        config_from_dict({"pruning": {"criterion": "l2"}})
    monkeypatch.setitem(CRITERIA, "mine", CRITERIA["l1"])
    assert "mine" in criterion_names()
    assert config_from_dict({"pruning": {"criterion": "mine"}}).pruning.criterion == "mine"
