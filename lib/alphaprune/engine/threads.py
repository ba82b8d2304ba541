"""Pinning torch's intra-op thread count for a run.

CPU kernels split reductions (convolution backward, sums) across threads, and the order in which
partial sums are added depends on the thread count: the same run at 1 and at 2 threads differs
in the last bits after one step, and training amplifies that into different models (measured in
docs/studies.md). A run that must be reproducible pins its count (``threads`` in the config).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["torch_threads"]


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block at ``threads`` torch intra-op threads (None: leave the count as it is);
    the previous count is restored afterwards. Yields the count in force."""
    before = torch.get_num_threads()
    if threads is None:
        yield before
        return
    torch.set_num_threads(int(threads))
    try:
        yield int(threads)
    finally:
        torch.set_num_threads(before)
