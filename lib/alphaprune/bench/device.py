"""What a benchmark ran on: the device's name and the conditions every table records."""

from __future__ import annotations

from typing import Any

import torch

from alphaprune.core.runtimes import cpu_model, device_name

__all__ = ["cpu_model", "device_name", "run_conditions"]


def run_conditions(device: torch.device) -> dict[str, Any]:
    """The columns ``device``, ``device_name``, ``torch_version`` and ``threads`` of a table."""
    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
    }
