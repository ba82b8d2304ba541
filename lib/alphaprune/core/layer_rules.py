"""One rule per layer type: which axis holds which channels, and how to cut or scale them.

This is the only place that knows that ``Conv2d.weight`` is ``(out, in/groups, kH, kW)`` while
``ConvTranspose2d.weight`` is ``(in, out/groups, kH, kW)`` and ``Linear.weight`` is
``(out, in)``, that a ``Conv1d`` reads channels on axis -2 of its input and a ``Linear`` on
axis -1. Gating, shrinking, checkpoint loading, the channel graph and the weight analysis all
ask a rule (:func:`rule_for`) instead of spelling an axis themselves: the axes swapped by
mistake keep every shape valid for square layers and silently change the output.

Four kinds of rule, one class each:

- :class:`MixingRule` — a layer whose outputs mix its input channels through one weight (conv,
  linear): where gates live (its input channels) and what produces channels (its outputs).
- :class:`ChannelwiseRule` — one parameter or statistic per channel, no mixing (BatchNorm,
  InstanceNorm, PReLU); :class:`GroupNormRule` ties blocks of channels.
- :class:`ElementwiseRule` — no channel parameters, channels pass through (activations,
  pooling, resizing, padding); ``mixing_dims`` says along which axes it mixes values, so a
  channel axis there is left whole (a pooling over the last two axes of a channels-last tensor).

Register a rule for your own layer type once with :func:`register_rule` (exact types: a
subclass may compute something else in its forward). The style follows Torch-Pruning's
``pruner/function.py``: one class per layer type owns its axes.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

__all__ = [
    "LayerRule",
    "MixingRule",
    "ConvRule",
    "ConvTransposeRule",
    "LinearRule",
    "ChannelwiseRule",
    "GroupNormRule",
    "ElementwiseRule",
    "SoftmaxRule",
    "LayerNormRule",
    "ParamRule",
    "HeadsRule",
    "register_heads",
    "heads_rule_for",
    "register_layer",
    "register_rule",
    "rule_for",
    "input_axis",
    "output_axis",
    "broadcast_along",
]


def broadcast_along(vector: Tensor, axis: int, ndim: int) -> Tensor:
    """``vector`` viewed so that it multiplies axis ``axis`` of an ``ndim``-dimensional tensor."""
    shape = [1] * ndim
    shape[axis] = -1
    return vector.view(shape)


def _slice(module: nn.Module, name: str, keep: Tensor, axis: int) -> None:
    """Keep the entries ``keep`` (bool) of ``module.<name>`` along ``axis`` (parameter or buffer)."""
    tensor = getattr(module, name, None)
    if tensor is None or bool(keep.all()):
        return
    index = torch.nonzero(keep.to(tensor.device)).flatten()
    sliced = tensor.detach().index_select(axis, index)
    if isinstance(tensor, nn.Parameter):
        setattr(module, name, nn.Parameter(sliced, requires_grad=tensor.requires_grad))
    else:
        setattr(module, name, sliced)


def _same_rows(rows: Tensor) -> bool:
    return bool((rows == rows[:1]).all())


def _empty_like_param(module: nn.Module, name: str, shape: tuple[int, ...]) -> None:
    tensor = getattr(module, name, None)
    if tensor is None or tuple(tensor.shape) == shape:
        return
    new = torch.empty(shape, dtype=tensor.dtype, device=tensor.device)
    if isinstance(tensor, nn.Parameter):
        setattr(module, name, nn.Parameter(new, requires_grad=tensor.requires_grad))
    else:
        setattr(module, name, new)


class LayerRule:
    """Base: a layer type whose channels the graph tracks."""

    types: tuple[type, ...] = ()

    def cut(self, module: nn.Module, keep_in: Tensor, keep_out: Tensor) -> None:
        """Remove the input channels where ``keep_in`` is False and outputs where ``keep_out`` is."""
        raise NotImplementedError

    def resize_to(self, module: nn.Module, state: Mapping[str, Tensor], prefix: str) -> None:
        """Give ``module`` the (smaller) shapes that ``state`` holds for it (values follow later)."""
        raise NotImplementedError


class MixingRule(LayerRule):
    """Layers whose outputs mix input channels through one weight: the consumers that gates scale.

    ``groups > 1`` (grouped or depthwise) is supported: channel block ``k`` of the input feeds
    only block ``k`` of the output. A depthwise layer (one channel per block on a side) prunes
    whole blocks, inputs with their outputs; a grouped layer with wider blocks (ResNeXt, RegNet)
    prunes *positions*: channel ``j`` of every block goes together, on each side separately, so
    the blocks stay equal and their number stays (as Torch-Pruning does).
    Subclass it for your own layer: set the weight axes, and override :meth:`channel_axis`,
    :meth:`in_channels`, :meth:`out_channels` (and :meth:`_set_sizes`) where your attribute
    names differ from a convolution's.
    """

    #: Weight axis of input channels and of output channels.
    in_axis: int = 1
    out_axis: int = 0

    def channel_axis(self, module: nn.Module, ndim: int) -> int:
        """Axis of the input (and output) tensor that holds channels, for an ``ndim``-d input:
        the axis before the spatial ones (``len(kernel_size)`` of them)."""
        return ndim - 1 - len(getattr(module, "kernel_size", (0, 0)))

    def example_input(self, module: nn.Module) -> tuple[int, ...]:
        """Shape of an input this layer accepts (used to guess a model's example input)."""
        spatial = len(getattr(module, "kernel_size", (0, 0)))
        return (1, self.in_channels(module)) + (64,) * spatial

    def groups(self, module: nn.Module) -> int:
        return int(getattr(module, "groups", 1))

    def by_position(self, module: nn.Module) -> bool:
        """Grouped with more than one channel per block on both sides: pruned by position."""
        groups = self.groups(module)
        if groups == 1:
            return False
        return min(self.in_channels(module), self.out_channels(module)) // groups > 1

    def _per_axis(self, module: nn.Module, vector: Tensor, axis: int) -> Tensor:
        """A per-channel vector as the weight's ``axis`` holds it: one block's positions when the
        axis lists a block's channels only (a grouped conv's input axis)."""
        if module.weight.shape[axis] == vector.numel():
            return vector
        return vector.view(self.groups(module), -1)[0]

    def in_channels(self, module: nn.Module) -> int:
        return int(module.in_channels)

    def out_channels(self, module: nn.Module) -> int:
        return int(module.out_channels)

    def gate_shape(self, module: nn.Module) -> list[int]:
        """Shape that views an input-channel scale vector along the weight's input axis."""
        shape = [1] * module.weight.dim()
        shape[self.in_axis] = -1
        return shape

    def output_l1(self, module: nn.Module) -> Tensor:
        """L1 norm of each output channel's weights (the ``l1`` importance criterion)."""
        groups = self.groups(module)
        if groups > 1 and self.out_axis != 0:
            weight = module.weight.detach().abs()
            # (in, out/g, ...): output channel j of block k lives at rows of block k, column j % b.
            b = weight.shape[self.out_axis]
            a = weight.shape[0] // groups
            per = weight.reshape(groups, a, b, -1).sum(dim=(1, 3))  # (groups, b)
            return per.reshape(-1)
        dims = [d for d in range(module.weight.dim()) if d != self.out_axis]
        return torch.linalg.vector_norm(module.weight.detach(), ord=1, dim=dims)

    def fold_inputs(self, module: nn.Module, scale: Tensor) -> None:
        """Multiply the weights of input channel ``i`` by ``scale[i]`` (exact for any scale)."""
        weight = module.weight
        scale = self._per_axis(module, scale, self.in_axis)
        factor = broadcast_along(
            scale.to(device=weight.device, dtype=weight.dtype), self.in_axis, weight.dim()
        )
        # a new tensor, not ``mul_``: a weight tied to another layer must not be scaled twice
        module.weight = nn.Parameter(weight.detach() * factor, requires_grad=weight.requires_grad)

    def cut(self, module: nn.Module, keep_in: Tensor, keep_out: Tensor) -> None:
        groups = self.groups(module)
        if groups == 1 or self.by_position(module):
            for keep, axis in ((keep_out, self.out_axis), (keep_in, self.in_axis)):
                if groups > 1 and not _same_rows(keep.view(groups, -1)):
                    raise ValueError("grouped layer: every block must keep the same positions")
                _slice(module, "weight", self._per_axis(module, keep, axis), axis)
            _slice(module, "bias", keep_out, 0)
            self._set_sizes(module, int(keep_in.sum()), int(keep_out.sum()), groups)
            return
        # Grouped: whole blocks go; the graph couples block k of inputs and outputs, so keep_in
        # and keep_out agree block by block.
        a = self.in_channels(module) // groups
        b = self.out_channels(module) // groups
        keep_groups = keep_out.view(groups, b).all(dim=1)
        if not torch.equal(keep_out.view(groups, b).any(dim=1), keep_groups) or not torch.equal(
            keep_in.view(groups, a).all(dim=1), keep_groups
        ):
            raise ValueError("grouped layer: channels must be removed a whole group at a time")
        row_axis = 0  # the weight axis that lists blocks: out for Conv2d, in for ConvTranspose2d
        rows = keep_out if self.out_axis == 0 else keep_in
        _slice(module, "weight", rows, row_axis)
        _slice(module, "bias", keep_out, 0)
        kept = int(keep_groups.sum())
        self._set_sizes(module, kept * a, kept * b, kept)

    def _set_sizes(self, module: nn.Module, n_in: int, n_out: int, groups: int) -> None:
        module.in_channels, module.out_channels, module.groups = n_in, n_out, groups

    def resize_to(self, module: nn.Module, state: Mapping[str, Tensor], prefix: str) -> None:
        weight = state.get(prefix + "weight")
        if weight is None or tuple(weight.shape) == tuple(module.weight.shape):
            return
        groups = self.groups(module)
        a = self.in_channels(module) // groups
        b = self.out_channels(module) // groups
        if groups == 1 or self.by_position(module):
            n_in, n_out = weight.shape[self.in_axis], weight.shape[self.out_axis]
            n_in *= groups if self.in_axis != 0 else 1  # the axis lists one block's inputs
            n_out *= groups if self.out_axis != 0 else 1
        else:
            kept = weight.shape[0] // (b if self.out_axis == 0 else a)
            n_in, n_out, groups = kept * a, kept * b, kept
        _empty_like_param(module, "weight", tuple(weight.shape))
        _empty_like_param(module, "bias", (n_out,))
        self._set_sizes(module, n_in, n_out, groups)


class ConvRule(MixingRule):
    """``Conv1d``/``Conv2d``/``Conv3d``: weight ``(out, in/groups, *kernel)``."""

    types = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    in_axis, out_axis = 1, 0


class ConvTransposeRule(MixingRule):
    """``ConvTranspose1d/2d/3d``: weight ``(in, out/groups, *kernel)`` — the axes are swapped."""

    types = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    in_axis, out_axis = 0, 1


class LinearRule(MixingRule):
    """``Linear``: weight ``(out, in)``; channels are the last (feature) axis of its input, which
    may have any number of leading axes (tokens, channels-last images)."""

    types = (nn.Linear,)
    in_axis, out_axis = 1, 0

    def channel_axis(self, module: nn.Module, ndim: int) -> int:
        return ndim - 1

    def example_input(self, module: nn.Module) -> tuple[int, ...]:
        return (1, self.in_channels(module))

    def in_channels(self, module: nn.Module) -> int:
        return int(module.in_features)

    def out_channels(self, module: nn.Module) -> int:
        return int(module.out_features)

    def _set_sizes(self, module: nn.Module, n_in: int, n_out: int, groups: int) -> None:
        module.in_features, module.out_features = n_in, n_out


_INSTANCE_NORMS = {nn.InstanceNorm1d: 1, nn.InstanceNorm2d: 2, nn.InstanceNorm3d: 3}


class ChannelwiseRule(LayerRule):
    """Layers with one parameter/statistic per channel and no mixing: BatchNorm, InstanceNorm
    (affine or tracking), PReLU with one slope per channel."""

    types = (
        nn.BatchNorm1d,
        nn.BatchNorm2d,
        nn.BatchNorm3d,
        nn.InstanceNorm1d,
        nn.InstanceNorm2d,
        nn.InstanceNorm3d,
        nn.PReLU,
    )
    tensors = ("weight", "bias", "running_mean", "running_var")

    def channel_axis(self, module: nn.Module, ndim: int) -> int:
        """Channels are axis 1, or axis 0 of an unbatched input to an InstanceNorm/PReLU."""
        spatial = next((k for t, k in _INSTANCE_NORMS.items() if isinstance(module, t)), None)
        if spatial is not None:
            return ndim - 1 - spatial
        return 0 if ndim == 1 else 1

    def channels(self, module: nn.Module) -> int | None:
        """Channel count the layer is tied to, or None for a per-tensor layer (PReLU(1))."""
        if isinstance(module, nn.PReLU):
            return None if module.num_parameters == 1 else int(module.num_parameters)
        return int(module.num_features)

    def cut(self, module: nn.Module, keep_in: Tensor, keep_out: Tensor) -> None:
        if self.channels(module) is None:
            return
        for name in self.tensors:
            _slice(module, name, keep_out, 0)
        self._set_size(module, int(keep_out.sum()))

    def _set_size(self, module: nn.Module, n: int) -> None:
        if isinstance(module, nn.PReLU):
            module.num_parameters = n
        else:
            module.num_features = n

    def resize_to(self, module: nn.Module, state: Mapping[str, Tensor], prefix: str) -> None:
        if self.channels(module) is None:
            return
        for name in self.tensors:
            tensor = state.get(prefix + name)
            if tensor is not None:
                _empty_like_param(module, name, tuple(tensor.shape))
                self._set_size(module, int(tensor.shape[0]))


class GroupNormRule(LayerRule):
    """``GroupNorm``: statistics over blocks of channels, so a block is pruned as one unit."""

    types = (nn.GroupNorm,)

    def channel_axis(self, module: nn.Module, ndim: int) -> int:
        return 1

    def channels(self, module: nn.Module) -> int:
        """Channel count the layer is tied to."""
        return int(module.num_channels)

    def cut(self, module: nn.Module, keep_in: Tensor, keep_out: Tensor) -> None:
        size = module.num_channels // module.num_groups
        blocks = keep_out.view(module.num_groups, size)
        if not torch.equal(blocks.all(dim=1), blocks.any(dim=1)):
            raise ValueError("GroupNorm: channels must be removed a whole group at a time")
        _slice(module, "weight", keep_out, 0)
        _slice(module, "bias", keep_out, 0)
        module.num_groups = int(blocks.all(dim=1).sum())
        module.num_channels = module.num_groups * size

    def resize_to(self, module: nn.Module, state: Mapping[str, Tensor], prefix: str) -> None:
        weight = state.get(prefix + "weight")
        if weight is None or weight.shape[0] == module.num_channels:
            return
        size = module.num_channels // module.num_groups
        _empty_like_param(module, "weight", tuple(weight.shape))
        _empty_like_param(module, "bias", tuple(weight.shape))
        module.num_channels = int(weight.shape[0])
        module.num_groups = module.num_channels // size


class ElementwiseRule(LayerRule):
    """Layers without channel parameters whose channels pass straight through (activations,
    dropout, pooling, resizing, padding). ``spatial_dims`` trailing axes are mixed (a 2-d
    pooling mixes the last two); a channel axis among them is left whole."""

    #: Why a channel axis among :meth:`mixing_dims` is left whole (shown in the plan).
    why = "it mixes values along a channel axis or resizes it"

    def __init__(self, spatial_dims: int = 0) -> None:
        self.spatial_dims = spatial_dims

    def mixing_dims(self, module: nn.Module, ndim: int) -> set[int]:
        """Axes of an ``ndim``-d input along which the layer combines values."""
        return set(range(ndim - self.spatial_dims, ndim))

    def cut(self, module: nn.Module, keep_in: Tensor, keep_out: Tensor) -> None:
        return None

    def resize_to(self, module: nn.Module, state: Mapping[str, Tensor], prefix: str) -> None:
        return None


class SoftmaxRule(ElementwiseRule):
    """``Softmax``/``LogSoftmax``/``Softmin``: mixes values along ``module.dim``."""

    why = "a softmax over the channels"

    def mixing_dims(self, module: nn.Module, ndim: int) -> set[int]:
        dim = module.dim
        return set(range(ndim)) if dim is None else {dim % ndim}


class LayerNormRule(ElementwiseRule):
    """``LayerNorm``: statistics over its trailing ``normalized_shape`` axes mix those channels
    (pruning one changes every other's output), so a channel axis there is left whole."""

    why = "LayerNorm statistics over the channels: removing one would change the others"

    def mixing_dims(self, module: nn.Module, ndim: int) -> set[int]:
        return set(range(ndim - len(module.normalized_shape), ndim))


class ParamRule(LayerRule):
    """A per-channel parameter or buffer a model's forward reads itself (LayerScale ``gamma``,
    the statistics a ``BatchNorm`` subclass passes to ``F.batch_norm``): ``attr`` of the module,
    cut along ``axis``. Not registered for a type: the graph creates one per such tensor."""

    def __init__(self, attr: str, axis: int) -> None:
        self.attr, self.axis = attr, axis

    def cut(self, module: nn.Module, keep_in: Tensor, keep_out: Tensor) -> None:
        _slice(module, self.attr, keep_out, self.axis)
        tensor = getattr(module, self.attr)
        if self.attr == "weight" and isinstance(module, nn.modules.batchnorm._NormBase):
            module.num_features = int(tensor.shape[0])

    def resize_to(self, module: nn.Module, state: Mapping[str, Tensor], prefix: str) -> None:
        tensor = state.get(prefix + self.attr)
        if tensor is not None:
            _empty_like_param(module, self.attr, tuple(tensor.shape))


class HeadsRule(LayerRule):
    """An attention module that splits its channels into heads by a count it keeps as an int
    attribute (timm's ``Attention``: ``reshape(B, N, 3, self.num_heads, self.head_dim)``, and
    back with ``reshape(B, N, self.attn_dim)``): whole heads are pruned. The graph makes one
    layer of it whose channels are its heads; cutting it sets the head count to the heads kept
    and every ``derived`` attribute that was ``count × width`` to ``kept × width``. The head
    width stays, and so does anything computed from it (``scale``).

    Not registered for a type: any module with int attributes ``count`` and ``width`` gets the
    default rule; :func:`register_heads` gives a type other attribute names.
    """

    def __init__(
        self,
        count: str = "num_heads",
        width: str = "head_dim",
        derived: tuple[str, ...] = ("attn_dim", "all_head_size", "inner_dim"),
    ) -> None:
        self.count, self.width, self.derived = count, width, tuple(derived)

    def heads(self, module: nn.Module) -> tuple[int, int] | None:
        """``(number of heads, head width)``, or None when the module does not keep both."""
        n, d = getattr(module, self.count, None), getattr(module, self.width, None)
        if type(n) is int and type(d) is int and n >= 1 and d >= 1:
            return n, d
        return None

    def cut(self, module: nn.Module, keep_in: Tensor, keep_out: Tensor) -> None:
        found = self.heads(module)
        if found is None:
            raise ValueError(f"no int attributes '{self.count}' and '{self.width}'")
        n, d = found
        kept = int(keep_in.sum())
        for attr in self.derived:
            if type(getattr(module, attr, None)) is int and getattr(module, attr) == n * d:
                setattr(module, attr, kept * d)
        setattr(module, self.count, kept)

    def resize_to(self, module: nn.Module, state: Mapping[str, Tensor], prefix: str) -> None:
        """The heads of a shrunk model's ``state``, read from the ``Linear`` layers inside the
        module (at any depth) whose output was ``k × heads × width`` channels and is smaller in
        ``state``: a fused ``qkv`` (k = 3) first, then ``kv`` (2), then single projections, which
        must agree (an output projection as wide as the heads, pruned on its own, is not read).
        Call it before the children are resized (``named_modules`` order)."""
        found = self.heads(module)
        if found is None:
            return
        n, d = found
        counts: dict[int, set[int]] = {3: set(), 2: set(), 1: set()}
        for name, child in module.named_modules():
            weight = state.get(f"{prefix}{name}.weight") if name else None
            if not isinstance(child, nn.Linear) or weight is None:
                continue
            k = child.out_features // (n * d)
            rows = weight.shape[0]
            if k in counts and child.out_features == k * n * d and rows < child.out_features:
                counts[k].add(rows // (k * d) if rows % (k * d) == 0 else -1)
        for k in (3, 2, 1):
            if not counts[k]:
                continue
            if len(counts[k]) != 1 or -1 in counts[k]:
                raise ValueError(
                    f"{prefix.rstrip('.') or 'the model'}: the shrunk state's projections disagree "
                    f"on the number of heads ({sorted(counts[k])} of {n}): cannot rebuild it"
                )
            kept = torch.ones(n, dtype=torch.bool)
            kept[counts[k].pop() :] = False
            self.cut(module, kept, kept)
            return


_HEADS: dict[type, HeadsRule] = {}
_DEFAULT_HEADS = HeadsRule()


def register_heads(layer_type: type, rule: HeadsRule) -> None:
    """Prune whole heads of attention modules of exactly ``layer_type``, whose head count and
    width ``rule`` names (``HeadsRule(count="n_head", width="d_head")``)."""
    if not isinstance(layer_type, type) or not issubclass(layer_type, nn.Module):
        raise TypeError(f"register_heads: {layer_type!r} is not an nn.Module class")
    if not isinstance(rule, HeadsRule):
        raise TypeError(f"register_heads: {rule!r} is not a HeadsRule")
    _HEADS[layer_type] = rule


def heads_rule_for(module: nn.Module) -> HeadsRule | None:
    """The heads rule of ``module`` (registered for its type, or the default one when it has
    int attributes ``num_heads`` and ``head_dim``), or None."""
    rule = _HEADS.get(type(module), _DEFAULT_HEADS)
    return rule if rule.heads(module) is not None else None


#: The rule of each layer type, by exact type: a user's subclass may compute something else in
#: its own ``forward`` (weight standardisation, …), so it is unknown (left whole) until registered.
_RULES: dict[type, LayerRule] = {}


def register_rule(layer_type: type, rule: LayerRule) -> None:
    """Use ``rule`` for layers of exactly ``layer_type`` (a subclass needs its own registration)."""
    if not isinstance(layer_type, type) or not issubclass(layer_type, nn.Module):
        raise TypeError(f"register_rule: {layer_type!r} is not an nn.Module class")
    if not isinstance(rule, LayerRule):
        raise TypeError(f"register_rule: {rule!r} is not a LayerRule")
    _RULES[layer_type] = rule


for _rule in (ConvRule(), ConvTransposeRule(), LinearRule(), ChannelwiseRule(), GroupNormRule()):
    for _type in _rule.types:
        register_rule(_type, _rule)

_ELEMENTWISE: dict[int, tuple[type, ...]] = {
    0: (
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
        nn.Dropout1d,
        nn.Dropout2d,
        nn.Dropout3d,
        nn.AlphaDropout,
    ),
    1: (nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d),
    2: (
        nn.MaxPool2d,
        nn.AvgPool2d,
        nn.AdaptiveAvgPool2d,
        nn.AdaptiveMaxPool2d,
        nn.Upsample,
        nn.UpsamplingNearest2d,
        nn.UpsamplingBilinear2d,
        nn.ZeroPad2d,
        nn.ConstantPad2d,
        nn.ReflectionPad2d,
        nn.ReplicationPad2d,
    ),
    3: (nn.MaxPool3d, nn.AvgPool3d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d),
}
for _dims, _types in _ELEMENTWISE.items():
    for _type in _types:
        register_rule(_type, ElementwiseRule(_dims))
for _type in (nn.Softmax, nn.LogSoftmax, nn.Softmin):
    register_rule(_type, SoftmaxRule())
register_rule(nn.LayerNorm, LayerNormRule())


def register_layer(layer_type: type, rule: LayerRule) -> None:
    """Teach alphaprune a layer type: its channels follow ``rule`` (one registration, no edit).

    A layer with a rule is traced as one unit (its forward is not looked into); the rule says
    how channels go through it and how to cut them. Pick the kind that describes the layer:

    - ``ElementwiseRule(spatial_dims=k)``: channels pass straight through (an activation, a
      resize over the last ``k`` axes); nothing to cut;
    - ``ChannelwiseRule()`` (or a subclass): one value per channel (a norm) — it reads
      ``num_features`` and cuts ``weight``, ``bias``, ``running_mean``, ``running_var``;
    - ``LinearRule()``/``ConvRule()``/``ConvTransposeRule()``: a layer that computes like
      ``nn.Linear``/``nn.ConvNd``/``nn.ConvTransposeNd`` from the same attributes
      (``in_features`` …, ``weight``, ``bias``) — it is gated and cut like them;
    - a ``MixingRule`` subclass for a weight layout of your own (set ``in_axis``/``out_axis``,
      override ``channel_axis``/``in_channels``/``out_channels``/``_set_sizes``).

    A mixing layer is gated by running its own forward with ``weight`` scaled by the gate. The
    registration is for exactly ``layer_type`` (not its subclasses). ``shrink`` still checks the
    result against the gated model, so a wrong rule is refused, never silently wrong.

    Example::

        ap.register_layer(MySwish, ap.ElementwiseRule())
        ap.register_layer(EinsumLinear, ap.LinearRule())
    """
    register_rule(layer_type, rule)


def rule_for(module: nn.Module | type) -> LayerRule | None:
    """The rule of ``module``'s type (or of the class itself), or None when its channels are not
    understood."""
    kind = module if isinstance(module, type) else type(module)
    return _RULES.get(kind)


def input_axis(module: nn.Module) -> int:
    """Weight axis that indexes input channels: 1 for Conv2d/Linear, 0 for ConvTranspose2d."""
    rule = rule_for(module)
    if not isinstance(rule, MixingRule):
        raise TypeError(f"{type(module).__name__} has no input-channel weight axis")
    return rule.in_axis


def output_axis(module: nn.Module) -> int:
    """Weight axis that indexes output channels: 0 for Conv2d/Linear, 1 for ConvTranspose2d."""
    rule = rule_for(module)
    if not isinstance(rule, MixingRule):
        raise TypeError(f"{type(module).__name__} has no output-channel weight axis")
    return rule.out_axis
