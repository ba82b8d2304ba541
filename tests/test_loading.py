"""Loading a trained run's model: ``ap.load_model`` / ``ap.load_checkpoint`` and the
:class:`LoadedModel` record, and a pruning run that reads its original once per start."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
from configs import tiny_config
from torch import nn

import alphaprune as ap
from alphaprune.engine import checkpoint
from alphaprune.engine.config import config_from_dict
from alphaprune.engine.train import prune, train_baseline

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """A one-epoch baseline (the original of the pruning runs below)."""
    tmp = tmp_path_factory.mktemp("loading")
    return train_baseline(config_from_dict(tiny_config(tmp, epochs=1)), progress=False)


@pytest.fixture(scope="module")
def pruned(baseline):
    """A two-epoch pruning run of ``baseline`` (linear α 1 → 0 over 2 epochs: α 1, then 0.5)."""
    tmp = baseline.run_dir.parent.parent
    cfg = config_from_dict(tiny_config(tmp, name="pruned", epochs=2))
    return prune(cfg, original=baseline.checkpoint, progress=False)


def test_ap_load_model_is_public_and_loads_a_pruning_run(pruned, capsys):
    assert "load_model" in ap.__all__ and "load_checkpoint" in ap.__all__
    model = ap.load_model(pruned.checkpoint)
    assert isinstance(model, nn.Module) and not model.training
    stored = pd.read_csv(pruned.run_dir / "metrics.csv")["alpha"].iloc[-1]
    assert stored == 0.5 and ap.get_alpha(model) == stored and ap.gates(model)
    assert f"loaded {pruned.checkpoint} (prune, epoch 2, α=0.5)" in capsys.readouterr().out


def test_load_checkpoint_returns_a_frozen_record(pruned):
    loaded = ap.load_checkpoint(pruned.checkpoint, verbose=False)
    assert isinstance(loaded, ap.LoadedModel)
    assert loaded.path == Path(pruned.checkpoint) and loaded.kind == "prune"
    assert loaded.epoch == 2 and loaded.alpha == loaded.evaluated_alpha == 0.5
    assert not loaded.alpha_overridden and loaded.config["name"] == "pruned"
    assert ap.get_alpha(loaded.model) == 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.alpha = 0.0  # type: ignore[misc]


def test_an_overridden_alpha_is_told_apart_from_the_stored_one(pruned):
    loaded = ap.load_checkpoint(pruned.checkpoint, alpha=0.0, override_alpha=True, verbose=False)
    assert loaded.alpha == 0.5 and loaded.evaluated_alpha == 0.0 and loaded.alpha_overridden
    assert ap.get_alpha(loaded.model) == 0.0


def test_load_model_keeps_the_old_attributes_for_one_release(pruned):
    model = ap.load_model(pruned.checkpoint, verbose=False)
    assert model.checkpoint_alpha == 0.5 and model.checkpoint_epoch == 2
    assert model.checkpoint_path == str(pruned.checkpoint) and model.alpha_overridden is False
    # the record's own model carries none of them
    assert not hasattr(
        ap.load_checkpoint(pruned.checkpoint, verbose=False).model, "checkpoint_alpha"
    )


def test_export_of_a_record_names_its_checkpoint(pruned, tmp_path):
    import torch

    loaded = ap.load_checkpoint(pruned.checkpoint, alpha=0.0, override_alpha=True, verbose=False)
    result = ap.export(
        loaded, torch.zeros(1, 3, 16, 16), tmp_path / "m.pt", format="torchscript", verbose=False
    )
    assert result.record["source"] == str(pruned.checkpoint) and result.record["alpha"] == 0.0


def _count_reads(monkeypatch) -> list[Path]:
    reads: list[Path] = []
    real = checkpoint.load_tensors

    def counting(path, what="checkpoint"):
        reads.append(Path(path))
        return real(path, what)

    monkeypatch.setattr(checkpoint, "load_tensors", counting)
    return reads


def test_prune_reads_its_original_once_per_start(baseline, monkeypatch):
    # the feature loss needs the original's encoder too: a third use of the same read
    tmp = baseline.run_dir.parent.parent
    data = tiny_config(tmp, name="feature", epochs=1, **{"loss.vgg_feature": 0.5})
    reads = _count_reads(monkeypatch)
    prune(config_from_dict(data), original=baseline.checkpoint, progress=False)
    assert reads.count(Path(baseline.checkpoint)) == 1
    reads.clear()  # a second start resumes from last.pt: the original is read once again
    prune(config_from_dict({**data, "epochs": 2}), original=baseline.checkpoint, progress=False)
    assert reads.count(Path(baseline.checkpoint)) == 1
