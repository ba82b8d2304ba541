"""Evaluation of a model on images: loss, PSNR, SSIM per item and per whole image, with intervals
that resample images (tiles of one image are not independent); and reconstructions for figures.

A validation or test set of tiles (:class:`alphaprune.engine.data.GridCropDataset`, or the fixed
crops of :class:`~alphaprune.engine.data.FixedCropDataset`) knows which image each tile comes
from (``boxes``). :func:`evaluate_images` scores every image as a whole: its PSNR is that of the
mean squared error over all of its pixels that the tiles cover, each pixel counted once (not the
mean of per-tile PSNRs). :func:`evaluate` and :func:`compare_to_original` give the image mean
and, on request, a two-stage cluster-bootstrap interval over images
(:func:`alphaprune.engine.stats.cluster_bootstrap`) — absent, with the reason, when there are
fewer than :data:`~alphaprune.engine.stats.MIN_CLUSTERS` images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from alphaprune.core.modes import eval_mode
from alphaprune.engine.metrics import psnr, ssim

__all__ = [
    "ImageScores",
    "evaluate",
    "evaluate_items",
    "evaluate_images",
    "compare_to_original",
    "image_psnr_mean",
    "paired_image_difference",
    "reconstruct",
]


def _device_of(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@torch.no_grad()
def _outputs(model: nn.Module, data: Dataset | Tensor, device, batch_size: int):
    """``(batch, output)`` pairs of ``model`` over ``data`` in order, in eval mode (each module's
    own training flag restored afterwards)."""
    device = torch.device(device) if device is not None else _device_of(model)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    with eval_mode(model):
        for batch in loader:
            batch = batch.to(device)
            yield batch, model(batch)


def evaluate_items(
    model: nn.Module,
    data: Dataset | Tensor,
    device: str | torch.device | None = None,
    batch_size: int = 8,
) -> dict[str, list[float]]:
    """Per-item pixel MSE (``loss``), PSNR (dB) and SSIM of ``model``'s reconstructions of ``data``.

    ``data`` is a dataset of ``(3, H, W)`` tensors or an ``(N, 3, H, W)`` tensor. The model is run
    at whatever α its gates hold (never changed here) and put back in its previous mode.
    """
    items: dict[str, list[float]] = {"loss": [], "psnr": [], "ssim": []}
    for batch, output in _outputs(model, data, device, batch_size):
        items["loss"] += ((output - batch) ** 2).flatten(1).mean(dim=1).tolist()
        items["psnr"] += psnr(output, batch).tolist()
        items["ssim"] += ssim(output, batch).tolist()
    if not items["loss"]:
        raise ValueError("evaluate: no images in data")
    return items


@dataclass
class ImageScores:
    """Scores of one model per whole image (same order as ``images``).

    ``tiles[k]`` holds one row per tile of image ``k``: the summed squared error over the pixels
    that tile is the first to cover, and the number of those values (pixels × channels), so that
    ``sum(error) / sum(count)`` is the image's MSE with each pixel counted once.
    """

    images: list[str]
    psnr: list[float]
    mse: list[float]
    ssim: list[float]
    tiles: list[np.ndarray] = field(repr=False)

    @property
    def mean_psnr(self) -> float:
        return float(np.mean(self.psnr))

    def as_dict(self) -> dict[str, object]:
        return {
            "images": self.images,
            "psnr": self.psnr,
            "mse": self.mse,
            "ssim": self.ssim,
            "tiles": [t.tolist() for t in self.tiles],
        }

    @classmethod
    def from_dict(cls, data: dict) -> ImageScores:
        tiles = [np.asarray(t, dtype=float).reshape(-1, 2) for t in data["tiles"]]
        return cls(list(data["images"]), data["psnr"], data["mse"], data["ssim"], tiles)


def _boxes(data: Dataset | Tensor) -> list[tuple[str, int, int]] | None:
    return getattr(data, "boxes", None)


def _ownership(data: Dataset | Tensor, n_items: int, side: int):
    """Per item: its image name and the mask of the pixels of its tile it is the first to cover
    (None: every pixel). Items of a plain tensor are their own images."""
    boxes = _boxes(data)
    if boxes is None:
        return [(f"#{i}", None) for i in range(n_items)]
    shapes = data.image_shapes
    covered = {name: np.zeros(shape, dtype=bool) for name, shape in shapes.items()}
    owned = []
    for name, top, left in boxes:
        window = covered[name][top : top + side, left : left + side]
        owned.append((name, ~window.copy()))
        window[...] = True
    return owned


def _scored_items(model, data, device, batch_size) -> tuple[list[tuple], int]:
    """One pass over ``data``: per item its squared-error map (channels summed, clamped output),
    SSIM and unclamped pixel MSE; and the tile side."""
    rows: list[tuple[np.ndarray, float, float]] = []
    side = 0
    for batch, output in _outputs(model, data, device, batch_size):
        side = batch.shape[-1]
        error = (output.clamp(0, 1) - batch).pow(2).sum(dim=1).double().cpu().numpy()
        losses = ((output - batch) ** 2).flatten(1).mean(dim=1).tolist()
        ssims = ssim(output, batch).tolist()
        rows += list(zip(error, ssims, losses, strict=True))
    if not rows:
        raise ValueError("evaluate: no images in data")
    return rows, side


def _image_scores(data, rows: list[tuple], side: int) -> ImageScores:
    per_image: dict[str, list] = {}
    for (name, mask), (error, value, _) in zip(
        _ownership(data, len(rows), side), rows, strict=True
    ):
        kept = error if mask is None else error[mask]
        per_image.setdefault(name, []).append((float(kept.sum()), kept.size * 3, value))
    names, tiles, mses, ssims = [], [], [], []
    for name, items in per_image.items():
        table = np.asarray([(e, c) for e, c, _ in items if c > 0], dtype=float).reshape(-1, 2)
        names.append(name)
        tiles.append(table)
        mses.append(float(table[:, 0].sum() / table[:, 1].sum()))
        ssims.append(float(np.mean([v for _, _, v in items])))
    return ImageScores(names, [_psnr_of_mse(m) for m in mses], mses, ssims, tiles)


def evaluate_images(
    model: nn.Module,
    data: Dataset | Tensor,
    device: str | torch.device | None = None,
    batch_size: int = 8,
) -> ImageScores:
    """PSNR, MSE and SSIM of ``model`` on every whole image of ``data``.

    For a dataset with ``boxes`` (tiles of images), an image's MSE is over the pixels its tiles
    cover, each pixel once (where tiles overlap, the first tile's error counts), and its PSNR is
    ``10·log10(1 / MSE)`` of the clamped output; its SSIM is the mean over its tiles. Items of a
    plain tensor are separate images.
    """
    rows, side = _scored_items(model, data, device, batch_size)
    return _image_scores(data, rows, side)


def _psnr_of_mse(mse: float) -> float:
    return float(10 * math.log10(1.0 / max(mse, 1e-12)))


def _psnr(error: np.ndarray, count: np.ndarray) -> np.ndarray:
    return 10 * np.log10(count / np.maximum(error, 1e-12 * count))


def image_psnr_mean(sums: np.ndarray) -> np.ndarray:
    """Mean over images of their PSNR, from per-image sums ``(..., images, [error, count])``."""
    return _psnr(sums[..., 0], sums[..., 1]).mean(axis=-1)


def _paired_psnr_difference(sums: np.ndarray) -> np.ndarray:
    """Mean over images of PSNR(a) − PSNR(b), from sums ``(..., images, [error a, error b,
    count])``."""
    return (_psnr(sums[..., 0], sums[..., 2]) - _psnr(sums[..., 1], sums[..., 2])).mean(axis=-1)


def image_interval(scores: ImageScores, confidence: float = 0.95):
    """Cluster-bootstrap interval of the mean image PSNR (absent for too few images)."""
    from alphaprune.engine.stats import cluster_bootstrap

    return cluster_bootstrap(scores.tiles, image_psnr_mean, confidence=confidence)


def paired_image_difference(a: ImageScores, b: ImageScores, confidence: float = 0.95):
    """Mean over images of PSNR(a) − PSNR(b) on the same images and tiles, with a paired
    cluster-bootstrap interval (the same images and tiles drawn for both; absent for too few
    images) — a :class:`alphaprune.engine.stats.ClusterInterval`."""
    from alphaprune.engine.stats import cluster_bootstrap

    if a.images != b.images or [len(t) for t in a.tiles] != [len(t) for t in b.tiles]:
        raise ValueError("paired_image_difference: the two scores are not on the same tiles")
    groups = [
        np.column_stack([ta[:, 0], tb[:, 0], ta[:, 1]])
        for ta, tb in zip(a.tiles, b.tiles, strict=True)
    ]
    return cluster_bootstrap(groups, _paired_psnr_difference, confidence=confidence)


def evaluate(
    model: nn.Module,
    data: Dataset | Tensor,
    device: str | torch.device | None = None,
    batch_size: int = 8,
    interval: bool = False,
    confidence: float = 0.95,
) -> dict[str, float]:
    """Mean pixel MSE over tiles (``loss``), mean PSNR (dB) and SSIM over whole images.

    With tiles of images (a dataset with ``boxes``) the PSNR is the mean over images of each
    image's PSNR (:func:`evaluate_images`), not the mean over tiles. ``interval=True`` adds
    ``n_images`` and ``psnr_ci_low/high``: a two-stage cluster-bootstrap interval (images, then
    tiles within an image) — NaN with ``interval_note`` saying why when there are fewer than
    :data:`alphaprune.engine.stats.MIN_CLUSTERS` images. It is the evaluation noise (which
    images were held out), not the seed-to-seed training noise.
    """
    rows, side = _scored_items(model, data, device, batch_size)
    scores = _image_scores(data, rows, side)
    out: dict[str, float] = {
        "loss": float(np.mean([loss for _, _, loss in rows])),
        "psnr": scores.mean_psnr,
        "ssim": float(np.mean(scores.ssim)),
    }
    if interval:
        ci = image_interval(scores, confidence)
        out.update(psnr_ci_low=ci.low, psnr_ci_high=ci.high, n_images=len(scores.images))
        if ci.reason:
            out["interval_note"] = ci.reason
    return out


def above_on_every_image(diff_per_image: Sequence[float], ci_low: float) -> bool:
    """A model above its original: by more than the evaluation noise where there is an interval
    (its low end above 0), else on every held-out image."""
    if math.isfinite(ci_low):
        return ci_low > 0
    return bool(len(diff_per_image)) and all(d > 0 for d in diff_per_image)


def compare_to_original(
    model: nn.Module,
    original: nn.Module,
    data: Dataset | Tensor,
    batch_size: int = 8,
    confidence: float = 0.95,
) -> dict[str, float | bool]:
    """Image-mean PSNR of ``model`` minus that of its ``original`` on the same images, with a
    paired cluster-bootstrap interval (absent for fewer than 5 images). ``above_original`` is
    True when the pruned model scores above its original beyond the evaluation noise (the
    interval lies above 0), or — without an interval — on every image: suspicious for a model
    with fewer channels, and a report must flag it."""
    mine = evaluate_images(model, data, batch_size=batch_size)
    theirs = evaluate_images(original, data, batch_size=batch_size)
    ci = paired_image_difference(mine, theirs, confidence)
    per_image = [a - b for a, b in zip(mine.psnr, theirs.psnr, strict=True)]
    return {
        "vs_original": ci.estimate,
        "vs_original_ci_low": ci.low,
        "vs_original_ci_high": ci.high,
        "above_original": above_on_every_image(per_image, ci.low),
    }


@torch.no_grad()
def reconstruct(model: nn.Module, images: Tensor) -> Tensor:
    """Reconstructions of ``images`` (``(N, 3, H, W)`` or ``(3, H, W)``) clamped to [0, 1], on CPU."""
    single = images.dim() == 3
    batch = images.unsqueeze(0) if single else images
    with eval_mode(model):
        output = model(batch.to(_device_of(model))).clamp(0, 1).cpu()
    return output[0] if single else output
