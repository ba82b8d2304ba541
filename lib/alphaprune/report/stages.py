"""The report's stages: their names and order, what each leaves for later ones, their parameters.

Each stage is one notebook, ``notebooks/<stage>.ipynb``, executed into ``<report folder>/<stage>.ipynb``
with the same parameters: the params file itself (:func:`papermill_parameters`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alphaprune.engine.config import PATH_KEYS, ConfigError, read_yaml, resolve_path
from alphaprune.errors import ReportParamsError
from alphaprune.paths import project_dir
from alphaprune.report.run_configs import BASELINE, run_checkpoint
from alphaprune.report.schema import ReportParams

__all__ = [
    "PRUNE",
    "RECONSTRUCT",
    "SHRINK",
    "GPU",
    "STUDY",
    "REPORT",
    "STAGES",
    "stage_notebook",
    "stage_inputs",
    "papermill_parameters",
    "relative_paths",
]

PRUNE = "01_prune"
RECONSTRUCT = "02_reconstruct"
SHRINK = "03_shrink"
GPU = "04_gpu_addendum"
STUDY = "06_study"
REPORT = "05_report"
#: The notebooks, in the order they run. Each name is also the executed notebook's file name.
STAGES: tuple[str, ...] = (
    PRUNE,
    RECONSTRUCT,
    SHRINK,
    GPU,
    STUDY,  # before the report, which shows it (a week without a study: nothing to do)
    REPORT,
)
#: The files (relative to the output folder) each stage writes that later stages read, besides
#: the checkpoints of 01_prune (see :func:`stage_inputs`).
_OUTPUTS: dict[str, tuple[str, ...]] = {
    PRUNE: ("tables/experiments.csv",),
    RECONSTRUCT: ("tables/reconstruction.csv", "figures/reconstruction.png"),
    SHRINK: ("tables/shrink.csv", "tables/shrink_check.csv"),
    GPU: ("tables/benchmark.csv", "figures/benchmark.png"),
    STUDY: (
        "tables/study.csv",
        "tables/study_summary.csv",
        "figures/study.png",
        "figures/study_curves.png",
        "study.json",
    ),
    REPORT: (),
}


def stage_notebook(notebooks: Path, stage: str) -> Path:
    """The notebook of ``stage`` in the folder ``notebooks``."""
    return notebooks / f"{stage}.ipynb"


def stage_inputs(params: ReportParams) -> dict[str, list[str]]:
    """The files (relative to the output folder) each stage writes that later stages read."""
    runs = [BASELINE] + sorted(
        {params.reconstruct.experiment, params.shrink.experiment, params.gpu.experiment}
    )
    inputs = {stage: list(_OUTPUTS[stage]) for stage in STAGES}
    inputs[PRUNE] = [run_checkpoint(r) for r in runs] + inputs[PRUNE]
    if not params.study:
        inputs[STUDY] = []
    return inputs


def _path_slots(data: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str]]:
    """``(key as shown, mapping, key)`` of every file path a params mapping holds (the output
    and notebook folders aside): ``gpu.results_csv`` and each run config's
    ``data.source`` / ``model.vgg_weights`` (``data.source: bundled`` is not a path)."""
    gpu = data.get("gpu")
    if isinstance(gpu, dict) and isinstance(gpu.get("results_csv"), str) and gpu["results_csv"]:
        yield "gpu.results_csv", gpu, "results_csv"
    configs = [("defaults", data.get("defaults")), ("baseline", data.get("baseline"))]
    experiments = data.get("experiments")
    for i, experiment in enumerate(experiments if isinstance(experiments, list) else []):
        if isinstance(experiment, dict):
            configs.append((f"experiments[{i}].config", experiment.get("config")))
    study = data.get("study")
    if isinstance(study, dict):
        configs += [
            ("study.defaults", study.get("defaults")),
            ("study.baseline", study.get("baseline")),
        ]
    for where, config in configs:
        for section, key in PATH_KEYS:
            block = config.get(section) if isinstance(config, dict) else None
            value = block.get(key) if isinstance(block, dict) else None
            if isinstance(value, str) and value and value != "bundled":
                yield f"{where}.{section}.{key}", block, key


def _absolute_paths(data: dict[str, Any], folder: Path) -> None:
    """Make the relative paths of a params mapping relative to ``folder``, in place."""
    for _, block, key in _path_slots(data):
        block[key] = str(resolve_path(block[key], folder))


def relative_paths(data: dict[str, Any], out_dir_given: bool) -> list[str]:
    """The keys of a params mapping that hold relative paths (``output_dir`` too, unless the
    output folder is given apart): they mean something only next to the params file."""
    keys = [
        shown
        for shown, block, key in _path_slots(data)
        if not Path(block[key]).expanduser().is_absolute()
    ]
    output_dir = data.get("output_dir")
    relative = isinstance(output_dir, str) and not Path(output_dir).expanduser().is_absolute()
    if not out_dir_given and relative:
        keys.insert(0, "output_dir")
    return keys


def papermill_parameters(path: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """The parameters ``papermill -f PATH [-p out_dir OUT_DIR]`` passes to every stage.

    The file is read with :func:`alphaprune.engine.config.read_yaml`, like every params file
    (``1e-3`` is a float, duplicate keys are refused), not with papermill's YAML 1.1 reader, which
    would pass ``1e-3`` on as a string. The notebooks recognise the project's params files
    (``params/`` and below) by their content, read them with the same reader and take relative
    paths in them as relative to their folder; for a file elsewhere, its relative
    ``data.source`` / ``model.vgg_weights`` / ``gpu.results_csv`` are made absolute (relative to
    the file) so that the notebooks read the same files.
    """
    path = Path(path).resolve()
    try:
        data = read_yaml(path)
    except ConfigError as exc:
        raise ReportParamsError(str(exc)) from None
    if not path.is_relative_to(project_dir() / "params"):
        _absolute_paths(data, path.parent)
    if out_dir is not None:
        data["out_dir"] = str(out_dir)
    return data
