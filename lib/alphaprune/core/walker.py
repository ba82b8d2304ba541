"""Walk a traced graph once, giving every tensor its channel map and every layer its channels.

Every channel of every tensor is a variable of a union-find; operations that tie channels
together unify them (a residual ``x + f(x)``, a depthwise convolution's input and output, a
GroupNorm block, a LayerScale ``gamma`` and the channels it scales). A tensor's channel map
(:mod:`alphaprune.core.channel_maps`) says which variable each position carries, so channels are
followed along any axis. Layers (``call_module`` nodes, and the per-channel parameters a forward
reads itself) are recorded with the variables of their input and output channels; which axis
they read and how they are cut is their rule's business (:mod:`alphaprune.core.layer_rules`).

Anything not understood *pins* the channels it reads (they are never pruned) and gives an
untracked result: a layer reading an untracked tensor gets pinned inputs but free outputs.
The handlers of functions and tensor methods are in :mod:`alphaprune.core.ops`.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

from alphaprune.core import channel_maps as cm
from alphaprune.core import ops
from alphaprune.core.layer_rules import (
    ChannelwiseRule,
    ElementwiseRule,
    GroupNormRule,
    LayerRule,
    MixingRule,
    ParamRule,
    rule_for,
)
from alphaprune.core.trace import GUARD, describe, node_shape, size_reads

__all__ = ["LayerChannels", "UnionFind", "Walker", "describe"]


@dataclass
class LayerChannels:
    """A layer the graph understands, with the channel variables of its inputs and outputs."""

    name: str
    module: nn.Module
    rule: LayerRule
    in_vars: list[int]
    out_vars: list[int]

    @property
    def is_consumer(self) -> bool:
        """A mixing layer whose input channels can be gated one by one (``groups == 1``, or a
        grouped layer pruned by position): where the gates of its input units live."""
        if not isinstance(self.rule, MixingRule):
            return False
        return self.rule.groups(self.module) == 1 or self.rule.by_position(self.module)


class UnionFind:
    """Channel variables ``0 … n-1`` joined into classes (the pruning units).

    Joins are recorded as edges and resolved at once when the classes are asked for: hook each
    edge's larger root under the smaller and compress paths, in whole-tensor steps (a few
    passes even for a million variables, where a Python union-find spends seconds). A class is
    named by its smallest variable.
    """

    def __init__(self) -> None:
        self.size = 0
        self._edges: list[tuple[Tensor, Tensor]] = []
        self._roots: list[int] | None = None

    def new(self, n: int) -> list[int]:
        start = self.size
        self.size += n
        self._roots = None
        return list(range(start, start + n))

    def unify(self, a: Sequence[int] | Tensor, b: Sequence[int] | Tensor) -> None:
        """Join ``a[i]`` with ``b[i]`` for every ``i``."""
        a, b = torch.as_tensor(a, dtype=torch.int64), torch.as_tensor(b, dtype=torch.int64)
        if a.numel():
            self._edges.append((a.reshape(-1), b.reshape(-1)))
            self._roots = None

    def union(self, a: int, b: int) -> None:
        self.unify([a], [b])

    def union_all(self, items: Sequence[int]) -> None:
        if len(items) > 1:
            self.union_rows(torch.as_tensor(items, dtype=torch.int64).view(1, -1))

    def union_rows(self, rows: Tensor) -> None:
        """Join the variables of each row of a ``(n, k)`` tensor."""
        if rows.shape[-1] > 1:
            self.unify(rows[:, :1].expand(-1, rows.shape[1] - 1), rows[:, 1:])

    def roots(self) -> list[int]:
        """The class of every variable (cached until the next join)."""
        if self._roots is None:
            self._roots = _components(self.size, self._edges).tolist()
        return self._roots

    def find(self, v: int) -> int:
        return self.roots()[v]


def _components(n: int, edges: list[tuple[Tensor, Tensor]]) -> Tensor:
    """Smallest member of each variable's connected component (hook and compress)."""
    labels = torch.arange(n, dtype=torch.int64)
    if not edges:
        return labels
    a = torch.cat([e[0] for e in edges])
    b = torch.cat([e[1] for e in edges])
    while True:
        la, lb = labels[a], labels[b]
        if torch.equal(la, lb):
            return labels
        low = torch.minimum(la, lb)
        labels.scatter_reduce_(0, la, low, "amin")
        labels.scatter_reduce_(0, lb, low, "amin")
        while True:
            jumped = labels[labels]
            if torch.equal(jumped, labels):
                break
            labels = jumped


def _size_math(node: fx.Node) -> bool:
    """Arithmetic on sizes (``c // 2``, ``x.shape[1]``): its users decide what the value means."""
    if node_shape(node) is not None:  # a tensor (scaled by ``c ** -0.5``, …) uses the count
        return False
    if node.op == "call_method":
        return node.target in ("size", "dim", "numel", "nelement")
    return node.op == "call_function" and (
        node.target is getattr or getattr(node.target, "__module__", None) in ("_operator", "math")
    )


@dataclass
class _Param:
    """A per-channel parameter or buffer the forward reads itself (``get_attr``)."""

    owner: str
    module: nn.Module
    attr: str
    axis: int
    vars_: list[int]


#: Why a torch layer alphaprune cannot look into is left whole (said in the plan).
_LEFT_WHOLE: dict[type, str] = {
    nn.MultiheadAttention: (
        " (torch's MultiheadAttention: a head is embed_dim // num_heads wide and embed_dim is its"
        " input's width, so no head can go; an attention module keeping int num_heads and"
        " head_dim, as timm's Attention, is pruned by whole heads)"
    ),
}


class Walker:
    """Walks the traced graph once, giving every tensor node its channel map."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.uf = UnionFind()
        self.ids: dict[fx.Node, object] = {}
        self.batched: dict[fx.Node, bool] = {}
        self.pins: dict[int, str] = {}
        self.layers: dict[str, LayerChannels] = {}
        self.order: list[str] = []
        self.params: dict[str, _Param] = {}
        self.claimed: set[str] = set()
        self.nonempty: list[list[int]] = []  # channel sets of which one must stay (a split's tail)
        self.followed: set[fx.Node] = set()  # sizes a reshape follows as channels shrink
        self._fresh: list[int] | None = None
        self._holders: collections.Counter[int] | None = None

    # -- helpers -------------------------------------------------------------------------------
    def cmap(self, node: object) -> Tensor | None:
        """The channel map of a tensor node (None: not a tensor, or its channels not tracked)."""
        found = self.ids.get(node) if isinstance(node, fx.Node) else None
        return found if isinstance(found, Tensor) else None

    def pin(self, vars_: Iterable[int], reason: str) -> None:
        for v in vars_:
            self.pins.setdefault(v, reason)

    def pin_node(self, node: fx.Node, reason: str) -> None:
        found = self.ids.get(node)
        for item in found if isinstance(found, list) else [found]:
            if isinstance(item, Tensor):
                self.pin(item.reshape(-1).tolist(), reason)

    def unknown(self, node: fx.Node, why: str = "") -> None:
        """Pin every channel going in; the output is not tracked."""
        reason = f"read by {describe(node)}{why}, whose channel mapping is not tracked"
        for arg in node.all_input_nodes:
            self.pin_node(arg, reason)
        return None

    def unify(self, a: Sequence[int], b: Sequence[int]) -> None:
        if len(a) != len(b):
            raise ValueError(f"unify: {len(a)} and {len(b)} channels")
        self.uf.unify(a, b)

    def layer(self, name: str, module: nn.Module, rule: LayerRule, n_in: int, n_out: int | None):
        """The layer ``name``; a new one gets input variables of its own, which the first
        :meth:`read` replaces by the channels it reads (no new variable for a tracked input)."""
        if name not in self.layers:
            in_vars = self.uf.new(n_in)
            out_vars = in_vars if n_out is None else self.uf.new(n_out)
            self.layers[name] = LayerChannels(name, module, rule, in_vars, out_vars)
            self.order.append(name)
            self._fresh = in_vars
        else:
            self._fresh = None
        return self.layers[name]  # a module called twice shares its channels across calls

    def read(self, node: fx.Node, x: fx.Node, vars_: list[int], axis: int) -> None:
        """``vars_`` (a layer's input channels) read from axis ``axis`` of ``x``; pinned when
        ``x``'s channels are not tracked along that axis."""
        cmap = self.cmap(x)
        found = cm.vars_along(cmap, axis) if cmap is not None else None
        if found is not None and len(found) == len(vars_):
            if vars_ is self._fresh:  # a new layer: its inputs are the tensor's channels
                vars_[:] = found
            else:
                self.unify(vars_, found)
            return
        if cmap is None:
            why = f"its input comes from {describe(x)}, whose channels are not tracked"
        else:
            why = "its input's channels are not laid out along the axis it reads"
        self.pin(vars_, f"read by {describe(node)}: {why}")
        if cmap is not None:
            self.pin_node(x, f"read by {describe(node)} along another axis")

    # -- nodes ---------------------------------------------------------------------------------
    def visit(self, node: fx.Node) -> None:
        inputs = node.all_input_nodes
        self.batched[node] = node.op == "placeholder" or any(self.batched[a] for a in inputs)
        if node.op == "placeholder":
            shape = node_shape(node)
            if shape is not None and len(shape) >= 2:
                self.ids[node] = cm.along(self.uf.new(shape[1]), 1, len(shape))
                self.pin_node(node, "model input")
        elif node.op == "get_attr":
            self.ids[node] = self.get_attr(node)
        elif node.op == "output":
            for arg in inputs:
                self.pin_node(arg, "reaches the model output")
        elif node.op == "call_module":
            self.ids[node] = self.call_module(node)
        else:
            handler = ops.handler_for(node)
            self.ids[node] = handler(self, node) if handler is not None else self.unknown(node)
        if GUARD in node.meta:
            self.guard(node, node.meta[GUARD])
        if node.op in ("call_function", "call_method", "call_module") and not _size_math(node):
            self.size_uses(node)

    def size_uses(self, node: fx.Node) -> None:
        """A channel count used by an operation (a reshape that does not follow it, a size
        given to ``torch.zeros``, …) must stay as it is: the channels counted are pinned."""
        for arg in node.all_input_nodes:
            if isinstance(node_shape(arg), tuple) or arg in self.followed:
                continue
            for x, axes in size_reads(arg):
                cmap = self.cmap(x)
                if cmap is not None and any(cmap.shape[a] > 1 for a in axes):
                    self.pin_node(x, f"its channel count is used by {describe(node)}")

    def guard(self, node: fx.Node, where: str) -> None:
        """Python branched on ``node``'s value, or baked it into the graph: the channel counts
        it was computed from must not change, so those channels are pinned."""
        for x, dims in size_reads(node):
            cmap = self.cmap(x)
            if cmap is not None and any(cmap.shape[d] > 1 for d in dims):
                self.pin_node(x, f"its channel count is checked by the code at {where}")

    def get_attr(self, node: fx.Node) -> Tensor | None:
        """A parameter or buffer that is a vector along one axis (LayerScale ``gamma (C, 1, 1)``,
        a norm's statistics) gets channel variables of its own; anything else is a constant."""
        shape = node_shape(node)
        if node.target in self.params:
            found = self.params[node.target]
            return cm.along(found.vars_, found.axis, len(shape))
        wide = [d for d, size in enumerate(shape or ()) if size > 1]
        return self._own_channels(node, wide[0]) if len(wide) == 1 else None

    def param_along(self, node: object, axis: int, user: fx.Node) -> Tensor | None:
        """A parameter or buffer wide along several axes (a position embedding ``(1, N, C)``)
        that meets tracked channels on its axis ``axis`` in ``user``: channel variables of its
        own along that axis (cut with those channels; the other axes stay). None where ``node``
        is not such a tensor (a layer with a rule cuts its own tensors), or where the walk has
        already passed an operation reading it (``pos.mean()``, ``pos.shape`` before the add):
        that one took it for a constant, which a cut would change."""
        if not isinstance(node, fx.Node) or node.op != "get_attr" or node.target in self.params:
            return None
        reads = [n for n in node.graph.nodes if n.op == "get_attr" and n.target == node.target]
        if any(u is not user and u in self.batched for n in reads for u in n.users):
            return None
        found = self._own_channels(node, axis)
        if found is not None:
            self.ids[node] = found
        return found

    def _own_channels(self, node: fx.Node, axis: int) -> Tensor | None:
        """Channel variables along ``axis`` for the tensor a ``get_attr`` reads, registered to
        be cut with them; None unless it is a parameter or buffer only its module holds, of a
        module without a rule (a layer with a rule cuts its own tensors)."""
        shape = node_shape(node)
        owner_name, _, attr = node.target.rpartition(".")
        try:
            owner = self.model.get_submodule(owner_name)
        except AttributeError:
            return None
        if not isinstance(shape, tuple) or not self._owned_once(owner, attr):
            return None
        if rule_for(owner) is not None:
            return None
        vars_ = self.uf.new(shape[axis])
        self.params[node.target] = _Param(owner_name, owner, attr, axis, vars_)
        return cm.along(vars_, axis, len(shape))

    def _owned_once(self, owner: nn.Module, attr: str) -> bool:
        """``owner.<attr>`` is a parameter or buffer no other module attribute holds (a tied
        one would be cut in one place and stay whole in the other)."""
        tensor = owner._parameters.get(attr, owner._buffers.get(attr))
        if tensor is None:
            return False
        if self._holders is None:  # how many names hold each tensor, counted once per walk
            self._holders = collections.Counter(
                id(t)
                for named in (self.model.named_parameters, self.model.named_buffers)
                for _, t in named(remove_duplicate=False)
            )
        return self._holders[id(tensor)] == 1

    def call_module(self, node: fx.Node):
        module = self.model.get_submodule(node.target)
        rule = rule_for(module)
        x = node.args[0] if node.args else None
        shape = node_shape(x) if isinstance(x, fx.Node) else None
        if not isinstance(shape, tuple) or len(node.all_input_nodes) != 1:
            return self.unknown(node, _LEFT_WHOLE.get(type(module), ""))
        if isinstance(rule, MixingRule):
            return self.mixing(node, node.target, module, rule, x)
        if isinstance(rule, (ChannelwiseRule, GroupNormRule)) and rule.channels(module):
            return self.norm(node, module, rule, x, len(shape))
        if isinstance(rule, ElementwiseRule):
            return self.passthrough(node, x, rule.mixing_dims(module, len(shape)), rule.why)
        if isinstance(rule, ChannelwiseRule):  # PReLU(1): one slope for every channel
            return self.passthrough(node, x, set())
        found = ops.module_shape_op(self, node, module)
        if found is ops.NOT_A_SHAPE_OP:
            return self.unknown(node, _LEFT_WHOLE.get(type(module), ""))
        return found

    def mixing(self, node: fx.Node, name: str, module: nn.Module, rule: MixingRule, x: fx.Node):
        """A mixing layer ``name`` reading ``x`` (its call, or a functional call on its weight)."""
        n_in, n_out = rule.in_channels(module), rule.out_channels(module)
        layer = self.layer(name, module, rule, n_in, n_out)
        self.read(node, x, layer.in_vars, rule.channel_axis(module, len(node_shape(x))))
        groups = rule.groups(module)
        ins = torch.tensor(layer.in_vars).view(groups, -1)
        outs = torch.tensor(layer.out_vars).view(groups, -1)
        if rule.by_position(module):  # channel j of every block, each side on its own
            self.uf.union_rows(ins.t())
            self.uf.union_rows(outs.t())
        elif groups > 1:  # block k of the inputs feeds block k of the outputs only
            self.uf.union_rows(torch.cat([ins, outs], dim=1))
        out_ndim = len(node_shape(node))
        return cm.along(layer.out_vars, rule.channel_axis(module, out_ndim), out_ndim)

    def norm(self, node: fx.Node, module: nn.Module, rule: LayerRule, x: fx.Node, ndim: int):
        """A per-channel layer (BN, affine IN, …) ties its channels to its input's; GroupNorm
        also ties the channels of each of its groups together."""
        axis = rule.channel_axis(module, ndim)
        layer = self.layer(node.target, module, rule, rule.channels(module), None)
        self.read(node, x, layer.in_vars, axis)
        if isinstance(rule, GroupNormRule):
            self.uf.union_rows(torch.tensor(layer.in_vars).view(module.num_groups, -1))
        return cm.along(layer.in_vars, axis, ndim)

    def passthrough(
        self, node: fx.Node, x: object, mixing: set[int], why: str = ElementwiseRule.why
    ) -> Tensor | None:
        """An operation that keeps every channel where it is (activation, pooling, …) as long
        as it does not change a channel axis's size. One that mixes values along a channel axis
        (a LayerNorm over the channels) keeps them in place too, but pinned: the channels after
        it are the same ones, and the plan names the reason wherever they go. Where channels
        also lie along an axis it does not mix (timm's ``q_norm``: a LayerNorm over each head's
        width), the channels it mixes at each position of the others are joined instead: whole
        heads may go, the width of each stays."""
        cmap = self.cmap(x)
        shape_in, shape_out = node_shape(x), node_shape(node)
        others = [a for a in node.all_input_nodes if a is not x and self.cmap(a) is not None]
        if cmap is None and not others:
            return None
        if (
            cmap is None
            or others
            or not isinstance(shape_out, tuple)
            or len(shape_out) != len(shape_in)
            or any(shape_out[d] != shape_in[d] for d in cm.tracked(cmap))
        ):
            return self.unknown(node, f" ({why})")
        if cm.tracked(cmap) & mixing and cm.tracked(cmap) - mixing:
            self.uf.union_rows(cm.rows_over(cmap, mixing))  # one head's width, heads apart
        elif cm.tracked(cmap) & mixing:
            self.pin(cmap.reshape(-1).tolist(), f"read by {describe(node)} ({why})")
        return cmap

    # -- after the walk ------------------------------------------------------------------------
    def finish(self) -> None:
        """Per-channel parameters whose channels joined a layer's become layers of their own
        (cut with their channels); the rest are left alone."""
        roots = self.uf.roots()
        used = {roots[v] for layer in self.layers.values() for v in layer.in_vars + layer.out_vars}
        for target, param in self.params.items():
            if target in self.claimed or not any(roots[v] in used for v in param.vars_):
                continue
            rule = ParamRule(param.attr, param.axis)
            self.layers[target] = LayerChannels(
                target, param.module, rule, param.vars_, param.vars_
            )
            self.order.append(target)
