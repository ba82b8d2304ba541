"""Every week at a glance, and two weeks side by side.

:func:`write_index` writes ``reports/index.html``: one row per built report (a folder holding
``report.html``) with its title, the date it was exported, the headline numbers read from its
own ``tables/experiments.csv`` and links to its HTML and PDF. Each report build refreshes it.
:func:`compare_weeks` sets two weeks' runs side by side (``python -m alphaprune compare A B``).
"""

from __future__ import annotations

import datetime as dt
import html
import re
from pathlib import Path

import pandas as pd

from alphaprune.atomic import atomic_write_text
from alphaprune.errors import ReportFolderError
from alphaprune.report.outputs import Table

__all__ = ["compare_weeks", "week_summary", "write_index"]

INDEX_FILE = "index.html"
REPORT_HTML = "report.html"
REPORT_PDF = "report.pdf"
EXPERIMENTS = Table.EXPERIMENTS.path
#: the columns :func:`compare_weeks` sets side by side (those a week's table holds)
COMPARED = ("label", "keep", "epochs", "lr", "status", "val_psnr", "val_ssim")


def _title(report: Path) -> str:
    match = re.search(r"<title>(.*?)</title>", report.read_text(errors="replace"), re.S)
    return html.unescape(match.group(1).strip()) if match else report.parent.name


def _experiments(folder: Path) -> pd.DataFrame | None:
    path = folder / EXPERIMENTS
    if not path.is_file() or path.stat().st_size == 0:
        return None
    return pd.read_csv(path)


def week_summary(folder: str | Path) -> dict[str, object] | None:
    """The index row of one report folder, or None when it holds no ``report.html`` yet.

    Headline numbers come from the folder's own ``tables/experiments.csv``: the baseline's
    validation PSNR and the best finished pruned run (its PSNR and keep)."""
    folder = Path(folder)
    report = folder / REPORT_HTML
    if not report.is_file():
        return None
    row: dict[str, object] = {
        "week": folder.name,
        "title": _title(report),
        "date": dt.datetime.fromtimestamp(report.stat().st_mtime, dt.UTC).strftime("%Y-%m-%d"),
        "html": f"{folder.name}/{REPORT_HTML}",
        "pdf": f"{folder.name}/{REPORT_PDF}" if (folder / REPORT_PDF).is_file() else None,
        "runs": None,
        "baseline_psnr": None,
        "best_run": None,
        "best_psnr": None,
        "best_keep": None,
    }
    table = _experiments(folder)
    if table is None or "val_psnr" not in table:
        return row
    row["runs"] = len(table)
    pruned = table["keep"].notna() if "keep" in table else pd.Series(True, index=table.index)
    if (~pruned).any():
        row["baseline_psnr"] = float(table.loc[~pruned, "val_psnr"].iloc[0])
    finished = table["status"].eq("finished") if "status" in table else True
    candidates = table[pruned & finished].dropna(subset=["val_psnr"])
    if len(candidates):
        best = candidates.loc[candidates["val_psnr"].idxmax()]
        row["best_run"] = str(best.get("label", best.get("run")))
        row["best_psnr"] = float(best["val_psnr"])
        row["best_keep"] = float(best["keep"]) if "keep" in best else None
    return row


def _cell(value: object, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _index_html(rows: list[dict[str, object]]) -> str:
    head = (
        "<tr><th>week</th><th>title</th><th>exported</th><th>runs</th>"
        "<th>baseline PSNR (dB)</th><th>best pruned run</th><th>its PSNR (dB)</th>"
        "<th>its keep</th><th>files</th></tr>"
    )
    lines = []
    for r in rows:
        links = f'<a href="{html.escape(str(r["html"]))}">HTML</a>'
        if r["pdf"]:
            links += f' · <a href="{html.escape(str(r["pdf"]))}">PDF</a>'
        cells = [
            _cell(r["week"]),
            _cell(r["title"]),
            _cell(r["date"]),
            _cell(r["runs"]),
            _cell(r["baseline_psnr"]),
            _cell(r["best_run"]),
            _cell(r["best_psnr"]),
            _cell(r["best_keep"], 3),
            links,
        ]
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>alphaprune reports</title>"
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{padding:.3em .7em;border-bottom:1px solid #ddd;"
        "text-align:left}</style></head><body><h1>alphaprune reports</h1>"
        "<p>PSNR is the validation PSNR each report's Table 1 shows; "
        "the best pruned run is the finished one with the highest PSNR.</p>"
        f"<table>{head}{''.join(lines)}</table></body></html>\n"
    )


def write_index(root: str | Path) -> Path:
    """Write ``root/index.html`` listing every report folder under ``root``; returns its path."""
    root = Path(root)
    rows = [
        row
        for folder in sorted(p for p in root.iterdir() if p.is_dir())
        if (row := week_summary(folder)) is not None
    ]
    path = root / INDEX_FILE
    atomic_write_text(path, _index_html(rows))
    return path


def _resolve_week(name: str | Path, root: Path) -> Path:
    folder = Path(name)
    if not folder.is_dir() and (root / folder).is_dir():
        folder = root / folder
    if not (folder / EXPERIMENTS).is_file():
        raise ReportFolderError(
            f"{name}: no report folder with {EXPERIMENTS} (give a folder such as reports/week09, "
            f"or a week's name under {root})"
        )
    return folder


def compare_weeks(a: str | Path, b: str | Path, root: str | Path = "reports") -> pd.DataFrame:
    """Two weeks' runs side by side, one row per run name (outer join on ``run``), with the
    PSNR difference ``b − a`` where both weeks hold the run."""
    root = Path(root)
    folders = [_resolve_week(a, root), _resolve_week(b, root)]
    tables = []
    for folder in folders:
        table = pd.read_csv(folder / EXPERIMENTS)
        keep = ["run", *[c for c in COMPARED if c in table]]
        tables.append(table[keep].set_index("run").add_prefix(f"{folder.name}:"))
    joined = tables[0].join(tables[1], how="outer")
    left, right = (f"{f.name}:val_psnr" for f in folders)
    if left in joined and right in joined:
        joined["Δ val_psnr"] = joined[right] - joined[left]
    return joined.reset_index()
