"""Where a report writes and what it vouches for (issue 20): its name is one folder name, its
folder is never the project or the run store, --force moves nothing, relative paths follow one
rule, gpu.results_csv stays in the project, and a stage is never skipped over runs that are gone."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml
from cli_runner import one_line_error
from cli_runner import run_cli as cli
from configs import write_yaml
from nbformat.v4 import new_code_cell, new_notebook

import alphaprune.report.runner as runner
from alphaprune.errors import ReportError, ReportParamsError
from alphaprune.report.runner import Stage, run_report, run_stages
from alphaprune.report.validation import load_report_params

ROOT = Path(__file__).resolve().parents[1]
CI_PARAMS = ROOT / "params" / "ci.yaml"


def ci(**changes) -> dict:
    data = yaml.safe_load(CI_PARAMS.read_text(encoding="utf-8"))
    data["notebooks_dir"] = str(ROOT / "notebooks")
    data.update(changes)
    return data


@pytest.fixture
def no_stages(monkeypatch):
    """``run_report`` with its stages and export replaced: what it checks first is all that runs."""
    calls = []

    def run_stages(stages, out_dir, force=False, progress=True, **kwargs):
        calls.append(Path(out_dir))
        raise ReportError("stages not run in this test")

    monkeypatch.setattr(runner, "run_stages", run_stages)
    return calls


# --- the report's name and folder ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../escape_report", "..", "a/b", ".hidden", "x/../.."])
def test_the_report_name_is_one_folder_name(tmp_path, name):
    (tmp_path / "params").mkdir()
    params = write_yaml(tmp_path / "params" / "w.yaml", ci(name=name))
    with pytest.raises(ReportParamsError, match="name: the report's name must be one folder name"):
        load_report_params(params)
    one_line_error(cli("report", str(params), cwd=tmp_path), "one folder name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params"]  # nothing written


def test_a_report_folder_that_is_the_project_or_the_store_is_refused(
    tmp_path, monkeypatch, no_stages
):
    project = tmp_path / "project"
    (project / "params").mkdir(parents=True)
    (project / "notebooks").mkdir()
    store = project / "runs"
    monkeypatch.setenv("ALPHAPRUNE_RUNS", str(store))
    for output_dir, needle in [
        ("..", "is the project folder"),
        ("../..", "above the project"),
        ("../runs", "overlap"),
        ("../runs/x", "overlap"),
    ]:
        params = write_yaml(project / "params" / "w.yaml", ci(output_dir=output_dir))
        one_line_error(cli("report", str(params), cwd=project), needle)
    monkeypatch.setenv("ALPHAPRUNE_RUNS", str(project / "reports" / "w" / "store"))
    params = write_yaml(project / "params" / "w.yaml", ci(name="w"))
    one_line_error(cli("report", str(params), "--force", cwd=project), "overlap")
    assert no_stages == [] and not (project / "reports").exists()


def test_force_leaves_the_report_folders_runs_alone(tmp_path, no_stages):
    out = tmp_path / "out"
    run = tmp_path / "store" / ("a" * 16)
    run.mkdir(parents=True)
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "baseline").symlink_to(run, target_is_directory=True)
    (out / "runs" / "mine").mkdir()
    (out / "runs" / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(ReportError, match="not run in this test"):
        run_report(write_yaml(tmp_path / "w.yaml", ci()), force=True, out_dir=out)
    assert (out / "runs" / "baseline").is_symlink() and run.is_dir()
    assert (out / "runs" / "mine" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".runs")) == []


def test_an_output_dir_that_is_a_file_or_unwritable_exits_2(tmp_path, no_stages):
    afile = tmp_path / "afile"
    afile.write_text("x")
    params = write_yaml(tmp_path / "w.yaml", ci(output_dir=str(afile)))
    one_line_error(cli("report", str(params), cwd=tmp_path), str(afile), "is a file")
    params = write_yaml(tmp_path / "w.yaml", ci(output_dir="/proc/alphaprune-report"))
    one_line_error(cli("report", str(params), cwd=tmp_path), "is not writable")
    params = write_yaml(tmp_path / "w.yaml", ci(output_dir=str(afile / "below")))
    one_line_error(cli("report", str(params), cwd=tmp_path), "is not writable")
    assert no_stages == []


# --- gpu.results_csv stays in the project --------------------------------------------------------


def test_results_csv_outside_the_params_folder_and_project_is_refused(tmp_path):
    (tmp_path / "params").mkdir()
    data = ci()
    data["gpu"]["results_csv"] = "../../../../../../../../etc/passwd"
    params = write_yaml(tmp_path / "params" / "w.yaml", data)
    with pytest.raises(ReportParamsError, match=r"gpu.results_csv: .* is /etc/passwd, outside"):
        load_report_params(params)
    data["gpu"]["results_csv"] = "gpu.csv"  # beside the params file: fine
    load_report_params(write_yaml(tmp_path / "params" / "w.yaml", data))


# --- one rule for relative paths: relative to the params file, or an error ----------------------


def injected(data: dict, **extra) -> dict:
    """A notebook's globals after ``papermill -f`` injected ``data``."""
    from alphaprune.report.notebook import PARAMETER_NAMES

    values = {name: None for name in PARAMETER_NAMES} | data | extra
    lines = "".join(f"{k} = {v!r}\n" for k, v in {**data, **extra}.items())
    values["In"] = ["", "# Parameters\n" + lines]
    return values


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "project"
    (folder / "params").mkdir(parents=True)
    monkeypatch.setenv("ALPHAPRUNE_PROJECT", str(folder))
    monkeypatch.chdir(tmp_path)
    return folder


def test_plain_papermill_with_relative_paths_of_an_unknown_file_is_an_error(project, tmp_path):
    from alphaprune.report.notebook import setup

    data = ci(output_dir="out/w")  # in other/w.yaml: papermill -f does not say so
    with pytest.raises(ReportParamsError, match=r"relative paths \(output_dir\)"):
        setup(injected(data), "01_prune")
    assert not (project / "params" / "out").exists() and not (project / "out").exists()
    data["defaults"]["data"]["source"] = "photos"
    with pytest.raises(ReportParamsError, match=r"defaults\.data\.source"):
        setup(injected(data, out_dir=str(tmp_path / "o")), "01_prune")
    data["defaults"]["data"]["source"] = "bundled"
    stage = setup(injected(data, out_dir=str(tmp_path / "o")), "01_prune")  # out_dir given
    assert stage.folder == tmp_path / "o"


def test_the_runner_passes_a_file_elsewhere_with_its_paths_resolved(project, tmp_path):
    from alphaprune.report.notebook import setup
    from alphaprune.report.stages import papermill_parameters

    data = ci(output_dir="out/w")
    data["defaults"]["data"]["source"] = "photos"
    data["study"]["defaults"] = {"data": {"source": "photos"}}
    (tmp_path / "other").mkdir()
    other = write_yaml(tmp_path / "other" / "w.yaml", data)
    params = load_report_params(other)
    assert params.report_dir() == tmp_path / "other" / "out" / "w"  # relative to the file
    passed = papermill_parameters(other, out_dir=params.report_dir())
    assert passed["study"]["defaults"]["data"]["source"] == str(tmp_path / "other" / "photos")
    stage = setup(injected(passed), "01_prune")
    assert stage.folder == tmp_path / "other" / "out" / "w"
    assert stage.params.run_config("baseline")["data"]["source"] == str(
        tmp_path / "other" / "photos"
    )


# --- a stage is never skipped over runs that are gone -------------------------------------------


def tiny_notebook(path: Path) -> Path:
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1")]), path)
    return path


def test_a_stage_whose_runs_are_gone_runs_again(tmp_path, monkeypatch, capsys):
    ran = []

    def execute(stage, executed, kernel_name, cwd, progress, label):
        ran.append(stage.name)
        tiny_notebook(executed)
        return 0.0

    monkeypatch.setattr(runner, "_execute", execute)
    out = tmp_path / "out"
    run = tmp_path / "store" / ("a" * 16)
    (run / "checkpoints").mkdir(parents=True)
    (run / "done.json").write_text("{}")
    (run / "checkpoints" / "last.pt").write_bytes(b"w")
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "baseline").symlink_to(run, target_is_directory=True)
    requires = ["runs/baseline/done.json", "runs/baseline/checkpoints/last.pt"]
    stages = [
        Stage("01_prune", tiny_notebook(tmp_path / "a.ipynb"), {}, requires),
        Stage("02_reconstruct", tiny_notebook(tmp_path / "b.ipynb"), {}),
    ]
    run_stages(stages, out)
    run_stages(stages, out)
    assert ran == ["01_prune", "02_reconstruct"]  # the second time: both unchanged
    (run / "done.json").unlink()  # e.g. runs gc removed the run from the store
    (run / "checkpoints" / "last.pt").unlink()
    capsys.readouterr()
    run_stages(stages, out)
    assert ran[2:] == ["01_prune", "02_reconstruct"]
    printed = capsys.readouterr().out
    assert "runs/baseline/done.json is gone" in printed and "skipped" not in printed
    assert json.loads((out / ".stages.json").read_text())["stages"]["01_prune"]
