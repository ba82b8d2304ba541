"""Seeded studies: compare pruning methods at an equal budget, with confidence intervals.

A study (the ``study:`` section of a week's params, or a file of ``params/studies/``) names the
methods to compare — each an experiment recipe: an α schedule and config overrides, started from
the same baseline — the seeds, and one budget of optimiser steps for every method::

    study:
      name: schedules
      reference: one_shot              # the paired differences are method − reference
      seeds: 5                         # seeds 0 .. 4 first
      max_seeds: 10                    # more seeds, if the interval is wider than requested
      target_halfwidth_db: 0.3
      budget: {steps: 400, steps_per_epoch: 20}
      defaults: {...}                  # engine config under the baseline and every method
      baseline: {...}                  # engine config of the baseline (trained once, in the store)
      methods:
        one_shot: {label: "one-shot L1 cut, then fine-tune", schedule: {kind: constant, alpha: 0}}
        exp_0.5: {label: "α exponential decay, rate 0.5", schedule: {kind: exponential, rate: 0.5}}

:func:`run_study` trains what the store does not have yet (in any ``concurrent.futures.Executor``:
local processes with ``jobs=N``, or a cluster's, e.g. Dask's ``Client.get_executor()``),
evaluates every run once (cached in the run's folder) and returns the tables
(:class:`StudyResult`); :func:`write_study` writes them, the figure and the conclusion.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from tqdm.auto import tqdm

from alphaprune.atomic import atomic_target, atomic_write_bytes, atomic_write_text
from alphaprune.engine.config import (
    ConfigError,
    ExperimentConfig,
    StrictInt,
    config_from_dict,
    format_validation_error,
    merge_configs,
    read_yaml,
    resolve_config_paths,
)
from alphaprune.engine.stats import (
    bootstrap_ci,
    mean_ci,
    paired_difference,
    seeds_needed,
    t_halfwidth,
)
from alphaprune.study.store import RunStore, StoredRun

__all__ = [
    "Method",
    "StudySpec",
    "StudyResult",
    "Job",
    "load_study",
    "study_of_report",
    "study_from_params",
    "plan",
    "run_study",
    "summarise",
    "conclusion",
    "plot_study",
    "write_study",
    "worker_threads",
    "main",
]

#: Config keys a method may not set: they would break the equal budget.
_BUDGET_KEYS = ("epochs", "steps_per_epoch")
#: Bump when the evaluation of a study run changes (cached results are keyed by it).
EVAL_VERSION = "1"
#: Most seeds per method a study may ask for without ``allow_many_seeds: true``.
MAX_SEEDS = 100


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Method(_Strict):
    """One recipe: an α schedule plus engine config overrides, started from the baseline."""

    label: str = ""
    schedule: dict[str, Any]
    config: dict[str, Any] = Field(default_factory=dict)

    @field_validator("config")
    @classmethod
    def _no_budget(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in _BUDGET_KEYS if k in value]
        if "batch_size" in (value.get("data") or {}):
            bad.append("data.batch_size")
        if bad:
            raise ValueError(f"{bad} would break the equal budget; set study.budget instead")
        return value


class Budget(_Strict):
    """Optimiser steps of every method, counted from the same baseline."""

    steps: StrictInt = Field(gt=0)
    steps_per_epoch: StrictInt = Field(gt=0)

    @property
    def epochs(self) -> int:
        return self.steps // self.steps_per_epoch


class StudySpec(_Strict):
    """A validated study (see the module docstring)."""

    name: str = Field("study", pattern=r"^[A-Za-z0-9_.\-]+$")
    reference: str
    methods: dict[str, Method] = Field(min_length=2)
    seeds: StrictInt = Field(5, ge=2)
    max_seeds: StrictInt = Field(10, ge=2)
    #: more than :data:`MAX_SEEDS` seeds per method only when set (every seed is a run per method)
    allow_many_seeds: bool = False
    target_halfwidth_db: float = Field(0.3, gt=0)
    confidence: float = Field(0.95, gt=0, lt=1)
    budget: Budget
    defaults: dict[str, Any] = Field(default_factory=dict)
    baseline: dict[str, Any] = Field(default_factory=dict)
    #: validation protocol of the per-epoch curves of the method runs (None: the baseline's).
    #: The study's numbers always come from the baseline's protocol, on every final model.
    curve_protocol: Literal["corners", "grid"] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> StudySpec:
        if self.reference not in self.methods:
            raise ValueError(f"reference '{self.reference}' is not one of the methods")
        if self.budget.steps % self.budget.steps_per_epoch:
            raise ValueError("budget.steps must be a multiple of budget.steps_per_epoch")
        if self.max_seeds < self.seeds:
            raise ValueError(f"max_seeds ({self.max_seeds}) < seeds ({self.seeds})")
        if self.max_seeds > MAX_SEEDS and not self.allow_many_seeds:
            runs = self.max_seeds * len(self.methods)
            raise ValueError(
                f"max_seeds {self.max_seeds} would allow up to {runs:,} runs; more than "
                f"{MAX_SEEDS} seeds per method needs allow_many_seeds: true"
            )
        return self

    def label(self, method: str) -> str:
        return self.methods[method].label or method

    def baseline_config(self) -> ExperimentConfig:
        data = merge_configs(self.defaults, self.baseline)
        data["name"] = f"{self.name}-baseline"
        return config_from_dict(data, source=f"study '{self.name}' baseline")

    def method_config(self, method: str, seed: int) -> ExperimentConfig:
        """The engine config of ``method`` at ``seed``: defaults, the method's overrides, budget."""
        spec = self.methods[method]
        data = merge_configs(self.defaults, spec.config)
        data.update(
            name=f"{self.name}-{method}-s{seed}",
            seed=seed,
            epochs=self.budget.epochs,
            steps_per_epoch=self.budget.steps_per_epoch,
            schedule=dict(spec.schedule),
        )
        if self.curve_protocol is not None:
            data.setdefault("data", {})["val_protocol"] = self.curve_protocol
        return config_from_dict(data, source=f"study '{self.name}' method '{method}'")

    def check(self) -> None:
        """Every method's config is valid, ends at α = 0 and sees the baseline's held-out images."""
        base = self.baseline_config()
        for method in self.methods:
            cfg = self.method_config(method, 0)
            last = cfg.build_schedule().alpha(cfg.epochs - 1)
            if last != 0.0:
                raise ConfigError(
                    f"study '{self.name}': method '{method}' ends at α = {last:g} after "
                    f"{cfg.epochs} epochs; every method must reach α = 0 within the budget"
                )
            if (cfg.data.source, sorted(cfg.data.val_images)) != (
                base.data.source,
                sorted(base.data.val_images),
            ):
                raise ConfigError(
                    f"study '{self.name}': method '{method}' validates on other images than the "
                    "baseline held out; set data.val_images in study.defaults only"
                )


def study_from_params(params: Mapping[str, Any], source: str = "<params>") -> StudySpec:
    """The study of a params mapping: its ``study:`` section, with the week's ``defaults``,
    ``seed`` and ``baseline`` under the study's own (so a week's study shares its baseline)."""
    if "study" not in params or not isinstance(params["study"], Mapping):
        raise ConfigError(f"{source}: no 'study:' section (a mapping) in the params")
    data = dict(params["study"])
    week_defaults = dict(params.get("defaults") or {})
    for key in ("seed", "device"):
        if key in params:
            week_defaults.setdefault(key, params[key])
    data["defaults"] = merge_configs(week_defaults, data.get("defaults") or {})
    if "baseline" not in data and isinstance(params.get("baseline"), Mapping):
        data["baseline"] = dict(params["baseline"])
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as exc:
        # the whole study section would be the offending value of its own checks: leave it out
        raise ConfigError(
            format_validation_error(exc, source, prefix=("study",), show_input=False)
        ) from None
    spec.check()
    return spec


def study_of_report(params: Any) -> StudySpec | None:
    """The study of a week's validated params (:class:`alphaprune.report.params.ReportParams`),
    or None when the week has no ``study:`` section. The week's ``defaults``, ``baseline``,
    ``seed`` and ``device`` lie under the study's own, so the study shares the week's baseline;
    relative data / VGG-weight paths are resolved against the params file's folder."""
    study = getattr(params, "study", None)
    if not study:
        return None
    defaults = copy.deepcopy(params.defaults)
    baseline = copy.deepcopy(params.baseline)
    for config in (defaults, baseline, study.get("defaults") or {}, study.get("baseline") or {}):
        resolve_config_paths(config, params.base_dir())
    data = {
        "seed": params.seed,
        "device": params.device,
        "defaults": defaults,
        "baseline": baseline,
        "study": copy.deepcopy(study),
    }
    return study_from_params(data, source=str(params.source))


def load_study(path: str | Path) -> StudySpec:
    """Read a params YAML file with a ``study:`` section."""
    return study_from_params(read_yaml(path), source=str(path))


# -- planning and running -----------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One pruning run of a study (picklable: runs in any executor)."""

    root: str
    method: str
    seed: int
    config: dict[str, Any]
    baseline: str  # fingerprint of the baseline run in the store
    threads: int
    eval_config: dict[str, Any]  # the config whose validation set scores the final model


def plan(
    spec: StudySpec, seeds: Sequence[int], root: str | Path, baseline: str, threads: int = 1
) -> list[Job]:
    """The jobs of ``seeds``: every method at every seed, seed by seed (pairs finish together)."""
    evaluation = spec.baseline_config().to_dict()
    return [
        Job(
            str(root),
            method,
            seed,
            spec.method_config(method, seed).to_dict(),
            baseline,
            threads,
            evaluation,
        )
        for seed in seeds
        for method in spec.methods
    ]


def worker_threads(jobs: int, cores: int | None = None) -> int:
    """Torch threads per worker so that ``jobs`` workers do not oversubscribe ``cores``."""
    if cores is None:
        has_affinity = hasattr(os, "sched_getaffinity")
        cores = len(os.sched_getaffinity(0)) if has_affinity else (os.cpu_count() or 1)
    return max(1, cores // max(1, jobs))


def _eval_key(cfg: ExperimentConfig) -> str:
    data = cfg.data
    images = "+".join(sorted(data.val_images))
    extra = f"-{data.val_crops}" if data.val_protocol == "corners" else ""
    return f"v{EVAL_VERSION}-{data.val_protocol}{extra}-{data.crop}-{images}"


def evaluate_run(run: StoredRun, evaluation: ExperimentConfig | None = None) -> dict[str, Any]:
    """Validation scores (with per-item PSNR and bootstrap intervals), params and FLOPs of a
    stored run's final model (shrunk when its α is 0) on the validation set of ``evaluation``'s
    data config (default: the run's own); cached in the run folder."""
    from alphaprune.core.shrink import count, shrink
    from alphaprune.engine.checkpoint import load_checkpoint
    from alphaprune.engine.evaluate import evaluate_items
    from alphaprune.engine.train import make_datasets

    evaluation = evaluation or run.config
    key = _eval_key(evaluation)
    cached = run.read_eval(key)
    if cached is not None:
        return cached
    # built by the study's own factory (the user's params), not one the checkpoint names
    loaded = load_checkpoint(run.checkpoint, verbose=False, factory=evaluation.model.factory)
    model, alpha = loaded.model, loaded.alpha
    val = make_datasets(evaluation)[1]
    items = evaluate_items(model, val, batch_size=32)
    small = shrink(model.eval()) if alpha == 0.0 else model
    crop = evaluation.data.crop
    size = count(small, (1, 3, crop, crop))
    low, high = bootstrap_ci(items["psnr"])
    result = {
        "psnr": float(np.mean(items["psnr"])),
        "ssim": float(np.mean(items["ssim"])),
        "psnr_ci_low": low,
        "psnr_ci_high": high,
        "alpha": alpha,
        "params": size["params"],
        "flops": size["flops"],
        "items_psnr": items["psnr"],
        "n_items": len(items["psnr"]),
    }
    run.write_eval(key, result)
    return result


def _done_seconds(run: StoredRun) -> float:
    try:
        return float(json.loads((run.run_dir / "done.json").read_text())["seconds"])
    except (FileNotFoundError, KeyError, ValueError):
        return math.nan


def execute(job: Job) -> dict[str, Any]:
    """Train (or reuse) and evaluate one study run; the function every executor runs."""
    import torch

    torch.set_num_threads(job.threads)
    store = RunStore(job.root, log=lambda message: None)
    baseline = store.get(job.baseline)
    if baseline is None:
        raise RuntimeError(f"baseline run {job.baseline} is not complete in {job.root}")
    cfg = ExperimentConfig.model_validate(job.config)
    began = time.perf_counter()
    run = store.run(cfg, "prune", source=baseline, label=cfg.name, progress=False)
    scores = evaluate_run(run, ExperimentConfig.model_validate(job.eval_config))
    return {
        "method": job.method,
        "seed": job.seed,
        "fingerprint": run.fingerprint,
        "reused": run.reused,
        "train_seconds": _done_seconds(run),
        "wall_seconds": time.perf_counter() - began,
        "threads": job.threads,
        **scores,
    }


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


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
        futures = {executor.submit(execute, job): job for job in jobs}
        for future in cf.as_completed(futures):
            rows.append(future.result())
            bar.update()
    bar.close()
    for row in rows:
        state = "reused" if row["reused"] else f"trained in {row['train_seconds']:.0f} s"
        log(f"{row['method']} seed {row['seed']}: {state}, val PSNR {row['psnr']:.2f} dB")
    return rows


@dataclass
class StudyResult:
    """The tables and sentences of a study."""

    spec: StudySpec
    runs: pd.DataFrame  # one row per (method, seed)
    summary: pd.DataFrame  # one row per method
    original: dict[str, Any]  # the baseline's evaluation
    conclusion: str
    seeds_note: str
    fingerprints: list[str] = field(default_factory=list)


def run_study(
    spec: StudySpec,
    store: RunStore | None = None,
    executor: cf.Executor | None = None,
    jobs: int = 1,
    threads: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    owner: str | Path | None = None,
) -> StudyResult:
    """Run (or reuse) every run of ``spec`` and return its tables.

    The baseline runs first, in this process. Then every method at seeds ``0 .. seeds-1``, in
    ``executor`` if given (any ``concurrent.futures.Executor``, e.g. Dask's
    ``Client.get_executor()``), else in ``jobs`` local processes (``jobs=1``: in this process).
    If the widest paired-difference interval is wider than ``target_halfwidth_db``, seeds are
    added up to the estimated need, at most ``max_seeds``. ``threads``: torch threads per run
    (default: the cores divided by ``jobs`` for local processes, 1 in an external executor,
    whose workers are expected to have one core each). ``owner``: the folder the study is
    written to (:func:`write_study`): its runs are held in the store before each trains, so
    ``runs gc`` never deletes them while the study runs.
    """
    store = store or RunStore(log=log)
    store.root.mkdir(parents=True, exist_ok=True)
    own = None
    if threads is None:
        threads = worker_threads(jobs) if executor is None else 1
    if executor is None and jobs > 1:
        own = cf.ProcessPoolExecutor(
            jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(threads,),
        )
        executor = own
    try:
        base_cfg = spec.baseline_config()
        if owner is not None:
            store.hold(owner, [store.fingerprint(base_cfg, "baseline")], role="study")
        baseline = store.run(base_cfg, "baseline", label=base_cfg.name, progress=progress)
        original = evaluate_run(baseline, base_cfg)
        log(_estimate(spec, baseline))

        def seeds(first: int, last: int) -> list[dict[str, Any]]:
            jobs = plan(spec, range(first, last), store.root, baseline.fingerprint, threads)
            if owner is not None:
                _hold_jobs(store, owner, jobs, baseline)
            return _run_jobs(jobs, executor, progress, log)

        rows = seeds(0, spec.seeds)
        n = spec.seeds
        while n < spec.max_seeds:
            summary = summarise(spec, pd.DataFrame(rows), original)
            want = int(np.nanmax(summary["seeds_needed"].to_numpy(dtype=float), initial=0))
            if want <= n:
                break
            more = min(want, spec.max_seeds)
            log(
                f"the interval is wider than ±{spec.target_halfwidth_db} dB with {n} seeds; "
                f"adding seeds {n}..{more - 1}"
            )
            rows += seeds(n, more)
            n = more
    finally:
        if own is not None:
            own.shutdown()
    table = _runs_table(spec, rows, original)
    summary = summarise(spec, table, original)
    return StudyResult(
        spec,
        table,
        summary,
        original,
        conclusion(spec, summary),
        seeds_note(spec, summary, table),
        [baseline.fingerprint, *table["fingerprint"]],
    )


def _hold_jobs(
    store: RunStore, owner: str | Path, jobs: Sequence[Job], baseline: StoredRun
) -> None:
    """Hold the runs of ``jobs`` for ``owner`` before any of them trains."""
    fingerprints = [
        store.fingerprint(ExperimentConfig.model_validate(job.config), "prune", source=baseline)
        for job in jobs
    ]
    store.hold(owner, fingerprints, role="study")


def _estimate(spec: StudySpec, baseline: StoredRun) -> str:
    """How many runs the study starts now and at most, and about how long, from the baseline's
    training time per optimiser step."""
    methods = len(spec.methods)
    cfg = baseline.config
    steps = cfg.epochs * (
        cfg.steps_per_epoch or math.ceil(cfg.data.samples_per_epoch / cfg.data.batch_size)
    )
    per_run = _done_seconds(baseline) / max(steps, 1) * spec.budget.steps
    now, most = methods * spec.seeds, methods * spec.max_seeds
    when = (
        f", about {per_run:.0f} s each on this machine (from the baseline): "
        f"{now * per_run / 3600:.2g} h now, at most {most * per_run / 3600:.2g} h"
        if math.isfinite(per_run) and per_run > 0
        else ""
    )
    return (
        f"study '{spec.name}': {methods} methods × {spec.seeds} seeds = {now} runs "
        f"(at most {most} with max_seeds {spec.max_seeds}){when}"
    )


# -- tables and sentences ---------------------------------------------------------------------


def _runs_table(
    spec: StudySpec, rows: list[dict[str, Any]], original: Mapping[str, Any]
) -> pd.DataFrame:
    """study.csv: one row per run, with the evaluation noise of its score and of its difference
    to the reference at the same seed (bootstrap over validation items)."""
    by_key = {(r["method"], r["seed"]): r for r in rows}
    out = []
    for (method, seed), r in sorted(
        by_key.items(), key=lambda kv: (list(spec.methods).index(kv[0][0]), kv[0][1])
    ):
        ref = by_key.get((spec.reference, seed))
        diff_low = diff_high = math.nan
        if ref is not None and method != spec.reference:
            d = np.asarray(r["items_psnr"]) - np.asarray(ref["items_psnr"])
            diff_low, diff_high = bootstrap_ci(d, confidence=spec.confidence)
        over = np.asarray(r["items_psnr"]) - np.asarray(original["items_psnr"])
        over_low, _ = bootstrap_ci(over, confidence=spec.confidence)
        out.append(
            {
                "method": method,
                "label": spec.label(method),
                "seed": seed,
                "val_psnr": r["psnr"],
                "val_ssim": r["ssim"],
                "psnr_ci_low": r["psnr_ci_low"],
                "psnr_ci_high": r["psnr_ci_high"],
                "n_items": r["n_items"],
                "diff_to_reference": r["psnr"] - ref["psnr"] if ref is not None else math.nan,
                "diff_eval_ci_low": diff_low,
                "diff_eval_ci_high": diff_high,
                "vs_original": r["psnr"] - original["psnr"],
                # a pruned model significantly above its own original (per-item paired bootstrap)
                "above_original": bool(over_low > 0),
                "params": r["params"],
                "flops": r["flops"],
                "params_ratio": r["params"] / original["params"],
                "flops_ratio": r["flops"] / original["flops"],
                "steps": spec.budget.steps,
                "alpha": r["alpha"],
                "reused": r["reused"],
                "train_seconds": r["train_seconds"],
                "threads": r["threads"],
                "fingerprint": r["fingerprint"],
                "items_psnr": r["items_psnr"],
            }
        )
    return pd.DataFrame(out)


def summarise(spec: StudySpec, runs: pd.DataFrame, original: Mapping[str, Any]) -> pd.DataFrame:
    """study_summary.csv: per method n, mean, std, t interval; paired difference to the reference
    (mean, sd = training noise, t interval, ``ttest_rel`` p-value); the evaluation noise (mean
    bootstrap half-width of the per-seed difference) and the seeds needed for the target width."""
    psnr_col = "val_psnr" if "val_psnr" in runs else "psnr"
    ref = runs[runs["method"] == spec.reference].set_index("seed")[psnr_col]
    rows = []
    for method in spec.methods:
        mine = runs[runs["method"] == method].set_index("seed")[psnr_col]
        if mine.empty:
            continue
        ci = mean_ci(mine.to_numpy(), spec.confidence)
        row = {
            "method": method,
            "label": spec.label(method),
            "n": ci.n,
            "mean": ci.mean,
            "std": ci.std,
            "ci_low": ci.low,
            "ci_high": ci.high,
            "diff_mean": math.nan,
            "diff_std": math.nan,
            "diff_ci_low": math.nan,
            "diff_ci_high": math.nan,
            "p_value": math.nan,
            "diff_eval_halfwidth": math.nan,
            "seeds_needed": math.nan,
        }
        if "val_ssim" in runs:
            row["ssim_mean"] = float(runs.loc[runs["method"] == method, "val_ssim"].mean())
        if method != spec.reference:
            seeds = sorted(set(mine.index) & set(ref.index))
            if len(seeds) >= 2:
                d = paired_difference(
                    mine[seeds].to_numpy(), ref[seeds].to_numpy(), spec.confidence
                )
                row.update(
                    diff_mean=d.mean,
                    diff_std=d.std,
                    diff_ci_low=d.low,
                    diff_ci_high=d.high,
                    p_value=d.p_value,
                )
                row["seeds_needed"] = seeds_needed(d.std, spec.target_halfwidth_db, spec.confidence)
            if "diff_eval_ci_low" in runs:
                part = runs[runs["method"] == method]
                row["diff_eval_halfwidth"] = float(
                    ((part["diff_eval_ci_high"] - part["diff_eval_ci_low"]) / 2).mean()
                )
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary["vs_original"] = summary["mean"] - original["psnr"]
    return summary


def conclusion(spec: StudySpec, summary: pd.DataFrame) -> str:
    """One sentence from the data: the best method against the reference, with its interval."""
    ref_label = spec.label(spec.reference)
    others = summary[summary["method"] != spec.reference].dropna(subset=["diff_ci_low"])
    if others.empty:
        return f"Not enough paired seeds yet to compare any method with {ref_label}."
    pct = f"{spec.confidence:.0%}".replace("%", " %")
    significant = others[(others["diff_ci_low"] > 0) | (others["diff_ci_high"] < 0)]
    if significant.empty:
        best = others.loc[others["diff_mean"].idxmax()]
        return (
            f"No significant difference between any method and {ref_label}: the best, "
            f"{best['label']}, differs by {best['diff_mean']:+.2f} dB, {pct} CI "
            f"[{best['diff_ci_low']:+.2f}, {best['diff_ci_high']:+.2f}], n = {int(best['n'])}."
        )
    best = significant.loc[significant["diff_mean"].abs().idxmax()]
    verb = "beats" if best["diff_mean"] > 0 else "is worse than"
    return (
        f"{best['label']} {verb} {ref_label} by {abs(best['diff_mean']):.2f} dB, {pct} CI "
        f"[{best['diff_ci_low']:+.2f}, {best['diff_ci_high']:+.2f}], n = {int(best['n'])} "
        f"(paired t-test p = {best['p_value']:.3g}; {len(significant)} of {len(others)} "
        "methods differ significantly from the reference, uncorrected)."
    )


def seeds_note(spec: StudySpec, summary: pd.DataFrame, runs: pd.DataFrame) -> str:
    """One sentence: the requested interval width is met, or how many seeds (and CPU hours) it needs."""
    others = summary[summary["method"] != spec.reference].dropna(subset=["diff_std"])
    if others.empty:
        return ""
    n = int(others["n"].max())
    widest = others.loc[(others["diff_ci_high"] - others["diff_ci_low"]).idxmax()]
    half = t_halfwidth(float(widest["diff_std"]), int(widest["n"]), spec.confidence)
    target = spec.target_halfwidth_db
    if half <= target:
        return (
            f"With n = {n} seeds every paired interval is within ±{target:g} dB "
            f"(widest ±{half:.2f} dB)."
        )
    need = int(others["seeds_needed"].max())
    seconds = runs["train_seconds"].dropna()
    threads = runs["threads"].iloc[0] if "threads" in runs else 1
    per_run = float(seconds.mean()) if len(seconds) else math.nan
    extra_runs = max(0, need - n) * len(spec.methods)
    hours = extra_runs * per_run * threads / 3600
    return (
        f"The widest paired interval ({widest['label']} − {spec.label(spec.reference)}) is "
        f"±{half:.2f} dB with n = {n}, wider than the requested ±{target:g} dB; about {need} seeds "
        f"would be needed ({extra_runs} more runs, about {hours:.1f} CPU core-hours at "
        f"{per_run:.0f} s per run)."
    )


def plot_study(result: StudyResult):
    """Left: validation PSNR, every seed a dot, mean ± CI per method (dashed: the original).
    Right: the paired difference to the reference per seed, mean ± CI (dotted: zero)."""
    import matplotlib.pyplot as plt

    spec, runs, summary = result.spec, result.runs, result.summary
    methods = list(summary["method"])
    labels = list(summary["label"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    rng = np.random.default_rng(0)
    for i, method in enumerate(methods):
        part = runs[runs["method"] == method]
        row = summary.iloc[i]
        jitter = rng.uniform(-0.12, 0.12, len(part))
        left.scatter(i + jitter, part["val_psnr"], s=18, alpha=0.7, color=f"C{i}")
        left.errorbar(
            i + 0.3,
            row["mean"],
            yerr=[[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]],
            fmt="o",
            color="black",
            capsize=4,
        )
        if method != spec.reference and not math.isnan(row["diff_mean"]):
            right.scatter(i + jitter, part["diff_to_reference"], s=18, alpha=0.7, color=f"C{i}")
            right.errorbar(
                i + 0.3,
                row["diff_mean"],
                yerr=[
                    [row["diff_mean"] - row["diff_ci_low"]],
                    [row["diff_ci_high"] - row["diff_mean"]],
                ],
                fmt="o",
                color="black",
                capsize=4,
            )
    left.axhline(
        result.original["psnr"],
        color="grey",
        linestyle="--",
        linewidth=1,
        label=f"original {result.original['psnr']:.2f} dB",
    )
    right.axhline(0.0, color="grey", linestyle=":", linewidth=1)
    pct = f"{spec.confidence:.0%}".replace("%", " %")
    for ax in (left, right):
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    left.set_ylabel("validation PSNR (dB)")
    left.set_title(f"every seed a dot; black: mean ± {pct} CI")
    left.legend(frameon=False, fontsize=8)
    right.set_ylabel("Δ PSNR to the reference (dB, same seed)")
    right.set_title(f"− {spec.label(spec.reference)}: mean ± {pct} CI", fontsize=10)
    fig.tight_layout()
    return fig


def write_study(
    result: StudyResult, folder: str | Path, store: RunStore | None = None
) -> dict[str, Path]:
    """Write ``tables/study.csv``, ``tables/study_summary.csv``, ``figures/study.png`` and
    ``study.json`` (conclusion, seeds note, original) into ``folder``, each atomically; with
    ``store``, record the runs used as the folder's references."""
    import matplotlib.pyplot as plt

    folder = Path(folder)
    paths = {
        "runs": folder / "tables" / "study.csv",
        "summary": folder / "tables" / "study_summary.csv",
        "figure": folder / "figures" / "study.png",
        "json": folder / "study.json",
    }
    runs = result.runs.drop(columns=["items_psnr"])
    atomic_write_bytes(paths["runs"], runs.to_csv(index=False).encode())
    atomic_write_bytes(paths["summary"], result.summary.to_csv(index=False).encode())
    fig = plot_study(result)
    with atomic_target(paths["figure"], suffix=".png") as tmp:
        fig.savefig(tmp, dpi=130)
    plt.close(fig)
    original = {k: v for k, v in result.original.items() if k != "items_psnr"}
    record = {
        "study": result.spec.name,
        "conclusion": result.conclusion,
        "seeds_note": result.seeds_note,
        "original": original,
        "reference": result.spec.reference,
        "runs": result.fingerprints,
    }
    atomic_write_text(paths["json"], json.dumps(record, indent=1))
    if store is not None:
        store.add_reference(folder, result.fingerprints, role="study")
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """``study PARAMS [--jobs N] [--out DIR] [--root STORE] [--dask ADDRESS]``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m alphaprune study",
        description="run a study's missing runs (cached in the run store) and write its tables",
    )
    parser.add_argument("params", help="params YAML with a study: section")
    parser.add_argument("--jobs", type=int, default=1, help="local worker processes (default 1)")
    parser.add_argument("--out", help="output folder (default reports/studies/<name>)")
    parser.add_argument("--root", help="run store (default: runs/ of the checkout)")
    parser.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run on a Dask cluster (scheduler address, or 'local' for a LocalCluster of --jobs "
        "one-thread workers); needs the 'dask' extra",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    spec = load_study(args.params)
    store = RunStore(args.root)
    out = Path(args.out) if args.out else Path("reports") / "studies" / spec.name
    progress = not args.no_progress
    if args.dask:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("--dask needs the 'dask' extra: pip install -e '.[dask]'") from None
        if args.dask == "local":
            cluster = LocalCluster(
                n_workers=args.jobs, threads_per_worker=1, dashboard_address=None
            )
            client = Client(cluster)
        else:
            cluster, client = None, Client(args.dask)
        try:
            result = run_study(
                spec, store, executor=client.get_executor(), progress=progress, owner=out
            )
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    else:
        result = run_study(spec, store, jobs=args.jobs, progress=progress, owner=out)
    paths = write_study(result, out, store)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(
            result.summary.drop(columns=["label"]).to_string(
                index=False, float_format=lambda v: f"{v:.3f}"
            )
        )
    print(result.conclusion)
    if result.seeds_note:
        print(result.seeds_note)
    print(f"study written to {paths['summary'].parent.parent}")
    return 0
