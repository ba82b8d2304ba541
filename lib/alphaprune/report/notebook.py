"""The set-up cell of every report notebook: the parameters it was given, validated as given.

Every notebook's ``parameters`` cell declares :data:`PARAMETER_NAMES`: ``params_file``, the
top-level keys of a week's params file, ``out_dir`` and ``retrain``. So both ::

    papermill notebooks/01_prune.ipynb OUT.ipynb -f params/week09.yaml   # the keys, injected
    papermill notebooks/01_prune.ipynb OUT.ipynb -p params_file params/week09.yaml

run a stage with the settings ``python -m alphaprune report params/week09.yaml`` uses (the runner
passes the file's keys, read once, like ``-f``; ``--force`` passes ``-p retrain True``). The
first code cell after the parameters calls :func:`setup` with the notebook's globals, which

* takes what the notebook was given — the file ``params_file`` names (relative to the project
  folder) with any top-level keys given besides it on top, else the keys given, else (nothing
  given: JupyterLab) ``params/interactive.yaml`` — and validates it with the runner's schema
  (:func:`~alphaprune.report.validation.report_params_from_dict`): an unknown key (also one the
  parameters cell does not declare, e.g. a typo'd top-level key injected by ``-f``), a wrong
  type or a missing experiment stops the notebook at once, naming the key;
* resolves relative paths against the project folder (:func:`alphaprune.paths.project_dir`,
  found from the kernel's current folder), as ``alphaprune report`` does;
* trusts the model factories the params name, so that the stage loads their checkpoints
  (:mod:`alphaprune.engine.factories`);
* resolves the output folder once — ``out_dir``, else the params' ``output_dir``, else
  ``reports/<name>`` — relative to the project folder (never the kernel's current folder), and
  enters it, so that every file a stage writes lands inside it and re-running is harmless;
* checks that the earlier stages' outputs exist, else names the stage to run and the command.

Nothing else is read: no params file is searched for, no input history parsed, no environment
variable consulted.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alphaprune.engine.config import ConfigError, read_yaml, resolve_path
from alphaprune.engine.factories import trust_factory
from alphaprune.errors import ReportParamsError, StageOrderError
from alphaprune.paths import project_dir
from alphaprune.report.outputs import enter, stage_inputs
from alphaprune.report.run_configs import BASELINE, run_checkpoint
from alphaprune.report.schema import ReportParams
from alphaprune.report.stages import PRUNE, REPORT, STAGES, stage_notebook
from alphaprune.report.validation import report_params_from_dict

__all__ = [
    "PARAMETER_NAMES",
    "INTERACTIVE",
    "StageOrderError",
    "StageContext",
    "setup",
    "stage_params",
    "stage_inputs",
]

#: The params file's top-level keys.
KEYS: tuple[str, ...] = tuple(ReportParams.model_fields)
#: The names every notebook's ``parameters`` cell declares: ``params_file`` (a week's params
#: file, relative to the project folder), the params file's top-level keys, ``out_dir`` (the
#: output folder; default: the params' ``output_dir``, else ``reports/<name>``) and ``retrain``
#: (train every run of the week again: ``alphaprune report --force``).
PARAMETER_NAMES: tuple[str, ...] = ("params_file", *KEYS, "out_dir", "retrain")
#: The params file (relative to the project folder) used when nothing is given.
INTERACTIVE = "params/interactive.yaml"
#: Set in the notebook's globals by :func:`setup`: later cells' variables are not parameters.
_DONE = "_alphaprune_stage"
#: Globals of every IPython kernel that hold plain data but are no parameters.
_KERNEL_NAMES = frozenset({"In", "Out"})
#: The value types papermill injects (``-f`` / ``-p``).
_INJECTABLE = (type(None), bool, int, float, str, list, dict)
#: How an error names parameters that came from no file.
_GIVEN = "the notebook's parameters (papermill -f / -p)"


@dataclass
class StageContext:
    """What a stage notebook needs: the validated params, its (entered) output folder, the
    project folder and whether to train the week's runs again."""

    stage: str
    params: ReportParams
    folder: Path
    params_file: str
    project: Path
    retrain: bool = False

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
        notebook = stage_notebook(Path("notebooks"), stage).as_posix()
        words = ["papermill", notebook, _show(executed, self.project)]
        words += ["-f", self.params_file]
        if self.folder != default_folder(self.params):
            words += ["-p", "out_dir", _show(self.folder, self.project)]
        return " ".join(shlex.quote(w) for w in words)

    def require(self, stage: str, *paths: str) -> None:
        """Raise :class:`StageOrderError` naming ``stage`` and its command if a path is missing."""
        missing = [p for p in paths if not (self.folder / p).is_file()]
        if missing:
            raise StageOrderError(
                f"{self.stage} needs {missing[0]} from stage {stage}, which has not run into "
                f"{self.folder}. Run it first, from {self.project}:\n    {self.command(stage)}\n"
                f"(or open {stage_notebook(Path('notebooks'), stage).as_posix()} in JupyterLab with "
                "the same parameters)"
            )


def default_folder(params: ReportParams) -> Path:
    """The output folder without ``out_dir``: the one the runner uses
    (:meth:`~alphaprune.report.schema.ReportParams.report_dir`)."""
    return params.report_dir()


def _show(path: Path, project: Path) -> str:
    """``path`` relative to the project folder when inside it (shorter commands)."""
    try:
        return path.relative_to(project).as_posix()
    except ValueError:
        return str(path)


def _injectable(value: Any) -> bool:
    """Whether papermill could have injected ``value`` (YAML data: no modules, functions …)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _injectable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_injectable(v) for v in value)
    return isinstance(value, _INJECTABLE)


def _given(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The params keys the notebook was given (None = not given).

    At the first set-up in a kernel, a global the parameters cell does not declare but papermill
    could have injected (a typo'd key of ``-f FILE`` or ``-p``) is an error naming it."""
    if _DONE not in namespace:
        unknown = [
            name
            for name, value in namespace.items()
            if name not in PARAMETER_NAMES
            and not name.startswith("_")
            and name not in _KERNEL_NAMES
            and _injectable(value)
        ]
        if unknown:
            keys = "; ".join(f"{name}: unknown key" for name in unknown)
            raise ReportParamsError(
                f"{_GIVEN}: {keys} (the parameters are {', '.join(PARAMETER_NAMES)})"
            )
    return {name: namespace[name] for name in KEYS if namespace.get(name) is not None}


def _read(path: Path) -> dict[str, Any]:
    try:
        return read_yaml(path)
    except ConfigError as exc:
        raise ReportParamsError(str(exc)) from None


def stage_params(
    given: Mapping[str, Any], params_file: str | Path | None = None, project: Path | None = None
) -> tuple[ReportParams, str]:
    """Validate a stage's parameters as given; returns them and their file as commands name it.

    ``params_file`` (relative to ``project``, default :func:`~alphaprune.paths.project_dir`) is
    read with the project's YAML reader and ``given`` top-level keys replace its own; without a
    file, ``given`` is validated alone; with nothing at all, :data:`INTERACTIVE` is used.
    Relative paths in the params are relative to the project folder.

    Raises:
        ReportParamsError: an unknown key, a wrong value or a missing experiment (names the key).
    """
    root = project or project_dir()
    if params_file is None and not given:
        params_file = INTERACTIVE
    if params_file is not None:
        path = resolve_path(str(params_file), root)
        data = {**_read(path), **given}
        shown = _show(path, root)
        return report_params_from_dict(data, source=path), shown
    source = root / "<parameters>"
    try:
        params = report_params_from_dict(dict(given), source=source)
    except ReportParamsError as exc:  # papermill does not tell which file -f named
        raise ReportParamsError(str(exc).replace(str(source), _GIVEN)) from None
    guess = Path("params") / f"{params.report_name}.yaml"
    return params, guess.as_posix() if (root / guess).is_file() else "PARAMS.yaml"


def _trust_factories(params: ReportParams) -> None:
    """The factories the week's runs name are the user's: their checkpoints may be loaded."""
    names = [BASELINE] + [e.name for e in params.experiments]
    for name in names:
        trust_factory((params.run_config(name).get("model") or {}).get("factory"))


def _flag(namespace: Mapping[str, Any], name: str) -> bool:
    value = namespace.get(name)
    if value is None or isinstance(value, bool):
        return bool(value)
    raise ReportParamsError(f"{_GIVEN}: {name}: must be True or False, not {value!r}")


def setup(namespace: MutableMapping[str, Any], stage: str) -> StageContext:
    """Validate a notebook's parameters, make and enter its output folder, check earlier stages.

    ``namespace`` is the notebook's ``globals()``, called right after the parameters. Safe to
    run again (the folder is absolute).

    Raises:
        ReportParamsError: an unknown key, a wrong value or a missing experiment (names the key).
        StageOrderError: an earlier stage's output is missing (names the stage and command).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    project = project_dir()
    given = _given(namespace)
    params, shown = stage_params(given, namespace.get("params_file"), project)
    retrain = _flag(namespace, "retrain")
    _trust_factories(params)
    out_dir = namespace.get("out_dir")
    folder = resolve_path(str(out_dir), project) if out_dir else default_folder(params)
    namespace[_DONE] = stage
    folder = enter(folder.resolve())
    context = StageContext(stage, params, folder, shown, project, retrain)
    needs = stage_inputs(params)
    # the report shows every stage's outputs; the others need only the runs of 01_prune
    for earlier in STAGES[: STAGES.index(stage)]:
        if stage == REPORT or earlier == PRUNE:
            context.require(earlier, *needs[earlier])
    if stage != REPORT:  # its outputs are the report
        print(f"{stage}: {params.report_title} → {folder}")
    return context
