"""The training runs of a weekly report: the baseline and each pruning experiment, in order.

Used by ``notebooks/01_prune.ipynb``. Every run lives in the shared run store
(:mod:`alphaprune.study.store`), keyed by the fingerprint of what determines it (config, start run and
its milestone, input files, training-code version), and is reused by any week or study with the
same fingerprint; ``runs/<name>`` of the report folder links to it. A start with ``shrink: true``
prunes the shrunk model of its start checkpoint (``start.pt`` in the run's folder).

A run whose loss becomes inf/NaN does not stop the report: its result has ``diverged_at`` set, its
checkpoint is its last finite epoch, and :func:`summary_table` shows it as *diverged at epoch N*
(the store keeps it as a finished run: rerunning the same config would diverge again). A run whose
training loss stays finite but rises above :data:`EXPLODED_FACTOR` times the loss it started from
(e.g. Adam at lr 0.1: 4e10) trains to its last epoch; :func:`summary_table` shows it as *exploded
at epoch N* (:func:`exploded_at`), so that its numbers are not read as a result.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from alphaprune.engine.checkpoint import checkpoint_info, last_path
from alphaprune.engine.config import ExperimentConfig, config_from_dict
from alphaprune.engine.train import RunResult, diverged_at
from alphaprune.errors import Diverged
from alphaprune.report.run_configs import BASELINE
from alphaprune.report.schema import Experiment, RunStart
from alphaprune.study.store import RunStore, StoredRun

__all__ = [
    "run_all",
    "summary_table",
    "original_check",
    "exploded_at",
    "start_train_loss",
    "EXPLODED_FACTOR",
    "RETRAIN_ENV",
]

#: Set to "1" by ``alphaprune report --force`` for its notebooks: retrain every run of the week.
RETRAIN_ENV = "ALPHAPRUNE_RETRAIN"
#: A run whose training loss exceeds this many times the loss it started from has *exploded*:
#: 30 dB worse, an optimiser blowing up (4e10 at lr 0.1 in week 9) rather than the price of
#: cutting channels.
EXPLODED_FACTOR = 1000.0


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
    results: Mapping[str, RunResult],
    labels: Mapping[str, str] | None = None,
    experiments: Sequence[Experiment] = (),
) -> pd.DataFrame:
    """One row per run: settings, the final epoch's α, training and validation loss, PSNR and
    SSIM, and ``status``: "finished", "diverged at epoch N" (a loss became inf/NaN: the validation
    metrics are NaN) or "exploded at epoch N (train loss 3.96e+10)" (:func:`exploded_at`; the
    run's highest training loss).

    ``experiments`` (the params' experiments) say where each run started, so that a run that
    explodes in its first epoch is caught (:func:`start_train_loss`); without them a run is
    measured against its own first epoch. ``train_loss_start`` is the loss a run is measured
    against and ``train_loss_peak`` its highest training loss.
    """
    labels = labels or {}
    starts = {e.name: e.start for e in experiments}
    rows = []
    for name, result in results.items():
        cfg, metrics = result.config, result.metrics
        last = metrics.iloc[-1] if len(metrics) else None
        schedule = dict(cfg.schedule) if name != BASELINE else {}
        reference = start_train_loss(results, starts[name]) if name in starts else None
        status, reference = _status(result, reference)
        final_alpha = _final_alpha(last)
        if result.diverged_at is not None:
            last = None
        losses = (
            pd.to_numeric(metrics["train_loss"]) if len(metrics) else pd.Series([], dtype=float)
        )
        rows.append(
            {
                "run": name,
                "label": labels.get(name, name),
                "schedule": _describe(schedule) if schedule else "—",
                # the base rate: warm-up and decay scale it step by step (metrics.csv's lr)
                "lr": schedule.get("lr", cfg.optimizer.lr) if schedule else cfg.optimizer.lr,
                "lr_decay": cfg.optimizer.lr_decay,
                "weight_decay": cfg.optimizer.weight_decay,
                "epochs": cfg.epochs,
                "target": cfg.pruning.target if name != BASELINE else "—",
                "keep": cfg.pruning.keep if name != BASELINE else float("nan"),
                "final_alpha": final_alpha,
                "train_loss": _value(last, "train_loss"),
                "train_loss_start": float("nan") if reference is None else reference,
                "train_loss_peak": float(losses.max()) if len(losses) else float("nan"),
                "val_loss": _value(last, "val_loss"),
                "val_psnr": _value(last, "val_psnr"),
                "val_ssim": _value(last, "val_ssim"),
                "status": status,
            }
        )
    return pd.DataFrame(rows)


def _value(last: pd.Series | None, column: str) -> float:
    return float(last[column]) if last is not None else float("nan")


def _status(result: RunResult, reference: float | None) -> tuple[str, float | None]:
    """The run's status and the training loss its explosion is measured against."""
    if result.diverged_at is not None:
        return f"diverged at epoch {result.diverged_at}", reference
    epoch, reference = exploded_at(result.metrics, reference)
    if epoch is None:
        return "finished", reference
    peak = float(pd.to_numeric(result.metrics["train_loss"]).max())
    return f"exploded at epoch {epoch} (train loss {peak:.3g})", reference


def start_train_loss(results: Mapping[str, RunResult], start: RunStart) -> float | None:
    """The training loss of the epoch a run starts from: the start run's last epoch, or its last
    epoch at ``start.alpha`` (the milestone it starts from); None when that run is not known."""
    source = results.get(start.run)
    if source is None or not len(source.metrics):
        return None
    metrics = source.metrics
    if start.alpha is not None:
        alphas = pd.to_numeric(metrics["alpha"], errors="coerce")
        metrics = metrics[alphas == float(start.alpha)]
    return float(metrics["train_loss"].iloc[-1]) if len(metrics) else None


def exploded_at(
    metrics: pd.DataFrame, start_loss: float | None = None
) -> tuple[int | None, float | None]:
    """The first epoch whose training loss is above :data:`EXPLODED_FACTOR` times the reference
    (None if none), and the reference: the smaller of ``start_loss`` (the loss of the checkpoint
    the run started from) and the run's first epoch's training loss.

    A loss that stays finite does not stop training (only inf/NaN does), so a run at a far too
    high learning rate can end with a loss of 4e10 and finite metrics: this says so.
    """
    if not len(metrics):
        return None, start_loss
    losses = pd.to_numeric(metrics["train_loss"], errors="coerce")
    candidates = [start_loss, float(losses.iloc[0])]
    finite = [c for c in candidates if c is not None and math.isfinite(c) and c > 0]
    if not finite:
        return None, start_loss
    reference = min(finite)
    over = metrics.loc[losses > EXPLODED_FACTOR * reference, "epoch"]
    return (int(over.iloc[0]) if len(over) else None), reference


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
