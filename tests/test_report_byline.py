"""A report always says when it was made: the params' date, or the day it was assembled."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

from alphaprune.report.schema import Notes
from alphaprune.report.sections import Report
from alphaprune.report.validation import load_report_params

ROOT = Path(__file__).resolve().parents[1]


def _title_html(tmp_path: Path, **changes) -> str:
    params = load_report_params(ROOT / "params" / "ci.yaml")
    params = params.model_copy(update={"notes": Notes(), **changes})
    (tmp_path / "tables").mkdir(exist_ok=True)
    report = Report(SimpleNamespace(params=params, folder=tmp_path))
    return "".join(block.data for block in report.title())


def test_without_a_date_the_byline_gives_the_build_day(tmp_path) -> None:
    assert f"built {dt.date.today().isoformat()}" in _title_html(tmp_path, date="")


def test_a_given_date_is_shown_as_given(tmp_path) -> None:
    html = _title_html(tmp_path, date="3 December 2026", author="A. Researcher")
    assert "3 December 2026" in html and "A. Researcher" in html and "built" not in html
