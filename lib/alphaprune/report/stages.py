"""The report's stages: their names and order, their notebooks and their parameters.

Each stage is one notebook, ``notebooks/<stage>.ipynb``, executed into ``<report folder>/<stage>.ipynb``
with the same parameters: the params file itself (:func:`papermill_parameters`). The numbers are
the order: running the notebooks in sorted file-name order builds the report. What each stage
writes (and which of it later stages need) is registered in :mod:`alphaprune.report.outputs`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from alphaprune.engine.config import ConfigError, read_yaml
from alphaprune.errors import ReportParamsError

__all__ = [
    "PRUNE",
    "RECONSTRUCT",
    "SHRINK",
    "GPU",
    "STUDY",
    "REPORT",
    "STAGES",
    "stage_notebook",
    "papermill_parameters",
    "stage_parameters",
]

PRUNE = "01_prune"
RECONSTRUCT = "02_reconstruct"
SHRINK = "03_shrink"
GPU = "04_gpu_addendum"
STUDY = "05_study"
REPORT = "06_report"
#: The notebooks, in the order they run. Each name is also the executed notebook's file name.
STAGES: tuple[str, ...] = (
    PRUNE,
    RECONSTRUCT,
    SHRINK,
    GPU,
    STUDY,  # a week without a study: nothing to do
    REPORT,
)


def stage_notebook(notebooks: Path, stage: str) -> Path:
    """The notebook of ``stage`` in the folder ``notebooks``."""
    return notebooks / f"{stage}.ipynb"


def stage_parameters(
    data: dict[str, Any], out_dir: str | Path | None = None, retrain: bool = False
) -> dict[str, Any]:
    """The papermill parameters of every stage: the params file's top-level keys as read (as
    ``papermill -f`` passes them), the output folder and ``retrain`` (``alphaprune report
    --force``), which the notebooks' ``parameters`` cells declare."""
    parameters = copy.deepcopy(data)
    if out_dir is not None:
        parameters["out_dir"] = str(out_dir)
    if retrain:
        parameters["retrain"] = True
    return parameters


def papermill_parameters(
    path: str | Path, out_dir: str | Path | None = None, retrain: bool = False
) -> dict[str, Any]:
    """The parameters ``papermill -f PATH [-p out_dir OUT_DIR] [-p retrain True]`` passes.

    The file is read with :func:`alphaprune.engine.config.read_yaml`, like every params file
    (duplicate keys are refused). Relative paths stay as written: the notebooks resolve them
    against the project folder, as ``alphaprune report`` does.
    """
    try:
        data = read_yaml(Path(path))
    except ConfigError as exc:
        raise ReportParamsError(str(exc)) from None
    return stage_parameters(data, out_dir, retrain)
