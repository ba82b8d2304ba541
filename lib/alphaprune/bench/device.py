"""What a benchmark ran on: the device's name and the conditions every table records."""

from __future__ import annotations

import platform
from typing import Any

import torch

__all__ = ["cpu_model", "device_name", "run_conditions"]


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The CPU's ``model name`` from ``cpuinfo``; None where that file is missing or lacks one."""
    try:
        with open(cpuinfo, encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def device_name(device: torch.device | str) -> str:
    """Human-readable name of ``device``: the GPU's name, or the CPU model from /proc/cpuinfo."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model() or platform.processor() or platform.machine() or "cpu"


def run_conditions(device: torch.device) -> dict[str, Any]:
    """The columns ``device``, ``device_name``, ``torch_version`` and ``threads`` of a table."""
    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
    }
