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


def _outputs(model: nn.Module, inputs: tuple[Tensor, ...]) -> list[Tensor]:
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            out = model(*[t.clone() for t in inputs])
    finally:
        for module, training in modes:
            module.training = training
    flat = out if isinstance(out, (list, tuple)) else [out]
    return [t for t in flat if isinstance(t, Tensor)]


def _verify(reference: object, small: nn.Module, inputs: tuple[Tensor, ...]) -> None:
    """``small`` must give ``reference`` (the gated model's output, eval mode) on ``inputs``."""
    expected = reference if isinstance(reference, (list, tuple)) else [reference]
    expected = [t for t in expected if isinstance(t, Tensor)]
    try:
        result = _outputs(small, inputs)
    except Exception as exc:
        raise UnsupportedModelError(
            f"the shrunk model fails on the example input ({type(exc).__name__}: {exc}); "
            "its forward probably uses a fixed channel count (e.g. view(-1, 512))"
        ) from None
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


def shrink(
    model: nn.Module,
    example_inputs: Tensor | Sequence[Tensor] | None = None,
    verify: bool = True,
) -> nn.Module:
    """Return a smaller copy of a gated ``model`` that computes the same function, without gates.

    Every gate is multiplied into its layer's weights; every unit of channels that all its
    readers scale by exactly 0 is removed from its producers (weights, bias), norms and
    consumers. Exact at any α (at 0 < α < 1 it folds but removes nothing); a model without
    gates comes back as a plain copy. ``model`` is not modified. With ``verify`` the result is compared with ``model`` on the example input.

    Raises:
        UnsupportedModelError: for a model that cannot be traced, or whose shrunk copy would not
            compute the same function.
    """
    new = copy.deepcopy(model)
    if not gates(model):
        return new  # nothing gated: the same function already
    graph = analyze(new, example_inputs)
    dead = dead_units(graph)
    masks = graph.keep_masks(dead)
    for gate in gates(new).values():
        ungate_layer(gate)
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
