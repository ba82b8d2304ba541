"""Cost of α gates: eval latency and training-step time with and without gates; writes CSVs.

Both models start from the same weights; the gated copy gates every prunable channel group
(``--target``). Gates scale the consumers' weights (channels × kernel work), so the targets are
an eval latency within ±3 % (gates at α = 0, not shrunk) and a training step within +3 %
(gates at ``--alpha``). Models alternate within each measurement, so load on the machine
affects both alike.

    .venv/bin/python benchmarks/gate_overhead.py --steps 20
"""

from __future__ import annotations

import argparse
import copy
import sys

import pandas as pd
import torch

from alphaprune import attach_gates, build_autoencoder, set_alpha
from alphaprune.bench import benchmark, train_step_benchmark, write_csv


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer", default="relu3_1")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128, help="image height = width")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model")
    parser.add_argument("--keep", type=float, default=0.5)
    parser.add_argument("--target", default="all", choices=["encoder", "decoder", "both", "all"])
    parser.add_argument("--alpha", type=float, default=0.5, help="α of the gates while timed")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="reports/bench/gate_overhead.csv", help="CSV path")
    parser.add_argument("--repeats", type=int, default=30, help="timed eval blocks per model")
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
    eval_gated = copy.deepcopy(gated).eval()
    set_alpha(eval_gated, 0.0)
    latency = benchmark(
        {"no gates": plain.eval(), "gates α=0": eval_gated},
        batch_size=args.batch,
        image_size=args.size,
        device=args.device,
        repeats=args.repeats,
        warmup=args.warmup,
        reference="no gates",
        progress=not args.no_progress,
    )
    table = train_step_benchmark(
        {"no gates": plain.train(), "gates": gated.train()},
        batch_size=args.batch,
        image_size=args.size,
        device=args.device,
        steps=args.steps,
        warmup=args.warmup,
        progress=not args.no_progress,
    )
    table.insert(1, "layer", args.layer)
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        print(latency.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    medians = latency.set_index("model")["latency_ms_median"]
    eval_overhead = 100.0 * (medians["gates α=0"] / medians["no gates"] - 1.0)
    overhead = float(table.loc[table["model"] == "gates", "overhead_pct"].iloc[0])
    print(f"gate overhead, eval latency at α = 0: {eval_overhead:+.2f} % (target ±3 %)")
    print(f"gate overhead per training step: {overhead:+.2f} % (target <= +3 %)")
    write_csv(table, args.out)
    write_csv(latency, str(args.out).replace(".csv", "_eval.csv"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
