"""The addendum's deployment pieces: the shrunk model exported to ONNX (verified) and timed in
onnxruntime beside the torch models, and — when a budget chose the channels — its predicted
and measured ratios (its latency-vs-FLOPs figure is
:func:`alphaprune.report.plots.plot_latency_vs_flops`, also importable from here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from alphaprune.report.plots import plot_latency_vs_flops

__all__ = [
    "EXPORTED",
    "add_exported",
    "budget_record",
    "budget_table",
    "exported_model",
    "plot_latency_vs_flops",
]

#: The addendum's row of the exported model.
EXPORTED = "exported (onnxruntime)"


def exported_model(shrunk: nn.Module, settings: Any, folder: str | Path = "models") -> nn.Module:
    """``shrunk`` exported to ``<folder>/shrunk.onnx`` (verified against it, with its record
    beside it) and opened in onnxruntime with torch's thread count, as a module the benchmark
    times; it counts as ``shrunk`` (params, FLOPs)."""
    from alphaprune.core.runtimes import OrtModule, ort_session
    from alphaprune.engine.export import export

    side = settings.image_size
    example = torch.zeros(settings.batch_size, 3, side, side)
    path = Path(folder) / "shrunk.onnx"
    export(shrunk, example, path, format="onnx")
    session = ort_session(path, threads=torch.get_num_threads())
    return OrtModule(session, counted_as=shrunk)


def add_exported(models: dict[str, nn.Module], settings: Any) -> None:
    """Add the :data:`EXPORTED` row to ``models`` (after ``"shrunk"``) when ``settings.exported``
    asks for it and the addendum runs on the CPU with onnxruntime installed; else say why not."""
    from alphaprune.core.runtimes import require_onnx
    from alphaprune.errors import UserError

    if not settings.exported:
        return
    device = settings.device
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        print("note: no exported row on a GPU (onnxruntime runs on the CPU here)")
        return
    try:
        require_onnx("the exported row")
    except UserError as exc:
        print(f"note: no exported row: {exc}")
        return
    models[EXPORTED] = exported_model(models["shrunk"], settings)


def budget_record(checkpoint: str | Path) -> dict[str, Any] | None:
    """The budget report saved in the run folder of ``checkpoint`` (``budget.json``, written
    when ``pruning.budget`` chose the channels), or None."""
    from alphaprune.engine.train import BUDGET_FILE

    path = Path(checkpoint).parent.parent / BUDGET_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def budget_table(record: dict[str, Any], bench: pd.DataFrame) -> pd.DataFrame:
    """One row: the budget, the ratio it predicted, the ratio measured when it chose (with its
    conditions), and the shrunk model's latency and FLOPs ratios in the addendum's benchmark."""
    rows = bench.set_index("model")
    conditions = record.get("conditions") or {}
    sizes = ", ".join("×".join(map(str, s)) for s in conditions.get("input_size", []))
    where = (
        f"{conditions.get('device')} ({conditions.get('device_name')}), "
        f"{conditions.get('runtime')}, {conditions.get('threads')} thread(s), input {sizes}"
        if conditions
        else ""
    )
    return pd.DataFrame(
        [
            {
                "budget": f"{record['kind']} {record['target']:g}",
                "predicted_ratio": record["predicted"],
                "measured_ratio_at_pruning": record.get("measured"),
                "measured_at_pruning_on": where,
                "latency_ratio_here": float(rows.loc["shrunk", "latency_ratio"]),
                "flops_ratio": float(rows.loc["shrunk", "flops_ratio"]),
            }
        ]
    )
