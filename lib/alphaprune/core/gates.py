"""α gates on a whole model: plan which channels to prune, gate them, set and read α.

A pruned channel is multiplied by α wherever it is *consumed*: the gate scales the consumer's
weight along its input-channel axis (the gated layers are in :mod:`alphaprune.core.gated_layers`).
That is exactly ``consumer(scale ⊙ x)``, costs channels×kernel work instead of a pass over the
activations, and never sits in front of a BatchNorm (which would turn a zeroed channel into a
constant). At α = 0 no layer reads the pruned channels any more, so
:func:`alphaprune.core.shrink.shrink` can cut them out of every producer, norm and consumer of
their group. Which channels go is decided per group by a criterion
(:mod:`alphaprune.core.criteria`) and a keep fraction or a budget (:mod:`alphaprune.core.budget`).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from alphaprune.core.budget import BudgetReport, keep_one_per_owner, plan_budget
from alphaprune.core.criteria import Criterion, unit_importance
from alphaprune.core.gated_layers import (
    ALPHA_KEY,
    MASK_KEY,
    AlphaGate,
    check_alpha,
    gate_layer,
    gateable,
    ungate_layer,
)
from alphaprune.core.graph import ChannelGraph, ChannelGroup, UnsupportedModelError, analyze
from alphaprune.core.layer_rules import MixingRule, rule_for
from alphaprune.errors import PruningError

__all__ = [
    "AlphaGate",
    "GatingPlan",
    "attach_gates",
    "check_alpha",
    "check_keep",
    "explain",
    "gates",
    "get_alpha",
    "migrate_state_dict",
    "prunable_layers",
    "restore_gates",
    "set_alpha",
    "gate_layer",
    "ungate_layer",
    "unit_importance",
]

_LEGACY_MASK, _LEGACY_ALPHA = "_gate.mask", "_gate.alpha"


def gates(model: nn.Module) -> dict[str, AlphaGate]:
    """All gated layers of ``model`` by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, AlphaGate)}


def set_alpha(model: nn.Module, alpha: float) -> None:
    """Set α of every gate in ``model``; α outside [0, 1] is an error."""
    value = check_alpha(alpha)
    found = gates(model)
    if not found:
        raise PruningError("model has no α gates; call attach_gates first")
    for gate in found.values():
        gate.set_alpha(value)


def get_alpha(model: nn.Module, per_gate: bool = False) -> float | dict[str, float]:
    """The α of the model's gates (an error if they disagree), or a dict of each gate's α."""
    found = gates(model)
    if not found:
        raise PruningError("model has no α gates")
    values = {name: gate.get_alpha() for name, gate in found.items()}
    if per_gate:
        return values
    distinct = sorted(set(values.values()))
    if len(distinct) > 1:
        raise PruningError(
            f"gates disagree on α ({values}); call get_alpha(model, per_gate=True) to read each"
        )
    return distinct[0]


# -- planning ----------------------------------------------------------------------------------


@dataclass
class GroupPlan:
    """One channel group in a :class:`GatingPlan`: what it is and what was decided.

    ``mask`` is over the output channels of the group's first producing layer (True = kept),
    for the groups that were gated. ``pinned`` units of a prunable group stay, for ``pin_reason``
    (the channels before a slice with fixed bounds, …).
    """

    name: str
    layers: list[str]
    consumers: list[str]
    channels: int
    units: int
    kept: int
    in_target: bool
    skip: str | None
    mask: Tensor | None = None
    pinned: int = 0
    pin_reason: str | None = None

    @property
    def gated(self) -> bool:
        return self.in_target and self.skip is None and self.kept < self.units

    @property
    def num_channels(self) -> int:
        return self.channels

    @property
    def num_kept(self) -> int:
        return int(self.mask.sum()) if self.mask is not None else self.channels


@dataclass
class GatingPlan(Mapping):
    """What :func:`attach_gates` did, as a mapping from each gated group's name (its first
    producing layer) to its :class:`GroupPlan`; ``groups`` lists every group of the model
    (also those left whole, with the reason) and ``gates`` the gated consumer layers.
    ``print(plan)`` shows the table.
    """

    groups: list[GroupPlan]
    gates: dict[str, AlphaGate] = field(default_factory=dict)
    #: with ``budget=``: the target, the predicted (and, for latency, measured) ratio
    budget: BudgetReport | None = None

    def _gated(self) -> dict[str, GroupPlan]:
        return {g.name: g for g in self.groups if g.mask is not None}

    def __getitem__(self, name: str) -> GroupPlan:
        return self._gated()[name]

    def __iter__(self):
        return iter(self._gated())

    def __len__(self) -> int:
        return len(self._gated())

    def rows(self) -> list[dict[str, object]]:
        """One dict per group: group, layers, channels, units, kept, status."""
        return [
            {
                "group": g.name,
                "layers": ", ".join(g.layers),
                "channels": g.channels,
                "units": g.units,
                "kept": g.kept,
                "status": _status(g),
            }
            for g in self.groups
        ]

    def table(self):
        """The groups as a ``pandas.DataFrame`` (one row each; pandas comes with the ``report``
        extra, the core install does not need it)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError(
                "GatingPlan.table() returns a pandas DataFrame: pip install 'alphaprune[report]' "
                "(print(plan) or plan.rows() need nothing more)"
            ) from exc
        return pd.DataFrame(self.rows())

    def __str__(self) -> str:
        text = _text_table(self.rows())
        return text + (f"\n{self.budget}" if self.budget is not None else "")

    def _repr_html_(self) -> str:
        return self.table().to_html(index=False)


def _text_table(rows: list[dict[str, object]]) -> str:
    """Rows as plain-text columns: numbers right-aligned, text left-aligned."""
    if not rows:
        return "(no channel groups)"
    columns = list(rows[0])
    numeric = [all(isinstance(row[c], int) for row in rows) for c in columns]
    cells = [columns] + [[str(row[c]) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(
            (v.rjust(w) if num else v.ljust(w))
            for v, w, num in zip(line, widths, numeric, strict=True)
        ).rstrip()
        for line in cells
    )


def _status(group: GroupPlan) -> str:
    if group.gated and group.pinned:
        return f"pruned; {group.pinned} of {group.units} units stay: {group.pin_reason}"
    if group.gated:
        return "pruned"
    if group.skip:
        return f"left whole: {group.skip}"
    return "kept whole" if group.in_target else "not in target"


def _in_target(group: ChannelGroup, target, model: nn.Module) -> bool:
    if isinstance(target, str) and target in ("all", "both"):
        return True
    if isinstance(target, str) and target in ("encoder", "decoder"):
        if not isinstance(getattr(model, target, None), nn.Module):
            raise PruningError(
                f"target='{target}' but {type(model).__name__} has no '.{target}' submodule; "
                "use target='all' or a list of layer-name patterns"
            )
        return group.name.startswith(target + ".")
    patterns = [target] if isinstance(target, str) else list(target)
    names = [group.name, *group.owners]
    return any(fnmatch.fnmatchcase(n, p) for p in patterns for n in names)


def _check_target(target) -> None:
    if isinstance(target, str):
        return
    if (
        not isinstance(target, Sequence)
        or not target
        or not all(isinstance(p, str) for p in target)
    ):
        raise PruningError(
            "target must be 'all', 'encoder', 'decoder', 'both' or a non-empty list of "
            f"layer-name patterns, got {target!r}"
        )


def check_keep(keep: object, what: str = "keep") -> float:
    """``keep`` as a float, if it is a kept fraction: a real number in (0, 1].

    Bools and strings are refused (``keep: "0.5"`` in a config is a typo, not a number).
    The one rule for a keep fraction, used by :func:`attach_gates` and the engine's config.
    """
    try:
        if isinstance(keep, (bool, str)):
            raise TypeError
        value = float(keep)
    except (TypeError, ValueError):
        raise PruningError(f"{what} must be a number in (0, 1], got {keep!r}") from None
    if not math.isfinite(value):
        raise PruningError(f"{what} must be a number in (0, 1], got {keep!r}")
    if not 0.0 < value <= 1.0:
        raise PruningError(f"{what} must be in (0, 1], got {keep!r}")
    return value


def _keep_units(scores: Tensor, keep: float, free: list[bool] | None = None) -> Tensor:
    """The ``keep`` fraction of units with the highest scores; units not ``free`` (pinned inside
    a prunable group) are always kept, and ``keep`` applies to the others."""
    fixed = torch.tensor([not f for f in free]) if free is not None else None
    n_keep = max(1, int(round(keep * scores.numel())))
    ranked = scores.double().clone()
    if fixed is not None and fixed.any():  # ``keep`` of the free units, and every pinned one
        ranked[fixed] = float("inf")
        n_fixed = int(fixed.sum())
        n_keep = n_fixed + max(1, int(round(keep * (scores.numel() - n_fixed))))
    order = torch.argsort(ranked, descending=True, stable=True)
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[order[:n_keep]] = True
    return mask


def _units_from_channel_mask(graph: ChannelGraph, group: ChannelGroup, mask) -> Tensor:
    """A channel mask over the group's first producer → a mask over its units."""
    owner = graph.layers[group.owners[0]] if group.owners else None
    if owner is None:
        raise PruningError(f"group '{group.name}' has no producing layer to give a mask for")
    mask = torch.as_tensor(mask, dtype=torch.bool).flatten().cpu()
    units = graph.units(owner.out_vars)
    if mask.numel() != len(units):
        raise PruningError(
            f"mask for '{group.name}' has {mask.numel()} entries, the layer has "
            f"{len(units)} output channels"
        )
    verdict: dict[int, bool] = {}
    for u, kept in zip(units, mask.tolist(), strict=True):
        if verdict.setdefault(u, kept) != kept:
            raise PruningError(
                f"mask for '{group.name}' splits a unit of coupled channels (grouped conv / "
                "GroupNorm block / attention head): keep or drop a whole block"
            )
    dropped = [u for u, kept in verdict.items() if not kept and u in group.pinned]
    if dropped:
        raise PruningError(
            f"mask for '{group.name}' drops channels that must stay: {group.pinned[dropped[0]]}"
        )
    return torch.tensor([verdict.get(u, True) for u in group.units])


def _plan_masks(
    graph: ChannelGraph, chosen: list[ChannelGroup], keep, scores, masks
) -> dict[str, Tensor]:
    """Per chosen group: bool over its units, True = kept."""
    out = {}
    for group in chosen:
        if masks is not None:
            key = next(k for k in masks if k == group.name or k in group.owners)
            out[group.name] = _units_from_channel_mask(graph, group, masks[key])
            continue
        if isinstance(keep, Mapping):
            key = next(k for k in keep if k == group.name or k in group.owners)
            fraction = check_keep(keep[key], f"keep['{key}']")
        else:
            fraction = keep
        out[group.name] = _keep_units(scores[group.name], fraction, group.free)
    return out


def attach_gates(
    model: nn.Module,
    keep: float | Mapping[str, float] = 0.5,
    criterion: str | Criterion = "l1",
    target: str | Sequence[str] = "all",
    alpha: float = 1.0,
    masks: Mapping[str, Tensor] | None = None,
    example_inputs: Tensor | Sequence[Tensor] | None = None,
    strict: bool = False,
    budget: Mapping[str, float] | None = None,
    min_keep: float = 0.1,
    round_to: int = 1,
    device: str | torch.device | None = None,
    latency: Mapping[str, object] | None = None,
) -> GatingPlan:
    """Gate the channels chosen for removal in every prunable channel group of ``model``.

    The model is traced (``torch.fx``) to find which channels are coupled (residual additions,
    concatenations, grouped/depthwise convolutions, flatten → Linear, …); a *group* is all
    channels that share a producing layer. In each group in ``target`` the least important
    units are gated: every layer that reads them gets its weight scaled by α along its input
    axis. The model's input and output channels, and channels that cannot be pruned exactly,
    are left whole and reported in the returned plan (``print(plan)``).

    Args:
        model: any module ``torch.fx`` can trace.
        keep: fraction of units kept per group, or a mapping from group/layer name (e.g.
            ``"encoder.0"``) to fraction; groups absent from a mapping are not gated.
        criterion: the name of a registered criterion (:mod:`alphaprune.core.criteria`):
            ``"l1"`` (L1 norm of the output filters, on each layer's output axis), ``"bn"`` (|γ|
            of the BatchNorm over the channels), ``"random"`` (a control), or a callable
            ``(graph, group) -> scores``.
        target: ``"all"`` (alias ``"both"``), ``"encoder"``/``"decoder"`` (a submodule), or a
            list of layer-name patterns (``["encoder.*", "up?"]``).
        alpha: initial α of the new gates.
        masks: explicit keep-masks by group/layer name over that layer's output channels
            (overrides ``keep``/``criterion``).
        example_inputs: inputs for tracing; guessed from the first layer when None.
        strict: raise instead of skipping a group in ``target`` that cannot be pruned.
        budget: ``{"flops": r}``, ``{"params": r}`` or ``{"latency": r}`` instead of ``keep``:
            per-group keep fractions from one global ranking of normalised importance, so that
            the shrunk model keeps the fraction ``r`` of its FLOPs/params, or of its latency
            measured on ``device`` (see :mod:`alphaprune.core.budget`, docs/deploy.md).
        min_keep: with ``budget``, the least fraction of units any group keeps.
        round_to: with ``budget``, units are removed this many at a time (e.g. 8 for GPUs).
        device: with a latency budget, the device latency is measured on (default: where the
            model's parameters are).
        latency: with a latency budget, options of
            :class:`~alphaprune.core.latency.LatencyOptions`: ``runtime`` (``"torch"`` or
            ``"onnxruntime"``), ``threads``, ``input_size`` (default: the example inputs),
            ``rounds``, ``measure``, ``tolerance``, ``attempts``, ``cache``, ``cache_dir``.

    Returns:
        A :class:`GatingPlan` with every group, the gated layers and the masks (and with a
        budget, its :class:`~alphaprune.core.budget.BudgetReport` as ``plan.budget``).
    """
    _check_target(target)
    check_alpha(alpha)
    if gates(model):
        raise PruningError("model already has α gates; shrink it or build a fresh model first")
    if not isinstance(keep, Mapping) and masks is None:
        keep = check_keep(keep, "keep")
    if budget is not None and (masks is not None or isinstance(keep, Mapping)):
        raise PruningError("give either budget or per-layer keep/masks, not both")
    options = _latency_options(model, budget, device, latency)
    graph = analyze(model, example_inputs, values=False)
    chosen = _choose_groups(graph, model, target, keep, masks, strict)
    scores = {g.name: unit_importance(graph, g, criterion) for g in chosen}
    report = None
    if budget is not None:
        unit_masks, report = plan_budget(
            graph, chosen, budget, scores, min_keep, round_to, latency=options
        )
    else:
        unit_masks = _plan_masks(graph, chosen, keep, scores, masks)
    for group in chosen:
        keep_one_per_owner(graph, group, unit_masks[group.name], scores[group.name])
    pruned = {
        u
        for group in chosen
        for u, kept in zip(group.units, unit_masks[group.name].tolist(), strict=True)
        if not kept
    }
    plan = _describe_plan(graph, model, target, chosen, unit_masks)
    plan.budget = report
    for layer in graph.consumers():
        units = graph.units(layer.in_vars)
        if pruned.isdisjoint(units):
            continue
        mask = torch.tensor([u not in pruned for u in units])
        plan.gates[layer.name] = gate_layer(layer.module, mask, alpha)
    for row in plan.groups:
        group = next((g for g in chosen if g.name == row.name), None)
        if group is not None and group.owners:
            owner = graph.layers[group.owners[0]]
            row.mask = torch.tensor([u not in pruned for u in graph.units(owner.out_vars)])
    return plan


def _latency_options(model, budget, device, latency) -> dict[str, object] | None:
    """The latency options of a latency budget (``device`` folded in); refused without one."""
    is_latency = isinstance(budget, Mapping) and "latency" in budget
    if not is_latency:
        if device is not None or latency is not None:
            raise PruningError("device= and latency= are for budget={'latency': r}")
        return None
    if latency is not None and not isinstance(latency, Mapping):
        raise PruningError(f"latency must be a mapping of latency options, got {latency!r}")
    options = dict(latency or {})
    if device is None and "device" not in options:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if device is not None:
        options["device"] = str(torch.device(device))
    return options


def _choose_groups(graph, model, target, keep, masks, strict) -> list[ChannelGroup]:
    if masks is not None or isinstance(keep, Mapping):
        wanted = list((masks if masks is not None else keep).keys())
        chosen = []
        for name in wanted:
            try:
                group = graph.group(name)
            except KeyError:
                prunable = [g.name for g in graph.groups if g.prunable]
                raise PruningError(
                    f"cannot gate '{name}': not a prunable layer of this model. "
                    f"Prunable: {prunable or 'none'}"
                ) from None
            if group.skip:
                raise UnsupportedModelError(f"cannot gate '{name}': its channels are {group.skip}")
            if not _safe_in_target(group, target, model):
                raise PruningError(f"cannot gate '{name}': not in target {target!r}")
            if group not in chosen:
                chosen.append(group)
        return chosen
    in_target = [g for g in graph.groups if _in_target(g, target, model)]
    exempt = ("model output", "model input", "not read by any layer")
    skipped = [g for g in in_target if g.skip and not any(e in g.skip for e in exempt)]
    if strict and skipped:
        group = skipped[0]
        raise UnsupportedModelError(
            f"strict: group '{group.name}' (layers {', '.join(group.owners)}) cannot be pruned: "
            f"its channels are {group.skip}"
        )
    chosen = [g for g in in_target if g.prunable]
    if not chosen:
        prunable = [g.name for g in graph.groups if g.prunable]
        shown = ", ".join(prunable[:12]) + (
            f", … ({len(prunable)} in all)" if len(prunable) > 12 else ""
        )
        raise PruningError(
            f"no prunable channel group in target {target!r} of {type(model).__name__}; "
            f"prunable groups: {shown or 'none'} (alphaprune.explain(model) shows every group "
            "and why it is left whole)"
        )
    return chosen


def _group_row(group: ChannelGroup, kept: int, in_target: bool) -> GroupPlan:
    return GroupPlan(
        name=group.name,
        layers=list(group.owners),
        consumers=list(group.consumers),
        channels=group.channels,
        units=len(group.units),
        kept=kept,
        in_target=in_target,
        skip=group.skip,
        pinned=0 if group.skip else len(group.pinned),
        pin_reason=next(iter(group.pinned.values()), None),
    )


def _describe_plan(graph, model, target, chosen, unit_masks) -> GatingPlan:
    rows = []
    for group in graph.groups:
        kept_units = unit_masks.get(group.name)
        kept = int(kept_units.sum()) if kept_units is not None else len(group.units)
        in_target = group in chosen or _safe_in_target(group, target, model)
        rows.append(_group_row(group, kept, in_target))
    return GatingPlan(groups=rows)


def _safe_in_target(group, target, model) -> bool:
    try:
        return _in_target(group, target, model)
    except ValueError:
        return False


def gated_units(graph: ChannelGraph) -> set[int]:
    """Units that the model's gates mark as pruned (whatever α is now)."""
    pruned: set[int] = set()
    for layer in graph.consumers():
        if isinstance(layer.module, AlphaGate):
            units = graph.units(layer.in_vars)
            mask = layer.module.gate_mask.tolist()
            pruned.update(u for u, kept in zip(units, mask, strict=True) if not kept)
    return pruned


def explain(
    model: nn.Module,
    example_inputs: Tensor | Sequence[Tensor] | None = None,
    target: str | Sequence[str] = "all",
    graph: ChannelGraph | None = None,
    show: bool = True,
):
    """Print (and return as a DataFrame) every channel group of ``model``: its layers, channels,
    how many are kept (from the gates, if any) and why a group cannot be pruned."""
    graph = graph or analyze(model, example_inputs, values=False)
    pruned = gated_units(graph)
    rows = [
        _group_row(g, sum(1 for u in g.units if u not in pruned), _safe_in_target(g, target, model))
        for g in graph.groups
    ]
    plan = GatingPlan(groups=rows)
    if show:
        print(plan)
        return plan.table()
    return str(plan)


def prunable_layers(model: nn.Module, target: str | Sequence[str] = "all", example_inputs=None):
    """Names and output-channel counts of the groups ``attach_gates`` can gate in ``target``."""
    _check_target(target)
    graph = analyze(model, example_inputs, values=False)
    return {g.name: g.channels for g in graph.groups if g.prunable and _in_target(g, target, model)}


# -- state dicts -------------------------------------------------------------------------------


def migrate_state_dict(model: nn.Module, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rewrite a state dict saved before gates moved into the consumers (alphaprune ≤ 0.1).

    Old gates were modules ``<anchor>_gate`` inserted after the activation of a producing
    convolution in a sequential chain; their channels were consumed by the next convolution
    in registration order, which now holds the gate as ``gate_mask``/``gate_alpha``.
    """
    state = dict(state)
    legacy = [k[: -len(_LEGACY_MASK)] for k in state if k.endswith(_LEGACY_MASK)]
    if not legacy:
        return state
    order = [name for name, _ in model.named_modules()]
    mixing = {name for name, m in model.named_modules() if isinstance(rule_for(m), MixingRule)}
    for anchor in legacy:
        if anchor not in order:
            raise PruningError(f"old gate '{anchor}_gate' does not fit this model's layers")
        after = order[order.index(anchor) + 1 :]
        consumer = next((n for n in after if n in mixing), None)
        if consumer is None:
            raise PruningError(f"old gate '{anchor}_gate' has no consumer layer in this model")
        state[f"{consumer}.{MASK_KEY}"] = state.pop(anchor + _LEGACY_MASK)
        state[f"{consumer}.{ALPHA_KEY}"] = state.pop(anchor + _LEGACY_ALPHA)
    return state


def gate_masks_in_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Gate masks by layer name in a state dict (current or old layout)."""
    found = {k[: -len("." + MASK_KEY)]: v for k, v in state.items() if k.endswith("." + MASK_KEY)}
    found.update({k[: -len(_LEGACY_MASK)]: v for k, v in state.items() if k.endswith(_LEGACY_MASK)})
    return found


def restore_gates(model: nn.Module, state_dict: Mapping[str, Tensor]) -> dict[str, AlphaGate]:
    """Re-create the gates recorded in a gated model's ``state_dict`` on a fresh, ungated model.

    Masks and α come from the state dict (old-layout keys are migrated first); call
    ``model.load_state_dict(migrate_state_dict(model, state_dict))`` afterwards.
    """
    state = migrate_state_dict(model, state_dict)
    modules = dict(model.named_modules())
    masks = {k[: -len("." + MASK_KEY)]: v for k, v in state.items() if k.endswith("." + MASK_KEY)}
    missing = sorted(n for n in masks if n not in modules or not gateable(modules[n]))
    if missing:
        raise PruningError(
            f"state dict has {len(masks)} gates but {missing} match no gateable layer of this "
            "model: was it saved from a different architecture?"
        )
    created = {}
    for name, mask in masks.items():
        alpha = float(state[f"{name}.{ALPHA_KEY}"])
        try:
            created[name] = gate_layer(modules[name], mask, alpha)
        except ValueError as exc:
            raise PruningError(
                f"gate of '{name}' does not fit this model ({exc}): was it saved from a "
                "different architecture?"
            ) from None
    return created
