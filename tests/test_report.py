"""The weekly report pipeline: params validation, the stage runner, export, and the CI report."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook

from alphaprune.report.params import (
    STAGES,
    ReportParamsError,
    load_report_params,
    papermill_parameters,
    report_params_from_dict,
    run_specs,
)
from alphaprune.report.runner import (
    ReportError,
    Stage,
    StageFailed,
    export,
    run_report,
    run_stages,
    stage_hash,
)

pytestmark = [pytest.mark.training, pytest.mark.kernel]  # test tiers: see tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]
CI_PARAMS = ROOT / "params" / "ci.yaml"
FIGURES = ["training", "weights", "reconstruction", "shrink_channels", "benchmark"]
TABLES = [
    "experiments",
    "metrics",
    "weights",
    "reconstruction",
    "shrink",
    "shrink_check",
    "shrink_layers",
    "benchmark",
]
SECTIONS = [
    "1. Weekly progress",
    "1.2 Reconstruction",
    "1.3 Multiplying the weights",
    "2. Addendum: GPU test results",
    "3. Plan",
]


def pdf_pages(path: Path) -> int:
    """Page count of a PDF: pdfinfo when installed, else counting /Type /Page objects."""
    if shutil.which("pdfinfo"):
        out = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True)
        return int(re.search(r"^Pages:\s+(\d+)", out.stdout, re.M).group(1))
    return len(re.findall(rb"/Type\s*/Page(?!s)", path.read_bytes()))


# ---------------------------------------------------------------------------------------------
# params files
# ---------------------------------------------------------------------------------------------


def ci_data() -> dict:
    return yaml.safe_load(CI_PARAMS.read_text(encoding="utf-8"))


def write_params(tmp_path: Path, data: dict, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["week09.yaml", "week10.yaml", "ci.yaml", "interactive.yaml"])
def test_bundled_params_are_valid(name: str) -> None:
    params = load_report_params(ROOT / "params" / name)
    # every experiment starts from a run listed before it
    baseline, experiments = run_specs(params)
    assert baseline["name"] == "baseline"
    names = ["baseline"]
    for experiment in experiments:
        assert experiment["start"]["run"] in names
        assert experiment["config"]["init_from"].startswith(f"runs/{experiment['start']['run']}/")
        names.append(experiment["name"])
    assert params.report_dir().parent == ROOT / "reports"
    # the file is the papermill parameters file of every stage, as it is (plus out_dir)
    passed = papermill_parameters(ROOT / "params" / name, out_dir="/x")
    assert passed == {**yaml.safe_load((ROOT / "params" / name).read_text()), "out_dir": "/x"}


def test_week_reports_are_titled_by_number() -> None:
    week9 = load_report_params(ROOT / "params" / "week09.yaml")
    assert week9.report_title == "Model Pruning: Weekly Report 9"
    assert week9.report_dir() == ROOT / "reports" / "week09"
    assert load_report_params(CI_PARAMS).report_dir() == ROOT / "reports" / "ci"


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    data = ci_data()
    data["gpu"]["repeets"] = 3
    path = write_params(tmp_path, data)
    with pytest.raises(ReportParamsError) as info:
        load_report_params(path)
    message = str(info.value)
    assert str(path) in message
    assert "gpu.repeets: unknown key" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    data = ci_data()
    data["experimets"] = []
    with pytest.raises(ReportParamsError, match=r"bad\.yaml: experimets: unknown key"):
        load_report_params(write_params(tmp_path, data))


def test_bad_run_config_names_experiment_and_key(tmp_path: Path) -> None:
    data = ci_data()
    data["experiments"][1]["config"]["optimizer"]["lr"] = -1
    with pytest.raises(ReportParamsError) as info:
        load_report_params(write_params(tmp_path, data))
    message = str(info.value)
    assert "bad.yaml" in message and "experiments[1].config" in message
    assert "optimizer.lr" in message


def test_bad_value_and_bad_reference(tmp_path: Path) -> None:
    data = ci_data()
    data["gpu"]["batch_size"] = 0
    with pytest.raises(ReportParamsError, match=r"gpu\.batch_size: .*greater than 0"):
        load_report_params(write_params(tmp_path, data))
    data = ci_data()
    data["reconstruct"]["experiment"] = "nope"
    with pytest.raises(ReportParamsError, match=r"reconstruct\.experiment: 'nope'"):
        load_report_params(write_params(tmp_path, data))
    data = ci_data()
    data["experiments"][0]["start"] = "restart"  # starts from a run listed after it
    with pytest.raises(ReportParamsError, match=r"experiments\[0\]\.start\.run"):
        load_report_params(write_params(tmp_path, data))


def test_reserved_config_keys_and_missing_file(tmp_path: Path) -> None:
    data = ci_data()
    data["experiments"][0]["config"]["init_from"] = "x.pt"
    with pytest.raises(ReportParamsError, match=r"experiments\[0\]\.config: .*init_from"):
        load_report_params(write_params(tmp_path, data))
    with pytest.raises(ReportParamsError, match="does not exist"):
        load_report_params(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("week: [1\n")
    with pytest.raises(ReportParamsError, match=r"broken\.yaml: not valid YAML"):
        load_report_params(tmp_path / "broken.yaml")
    with pytest.raises(ReportParamsError, match="expected a mapping"):
        report_params_from_dict([1, 2], source="list.yaml")


def test_run_config_merges_defaults_and_sets_start(tmp_path: Path) -> None:
    params = load_report_params(CI_PARAMS)
    config = params.run_config("restart")
    assert config["model"]["layer"] == "relu2_1"  # from defaults
    assert config["optimizer"] == {"name": "adam", "lr": 0.001, "weight_decay": 1.0e-4}
    assert config["init_from"] == "runs/decay/checkpoints/alpha_0.1.pt"
    assert config["output_dir"] == "runs" and config["name"] == "restart"


def test_data_paths_are_relative_to_the_project(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "params").mkdir()
    data = ci_data()
    data["defaults"]["data"]["source"] = "photos"
    data["defaults"]["model"]["vgg_weights"] = "weights/vgg.pth"
    params = load_report_params(write_params(project / "params", data, name="week.yaml"))
    config = params.run_config("baseline")
    assert config["data"]["source"] == str((project / "photos").resolve())
    assert config["model"]["vgg_weights"] == str((project / "weights" / "vgg.pth").resolve())


# ---------------------------------------------------------------------------------------------
# runner, with small notebooks
# ---------------------------------------------------------------------------------------------


def small_notebook(path: Path, parameters: str, *cells: str) -> Path:
    nb = new_notebook()
    first = new_code_cell(parameters)
    first.metadata["tags"] = ["parameters"]
    nb.cells = [first] + [new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


WRITE_TABLE = (
    "from pathlib import Path\n"
    "Path('tables').mkdir(exist_ok=True)\n"
    "Path(f'tables/{name}.csv').write_text(f'value\\n{value}\\n')"
)


@pytest.fixture
def stages(tmp_path: Path) -> list[Stage]:
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    return [
        Stage(
            "a", small_notebook(nbs / "a.ipynb", "name = 'a'\nvalue = 1", WRITE_TABLE), {"value": 1}
        ),
        Stage(
            "b", small_notebook(nbs / "b.ipynb", "name = 'b'\nvalue = 1", WRITE_TABLE), {"value": 2}
        ),
        Stage(
            "c",
            small_notebook(
                nbs / "c.ipynb",
                "name = 'c'\nvalue = 1",
                "value = int(open('tables/b.csv').read().split()[1])",
                WRITE_TABLE,
            ),
            {},
        ),
    ]


@pytest.mark.slow
def test_rerun_skips_unchanged_stages(stages: list[Stage], tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    first = run_stages(stages, out, cwd=out)
    assert [r.ran for r in first] == [True, True, True]
    assert (out / "tables" / "c.csv").read_text() == "value\n2\n"
    state = json.loads((out / ".stages.json").read_text())["stages"]
    assert state["a"]["outputs"] == ["tables/a.csv"]
    mtime = (out / "a.ipynb").stat().st_mtime_ns
    capsys.readouterr()

    again = run_stages(stages, out, cwd=out)
    assert [r.ran for r in again] == [False, False, False]
    assert (out / "a.ipynb").stat().st_mtime_ns == mtime
    assert capsys.readouterr().out.count("skipped (unchanged)") == 3

    stages[1].parameters = {"value": 5}  # b changes: a is kept, b and c (after it) rerun
    changed = run_stages(stages, out, cwd=out)
    assert [r.ran for r in changed] == [False, True, True]
    assert (out / "tables" / "c.csv").read_text() == "value\n5\n"

    (out / "tables" / "a.csv").unlink()  # a missing output: a reruns, and so does all after it
    assert [r.ran for r in run_stages(stages, out, cwd=out)] == [True, True, True]
    assert [r.ran for r in run_stages(stages, out, force=True, cwd=out)] == [True, True, True]


def test_stage_hash_depends_on_code_parameters_and_previous(stages: list[Stage]) -> None:
    stage = stages[0]
    base = stage_hash(stage, ["x"])
    assert stage_hash(stage, ["y"]) != base
    assert stage_hash(Stage(stage.name, stage.notebook, {"value": 9}), ["x"]) != base
    nb = nbformat.read(stage.notebook, as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="hi")]  # outputs do not count
    nb.metadata["something"] = 1
    nbformat.write(nb, stage.notebook)
    assert stage_hash(stage, ["x"]) == base
    nb.cells[1].source += "\nprint('changed')"
    nbformat.write(nb, stage.notebook)
    assert stage_hash(stage, ["x"]) != base


def test_failing_notebook_stops_runner(stages: list[Stage], tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    bad = small_notebook(
        tmp_path / "nbs" / "b.ipynb", "value = 1", "x = 1", "raise ValueError(f'boom {value}')"
    )
    stages[1] = Stage("b", bad, {"value": 42})
    with pytest.raises(StageFailed) as info:
        run_stages(stages, out, cwd=out)
    error = info.value
    assert error.stage == "b" and error.cell == 3  # injected-parameters cell comes first
    assert "ValueError: boom 42" in str(error)
    assert str(out / "b.ipynb") in str(error)
    assert isinstance(error, ReportError)
    # the failed executed notebook is kept, with the error in it; later stages did not run
    executed = nbformat.read(out / "b.ipynb", as_version=4)
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors and errors[0].evalue == "boom 42"
    assert not (out / "c.ipynb").exists()
    err = capsys.readouterr().err
    assert "raise ValueError(f'boom {value}')" in err and "ValueError: boom 42" in err
    assert str(out / "b.ipynb") in err
    # earlier results are kept and reused; the fixed stage and those after it run next time
    state = json.loads((out / ".stages.json").read_text())["stages"]
    assert list(state) == ["a"] and (out / "tables" / "a.csv").exists()
    small_notebook(bad, "name = 'b'\nvalue = 1", WRITE_TABLE)
    records = run_stages(stages, out, cwd=out)
    assert [r.ran for r in records] == [False, True, True]


def test_missing_notebook_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"notebook\(s\) not found: .*nope\.ipynb"):
        run_stages([Stage("x", tmp_path / "nope.ipynb")], tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------


def test_find_chromium_tries_each_name(monkeypatch) -> None:
    seen = []

    def which(name):
        seen.append(name)
        return "/opt/chrome" if name == "google-chrome" else None

    monkeypatch.setattr(export.shutil, "which", which)
    assert export.find_chromium() == "/opt/chrome"
    assert seen == ["chromium", "chromium-browser", "google-chrome"]


def test_failing_chromium_raises_and_leaves_no_pdf(tmp_path: Path) -> None:
    fake = tmp_path / "fake-chromium"
    fake.write_text("#!/bin/sh\necho 'cannot print' >&2\nexit 3\n")
    fake.chmod(0o755)
    html = tmp_path / "r.html"
    html.write_text("<html><body>hi</body></html>")
    with pytest.raises(export.ExportError, match="exit code 3.*cannot print"):
        export.html_to_pdf(html, tmp_path / "r.pdf", str(fake))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake-chromium", "r.html"]


# ---------------------------------------------------------------------------------------------
# the whole pipeline on params/ci.yaml
# ---------------------------------------------------------------------------------------------


# the ``ci_report`` fixture (the CI report, built once per session) is in conftest.py


@pytest.mark.slow
def test_ci_report_writes_everything(ci_report: Path) -> None:
    for name in FIGURES:
        path = ci_report / "figures" / f"{name}.png"
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    for name in TABLES:
        assert len(pd.read_csv(ci_report / "tables" / f"{name}.csv")) > 0, name
    for stage in STAGES:
        nb = nbformat.read(ci_report / f"{stage}.ipynb", as_version=4)
        assert nb.metadata["papermill"]["exception"] is None, stage
    pdf = ci_report / "report.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert pdf_pages(pdf) >= 2
    state = json.loads((ci_report / ".stages.json").read_text())["stages"]
    assert sorted(state) == sorted(STAGES)  # the state file is written with sorted keys
    provenance = json.loads((ci_report / "provenance.json").read_text())
    assert provenance["environment"]["library_sha256"] and provenance["environment"]["torch"]
    assert provenance["runs"]["baseline"]["cpu_seconds"] > 0
    # an out_dir outside the project's reports/: no index.html written into a folder not ours
    assert not (ci_report.parent / "index.html").exists()


@pytest.mark.slow  # builds the CI report (module fixture, ~1 min)
def test_ci_report_html(ci_report: Path) -> None:
    html = (ci_report / "report.html").read_text(encoding="utf-8")
    assert "Model Pruning: Weekly Report (CI smoke test)" in html
    for title in SECTIONS:
        assert title in html, title
    assert html.count("data:image/png;base64") >= len(FIGURES)
    for number in range(1, len(FIGURES) + 1):
        assert f"Figure {number}." in html
    assert "Table 1." in html and "α" in html
    assert "import pandas" not in html and "from alphaprune" not in html  # code hidden
    assert "cdnjs.cloudflare.com" not in html and '<script src="http' not in html


@pytest.mark.slow  # builds the CI report (module fixture, ~1 min)
def test_reconstruction_uses_alpha_zero_models(ci_report: Path) -> None:
    from alphaprune.engine.checkpoint import checkpoint_info

    table = pd.read_csv(ci_report / "tables" / "reconstruction.csv").set_index("panel")
    assert list(table.index) == ["a", "b", "c", "d"]
    assert table.loc["c", "alpha"] == 0.0 and table.loc["d", "alpha"] == 0.0
    assert pd.isna(table.loc["b", "alpha"])  # the original has no gates
    assert "α = 0" in table.loc["c", "model"]
    assert table.loc["d", "params"] < table.loc["c", "params"]  # (d) really is the shrunk model
    info = checkpoint_info(ci_report / table.loc["c", "checkpoint"])
    assert info["alpha"] == 0.0
    check = pd.read_csv(ci_report / "tables" / "shrink_check.csv").iloc[0]
    assert check["alpha"] == 0.0 and bool(check["passed"])
    bench = pd.read_csv(ci_report / "tables" / "benchmark.csv")
    on_cpu = bench["device_label"][0].startswith("CPU: ")
    exported = ["exported (onnxruntime)"] if on_cpu else []  # the dev extras hold onnxruntime
    assert list(bench["model"]) == ["original", "masked", "shrunk", *exported]
    assert bench["device_label"][0].startswith(("CPU: ", "GPU: "))
    if on_cpu:  # the exported model counts as the shrunk one, and was verified before timing
        rows = bench.set_index("model")
        assert rows.loc["exported (onnxruntime)", "params"] == rows.loc["shrunk", "params"]
        record = json.loads((ci_report / "models" / "shrunk.onnx.json").read_text())
        assert record["verification"]["max_rel_diff"] <= 1e-5


@pytest.mark.slow  # builds the CI report (module fixture, ~1 min)
def test_reconstruct_notebook_at_alpha_point_one(ci_report: Path, tmp_path: Path) -> None:
    import papermill

    milestone = ci_report / "runs" / "decay" / "checkpoints" / "alpha_0.1.pt"
    assert milestone.is_file()
    out = tmp_path / "recon"
    shutil.copytree(ci_report / "runs", out / "runs")
    shutil.copy(milestone, out / "runs" / "decay" / "checkpoints" / "last.pt")  # ends at α 0.1
    (out / "tables").mkdir()
    shutil.copy(ci_report / "tables" / "experiments.csv", out / "tables")
    parameters = papermill_parameters(CI_PARAMS, out_dir=out)
    parameters["reconstruct"] = {"experiment": "decay", "size": 32}
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "02_reconstruct.ipynb"),
        str(tmp_path / "02.ipynb"),
        parameters=parameters,
        kernel_name="python3",
        progress_bar=False,
        cwd=str(tmp_path),
    )
    table = pd.read_csv(out / "tables" / "reconstruction.csv").set_index("panel")
    assert table.loc["c", "alpha"] == pytest.approx(0.1)
    assert table.loc["d", "alpha"] == pytest.approx(0.1)
    assert "α = 0.1" in table.loc["c", "model"] and "α = 0.1" in table.loc["d", "model"]
    assert (out / "figures" / "reconstruction.png").is_file()
    executed = nbformat.read(tmp_path / "02.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "α = 0.1 (read from the checkpoint)" in printed


@pytest.mark.slow
def test_ci_rerun_skips_and_notes_rerun_only_report(ci_report: Path, tmp_path: Path, capsys):
    run_report(CI_PARAMS, out_dir=ci_report)
    out = capsys.readouterr().out
    assert out.count("skipped (unchanged)") == len(STAGES)
    assert "up to date" in out

    data = ci_data()
    data["notes"]["plan"] = "- A changed plan."
    data["notebooks_dir"] = str(ROOT / "notebooks")
    copy = tmp_path / "copy"
    shutil.copytree(ci_report, copy)
    run_report(write_params(tmp_path, data, "changed.yaml"), out_dir=copy)
    out = capsys.readouterr().out
    assert out.count("skipped (unchanged)") == len(STAGES) - 1
    assert f"[{len(STAGES)}/{len(STAGES)}] 06_report: assembled" in out
    assert out.strip().splitlines()[-1].startswith("report written: ")
    assert "A changed plan." in (copy / "report.html").read_text(encoding="utf-8")


@pytest.mark.slow  # builds the CI report (module fixture, ~1 min)
def test_html_only_without_chromium(ci_report: Path, tmp_path: Path, monkeypatch, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(ci_report, copy)
    (copy / "report.html").unlink()
    monkeypatch.setattr(export, "find_chromium", lambda: None)
    run_report(CI_PARAMS, out_dir=copy)
    out = capsys.readouterr().out
    assert (copy / "report.html").is_file()
    assert not (copy / "report.pdf").exists()  # a stale PDF is removed with the new HTML
    assert "sudo apt-get install chromium" in out


# ---------------------------------------------------------------------------------------------
# training runs of a report: reused while their inputs are unchanged
# ---------------------------------------------------------------------------------------------


def tiny_runs() -> tuple[dict, list[dict]]:
    data = ci_data()
    data["defaults"]["model"]["layer"] = "relu1_1"
    data["defaults"]["data"].update(crop=16, batch_size=2, samples_per_epoch=2)
    data["baseline"]["epochs"] = 1
    data["experiments"] = [
        {
            "name": "enc",
            "start": "baseline",
            "config": {"epochs": 2, "schedule": {"kind": "step", "values": [0.5, 0.0]}},
        },
        {
            "name": "dec",
            "start": {"run": "enc", "shrink": True},
            "config": {
                "epochs": 1,
                "pruning": {"target": "decoder"},
                "schedule": {"kind": "constant", "alpha": 0.0},
            },
        },
    ]
    for section in ("reconstruct", "shrink", "gpu"):
        data[section]["experiment"] = "dec"
    data["notes"] = {}  # the CI notes refer to the CI runs ({run.decay.psnr:.2f} …)
    return run_specs(report_params_from_dict(data))


def test_run_all_reuses_unchanged_runs(tmp_path: Path, monkeypatch) -> None:
    from alphaprune.engine.checkpoint import checkpoint_info
    from alphaprune.report.runs import original_check, run_all, summary_table

    monkeypatch.chdir(tmp_path)  # run paths are relative to the report folder
    baseline, experiments = tiny_runs()
    first = run_all(baseline, experiments, progress=False)
    assert list(first) == ["baseline", "enc", "dec"]
    shrunk = checkpoint_info("runs/dec/start.pt")  # the shrunk start, in the run's store folder
    assert shrunk["kind"] == "shrunk" and shrunk["alpha"] == 0.0
    assert Path("runs/baseline").is_symlink() and Path("runs.json").exists()
    check = original_check(first)
    assert list(check["run"]) == ["enc", "dec"] and check["above_original"].dtype == bool
    # 2 validation images: too few for an interval over images, so none (above_original then
    # means above on every image: tests/test_evaluation.py)
    assert check["vs_original_ci_low"].isna().all() and check["vs_original_ci_high"].isna().all()
    assert checkpoint_info(first["dec"].checkpoint)["alpha"] == 0.0
    table = summary_table(first)
    assert list(table["final_alpha"].fillna(-1)) == [-1, 0.0, 0.0]
    stamp = {n: Path(r.checkpoint).stat().st_mtime_ns for n, r in first.items()}

    again = run_all(baseline, experiments, progress=False)  # nothing changed: all reused
    assert {n: Path(r.checkpoint).stat().st_mtime_ns for n, r in again.items()} == stamp
    pd.testing.assert_frame_equal(again["dec"].metrics, first["dec"].metrics)

    experiments[0]["config"]["optimizer"]["lr"] = 0.002  # enc changes, and dec starts from it
    third = run_all(baseline, experiments, progress=False)
    assert Path(third["baseline"].checkpoint).stat().st_mtime_ns == stamp["baseline"]
    assert Path(third["enc"].checkpoint).stat().st_mtime_ns != stamp["enc"]
    assert Path(third["dec"].checkpoint).stat().st_mtime_ns != stamp["dec"]
    assert third["enc"].config.optimizer.lr == 0.002


def test_report_force_retrains_the_weeks_runs_in_the_store(tmp_path: Path, monkeypatch) -> None:
    from alphaprune.report.runs import run_all

    monkeypatch.chdir(tmp_path)
    baseline, experiments = tiny_runs()
    first = run_all(baseline, experiments[:1], progress=False)
    stamp = Path(first["enc"].checkpoint).stat().st_mtime_ns
    # `alphaprune report --force` passes `-p retrain True`; 01_prune gives it to run_all
    again = run_all(baseline, experiments[:1], progress=False, force=True)
    assert Path(again["enc"].checkpoint).stat().st_mtime_ns != stamp
    assert not list(Path(os.environ["ALPHAPRUNE_RUNS"]).glob(".*.previous-*"))  # aside removed


@pytest.mark.slow
def test_ci_report_has_the_study_section(ci_report: Path) -> None:
    summary = pd.read_csv(ci_report / "tables" / "study_summary.csv")
    assert list(summary["arm"]) == ["one_shot", "step"] and (summary["n"] == 2).all()
    assert set(summary["budget"]) == {"keep 0.5"} and "verdict" in summary.columns
    runs = pd.read_csv(ci_report / "tables" / "study.csv")
    assert len(runs) == 4 and {"test_psnr", "val_psnr", "params", "flops"} <= set(runs.columns)
    record = json.loads((ci_report / "study.json").read_text())
    html = (ci_report / "report.html").read_text(encoding="utf-8")
    assert "1.4 Study: does the α schedule pay?" in html
    assert record["conclusion"].split(":")[0] in html
    assert "random initialisation" in record["encoder"] and "Encoder: VGG-19" in html
    # the study shares the week's baseline (both at one thread): it is among the study's runs
    used = json.loads((ci_report / "runs.json").read_text())["runs"]
    base = json.loads((ci_report / "runs" / "baseline" / "run.json").read_text())["fingerprint"]
    assert base in used and base in record["runs"] and set(record["runs"]) <= set(used)


def test_report_folder_does_not_follow_notebooks_dir(tmp_path: Path) -> None:
    """The runner, papermill and JupyterLab all write to the same default folder, and pointing
    notebooks_dir elsewhere does not move the report there."""
    from alphaprune.report.notebook import default_folder

    data = yaml.safe_load(CI_PARAMS.read_text())
    data.pop("output_dir", None)
    data["notebooks_dir"] = str(tmp_path / "elsewhere" / "notebooks")
    path = tmp_path / "project" / "params" / "mine.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(data))
    params = load_report_params(path)
    assert params.report_dir() == ROOT / "reports" / "ci"  # no notebooks/ above: the checkout
    assert default_folder(params) == params.report_dir()
    (tmp_path / "project" / "notebooks").mkdir()
    assert load_report_params(path).report_dir() == tmp_path / "project" / "reports" / "ci"
