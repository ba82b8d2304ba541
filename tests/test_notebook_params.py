"""A week's params file is the papermill parameters file of every notebook: validation in the
set-up cell, stable output folders, stage order, and plain papermill = ``alphaprune report``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from alphaprune.report.notebook import PARAMETER_NAMES, StageOrderError, setup
from alphaprune.report.params import STAGES, ReportParamsError
from alphaprune.report.runner import run_report

pytestmark = pytest.mark.kernel  # test tiers: see tests/conftest.py

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
    "train_cpu_seconds",
    "latency_ms",  # the study's CPU latency of each shrunk point
    "cpu_hours",
}


def namespace(data: dict, **extra) -> dict:
    """A notebook's globals after papermill injected ``data`` and ``extra`` (``-f`` / ``-p``)."""
    values: dict = {name: None for name in PARAMETER_NAMES}
    values["retrain"] = False
    values.update(data, **extra)
    return values


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    """A project folder with notebooks/ and params/, the kernel's current folder."""
    folder = tmp_path / "project"
    (folder / "params").mkdir(parents=True)
    (folder / "notebooks").mkdir()
    for name in ("ci.yaml", "interactive.yaml"):
        shutil.copy(ROOT / "params" / name, folder / "params" / name)
    monkeypatch.delenv("ALPHAPRUNE_PROJECT", raising=False)
    monkeypatch.chdir(folder)  # setup() enters the output folder; restored afterwards
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
    (project / "params" / "typo.yaml").write_text(
        yaml.safe_dump({**ci(), "nots": {}}), encoding="utf-8"
    )
    with pytest.raises(ReportParamsError, match=r"typo\.yaml: nots: unknown key"):
        setup(namespace({}, params_file="params/typo.yaml"), "01_prune")
    assert not (project / "reports").exists()  # nothing made before the parameters are valid


def test_later_variables_are_not_parameters(project: Path) -> None:
    """Set-up run again in JupyterLab: variables of later cells are not taken for parameters."""
    ns = namespace(ci(), out_dir="reports/x")
    setup(ns, "01_prune")
    ns["label"], ns["alpha"] = "decay", 0.5  # e.g. cells below the set-up ran
    assert setup(ns, "01_prune").params.report_name == "ci"
    fresh = namespace(ci(), out_dir="reports/x", label="decay")  # a new kernel: it is checked
    with pytest.raises(ReportParamsError, match=r"label: unknown key"):
        setup(fresh, "01_prune")


def test_wrong_type_and_missing_experiment_are_named(project: Path) -> None:
    data = ci()
    data["seed"] = "zero"
    with pytest.raises(ReportParamsError, match=r"seed: "):
        setup(namespace(data), "01_prune")
    data = ci()
    data["shrink"]["experiment"] = "nope"
    with pytest.raises(ReportParamsError, match=r"shrink\.experiment: 'nope'"):
        setup(namespace(data), "01_prune")
    data = ci()
    del data["experiments"]  # validated as given: never filled in from another file
    with pytest.raises(ReportParamsError, match=r"experiments: "):
        setup(namespace(data), "01_prune")
    with pytest.raises(ReportParamsError, match=r"retrain: must be True or False"):
        setup(namespace(ci(), retrain="yes"), "01_prune")
    assert not (project / "reports").exists()  # nothing made before the parameters are valid


def test_a_yaml_1_1_string_is_refused_as_given(project: Path) -> None:
    """``papermill -f`` reads ``1e-3`` as a string: the notebook says so instead of guessing."""
    from papermill.iorw import read_yaml_file

    path = project / "params" / "e3.yaml"
    path.write_text(CI_PARAMS.read_text(encoding="utf-8").replace("1.0e-4", "1e-4", 1))
    passed = read_yaml_file(str(path))  # what plain `papermill -f` injects
    with pytest.raises(ReportParamsError, match=r"weight_decay: .*write 1\.0e-3"):
        setup(namespace(passed), "01_prune")
    # the same file by name is read with the project's reader: a float
    stage = setup(namespace({}, params_file="params/e3.yaml", out_dir="out"), "01_prune")
    assert stage.params.experiments[1].config["optimizer"]["weight_decay"] == 1e-4


def test_setup_twice_keeps_the_folder(project: Path) -> None:
    first = setup(namespace({}, out_dir="reports/x"), "01_prune")
    assert first.folder == project / "reports" / "x"  # relative to the project, not the cwd
    assert first.params.report_name == "interactive"  # nothing given: params/interactive.yaml
    again = setup(namespace({}, out_dir="reports/x"), "01_prune")
    assert again.folder == first.folder
    assert sorted(p.name for p in (project / "reports").iterdir()) == ["x"]
    assert not (first.folder / "reports").exists()  # no nested reports/reports/...
    default = setup(namespace({}), "01_prune")
    assert default.folder == project / "reports" / "interactive"


def test_file_by_name_equals_its_keys_injected(project: Path) -> None:
    """``-p params_file F`` and ``-f F`` give the same validated params and folder; keys given
    besides the file replace its own."""
    by_keys = setup(namespace(ci()), "01_prune")
    by_name = setup(namespace({}, params_file="params/ci.yaml"), "01_prune")
    assert by_name.params.model_dump() == by_keys.params.model_dump()
    assert by_name.folder == by_keys.folder == project / "reports" / "ci"
    assert by_name.params_file == by_keys.params_file == "params/ci.yaml"
    over = setup(namespace({}, params_file="params/ci.yaml", seed=7, retrain=True), "01_prune")
    assert over.params.seed == 7 and over.retrain and not by_name.retrain


def test_relative_paths_are_relative_to_the_project(project: Path) -> None:
    """The same rule for the runner, ``-p params_file`` and ``-f``: the project folder."""
    from alphaprune.report.validation import load_report_params

    data = ci()
    data["defaults"]["data"]["source"] = "photos"
    path = project / "params" / "examples" / "sub.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    sources = [
        setup(namespace(data, out_dir="out"), "01_prune").params,
        setup(
            namespace({}, params_file="params/examples/sub.yaml", out_dir="out"), "01_prune"
        ).params,
        load_report_params(path),  # alphaprune report
    ]
    for params in sources:
        assert params.run_config("baseline")["data"]["source"] == str(project / "photos")
        assert params.report_dir() == project / "reports" / "ci"


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
        setup(namespace(ci(), out_dir=str(out)), "06_report")


def test_stage_numbers_are_the_order() -> None:
    assert list(STAGES) == sorted(STAGES)
    assert [p.stem for p in sorted((ROOT / "notebooks").glob("*.ipynb"))] == list(STAGES)


def test_run_report_reads_the_file_once_and_passes_retrain(tmp_path: Path, monkeypatch) -> None:
    """The runner reads the params once and gives every stage the file's keys, the folder and
    ``retrain`` (``--force``) as papermill parameters: no environment variable."""
    import alphaprune.engine.config as config
    import alphaprune.report.runner as runner

    reads = []
    real = config.yaml_load
    monkeypatch.setattr(config, "yaml_load", lambda text: reads.append(1) or real(text))
    seen = {}

    def run_stages(stages, out_dir, force=False, progress=True, cwd=None):
        seen.update(stages=stages, cwd=cwd, env=dict(os.environ))
        raise KeyboardInterrupt  # stop before the export

    monkeypatch.setattr(runner, "run_stages", run_stages)
    with pytest.raises(KeyboardInterrupt):
        run_report(CI_PARAMS, out_dir=tmp_path / "out", force=True, progress=False)
    assert len(reads) == 1
    parameters = seen["stages"][0].parameters
    assert parameters["retrain"] is True and parameters["out_dir"] == str(tmp_path / "out")
    assert {k: v for k, v in parameters.items() if k not in ("retrain", "out_dir")} == ci()
    assert all(s.parameters is parameters for s in seen["stages"])
    assert seen["cwd"] == ROOT  # the project of the params file
    assert not any("RETRAIN" in key for key in seen["env"])


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
    """In a real kernel: a typo'd nested key (``-f``), a typo'd top-level key (``-f``: a name
    the parameters cell does not declare) and the same file by name (``-p params_file``)."""
    data = ci()
    data["baseline"]["epochs"] = 200  # would train for minutes if the key were ignored
    data["gpu"]["repeets"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    out = tmp_path / "out"
    done = papermill("01_prune", tmp_path, "-f", str(bad), "-p", "out_dir", str(out))
    assert done.returncode != 0
    assert "gpu.repeets: unknown key" in done.stderr
    data["nots"] = {}
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    done = papermill("01_prune", tmp_path, "-f", str(bad), "-p", "out_dir", str(out))
    assert done.returncode != 0 and "nots: unknown key" in done.stderr
    done = papermill("01_prune", tmp_path, "-p", "params_file", str(bad), "-p", "out_dir", str(out))
    assert done.returncode != 0 and "bad.yaml: nots: unknown key" in done.stderr
    assert not out.exists()  # stopped before it made the output folder or trained


@pytest.mark.slow
def test_notebooks_in_numbered_order_build_the_report(tmp_path: Path, ci_report: Path) -> None:
    """Plain papermill, each notebook in sorted file-name order with ``-f params/ci.yaml``,
    builds the report; its tables equal those of ``alphaprune report`` (``ci_report``)."""
    by_hand = tmp_path / "papermill"
    by_hand.mkdir()
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert len(notebooks) == len(STAGES)
    for notebook in notebooks:
        done = papermill(
            notebook.stem, by_hand, "-f", "params/ci.yaml", "-p", "out_dir", str(by_hand)
        )
        assert done.returncode == 0, f"{notebook.name}: {done.stderr[-3000:]}"
        assert "unknown parameter" not in done.stderr.lower()
        assert "Warning" not in done.stderr and "ERROR" not in done.stderr, done.stderr
    report = nbformat.read(by_hand / f"{STAGES[-1]}.ipynb", as_version=4)
    shown = json.dumps([c.get("outputs", []) for c in report.cells])
    assert "Weekly progress" in shown and '"output_type": "error"' not in shown
    tables = sorted(p.name for p in (by_hand / "tables").glob("*.csv"))
    assert tables == sorted(p.name for p in (ci_report / "tables").glob("*.csv"))
    assert len(tables) >= 8
    for name in tables:
        ours = pd.read_csv(by_hand / "tables" / name)
        theirs = pd.read_csv(ci_report / "tables" / name)
        keep = [c for c in ours.columns if c not in TIMING]
        assert ours[keep].to_csv(index=False) == theirs[keep].to_csv(index=False), name
