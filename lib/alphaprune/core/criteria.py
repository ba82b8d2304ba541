"""Pruning criteria: how important each unit of a channel group is (higher = kept longer).

A criterion is any callable ``(graph, group) -> Tensor`` giving one score per unit of ``group``
(same order as ``group.units``). Built in: ``l1`` (L1 norm of the unit's output filters summed over
its producing layers), ``bn`` (|γ| of the BatchNorms over the unit's channels) and ``random``
(uniform scores from a generator seeded by ``torch.initial_seed()`` and the group's name: a
control arm, reproducible under a run's seed and independent of other random draws). Register
your own once with :func:`register_criterion`; ``attach_gates(criterion=...)`` takes its name or
the callable itself.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import torch
from torch import Tensor, nn

from alphaprune.core.graph import ChannelGraph, ChannelGroup, LayerChannels
from alphaprune.core.layer_rules import ChannelwiseRule
from alphaprune.errors import PruningError

__all__ = ["Criterion", "CRITERIA", "criterion_names", "register_criterion", "unit_importance"]

#: ``(graph, group) -> scores``: one score per unit of the group, higher = more important.
Criterion = Callable[[ChannelGraph, ChannelGroup], Tensor]


def _scores_by_unit(
    graph: ChannelGraph, group: ChannelGroup, layers: list[tuple[LayerChannels, Tensor]]
) -> Tensor:
    """Per-output-channel values of ``layers`` summed into ``group``'s units."""
    position = {u: i for i, u in enumerate(group.units)}
    scores = torch.zeros(len(group.units), dtype=torch.float64)
    for layer, values in layers:
        where = [position.get(u, -1) for u in graph.units(layer.out_vars)]
        index = torch.tensor(where, dtype=torch.int64)
        mine = index >= 0
        scores.index_add_(0, index[mine], values.detach().double().cpu().flatten()[mine])
    return scores


def l1_importance(graph: ChannelGraph, group: ChannelGroup) -> Tensor:
    """L1 norm of each unit's output filters, summed over every producing layer of the group."""
    owners = [graph.layers[name] for name in group.owners]
    return _scores_by_unit(graph, group, [(m, m.rule.output_l1(m.module)) for m in owners])


def _affine_bn(layer: LayerChannels) -> bool:
    module = layer.module
    return (
        isinstance(layer.rule, ChannelwiseRule)
        and isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d))
        and module.weight is not None
    )


def bn_importance(graph: ChannelGraph, group: ChannelGroup) -> Tensor:
    """|γ| of the affine BatchNorms over each unit's channels (summed when several)."""
    norms = [graph.layers[name] for name in group.members]
    found = [(layer, layer.module.weight.detach().abs()) for layer in norms if _affine_bn(layer)]
    if not found:
        raise PruningError(f"criterion='bn' needs an affine BatchNorm in group '{group.name}'")
    return _scores_by_unit(graph, group, found)


def random_importance(graph: ChannelGraph, group: ChannelGroup) -> Tensor:
    """Uniform random scores: seeded by ``torch.initial_seed()`` and the group's name, so the same
    run seed gives the same choice without drawing from (and shifting) the global generator."""
    seed = (torch.initial_seed() ^ zlib.crc32(group.name.encode())) % 2**63
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(len(group.units), generator=generator, dtype=torch.float64)


#: The registered criteria by name.
CRITERIA: dict[str, Criterion] = {
    "l1": l1_importance,
    "bn": bn_importance,
    "random": random_importance,
}


def register_criterion(name: str, criterion: Criterion) -> None:
    """Make ``criterion`` available as ``attach_gates(criterion=name)`` (and in configs)."""
    if not isinstance(name, str) or not name:
        raise PruningError(f"a criterion needs a non-empty name, got {name!r}")
    if not callable(criterion):
        raise PruningError(f"criterion '{name}' must be callable (graph, group) -> scores")
    CRITERIA[name] = criterion


def criterion_names() -> list[str]:
    """The names of the registered criteria."""
    return sorted(CRITERIA)


def unit_importance(graph: ChannelGraph, group: ChannelGroup, criterion: str | Criterion) -> Tensor:
    """Importance of each unit of ``group`` (same order as ``group.units``), float64."""
    if callable(criterion):
        function = criterion
    elif isinstance(criterion, str) and criterion in CRITERIA:
        function = CRITERIA[criterion]
    else:
        raise PruningError(f"criterion must be one of {criterion_names()}, got {criterion!r}")
    scores = torch.as_tensor(function(graph, group), dtype=torch.float64).flatten().cpu()
    if scores.numel() != len(group.units):
        raise PruningError(
            f"criterion {criterion!r} gave {scores.numel()} scores for group '{group.name}' "
            f"of {len(group.units)} units"
        )
    if not torch.isfinite(scores).all():
        raise PruningError(f"criterion {criterion!r} gave non-finite scores in '{group.name}'")
    return scores
