"""The channel graph of a model: which channels are coupled, and which may be pruned.

:func:`analyze` traces the model on an example input (:mod:`alphaprune.core.trace`: ``torch.fx``
with concrete shapes) and walks the graph once (:mod:`alphaprune.core.walker`), giving every
channel of every tensor a variable; operations that tie channels together unify them. The
resulting classes are the *pruning units*: a unit is kept or removed everywhere at once. Units
that share a producing layer form a *group* — the thing a keep fraction applies to (all output
channels of one convolution, or a whole residual stream).

A unit is *pinned* (never pruned) when it reaches the model's input or output, or is read by an
operation whose channel semantics are not known (a reshape to a fixed size, a channel softmax,
a LayerNorm over the channels, an unknown layer, …). Pinning is the conservative default: an
operation not understood can only make the model prune less, never prune wrongly. A group whose
every unit is pinned is left whole, with the reason; a group with some pinned units (the
channels before a fixed slice) prunes the others.

Why ``torch.fx`` and not Torch-Pruning's ``DependencyGraph``: gating needs the *consumers* of
each unit (where α is applied) as much as its producers, and exactness needs every unknown
operation to pin its channels. Torch-Pruning groups coupled layers well, but silently finds no
group after an in-place ReLU without BatchNorm and raises on grouped ``ConvTranspose2d``; a small
union-find over ``fx`` nodes gives both guarantees with nothing hidden.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from alphaprune.core.layer_rules import MixingRule, rule_for
from alphaprune.core.modes import eval_mode
from alphaprune.core.trace import trace
from alphaprune.core.walker import LayerChannels, UnionFind, Walker
from alphaprune.errors import UnsupportedModelError

__all__ = [
    "UnsupportedModelError",
    "ChannelGraph",
    "ChannelGroup",
    "LayerChannels",
    "analyze",
    "example_inputs_for",
]


@dataclass
class ChannelGroup:
    """Units that share a producing layer; a keep fraction applies to a group.

    ``skip`` is why the whole group is left whole (None: prunable); ``pinned`` holds the units
    of a prunable group that must stay, with the reason.
    """

    name: str
    units: list[int]
    owners: list[str]
    consumers: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    channels: int = 0
    skip: str | None = None
    pinned: dict[int, str] = field(default_factory=dict)

    @property
    def prunable(self) -> bool:
        return self.skip is None

    @property
    def free(self) -> list[bool]:
        """Per unit: may it be removed?"""
        return [u not in self.pinned for u in self.units]


class ChannelGraph:
    """Result of :func:`analyze`: layers with channel variables, units and groups."""

    def __init__(
        self,
        model: nn.Module,
        layers: dict[str, LayerChannels],
        uf: UnionFind,
        pins: dict[int, str],
        order: list[str],
        example_inputs: tuple[Tensor, ...],
        nonempty: Sequence[Sequence[int]] = (),
    ) -> None:
        self.model = model
        self.layers = {name: layers[name] for name in order}
        self.example_inputs = example_inputs
        self.example_output: object = None
        self._root = uf.roots()
        self._units: dict[int, list[int]] = {}  # by id of a layer's variable list (kept alive)
        for layer in self.layers.values():
            for vars_ in (layer.in_vars, layer.out_vars):
                self._units.setdefault(id(vars_), [self._root[v] for v in vars_])
        self.pinned: dict[int, str] = {}
        for var, reason in pins.items():
            self.pinned.setdefault(self._root[var], reason)
        self.groups = self._build_groups()
        #: Sets of units of which at least one must stay (the last piece of a fixed split).
        self.nonempty = [set(self.units(vars_)) for vars_ in nonempty]

    def unit(self, var: int) -> int:
        """The pruning unit (class root) of a channel variable."""
        return self._root[var]

    def units(self, vars_: Iterable[int]) -> list[int]:
        """The units of channel variables (a layer's lists are looked up; do not modify)."""
        found = self._units.get(id(vars_))
        if found is not None:
            return found
        root = self._root
        return [root[v] for v in vars_]

    def consumers(self) -> list[LayerChannels]:
        return [layer for layer in self.layers.values() if layer.is_consumer]

    def group(self, name: str) -> ChannelGroup:
        for group in self.groups:
            if group.name == name or name in group.owners:
                return group
        raise KeyError(name)

    def _build_groups(self) -> list[ChannelGroup]:
        """Units whose channels one mixing layer produces form one group (joined across layers
        by a union-find); a group lists its members, owners and consumers in graph order."""
        owners = [layer for layer in self.layers.values() if isinstance(layer.rule, MixingRule)]
        slots, first_owner = self._owner_slots(owners)
        groups, group_of = self._groups_of_units(owners, slots, first_owner)
        for layer in self.layers.values():
            self._add_member(layer, groups, group_of)
        read = {u for layer in self.consumers() for u in self.units(layer.in_vars)}
        for group in groups:
            self._close(group, read)
        return groups

    def _owner_slots(self, owners: list[LayerChannels]) -> tuple[UnionFind, dict[int, str]]:
        """Units joined by the layer that produces them, and each unit's first producer."""
        slots, first_owner = UnionFind(), {}
        slots.new(len(self._root))
        for layer in owners:
            units = self.units(layer.out_vars)
            slots.union_all(units)
            for u in units:
                first_owner.setdefault(u, layer.name)
        for layer in self.layers.values():  # units without a producing layer (input, …)
            slots.union_all([u for u in self.units(layer.in_vars) if u not in first_owner])
        return slots, first_owner

    def _groups_of_units(
        self, owners: list[LayerChannels], slots: UnionFind, first_owner: dict[int, str]
    ) -> tuple[list[ChannelGroup], dict[int, int]]:
        """One group per joined set of units, named by its first producer; and the index of
        each unit's group."""
        unit_order = [u for layer in owners for u in self.units(layer.out_vars)]
        unit_order += [u for layer in self.layers.values() for u in self.units(layer.in_vars)]
        index: dict[int, int] = {}
        groups: list[ChannelGroup] = []
        group_of: dict[int, int] = {}
        first_reader: dict[int, str] = {}
        for layer in self.layers.values():
            for u in self.units(layer.in_vars):
                first_reader.setdefault(u, layer.name)
        for u in dict.fromkeys(unit_order):
            root = slots.find(u)
            if root not in index:
                index[root] = len(groups)
                name = first_owner.get(u, f"<input of {first_reader.get(u, '?')}>")
                groups.append(ChannelGroup(name=name, units=[], owners=[]))
            group_of[u] = index[root]
            group = groups[group_of[u]]
            group.units.append(u)
            if u in self.pinned:
                group.pinned[u] = self.pinned[u]
        return groups, group_of

    def _add_member(self, layer: LayerChannels, groups, group_of: dict[int, int]) -> None:
        touched_in = {group_of[u] for u in self.units(layer.in_vars) if u in group_of}
        touched_out = {group_of[u] for u in self.units(layer.out_vars) if u in group_of}
        for k in sorted(touched_in | touched_out):
            group = groups[k]
            group.members.append(layer.name)
            if isinstance(layer.rule, MixingRule) and k in touched_out:
                group.owners.append(layer.name)
            if layer.is_consumer and k in touched_in:
                group.consumers.append(layer.name)

    def _close(self, group: ChannelGroup, read: set[int]) -> None:
        """A group nobody reads, or whose every unit is pinned, is left whole; units no layer
        reads (cut off by a slice) stay too. Its size is its first owner's channel count."""
        if group.pinned and not group.consumers:
            group.skip = next(iter(group.pinned.values()))
        elif not group.consumers:
            group.skip = "not read by any layer (its output is unused)"
        for u in group.units:
            if u not in read:
                group.pinned.setdefault(u, "not read by any layer")
        if group.skip is None and len(group.pinned) == len(group.units):
            group.skip = next(iter(group.pinned.values()))
        if group.owners:
            units = set(group.units)
            owner = self.layers[group.owners[0]]
            group.channels = sum(1 for u in self.units(owner.out_vars) if u in units)
        else:
            group.channels = len(group.units)

    def keep_masks(self, dead: set[int]) -> dict[str, tuple[Tensor, Tensor]]:
        """Per layer: (keep_in, keep_out) bool vectors when the units in ``dead`` are removed."""
        masks = {}
        root = self._root
        for name, layer in self.layers.items():
            keep_in = torch.tensor([root[v] not in dead for v in layer.in_vars], dtype=torch.bool)
            if layer.out_vars is layer.in_vars:
                keep_out = keep_in
            else:
                keep_out = torch.tensor(
                    [root[v] not in dead for v in layer.out_vars], dtype=torch.bool
                )
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


def _guess_inputs(model: nn.Module) -> tuple[Tensor, ...]:
    """A zero input for the model's first layer (``model.example_input_size`` if it has one)."""
    params = inspect.signature(model.forward).parameters.values()
    required = [
        p
        for p in params
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(required) != 1:
        raise UnsupportedModelError(
            f"{type(model).__name__}.forward takes {len(required)} inputs: pass "
            "example_inputs=(…) to attach_gates/shrink"
        )
    size = getattr(model, "example_input_size", None)
    if size is not None:
        return (torch.zeros(*size),)
    for module in model.modules():
        rule = rule_for(module)
        if isinstance(rule, MixingRule):
            return (torch.zeros(rule.example_input(module)),)
    raise UnsupportedModelError(
        f"cannot guess an input for {type(model).__name__}: pass example_inputs=(tensor, …)"
    )


def analyze(
    model: nn.Module,
    example_inputs: Tensor | Sequence[Tensor] | None = None,
    values: bool = True,
) -> ChannelGraph:
    """Trace ``model`` on ``example_inputs`` and return its :class:`ChannelGraph`.

    ``example_inputs`` fixes the shapes (needed for ``flatten`` → ``Linear``); without it a
    zero image is guessed from the first convolution (64×64) or linear layer. The model runs
    once, in eval mode without gradients (each module's mode is restored), and its output is
    kept as ``graph.example_output``; with ``values=False`` it runs on fake tensors (shapes
    only, much faster; no output). Raises :class:`UnsupportedModelError` for a model that
    cannot be traced on that input.
    """
    inputs = example_inputs_for(model, example_inputs) or _guess_inputs(model)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    dtype = next((p.dtype for p in model.parameters()), torch.get_default_dtype())
    moved = tuple(
        t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device) for t in inputs
    )
    with eval_mode(model), torch.no_grad():
        fx_graph, output = trace(model, moved, values)
    walker = Walker(model)
    for node in fx_graph.nodes:
        walker.visit(node)
    walker.finish()
    graph = ChannelGraph(
        model, walker.layers, walker.uf, walker.pins, walker.order, moved, walker.nonempty
    )
    graph.example_output = output  # the model's output on the example input, in eval mode
    return graph
