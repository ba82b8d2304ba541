"""Attention heads: whole heads as pruning units, and the products attention is made of.

A multi-head attention splits a projection's channels into ``(heads, head width)`` with a
reshape whose sizes are numbers the module keeps (timm's ``Attention``:
``qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)``, and back with
``reshape(B, N, self.attn_dim)``). Such a reshape fixes the channel count, so on its own it pins
the channels. When the module has a :class:`~alphaprune.core.layer_rules.HeadsRule` (int
attributes ``num_heads`` and ``head_dim``), the head axis is taken to follow the channels
instead: the channels of one head (its q, k and v, and the matching ``proj`` inputs) become one
unit, and the module becomes a layer whose channels are its heads, so that cutting it sets
``num_heads`` (and ``attn_dim``) to the heads kept. The head width never changes.

Heads are independent of each other in attention: ``scaled_dot_product_attention`` and the
manual ``softmax(q @ k.transpose(-2, -1) * scale) @ v`` join the q, k and v of each head, and the
channels of a head's width (contracted in ``q @ k``) into one unit, so a head goes or stays whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, fx, nn

from alphaprune.core import channel_maps as cm
from alphaprune.core.layer_rules import HeadsRule, heads_rule_for
from alphaprune.core.trace import node_shape

if TYPE_CHECKING:
    from alphaprune.core.walker import Walker

__all__ = ["HeadSite", "head_site", "record_heads", "attention", "matmul"]


@dataclass(frozen=True)
class HeadSite:
    """A reshape inside a module with heads: output axis ``axis`` follows its head count.

    ``split``: the axis lists the heads (``(…, 3, heads, width)``); otherwise it merges input
    axes ``(heads, width)`` back into channels, with the heads on input axis ``heads_axis``.
    """

    name: str
    module: nn.Module
    rule: HeadsRule
    heads: int
    axis: int
    split: bool
    heads_axis: int


def _enclosing(w: Walker, node: fx.Node) -> tuple[str, nn.Module, HeadsRule] | None:
    """The module whose forward ``node`` is in, with its heads rule, if it has one."""
    stack = node.meta.get("nn_module_stack")
    path = list(stack.values())[-1][0] if stack else ""  # the model's own forward
    try:
        module = w.model.get_submodule(path)
    except AttributeError:
        return None
    rule = heads_rule_for(module)
    return (path, module, rule) if rule is not None else None


def head_site(w: Walker, node: fx.Node, x: fx.Node, sizes: list[object]) -> HeadSite | None:
    """Where the reshape ``node`` of ``x`` splits channels into the enclosing module's heads
    (an axis of ``num_heads`` before one of ``head_dim``), or merges them back (an axis of
    ``num_heads × head_dim`` made of those two), given as numbers in the code."""
    found = _enclosing(w, node)
    shape_in, shape_out = node_shape(x), node_shape(node)
    if found is None or not isinstance(shape_in, tuple) or not isinstance(shape_out, tuple):
        return None
    name, module, rule = found
    heads, width = rule.heads(module)
    if heads < 2 or len(sizes) != len(shape_out):
        return None
    others = _other_counts(module, rule)
    for d in reversed(range(len(shape_out) - 1)):  # (…, 3, heads, width): the last match
        if _written(sizes[d], heads) and _written(sizes[d + 1], width):
            return None if heads in others else HeadSite(name, module, rule, heads, d, True, -1)
    for gi, gj in cm.dim_groups(shape_in, shape_out) or []:
        if len(gj) != 1 or not _written(sizes[gj[0]], heads * width) or heads * width in others:
            continue
        wide = [d for d in gi if shape_in[d] > 1]
        if len(wide) == 2 and [shape_in[d] for d in wide] == [heads, width]:
            return HeadSite(name, module, rule, heads, gj[0], False, wide[0])
    return None


def _written(size: object, value: int) -> bool:
    """A reshape size written as a number (an attribute), not computed in the trace: a size
    computed from the input (``C // self.num_heads``) would not follow the cut."""
    return type(size) is int and size == value


def _other_counts(module: nn.Module, rule: HeadsRule) -> set[int]:
    """The values of the module's other int attributes: a reshape size equal to one of them
    may have been read from it (``num_key_value_heads``, ``hidden_size``), which the cut does
    not update, so such a site is left whole."""
    named = {rule.count, rule.width, *rule.derived}
    return {v for a, v in vars(module).items() if type(v) is int and a not in named}


def has_heads(w: Walker, node: fx.Node) -> bool:
    """Is ``node`` inside a module with a heads rule?"""
    return _enclosing(w, node) is not None


def record_heads(w: Walker, site: HeadSite, cmap_in: Tensor | None, cmap_out: Tensor) -> None:
    """The module of ``site`` is a layer whose channels are its heads: each joined with every
    channel of its head (on the split side, the reshape joined them already)."""
    if site.split:
        rows = cm.rows(cmap_out, site.axis)
    else:
        rows = cm.rows(cmap_in, site.heads_axis)
        w.uf.union_rows(rows)
    if rows.shape[0] != site.heads:
        return
    layer = w.layer(site.name, site.module, site.rule, site.heads, None)
    w.unify(layer.in_vars, rows[:, 0].tolist())


def merges_heads(site: HeadSite | None, cmap: Tensor | None) -> bool:
    """A merging site whose input lists channels along its heads axis."""
    if site is None or cmap is None:
        return False
    if site.split:
        return True
    axis = site.heads_axis
    return cmap.dim() > axis and cmap.shape[axis] == site.heads


# -- attention ---------------------------------------------------------------------------------


def _operands(node: fx.Node, names: tuple[str, ...]) -> list[object]:
    return [
        node.args[i] if len(node.args) > i else node.kwargs.get(name)
        for i, name in enumerate(names)
    ]


def attention(w: Walker, node: fx.Node):
    """``F.scaled_dot_product_attention(q, k, v)``: per head (the axes before the last two) the
    output mixes v's tokens; q and k are contracted over the head width. The q, k and v of a head
    are joined into one unit with every channel of its width, which must not be the only axis
    with channels (then there are no heads to remove). The output has v's channels."""
    q, k, v, mask = _operands(node, ("query", "key", "value", "attn_mask"))
    maps = [w.cmap(t) for t in (q, k, v)]
    if all(m is None for m in maps) and w.cmap(mask) is None:
        return None
    shape_out = node_shape(node)
    if any(m is None for m in maps) or not isinstance(shape_out, tuple):
        return w.unknown(node)
    if w.cmap(mask) is not None:
        return w.unknown(node, " (a mask with values per head)")
    rank = len(shape_out)
    maps = [cm.aligned(m, rank) for m in maps]
    token = rank - 2
    if any(token in cm.tracked(m) or cm.tracked(m) <= {rank - 1} for m in maps):
        return w.unknown(node, " (attention over channels, or without heads)")
    try:
        joined = torch.broadcast_tensors(*maps)
    except RuntimeError:
        return w.unknown(node)
    if _per_head(mask, rank, cm.tracked(joined[0])):
        return w.unknown(node, " (a mask with values per head that are not tracked)")
    rows = [m.reshape(-1, m.shape[-1]) for m in joined]
    w.uf.union_rows(torch.cat(rows, dim=1))
    return joined[2]


def _per_head(mask: object, rank: int, axes: set[int]) -> bool:
    """Does a constant ``mask`` hold values along one of ``axes`` (a bias per head)?"""
    shape = node_shape(mask)
    if not isinstance(shape, tuple):
        return False
    shape = (1,) * (rank - len(shape)) + shape
    return any(shape[d] > 1 for d in axes if d < rank - 2)


def _frame(w: Walker, node: fx.Node, rank: int) -> tuple[Tensor | None, tuple[int, ...]]:
    """The map and shape of a matmul operand, aligned to ``rank`` axes."""
    shape = node_shape(node)
    shape = (1,) * (rank - len(shape)) + shape
    cmap = w.cmap(node)
    return (cm.aligned(cmap, rank) if cmap is not None else None), shape


def matmul(w: Walker, node: fx.Node):
    """``a @ b`` on ``(…, n, k)`` and ``(…, k, m)``: the batch axes broadcast (their channels
    are joined), the ``k`` channels of both sides are joined one to one and, when the product
    keeps channels on another axis, all of one position's ``k`` channels into one unit (their
    sum is one value). Channels on ``n`` and on ``m`` at once cannot be followed."""
    a, b = _operands(node, ("input", "other"))
    shape_out = node_shape(node)
    shapes = [node_shape(t) if isinstance(t, fx.Node) else None for t in (a, b)]
    if not all(isinstance(s, tuple) and len(s) >= 2 for s in shapes + [shape_out]):
        return w.unknown(node) if any(w.cmap(t) is not None for t in (a, b)) else None
    if w.cmap(a) is None and w.cmap(b) is None:
        return None
    rank = len(shape_out)
    (ma, sa), (mb, sb) = _frame(w, a, rank), _frame(w, b, rank)
    # a as (…, n, k, 1) and b as (…, 1, k, m): one frame of rank + 1 axes
    sa, sb = sa + (1,), sb[:-2] + (1,) + sb[-2:]
    ma = ma.unsqueeze(-1) if ma is not None else None
    mb = mb.unsqueeze(-3) if mb is not None else None
    ta = cm.tracked(ma) if ma is not None else set()
    tb = cm.tracked(mb) if mb is not None else set()
    n, k, m = rank - 2, rank - 1, rank
    if any(sb[d] > 1 and d not in tb for d in ta) or any(sa[d] > 1 and d not in ta for d in tb):
        return w.unknown(node, " (a product with values per channel that are not tracked)")
    if n in ta and m in tb:
        return w.unknown(node, " (channels on both sides of a product)")
    if ma is not None and mb is not None:
        ma, mb = torch.broadcast_tensors(ma, mb)
        w.uf.unify(ma.reshape(-1), mb.reshape(-1))
    base = mb if m in tb else ma
    out_axes = (ta | tb) - {k}
    if not out_axes:  # a sum over channels into values that carry none: they must stay
        return w.unknown(node, " (a sum over channels)") if k in ta | tb else None
    if not out_axes <= cm.tracked(base):
        return w.unknown(node)
    if k in ta | tb:
        w.uf.union_rows(cm.rows(base, k).t())
    return base.select(k, 0)  # the k channels of a position are one unit (or not tracked)
