"""A study's sentences, computed from its tables: the conclusion (one verdict per arm, never a
"best" for an arm that is worse), the seeds note and what the encoder is.

Every number in a sentence is read from the summary; the words follow the verdicts of
:mod:`alphaprune.study.analysis` (better / worse / equivalent within the margin / undecided).
"""

from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path

import pandas as pd

from alphaprune.engine.config import ExperimentConfig
from alphaprune.study.spec import StudySpec

__all__ = ["conclusion", "encoder_of", "seeds_note"]


def _pct(confidence: float) -> str:
    return f"{confidence:.0%}".replace("%", " %")


def _p(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.2g}"


def _arm_sentence(spec: StudySpec, row: pd.Series, ref: str) -> str:
    margin = f"±{spec.equivalence_db:g} dB"
    pct = _pct(spec.confidence)
    if not math.isfinite(row["diff_mean"]):
        return f"{row['label']}: too few paired runs to compare with {ref}"
    ci = f"{pct} CI [{row['diff_ci_low']:+.2f}, {row['diff_ci_high']:+.2f}]"
    if row["verdict"] in ("better", "worse"):
        text = (
            f"{row['label']} is {row['verdict']} than {ref} by {abs(row['diff_mean']):.2f} dB "
            f"({ci}, Holm-adjusted p = {_p(row['p_holm'])})"
        )
        if row.get("equivalent"):
            text += f", a difference within the {margin} margin"
        return text
    eq = _pct(1 - 2 * (1 - spec.confidence))
    if row["verdict"] == "equivalent":
        return (
            f"{row['label']} is equivalent to {ref} within {margin} (Δ {row['diff_mean']:+.2f} "
            f"dB, {eq} CI [{row['tost_ci_low']:+.2f}, {row['tost_ci_high']:+.2f}], "
            f"Holm-adjusted TOST p = {_p(row['tost_p_holm'])})"
        )
    return (
        f"{row['label']} against {ref} is undecided (Δ {row['diff_mean']:+.2f} dB, {ci}: "
        f"neither a difference nor equivalence within {margin} is shown)"
    )


def _budget_counts(spec: StudySpec, summary: pd.DataFrame) -> str:
    parts = []
    for point in spec.points:
        if point == spec.primary:
            continue
        rows = summary[(summary["budget"] == point) & (summary["arm"] != spec.reference)]
        if rows.empty:
            continue
        verdicts = "; ".join(f"{r.label} {r.verdict}" for r in rows.itertuples())
        parts.append(f"at {point}: {verdicts}")
    return ("Other budgets — " + " · ".join(parts) + ".") if parts else ""


def _plateau_sentence(spec: StudySpec, baselines: pd.DataFrame) -> str:
    if baselines.empty:
        return ""
    still = baselines[~baselines["plateau"].astype(bool)]
    rule = (
        f"validation loss changed by less than {spec.plateau.rel_change:.0%} over its last "
        f"{spec.plateau.epochs} epochs"
    ).replace("%", " %")
    if still.empty:
        return f"Every baseline ({len(baselines)}) reached a plateau ({rule})."
    which = ", ".join(_still_improving(spec, r) for r in still.itertuples())
    return (
        f"Not trained to a plateau ({rule}): {which}; its arms start from a model that was "
        "still improving."
    )


def _still_improving(spec: StudySpec, row) -> str:
    if not math.isfinite(row.val_loss_change):
        return f"baseline {int(row.baseline)} (only {int(row.epochs)} epochs: too few to tell)"
    change = f"{-row.val_loss_change:+.1%}".replace("%", " %")
    return f"baseline {int(row.baseline)} (val loss {change} over its last {spec.plateau.epochs} epochs)"


def conclusion(spec: StudySpec, summary: pd.DataFrame, baselines: pd.DataFrame) -> str:
    """The study's answer, from the summary: at the primary budget one verdict per arm against
    the reference (Holm-adjusted over the arms), then the verdicts at the other budgets, then
    whether the baselines reached a plateau."""
    ref = spec.label(spec.reference)
    primary = summary[(summary["budget"] == spec.primary) & (summary["arm"] != spec.reference)]
    if primary.empty or primary["diff_mean"].isna().all():
        head = f"Not enough paired runs yet to compare any arm with {ref}."
    else:
        n = int(primary["n_pairs"].max())
        order = {v: i for i, v in enumerate(("better", "equivalent", "undecided", "worse"))}
        rows = sorted(primary.itertuples(index=False), key=lambda r: order.get(r.verdict, 9))
        sentences = [_arm_sentence(spec, pd.Series(r._asdict()), ref) for r in rows]
        head = (
            f"At {spec.primary}, on {n} (baseline, seed) pairs of test PSNR: "
            + "; ".join(sentences)
            + "."
        )
    tail = [_budget_counts(spec, summary), _plateau_sentence(spec, baselines)]
    return " ".join(part for part in [head, *tail] if part)


def _runs_per_seed(spec: StudySpec) -> int:
    """Runs one more seed adds on one baseline (the unpruned control once for all budgets)."""
    total = 0
    for arm in spec.methods:
        points = 1 if spec.methods[arm].kind == "unpruned" else len(spec.points)
        total += points * len(spec.lrs(arm))
    return total


def seeds_note(spec: StudySpec, summary: pd.DataFrame, runs: pd.DataFrame) -> str:
    """One sentence: every paired interval at the primary budget is within the requested
    half-width, or how many seeds per baseline it would need (a range, from the chi-square
    interval of the sd) and the CPU-hours that costs at the measured CPU seconds per run."""
    others = summary[
        (summary["budget"] == spec.primary) & (summary["arm"] != spec.reference)
    ].dropna(subset=["diff_std"])
    if others.empty:
        return ""
    n = int(others["n_pairs"].max())
    half = (others["diff_ci_high"] - others["diff_ci_low"]) / 2
    if half.isna().all():  # every difference identical: no interval to size
        return f"With n = {n} pairs no paired difference varies: no interval can be estimated."
    widest = others.loc[half.idxmax()]
    target = spec.target_halfwidth_db
    pct = _pct(spec.confidence)
    if half.max() <= target:
        return (
            f"With n = {n} pairs every paired {pct} interval at {spec.primary} is within "
            f"±{target:g} dB (widest ±{half.max():.2f} dB)."
        )
    seeds = int(runs.loc[runs["kind"] != "unpruned", "seed"].nunique())
    need, low, high = (widest[k] for k in ("seeds_needed", "seeds_needed_low", "seeds_needed_high"))
    unique = runs.drop_duplicates("fingerprint")
    cpu = unique["train_cpu_seconds"].dropna()
    per_run = float(cpu.mean()) if len(cpu) else math.nan
    extra = max(0, int(need) - seeds) * spec.baselines * _runs_per_seed(spec)
    cost = (
        f"about {extra * per_run / 3600:.1f} CPU-hours at the measured {per_run:.0f} CPU-s per "
        f"run ({spec.threads} thread(s))"
        if math.isfinite(per_run)
        else "CPU time not recorded"
    )
    return (
        f"The widest paired interval at {spec.primary} ({widest['label']} − "
        f"{spec.label(spec.reference)}) is ±{half.max():.2f} dB with n = {n} pairs, wider than "
        f"the requested ±{target:g} dB; about {int(need)} seeds per baseline would be needed "
        f"({int(low)}–{int(high)} from the {pct} interval of the sd, "
        f"[{widest['diff_sd_low']:.2f}, {widest['diff_sd_high']:.2f}] dB): {extra} more runs, "
        f"{cost}."
    )


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file (cached by path, size and modification time: VGG weights are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def encoder_of(cfg: ExperimentConfig) -> str:
    """What the encoder of the study's baselines is: ImageNet VGG-19 weights (which file), a
    user's model, or trained here from random initialisation."""
    if cfg.model.factory:
        return f"model.factory {cfg.model.factory} (initialised by the factory)"
    if cfg.model.vgg_weights:
        path = Path(cfg.model.vgg_weights)
        stat = path.stat()
        digest = _sha256(str(path), stat.st_size, stat.st_mtime_ns)
        return (
            f"VGG-19 encoder up to {cfg.model.layer} initialised from the ImageNet weights in "
            f"{path.name} (sha256 {digest[:12]}), then trained with the decoder"
        )
    return (
        f"VGG-19 architecture up to {cfg.model.layer}, trained here from random initialisation "
        "(no ImageNet weights: model.vgg_weights is not set)"
    )
