"""Adapter to the peer pruner, ``torch_pruning``: its model with channels we chose."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = ["torch_pruning_model", "torch_pruning_pruner"]


def torch_pruning_model(
    original: nn.Module, masks: Mapping[str, Tensor], example_input: Tensor
) -> nn.Module:
    """``torch_pruning``'s pruned copy of an ungated ``original`` keeping the same channels.

    For every convolution name in ``masks`` (True = kept, as in ``AlphaGate.mask``), the channels
    ``~mask`` are removed with ``torch_pruning.DependencyGraph`` (which also cuts the consumer's
    inputs). Raises ``ImportError`` if ``torch_pruning`` is not installed.
    """
    import torch_pruning as tp

    model = copy.deepcopy(original).eval()
    graph = tp.DependencyGraph().build_dependency(
        model, example_inputs=example_input.to(next(model.parameters()).device), verbose=False
    )
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        if name not in modules:
            raise KeyError(f"mask for '{name}', but the model has no module of that name")
        pruned = torch.nonzero(~torch.as_tensor(mask, dtype=torch.bool).cpu()).flatten().tolist()
        if not pruned:
            continue
        group = graph.get_pruning_group(modules[name], tp.prune_conv_out_channels, idxs=pruned)
        if not graph.check_pruning_group(group):
            raise ValueError(f"torch_pruning refuses to prune {len(pruned)} channels of '{name}'")
        group.prune()
    return model


def torch_pruning_pruner(
    model: nn.Module,
    example_inputs: Tensor | Sequence[Tensor],
    pruning_ratio: float = 0.5,
    ignored_layers: Sequence[nn.Module] = (),
    num_heads: Mapping[nn.Module, int] | None = None,
):
    """``torch_pruning``'s own pruner on ``model`` (which ``step()`` prunes in place): L1
    magnitude importance (``MagnitudeImportance(p=1)``), the same ``pruning_ratio`` in every
    group, ``ignored_layers`` (e.g. the classifier) left whole. Building it traces the model
    (``DependencyGraph``). Raises ``ImportError`` if ``torch_pruning`` is not installed.

    ``num_heads`` (each attention's qkv projection → its head count) is Torch-Pruning's recipe
    for attention: whole heads go at the same ratio, head widths stay. After ``step()`` the
    pruner's ``num_heads`` holds the counts left, which the caller writes back into its modules.
    """
    import torch_pruning as tp

    heads = dict(num_heads or {})
    return tp.pruner.BasePruner(
        model,
        example_inputs,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=pruning_ratio,
        ignored_layers=list(ignored_layers),
        num_heads=heads,
        prune_num_heads=bool(heads),
        prune_head_dims=not heads,
        head_pruning_ratio=pruning_ratio if heads else 0.0,
    )
