"""α gates: per-channel factors that fade pruned channels out while the network is fine-tuned.

A pruned channel is multiplied by α wherever it is *consumed*: the gate scales the consumer's
weight along its input-channel axis (``Conv2d`` dim 1, ``ConvTranspose2d`` dim 0, ``Linear``
dim 1 — see :mod:`alphaprune.core.layer_rules`). That is exactly ``consumer(scale ⊙ x)``, costs
channels×kernel work instead of a pass over the activations, and never sits in front of a
BatchNorm (which would turn a zeroed channel into a constant). At α = 0 no layer reads the
pruned channels any more, so :func:`alphaprune.core.shrink` can cut them out of every producer, norm
and consumer of their group.

A gated layer is the same object with its class swapped to a gated subclass (as
``torch.nn.utils.parametrize`` does), keeping its parameter names, so state-dict keys are
unchanged; the gate adds two buffers, ``gate_mask`` (True = kept) and ``gate_alpha`` (float64,
so the α read back is exactly the α set, also after ``.half()``).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alphaprune.core.budget import budget_masks
from alphaprune.core.graph import (
    ChannelGraph,
    ChannelGroup,
    LayerChannels,
    UnsupportedModelError,
    analyze,
)
from alphaprune.core.layer_rules import ChannelwiseRule, MixingRule, rule_for
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
]

MASK_KEY, ALPHA_KEY = "gate_mask", "gate_alpha"
_LEGACY_MASK, _LEGACY_ALPHA = "_gate.mask", "_gate.alpha"


def check_alpha(alpha: float, what: str = "alpha") -> float:
    """Return ``alpha`` as a float, or raise ``ValueError`` if it is not a number in [0, 1]."""
    if isinstance(alpha, (bool, str, bytes)):  # float("0.5") would accept a string
        raise PruningError(f"{what} must be a number in [0, 1], got {alpha!r}")
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise PruningError(f"{what} must be a number in [0, 1], got {alpha!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise PruningError(f"{what} must be in [0, 1], got {alpha!r}")
    return value


class AlphaGate(nn.Module):
    """Mixin of a gated layer: input channel ``i`` is scaled by 1 if kept, by α if pruned.

    Not built directly: :func:`attach_gates` turns a ``Conv2d``, ``ConvTranspose2d`` or
    ``Linear`` into its gated subclass in place.
    """

    base_type = nn.Module
    __jit_unused_properties__ = ["mask", "num_channels", "num_kept"]

    @property
    def mask(self) -> Tensor:
        """Bool per input channel, True where kept."""
        return self.gate_mask

    @property
    def num_channels(self) -> int:
        return self.gate_mask.numel()

    @property
    def num_kept(self) -> int:
        return int(self.gate_mask.sum())

    def set_alpha(self, alpha: float) -> None:
        """Set α in place (keeps the buffer's device and float64 dtype)."""
        self.gate_alpha.fill_(check_alpha(alpha))

    def get_alpha(self) -> float:
        return float(self.gate_alpha)

    def scale(self) -> Tensor:
        """The per-input-channel factor (float64): 1 where kept, α where pruned."""
        return torch.where(self.gate_mask, torch.ones_like(self.gate_alpha), self.gate_alpha)

    def gated_weight(self) -> Tensor:
        scale = torch.where(self.gate_mask, torch.ones_like(self.gate_alpha), self.gate_alpha)
        return self.weight * scale.to(self.weight.dtype).view(self._gate_view)

    def _apply(self, fn, recurse=True):  # noqa: ANN001 - torch's signature
        # ``.half()``/``.bfloat16()`` convert every floating buffer; α must stay exactly as set.
        alpha = self.gate_alpha.detach().clone()
        super()._apply(fn, recurse)
        self.gate_alpha = alpha.to(self.gate_mask.device)
        return self

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, gate: kept={self.num_kept}/{self.num_channels} inputs, "
            f"alpha={self.get_alpha():.4g}"
        )


class GatedConv2d(AlphaGate, nn.Conv2d):
    base_type = nn.Conv2d

    def forward(self, input: Tensor) -> Tensor:
        return self._conv_forward(input, self.gated_weight(), self.bias)


class GatedConvTranspose2d(AlphaGate, nn.ConvTranspose2d):
    base_type = nn.ConvTranspose2d

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation
        )
        return F.conv_transpose2d(
            input,
            self.gated_weight(),
            self.bias,
            self.stride,
            self.padding,
            output_padding,
            self.groups,
            self.dilation,
        )


class GatedLinear(AlphaGate, nn.Linear):
    base_type = nn.Linear

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.gated_weight(), self.bias)


_GATED = {cls.base_type: cls for cls in (GatedConv2d, GatedConvTranspose2d, GatedLinear)}


def gate_layer(module: nn.Module, mask: Tensor, alpha: float) -> AlphaGate:
    """Turn ``module`` (exact type Conv2d/ConvTranspose2d/Linear) into its gated class in place."""
    if type(module) not in _GATED:
        raise UnsupportedModelError(f"cannot gate a {type(module).__name__}")
    rule = rule_for(module)
    assert isinstance(rule, MixingRule)
    mask = torch.as_tensor(mask, dtype=torch.bool).flatten()
    if mask.numel() != rule.in_channels(module):
        raise PruningError(
            f"gate mask has {mask.numel()} entries, the layer has "
            f"{rule.in_channels(module)} input channels"
        )
    device = module.weight.device
    module.__class__ = _GATED[type(module)]
    module.register_buffer(MASK_KEY, mask.to(device))
    module.register_buffer(ALPHA_KEY, torch.tensor(check_alpha(alpha), dtype=torch.float64))
    module.gate_alpha = module.gate_alpha.to(device)
    module._gate_view = rule.gate_shape(module)
    return module


def ungate_layer(module: AlphaGate) -> nn.Module:
    """Fold the gate into the weight and give the layer its plain class back (in place)."""
    rule = rule_for(module)
    assert isinstance(rule, MixingRule)
    scale = module.scale().detach()
    del module._buffers[MASK_KEY], module._buffers[ALPHA_KEY]
    del module._gate_view
    module.__class__ = module.base_type
    rule.fold_inputs(module, scale)
    return module


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
    for the groups that were gated.
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

    def _gated(self) -> dict[str, GroupPlan]:
        return {g.name: g for g in self.groups if g.mask is not None}

    def __getitem__(self, name: str) -> GroupPlan:
        return self._gated()[name]

    def __iter__(self):
        return iter(self._gated())

    def __len__(self) -> int:
        return len(self._gated())

    def table(self):
        """The groups as a ``pandas.DataFrame`` (one row each)."""
        import pandas as pd

        return pd.DataFrame(
            [
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
        )

    def __str__(self) -> str:
        return self.table().to_string(index=False)

    def _repr_html_(self) -> str:
        return self.table().to_html(index=False)


def _status(group: GroupPlan) -> str:
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


def unit_importance(graph: ChannelGraph, group: ChannelGroup, criterion: str) -> Tensor:
    """Importance of each unit of ``group`` (same order as ``group.units``).

    ``l1``: the L1 norm of the unit's output filters summed over every producing layer;
    ``bn``: |γ| of the BatchNorms over the unit's channels.
    """
    position = {u: i for i, u in enumerate(group.units)}
    scores = torch.zeros(len(group.units), dtype=torch.float64)
    for layer, values in _scored_layers(graph, group, criterion):
        for u, v in zip(graph.units(layer.out_vars), values.double().cpu().tolist(), strict=True):
            if u in position:
                scores[position[u]] += v
    return scores


def _scored_layers(
    graph: ChannelGraph, group: ChannelGroup, criterion: str
) -> list[tuple[LayerChannels, Tensor]]:
    """The layers whose per-channel values score ``group``'s units, with those values."""
    if criterion == "l1":
        owners = [graph.layers[name] for name in group.owners]
        return [(layer, layer.rule.output_l1(layer.module)) for layer in owners]
    if criterion == "bn":
        norms = [graph.layers[name] for name in group.members]
        found = [
            (layer, layer.module.weight.detach().abs()) for layer in norms if _affine_bn(layer)
        ]
        if not found:
            raise PruningError(f"criterion='bn' needs an affine BatchNorm in group '{group.name}'")
        return found
    raise PruningError(f"criterion must be 'l1' or 'bn', got {criterion!r}")


def _affine_bn(layer: LayerChannels) -> bool:
    module = layer.module
    return (
        isinstance(layer.rule, ChannelwiseRule)
        and isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d))
        and module.weight is not None
    )


def _keep_units(scores: Tensor, keep: float) -> Tensor:
    n_keep = max(1, int(round(keep * scores.numel())))
    order = torch.argsort(scores.float(), descending=True, stable=True)
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
                "GroupNorm block): keep or drop a whole block"
            )
    return torch.tensor([verdict.get(u, True) for u in group.units])


def _keep_one_per_owner(
    graph: ChannelGraph, group: ChannelGroup, mask: Tensor, scores: Tensor
) -> None:
    """A group can span several producers (a depthwise conv after a concat joins them): each
    keeps at least its most important unit, so no layer loses every channel."""
    position = {u: i for i, u in enumerate(group.units)}
    for name in group.owners:
        mine = [position[u] for u in set(graph.units(graph.layers[name].out_vars)) if u in position]
        if mine and not mask[mine].any():
            mask[max(mine, key=lambda i: float(scores[i]))] = True


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
        out[group.name] = _keep_units(scores[group.name], fraction)
    return out


def attach_gates(
    model: nn.Module,
    keep: float | Mapping[str, float] = 0.5,
    criterion: str = "l1",
    target: str | Sequence[str] = "all",
    alpha: float = 1.0,
    masks: Mapping[str, Tensor] | None = None,
    example_inputs: Tensor | Sequence[Tensor] | None = None,
    strict: bool = False,
    budget: Mapping[str, float] | None = None,
    min_keep: float = 0.1,
    round_to: int = 1,
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
        criterion: ``"l1"`` (L1 norm of the output filters, on each layer's output axis) or
            ``"bn"`` (|γ| of the BatchNorm over the channels).
        target: ``"all"`` (alias ``"both"``), ``"encoder"``/``"decoder"`` (a submodule), or a
            list of layer-name patterns (``["encoder.*", "up?"]``).
        alpha: initial α of the new gates.
        masks: explicit keep-masks by group/layer name over that layer's output channels
            (overrides ``keep``/``criterion``).
        example_inputs: inputs for tracing; guessed from the first layer when None.
        strict: raise instead of skipping a group in ``target`` that cannot be pruned.
        budget: ``{"flops": r}`` or ``{"params": r}`` instead of ``keep``: per-group keep
            fractions from one global ranking of normalised importance, so that the shrunk
            model keeps the fraction ``r`` of its FLOPs/params (see :mod:`alphaprune.core.budget`).
        min_keep: with ``budget``, the least fraction of units any group keeps.
        round_to: with ``budget``, units are removed this many at a time (e.g. 8 for GPUs).

    Returns:
        A :class:`GatingPlan` with every group, the gated layers and the masks.
    """
    _check_target(target)
    check_alpha(alpha)
    if gates(model):
        raise PruningError("model already has α gates; shrink it or build a fresh model first")
    if not isinstance(keep, Mapping) and masks is None:
        keep = check_keep(keep, "keep")
    if budget is not None and (masks is not None or isinstance(keep, Mapping)):
        raise PruningError("give either budget or per-layer keep/masks, not both")
    graph = analyze(model, example_inputs)
    chosen = _choose_groups(graph, model, target, keep, masks, strict)
    scores = {g.name: unit_importance(graph, g, criterion) for g in chosen}
    if budget is not None:
        unit_masks = budget_masks(graph, chosen, budget, scores, min_keep, round_to)
    else:
        unit_masks = _plan_masks(graph, chosen, keep, scores, masks)
    for group in chosen:
        _keep_one_per_owner(graph, group, unit_masks[group.name], scores[group.name])
    pruned = {
        u
        for group in chosen
        for u, kept in zip(group.units, unit_masks[group.name].tolist(), strict=True)
        if not kept
    }
    plan = _describe_plan(graph, model, target, chosen, unit_masks)
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
    graph = graph or analyze(model, example_inputs)
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
    graph = analyze(model, example_inputs)
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
    missing = sorted(n for n in masks if n not in modules or type(modules[n]) not in _GATED)
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
