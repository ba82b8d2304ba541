"""Thin helpers around ``torch.distributed`` so one training loop serves 1 process or ``torchrun``."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from alphaprune.errors import ConfigError

__all__ = ["DistContext", "setup", "teardown", "all_reduce_mean", "barrier"]


@dataclass(frozen=True)
class DistContext:
    """Rank, world size and the device this process trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _pick_device(requested: str, local_rank: int) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device: 'cuda' requested but CUDA is not available (use 'auto' or 'cpu')"
        )
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return torch.device("cpu")


def setup(requested_device: str = "auto") -> DistContext:
    """Join the process group when launched by ``torchrun`` (nccl on GPU, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _pick_device(requested_device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world_size, local_rank, device)


def teardown(ctx: DistContext) -> None:
    """Leave the process group (if we joined one)."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(ctx: DistContext, value: float, weight: float = 1.0) -> float:
    """Weighted mean of ``value`` over all ranks (identity in a single process)."""
    if not ctx.enabled:
        return value
    tensor = torch.tensor([value * weight, weight], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor)
    return float(tensor[0] / tensor[1])


def barrier(ctx: DistContext) -> None:
    """Wait for all ranks (no-op in a single process)."""
    if ctx.enabled:
        dist.barrier()
