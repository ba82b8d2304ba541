"""Image-quality metrics: PSNR and SSIM per image."""

from __future__ import annotations

import torch
from pytorch_msssim import ssim as _ms_ssim
from torch import Tensor

__all__ = ["psnr", "ssim"]


def psnr(output: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-image PSNR in dB of ``(N, C, H, W)`` batches (inputs clamped to [0, data_range])."""
    output = output.clamp(0, data_range)
    mse = (output - target).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-12))


def ssim(output: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-image SSIM (``pytorch_msssim``, Gaussian window shrunk for small crops)."""
    size = min(11, output.shape[-1], output.shape[-2])
    size = size if size % 2 == 1 else size - 1
    return _ms_ssim(
        output.clamp(0, data_range).float(),
        target.float(),
        data_range=data_range,
        size_average=False,
        win_size=max(size, 1),
    )
