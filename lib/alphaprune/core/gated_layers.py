"""Gated layers: convolutions (1-3 d), transposed convolutions and ``Linear`` whose input channels
are scaled by α — and any layer type a user registered with a ``MixingRule``.

A pruned input channel is multiplied by α where it is *consumed*: the gate scales the layer's weight
along its input-channel axis (``Conv2d`` dim 1, ``ConvTranspose2d`` dim 0, ``Linear`` dim 1 — the
axes come from :mod:`alphaprune.core.layer_rules`). A gated layer is the same object with its class
swapped to a gated subclass (as ``torch.nn.utils.parametrize`` does), keeping its parameter names,
so state-dict keys are unchanged; the gate adds two buffers, ``gate_mask`` (True = kept) and
``gate_alpha`` (float64, so the α read back is exactly the α set, also after ``.half()``).

This is a leaf module: it imports the layer rules and nothing else of ``core``, and registers each
gated class with the rule of its base layer (:func:`alphaprune.core.layer_rules.register_rule`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alphaprune.core.layer_rules import MixingRule, register_rule, rule_for
from alphaprune.errors import PruningError, UnsupportedModelError

__all__ = [
    "ALPHA_KEY",
    "MASK_KEY",
    "AlphaGate",
    "GatedConv1d",
    "GatedConv2d",
    "GatedConv3d",
    "GatedConvTranspose1d",
    "GatedConvTranspose2d",
    "GatedConvTranspose3d",
    "GatedLinear",
    "check_alpha",
    "gate_layer",
    "gateable",
    "ungate_layer",
]

MASK_KEY, ALPHA_KEY = "gate_mask", "gate_alpha"


def check_alpha(alpha: float, what: str = "alpha") -> float:
    """Return ``alpha`` as a float, or raise ``ValueError`` if it is not a number in [0, 1]."""
    if isinstance(alpha, (bool, str, bytes)):  # float("0.5") would accept a string
        raise PruningError(f"{what} must be a number in [0, 1], got {alpha!r}")
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise PruningError(f"{what} must be a number in [0, 1], got {alpha!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise PruningError(f"{what} must be in [0, 1], got {alpha!r}")
    return value


class AlphaGate(nn.Module):
    """Mixin of a gated layer: input channel ``i`` is scaled by 1 if kept, by α if pruned.

    Not built directly: :func:`attach_gates` turns a ``Conv2d``, ``ConvTranspose2d`` or
    ``Linear`` into its gated subclass in place.
    """

    base_type = nn.Module
    __jit_unused_properties__ = ["mask", "num_channels", "num_kept"]

    @property
    def mask(self) -> Tensor:
        """Bool per input channel, True where kept."""
        return self.gate_mask

    @property
    def num_channels(self) -> int:
        return self.gate_mask.numel()

    @property
    def num_kept(self) -> int:
        return int(self.gate_mask.sum())

    def set_alpha(self, alpha: float) -> None:
        """Set α in place (keeps the buffer's device and float64 dtype)."""
        self.gate_alpha.fill_(check_alpha(alpha))

    def get_alpha(self) -> float:
        return float(self.gate_alpha)

    def scale(self) -> Tensor:
        """The per-input-channel factor (float64): 1 where kept, α where pruned."""
        return torch.where(self.gate_mask, torch.ones_like(self.gate_alpha), self.gate_alpha)

    def gated_weight(self) -> Tensor:
        scale = torch.where(self.gate_mask, torch.ones_like(self.gate_alpha), self.gate_alpha)
        # a grouped conv's weight lists one block's inputs: every block has the same gates
        scale = scale.view(self._gate_blocks, -1)[0]
        return self.weight * scale.to(self.weight.dtype).view(self._gate_view)

    def _scales_input(self, input: Tensor) -> bool:
        """Scale the input's channels instead of the weight when that is less work (a wide
        ``Linear`` on a small batch): the same product, in a different order."""
        return input.numel() < self.weight.numel()

    def gated_input(self, input: Tensor) -> Tensor:
        scale = torch.where(self.gate_mask, torch.ones_like(self.gate_alpha), self.gate_alpha)
        return input * scale.to(input.dtype).view(self._input_view)

    def _apply(self, fn, recurse=True):  # noqa: ANN001 - torch's signature
        # ``.half()``/``.bfloat16()`` convert every floating buffer; α must stay exactly as set.
        alpha = self.gate_alpha.detach().clone()
        super()._apply(fn, recurse)
        self.gate_alpha = alpha.to(self.gate_mask.device)
        return self

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, gate: kept={self.num_kept}/{self.num_channels} inputs, "
            f"alpha={self.get_alpha():.4g}"
        )


class _GatedConv(AlphaGate):
    """Gated ``Conv1d``/``Conv2d``/``Conv3d``: the layer's own convolution, weight scaled."""

    def forward(self, input: Tensor) -> Tensor:
        if self._scales_input(input):
            return self._conv_forward(self.gated_input(input), self.weight, self.bias)
        return self._conv_forward(input, self.gated_weight(), self.bias)


class GatedConv1d(_GatedConv, nn.Conv1d):
    base_type = nn.Conv1d


class GatedConv2d(_GatedConv, nn.Conv2d):
    base_type = nn.Conv2d


class GatedConv3d(_GatedConv, nn.Conv3d):
    base_type = nn.Conv3d


class _GatedConvTranspose(AlphaGate):
    """Gated ``ConvTranspose1d/2d/3d`` (``output_size`` supported as in torch)."""

    _functional = staticmethod(F.conv_transpose2d)

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        spatial = len(self.kernel_size)
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, spatial, self.dilation
        )
        return self._functional(
            input,
            self.gated_weight(),
            self.bias,
            self.stride,
            self.padding,
            output_padding,
            self.groups,
            self.dilation,
        )


class GatedConvTranspose1d(_GatedConvTranspose, nn.ConvTranspose1d):
    base_type = nn.ConvTranspose1d
    _functional = staticmethod(F.conv_transpose1d)


class GatedConvTranspose2d(_GatedConvTranspose, nn.ConvTranspose2d):
    base_type = nn.ConvTranspose2d
    _functional = staticmethod(F.conv_transpose2d)


class GatedConvTranspose3d(_GatedConvTranspose, nn.ConvTranspose3d):
    base_type = nn.ConvTranspose3d
    _functional = staticmethod(F.conv_transpose3d)


class GatedLinear(AlphaGate, nn.Linear):
    base_type = nn.Linear

    def forward(self, input: Tensor) -> Tensor:
        if self._scales_input(input):
            return F.linear(self.gated_input(input), self.weight, self.bias)
        return F.linear(input, self.gated_weight(), self.bias)


class _GatedCustom(AlphaGate):
    """Gate of a layer type a user registered with a :class:`MixingRule`: its own forward runs
    with ``weight`` replaced by the gated weight for the call."""

    def forward(self, *args, **kwargs):
        weight = self._parameters.pop("weight")
        try:
            scale = self.scale().view(self._gate_blocks, -1)[0]
            self.__dict__["weight"] = weight * scale.to(weight.dtype).view(self._gate_view)
            return self.base_type.forward(self, *args, **kwargs)
        finally:
            del self.__dict__["weight"]
            self._parameters["weight"] = weight

    def gated_weight(self) -> Tensor:
        weight = self._parameters.get("weight", self.__dict__.get("weight"))
        scale = self.scale().view(self._gate_blocks, -1)[0]
        return weight * scale.to(weight.dtype).view(self._gate_view)


_GATED: dict[type, type] = {
    cls.base_type: cls
    for cls in (
        GatedConv1d,
        GatedConv2d,
        GatedConv3d,
        GatedConvTranspose1d,
        GatedConvTranspose2d,
        GatedConvTranspose3d,
        GatedLinear,
    )
}
for _cls in _GATED.values():  # a gated layer has its base layer's channels and axes
    register_rule(_cls, rule_for(_cls.base_type))


def _gated_class(base: type) -> type | None:
    """The gated class of ``base``: built in, or made once for a user's registered mixing layer
    or a subclass of a built-in one (timm's ``Linear``; its own forward runs, weight gated)."""
    if base in _GATED:
        return _GATED[base]
    rule = rule_for(base)
    if rule is None:
        rule = next((rule_for(b) for b in _GATED if issubclass(base, b)), None)
    if not isinstance(rule, MixingRule) or issubclass(base, AlphaGate):
        return None
    cls = type(f"Gated{base.__name__}", (_GatedCustom, base), {"base_type": base})
    _GATED[base] = cls
    register_rule(cls, rule)
    return cls


def gateable(module: nn.Module) -> bool:
    """True for a layer :func:`gate_layer` can gate: a type with a :class:`MixingRule` (conv,
    transposed conv, linear, or a user's registered layer), not gated yet."""
    return _gated_class(type(module)) is not None


def gate_layer(module: nn.Module, mask: Tensor, alpha: float) -> AlphaGate:
    """Turn ``module`` (a layer type with a :class:`MixingRule`) into its gated class in place."""
    gated = _gated_class(type(module))
    if gated is None:
        raise UnsupportedModelError(f"cannot gate a {type(module).__name__}")
    rule = rule_for(gated)
    assert isinstance(rule, MixingRule)
    mask = torch.as_tensor(mask, dtype=torch.bool).flatten()
    if mask.numel() != rule.in_channels(module):
        raise PruningError(
            f"gate mask has {mask.numel()} entries, the layer has "
            f"{rule.in_channels(module)} input channels"
        )
    device = module.weight.device
    module.__class__ = gated
    module.register_buffer(MASK_KEY, mask.to(device))
    module.register_buffer(ALPHA_KEY, torch.tensor(check_alpha(alpha), dtype=torch.float64))
    module.gate_alpha = module.gate_alpha.to(device)
    module._gate_view = rule.gate_shape(module)
    module._input_view = [-1] + [1] * len(getattr(module, "kernel_size", ()))
    listed = module.weight.shape[rule.in_axis]
    module._gate_blocks = 1 if listed == mask.numel() else rule.groups(module)
    return module


def ungate_layer(module: AlphaGate, keep: Tensor | None = None) -> nn.Module:
    """Fold the gate into the weight and give the layer its plain class back (in place).

    ``keep`` (bool per input channel) names the inputs that will survive a cut: when each of
    them has scale 1 there is nothing to fold (the gate's α only touches channels cut away).
    """
    rule = rule_for(module)
    assert isinstance(rule, MixingRule)
    scale = module.scale().detach()
    del module._buffers[MASK_KEY], module._buffers[ALPHA_KEY]
    del module._gate_view, module._input_view, module._gate_blocks
    module.__class__ = module.base_type
    survivors = scale if keep is None else scale[keep.to(scale.device)]
    if not bool((survivors == 1).all()):
        rule.fold_inputs(module, scale)
    return module
