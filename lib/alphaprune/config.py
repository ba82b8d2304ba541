"""One typed, validated experiment configuration, loadable from YAML.

Every problem is found before any work starts, and the message names the file, the key and the bad
value::

    params/x.yaml: optimizer.lr: Input should be greater than 0 (got -1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .schedules import Schedule, schedule_from_dict

__all__ = ["ConfigError", "ExperimentConfig", "load_config", "config_from_dict", "apply_overrides"]


class ConfigError(ValueError):
    """A configuration file or dict is malformed; the message names the source and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    layer: Literal["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"] = "relu3_1"
    batch_norm: bool = False
    vgg_weights: str | None = None  # local torchvision-style VGG state dict for the encoder


class DataConfig(_Section):
    source: str = "bundled"  # "bundled" or a folder of JPEG/PNG files
    crop: int = Field(64, ge=8)
    batch_size: int = Field(8, ge=1)
    samples_per_epoch: int = Field(64, ge=1)
    val_images: list[str] = Field(default_factory=lambda: ["astronaut", "chelsea"], min_length=1)
    val_crops: int = Field(5, ge=1, le=5)
    num_workers: int = Field(0, ge=0)


class PruningConfig(_Section):
    keep: float | dict[str, float] = 0.5
    criterion: Literal["l1", "bn"] = "l1"
    target: Literal["encoder", "decoder", "both"] = "encoder"

    @field_validator("keep", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        values = value.values() if isinstance(value, dict) else [value]
        if any(isinstance(v, bool) for v in values):
            raise ValueError(f"keep must be a number in (0, 1], got {value!r}")
        return value

    @field_validator("keep")
    @classmethod
    def _keep_range(cls, value: float | dict[str, float]) -> float | dict[str, float]:
        values = value.values() if isinstance(value, dict) else [value]
        for v in values:
            if not 0.0 < v <= 1.0:
                raise ValueError(f"keep must be in (0, 1], got {v}")
        return value


class OptimizerConfig(_Section):
    name: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)


class LossConfig(_Section):
    pixel: float = Field(1.0, ge=0)
    vgg_feature: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _some_loss(self) -> LossConfig:
        if self.pixel == 0 and self.vgg_feature == 0:
            raise ValueError("at least one of pixel / vgg_feature must be > 0")
        return self


class ExperimentConfig(_Section):
    """A training or pruning run. ``run_dir`` = ``output_dir / name``."""

    name: str = Field("experiment", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    output_dir: str = "runs"
    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    epochs: int = Field(10, ge=0)
    steps_per_epoch: int | None = Field(None, ge=1)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    pruning: PruningConfig = Field(default_factory=PruningConfig)
    schedule: dict[str, Any] = Field(
        default_factory=lambda: {"kind": "linear", "start": 1.0, "end": 0.0, "epochs": 5}
    )
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    init_from: str | None = None

    @field_validator("schedule")
    @classmethod
    def _valid_schedule(cls, value: dict[str, Any]) -> dict[str, Any]:
        probe = dict(value)
        probe.setdefault("lr", 1e-3)
        schedule_from_dict(probe)  # raises ScheduleError (a ValueError) naming the key
        return value

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def build_schedule(self) -> Schedule:
        """The α/lr schedule; its ``lr`` defaults to ``optimizer.lr``."""
        data = dict(self.schedule)
        data.setdefault("lr", self.optimizer.lr)
        return schedule_from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-safe dict (round-trips through :func:`config_from_dict`)."""
        return self.model_dump(mode="json")


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        value = err.get("input")
        shown = "" if err["type"] in ("extra_forbidden", "missing") else f" (got {value!r})"
        lines.append(f"{source}: {key}: {msg}{shown}")
    return "\n".join(lines)


def config_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """Validate ``data`` into an :class:`ExperimentConfig`; errors name ``source`` and the key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return ExperimentConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed with ``yaml.safe_load``) to a nested dict."""
    result = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set: bad key {key!r}")
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: '{part}' is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(raw)
    return result


def read_yaml(path: str | Path, mapping_only: bool = True) -> Any:
    """``yaml.safe_load`` ``path`` (a mapping unless ``mapping_only=False``); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    if data is None:
        return {}
    if mapping_only and not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Load and validate an experiment config from YAML, after ``key=value`` overrides."""
    data = apply_overrides(read_yaml(path), overrides)
    return config_from_dict(data, source=str(path))
