"""Evaluation of a model on images: loss, PSNR, SSIM (with bootstrap intervals over the validation
items, the evaluation noise); and reconstructions for figures."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from alphaprune.core.modes import eval_mode
from alphaprune.engine.metrics import psnr, ssim

__all__ = ["evaluate", "evaluate_items", "compare_to_original", "reconstruct"]


def _device_of(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@torch.no_grad()
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
    device = torch.device(device) if device is not None else _device_of(model)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    items: dict[str, list[float]] = {"loss": [], "psnr": [], "ssim": []}
    with eval_mode(model):
        for batch in loader:
            batch = batch.to(device)
            output = model(batch)
            items["loss"] += ((output - batch) ** 2).flatten(1).mean(dim=1).tolist()
            items["psnr"] += psnr(output, batch).tolist()
            items["ssim"] += ssim(output, batch).tolist()
    if not items["loss"]:
        raise ValueError("evaluate: no images in data")
    return items


def evaluate(
    model: nn.Module,
    data: Dataset | Tensor,
    device: str | torch.device | None = None,
    batch_size: int = 8,
    interval: bool = False,
    confidence: float = 0.95,
) -> dict[str, float]:
    """Mean pixel MSE (``loss``), PSNR (dB) and SSIM of ``model``'s reconstructions of ``data``.

    With ``interval=True`` also ``psnr_ci_low/high`` and ``ssim_ci_low/high``: a bootstrap
    interval of each mean over the validation items (:func:`alphaprune.engine.stats.bootstrap_ci`), i.e.
    how much the score depends on which crops were drawn — the evaluation noise, not the
    seed-to-seed training noise — and ``n_items``.
    """
    items = evaluate_items(model, data, device=device, batch_size=batch_size)
    scores = {key: sum(values) / len(values) for key, values in items.items()}
    if interval:
        from alphaprune.engine.stats import bootstrap_ci

        for key in ("psnr", "ssim"):
            low, high = bootstrap_ci(items[key], confidence=confidence)
            scores[f"{key}_ci_low"], scores[f"{key}_ci_high"] = low, high
        scores["n_items"] = len(items["psnr"])
    return scores


def compare_to_original(
    model: nn.Module,
    original: nn.Module,
    data: Dataset | Tensor,
    batch_size: int = 8,
    confidence: float = 0.95,
) -> dict[str, float | bool]:
    """PSNR of ``model`` minus PSNR of its ``original`` on the same items, with a bootstrap
    interval of the mean per-item difference. ``above_original`` is True when the pruned model
    scores above its original by more than the evaluation noise (the interval lies above 0) —
    suspicious for a model with fewer channels, and a report must flag it."""
    from alphaprune.engine.stats import bootstrap_ci

    mine = evaluate_items(model, data, batch_size=batch_size)["psnr"]
    theirs = evaluate_items(original, data, batch_size=batch_size)["psnr"]
    diff = [a - b for a, b in zip(mine, theirs, strict=True)]
    low, high = bootstrap_ci(diff, confidence=confidence)
    mean = sum(diff) / len(diff)
    return {
        "vs_original": mean,
        "vs_original_ci_low": low,
        "vs_original_ci_high": high,
        "above_original": bool(low > 0),
    }


@torch.no_grad()
def reconstruct(model: nn.Module, images: Tensor) -> Tensor:
    """Reconstructions of ``images`` (``(N, 3, H, W)`` or ``(3, H, W)``) clamped to [0, 1], on CPU."""
    single = images.dim() == 3
    batch = images.unsqueeze(0) if single else images
    with eval_mode(model):
        output = model(batch.to(_device_of(model))).clamp(0, 1).cpu()
    return output[0] if single else output
