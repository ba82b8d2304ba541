"""The set-up cell of every report notebook: validate the parameters, fix the output folder.

A week's params file is directly a papermill parameters file: every notebook's ``parameters``
cell declares the params file's top-level keys (:data:`PARAMETER_NAMES`) plus ``out_dir``, so ::

    papermill notebooks/01_prune.ipynb OUT.ipynb -f params/week09.yaml [-p out_dir DIR]

runs a stage with the settings that ``python -m alphaprune report params/week09.yaml`` uses (the
runner calls papermill the same way). The first code cell after the parameters calls
:func:`setup`, which

* validates them with the runner's schema (:func:`~alphaprune.report.params.report_params_from_dict`):
  an unknown key, a wrong type or a missing experiment stops the notebook at once, naming the key;
* takes the tiny settings of ``params/interactive.yaml`` when no week was given (JupyterLab);
* relative paths in the params are relative to the params file; papermill does not tell which
  file it read, so when the parameters are not one of the project's params files, a relative
  path is an error naming its key (the runner passes such a file's paths made absolute);
* trusts the model factories the params name, so that the stage loads their checkpoints
  (:mod:`alphaprune.engine.factories`);
* resolves the output folder once — ``out_dir``, else the params' ``output_dir``, else
  ``reports/<name>`` — relative to the project folder (never the kernel's current folder), and
  enters it, so that every file a stage writes lands inside it and re-running is harmless;
* checks that the earlier stages' outputs exist, else names the stage to run and the command.
"""

from __future__ import annotations

import ast
import shlex
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alphaprune.engine.config import ConfigError, read_yaml
from alphaprune.engine.factories import trust_factory
from alphaprune.errors import ReportParamsError, StageOrderError
from alphaprune.paths import project_dir
from alphaprune.report import figures as rf
from alphaprune.report.run_configs import BASELINE, run_checkpoint
from alphaprune.report.schema import ReportParams
from alphaprune.report.stages import (
    PRUNE,
    REPORT,
    STAGES,
    relative_paths,
    stage_inputs,
    stage_notebook,
)
from alphaprune.report.validation import report_params_from_dict

__all__ = [
    "PARAMETER_NAMES",
    "INTERACTIVE",
    "StageOrderError",
    "StageContext",
    "setup",
    "stage_inputs",
]

#: The names every notebook's ``parameters`` cell declares: the params file's top-level keys and
#: ``out_dir`` (the output folder; default: the params' ``output_dir``, else ``reports/<name>``).
PARAMETER_NAMES: tuple[str, ...] = (*ReportParams.model_fields, "out_dir")
#: The params file (relative to the project folder) used when no week is given.
INTERACTIVE = "params/interactive.yaml"
#: First line of the cell papermill injects (``papermill.translators``).
_INJECTED = "# Parameters"


def _injected_names(namespace: Mapping[str, Any]) -> list[str]:
    """Names assigned by papermill's injected-parameters cell (from IPython's input history)."""
    names: list[str] = []
    for source in namespace.get("In", []) or []:
        if not isinstance(source, str) or source.split("\n", 1)[0].strip() != _INJECTED:
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign):
                names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return list(dict.fromkeys(names))


@dataclass
class StageContext:
    """What a stage notebook needs: the validated params and its (entered) output folder."""

    stage: str
    params: ReportParams
    folder: Path
    params_file: str

    @property
    def labels(self) -> dict[str, str]:
        """Run name -> label shown in tables and legends (the baseline is the original model)."""
        return {
            BASELINE: "baseline (original)",
            **{e.name: e.label or e.name for e in self.params.experiments},
        }

    def checkpoint(self, run: str) -> str:
        """Last checkpoint of ``run``, relative to the output folder."""
        return run_checkpoint(run)

    def command(self, stage: str) -> str:
        """The papermill command (from the project folder) that runs ``stage`` into this folder."""
        executed = stage_notebook(self.folder, stage)
        words = ["papermill", stage_notebook(Path("notebooks"), stage).as_posix(), _show(executed)]
        if self.params_file:
            words += ["-f", self.params_file]
        if self.folder != default_folder(self.params):
            words += ["-p", "out_dir", _show(self.folder)]
        return " ".join(shlex.quote(w) for w in words)

    def require(self, stage: str, *paths: str) -> None:
        """Raise :class:`StageOrderError` naming ``stage`` and its command if a path is missing."""
        missing = [p for p in paths if not (self.folder / p).is_file()]
        if missing:
            raise StageOrderError(
                f"{self.stage} needs {missing[0]} from stage {stage}, which has not run into "
                f"{self.folder}. Run it first, from {project_dir()}:\n    {self.command(stage)}\n"
                f"(or open {stage_notebook(Path('notebooks'), stage).as_posix()} in JupyterLab with "
                "the same parameters)"
            )


def default_folder(params: ReportParams) -> Path:
    """The output folder without ``out_dir``: the one the runner uses
    (:meth:`~alphaprune.report.schema.ReportParams.report_dir`)."""
    return params.report_dir()


def _show(path: Path) -> str:
    """``path`` relative to the project folder when inside it (shorter commands)."""
    try:
        return path.relative_to(project_dir()).as_posix()
    except ValueError:
        return str(path)


def _given(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The params keys set in the notebook (None = not given), unknown injected names included."""
    names = [n for n in ReportParams.model_fields if namespace.get(n) is not None]
    names += [n for n in _injected_names(namespace) if n not in PARAMETER_NAMES]
    return {name: namespace[name] for name in names if name in namespace}


def _read(path: Path) -> list[dict[str, Any]]:
    """``path`` as papermill's reader and as alphaprune's reader see it (what each can read)."""
    from papermill.iorw import read_yaml_file

    seen = []
    for reader in (lambda: read_yaml_file(str(path)) or {}, lambda: read_yaml(path)):
        try:
            seen.append(reader())
        except Exception:  # noqa: BLE001 - unreadable or invalid: compared as absent
            pass
    return seen


def _find_file(root: Path, data: Mapping[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    """The params file under ``root/params`` that sets exactly ``data`` (as papermill ``-f`` or
    ``alphaprune report`` passes it), trying ``params/<name>.yaml`` first, and its content as
    alphaprune reads it (``1e-3`` a float, as the runner validates it); None if none matches."""
    name = data.get("name") or (
        f"week{data['week']:02d}" if isinstance(data.get("week"), int) else None
    )
    first = [root / "params" / f"{name}.yaml"] if name else []
    for path in first + sorted((root / "params").rglob("*.yaml")):
        for content in _read(path) if path.is_file() else []:
            if {k: v for k, v in content.items() if v is not None} == dict(data):
                return path, read_yaml(path)  # ConfigError (e.g. a duplicate key) names the file
    return None


def _load_params(namespace: Mapping[str, Any]) -> tuple[ReportParams, str]:
    """The validated params and how to name their file in commands."""
    root = project_dir()
    given = _given(namespace)
    if given.get("experiments") is None:  # no week given: the tiny interactive settings
        try:
            base = read_yaml(root / INTERACTIVE)
        except ConfigError as exc:
            raise ReportParamsError(str(exc)) from None
        data, shown = {**base, **given}, INTERACTIVE
        source: Path = root / INTERACTIVE
        label = INTERACTIVE if not given else f"{INTERACTIVE} with the notebook's parameters"
    else:
        try:
            match = _find_file(root, given)
        except ConfigError as exc:
            raise ReportParamsError(str(exc)) from None
        # the file papermill read, when it is one of the project's params files: read as the
        # runner reads it, relative paths relative to its folder (else params/), named in commands
        data = match[1] if match else given
        found = match[0] if match else None
        if found is None:
            _refuse_relative_paths(given, bool(namespace.get("out_dir")))
        shown = found.relative_to(root).as_posix() if found else "PARAMS.yaml"
        source = found if found else root / "params" / "<parameters>"
        label = shown if found else "the notebook's parameters (papermill -f / -p)"
    try:
        return report_params_from_dict(data, source=source), shown
    except ReportParamsError as exc:  # papermill does not tell which file -f named
        raise ReportParamsError(str(exc).replace(str(source), label)) from None


def _refuse_relative_paths(data: Mapping[str, Any], out_dir_given: bool) -> None:
    """Relative paths mean "relative to the params file", which the notebook cannot know here."""
    keys = relative_paths(dict(data), out_dir_given)
    if keys:
        raise ReportParamsError(
            f"the notebook's parameters (papermill -f / -p) give relative paths ({', '.join(keys)}) "
            "but papermill does not tell the notebook which file they came from: make them "
            "absolute (and pass -p out_dir), keep the params file under the project's params/, "
            "or run python -m alphaprune report PARAMS.yaml (paths relative to the file)"
        )


def _trust_factories(params: ReportParams) -> None:
    """The factories the week's runs name are the user's: their checkpoints may be loaded."""
    names = [BASELINE] + [e.name for e in params.experiments]
    for name in names:
        trust_factory((params.run_config(name).get("model") or {}).get("factory"))


def setup(namespace: MutableMapping[str, Any], stage: str) -> StageContext:
    """Validate a notebook's parameters, make and enter its output folder, check earlier stages.

    ``namespace`` is the notebook's ``globals()``. Safe to run again (the folder is absolute).

    Raises:
        ReportParamsError: an unknown key, a wrong value or a missing experiment (names the key).
        StageOrderError: an earlier stage's output is missing (names the stage and command).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    params, shown = _load_params(namespace)
    _trust_factories(params)
    out_dir = namespace.get("out_dir")
    if out_dir:
        folder = Path(str(out_dir)).expanduser()
        folder = folder if folder.is_absolute() else project_dir() / folder
    else:
        folder = default_folder(params)
    folder = rf.enter(folder.resolve())
    context = StageContext(stage, params, folder, shown)
    needs = stage_inputs(params)
    # the report shows every stage's outputs; the others need only the runs of 01_prune
    for earlier in STAGES[: STAGES.index(stage)]:
        if stage == REPORT or earlier == PRUNE:
            context.require(earlier, *needs[earlier])
    if stage != REPORT:  # its outputs are the report
        print(f"{stage}: {params.report_title} → {folder}")
    return context
