"""Channel maps: which channel variable each position of a tensor carries.

A channel map is an integer tensor with the rank of the tensor it describes: along the axes that
hold channels it has the tensor's size and lists channel variables, along every other axis it
has size 1 (broadcast). A convolution's output ``(B, C, H, W)`` has the map ``(1, C, 1, 1)``; after
``permute(0, 2, 3, 1)`` the map is ``(1, 1, 1, C)``; after ShuffleNet's
``view(b, 2, c // 2, h, w)`` it is ``(1, 2, C/2, 1, 1)``. Shape operations apply to the map as they
apply to the tensor, so a channel is followed through permutes, reshapes, slices and
concatenations wherever it goes, and a layer reads its channels from the axis its rule names.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "along",
    "tracked",
    "vars_along",
    "aligned",
    "dim_groups",
    "reshape",
    "rows",
    "rows_over",
]


def along(vars_: Sequence[int], axis: int, ndim: int) -> Tensor:
    """The map of a tensor of rank ``ndim`` whose axis ``axis`` holds ``vars_``."""
    shape = [1] * ndim
    shape[axis] = len(vars_)
    return torch.tensor(list(vars_), dtype=torch.int64).view(shape)


def tracked(cmap: Tensor) -> set[int]:
    """Axes along which the map lists more than one channel."""
    return {d for d, size in enumerate(cmap.shape) if size > 1}


def vars_along(cmap: Tensor, axis: int) -> list[int] | None:
    """The channel variables along ``axis``, or None when the map also varies along another axis."""
    if any(size > 1 for d, size in enumerate(cmap.shape) if d != axis):
        return None
    return cmap.reshape(-1).tolist()


def aligned(cmap: Tensor, ndim: int) -> Tensor:
    """``cmap`` with leading size-1 axes up to rank ``ndim`` (numpy broadcasting)."""
    return cmap.reshape((1,) * (ndim - cmap.dim()) + tuple(cmap.shape))


def dim_groups(
    shape_in: Sequence[int], shape_out: Sequence[int]
) -> list[tuple[list[int], list[int]]] | None:
    """Runs of input and output axes with equal products: the blocks a reshape maps onto each
    other (``(B, C, H, W) → (B, C, H*W)`` gives ``[0]→[0], [1]→[1], [2, 3]→[2]``)."""
    if 0 in shape_in or 0 in shape_out:
        return None
    groups, i, j = [], 0, 0
    while i < len(shape_in) or j < len(shape_out):
        gi, gj, pa, pb = [], [], 1, 1
        if i < len(shape_in):
            gi, pa, i = [i], shape_in[i], i + 1
        if j < len(shape_out):
            gj, pb, j = [j], shape_out[j], j + 1
        while pa != pb:
            if pa < pb and i < len(shape_in):
                gi, pa, i = gi + [i], pa * shape_in[i], i + 1
            elif pb < pa and j < len(shape_out):
                gj, pb, j = gj + [j], pb * shape_out[j], j + 1
            else:
                return None
        groups.append((gi, gj))
    return groups


def _split_ok(gi: list[int], gj: list[int], cmap: Tensor, shape_out, free) -> int | None:
    """For a block that splits channels over several output axes: the one free axis (the one
    whose size follows the channel count); None if the split cannot stay exact."""
    if sum(1 for d in gi if cmap.shape[d] > 1) != 1:
        return None
    loose = [d for d in gj if shape_out[d] > 1 and free[d]]
    return loose[0] if len(loose) == 1 else None


def reshape(
    cmap: Tensor,
    shape_in: Sequence[int],
    shape_out: Sequence[int],
    free: Sequence[bool],
    batched: bool = True,
) -> tuple[Tensor, Tensor | None] | None:
    """The map after reshaping a tensor from ``shape_in`` to ``shape_out``, and the rows of
    variables that must be joined to keep the reshape exact when channels are removed.

    ``free[d]`` says whether output axis ``d`` follows the input's size (``-1`` or a size read
    from the tensor) rather than being a number fixed in the code. Channels may only flow into
    one block of axes: merged into one free axis (``flatten``), or split over several axes of
    which exactly one is free — the fixed ones keep their size, so the channels at the same
    position along the free axis are one unit (``view(b, 2, c // 2, h, w)`` joins channel
    ``i`` with ``i + c/2``; ``view(b, n, -1, 64)`` joins the 64 channels of each head). None when
    it cannot stay exact (the channels mix with the batch axis 0 of a ``batched`` tensor, a
    fixed channel count, …).
    """
    groups = dim_groups(shape_in, shape_out)
    if groups is None:
        return None
    live = [(gi, gj) for gi, gj in groups if any(cmap.shape[d] > 1 for d in gi)]
    if len(live) > 1 or (batched and live and 0 in live[0][0]):
        return None
    expand, target = [1] * len(shape_in), [1] * len(shape_out)
    joins_axis = None
    for gi, gj in live:
        wide = [d for d in gj if shape_out[d] > 1]
        if len(wide) > 1:
            joins_axis = _split_ok(gi, gj, cmap, shape_out, free)
            if joins_axis is None:
                return None
        elif wide and not free[wide[0]]:
            return None
        for d in gi:
            expand[d] = shape_in[d]
        for d in gj:
            target[d] = shape_out[d]
    new = cmap.expand(expand).reshape(target)
    return new, (None if joins_axis is None else rows(new, joins_axis))


def rows(cmap: Tensor, axis: int) -> Tensor:
    """``(n, k)``: for each of the ``n`` positions along ``axis``, the ``k`` variables at it."""
    return cmap.movedim(axis, 0).reshape(cmap.shape[axis], -1)


def rows_over(cmap: Tensor, axes: set[int]) -> Tensor:
    """``(n, k)``: for each position along the other axes, the ``k`` variables along ``axes``."""
    inner = [d for d in range(cmap.dim()) if d in axes]
    outer = [d for d in range(cmap.dim()) if d not in axes]
    k = 1
    for d in inner:
        k *= cmap.shape[d]
    return cmap.permute(outer + inner).reshape(-1, k)
