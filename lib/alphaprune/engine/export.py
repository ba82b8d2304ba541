"""Export a pruned model for deployment — ONNX, ``torch.export`` (``.pt2``) or TorchScript — and
verify the artefact against the torch model before anything vouches for it.

:func:`export`:

1. a gated model is shrunk at α = 0 (a model at another α is refused unless ``allow_alpha``;
   then its gates are folded into the weights and nothing is cut);
2. the model is exported to a temp file beside the target, with a dynamic batch axis by default;
3. the artefact is loaded as it will be deployed (onnxruntime, ``torch.export.load``,
   ``torch.jit.load``) and run on fresh random inputs of another batch size; the largest
   difference to the torch model, relative to the output's largest magnitude, must be within
   ``tolerance`` — else a :class:`ModelExportError` and nothing at the target path;
4. only then does the artefact replace the target, and a record ``<artefact>.json`` (source
   checkpoint, fingerprint, α, params, FLOPs, opset, the verification) is written beside it.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from alphaprune.atomic import atomic_target, atomic_write_text
from alphaprune.core.gates import gates, get_alpha
from alphaprune.core.runtimes import OrtModule, onnx_bytes, ort_session, require_onnx
from alphaprune.core.shrink import count, shrink
from alphaprune.engine.checkpoint import LoadedModel
from alphaprune.errors import ModelExportError, PruningError, UserError

__all__ = ["FORMATS", "ExportResult", "deployable", "export", "load_exported", "record_path"]

#: Export formats and the file ending of each.
FORMATS: dict[str, str] = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": ".torchscript.pt"}
_STATIC = (
    "if the model's forward fixes the batch size, export with a static batch "
    "(dynamic_batch=False, CLI --static-batch)"
)
#: How each format is loaded to verify it (and deployed).
LOADERS = {"onnx": "onnxruntime", "pt2": "torch.export.load", "torchscript": "torch.jit.load"}


@dataclass
class ExportResult:
    """Where the verified artefact and its record lie, and the record itself."""

    path: Path
    record_path: Path
    record: dict[str, Any]

    def __str__(self) -> str:
        check = self.record["verification"]
        return (
            f"exported {self.record['format']} to {self.path} (verified with {check['runtime']} "
            f"on inputs {check['inputs']}: max rel diff {check['max_rel_diff']:.3g} <= "
            f"{check['tolerance']:g}); record {self.record_path}"
        )


def record_path(artefact: str | Path) -> Path:
    """The JSON record beside an artefact: ``<artefact>.json``."""
    artefact = Path(artefact)
    return artefact.with_name(artefact.name + ".json")


def _check_format(format: str) -> str:
    if format not in FORMATS:
        raise UserError(f"export format must be one of {sorted(FORMATS)}, got {format!r}")
    if format == "onnx":
        require_onnx("export format 'onnx'")
    return format


def _as_tuple(example_inputs: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
    inputs = (example_inputs,) if isinstance(example_inputs, Tensor) else tuple(example_inputs)
    if not inputs or not all(isinstance(x, Tensor) for x in inputs):
        raise UserError("example_inputs must be a tensor or a sequence of tensors")
    return tuple(x.detach().cpu() for x in inputs)


def deployable(
    model: nn.Module | LoadedModel,
    example_inputs: Tensor | Sequence[Tensor],
    allow_alpha: bool = False,
) -> tuple[nn.Module, float | None]:
    """The model to deploy and its α: a gated model shrunk (at α = 0; at another α only with
    ``allow_alpha``, folded), an ungated one copied as it is (its α: the one its checkpoint
    stored, for a :class:`LoadedModel`, else None); in eval mode on the CPU."""
    stored = model.alpha if isinstance(model, LoadedModel) else None
    model = model.model if isinstance(model, LoadedModel) else model
    if not gates(model):
        return copy.deepcopy(model).cpu().eval(), stored
    alpha = float(get_alpha(model))
    if alpha != 0.0 and not allow_alpha:
        raise PruningError(
            f"the model's gates are at α={alpha:g}, so shrinking removes nothing and the export "
            "would compute the α-scaled model: set α to 0 first (ap.set_alpha(model, 0)), or "
            "pass allow_alpha=True (CLI: --allow-alpha) to export it at this α on purpose"
        )
    small = shrink(model, example_inputs=_as_tuple(example_inputs))
    return small.cpu().eval(), alpha


def _batched(inputs: tuple[Tensor, ...], batch: int, seed: int | None) -> tuple[Tensor, ...]:
    """``inputs`` with ``batch`` rows: random normal values (seeded) for float inputs, the first
    row repeated for others (None seed: repeated for all)."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    out = []
    for x in inputs:
        shape = (batch, *x.shape[1:])
        if generator is not None and x.is_floating_point():
            out.append(torch.randn(shape, generator=generator, dtype=x.dtype))
        else:
            out.append(x[:1].expand(shape).clone())
    return tuple(out)


def _write(format: str, model: nn.Module, inputs, path: Path, dynamic_batch: bool, opset) -> None:
    """Export ``model`` in ``format`` to ``path``; a ModelExportError naming the cause."""
    if format == "onnx":
        path.write_bytes(onnx_bytes(model, inputs, dynamic_batch=dynamic_batch, opset=opset))
        return
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit's, on every call
            if format == "pt2":
                shapes = tuple({0: torch.export.Dim.DYNAMIC} for _ in inputs)
                program = torch.export.export(
                    model, inputs, dynamic_shapes=shapes if dynamic_batch else None
                )
                torch.export.save(program, path)
            else:
                traced = torch.jit.trace(model, inputs, check_trace=False)
                torch.jit.save(traced, str(path))
    except Exception as exc:  # noqa: BLE001 - the exporters raise anything; the model is the cause
        reason = " ".join(str(exc).split())[:300]
        raise ModelExportError(
            f"{format} export of {type(model).__name__} failed: {type(exc).__name__}: {reason}"
        ) from None


def load_exported(format: str, path: str | Path) -> nn.Module:
    """The artefact at ``path`` loaded as it is deployed, callable like the torch model."""
    if format == "onnx":
        return OrtModule(ort_session(Path(path)))
    if format == "pt2":
        return torch.export.load(str(path)).module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu")


def _flat(output: Any) -> list[Tensor]:
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, Mapping):
        return [t for v in output.values() for t in _flat(v)]
    if isinstance(output, (list, tuple)):
        return [t for v in output for t in _flat(v)]
    return []


def verify_artefact(
    format: str,
    path: Path,
    model: nn.Module,
    inputs: tuple[Tensor, ...],
    batch: int,
    tolerance: float,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the artefact and ``model`` on fresh inputs of ``batch`` rows; the differences, or a
    :class:`ModelExportError` when they exceed ``tolerance`` (relative to the output scale)."""
    fresh = _batched(inputs, batch, seed)
    with torch.no_grad():
        expected = _flat(model(*fresh))
        try:
            got = _flat(load_exported(format, path)(*fresh))
        except Exception as exc:  # noqa: BLE001 - whatever the runtime raises, the artefact fails
            reason = " ".join(str(exc).split())[:300]
            raise ModelExportError(
                f"the exported {format} model fails on inputs of batch {batch} "
                f"({type(exc).__name__}: {reason}); {_STATIC}"
            ) from None
    shapes = [list(x.shape) for x in fresh]
    if [t.shape for t in got] != [t.shape for t in expected]:
        raise ModelExportError(
            f"the exported {format} model returns shapes {[list(t.shape) for t in got]}, the "
            f"torch model {[list(t.shape) for t in expected]} (inputs {shapes})"
        )
    worst_abs = worst_rel = 0.0
    for ref, out in zip(expected, got, strict=True):
        if not ref.numel():
            continue
        diff = float((ref.float() - out.float()).abs().max())
        scale = float(ref.float().abs().max())
        worst_abs = max(worst_abs, diff)
        worst_rel = max(worst_rel, diff / scale if scale > 0 else diff)
    if not worst_rel <= tolerance:
        raise ModelExportError(
            f"the exported {format} model differs from the torch model: max rel diff "
            f"{worst_rel:.3g} > tolerance {tolerance:g} (max abs diff {worst_abs:.3g}) on fresh "
            f"inputs {shapes}; nothing was written"
        )
    return {
        "runtime": _runtime_version(format),
        "inputs": shapes,
        "max_abs_diff": worst_abs,
        "max_rel_diff": worst_rel,
        "tolerance": tolerance,
        "passed": True,
    }


def _runtime_version(format: str) -> str:
    if format == "onnx":
        return f"onnxruntime {require_onnx().__version__}"
    return f"{LOADERS[format]} (torch {torch.__version__})"


def _opset(format: str, path: Path) -> int | None:
    if format != "onnx":
        return None
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _counts(model: nn.Module, inputs: tuple[Tensor, ...]) -> dict[str, int | None]:
    if len(inputs) == 1:
        return count(model, tuple(inputs[0].shape))
    return {"params": sum(p.numel() for p in model.parameters()), "flops": None}


# long: the four steps of the module docstring, in order, with the record at the end
def export(
    model: nn.Module | LoadedModel,
    example_inputs: Tensor | Sequence[Tensor],
    path: str | Path,
    format: str = "onnx",
    *,
    dynamic_batch: bool = True,
    opset: int | None = None,
    allow_alpha: bool = False,
    tolerance: float = 1e-5,
    seed: int = 0,
    source: str | None = None,
    fingerprint: str | None = None,
    verbose: bool = True,
) -> ExportResult:
    """Shrink ``model`` at α = 0, export it to ``path`` in ``format`` and verify the artefact.

    Args:
        model: a gated model at α = 0 (shrunk first), or an ungated model (exported as it is);
            or a :class:`~alphaprune.engine.checkpoint.LoadedModel` (``ap.load_checkpoint``),
            whose path and stored α the record names.
        example_inputs: inputs of the size the model is deployed at (batch included).
        path: the artefact; its record is written to ``<path>.json``.
        format: ``"onnx"`` (``torch.onnx.export(dynamo=True)``, checked in onnxruntime; needs
            the ``deploy`` extra), ``"pt2"`` (``torch.export``, checked with
            ``torch.export.load``) or ``"torchscript"`` (``torch.jit.trace``, checked with
            ``torch.jit.load``).
        dynamic_batch: a symbolic batch axis (verified on a batch other than the example's).
        opset: ONNX opset (default: the exporter's).
        allow_alpha: export a gated model at α != 0 (its gates folded, nothing cut).
        tolerance: largest allowed ``max|torch − artefact| / max|torch|`` on fresh inputs.
        source, fingerprint: recorded in the JSON (the checkpoint and run it came from).

    Raises:
        ModelExportError: the model cannot be exported, or the artefact computes something else.
        PruningError: the gates are not at α = 0 and ``allow_alpha`` is False.
    """
    format = _check_format(format)
    if isinstance(tolerance, bool) or not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise UserError(f"tolerance must be a number > 0, got {tolerance!r}")
    inputs = _as_tuple(example_inputs)
    small, alpha = deployable(model, inputs, allow_alpha)
    batch = int(inputs[0].shape[0])
    # torch.export specialises a size-1 axis: export a batch of 2 when the batch is dynamic
    export_inputs = _batched(inputs, max(batch, 2), None) if dynamic_batch else inputs
    path = Path(path)
    with atomic_target(path, suffix=".tmp" + FORMATS[format]) as tmp:
        try:
            _write(format, small, export_inputs, tmp, dynamic_batch, opset)
        except ModelExportError as exc:
            if not dynamic_batch:
                raise
            raise ModelExportError(
                f"{exc} (exported at batch {max(batch, 2)}; {_STATIC})"
            ) from None
        check_batch = max(batch, 2) + 1 if dynamic_batch else batch
        verification = verify_artefact(format, tmp, small, inputs, check_batch, tolerance, seed)
        opset_used, digest, size = _opset(format, tmp), _sha256(tmp), tmp.stat().st_size
    from alphaprune.version import __version__

    counts = _counts(small, inputs)
    record = {
        "format": format,
        "file": path.name,
        "bytes": size,
        "sha256": digest,
        "source": source or (str(model.path) if isinstance(model, LoadedModel) else None),
        "fingerprint": fingerprint,
        "alpha": alpha,
        "params": counts["params"],
        "flops": counts["flops"],
        "example_input_size": [list(x.shape) for x in inputs],
        "dynamic_batch": dynamic_batch,
        "opset": opset_used,
        "verification": verification,
        "torch": torch.__version__,
        "alphaprune": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    records = record_path(path)
    atomic_write_text(records, json.dumps(record, indent=2) + "\n")
    result = ExportResult(path, records, record)
    if verbose:
        print(result)
    return result
