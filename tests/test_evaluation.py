"""Evaluation per whole image: PSNR of each image's mean squared error (each pixel once, not the
mean of tile PSNRs), and intervals that resample images — absent when there are too few."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from alphaprune.engine.data import GridCropDataset, to_tensor
from alphaprune.engine.evaluate import (
    compare_to_original,
    evaluate,
    evaluate_images,
    paired_image_difference,
)


class _Dim(nn.Module):
    """A pixel-wise model: its error at a pixel does not depend on the tile around it."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def _images(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = [(40, 56), (33, 47), (48, 48), (36, 60), (50, 41), (45, 45), (39, 52)]
    return {
        f"im{k}": (rng.random((*sizes[k % len(sizes)], 3)) * 255 * rng.uniform(0.3, 1)).astype(
            np.uint8
        )
        for k in range(n)
    }


def _whole_image_psnr(image: np.ndarray, factor: float) -> float:
    x = to_tensor(image)
    mse = float(((x * factor).clamp(0, 1) - x).pow(2).mean())
    return 10 * math.log10(1 / mse)


def test_image_psnr_is_that_of_the_whole_image_not_the_mean_of_tiles():
    images = _images(3)
    data = GridCropDataset(images, crop=16)  # tiles overlap at the right and bottom borders
    scores = evaluate_images(_Dim(0.8), data, batch_size=7)
    assert scores.images == list(images)
    for name, value in zip(scores.images, scores.psnr, strict=True):
        assert value == pytest.approx(_whole_image_psnr(images[name], 0.8), abs=1e-5)
    # the mean of per-tile PSNRs is another (wrong) number
    tiles = evaluate(_Dim(0.8), torch.stack([data[i] for i in range(len(data))]))["psnr"]
    assert abs(tiles - scores.mean_psnr) > 1e-3
    counts = [t[:, 1].sum() for t in scores.tiles]  # every pixel counted once
    assert counts == [images[n].shape[0] * images[n].shape[1] * 3 for n in scores.images]


def test_one_validation_image_gives_no_evaluation_interval():
    data = GridCropDataset(_images(1), crop=16)
    scores = evaluate(_Dim(0.9), data, interval=True)
    assert scores["n_images"] == 1
    assert math.isnan(scores["psnr_ci_low"]) and math.isnan(scores["psnr_ci_high"])
    assert "only 1 image" in scores["interval_note"]


def test_enough_images_give_an_interval_over_images():
    data = GridCropDataset(_images(7), crop=16)
    scores = evaluate(_Dim(0.9), data, interval=True)
    assert scores["psnr_ci_low"] < scores["psnr"] < scores["psnr_ci_high"]
    assert "interval_note" not in scores


def test_paired_difference_over_images_and_above_original_without_an_interval():
    few = GridCropDataset(_images(3), crop=16)
    better, worse = _Dim(0.95), _Dim(0.8)
    diff = paired_image_difference(evaluate_images(better, few), evaluate_images(worse, few))
    assert diff.estimate > 0 and not diff.available and "only 3 images" in diff.reason
    flag = compare_to_original(better, worse, few)
    assert flag["above_original"] and math.isnan(flag["vs_original_ci_low"])  # on every image
    assert not compare_to_original(worse, better, few)["above_original"]
    many = GridCropDataset(_images(7), crop=16)
    both = compare_to_original(better, worse, many)
    assert both["vs_original_ci_low"] > 0 and both["above_original"]


@pytest.mark.training
def test_cli_evaluate_scores_the_test_split_without_a_narrow_interval(tmp_path, one_torch_thread):
    import json

    import yaml
    from cli_runner import run_cli

    params = tmp_path / "x.yaml"
    config = {
        "name": "base",
        "output_dir": "runs",
        "device": "cpu",
        "epochs": 1,
        "steps_per_epoch": 1,
        "model": {"layer": "relu1_1"},
        "data": {"crop": 32, "batch_size": 2, "val_protocol": "grid"},
    }
    params.write_text(yaml.safe_dump(config))
    assert run_cli("train", str(params), "--no-progress", cwd=tmp_path).returncode == 0
    done = run_cli("evaluate", str(params), "--split", "test", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    scores = json.loads(done.stdout.strip().splitlines()[-1])
    assert scores["n_images"] == 3 and scores["psnr_ci_low"] is None
    assert "only 3 images" in scores["interval_note"]
