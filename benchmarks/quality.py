"""Quality of α-decay pruning against one-shot pruning and the unpruned original.

On the bundled images: train the original, then prune keep = 0.5 of the encoder (a) with a linear
α decay followed by fine-tuning at α = 0 and (b) one-shot (α = 0 from the first epoch), with the
same total number of fine-tuning epochs, steps and seed; the original trained on for the same
number of epochs is listed too. Prints validation PSNR/SSIM of each in
one table and writes it to CSV.

    python benchmarks/quality.py --out reports/bench/quality.csv
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import pandas as pd

from alphaprune.bench import write_csv
from alphaprune.engine.checkpoint import load_checkpoint
from alphaprune.engine.config import ExperimentConfig, config_from_dict
from alphaprune.engine.evaluate import evaluate
from alphaprune.engine.train import make_datasets, prune, train_baseline


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="relu2_1")
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25, help="steps per epoch")
    parser.add_argument("--baseline-epochs", type=int, default=24)
    parser.add_argument("--prune-epochs", type=int, default=12, help="total fine-tuning epochs")
    parser.add_argument("--decay-epochs", type=int, default=6, help="epochs of linear α decay")
    parser.add_argument("--keep", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="reports/bench/quality-runs")
    parser.add_argument("--out", default="reports/bench/quality.csv")
    return parser.parse_args()


def _train_runs(args: argparse.Namespace) -> tuple[dict[str, Path], ExperimentConfig]:
    """The original, the original trained on, and both pruned runs: label → checkpoint."""
    common = {
        "output_dir": args.workdir,
        "seed": args.seed,
        "device": "auto",
        "steps_per_epoch": args.steps,
        "model": {"layer": args.layer},
        "data": {"crop": args.crop, "batch_size": args.batch_size},
        "pruning": {"keep": args.keep, "target": "encoder"},
        "optimizer": {"lr": args.lr},
    }
    base = train_baseline(
        config_from_dict({**common, "name": "original", "epochs": args.baseline_epochs})
    )
    schedules = {
        "α-decay": {"kind": "linear", "start": 1.0, "end": 0.0, "epochs": args.decay_epochs},
        "one-shot": {"kind": "constant", "alpha": 0.0},
    }
    # The original, trained on for the same fine-tuning budget: separates "more training" from
    # "pruning" when the original is not converged.
    longer = Path(args.workdir) / "original-longer"
    if not longer.exists():
        shutil.copytree(base.run_dir, longer)
    total = args.baseline_epochs + args.prune_epochs
    extended = train_baseline(
        config_from_dict({**common, "name": "original-longer", "epochs": total})
    )
    runs = {
        "original": base.checkpoint,
        f"original +{args.prune_epochs} epochs": extended.checkpoint,
    }
    for label, schedule in schedules.items():
        name = "alpha-decay" if label == "α-decay" else "one-shot"
        cfg = config_from_dict(
            {**common, "name": name, "epochs": args.prune_epochs, "schedule": schedule}
        )
        runs[label] = prune(cfg, original=base.checkpoint).checkpoint
    return runs, base.config


def _table(runs: dict[str, Path], val, batch_size: int) -> pd.DataFrame:
    """Validation scores of every run, and each PSNR's difference to the original's."""
    rows = []
    for label, path in runs.items():
        loaded = load_checkpoint(path, verbose=False)
        scores = evaluate(loaded.model, val, batch_size=batch_size)
        rows.append({"model": label, "alpha": loaded.alpha, **scores})
    table = pd.DataFrame(rows).rename(
        columns={"loss": "val_mse", "psnr": "val_psnr_db", "ssim": "val_ssim"}
    )
    original_psnr = table.loc[table["model"] == "original", "val_psnr_db"].iloc[0]
    table["psnr_vs_original_db"] = table["val_psnr_db"] - original_psnr
    return table


def main() -> None:
    args = _arguments()
    began = time.perf_counter()
    runs, config = _train_runs(args)
    table = _table(runs, make_datasets(config)[1], args.batch_size)
    print(
        f"\nlayer={args.layer} crop={args.crop} keep={args.keep} baseline_epochs="
        f"{args.baseline_epochs} prune_epochs={args.prune_epochs} steps={args.steps} "
        f"seed={args.seed}  ({time.perf_counter() - began:.0f} s)"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    write_csv(table, args.out)


if __name__ == "__main__":
    main()
