"""Writing a study: its tables, figures and ``study.json`` (conclusion, provenance), atomically."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from alphaprune.atomic import atomic_target, atomic_write_bytes, atomic_write_text
from alphaprune.study.analysis import StudyResult
from alphaprune.study.store import RunStore

__all__ = ["OUTPUTS", "study_record", "write_study"]

#: What :func:`write_study` writes, relative to its folder.
OUTPUTS = {
    "runs": "tables/study.csv",
    "summary": "tables/study_summary.csv",
    "baselines": "tables/study_baselines.csv",
    "figure": "figures/study.png",
    "curves": "figures/study_curves.png",
    "baseline_curves": "figures/study_baselines.png",
    "json": "study.json",
}


#: The per-run timing columns ``study.json`` repeats (one row per run, reused runs included:
#: their seconds are those of the training that made them).
_TIMING = [
    "fingerprint",
    "arm",
    "budget",
    "baseline",
    "seed",
    "threads",
    "reused",
    "train_seconds",
    "train_cpu_seconds",
]


def _finite(value: Any) -> Any:
    """JSON has no NaN: None instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def study_record(result: StudyResult, command: str | None = None) -> dict[str, Any]:
    """``study.json``: the conclusion and seeds note, the study's design, the encoder, the
    environment (commit, library hash, versions, device, threads per run), each run's wall and
    CPU seconds and the total CPU-hours, the baselines with their curves, and every run's
    fingerprint."""
    spec, runs = result.spec, result.runs
    unique = runs.drop_duplicates("fingerprint")
    bases = result.baselines
    return _finite(
        {
            "study": spec.name,
            "command": command,
            "conclusion": result.conclusion,
            "seeds_note": result.seeds_note,
            "reference": spec.reference,
            "primary_budget": spec.primary,
            "budgets": list(spec.points),
            "equivalence_db": spec.equivalence_db,
            "confidence": spec.confidence,
            "baselines": spec.baselines,
            "seeds": sorted(int(s) for s in runs["seed"].unique()),
            "encoder": result.environment.get("encoder"),
            "test_images": sorted({c[5:-1] for c in runs.columns if c.startswith("psnr[")}),
            "environment": result.environment,
            "cpu_hours": float(
                (unique["train_cpu_seconds"].sum() + bases["train_cpu_seconds"].sum()) / 3600
            ),
            "runs_trained_now": int((~unique["reused"].astype(bool)).sum()),
            "run_timing": unique[_TIMING].to_dict("records"),
            "original": bases.drop(columns=["fingerprint"]).to_dict("records"),
            "baseline_curves": result.baseline_curves,
            "runs": result.fingerprints,
        }
    )


def write_study(
    result: StudyResult,
    folder: str | Path,
    store: RunStore | None = None,
    command: str | None = None,
) -> dict[str, Path]:
    """Write the tables, figures and ``study.json`` (:data:`OUTPUTS`) into ``folder``, each
    atomically; with ``store``, record the runs used as the folder's references."""
    import matplotlib.pyplot as plt

    from alphaprune.study.figures import plot_baselines, plot_curves, plot_study

    folder = Path(folder)
    paths = {key: folder / name for key, name in OUTPUTS.items()}
    for key, table in (
        ("runs", result.runs),
        ("summary", result.summary),
        ("baselines", result.baselines),
    ):
        atomic_write_bytes(paths[key], table.to_csv(index=False).encode())
    for key, plot in (
        ("figure", plot_study),
        ("curves", plot_curves),
        ("baseline_curves", plot_baselines),
    ):
        fig = plot(result)
        with atomic_target(paths[key], suffix=".png") as tmp:
            fig.savefig(tmp, dpi=130)
        plt.close(fig)
    record = study_record(result, command)
    atomic_write_text(paths["json"], json.dumps(record, indent=1, allow_nan=False))
    if store is not None:
        store.add_reference(folder, result.fingerprints, role="study")
    return paths
