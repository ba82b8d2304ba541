"""The models a comparison times side by side: original, masked, shrunk and the peer's."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from alphaprune.bench.peers import torch_pruning_model
from alphaprune.core.gates import attach_gates
from alphaprune.core.shrink import shrink

__all__ = ["standard_models"]


def standard_models(
    original: nn.Module,
    keep: float | Mapping[str, float] = 0.5,
    target: str = "both",
    criterion: str = "l1",
    torch_pruning: bool | str = "auto",
    image_size: int = 64,
) -> dict[str, nn.Module]:
    """The models the report compares, built from an ungated ``original``.

    Returns ``{"original", "masked", "shrunk"[, "torch-pruning"]}``: the original (a copy);
    the same model with :func:`attach_gates` (``keep``, ``criterion``, ``target``) at α = 0, which
    computes the pruned function at full size; :func:`shrink` of that; and ``torch_pruning``'s
    model with the same kept channels (see :func:`torch_pruning_model`). ``torch_pruning``:
    ``"auto"`` adds that row when the package is installed and prints a note when it is not,
    ``True`` requires it, ``False`` leaves it out. ``image_size`` is only for tracing.
    """
    if torch_pruning not in ("auto", True, False):
        raise ValueError(f"torch_pruning must be 'auto', True or False, got {torch_pruning!r}")
    base = copy.deepcopy(original).eval()
    masked = copy.deepcopy(base)
    gate_map = attach_gates(masked, keep=keep, criterion=criterion, target=target, alpha=0.0)
    models: dict[str, nn.Module] = {"original": base, "masked": masked, "shrunk": shrink(masked)}
    if torch_pruning is False or not _torch_pruning_importable(required=torch_pruning is True):
        return models
    masks = {name: group.mask for name, group in gate_map.items()}  # tp couples the rest
    example = torch.zeros(1, 3, image_size, image_size)
    models["torch-pruning"] = torch_pruning_model(base, masks, example)
    return models


def _torch_pruning_importable(required: bool) -> bool:
    """Whether ``torch_pruning`` imports; if not, raise when ``required``, else print a note."""
    try:
        import torch_pruning as _  # noqa: F401
    except ImportError:
        if required:
            raise ImportError(
                "torch_pruning=True but torch-pruning is not installed: "
                "pip install 'alphaprune[compare]' (torch-pruning==1.6.1)"
            ) from None
        print("note: torch_pruning not installed; skipping the 'torch-pruning' row")
        return False
    return True
