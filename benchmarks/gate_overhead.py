"""Training-step time of the same autoencoder with and without α gates; writes a CSV.

Both models start from the same weights; the gated copy has gates after every prunable
convolution (``--target``) at ``--alpha``. Steps (Adam + MSE) alternate between the two models,
so load on the machine affects both alike. The target is an overhead of at most 5 %.

    .venv/bin/python benchmarks/gate_overhead.py --steps 20
"""

from __future__ import annotations

import argparse
import copy
import sys

import pandas as pd
import torch

from alphaprune import attach_gates, build_autoencoder
from alphaprune.bench import train_step_benchmark, write_csv


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer", default="relu3_1")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128, help="image height = width")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model")
    parser.add_argument("--keep", type=float, default=0.5)
    parser.add_argument("--target", default="both", choices=["encoder", "decoder", "both"])
    parser.add_argument("--alpha", type=float, default=0.5, help="α of the gates while timed")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="reports/bench/gate_overhead.csv", help="CSV path")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    plain = build_autoencoder(args.layer)
    gated = copy.deepcopy(plain)
    found = attach_gates(gated, keep=args.keep, target=args.target, alpha=args.alpha)
    print(f"{len(found)} gates ({args.target}, keep {args.keep}, α {args.alpha}) on {args.layer}")
    table = train_step_benchmark(
        {"no gates": plain, "gates": gated}, batch_size=args.batch, image_size=args.size,
        device=args.device, steps=args.steps, warmup=args.warmup, progress=not args.no_progress,
    )  # fmt: skip
    table.insert(1, "layer", args.layer)
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    overhead = float(table.loc[table["model"] == "gates", "overhead_pct"].iloc[0])
    print(f"gate overhead per training step: {overhead:+.2f} % (target <= 5 %)")
    write_csv(table, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
