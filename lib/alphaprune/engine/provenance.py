"""What a result was computed with: commit, library hash, versions, device and threads.

:func:`environment` is the record a study (``study.json``) or a report keeps next to its
numbers, so that a reader can tell which code and which machine produced them; a number differs
in its last bits between thread counts and devices (see :mod:`alphaprune.engine.threads`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from alphaprune.paths import PACKAGE_DIR, checkout
from alphaprune.version import __version__

__all__ = ["cpu_name", "environment", "git_commit", "library_digest"]


@functools.lru_cache(maxsize=1)
def library_digest() -> str:
    """Hash of the ``alphaprune`` package's source (every ``.py`` file and the version)."""
    digest = hashlib.sha256(__version__.encode())
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        name = path.relative_to(PACKAGE_DIR).as_posix()
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def git_commit(folder: Path | None = None) -> dict[str, Any]:
    """``{"commit": sha, "dirty": bool}`` of the checkout (``dirty``: uncommitted changes to
    tracked files), or ``{"commit": None}`` outside a git checkout or without git."""
    folder = folder or checkout()
    if folder is None:
        return {"commit": None, "dirty": None}
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha, "dirty": bool(status.strip())}


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """The record of what computes a result now: commit, library hash and version, Python,
    torch, numpy and scipy versions, the device, CPU and its cores, and the torch threads."""
    import numpy
    import scipy
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    record = {
        **git_commit(),
        "library_sha256": library_digest(),
        "alphaprune": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "device": device,
        "cpu": cpu_name(),
        "cores": cores,
        "threads_per_run": threads if threads is not None else torch.get_num_threads(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        record["gpu"] = torch.cuda.get_device_name(0)
    return record
