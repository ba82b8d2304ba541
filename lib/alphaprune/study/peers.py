"""Torch-Pruning's importance criteria as alphaprune criteria, so a study arm can let the peer
pruner choose the channels and then fine-tune them like any other arm.

Registered names (``pruning.criterion`` in a config, ``attach_gates(criterion=…)``):

``tp_magnitude``  ``GroupMagnitudeImportance(p=2)``: group L2 norm, Torch-Pruning's default
``tp_taylor``     ``GroupTaylorImportance``: |weight × gradient| of the reconstruction loss
                  (MSE of the model's output to its input) on the run's calibration batch — the
                  first batch of its own training crops (see ``engine.train``)
``tp_bn_scale``   ``BNScaleImportance``: |γ| of the BatchNorms (models with batch_norm only)

For every producing layer of a channel group, Torch-Pruning builds its own dependency group
(``DependencyGraph.get_pruning_group`` on the layer's output channels: the coupled consumers,
norms and residual partners) and scores each channel with the importance; the channel scores
are mapped onto alphaprune's units (a unit is a set of channels that go together) and averaged
over the group's producers. The core never imports ``torch_pruning``: the criteria live here and
are registered with :func:`alphaprune.core.criteria.register_criterion` when this module is
imported (every study imports it). Needs the ``compare`` extra (``torch-pruning``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from alphaprune.core.criteria import Criterion, register_criterion
from alphaprune.core.graph import ChannelGraph, ChannelGroup
from alphaprune.errors import ConfigError, PruningError

__all__ = ["TP_CRITERIA", "require_torch_pruning", "tp_criterion"]

#: alphaprune criterion name → Torch-Pruning importance.
TP_CRITERIA: dict[str, str] = {
    "tp_magnitude": "GroupMagnitudeImportance(p=2)",
    "tp_taylor": "GroupTaylorImportance()",
    "tp_bn_scale": "BNScaleImportance()",
}


def require_torch_pruning(criterion: str) -> None:
    """A ConfigError naming the extra when ``torch_pruning`` is missing."""
    try:
        import torch_pruning  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"criterion '{criterion}' is Torch-Pruning's {TP_CRITERIA[criterion]}: install the "
            "'compare' extra (pip install -e '.[compare]')"
        ) from None


def _importance(name: str):
    import torch_pruning as tp

    if name == "tp_magnitude":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if name == "tp_taylor":
        return tp.importance.GroupTaylorImportance()
    return tp.importance.BNScaleImportance()


def _taylor_gradients(model: torch.nn.Module, inputs: tuple[Tensor, ...]) -> None:
    """Gradients of the reconstruction loss on the calibration batch (in eval mode)."""
    batch = inputs[0]
    if not batch.abs().sum() > 0:
        raise PruningError(
            "criterion 'tp_taylor' needs real calibration images, but the example input is all "
            "zeros (a model.factory model): use tp_magnitude or l1"
        )
    model.zero_grad(set_to_none=True)
    output = model(*inputs)
    target = batch if output.shape == batch.shape else torch.zeros_like(output)
    F.mse_loss(output, target).backward()


def _channel_scores(graph: ChannelGraph, name: str) -> dict[str, Tensor]:
    """Torch-Pruning's score of every output channel of every producing layer of the graph's
    prunable groups (one dependency graph, one backward pass for Taylor)."""
    import torch_pruning as tp

    model = graph.model
    inputs = tuple(graph.example_inputs)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=inputs, verbose=False)
        if name == "tp_taylor":
            _taylor_gradients(model, inputs)
        importance = _importance(name)
        modules = dict(model.named_modules())
        scores = {}
        for group in graph.groups:
            for owner in group.owners if group.prunable else ():
                module = modules[owner]
                pruner = dg.get_pruner_of_module(module)
                n_out = pruner.get_out_channels(module)
                tp_group = dg.get_pruning_group(
                    module, pruner.prune_out_channels, list(range(n_out))
                )
                found = importance(tp_group)
                if found is None or len(found) != n_out:
                    raise PruningError(
                        f"criterion '{name}' found nothing to score for layer '{owner}' (e.g. "
                        "tp_bn_scale needs a BatchNorm after it)"
                    )
                scores[owner] = found.detach().double().cpu()
    finally:
        model.zero_grad(set_to_none=True)
        for module, training in modes:
            module.training = training
    return scores


def tp_criterion(name: str) -> Criterion:
    """The alphaprune criterion ``(graph, group) -> unit scores`` for Torch-Pruning's ``name``."""
    if name not in TP_CRITERIA:
        raise PruningError(
            f"unknown Torch-Pruning criterion {name!r}; known: {sorted(TP_CRITERIA)}"
        )
    cache: dict[str, object] = {}

    def score(graph: ChannelGraph, group: ChannelGroup) -> Tensor:
        if cache.get("graph") is not graph:  # one dependency graph per model being gated
            require_torch_pruning(name)
            cache.update(graph=graph, scores=_channel_scores(graph, name))
        channel_scores: dict[str, Tensor] = cache["scores"]  # type: ignore[assignment]
        position = {u: i for i, u in enumerate(group.units)}
        total = torch.zeros(len(group.units), dtype=torch.float64)
        seen = torch.zeros(len(group.units), dtype=torch.float64)
        for owner in group.owners:
            units = graph.units(graph.layers[owner].out_vars)
            for unit, value in zip(units, channel_scores[owner].tolist(), strict=True):
                if unit in position:
                    total[position[unit]] += value
                    seen[position[unit]] += 1
        return total / seen.clamp_min(1)

    score.__name__ = f"{name}_importance"
    return score


def _register() -> dict[str, Callable]:
    made = {name: tp_criterion(name) for name in TP_CRITERIA}
    for name, criterion in made.items():
        register_criterion(name, criterion)
    return made


_register()
