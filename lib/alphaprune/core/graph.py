"""The channel graph of any model ``torch.fx`` can trace: which channels are coupled.

Every channel of every tensor in the traced graph is a variable; operations that tie channels
together unify them (a residual ``x + f(x)`` ties channel ``c`` of both sides, a depthwise
convolution ties its input channel ``c`` to its output channel ``c``, a grouped convolution or a
GroupNorm ties a whole block). The resulting classes are the *pruning units*: a unit is kept or
removed everywhere at once. Units that share a producing layer form a *group* — the thing a keep
fraction applies to (all output channels of one convolution, or a whole residual stream).

A unit is *pinned* (never pruned) when it reaches the model's input or output, or is read by an
operation whose channel semantics are not known here (a reshape to a fixed size, a channel
softmax, slicing, an unknown layer, …). Pinning is the conservative default: an operation not
listed below can only make the model prune less, never prune wrongly.

Why ``torch.fx`` and not Torch-Pruning's ``DependencyGraph``: gating needs the *consumers* of
each unit (where α is applied) as much as its producers, and exactness needs every unknown
operation to pin its channels. Torch-Pruning groups coupled layers well, but silently finds no
group after an in-place ReLU without BatchNorm and raises on grouped ``ConvTranspose2d``; a small
union-find over ``fx`` nodes gives both guarantees with nothing hidden.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from alphaprune.core.gated_layers import AlphaGate
from alphaprune.core.layer_rules import (
    ChannelwiseRule,
    GroupNormRule,
    LayerRule,
    MixingRule,
    rule_for,
)
from alphaprune.errors import UnsupportedModelError

__all__ = [
    "UnsupportedModelError",
    "ChannelGraph",
    "ChannelGroup",
    "LayerChannels",
    "analyze",
    "example_inputs_for",
]


_POINTWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.SiLU,
    nn.GELU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Upsample,
    nn.UpsamplingNearest2d,
    nn.UpsamplingBilinear2d,
    nn.ZeroPad2d,
    nn.ReflectionPad2d,
    nn.ReplicationPad2d,
)
_POINTWISE_FUNCTIONS: set[Callable] = {
    F.relu,
    F.relu_,
    torch.relu,
    torch.relu_,
    F.relu6,
    F.leaky_relu,
    F.silu,
    F.gelu,
    F.mish,
    torch.sigmoid,
    F.sigmoid,
    torch.tanh,
    F.tanh,
    F.hardswish,
    F.hardsigmoid,
    F.hardtanh,
    F.elu,
    F.selu,
    F.celu,
    F.softplus,
    F.dropout,
    F.dropout2d,
    torch.dropout,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
    F.interpolate,
    torch.abs,
    torch.exp,
    torch.clamp,
    torch.nn.functional.pad,
}
_POINTWISE_METHODS = {
    "relu",
    "relu_",
    "sigmoid",
    "sigmoid_",
    "tanh",
    "tanh_",
    "contiguous",
    "clone",
    "detach",
    "abs",
    "exp",
    "clamp",
    "clamp_",
    "clamp_min",
    "clamp_max",
    "float",
    "double",
    "half",
    "bfloat16",
    "to",
    "type_as",
}
_BINARY_FUNCTIONS: set[Callable] = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    operator.iadd,
    operator.isub,
    operator.imul,
    operator.itruediv,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
    torch.maximum,
    torch.minimum,
}
_BINARY_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
_CAT_FUNCTIONS: set[Callable] = {torch.cat, torch.concat}
_REDUCE_FUNCTIONS: set[Callable] = {torch.mean, torch.sum, torch.amax}
_REDUCE_METHODS = {"mean", "sum", "amax"}
_NON_TENSOR_METHODS = {"size", "dim", "numel"}


class _Leaves(fx.Tracer):
    """fx tracer that keeps gated layers whole (their forward is the layer's, weight scaled)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, AlphaGate) or super().is_leaf_module(m, module_qualified_name)


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
        """A mixing layer with ``groups == 1``: where the gates of its input units live."""
        return isinstance(self.rule, MixingRule) and self.rule.groups(self.module) == 1


@dataclass
class ChannelGroup:
    """Units that share a producing layer; a keep fraction applies to a group."""

    name: str
    units: list[int]
    owners: list[str]
    consumers: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    channels: int = 0
    skip: str | None = None

    @property
    def prunable(self) -> bool:
        return self.skip is None


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def new(self, n: int) -> list[int]:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return list(range(start, start + n))

    def find(self, v: int) -> int:
        parent = self.parent
        root = v
        while parent[root] != root:
            root = parent[root]
        while parent[v] != root:
            parent[v], v = root, parent[v]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def union_all(self, items: Sequence[int]) -> None:
        for v in items[1:]:
            self.union(items[0], v)


class _Slots:
    """A union-find over pruning units (keyed by unit id, not by position)."""

    def __init__(self) -> None:
        self._uf = _UnionFind()
        self._index: dict[int, int] = {}

    def slot(self, unit: int) -> int:
        if unit not in self._index:
            self._index[unit] = self._uf.new(1)[0]
        return self._index[unit]

    def join(self, units: Sequence[int]) -> None:
        self._uf.union_all([self.slot(u) for u in units])

    def root(self, unit: int) -> int:
        return self._uf.find(self.slot(unit))


class ChannelGraph:
    """Result of :func:`analyze`: layers with channel variables, units and groups."""

    def __init__(
        self,
        model: nn.Module,
        layers: dict[str, LayerChannels],
        uf: _UnionFind,
        pins: dict[int, str],
        order: list[str],
        example_inputs: tuple[Tensor, ...],
    ) -> None:
        self.model = model
        self.layers = layers
        self.example_inputs = example_inputs
        self._uf = uf
        self.pinned = {}
        for var, reason in pins.items():
            self.pinned.setdefault(uf.find(var), reason)
        self.groups = self._build_groups(order)

    def unit(self, var: int) -> int:
        """The pruning unit (class root) of a channel variable."""
        return self._uf.find(var)

    def units(self, vars_: Iterable[int]) -> list[int]:
        return [self._uf.find(v) for v in vars_]

    def consumers(self) -> list[LayerChannels]:
        return [layer for layer in self.layers.values() if layer.is_consumer]

    def group(self, name: str) -> ChannelGroup:
        for group in self.groups:
            if group.name == name or name in group.owners:
                return group
        raise KeyError(name)

    def _build_groups(self, order: list[str]) -> list[ChannelGroup]:
        """Units whose channels one mixing layer produces form one group (joined across layers
        by the union-find); a group lists its members, owners and consumers in graph order."""
        owners = [self.layers[n] for n in order if isinstance(self.layers[n].rule, MixingRule)]
        slots, first_owner = self._owner_slots(owners)
        groups = self._groups_of_units(owners, slots, first_owner)
        for name in order:
            self._add_member(self.layers[name], groups)
        for group in groups:
            self._close(group)
        return groups

    def _owner_slots(self, owners: list[LayerChannels]) -> tuple[_Slots, dict[int, str]]:
        """Units joined by the layer that produces them, and each unit's first producer."""
        slots, first_owner = _Slots(), {}
        for layer in owners:
            units = self.units(layer.out_vars)
            slots.join(units)
            for u in units:
                first_owner.setdefault(u, layer.name)
        for layer in self.layers.values():  # units without a producing layer (input, …)
            slots.join([u for u in self.units(layer.in_vars) if u not in first_owner])
            for u in self.units(layer.out_vars):
                slots.slot(u)
        return slots, first_owner

    def _groups_of_units(
        self, owners: list[LayerChannels], slots: _Slots, first_owner: dict[int, str]
    ) -> list[ChannelGroup]:
        """One group per joined set of units, named by its first producer, with its pin reason."""
        unit_order = [u for layer in owners for u in self.units(layer.out_vars)]
        unit_order += [u for layer in self.layers.values() for u in self.units(layer.in_vars)]
        by_root: dict[int, ChannelGroup] = {}
        for u in dict.fromkeys(unit_order):
            root = slots.root(u)
            if root not in by_root:
                name = first_owner.get(u, f"<input of {self._first_reader(u)}>")
                by_root[root] = ChannelGroup(name=name, units=[], owners=[])
            group = by_root[root]
            group.units.append(u)
            if group.skip is None:
                group.skip = self.pinned.get(u)
        return list(by_root.values())

    def _add_member(self, layer: LayerChannels, groups: list[ChannelGroup]) -> None:
        ins, outs = set(self.units(layer.in_vars)), set(self.units(layer.out_vars))
        for group in groups:
            if (ins | outs).isdisjoint(group.units):
                continue
            group.members.append(layer.name)
            if isinstance(layer.rule, MixingRule) and not outs.isdisjoint(group.units):
                group.owners.append(layer.name)
            if layer.is_consumer and not ins.isdisjoint(group.units):
                group.consumers.append(layer.name)

    def _close(self, group: ChannelGroup) -> None:
        """A group nobody reads is left whole; its size is its first owner's channel count."""
        if group.skip is None and not group.consumers:
            group.skip = "not read by any layer (its output is unused)"
        if group.owners:
            units = set(group.units)
            owner = self.layers[group.owners[0]]
            group.channels = sum(1 for u in self.units(owner.out_vars) if u in units)
        else:
            group.channels = len(group.units)

    def _first_reader(self, unit: int) -> str:
        for layer in self.layers.values():
            if unit in self.units(layer.in_vars):
                return layer.name
        return "?"

    def keep_masks(self, dead: set[int]) -> dict[str, tuple[Tensor, Tensor]]:
        """Per layer: (keep_in, keep_out) bool vectors when the units in ``dead`` are removed."""
        masks = {}
        for name, layer in self.layers.items():
            keep_in = torch.tensor([u not in dead for u in self.units(layer.in_vars)])
            keep_out = torch.tensor([u not in dead for u in self.units(layer.out_vars)])
            masks[name] = (keep_in, keep_out)
        return masks


def example_inputs_for(
    model: nn.Module, example_inputs: Tensor | Sequence[Tensor] | None
) -> tuple[Tensor, ...] | None:
    """``example_inputs`` as a tuple; None asks :func:`analyze` to guess one from the first layer."""
    if example_inputs is None:
        return None
    if isinstance(example_inputs, Tensor):
        return (example_inputs,)
    return tuple(example_inputs)


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        graph = _Leaves().trace(model)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, …)
        raise UnsupportedModelError(
            f"{type(model).__name__} cannot be traced by torch.fx, so its channel structure is "
            f"unknown: {type(exc).__name__}: {exc}. Models whose forward branches on tensor "
            "values cannot be pruned; move that logic out of forward"
        ) from None
    return fx.GraphModule(model, graph)


def _guess_inputs(model: nn.Module, gm: fx.GraphModule) -> tuple[Tensor, ...]:
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedModelError(
            f"{type(model).__name__}.forward takes {len(placeholders)} inputs: pass "
            "example_inputs=(…) to attach_gates/shrink"
        )
    size = getattr(model, "example_input_size", None)
    if size is not None:
        return (torch.zeros(*size),)
    frontier, seen = list(placeholders[0].users), set()
    while frontier:
        node = frontier.pop(0)
        if node in seen:
            continue
        seen.add(node)
        if node.op == "call_module":
            module = model.get_submodule(node.target)
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                return (torch.zeros(1, module.in_channels, 64, 64),)
            if isinstance(module, nn.Linear):
                return (torch.zeros(1, module.in_features),)
        frontier.extend(node.users)
    raise UnsupportedModelError(
        f"cannot guess an input for {type(model).__name__}: pass example_inputs=(tensor, …)"
    )


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return tuple(shape) if shape is not None else None


def _describe(node: fx.Node) -> str:
    if node.op == "call_module":
        return f"layer '{node.target}'"
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "?")
    return f"'{target}' (node {node.name})"


def _arg(node: fx.Node, position: int, name: str, default):
    if len(node.args) > position:
        return node.args[position]
    return node.kwargs.get(name, default)


class _Walker:
    """Walks the traced graph once, giving every tensor node its channel variables."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.uf = _UnionFind()
        self.ids: dict[fx.Node, list[int] | None] = {}
        self.pins: dict[int, str] = {}
        self.layers: dict[str, LayerChannels] = {}
        self.order: list[str] = []

    # -- helpers -------------------------------------------------------------------------------
    def pin(self, vars_: Iterable[int], reason: str) -> None:
        for v in vars_:
            self.pins.setdefault(v, reason)

    def fresh(self, node: fx.Node, reason: str | None) -> list[int] | None:
        shape = _shape(node)
        if shape is None or len(shape) < 2:
            return None
        vars_ = self.uf.new(shape[1])
        if reason is not None:
            self.pin(vars_, reason)
        return vars_

    def unknown(self, node: fx.Node, why: str = "") -> list[int] | None:
        """Pin everything going in; the output gets new pinned channels."""
        reason = f"read by {_describe(node)}{why}, whose channel mapping is not tracked"
        for arg in node.all_input_nodes:
            if self.ids.get(arg):
                self.pin(self.ids[arg], reason)
        return self.fresh(node, f"produced by {_describe(node)}")

    def unify(self, a: Sequence[int], b: Sequence[int]) -> None:
        for x, y in zip(a, b, strict=True):
            self.uf.union(x, y)

    def layer(self, name: str, module: nn.Module, rule: LayerRule, n_in: int, n_out: int | None):
        if name not in self.layers:
            in_vars = self.uf.new(n_in)
            out_vars = in_vars if n_out is None else self.uf.new(n_out)
            self.layers[name] = LayerChannels(name, module, rule, in_vars, out_vars)
            self.order.append(name)
        return self.layers[name]  # a module called twice shares its channels across calls

    # -- nodes ---------------------------------------------------------------------------------
    def visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            self.ids[node] = self.fresh(node, "model input")
        elif node.op == "get_attr":
            self.ids[node] = self.fresh(node, f"constant tensor '{node.target}'")
        elif node.op == "output":
            for arg in node.all_input_nodes:
                if self.ids.get(arg):
                    self.pin(self.ids[arg], "reaches the model output")
        elif node.op == "call_module":
            self.ids[node] = self.call_module(node)
        else:
            self.ids[node] = self.call_function(node)

    def source(self, node: fx.Node) -> tuple[fx.Node | None, list[int] | None]:
        first = node.args[0] if node.args else None
        if isinstance(first, fx.Node):
            return first, self.ids.get(first)
        return None, None

    def call_module(self, node: fx.Node) -> list[int] | None:
        module = self.model.get_submodule(node.target)
        rule = rule_for(module)
        x, ids = self.source(node)
        if ids is None or len(node.all_input_nodes) != 1:
            return self.unknown(node)
        if isinstance(rule, MixingRule):
            return self.mixing(node, module, rule, ids)
        if isinstance(rule, (ChannelwiseRule, GroupNormRule)) and rule.channels(module) is not None:
            return self.norm(node, module, rule, ids)
        if isinstance(module, nn.PReLU) or isinstance(module, _POINTWISE_MODULES):
            return self.passthrough(node, x, ids)
        if isinstance(module, nn.Flatten):
            return self.flatten(node, x, ids, module.start_dim, module.end_dim)
        return self.unknown(node)

    def norm(self, node: fx.Node, module: nn.Module, rule: LayerRule, ids: list[int]):
        """A per-channel layer (BN, affine IN, …) ties its channels to its input's; GroupNorm
        also ties the channels of each of its groups together."""
        if rule.channels(module) != len(ids):
            return self.unknown(node)
        layer = self.layer(node.target, module, rule, len(ids), None)
        self.unify(layer.in_vars, ids)
        if isinstance(rule, GroupNormRule):
            size = module.num_channels // module.num_groups
            for k in range(module.num_groups):
                self.uf.union_all(ids[k * size : (k + 1) * size])
        return ids

    def flatten(self, node: fx.Node, x: fx.Node | None, ids: list[int] | None, start, end):
        """``flatten(x, 1)`` keeps each channel's block contiguous; from dim 2 on it is a
        per-channel reshape; anything else mixes channels into the batch."""
        if ids is not None and start == 1 and end == -1:
            return self.reshape(node, x, ids)
        if ids is not None and isinstance(start, int) and (start >= 2 or start < -1):
            return self.passthrough(node, x, ids)
        return self.unknown(node)

    def mixing(self, node: fx.Node, module: nn.Module, rule: MixingRule, ids: list[int]):
        shape = _shape(node.args[0])
        if isinstance(module, nn.Linear) and (shape is None or len(shape) != 2):
            return self.unknown(node, " (a Linear on a tensor with spatial dimensions)")
        n_in, n_out = rule.in_channels(module), rule.out_channels(module)
        if len(ids) != n_in:
            return self.unknown(node)
        layer = self.layer(node.target, module, rule, n_in, n_out)
        self.unify(layer.in_vars, ids)
        groups = rule.groups(module)
        if groups > 1:
            a, b = n_in // groups, n_out // groups
            for k in range(groups):
                block = layer.in_vars[k * a : (k + 1) * a] + layer.out_vars[k * b : (k + 1) * b]
                self.uf.union_all(block)
        return layer.out_vars

    def passthrough(self, node: fx.Node, x: fx.Node | None, ids: list[int] | None):
        shape_in, shape_out = _shape(x) if x is not None else None, _shape(node)
        if (
            ids is None
            or shape_in is None
            or shape_out is None
            or len(shape_out) < 2
            or shape_out[:2] != shape_in[:2]
            or any(self.ids.get(a) for a in node.all_input_nodes if a is not x)
        ):
            return self.unknown(node)
        return ids

    def reshape(self, node: fx.Node, x: fx.Node, ids: list[int]) -> list[int] | None:
        """Per-sample reshapes that keep whole channels contiguous (flatten, SE's view)."""
        shape_in, shape_out = _shape(x), _shape(node)
        if shape_in is None or shape_out is None or len(shape_out) < 2:
            return self.unknown(node)
        if shape_in[0] != shape_out[0]:
            return self.unknown(node, " (changes the batch dimension)")
        total = 1
        for s in shape_in[1:]:
            total *= s
        inner_in, inner_out = total // shape_in[1], total // shape_out[1]
        if inner_out % inner_in == 0:
            k = inner_out // inner_in
            out = []
            for j in range(shape_out[1]):
                block = ids[j * k : (j + 1) * k]
                self.uf.union_all(block)
                out.append(block[0])
            return out
        if inner_in % inner_out == 0:
            k = inner_in // inner_out
            return [v for v in ids for _ in range(k)]
        return self.unknown(node)

    def call_function(self, node: fx.Node) -> list[int] | None:
        target = node.target
        is_method = node.op == "call_method"
        x, ids = self.source(node)
        if is_method and target in _NON_TENSOR_METHODS or target is getattr:
            return None
        if target is operator.getitem:
            if ids is not None:
                return self.unknown(node, " (indexing)")
            return self.fresh(node, f"output of {_describe(x) if x is not None else 'a tuple'}")
        if (not is_method and target in _POINTWISE_FUNCTIONS) or (
            is_method and target in _POINTWISE_METHODS
        ):
            return self.passthrough(node, x, ids)
        if (not is_method and target in _BINARY_FUNCTIONS) or (
            is_method and target in _BINARY_METHODS
        ):
            return self.binary(node)
        if not is_method and target in _CAT_FUNCTIONS:
            return self.cat(node)
        if target in (torch.flatten, "flatten"):
            start, end = _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1)
            return self.flatten(node, x, ids, start, end)
        if target in ("view", "reshape", torch.reshape) and ids is not None:
            return self.view(node, x, ids)
        if (not is_method and target in _REDUCE_FUNCTIONS) or (
            is_method and target in _REDUCE_METHODS
        ):
            return self.reduce(node, x, ids)
        return self.unknown(node)

    def view(self, node: fx.Node, x: fx.Node, ids: list[int]) -> list[int] | None:
        sizes = list(node.args[1:])
        if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)):
            sizes = list(sizes[0])
        if len(sizes) < 2 or (isinstance(sizes[1], int) and sizes[1] != -1):
            return self.unknown(node, " (a reshape to a fixed channel count)")
        return self.reshape(node, x, ids)

    def reduce(self, node: fx.Node, x: fx.Node | None, ids: list[int] | None):
        shape_in = _shape(x) if x is not None else None
        dims = _arg(node, 1, "dim", None)
        if ids is None or shape_in is None or dims is None:
            return self.unknown(node)
        dims = [dims] if isinstance(dims, int) else list(dims)
        if not all(isinstance(d, int) for d in dims):
            return self.unknown(node)
        dims = [d % len(shape_in) for d in dims]
        if 0 in dims or 1 in dims:
            return self.unknown(node, " (a reduction over channels)")
        shape_out = _shape(node)
        if shape_out is None or len(shape_out) < 2 or shape_out[:2] != shape_in[:2]:
            return self.unknown(node)
        return ids

    def binary(self, node: fx.Node) -> list[int] | None:
        shape_out = _shape(node)
        if shape_out is None or len(shape_out) < 2:
            return self.unknown(node)
        rank = len(shape_out)
        out: list[int] | None = None
        for arg in list(node.args) + list(node.kwargs.values()):
            if not isinstance(arg, fx.Node):
                continue
            shape = _shape(arg)
            if shape is None or len(shape) == 0:
                continue
            d = 1 - (rank - len(shape))
            if d < 0 or shape[d] == 1:
                continue  # broadcast along channels: no per-channel coupling
            ids = self.ids.get(arg)
            if d != 1 or ids is None or len(ids) != shape_out[1]:
                return self.unknown(node, " (an operand with a per-channel shape not tracked)")
            if out is None:
                out = ids
            else:
                self.unify(out, ids)
        return out if out is not None else self.unknown(node)

    def cat(self, node: fx.Node) -> list[int] | None:
        tensors = _arg(node, 0, "tensors", [])
        shape_out = _shape(node)
        dim = _arg(node, 1, "dim", 0)
        if shape_out is None or not isinstance(dim, int) or len(shape_out) < 2:
            return self.unknown(node)
        dim %= len(shape_out)
        parts = [self.ids.get(t) if isinstance(t, fx.Node) else None for t in tensors]
        if any(p is None for p in parts):
            return self.unknown(node)
        if dim == 1:
            return [v for p in parts for v in p]
        for p in parts[1:]:
            self.unify(parts[0], p)
        return parts[0]


def analyze(
    model: nn.Module, example_inputs: Tensor | Sequence[Tensor] | None = None
) -> ChannelGraph:
    """Trace ``model`` and return its :class:`ChannelGraph`.

    ``example_inputs`` fixes the shapes (needed for ``flatten`` → ``Linear``); without it a
    zero image is guessed from the first convolution (64×64) or linear layer. Raises
    :class:`UnsupportedModelError` for a model ``torch.fx`` cannot trace.
    """
    gm = _trace(model)
    inputs = example_inputs_for(model, example_inputs) or _guess_inputs(model, gm)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            dtype = next((p.dtype for p in model.parameters()), torch.get_default_dtype())
            moved = tuple(
                t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device)
                for t in inputs
            )
            try:
                output = ShapeProp(gm).propagate(*[t.clone() for t in moved])
            except Exception as exc:
                shapes = [tuple(t.shape) for t in moved]
                raise UnsupportedModelError(
                    f"{type(model).__name__} failed on example input of shape {shapes}: "
                    f"{type(exc).__name__}: {exc}. Pass example_inputs= that the model accepts"
                ) from None
    finally:
        for module, training in modes:
            module.training = training
    walker = _Walker(model)
    for node in gm.graph.nodes:
        walker.visit(node)
    graph = ChannelGraph(model, walker.layers, walker.uf, walker.pins, walker.order, moved)
    graph.example_output = output  # the model's output on the example input, in eval mode
    return graph
