"""Reading and validating a weekly report's params file: the schema, then the checks across it.

Every error is a :class:`~alphaprune.errors.ReportParamsError` whose lines name the file and the
key at fault (``params/week09.yaml: experiments[0].start.run: 'x' is not ...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from alphaprune.engine.config import (
    ConfigError,
    config_from_dict,
    format_validation_error,
    read_yaml,
)
from alphaprune.errors import ReportParamsError
from alphaprune.report.run_configs import BASELINE
from alphaprune.report.schema import ReportParams

__all__ = ["load_report_params", "read_report_params", "report_params_from_dict"]


def _check_run_names(params: ReportParams) -> None:
    """Run names are unique, and each run starts from the baseline or a run listed before it."""
    seen = {BASELINE}
    for i, experiment in enumerate(params.experiments):
        where = f"{params.source}: experiments[{i}]"
        start = experiment.start
        if experiment.name in seen:
            raise ReportParamsError(f"{where}.name: run name '{experiment.name}' is used twice")
        if start.run not in seen:
            raise ReportParamsError(
                f"{where}.start.run: '{start.run}' is not '{BASELINE}' or an experiment listed "
                f"before it ({sorted(seen)})"
            )
        if start.run == BASELINE and (start.alpha is not None or start.shrink):
            raise ReportParamsError(
                f"{where}.start: the baseline has no α milestones and nothing to shrink; give "
                "'alpha'/'shrink' only for a pruning run"
            )
        seen.add(experiment.name)


def _check_references(params: ReportParams) -> None:
    """The stages' sections name experiments of the week; the report has a name."""
    _check_run_names(params)
    names = sorted(e.name for e in params.experiments)
    for section in ("reconstruct", "shrink", "gpu"):
        name = getattr(params, section).experiment
        if name not in names:
            raise ReportParamsError(
                f"{params.source}: {section}.experiment: '{name}' is not one of the experiments "
                f"{names}"
            )
    if params.week is None and not params.name:
        raise ReportParamsError(f"{params.source}: give 'week' (a number) or 'name'")


def _check_results_csv(params: ReportParams) -> None:
    """``gpu.results_csv`` lies in the project folder (relative paths are relative to it): a
    report reads no file elsewhere on the machine because its params name it."""
    if not params.gpu.results_csv:
        return
    path = params.resolve(params.gpu.results_csv).resolve()  # links followed: where it really is
    project = params.project().resolve()
    if not path.is_relative_to(project):
        raise ReportParamsError(
            f"{params.source}: gpu.results_csv: {params.gpu.results_csv} is {path}, outside the "
            f"project ({project}); copy the CSV into the project"
        )


def _check_run_configs(params: ReportParams) -> None:
    """Validate every run's merged config with the engine."""
    names = [BASELINE] + [e.name for e in params.experiments]
    for i, name in enumerate(names):
        where = f"experiments[{i - 1}].config" if i else "baseline"
        prefix = f"{params.source}: {where} (or defaults)"
        try:
            config_from_dict(params.run_config(name), source=prefix)
        except ConfigError as exc:  # every line already names file and key
            text = str(exc)
            raise ReportParamsError(
                text if text.startswith(prefix) else f"{prefix}: {text}"
            ) from None


def _check_study(params: ReportParams) -> None:
    """The week's ``study:`` section, with the week's defaults and baseline under it."""
    if params.study is None:
        return
    from alphaprune.study.spec import study_of_report  # pandas & co.: only for a week with a study

    try:
        study_of_report(params)
    except ConfigError as exc:
        raise ReportParamsError(str(exc)) from None


def _check_notes(params: ReportParams) -> None:
    """The notes' references to computed values (:mod:`alphaprune.report.prose`) name known
    runs and values, with a number format only on numbers."""
    from alphaprune.report.prose import check_notes

    check_notes(params)


def report_params_from_dict(data: Any, source: str | Path = "<dict>") -> ReportParams:
    """Validate a params mapping; errors name ``source`` and the offending key."""
    if not isinstance(data, dict):
        raise ReportParamsError(f"{source}: expected a mapping of keys, got {type(data).__name__}")
    try:
        params = ReportParams.model_validate(data)
    except ValidationError as exc:
        raise ReportParamsError(format_validation_error(exc, source)) from None
    params._source = Path(source)
    _check_references(params)
    _check_results_csv(params)
    _check_run_configs(params)
    _check_notes(params)
    _check_study(params)
    return params


def read_report_params(path: str | Path) -> tuple[dict[str, Any], ReportParams]:
    """Read a params file once (safe YAML loader, :func:`~alphaprune.engine.config.read_yaml`);
    returns its content as read and the validated params."""
    path = Path(path)
    if not path.is_file():
        raise ReportParamsError(f"params file '{path}' does not exist")
    try:
        data = read_yaml(path, mapping_only=False)
    except ConfigError as exc:
        raise ReportParamsError(str(exc)) from None
    return data, report_params_from_dict(data, source=path.resolve())


def load_report_params(path: str | Path) -> ReportParams:
    """Read (safe YAML loader, :func:`~alphaprune.engine.config.read_yaml`) and validate a params file."""
    return read_report_params(path)[1]
