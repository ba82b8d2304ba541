"""Gated layers: ``Conv2d``, ``ConvTranspose2d`` and ``Linear`` whose input channels are scaled by α.

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
    "GatedConv2d",
    "GatedConvTranspose2d",
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
        return self.weight * scale.to(self.weight.dtype).view(self._gate_view)

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


class GatedConv2d(AlphaGate, nn.Conv2d):
    base_type = nn.Conv2d

    def forward(self, input: Tensor) -> Tensor:
        return self._conv_forward(input, self.gated_weight(), self.bias)


class GatedConvTranspose2d(AlphaGate, nn.ConvTranspose2d):
    base_type = nn.ConvTranspose2d

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation
        )
        return F.conv_transpose2d(
            input,
            self.gated_weight(),
            self.bias,
            self.stride,
            self.padding,
            output_padding,
            self.groups,
            self.dilation,
        )


class GatedLinear(AlphaGate, nn.Linear):
    base_type = nn.Linear

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.gated_weight(), self.bias)


_GATED = {cls.base_type: cls for cls in (GatedConv2d, GatedConvTranspose2d, GatedLinear)}
for _cls in _GATED.values():  # a gated layer has its base layer's channels and axes
    register_rule(_cls, rule_for(_cls.base_type))


def gateable(module: nn.Module) -> bool:
    """True for a layer :func:`gate_layer` can gate (exact type Conv2d/ConvTranspose2d/Linear)."""
    return type(module) in _GATED


def gate_layer(module: nn.Module, mask: Tensor, alpha: float) -> AlphaGate:
    """Turn ``module`` (exact type Conv2d/ConvTranspose2d/Linear) into its gated class in place."""
    if type(module) not in _GATED:
        raise UnsupportedModelError(f"cannot gate a {type(module).__name__}")
    rule = rule_for(module)
    assert isinstance(rule, MixingRule)
    mask = torch.as_tensor(mask, dtype=torch.bool).flatten()
    if mask.numel() != rule.in_channels(module):
        raise PruningError(
            f"gate mask has {mask.numel()} entries, the layer has "
            f"{rule.in_channels(module)} input channels"
        )
    device = module.weight.device
    module.__class__ = _GATED[type(module)]
    module.register_buffer(MASK_KEY, mask.to(device))
    module.register_buffer(ALPHA_KEY, torch.tensor(check_alpha(alpha), dtype=torch.float64))
    module.gate_alpha = module.gate_alpha.to(device)
    module._gate_view = rule.gate_shape(module)
    return module


def ungate_layer(module: AlphaGate) -> nn.Module:
    """Fold the gate into the weight and give the layer its plain class back (in place)."""
    rule = rule_for(module)
    assert isinstance(rule, MixingRule)
    scale = module.scale().detach()
    del module._buffers[MASK_KEY], module._buffers[ALPHA_KEY]
    del module._gate_view
    module.__class__ = module.base_type
    rule.fold_inputs(module, scale)
    return module
