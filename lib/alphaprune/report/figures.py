"""Figures, tables and HTML pieces of the weekly report notebooks (thin notebooks, logic here).

Stage notebooks call :func:`enter` (make and enter the report folder), plot with the ``plot_*``
functions and save with :func:`save_figure` / :func:`save_table` into ``figures/*.png`` and
``tables/*.csv``. The report notebook assembles them with a :class:`ReportBuilder`, which numbers
figures and tables and renders captions; all text uses Unicode (α), so no MathJax is needed.
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "enter",
    "save_figure",
    "save_table",
    "plot_training",
    "plot_reconstruction",
    "plot_benchmark",
    "plot_weight_ratios_by_run",
    "load_image",
    "alpha_text",
    "channel_table",
    "ReportBuilder",
    "weights_table",
    "weight_ranges",
    "reconstruction_panels",
    "shrink_check",
    "count_table",
    "plot_channels",
    "gpu_results",
    "benchmark_table",
    "keep_together",
    "caption_html",
]


def enter(out_dir: str | Path) -> Path:
    """Create ``out_dir`` (with ``figures/`` and ``tables/``), make it the cwd, return it.

    Every path a report notebook uses (``runs/…``, ``figures/…``) is relative to this folder, so
    a notebook behaves the same under papermill (cwd = report folder, ``out_dir="."``) and in
    JupyterLab (cwd = ``notebooks/``, ``out_dir="../reports/interactive"``).
    """
    folder = Path(out_dir).expanduser()
    for sub in ("figures", "tables"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    os.chdir(folder)
    return Path.cwd()


def save_figure(fig, name: str, dpi: int = 150) -> Path:
    """Save ``fig`` as ``figures/<name>.png`` (tight bounding box); returns the path."""
    path = Path("figures") / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white")
    return path


def save_table(df: pd.DataFrame, name: str) -> Path:
    """Save ``df`` as ``tables/<name>.csv`` (no index); returns the path."""
    path = Path("tables") / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def channel_table(before, after) -> pd.DataFrame:
    """Output channels of every convolution/linear layer of ``before`` and of the same layer in
    ``after`` (None where ``after`` has no such layer)."""
    from alphaprune.core.layer_rules import MixingRule, rule_for

    def channels(model) -> dict[str, int]:
        return {
            n: rule.out_channels(m)
            for n, m in model.named_modules()
            if isinstance(rule := rule_for(m), MixingRule)
        }

    old, new = channels(before), channels(after)
    return pd.DataFrame(
        {
            "layer": list(old),
            "channels_before": list(old.values()),
            "channels_after": [new.get(name) for name in old],
            "keep": [
                round(new[name] / count, 3) if new.get(name) else None
                for name, count in old.items()
            ],
        }
    )


def alpha_text(alpha: float | None) -> str:
    """``α = 0.1`` for a gated model, ``no gates`` for the original (None)."""
    if alpha is None or (isinstance(alpha, float) and math.isnan(alpha)):
        return "no gates"
    return f"α = {float(alpha):g}"


def plot_training(metrics: Mapping[str, pd.DataFrame], labels: Mapping[str, str] | None = None):
    """Validation loss (log scale) and α per epoch of each run, side by side; returns the Figure.

    ``metrics``: run name -> the run's metrics table (``epoch``, ``alpha``, ``val_loss``, …).
    Runs without α (the baseline) appear only in the loss panel. The loss axis stops at 30 times
    the median of the runs' lowest losses, so that one diverged run does not hide the others
    (its legend entry says how high it went).
    """
    import matplotlib.pyplot as plt

    labels = labels or {}
    fig, (ax_loss, ax_alpha) = plt.subplots(1, 2, figsize=(9.5, 2.8))
    lowest = [f["val_loss"].min() for f in metrics.values() if not f.empty]
    top = 30 * float(pd.Series(lowest).median()) if lowest else None  # a diverged run is clipped
    for name, frame in metrics.items():
        if frame.empty:
            continue
        label = labels.get(name, name)
        if top is not None and frame["val_loss"].max() > top:
            label += f" (up to {frame['val_loss'].max():.2g}, clipped)"
        (line,) = ax_loss.plot(frame["epoch"], frame["val_loss"], marker="o", ms=3, label=label)
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
        ncols=3,
        frameon=False,
        bbox_to_anchor=(0.5, 0.0),
        fontsize=8,
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


class ReportBuilder:
    """HTML pieces of the report with automatic figure and table numbers.

    Each method returns an ``IPython.display.HTML`` object (display it, or let it be the cell's
    value); :meth:`markdown` returns ``IPython.display.Markdown``. Images are embedded as base64
    PNG, so the exported HTML is self-contained.
    """

    def __init__(self) -> None:
        self.figures = 0
        self.tables = 0

    @staticmethod
    def _html(text: str):
        from IPython.display import HTML

        return HTML(text)

    def title(self, title: str, byline: str = ""):
        """The report's title (``<h1>``) and an optional byline (author, date)."""
        text = f"<h1>{html.escape(title)}</h1>"
        if byline:
            text += f'<p class="report-byline">{html.escape(byline)}</p>'
        return self._html(text)

    def section(self, title: str, level: int = 2):
        """A section heading (``<h2>`` by default)."""
        return self._html(f"<h{level}>{html.escape(title)}</h{level}>")

    @staticmethod
    def markdown(text: str):
        """Prose in Markdown (from the params file); empty text shows nothing. ``α = 0`` never
        breaks across lines."""
        from IPython.display import Markdown

        return Markdown(
            re.sub(r"α[ \t]*\n?[ \t]*=[ \t]*\n?[ \t]*(?=[-+]?\d)", "α\u00a0=\u00a0", text or "")
        )

    def group(self, *parts):
        """Several pieces (HTML or Markdown objects) as one block that a page break avoids
        splitting, e.g. a heading, its prose and its figure."""
        from nbconvert.filters.markdown_mistune import markdown2html_mistune

        pieces = []
        for part in parts:
            if part is None:
                continue
            if type(part).__name__ == "Markdown":
                pieces.append(markdown2html_mistune(part.data or ""))
            else:
                pieces.append(part.data if hasattr(part, "data") else str(part))
        return self._html('<div class="report-keep">' + "".join(pieces) + "</div>")

    def figure(self, path: str | Path, caption: str, width: str = "100%"):
        """``<figure>`` with the PNG at ``path`` embedded and "Figure N. caption" under it."""
        self.figures += 1
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        return self._html(
            f'<figure class="report-figure" id="figure-{self.figures}">'
            f'<img src="data:image/png;base64,{data}" style="width:{width}" '
            f'alt="Figure {self.figures}"/>'
            f"<figcaption><b>Figure {self.figures}.</b> {caption_html(caption)}</figcaption>"
            "</figure>"
        )

    def table(
        self,
        df: pd.DataFrame,
        caption: str,
        formats: Mapping[str, str] | None = None,
        columns: Mapping[str, str] | None = None,
        compact: bool = False,
    ):
        """A booktabs-style table with "Table N. caption" above it.

        ``formats``: column -> format spec (``".3g"``); ``columns``: column -> header shown
        (only those columns, in that order, when given); ``compact``: smaller type and padding,
        for a table with many columns (Table 1) to fit the page's width.
        """
        self.tables += 1
        frame = df.copy()
        for column, spec in (formats or {}).items():
            if column in frame:
                frame[column] = frame[column].map(lambda v, s=spec: _fmt(v, s))
        if columns:
            frame = frame[[c for c in columns if c in frame]].rename(columns=dict(columns))
        frame = frame.map(lambda v: keep_together(v) if isinstance(v, str) else v)
        classes = ["report-table", "report-compact"] if compact else "report-table"
        body = frame.to_html(index=False, border=0, classes=classes, na_rep="—", escape=True)
        caption_tag = (
            f'<caption style="caption-side: top"><b>Table {self.tables}.</b> '
            f"{caption_html(caption)}</caption>"
        )
        body = body.replace(">\n  <thead>", ">\n" + caption_tag + "\n  <thead>", 1)
        return self._html(body)


#: Numbers (with exponent, unit-like suffixes, ×) that a line must not break inside.
_NUMBER = re.compile(r"[-+]?\d[\d.,]*(?:[eE][-+]?\d+)?(?:\s?(?:×|x)\s?\d+)?(?:\s?(?:dB|%|ms|px))?")
_GLUE = re.compile(r"[ \t]*([=≤≥<>])[ \t]*|[ \t]+(→)")


def keep_together(text: str) -> str:
    """``text`` with non-breaking spaces where a line must not break: around ``=``, before
    ``→`` (a line may break after it) and after a short word before a number (``α = 0``, ``lr 0.01``, ``rate 0.3``)."""
    text = _GLUE.sub(lambda m: f"\u00a0{m.group(1)}\u00a0" if m.group(1) else "\u00a0→", text)
    return re.sub(r"\b(\w{1,5}) (?=[-+]?\d)", "\\1\u00a0", text)


def caption_html(caption: str) -> str:
    """Escaped caption text whose numbers (``3e-07``, ``128×128``, ``25.07 dB``) never break."""
    out, last = [], 0
    for match in _NUMBER.finditer(caption):
        out.append(html.escape(caption[last : match.start()]))
        out.append(f'<span class="nobreak">{html.escape(match.group(0))}</span>')
        last = match.end()
    out.append(html.escape(caption[last:]))
    return "".join(out)


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def load_image(name: str, size: int, source: str = "bundled"):
    """Image ``name`` of ``source``, centre-cropped to a square and resized to ``size`` pixels,
    as a ``(3, size, size)`` tensor in [0, 1]."""
    import numpy as np
    from PIL import Image

    from alphaprune.engine.data import load_images, to_tensor

    images = load_images(source)
    if name not in images:
        raise KeyError(f"image '{name}' not found in {source!r}; available: {', '.join(images)}")
    array = images[name]
    height, width = array.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(array[top : top + side, left : left + side])
    resized = square.resize((size, size), Image.Resampling.LANCZOS)
    return to_tensor(np.asarray(resized, dtype=np.uint8).copy())


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
    fig, ax = plt.subplots(figsize=(max(5.5, 0.9 * len(layers) + 2.5), 3.3))
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
        fontsize=8,
        ncols=min(len(runs), 4),
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
    )
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# the stage notebooks' steps (kept here so that the notebooks stay short)
# ---------------------------------------------------------------------------------------------


def weights_table(results: Mapping[str, Any], experiments: Sequence[Any]) -> pd.DataFrame:
    """Kept weights of each experiment's final model against the original (``baseline``), one
    :func:`alphaprune.report.weights.weight_comparison` block per run; runs that start from a shrunk
    model (other shapes) are left out, with a printed note."""
    from alphaprune.engine.checkpoint import load_model
    from alphaprune.report.weights import weight_comparison

    base = results["baseline"]
    # built by the week's own factory (the runs' configs), never one a checkpoint names
    original = load_model(base.checkpoint, verbose=False, factory=base.config.model.factory)
    frames = []
    for experiment in experiments:
        if experiment.start.shrink:
            print(
                f"{experiment.name}: starts from a shrunk model; not comparable channel by channel"
            )
            continue
        result = results[experiment.name]
        pruned = load_model(result.checkpoint, verbose=False, factory=result.config.model.factory)
        frames.append(weight_comparison(pruned, original).assign(run=experiment.name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def weight_ranges(weights: pd.DataFrame) -> pd.DataFrame:
    """Per run of a :func:`weights_table`: how many layers, and the smallest and largest L2-norm
    ratio of the kept weights to the original's, with their layers (the table of section 1.1 and
    the ``weights.*`` values of the notes)."""
    columns = ["run", "layers", "min_ratio", "min_layer", "max_ratio", "max_layer"]
    if weights.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for run, frame in weights.groupby("run", sort=False):
        ratios = pd.to_numeric(frame["l2_ratio"], errors="coerce").dropna()
        if ratios.empty:
            rows.append({"run": run, "layers": len(frame)})
            continue
        low, high = ratios.idxmin(), ratios.idxmax()
        rows.append(
            {
                "run": run,
                "layers": len(frame),
                "min_ratio": float(ratios[low]),
                "min_layer": frame.loc[low, "layer"],
                "max_ratio": float(ratios[high]),
                "max_layer": frame.loc[high, "layer"],
            }
        )
    return pd.DataFrame(rows, columns=columns)


def reconstruction_panels(
    models: Sequence[tuple[str, str, Any, str, float | None, str]], image, name: str
) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """Panels of :func:`plot_reconstruction` and their table for ``image`` ((3, H, W)).

    ``models``: ``(panel, title, model, checkpoint, alpha, run)`` for (b), (c), (d), …; panel (a)
    is the image itself. PSNR/SSIM are of this one image.
    """
    from alphaprune.engine.evaluate import evaluate, reconstruct

    x = image.unsqueeze(0)
    side = f"{image.shape[-1]}×{image.shape[-2]}"
    panels = [{"title": f"(a) original image ({name})", "image": image}]
    rows = [
        {
            "panel": "a",
            "model": "image",
            "run": name,
            "checkpoint": "",
            "alpha": None,
            "psnr": None,
            "ssim": None,
            "params": None,
            "input": f"{name}, {side}",
        }
    ]
    for panel, title, model, checkpoint, alpha, run in models:
        scores = evaluate(model, x)
        panels.append({"title": f"({panel}) {title}", "image": reconstruct(model, x)[0], **scores})
        rows.append(
            {
                "panel": panel,
                "model": title,
                "run": run,
                "checkpoint": checkpoint,
                "alpha": alpha,
                "psnr": scores["psnr"],
                "ssim": scores["ssim"],
                "params": sum(p.numel() for p in model.parameters()),
                "input": f"{name}, {side}",
            }
        )
    return panels, pd.DataFrame(rows)


def shrink_check(
    gated, small, image_size: int, tolerance: float, alpha: float | None = None
) -> pd.DataFrame:
    """Largest |gated − shrunk| output difference on 4 random images (seed 0), relative to the
    size of the gated model's outputs (``output_scale``, at least 1), and whether it is within
    ``tolerance``; one row. Float rounding grows with the outputs, so an absolute tolerance
    would blame the shrinking for a model whose outputs are huge; non-finite outputs are an
    error naming the model, not the shrinking. ``alpha`` (the gated checkpoint's stored α,
    ``LoadedModel.alpha``) is recorded in the row."""
    import torch

    x = torch.rand(4, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference, output = gated(x), small(x)
    if not bool(torch.isfinite(reference).all()):
        raise ValueError(
            "the gated model's outputs are not finite (inf/NaN) on random images: the model "
            "itself is broken (diverged weights?), so shrinking cannot be checked"
        )
    scale = float(reference.abs().max())
    diff = float((reference - output).abs().max())
    return pd.DataFrame(
        [
            {
                "alpha": alpha,
                "image_size": image_size,
                "max_abs_diff": diff,
                "output_scale": scale,
                "relative_diff": diff / max(scale, 1.0),
                "tolerance": tolerance,
                "passed": diff <= tolerance * max(scale, 1.0),
            }
        ]
    )


def count_table(models: Mapping[str, Any], image_size: int) -> pd.DataFrame:
    """Parameters and FLOPs (one image) of each model, and their ratios to the first."""
    from alphaprune.core.shrink import count

    size = (1, 3, image_size, image_size)
    counts = pd.DataFrame([{"model": name, **count(model, size)} for name, model in models.items()])
    counts["params_ratio"] = counts["params"] / counts.loc[0, "params"]
    counts["flops_ratio"] = counts["flops"] / counts.loc[0, "flops"]
    counts["image_size"] = image_size
    return counts


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


def gpu_results(path: str | Path) -> pd.DataFrame:
    """Measured GPU results from a CSV of ``benchmarks/gpu_check.sh`` (``shrink_speed.py``), with
    ``source`` (the file name), ``device_name`` and ``measured_at`` (``"date not recorded"`` for
    CSVs written before the column existed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"gpu.results_csv: {path} does not exist (copy the CSV that benchmarks/gpu_check.sh "
            "wrote on the GPU machine, e.g. reports/gpu/shrink_speed_relu3_1.csv)"
        )
    table = pd.read_csv(path)
    missing = {"model", "latency_ms_median", "device_name"} - set(table.columns)
    if missing:
        raise ValueError(f"gpu.results_csv: {path} lacks the columns {sorted(missing)}")
    if "measured_at" not in table:
        table["measured_at"] = "date not recorded"
    table.insert(0, "source", path.name)
    return table


def benchmark_table(models: Mapping[str, Any], settings: Any, alpha: float | None) -> pd.DataFrame:
    """Time per batch of ``models`` (original, masked, shrunk) with the ``gpu`` settings of a
    params file (:class:`alphaprune.report.params.GpuParams`), labelled with the device.

    On a GPU, each model is timed for at least ``settings.gpu_seconds`` (more batches than
    ``settings.repeats`` when needed) so that NVML's utilisation counter gets sampled.
    """
    import torch

    from alphaprune.bench import benchmark, device_name

    device = settings.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    kind = "GPU" if device.startswith("cuda") else "CPU"
    label = f"{kind}: {device_name(device)}"
    print(f"measuring on {label}")
    common = dict(
        batch_size=settings.batch_size,
        image_size=settings.image_size,
        device=device,
        warmup=settings.warmup,
        progress=False,
    )
    repeats = settings.repeats
    if kind == "GPU":
        probe = benchmark(models, repeats=5, **common)
        needed = math.ceil(settings.gpu_seconds * 1000 / probe["latency_ms_median"].min())
        repeats = max(repeats, min(needed, 100_000))
    table = benchmark(models, repeats=repeats, **common)
    table.insert(1, "alpha", [None if name == "original" else alpha for name in table["model"]])
    table["device_kind"] = kind
    table["device_label"] = label
    return table
