"""Inference speed of original vs masked vs shrunk (vs torch-pruning) autoencoders; writes a CSV.

Masked models (gates at α = 0) keep every tensor full size and should be as fast as the original;
only shrunk models can be faster, ideally in proportion to their FLOPs. For each target, all keep
fractions are timed in one interleaved run (see ``alphaprune.bench.benchmark``).

    .venv/bin/python benchmarks/shrink_speed.py --keeps 0.5 --targets both --repeats 10
    python3 benchmarks/shrink_speed.py --device cuda --batch 32 --size 256 --layer relu5_1
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from alphaprune import build_autoencoder
from alphaprune.bench import compare_pruned, write_csv

SHOWN = [
    "model",
    "keep",
    "target",
    "latency_ms_median",
    "latency_ms_p10",
    "latency_ms_p90",
    "throughput_img_s",
    "latency_ratio",
    "flops_ratio",
    "params",
    "cpu_util_pct",
    "rss_peak_mib",
]
SHOWN_CUDA = [
    "gpu_util_pct_mean",
    "gpu_util_pct_max",
    "gpu_util_samples",
    "torch_peak_alloc_mib",
    "torch_peak_activation_mib",
    "nvml_mem_used_mib",
]


def fractions(text: str) -> list[float]:
    """Parse ``"1.0,0.5"`` into ``[1.0, 0.5]``."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--keeps must be comma-separated numbers: {text!r}"
        ) from None
    if not values or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"--keeps must be fractions in (0, 1]: {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer", default="relu3_1", help="encoder depth (relu1_1 … relu5_1)")
    parser.add_argument("--keeps", type=fractions, default=[1.0, 0.75, 0.5, 0.25])
    parser.add_argument("--targets", default="encoder,both", help="comma-separated targets")
    parser.add_argument("--rows", default="masked,shrunk,torch-pruning")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128, help="image height = width")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20, help="timed batches per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches per model")
    parser.add_argument(
        "--min-block-s", type=float, default=0.25, help="CUDA: seconds per turn of a model"
    )
    parser.add_argument("--sample-interval", type=float, default=0.05, help="sampler period, s")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument(
        "--torch-pruning", choices=["auto", "on", "off"], default="auto", help="peer row"
    )
    parser.add_argument(
        "--cudnn-benchmark",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="let cuDNN pick the fastest algorithm per shape (CUDA only)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--out", default="reports/bench/shrink_speed.csv", help="CSV path")
    parser.add_argument(
        "--samples-out", default=None, help="also write the raw sampler readings (CSV) here"
    )
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def summary(table: pd.DataFrame) -> list[str]:
    """Measured figures against the issue's targets, one line each (no pass/fail asserted)."""
    lines = []
    original = table[table["model"] == "original"].iloc[0]
    for (keep, target), group in table[table["model"] != "original"].groupby(["keep", "target"]):
        by = group.set_index("model")
        where = f"keep={keep:g} target={target}"
        if "shrunk" in by.index:
            s = by.loc["shrunk"]
            lines.append(
                f"{where}: shrunk latency ratio {s.latency_ratio:.3f} vs FLOPs ratio "
                f"{s.flops_ratio:.3f} -> {s.latency_ratio / s.flops_ratio:.2f} x (target <= 1.25)"
            )
        if "masked" in by.index:
            m = by.loc["masked"]
            lines.append(
                f"{where}: masked/original latency {m.latency_ratio:.3f} "
                f"({100 * (m.latency_ratio - 1):+.1f} %, target within +-10 %)"
            )
        if {"shrunk", "torch-pruning"} <= set(by.index):
            ratio = (
                by.loc["shrunk", "latency_ms_median"] / by.loc["torch-pruning", "latency_ms_median"]
            )
            lines.append(
                f"{where}: shrunk/torch-pruning latency {ratio:.3f} "
                f"({100 * (ratio - 1):+.1f} %, target within +-5 %)"
            )
    lines.append(f"original: {original.latency_ms_median:.2f} ms/batch median")
    return lines


def write_samples(tables: list[pd.DataFrame], path: Path) -> None:
    """Raw readings of every run, each with the model running at that time (or empty)."""
    parts = []
    for run, table in enumerate(tables):
        samples = pd.DataFrame(table.attrs["samples"])
        windows = pd.DataFrame(table.attrs["windows"])
        samples["model"] = ""
        for w in windows.itertuples():
            inside = (samples["time_s"] >= w.start_s) & (samples["time_s"] <= w.end_s)
            samples.loc[inside, "model"] = w.model
        samples.insert(0, "target", table["target"].iloc[0])
        samples.insert(0, "run", run)
        parts.append(samples)
    write_csv(pd.concat(parts, ignore_index=True), path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
    tp_mode = {"auto": "auto", "on": True, "off": False}[args.torch_pruning]
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    torch.manual_seed(args.seed)
    original = build_autoencoder(args.layer)
    tables = []
    for target in [t.strip() for t in args.targets.split(",") if t.strip()]:
        print(f"== {args.layer} target={target} keeps={args.keeps} on {args.device}", flush=True)
        tables.append(
            compare_pruned(
                original,
                keep=args.keeps,
                target=target,
                torch_pruning=tp_mode,
                rows=rows,
                batch_size=args.batch,
                image_size=args.size,
                device=args.device,
                repeats=args.repeats,
                warmup=args.warmup,
                progress=not args.no_progress,
            )
        )
    if args.samples_out:
        write_samples(tables, Path(args.samples_out))
    table = pd.concat(tables, ignore_index=True)
    table.insert(1, "layer", args.layer)
    # when, so that a report that shows these results (gpu.results_csv) can say so
    table["measured_at"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    shown = SHOWN + (SHOWN_CUDA if args.device.startswith("cuda") else [])
    first = table.iloc[0]
    print(
        f"\n{first.device_name} | torch {first.torch_version} | threads {first.threads} | "
        f"batch {first.batch_size} | {first.image_size}x{first.image_size} | "
        f"{first.timed_batches} timed batches/model, block {first.block_batches}"
    )
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        print(table[["layer"] + shown].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for _target, part in table.groupby("target", sort=False):
        print("\n".join(summary(part)))
    write_csv(table, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
