"""ONNX export of an original and a pruned model, timed side by side in onnxruntime (one thread).

Export: ``torch.onnx.export`` at opset 17 with a dynamic batch axis, by the TorchScript exporter
(seconds; the dynamo exporter takes several times longer) and by the dynamo exporter where that
fails (e.g. an adaptive pooling 4 → 7, VGG's and AlexNet's: the dynamo exporter then keeps its
own opset 18 when it cannot convert to 17). The exporter and the opset go into the row. Timing: batch 1, both sessions in turns whose order rotates every round
(``alphaprune.bench.timing.rotation``), so that the load of a shared machine hits both alike.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from alphaprune.bench.timing import Tally, rotation, timed_calls

OPSET = 17
#: Seconds of timed calls per model pair, and the least and most calls per model.
BUDGET_S, MIN_CALLS, MAX_CALLS = 4.0, 5, 50


def export(model: nn.Module, inputs: tuple[Tensor, ...], path: Path) -> str:
    """``model`` as ONNX at ``path`` with a dynamic batch axis; which exporter did it."""
    names = [f"input{i}" for i in range(len(inputs))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model,
                inputs,
                str(path),
                dynamo=False,
                opset_version=OPSET,
                input_names=names,
                output_names=["output"],
                dynamic_axes={n: {0: "batch"} for n in [*names, "output"]},
            )
            return "torchscript"
        except Exception:  # noqa: BLE001 - the TorchScript exporter misses some ops: try dynamo
            batch = torch.export.Dim("batch")
            torch.onnx.export(
                model,
                inputs,
                str(path),
                dynamo=True,
                opset_version=OPSET,
                input_names=names,
                dynamic_shapes=[{0: batch} for _ in inputs],
            )
            return "dynamo"


def opset(path: Path) -> int:
    """The default-domain opset of the ONNX file at ``path``."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_latency(
    prefix: str, original: nn.Module, pruned: nn.Module, inputs: tuple[Tensor, ...]
) -> dict:
    """``{prefix}_onnx_*`` columns: median ms of the original and the pruned model, their ratio,
    the exporter, and the largest deviation of onnxruntime's output from torch's (relative to
    the output's largest magnitude)."""
    arrays = [t.numpy() for t in inputs]
    with tempfile.TemporaryDirectory() as tmp:
        models = {"original": original, "pruned": pruned}
        exporters = {
            n: f"{export(m, inputs, Path(tmp) / f'{n}.onnx')} opset {opset(Path(tmp) / f'{n}.onnx')}"
            for n, m in models.items()
        }
        sessions = {n: session(Path(tmp) / f"{n}.onnx") for n in models}
        feeds = {
            n: dict(zip([i.name for i in s.get_inputs()], arrays, strict=True))
            for n, s in sessions.items()
        }
        (got,) = sessions["pruned"].run(None, feeds["pruned"])
        with torch.no_grad():
            want = pruned(*inputs).numpy()
        tallies = _interleaved(sessions, feeds)
    ms = {n: float(np.median(t.times_ms)) for n, t in tallies.items()}
    return {
        f"{prefix}_onnx_ms_original": round(ms["original"], 3),
        f"{prefix}_onnx_ms": round(ms["pruned"], 3),
        f"{prefix}_onnx_latency_ratio": round(ms["pruned"] / ms["original"], 3),
        f"{prefix}_onnx_calls": len(tallies["pruned"].times_ms),
        f"{prefix}_onnx_exporter": "/".join(sorted(set(exporters.values()))),
        f"{prefix}_onnx_rel_diff": float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12)),
    }


def _interleaved(sessions: dict, feeds: dict) -> dict[str, Tally]:
    cpu = torch.device("cpu")
    calls = {n: (lambda s=s, f=feeds[n]: s.run(None, f)) for n, s in sessions.items()}
    warm = {n: min(timed_calls(fn, 2, cpu)) for n, fn in calls.items()}
    repeats = math.ceil(BUDGET_S * 1e3 / max(sum(warm.values()), 1e-3))
    repeats = max(MIN_CALLS, min(MAX_CALLS, repeats))
    tallies = {n: Tally(n) for n in sessions}
    for name, n in rotation(list(sessions), repeats, 1):
        tallies[name].times_ms += timed_calls(calls[name], n, cpu)
    return tallies
