"""Training/pruning engine: config validation, checkpoints carrying α, resume, CLI."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from cli_runner import run_cli as cli
from configs import tiny_config, write_yaml

import alphaprune as ap
from alphaprune.engine.checkpoint import (
    CheckpointError,
    checkpoint_info,
    last_path,
    load_checkpoint,
    load_model,
    milestone_path,
    read_checkpoint,
    shrink_checkpoint,
)
from alphaprune.engine.config import ConfigError, config_from_dict, load_config
from alphaprune.engine.evaluate import evaluate
from alphaprune.engine.train import METRIC_COLUMNS, make_datasets, prune, train_baseline

ROOT = Path(__file__).resolve().parents[1]


def tiny(tmp_path: Path, **changes) -> dict:
    return tiny_config(tmp_path, steps=2, samples=4, **changes)


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory):
    """A baseline and a 4-epoch pruning run (linear α 1 → 0 over 2 epochs, then 2 at α = 0)."""
    tmp = tmp_path_factory.mktemp("engine")
    base = train_baseline(config_from_dict(tiny(tmp)), progress=False)
    cfg = config_from_dict(
        tiny(tmp, name="pruned", epochs=4, **{"schedule.lr_at_zero": 0.01}), source="t"
    )
    return base, prune(cfg, original=base.checkpoint, progress=False)


# --- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "key", "needle"),
    [
        ({"optimizer.lr": -1.0}, "optimizer.lr", "-1"),
        ({"epochs": -2}, "epochs", "-2"),
        ({"pruning.keep": 1.5}, "pruning.keep", "1.5"),
        ({"pruning.keep": 0.0}, "pruning.keep", "0"),
        ({"schedule": {"kind": "constant", "alpha": 1.7}}, "schedule", "1.7"),
        ({"schedule": {"kind": "wobbly"}}, "schedule", "wobbly"),
        ({"model.layer": "relu9_1"}, "model.layer", "relu9_1"),
        ({"data.batch_size": "eight"}, "data.batch_size", "eight"),
        ({"optimizer.lr_typo": 0.1}, "optimizer.lr_typo", "unknown key"),
    ],
)
def test_bad_config_names_file_key_and_value(tmp_path, change, key, needle):
    path = write_yaml(tmp_path / "bad.yaml", tiny(tmp_path, **change))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and key in message and needle in message


def test_malformed_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("epochs: [1, 2\nname: x")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="nope.yaml: no such file"):
        load_config(tmp_path / "nope.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listing)


def test_overrides_and_schedule_lr_default(tmp_path):
    path = write_yaml(tmp_path / "ok.yaml", tiny(tmp_path))
    cfg = load_config(
        path,
        [
            "optimizer.lr=0.05",
            "pruning.target=encoder",
            "schedule={kind: exponential, start: 1.0, rate: 0.3}",
        ],
    )
    assert cfg.optimizer.lr == 0.05 and cfg.pruning.target == "encoder"
    schedule = cfg.build_schedule()
    assert schedule.lr_for(0) == 0.05 and schedule.alpha(1) == pytest.approx(0.7408, abs=1e-4)
    assert config_from_dict(cfg.to_dict()) == cfg


# --- training, checkpoints, α ---------------------------------------------------------------


def test_runs_write_metrics_and_checkpoints(pruned_run):
    base, run = pruned_run
    assert list(base.metrics.columns) == METRIC_COLUMNS and len(base.metrics) == 2
    assert base.metrics["alpha"].isna().all()
    metrics = pd.read_csv(run.run_dir / "metrics.csv")
    assert metrics["epoch"].tolist() == [0, 1, 2, 3]
    assert metrics["alpha"].tolist() == [1.0, 0.5, 0.0, 0.0]
    assert metrics["lr"].tolist() == [0.001, 0.001, 0.01, 0.01]
    assert metrics["lr_last"].tolist() == [0.001, 0.001, 0.01, 0.01]  # no decay: constant
    assert (metrics["val_psnr"] > 0).all() and metrics["val_ssim"].between(-1, 1).all()
    for alpha in (1.0, 0.5, 0.0):
        assert checkpoint_info(milestone_path(run.run_dir, alpha))["alpha"] == alpha
    assert checkpoint_info(milestone_path(run.run_dir, 0.5))["epoch"] == 2


def test_metrics_show_the_learning_rate_a_cosine_decay_used(tmp_path):
    cfg = config_from_dict(
        tiny_config(tmp_path, steps=3, epochs=3, **{"optimizer.lr_decay": "cosine"})
    )
    metrics = train_baseline(cfg, progress=False).metrics
    lr, last = metrics["lr"].tolist(), metrics["lr_last"].tolist()
    assert lr[0] < 0.001 and lr == sorted(lr, reverse=True) and len(set(lr)) == 3
    assert all(b < a for a, b in zip(lr, last, strict=True))  # each epoch ends below its mean


def test_checkpoint_alpha_matches_metrics_and_is_enforced(pruned_run):
    _, run = pruned_run
    metrics = pd.read_csv(run.run_dir / "metrics.csv")
    loaded = load_checkpoint(run.checkpoint, verbose=False)
    assert loaded.alpha == metrics["alpha"].iloc[-1] == ap.get_alpha(loaded.model) == 0.0
    half = load_model(milestone_path(run.run_dir, 0.5), verbose=False)
    assert ap.get_alpha(half) == 0.5
    with pytest.raises(CheckpointError, match="saved at α=0; asked for α=0.1"):
        load_model(run.checkpoint, alpha=0.1)
    forced = load_checkpoint(run.checkpoint, alpha=0.1, override_alpha=True, verbose=False)
    assert ap.get_alpha(forced.model) == 0.1 and forced.alpha == 0.0
    assert forced.alpha_overridden and forced.evaluated_alpha == 0.1


def test_shrunk_checkpoint_evaluates_like_gated(pruned_run, tmp_path):
    _, run = pruned_run
    summary = shrink_checkpoint(run.checkpoint, tmp_path / "small.pt", image_size=16)
    assert summary["max_abs_diff"] < 1e-5 and summary["params_after"] < summary["params_before"]
    gated = load_model(run.checkpoint, verbose=False)
    loaded_small = load_checkpoint(tmp_path / "small.pt", verbose=False)
    small = loaded_small.model
    assert loaded_small.alpha == 0.0 and loaded_small.kind == "shrunk" and not ap.gates(small)
    val = make_datasets(run.config)[1]
    a, b = evaluate(gated, val), evaluate(small, val)
    for key in ("loss", "psnr", "ssim"):
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6)
    with pytest.raises(CheckpointError, match="shrunk model fixed at α=0"):
        load_model(tmp_path / "small.pt", alpha=0.5, override_alpha=True)


def test_restart_from_milestone_keeps_masks(pruned_run, tmp_path):
    _, run = pruned_run
    start = milestone_path(run.run_dir, 0.5)
    cfg = config_from_dict(
        tiny(
            tmp_path,
            name="restart",
            epochs=2,
            schedule={"kind": "restart", "alpha": 0.1, "rate": 0.3},
        )
    )
    result = prune(cfg, original=start, progress=False)
    assert result.metrics["alpha"].iloc[0] == pytest.approx(0.1)
    before, after = read_checkpoint(start)["model"], read_checkpoint(result.checkpoint)["model"]
    masks = [k for k in before if k.endswith(".gate_mask")]
    assert masks and all(torch.equal(before[k], after[k]) for k in masks)


def test_same_seed_same_metrics(tmp_path):
    runs = [
        train_baseline(config_from_dict(tiny(tmp_path / str(i))), progress=False) for i in (1, 2)
    ]
    columns = [c for c in METRIC_COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(runs[0].metrics[columns], runs[1].metrics[columns])


def test_damaged_checkpoints_give_clear_errors(pruned_run, tmp_path):
    _, run = pruned_run
    blob = run.checkpoint.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(blob[: len(blob) // 2])
    # random bytes, bare and behind a pickle header: the unpickler then raises whatever it
    # trips on (IndexError, struct.error, ...); seeded so a failure can be replayed
    garbage = []
    for seed in range(40):
        noise = random.Random(seed).randbytes(4096)
        garbage.append(tmp_path / f"garbage{seed}.pt")
        garbage[-1].write_bytes(noise if seed % 2 else b"\x80\x02" + noise)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    for path, needle in [
        (truncated, "truncated or corrupted"),
        *[(path, "truncated or corrupted") for path in garbage],
        (foreign, "not an alphaprune checkpoint"),
        (tmp_path / "missing.pt", "not found"),
    ]:
        with pytest.raises(CheckpointError) as err:
            load_model(path)
        assert str(path) in str(err.value) and needle in str(err.value)


def test_other_config_in_run_folder_is_refused(pruned_run):
    _, run = pruned_run
    changed = run.config.model_copy(update={"seed": 99})
    with pytest.raises(CheckpointError, match="belongs to a different run"):
        prune(changed, progress=False)


def test_weight_analysis(pruned_run):
    from alphaprune.report.weights import weight_comparison

    base, run = pruned_run
    frame = weight_comparison(
        load_model(run.checkpoint, verbose=False), load_model(base.checkpoint, verbose=False)
    )
    assert {"layer", "l2_ratio", "max_ratio", "mean_ratio", "kept_out"} <= set(frame.columns)
    first = frame.iloc[0]
    assert first["kept_out"] == first["out_channels"] // 2
    assert (frame["l2_ratio"] > 0).all()


# --- processes: CLI, kill and resume, torchrun ----------------------------------------------


def test_cli_bad_input_is_one_line_and_nonzero(tmp_path):
    path = write_yaml(tmp_path / "bad.yaml", tiny(tmp_path, **{"optimizer.lr": 0}))
    # the real entry point once (python -m alphaprune), in a child process; training is not reached
    result = cli("train", str(path), cwd=tmp_path, process=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "optimizer.lr" in lines[0]
    assert cli("train", str(tmp_path / "none.yaml"), cwd=tmp_path).returncode == 2
    assert "train" in cli("--help", cwd=tmp_path).stdout


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path):
    data = tiny(tmp_path, epochs=5, steps_per_epoch=3, **{"model.layer": "relu2_1"})
    killed_cfg = write_yaml(tmp_path / "killed.yaml", {**data, "name": "killed"})
    clean_cfg = write_yaml(tmp_path / "clean.yaml", {**data, "name": "clean"})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "alphaprune", "train", str(killed_cfg), "--no-progress"],
        cwd=tmp_path,
        env=env,
    )
    metrics = tmp_path / "runs" / "killed" / "metrics.csv"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:  # 2 epochs done
            break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(pd.read_csv(metrics))
    assert 2 <= done < 5
    resumed = cli("train", str(killed_cfg), "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    assert cli("train", str(clean_cfg), "--no-progress", cwd=tmp_path).returncode == 0
    columns = [c for c in METRIC_COLUMNS if c != "seconds"]
    a = pd.read_csv(metrics)
    b = pd.read_csv(tmp_path / "runs" / "clean" / "metrics.csv")
    assert a["epoch"].tolist() == [0, 1, 2, 3, 4]
    pd.testing.assert_frame_equal(a[columns], b[columns])
    wa = read_checkpoint(last_path(tmp_path / "runs" / "killed"))["model"]
    wb = read_checkpoint(last_path(tmp_path / "runs" / "clean"))["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wb)
    leftovers = list((tmp_path / "runs" / "killed" / "checkpoints").glob("*.tmp"))
    assert all(p.name.startswith(".") for p in leftovers)  # temp files never replace a checkpoint


@pytest.mark.slow  # two processes with gloo
def test_torchrun_two_processes_gloo(tmp_path):
    path = write_yaml(tmp_path / "ddp.yaml", tiny(tmp_path, name="ddp", epochs=1))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "alphaprune",
            "train",
            str(path),
            "--no-progress",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    model = load_model(last_path(tmp_path / "runs" / "ddp"), verbose=False)
    cfg = load_config(path)
    scores = evaluate(model, make_datasets(cfg)[1])
    metrics = pd.read_csv(tmp_path / "runs" / "ddp" / "metrics.csv")
    assert len(metrics) == 1
    assert scores["loss"] == pytest.approx(metrics["val_loss"].iloc[0], rel=1e-5)


def test_feature_loss_with_local_vgg_weights(tmp_path):
    """A torchvision-style state dict on disk initialises the encoder and drives the feature loss."""
    reference = ap.build_autoencoder("relu1_1")
    state = {
        f"features.{k}": torch.randn_like(v) for k, v in reference.encoder.state_dict().items()
    }
    state["classifier.0.weight"] = torch.zeros(2, 2)
    weights = tmp_path / "vgg.pth"
    torch.save(state, weights)
    data = tiny(tmp_path, epochs=1, **{"model.vgg_weights": str(weights), "loss.vgg_feature": 0.5})
    base = train_baseline(config_from_dict(data), progress=False)
    assert base.metrics["train_loss"].iloc[0] > 0
    start = ap.build_autoencoder("relu1_1")
    ap.load_vgg_weights(start, state)
    assert torch.equal(start.encoder[0].weight, state["features.0.weight"])
    pruned = prune(
        config_from_dict({**data, "name": "p"}), original=base.checkpoint, progress=False
    )
    assert pruned.metrics["alpha"].tolist() == [1.0]


def test_shrunk_model_gated_again_round_trips_through_a_checkpoint(tmp_path):
    """Week 10: shrink the pruned encoder, then prune again (here: the encoder once more)."""
    from alphaprune.engine.checkpoint import model_from_state

    torch.manual_seed(0)
    model = ap.build_autoencoder("relu2_1")
    ap.attach_gates(model, keep=0.5, target="encoder")
    ap.set_alpha(model, 0.0)
    small = ap.shrink(model)
    ap.attach_gates(small, keep=0.5, target="both")
    ap.set_alpha(small, 0.3)
    rebuilt = model_from_state({"layer": "relu2_1"}, small.state_dict()).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), small.eval()(x))
    assert ap.get_alpha(rebuilt) == 0.3 and rebuilt.encoder[0].out_channels == 32


def test_kill_between_milestone_and_last_checkpoint_loses_nothing(tmp_path, monkeypatch):
    """A crash after the α milestone but before last.pt redoes that epoch, milestone included,
    and metrics.csv never holds a row that last.pt lacks."""
    import alphaprune.engine.train as train_module

    base = train_baseline(config_from_dict(tiny(tmp_path, epochs=1)), progress=False)
    cfg = config_from_dict(
        tiny(tmp_path, name="p", epochs=3, schedule={"kind": "step", "values": [1.0, 0.1, 0.0]})
    )
    real_save = train_module.save_checkpoint

    def crash_before_last(path, payload):
        if Path(path).name == "last.pt" and payload["epoch"] == 2:
            raise KeyboardInterrupt("simulated kill")
        return real_save(path, payload)

    monkeypatch.setattr(train_module, "save_checkpoint", crash_before_last)
    with pytest.raises(KeyboardInterrupt):
        prune(cfg, original=base.checkpoint, progress=False)
    metrics = pd.read_csv(cfg.run_dir / "metrics.csv")
    assert metrics["alpha"].tolist() == [1.0]  # the interrupted epoch left no row
    assert checkpoint_info(last_path(cfg.run_dir))["alpha"] == metrics["alpha"].iloc[-1]
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    result = prune(cfg, original=base.checkpoint, progress=False)
    assert result.metrics["alpha"].tolist() == [1.0, 0.1, 0.0]
    for alpha in (1.0, 0.1, 0.0):
        assert checkpoint_info(milestone_path(cfg.run_dir, alpha))["alpha"] == alpha


def test_milestone_names_keep_alpha_exactly(tmp_path):
    tiny_alpha = 6.737946999085467e-06
    assert milestone_path(tmp_path, tiny_alpha) != milestone_path(tmp_path, 0.0)
    assert milestone_path(tmp_path, 0.1).name == "alpha_0.1.pt"
    assert milestone_path(tmp_path, 0.10000001) != milestone_path(tmp_path, 0.1)


def test_flipped_bytes_inside_a_checkpoint_are_detected(pruned_run, tmp_path):
    import zipfile

    _, run = pruned_run
    damaged = tmp_path / "flipped.pt"
    damaged.write_bytes(run.checkpoint.read_bytes())
    with zipfile.ZipFile(damaged) as archive:
        member = next(i for i in archive.infolist() if i.filename.endswith("/data/0"))
    blob = bytearray(damaged.read_bytes())
    start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
    blob[start + member.compress_size // 2] ^= 0x40
    damaged.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="flipped.pt: checkpoint is corrupted"):
        load_model(damaged)


def test_cli_bad_output_folder_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    path = write_yaml(tmp_path / "x.yaml", tiny(tmp_path, output_dir=str(blocker / "runs")))
    result = cli("train", str(path), "--no-progress", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
