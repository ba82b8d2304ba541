"""``python -m alphaprune study PARAMS``: run a study (or ``--dry-run``: print its plan and the
CPU-hours it will take) and write its tables; the arguments are parsed by :mod:`alphaprune.cli`.

The estimate times a few optimiser steps of the unpruned model here, at the study's threads,
and multiplies by the steps of every run still missing from the store (pruned models are
cheaper: an upper bound for training; evaluation not counted).
"""

from __future__ import annotations

import argparse
import math
import shlex
import time
from pathlib import Path

import pandas as pd

from alphaprune.engine.threads import torch_threads
from alphaprune.errors import ConfigError
from alphaprune.study.spec import StudySpec, load_study
from alphaprune.study.store import RunStore, StoredRun

__all__ = ["plan_table", "run_command", "step_cpu_seconds"]


def _placeholder(store: RunStore, fp: str, cfg) -> StoredRun:
    """A stored run by fingerprint only (to compute the fingerprints of runs that start from it)."""
    return StoredRun(fp, store.path(fp), "prune", cfg, reused=True)


def _arm_runs(spec: StudySpec, store: RunStore, bases, seeds: range) -> list[dict]:
    rows = []
    for arm, spec_arm in spec.methods.items():
        points = ["all"] if spec_arm.kind == "unpruned" else list(spec.points)
        for point in points:
            cfg = spec.arm_config(arm, next(iter(spec.points)) if point == "all" else point, 0)
            rows.append(
                {
                    "arm": arm,
                    "kind": spec_arm.kind,
                    "budget": point,
                    "runs": len(bases) * len(seeds) * len(spec.lrs(arm)),
                    "steps_per_run": cfg.epochs * cfg.steps_per_epoch,
                    "done": _done(spec, store, bases, seeds, arm, point),
                }
            )
    return rows


def _done(spec: StudySpec, store: RunStore, bases, seeds, arm: str, point: str) -> int | str:
    """How many of the arm's runs the store has ("?": unknown before its start runs exist)."""
    spec_arm = spec.methods[arm]
    if spec_arm.kind not in ("schedule", "unpruned"):
        return "?"
    count = 0
    at = next(iter(spec.points)) if point == "all" else point
    for base in bases:
        for seed in seeds:
            for lr in spec.lrs(arm):
                cfg = spec.arm_config(arm, at, seed, lr)
                fp = store.fingerprint(cfg, "prune", source=base)
                count += store.get(fp) is not None
    return count


def plan_table(spec: StudySpec, store: RunStore, seeds: int | None = None) -> pd.DataFrame:
    """One row per baseline set and per (arm, budget): runs, optimiser steps per run and how
    many the store already has, at ``seeds`` seeds per baseline (default ``spec.seeds``)."""
    seeds = seeds or spec.seeds
    bases, base_done = [], 0
    for k in range(spec.baselines):
        cfg = spec.baseline_config(k)
        fp = store.fingerprint(cfg, "baseline")
        base_done += store.get(fp) is not None
        bases.append(_placeholder(store, fp, cfg))
    rows = [
        {
            "arm": "baseline",
            "kind": "baseline",
            "budget": "-",
            "runs": spec.baselines,
            "steps_per_run": spec.baseline_steps(),
            "done": base_done,
        }
    ]
    rows += _arm_runs(spec, store, bases, range(seeds))
    return pd.DataFrame(rows)


def step_cpu_seconds(spec: StudySpec, steps: int = 3) -> float:
    """CPU seconds of one optimiser step of the study's unpruned model, measured now."""
    import torch

    from alphaprune.engine.models import build_model

    cfg = spec.baseline_config()
    with torch_threads(spec.threads):
        torch.manual_seed(0)
        model = build_model(cfg.model.model_dump())
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        batch = torch.rand(cfg.data.batch_size, 3, cfg.data.crop, cfg.data.crop)
        times = []
        for _ in range(steps + 1):
            began = time.process_time()
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(batch), batch).backward()
            optimizer.step()
            times.append(time.process_time() - began)
    return float(sum(times[1:]) / steps)


def _dry_run(spec: StudySpec, store: RunStore) -> None:
    per_step = step_cpu_seconds(spec)
    for seeds in sorted({spec.seeds, spec.max_seeds}):
        table = plan_table(spec, store, seeds)
        done = pd.to_numeric(table["done"], errors="coerce").fillna(0)
        missing = table["runs"] - done
        hours = float((missing * table["steps_per_run"]).sum() * per_step / 3600)
        print(f"\n{spec.name}: {spec.baselines} baseline(s) × {seeds} seed(s) per baseline")
        with pd.option_context("display.width", 160):
            print(table.to_string(index=False))
        print(
            f"{int(table['runs'].sum())} runs, {int(missing.sum())} to train: about {hours:.1f} "
            f"CPU-hours ({per_step * 1e3:.0f} CPU-ms per step of the unpruned model measured now "
            f"at {spec.threads} thread(s); training only, an upper bound for pruned models)"
        )
    if spec.max_seeds > spec.seeds:
        print(f"(seeds {spec.seeds}..{spec.max_seeds - 1} run only if the interval is too wide)")


def _executor(args: argparse.Namespace):
    if not args.dask:
        return None, None
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--dask needs the 'dask' extra: pip install -e '.[dask]'") from None
    if args.dask == "local":
        cluster = LocalCluster(n_workers=args.jobs, threads_per_worker=1, dashboard_address=None)
        return Client(cluster), cluster
    return Client(args.dask), None


def run_command(args: argparse.Namespace) -> int:
    """Run the study of ``args.params`` (the ``study`` sub-command of :mod:`alphaprune.cli`)."""
    from alphaprune.study.execution import run_study
    from alphaprune.study.output import write_study

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    spec = load_study(args.params)
    store = RunStore(args.root)
    if args.dry_run:
        _dry_run(spec, store)
        return 0
    out = Path(args.out) if args.out else Path("reports") / "studies" / spec.name
    client, cluster = _executor(args)
    try:
        result = run_study(
            spec,
            store,
            executor=client.get_executor() if client else None,
            jobs=args.jobs,
            progress=not args.no_progress,
            owner=out,  # its runs are held in the store while it runs
        )
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    argv = getattr(args, "argv", None)
    command = "python -m alphaprune " + shlex.join(argv) if argv else None
    paths = write_study(result, out, store, command=command)
    _print_summary(result)
    print(f"study written to {paths['summary'].parent.parent}")
    return 0


def _print_summary(result) -> None:
    columns = [
        "budget",
        "arm",
        "n",
        "mean",
        "ci_low",
        "ci_high",
        "diff_mean",
        "diff_ci_low",
        "diff_ci_high",
        "p_holm",
        "tost_p_holm",
        "verdict",
        "flops_ratio",
        "latency_ms",
    ]
    table = result.summary[[c for c in columns if c in result.summary]]
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(
            table.to_string(
                index=False, float_format=lambda v: "nan" if math.isnan(v) else f"{v:.3f}"
            )
        )
    print(result.conclusion)
    if result.seeds_note:
        print(result.seeds_note)
