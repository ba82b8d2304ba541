"""The report folder and every file the stages write into it, each named once.

:data:`OUTPUTS` registers every figure (``figures/<name>.png``), table (``tables/<name>.csv``)
and record (``<name>.json``): its name, the stage that writes it, whether later stages need it.
The notebooks save with ``save_figure(fig, Figure.TRAINING)``, the report's sections read
``Table.EXPERIMENTS``, the stages check :func:`stage_inputs` — so a name is never typed twice.

A figure drawn from one table can be added with one registry line and its plot function: give
``plot`` (table -> Figure), ``data`` (the table), ``heading`` and ``caption``, and the report
draws it from the table and shows it, numbered and captioned, at the end of that section
(see docs/report.md, "Adding a figure").
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from alphaprune.atomic import atomic_target
from alphaprune.report import headings, plots, stages  # noqa: F401 (plots: for registry lines)
from alphaprune.report.headings import Heading
from alphaprune.report.run_configs import BASELINE, run_checkpoint
from alphaprune.report.schema import ReportParams
from alphaprune.report.stages import PRUNE, REPORT, STAGES

__all__ = [
    "Output",
    "Registry",
    "OUTPUTS",
    "Figure",
    "Table",
    "Record",
    "enter",
    "save_figure",
    "save_table",
    "draw",
    "stage_inputs",
]

Kind = Literal["figure", "table", "record"]
#: Where each kind of output lives in the report folder, and its file suffix.
_PLACES: dict[str, tuple[str, str]] = {
    "figure": ("figures", ".png"),
    "table": ("tables", ".csv"),
    "record": ("", ".json"),
}
_NAME = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True)
class Output:
    """One file a stage writes into the report folder.

    ``needed``: a later stage reads it, so it must exist before that stage runs. A figure with
    ``plot`` and ``data`` is drawn by the report itself from that table (``plot(frame)`` returns
    the Figure) and shown at the end of the section under ``heading``, with ``caption``.
    """

    name: str
    kind: Kind
    stage: str
    needed: bool = False
    heading: Heading | None = None
    caption: str = ""
    plot: Callable[[pd.DataFrame], Any] | None = None
    data: Output | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"output name {self.name!r}: use lower-case letters, digits and _")
        if self.kind not in _PLACES:
            raise ValueError(f"output {self.name!r}: kind {self.kind!r} is not one of {_PLACES}")
        if self.stage not in STAGES:
            raise ValueError(f"output {self.name!r}: unknown stage {self.stage!r}")
        if self.plot is not None and (
            self.data is None or self.data.kind != "table" or not self.heading or not self.caption
        ):
            raise ValueError(
                f"figure {self.name!r}: a drawn figure needs data (a Table), a heading and a caption"
            )

    @property
    def path(self) -> Path:
        """The file, relative to the report folder (``figures/training.png``)."""
        folder, suffix = _PLACES[self.kind]
        return Path(folder) / f"{self.name}{suffix}"

    def __str__(self) -> str:
        return self.path.as_posix()


class Registry:
    """The outputs of the report, one entry per file; a second entry for a file is an error."""

    def __init__(self) -> None:
        self._entries: dict[Path, Output] = {}

    def add(self, output: Output) -> Output:
        """Register ``output``; returns it."""
        if output.path in self._entries:
            raise ValueError(f"{output.path.as_posix()} is registered twice")
        self._entries[output.path] = output
        return output

    def figure(self, name: str, stage: str = REPORT, **details: Any) -> Output:
        """Register ``figures/<name>.png`` (see :class:`Output` for ``details``)."""
        return self.add(Output(name, "figure", stage, **details))

    def table(self, name: str, stage: str, needed: bool = False) -> Output:
        """Register ``tables/<name>.csv``."""
        return self.add(Output(name, "table", stage, needed))

    def record(self, name: str, stage: str, needed: bool = False) -> Output:
        """Register ``<name>.json``."""
        return self.add(Output(name, "record", stage, needed))

    def __iter__(self) -> Iterator[Output]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def named(self, name: str, kind: Kind) -> Output:
        """The registered ``kind`` called ``name``; KeyError naming the registered ones if none."""
        for output in self:
            if output.name == name and output.kind == kind:
                return output
        known = ", ".join(o.name for o in self if o.kind == kind)
        raise KeyError(f"no {kind} {name!r} is registered (registered: {known})")

    def drawn_under(self, heading: Heading) -> list[Output]:
        """The figures the report draws itself (``plot`` given) under ``heading``, in order."""
        return [o for o in self if o.plot is not None and o.heading == heading]


#: Every output of the report.
OUTPUTS = Registry()


class Table:
    """The tables (``tables/<name>.csv``), one constant each."""

    EXPERIMENTS = OUTPUTS.table("experiments", stages.PRUNE, needed=True)
    METRICS = OUTPUTS.table("metrics", stages.PRUNE)
    ORIGINAL_CHECK = OUTPUTS.table("original_check", stages.PRUNE)
    WEIGHTS = OUTPUTS.table("weights", stages.PRUNE)
    RECONSTRUCTION = OUTPUTS.table("reconstruction", stages.RECONSTRUCT, needed=True)
    SHRINK = OUTPUTS.table("shrink", stages.SHRINK, needed=True)
    SHRINK_CHECK = OUTPUTS.table("shrink_check", stages.SHRINK, needed=True)
    SHRINK_LAYERS = OUTPUTS.table("shrink_layers", stages.SHRINK)
    BENCHMARK = OUTPUTS.table("benchmark", stages.GPU, needed=True)
    BUDGET = OUTPUTS.table("budget", stages.GPU)
    GPU_RESULTS = OUTPUTS.table("gpu_results", stages.GPU)
    # the study's files are written by alphaprune.study.output (below the report: it cannot
    # import this registry; tests/test_report_outputs.py checks that the two agree)
    STUDY = OUTPUTS.table("study", stages.STUDY, needed=True)
    STUDY_SUMMARY = OUTPUTS.table("study_summary", stages.STUDY, needed=True)
    STUDY_BASELINES = OUTPUTS.table("study_baselines", stages.STUDY)


class Figure:
    """The figures (``figures/<name>.png``), one constant each. A figure the report draws itself
    from a table is one line here, e.g. ``KEEP = OUTPUTS.figure("keep", heading=headings.SHRINK,
    caption="…", data=Table.SHRINK_LAYERS, plot=plots.plot_keep)`` (docs/report.md, "Adding a
    figure")."""

    TRAINING = OUTPUTS.figure("training", stages.PRUNE)
    WEIGHTS = OUTPUTS.figure("weights", stages.PRUNE)
    RECONSTRUCTION = OUTPUTS.figure("reconstruction", stages.RECONSTRUCT, needed=True)
    SHRINK_CHANNELS = OUTPUTS.figure("shrink_channels", stages.SHRINK)
    BENCHMARK = OUTPUTS.figure("benchmark", stages.GPU, needed=True)
    LATENCY_FLOPS = OUTPUTS.figure("latency_flops", stages.GPU)
    STUDY = OUTPUTS.figure("study", stages.STUDY, needed=True)  # written by alphaprune.study
    STUDY_CURVES = OUTPUTS.figure("study_curves", stages.STUDY, needed=True)  # alphaprune.study
    STUDY_BASELINES = OUTPUTS.figure("study_baselines", stages.STUDY)  # alphaprune.study


class Record:
    """The JSON records (``<name>.json``), one constant each."""

    STUDY = OUTPUTS.record("study", stages.STUDY, needed=True)  # written by alphaprune.study


def enter(out_dir: str | Path) -> Path:
    """Create ``out_dir`` (with ``figures/`` and ``tables/``), make it the cwd, return it.

    Every path a report notebook uses (``runs/…``, ``figures/…``) is relative to this folder, so
    a notebook behaves the same under papermill (cwd = report folder, ``out_dir="."``) and in
    JupyterLab (cwd = ``notebooks/``, ``out_dir="../reports/interactive"``).
    """
    folder = Path(out_dir).expanduser()
    for sub in ("figures", "tables"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    os.chdir(folder)
    return Path.cwd()


def _path(output: Output | str, kind: Kind, folder: str | Path) -> Path:
    """Where ``output`` goes in ``folder``; a bare name is looked up in :data:`OUTPUTS` (an
    unregistered one still works, with a DeprecationWarning: register it)."""
    if isinstance(output, str):
        try:
            output = OUTPUTS.named(output, kind)
        except KeyError:
            warnings.warn(
                f"{kind} {output!r} is not registered in alphaprune.report.outputs: register it "
                "(OUTPUTS.figure / OUTPUTS.table) and pass the constant",
                DeprecationWarning,
                stacklevel=3,
            )
            place, suffix = _PLACES[kind]
            return Path(folder) / place / f"{output}{suffix}"
    if output.kind != kind:
        raise ValueError(f"{output.path.as_posix()} is a {output.kind}, not a {kind}")
    return Path(folder) / output.path


def save_figure(fig, output: Output | str, dpi: int = 150, folder: str | Path = ".") -> Path:
    """Save ``fig`` as the registered figure ``output`` (``figures/<name>.png`` in ``folder``,
    tight bounding box, written atomically); returns the path."""
    path = _path(output, "figure", folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", facecolor="white")
    return path


def save_table(df: pd.DataFrame, output: Output | str, folder: str | Path = ".") -> Path:
    """Save ``df`` as the registered table ``output`` (``tables/<name>.csv`` in ``folder``, no
    index, written atomically); returns the path."""
    path = _path(output, "table", folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(path, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False)
    return path


def draw(output: Output, folder: str | Path) -> Path | None:
    """Draw the figure ``output`` from its table in ``folder`` and save it there; None (nothing
    drawn) when the table is missing or empty."""
    import matplotlib.pyplot as plt

    source = Path(folder) / output.data.path
    if not source.is_file() or source.stat().st_size == 0:
        return None
    frame = pd.read_csv(source)
    if frame.empty:
        return None
    fig = output.plot(frame)
    try:
        return save_figure(fig, output, folder=folder)
    finally:
        plt.close(fig)


def stage_inputs(params: ReportParams, registry: Registry = OUTPUTS) -> dict[str, list[str]]:
    """The files (relative to the output folder) each stage writes that later stages read: the
    ``needed`` outputs, and the checkpoints of ``01_prune`` the later stages load."""
    runs = [BASELINE] + sorted(
        {params.reconstruct.experiment, params.shrink.experiment, params.gpu.experiment}
    )
    inputs = {
        stage: [o.path.as_posix() for o in registry if o.stage == stage and o.needed]
        for stage in STAGES
    }
    inputs[PRUNE] = [run_checkpoint(r) for r in runs] + inputs[PRUNE]
    if not params.study:
        inputs[stages.STUDY] = []
    return inputs
