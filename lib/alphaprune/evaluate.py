"""Evaluation of a model on images: loss, PSNR, SSIM; and reconstructions for figures."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from .analysis import psnr, ssim

__all__ = ["evaluate", "reconstruct"]


def _device_of(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Dataset | Tensor,
    device: str | torch.device | None = None,
    batch_size: int = 8,
) -> dict[str, float]:
    """Mean pixel MSE (``loss``), PSNR (dB) and SSIM of ``model``'s reconstructions of ``data``.

    ``data`` is a dataset of ``(3, H, W)`` tensors or an ``(N, 3, H, W)`` tensor. The model is run
    at whatever α its gates hold (never changed here) and put back in its previous mode.
    """
    device = torch.device(device) if device is not None else _device_of(model)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    was_training = model.training
    model.eval()
    total = {"loss": 0.0, "psnr": 0.0, "ssim": 0.0}
    count = 0
    try:
        for batch in loader:
            batch = batch.to(device)
            output = model(batch)
            n = batch.shape[0]
            total["loss"] += float(torch.mean((output - batch) ** 2)) * n
            total["psnr"] += float(psnr(output, batch).sum())
            total["ssim"] += float(ssim(output, batch).sum())
            count += n
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate: no images in data")
    return {key: value / count for key, value in total.items()}


@torch.no_grad()
def reconstruct(model: nn.Module, images: Tensor) -> Tensor:
    """Reconstructions of ``images`` (``(N, 3, H, W)`` or ``(3, H, W)``) clamped to [0, 1], on CPU."""
    single = images.dim() == 3
    batch = images.unsqueeze(0) if single else images
    was_training = model.training
    model.eval()
    try:
        output = model(batch.to(_device_of(model))).clamp(0, 1).cpu()
    finally:
        model.train(was_training)
    return output[0] if single else output
