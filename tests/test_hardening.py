"""Issue 10: nothing stale, nothing silently diverged (bad input, divergence, kills, locks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from cli_runner import run_cli as cli
from configs import tiny_config, write_yaml

from alphaprune.engine.checkpoint import (
    CheckpointError,
    last_path,
    read_checkpoint,
    save_checkpoint,
)
from alphaprune.engine.config import ConfigError, config_from_dict, load_config
from alphaprune.engine.locks import LockError, folder_lock, lock_holder
from alphaprune.engine.train import Diverged, diverged_at, prune, require_finished, train_baseline

ROOT = Path(__file__).resolve().parents[1]


def tiny(tmp_path: Path, **changes) -> dict:
    return tiny_config(tmp_path, steps=1, samples=2, **changes)


def one_line_error(result: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# --- case 1: run names stay inside the runs folder -----------------------------------------------


@pytest.mark.parametrize("name", ["..", "../escaped", "a/b", ".hidden", "x/../..", "/abs"])
def test_run_name_must_be_one_plain_folder_name(tmp_path, name):
    with pytest.raises(ConfigError, match=r"name: run name must be one folder name"):
        config_from_dict(tiny(tmp_path, name=name), source="t.yaml")


def test_cli_name_dotdot_writes_nothing_outside_runs(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    path = write_yaml(tmp_path / "x.yaml", tiny(tmp_path, output_dir="runs", epochs=0))
    result = cli("train", str(path), "--set", "name=..", "--no-progress", cwd=work)
    one_line_error(result, "name", "'..'")
    assert list(work.iterdir()) == []  # no ./checkpoints, no ./metrics.csv


def test_run_folder_symlinked_out_of_the_runs_root_is_refused(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "runs" / "base").symlink_to(tmp_path / "elsewhere")
    cfg = config_from_dict(tiny(tmp_path))
    with pytest.raises(ConfigError, match="does not lie inside"):
        _ = cfg.run_dir


# --- case 3 (schema part) and the unclear inputs: numbers --------------------------------------


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("optimizer.lr", ".inf"),
        ("optimizer.weight_decay", ".inf"),
        ("optimizer.weight_decay", ".nan"),
        ("optimizer.momentum", ".nan"),
        ("loss.pixel", ".inf"),
        ("loss.vgg_feature", ".nan"),
        ("pruning.keep", ".nan"),
        ("schedule.lr", ".inf"),
    ],
)
def test_non_finite_numbers_are_refused_everywhere(tmp_path, key, text):
    path = write_yaml(tmp_path / "x.yaml", tiny(tmp_path))
    with pytest.raises(ConfigError) as err:
        load_config(path, [f"{key}={text}"])
    message = str(err.value)
    assert str(path) in message and key.split(".")[0] in message
    assert "\n" not in message


def test_report_params_refuse_non_finite_and_bool_numbers(tmp_path):
    from alphaprune.report.params import ReportParamsError, report_params_from_dict

    data = yaml.safe_load((ROOT / "params" / "ci.yaml").read_text(encoding="utf-8"))
    for section, key, value in [
        ("shrink", "tolerance", float("inf")),
        ("gpu", "gpu_seconds", float("nan")),
        ("gpu", "repeats", True),
    ]:
        bad = json.loads(json.dumps(data))
        bad[section][key] = value
        with pytest.raises(ReportParamsError, match=rf"{section}\.{key}"):
            report_params_from_dict(bad, source="w.yaml")


def test_bool_is_not_an_int(tmp_path):
    for key in ("epochs", "seed", "data.batch_size", "steps_per_epoch"):
        with pytest.raises(ConfigError, match=rf"{key}: must be an integer.*got True"):
            config_from_dict(tiny(tmp_path, **{key: True}), source="t.yaml")


def test_huge_seed_names_the_key(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(tiny(tmp_path)) + "")
    with pytest.raises(ConfigError, match=r"x.yaml: seed: .*99999999999999999999"):
        load_config(path, ["seed=99999999999999999999"])


def test_exponent_without_dot_is_a_float_everywhere(tmp_path):
    path = tmp_path / "x.yaml"
    data = tiny(tmp_path)
    data["schedule"] = {"kind": "constant", "alpha": 0.0, "lr": "LR"}
    data["optimizer"] = {"lr": "LR", "weight_decay": "WD"}
    text = yaml.safe_dump(data).replace("LR", "1e-3").replace("WD", "1E-4")
    path.write_text(text.replace("'", ""))
    assert "lr: 1e-3" in path.read_text()
    cfg = load_config(path, ["loss.pixel=2e0"])
    assert cfg.optimizer.lr == 0.001 and cfg.optimizer.weight_decay == 0.0001
    assert cfg.build_schedule().lr_for(0) == 0.001 and cfg.loss.pixel == 2.0
    with pytest.raises(ConfigError, match="optimizer.lr: must be a number"):
        config_from_dict(tiny(tmp_path, **{"optimizer.lr": "1e-3"}), source="t")  # a string


def test_duplicate_keys_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nepochs: 1\noptimizer: {lr: 0.1}\nepochs: 3\n")
    with pytest.raises(ConfigError, match=r"dup.yaml: not valid YAML: duplicate key 'epochs'"):
        load_config(path)
    nested = tmp_path / "nested.yaml"
    nested.write_text("optimizer:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'lr' \(line 3, column 3\)"):
        load_config(nested)


def test_empty_params_file_is_refused(tmp_path):
    for text in ("", "# only a comment\n", "---\n"):
        path = tmp_path / "empty.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match="empty.yaml: empty params file"):
            load_config(path)
    result = cli("train", str(path), cwd=tmp_path)
    one_line_error(result, "empty params file")
    assert not (tmp_path / "runs").exists()


def test_set_value_that_is_not_yaml_is_one_line(tmp_path):
    path = write_yaml(tmp_path / "x.yaml", tiny(tmp_path))
    with pytest.raises(ConfigError, match=r"--set optimizer.lr: value '\[1,' is not valid YAML"):
        load_config(path, ["optimizer.lr=[1,"])
    result = cli("train", str(path), "--set", "optimizer.lr=[1,", cwd=tmp_path)
    one_line_error(result, "optimizer.lr", "not valid YAML")


# --- case 3: divergence ---------------------------------------------------------------------------


def wild(tmp_path: Path, **changes) -> dict:
    """SGD at lr 1e4: finite for two epochs, then the validation loss is inf (epoch 2)."""
    return tiny(tmp_path, epochs=4, **{"optimizer.name": "sgd", "optimizer.lr": 1.0e4, **changes})


def test_diverging_run_stops_keeps_last_finite_checkpoint_and_marks_metrics(tmp_path):
    cfg = config_from_dict(wild(tmp_path))
    with pytest.raises(Diverged) as err:
        train_baseline(cfg, progress=False)
    message = str(err.value)
    assert "run 'base' diverged at epoch 2" in message and "\n" not in message
    assert err.value.epoch == 2 and err.value.result.diverged_at == 2
    saved = read_checkpoint(last_path(cfg.run_dir))
    assert saved["epoch"] == 2 and len(saved["metrics"]) == 2  # epochs 0 and 1, both finite
    assert all(torch.isfinite(t).all() for t in saved["model"].values() if t.is_floating_point())
    metrics = pd.read_csv(cfg.run_dir / "metrics.csv")
    assert metrics["epoch"].tolist() == [0, 1, 2]
    assert metrics["status"].tolist() == ["ok", "ok", "diverged"]
    assert diverged_at(cfg.run_dir) == 2
    with pytest.raises(Diverged, match="diverged at epoch 2"):  # the same command: same answer
        train_baseline(cfg, progress=False)
    assert read_checkpoint(last_path(cfg.run_dir))["epoch"] == 2


def test_run_diverging_in_its_first_epoch_keeps_its_start(tmp_path):
    cfg = config_from_dict(tiny(tmp_path, epochs=2, **{"optimizer.lr": 1.0e6}))
    with pytest.raises(Diverged, match="diverged at epoch 0"):
        train_baseline(cfg, progress=False)
    saved = read_checkpoint(last_path(cfg.run_dir))
    assert saved["epoch"] == 0 and saved["metrics"] == []
    assert all(torch.isfinite(t).all() for t in saved["model"].values() if t.is_floating_point())


def test_cli_diverged_run_exits_non_zero_with_one_line(tmp_path):
    path = write_yaml(tmp_path / "wild.yaml", wild(tmp_path))
    result = cli("train", str(path), "--no-progress", cwd=tmp_path)
    one_line_error(result, "run 'base' diverged at epoch 2", "last.pt", code=3)
    assert "baseline done" not in result.stdout


def test_cli_shrink_of_a_diverged_run_says_so(tmp_path):
    base = train_baseline(config_from_dict(tiny(tmp_path, epochs=1)), progress=False)
    data = wild(tmp_path, name="p", **{"optimizer.lr": 1.0e6})
    data["init_from"] = str(base.checkpoint)
    path = write_yaml(tmp_path / "p.yaml", data)
    one_line_error(cli("prune", str(path), "--no-progress", cwd=tmp_path), "diverged", code=3)
    result = cli("shrink", str(path), cwd=tmp_path)
    one_line_error(result, "shrink: run 'p' diverged at epoch 0", code=3)
    assert "AssertionError" not in result.stderr and result.stdout == ""
    with pytest.raises(Diverged, match="03_shrink: run 'p' diverged at epoch 0"):
        require_finished(Path(data["output_dir"]) / "p" / "checkpoints" / "last.pt", "03_shrink")
    require_finished(base.checkpoint)  # a finished run passes


def nan_checkpoint(tmp_path: Path, alpha: float | None = None) -> Path:
    base = train_baseline(config_from_dict(tiny(tmp_path, epochs=1)), progress=False)
    data = read_checkpoint(base.checkpoint)
    data["model"] = dict(data["model"])
    name = next(k for k in data["model"] if k.endswith("weight"))
    data["model"][name] = torch.full_like(data["model"][name], float("nan"))
    if alpha is not None:
        data["alpha"] = alpha
    data.pop("format"), data.pop("version")
    return save_checkpoint(tmp_path / "nan.pt", data)


def test_evaluate_and_shrink_of_a_nan_model_fail_instead_of_printing_nan(tmp_path):
    path = nan_checkpoint(tmp_path)
    params = write_yaml(tmp_path / "x.yaml", tiny(tmp_path))
    result = cli("evaluate", str(params), "--checkpoint", str(path), cwd=tmp_path)
    one_line_error(result, str(path), "non-finite")
    assert "NaN" not in result.stdout and result.stdout == ""
    result = cli("shrink", str(params), "--checkpoint", str(path), cwd=tmp_path)
    one_line_error(result, str(path), "non-finite")
    assert "NaN" not in result.stdout and not (tmp_path / "runs" / "base" / "shrunk.pt").exists()


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), -0.5, 1.5])
def test_checkpoint_with_non_finite_alpha_is_refused(tmp_path, alpha):
    base = train_baseline(config_from_dict(tiny(tmp_path, epochs=1)), progress=False)
    data = read_checkpoint(base.checkpoint)
    data.pop("format"), data.pop("version")
    path = save_checkpoint(tmp_path / "a.pt", {**data, "alpha": alpha})
    with pytest.raises(CheckpointError, match=r"a.pt: checkpoint's 'alpha' is not a number in"):
        read_checkpoint(path)


def test_report_table_shows_a_diverged_run_and_the_report_goes_on(tmp_path, monkeypatch):
    from alphaprune.report.runs import run_all, summary_table

    monkeypatch.chdir(tmp_path)
    baseline = tiny(tmp_path, name="baseline", output_dir="runs", epochs=1)
    start = "runs/baseline/checkpoints/last.pt"
    experiments = [
        {
            "name": "wild",
            "config": {**wild(tmp_path), "name": "wild", "output_dir": "runs", "init_from": start},
        },
        {  # (an experiment may not start from the diverged run: tests/test_diverged_runs.py)
            "name": "after",
            "start": {"run": "baseline"},
            "config": {
                **tiny(tmp_path, epochs=1),
                "name": "after",
                "output_dir": "runs",
                "init_from": start,
            },
        },
    ]
    results = run_all(baseline, experiments, progress=False)
    epoch = results["wild"].diverged_at
    assert epoch is not None and epoch == diverged_at("runs/wild")
    assert results["after"].diverged_at is None
    table = summary_table(results, {"wild": "lr 1e4"}).set_index("run")
    assert table.loc["wild", "status"] == f"diverged at epoch {epoch}"
    assert table.loc["wild", "label"] == "lr 1e4"  # the status has its own column
    assert pd.isna(table.loc["wild", "val_loss"])
    assert table.loc["after", "status"] == "finished" and table.loc["after", "val_loss"] > 0
    again = run_all(baseline, experiments, progress=False)  # a rerun reports it the same way
    assert again["wild"].diverged_at == epoch


# --- case 2: the original must match the config's architecture ------------------------------------


def test_prune_refuses_an_original_of_another_architecture(tmp_path):
    base = train_baseline(config_from_dict(tiny(tmp_path, epochs=1)), progress=False)
    data = tiny(tmp_path, name="p", **{"model.layer": "relu2_1"})
    data["init_from"] = str(base.checkpoint)
    path = write_yaml(tmp_path / "p.yaml", data)
    result = cli("prune", str(path), "--no-progress", cwd=tmp_path)
    one_line_error(result, str(base.checkpoint), "relu1_1", "model.layer relu2_1")
    assert not last_path(tmp_path / "runs" / "p").exists()  # refused before any training


def test_prune_refuses_an_original_from_another_factory_model(tmp_path):
    unet = {
        "factory": "alphaprune.engine.models:build_unet",
        "kwargs": {"width": 4, "depth": 1},
        "example_input_size": [1, 3, 16, 16],
    }
    base = train_baseline(config_from_dict(tiny(tmp_path, epochs=1, model=unet)), progress=False)
    for model, needle in [
        ({**unet, "kwargs": {"width": 8, "depth": 1}}, "kwargs {'width': 8, 'depth': 1}"),
        ({"layer": "relu1_1"}, "model.layer relu1_1"),
    ]:
        cfg = config_from_dict(
            {**tiny(tmp_path, name="p", model=model), "init_from": str(base.checkpoint)}
        )
        with pytest.raises(CheckpointError, match="was built with model.factory") as err:
            prune(cfg, progress=False)
        assert needle in str(err.value) and str(base.checkpoint) in str(err.value)
        assert not last_path(cfg.run_dir).exists()


# --- locks -----------------------------------------------------------------------------------------


HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"{os.getpid()}\\n".encode())
print("held", flush=True)
time.sleep(120)
"""


def hold_lock(folder: Path) -> subprocess.Popen:
    """A separate process holding ``folder``'s lock, as a running report or training would."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder / ".alphaprune.lock")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def release(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def test_run_folder_is_locked_while_training_and_a_dead_holder_is_taken_over(tmp_path):
    cfg = config_from_dict(tiny(tmp_path, epochs=1))
    holder = hold_lock(cfg.run_dir)
    try:
        with pytest.raises(
            LockError, match=rf"run folder of 'base' .* in use by process {holder.pid}"
        ):
            train_baseline(cfg, progress=False)
        assert not last_path(cfg.run_dir).exists()
    finally:
        release(holder)
    assert lock_holder(cfg.run_dir) == holder.pid  # a stale lock file naming a dead process …
    result = train_baseline(cfg, progress=False)  # … is taken over
    assert len(result.metrics) == 1
    assert lock_holder(cfg.run_dir) is None  # released at the end


def test_lock_is_released_when_the_holder_crashes(tmp_path):
    folder = tmp_path / "f"
    with pytest.raises(ZeroDivisionError):
        with folder_lock(folder, "report folder"):
            assert lock_holder(folder) == os.getpid()
            1 / 0  # noqa: B018
    with folder_lock(folder, "report folder"):
        pass


# --- cases 4 and 5: the report runner -------------------------------------------------------------

CI_PARAMS = ROOT / "params" / "ci.yaml"


@pytest.fixture
def fake_stages(monkeypatch):
    """``run_report`` with its notebooks replaced by an executed ``05_report`` whose text is
    ``state["text"]`` (written when ``state["ran"]``), so that the export is the only real step."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    import alphaprune.report.runner as report_module
    from alphaprune.report import export

    state = {"text": "v1", "ran": True, "calls": 0}

    def run_stages(stages, out_dir, force=False, progress=True, **kwargs):
        state["calls"] += 1
        path = Path(out_dir) / "05_report.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)  # as the real run_stages does
        if state["ran"]:
            html = new_output("display_data", data={"text/html": f"<p>{state['text']}</p>"})
            nbformat.write(new_notebook(cells=[new_code_cell("", outputs=[html])]), path)
        return [report_module.StageRecord("05_report", "h", state["ran"], 0.0, path, [])]

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
    fake_stages["text"] = "v2"  # 05_report reruns with new content …
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


# --- user mistakes the CLI must answer in one line (exit 2), never with a traceback -------------


def _junk(tmp_path: Path) -> str:
    path = tmp_path / "junk.pth"
    path.write_bytes(b"\x80\x04not a state dict at all")
    return str(path)


@pytest.mark.parametrize(
    ("command", "changes", "needle"),
    [
        ("prune", {}, "no original model"),
        ("train", {"device": "cuda"}, "device: 'cuda' requested but CUDA is not available"),
        ("train", {"model": {"factory": "os:getcwd"}}, "part of Python's standard library"),
        (
            "train",
            {"model": {"factory": "alphaprune.engine.models:build_unet", "kwargs": {"nosuch": 1}}},
            "rejected kwargs",
        ),
        ("train", {"model": {"layer": "relu1_1", "vgg_weights": "junk"}}, "model.vgg_weights"),
        ("train", {"model": {"layer": "relu1_1", "vgg_weights": "missing.pth"}}, "not found"),
    ],
    ids=[
        "prune-without-original",
        "cuda",
        "factory-stdlib",
        "factory-kwargs",
        "vgg-junk",
        "vgg-gone",
    ],
)
def test_user_mistakes_are_one_line_errors(tmp_path, monkeypatch, command, changes, needle):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    data = tiny(tmp_path)
    data.update(changes)
    if data["model"].get("vgg_weights") == "junk":
        data["model"]["vgg_weights"] = _junk(tmp_path)
    path = write_yaml(tmp_path / "mistake.yaml", data)
    one_line_error(cli(command, str(path), "--no-progress", cwd=tmp_path), needle)


def test_prune_from_a_missing_original_fails_before_it_makes_a_run_folder(tmp_path):
    path = write_yaml(tmp_path / "p.yaml", tiny(tmp_path, name="p1"))
    result = cli("prune", str(path), "--original", str(tmp_path / "gone.pt"), cwd=tmp_path)
    one_line_error(result, "gone.pt: checkpoint not found")
    assert not (tmp_path / "runs" / "p1").exists()
