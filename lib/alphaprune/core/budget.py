"""Budget mode: choose the keep fraction of every channel group from one FLOPs or params target.

Units of every group are ranked together by their importance normalised within the group (L1 of
the output filters, or |γ|, divided by the group's mean), and removed least important first —
``round_to`` units at a time, never below ``min_keep`` of a group — until the shrunk model's
cost falls to the budget. The cost of each layer is bilinear in its kept input and output
channels (FLOPs and weights of a convolution scale with both), so it is tracked exactly as units
go, with each layer's full cost measured once from a forward pass in the same convention as
:func:`alphaprune.count` (``torch.utils.flop_counter``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from alphaprune.core.graph import ChannelGraph, ChannelGroup, LayerChannels
from alphaprune.core.layer_rules import ChannelwiseRule, GroupNormRule, MixingRule
from alphaprune.errors import PruningError

__all__ = ["check_budget", "budget_masks"]

_KINDS = ("flops", "params")


def check_budget(budget: Mapping[str, float]) -> tuple[str, float]:
    """``{"flops": 0.5}`` or ``{"params": 0.3}`` → (kind, ratio); a ValueError naming what is off."""
    if not isinstance(budget, Mapping) or len(budget) != 1:
        raise PruningError(
            f"budget must be one of {{'flops': r}} or {{'params': r}}, got {budget!r}"
        )
    ((kind, ratio),) = budget.items()
    if kind not in _KINDS:
        raise PruningError(f"budget kind must be 'flops' or 'params', got {kind!r}")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio):
        raise PruningError(f"budget['{kind}'] must be a number in (0, 1), got {ratio!r}")
    if not 0.0 < ratio < 1.0:
        raise PruningError(f"budget['{kind}'] must be in (0, 1), got {ratio!r}")
    return kind, float(ratio)


@dataclass
class _LayerCost:
    """Cost of one layer as a function of its kept inputs/outputs: ``full`` at full width."""

    layer: LayerChannels
    full: float
    bilinear: bool  # scales with kept_in × kept_out (else with kept_out alone)
    kept_in: int
    kept_out: int

    def cost(self) -> float:
        n_in, n_out = len(self.layer.in_vars), len(self.layer.out_vars)
        if self.bilinear:
            return self.full * self.kept_in * self.kept_out / (n_in * n_out)
        return self.full * self.kept_out / n_out


def _layer_flops(graph: ChannelGraph) -> dict[str, float]:
    """FLOPs of every mixing layer on the example input (FlopCounterMode's per-module counts)."""
    model = graph.model
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*[t.clone() for t in graph.example_inputs])
    finally:
        for module, training in modes:
            module.training = training
    per_module = counter.get_flop_counts()
    root = type(model).__name__
    return {
        name: float(sum(per_module.get(f"{root}.{name}", {}).values()))
        for name, layer in graph.layers.items()
        if isinstance(layer.rule, MixingRule)
    }


def _costs(graph: ChannelGraph, kind: str) -> tuple[list[_LayerCost], float]:
    """Per-layer costs that depend on pruning, and the model's total cost at full width."""
    costs = []
    if kind == "flops":
        flops = _layer_flops(graph)
        for name, layer in graph.layers.items():
            if name in flops:
                bilinear = layer.is_consumer  # groups == 1, or grouped pruned by position
                n_in, n_out = len(layer.in_vars), len(layer.out_vars)
                costs.append(_LayerCost(layer, flops[name], bilinear, n_in, n_out))
        return costs, float(sum(flops.values()))
    for layer in graph.layers.values():
        module = layer.module
        n_in, n_out = len(layer.in_vars), len(layer.out_vars)
        if isinstance(layer.rule, MixingRule):
            weight = float(module.weight.numel())
            bias = float(module.bias.numel()) if module.bias is not None else 0.0
            if layer.is_consumer:  # weights scale with kept inputs × kept outputs
                costs.append(_LayerCost(layer, weight, True, n_in, n_out))
                costs.append(_LayerCost(layer, bias, False, n_in, n_out))
            else:
                costs.append(_LayerCost(layer, weight + bias, False, n_in, n_out))
        elif isinstance(layer.rule, (ChannelwiseRule, GroupNormRule)):
            own = float(sum(p.numel() for p in module.parameters(recurse=False)))
            costs.append(_LayerCost(layer, own, False, n_in, n_out))
    total = float(sum(p.numel() for p in graph.model.parameters()))
    return costs, total


def budget_masks(
    graph: ChannelGraph,
    groups: list[ChannelGroup],
    budget: Mapping[str, float],
    scores: Mapping[str, torch.Tensor],
    min_keep: float = 0.1,
    round_to: int = 1,
) -> dict[str, torch.Tensor]:
    """Per group: bool over its units (True = kept) so that the cost ratio meets ``budget``.

    ``scores`` holds each group's unit importance (same order as ``group.units``). Chunks of
    units are removed cheapest first (a chunk's importance relative to its group's mean) until
    the model's cost ratio is at or below the target.
    """
    kind, target = check_budget(budget)
    _check_limits(min_keep, round_to)
    costs, total = _costs(graph, kind)
    if total <= 0:
        raise PruningError(f"the model has no {kind} to budget")
    readers = _costs_by_unit(graph, costs)
    kept = {g.name: torch.ones(len(g.units), dtype=torch.bool) for g in groups}
    done = {g.name: 0 for g in groups}
    pending = sorted(
        _removal_steps(groups, scores, min_keep, round_to), key=lambda step: (step[0], step[2])
    )
    current = total
    while current / total > target and pending:
        # the cheapest chunk whose predecessors in its group are gone
        index = next(i for i, s in enumerate(pending) if s[2] == done[s[1].name])
        _, group, _, chunk = pending.pop(index)
        done[group.name] += 1
        for position in chunk:
            kept[group.name][position] = False
            current += _remove_unit(graph, readers, group.units[position])
    if current / total > target + 0.02:
        raise PruningError(
            f"budget {kind} {target:g} is out of reach: at min_keep={min_keep:g} the model keeps "
            f"{current / total:.3f} of its {kind}"
        )
    return kept


def _check_limits(min_keep: float, round_to: int) -> None:
    if isinstance(min_keep, bool) or not 0.0 < float(min_keep) <= 1.0:
        raise PruningError(f"min_keep must be in (0, 1], got {min_keep!r}")
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise PruningError(f"round_to must be an integer >= 1, got {round_to!r}")


def _costs_by_unit(
    graph: ChannelGraph, costs: list[_LayerCost]
) -> dict[int, list[tuple[_LayerCost, str]]]:
    """For every unit: the layer costs it enters, and on which side (``in`` or ``out``)."""
    readers: dict[int, list[tuple[_LayerCost, str]]] = {}
    for item in costs:
        for side, vars_ in (("in", item.layer.in_vars), ("out", item.layer.out_vars)):
            for unit in set(graph.units(vars_)):
                readers.setdefault(unit, []).append((item, side))
    return readers


def _removal_steps(
    groups: list[ChannelGroup], scores: Mapping[str, torch.Tensor], min_keep: float, round_to: int
) -> list[tuple[float, ChannelGroup, int, list[int]]]:
    """(relative importance, group, position in the group, unit positions): within a group least
    important first, ``round_to`` units at a time, never below ``min_keep`` of the group, never
    a pinned unit (``group.free``)."""
    steps = []
    for group in groups:
        score = scores[group.name].double()
        mean = float(score.mean()) or 1.0
        order = [i for i in torch.argsort(score, stable=True).tolist() if group.free[i]]
        n = len(group.units)
        floor = n - len(order) + max(1, math.ceil(float(min_keep) * len(order)))  # pinned stay
        # kept counts the group may end at: multiples of round_to, at least the floor
        stops = [k for k in range(n - 1, 0, -1) if k % round_to == 0 and k >= floor]
        previous = n
        for position, k in enumerate(stops):
            chunk = order[n - previous : n - k]
            steps.append((float(score[chunk].mean()) / mean, group, position, chunk))
            previous = k
    return steps


def _remove_unit(
    graph: ChannelGraph, readers: dict[int, list[tuple[_LayerCost, str]]], unit: int
) -> float:
    """Take ``unit`` out of every layer cost it enters; returns the change of the total cost."""
    change = 0.0
    for item, side in readers.get(unit, []):
        before = item.cost()
        shared = graph.units(item.layer.in_vars if side == "in" else item.layer.out_vars)
        if side == "in":
            item.kept_in -= shared.count(unit)
        else:
            item.kept_out -= shared.count(unit)
        change += item.cost() - before
    return change
