"""reports/index.html lists every built week with numbers read from its own tables, and
`python -m alphaprune compare A B` sets two weeks' runs side by side."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from alphaprune.cli import main
from alphaprune.errors import ReportFolderError
from alphaprune.report.index import compare_weeks, week_summary, write_index

COLUMNS = ["run", "label", "keep", "status", "val_psnr", "val_ssim"]


def _week(root: Path, name: str, rows: list[tuple], pdf: bool = True) -> Path:
    folder = root / name
    (folder / "tables").mkdir(parents=True)
    pd.DataFrame(rows, columns=COLUMNS).to_csv(folder / "tables" / "experiments.csv", index=False)
    (folder / "report.html").write_text(f"<html><title>Report &amp; {name}</title></html>")
    if pdf:
        (folder / "report.pdf").write_bytes(b"%PDF")
    return folder


@pytest.fixture
def weeks(tmp_path: Path) -> Path:
    _week(
        tmp_path,
        "week09",
        [
            ("baseline", "original", None, "finished", 29.5, 0.84),
            ("decay", "α step", 0.5, "finished", 23.9, 0.77),
            ("lr0.1", "lr 0.1", 0.5, "exploded at epoch 0", 31.0, 0.1),
        ],
    )
    _week(
        tmp_path,
        "week10",
        [
            ("baseline", "original", None, "finished", 29.6, 0.84),
            ("decay", "α step", 0.5, "finished", 24.4, 0.78),
        ],
        pdf=False,
    )
    (tmp_path / "week11" / "tables").mkdir(parents=True)  # not built yet: no report.html
    return tmp_path


def test_a_week_row_takes_its_numbers_from_its_own_table(weeks: Path) -> None:
    row = week_summary(weeks / "week09")
    assert row is not None and row["title"] == "Report & week09"
    assert row["baseline_psnr"] == 29.5 and row["runs"] == 3
    # the exploded run has the higher PSNR in this made-up table but is not a result
    assert row["best_run"] == "α step" and row["best_psnr"] == 23.9 and row["best_keep"] == 0.5
    assert week_summary(weeks / "week11") is None


def test_the_index_links_every_built_week(weeks: Path) -> None:
    text = write_index(weeks).read_text()
    assert 'href="week09/report.html"' in text and 'href="week09/report.pdf"' in text
    assert 'href="week10/report.html"' in text and "week10/report.pdf" not in text
    assert "week11" not in text and "24.40" in text


def test_compare_sets_two_weeks_side_by_side(weeks: Path, capsys) -> None:
    table = compare_weeks("week09", "week10", root=weeks).set_index("run")
    assert table.loc["decay", "Δ val_psnr"] == pytest.approx(0.5)
    assert pd.isna(table.loc["lr0.1", "week10:val_psnr"])
    assert main(["compare", str(weeks / "week09"), str(weeks / "week10")]) == 0
    assert "Δ val_psnr" in capsys.readouterr().out


def test_compare_names_a_folder_that_is_not_a_report(weeks: Path) -> None:
    with pytest.raises(ReportFolderError, match="week12"):
        compare_weeks("week09", "week12", root=weeks)
    assert main(["compare", str(weeks / "week09"), str(weeks / "week12")]) == 2
