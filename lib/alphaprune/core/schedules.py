"""α and learning-rate schedules: pure functions of the epoch, built from and saved to plain dicts.

Every schedule answers ``alpha(epoch)`` and ``lr(epoch)`` for epoch 0, 1, 2, … (the value used
*during* that epoch). Kinds:

``constant``     α = ``alpha`` throughout.
``linear``       α goes from ``start`` to ``end`` over ``epochs`` epochs, then stays at ``end``.
``step``         α = ``values[epoch]``; the last value holds afterwards.
``exponential``  α = ``start · exp(−rate · epoch)``, snapped to 0 once below ``floor``.
``restart``      exponential decay restarted from α = ``alpha`` (week 9: α = 0.1, rate 0.3, lr 1e-3).

Common keys: ``lr`` (learning rate while α > 0, default 1e-3) and ``lr_at_zero`` (learning rate
once α = 0; defaults to ``lr``). Example YAML::

    schedule: {kind: restart, alpha: 0.1, rate: 0.3, lr: 0.001, lr_at_zero: 0.01}
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from alphaprune.errors import ScheduleError

__all__ = ["Schedule", "make_schedule", "schedule_from_dict", "SCHEDULE_KINDS", "lr_factor"]


def _alpha_value(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScheduleError(f"schedule key '{key}' must be a number in [0, 1], got {value!r}")
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ScheduleError(f"schedule key '{key}' must be in [0, 1], got {value!r}")
    return float(value)


def _positive(value: Any, key: str, integer: bool = False) -> float:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        raise ScheduleError(f"schedule key '{key}' must be {kind} > 0, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ScheduleError(f"schedule key '{key}' must be > 0, got {value!r}")
    return value


@dataclass(frozen=True)
class Schedule:
    """Base class: subclasses define ``kind`` and ``_alpha(epoch)``."""

    kind: ClassVar[str] = ""
    lr: float = 1e-3
    lr_at_zero: float | None = None

    def __post_init__(self) -> None:
        _positive(self.lr, "lr")
        if self.lr_at_zero is not None:
            _positive(self.lr_at_zero, "lr_at_zero")

    def _alpha(self, epoch: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def alpha(self, epoch: int) -> float:
        """α used during ``epoch`` (0-based)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
        return self._alpha(epoch)

    def lr_for(self, epoch: int) -> float:
        """Learning rate used during ``epoch``: ``lr_at_zero`` once α = 0, else ``lr``."""
        if self.alpha(epoch) == 0.0 and self.lr_at_zero is not None:
            return float(self.lr_at_zero)
        return float(self.lr)

    def __call__(self, epoch: int) -> tuple[float, float]:
        """``(alpha, lr)`` for ``epoch``."""
        return self.alpha(epoch), self.lr_for(epoch)

    def first_zero_epoch(self, horizon: int = 10_000) -> int | None:
        """First epoch at which α = 0 (searching up to ``horizon``), or None."""
        return next((e for e in range(horizon) if self.alpha(e) == 0.0), None)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict that :func:`schedule_from_dict` turns back into an equal schedule."""
        data = {"kind": self.kind, **asdict(self)}
        if data.get("lr_at_zero") is None:
            data.pop("lr_at_zero")
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items()}


@dataclass(frozen=True)
class Constant(Schedule):
    kind: ClassVar[str] = "constant"
    alpha_value: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _alpha_value(self.alpha_value, "alpha")

    def _alpha(self, epoch: int) -> float:
        return float(self.alpha_value)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["alpha"] = data.pop("alpha_value")
        return data


@dataclass(frozen=True)
class Linear(Schedule):
    kind: ClassVar[str] = "linear"
    start: float = 1.0
    end: float = 0.0
    epochs: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        _alpha_value(self.start, "start")
        _alpha_value(self.end, "end")
        _positive(self.epochs, "epochs", integer=True)

    def _alpha(self, epoch: int) -> float:
        if epoch >= self.epochs:
            return float(self.end)
        return float(self.start + (self.end - self.start) * epoch / self.epochs)


@dataclass(frozen=True)
class Step(Schedule):
    kind: ClassVar[str] = "step"
    values: tuple[float, ...] = field(default=(1.0, 0.0))

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.values, (list, tuple)) or not self.values:
            raise ScheduleError(
                f"schedule key 'values' must be a non-empty list, got {self.values!r}"
            )
        for i, value in enumerate(self.values):
            _alpha_value(value, f"values[{i}]")
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))

    def _alpha(self, epoch: int) -> float:
        return self.values[min(epoch, len(self.values) - 1)]


@dataclass(frozen=True)
class Exponential(Schedule):
    kind: ClassVar[str] = "exponential"
    #: name of ``start`` in the schedule dict (error messages must use the user's key).
    start_key: ClassVar[str] = "start"
    start: float = 1.0
    rate: float = 0.3
    floor: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        _alpha_value(self.start, self.start_key)
        _positive(self.rate, "rate")
        _alpha_value(self.floor, "floor")

    def _alpha(self, epoch: int) -> float:
        value = self.start * math.exp(-self.rate * epoch)
        return 0.0 if value < self.floor else float(value)


@dataclass(frozen=True)
class Restart(Exponential):
    """Exponential decay that restarts from α = ``alpha`` (e.g. from a checkpoint at that α)."""

    kind: ClassVar[str] = "restart"
    start_key: ClassVar[str] = "alpha"

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["alpha"] = data.pop("start")
        return data


_KINDS: dict[str, type[Schedule]] = {
    cls.kind: cls for cls in (Constant, Linear, Step, Exponential, Restart)
}
SCHEDULE_KINDS = tuple(_KINDS)
#: dict keys that differ from the dataclass field names.
_RENAMES = {"constant": {"alpha": "alpha_value"}, "restart": {"alpha": "start"}}


def schedule_from_dict(data: dict[str, Any]) -> Schedule:
    """Build a schedule from a plain dict such as ``{"kind": "linear", "epochs": 5}``.

    Raises ``ValueError`` (``ScheduleError``) naming the unknown kind or key or the bad value.
    """
    if isinstance(data, Schedule):
        return data
    if not isinstance(data, dict):
        raise ScheduleError(f"a schedule must be a mapping with a 'kind' key, got {data!r}")
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in _KINDS:
        raise ScheduleError(f"unknown schedule kind {kind!r}; choose one of {list(SCHEDULE_KINDS)}")
    cls = _KINDS[kind]
    renames = _RENAMES.get(kind, {})
    allowed = {f.name for f in fields(cls)}
    public = sorted((allowed - set(renames.values())) | set(renames))
    kwargs = {}
    for key, value in data.items():
        name = renames.get(key, key)
        if name not in allowed or (key not in renames and key in renames.values()):
            raise ScheduleError(
                f"unknown key '{key}' for schedule kind '{kind}'; allowed: {public}"
            )
        kwargs[name] = value
    if kind == "restart" and "start" not in kwargs:
        raise ScheduleError("schedule kind 'restart' needs 'alpha', the α to restart from")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded by the key check above
        raise ScheduleError(str(exc)) from None


def make_schedule(kind: str = "linear", **params: Any) -> Schedule:
    """Keyword form of :func:`schedule_from_dict`: ``make_schedule("exponential", rate=0.3)``."""
    return schedule_from_dict({"kind": kind, **params})


def lr_factor(decay: str, step: int, total: int, warmup: int = 0) -> float:
    """Per-step multiplier of the learning rate (``optimizer.lr_decay``), in ``(0, 1]``.

    ``"none"``: 1. ``"cosine"``: ``0.5 · (1 + cos(π · step / total))`` over the run's ``total``
    optimiser steps, floored at 1 % of the peak. A linear warm-up over the first ``warmup`` steps
    applies to both.
    """
    if decay not in ("none", "cosine"):
        raise ScheduleError(f"unknown lr decay {decay!r}; choose 'none' or 'cosine'")
    factor = 1.0
    if decay == "cosine" and total > 0:
        factor = max(0.01, 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total)))
    if warmup > 0 and step < warmup:
        factor *= (step + 1) / warmup
    return factor
