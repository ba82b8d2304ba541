"""A study's statistics: the table of runs, the summary per (budget, arm) and its verdicts.

Each arm is compared with the reference at the same budget, **paired by (baseline, seed)**: the
same original and the same training crops. Per budget, the p-values of the paired t-tests of all
arms are Holm-adjusted as one family, and so are those of the equivalence tests (TOST against
``±equivalence_db``). The verdict of an arm is

- ``better`` / ``worse``: the Holm-adjusted paired t-test is significant at ``1 − confidence``;
- ``equivalent``: otherwise, the Holm-adjusted TOST is significant (its ``1 − 2a`` interval lies
  within the margin);
- ``undecided``: neither — too few seeds to tell.

Scores are whole-image PSNRs on the test images (never tuned on); the per-run evaluation
interval resamples images (:func:`alphaprune.engine.evaluate.paired_image_difference`) and is
absent when there are too few test images. The seed estimate is a range: the seeds needed at
both ends of the chi-square interval of the measured sd.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from alphaprune.engine.evaluate import (
    ImageScores,
    above_on_every_image,
    image_interval,
    paired_image_difference,
)
from alphaprune.engine.stats import (
    holm,
    mean_ci,
    paired_difference,
    sd_interval,
    seeds_needed_range,
    significant,
    tost,
)
from alphaprune.study.spec import StudySpec

__all__ = [
    "VERDICTS",
    "StudyResult",
    "assemble",
    "baselines_table",
    "runs_table",
    "summarise",
    "verdict",
]

#: The verdicts of an arm against the reference.
VERDICTS = ("better", "worse", "equivalent", "undecided")


@dataclass
class StudyResult:
    """The tables and sentences of a study (see :mod:`alphaprune.study.analysis`)."""

    spec: StudySpec
    runs: pd.DataFrame  # one row per run (and per budget point for the unpruned control)
    summary: pd.DataFrame  # one row per (budget point, arm)
    baselines: pd.DataFrame  # one row per baseline: its test score, plateau check and curve
    conclusion: str
    seeds_note: str
    fingerprints: list[str] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    baseline_curves: list[dict[str, list]] = field(
        default_factory=list
    )  # epoch, val_loss, val_psnr


def _scores(row: Mapping[str, Any], part: str = "test") -> ImageScores:
    return ImageScores.from_dict(row[part])


def _expand(spec: StudySpec, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The unpruned control's one run per (baseline, seed) as a row at every budget point."""
    out = []
    for row in rows:
        points = list(spec.points) if row["point"] == "all" else [row["point"]]
        out += [{**row, "point": point} for point in points]
    return out


def _reference_rows(spec: StudySpec, rows: list[dict[str, Any]]) -> dict[tuple, dict]:
    return {
        (r["point"], r["baseline"], r["seed"]): r
        for r in rows
        if r["arm"] == spec.reference and r.get("selected", True)
    }


def _run_row(spec: StudySpec, row, ref, original) -> dict[str, Any]:
    mine = _scores(row)
    ci = image_interval(mine, spec.confidence)
    diff = paired_image_difference(mine, _scores(ref), spec.confidence) if ref else None
    over = paired_image_difference(mine, _scores(original), spec.confidence)
    per_image_over = [a - b for a, b in zip(mine.psnr, original["test"]["psnr"], strict=True)]
    status = (
        "finished" if row.get("diverged_at") is None else f"diverged at epoch {row['diverged_at']}"
    )
    out = {
        "budget": row["point"],
        "arm": row["arm"],
        "label": spec.label(row["arm"]),
        "kind": spec.methods[row["arm"]].kind,
        "baseline": row["baseline"],
        "seed": row["seed"],
        "lr": row["lr"],
        "selected": row.get("selected", True),
        "status": status,
        "test_psnr": mine.mean_psnr,
        "test_ssim": float(np.mean(mine.ssim)),
        "val_psnr": float(np.mean(row["val"]["psnr"])),
        "test_psnr_ci_low": ci.low,
        "test_psnr_ci_high": ci.high,
        "n_test_images": len(mine.images),
        "eval_interval": ci.reason or "cluster bootstrap over images",
        "diff_to_reference": diff.estimate if diff else math.nan,
        "diff_eval_ci_low": diff.low if diff else math.nan,
        "diff_eval_ci_high": diff.high if diff else math.nan,
        "vs_original": over.estimate,
        "above_original": above_on_every_image(per_image_over, over.low),
        "params": row["params"],
        "flops": row["flops"],
        "params_ratio": row["params"] / original["params"],
        "flops_ratio": row["flops"] / original["flops"],
        "steps": row["steps"],
        "alpha": row["alpha"],
        "reused": row["reused"],
        "threads": row["threads"],
        "train_seconds": row["train_seconds"],
        "train_cpu_seconds": row["train_cpu_seconds"],
        "fingerprint": row["fingerprint"],
    }
    out.update({f"psnr[{name}]": value for name, value in zip(mine.images, mine.psnr, strict=True)})
    return out


def runs_table(
    spec: StudySpec, rows: list[dict[str, Any]], bases: list[dict[str, Any]]
) -> pd.DataFrame:
    """study.csv: one row per run (the unpruned control at every budget), with its test PSNR
    per image and over images, the evaluation interval over images (absent for too few), its
    difference to the reference at the same (budget, baseline, seed), size and timing."""
    rows = _expand(spec, rows)
    refs = _reference_rows(spec, rows)
    order = {arm: i for i, arm in enumerate(spec.methods)}
    points = {p: i for i, p in enumerate(spec.points)}
    rows = sorted(
        rows,
        key=lambda r: (points[r["point"]], order[r["arm"]], r["baseline"], r["seed"], r["lr"] or 0),
    )
    out = []
    for row in rows:
        key = (row["point"], row["baseline"], row["seed"])
        ref = refs.get(key) if row["arm"] != spec.reference else None
        out.append(_run_row(spec, row, ref, bases[row["baseline"]]))
    return pd.DataFrame(out)


def verdict(p_holm: float, tost_holm: float, diff_mean: float, level: float) -> str:
    """``better``/``worse`` if the adjusted difference test is significant, else ``equivalent``
    if the adjusted TOST is, else ``undecided`` (a NaN p-value is never significant)."""
    if significant(p_holm, level):
        return "better" if diff_mean > 0 else "worse"
    if significant(tost_holm, level):
        return "equivalent"
    return "undecided"


def _paired(spec: StudySpec, part: pd.DataFrame, ref: pd.DataFrame) -> dict[str, Any]:
    """Paired difference to the reference over the (baseline, seed) pairs both have."""
    mine = part.set_index(["baseline", "seed"])["test_psnr"]
    theirs = ref.set_index(["baseline", "seed"])["test_psnr"]
    pairs = sorted(set(mine.index) & set(theirs.index))
    if len(pairs) < 2:
        return {"n_pairs": len(pairs)}
    a, b = mine[pairs].to_numpy(), theirs[pairs].to_numpy()
    d = paired_difference(a, b, spec.confidence)
    eq = mean_ci(a - b, 1 - 2 * (1 - spec.confidence))
    sd_low, sd_high = sd_interval(d.std, d.n, spec.confidence)
    need = seeds_needed_range(d.std, d.n, spec.target_halfwidth_db, spec.confidence)
    by_base = pd.Series(a - b, index=pd.MultiIndex.from_tuples(pairs)).groupby(level=0)
    groups = [g.to_numpy() for _, g in by_base if len(g) >= 2]
    baseline_p = float(stats.f_oneway(*groups).pvalue) if len(groups) >= 2 else math.nan
    return {
        "n_pairs": d.n,
        "diff_mean": d.mean,
        "diff_std": d.std,
        "diff_ci_low": d.low,
        "diff_ci_high": d.high,
        "p_value": d.p_value,
        "tost_p": tost(a - b, spec.equivalence_db),
        "tost_ci_low": eq.low,
        "tost_ci_high": eq.high,
        "diff_sd_low": sd_low,
        "diff_sd_high": sd_high,
        # pairs needed, as seeds per baseline
        "seeds_needed": _per_baseline(need[0], spec.baselines),
        "seeds_needed_low": _per_baseline(need[1], spec.baselines),
        "seeds_needed_high": _per_baseline(need[2], spec.baselines),
        "diff_by_baseline": " ".join(f"{k}:{g.mean():+.2f}" for k, g in by_base),
        "baseline_p": baseline_p,
    }


def _per_baseline(pairs: float, baselines: int) -> float:
    """Seeds per baseline for ``pairs`` (baseline, seed) pairs (at least 2)."""
    return float(max(2, math.ceil(pairs / baselines))) if math.isfinite(pairs) else math.nan


_EMPTY = {
    key: math.nan
    for key in (
        "diff_mean diff_std diff_ci_low diff_ci_high p_value p_holm tost_p tost_p_holm "
        "tost_ci_low tost_ci_high diff_sd_low diff_sd_high seeds_needed seeds_needed_low "
        "seeds_needed_high baseline_p"
    ).split()
}


def _arm_row(spec, point, arm, part, ref, latencies) -> dict[str, Any]:
    ci = mean_ci(part["test_psnr"].to_numpy(), spec.confidence)
    latency = latencies.get((arm, point)) or latencies.get((arm, "all")) or {}
    row = {
        "budget": point,
        "arm": arm,
        "label": spec.label(arm),
        "kind": spec.methods[arm].kind,
        "n": ci.n,
        "mean": ci.mean,
        "std": ci.std,
        "ci_low": ci.low,
        "ci_high": ci.high,
        **_EMPTY,
        "diff_by_baseline": "",
        "verdict": "reference" if arm == spec.reference else "undecided",
        "params": float(part["params"].mean()),
        "flops": float(part["flops"].mean()),
        "params_ratio": float(part["params_ratio"].mean()),
        "flops_ratio": float(part["flops_ratio"].mean()),
        "latency_ms": latency.get("latency_ms", math.nan),
        "vs_original": float(part["vs_original"].mean()),
        "cpu_hours": float(part["train_cpu_seconds"].sum() / 3600),
        "diverged": 0,
    }
    if arm != spec.reference and ref is not None:
        row.update(_paired(spec, part, ref))
    return row


def summarise(
    spec: StudySpec, runs: pd.DataFrame, latencies: Mapping[tuple[str, str], dict] | None = None
) -> pd.DataFrame:
    """study_summary.csv: per (budget, arm): n, mean test PSNR, sd and t interval; the paired
    difference to the reference (mean, sd with its chi-square interval, t interval, p, the
    Holm-adjusted p), the TOST p (raw and Holm-adjusted) and its ``1 − 2a`` interval, the
    verdict, the seeds per baseline a ``±target_halfwidth_db`` interval needs (with its range),
    the mean Δ per baseline and a one-way ANOVA p of Δ across baselines, size, CPU latency and
    the CPU-hours the arm's runs took."""
    latencies = latencies or {}
    kept = runs[runs["selected"].astype(bool)]
    finished = kept[kept["status"] == "finished"]
    rows = []
    for point in spec.points:
        at = finished[finished["budget"] == point]
        ref = at[at["arm"] == spec.reference]
        block = []
        for arm in spec.methods:
            part = at[at["arm"] == arm]
            if part.empty:
                continue
            row = _arm_row(spec, point, arm, part, ref if not ref.empty else None, latencies)
            mine = (runs["budget"] == point) & (runs["arm"] == arm)
            row["diverged"] = int((kept[mine[kept.index]]["status"] != "finished").sum())
            row["cpu_hours"] = float(runs.loc[mine, "train_cpu_seconds"].sum() / 3600)
            block.append(row)
        _adjust(spec, block)
        rows += block
    return pd.DataFrame(rows)


def _adjust(spec: StudySpec, block: list[dict[str, Any]]) -> None:
    """Holm over the arms of one budget, then each arm's verdict."""
    others = [r for r in block if r["arm"] != spec.reference]
    for key in ("p_value", "tost_p"):
        for row, adjusted in zip(others, holm([r[key] for r in others]), strict=True):
            row[key.replace("_value", "") + "_holm"] = adjusted
    level = 1 - spec.confidence
    for row in others:
        row["verdict"] = verdict(row["p_holm"], row["tost_p_holm"], row["diff_mean"], level)
        row["equivalent"] = significant(row["tost_p_holm"], level)


def baselines_table(spec: StudySpec, bases: list[dict[str, Any]]) -> pd.DataFrame:
    """study_baselines.csv: per baseline its seed, test PSNR (per image and mean) and whether
    its validation loss reached a plateau (relative change over its last ``plateau.epochs``)."""
    out = []
    for base in bases:
        scores = _scores(base)
        loss = list(base["curve"]["val_loss"])
        k = spec.plateau.epochs
        change = (loss[-k - 1] - loss[-1]) / loss[-k - 1] if len(loss) > k else math.nan
        row = {
            "baseline": base["baseline"],
            "seed": spec.baseline_config(base["baseline"]).seed,
            "test_psnr": scores.mean_psnr,
            "val_psnr_last": base["curve"]["val_psnr"][-1],
            "val_loss_change": change,
            "plateau": bool(math.isfinite(change) and abs(change) < spec.plateau.rel_change),
            "epochs": len(loss),
            "params": base["params"],
            "flops": base["flops"],
            "train_cpu_seconds": base["train_cpu_seconds"],
            "fingerprint": base["fingerprint"],
        }
        row.update({f"psnr[{n}]": v for n, v in zip(scores.images, scores.psnr, strict=True)})
        out.append(row)
    return pd.DataFrame(out)


def assemble(spec: StudySpec, rows, bases, latencies):
    """The :class:`StudyResult` of the scored runs."""
    from alphaprune.engine.provenance import environment
    from alphaprune.study.prose import conclusion, encoder_of, seeds_note

    runs = runs_table(spec, rows, bases)
    summary = summarise(spec, runs, latencies)
    base_table = baselines_table(spec, bases)
    env = environment(device=spec.baseline_config().device, threads=spec.threads)
    env["encoder"] = encoder_of(spec.baseline_config())
    env["latency"] = {
        "measured": f"{env['cpu']}, {spec.threads} thread(s), batch {spec.latency.batch} of "
        f"{spec.latency.size} px, median of {spec.latency.repeats}",
        "original_ms": latencies.get(("original", "all"), {}).get("latency_ms", math.nan),
    }
    fingerprints = sorted({b["fingerprint"] for b in bases} | set(runs["fingerprint"]))
    return StudyResult(
        spec,
        runs,
        summary,
        base_table,
        conclusion(spec, summary, base_table),
        seeds_note(spec, summary, runs),
        fingerprints,
        env,
        [b["curve"] for b in bases],
    )
