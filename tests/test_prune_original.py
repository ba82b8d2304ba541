"""The original a pruning run starts from must match the config's architecture."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import one_line_error
from cli_runner import run_cli as cli
from configs import one_step_config as tiny
from configs import write_yaml

from alphaprune.engine.checkpoint import (
    CheckpointError,
    last_path,
)
from alphaprune.engine.config import config_from_dict
from alphaprune.engine.train import prune, train_baseline

pytestmark = pytest.mark.training  # test tiers: see tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]


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
