"""Pruning settings a careless user gets wrong (issue 20): budget options without a budget, a
round_to larger than every group, keep: 1.0, α given as a string; and a half-made run folder."""

from __future__ import annotations

import pytest
import torch
from cli_runner import one_line_error
from cli_runner import run_cli as cli
from configs import tiny_config, write_yaml

import alphaprune as ap
from alphaprune.engine.config import ConfigError, config_from_dict
from alphaprune.engine.train import train_baseline
from alphaprune.errors import PruningError

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.training]


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("original")
    cfg = config_from_dict(tiny_config(folder, steps=1, samples=2, epochs=1))
    return str(train_baseline(cfg, progress=False).checkpoint)


@pytest.mark.parametrize("key, value", [("round_to", 8), ("min_keep", 0.9)])
def test_budget_options_without_a_budget_are_refused(tmp_path, key, value):
    with pytest.raises(ConfigError, match=rf"pruning: {key}={value!r} .*only with pruning.budget"):
        config_from_dict(tiny_config(tmp_path, **{f"pruning.{key}": value}))
    config_from_dict(  # with a budget they apply
        tiny_config(tmp_path, **{f"pruning.{key}": value, "pruning.budget": {"flops": 0.5}})
    )
    full = config_from_dict(tiny_config(tmp_path)).to_dict()  # a saved config spells out
    config_from_dict(full)  # every default: still valid


def test_a_round_to_larger_than_every_group_is_named():
    model = ap.build_autoencoder("relu1_1")
    with pytest.raises(PruningError, match=r"round_to=128 \(no group"):
        ap.attach_gates(model, budget={"flops": 0.5}, round_to=128)


def test_keep_one_fails_before_a_run_folder_exists_and_the_fix_then_runs(tmp_path, original):
    data = tiny_config(tmp_path, steps=1, samples=2, name="k1", init_from=original)
    data["pruning"]["keep"] = 1.0
    params = write_yaml(tmp_path / "k.yaml", data)
    one_line_error(cli("prune", str(params), "--no-progress", cwd=tmp_path), "pruning.keep 1.0")
    assert not (tmp_path / "runs" / "k1").exists()
    data["pruning"]["keep"] = 0.5
    write_yaml(params, data)
    result = cli("prune", str(params), "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_a_start_point_of_another_config_does_not_block_the_fixed_rerun(
    tmp_path, original, monkeypatch
):
    import alphaprune.engine.train as train

    data = tiny_config(tmp_path, steps=1, samples=2, name="p", init_from=original)
    real = train._run_epoch

    def broken(*args, **kwargs):
        raise RuntimeError("a mistake found in the first epoch")

    monkeypatch.setattr(train, "_run_epoch", broken)
    with pytest.raises(RuntimeError, match="first epoch"):
        train.prune(config_from_dict(data), progress=False)
    assert (tmp_path / "runs" / "p" / "checkpoints" / "last.pt").exists()  # its start only
    monkeypatch.setattr(train, "_run_epoch", real)
    data["optimizer"]["lr"] = 0.002  # the fix: another config in the same folder
    result = train.prune(config_from_dict(data), progress=False)
    assert len(result.metrics) == data["epochs"]


@pytest.mark.parametrize("alpha", ["0.5", b"0.5"])
def test_a_string_is_not_an_alpha(alpha):
    model = ap.build_autoencoder("relu1_1")
    ap.attach_gates(model, keep=0.5, example_inputs=torch.zeros(1, 3, 16, 16), alpha=0.3)
    with pytest.raises(ValueError, match="must be a number in"):
        ap.set_alpha(model, alpha)
    assert ap.get_alpha(model) == pytest.approx(0.3)
