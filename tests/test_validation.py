"""The validation protocol (grid tiles, held-out lists), bootstrap intervals in evaluate, and the
per-step cosine learning rate."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from alphaprune.core.schedules import lr_factor
from alphaprune.engine.config import config_from_dict
from alphaprune.engine.data import (
    HELD_OUT,
    DataError,
    FixedCropDataset,
    GridCropDataset,
    load_bundled,
    split_images,
    validation_dataset,
)
from alphaprune.engine.evaluate import evaluate, evaluate_items
from alphaprune.engine.train import make_datasets


def _images():
    rng = np.random.default_rng(0)
    return {
        "a": rng.integers(0, 256, (50, 70, 3), dtype=np.uint8),
        "b": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
    }


@pytest.mark.parametrize("crop", [8, 13, 32])
def test_grid_tiles_cover_every_pixel_of_every_image(crop):
    images = _images()
    grid = GridCropDataset(images, crop)
    covered = {name: np.zeros(img.shape[:2], dtype=int) for name, img in images.items()}
    for i, (name, label) in enumerate(zip(grid.image_of, grid.names, strict=True)):
        top, left = (int(v) for v in label.split("@")[1].split(","))
        tile = grid[i]
        assert tile.shape == (3, crop, crop)
        expected = images[name][top : top + crop, left : left + crop]
        assert torch.equal(tile, torch.from_numpy(expected.transpose(2, 0, 1) / 255.0).float())
        covered[name][top : top + crop, left : left + crop] += 1
    for name, count in covered.items():
        assert count.min() >= 1, f"{name}: pixels not covered"
        h, w = images[name].shape[:2]
        assert grid.image_of.count(name) == math.ceil(h / crop) * math.ceil(w / crop)


def test_validation_protocols_by_name():
    images = _images()
    corners = validation_dataset(images, 16, "corners", val_crops=3)
    assert isinstance(corners, FixedCropDataset) and len(corners) == 6
    grid = validation_dataset(images, 16, "grid", val_crops=3)
    assert isinstance(grid, GridCropDataset) and len(grid) > len(corners)
    with pytest.raises(DataError, match="unknown validation protocol"):
        validation_dataset(images, 16, "random")


def test_held_out_v2_never_overlaps_training():
    images = load_bundled()
    train, val = split_images(images, HELD_OUT["v2"])
    assert set(val) == {"astronaut", "chelsea", "coffee"} and not set(train) & set(val)
    # the stereo pair shows one scene: both views stay on the same side
    assert ("motorcycle_left" in train) == ("motorcycle_right" in train)
    cfg = config_from_dict(
        {"data": {"crop": 48, "val_images": list(HELD_OUT["v2"]), "val_protocol": "grid"}}
    )
    train_ds, val_ds = make_datasets(cfg)
    assert isinstance(val_ds, GridCropDataset) and set(val_ds.image_of) == set(HELD_OUT["v2"])
    assert not set(train_ds.names) & set(HELD_OUT["v2"])
    assert len(val_ds) > 200  # the whole of three photographs, not 2 × 2 crops


class _Noisy(nn.Module):
    """Adds a fixed, item-dependent error: a model whose PSNR varies across items."""

    def forward(self, x):
        scale = torch.linspace(0.01, 0.2, x.shape[0]).view(-1, 1, 1, 1)
        return x + scale * torch.ones_like(x)


def test_evaluate_reports_a_bootstrap_interval_over_independent_images():
    x = torch.rand(40, 3, 16, 16)  # a tensor's items are separate images
    items = evaluate_items(_Noisy(), x, batch_size=40)
    assert len(items["psnr"]) == 40
    scores = evaluate(_Noisy(), x, batch_size=40, interval=True)
    assert scores["psnr"] == pytest.approx(np.mean(items["psnr"]), abs=1e-4)
    assert scores["psnr_ci_low"] < scores["psnr"] < scores["psnr_ci_high"]
    assert scores["n_images"] == 40 and "interval_note" not in scores
    assert "psnr_ci_low" not in evaluate(_Noisy(), x, batch_size=40)


def test_cosine_lr_factor():
    assert lr_factor("none", 5, 10) == 1.0
    values = [lr_factor("cosine", s, 100) for s in range(101)]
    assert values[0] == 1.0 and values[50] == pytest.approx(0.5) and values[100] == 0.01
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    warm = [lr_factor("cosine", s, 100, warmup=10) for s in range(10)]
    assert warm[0] == pytest.approx(0.1 * values[0]) and warm == sorted(warm)
    with pytest.raises(ValueError, match="lr decay"):
        lr_factor("step", 1, 10)


@pytest.mark.training
def test_cosine_decay_reaches_the_optimiser(tmp_path, one_torch_thread, monkeypatch):
    from alphaprune.engine import train

    seen = []
    real_step = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    cfg = config_from_dict(
        {
            "name": "cos",
            "output_dir": str(tmp_path),
            "device": "cpu",
            "epochs": 2,
            "steps_per_epoch": 3,
            "model": {"layer": "relu1_1"},
            "data": {"crop": 16, "batch_size": 2, "val_crops": 1},
            "optimizer": {"lr": 0.01, "lr_decay": "cosine", "warmup_steps": 2},
        }
    )
    train.train_baseline(cfg, progress=False)
    expected = [0.01 * lr_factor("cosine", s, 6, 2) for s in range(6)]
    assert seen == pytest.approx(expected)


class _Shift(nn.Module):
    def __init__(self, shift: float) -> None:
        super().__init__()
        self.shift = shift

    def forward(self, x):
        return x + self.shift


@pytest.mark.slow  # > 5 s on a busy machine: out of the unit tier, in make test
def test_a_model_above_its_original_beyond_the_evaluation_noise_is_flagged():
    from alphaprune.engine.evaluate import compare_to_original

    x = torch.rand(30, 3, 16, 16) * 0.8
    better = compare_to_original(_Shift(0.01), _Shift(0.05), x)
    assert better["above_original"] and better["vs_original_ci_low"] > 0
    worse = compare_to_original(_Shift(0.05), _Shift(0.01), x)
    assert not worse["above_original"] and worse["vs_original"] < 0
    same = compare_to_original(_Shift(0.02), _Shift(0.02), x)
    assert not same["above_original"] and same["vs_original"] == 0
