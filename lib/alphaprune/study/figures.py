"""A study's figures: every run at the primary budget, the curves over budgets, the baselines'
training curves. Each returns a matplotlib figure; :mod:`alphaprune.study.output` saves them."""

from __future__ import annotations

import math

import numpy as np

from alphaprune.study.analysis import StudyResult

__all__ = ["plot_baselines", "plot_curves", "plot_study"]


def _pct(confidence: float) -> str:
    return f"{confidence:.0%}".replace("%", " %")


def _errorbar(ax, x, mean, low, high, **kwargs) -> None:
    if math.isfinite(low) and math.isfinite(high):
        ax.errorbar(x, mean, yerr=[[mean - low], [high - mean]], capsize=4, **kwargs)
    else:
        ax.plot(x, mean, marker="o", linestyle="none", **kwargs)


def plot_study(result: StudyResult):
    """At the primary budget — left: test PSNR, every (baseline, seed) a dot, mean ± CI per arm
    (dashed: the original, baseline 0); right: the paired difference to the reference per run,
    mean ± CI, the equivalence margin shaded."""
    import matplotlib.pyplot as plt

    spec = result.spec
    runs = result.runs[(result.runs["budget"] == spec.primary) & result.runs["selected"]]
    summary = result.summary[result.summary["budget"] == spec.primary].reset_index(drop=True)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(7.5, 4.2)
    )  # printed near full size: 9-pt text readable
    rng = np.random.default_rng(0)
    for i, row in summary.iterrows():
        part = runs[runs["arm"] == row["arm"]]
        jitter = rng.uniform(-0.12, 0.12, len(part))
        left.scatter(i + jitter, part["test_psnr"], s=16, alpha=0.7, color=f"C{i}")
        _errorbar(left, i + 0.3, row["mean"], row["ci_low"], row["ci_high"], color="black")
        if row["arm"] != spec.reference and math.isfinite(row["diff_mean"]):
            right.scatter(i + jitter, part["diff_to_reference"], s=16, alpha=0.7, color=f"C{i}")
            _errorbar(
                right,
                i + 0.3,
                row["diff_mean"],
                row["diff_ci_low"],
                row["diff_ci_high"],
                color="black",
            )
    original = float(result.baselines["test_psnr"].mean())
    left.axhline(
        original, color="grey", linestyle="--", linewidth=1, label=f"original {original:.2f} dB"
    )
    margin = spec.equivalence_db
    right.axhspan(-margin, margin, color="grey", alpha=0.15, label=f"±{margin:g} dB")
    right.axhline(0.0, color="grey", linestyle=":", linewidth=1)
    for ax in (left, right):
        ax.set_xticks(range(len(summary)))
        ax.set_xticklabels(summary["label"], rotation=20, ha="right", fontsize=9)
    pct = _pct(spec.confidence)
    left.set_ylabel("test PSNR (dB, mean over whole images)")
    left.set_title(f"{spec.primary}: every run a dot; black: mean ± {pct} CI", fontsize=10)
    left.legend(frameon=False, fontsize=9)
    right.set_ylabel("Δ PSNR to the reference (dB, same baseline and seed)")
    right.set_title(f"− {spec.label(spec.reference)}: mean ± {pct} CI", fontsize=10)
    right.legend(frameon=False, fontsize=9)
    fig.tight_layout()
    return fig


def plot_curves(result: StudyResult):
    """Left: test PSNR against the FLOPs ratio of the shrunk model, one line per arm (mean ±
    CI over (baseline, seed)); right: Δ to the reference at every budget, the margin shaded."""
    import matplotlib.pyplot as plt

    spec, summary = result.spec, result.summary
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(7.5, 4.2)
    )  # printed near full size: 9-pt text readable
    order = list(spec.points)
    for i, arm in enumerate(spec.methods):
        part = summary[summary["arm"] == arm]
        if part.empty:
            continue
        part = part.sort_values("flops_ratio")
        color, label = f"C{i % 10}", spec.label(arm)
        left.plot(part["flops_ratio"], part["mean"], marker="o", color=color, label=label)
        left.fill_between(
            part["flops_ratio"], part["ci_low"], part["ci_high"], color=color, alpha=0.12
        )
        if arm == spec.reference:
            continue
        x = [order.index(p) + (i - len(spec.methods) / 2) * 0.04 for p in part["budget"]]
        for xi, (_, row) in zip(x, part.iterrows(), strict=True):
            _errorbar(
                right, xi, row["diff_mean"], row["diff_ci_low"], row["diff_ci_high"], color=color
            )
        right.plot(x, part["diff_mean"], color=color, alpha=0.5)
    original = float(result.baselines["test_psnr"].mean())
    left.axhline(original, color="grey", linestyle="--", linewidth=1, label="original")
    margin = spec.equivalence_db
    right.axhspan(-margin, margin, color="grey", alpha=0.15)
    right.axhline(0.0, color="grey", linestyle=":", linewidth=1)
    right.set_xticks(range(len(order)))
    right.set_xticklabels(order, fontsize=9)
    pct = _pct(spec.confidence)
    left.set_xlabel("FLOPs of the shrunk model / original")
    left.set_ylabel("test PSNR (dB)")
    left.set_title(f"mean ± {pct} CI over (baseline, seed)", fontsize=10)
    left.legend(frameon=False, fontsize=7)
    right.set_xlabel("budget")
    right.set_ylabel(f"Δ PSNR to {spec.label(spec.reference)} (dB)")
    right.set_title(f"paired difference, mean ± {pct} CI; shaded ±{margin:g} dB", fontsize=10)
    fig.tight_layout()
    return fig


def plot_baselines(result: StudyResult):
    """Validation PSNR of every baseline per epoch (is it still improving?)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for base, curve in zip(result.baselines.itertuples(), result.baseline_curves, strict=True):
        state = "plateau" if base.plateau else "still improving"
        ax.plot(
            curve["epoch"],
            curve["val_psnr"],
            marker=".",
            label=f"baseline {base.baseline} ({state})",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation PSNR (dB)")
    ax.set_title("baselines: validation PSNR per epoch", fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
