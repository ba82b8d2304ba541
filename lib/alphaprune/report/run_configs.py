"""The week's runs as the engine sees them: each run's config and its checkpoints' paths.

A run's config is the params file's ``seed`` and ``device``, under its ``defaults``, under the
run's own ``config`` (:func:`alphaprune.engine.config.merge_configs`); the runner sets its
``name``, ``output_dir`` (:data:`RUNS_DIR`) and ``init_from`` (where it starts).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from alphaprune.engine.config import merge_configs, resolve_config_paths

if TYPE_CHECKING:
    from alphaprune.report.schema import ReportParams, RunStart

__all__ = ["BASELINE", "RUNS_DIR", "run_checkpoint", "start_checkpoint", "run_config", "run_specs"]

#: Folder (inside the report folder) holding the training runs.
RUNS_DIR = "runs"
#: Run name reserved for the unpruned model.
BASELINE = "baseline"


def run_checkpoint(run: str, alpha: float | None = None) -> str:
    """Checkpoint path of ``run`` (relative to the report folder): last epoch, or milestone at α."""
    from alphaprune.engine.checkpoint import last_path, milestone_path  # imports torch

    run_dir = Path(RUNS_DIR) / run
    path = last_path(run_dir) if alpha is None else milestone_path(run_dir, alpha)
    return path.as_posix()


def start_checkpoint(start: RunStart) -> str:
    """The checkpoint a run starts from (the shrunk copy's path when ``start.shrink``)."""
    from alphaprune.engine.checkpoint import shrunk_path

    path = run_checkpoint(start.run, start.alpha)
    return shrunk_path(path).as_posix() if start.shrink else path


def run_config(params: ReportParams, name: str) -> dict[str, Any]:
    """The full engine config dict of run ``name`` (``baseline`` or an experiment)."""
    if name == BASELINE:
        own, init_from = params.baseline, None
    else:
        experiment = params.experiment(name)
        own, init_from = experiment.config, start_checkpoint(experiment.start)
    config = merge_configs(
        {"seed": params.seed, "device": params.device}, merge_configs(params.defaults, own)
    )
    config.update(name=name, output_dir=RUNS_DIR)
    # relative paths in the params are relative to the project folder, not the report folder
    resolve_config_paths(config, params.base_dir())
    if init_from is not None:
        config["init_from"] = init_from
    return config


def run_specs(params: ReportParams) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The baseline's engine config and the experiments (``name``, ``label``, ``start``,
    ``config``) as :func:`alphaprune.report.runs.run_all` takes them (paths relative to the
    report folder)."""
    experiments = [
        {
            "name": e.name,
            "label": e.label or e.name,
            "start": e.start.model_dump(),
            "config": params.run_config(e.name),
        }
        for e in params.experiments
    ]
    return params.run_config(BASELINE), experiments
