"""Budget mode: choose the keep fraction of every channel group from one FLOPs, params or latency
target.

Units of every group are ranked together by their importance normalised within the group (L1 of
the output filters, or |γ|, divided by the group's mean), and removed least important first —
``round_to`` units at a time, never below ``min_keep`` of a group — until the shrunk model's
cost falls to the budget. The cost of each layer is bilinear in its kept input and output
channels (FLOPs and weights of a convolution scale with both), so it is tracked exactly as units
go, with each layer's full cost measured once from a forward pass in the same convention as
:func:`alphaprune.count` (``torch.utils.flop_counter``).

A ``latency`` budget uses the same ranking with each layer's cost from
:mod:`alphaprune.core.latency`: tables timed on the target device, fitted and calibrated on
measured anchors. The chosen model is then measured; when it misses the target by more than the
tolerance, the internal target is corrected and the choice made again (NetAdapt's measure-and-
adjust), at most ``attempts`` times. :class:`BudgetReport` tells predicted and measured ratios.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from alphaprune.core.graph import ChannelGraph, ChannelGroup, LayerChannels
from alphaprune.core.latency import (
    ANCHORS,
    LatencyModel,
    LatencyOptions,
    build_latency_model,
    check_latency_options,
    kept_channels,
    measure_pruned,
    measure_ratio,
)
from alphaprune.core.layer_rules import ChannelwiseRule, GroupNormRule, MixingRule
from alphaprune.core.modes import eval_mode
from alphaprune.errors import PruningError

__all__ = ["BudgetReport", "check_budget", "budget_masks", "keep_one_per_owner", "plan_budget"]

KINDS = ("flops", "params", "latency")


def check_budget(budget: Mapping[str, float]) -> tuple[str, float]:
    """``{"flops": 0.5}``, ``{"params": 0.3}`` or ``{"latency": 0.5}`` → (kind, ratio); a
    :class:`PruningError` naming what is off."""
    shown = " or ".join(f"{{'{k}': r}}" for k in KINDS)
    if not isinstance(budget, Mapping) or len(budget) != 1:
        raise PruningError(f"budget must be one of {shown}, got {budget!r}")
    ((kind, ratio),) = budget.items()
    if kind not in KINDS:
        raise PruningError(f"budget kind must be one of {KINDS}, got {kind!r}")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio):
        raise PruningError(f"budget['{kind}'] must be a number in (0, 1), got {ratio!r}")
    if not 0.0 < ratio < 1.0:
        raise PruningError(f"budget['{kind}'] must be in (0, 1), got {ratio!r}")
    return kind, float(ratio)


@dataclass
class BudgetReport:
    """What a budget chose: its ``kind`` and ``target`` ratio, the ``predicted`` ratio of the
    chosen model (exact for FLOPs and params) and, for latency, the ``measured`` ratio (shrunk /
    original, one interleaved run) with its milliseconds, the measurement ``conditions``, every
    candidate tried (``attempts``), the latency table (``table``: file, widths timed and read from
    the cache, seconds), the calibration and each layer's predicted milliseconds (``layers``)."""

    kind: str
    target: float
    predicted: float
    measured: float | None = None
    #: half-width (95 %) of the measured ratio, from the spread of its per-round ratios
    spread: float | None = None
    latency_ms: dict[str, float] | None = None
    conditions: dict[str, Any] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    table: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    layers: list[dict[str, Any]] = field(default_factory=list)

    def met(self, tolerance: float = 0.02) -> bool:
        """Whether the budget was met: the measured ratio within ``tolerance`` of the target,
        or within its own measurement spread (latency); else the predicted ratio at most 0.02
        above it."""
        if self.measured is not None:
            return abs(self.measured - self.target) <= max(tolerance, self.spread or 0.0)
        return self.predicted <= self.target + 0.02

    def summary(self) -> str:
        """One paragraph: target, predicted and measured ratio, conditions, table."""
        text = f"budget {self.kind} {self.target:g}: predicted ratio {self.predicted:.3f}"
        if self.measured is not None and self.latency_ms:
            spread = f" ± {self.spread:.3f}" if self.spread is not None else ""
            text += (
                f", measured {self.measured:.3f}{spread} ({self.latency_ms['pruned']:.2f} ms / "
                f"{self.latency_ms['original']:.2f} ms)"
            )
        if self.conditions:
            c = self.conditions
            sizes = ", ".join("×".join(map(str, s)) for s in c.get("input_size", []))
            text += (
                f"\n  on {c.get('device')} ({c.get('device_name')}), {c.get('runtime')}, "
                f"{c.get('threads')} thread(s), input {sizes}; {len(self.attempts)} candidate(s)"
            )
        if self.table:
            t = self.table
            text += (
                f"\n  latency table: {t['timed']} layer widths timed, {t['cached']} from the "
                f"cache, {t['seconds']:.1f} s ({t['path'] or 'not cached'})"
            )
        return text

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able data."""
        return {
            "kind": self.kind,
            "target": self.target,
            "predicted": self.predicted,
            "measured": self.measured,
            "spread": self.spread,
            "latency_ms": self.latency_ms,
            "conditions": self.conditions,
            "attempts": self.attempts,
            "table": self.table,
            "calibration": self.calibration,
            "layers": self.layers,
        }


@dataclass
class _LayerCost:
    """Cost of one layer as a function of its kept inputs/outputs: ``full`` at full width."""

    layer: LayerChannels
    full: float
    bilinear: bool  # scales with kept_in × kept_out (else with kept_out alone)
    kept_in: int
    kept_out: int
    fitted: Callable[[int, int], float] | None = None  # a latency model's cost of the layer

    def cost(self) -> float:
        if self.fitted is not None:
            return self.fitted(self.kept_in, self.kept_out)
        n_in, n_out = len(self.layer.in_vars), len(self.layer.out_vars)
        if self.bilinear:
            return self.full * self.kept_in * self.kept_out / (n_in * n_out)
        return self.full * self.kept_out / n_out


def _layer_flops(graph: ChannelGraph) -> dict[str, float]:
    """FLOPs of every mixing layer on the example input (FlopCounterMode's per-module counts)."""
    model = graph.model
    with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*[t.clone() for t in graph.example_inputs])
    per_module = counter.get_flop_counts()
    root = type(model).__name__
    return {
        name: float(sum(per_module.get(f"{root}.{name}", {}).values()))
        for name, layer in graph.layers.items()
        if isinstance(layer.rule, MixingRule)
    }


def _costs(graph: ChannelGraph, kind: str) -> tuple[list[_LayerCost], float]:
    """Per-layer costs that depend on pruning, and the cost that does not (the rest of the
    model's total at full width)."""
    costs = []
    if kind == "flops":
        flops = _layer_flops(graph)
        for name, layer in graph.layers.items():
            if name in flops:
                bilinear = layer.is_consumer  # groups == 1, or grouped pruned by position
                n_in, n_out = len(layer.in_vars), len(layer.out_vars)
                costs.append(_LayerCost(layer, flops[name], bilinear, n_in, n_out))
        return costs, 0.0
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
    return costs, total - sum(item.cost() for item in costs)


def plan_budget(
    graph: ChannelGraph,
    groups: list[ChannelGroup],
    budget: Mapping[str, float],
    scores: Mapping[str, torch.Tensor],
    min_keep: float = 0.1,
    round_to: int = 1,
    latency: LatencyOptions | Mapping[str, Any] | None = None,
) -> tuple[dict[str, torch.Tensor], BudgetReport]:
    """Per group: bool over its units (True = kept) so that the cost ratio meets ``budget``, and
    the :class:`BudgetReport` of that choice.

    ``scores`` holds each group's unit importance (same order as ``group.units``). Chunks of
    units are removed cheapest first (a chunk's importance relative to its group's mean) until
    the model's cost ratio is at or below the target. ``latency``: the
    :class:`~alphaprune.core.latency.LatencyOptions` of a latency budget.
    """
    kind, target = check_budget(budget)
    _check_limits(min_keep, round_to)
    if kind == "latency":
        options = check_latency_options(latency)
        return _latency_plan(graph, groups, scores, target, min_keep, round_to, options)
    if latency is not None:
        raise PruningError(f"latency options are for a latency budget, not {kind!r}")
    costs, constant = _costs(graph, kind)
    if constant + sum(item.cost() for item in costs) <= 0:
        raise PruningError(f"the model has no {kind} to budget")
    kept, ratio = _greedy(graph, groups, scores, costs, constant, target, min_keep, round_to)
    _check_reached(kind, target, ratio, _limits(groups, min_keep, round_to))
    return kept, BudgetReport(kind, target, ratio)


def budget_masks(
    graph: ChannelGraph,
    groups: list[ChannelGroup],
    budget: Mapping[str, float],
    scores: Mapping[str, torch.Tensor],
    min_keep: float = 0.1,
    round_to: int = 1,
    latency: LatencyOptions | Mapping[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """The masks of :func:`plan_budget` alone."""
    return plan_budget(graph, groups, budget, scores, min_keep, round_to, latency)[0]


def _check_reached(kind: str, target: float, ratio: float, limits: str) -> None:
    """A PruningError when ``ratio`` misses ``target``, naming the ``limits`` that stopped it."""
    if ratio > target + 0.02:
        raise PruningError(
            f"budget {kind} {target:g} is out of reach: at {limits} the model keeps "
            f"{ratio:.3f} of its {kind}"
        )


def _greedy(
    graph: ChannelGraph,
    groups: list[ChannelGroup],
    scores: Mapping[str, torch.Tensor],
    costs: list[_LayerCost],
    constant: float,
    target: float,
    min_keep: float,
    round_to: int,
) -> tuple[dict[str, torch.Tensor], float]:
    """Remove chunks of units, least important first, until the cost ratio is at or below
    ``target`` (or nothing more may go); the masks and the ratio reached."""
    readers = _costs_by_unit(graph, costs)
    kept = {g.name: torch.ones(len(g.units), dtype=torch.bool) for g in groups}
    done = {g.name: 0 for g in groups}
    pending = sorted(
        _removal_steps(groups, scores, min_keep, round_to), key=lambda step: (step[0], step[2])
    )
    total = constant + sum(item.cost() for item in costs)
    current = total
    while current / total > target and pending:
        # the cheapest chunk whose predecessors in its group are gone
        index = next(i for i, s in enumerate(pending) if s[2] == done[s[1].name])
        _, group, _, chunk = pending.pop(index)
        done[group.name] += 1
        for position in chunk:
            kept[group.name][position] = False
            current += _remove_unit(graph, readers, group.units[position])
    return kept, current / total


def keep_one_per_owner(
    graph: ChannelGraph, group: ChannelGroup, mask: torch.Tensor, scores: torch.Tensor
) -> None:
    """A group can span several producers (a depthwise conv after a concat joins them): each
    keeps at least its most important unit, so no layer loses every channel; so does each set
    the graph needs non-empty (the last piece of a split by a fixed size). In place."""
    position = {u: i for i, u in enumerate(group.units)}
    sets = [set(graph.units(graph.layers[name].out_vars)) for name in group.owners]
    for units in sets + graph.nonempty:
        mine = [position[u] for u in units if u in position]
        if mine and not mask[mine].any():
            mask[max(mine, key=lambda i: float(scores[i]))] = True


# -- latency ---------------------------------------------------------------------------------------


def _dead(
    graph: ChannelGraph,
    groups: list[ChannelGroup],
    kept: Mapping[str, torch.Tensor],
    scores: Mapping[str, torch.Tensor],
) -> set[int]:
    """The units ``kept`` removes, after :func:`keep_one_per_owner` (as attach_gates applies it)."""
    dead = set()
    for group in groups:
        mask = kept[group.name].clone()
        keep_one_per_owner(graph, group, mask, scores[group.name])
        dead.update(u for u, k in zip(group.units, mask.tolist(), strict=True) if not k)
    return dead


def _uniform(
    graph: ChannelGraph,
    groups: list[ChannelGroup],
    scores: Mapping[str, torch.Tensor],
    keep: float,
) -> set[int]:
    """Dead units when every group keeps its ``keep`` most important units (a calibration anchor)."""
    kept = {}
    for group in groups:
        order = torch.argsort(scores[group.name].double(), descending=True, stable=True)
        mask = torch.zeros(len(group.units), dtype=torch.bool)
        mask[order[: max(1, round(keep * len(group.units)))]] = True
        kept[group.name] = mask
    return _dead(graph, groups, kept, scores)


def _latency_costs(graph: ChannelGraph, model: LatencyModel) -> list[_LayerCost]:
    costs = []
    for name in model.fits:
        layer = graph.layers[name]
        n_in, n_out = len(layer.in_vars), len(layer.out_vars)

        def fitted(kept_in: int, kept_out: int, name=name, n_in=n_in, n_out=n_out) -> float:
            fit = model.fits[name]  # channel variables → the layer's channels
            return model.layer_ms(name, kept_in * fit.n_in / n_in, kept_out * fit.n_out / n_out)

        costs.append(_LayerCost(layer, 0.0, False, n_in, n_out, fitted=fitted))
    return costs


def _calibrated_model(graph, groups, scores, options: LatencyOptions) -> LatencyModel:
    """The latency model of ``graph.model``: tables, fits, then the measured anchors."""
    prunable = {u for group in groups for u in group.units}
    model = build_latency_model(graph, prunable, options)
    anchors = {"original": set()}
    anchors.update({f"uniform {u:g}": _uniform(graph, groups, scores, u) for u in ANCHORS})
    measured = measure_pruned(graph, anchors, options)
    model.calibrate(measured, {name: kept_channels(graph, dead) for name, dead in anchors.items()})
    return model


def _next_goal(attempts: list[dict[str, Any]], target: float) -> float:
    """The internal target of the next candidate: where a straight line through every (goal →
    measured) pair so far (least squares: several noisy measurements average out) meets the
    target; a proportional correction after the first, or when the line does not rise."""
    last = attempts[-1]
    goal = last["goal"] * target / last["measured"]
    if len(attempts) >= 2:
        goals = [a["goal"] for a in attempts]
        measured = [a["measured"] for a in attempts]
        mean_g, mean_m = sum(goals) / len(goals), sum(measured) / len(measured)
        var = sum((g - mean_g) ** 2 for g in goals)
        cov = sum((g - mean_g) * (m - mean_m) for g, m in zip(goals, measured, strict=True))
        slope = cov / var if var > 0 else 0.0
        if slope > 0.05:
            goal = mean_g + (target - mean_m) / slope
    return min(max(goal, 0.01), 0.999)


# long: one loop — choose at the goal, measure, correct — reads best in one piece
def _latency_plan(
    graph: ChannelGraph,
    groups: list[ChannelGroup],
    scores: Mapping[str, torch.Tensor],
    target: float,
    min_keep: float,
    round_to: int,
    options: LatencyOptions,
) -> tuple[dict[str, torch.Tensor], BudgetReport]:
    model = _calibrated_model(graph, groups, scores, options)
    if not model.predict_ms({}) > 0:
        raise PruningError("the model's latency was measured as 0 ms: nothing to budget")
    attempts: list[dict[str, Any]] = []
    chosen: list[tuple[dict[str, torch.Tensor], set[int]]] = []
    goal = target
    for _ in range(options.attempts if options.measure else 1):
        costs = _latency_costs(graph, model)
        kept, predicted = _greedy(
            graph, groups, scores, costs, model.constant, goal, min_keep, round_to
        )
        dead = _dead(graph, groups, kept, scores)
        predicted = model.predict_ms(kept_channels(graph, dead)) / model.predict_ms({})
        if not attempts:  # aiming at the target itself: the model says it cannot be reached
            _check_reached("latency", target, predicted, _limits(groups, min_keep, round_to))
        attempt: dict[str, Any] = {"goal": goal, "predicted": predicted}
        attempts.append(attempt)
        chosen.append((kept, dead))
        if not options.measure:
            break
        ms = measure_ratio(graph, dead, options)
        attempt.update(
            measured=ms["ratio"],
            original_ms=ms["original_ms"],
            pruned_ms=ms["pruned_ms"],
            rounds=ms["rounds"],
            spread=ms["spread"],
        )
        if _close_enough(attempt["measured"] - target, ms["spread"], options.tolerance):
            break
        goal = _next_goal(attempts, target)
        if any(abs(goal - a["goal"]) < 1e-4 for a in attempts):
            break
    best = min(
        range(len(attempts)),
        key=lambda i: abs(attempts[i].get("measured", attempts[i]["predicted"]) - target),
    )
    kept, dead = chosen[best]
    final = attempts[best]
    report = _latency_report(graph, model, target, attempts, final, dead)
    if not report.met(options.tolerance):
        print(
            f"warning: latency budget {target:g} missed: measured ratio {report.measured:.3f} "
            f"± {report.spread:.3f} after {len(attempts)} candidate(s) (tolerance "
            f"{options.tolerance:g}); is the machine loaded? (plan.budget.attempts has each "
            "measurement)"
        )
    return kept, report


def _close_enough(miss: float, spread: float, tolerance: float) -> bool:
    """Stop measuring candidates: on target, or as close as a *precise* measurement can tell.
    A wide spread (a loaded machine: ± 0.07 was seen) does not stop the search, else a biased
    first candidate (measured 0.43 for 0.5, twice) would be kept as "within the noise"."""
    return abs(miss) <= tolerance or (abs(miss) <= spread and spread <= 2 * tolerance)


def _latency_report(graph, model: LatencyModel, target, attempts, final, dead) -> BudgetReport:
    kept = kept_channels(graph, dead)
    layers = []
    for name, fit in model.fits.items():
        n_in, n_out = kept.get(name, (fit.n_in, fit.n_out))
        layers.append(
            {
                "layer": name,
                "channels_in": fit.n_in,
                "channels_out": fit.n_out,
                "kept_in": n_in,
                "kept_out": n_out,
                "full_ms": model.layer_ms(name, fit.n_in, fit.n_out),
                "kept_ms": model.layer_ms(name, n_in, n_out),
            }
        )
    measured = final.get("measured")
    return BudgetReport(
        kind="latency",
        target=target,
        predicted=final["predicted"],
        measured=measured,
        spread=final.get("spread"),
        latency_ms=(
            {"original": final["original_ms"], "pruned": final["pruned_ms"]}
            if measured is not None
            else None
        ),
        conditions=model.conditions,
        attempts=attempts,
        table={
            "path": model.table_path,
            "timed": model.timed,
            "cached": model.cached,
            "seconds": model.seconds,
        },
        calibration={
            "scale": model.scale,
            "per_element_ms": model.per_element,
            "constant_ms": model.constant,
            "anchors": model.anchors,
        },
        layers=layers,
    )


def _limits(groups: list[ChannelGroup], min_keep: float, round_to: int) -> str:
    """The limits that stopped a budget, ``round_to`` first when it is what stops it."""
    largest = max((len(g.units) for g in groups), default=0)
    if round_to >= largest:
        return (
            f"round_to={round_to} (no group has more than {largest} units, so none can lose "
            f"{round_to} at a time)"
        )
    extra = f" and round_to={round_to}" if round_to > 1 else ""
    return f"min_keep={min_keep:g}{extra}"


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
