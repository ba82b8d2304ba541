"""Notebooks are committed without outputs, with one parameters cell declaring the params file's
keys (what papermill -f passes), and thin code (the logic lives in lib/alphaprune)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from alphaprune.report.notebook import PARAMETER_NAMES
from alphaprune.report.params import STAGES, ReportParams

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
STAGE_NOTEBOOKS = [ROOT / "notebooks" / f"{stage}.ipynb" for stage in STAGES]


def code(cell) -> str:
    """Cell source without IPython magics, parseable as Python."""
    return "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in cell.source.splitlines()
    )


def test_every_stage_has_a_notebook() -> None:
    assert set(STAGE_NOTEBOOKS) <= set(NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.execution_count is None, f"{path.name} cell {index}: execution_count"
            assert cell.outputs == [], f"{path.name} cell {index}: has outputs"
        assert "papermill" not in cell.metadata, f"{path.name} cell {index}: papermill metadata"
    assert "papermill" not in nb.metadata, f"{path.name}: executed by papermill, not clean"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", STAGE_NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_parameters_cell(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code_cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one 'parameters' cell"
    assert code_cells[0] is tagged[0], f"{path.name}: the parameters cell must come first"
    assigned = {
        target.id: node.value
        for node in ast.parse(tagged[0].source).body
        if isinstance(node, ast.Assign)
        for target in node.targets
    }
    # params_file, every top-level key of a params file, out_dir and retrain: `papermill -f
    # params/weekNN.yaml` passes no unknown parameter; nothing given: params/interactive.yaml
    assert list(assigned) == list(PARAMETER_NAMES), f"{path.name}: parameters differ"
    assert set(PARAMETER_NAMES) == set(ReportParams.model_fields) | {
        "params_file",
        "out_dir",
        "retrain",
    }
    defaults = {name: value.value for name, value in assigned.items()}
    assert all(isinstance(v, ast.Constant) for v in assigned.values())
    assert defaults == {**dict.fromkeys(PARAMETER_NAMES), "retrain": False}
    # the first code cell after the parameters validates them and enters the output folder
    setup = code_cells[1].source
    assert f'stage = setup(globals(), "{path.stem}")' in setup, f"{path.name}: no set-up call"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_is_thin(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    sources = [code(c) for c in nb.cells if c.cell_type == "code"]
    for source in sources:
        tree = ast.parse(source)  # every cell is valid Python (magics aside)
        defined = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)]
        assert not defined, f"{path.name}: defines {defined}; put logic in lib/alphaprune"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    lines = [
        line
        for c in nb.cells
        if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])
        for line in c.source.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert len(lines) <= 40, f"{path.name}: {len(lines)} code lines outside the parameters cell"
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    assert len(markdown) >= len(sources) - 1, f"{path.name}: a markdown cell per step"
    if re.search(r"\bplt\.|\.plot\b|save_figure", text):
        assert "%matplotlib inline" in text, f"{path.name}: plots without %matplotlib inline"


@pytest.mark.slow  # > 5 s on a busy machine: out of the unit tier, in make test
def test_git_strips_outputs_of_a_notebook_saved_with_them(tmp_path) -> None:
    """make venv installs nbstripout as the git filter of the committed .gitattributes: a
    notebook saved in JupyterLab with outputs leaves `git diff` clean."""
    import shutil
    import subprocess
    import sys

    attributes = (ROOT / ".gitattributes").read_text()
    assert "*.ipynb filter=nbstripout" in attributes
    assert "notebook-filter" in (ROOT / "Makefile").read_text()

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True)

    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    shutil.copy(ROOT / ".gitattributes", tmp_path / ".gitattributes")
    subprocess.run(
        [sys.executable, "-m", "nbstripout", "--install", "--attributes", ".gitattributes"],
        cwd=tmp_path,
        check=True,
    )
    notebook = tmp_path / "n.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nbformat.write(nb, notebook)
    git("add", ".")
    assert git("commit", "-qm", "clean").returncode == 0
    nb.cells[0].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"})]
    nb.cells[0].execution_count = 1
    nbformat.write(nb, notebook)
    assert git("diff", "--quiet").returncode == 0, git("diff").stdout
    git("add", ".")  # what a commit would take: the stripped notebook, unchanged
    assert git("diff", "--cached", "--quiet").returncode == 0, git("diff", "--cached").stdout
