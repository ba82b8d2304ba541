"""Weight analysis (pruned against original) and image-quality metrics (PSNR, SSIM)."""

from __future__ import annotations

import math

import pandas as pd
import torch
from pytorch_msssim import ssim as _ms_ssim
from torch import Tensor, nn

from .graph import analyze
from .layer_rules import MixingRule, rule_for
from .layers import AlphaGate, gated_units, gates

__all__ = ["psnr", "ssim", "weight_comparison", "plot_weight_ratios"]


def psnr(output: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-image PSNR in dB of ``(N, C, H, W)`` batches (inputs clamped to [0, data_range])."""
    output = output.clamp(0, data_range)
    mse = (output - target).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-12))


def ssim(output: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-image SSIM (``pytorch_msssim``, Gaussian window shrunk for small crops)."""
    size = min(11, output.shape[-1], output.shape[-2])
    size = size if size % 2 == 1 else size - 1
    return _ms_ssim(
        output.clamp(0, data_range).float(), target.float(), data_range=data_range,
        size_average=False, win_size=max(size, 1),
    )  # fmt: skip


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
        rows.append({
            "layer": name,
            "type": (conv.base_type if isinstance(conv, AlphaGate) else type(conv)).__name__,
            "kept_out": int(out_idx.numel()),
            "out_channels": rule.out_channels(conv),
            "l2_pruned": l2_p, "l2_original": l2_o,
            "max_pruned": max_p, "max_original": max_o,
            "mean_pruned": mean_p, "mean_original": mean_o,
            "l2_ratio": l2_p / l2_o if l2_o else math.nan,
            "max_ratio": max_p / max_o if max_o else math.nan,
            "mean_ratio": mean_p / mean_o if mean_o else math.nan,
        })  # fmt: skip
    return pd.DataFrame(rows)


def plot_weight_ratios(df: pd.DataFrame, ax=None, title: str | None = None):
    """Grouped bar chart of the pruned/original ratios per layer; returns the Figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(df) + 2), 3.5))
    else:
        fig = ax.figure
    columns = [("l2_ratio", "L2 norm"), ("max_ratio", "max |w|"), ("mean_ratio", "mean |w|")]
    width = 0.8 / len(columns)
    positions = range(len(df))
    for i, (column, label) in enumerate(columns):
        ax.bar([p + (i - 1) * width for p in positions], df[column], width, label=label)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(list(positions))
    ax.set_xticklabels(df["layer"], rotation=45, ha="right")
    ax.set_ylabel("pruned / original (kept weights)")
    ax.set_title(title or "Kept weights of the pruned model relative to the original")
    ax.legend(frameon=False, ncols=3)
    fig.tight_layout()
    return fig
