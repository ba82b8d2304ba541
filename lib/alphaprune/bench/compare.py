"""Original, masked, shrunk and peer models benchmarked in one interleaved run.

Masking channels (gates at α = 0) leaves every tensor its full size, so a masked model is no
faster than the original; only :func:`alphaprune.core.shrink` makes one smaller.
:func:`compare_pruned` measures exactly that, side by side and interleaved, optionally next to
``torch_pruning``'s model with the same kept channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from torch import nn

from alphaprune.bench.inference import benchmark
from alphaprune.bench.models import standard_models

__all__ = ["compare_pruned"]

ROWS = ("masked", "shrunk", "torch-pruning")


def compare_pruned(
    original: nn.Module,
    keep: float | Sequence[float] = 0.5,
    target: str = "both",
    criterion: str = "l1",
    torch_pruning: bool | str = "auto",
    rows: Sequence[str] = ROWS,
    **bench_kwargs: Any,
) -> pd.DataFrame:
    """Benchmark :func:`standard_models` at one or several ``keep`` fractions in one interleaved run.

    The table starts with the ``"original"`` row (the reference of every ratio) and then, for each
    ``keep`` in order, the ``rows`` asked for (``"masked"``, ``"shrunk"``, ``"torch-pruning"``;
    the last only when ``torch_pruning`` allows it). ``bench_kwargs`` go to :func:`~alphaprune.bench.inference.benchmark`
    (``batch_size``, ``image_size``, ``device``, ``repeats``, …). Columns: ``model``, ``keep``
    (1.0 on the original), ``target``, then :data:`~alphaprune.bench.inference.BENCH_COLUMNS` after ``model``.
    """
    keeps = [keep] if isinstance(keep, (int, float)) else list(keep)
    if not keeps:
        raise ValueError("keep must be a fraction or a non-empty list of fractions")
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        raise ValueError(f"rows {unknown} unknown; choose from 'masked', 'shrunk', 'torch-pruning'")
    models: dict[str, nn.Module] = {"original": original}
    labels: dict[str, tuple[str, float]] = {"original": ("original", 1.0)}
    wants_tp = torch_pruning if "torch-pruning" in rows else False
    for fraction in keeps:
        built = standard_models(original, fraction, target, criterion, wants_tp)
        # "auto" found no torch_pruning: don't look (and print the note) again for every keep
        wants_tp = False if "torch-pruning" not in built and wants_tp == "auto" else wants_tp
        for name in rows:
            if name in built:
                key = f"{name}@keep={fraction:g}"
                models[key] = built[name]
                labels[key] = (name, float(fraction))
    table = benchmark(models, reference="original", **bench_kwargs)
    table.insert(1, "keep", [labels[key][1] for key in table["model"]])
    table.insert(2, "target", target)
    table["model"] = [labels[key][0] for key in table["model"]]
    return table
