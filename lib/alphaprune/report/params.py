"""Re-exports, in one place, the names about a week's params file (YAML) that notebooks and tests use.

One file per week describes the runs (a baseline and the pruning experiments), what each
notebook shows, and the report's prose. Relative paths in it are relative to the project folder.
Every run config is the engine's :class:`alphaprune.engine.config.ExperimentConfig` written as a dict:
``defaults`` is merged under each run's own ``config``. Example (abridged)::

    week: 9
    defaults: {model: {layer: relu2_1}, data: {crop: 64}}
    baseline: {epochs: 4}
    experiments:
      - name: lr0.01
        label: "α = 0, lr 0.01"
        start: baseline
        config: {epochs: 3, schedule: {kind: constant, alpha: 0.0, lr: 0.01}}
    reconstruct: {experiment: lr0.01}
    shrink: {experiment: lr0.01}
    gpu: {experiment: lr0.01}
    notes: {progress: "...", plan: "..."}

This module gathers the names the notebooks and tests use; each lives in a module with one job:
:mod:`~alphaprune.report.schema` (the models), :mod:`~alphaprune.report.validation` (loading and
the checks across sections), :mod:`~alphaprune.report.run_configs` (each run's engine config and
checkpoints), :mod:`~alphaprune.report.stages` (the stages and their papermill parameters) and
:mod:`~alphaprune.report.outputs` (what each stage writes, :func:`stage_inputs`).
"""

from __future__ import annotations

from alphaprune.errors import ReportParamsError
from alphaprune.report.outputs import stage_inputs
from alphaprune.report.run_configs import (
    BASELINE,
    RUNS_DIR,
    run_checkpoint,
    run_config,
    run_specs,
    start_checkpoint,
)
from alphaprune.report.schema import (
    Experiment,
    GpuParams,
    Notes,
    ReconstructParams,
    ReportParams,
    RunStart,
    ShrinkParams,
)
from alphaprune.report.stages import STAGES, papermill_parameters
from alphaprune.report.validation import load_report_params, report_params_from_dict

__all__ = [
    "ReportParams",
    "ReportParamsError",
    "Experiment",
    "RunStart",
    "ReconstructParams",
    "ShrinkParams",
    "GpuParams",
    "Notes",
    "load_report_params",
    "report_params_from_dict",
    "run_specs",
    "run_config",
    "papermill_parameters",
    "run_checkpoint",
    "start_checkpoint",
    "stage_inputs",
    "STAGES",
    "RUNS_DIR",
    "BASELINE",
]
