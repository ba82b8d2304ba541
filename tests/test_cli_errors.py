"""User mistakes the CLI answers in one line (exit 2), never with a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cli_runner import one_line_error
from cli_runner import run_cli as cli
from configs import one_step_config as tiny
from configs import write_yaml

pytestmark = pytest.mark.training  # test tiers: see tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]


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
