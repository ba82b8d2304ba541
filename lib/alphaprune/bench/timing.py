"""The timing both benchmarks share: timed calls, block sizing, interleaved rotation, a tally.

Models are timed in turns whose order rotates every round (A B C, B C A, …), so that drift
(thermal, clocks, other load) hits all of them alike; a turn runs a *block* of consecutive calls.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["MIN_ROUNDS", "Tally", "block_size", "rotation", "sync", "timed_calls"]

#: On CUDA the automatic block size leaves each model at least this many turns.
MIN_ROUNDS = 3


def sync(device: torch.device) -> None:
    """Wait for the work queued on a CUDA ``device``; nothing on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_calls(fn: Callable[[], Any], n: int, device: torch.device) -> list[float]:
    """Run ``fn`` ``n`` times; milliseconds per call (CUDA events on CUDA, perf_counter on CPU).

    On CUDA the device is synchronised before the first call and after the last, and each call is
    bracketed by its own pair of events, so a call's time is what the GPU spent on it.
    """
    if device.type == "cuda":
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(n)
        ]
        torch.cuda.synchronize(device)
        for start, end in events:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(device)
        return [start.elapsed_time(end) for start, end in events]
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def block_size(fastest_ms: float, repeats: int, min_block_s: float, cuda: bool) -> int:
    """Calls per turn: 1 on CPU; on CUDA enough calls of ``fastest_ms`` to fill ``min_block_s``.

    A CUDA block is capped so that each model still gets :data:`MIN_ROUNDS` turns of its
    ``repeats`` calls; NVML's utilisation counter averages over its own sample period, and a long
    block lets it see mostly one model at a time.
    """
    if not cuda or not fastest_ms > 0:  # also when no warm-up time was measured (nan)
        return 1
    longest = math.ceil(repeats / MIN_ROUNDS)
    return max(1, min(longest, math.ceil(min_block_s * 1e3 / fastest_ms)))


def rotation(names: Sequence[str], repeats: int, block: int) -> Iterator[tuple[str, int]]:
    """The turns ``(name, calls)`` until every name made ``repeats`` calls, ``block`` per turn.

    The order rotates every round; the last round's turns are shorter when ``block`` does not
    divide ``repeats``.
    """
    names = list(names)
    for turn in range(math.ceil(repeats / block)):
        calls = min(block, repeats - turn * block)
        shift = turn % len(names)
        for name in names[shift:] + names[:shift]:
            yield name, calls


@dataclass
class Tally:
    """One model's timed calls (ms), collected over its turns."""

    name: str
    times_ms: list[float] = field(default_factory=list)

    def quantile_columns(self, prefix: str) -> dict[str, float]:
        """``{prefix}_median``, ``{prefix}_p10`` and ``{prefix}_p90`` of the times."""
        p10, median, p90 = np.percentile(np.asarray(self.times_ms, dtype=float), [10, 50, 90])
        return {
            f"{prefix}_median": float(median),
            f"{prefix}_p10": float(p10),
            f"{prefix}_p90": float(p90),
        }
