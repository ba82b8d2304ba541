"""The HTML/PDF export offered by the last notebook when it runs in JupyterLab.

Under ``alphaprune report`` (or plain papermill) the runner exports the executed notebook
itself, so the offer says so and does nothing. In JupyterLab the kernel knows the notebook's
file from ``JPY_SESSION_NAME`` (set by the Jupyter server); the export reads that *saved* file,
so it refuses a file saved before the cells that just ran (it would be a stale report) and asks
to save first.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat

from alphaprune.report.export import export_report

__all__ = ["offer_export"]

SESSION_ENV = "JPY_SESSION_NAME"


def _saved_count(path: Path) -> int:
    """The highest execution count among the saved notebook's cells (0: never run or saved)."""
    notebook = nbformat.read(path, as_version=4)
    counts = [c.get("execution_count") or 0 for c in notebook.cells if c.cell_type == "code"]
    return max(counts, default=0)


def offer_export(folder: str | Path, title: str, executed_count: int) -> str:
    """Export the saved notebook of this JupyterLab session to ``folder``/report.html (and .pdf);
    returns the line to show. ``executed_count``: the kernel's execution count of the calling
    cell (``get_ipython().execution_count``), to tell a stale saved file."""
    session = os.environ.get(SESSION_ENV)
    if not session:
        return "the report runner exports this notebook (report.html, report.pdf) itself"
    path = Path(session)
    if not path.is_file():
        return f"cannot find the saved notebook {path}: save it (Ctrl+S) and run this cell again"
    if _saved_count(path) < executed_count - 1:
        return (
            f"{path.name} was saved before the cells above ran: save it (Ctrl+S), then run this "
            "cell again, so the report shows what you see"
        )
    return export_report(path, Path(folder), title=title).message
