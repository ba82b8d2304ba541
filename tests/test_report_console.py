"""What ``alphaprune report`` tells the user: which project folder and why (first line), each run
trained / resumed / reused with its epochs (from inside the stage's kernel), the report's files
(last line)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import nbformat
import pytest
import yaml
from configs import tiny_config, write_yaml
from nbformat.v4 import new_code_cell, new_notebook, new_output

import alphaprune.report.runner as runner
from alphaprune.paths import locate_project, project_dir
from alphaprune.report import console, export
from alphaprune.report.runner import Stage, run_report, run_stages

ROOT = Path(__file__).resolve().parents[1]
CI_PARAMS = ROOT / "params" / "ci.yaml"


# --- the project folder ---------------------------------------------------------------------------


def make_project(folder: Path) -> Path:
    (folder / "notebooks").mkdir(parents=True)
    (folder / "params").mkdir()
    return folder


def test_the_project_is_where_the_params_file_is_not_where_alphaprune_is_installed(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("ALPHAPRUNE_PROJECT", raising=False)
    clone = make_project(tmp_path / "clone")
    params = clone / "params" / "week09.yaml"
    monkeypatch.chdir(tmp_path)  # in no project
    found, why = locate_project(params)
    assert found == clone and "params file" in why
    monkeypatch.chdir(clone / "notebooks")  # JupyterLab's kernels start here
    assert project_dir() == clone
    assert locate_project()[1] == "the current folder is in it"
    monkeypatch.setenv("ALPHAPRUNE_PROJECT", str(tmp_path))
    assert locate_project(params)[0] == clone  # the params file's project first
    assert locate_project() == (tmp_path, "$ALPHAPRUNE_PROJECT")


def fake_stages(monkeypatch) -> None:
    """``run_stages`` replaced by an executed report notebook; the export runs (HTML only)."""

    def run_stages(stages, out_dir, force=False, progress=True, **kwargs):
        path = Path(out_dir) / "06_report.ipynb"
        html = new_output("display_data", data={"text/html": "<p>the report</p>"})
        if not path.exists():  # the second run: unchanged
            nbformat.write(new_notebook(cells=[new_code_cell("", outputs=[html])]), path)
        return [runner.StageRecord("06_report", "h", True, 0.0, path, [])]

    monkeypatch.setattr(runner, "run_stages", run_stages)
    monkeypatch.setattr(export, "find_chromium", lambda: None)


@pytest.mark.heavy
def test_first_line_names_the_project_and_last_line_the_report_files(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ALPHAPRUNE_PROJECT", raising=False)
    clone = make_project(tmp_path / "clone")
    data = yaml.safe_load(CI_PARAMS.read_text(encoding="utf-8"))
    data["notebooks_dir"] = str(ROOT / "notebooks")
    params = write_yaml(clone / "params" / "w.yaml", data)
    fake_stages(monkeypatch)
    monkeypatch.chdir(tmp_path)
    folder = run_report(params)
    assert folder == clone / "reports" / "ci"  # the clone's, not the installed checkout's
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"project folder {clone} (it holds the params file {params.resolve()})"
    html = folder / "report.html"
    assert lines[-1] == f"report written: {html} (no PDF: {export.PDF_HINT})"
    assert lines[-2] == f"index of every week: {clone / 'reports' / 'index.html'}"
    run_report(params)
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(f"report up to date: {html}")


# --- lines from inside a stage ---------------------------------------------------------------------


def test_console_echo_prints_only_progress_lines_as_they_complete():
    out = io.StringIO()
    echo = console.ConsoleEcho(out, indent="  ")
    echo.write("a table row\n" + console.PREFIX + "baseline: epo")
    assert out.getvalue() == ""  # an incomplete line waits
    echo.write("ch 1/3\nwarning: something\r" + console.PREFIX + "x: reused\n")
    assert out.getvalue() == "  baseline: epoch 1/3\n  x: reused\n"


def wait_for(read, text: str) -> str:
    """What ``read()`` returns once it contains ``text`` (fails after a generous deadline)."""
    deadline = time.monotonic() + 30
    seen = ""
    while text not in seen and time.monotonic() < deadline:
        time.sleep(0.02)
        seen += read()
    assert text in seen, seen
    return seen


def test_epoch_watch_says_each_finished_epoch_with_an_eta(tmp_path, capsys):
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("epoch,alpha\n")
    with console.EpochWatch("decay", tmp_path, total=3, every=0.01):
        metrics.write_text("epoch,alpha\n0,1.0\n")
        seen = wait_for(lambda: capsys.readouterr().err, "decay: epoch 1/3, ETA ")
        metrics.write_text("epoch,alpha\n0,1.0\n1,0.5\n2,0.0\n")
        seen += wait_for(lambda: capsys.readouterr().err, "decay: epoch 3/3")
    assert console.PREFIX + "decay: epoch 3/3\n" in seen  # the last epoch has no ETA
    assert console.duration(42) == "42 s" and console.duration(185) == "3 min 05 s"
    assert console.duration(3720) == "1 h 02 min"


@pytest.mark.training
def test_run_all_says_trained_then_reused_with_the_fingerprint(tmp_path, monkeypatch, capsys):
    from alphaprune.report.runs import run_all

    monkeypatch.chdir(tmp_path)
    baseline = {**tiny_config(tmp_path, steps=1, samples=2, epochs=1), "name": "baseline"}
    baseline["output_dir"] = "runs"
    run_all(baseline, [], progress=False)
    first = [line for line in capsys.readouterr().err.splitlines() if console.PREFIX in line]
    assert first[0].startswith(console.PREFIX + "baseline: training (fingerprint ")
    assert first[-1].startswith(console.PREFIX + "baseline: trained in ")
    run_all(baseline, [], progress=False)
    again = [line for line in capsys.readouterr().err.splitlines() if console.PREFIX in line]
    assert len(again) == 1 and again[0].startswith(
        console.PREFIX + "baseline: reused (fingerprint "
    )
    run_all(baseline, [], progress=False, force=True)
    forced = capsys.readouterr().err
    assert console.PREFIX + "baseline: retraining (fingerprint " in forced


@pytest.mark.kernel
@pytest.mark.training
def test_a_stages_progress_lines_reach_the_console(tmp_path, capsys):
    """Through a real kernel: what the stage says on its stderr, the runner prints as it comes;
    the rest of the kernel's output stays in the executed notebook."""
    notebook = tmp_path / "say.ipynb"
    cell = (
        "import sys\nfrom alphaprune.report import console\n"
        "print('a table')\nprint('noise', file=sys.stderr)\nconsole.say('baseline: epoch 1/2')"
    )
    nbformat.write(new_notebook(cells=[new_code_cell(cell)]), notebook)
    run_stages([Stage("01_prune", notebook)], tmp_path / "out", cwd=tmp_path)
    out = capsys.readouterr().out
    assert "    baseline: epoch 1/2\n" in out
    assert "a table" not in out and "noise" not in out


@pytest.fixture(autouse=True)
def _no_project_env(monkeypatch):
    monkeypatch.delenv("ALPHAPRUNE_PROJECT", raising=False)
