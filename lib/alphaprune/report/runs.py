"""The training runs of a weekly report: the baseline and each pruning experiment, in order.

Used by ``notebooks/01_prune.ipynb``. Every run lives in the shared run store
(:mod:`alphaprune.study.store`), keyed by the fingerprint of what determines it (config, start run and
its milestone, input files, training-code version), and is reused by any week or study with the
same fingerprint; ``runs/<name>`` of the report folder links to it. A start with ``shrink: true``
prunes the shrunk model of its start checkpoint (``start.pt`` in the run's folder).

A run whose loss becomes inf/NaN does not stop the report: its result has ``diverged_at`` set, its
checkpoint is its last finite epoch, and :func:`summary_table` shows it as *diverged at epoch N*
(the store keeps it as a finished run: rerunning the same config would diverge again).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from alphaprune.engine.checkpoint import checkpoint_info, last_path
from alphaprune.engine.config import ExperimentConfig, config_from_dict
from alphaprune.engine.train import RunResult, diverged_at
from alphaprune.errors import Diverged
from alphaprune.study.store import RunStore, StoredRun

__all__ = ["run_all", "summary_table", "original_check", "RETRAIN_ENV"]

#: Set to "1" by ``alphaprune report --force`` for its notebooks: retrain every run of the week.
RETRAIN_ENV = "ALPHAPRUNE_RETRAIN"


def run_all(
    baseline: Mapping[str, Any],
    experiments: Sequence[Mapping[str, Any]],
    progress: bool = True,
    store: RunStore | None = None,
    force: bool = False,
    log=print,
) -> dict[str, RunResult]:
    """Train ``baseline`` then every experiment, in order, in the shared run store; returns results
    by run name.

    ``baseline`` is an engine config dict; each experiment is ``{"name", "label", "start":
    {"run", "alpha", "shrink"}, "config"}`` (see :func:`alphaprune.report.run_configs.run_specs`).
    Every run is looked up by fingerprint in ``store`` (default: the shared store, see
    :mod:`alphaprune.study.store`) and trained only when missing — another week with the same baseline
    reuses it (the log says ``reused``). ``runs/<name>`` in the working directory (the report
    folder) becomes a link to the run's folder in the store, and the report folder records the
    fingerprints it uses (``runs.json``, and the store's references): each run is held before
    it trains, so ``runs gc`` never deletes what the report is still building on. ``force``
    retrains all. An experiment may not start from the last checkpoint of a run that diverged
    (:class:`~alphaprune.errors.Diverged`: that checkpoint is no result).
    """
    store = store or RunStore(log=log)
    force = force or os.environ.get(RETRAIN_ENV) == "1"  # set by `alphaprune report --force`
    owner = Path.cwd()
    stored: dict[str, StoredRun] = {}
    results: dict[str, RunResult] = {}
    cfg = config_from_dict(baseline, source="baseline")
    store.hold(owner, [store.fingerprint(cfg, "baseline")])  # before anything trains
    stored[cfg.name] = store.run(cfg, "baseline", label=cfg.name, progress=progress, force=force)
    results[cfg.name] = _result(store, stored[cfg.name], cfg)
    for experiment in experiments:
        name = experiment["name"]
        cfg = config_from_dict(experiment["config"], source=f"experiment '{name}'")
        source, alpha, shrink = _start(experiment, stored, results)
        store.hold(owner, [store.fingerprint(cfg, "prune", source, alpha, shrink)])
        stored[name] = store.run(
            cfg,
            "prune",
            source=source,
            source_alpha=alpha,
            shrink_source=shrink,
            label=name,
            progress=progress,
            force=force,
        )
        results[name] = _result(store, stored[name], cfg)
    store.add_reference(owner, [run.fingerprint for run in stored.values()])
    return results


def _start(
    experiment: Mapping[str, Any],
    stored: Mapping[str, StoredRun],
    results: Mapping[str, RunResult],
) -> tuple[StoredRun, float | None, bool]:
    """The stored run ``experiment`` starts from, the α of its milestone (None: its last
    checkpoint) and whether it is shrunk first; errors name the experiment and its start."""
    name = experiment["name"]
    start = dict(experiment.get("start") or {"run": "baseline"})
    if start["run"] not in stored:
        raise ValueError(
            f"experiment '{name}' starts from run '{start['run']}', which has not run before it"
        )
    alpha = None if start.get("alpha") is None else float(start["alpha"])
    source = stored[start["run"]]
    diverged = results[start["run"]].diverged_at
    if alpha is None and diverged is not None:
        raise Diverged(
            start["run"],
            source.run_dir,
            diverged,
            {},
            f"experiment '{name}' starts from the last checkpoint of run '{start['run']}', which "
            f"diverged at epoch {diverged}: that is its last finite epoch, not a result; start "
            f"'{name}' from a milestone before the divergence (start.alpha) or fix "
            f"'{start['run']}'",
        )
    path = source.checkpoint if alpha is None else source.milestone(alpha)
    if not path.exists():
        epoch = diverged_at(source.run_dir)
        why = (
            f"it diverged at epoch {epoch}"
            if epoch is not None
            else "is there an epoch at that α in its schedule?"
        )
        raise FileNotFoundError(
            f"experiment '{name}' starts from {path}, which run '{start['run']}' did not "
            f"write ({why})"
        )
    if alpha is not None:
        stored_alpha = checkpoint_info(path)["alpha"]
        if stored_alpha is None or float(stored_alpha) != alpha:
            raise ValueError(f"{path} holds a model at α={stored_alpha}, not α={alpha}")
    return source, alpha, bool(start.get("shrink"))


def _result(store: RunStore, run: StoredRun, cfg: ExperimentConfig) -> RunResult:
    """The week's view of a stored run: ``<output_dir>/<name>`` links to it."""
    link = store.link(run, Path(cfg.output_dir) / cfg.name)
    metrics = pd.read_csv(link / "metrics.csv")
    metrics["alpha"] = metrics["alpha"].astype(object).where(metrics["alpha"].notna(), None)
    epoch = diverged_at(link)
    if epoch is not None:
        metrics = metrics[metrics["epoch"] < epoch].reset_index(drop=True)
        print(f"warning: run '{cfg.name}' diverged at epoch {epoch}", flush=True)
    return RunResult(link, last_path(link), metrics, cfg, diverged_at=epoch)


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


def original_check(
    results: Mapping[str, RunResult], labels: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Every experiment's final model against the original on the baseline's validation items:
    the mean per-item PSNR difference, its bootstrap 95 % interval and ``above_original`` — True
    when a pruned model beats its own original by more than the evaluation noise, which the
    report must flag. Runs whose model has other shapes (shrunk starts) are compared too."""
    from alphaprune.engine.checkpoint import load_model
    from alphaprune.engine.evaluate import compare_to_original
    from alphaprune.engine.train import make_datasets

    labels = labels or {}
    base = results["baseline"]
    # built by the week's own factory (the runs' configs), never one a checkpoint names
    original = load_model(base.checkpoint, verbose=False, factory=base.config.model.factory)
    val = make_datasets(base.config)[1]
    rows = []
    for name, result in results.items():
        if name == "baseline" or getattr(result, "diverged_at", None) is not None:
            continue
        model = load_model(result.checkpoint, verbose=False, factory=result.config.model.factory)
        scores = compare_to_original(model, original, val, batch_size=32)
        rows.append({"run": name, "label": labels.get(name, name), **scores})
    columns = [
        "run",
        "label",
        "vs_original",
        "vs_original_ci_low",
        "vs_original_ci_high",
        "above_original",
    ]
    return pd.DataFrame(rows, columns=columns)
