"""The report runner: interrupted exports, --force, read-only folders, a second report, a full disk."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from cli_runner import one_line_error
from cli_runner import run_cli as cli
from lock_holder import hold_lock, release

from alphaprune.engine.locks import LockError
from alphaprune.engine.train import diverged_at

pytestmark = [pytest.mark.training, pytest.mark.kernel]  # test tiers: see tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]


# --- cases 4 and 5: the report runner -------------------------------------------------------------

CI_PARAMS = ROOT / "params" / "ci.yaml"


@pytest.fixture
def fake_stages(monkeypatch):
    """``run_report`` with its notebooks replaced by an executed ``06_report`` whose text is
    ``state["text"]`` (written when ``state["ran"]``), so that the export is the only real step."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    import alphaprune.report.runner as report_module
    from alphaprune.report import export

    state = {"text": "v1", "ran": True, "calls": 0}

    def run_stages(stages, out_dir, force=False, progress=True, **kwargs):
        state["calls"] += 1
        path = Path(out_dir) / "06_report.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)  # as the real run_stages does
        if state["ran"]:
            html = new_output("display_data", data={"text/html": f"<p>{state['text']}</p>"})
            nbformat.write(new_notebook(cells=[new_code_cell("", outputs=[html])]), path)
        return [report_module.StageRecord("06_report", "h", state["ran"], 0.0, path, [])]

    monkeypatch.setattr(report_module, "run_stages", run_stages)
    monkeypatch.setattr(export, "find_chromium", lambda: None)
    return state


@pytest.mark.parametrize(
    "failure",
    [KeyboardInterrupt("kill during the export"), OSError(28, "No space left on device")],
    ids=["killed", "disk-full"],
)
def test_interrupted_export_is_redone_not_called_up_to_date(
    tmp_path, fake_stages, monkeypatch, capsys, failure
):
    from alphaprune.report.runner import ReportError, export, run_report

    out = tmp_path / "out"
    run_report(CI_PARAMS, out_dir=out)
    assert "v1" in (out / "report.html").read_text(encoding="utf-8")
    fake_stages["text"] = "v2"  # 06_report reruns with new content …
    real = export.to_html

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(export, "to_html", fail)  # … and the export dies
    with pytest.raises((KeyboardInterrupt, OSError, ReportError)):
        run_report(CI_PARAMS, out_dir=out)
    monkeypatch.setattr(export, "to_html", real)
    fake_stages["ran"] = False  # the next run skips the recorded stage
    capsys.readouterr()
    run_report(CI_PARAMS, out_dir=out)
    printed = capsys.readouterr().out
    assert "up to date" not in printed
    assert "v2" in (out / "report.html").read_text(encoding="utf-8")
    run_report(CI_PARAMS, out_dir=out)  # and now it is
    assert "up to date" in capsys.readouterr().out


def ci_with(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load(CI_PARAMS.read_text(encoding="utf-8"))
    data["notebooks_dir"] = str(ROOT / "notebooks")
    data.update(changes)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def old_report(folder: Path) -> Path:
    """A report folder with trained runs and stage records, as a finished report leaves it."""
    model = folder / "runs" / "baseline" / "checkpoints" / "last.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights")
    (folder / ".stages.json").write_text(json.dumps({"version": 1, "stages": {"01_prune": {}}}))
    return model


def test_force_with_a_missing_notebooks_dir_deletes_nothing(tmp_path, fake_stages):
    from alphaprune.report.runner import ReportError, run_report

    out = tmp_path / "out"
    model = old_report(out)
    missing = tmp_path / "no-such-notebooks"
    params = ci_with(tmp_path, notebooks_dir=str(missing), output_dir=str(out))
    with pytest.raises(ReportError, match="no-such-notebooks/01_prune.ipynb"):
        run_report(params, force=True)
    assert model.read_bytes() == b"weights" and fake_stages["calls"] == 0
    result = cli("report", str(params), "--force", cwd=tmp_path)
    one_line_error(result, "notebook(s) not found", str(missing))
    assert model.read_bytes() == b"weights"
    assert json.loads((out / ".stages.json").read_text())["stages"] == {"01_prune": {}}


def test_force_moves_and_deletes_nothing_in_the_report_folder(
    tmp_path, fake_stages, monkeypatch, capsys
):
    import alphaprune.report.runner as report_module
    from alphaprune.report.runner import ReportError, run_report

    out = tmp_path / "out"
    model = old_report(out)

    def broken(*args, **kwargs):
        raise ReportError("stage '01_prune' failed at cell 4: simulated")

    monkeypatch.setattr(report_module, "run_stages", broken)
    with pytest.raises(ReportError, match="simulated"):
        run_report(CI_PARAMS, force=True, out_dir=out)
    # --force retrains in the store (which keeps each previous run until its retrain is done);
    # it never moves a folder it does not own: runs/ is as it was
    assert model.read_bytes() == b"weights" and not list(out.glob(".runs.previous-*"))
    assert json.loads((out / ".stages.json").read_text())["stages"] == {}  # nothing vouched for


def test_force_on_a_read_only_report_folder_names_the_folder(tmp_path, fake_stages):
    from alphaprune.report.runner import ReportError, run_report

    out = tmp_path / "out"
    model = old_report(out)
    with read_only(out):
        with pytest.raises(ReportError, match=rf"report folder {out} is not writable"):
            run_report(CI_PARAMS, force=True, out_dir=out)
    assert model.read_bytes() == b"weights" and fake_stages["calls"] == 0


class read_only:
    """Make a folder read-only, also for root (``chattr +i``; ``chmod`` does not stop root)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __enter__(self):
        if os.geteuid() == 0:
            subprocess.run(["chattr", "+i", str(self.folder)], check=True)
        else:
            self.folder.chmod(0o555)

    def __exit__(self, *exc):
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(self.folder)], check=True)
        else:
            self.folder.chmod(0o755)


def test_second_report_into_the_same_folder_is_refused_naming_the_holder(tmp_path, fake_stages):
    from alphaprune.report.runner import run_report

    out = tmp_path / "out"
    holder = hold_lock(out)
    try:
        with pytest.raises(
            LockError, match=rf"report folder {out} is in use by process {holder.pid}"
        ):
            run_report(CI_PARAMS, out_dir=out)
        assert fake_stages["calls"] == 0
    finally:
        release(holder)
    run_report(CI_PARAMS, out_dir=out)  # the holder is gone: its stale lock is taken over
    assert fake_stages["calls"] == 1


def test_stage_failing_on_a_full_disk_names_the_cell_error(tmp_path, monkeypatch):
    import errno

    import nbformat
    import papermill.engines
    from nbformat.v4 import new_code_cell, new_notebook

    from alphaprune.report.runner import Stage, StageFailed, run_stages

    source = tmp_path / "full.ipynb"
    cells = [
        new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        new_code_cell("raise OSError(28, 'No space left on device', 'figures/a.png')"),
    ]
    nbformat.write(new_notebook(cells=cells), source)
    real_write = papermill.engines.write_ipynb

    def disk_full_after_the_error(nb, path):  # the disk is full once the cell has failed
        if any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", [])):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(nb, path)

    monkeypatch.setattr(papermill.engines, "write_ipynb", disk_full_after_the_error)
    with pytest.raises(StageFailed) as err:
        run_stages([Stage("full", source, {})], tmp_path / "out", progress=False)
    message = str(err.value)
    assert "start-up" not in message
    assert (
        "failed at cell 1: OSError: [Errno 28] No space left on device: 'figures/a.png'" in message
    )


@pytest.mark.slow
def test_report_with_a_diverged_run_builds_and_its_shrink_stage_says_so(tmp_path):
    from alphaprune.report.runner import StageFailed, run_report

    data = yaml.safe_load(CI_PARAMS.read_text(encoding="utf-8"))
    data["notebooks_dir"] = str(ROOT / "notebooks")
    data["experiments"].append(
        {
            "name": "wild",
            "label": "lr 1e6",
            "start": {"run": "decay", "alpha": 0.0},
            "config": {
                "epochs": 2,
                "optimizer": {"name": "sgd"},
                "schedule": {"kind": "constant", "alpha": 0.0, "lr": 1.0e6},
            },
        }
    )
    data["shrink"]["experiment"] = "wild"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(StageFailed) as err:
        run_report(params, out_dir=out, progress=False)
    assert err.value.stage == "03_shrink"
    assert "run 'wild' diverged at epoch" in str(err.value) and "AssertionError" not in str(
        err.value
    )

    data["shrink"]["experiment"] = "restart"
    params.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    run_report(params, out_dir=out, progress=False)
    epoch = diverged_at(out / "runs" / "wild")
    assert epoch is not None
    table = pd.read_csv(out / "tables" / "experiments.csv").set_index("run")
    assert table.loc["wild", "status"] == f"diverged at epoch {epoch}"
    html = (out / "report.html").read_text(encoding="utf-8").replace("\xa0", " ")  # nbsp → space
    assert "lr 1e6" in html and f"diverged at epoch {epoch}" in html  # Table 1's status column


def test_stage_parameters_read_1e_minus_3_as_the_runner_does(tmp_path):
    """The runner validates the params file with alphaprune's YAML reader; the notebooks must get
    the same values (papermill's YAML 1.1 reader would pass ``1e-3`` on as a string)."""
    from alphaprune.report.params import papermill_parameters, report_params_from_dict

    text = (ROOT / "params" / "ci.yaml").read_text(encoding="utf-8")
    text = text.replace("optimizer: {name: adam, lr: 0.001}", "optimizer: {name: adam, lr: 1e-3}")
    assert "lr: 1e-3}" in text
    path = tmp_path / "ci.yaml"
    path.write_text(text, encoding="utf-8")
    data = papermill_parameters(path, out_dir=tmp_path / "out")
    assert data["defaults"]["optimizer"]["lr"] == 0.001
    data.pop("out_dir")
    params = report_params_from_dict(data, source=path)  # what each notebook's set-up does
    assert params.defaults["optimizer"]["lr"] == 0.001
