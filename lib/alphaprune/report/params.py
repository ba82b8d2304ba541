"""The weekly report's params file (YAML): schema, validation and the parameters of each stage.

One file per week describes the runs (a baseline and the pruning experiments), what each
notebook shows, and the report's prose. Relative paths in it are relative to the file's folder.
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
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from alphaprune.engine.config import MAX_SEED, ConfigError, FiniteFloat, StrictInt, read_yaml
from alphaprune.errors import ReportParamsError
from alphaprune.paths import project_dir

__all__ = [
    "ReportParams",
    "ReportParamsError",
    "Experiment",
    "RunStart",
    "load_report_params",
    "report_params_from_dict",
    "project_dir",
    "run_specs",
    "papermill_parameters",
    "run_checkpoint",
    "STAGES",
    "RUNS_DIR",
]

#: The notebooks, in the order they run. Each name is also the executed notebook's file name.
STAGES: tuple[str, ...] = (
    "01_prune",
    "02_reconstruct",
    "03_shrink",
    "04_gpu_addendum",
    "06_study",  # before the report, which shows it (a week without a study: nothing to do)
    "05_report",
)
#: Folder (inside the report folder) holding the training runs.
RUNS_DIR = "runs"
#: Run name reserved for the unpruned model.
BASELINE = "baseline"
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
    #: (e.g. ``shrink_speed_relu3_1.csv``), relative to the params file; shown in the addendum
    #: with the device and date it came from
    results_csv: str | None = None


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
    #: a seeded study (see alphaprune.study.grid), run by the 06_study stage and shown in the report
    study: dict[str, Any] | None = None
    #: set by the loader: the params file (for error messages and relative paths)
    _source: Path = PrivateAttr(default=Path("<dict>"))

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
        """Folder that relative paths in the file are relative to."""
        return self.source.parent if self.source.name != "<dict>" else Path.cwd()

    def resolve(self, path: str) -> Path:
        """``path`` relative to the params file's folder (absolute paths unchanged)."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir() / candidate).resolve()

    def report_dir(self) -> Path:
        """The report folder: ``output_dir``, else ``reports/<name>`` in the project folder (the
        one holding ``notebooks/``)."""
        if self.output_dir:
            return self.resolve(self.output_dir)
        return self.notebooks().parent / "reports" / self.report_name

    def notebooks(self) -> Path:
        """The notebooks folder: ``notebooks_dir``, else ``../notebooks`` next to the params file
        (``params/week09.yaml``) when it exists, else the checkout's that holds this package."""
        if self.notebooks_dir:
            return self.resolve(self.notebooks_dir)
        beside = self.resolve("../notebooks")
        return beside if beside.is_dir() else project_dir() / "notebooks"

    def experiment(self, name: str) -> Experiment:
        for experiment in self.experiments:
            if experiment.name == name:
                return experiment
        raise KeyError(name)

    def run_config(self, name: str) -> dict[str, Any]:
        """The full engine config dict of run ``name`` (``baseline`` or an experiment)."""
        if name == BASELINE:
            own, init_from = self.baseline, None
        else:
            experiment = self.experiment(name)
            own, init_from = experiment.config, start_checkpoint(experiment.start)
        config = _merge(
            {"seed": self.seed, "device": self.device},
            _merge(copy.deepcopy(self.defaults), copy.deepcopy(own)),
        )
        config.update(name=name, output_dir=RUNS_DIR)
        # paths in the params file are relative to its folder, not to the report folder (cwd)
        data = config.get("data")
        if isinstance(data, dict) and data.get("source", "bundled") != "bundled":
            data["source"] = str(self.resolve(str(data["source"])))
        model = config.get("model")
        if isinstance(model, dict) and model.get("vgg_weights"):
            model["vgg_weights"] = str(self.resolve(str(model["vgg_weights"])))
        if init_from is not None:
            config["init_from"] = init_from
        return config


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: ``override`` wins; nested dicts are merged key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def run_checkpoint(run: str, alpha: float | None = None) -> str:
    """Checkpoint path of ``run`` (relative to the report folder): last epoch, or milestone at α."""
    from alphaprune.engine.checkpoint import last_path, milestone_path

    run_dir = Path(RUNS_DIR) / run
    path = last_path(run_dir) if alpha is None else milestone_path(run_dir, alpha)
    return path.as_posix()


def start_checkpoint(start: RunStart) -> str:
    """The checkpoint a run starts from (the shrunk copy's path when ``start.shrink``)."""
    path = run_checkpoint(start.run, start.alpha)
    if start.shrink:
        return path[: -len(".pt")] + "_shrunk.pt"
    return path


def _location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _check_references(params: ReportParams) -> None:
    seen = {BASELINE}
    for i, experiment in enumerate(params.experiments):
        if experiment.name in seen:
            raise ReportParamsError(
                f"{params.source}: experiments[{i}].name: run name '{experiment.name}' is used twice"
            )
        if experiment.start.run not in seen:
            raise ReportParamsError(
                f"{params.source}: experiments[{i}].start.run: '{experiment.start.run}' is not "
                f"'{BASELINE}' or an experiment listed before it ({sorted(seen)})"
            )
        start = experiment.start
        if start.run == BASELINE and (start.alpha is not None or start.shrink):
            raise ReportParamsError(
                f"{params.source}: experiments[{i}].start: the baseline has no α milestones and "
                "nothing to shrink; give 'alpha'/'shrink' only for a pruning run"
            )
        seen.add(experiment.name)
    for section in ("reconstruct", "shrink", "gpu"):
        name = getattr(params, section).experiment
        if name not in seen - {BASELINE}:
            raise ReportParamsError(
                f"{params.source}: {section}.experiment: '{name}' is not one of the experiments "
                f"{sorted(seen - {BASELINE})}"
            )
    if params.week is None and not params.name:
        raise ReportParamsError(f"{params.source}: give 'week' (a number) or 'name'")


def _check_run_configs(params: ReportParams) -> None:
    """Validate every run's merged config with the engine (if it is installed)."""
    try:
        from alphaprune.engine.config import config_from_dict
    except ImportError:  # pragma: no cover - the engine is part of the package
        return
    names = [BASELINE] + [e.name for e in params.experiments]
    for i, name in enumerate(names):
        where = f"experiments[{i - 1}].config" if i else "baseline"
        where += " (or defaults)"
        try:
            config_from_dict(params.run_config(name), source=f"{params.source}: {where}")
        except ValueError as exc:  # ConfigError: every line already names file and key
            text = str(exc)
            prefix = f"{params.source}: {where}"
            raise ReportParamsError(
                text if text.startswith(prefix) else f"{prefix}: {text}"
            ) from None


def report_params_from_dict(data: Any, source: str | Path = "<dict>") -> ReportParams:
    """Validate a params mapping; errors name ``source`` and the offending key."""
    if not isinstance(data, dict):
        raise ReportParamsError(f"{source}: expected a mapping of keys, got {type(data).__name__}")
    try:
        params = ReportParams.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = _location(error["loc"]) or "<top level>"
            if error["type"] == "extra_forbidden":
                problems.append(f"{where}: unknown key")
            else:
                problems.append(f"{where}: {error['msg']} (got {error.get('input')!r})")
        raise ReportParamsError(f"{source}: " + "; ".join(problems)) from None
    params._source = Path(source)
    _check_references(params)
    _check_run_configs(params)
    if params.study is not None:
        from alphaprune.study.grid import study_of_report

        try:
            study_of_report(params)
        except ConfigError as exc:
            raise ReportParamsError(str(exc)) from None
    return params


def load_report_params(path: str | Path) -> ReportParams:
    """Read and validate a params YAML file (``yaml.safe_load``)."""
    path = Path(path)
    if not path.is_file():
        raise ReportParamsError(f"params file '{path}' does not exist")
    try:
        data = read_yaml(path, mapping_only=False)
    except ConfigError as exc:
        raise ReportParamsError(str(exc)) from None
    return report_params_from_dict(data, source=path.resolve())


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


#: Engine config keys holding a path (relative to the params file's folder).
_PATH_KEYS = (("data", "source"), ("model", "vgg_weights"))


def papermill_parameters(path: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """The parameters ``papermill -f PATH [-p out_dir OUT_DIR]`` passes to every stage.

    The file is read with :func:`alphaprune.engine.config.read_yaml`, like every params file (``1e-3``
    is a float, duplicate keys are refused), not with papermill's YAML 1.1 reader, which would pass
    ``1e-3`` on as a string. The notebooks recognise the project's params files (``params/`` and
    below) by their content, read them with the same reader and take relative paths in them as
    relative to their folder; for a file elsewhere,
    its relative ``data.source`` / ``model.vgg_weights`` / ``gpu.results_csv`` are made absolute
    (relative to the file) so that the notebooks read the same files.
    """
    path = Path(path).resolve()
    try:
        data = read_yaml(path)
    except ConfigError as exc:
        raise ReportParamsError(str(exc)) from None
    if not path.is_relative_to(project_dir() / "params"):
        gpu = data.get("gpu")
        if isinstance(gpu, dict) and isinstance(gpu.get("results_csv"), str):
            if not Path(gpu["results_csv"]).expanduser().is_absolute():
                gpu["results_csv"] = str((path.parent / gpu["results_csv"]).resolve())
        configs = [data.get("defaults"), data.get("baseline")]
        configs += [e.get("config") for e in data.get("experiments") or [] if isinstance(e, dict)]
        for config in configs:
            for section, key in _PATH_KEYS:
                block = config.get(section) if isinstance(config, dict) else None
                value = block.get(key) if isinstance(block, dict) else None
                if isinstance(value, str) and value != "bundled" and value:
                    candidate = Path(value).expanduser()
                    if not candidate.is_absolute():
                        block[key] = str((path.parent / candidate).resolve())
    if out_dir is not None:
        data["out_dir"] = str(out_dir)
    return data
