"""Every error alphaprune raises on purpose, under one root.

``AlphapruneError``
    ``UserError`` — something the user can fix: a params file, a value, a file, a model we cannot
    prune exactly. The CLI prints the message alone and exits with code 2.
        ``ConfigError``, ``ScheduleError``, ``ReportParamsError``, ``DataError``,
        ``CheckpointError``, ``PruningError``, ``UnsupportedModelError``, ``LockError``,
        ``StageOrderError``, ``StoreError``
    ``RunFailed`` — the work ran and ended without a result; the message says where to look.
        ``Diverged`` (exit code 3), ``ReportError`` → ``StageFailed``, ``ExportError`` (exit 1),
        ``ModelExportError`` (exit 1)
    ``NotebookMissing`` and ``ReportFolderError`` are both a ``UserError`` and a ``ReportError``
    (exit 2).

The CLI also reports an ``OSError`` (a path it cannot write) in one line with exit code 2; anything
else is a bug, and the CLI lets it through with its traceback. Classes also derive from the
built-in they replace (``ValueError``, ``RuntimeError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "AlphapruneError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "Diverged",
    "ExportError",
    "LockError",
    "ModelExportError",
    "NotebookMissing",
    "PruningError",
    "ReportError",
    "ReportFolderError",
    "ReportParamsError",
    "RunFailed",
    "ScheduleError",
    "StageFailed",
    "StageOrderError",
    "StoreError",
    "UnsupportedModelError",
    "UserError",
    "one_line",
]


class AlphapruneError(Exception):
    """Root of alphaprune's errors; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


# --- the user can fix it -----------------------------------------------------------------------


class UserError(AlphapruneError):
    """Bad input: the message names the file, key, value or layer and says what is expected."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """A configuration file or dict is malformed; the message names the source and the key."""


class ScheduleError(ConfigError):
    """A schedule dict names an unknown kind or key, or holds a bad value."""


class ReportParamsError(ConfigError):
    """A params file is missing, is not valid YAML, or has an unknown key or a bad value."""


class DataError(UserError, ValueError):
    """A problem with the image data; the message names the file or image and the problem."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, truncated, corrupted, or asked for at the wrong α."""


class PruningError(UserError, ValueError):
    """A pruning request that cannot be met: a keep, α, budget or mask out of range, a target
    that matches no prunable layer, gates that do not fit the model."""


class UnsupportedModelError(UserError, ValueError):
    """The model has a structure that gating or shrinking cannot handle exactly."""


class LockError(UserError, RuntimeError):
    """Another live process holds the folder's lock; the message names its PID."""


class StageOrderError(UserError, RuntimeError):
    """A stage was run before the stage that writes its inputs."""


class StoreError(UserError, RuntimeError):
    """The run store cannot be used as it is: ``$ALPHAPRUNE_RUNS`` is not an absolute folder, a
    reference file is malformed, a run folder is a symbolic link, or a checkpoint is not the file
    its run's ``done.json`` vouches for. The message names the file or variable."""


# --- the work ran and failed -------------------------------------------------------------------


class RunFailed(AlphapruneError, RuntimeError):
    """A run or a report stage ended without a result (not a bug in alphaprune)."""


class Diverged(RunFailed):
    """A run's loss became inf/NaN; ``epoch`` is the epoch that diverged (0-based, as in
    ``metrics.csv``) and ``last.pt`` holds the last finite epoch."""

    exit_code = 3

    def __init__(
        self,
        name: str,
        run_dir: Path,
        epoch: int,
        losses: dict[str, float],
        message: str = "",
        result: Any = None,
    ):
        self.name, self.run_dir, self.epoch, self.losses = name, Path(run_dir), epoch, losses
        #: the run's :class:`~alphaprune.engine.train.RunResult` up to its last finite epoch,
        #: when the loop that stopped it knows it (None from a check of a finished run)
        self.result = result
        shown = ", ".join(f"{key} {value}" for key, value in losses.items())
        super().__init__(message or f"run '{name}' diverged at epoch {epoch} ({shown})")


class ReportError(RunFailed):
    """The report could not be built (missing notebook, failed stage, failed export)."""


class StageFailed(ReportError):
    """A notebook raised; ``notebook`` is the kept executed notebook holding the error and
    ``cell`` the index of the failing cell (None when the kernel did not start)."""

    def __init__(
        self,
        stage: str,
        notebook: Path,
        cell: int | None,
        error: str,
        detail: str = "",
        kept: bool = True,
        where: str | None = None,
    ):
        self.stage, self.notebook, self.cell = stage, notebook, cell
        self.error, self.detail = error, detail
        where = where or (f"cell {cell}" if cell is not None else "start-up")
        note = f"executed notebook kept at {notebook}" if kept else f"{notebook} not written"
        super().__init__(f"stage '{stage}' failed at {where}: {error} ({note})")


class NotebookMissing(UserError, ReportError):
    """A stage's notebook is not where the params say (``notebooks_dir``) or is unreadable."""


class ReportFolderError(UserError, ReportError):
    """The report folder cannot be used: it is a file, it cannot be written, or it is the project
    folder or the run store (a report never writes over them)."""


class ExportError(ReportError):
    """The HTML could not be written, or Chromium failed to print the PDF."""


class ModelExportError(RunFailed):
    """A model could not be exported (ONNX, ``torch.export``, TorchScript), or the exported
    artefact does not compute what the torch model does; the message names the format, the
    file and the difference. Nothing is left at the artefact's path."""


def one_line(exc: BaseException) -> str:
    """An error's message on one line (its non-blank lines joined by '; '), else its type."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__
