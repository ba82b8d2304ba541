"""Fold α gates into the weights and cut out the channels whose gate is exactly 0.

The gate sits on the *input* side of the next convolution (its consumer), so it is multiplied
along the consumer's input-channel axis: dim 1 of ``Conv2d.weight`` ``(out, in, kH, kW)`` but
dim 0 of ``ConvTranspose2d.weight`` ``(in, out, kH, kW)``. Removing a channel likewise slices the
producer's output axis (``Conv2d`` dim 0, ``ConvTranspose2d`` dim 1). Getting these axes the wrong
way round keeps every shape valid for a square layer and silently changes the output; the helpers
below name the axis once, by layer type, and everything goes through them.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from .graph import CONVS, NORMS, SCALE_COMMUTING, Leaf, UnsupportedModelError, check_groups, flatten
from .layers import _PRODUCER_CHAIN, AlphaGate

__all__ = ["shrink", "count", "input_axis", "output_axis"]


def input_axis(conv: nn.Module) -> int:
    """Weight axis that indexes input channels: 1 for Conv2d, 0 for ConvTranspose2d."""
    return 0 if isinstance(conv, nn.ConvTranspose2d) else 1


def output_axis(conv: nn.Module) -> int:
    """Weight axis that indexes output channels: 0 for Conv2d, 1 for ConvTranspose2d."""
    return 1 if isinstance(conv, nn.ConvTranspose2d) else 0


def _broadcast(vector: Tensor, axis: int, ndim: int) -> Tensor:
    shape = [1] * ndim
    shape[axis] = -1
    return vector.view(shape)


def _find_producer(leaves: list[Leaf], g: int) -> tuple[Leaf, list[Leaf]]:
    """The convolution feeding gate ``g`` and the BatchNorms between them."""
    gate = leaves[g]
    norms = []
    for k in range(g - 1, -1, -1):
        module = leaves[k].module
        if isinstance(module, CONVS):
            return leaves[k], norms
        if isinstance(module, NORMS):
            norms.append(leaves[k])
        elif not isinstance(module, _PRODUCER_CHAIN):
            raise UnsupportedModelError(
                f"gate '{gate.name}': '{leaves[k].name}' ({type(module).__name__}) lies between "
                "it and the convolution that produces its channels"
            )
    raise UnsupportedModelError(f"gate '{gate.name}' has no producing convolution before it")


def _find_consumer(leaves: list[Leaf], g: int) -> Leaf:
    """The convolution that consumes the channels of gate ``g``."""
    gate = leaves[g]
    for k in range(g + 1, len(leaves)):
        module = leaves[k].module
        if isinstance(module, CONVS):
            return leaves[k]
        if isinstance(module, AlphaGate):
            raise UnsupportedModelError(
                f"gates '{gate.name}' and '{leaves[k].name}' scale the same channels"
            )
        if not isinstance(module, SCALE_COMMUTING):
            raise UnsupportedModelError(
                f"gate '{gate.name}': '{leaves[k].name}' ({type(module).__name__}) lies between "
                "it and its consumer convolution, so the gate cannot be folded into weights"
            )
    raise UnsupportedModelError(
        f"gate '{gate.name}' has no consumer convolution after it; nothing to fold it into"
    )


def _slice_param(module: nn.Module, name: str, index: Tensor, axis: int) -> None:
    tensor = getattr(module, name)
    if tensor is None:
        return
    sliced = tensor.detach().index_select(axis, index.to(tensor.device)).clone()
    if isinstance(tensor, nn.Parameter):
        setattr(module, name, nn.Parameter(sliced, requires_grad=tensor.requires_grad))
    else:
        setattr(module, name, sliced)


def _cut_outputs(conv: nn.Module, index: Tensor) -> None:
    _slice_param(conv, "weight", index, output_axis(conv))
    _slice_param(conv, "bias", index, 0)
    conv.out_channels = int(index.numel())


def _cut_inputs(conv: nn.Module, index: Tensor) -> None:
    _slice_param(conv, "weight", index, input_axis(conv))
    conv.in_channels = int(index.numel())


def _cut_norm(norm: nn.BatchNorm2d, index: Tensor) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        _slice_param(norm, name, index, 0)
    norm.num_features = int(index.numel())


def _fold_into_consumer(consumer: nn.Module, scale: Tensor) -> None:
    weight = consumer.weight
    factor = _broadcast(
        scale.to(weight.dtype).to(weight.device), input_axis(consumer), weight.dim()
    )
    with torch.no_grad():
        weight.mul_(factor)


def _remove(leaf: Leaf) -> None:
    parent = leaf.parent
    parent._modules = OrderedDict((k, m) for k, m in parent._modules.items() if k != leaf.key)


def shrink(model: nn.Module) -> nn.Module:
    """Return a smaller copy of a gated ``model`` that computes the same function, without gates.

    Each gate is multiplied into its consumer's input-channel weights; every channel whose gate
    is exactly 0 is removed from its producer (weights, bias, BatchNorm statistics) and from its
    consumer. Exact at any α (at α > 0 it folds but removes nothing). ``model`` is not modified.

    Raises:
        UnsupportedModelError: naming the layer, for grouped convolutions, a gate with no producer
            or consumer, or a layer between gate and consumer that does not commute with it.
    """
    new = copy.deepcopy(model)
    leaves = flatten(new, leaf_types=(AlphaGate,))
    plans = []
    for g, leaf in enumerate(leaves):
        if not isinstance(leaf.module, AlphaGate):
            continue
        producer, norms = _find_producer(leaves, g)
        consumer = _find_consumer(leaves, g)
        check_groups(producer)
        check_groups(consumer)
        gate: AlphaGate = leaf.module
        if producer.module.out_channels != gate.num_channels:
            raise UnsupportedModelError(
                f"gate '{leaf.name}' has {gate.num_channels} channels but its producer "
                f"'{producer.name}' has {producer.module.out_channels}"
            )
        plans.append((leaf, producer, norms, consumer))

    for leaf, producer, norms, consumer in plans:
        scale = leaf.module.scale().detach()
        _fold_into_consumer(consumer.module, scale)
        alive = torch.nonzero(scale != 0).flatten()
        if alive.numel() == 0:
            raise UnsupportedModelError(
                f"gate '{leaf.name}' is 0 on every channel; the layer would vanish"
            )
        if alive.numel() < scale.numel():
            _cut_outputs(producer.module, alive)
            for norm in norms:
                _cut_norm(norm.module, alive)
            _cut_inputs(consumer.module, alive)
        _remove(leaf)
    return new


def count(model: nn.Module, input_size: Sequence[int] = (1, 3, 128, 128)) -> dict[str, int]:
    """Parameters and forward FLOPs of ``model`` for one input of ``input_size``.

    FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts as 2;
    a stride-2 ``ConvTranspose2d`` is counted per input pixel). Gate multiplications are
    elementwise and not counted.
    """
    params = sum(p.numel() for p in model.parameters())
    try:
        first = next(model.parameters())
        device, dtype = first.device, first.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.get_default_dtype()
    x = torch.zeros(*input_size, device=device, dtype=dtype)
    # Restore each module's own mode: ``model.train(flag)`` would also flip, e.g., BatchNorms
    # that a training loop deliberately keeps in eval mode.
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for module, training in modes:
            module.training = training
    return {"params": int(params), "flops": int(counter.get_total_flops())}
