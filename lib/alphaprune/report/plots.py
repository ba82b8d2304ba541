"""Every figure of the weekly report: each ``plot_*`` function takes data (tables, panels) and
returns a matplotlib Figure; nothing here reads or writes files (save with
:func:`alphaprune.report.outputs.save_figure`, which names the file from the registry)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

__all__ = [
    "plot_training",
    "plot_reconstruction",
    "plot_benchmark",
    "plot_weight_ratios_by_run",
    "plot_channels",
    "plot_latency_vs_flops",
]


def plot_training(metrics: Mapping[str, pd.DataFrame], labels: Mapping[str, str] | None = None):
    """Validation loss (log scale) and α per epoch of each run, side by side; returns the Figure.

    ``metrics``: run name -> the run's metrics table (``epoch``, ``alpha``, ``val_loss``, …).
    Runs without α (the baseline) appear only in the loss panel. The loss axis stops at 30 times
    the median of the runs' lowest losses, so that one diverged run does not hide the others
    (its legend entry says how high it went).
    """
    import matplotlib.pyplot as plt

    labels = labels or {}
    # 7.2 in wide: printed on A4 at about 0.9 scale, so 9-pt legend text stays readable
    fig, (ax_loss, ax_alpha) = plt.subplots(1, 2, figsize=(7.2, 2.8))
    finite = [
        pd.to_numeric(f["val_loss"], errors="coerce") for f in metrics.values() if not f.empty
    ]
    lowest = [v[v < float("inf")].min() for v in finite if (v < float("inf")).any()]
    top = 30 * float(pd.Series(lowest).median()) if lowest else None  # a diverged run is clipped
    for name, frame in metrics.items():
        if frame.empty:
            continue
        label = labels.get(name, name)
        highest = pd.to_numeric(frame["val_loss"], errors="coerce").max()
        if top is not None and not highest <= top:
            label += f" (up to {highest:.2g}, ▲ above the axis)"
        loss = pd.to_numeric(frame["val_loss"], errors="coerce")
        (line,) = ax_loss.plot(frame["epoch"], loss, marker="o", ms=3, label=label)
        if top is not None:  # points above the axis (or inf) stay visible: a ▲ at its top edge
            off = ~(loss <= top)
            ax_loss.plot(
                frame["epoch"][off],
                [top * 0.92] * int(off.sum()),
                linestyle="none",
                marker="^",
                ms=6,
                color=line.get_color(),
                clip_on=False,
            )
        alpha = pd.to_numeric(frame["alpha"], errors="coerce")
        if alpha.notna().any():
            ax_alpha.plot(frame["epoch"], alpha, marker="o", ms=3, color=line.get_color())
    ax_loss.set_yscale("log")
    if top is not None:
        ax_loss.set_ylim(top=top)
    ax_loss.set_xlabel("epoch (of each run)")
    ax_loss.set_ylabel("validation loss (MSE)")
    ax_loss.set_title("(a) validation loss")
    ax_alpha.set_xlabel("epoch (of each run)")
    ax_alpha.set_ylabel("α")
    ax_alpha.set_ylim(-0.05, 1.05)
    ax_alpha.set_title("(b) α of the pruned channels")
    for ax in (ax_loss, ax_alpha):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.legend(
        *ax_loss.get_legend_handles_labels(),
        loc="upper center",
        ncols=2,
        frameon=False,
        bbox_to_anchor=(0.5, 0.0),
        fontsize=9,
    )
    return fig


def plot_reconstruction(panels: Sequence[Mapping[str, Any]]):
    """One row of image panels; each panel: ``title``, ``image`` ((3, H, W) tensor in [0, 1]) and
    optionally ``psnr``/``ssim``, written under it. Returns the Figure."""
    import matplotlib.pyplot as plt

    from alphaprune.engine.data import to_image

    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.2), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        ax.imshow(to_image(panel["image"]))
        ax.set_title(panel["title"], fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if panel.get("psnr") is not None:
            ax.set_xlabel(f"PSNR {panel['psnr']:.2f} dB\nSSIM {panel['ssim']:.3f}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_benchmark(table: pd.DataFrame, device_label: str):
    """Per-batch time (and GPU utilisation when measured) of each model; returns the Figure."""
    import matplotlib.pyplot as plt

    util = "gpu_util_pct_mean" in table and table["gpu_util_pct_mean"].notna().any()
    fig, axes = plt.subplots(
        1, 2 if util else 1, figsize=(8.5 if util else 4.8, 3.2), squeeze=False
    )
    ax = axes[0][0]
    err = [
        table["latency_ms_median"] - table["latency_ms_p10"],
        table["latency_ms_p90"] - table["latency_ms_median"],
    ]
    ax.bar(table["model"], table["latency_ms_median"], yerr=err, capsize=3, color="#4c72b0")
    ax.set_ylabel("time per batch (ms)")
    ax.set_title(f"time per batch ({device_label})", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    if util:
        ax = axes[0][1]
        ax.bar(table["model"], table["gpu_util_pct_mean"], color="#dd8452")
        ax.set_ylabel("GPU utilisation (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"GPU utilisation ({device_label})", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_weight_ratios_by_run(
    table: pd.DataFrame, column: str = "l2_ratio", labels: Mapping[str, str] | None = None
):
    """Bars of ``column`` (pruned / original, kept weights) per layer, one colour per run.

    ``table`` is :func:`alphaprune.report.weights.weight_comparison` rows with a ``run`` column.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    labels = labels or {}
    runs = list(dict.fromkeys(table["run"]))
    layers = list(dict.fromkeys(table["layer"]))
    # at most 7.5 in wide (printed near full size), the labels smaller only for many layers
    fig, ax = plt.subplots(figsize=(min(7.5, max(5.5, 0.6 * len(layers) + 2.5)), 3.3))
    width = 0.8 / max(len(runs), 1)
    x = np.arange(len(layers))
    for i, run in enumerate(runs):
        rows = table[table["run"] == run].set_index("layer").reindex(layers)
        offset = (i - (len(runs) - 1) / 2) * width
        ax.bar(x + offset, rows[column], width, label=labels.get(run, run))
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    values = pd.to_numeric(table[column], errors="coerce")
    values = values[values > 0]
    if len(values) and (values.max() > 5 or values.min() < 0.2):  # a diverged run: log scale
        ax.set_yscale("log")
        ax.set_ylabel(f"{column.replace('_ratio', '')} pruned / original (log scale)")
    else:
        ax.set_ylabel(f"{column.replace('_ratio', '')} pruned / original")
    ax.set_xticks(x)
    ax.set_xticklabels(layers, rotation=30, ha="right")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(
        frameon=False,
        fontsize=9,
        ncols=min(len(runs), 3),
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
    )
    fig.tight_layout()
    return fig


def plot_channels(layers: pd.DataFrame):
    """Bars of the output channels per convolution, original against shrunk; returns the Figure."""
    ax = layers.plot.bar(x="layer", y=["channels_before", "channels_after"], figsize=(6, 3), rot=30)
    ax.set_ylabel("output channels")
    ax.legend(["original", "shrunk"], frameon=False)
    if "keep" in layers:  # the kept fraction of each layer, over its shrunk bar
        for bar, keep in zip(ax.containers[1], layers["keep"], strict=True):
            if keep is not None and keep == keep:
                ax.annotate(
                    f"{keep:.2f}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=6,
                )
    ax.figure.tight_layout()
    return ax.figure


def plot_latency_vs_flops(bench: pd.DataFrame, record: dict[str, Any], device_label: str):
    """Measured latency ratio against FLOPs ratio of every model in the addendum's benchmark,
    the budget's target and (for a latency budget) its predicted and measured ratios."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    ax.plot([0, 1.05], [0, 1.05], color="0.75", lw=1, ls="--", label="latency ∝ FLOPs")
    for _, row in bench.iterrows():
        ax.scatter(row["flops_ratio"], row["latency_ratio"], s=36, zorder=3)
        ax.annotate(
            row["model"],
            (row["flops_ratio"], row["latency_ratio"]),
            fontsize=7,
            xytext=(4, 3),
            textcoords="offset points",
        )
    target = record["target"]
    ax.axhline(target, color="#c44e52", lw=1, label=f"{record['kind']} budget {target:g}")
    shrunk_flops = float(bench.set_index("model").loc["shrunk", "flops_ratio"])
    if record["kind"] == "latency":
        ax.scatter(
            shrunk_flops,
            record["predicted"],
            marker="x",
            color="k",
            zorder=4,
            label="predicted when pruning",
        )
        measured = record.get("measured")
        if measured is not None and math.isfinite(measured):
            ax.scatter(
                shrunk_flops,
                measured,
                marker="+",
                s=60,
                color="#c44e52",
                zorder=4,
                label="measured when pruning",
            )
    ax.set_xlim(0, 1.05)
    ax.set_ylim(0, max(1.15, float(bench["latency_ratio"].max()) + 0.12))
    ax.set_xlabel("FLOPs ratio (model / original)")
    ax.set_ylabel("latency ratio (model / original in torch)")
    ax.set_title(f"latency vs FLOPs ({device_label})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    fig.tight_layout()
    return fig
