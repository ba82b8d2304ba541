"""A week's params file is the papermill parameters file of every notebook: validation in the
set-up cell, stable output folders, stage order, and plain papermill = ``alphaprune report``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from alphaprune.report.notebook import PARAMETER_NAMES, StageOrderError, setup
from alphaprune.report.params import STAGES, ReportParamsError, papermill_parameters
from alphaprune.report.runner import run_report

ROOT = Path(__file__).resolve().parents[1]
CI_PARAMS = ROOT / "params" / "ci.yaml"
#: Columns that measure time (or depend on it, or on what ran before): not compared.
TIMING = {
    "seconds",
    "latency_ms_median",
    "latency_ms_p10",
    "latency_ms_p90",
    "throughput_img_s",
    "latency_ratio",
    "cpu_util_pct",
    "rss_peak_mib",
    "gpu_util_pct_mean",
    "gpu_util_pct_max",
    "gpu_util_samples",
    "gpu_util_rate_hz",
    "torch_peak_alloc_mib",
    "torch_peak_activation_mib",
    "nvml_mem_used_mib",
    "timed_batches",
    "block_batches",
    "reused",
    "train_seconds",  # the second path finds the first path's runs in the store
}


def namespace(data: dict, injected: bool = True, **extra) -> dict:
    """A notebook's globals after papermill injected ``data`` (and its ``In`` history)."""
    values = {name: None for name in PARAMETER_NAMES}
    values.update(data, **extra)
    if injected:
        lines = "".join(f"{k} = {v!r}\n" for k, v in {**data, **extra}.items())
        values["In"] = ["", "week = None\n", "# Parameters\n" + lines]
    return values


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    """A project folder with params/ (for relative output folders), as the notebooks see it."""
    folder = tmp_path / "project"
    (folder / "params").mkdir(parents=True)
    for name in ("ci.yaml", "interactive.yaml"):
        shutil.copy(ROOT / "params" / name, folder / "params" / name)
    monkeypatch.setenv("ALPHAPRUNE_PROJECT", str(folder))
    monkeypatch.chdir(tmp_path)  # setup() enters the output folder; restored afterwards
    return folder


def ci() -> dict:
    return yaml.safe_load(CI_PARAMS.read_text(encoding="utf-8"))


def test_unknown_injected_key_is_named(project: Path) -> None:
    with pytest.raises(ReportParamsError, match=r"experimets: unknown key"):
        setup(namespace(ci(), experimets=[]), "01_prune")
    data = ci()
    data["gpu"]["repeets"] = 3
    with pytest.raises(ReportParamsError, match=r"gpu\.repeets: unknown key"):
        setup(namespace(data), "01_prune")


def test_wrong_type_and_missing_experiment_are_named(project: Path) -> None:
    data = ci()
    data["seed"] = "zero"
    with pytest.raises(ReportParamsError, match=r"seed: "):
        setup(namespace(data), "01_prune")
    data = ci()
    data["shrink"]["experiment"] = "nope"
    with pytest.raises(ReportParamsError, match=r"shrink\.experiment: 'nope'"):
        setup(namespace(data), "01_prune")
    assert not (project / "reports").exists()  # nothing made before the parameters are valid


def test_setup_twice_keeps_the_folder(project: Path, tmp_path: Path) -> None:
    first = setup(namespace({}, injected=False, out_dir="reports/x"), "01_prune")
    assert first.folder == project / "reports" / "x"  # relative to the project, not the cwd
    assert first.params.report_name == "interactive"  # no week given: params/interactive.yaml
    again = setup(namespace({}, injected=False, out_dir="reports/x"), "01_prune")
    assert again.folder == first.folder
    assert sorted(p.name for p in (project / "reports").iterdir()) == ["x"]
    assert not (first.folder / "reports").exists()  # no nested reports/reports/...
    default = setup(namespace({}, injected=False), "01_prune")
    assert default.folder == project / "reports" / "interactive"


def test_stage_without_its_input_names_the_stage_and_command(project: Path) -> None:
    out = project.parent / "out"  # outside the project: shown as an absolute path
    with pytest.raises(StageOrderError) as info:
        setup(namespace(ci(), out_dir=str(out)), "02_reconstruct")
    message = str(info.value)
    assert "from stage 01_prune" in message
    assert (
        f"papermill notebooks/01_prune.ipynb {out}/01_prune.ipynb -f params/ci.yaml "
        f"-p out_dir {out}" in message
    )
    with pytest.raises(StageOrderError, match="from stage 01_prune"):
        setup(namespace(ci(), out_dir=str(out)), "05_report")


def test_params_file_in_a_subfolder_is_recognised(project: Path) -> None:
    data = ci()
    data["name"] = "sub"
    data["defaults"]["data"]["source"] = "photos"
    path = project / "params" / "examples" / "sub.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    stage = setup(namespace(data, out_dir="out"), "01_prune")
    # relative paths are relative to the file papermill read, as in alphaprune report
    source = stage.params.run_config("baseline")["data"]["source"]
    assert source == str(path.parent / "photos")
    with pytest.raises(StageOrderError, match=r"-f params/examples/sub\.yaml"):
        setup(namespace(data, out_dir="out"), "02_reconstruct")


def test_recognised_file_is_read_as_the_runner_reads_it(project: Path) -> None:
    from papermill.iorw import read_yaml_file

    text = CI_PARAMS.read_text(encoding="utf-8").replace("lr: 0.001}", "lr: 1e-3}", 1)
    path = project / "params" / "e3.yaml"
    path.write_text(text.replace("name: ci", "name: e3"), encoding="utf-8")
    passed = read_yaml_file(str(path))  # what plain `papermill -f` injects
    assert passed["defaults"]["optimizer"]["lr"] == "1e-3"  # YAML 1.1: a string
    stage = setup(namespace(passed, out_dir="out"), "01_prune")
    assert stage.params_file == "params/e3.yaml"
    assert stage.params.run_config("baseline")["optimizer"]["lr"] == 0.001  # as the runner sees it


def test_relative_paths_of_a_params_file_elsewhere(tmp_path: Path) -> None:
    data = ci()
    data["defaults"]["data"]["source"] = "photos"
    data["gpu"]["results_csv"] = "gpu/results.csv"
    path = tmp_path / "week.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    passed = papermill_parameters(path, out_dir=tmp_path / "out")
    assert passed["defaults"]["data"]["source"] == str(tmp_path / "photos")
    assert passed["gpu"]["results_csv"] == str(tmp_path / "gpu" / "results.csv")
    assert passed["out_dir"] == str(tmp_path / "out")


def papermill(notebook: str, out: Path, *args: str) -> subprocess.CompletedProcess:
    """Plain papermill from the project folder, as the README says."""
    command = [
        str(Path(sys.executable).parent / "papermill"),
        f"notebooks/{notebook}.ipynb",
        str(out / f"{notebook}.ipynb"),
        *args,
    ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_bad_key_stops_the_notebook_before_training(tmp_path: Path) -> None:
    data = ci()
    data["baseline"]["epochs"] = 200  # would train for minutes if the key were ignored
    data["gpu"]["repeets"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    out = tmp_path / "out"
    start = time.perf_counter()
    done = papermill("01_prune", tmp_path, "-f", str(bad), "-p", "out_dir", str(out))
    seconds = time.perf_counter() - start
    assert done.returncode != 0
    assert "gpu.repeets: unknown key" in done.stderr
    assert seconds < 60, f"took {seconds:.0f} s"  # kernel start-up only (about 5-10 s)
    assert not out.exists()  # stopped before it made the output folder or trained


@pytest.mark.slow
def test_plain_papermill_equals_alphaprune_report(tmp_path: Path) -> None:
    """The five notebooks through plain papermill, then through the runner: equal tables."""
    by_hand = tmp_path / "papermill"
    by_hand.mkdir()
    for stage in STAGES:
        done = papermill(stage, by_hand, "-f", "params/ci.yaml", "-p", "out_dir", str(by_hand))
        assert done.returncode == 0, done.stderr[-3000:]
        assert "unknown parameter" not in done.stderr.lower()
        assert "Warning" not in done.stderr and "ERROR" not in done.stderr, done.stderr
    runner = tmp_path / "runner"
    run_report(CI_PARAMS, out_dir=runner, progress=False)
    tables = sorted(p.name for p in (by_hand / "tables").glob("*.csv"))
    assert tables == sorted(p.name for p in (runner / "tables").glob("*.csv"))
    assert len(tables) >= 8
    for name in tables:
        ours = pd.read_csv(by_hand / "tables" / name)
        theirs = pd.read_csv(runner / "tables" / name)
        keep = [c for c in ours.columns if c not in TIMING]
        assert ours[keep].to_csv(index=False) == theirs[keep].to_csv(index=False), name
