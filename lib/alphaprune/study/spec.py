"""What a study is: its arms, compression budgets, baselines and seeds, validated, and the engine
config of every run it needs.

A study (the ``study:`` section of a week's params, or a file of ``params/studies/``) compares
pruning *arms* at equal training budgets, at every point of a compression curve, on several
independently trained baselines and several seeds::

    study:
      name: curves
      reference: one_shot          # every other arm is compared with this one, paired by
                                   # (baseline, seed) at each budget
      baselines: 3                 # independently trained originals (seeds seed .. seed+2)
      seeds: 3                     # pruning seeds 0 .. 2 on every baseline
      max_seeds: 6                 # more, if the widest paired interval is too wide
      equivalence_db: 0.2          # TOST margin: "equivalent within ±0.2 dB"
      budget: {steps: 300, steps_per_epoch: 30}      # optimiser steps of every arm
      budgets: [{flops: 0.75}, {flops: 0.5}, {flops: 0.35}]   # the curve's points
      primary_budget: {flops: 0.5}
      threads: 1                   # torch threads of every run (bit-reproducible)
      methods:
        one_shot: {label: "one-shot L1", schedule: {kind: constant, alpha: 0}}
        random:   {schedule: {kind: constant, alpha: 0}, config: {pruning: {criterion: random}}}
        tp_taylor: {schedule: {kind: constant, alpha: 0}, config: {pruning: {criterion: tp_taylor}}}
        step:     {schedule: {kind: step, values: [1, .5, .25, .1, 0]}}
        restart:  {kind: restart, start: {arm: step, alpha: 0.1},
                   schedule: {kind: restart, alpha: 0.1, rate: 0.5, floor: 0.02}}
        unpruned: {kind: unpruned}                   # control: no pruning, same fine-tuning
        scratch:  {kind: scratch, architecture: one_shot}   # control: shrunk arch from scratch

Arm kinds: ``schedule`` (an α schedule from the baseline, with engine overrides such as the
criterion: ``l1``, ``bn``, ``random`` or Torch-Pruning's ``tp_magnitude``/``tp_taylor``/
``tp_bn_scale``), ``restart`` (from another arm's run, at its milestone α, for the rest of the
budget: the weekly report's restart), ``unpruned`` (the original fine-tuned for the same budget)
and ``scratch`` (the shrunk architecture of another arm, re-initialised and trained for the
baseline's plus the budget's steps). An arm may give ``lr_grid``: each learning rate is run and
the one with the best validation PSNR is reported (chosen on validation, reported on test).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from alphaprune.engine.config import (
    ConfigError,
    ExperimentConfig,
    FiniteFloat,
    StrictInt,
    config_from_dict,
    format_validation_error,
    merge_configs,
    read_yaml,
    resolve_config_paths,
)
from alphaprune.study.peers import TP_CRITERIA, require_torch_pruning

__all__ = [
    "Arm",
    "Budget",
    "MAX_SEEDS",
    "StudySpec",
    "load_study",
    "point_label",
    "study_from_params",
    "study_of_report",
]

#: Most seeds (per baseline) a study may ask for without ``allow_many_seeds: true``.
MAX_SEEDS = 100
#: Config keys an arm may not set: they would break the equal budget or the pairing.
_BUDGET_KEYS = ("epochs", "steps_per_epoch", "threads", "seed")
_DATA_KEYS = ("batch_size", "source", "val_images", "test_images", "split")
_POINT_KINDS = ("flops", "params", "keep")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def point_label(point: Mapping[str, float]) -> str:
    """``{"flops": 0.5}`` → ``"flops 0.5"``."""
    ((kind, value),) = point.items()
    return f"{kind} {value:g}"


def _check_point(point: dict[str, float]) -> dict[str, float]:
    if len(point) != 1 or next(iter(point)) not in _POINT_KINDS:
        raise ValueError(
            f"a budget is one of {{flops: r}}, {{params: r}}, {{keep: r}}, got {point}"
        )
    ((kind, value),) = point.items()
    if not 0 < value < 1:
        raise ValueError(f"budget {kind} must be in (0, 1), got {value}")
    return point


class Start(_Strict):
    """Where a ``restart`` arm starts: another arm's run at its milestone ``alpha``."""

    arm: str
    alpha: FiniteFloat = Field(gt=0, lt=1)


class Arm(_Strict):
    """One arm of a study (see the module docstring)."""

    label: str = ""
    kind: Literal["schedule", "restart", "unpruned", "scratch"] = "schedule"
    schedule: dict[str, Any] | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    start: Start | None = None
    architecture: str | None = None
    lr_grid: list[FiniteFloat] | None = Field(None, min_length=1)

    @field_validator("config")
    @classmethod
    def _no_budget(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in _BUDGET_KEYS if k in value]
        bad += [f"data.{k}" for k in _DATA_KEYS if k in (value.get("data") or {})]
        if bad:
            raise ValueError(
                f"{bad} would break the equal budget or the pairing; set them in study.budget, "
                "study.threads or study.defaults"
            )
        return value

    @field_validator("lr_grid")
    @classmethod
    def _positive_lrs(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(lr <= 0 for lr in value):
            raise ValueError(f"learning rates must be > 0, got {value}")
        return value

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Arm:
        prunes = self.kind in ("schedule", "restart")
        if prunes and self.schedule is None:
            raise ValueError(f"an arm of kind '{self.kind}' needs a schedule")
        if not prunes and self.schedule is not None:
            raise ValueError(f"a '{self.kind}' control has no α schedule")
        if (self.kind == "restart") != (self.start is not None):
            raise ValueError("'start' is for (and needed by) arms of kind 'restart'")
        if (self.kind == "scratch") != (self.architecture is not None):
            raise ValueError("'architecture' is for (and needed by) arms of kind 'scratch'")
        if not prunes and "pruning" in self.config:
            raise ValueError(f"a '{self.kind}' control does not prune: no pruning config")
        return self

    @property
    def prunes(self) -> bool:
        """Whether the arm gates channels (not a control)."""
        return self.kind in ("schedule", "restart")


class Budget(_Strict):
    """Optimiser steps of every arm, counted from its start."""

    steps: StrictInt = Field(gt=0)
    steps_per_epoch: StrictInt = Field(gt=0)

    @property
    def epochs(self) -> int:
        return self.steps // self.steps_per_epoch


class Plateau(_Strict):
    """When a baseline counts as trained to a plateau: its validation loss changed by less than
    ``rel_change`` (relative) over its last ``epochs`` epochs."""

    epochs: StrictInt = Field(3, ge=1)
    rel_change: FiniteFloat = Field(0.02, gt=0)


class Latency(_Strict):
    """CPU latency of each shrunk point: ``batch`` images of ``size`` px, median of ``repeats``."""

    size: StrictInt = Field(128, ge=8)
    batch: StrictInt = Field(1, ge=1)
    repeats: StrictInt = Field(20, ge=3)


class StudySpec(_Strict):
    """A validated study (see the module docstring)."""

    name: str = Field("study", pattern=r"^[A-Za-z0-9_.\-]+$")
    reference: str
    methods: dict[str, Arm] = Field(min_length=2)
    seeds: StrictInt = Field(5, ge=2)
    max_seeds: StrictInt = Field(10, ge=2)
    #: more than :data:`MAX_SEEDS` seeds per baseline only when set (every seed is a run per
    #: arm, budget and baseline)
    allow_many_seeds: bool = False
    baselines: StrictInt = Field(1, ge=1, le=50)
    target_halfwidth_db: FiniteFloat = Field(0.3, gt=0)
    confidence: FiniteFloat = Field(0.95, gt=0.5, lt=1)
    equivalence_db: FiniteFloat = Field(0.2, gt=0)
    budget: Budget
    budgets: list[dict[str, FiniteFloat]] | None = Field(None, min_length=1)
    primary_budget: dict[str, FiniteFloat] | None = None
    threads: StrictInt = Field(1, ge=1)
    plateau: Plateau = Field(default_factory=Plateau)
    latency: Latency = Field(default_factory=Latency)
    defaults: dict[str, Any] = Field(default_factory=dict)
    baseline: dict[str, Any] = Field(default_factory=dict)
    #: validation protocol of the per-epoch curves of the arm runs (None: the baseline's).
    #: The study's numbers come from whole test images (grid tiles), whatever the curves use.
    curve_protocol: Literal["corners", "grid"] | None = None

    @field_validator("budgets")
    @classmethod
    def _points(cls, value: list[dict[str, float]] | None) -> list[dict[str, float]] | None:
        if value is not None:
            for point in value:
                _check_point(point)
            labels = [point_label(p) for p in value]
            if len(set(labels)) != len(labels):
                raise ValueError(f"budgets repeat a point: {labels}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StudySpec:
        if self.reference not in self.methods:
            raise ValueError(f"reference '{self.reference}' is not one of the methods")
        if self.budget.steps % self.budget.steps_per_epoch:
            raise ValueError("budget.steps must be a multiple of budget.steps_per_epoch")
        if self.max_seeds < self.seeds:
            raise ValueError(f"max_seeds ({self.max_seeds}) < seeds ({self.seeds})")
        if self.max_seeds > MAX_SEEDS and not self.allow_many_seeds:
            runs = self.max_seeds * self.runs_per_seed()
            raise ValueError(
                f"max_seeds {self.max_seeds} would allow up to {runs:,} runs; more than "
                f"{MAX_SEEDS} seeds per baseline needs allow_many_seeds: true"
            )
        if self.primary_budget is not None and point_label(self.primary_budget) not in self.points:
            raise ValueError(f"primary_budget {self.primary_budget} is not one of the budgets")
        for name, arm in self.methods.items():
            source = arm.start.arm if arm.start else arm.architecture
            if source is not None and (
                source not in self.methods or not self.methods[source].prunes
            ):
                raise ValueError(f"arm '{name}' starts from '{source}', which is no pruning arm")
            if arm.start and self.methods[arm.start.arm].kind != "schedule":
                raise ValueError(
                    f"arm '{name}' restarts from '{arm.start.arm}': not a schedule arm"
                )
        return self

    # -- names --------------------------------------------------------------------------------

    def label(self, arm: str) -> str:
        return self.methods[arm].label or arm

    @property
    def points(self) -> dict[str, dict[str, float] | None]:
        """The curve's points by label, in order; without ``budgets`` one point, the pruning of
        the defaults (value None: each arm's config as it is), labelled like ``"keep 0.5"``."""
        if self.budgets is None:
            pruning = self.baseline_config().pruning
            if pruning.budget:
                return {point_label(pruning.budget): None}
            keep = pruning.keep
            return {f"keep {keep:g}" if isinstance(keep, float) else "per-layer keep": None}
        return {point_label(p): p for p in self.budgets}

    @property
    def primary(self) -> str:
        """The label of the budget the conclusion is about (default: the first)."""
        if self.primary_budget is not None:
            return point_label(self.primary_budget)
        return next(iter(self.points))

    # -- engine configs -------------------------------------------------------------------------

    def _base_data(self) -> dict[str, Any]:
        return merge_configs(self.defaults, self.baseline)

    def baseline_config(self, index: int = 0) -> ExperimentConfig:
        """Baseline ``index``: the defaults and baseline config, at seed ``seed + index``."""
        data = self._base_data()
        data["name"] = f"{self.name}-baseline" + (f"{index}" if index else "")
        data["seed"] = int(data.get("seed", 0)) + index
        data["threads"] = self.threads
        return config_from_dict(data, source=f"study '{self.name}' baseline {index}")

    def baseline_steps(self) -> int:
        cfg = self.baseline_config()
        per_epoch = cfg.steps_per_epoch or math.ceil(
            cfg.data.samples_per_epoch / cfg.data.batch_size
        )
        return cfg.epochs * per_epoch

    def restart_epochs(self, arm: str) -> int:
        """Epochs a restart arm's start arm ran up to its milestone (the last epoch at the α)."""
        start = self.methods[arm].start
        schedule = self.arm_config(start.arm, self.primary, 0).build_schedule()
        at = [e for e in range(self.budget.epochs) if schedule.alpha(e) == start.alpha]
        if not at or at[-1] + 1 >= self.budget.epochs:
            raise ConfigError(
                f"study '{self.name}': arm '{arm}' restarts from '{start.arm}' at α = "
                f"{start.alpha:g}, but that arm has no epoch at α = {start.alpha:g} before its "
                f"last ({self.budget.epochs} epochs)"
            )
        return at[-1] + 1

    def arm_config(
        self, arm: str, point: str, seed: int, lr: float | None = None
    ) -> ExperimentConfig:
        """The engine config of ``arm`` at budget ``point`` and pruning seed ``seed`` (with the
        learning rate ``lr`` of its grid, if given)."""
        spec = self.methods[arm]
        data = merge_configs(self.defaults, spec.config)
        epochs = self.budget.epochs
        schedule = dict(spec.schedule or {"kind": "constant", "alpha": 0.0})
        if spec.prunes:
            self._apply_point(data, self.points[point])
        else:
            control = {"keep": 1.0, "budget": None, "fine_tune_only": True}
            data["pruning"] = {**data.get("pruning", {}), **control}
        if spec.kind == "restart":
            epochs -= self.restart_epochs(arm)
        if spec.kind == "scratch":
            data = merge_configs(self._base_data(), {"pruning": data["pruning"]})
            data["pruning"]["reinit"] = True
            total = self.baseline_steps() + self.budget.steps
            epochs = math.ceil(total / self.budget.steps_per_epoch)
        if lr is not None:
            data.setdefault("optimizer", {})["lr"] = lr
            schedule["lr"] = lr
        data.update(
            name=f"{self.name}-{arm}-{point.replace(' ', '')}-s{seed}",
            seed=seed,
            epochs=epochs,
            steps_per_epoch=self.budget.steps_per_epoch,
            schedule=schedule,
            threads=self.threads,
        )
        if self.curve_protocol is not None:
            data.setdefault("data", {})["val_protocol"] = self.curve_protocol
        return config_from_dict(data, source=f"study '{self.name}' arm '{arm}'")

    @staticmethod
    def _apply_point(data: dict[str, Any], point: Mapping[str, float] | None) -> None:
        if point is None:
            return
        pruning = data.setdefault("pruning", {})
        ((kind, value),) = point.items()
        if kind == "keep":
            pruning.update(keep=value, budget=None)
        else:
            pruning["budget"] = {kind: value}

    def eval_config(self) -> ExperimentConfig:
        """The config whose test images score every final model: the baseline's data, tiled
        by the grid protocol (every pixel of every test image)."""
        data = self._base_data()
        data.setdefault("data", {})["val_protocol"] = "grid"
        data["name"] = f"{self.name}-evaluation"
        return config_from_dict(data, source=f"study '{self.name}' evaluation")

    def lrs(self, arm: str) -> list[float | None]:
        return list(self.methods[arm].lr_grid or [None])

    def arm_runs(self, arm: str) -> int:
        """Runs of ``arm`` per (baseline, seed): one per budget point and learning rate (the
        unpruned control: one for every point)."""
        points = 1 if self.methods[arm].kind == "unpruned" else len(self.points)
        return points * len(self.lrs(arm))

    def runs_per_seed(self) -> int:
        """Runs the study adds per seed: every arm's runs on every baseline."""
        return self.baselines * sum(self.arm_runs(arm) for arm in self.methods)

    def check(self) -> None:
        """Every arm's config is valid, every pruning arm ends at α = 0 within its epochs, every
        arm sees the baseline's images, and there is a test split to report on."""
        base = self.baseline_config()
        for arm, spec in self.methods.items():
            if self.budgets is not None and {"keep", "budget"} & set(
                spec.config.get("pruning", {})
            ):
                raise ConfigError(
                    f"study '{self.name}': arm '{arm}' sets pruning.keep/budget, but the "
                    "compression is study.budgets"
                )
            for point in self.points:
                cfg = self.arm_config(arm, point, 0)
                self._check_arm(arm, cfg, base)
        source = base.data.source
        if source == "bundled" or Path(source).is_dir():  # a missing folder: the run says so
            self.test_images()

    def _check_arm(self, arm: str, cfg: ExperimentConfig, base: ExperimentConfig) -> None:
        if self.methods[arm].prunes:
            last = cfg.build_schedule().alpha(cfg.epochs - 1)
            if last != 0.0:
                raise ConfigError(
                    f"study '{self.name}': method '{arm}' ends at α = {last:g} after "
                    f"{cfg.epochs} epochs; every method must reach α = 0 within the budget"
                )
        if cfg.pruning.criterion in TP_CRITERIA:
            require_torch_pruning(cfg.pruning.criterion)
        split_keys = ("source", "val_images", "test_images", "split")
        if [getattr(cfg.data, k) for k in split_keys] != [
            getattr(base.data, k) for k in split_keys
        ]:
            raise ConfigError(
                f"study '{self.name}': method '{arm}' validates on other images than the "
                "baseline held out; set the data split in study.defaults only"
            )

    def test_images(self) -> list[str]:
        """The test images every model is scored on (a ConfigError when there are none)."""
        from alphaprune.engine.data import image_names

        cfg = self.eval_config()
        try:
            split = cfg.data.split_of(image_names(cfg.data.source))
        except Exception as exc:  # a DataError naming the image, or a missing folder
            raise ConfigError(f"study '{self.name}': {exc}") from None
        if not split.test:
            raise ConfigError(
                f"study '{self.name}' reports on test images, but the data has none: declare "
                "data.test_images (names or globs) or data.split with a test fraction"
            )
        return list(split.test)


def study_from_params(params: Mapping[str, Any], source: str = "<params>") -> StudySpec:
    """The study of a params mapping: its ``study:`` section, with the week's ``defaults``,
    ``seed`` and ``baseline`` under the study's own (so a week's study shares its data)."""
    if "study" not in params or not isinstance(params["study"], Mapping):
        raise ConfigError(f"{source}: no 'study:' section (a mapping) in the params")
    data = dict(params["study"])
    week_defaults = dict(params.get("defaults") or {})
    for key in ("seed", "device"):
        if key in params:
            week_defaults.setdefault(key, params[key])
    data["defaults"] = merge_configs(week_defaults, data.get("defaults") or {})
    if "baseline" not in data and isinstance(params.get("baseline"), Mapping):
        data["baseline"] = dict(params["baseline"])
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as exc:
        # the whole study section would be the offending value of its own checks: leave it out
        raise ConfigError(
            format_validation_error(exc, source, prefix=("study",), show_input=False)
        ) from None
    spec.check()
    return spec


def study_of_report(params: Any) -> StudySpec | None:
    """The study of a week's validated params (:class:`alphaprune.report.params.ReportParams`),
    or None when the week has no ``study:`` section. The week's ``defaults``, ``baseline``,
    ``seed`` and ``device`` lie under the study's own; relative data / VGG-weight paths are
    resolved against the params file's folder."""
    study = getattr(params, "study", None)
    if not study:
        return None
    defaults = copy.deepcopy(params.defaults)
    baseline = copy.deepcopy(params.baseline)
    study = copy.deepcopy(study)
    for config in (defaults, baseline, study.get("defaults") or {}, study.get("baseline") or {}):
        resolve_config_paths(config, params.base_dir())
    data = {
        "seed": params.seed,
        "device": params.device,
        "defaults": defaults,
        "baseline": baseline,
        "study": study,
    }
    return study_from_params(data, source=str(params.source))


def load_study(path: str | Path) -> StudySpec:
    """Read a params YAML file with a ``study:`` section; relative data / VGG-weight paths are
    relative to the file's folder."""
    path = Path(path)
    params = read_yaml(path)
    base = path.resolve().parent
    for section in (params, params.get("study") if isinstance(params.get("study"), dict) else {}):
        for key in ("defaults", "baseline"):
            if isinstance(section.get(key), dict):
                resolve_config_paths(section[key], base)
    return study_from_params(params, source=str(path))
