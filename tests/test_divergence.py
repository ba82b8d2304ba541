"""A run whose loss becomes inf/NaN stops, keeps its last finite epoch and says so everywhere."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from cli_runner import one_line_error
from cli_runner import run_cli as cli
from configs import one_step_config as tiny
from configs import write_yaml

from alphaprune.engine.checkpoint import (
    CheckpointError,
    last_path,
    read_checkpoint,
    save_checkpoint,
)
from alphaprune.engine.config import config_from_dict
from alphaprune.engine.train import Diverged, diverged_at, require_finished, train_baseline

pytestmark = pytest.mark.training  # test tiers: see tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]


# --- case 3: divergence ---------------------------------------------------------------------------


def wild(tmp_path: Path, **changes) -> dict:
    """SGD at lr 1e4: finite for an epoch or two, then the loss is inf."""
    return tiny(tmp_path, epochs=4, **{"optimizer.name": "sgd", "optimizer.lr": 1.0e4, **changes})


def test_diverging_run_stops_keeps_last_finite_checkpoint_and_marks_metrics(tmp_path):
    cfg = config_from_dict(wild(tmp_path))
    with pytest.raises(Diverged) as err:
        train_baseline(cfg, progress=False)
    # the epoch depends on the training images; what matters is that every answer agrees on it
    epoch = err.value.epoch
    assert epoch >= 1, "the run should have finite epochs to keep"
    message = str(err.value)
    assert f"run 'base' diverged at epoch {epoch}" in message and "\n" not in message
    assert err.value.result.diverged_at == epoch
    saved = read_checkpoint(last_path(cfg.run_dir))
    assert saved["epoch"] == epoch and len(saved["metrics"]) == epoch  # the finite epochs
    assert all(torch.isfinite(t).all() for t in saved["model"].values() if t.is_floating_point())
    metrics = pd.read_csv(cfg.run_dir / "metrics.csv")
    assert metrics["epoch"].tolist() == list(range(epoch + 1))
    assert metrics["status"].tolist() == ["ok"] * epoch + ["diverged"]
    assert diverged_at(cfg.run_dir) == epoch
    with pytest.raises(Diverged, match=f"diverged at epoch {epoch}"):  # the same command again
        train_baseline(cfg, progress=False)
    assert read_checkpoint(last_path(cfg.run_dir))["epoch"] == epoch


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
    one_line_error(result, "run 'base' diverged at epoch", "last.pt", code=3)
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
