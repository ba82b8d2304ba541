"""How functions and tensor methods move channels: the handlers :class:`~.walker.Walker` calls.

Each handler takes the walker and an fx node and returns the node's channel map (a tensor), a
list of maps (for an operation returning a tuple), or None (not a tensor, or untracked). A
function or method not listed here pins every channel it reads (``Walker.unknown``).

- elementwise functions keep channels in place unless they mix values along a channel axis;
- binary operations (``+``, ``*``, ``torch.where``, …) broadcast their operands' maps and join
  the channels that meet; an operand with per-channel values of its own that are not tracked
  (a constant tensor) pins them;
- ``cat`` concatenates maps along a channel axis, or joins them along any other axis;
- shape operations (``permute``, ``view``, ``flatten``, …) move the map with the tensor
  (:mod:`alphaprune.core.channel_maps`);
- slices with fixed bounds keep the channels before the slice's end in place (pinned), ``chunk``
  and sizes computed from the tensor join the channels at equal positions of the pieces;
- the functional norms tie a module's per-channel tensors to the channels they scale.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from alphaprune.core import channel_maps as cm
from alphaprune.core import heads
from alphaprune.core.layer_rules import LayerNormRule, rule_for
from alphaprune.core.trace import describe, node_shape, size_reads

if TYPE_CHECKING:
    from alphaprune.core.walker import Walker

__all__ = ["handler_for", "module_shape_op", "NOT_A_SHAPE_OP"]

Handler = Callable[["Walker", fx.Node], object]
NOT_A_SHAPE_OP = object()


def _arg(node: fx.Node, position: int, name: str, default=None):
    if len(node.args) > position:
        return node.args[position]
    return node.kwargs.get(name, default)


def _first(node: fx.Node):
    return node.args[0] if node.args else node.kwargs.get("input")


def _tensor(node: object) -> bool:
    return isinstance(node, fx.Node) and isinstance(node_shape(node), tuple)


def _untracked(w: Walker, node: fx.Node):
    """No channel map: fine when nothing tracked goes in, else the channels going in are pinned."""
    if any(w.cmap(a) is not None for a in node.all_input_nodes):
        return w.unknown(node)
    return None


# -- elementwise -------------------------------------------------------------------------------


def _pointwise(mixing: int | Callable[[fx.Node, int], set[int]] = 0) -> Handler:
    """An elementwise operation that mixes values along the last ``mixing`` axes (pooling) or
    along the axes ``mixing(node, ndim)`` names."""

    def handle(w: Walker, node: fx.Node):
        x = _first(node)
        if not _tensor(x):
            return _untracked(w, node)
        ndim = len(node_shape(x))
        dims = mixing(node, ndim) if callable(mixing) else set(range(ndim - mixing, ndim))
        return w.passthrough(node, x, dims)

    return handle


def _spatial(node: fx.Node, ndim: int) -> set[int]:
    return set(range(2, ndim))


def _padded(node: fx.Node, ndim: int) -> set[int]:
    pad = _arg(node, 1, "pad", ())
    return set(range(ndim - len(pad) // 2, ndim))


def _dim_arg(position: int) -> Callable[[fx.Node, int], set[int]]:
    def dims(node: fx.Node, ndim: int) -> set[int]:
        dim = _arg(node, position, "dim")
        return {dim % ndim} if isinstance(dim, int) else set(range(ndim))

    return dims


def _cast(w: Walker, node: fx.Node):
    """``to``/``type_as``/``float``/…: the same channels (other arguments give dtype/device)."""
    x = _first(node)
    if node_shape(x) != node_shape(node):
        return w.unknown(node)
    return w.cmap(x)


# -- binary ------------------------------------------------------------------------------------


def binary(w: Walker, node: fx.Node):
    """Operands broadcast together: channels meeting at the same position are joined."""
    shape_out = node_shape(node)
    args = [a for a in list(node.args) + list(node.kwargs.values()) if _tensor(a)]
    if not isinstance(shape_out, tuple):
        return _untracked(w, node)
    rank = len(shape_out)
    maps = [cm.aligned(w.cmap(a), rank) for a in args if w.cmap(a) is not None]
    wide = [m for m in maps if cm.tracked(m)]
    if not maps:
        return None
    if not wide:  # single-channel operands only
        _join(w, maps)
        return maps[0]
    axes = cm.tracked(wide[0])
    if any(cm.tracked(m) != axes for m in wide):
        return w.unknown(node, " (operands with channels on different axes)")
    for a in args:
        shape = (1,) * (rank - len(node_shape(a))) + node_shape(a)
        if not cm.tracked(_map_or_empty(w, a, rank)) and any(shape[d] > 1 for d in axes):
            adopted = _param_operand(w, node, a, axes, rank)
            if adopted is None:
                why = f" (an operand with a per-channel shape not tracked: {describe(a)})"
                return w.unknown(node, why)
            wide.append(cm.aligned(adopted, rank))
    _join(w, wide)
    return wide[0]


def _param_operand(
    w: Walker, node: fx.Node, a: fx.Node, axes: set[int], rank: int
) -> Tensor | None:
    """A parameter added to or multiplied with tracked channels along its one channel axis
    (timm's ``x + pos_embed`` with ``pos_embed (1, N, C)``): channels of its own, joined."""
    if w.cmap(a) is not None or len(axes) != 1:
        return None
    (axis,) = axes
    own = axis - (rank - len(node_shape(a)))
    return w.param_along(a, own, node) if own >= 0 else None


def _map_or_empty(w: Walker, node: fx.Node, rank: int) -> Tensor:
    cmap = w.cmap(node)
    return cm.aligned(cmap, rank) if cmap is not None else torch.zeros((1,) * rank, dtype=int)


def _join(w: Walker, maps: list[Tensor]) -> None:
    if len(maps) < 2:
        return
    flat = [m.reshape(-1) for m in torch.broadcast_tensors(*maps)]
    for other in flat[1:]:
        w.uf.unify(flat[0], other)


# -- cat, split, chunk, indexing -----------------------------------------------------------------


def cat(w: Walker, node: fx.Node):
    tensors = _arg(node, 0, "tensors", [])
    shape_out, dim = node_shape(node), _arg(node, 1, "dim", 0)
    if not isinstance(shape_out, tuple) or not isinstance(dim, int):
        return w.unknown(node)
    if not all(_tensor(t) for t in tensors):
        return w.unknown(node)
    maps = [w.cmap(t) for t in tensors]
    if all(m is None for m in maps):
        return None
    if any(m is None or m.dim() != len(shape_out) for m in maps):
        return w.unknown(node, " (a part whose channels are not tracked)")
    dim %= len(shape_out)
    full = all(m.shape[dim] == node_shape(t)[dim] for m, t in zip(maps, tensors, strict=True))
    if full and any(m.shape[dim] > 1 for m in maps) and all(cm.tracked(m) <= {dim} for m in maps):
        return torch.cat(maps, dim)
    if all(m.shape[dim] == 1 for m in maps) and len({frozenset(cm.tracked(m)) for m in maps}) == 1:
        _join(w, maps)
        return maps[0]
    return w.unknown(node)


def getitem(w: Walker, node: fx.Node):
    x, index = node.args[0], node.args[1]
    found = w.ids.get(x) if isinstance(x, fx.Node) else None
    if isinstance(found, list):
        if isinstance(index, (int, slice)):
            return found[index]
        return w.unknown(node)
    cmap = w.cmap(x)
    if cmap is None:
        return _untracked(w, node)
    return _index(w, node, cmap, node_shape(x), index)


def _index(w: Walker, node: fx.Node, cmap: Tensor, shape: tuple, index):
    items = list(index) if isinstance(index, tuple) else [index]
    used = sum(1 for it in items if it is not None and it is not Ellipsis)
    if any(it is Ellipsis for it in items):
        at = next(i for i, it in enumerate(items) if it is Ellipsis)
        items[at : at + 1] = [slice(None)] * (len(shape) - used)
    items += [slice(None)] * (len(shape) - sum(1 for it in items if it is not None))
    out, d, src = cmap, 0, 0
    for item in items:
        if item is None:
            out, d = out.unsqueeze(d), d + 1
            continue
        out = _index_axis(w, node, out, d, shape[src], item)
        if out is None:
            return w.unknown(node, " (indexing)")
        src += 1
        d += 0 if isinstance(item, int) else 1
    return out if out.dim() == len(node_shape(node)) else w.unknown(node, " (indexing)")


def _index_axis(w: Walker, node: fx.Node, cmap: Tensor, d: int, size: int, item):
    """``cmap`` indexed by ``item`` on axis ``d``; a fixed slice of a channel axis keeps the
    channels before its end in place: they are pinned (the tail after it is free)."""
    if isinstance(item, int):
        if cmap.shape[d] == 1:
            return cmap.select(d, 0)
        if item < 0:
            return None
        _pin_prefix(w, node, cmap, d, item + 1)
        return cmap.select(d, item)
    if not isinstance(item, slice):
        return None
    bounds = (item.start, item.stop, item.step)
    if cmap.shape[d] == 1 or bounds == (None, None, None):
        return cmap
    if not all(b is None or (isinstance(b, int) and b >= 0) for b in bounds) or item.step not in (
        None,
        1,
    ):
        return None
    start, stop = item.start or 0, size if item.stop is None else min(item.stop, size)
    if (start, stop) == (0, size):
        return cmap
    _pin_prefix(w, node, cmap, d, stop if stop < size else start)
    kept = cmap.narrow(d, start, max(stop - start, 0))
    if stop == size:
        w.nonempty.append(kept.reshape(-1).tolist())
    return kept


def _pin_prefix(w: Walker, node: fx.Node, cmap: Tensor, d: int, n: int) -> None:
    reason = f"read by indexing with fixed bounds (node {node.name}): the first {n} stay in place"
    w.pin(cmap.narrow(d, 0, n).reshape(-1).tolist(), reason)


def _pieces(w: Walker, node: fx.Node, dim: int, size_is_code: bool):
    """Channel maps of ``split``/``chunk`` pieces along ``dim`` (the shapes come from the trace).

    Along a channel axis, pieces of a size computed from the tensor (``chunk``, ``split(c //
    2)``) stay equal after pruning only when the channels at the same position of every piece
    go together: they are joined. Pieces of a size fixed in the code keep their bounds: every
    piece but the last is pinned.
    """
    x, shapes = _first(node), node_shape(node)
    cmap = w.cmap(x)
    if cmap is None or not isinstance(shapes, list):
        return _untracked(w, node)
    dim %= cmap.dim()
    if cmap.shape[dim] == 1:
        return [cmap for _ in shapes]
    sizes = [s[dim] for s in shapes]
    pieces = list(cmap.split(sizes, dim))
    if size_is_code:
        _pin_prefix(w, node, cmap, dim, sum(sizes[:-1]))
        w.nonempty.append(pieces[-1].reshape(-1).tolist())  # else the split has a piece less
        return pieces
    if len(set(sizes)) != 1:
        return w.unknown(node, " (unequal pieces)")
    _join(w, pieces)
    return pieces


def chunk(w: Walker, node: fx.Node):
    dim = _arg(node, 2, "dim", 0)
    return _pieces(w, node, dim, False) if isinstance(dim, int) else w.unknown(node)


def split(w: Walker, node: fx.Node):
    size, dim = _arg(node, 1, "split_size_or_sections"), _arg(node, 2, "dim", 0)
    if size is None:
        size = _arg(node, 1, "split_size")
    if not isinstance(dim, int):
        return w.unknown(node)
    if isinstance(size, int):
        return _pieces(w, node, dim, True)
    if isinstance(size, fx.Node) or all(isinstance(s, fx.Node) for s in size):
        return _pieces(w, node, dim, False)
    return w.unknown(node, " (split into sizes fixed in the code)")


def stack(w: Walker, node: fx.Node):
    """``torch.stack``: the parts line up position by position, along a new axis."""
    tensors, dim = _arg(node, 0, "tensors", []), _arg(node, 1, "dim", 0)
    shape_out = node_shape(node)
    if not isinstance(shape_out, tuple) or not isinstance(dim, int):
        return w.unknown(node)
    maps = [w.cmap(t) for t in tensors]
    if all(m is None for m in maps):
        return None
    if any(m is None for m in maps) or len({frozenset(cm.tracked(m)) for m in maps}) != 1:
        return w.unknown(node)
    _join(w, maps)
    return maps[0].unsqueeze(dim % len(shape_out))


def check(w: Walker, node: fx.Node):
    """``torch._assert(condition, message)``: a guard on what the condition reads."""
    condition = _first(node)
    if isinstance(condition, fx.Node):
        w.guard(condition, f"torch._assert (node {node.name})")
    return None


def unbind(w: Walker, node: fx.Node):
    x, dim = _first(node), _arg(node, 1, "dim", 0)
    cmap = w.cmap(x)
    if cmap is None or not isinstance(dim, int):
        return _untracked(w, node)
    dim %= cmap.dim()
    if cmap.shape[dim] == 1:
        return [cmap.select(dim, 0) for _ in node_shape(node)]
    if cm.tracked(cmap) == {dim}:  # removing channels would remove pieces
        return w.unknown(node)
    pieces = list(cmap.unbind(dim))  # channels at the same position of every piece go together
    _join(w, pieces)
    return pieces


# -- shapes ------------------------------------------------------------------------------------


def reshaped(w: Walker, node: fx.Node, x: object, free: list[bool], site=None):
    """Channel map of ``node`` (a reshape of ``x``) when output axis ``d`` is ``free[d]``; at a
    :class:`~alphaprune.core.heads.HeadSite` the head axis follows the channels too."""
    cmap, shape_out = w.cmap(x), node_shape(node)
    if cmap is None or not isinstance(shape_out, tuple):
        return _untracked(w, node)
    if not heads.merges_heads(site, cmap):
        site = None
    elif site is not None:
        free = [f or d == site.axis for d, f in enumerate(free)]
    result = cm.reshape(cmap, node_shape(x), shape_out, free, w.batched[x])
    if result is None:
        why = " (a reshape to a fixed channel count, or across the batch axis"
        if _splits_heads(cmap, node_shape(x), shape_out):
            why += _HEADS_WRITTEN if heads.has_heads(w, node) else _HEADS_KEPT
        return w.unknown(node, why + ")")
    new, rows = result
    if rows is not None:
        w.uf.union_rows(rows)
    if site is not None:
        heads.record_heads(w, site, cmap, new)
    return new


_HEADS_WRITTEN = (
    "; whole heads are pruned where the reshape writes the head count and width as the "
    "module's own `num_heads` and `head_dim` (not `-1` or computed), and no other int "
    "attribute of the module has the same value"
)
_HEADS_KEPT = (
    "; whole attention heads are pruned only in a module that keeps int attributes "
    "`num_heads` and `head_dim`"
)


def _splits_heads(cmap: Tensor, shape_in: tuple, shape_out: tuple) -> bool:
    """Does the reshape split a channel axis over several axes (like heads)?"""
    for gi, gj in cm.dim_groups(shape_in, shape_out) or []:
        if any(cmap.shape[d] > 1 for d in gi) and sum(shape_out[d] > 1 for d in gj) > 1:
            return True
    return False


def view(w: Walker, node: fx.Node):
    """``view``/``reshape``: an axis is free when its size is ``-1`` or read from the channels
    of the tensor itself (``b, c, h, w = x.shape``; ``x.view(b, c // g, g, h, w)``)."""
    x = _first(node)
    sizes = list(node.args[1:]) if node.op == "call_method" else [_arg(node, 1, "shape")]
    if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)):
        sizes = list(sizes[0])
    rank = len(node_shape(node) or ())
    if len(sizes) != rank:  # one size node (``x.view(y.shape)``)
        sizes = [sizes[0]] * rank
    site = heads.head_site(w, node, x, sizes)
    return reshaped(w, node, x, [s == -1 or _follows(w, s, x) for s in sizes], site)


def _follows(w: Walker, size: object, x: object) -> bool:
    """Is ``size`` computed from a channel count that shrinks with ``x``'s channels? It is read
    from a tensor's channel axis (``b, c, h, w = t.shape``); that tensor's channels are joined
    with ``x``'s position by position, so both keep the same count (an SE block's
    ``s.view(b, c, 1, 1)`` with ``c`` from its input)."""
    cmap = w.cmap(x)
    if not isinstance(size, fx.Node) or cmap is None:
        return False
    reads = size_reads(size)
    mine = cmap.reshape(-1)
    for y, axes in reads:
        other = w.cmap(y)
        if other is None or not any(other.shape[a] > 1 for a in axes):
            return False
        if other.numel() != mine.numel():
            return False
    for y, _ in reads:
        other = w.cmap(y).reshape(-1)
        if set(other.tolist()) != set(mine.tolist()):  # not the same channels, reordered
            w.uf.unify(mine, other)
    if reads:
        w.followed.add(size)
    return bool(reads)


def free_reshape(w: Walker, node: fx.Node):
    """``flatten``/``squeeze``/``unsqueeze``: every axis size follows the input."""
    return reshaped(w, node, _first(node), [True] * len(node_shape(node) or ()))


def unflatten(w: Walker, node: fx.Node):
    x, dim, sizes = _first(node), _arg(node, 1, "dim"), _arg(node, 2, "sizes")
    rank = len(node_shape(node) or ())
    free = [True] * rank
    if isinstance(dim, int) and isinstance(sizes, (list, tuple)):
        start = dim % len(node_shape(x))
        for k, size in enumerate(sizes):
            free[start + k] = size == -1 or _follows(w, size, x)
    return reshaped(w, node, x, free)


def permute(w: Walker, node: fx.Node):
    cmap = w.cmap(_first(node))
    dims = list(node.args[1:]) if node.op == "call_method" else [_arg(node, 1, "dims")]
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = list(dims[0])
    if cmap is None:
        return _untracked(w, node)
    if not all(isinstance(d, int) for d in dims):
        return w.unknown(node)
    return cmap.permute(dims)


def transpose(w: Walker, node: fx.Node):
    cmap, a, b = w.cmap(_first(node)), _arg(node, 1, "dim0"), _arg(node, 2, "dim1")
    if cmap is None:
        return _untracked(w, node)
    if not isinstance(a, int) or not isinstance(b, int):
        return w.unknown(node)
    return cmap.transpose(a, b)


def movedim(w: Walker, node: fx.Node):
    cmap, a, b = w.cmap(_first(node)), _arg(node, 1, "source"), _arg(node, 2, "destination")
    if cmap is None:
        return _untracked(w, node)
    if not isinstance(a, (int, tuple, list)) or not isinstance(b, (int, tuple, list)):
        return w.unknown(node)
    return cmap.movedim(a, b)


def expand(w: Walker, node: fx.Node):
    """``expand``/``expand_as``/``repeat`` that only grow axes without channels."""
    x, shape_out = _first(node), node_shape(node)
    cmap = w.cmap(x)
    if cmap is None or not isinstance(shape_out, tuple):
        return _untracked(w, node)
    new = cm.aligned(cmap, len(shape_out))
    shape_in = (1,) * (len(shape_out) - cmap.dim()) + node_shape(x)
    if any(shape_out[d] != shape_in[d] for d in cm.tracked(new)):
        return w.unknown(node, " (repeats channels)")
    return new


# -- reductions and norms ----------------------------------------------------------------------


def _reduce(position: int = 1) -> Handler:
    """``mean``/``sum``/``amax``/…: fine over axes without channels (the result keeps them)."""

    def handle(w: Walker, node: fx.Node):
        x, dims = _first(node), _arg(node, position, "dim")
        if _tensor(dims) or (_tensor(_arg(node, 1, "other"))):
            return binary(w, node)  # torch.max(a, b)
        cmap = w.cmap(x)
        if cmap is None:
            return _untracked(w, node)
        if dims is None or dims == ():
            dims = list(range(cmap.dim()))
        dims = [dims] if isinstance(dims, int) else list(dims)
        if not all(isinstance(d, int) for d in dims):
            return w.unknown(node)
        dims = {d % cmap.dim() for d in dims}
        if dims & cm.tracked(cmap):
            return w.unknown(node, " (a reduction over channels)")
        keep = _arg(node, position + 1, "keepdim", False)
        out = cmap if keep else cmap.reshape([s for d, s in enumerate(cmap.shape) if d not in dims])
        shape = node_shape(node)
        values = shape[0] if isinstance(shape, list) else shape
        if not isinstance(values, tuple) or out.dim() != len(values):
            return w.unknown(node)
        return [out, None] if isinstance(shape, list) else out

    return handle


def _vectors(w: Walker, node: fx.Node, vars_: list[int], vectors: list[object]) -> bool:
    """Tie per-channel tensors (a norm's weight, bias, statistics) to ``vars_``."""
    for vector in vectors:
        if vector is None:
            continue
        cmap = w.cmap(vector)
        found = cmap.reshape(-1).tolist() if cmap is not None and len(cm.tracked(cmap)) <= 1 else []
        if len(found) != len(vars_):
            return False
        w.unify(vars_, found)
    return True


_NORM_TENSORS = ("running_mean", "running_var", "weight", "bias")


def batch_norm(w: Walker, node: fx.Node):
    """``F.batch_norm``/``F.instance_norm`` (timm's ``BatchNormAct2d`` …): per channel (axis 1).
    When the tensors are a norm module's own, that module is the layer (its rule cuts them
    and its size); otherwise each tensor is cut on its own."""
    x = _first(node)
    cmap = w.cmap(x)
    vars_ = cm.vars_along(cmap, 1) if cmap is not None and cmap.dim() >= 2 else None
    vectors = [_arg(node, i, name) for i, name in enumerate(_NORM_TENSORS, 1)]
    if vars_ is None:
        return w.unknown(node)
    owner = _norm_owner(w, vectors)
    if owner is not None:
        module = w.model.get_submodule(owner)
        rule = rule_for(nn.BatchNorm2d)
        layer = w.layer(owner, module, rule, len(vars_), None)
        if len(layer.in_vars) == len(vars_):
            w.read(node, x, layer.in_vars, 1)
            w.claimed.update(v.target for v in vectors if isinstance(v, fx.Node))
            return cmap
    if not _vectors(w, node, vars_, vectors):
        return w.unknown(node)
    return cmap


def _norm_owner(w: Walker, vectors: list[object]) -> str | None:
    """The BatchNorm/InstanceNorm module whose own tensors ``vectors`` are, if one is."""
    nodes = [v for v in vectors if v is not None]
    if not nodes or not all(isinstance(v, fx.Node) and v.op == "get_attr" for v in nodes):
        return None
    owners = {v.target.rpartition(".")[0] for v in nodes}
    if len(owners) != 1:
        return None
    owner = owners.pop()
    module = w.model.get_submodule(owner)
    names = [f"{owner}.{n}" if owner else n for n in _NORM_TENSORS]
    own = all(v is None or v.target == n for v, n in zip(vectors, names, strict=True))
    norm = isinstance(module, nn.modules.batchnorm._NormBase) and module.num_features
    return owner if own and norm else None


def group_norm(w: Walker, node: fx.Node):
    """``F.group_norm``: blocks of channels are units. More than one block can only shrink when
    the group count comes from a GroupNorm module whose ``num_groups`` shrink can update."""
    x, groups = _first(node), _arg(node, 1, "num_groups")
    weight, bias = _arg(node, 2, "weight"), _arg(node, 3, "bias")
    cmap = w.cmap(x)
    vars_ = cm.vars_along(cmap, 1) if cmap is not None and cmap.dim() >= 2 else None
    if vars_ is None or not isinstance(groups, int) or len(vars_) % groups:
        return w.unknown(node)
    w.uf.union_rows(torch.tensor(vars_).view(groups, -1))
    owner = _group_norm_owner(w, weight, groups)
    if owner is not None:
        layer = w.layer(
            owner, w.model.get_submodule(owner), rule_for(nn.GroupNorm), len(vars_), None
        )
        w.unify(layer.in_vars, vars_)
        w.claimed.update(a.target for a in (weight, bias) if isinstance(a, fx.Node))
        return cmap
    if groups > 1 or not _vectors(w, node, vars_, [weight, bias]):
        return w.unknown(node, " (a group count fixed in the code)")
    return cmap


def _group_norm_owner(w: Walker, weight: object, groups: int) -> str | None:
    if not isinstance(weight, fx.Node) or weight.op != "get_attr" or groups == 1:
        return None
    owner, _, attr = weight.target.rpartition(".")
    module = w.model.get_submodule(owner)
    if attr == "weight" and isinstance(module, nn.GroupNorm) and module.num_groups == groups:
        return owner
    return None


def layer_norm(w: Walker, node: fx.Node):
    """``F.layer_norm``: statistics over the trailing normalized axes mix their channels."""
    x, normalized = _first(node), _arg(node, 1, "normalized_shape", ())
    cmap = w.cmap(x)
    if cmap is None:
        return _untracked(w, node)
    k = len(normalized) if isinstance(normalized, (list, tuple)) else cmap.dim() - 1
    mixing = set(range(cmap.dim() - k, cmap.dim()))
    if cm.tracked(cmap) & mixing and cm.tracked(cmap) - mixing:  # each head's width: joined
        w.uf.union_rows(cm.rows_over(cmap, mixing))
    elif cm.tracked(cmap) & mixing:  # same channels, pinned
        w.pin(
            cmap.reshape(-1).tolist(),
            f"read by 'layer_norm' (node {node.name}) ({LayerNormRule.why})",
        )
    return cmap


def prelu(w: Walker, node: fx.Node):
    x, weight = _first(node), _arg(node, 1, "weight")
    cmap = w.cmap(x)
    vars_ = cm.vars_along(cmap, 1) if cmap is not None and cmap.dim() >= 2 else None
    if vars_ is None or not _vectors(w, node, vars_, [weight]):
        return w.unknown(node)
    return cmap


_FUNCTIONAL_LAYERS = {F.linear: nn.Linear, F.conv1d: nn.Conv1d, F.conv2d: nn.Conv2d}
_FUNCTIONAL_LAYERS[F.conv3d] = nn.Conv3d


def functional_layer(w: Walker, node: fx.Node):
    """``F.linear``/``F.conv*d`` on a module's own weight and bias, in the forward of a subclass
    of that layer (timm's ``Linear``): the module is the layer, gated like its base class."""
    x, weight, bias = _first(node), _arg(node, 1, "weight"), _arg(node, 2, "bias")
    owner = _owner_of(weight, "weight")
    base = _FUNCTIONAL_LAYERS[node.target]
    module = w.model.get_submodule(owner) if owner is not None else None
    if (
        module is None
        or not isinstance(module, base)
        or rule_for(type(module)) is not None
        or not _tensor(x)
        or (bias is not None and _owner_of(bias, "bias") != owner)
    ):
        return w.unknown(node)
    w.claimed.update(a.target for a in (weight, bias) if isinstance(a, fx.Node))
    return w.mixing(node, owner, module, rule_for(base), x)


def _owner_of(tensor: object, attr: str) -> str | None:
    """The module path whose ``attr`` ``tensor`` (a ``get_attr`` node) is."""
    if not isinstance(tensor, fx.Node) or tensor.op != "get_attr":
        return None
    owner, _, name = tensor.target.rpartition(".")
    return owner if name == attr else None


def _shape_only(w: Walker, node: fx.Node):
    """Reads only shapes, dtypes or devices (``size``, ``zeros_like``, …): nothing is pinned."""
    return None


# -- modules that are shape operations ---------------------------------------------------------


def module_shape_op(w: Walker, node: fx.Node, module: nn.Module):
    """``nn.Flatten``/``nn.Unflatten`` as reshapes; :data:`NOT_A_SHAPE_OP` for other modules."""
    if isinstance(module, nn.Flatten):
        return free_reshape(w, node)
    if isinstance(module, nn.Unflatten):
        rank = len(node_shape(node) or ())
        free = [True] * rank
        start = module.dim % len(node_shape(_first(node)))
        for k in range(len(module.unflattened_size)):
            free[start + k] = False  # sizes fixed in the module
        return reshaped(w, node, _first(node), free)
    return NOT_A_SHAPE_OP


# -- dispatch ----------------------------------------------------------------------------------


def _names(owner: object, names: str) -> list:
    return [getattr(owner, name) for name in names.split()]


_POINTWISE_FUNCTIONS = _names(
    F,
    "relu relu_ relu6 leaky_relu silu gelu mish sigmoid tanh hardswish hardsigmoid hardtanh elu "
    "selu celu softplus logsigmoid dropout dropout1d dropout2d dropout3d alpha_dropout",
) + _names(
    torch,
    "relu relu_ sigmoid tanh dropout abs exp clamp clip sqrt rsqrt square neg log erf sin cos "
    "pow nan_to_num",
)
_POINTWISE_METHODS = (
    "relu relu_ sigmoid sigmoid_ tanh tanh_ contiguous clone detach abs exp clamp clamp_ "
    "clamp_min clamp_max clip sqrt rsqrt neg square pow log erf sin cos hardtanh_ nan_to_num"
).split()
_CASTS = "float double half bfloat16 to type_as type requires_grad_".split()
_BINARY_FUNCTIONS = _names(operator, "add sub mul truediv iadd isub imul itruediv neg") + _names(
    torch, "add sub mul div maximum minimum where true_divide"
)
_BINARY_METHODS = (
    "add add_ sub sub_ mul mul_ div div_ masked_fill masked_fill_ maximum minimum where"
).split()
_SHAPE_ONLY_METHODS = (
    "size dim numel nelement new_zeros new_ones new_empty new_full new_tensor is_contiguous "
    "element_size get_device"
).split()
_SHAPE_ONLY_FUNCTIONS = [getattr, len] + _names(
    torch, "zeros_like ones_like empty_like full_like rand_like randn_like randint_like"
)
_REDUCTIONS = "mean sum amax amin max min std var logsumexp prod".split()


def _table() -> tuple[dict, dict]:
    functions: dict = {f: _pointwise() for f in _POINTWISE_FUNCTIONS}
    methods: dict = {m: _pointwise() for m in _POINTWISE_METHODS}
    functions.update({f: binary for f in _BINARY_FUNCTIONS})
    methods.update({m: binary for m in _BINARY_METHODS})
    methods.update({m: _cast for m in _CASTS})
    functions.update({f: _shape_only for f in _SHAPE_ONLY_FUNCTIONS})
    methods.update({m: _shape_only for m in _SHAPE_ONLY_METHODS})
    for name in _REDUCTIONS:
        functions[getattr(torch, name)] = _reduce()
        methods[name] = _reduce()
    functions[torch.norm] = methods["norm"] = _reduce(2)
    for pool in ("max_pool", "avg_pool", "adaptive_avg_pool", "adaptive_max_pool"):
        for d in (1, 2, 3):
            functions[getattr(F, f"{pool}{d}d")] = _pointwise(d)
    functions[F.interpolate] = functions[F.upsample] = _pointwise(_spatial)
    functions[F.pad] = _pointwise(_padded)
    for f in (F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, F.normalize):
        functions[f] = _pointwise(_dim_arg(1))
    methods["softmax"] = methods["log_softmax"] = _pointwise(_dim_arg(1))
    functions.update({torch.cat: cat, torch.concat: cat, torch.chunk: chunk, torch.split: split})
    methods.update({"chunk": chunk, "split": split, "unbind": unbind})
    functions.update({torch.unbind: unbind, operator.getitem: getitem, torch.stack: stack})
    functions[torch._assert] = check
    functions[F.scaled_dot_product_attention] = heads.attention
    functions.update({operator.matmul: heads.matmul, torch.matmul: heads.matmul})
    functions[torch.bmm] = methods["matmul"] = methods["bmm"] = heads.matmul
    functions.update(
        {torch.reshape: view, torch.flatten: free_reshape, torch.squeeze: free_reshape}
    )
    functions.update({torch.unsqueeze: free_reshape, torch.unflatten: unflatten})
    methods.update({"view": view, "reshape": view, "flatten": free_reshape})
    methods.update({"squeeze": free_reshape, "unsqueeze": free_reshape, "unflatten": unflatten})
    functions.update({torch.permute: permute, torch.transpose: transpose, torch.movedim: movedim})
    methods.update({"permute": permute, "transpose": transpose, "movedim": movedim})
    methods.update({"expand": expand, "expand_as": expand, "repeat": expand})
    functions.update({F.batch_norm: batch_norm, F.instance_norm: batch_norm})
    functions.update({F.group_norm: group_norm, F.layer_norm: layer_norm, F.prelu: prelu})
    functions.update({f: functional_layer for f in _FUNCTIONAL_LAYERS})
    return functions, methods


_FUNCTIONS, _METHODS = _table()


def handler_for(node: fx.Node) -> Handler | None:
    """The handler of a ``call_function``/``call_method`` node, or None (unknown: pins)."""
    if node.op == "call_method":
        return _METHODS.get(node.target)
    try:
        return _FUNCTIONS.get(node.target)
    except TypeError:  # an unhashable target
        return None
