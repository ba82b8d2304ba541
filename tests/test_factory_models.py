"""Users' own models through the engine and the weekly report: ``model.factory``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

import alphaprune as ap
from alphaprune.engine.checkpoint import load_model, shrink_checkpoint
from alphaprune.engine.config import ConfigError, config_from_dict
from alphaprune.engine.models import build_model, import_factory
from alphaprune.engine.train import prune, train_baseline

ROOT = Path(__file__).resolve().parents[1]
UNET_PARAMS = ROOT / "params" / "examples" / "unet.yaml"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def unet_config(tmp_path: Path, **overrides) -> dict:
    config = {
        "name": "unet",
        "output_dir": str(tmp_path / "runs"),
        "device": "cpu",
        "epochs": 1,
        "steps_per_epoch": 1,
        "model": {
            "factory": "alphaprune.engine.models:build_unet",
            "kwargs": {"width": 4, "depth": 1},
            "example_input_size": [1, 3, 16, 16],
        },
        "data": {"crop": 16, "batch_size": 2, "samples_per_epoch": 2, "val_crops": 1},
        "pruning": {"keep": 0.5, "target": "all"},
    }
    config.update(overrides)
    return config


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no_such_package.models:build", "cannot import module 'no_such_package.models'"),
        ("torch.nn:no_such_function", "has no function 'no_such_function'"),
        ("os.system('echo hi')", "must look like 'package.module:function'"),
        ("__import__('os'):system", "must look like 'package.module:function'"),
    ],
)
def test_bad_factory_is_a_one_line_error_naming_it(spec, message, tmp_path) -> None:
    with pytest.raises(ValueError, match=message):
        import_factory(spec)
    config = unet_config(tmp_path)
    config["model"]["factory"] = spec
    with pytest.raises(ConfigError, match="model.factory") as info:
        config_from_dict(config)
    assert "\n" not in str(info.value)


def test_factory_kwargs_and_vgg_only_keys_are_checked(tmp_path) -> None:
    config = unet_config(tmp_path)
    config["model"]["kwargs"] = {"widht": 4}
    with pytest.raises(ValueError, match="rejected kwargs.*widht"):
        build_model(config_from_dict(config).model.model_dump())
    config = unet_config(tmp_path)
    config["model"]["vgg_weights"] = "vgg.pth"
    with pytest.raises(ConfigError, match="vgg_weights"):
        config_from_dict(config)
    with pytest.raises(ConfigError, match="need model.factory"):
        config_from_dict({"model": {"kwargs": {"width": 4}}})


def test_factory_model_trains_prunes_loads_and_shrinks(tmp_path) -> None:
    base = train_baseline(config_from_dict(unet_config(tmp_path)), progress=False)
    schedule = {"kind": "constant", "alpha": 0.0, "lr": 1e-3}
    cfg = config_from_dict(unet_config(tmp_path, name="pruned", schedule=schedule))
    pruned = prune(cfg, original=base.checkpoint, progress=False)
    model = load_model(pruned.checkpoint, verbose=False)
    assert isinstance(model, ap.engine.models.UNet) and ap.get_alpha(model) == 0.0
    assert any(name.startswith("merge.") for name in ap.gates(model))  # behind the cat skips
    summary = shrink_checkpoint(pruned.checkpoint, tmp_path / "small.pt", image_size=16)
    assert summary["max_abs_diff"] <= 1e-5
    assert summary["params_after"] < 0.5 * summary["params_before"]
    small = load_model(tmp_path / "small.pt", verbose=False)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_unet_example_runs_through_the_weekly_report(tmp_path) -> None:
    from alphaprune.report.runner import run_report

    folder = run_report(UNET_PARAMS, out_dir=tmp_path / "unet", progress=False)
    check = pd.read_csv(folder / "tables" / "shrink_check.csv")
    assert bool(check["passed"][0]) and check["alpha"][0] == 0.0
    counts = pd.read_csv(folder / "tables" / "shrink.csv").set_index("model")
    assert counts.loc["shrunk", "params_ratio"] < 0.5
    assert (folder / "report.html").is_file()
