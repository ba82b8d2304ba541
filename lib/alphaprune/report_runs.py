"""The training runs of a weekly report: the baseline and each pruning experiment, in order.

Used by ``notebooks/01_prune.ipynb``. Every run lives in ``<output_dir>/<name>`` (``runs/`` of the
report folder) and is reused when its inputs are unchanged: a run's *fingerprint* hashes its
config (minus ``device``/``output_dir``), where it starts and the fingerprint of the run it starts
from. A run whose fingerprint changed is deleted and trained again; an unchanged one resumes
(a finished one returns at once). A start with ``shrink: true`` first shrinks the source
checkpoint (:func:`alphaprune.checkpoint.shrink_checkpoint`) into the path given as ``init_from``.

A run whose loss becomes inf/NaN does not stop the report: its result has ``diverged_at`` set, its
checkpoint is its last finite epoch, and :func:`summary_table` shows it as *diverged at epoch N*.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .atomic import atomic_write_text
from .checkpoint import checkpoint_info, last_path, milestone_path, shrink_checkpoint
from .config import ExperimentConfig, config_from_dict
from .train import Diverged, RunResult, diverged_at, prune, train_baseline

__all__ = ["run_all", "run_fingerprint", "summary_table", "FINGERPRINT_FILE"]

FINGERPRINT_FILE = "report_fingerprint.json"
_FREE_KEYS = ("device", "output_dir")


def run_fingerprint(cfg: ExperimentConfig, start: Mapping[str, Any] | None, source: str) -> str:
    """Hash of what a run's result depends on: its config, its start and its source's fingerprint."""
    config = {k: v for k, v in cfg.to_dict().items() if k not in _FREE_KEYS}
    payload = {
        "config": config, "start": dict(start or {}), "source": source,
        "inputs": _input_manifest(cfg),
    }  # fmt: skip
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _prepare(cfg: ExperimentConfig, fingerprint: str) -> bool:
    """Make ``cfg.run_dir`` hold a run with ``fingerprint``; True if it was (re)started empty."""
    run_dir = cfg.run_dir
    marker = run_dir / FINGERPRINT_FILE
    try:
        recorded = json.loads(marker.read_text())["fingerprint"]
    except (FileNotFoundError, KeyError, ValueError):
        recorded = None
    if recorded == fingerprint and last_path(run_dir).exists():
        return False
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    atomic_write_text(marker, json.dumps({"fingerprint": fingerprint, "name": cfg.name}))
    return True


def _source_checkpoint(output_dir: str, start: Mapping[str, Any]) -> Path:
    run_dir = Path(output_dir) / start["run"]
    alpha = start.get("alpha")
    path = last_path(run_dir) if alpha is None else milestone_path(run_dir, float(alpha))
    if alpha is not None and path.exists():
        stored = checkpoint_info(path)["alpha"]
        if stored is None or float(stored) != float(alpha):
            raise ValueError(f"{path} holds a model at α={stored}, not the α={alpha} asked for")
    return path


def _input_manifest(cfg: ExperimentConfig) -> dict[str, Any]:
    """What a run reads from disk besides its config: the image folder and the VGG weights file
    (names, sizes, modification times), so that replacing them retrains instead of reusing."""
    manifest: dict[str, Any] = {}
    if cfg.data.source != "bundled":
        folder = Path(cfg.data.source)
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        manifest["data"] = [
            (p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
            for p in files
        ]
    if cfg.model.vgg_weights and Path(cfg.model.vgg_weights).is_file():
        stat = Path(cfg.model.vgg_weights).stat()
        manifest["vgg_weights"] = (stat.st_size, stat.st_mtime_ns)
    return manifest


def run_all(
    baseline: Mapping[str, Any],
    experiments: Sequence[Mapping[str, Any]],
    progress: bool = True,
) -> dict[str, RunResult]:
    """Train ``baseline`` then every experiment, in order; returns results by run name.

    ``baseline`` is an engine config dict; each experiment is ``{"name", "label", "start":
    {"run", "alpha", "shrink"}, "config"}`` whose ``config`` (an engine config dict) has
    ``init_from`` set to the start checkpoint (see :func:`alphaprune.report_params.run_specs`).
    """
    results: dict[str, RunResult] = {}
    fingerprints: dict[str, str] = {}
    cfg = config_from_dict(baseline, source="baseline")
    fingerprints[cfg.name] = run_fingerprint(cfg, None, "")
    _prepare(cfg, fingerprints[cfg.name])
    results[cfg.name] = _diverged_or(lambda: train_baseline(cfg, progress=progress))
    for experiment in experiments:
        name = experiment["name"]
        cfg = config_from_dict(experiment["config"], source=f"experiment '{name}'")
        start = dict(experiment.get("start") or {"run": "baseline"})
        if start["run"] not in fingerprints:
            raise ValueError(
                f"experiment '{name}' starts from run '{start['run']}', which has not run before it"
            )
        fingerprints[name] = run_fingerprint(cfg, start, fingerprints[start["run"]])
        fresh = _prepare(cfg, fingerprints[name])
        source = _source_checkpoint(cfg.output_dir, start)
        if not source.exists():
            epoch = diverged_at(Path(cfg.output_dir) / start["run"])
            why = (
                f"it diverged at epoch {epoch}"
                if epoch is not None
                else "is there an epoch at that α in its schedule?"
            )
            raise FileNotFoundError(
                f"experiment '{name}' starts from {source}, which run '{start['run']}' did not "
                f"write ({why})"
            )
        if start.get("shrink"):
            if cfg.init_from is None:
                raise ValueError(f"experiment '{name}': start.shrink needs init_from (the target)")
            if fresh or not Path(cfg.init_from).exists():
                shrink_checkpoint(source, cfg.init_from, image_size=cfg.data.crop)
        original = cfg.init_from or source
        results[name] = _diverged_or(lambda c=cfg, o=original: prune(c, o, progress=progress))
    return results


def _diverged_or(train: Any) -> RunResult:
    """``train()``'s result; for a run that diverges, the result up to its last finite epoch."""
    try:
        return train()
    except Diverged as exc:
        print(f"warning: {exc}", flush=True)
        return exc.result


def summary_table(
    results: Mapping[str, RunResult], labels: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """One row per run: settings and the final epoch's α, validation loss, PSNR and SSIM.

    A run that diverged has ``status`` "diverged at epoch N" (else "finished"), its label says
    so, and its validation metrics are NaN (its last epoch's were not finite).
    """
    labels = labels or {}
    rows = []
    for name, result in results.items():
        cfg = result.config
        metrics = result.metrics
        last = metrics.iloc[-1] if len(metrics) else None
        schedule = dict(cfg.schedule) if name != "baseline" else {}
        diverged = getattr(result, "diverged_at", None)
        status = "finished" if diverged is None else f"diverged at epoch {diverged}"
        label, final_alpha = labels.get(name, name), _final_alpha(last)
        if diverged is not None:
            label, last = f"{label} ({status})", None
        rows.append(
            {
                "run": name,
                "label": label,
                "schedule": _describe(schedule) if schedule else "—",
                "lr": schedule.get("lr", cfg.optimizer.lr) if schedule else cfg.optimizer.lr,
                "weight_decay": cfg.optimizer.weight_decay,
                "epochs": cfg.epochs,
                "target": cfg.pruning.target if name != "baseline" else "—",
                "final_alpha": final_alpha,
                "val_loss": float(last["val_loss"]) if last is not None else float("nan"),
                "val_psnr": float(last["val_psnr"]) if last is not None else float("nan"),
                "val_ssim": float(last["val_ssim"]) if last is not None else float("nan"),
                "status": status,
            }
        )
    return pd.DataFrame(rows)


def _final_alpha(last: pd.Series | None) -> float | None:
    if last is None or last["alpha"] is None or pd.isna(last["alpha"]):
        return None
    return float(last["alpha"])


def _describe(schedule: Mapping[str, Any]) -> str:
    """Short text for a schedule dict, e.g. ``restart α=0.1, rate 0.3``."""
    kind = schedule.get("kind", "?")
    if kind == "constant":
        return f"constant α = {schedule.get('alpha', 1.0):g}"
    if kind in ("exponential", "restart"):
        start = schedule.get("alpha", schedule.get("start", 1.0))
        return f"{kind} from α = {start:g}, rate {schedule.get('rate', 0.3):g}"
    if kind == "linear":
        return (
            f"linear α {schedule.get('start', 1.0):g} → {schedule.get('end', 0.0):g} "
            f"over {schedule.get('epochs', 10)} epochs"
        )
    if kind == "step":
        return "step α " + " → ".join(f"{v:g}" for v in schedule.get("values", []))
    return str(kind)
