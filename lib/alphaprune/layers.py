"""α gates: per-channel factors that fade pruned channels out while the network is fine-tuned.

A gate multiplies channel ``c`` by 1 if it is kept and by α if it is pruned. The keep-mask and α
are buffers, so a checkpoint carries them and ``load_state_dict`` restores them: a model can never
be evaluated with an α other than the one it was saved with by accident.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .graph import (
    ACTIVATIONS,
    CONVS,
    NORMS,
    SCALE_COMMUTING,
    Leaf,
    UnsupportedModelError,
    check_groups,
    flatten,
)

__all__ = [
    "AlphaGate",
    "attach_gates",
    "set_alpha",
    "get_alpha",
    "gates",
    "prunable_layers",
    "restore_gates",
    "check_alpha",
]

GATE_SUFFIX = "_gate"
#: Layers that may sit between a convolution and its gate (the gate goes after the last of them).
_PRODUCER_CHAIN = NORMS + ACTIVATIONS + (nn.Identity, nn.Dropout, nn.Dropout2d)


def check_alpha(alpha: float, what: str = "alpha") -> float:
    """Return ``alpha`` as a float, or raise ``ValueError`` if it is not a number in [0, 1]."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number in [0, 1], got {alpha!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must be in [0, 1], got {alpha!r}")
    return value


class AlphaGate(nn.Module):
    """Multiply kept channels by 1 and pruned channels by α (buffers ``mask`` and ``alpha``).

    α is kept in float64 so the value read back (``get_alpha``, checkpoints) is exactly the value
    set (0.1 stays 0.1); the multiplication happens in the input's dtype.

    Args:
        mask: boolean vector, True for channels that are kept.
        alpha: factor applied to the pruned channels, in [0, 1].
        producer: dotted name of the convolution whose output this gate scales (informational).
    """

    def __init__(self, mask: Tensor, alpha: float = 1.0, producer: str = "") -> None:
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.bool).flatten().clone()
        if mask.numel() == 0:
            raise ValueError("AlphaGate needs at least one channel")
        self.register_buffer("mask", mask)
        self.register_buffer("alpha", torch.tensor(check_alpha(alpha), dtype=torch.float64))
        self.producer = producer

    @property
    def num_channels(self) -> int:
        return self.mask.numel()

    @property
    def num_kept(self) -> int:
        return int(self.mask.sum())

    def set_alpha(self, alpha: float) -> None:
        """Set α in place (keeps the buffer's device and dtype)."""
        self.alpha.fill_(check_alpha(alpha))

    def get_alpha(self) -> float:
        return float(self.alpha)

    def scale(self) -> Tensor:
        """The per-channel factor vector: 1 where kept, α where pruned."""
        return torch.where(self.mask, torch.ones_like(self.alpha), self.alpha)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.mask.numel():
            raise RuntimeError(
                f"gate after '{self.producer}' expects {self.mask.numel()} channels, "
                f"got input of shape {tuple(x.shape)}"
            )
        return x * self.scale().to(x.dtype).view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return (
            f"channels={self.num_channels}, kept={self.num_kept}, "
            f"alpha={self.get_alpha():.4g}, producer='{self.producer}'"
        )


@dataclass(frozen=True)
class _Site:
    """Where a gate for ``producer`` goes: after ``anchor`` (in the same container)."""

    producer: Leaf
    anchor: Leaf
    norm: Leaf | None
    consumer: Leaf | None
    problem: str | None  # why this convolution cannot be gated, if it cannot

    @property
    def gate_name(self) -> str:
        return self.anchor.name + GATE_SUFFIX


def _sites(model: nn.Module) -> list[_Site]:
    """Every convolution with a downstream consumer convolution, and where its gate would go."""
    leaves = flatten(model, leaf_types=(AlphaGate,))
    if any(isinstance(leaf.module, AlphaGate) for leaf in leaves):
        raise ValueError("model already has α gates; shrink it or build a fresh model first")
    sites = []
    for i, leaf in enumerate(leaves):
        if not isinstance(leaf.module, CONVS):
            continue
        j = i + 1
        norm = None
        while j < len(leaves) and isinstance(leaves[j].module, _PRODUCER_CHAIN):
            if norm is None and isinstance(leaves[j].module, NORMS):
                norm = leaves[j]
            j += 1
        anchor = leaves[j - 1]
        consumer, problem = None, None
        for k in range(j, len(leaves)):
            module = leaves[k].module
            if isinstance(module, CONVS):
                consumer = leaves[k]
                break
            if problem is None and not isinstance(module, SCALE_COMMUTING):
                problem = (
                    f"'{leaves[k].name}' ({type(module).__name__}) sits between the gate of "
                    f"'{leaf.name}' and the next convolution; only pooling, upsampling and "
                    "ReLU/LeakyReLU may sit there"
                )
        if consumer is None:
            continue  # the output convolution: never pruned
        sites.append(_Site(leaf, anchor, norm, consumer, problem))
    return sites


def _in_target(name: str, target: str, model: nn.Module) -> bool:
    if target == "both":
        return True
    if not isinstance(getattr(model, target, None), nn.Module):
        raise ValueError(
            f"target='{target}' but {type(model).__name__} has no '.{target}' submodule; "
            "use target='both'"
        )
    return name == target or name.startswith(target + ".")


def prunable_layers(model: nn.Module, target: str = "both") -> dict[str, int]:
    """Names and output-channel counts of the convolutions ``attach_gates`` can gate in ``target``.

    Convolutions whose gate could not be folded exactly (e.g. a BatchNorm between the gate and
    the next convolution) are left out; ``attach_gates`` refuses them with the reason.
    """
    _check_target(target)
    return {
        s.producer.name: s.producer.module.out_channels
        for s in _sites(model)
        if s.problem is None and _in_target(s.producer.name, target, model)
    }


def _check_target(target: str) -> None:
    if target not in ("encoder", "decoder", "both"):
        raise ValueError(f"target must be 'encoder', 'decoder' or 'both', got {target!r}")


def _scores(site: _Site, criterion: str) -> Tensor:
    conv = site.producer.module
    if criterion == "l1":
        weight = conv.weight.detach().abs()
        # Conv2d: (out, in, kH, kW); ConvTranspose2d: (in, out, kH, kW).
        out_axis = 1 if isinstance(conv, nn.ConvTranspose2d) else 0
        dims = [d for d in range(weight.dim()) if d != out_axis]
        return weight.sum(dim=dims)
    if criterion == "bn":
        if site.norm is None or site.norm.module.weight is None:
            raise ValueError(
                f"criterion='bn' needs an affine BatchNorm2d after '{site.producer.name}'"
            )
        return site.norm.module.weight.detach().abs()
    raise ValueError(f"criterion must be 'l1' or 'bn', got {criterion!r}")


def _keep_mask(scores: Tensor, keep: float) -> Tensor:
    n_keep = max(1, int(round(keep * scores.numel())))
    order = torch.argsort(scores.float().cpu(), descending=True, stable=True)
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[order[:n_keep]] = True
    return mask


def _check_keep(keep: float, what: str) -> float:
    if isinstance(keep, bool):
        raise ValueError(f"{what} must be a number in (0, 1], got {keep!r}")
    try:
        value = float(keep)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number in (0, 1], got {keep!r}") from None
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{what} must be in (0, 1], got {keep!r}")
    return value


def _insert_after(anchor: Leaf, name: str, module: nn.Module) -> None:
    parent = anchor.parent
    items = list(parent._modules.items())
    position = [key for key, _ in items].index(anchor.key) + 1
    items.insert(position, (name, module))
    parent._modules = OrderedDict(items)


def attach_gates(
    model: nn.Module,
    keep: float | Mapping[str, float] = 0.5,
    criterion: str = "l1",
    target: str = "encoder",
    alpha: float = 1.0,
    masks: Mapping[str, Tensor] | None = None,
) -> dict[str, AlphaGate]:
    """Insert an :class:`AlphaGate` after the activation of every prunable convolution, in place.

    A convolution is prunable when another convolution consumes its output; the 3-channel output
    layer never is, and the image input is never touched (only output channels are gated).

    Args:
        model: a (nested) sequential chain; ``target`` selects its ``.encoder``/``.decoder``.
        keep: fraction of channels kept per layer, or a mapping from convolution name (e.g.
            ``"encoder.0"``) to fraction; layers absent from a mapping get no gate.
        criterion: ``"l1"`` (filter L1 norm, on the output axis of the weight: dim 0 for
            ``Conv2d``, dim 1 for ``ConvTranspose2d``) or ``"bn"`` (|γ| of the following BatchNorm).
        target: ``"encoder"``, ``"decoder"`` or ``"both"``.
        alpha: initial α of the new gates.
        masks: explicit keep-masks by convolution name (overrides ``keep``/``criterion``).

    Returns:
        The new gates by convolution name.
    """
    _check_target(target)
    check_alpha(alpha)
    sites = {s.producer.name: s for s in _sites(model)}
    candidates = {n: s for n, s in sites.items() if _in_target(n, target, model)}
    if masks is not None:
        plan = {name: None for name in masks}
    elif isinstance(keep, Mapping):
        plan = {name: _check_keep(value, f"keep['{name}']") for name, value in keep.items()}
    else:
        fraction = _check_keep(keep, "keep")
        plan = {name: fraction for name, s in candidates.items()}
    unknown = sorted(set(plan) - set(candidates))
    if unknown:
        raise ValueError(
            f"cannot gate {unknown}: not a prunable convolution in target '{target}'. "
            f"Prunable: {sorted(candidates) or 'none'}"
        )
    if not plan:
        raise ValueError(f"no prunable convolution in target '{target}' of this model")
    for name in plan:
        if candidates[name].problem:
            raise UnsupportedModelError(candidates[name].problem)
        check_groups(candidates[name].producer)
        check_groups(candidates[name].consumer)

    created: dict[str, AlphaGate] = {}
    for name, fraction in plan.items():
        site = candidates[name]
        channels = site.producer.module.out_channels
        if masks is not None:
            mask = torch.as_tensor(masks[name], dtype=torch.bool).flatten().cpu()
            if mask.numel() != channels:
                raise ValueError(
                    f"mask for '{name}' has {mask.numel()} entries, the layer has {channels} channels"
                )
        else:
            mask = _keep_mask(_scores(site, criterion), fraction)
        device = site.producer.module.weight.device
        gate = AlphaGate(mask, alpha=alpha, producer=name).to(device)
        _insert_after(site.anchor, site.anchor.key + GATE_SUFFIX, gate)
        created[name] = gate
    return created


def restore_gates(model: nn.Module, state_dict: Mapping[str, Tensor]) -> dict[str, AlphaGate]:
    """Re-create the gates recorded in a gated model's ``state_dict`` on a fresh, ungated model.

    Masks and α come from the state dict; call ``model.load_state_dict(state_dict)`` afterwards
    (or rely on the masks/α set here, which already equal the stored ones).
    """
    masks, alphas = {}, {}
    for site in _sites(model):
        key = site.gate_name + ".mask"
        if key in state_dict:
            masks[site.producer.name] = state_dict[key]
            alphas[site.producer.name] = float(state_dict[site.gate_name + ".alpha"])
    gate_keys = {k for k in state_dict if k.endswith(GATE_SUFFIX + ".mask")}
    if len(masks) != len(gate_keys):
        raise ValueError(
            f"state dict has {len(gate_keys)} gates but only {len(masks)} match this model's "
            "layers: was it saved from a different architecture?"
        )
    if not masks:
        return {}
    created = attach_gates(model, masks=masks, target="both")
    for name, gate in created.items():
        gate.set_alpha(alphas[name])
    return created


def gates(model: nn.Module) -> dict[str, AlphaGate]:
    """All gates of ``model`` by their module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, AlphaGate)}


def set_alpha(model: nn.Module, alpha: float) -> None:
    """Set α of every gate in ``model``; α outside [0, 1] is an error."""
    value = check_alpha(alpha)
    found = gates(model)
    if not found:
        raise ValueError("model has no α gates; call attach_gates first")
    for gate in found.values():
        gate.set_alpha(value)


def get_alpha(model: nn.Module, per_gate: bool = False) -> float | dict[str, float]:
    """The α of the model's gates (an error if they disagree), or a dict of each gate's α."""
    found = gates(model)
    if not found:
        raise ValueError("model has no α gates")
    values = {name: gate.get_alpha() for name, gate in found.items()}
    if per_gate:
        return values
    distinct = sorted(set(values.values()))
    if len(distinct) > 1:
        raise ValueError(
            f"gates disagree on α ({values}); call get_alpha(model, per_gate=True) to read each"
        )
    return distinct[0]
