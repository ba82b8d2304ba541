"""Running a study: its baselines, then every arm at every budget, baseline and seed, in any
``concurrent.futures.Executor``, each run trained once in the run store and reused after.

The runs go in waves, because some start from others: the baselines; the arms that start from a
baseline (α schedules, one-shot cuts, the unpruned control), every learning rate of an arm's grid
(the one with the best validation PSNR is kept); then the arms that start from one of those runs
(``restart`` from its milestone, ``scratch`` from its shrunk architecture). Every run pins its
torch threads (``study.threads``), so the same study gives the same numbers with ``--jobs 1`` or
``--jobs 2``. A killed study resumes: finished runs are reused, a run that was interrupted
resumes from its last epoch.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from alphaprune.engine.config import ExperimentConfig
from alphaprune.engine.threads import torch_threads
from alphaprune.study.analysis import StudyResult, assemble
from alphaprune.study.evaluation import cpu_latency, evaluate_run, final_model
from alphaprune.study.spec import StudySpec
from alphaprune.study.store import RunStore, StoredRun

__all__ = [
    "Job",
    "RunKey",
    "StudyResult",
    "estimate",
    "execute",
    "job_fingerprint",
    "plan",
    "run_study",
]  # StudyResult: analysis


@dataclass(frozen=True)
class RunKey:
    """Which run of a study: arm, budget point, baseline index, pruning seed, learning rate."""

    arm: str
    point: str
    baseline: int
    seed: int
    lr: float | None = None


@dataclass(frozen=True)
class Job:
    """One run of a study (picklable: runs in any executor). ``start``: the stored run it starts
    from (``run``), at its milestone ``alpha`` (None: its last checkpoint), ``shrink``-ed first."""

    root: str
    key: RunKey
    config: dict[str, Any]
    start: dict[str, Any]
    eval_config: dict[str, Any]
    threads: int
    kind: str = "prune"


def _done_record(run: StoredRun) -> dict[str, Any]:
    try:
        return json.loads((run.run_dir / "done.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def execute(job: Job) -> dict[str, Any]:
    """Train (or reuse) and score one study run; the function every executor runs."""
    with torch_threads(job.threads):
        store = RunStore(job.root, log=lambda message: None)
        source = store.get(job.start["run"]) if job.start else None
        if job.start and source is None:
            raise RuntimeError(f"run {job.start['run']} is not complete in {job.root}")
        cfg = ExperimentConfig.model_validate(job.config)
        began, cpu_began = time.perf_counter(), time.process_time()
        run = store.run(
            cfg,
            job.kind,
            source=source,
            source_alpha=(job.start or {}).get("alpha"),
            shrink_source=bool((job.start or {}).get("shrink")),
            label=cfg.name,
            progress=False,
        )
        scores = evaluate_run(run, ExperimentConfig.model_validate(job.eval_config))
    done = _done_record(run)
    return {
        **asdict(job.key),
        "fingerprint": run.fingerprint,
        "reused": run.reused,
        "threads": job.threads,
        "steps": cfg.epochs * (cfg.steps_per_epoch or 0),
        "diverged_at": done.get("diverged_at"),
        "train_seconds": done.get("seconds", math.nan),
        "train_cpu_seconds": done.get("cpu_seconds", math.nan),
        "job_seconds": time.perf_counter() - began,
        "job_cpu_seconds": time.process_time() - cpu_began,
        **scores,
    }


def job_fingerprint(store: RunStore, job: Job) -> str:
    """The store's fingerprint of ``job``'s run (its start run need not be complete)."""
    cfg = ExperimentConfig.model_validate(job.config)
    start = job.start or {}
    source = None
    if start:  # only the start run's fingerprint enters the hash
        source = StoredRun(start["run"], store.path(start["run"]), "prune", cfg, reused=True)
    return store.fingerprint(
        cfg,
        job.kind,
        source=source,
        source_alpha=start.get("alpha"),
        shrink_source=bool(start.get("shrink")),
    )


@dataclass
class _Runner:
    """Runs lists of jobs: in ``executor`` (None: here), holding them first for ``owner`` (the
    study's output folder) so that ``runs gc`` never deletes a run the study is making."""

    store: RunStore
    executor: cf.Executor | None
    progress: bool
    log: Callable[[str], None]
    owner: str | Path | None = None

    def __call__(self, jobs: list[Job], quiet: bool = False) -> list[dict[str, Any]]:
        if self.owner is not None and jobs:
            fingerprints = [job_fingerprint(self.store, job) for job in jobs]
            self.store.hold(self.owner, fingerprints, role="study")
        log = (lambda message: None) if quiet else self.log
        return _run_jobs(jobs, self.executor, self.progress, log)


def _run_jobs(
    jobs: list[Job], executor: cf.Executor | None, progress: bool, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    rows = []
    bar = tqdm(total=len(jobs), desc="study runs", unit="run", disable=not progress)
    if executor is None:
        for job in jobs:
            rows.append(execute(job))
            bar.update()
    else:
        futures = [executor.submit(execute, job) for job in jobs]
        for future in cf.as_completed(futures):
            rows.append(future.result())
            bar.update()
    bar.close()
    for row in rows:
        state = "reused" if row["reused"] else f"trained in {row['train_seconds']:.0f} s"
        log(
            f"{row['arm']} {row['point']} baseline {row['baseline']} seed {row['seed']}: {state}, "
            f"test PSNR {np.mean(row['test']['psnr']):.2f} dB"
        )
    return sorted(
        rows, key=lambda r: (r["arm"], r["point"], r["baseline"], r["seed"], r["lr"] or 0)
    )


# -- planning -----------------------------------------------------------------------------------


def _first_wave_arms(spec: StudySpec) -> list[str]:
    return [a for a, arm in spec.methods.items() if arm.kind in ("schedule", "unpruned")]


def plan(
    spec: StudySpec,
    seeds: Sequence[int],
    root: str,
    baselines: Sequence[str],
    wave: int = 1,
    chosen: dict[tuple, str] | None = None,
) -> list[Job]:
    """The jobs of one wave at ``seeds``: wave 1 starts from the baselines (fingerprints
    ``baselines``); wave 2 from ``chosen[(arm, point, baseline, seed)]``, the fingerprints of the
    wave-1 runs kept after the learning-rate choice. Seed by seed, so pairs finish together. The
    unpruned control is the same run at every budget point: planned once (point ``"all"``)."""
    evaluation = spec.eval_config().to_dict()
    jobs = []
    first = _first_wave_arms(spec)
    for seed in seeds:
        for k, base in enumerate(baselines):
            for arm in spec.methods:
                if (arm in first) != (wave == 1):
                    continue
                points = ["all"] if spec.methods[arm].kind == "unpruned" else list(spec.points)
                for point in points:
                    for lr in spec.lrs(arm):
                        key = RunKey(arm, point, k, seed, lr)
                        cfg = spec.arm_config(
                            arm, next(iter(spec.points)) if point == "all" else point, seed, lr
                        )
                        start = _start(spec, arm, point, k, seed, base, chosen)
                        jobs.append(Job(root, key, cfg.to_dict(), start, evaluation, spec.threads))
    return jobs


def _start(spec, arm, point, k, seed, base, chosen) -> dict[str, Any]:
    spec_arm = spec.methods[arm]
    if spec_arm.kind == "restart":
        return {"run": chosen[(spec_arm.start.arm, point, k, seed)], "alpha": spec_arm.start.alpha}
    if spec_arm.kind == "scratch":
        return {"run": chosen[(spec_arm.architecture, point, k, seed)], "shrink": True}
    return {"run": base}


def choose_lr(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark, per (arm, point, baseline, seed), the learning rate with the best mean validation
    PSNR as ``selected`` (ties: the first); rows without a grid are selected."""
    best: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        key = (row["arm"], row["point"], row["baseline"], row["seed"])
        score = float(np.mean(row["val"]["psnr"]))
        if key not in best or score > float(np.mean(best[key]["val"]["psnr"])):
            best[key] = row
    chosen = {id(r) for r in best.values()}
    return [{**row, "selected": id(row) in chosen} for row in rows]


# -- running ------------------------------------------------------------------------------------


def _baselines(spec: StudySpec, runner: _Runner) -> list[dict[str, Any]]:
    """Train (or reuse) and score every baseline (in the executor when there is one)."""
    store = runner.store
    evaluation = spec.eval_config().to_dict()
    jobs = [
        Job(
            str(store.root),
            RunKey("baseline", "all", k, -1),
            spec.baseline_config(k).to_dict(),
            {},
            evaluation,
            spec.threads,
            kind="baseline",
        )
        for k in range(spec.baselines)
    ]
    runner.log(f"{len(jobs)} baseline(s): trained once, reused after")
    rows = runner(jobs, quiet=True)
    for row in rows:
        run = store.get(row["fingerprint"])
        row["curve"] = run.metrics[["epoch", "val_loss", "val_psnr"]].to_dict("list")
    return sorted(rows, key=lambda r: r["baseline"])


def _executor(jobs: int, executor: cf.Executor | None) -> tuple[cf.Executor | None, Any]:
    if executor is not None or jobs <= 1:
        return executor, None
    own = cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    return own, own


def _all_seeds(spec: StudySpec, runner: _Runner, baselines, seeds) -> list[dict[str, Any]]:
    root = str(runner.store.root)
    first = choose_lr(runner(plan(spec, seeds, root, baselines, 1)))
    chosen = {
        (r["arm"], r["point"], r["baseline"], r["seed"]): r["fingerprint"]
        for r in first
        if r["selected"]
    }
    second_jobs = plan(spec, seeds, root, baselines, 2, chosen)
    second = choose_lr(runner(second_jobs)) if second_jobs else []
    return first + second


def run_study(
    spec: StudySpec,
    store: RunStore | None = None,
    executor: cf.Executor | None = None,
    jobs: int = 1,
    progress: bool = True,
    log: Callable[[str], None] = print,
    owner: str | Path | None = None,
) -> StudyResult:
    """Run (or reuse) every run of ``spec`` and return its tables.

    In ``executor`` if given (any ``concurrent.futures.Executor``, e.g. Dask's
    ``Client.get_executor()``), else in ``jobs`` local processes (``jobs=1``: in this process).
    Every run uses ``spec.threads`` torch threads wherever it runs. If the widest paired interval
    at the primary budget is wider than ``target_halfwidth_db``, seeds are added up to the
    estimated need, at most ``max_seeds``. ``owner``: the folder the study is written to
    (:func:`alphaprune.study.output.write_study`): its runs are held in the store before each
    trains, so ``runs gc`` never deletes them while the study runs.
    """
    store = store or RunStore(log=log)
    store.root.mkdir(parents=True, exist_ok=True)
    _warn_oversubscribed(spec, jobs if executor is None else 1, log)
    executor, own = _executor(jobs, executor)
    runner = _Runner(store, executor, progress, log, owner)
    try:
        bases = _baselines(spec, runner)
        log(estimate(spec, bases))
        fps = [b["fingerprint"] for b in bases]
        rows = _all_seeds(spec, runner, fps, range(spec.seeds))
        n = spec.seeds
        while n < spec.max_seeds:
            want = _seeds_wanted(spec, rows, bases)
            if want <= n:
                break
            more = min(want, spec.max_seeds)
            log(
                f"the interval is wider than ±{spec.target_halfwidth_db} dB with {n} seeds; "
                f"adding seeds {n}..{more - 1}"
            )
            rows += _all_seeds(spec, runner, fps, range(n, more))
            n = more
    finally:
        if own is not None:
            own.shutdown()
    latencies = _latencies(spec, store, rows, bases)
    return assemble(spec, rows, bases, latencies)


def estimate(spec: StudySpec, bases: Sequence[dict[str, Any]]) -> str:
    """How many runs the study starts now and at most, and about how long each takes here (from
    the baselines' measured training time per optimiser step)."""
    per_step = [
        row["train_seconds"] / row["steps"]
        for row in bases
        if row.get("steps") and math.isfinite(row.get("train_seconds", math.nan))
    ]
    per_run = float(np.mean(per_step)) * spec.budget.steps if per_step else math.nan
    per_seed = spec.runs_per_seed()
    now, most = per_seed * spec.seeds, per_seed * spec.max_seeds
    when = (
        f", about {per_run:.0f} s each on this machine (from the baselines): "
        f"{now * per_run / 3600:.2g} h now, at most {most * per_run / 3600:.2g} h"
        if math.isfinite(per_run) and per_run > 0
        else ""
    )
    return (
        f"study '{spec.name}': {len(spec.methods)} arms × {len(spec.points)} budget(s) × "
        f"{spec.baselines} baseline(s) × {spec.seeds} seeds = {now} runs (at most {most} with "
        f"max_seeds {spec.max_seeds}){when}"
    )


def _warn_oversubscribed(spec: StudySpec, workers: int, log) -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores and workers * spec.threads > cores:
        log(
            f"warning: {workers} worker(s) × {spec.threads} thread(s) > {cores} cores: runs are "
            "slower, but their numbers do not change"
        )


def _seeds_wanted(spec: StudySpec, rows, bases) -> int:
    summary = assemble(spec, rows, bases, {}).summary
    primary = summary[summary["budget"] == spec.primary]
    need = primary["seeds_needed"].to_numpy(dtype=float)
    return int(np.nanmax(need, initial=0))


def _latencies(spec: StudySpec, store: RunStore, rows, bases) -> dict[tuple[str, str], dict]:
    """CPU latency of the original and of one final model per (arm, point): baseline 0, the
    first seed, the chosen learning rate; measured here at ``spec.threads`` threads."""
    settings, factory = spec.latency, spec.eval_config().model.factory
    measure = lambda run: cpu_latency(  # noqa: E731
        final_model(run, factory), settings.size, settings.batch, spec.threads, settings.repeats
    )
    out = {("original", "all"): measure(store.get(bases[0]["fingerprint"]))}
    first_seed = min(r["seed"] for r in rows) if rows else 0
    for row in rows:
        if row["baseline"] == 0 and row["seed"] == first_seed and row["selected"]:
            out[(row["arm"], row["point"])] = measure(store.get(row["fingerprint"]))
    return out
