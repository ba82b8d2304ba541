"""Kept weights of a pruned model against the same channels of its original."""

from __future__ import annotations

import math

import pandas as pd
import torch
from torch import Tensor, nn

from alphaprune.core.gates import AlphaGate, gated_units, gates
from alphaprune.core.graph import analyze
from alphaprune.core.layer_rules import MixingRule, rule_for

__all__ = ["weight_comparison"]


def _kept_channels(model: nn.Module) -> dict[str, tuple[Tensor, Tensor]]:
    """For each mixing layer: (kept output indices, kept input indices) under the gates.

    A channel counts as pruned where the gates scale it (the units they mark, in every layer of
    their group), whatever α is now.
    """
    graph = analyze(model)
    pruned = gated_units(graph)
    kept = {}
    for name, (keep_in, keep_out) in graph.keep_masks(pruned).items():
        if isinstance(graph.layers[name].rule, MixingRule):
            kept[name] = (torch.nonzero(keep_out).flatten(), torch.nonzero(keep_in).flatten())
    return kept


def _stats(weight: Tensor) -> tuple[float, float, float]:
    w = weight.detach().double()
    return float(w.norm()), float(w.abs().max()), float(w.abs().mean())


def weight_comparison(pruned: nn.Module, original: nn.Module) -> pd.DataFrame:
    """Per conv layer: L2 norm, max |w| and mean |w| of the pruned model's kept weights against the
    same channels of the original model, and their ratios (pruned / original).

    ``pruned`` is a gated model (its masks say which channels are kept); the original is the
    ungated model it was pruned from (same layer names and shapes).
    """
    if not gates(pruned):
        raise ValueError("weight_comparison needs the gated model (its gates say what is kept)")
    originals = dict(original.named_modules())
    modules = dict(pruned.named_modules())
    rows = []
    for name, (out_idx, in_idx) in _kept_channels(pruned).items():
        conv = modules[name]
        rule = rule_for(conv)
        if name not in originals or originals[name].weight.shape != conv.weight.shape:
            raise ValueError(f"layer '{name}' is missing or has another shape in the original")
        weights = [conv.weight, originals[name].weight]
        if rule.groups(conv) == 1:
            for axis, index in ((rule.out_axis, out_idx), (rule.in_axis, in_idx)):
                weights = [w.index_select(axis, index) for w in weights]
        (l2_p, max_p, mean_p), (l2_o, max_o, mean_o) = (_stats(w) for w in weights)
        rows.append(
            {
                "layer": name,
                "type": (conv.base_type if isinstance(conv, AlphaGate) else type(conv)).__name__,
                "kept_out": int(out_idx.numel()),
                "out_channels": rule.out_channels(conv),
                "l2_pruned": l2_p,
                "l2_original": l2_o,
                "max_pruned": max_p,
                "max_original": max_o,
                "mean_pruned": mean_p,
                "mean_original": mean_o,
                "l2_ratio": l2_p / l2_o if l2_o else math.nan,
                "max_ratio": max_p / max_o if max_o else math.nan,
                "mean_ratio": mean_p / mean_o if mean_o else math.nan,
            }
        )
    return pd.DataFrame(rows)
