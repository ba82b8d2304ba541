"""One typed, validated experiment configuration, loadable from YAML.

Every problem is found before any work starts, and the message names the file, the key and the bad
value::

    params/x.yaml: optimizer.lr: Input should be greater than 0 (got -1)
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from alphaprune.core.schedules import Schedule, schedule_from_dict
from alphaprune.errors import ConfigError

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "FiniteFloat",
    "StrictInt",
    "load_config",
    "config_from_dict",
    "apply_overrides",
    "read_yaml",
    "yaml_load",
    "check_run_name",
    "format_validation_error",
    "merge_configs",
    "resolve_config_paths",
    "resolve_path",
]

#: Largest seed accepted (torch, numpy and Python all take it).
MAX_SEED = 2**63 - 1


# --- YAML: one loader everywhere -----------------------------------------------------------------


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """``yaml.SafeLoader`` that refuses duplicate keys and reads ``1e-3`` as a float (on
    libyaml's C parser where PyYAML has it: the same documents, several times faster).

    PyYAML follows YAML 1.1, where a float needs a dot (``1.0e-3``): plain ``1e-3`` would be the
    string ``'1e-3'``. Here it is a float, as in YAML 1.2, JSON and Python.
    """


_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _mapping_without_duplicates(loader: _Loader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen[key] = True
        except TypeError:  # an unhashable key: let PyYAML report it
            break
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def yaml_reason(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: the problem and where (``… (line 3, column 5)``)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        context = f"{exc.context}: " if exc.context else ""
        return f"{context}{exc.problem}{where}"
    return " ".join(str(exc).split())


def yaml_load(text: str) -> Any:
    """``yaml.safe_load`` with duplicate keys refused and ``1e-3`` read as a float."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


# --- numbers: finite floats, ints that are not bools ---------------------------------------------


def _number(value: Any) -> Any:
    if isinstance(value, str) and _FLOAT.match(value.strip()):
        raise ValueError(
            "must be a number, not a string (a YAML 1.1 reader such as papermill's -f reads "
            "1e-3 as a string: write 1.0e-3)"
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a number (not a bool or a string)")
    return value


def _integer(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer (not a bool, a float or a string)")
    return value


#: A float that is a real number: no bools, no strings, no inf/NaN.
FiniteFloat = Annotated[float, BeforeValidator(_number), Field(allow_inf_nan=False)]
#: An int that is not a bool (``epochs: true`` is refused) and not a float or string.
StrictInt = Annotated[int, BeforeValidator(_integer)]


def check_run_name(name: str) -> str:
    """``name`` if it is one plain path component (no separators, no ``..``, no leading dot)."""
    if (
        not name
        or name.startswith(".")
        or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name)
        or ".." in name
    ):
        raise ValueError(
            "run name must be one folder name (letters, digits, '_', '-', '.'; not starting "
            "with '.' and without '..')"
        )
    return name


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


#: Validation context key: ``{IMPORT_FACTORY: False}`` validates a stored config (the run store's
#: ``run.json``) without importing the factory it names — reading a file never runs code.
IMPORT_FACTORY = "import_factory"


class ModelConfig(_Section):
    """The built-in VGG autoencoder (``layer``, ``batch_norm``, ``vgg_weights``), or a user's
    model from ``factory: "package.module:function"`` called with ``kwargs`` (imported, never
    evaluated). ``example_input_size`` is the input used to trace it (default: one
    ``data.crop`` image with 3 channels)."""

    layer: Literal["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"] = "relu3_1"
    batch_norm: bool = False
    vgg_weights: str | None = None  # local torchvision-style VGG state dict for the encoder
    factory: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    example_input_size: list[StrictInt] | None = Field(default=None, min_length=2)

    @field_validator("factory")
    @classmethod
    def _factory_form(cls, value: str | None, info: ValidationInfo) -> str | None:
        from alphaprune.engine.factories import check_factory_name, import_factory

        if value is None:
            return value
        if (info.context or {}).get(IMPORT_FACTORY) is False:
            check_factory_name(value)  # a stored config (the run store's run.json): form only
        else:
            import_factory(value)  # imported now (never the standard library): a typo stops here
        return value

    @field_validator("example_input_size")
    @classmethod
    def _image_batch_size(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return value
        if any(v < 1 for v in value):
            raise ValueError(f"example_input_size must be positive integers, got {value}")
        if len(value) != 4 or value[1] != 3:
            raise ValueError(
                "example_input_size must be [batch, 3, height, width]: the model is trained on "
                f"RGB images, so its input has 3 channels (got {value})"
            )
        return value


def _default_val_images() -> list[str]:
    from alphaprune.engine.data import DEFAULT_VAL_IMAGES  # imports torch: only when needed

    return list(DEFAULT_VAL_IMAGES)


class FractionSplit(_Section):
    """A seeded random split by image group (``data.split``): fractions held out for
    validation and test (see :func:`alphaprune.engine.data.fraction_split`)."""

    val: FiniteFloat = Field(gt=0, lt=1)
    test: FiniteFloat = Field(0.0, ge=0, lt=1)
    seed: StrictInt = Field(0, ge=0, le=MAX_SEED)
    #: "image": each image alone (the bundled motorcycle views together); "folder": the files
    #: of one sub-folder together
    by: Literal["image", "folder"] = "image"

    @model_validator(mode="after")
    def _some_training(self) -> FractionSplit:
        if self.val + self.test >= 1:
            raise ValueError(f"val + test must be < 1 (got {self.val} + {self.test})")
        return self


class DataConfig(_Section):
    source: str = "bundled"  # "bundled" or a folder of JPEG/PNG files
    crop: StrictInt = Field(64, ge=8)
    #: validation crops: "corners" (val_crops fixed crops per image) or "grid" (tiles covering
    #: each held-out image; see alphaprune.engine.data.validation_dataset)
    val_protocol: Literal["corners", "grid"] = "corners"
    batch_size: StrictInt = Field(8, ge=1)
    samples_per_epoch: StrictInt = Field(64, ge=1)
    #: validation images: names or globs ("val/*.png"); tune choices on these
    val_images: list[str] = Field(default_factory=_default_val_images)
    #: test images (names or globs), never trained or tuned on; None: the bundled set's
    #: DEFAULT_TEST_IMAGES not named in val_images, no test split for a folder
    test_images: list[str] | None = None
    #: instead of the lists: a seeded random split by fractions ({val: 0.2, test: 0.2, seed: 0})
    split: FractionSplit | None = None
    val_crops: StrictInt = Field(5, ge=1, le=5)
    num_workers: StrictInt = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_way_to_split(self) -> DataConfig:
        if self.split is None:
            if not self.val_images:
                raise ValueError("val_images: give at least one validation image (or data.split)")
            return self
        if ("val_images" in self.model_fields_set and self.val_images) or self.test_images:
            raise ValueError("give either data.split (fractions) or val_images/test_images")
        # the fractions decide: the lists stay empty (also after a round trip through to_dict)
        self.__dict__["val_images"] = []
        self.__dict__["test_images"] = []
        return self

    def test_patterns(self) -> list[str]:
        """The test images by name or glob (the default for the bundled set when not given)."""
        if self.test_images is not None:
            return list(self.test_images)
        if self.source != "bundled":
            return []
        from alphaprune.engine.data import DEFAULT_TEST_IMAGES

        return [name for name in DEFAULT_TEST_IMAGES if name not in self.val_images]

    def split_of(self, names: Sequence[str]):
        """The :class:`alphaprune.engine.data.Split` of ``names`` under this config."""
        from alphaprune.engine.data import make_split

        fractions = self.split.model_dump() if self.split is not None else None
        return make_split(names, self.val_images, self.test_patterns(), fractions)


class LatencyConfig(_Section):
    """Where ``budget: {latency: r}`` measures latency (:class:`alphaprune.core.latency.LatencyOptions`)."""

    #: "auto": the run's device
    device: Literal["auto", "cpu", "cuda"] = "auto"
    runtime: Literal["torch", "onnxruntime"] = "torch"
    #: intra-op threads while timing (default: torch's setting in the process)
    threads: StrictInt | None = Field(None, ge=1)
    #: the input latency is meant for, e.g. [8, 3, 128, 128] (default: the example input)
    input_size: list[StrictInt] | None = Field(None, min_length=2)
    rounds: StrictInt = Field(5, ge=1)
    #: time the chosen model and correct the choice when it misses by more than tolerance
    measure: bool = True
    tolerance: FiniteFloat = Field(0.02, gt=0)
    attempts: StrictInt = Field(4, ge=1)

    @field_validator("input_size")
    @classmethod
    def _positive(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(v < 1 for v in value):
            raise ValueError(f"input_size must be positive integers, got {value}")
        return value

    def options(self, run_device: str) -> dict[str, Any]:
        """The options for ``attach_gates(latency=…)``; ``run_device`` fills ``device: auto``."""
        data = self.model_dump(exclude={"device"})
        data["device"] = run_device if self.device == "auto" else self.device
        return {k: v for k, v in data.items() if v is not None}


class PruningConfig(_Section):
    keep: float | dict[str, float] = 0.5
    #: a registered criterion (alphaprune.core.criteria): "l1", "bn", "random", or your own
    criterion: str = "l1"
    #: "encoder", "decoder", "both"/"all", or a list of layer-name patterns ("encoder.*")
    target: Literal["encoder", "decoder", "both", "all"] | list[str] = "encoder"
    #: {"flops": r}, {"params": r} or {"latency": r}: per-group keep chosen to keep that
    #: fraction (instead of keep); latency is measured as ``latency`` says
    budget: dict[Literal["flops", "params", "latency"], FiniteFloat] | None = None
    min_keep: FiniteFloat = Field(0.1, gt=0, le=1)
    round_to: StrictInt = Field(1, ge=1)
    #: re-initialise the weights of the model to prune (seeded by the run's seed) before any
    #: training: the architecture trained from scratch (a study control)
    reinit: bool = False
    #: a control that removes no channel (keep 1.0, no budget): the run fine-tunes the whole
    #: model (a study's unpruned and from-scratch controls); otherwise a keep that gates nothing
    #: is refused as a mistake
    fine_tune_only: bool = False
    latency: LatencyConfig = Field(default_factory=LatencyConfig)

    @model_validator(mode="after")
    def _latency_needs_its_budget(self) -> PruningConfig:
        if self.latency != LatencyConfig() and not (self.budget and "latency" in self.budget):
            raise ValueError("pruning.latency is for pruning.budget: {latency: r}")
        return self

    @model_validator(mode="after")
    def _fine_tune_only_keeps_all(self) -> PruningConfig:
        if self.fine_tune_only and (self.keep != 1.0 or self.budget is not None):
            raise ValueError(
                f"pruning.fine_tune_only needs keep: 1.0 and no budget, got keep {self.keep!r}"
                f" and budget {self.budget!r}"
            )
        return self

    @field_validator("budget")
    @classmethod
    def _one_budget(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None:
            from alphaprune.core.budget import check_budget

            check_budget(value)
        return value

    @field_validator("criterion")
    @classmethod
    def _known_criterion(cls, value: str) -> str:
        from alphaprune.core.criteria import criterion_names

        if value not in criterion_names():
            raise ValueError(f"unknown criterion {value!r}; registered: {criterion_names()}")
        return value

    @model_validator(mode="after")
    def _budget_options_need_a_budget(self) -> PruningConfig:
        # compared with the defaults, not with the keys given: a saved config spells them all out
        unused = [
            f"{key}={getattr(self, key)!r}"
            for key, default in (("min_keep", 0.1), ("round_to", 1))
            if getattr(self, key) != default
        ]
        if self.budget is None and unused:
            raise ValueError(
                f"{' and '.join(unused)} {'applies' if len(unused) == 1 else 'apply'} only "
                "with pruning.budget (the per-group keep it "
                "chooses); without a budget, pruning.keep sets every group's fraction"
            )
        return self

    @field_validator("keep", mode="before")
    @classmethod
    def _keep_fractions(cls, value: Any) -> Any:
        from alphaprune.core.gates import check_keep

        if isinstance(value, dict):
            return {name: check_keep(v, f"keep['{name}']") for name, v in value.items()}
        return check_keep(value, "keep")


class OptimizerConfig(_Section):
    name: Literal["adam", "sgd"] = "adam"
    lr: FiniteFloat = Field(1e-3, gt=0)
    weight_decay: FiniteFloat = Field(0.0, ge=0)
    momentum: FiniteFloat = Field(0.9, ge=0, lt=1)
    #: per-step multiplier of the learning rate over the whole run (see schedules.lr_factor)
    lr_decay: Literal["none", "cosine"] = "none"
    warmup_steps: StrictInt = Field(0, ge=0)


class LossConfig(_Section):
    pixel: FiniteFloat = Field(1.0, ge=0)
    vgg_feature: FiniteFloat = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _some_loss(self) -> LossConfig:
        if self.pixel == 0 and self.vgg_feature == 0:
            raise ValueError("at least one of pixel / vgg_feature must be > 0")
        return self


class ExperimentConfig(_Section):
    """A training or pruning run. ``run_dir`` = ``output_dir / name``."""

    name: str = "experiment"
    output_dir: str = "runs"
    seed: StrictInt = Field(0, ge=0, le=MAX_SEED)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: torch intra-op threads of the run (None: torch's default). Float sums are reduced in
    #: another order with another thread count, so a run is bit-reproducible only at a pinned one
    threads: StrictInt | None = Field(None, ge=1)
    epochs: StrictInt = Field(10, ge=0)
    steps_per_epoch: StrictInt | None = Field(None, ge=1)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    pruning: PruningConfig = Field(default_factory=PruningConfig)
    schedule: dict[str, Any] = Field(
        default_factory=lambda: {"kind": "linear", "start": 1.0, "end": 0.0, "epochs": 5}
    )
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    init_from: str | None = None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return check_run_name(value)

    @field_validator("schedule")
    @classmethod
    def _valid_schedule(cls, value: dict[str, Any]) -> dict[str, Any]:
        probe = dict(value)
        probe.setdefault("lr", 1e-3)
        schedule_from_dict(probe)  # raises ScheduleError (a ValueError) naming the key
        return value

    @model_validator(mode="after")
    def _factory_needs_no_vgg(self) -> ExperimentConfig:
        if self.model.factory is not None:
            if self.model.vgg_weights:
                raise ValueError("model.vgg_weights is for the built-in VGG, not model.factory")
            if self.loss.vgg_feature > 0:
                raise ValueError(
                    "loss.vgg_feature needs the built-in VGG encoder, not model.factory"
                )
        elif self.model.kwargs or self.model.example_input_size:
            raise ValueError("model.kwargs / model.example_input_size need model.factory")
        return self

    @property
    def run_dir(self) -> Path:
        """``output_dir / name``; a ConfigError if it would not lie inside ``output_dir``."""
        root = Path(self.output_dir)
        run_dir = root / self.name
        inside = run_dir.resolve().parent == root.resolve()
        if not inside:  # e.g. a symlink named like the run pointing elsewhere
            raise ConfigError(f"run folder {run_dir} does not lie inside {root}")
        return run_dir

    def build_schedule(self) -> Schedule:
        """The α/lr schedule; its ``lr`` defaults to ``optimizer.lr``."""
        data = dict(self.schedule)
        data.setdefault("lr", self.optimizer.lr)
        return schedule_from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-safe dict (round-trips through :func:`config_from_dict`)."""
        return self.model_dump(mode="json")


def _key_path(loc: Sequence[Any]) -> str:
    """``('experiments', 0, 'name')`` as ``experiments[0].name``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def format_validation_error(
    exc: ValidationError, source: str | Path, prefix: Sequence[str] = (), show_input: bool = True
) -> str:
    """One line per error of ``exc``: ``SOURCE: key.path: reason (got VALUE)``.

    ``prefix`` is put before every key path (``("study",)`` for a section validated on its own);
    ``show_input=False`` leaves the offending value out (when it is a whole section).
    """
    lines = []
    for err in exc.errors():
        key = _key_path((*prefix, *err["loc"]))
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        quiet = not show_input or err["type"] in ("extra_forbidden", "missing")
        value = repr(err.get("input"))
        shown = "" if quiet or f"got {value}" in msg else f" (got {value})"
        lines.append(f"{source}: {key}: {msg}{shown}")
    return "\n".join(lines)


def config_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """Validate ``data`` into an :class:`ExperimentConfig`; errors name ``source`` and the key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return ExperimentConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def merge_configs(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of two config dicts: ``override`` wins; nested dicts are merged key by key.

    Neither argument is changed (the result shares no dict or list with them).
    """
    result = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge_configs(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


#: The config keys (section, key) that hold a file or folder path.
PATH_KEYS: tuple[tuple[str, str], ...] = (("data", "source"), ("model", "vgg_weights"))


def resolve_path(path: str | Path, base: Path) -> Path:
    """``path`` (``~`` expanded) relative to the folder ``base``; absolute paths unchanged."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else (base / candidate).resolve()


def resolve_config_paths(config: Any, base: Path) -> None:
    """Make the relative paths of a config dict (:data:`PATH_KEYS`) relative to ``base``, in place.

    ``data.source: bundled`` names the bundled images, not a folder; anything not a config dict,
    or a path that is not a non-empty string, is left for validation to report.
    """
    for section, key in PATH_KEYS:
        block = config.get(section) if isinstance(config, dict) else None
        value = block.get(key) if isinstance(block, dict) else None
        if isinstance(value, str) and value and value != "bundled":
            block[key] = str(resolve_path(value, base))


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a nested dict."""
    result = yaml_load(yaml.safe_dump(dict(data))) or {}
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
        try:
            node[parts[-1]] = yaml_load(raw)
        except yaml.YAMLError as exc:
            reason = yaml_reason(exc)
            raise ConfigError(
                f"--set {key.strip()}: value {raw!r} is not valid YAML: {reason}"
            ) from None
    return result


def read_yaml(path: str | Path, mapping_only: bool = True) -> Any:
    """``yaml.safe_load`` ``path`` (a mapping unless ``mapping_only=False``); errors name the file."""
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a params file" if path.is_dir() else "no such file"
        raise ConfigError(f"{path}: {what}")
    try:
        data = yaml_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {yaml_reason(exc)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    if data is None:
        raise ConfigError(f"{path}: empty params file")
    if mapping_only and not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Load and validate an experiment config from YAML, after ``key=value`` overrides."""
    data = apply_overrides(read_yaml(path), overrides)
    return config_from_dict(data, source=str(path))
