"""The engine side of a study's arms and controls: a random cut that follows the run's seed (not
the process's history), the unpruned model fine-tuned (keep 1.0 with pruning.fine_tune_only: no
gates, no α; a plain keep 1.0 is refused as a mistake, tests/test_prune_settings.py), the shrunk
architecture re-initialised (pruning.reinit), and threads pinned by the config."""

from __future__ import annotations

import pytest
import torch

from alphaprune.core.gates import gates
from alphaprune.engine.checkpoint import load_model, read_checkpoint, shrink_checkpoint
from alphaprune.engine.config import ConfigError, config_from_dict
from alphaprune.engine.train import prune, train_baseline

pytestmark = pytest.mark.training  # test tiers: see tests/conftest.py


def _cfg(tmp_path, name, **extra):
    data = {
        "name": name,
        "output_dir": str(tmp_path / "runs"),
        "device": "cpu",
        "threads": 1,
        "epochs": 1,
        "steps_per_epoch": 1,
        "model": {"layer": "relu1_1"},
        "data": {"crop": 16, "batch_size": 2, "val_crops": 1},
        "pruning": {"keep": 0.5, "target": "all"},
        "schedule": {"kind": "constant", "alpha": 0.0},
    }
    for key, value in extra.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    return config_from_dict(data)


def _masks(path):
    state = read_checkpoint(path)["model"]
    return {k: v for k, v in state.items() if k.endswith("gate_mask")}


def test_a_random_cut_follows_the_runs_seed_not_the_process(tmp_path, one_torch_thread):
    base = train_baseline(_cfg(tmp_path, "base"), progress=False)
    runs = []
    for name, seed, noise in (("a", 3, 11), ("b", 3, 12), ("c", 4, 11)):
        torch.manual_seed(noise)  # another history of the global generator before the run
        cfg = _cfg(tmp_path, name, seed=seed, pruning={"criterion": "random"})
        runs.append(_masks(prune(cfg, original=base.checkpoint, progress=False).checkpoint))
    same_seed, other_seed = runs[1], runs[2]
    assert all(torch.equal(runs[0][k], same_seed[k]) for k in runs[0])
    assert any(not torch.equal(runs[0][k], other_seed[k]) for k in runs[0])


def test_keep_1_fine_tunes_the_unpruned_model(tmp_path, one_torch_thread):
    base = train_baseline(_cfg(tmp_path, "base"), progress=False)
    cfg = _cfg(tmp_path, "whole", epochs=2, pruning={"keep": 1.0, "fine_tune_only": True})
    result = prune(cfg, original=base.checkpoint, progress=False)
    model = load_model(result.checkpoint, verbose=False)
    assert not gates(model) and model.checkpoint_alpha is None
    assert result.metrics["alpha"].isna().all()
    before = read_checkpoint(base.checkpoint)["model"]
    after = read_checkpoint(result.checkpoint)["model"]
    assert set(before) == set(after) and any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    "pruning",
    [{"keep": 0.5}, {"keep": 1.0, "budget": {"flops": 0.5}}, {"keep": {"encoder.0": 1.0}}],
)
def test_fine_tune_only_is_refused_unless_it_keeps_every_channel(tmp_path, pruning):
    with pytest.raises(ConfigError, match="fine_tune_only needs keep: 1.0 and no budget"):
        _cfg(tmp_path, "x", pruning={**pruning, "fine_tune_only": True})


def test_reinit_trains_the_shrunk_architecture_from_fresh_weights(tmp_path, one_torch_thread):
    base = train_baseline(_cfg(tmp_path, "base"), progress=False)
    cut = prune(_cfg(tmp_path, "cut"), original=base.checkpoint, progress=False)
    shrunk = tmp_path / "shrunk.pt"
    shrink_checkpoint(cut.checkpoint, shrunk, image_size=16)
    states = []
    for name, seed in (("s1", 0), ("s2", 0), ("s3", 1)):
        cfg = _cfg(
            tmp_path,
            name,
            epochs=0,
            seed=seed,
            pruning={"keep": 1.0, "reinit": True, "fine_tune_only": True},
        )
        states.append(
            read_checkpoint(prune(cfg, original=shrunk, progress=False).checkpoint)["model"]
        )
    source = read_checkpoint(shrunk)["model"]
    assert {k: v.shape for k, v in states[0].items()} == {k: v.shape for k, v in source.items()}
    weight = "encoder.0.weight"
    assert not torch.equal(states[0][weight], source[weight])  # fresh weights, same shapes
    assert torch.equal(states[0][weight], states[1][weight])  # seeded by the run's seed
    assert not torch.equal(states[0][weight], states[2][weight])


def test_a_run_pins_its_threads_and_restores_them(tmp_path, monkeypatch):
    seen = []
    real = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(self, *args, **kwargs)

    before = torch.get_num_threads()
    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    train_baseline(_cfg(tmp_path, "base", threads=2), progress=False)
    assert seen == [2] and torch.get_num_threads() == before
