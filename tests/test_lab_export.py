"""The last notebook offers the HTML/PDF export in JupyterLab: it exports the saved notebook,
refuses a file saved before the cells ran (a stale report), and under the runner does nothing."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import nbformat

from alphaprune.report import lab_export


def _saved(path: Path, count: int) -> Path:
    cell = nbformat.v4.new_code_cell("1")
    cell.execution_count = count
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    return path


def test_under_the_runner_the_offer_does_nothing(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(lab_export.SESSION_ENV, raising=False)
    assert "runner exports" in lab_export.offer_export(tmp_path, "T", 10)
    assert not list(tmp_path.iterdir())


def test_a_notebook_saved_before_its_cells_ran_is_not_exported(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(lab_export.SESSION_ENV, str(_saved(tmp_path / "06_report.ipynb", 3)))
    assert "save it (Ctrl+S)" in lab_export.offer_export(tmp_path / "out", "T", 12)


def test_a_saved_notebook_is_exported_to_the_output_folder(monkeypatch, tmp_path) -> None:
    notebook = _saved(tmp_path / "06_report.ipynb", 11)
    monkeypatch.setenv(lab_export.SESSION_ENV, str(notebook))
    calls = []

    def export(path, folder, title):
        calls.append((path, folder, title))
        return SimpleNamespace(message=f"wrote {folder / 'report.html'}")

    monkeypatch.setattr(lab_export, "export_report", export)
    line = lab_export.offer_export(tmp_path / "out", "Week 9", 12)
    assert calls == [(notebook, tmp_path / "out", "Week 9")] and "report.html" in line
