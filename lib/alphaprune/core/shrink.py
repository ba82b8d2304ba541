"""Fold α gates into the weights and cut out the channels that no layer reads any more.

Each gate scales its layer's weight along the input axis (:mod:`alphaprune.core.layer_rules` owns
the axes), so folding it is ``weight *= scale`` — exact at any α. A pruning unit whose every
reader has scale 0 carries nothing to the output: it is removed from every producer, norm and
consumer of its group (found by :func:`alphaprune.core.graph.analyze`). The result is checked against
the gated model on the example input; any mismatch is an :class:`UnsupportedModelError`, never a
silently different model.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from alphaprune.core.gated_layers import AlphaGate, ungate_layer
from alphaprune.core.gates import gates
from alphaprune.core.graph import ChannelGraph, UnsupportedModelError, analyze
from alphaprune.core.layer_rules import input_axis, output_axis
from alphaprune.core.modes import eval_mode

__all__ = ["shrink", "count", "dead_units", "input_axis", "output_axis"]


def dead_units(graph: ChannelGraph) -> set[int]:
    """Units that every consumer reads with scale 0 (and that are not pinned)."""
    alive: dict[int, bool] = {}
    for layer in graph.consumers():
        units = graph.units(layer.in_vars)
        if isinstance(layer.module, AlphaGate):
            nonzero = (layer.module.scale() != 0).tolist()
        else:
            nonzero = [True] * len(units)
        for unit, read in zip(units, nonzero, strict=True):
            alive[unit] = alive.get(unit, False) or read
    return {u for u, read in alive.items() if not read and u not in graph.pinned}


def _tensors(out: object) -> list[Tensor]:
    """The tensors of a model output, in order (tuples, lists, dicts, ``ModelOutput``s)."""
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for value in out.values() for t in _tensors(value)]
    if isinstance(out, (list, tuple)):
        return [t for value in out for t in _tensors(value)]
    return []


def _outputs(model: nn.Module, inputs: tuple[Tensor, ...]) -> list[Tensor]:
    with eval_mode(model), torch.no_grad():
        out = model(*[t.clone() for t in inputs])
    return _tensors(out)


def _verify(reference: object, small: nn.Module, inputs: tuple[Tensor, ...]) -> None:
    """``small`` must give ``reference`` (the gated model's output, eval mode) on ``inputs``."""
    expected = _tensors(reference)
    try:
        result = _outputs(small, inputs)
    except Exception as exc:
        raise UnsupportedModelError(
            f"the shrunk model fails on the example input ({type(exc).__name__}: {exc}); "
            "its forward probably uses a fixed channel count (e.g. view(-1, 512))"
        ) from None
    if len(result) != len(expected):
        raise UnsupportedModelError(
            f"the shrunk model returns {len(result)} tensors, the gated model {len(expected)}"
        )
    for ref, got in zip(expected, result, strict=True):
        if ref.shape != got.shape:
            raise UnsupportedModelError(
                f"the shrunk model's output has shape {tuple(got.shape)}, the gated model's "
                f"{tuple(ref.shape)}"
            )
        if not bool(torch.isfinite(ref).all()):
            raise UnsupportedModelError(
                "the gated model's own output is not finite (inf/NaN) on the example input, so "
                "the shrunk model cannot be checked against it: the model or its weights are "
                "broken (a diverged run?), not the shrinking"
            )
        scale = float(ref.abs().max()) if ref.numel() else 0.0
        diff = float((ref - got).abs().max()) if ref.numel() else 0.0
        if not diff <= 1e-4 * scale + 1e-6:
            raise UnsupportedModelError(
                f"the shrunk model differs from the gated model by {diff:.3g} (output scale "
                f"{scale:.3g}): a channel mapping in this model is not understood"
            )


def _structure_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers are still ``model``'s own (shrink
    replaces the ones it cuts; :func:`_own_tensors` copies the rest)."""
    memo: dict[int, object] = {}
    for tensor in list(model.parameters()) + list(model.buffers()):
        memo[id(tensor)] = tensor
    return copy.deepcopy(model, memo)


def _own_tensors(new: nn.Module, old: nn.Module) -> None:
    """Give ``new`` its own copy of every tensor it still shares with ``old`` (ties kept)."""
    shared = {id(t) for t in list(old.parameters()) + list(old.buffers())}
    copies: dict[int, Tensor] = {}
    for module in new.modules():
        for store in (module._parameters, module._buffers):
            for name, tensor in store.items():
                if tensor is None or id(tensor) not in shared:
                    continue
                if id(tensor) not in copies:
                    data = tensor.detach().clone()
                    copies[id(tensor)] = (
                        nn.Parameter(data, requires_grad=tensor.requires_grad)
                        if isinstance(tensor, nn.Parameter)
                        else data
                    )
                store[name] = copies[id(tensor)]


def _cut(graph: ChannelGraph, masks: dict[str, tuple[Tensor, Tensor]]) -> None:
    for name, layer in graph.layers.items():
        keep_in, keep_out = masks[name]
        if keep_out.numel() and not keep_out.any():
            raise UnsupportedModelError(f"every output channel of '{name}' is gated to 0")
        if keep_in.all() and keep_out.all():
            continue
        try:
            layer.rule.cut(layer.module, keep_in, keep_out)
        except ValueError as exc:
            raise UnsupportedModelError(f"cannot cut channels of '{name}': {exc}") from None


def shrink(
    model: nn.Module,
    example_inputs: Tensor | Sequence[Tensor] | None = None,
    verify: bool = True,
) -> nn.Module:
    """Return a smaller copy of a gated ``model`` that computes the same function, without gates.

    Every gate is multiplied into its layer's weights; every unit of channels that all its
    readers scale by exactly 0 is removed from its producers (weights, bias), norms and
    consumers. Exact at any α (at 0 < α < 1 it folds but removes nothing); a model without
    gates comes back as a plain copy. ``model`` is not modified. With ``verify`` the result is
    compared with ``model`` on the example input.

    Raises:
        UnsupportedModelError: for a model that cannot be traced, or whose shrunk copy would not
            compute the same function.
    """
    if not gates(model):
        return copy.deepcopy(model)  # nothing gated: the same function already
    new = _structure_copy(model)
    graph = analyze(new, example_inputs)
    dead = dead_units(graph)
    masks = graph.keep_masks(dead)
    for name, gate in gates(new).items():
        ungate_layer(gate, keep=masks[name][0] if name in masks else None)
    _cut(graph, masks)
    _own_tensors(new, model)
    if verify:
        _verify(graph.example_output, new, graph.example_inputs)
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
    with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return {"params": int(params), "flops": int(counter.get_total_flops())}
