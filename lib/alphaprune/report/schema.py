"""The schema of the weekly report's params file (YAML): one pydantic model per section.

Loading and the checks across sections are in :mod:`alphaprune.report.validation`; the example
file is in :mod:`alphaprune.report.params`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from alphaprune.engine.config import MAX_SEED, FiniteFloat, StrictInt, resolve_path
from alphaprune.paths import locate_project
from alphaprune.report.run_configs import BASELINE, run_config

__all__ = [
    "RunStart",
    "Experiment",
    "ReconstructParams",
    "ShrinkParams",
    "GpuParams",
    "Notes",
    "ReportParams",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunStart(_Strict):
    """Where a pruning run starts: the last checkpoint of ``run``, or its milestone at ``alpha``.

    With ``shrink: true`` the checkpoint is first shrunk (its α = 0 channels cut out), so the run
    prunes the smaller model (week 10: prune the decoder on top of the shrunk encoder).
    """

    run: str = BASELINE
    alpha: FiniteFloat | None = Field(default=None, ge=0.0, le=1.0)
    shrink: bool = False


class Experiment(_Strict):
    """One pruning run of the week."""

    name: str
    label: str = ""
    start: RunStart = Field(default_factory=RunStart)
    config: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value) or value == BASELINE:
            raise ValueError(
                f"'{value}' is not a usable run name (letters, digits, '_', '.', '-'; "
                f"not '{BASELINE}')"
            )
        return value

    @field_validator("start", mode="before")
    @classmethod
    def _start_shorthand(cls, value: Any) -> Any:
        return {"run": value} if isinstance(value, str) else value

    @field_validator("config")
    @classmethod
    def _no_reserved(cls, value: dict[str, Any]) -> dict[str, Any]:
        reserved = sorted({"name", "output_dir", "init_from"} & set(value))
        if reserved:
            raise ValueError(
                f"{reserved} are set by the report runner (use the experiment's 'name' and "
                "'start' instead)"
            )
        return value


class ReconstructParams(_Strict):
    """Figure "reconstruction": (a) image, (b) original model, (c) pruned model, (d) shrunk."""

    experiment: str
    image: str = "astronaut"
    size: StrictInt = Field(default=128, gt=0)


class ShrinkParams(_Strict):
    """Multiply the weights of ``experiment``'s final model and compare with it."""

    experiment: str
    image_size: StrictInt = Field(default=128, gt=0)
    tolerance: FiniteFloat = Field(default=1e-4, gt=0)


class GpuParams(_Strict):
    """Per-batch time (and GPU utilisation on CUDA) of original, masked and shrunk models."""

    experiment: str
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: StrictInt = Field(default=8, gt=0)
    image_size: StrictInt = Field(default=128, gt=0)
    warmup: StrictInt = Field(default=3, ge=0)
    repeats: StrictInt = Field(default=10, gt=0)
    #: on a GPU, time each model for at least this many seconds (more batches than ``repeats``
    #: when needed), so that NVML's utilisation counter gets sampled
    gpu_seconds: FiniteFloat = Field(default=2.0, ge=0)
    #: measured GPU results from another machine: a CSV written by ``benchmarks/gpu_check.sh``
    #: (e.g. ``shrink_speed_relu3_1.csv``), relative to the project folder; shown in the addendum
    #: with the device and date it came from
    results_csv: str | None = None
    #: also time the shrunk model exported to ONNX (verified) in onnxruntime — on the CPU, with
    #: the ``deploy`` extra installed
    exported: bool = True


class Notes(_Strict):
    """The report's prose, in Markdown (write α as the Unicode character)."""

    progress: str = ""
    weights: str = ""
    reconstruction: str = ""
    shrink: str = ""
    gpu: str = ""
    plan: str = ""


class ReportParams(_Strict):
    """A validated params file."""

    week: StrictInt | None = Field(default=None, ge=0)
    name: str | None = None
    title: str | None = None
    author: str = ""
    date: str = ""
    output_dir: str | None = None
    notebooks_dir: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    seed: StrictInt = Field(default=0, ge=0, le=MAX_SEED)
    defaults: dict[str, Any] = Field(default_factory=dict)
    baseline: dict[str, Any] = Field(default_factory=dict)
    experiments: list[Experiment] = Field(min_length=1)
    reconstruct: ReconstructParams
    shrink: ShrinkParams
    gpu: GpuParams
    notes: Notes = Field(default_factory=Notes)
    #: a seeded study (see alphaprune.study.spec), run by the 05_study stage and shown in the report
    study: dict[str, Any] | None = None
    #: set by the loader: the params file (for error messages and the project folder)
    _source: Path = PrivateAttr(default=Path("<dict>"))

    @field_validator("name")
    @classmethod
    def _one_folder_name(cls, value: str | None) -> str | None:
        # the report folder is reports/<name>: a name must not lead anywhere else
        if value is not None and (not _NAME.match(value) or ".." in value):
            raise ValueError(
                "the report's name must be one folder name (letters, digits, '_', '.', '-'; "
                "not starting with '.' and without '..')"
            )
        return value

    @property
    def source(self) -> Path:
        """The params file this was read from (``<dict>`` when built from a mapping)."""
        return self._source

    @property
    def report_name(self) -> str:
        """``name`` if given, else ``weekNN``."""
        if self.name:
            return self.name
        return f"week{self.week:02d}"

    @property
    def report_title(self) -> str:
        """``title`` if given, else "Model Pruning: Weekly Report N"."""
        if self.title:
            return self.title
        if self.week is not None:
            return f"Model Pruning: Weekly Report {self.week}"
        return f"Model Pruning: {self.report_name}"

    def base_dir(self) -> Path:
        """Folder that relative paths in the params are relative to: the project folder, for a
        params file and for parameters papermill injected alike (:meth:`project`)."""
        return self.project()

    def resolve(self, path: str) -> Path:
        """``path`` relative to the project folder (absolute paths unchanged)."""
        return resolve_path(path, self.base_dir())

    def project(self) -> Path:
        """The project folder (:func:`alphaprune.paths.locate_project`): the one holding
        ``notebooks/`` at or above the params file, else ``$ALPHAPRUNE_PROJECT``, else the one at
        or above the current folder."""
        known = not self.source.name.startswith("<")
        return locate_project(self.source if known else None)[0]

    def report_dir(self) -> Path:
        """The report folder: ``output_dir``, else ``reports/<name>`` in the project folder
        (whoever runs the notebooks: the runner, papermill or JupyterLab)."""
        if self.output_dir:
            return self.resolve(self.output_dir)
        return self.project() / "reports" / self.report_name

    def notebooks(self) -> Path:
        """The notebooks folder: ``notebooks_dir``, else ``notebooks/`` of the project folder."""
        if self.notebooks_dir:
            return self.resolve(self.notebooks_dir)
        return self.project() / "notebooks"

    def experiment(self, name: str) -> Experiment:
        """The experiment named ``name`` (a KeyError if there is none)."""
        for experiment in self.experiments:
            if experiment.name == name:
                return experiment
        raise KeyError(name)

    def run_config(self, name: str) -> dict[str, Any]:
        """The full engine config dict of run ``name`` (``baseline`` or an experiment)."""
        return run_config(self, name)
