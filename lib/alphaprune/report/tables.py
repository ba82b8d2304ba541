"""The tables the stage notebooks compute (each a ``pandas.DataFrame``; save it with
:func:`alphaprune.report.outputs.save_table`): channels, kept weights, parameters and FLOPs,
the shrink check, the reconstruction panels (and the image they show), the benchmark and
measured GPU results from another machine."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "channel_table",
    "weights_table",
    "weight_ranges",
    "count_table",
    "shrink_check",
    "reconstruction_panels",
    "load_image",
    "gpu_results",
    "benchmark_table",
]


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


def count_table(models: Mapping[str, Any], image_size: int) -> pd.DataFrame:
    """Parameters and FLOPs (one image) of each model, and their ratios to the first."""
    from alphaprune.core.shrink import count

    size = (1, 3, image_size, image_size)
    counts = pd.DataFrame([{"model": name, **count(model, size)} for name, model in models.items()])
    counts["params_ratio"] = counts["params"] / counts.loc[0, "params"]
    counts["flops_ratio"] = counts["flops"] / counts.loc[0, "flops"]
    counts["image_size"] = image_size
    return counts


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
