"""How a module runs where it is deployed — eager torch or onnxruntime, on CPU or CUDA — and how
calls are timed there.

The latency budget (:mod:`alphaprune.core.latency`) times layers and whole models through
:func:`runner` and :func:`time_interleaved`; the export check (:mod:`alphaprune.engine.export`)
and the benchmark's exported-model row run ONNX artefacts through :class:`OrtModule`.

Timing follows the benchmark's rules (:mod:`alphaprune.bench.timing`): candidates take turns
round by round with the order rotated, so drift and other load hit all of them alike; a turn is a
block of calls long enough for the clock; the median over rounds is kept.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from alphaprune.errors import ModelExportError, UserError

__all__ = [
    "RUNTIMES",
    "OrtModule",
    "cpu_model",
    "device_name",
    "onnx_bytes",
    "ort_session",
    "require_onnx",
    "runner",
    "time_interleaved",
    "time_rounds",
    "torch_threads",
]

#: Where a model can be timed: the eager torch model, or its ONNX export in onnxruntime.
RUNTIMES = ("torch", "onnxruntime")

#: A factory that returns the call to time (it may make a fresh input first, outside the clock).
Preparer = Callable[[], Callable[[], Any]]


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


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` intra-op threads (None: as they are); yields the count."""
    before = torch.get_num_threads()
    if threads is not None and threads != before:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


# -- onnxruntime ---------------------------------------------------------------------------------


def require_onnx(what: str = "ONNX") -> Any:
    """``onnxruntime``, imported; a :class:`UserError` naming the extra to install without it."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as exc:
        raise UserError(
            f"{what} needs the packages onnx and onnxruntime ({exc}): "
            "pip install 'alphaprune[deploy]'"
        ) from None
    return onnxruntime


def _quiet_exporter() -> contextlib.ExitStack:
    """Silence the ONNX exporters' deprecation warnings and log lines (not their errors)."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript"):
        logger = logging.getLogger(name)
        stack.callback(logger.setLevel, logger.level)
        logger.setLevel(logging.ERROR)
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    return stack


def onnx_bytes(
    module: nn.Module,
    inputs: Sequence[Tensor],
    dynamic_batch: bool = False,
    opset: int | None = None,
    exporter: str = "dynamo",
) -> bytes:
    """``module`` exported to an ONNX model (serialised), in eval mode on the CPU.

    ``exporter="dynamo"`` is ``torch.onnx.export(dynamo=True)`` (``torch.export`` underneath,
    the supported path); ``"legacy"`` is the TorchScript-based exporter, about 100× faster per
    call, which the latency tables use to time many small layers. ``dynamic_batch`` makes the
    first axis of every input (and output) symbolic. A failure is a :class:`ModelExportError`.
    """
    require_onnx()
    inputs = tuple(inputs)
    names = [f"input_{i}" for i in range(len(inputs))] if len(inputs) > 1 else ["input"]
    try:
        with _quiet_exporter(), torch.no_grad():
            if exporter == "legacy":
                buffer = io.BytesIO()
                axes = {n: {0: "batch"} for n in names} if dynamic_batch else None
                torch.onnx.export(
                    module,
                    inputs,
                    buffer,
                    dynamo=False,
                    input_names=names,
                    dynamic_axes=axes,
                    opset_version=opset,
                )
                return buffer.getvalue()
            batch = torch.export.Dim.DYNAMIC if dynamic_batch else None
            shapes = tuple({0: batch} for _ in inputs) if dynamic_batch else None
            program = torch.onnx.export(
                module,
                inputs,
                dynamo=True,
                input_names=names,
                dynamic_shapes=shapes,
                opset_version=opset,
                verbose=False,
            )
            return program.model_proto.SerializeToString()
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - the exporters raise anything; the model is the cause
        reason = " ".join(str(exc).split())[:300]
        raise ModelExportError(
            f"ONNX export ({exporter} exporter) of {type(module).__name__} failed: "
            f"{type(exc).__name__}: {reason}"
        ) from None


def ort_session(model: bytes | str | Path, threads: int | None = None, device: Any = "cpu") -> Any:
    """An onnxruntime ``InferenceSession`` of ``model`` (serialised bytes or a file) with
    ``threads`` intra-op threads (None: onnxruntime's default), on the CPU or CUDA provider."""
    ort = require_onnx("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if torch.device(device).type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UserError(
                "runtime 'onnxruntime' on a CUDA device needs onnxruntime-gpu "
                f"(available providers: {ort.get_available_providers()})"
            )
        providers = ["CUDAExecutionProvider"]
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=providers)


class OrtModule(nn.Module):
    """An onnxruntime session used like a module: CPU tensors in, tensors out.

    ``counted_as`` is the torch model it was exported from: the benchmark counts that model's
    parameters and FLOPs for this row (the session has no torch parameters to count). A deep copy
    is the same object (a session cannot be copied and is never changed).
    """

    def __init__(self, session: Any, counted_as: nn.Module | None = None) -> None:
        super().__init__()
        self.session = session
        self._names = [i.name for i in session.get_inputs()]
        self.__dict__["counted_as"] = counted_as  # not a submodule: no parameters of its own

    def forward(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        feeds = {
            name: x.detach().cpu().numpy() for name, x in zip(self._names, inputs, strict=True)
        }
        outputs = [torch.as_tensor(y) for y in self.session.run(None, feeds)]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def __deepcopy__(self, memo: dict) -> OrtModule:
        return self


# -- timing --------------------------------------------------------------------------------------


def runner(
    module: nn.Module,
    inputs: Sequence[Tensor],
    runtime: str = "torch",
    device: torch.device | str = "cpu",
    threads: int | None = None,
) -> Callable[[], Any]:
    """A no-argument call of one forward of ``module`` on ``inputs`` in ``runtime`` on ``device``.

    ``"torch"``: the module as it is (moved to ``device``; call it under ``inference_mode``);
    ``"onnxruntime"``: its ONNX export (static shapes of ``inputs``) in a session with
    ``threads`` threads. ``inputs`` are moved to ``device`` (kept as numpy for onnxruntime).
    """
    device = torch.device(device)
    if runtime == "torch":
        net = module.to(device).eval()
        xs = tuple(x.to(device) for x in inputs)
        return lambda: net(*xs)
    if runtime == "onnxruntime":
        data = onnx_bytes(module.cpu().eval(), [x.cpu() for x in inputs], exporter="legacy")
        session = ort_session(data, threads, device)
        feeds = {
            i.name: x.detach().cpu().numpy()
            for i, x in zip(session.get_inputs(), inputs, strict=True)
        }
        return lambda: session.run(None, feeds)
    raise UserError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")


def _block_ms(call: Callable[[], Any], calls: int, device: torch.device) -> float:
    """Milliseconds for ``calls`` consecutive calls (CUDA: between synchronised events)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        for _ in range(calls):
            call()
        end.record()
        torch.cuda.synchronize(device)
        return float(start.elapsed_time(end))
    t0 = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - t0) * 1e3


def time_rounds(
    preparers: Mapping[Hashable, Preparer],
    rounds: int = 5,
    device: torch.device | str = "cpu",
    min_block_ms: float = 2.0,
    max_block: int = 200,
    progress: bool = False,
    desc: str = "timing",
) -> dict[Hashable, list[float]]:
    """Milliseconds per call of each candidate in every round, timed in interleaved rounds.

    ``preparers[key]()`` returns the call to time (it may first make that call's input, outside
    the clock). One untimed call each warms up and sizes a block: as many calls as fill
    ``min_block_ms`` (at most ``max_block``). Then ``rounds`` rounds time one block of every
    candidate, the order rotating each round. Runs under ``torch.inference_mode``.
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    keys = list(preparers)
    times: dict[Hashable, list[float]] = {key: [] for key in keys}
    bar = tqdm(total=len(keys) * (rounds + 1), desc=desc, unit="call", disable=not progress)
    with bar, torch.inference_mode():
        blocks = {}
        for key in keys:
            call = preparers[key]()
            call()  # first call: lazy initialisation, allocator
            once = _block_ms(call, 1, device)
            blocks[key] = max(1, min(max_block, math.ceil(min_block_ms / max(once, 1e-3))))
            bar.update()
        for r in range(rounds):
            shift = r % len(keys)
            for key in keys[shift:] + keys[:shift]:
                call = preparers[key]()
                times[key].append(_block_ms(call, blocks[key], device) / blocks[key])
                bar.update()
    return times


def time_interleaved(
    preparers: Mapping[Hashable, Preparer], rounds: int = 5, **kwargs: Any
) -> dict[Hashable, float]:
    """The median milliseconds per call of each candidate over :func:`time_rounds`."""
    times = time_rounds(preparers, rounds, **kwargs)
    return {key: float(statistics.median(values)) for key, values in times.items()}
