"""Every output of the report is named once (``alphaprune.report.outputs``), every section heading
once (``alphaprune.report.headings``), and a figure is added with one function and one line."""

from __future__ import annotations

import ast
import importlib
import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from alphaprune.report import headings, stages
from alphaprune.report.outputs import (
    OUTPUTS,
    Figure,
    Registry,
    Table,
    save_figure,
    save_table,
    stage_inputs,
)
from alphaprune.report.schema import Notes
from alphaprune.report.sections import Report
from alphaprune.report.validation import load_report_params

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _cells(notebook: Path, kind: str) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == kind]


def plot_keep(layers: pd.DataFrame):
    """The plot function of the figure the tests add: kept fraction per layer."""
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar(layers["layer"], layers["keep"])
    return fig


def test_a_figure_added_with_one_line_is_drawn_saved_and_shown_under_its_heading(tmp_path):
    registry = Registry()
    layers = registry.table("shrink_layers", stages.SHRINK)
    keep = registry.figure(  # the one line (here in a temporary registry)
        "keep",
        heading=headings.PLAN,
        caption="Kept fraction per layer.",
        data=layers,
        plot=plot_keep,
    )
    frame = pd.DataFrame({"layer": ["conv1", "conv2"], "keep": [0.5, 0.25]})
    assert save_table(frame, layers, folder=tmp_path) == tmp_path / "tables" / "shrink_layers.csv"
    params = load_report_params(ROOT / "params" / "ci.yaml").model_copy(
        update={"notes": Notes(plan="Next week: more.")}
    )
    report = Report(SimpleNamespace(params=params, folder=tmp_path), registry=registry)
    html = "".join(block.data for block in report.plan())
    assert (tmp_path / "figures" / "keep.png").is_file()
    assert keep.path == Path("figures") / "keep.png" and registry.named("keep", "figure") is keep
    assert "3. Plan" in html and "<b>Figure 1.</b> Kept fraction per layer." in html
    assert html.index("3. Plan") < html.index("Figure 1.")


def test_a_drawn_figure_whose_table_is_missing_is_left_out(tmp_path):
    registry = Registry()
    layers = registry.table("shrink_layers", stages.SHRINK)
    registry.figure("keep", heading=headings.PLAN, caption="K.", data=layers, plot=plot_keep)
    params = load_report_params(ROOT / "params" / "ci.yaml").model_copy(update={"notes": Notes()})
    report = Report(SimpleNamespace(params=params, folder=tmp_path), registry=registry)
    assert "Figure" not in "".join(block.data for block in report.plan())
    assert not (tmp_path / "figures" / "keep.png").exists()


def test_a_name_is_registered_once_and_checked():
    registry = Registry()
    registry.figure("training", stages.PRUNE)
    with pytest.raises(ValueError, match="figures/training.png is registered twice"):
        registry.figure("training", stages.REPORT)
    with pytest.raises(ValueError, match="lower-case"):
        registry.table("Bad Name", stages.PRUNE)
    with pytest.raises(ValueError, match="unknown stage"):
        registry.table("fine", "07_later")
    with pytest.raises(ValueError, match="needs data"):
        registry.figure("drawn", heading=headings.PLAN, caption="c", plot=plot_keep)
    with pytest.raises(KeyError, match="registered: training"):
        registry.named("trainng", "figure")


def test_save_figure_names_the_file_from_the_registry(tmp_path):
    fig, _ = plt.subplots()
    assert save_figure(fig, Figure.TRAINING, folder=tmp_path) == tmp_path / "figures/training.png"
    assert save_figure(fig, "training", folder=tmp_path) == tmp_path / "figures/training.png"
    with pytest.raises(ValueError, match="is a table, not a figure"):
        save_figure(fig, Table.EXPERIMENTS, folder=tmp_path)
    with pytest.warns(DeprecationWarning, match="not registered"):
        assert save_figure(fig, "mine", folder=tmp_path) == tmp_path / "figures" / "mine.png"
    plt.close(fig)


def test_the_stages_need_what_the_registry_marks_needed():
    params = load_report_params(ROOT / "params" / "ci.yaml")
    needs = stage_inputs(params)
    assert needs[stages.RECONSTRUCT] == ["tables/reconstruction.csv", "figures/reconstruction.png"]
    assert needs[stages.GPU] == ["tables/benchmark.csv", "figures/benchmark.png"]
    assert needs[stages.PRUNE][-1] == "tables/experiments.csv"
    assert needs[stages.REPORT] == []
    assert all(o.stage in stages.STAGES for o in OUTPUTS)


def test_the_registry_names_the_files_the_study_writes():
    from alphaprune.study.output import OUTPUTS as STUDY_FILES

    registered = {o.path.as_posix() for o in OUTPUTS if o.stage == stages.STUDY}
    assert registered == set(STUDY_FILES.values())


def test_the_notebooks_name_outputs_only_through_the_registry():
    registered = {o.path.as_posix() for o in OUTPUTS}
    for notebook in NOTEBOOKS:
        for text in _cells(notebook, "markdown"):
            for path in re.findall(r"`((?:tables|figures)/[a-z_]+\.(?:csv|png))`", text):
                assert path in registered, f"{notebook.name} mentions unregistered {path}"
        for code in _cells(notebook, "code"):
            bare = re.search(r"save_(?:figure|table)\(.*,\s*[\"']\w+[\"']\)\s*$", code, re.M)
            assert not bare, f"{notebook.name}: {bare.group(0)}"


def test_the_headings_are_written_once():
    for text in _cells(ROOT / "notebooks" / "06_report.ipynb", "markdown"):
        assert not re.search(r"^#+ \d+\.", text, re.M), f"a numbered heading in 06_report: {text}"
    tree = ast.parse((ROOT / "lib" / "alphaprune" / "report" / "sections.py").read_text())
    docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    strings = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    ]
    typed = [s for s in strings if re.match(r"\d+\.\d* [A-Z]", s)]  # a heading typed here
    assert typed == []
    assert not any(h.title in s for h in headings.HEADINGS for s in strings)
    assert [h.level for h in (headings.PROGRESS, headings.WEIGHTS)] == [2, 3]


@pytest.mark.parametrize("old", ["blocks", "figures"])
def test_the_old_module_names_still_import_and_warn(old):
    sys.modules.pop(f"alphaprune.report.{old}", None)
    with pytest.warns(DeprecationWarning):
        module = importlib.import_module(f"alphaprune.report.{old}")
    assert hasattr(module, "Report" if old == "blocks" else "save_figure")
