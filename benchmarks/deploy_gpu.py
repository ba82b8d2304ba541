"""Deployment measurements for a GPU (also runnable on the CPU at small sizes); writes CSVs.

``formats``: the original and the shrunk VGG autoencoder (keep 0.5, target both) timed in one
interleaved run for each memory format × precision — contiguous / ``channels_last``, fp32 /
bf16 autocast — with the shrunk/original latency ratio of each. ``latency-budget``:
``attach_gates(budget={"latency": r}, device=…)`` built on the device (table seconds, widths
timed and read from the cache, predicted and measured ratio), then the shrunk model and the
original timed once more, interleaved.

    python3 benchmarks/deploy_gpu.py formats --device cuda --batch 32 --size 256
    python3 benchmarks/deploy_gpu.py latency-budget --device cuda --batch 32 --size 256
    .venv/bin/python benchmarks/deploy_gpu.py formats --device cpu --batch 2 --size 32 --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

import alphaprune as ap
from alphaprune.bench import device_name, write_csv
from alphaprune.core.runtimes import time_rounds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["formats", "latency-budget"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--layer", default="relu3_1")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=256, help="image height = width")
    parser.add_argument("--keep", type=float, default=0.5, help="formats: keep fraction")
    parser.add_argument("--budget", type=float, default=0.5, help="latency-budget: the ratio")
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds per model")
    parser.add_argument("--cache-dir", default=None, help="latency-budget: the table cache")
    parser.add_argument("--out", default="reports/gpu", help="folder for the CSV")
    return parser.parse_args(argv)


def _context(device: torch.device, bf16: bool):
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _time(models: dict[str, nn.Module], x: torch.Tensor, bf16: bool, repeats: int, device):
    """Median ms per batch of each model, interleaved, under bf16 autocast when asked."""

    def preparer(net):
        def call():
            with _context(device, bf16):
                return net(x)

        return lambda: call

    times = time_rounds(
        {name: preparer(net) for name, net in models.items()},
        repeats,
        device=device,
        min_block_ms=20.0,
    )
    return {name: float(pd.Series(values).median()) for name, values in times.items()}


def formats(args: argparse.Namespace) -> pd.DataFrame:
    device = torch.device(args.device)
    torch.manual_seed(0)
    original = ap.build_autoencoder(args.layer).eval()
    gated = copy.deepcopy(original)
    ap.attach_gates(gated, keep=args.keep, target="both", alpha=0.0)
    shrunk = ap.shrink(gated)
    rows = []
    for channels_last in (False, True):
        for bf16 in (False, True):
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            models = {
                "original": copy.deepcopy(original).to(device, memory_format=fmt),
                "shrunk": copy.deepcopy(shrunk).to(device, memory_format=fmt),
            }
            x = torch.randn(args.batch, 3, args.size, args.size, device=device)
            x = x.contiguous(memory_format=fmt)
            ms = _time(models, x, bf16, args.repeats, device)
            rows.append(
                {
                    "channels_last": channels_last,
                    "bf16_autocast": bf16,
                    "original_ms": ms["original"],
                    "shrunk_ms": ms["shrunk"],
                    "latency_ratio": ms["shrunk"] / ms["original"],
                }
            )
            print(rows[-1])
    return pd.DataFrame(rows)


def latency_budget(args: argparse.Namespace) -> pd.DataFrame:
    device = torch.device(args.device)
    torch.manual_seed(0)
    original = ap.build_autoencoder(args.layer).eval()
    example = torch.zeros(args.batch, 3, args.size, args.size)
    rows = []
    for call in ("first", "second"):
        gated = copy.deepcopy(original)
        options = {"progress": False, **({"cache_dir": args.cache_dir} if args.cache_dir else {})}
        began = time.perf_counter()
        plan = ap.attach_gates(
            gated,
            budget={"latency": args.budget},
            target="both",
            alpha=0.0,
            example_inputs=example,
            device=device,
            latency=options,
        )
        seconds = time.perf_counter() - began
        print(plan.budget)
        report = plan.budget
        rows.append(
            {
                "call": call,
                "budget": args.budget,
                "predicted": report.predicted,
                "measured_when_chosen": report.measured,
                "table_s": report.table["seconds"],
                "widths_timed": report.table["timed"],
                "widths_cached": report.table["cached"],
                "attach_gates_s": seconds,
                "candidates": len(report.attempts),
            }
        )
    shrunk = ap.shrink(gated, example_inputs=example)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    models = {"original": copy.deepcopy(original).to(device), "shrunk": shrunk.to(device)}
    ms = _time(models, x, False, args.repeats, device)
    for row in rows:
        row["measured_again"] = ms["shrunk"] / ms["original"]
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("ERROR: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
        return 1
    table = formats(args) if args.what == "formats" else latency_budget(args)
    table.insert(0, "device_name", device_name(device))
    table.insert(1, "layer", args.layer)
    table.insert(2, "batch_size", args.batch)
    table.insert(3, "image_size", args.size)
    table["torch_version"] = torch.__version__
    print(table.to_string(index=False))
    write_csv(table, Path(args.out) / f"deploy_{args.what.replace('-', '_')}.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
