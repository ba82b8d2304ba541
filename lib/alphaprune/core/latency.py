"""Latency on the target device as a pruning budget: per-layer tables, a fitted and calibrated
cost model, and measured pruned candidates (used by :mod:`alphaprune.core.budget`).

How a model's latency is predicted (NetAdapt/HALP-style; docs/deploy.md has the details):

1. **Tables.** Every mixing layer (convolution, transposed convolution, linear) is timed alone,
   in the input shape it really gets when the model runs on the latency input, at a few widths of
   its input and output channels (four to six), in the runtime (eager torch or onnxruntime) and
   thread count of the deployment: candidates interleaved round by round, medians. Timings are
   cached on disk (:func:`cache_dir`) by device name, torch version, runtime, threads, layer and
   input shape, so the next call times nothing it has timed before.
2. **Fit.** Per layer, ``t(cin, cout) = a + b·cin + c·cout + d·cin·cout`` with non-negative
   coefficients (a grouped or depthwise layer's coupled channels: ``a + c·cout``).
3. **Calibration.** A model is not the sum of its layers timed alone: activations, norms,
   pooling and copies between them scale with the channels too, layers inside a model meet
   other cache states, and the framework adds a constant. So the whole model is timed at full
   width and at two uniform widths (anchors, one interleaved run), and
   ``T = s·Σ t_layer + e·V + c`` (``s, e, c >= 0``) is fitted through them, ``V`` being the
   number of activation elements the mixing layers produce.

:func:`measure_pruned` times pruned copies of the model (cut on a copy, as
:func:`alphaprune.core.shrink.shrink` cuts) against the original in one interleaved run.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import statistics
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from itertools import combinations
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from alphaprune.atomic import atomic_write_text
from alphaprune.core.graph import ChannelGraph, LayerChannels
from alphaprune.core.layer_rules import LinearRule, MixingRule
from alphaprune.core.modes import eval_mode
from alphaprune.core.runtimes import (
    RUNTIMES,
    Preparer,
    device_name,
    require_onnx,
    runner,
    time_interleaved,
    time_rounds,
    torch_threads,
)
from alphaprune.errors import PruningError

__all__ = [
    "CACHE_ENV",
    "LayerFit",
    "LatencyModel",
    "LatencyOptions",
    "cache_dir",
    "build_latency_model",
    "check_latency_options",
    "kept_channels",
    "measure_pruned",
    "measure_ratio",
    "nonnegative_fit",
    "pruned_copy",
]

#: Environment variable naming the cache folder (default ``~/.cache/alphaprune``).
CACHE_ENV = "ALPHAPRUNE_CACHE"
TABLE_FORMAT = "alphaprune-latency-table/1"
#: Widths (fractions of input, output channels) a layer is timed at when both sides are pruned.
BOTH_SIDES = ((1.0, 1.0), (0.5, 1.0), (1.0, 0.5), (0.5, 0.5), (0.75, 0.75), (0.25, 0.25))
#: Widths of the one pruned side (or of a grouped layer's coupled blocks).
ONE_SIDE = (1.0, 0.75, 0.5, 0.25)
#: Uniform keep fractions of the calibration anchors (with the full model).
ANCHORS = (0.75, 0.55, 0.35)
#: The range a calibration's layer scale may take (in-model over isolated layer time).
SCALE_RANGE = (0.5, 2.0)


@dataclass(frozen=True)
class LatencyOptions:
    """Where and how latency is measured for ``budget={"latency": r}``.

    ``device``: the target (``"cpu"``, ``"cuda"``, ``"cuda:1"``). ``runtime``: ``"torch"`` (the
    eager model) or ``"onnxruntime"`` (its ONNX export; needs the ``deploy`` extra).
    ``threads``: intra-op threads while timing (None: ``torch.get_num_threads()`` now).
    ``input_size``: the input shape latency is meant for, e.g. ``(8, 3, 128, 128)`` (None: the
    example inputs). ``rounds``: interleaved rounds per timing (medians). ``measure``: time the
    chosen pruned model and correct the choice when the measured ratio misses the target by more
    than ``tolerance`` (at most ``attempts`` candidates). ``cache``: read and write the on-disk
    tables (``cache_dir`` overrides :func:`cache_dir`). ``progress``: show timing bars.
    """

    device: str = "cpu"
    runtime: str = "torch"
    threads: int | None = None
    input_size: tuple[int, ...] | None = None
    rounds: int = 5
    measure: bool = True
    tolerance: float = 0.02
    attempts: int = 4
    cache: bool = True
    cache_dir: str | None = None
    progress: bool = True


def _positive_int(key: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PruningError(f"latency option '{key}' must be an integer >= 1, got {value!r}")


def check_latency_options(
    options: LatencyOptions | Mapping[str, Any] | None, device: Any = None
) -> LatencyOptions:
    """``options`` (a dict of :class:`LatencyOptions` fields) checked; ``device`` fills
    ``device`` (None: the CPU). A :class:`PruningError` names a bad key or value."""
    if isinstance(options, LatencyOptions):
        values = asdict(options)
    else:
        values = dict(options or {})
        known = {f.name for f in fields(LatencyOptions)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise PruningError(f"unknown latency option(s) {unknown}; known: {sorted(known)}")
    values["device"] = _check_device(device if device is not None else values.get("device", "cpu"))
    if values.get("runtime", "torch") not in RUNTIMES:
        raise PruningError(f"latency runtime must be one of {RUNTIMES}, got {values['runtime']!r}")
    _positive_int("threads", values.get("threads"), allow_none=True)
    _positive_int("rounds", values.get("rounds", 5))
    _positive_int("attempts", values.get("attempts", 4))
    size = values.get("input_size")
    if size is not None:
        if not isinstance(size, Sequence) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size
        ):
            raise PruningError(f"latency input_size must be positive integers, got {size!r}")
        values["input_size"] = tuple(size)
    tolerance = values.get("tolerance", 0.02)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance <= 0:
        raise PruningError(f"latency tolerance must be a number > 0, got {tolerance!r}")
    if values.get("runtime") == "onnxruntime":
        require_onnx("runtime 'onnxruntime'")
    return LatencyOptions(**values)


def _check_device(device: Any) -> str:
    try:
        value = torch.device(device)
    except (RuntimeError, TypeError):
        raise PruningError(f"latency device {device!r} is not a device") from None
    if value.type == "cuda" and not torch.cuda.is_available():
        raise PruningError(f"latency device '{value}' asked for, but CUDA is not available")
    if value.type not in ("cpu", "cuda"):
        raise PruningError(f"latency device must be a CPU or CUDA device, got '{value}'")
    return str(value)


# -- the on-disk table ---------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$ALPHAPRUNE_CACHE``, else ``$XDG_CACHE_HOME/alphaprune``, else ``~/.cache/alphaprune``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "alphaprune"


def _conditions(options: LatencyOptions, threads: int) -> dict[str, Any]:
    conditions = {
        "device_name": device_name(options.device),
        "device": options.device,
        "runtime": options.runtime,
        "torch": torch.__version__,
        "threads": threads,
    }
    if options.runtime == "onnxruntime":
        conditions["onnxruntime"] = require_onnx().__version__
    return conditions


def _table_path(options: LatencyOptions, conditions: Mapping[str, Any]) -> Path:
    runtime = conditions["runtime"] + (
        f"-{conditions['onnxruntime']}" if "onnxruntime" in conditions else ""
    )
    name = f"{conditions['device_name']}__{runtime}__torch-{conditions['torch']}__threads-{conditions['threads']}"
    root = Path(options.cache_dir).expanduser() if options.cache_dir else cache_dir()
    return root / "latency" / (re.sub(r"[^A-Za-z0-9._-]+", "_", name) + ".json")


def _read_table(path: Path) -> dict[str, float]:
    """The cached timings in ``path`` (empty when missing; a damaged file is ignored, with a note)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != TABLE_FORMAT:
            raise ValueError(f"not a {TABLE_FORMAT} file")
        return {str(k): float(v) for k, v in data["entries"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        print(f"note: ignoring the latency cache {path} ({exc}); it will be rewritten")
        return {}


def _write_table(path: Path, conditions: Mapping[str, Any], entries: Mapping[str, float]) -> None:
    merged = {**_read_table(path), **entries}  # keep what another process added meanwhile
    data = {"format": TABLE_FORMAT, "conditions": dict(conditions), "entries": merged}
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))


# -- layers, their shapes and widths -------------------------------------------------------------


@dataclass
class _Layer:
    """A mixing layer as the latency model sees it."""

    name: str
    module: nn.Module
    rule: MixingRule
    input_shape: tuple[int, ...]
    elements: float  # output elements per output channel (N·H·W) at the latency input
    vary_in: bool
    vary_out: bool

    @property
    def n_in(self) -> int:
        return self.rule.in_channels(self.module)

    @property
    def n_out(self) -> int:
        return self.rule.out_channels(self.module)

    @property
    def groups(self) -> int:
        return self.rule.groups(self.module)

    @property
    def channel_dim(self) -> int:
        return -1 if isinstance(self.rule, LinearRule) else 1

    def widths(self) -> list[tuple[int, int]]:
        """The (input, output) channel counts this layer is timed at."""
        n_in, n_out, groups = self.n_in, self.n_out, self.groups
        if groups > 1:  # whole blocks go, inputs and outputs together
            kept = [max(1, round(f * groups)) for f in ONE_SIDE] if self.vary_out else [groups]
            points = [(g * n_in // groups, g * n_out // groups) for g in kept]
        elif self.vary_in and self.vary_out:
            points = [(_count(fi, n_in), _count(fo, n_out)) for fi, fo in BOTH_SIDES]
        elif self.vary_out:
            points = [(n_in, _count(f, n_out)) for f in ONE_SIDE]
        elif self.vary_in:
            points = [(_count(f, n_in), n_out) for f in ONE_SIDE]
        else:
            points = [(n_in, n_out)]
        return list(dict.fromkeys(points))

    def resized(self, n_in: int, n_out: int) -> nn.Module:
        """A copy of the layer with its first ``n_in`` inputs and ``n_out`` outputs."""
        module = copy.deepcopy(self.module).eval()
        keep_in = torch.arange(self.n_in) < n_in
        keep_out = torch.arange(self.n_out) < n_out
        if not (keep_in.all() and keep_out.all()):
            self.rule.cut(module, keep_in, keep_out)
        return module

    def shape(self, n_in: int) -> tuple[int, ...]:
        shape = list(self.input_shape)
        shape[self.channel_dim] = n_in
        return tuple(shape)

    def key(self, n_in: int, n_out: int) -> str:
        """The cache key of one width: layer type and settings, input shape, dtype."""
        module = self.resized(n_in, n_out)
        dtype = str(next(module.parameters()).dtype).removeprefix("torch.")
        return f"{type(module).__name__}({module.extra_repr()}) x{self.shape(n_in)} {dtype}"


def _count(fraction: float, n: int) -> int:
    return max(1, round(fraction * n))


def _latency_inputs(graph: ChannelGraph, options: LatencyOptions) -> tuple[Tensor, ...]:
    """The input latency is measured for: ``options.input_size`` or the example inputs' shapes
    (random values, seeded)."""
    generator = torch.Generator().manual_seed(0)
    if options.input_size is not None:
        if len(graph.example_inputs) != 1:
            raise PruningError(
                "latency input_size is for models with one input; give example_inputs of the "
                "size latency is meant for instead"
            )
        return (torch.randn(*options.input_size, generator=generator),)
    return tuple(
        torch.randn(x.shape, generator=generator, dtype=x.dtype) if x.is_floating_point() else x
        for x in graph.example_inputs
    )


def _run_eval(model: nn.Module, inputs: Sequence[Tensor]) -> None:
    with eval_mode(model), torch.no_grad():
        model(*inputs)


def _layers(graph: ChannelGraph, prunable: set[int], inputs: Sequence[Tensor]) -> list[_Layer]:
    """Every mixing layer with its real input shape (one forward with hooks) and pruned sides."""
    shapes: dict[str, tuple[tuple[int, ...], int]] = {}  # input shape, output elements
    mixing = {n: x for n, x in graph.layers.items() if isinstance(x.rule, MixingRule)}

    def hook(name: str):
        def record(module, args, output):
            if name not in shapes and args and isinstance(output, Tensor):
                shapes[name] = (tuple(args[0].shape), output.numel())

        return record

    handles = [layer.module.register_forward_hook(hook(n)) for n, layer in mixing.items()]
    try:
        _run_eval(graph.model, inputs)
    except (RuntimeError, ValueError, TypeError) as exc:
        sizes = [list(x.shape) for x in inputs]
        raise PruningError(
            f"the model fails on the latency input {sizes} ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:200]}); give a latency input_size it accepts"
        ) from None
    finally:
        for handle in handles:
            handle.remove()
    layers = []
    for name, layer in mixing.items():
        if name not in shapes:
            continue  # not called on this input: it costs nothing here
        shape, produced = shapes[name]
        n_out = layer.rule.out_channels(layer.module)
        layers.append(
            _Layer(
                name=name,
                module=layer.module,
                rule=layer.rule,
                input_shape=shape,
                elements=produced / max(n_out, 1),
                vary_in=not prunable.isdisjoint(graph.units(layer.in_vars)),
                vary_out=not prunable.isdisjoint(graph.units(layer.out_vars)),
            )
        )
    return layers


# -- timing ---------------------------------------------------------------------------------------


def _layer_preparer(layer: _Layer, n_in: int, n_out: int, options: LatencyOptions, full: Tensor):
    """A preparer timing ``layer`` at one width: its input is a fresh contiguous slice of the
    layer's full-width input (as hot in cache as the previous layer's output would be)."""
    module = layer.resized(n_in, n_out)
    dim = layer.channel_dim

    def narrowed() -> Tensor:
        return full.narrow(dim, 0, n_in).contiguous()

    if options.runtime == "torch":
        module = module.to(options.device)

        def prepare():
            x = narrowed()
            return lambda: module(x)

        return prepare
    call = runner(module, [narrowed().cpu()], "onnxruntime", options.device, options.threads)
    return lambda: call


def _time_layers(
    layers: list[_Layer], missing: dict[str, tuple[_Layer, int, int]], options: LatencyOptions
) -> dict[str, float]:
    """Time the widths in ``missing`` (cache key → layer, inputs, outputs) in one interleaved run."""
    generator = torch.Generator().manual_seed(1)
    inputs = {}
    for layer in layers:
        if any(item[0] is layer for item in missing.values()):
            full = torch.randn(layer.input_shape, generator=generator)
            inputs[layer.name] = full.to(options.device) if options.runtime == "torch" else full
    preparers: dict[Hashable, Preparer] = {
        key: _layer_preparer(layer, n_in, n_out, options, inputs[layer.name])
        for key, (layer, n_in, n_out) in missing.items()
    }
    return time_interleaved(
        preparers,
        rounds=options.rounds,
        device=options.device if options.runtime == "torch" else "cpu",
        progress=options.progress,
        desc=f"latency table ({len(preparers)} layer widths)",
    )


# -- the cost model ------------------------------------------------------------------------------


def nonnegative_fit(features: Tensor, target: Tensor) -> list[float]:
    """Least squares ``features @ coef ≈ target`` with every coefficient >= 0 (the best of all
    active sets: for the few columns used here, exact and without an iterative solver)."""
    features, target = features.double(), target.double()
    n = features.shape[1]
    best, best_error = [0.0] * n, float((target**2).sum())
    for size in range(1, n + 1):
        for columns in combinations(range(n), size):
            cols = list(columns)
            coef = torch.linalg.lstsq(features[:, cols], target.unsqueeze(1)).solution.flatten()
            if (coef < 0).any():
                continue
            error = float(((features[:, cols] @ coef - target) ** 2).sum())
            if error < best_error * (1 - 1e-9):
                best, best_error = [0.0] * n, error
                for j, value in zip(cols, coef.tolist(), strict=True):
                    best[j] = value
    return best


@dataclass
class LayerFit:
    """``ms(cin, cout) = a + b·i + c·o + d·i·o`` with ``i, o`` the kept fractions."""

    name: str
    n_in: int
    n_out: int
    coef: tuple[float, float, float, float]
    points: dict[str, float] = field(default_factory=dict)  # "cin×cout" → measured ms

    def ms(self, kept_in: float, kept_out: float) -> float:
        a, b, c, d = self.coef
        i, o = kept_in / max(self.n_in, 1), kept_out / max(self.n_out, 1)
        return a + b * i + c * o + d * i * o


def _fit(layer: _Layer, timed: Mapping[tuple[int, int], float]) -> LayerFit:
    points = list(timed)
    i = torch.tensor([p[0] / layer.n_in for p in points], dtype=torch.float64)
    o = torch.tensor([p[1] / layer.n_out for p in points], dtype=torch.float64)
    y = torch.tensor([timed[p] for p in points], dtype=torch.float64)
    ones = torch.ones_like(y)
    if layer.groups > 1 or not layer.vary_in:
        columns = {"a": ones, "c": o}
    elif not layer.vary_out:
        columns = {"a": ones, "b": i}
    else:
        columns = {"a": ones, "b": i, "c": o, "d": i * o}
    fitted = nonnegative_fit(torch.stack(list(columns.values()), 1), y)
    coef = dict(zip(columns, fitted, strict=True))
    return LayerFit(
        layer.name,
        layer.n_in,
        layer.n_out,
        tuple(float(coef.get(k, 0.0)) for k in "abcd"),
        {f"{p[0]}x{p[1]}": float(timed[p]) for p in points},
    )


@dataclass
class LatencyModel:
    """Predicted milliseconds of the model for kept channel counts per mixing layer.

    ``predict_ms(kept) = scale·Σ fits[n].ms(kept[n]) + per_element·Σ elements[n]·kept_out[n]
    + constant``; ``calibrate`` sets the last three from measured anchors.
    """

    fits: dict[str, LayerFit]
    elements: dict[str, float]
    conditions: dict[str, Any]
    table_path: str | None
    timed: int
    cached: int
    seconds: float
    scale: float = 1.0
    per_element: float = 0.0
    constant: float = 0.0
    anchors: list[dict[str, float]] = field(default_factory=list)

    def layer_ms(self, name: str, kept_in: float, kept_out: float) -> float:
        """One layer's calibrated share: its fitted time and the element-wise work it feeds."""
        fit = self.fits[name]
        return (
            self.scale * fit.ms(kept_in, kept_out)
            + self.per_element * self.elements[name] * kept_out
        )

    def predict_ms(self, kept: Mapping[str, tuple[int, int]]) -> float:
        """Milliseconds for ``kept`` (layer → kept inputs, outputs; absent layers are whole)."""
        total = self.constant
        for name, fit in self.fits.items():
            total += self.layer_ms(name, *kept.get(name, (fit.n_in, fit.n_out)))
        return total

    def _raw(self, kept: Mapping[str, tuple[int, int]]) -> tuple[float, float]:
        """(Σ fitted layer ms, Σ produced activation elements) for ``kept``."""
        layers = elements = 0.0
        for name, fit in self.fits.items():
            n_in, n_out = kept.get(name, (fit.n_in, fit.n_out))
            layers += fit.ms(n_in, n_out)
            elements += self.elements[name] * n_out
        return layers, elements

    def calibrate(
        self, measured: Mapping[str, float], kept: Mapping[str, Mapping[str, tuple[int, int]]]
    ) -> None:
        """Fit ``scale``, ``per_element`` and ``constant`` (>= 0) to measured anchor models
        (name → ms, name → kept channels; the full model first).

        A layer timed alone and inside the model differ by cache state, not by multiples: a
        ``scale`` outside [1/2, 2] is noise fitted, so it is clamped and the other two refitted.
        """
        raw = [self._raw(kept[name]) for name in measured]
        times = torch.tensor([measured[name] for name in measured], dtype=torch.float64)
        rows = torch.tensor(
            [(layers, elements, 1.0) for layers, elements in raw], dtype=torch.float64
        )
        scale, per_element, constant = nonnegative_fit(rows, times)
        if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
            scale = min(max(scale, SCALE_RANGE[0]), SCALE_RANGE[1])
            rest = nonnegative_fit(rows[:, 1:], times - scale * rows[:, 0])
            per_element, constant = rest
        self.scale, self.per_element = float(scale), float(per_element)
        self.constant = float(constant)
        self.anchors = [
            {"model": name, "measured_ms": float(ms), "predicted_ms": self.predict_ms(kept[name])}
            for name, ms in measured.items()
        ]


def _timings(
    layers: list[_Layer], options: LatencyOptions, conditions: Mapping[str, Any]
) -> tuple[dict[tuple[str, tuple[int, int]], float], Path | None, int, int]:
    """(layer, width) → ms for every width of ``layers``, read from the cache or timed now (and
    cached); the cache file, how many distinct widths were timed and how many there are."""
    path = _table_path(options, conditions) if options.cache else None
    table = _read_table(path) if path else {}
    wanted = {(layer.name, w): layer.key(*w) for layer in layers for w in layer.widths()}
    by_name = {layer.name: layer for layer in layers}
    missing: dict[str, tuple[_Layer, int, int]] = {}
    for (name, (n_in, n_out)), key in wanted.items():
        if key not in table and key not in missing:
            missing[key] = (by_name[name], n_in, n_out)
    if missing:
        table.update(_time_layers(layers, missing, options))
        if path:
            _write_table(path, conditions, {k: table[k] for k in missing})
    timed = {point: table[key] for point, key in wanted.items()}
    return timed, path, len(missing), len(set(wanted.values()))


def build_latency_model(
    graph: ChannelGraph, prunable: set[int], options: LatencyOptions
) -> LatencyModel:
    """Time (or read from the cache) every mixing layer of ``graph.model`` at a few widths of the
    sides that hold ``prunable`` units, and fit each layer's cost; not yet calibrated."""
    began = time.perf_counter()
    inputs = _latency_inputs(graph, options)
    with torch_threads(options.threads) as threads:
        conditions = _conditions(options, threads)
        layers = _layers(graph, prunable, inputs)
        timed, path, n_timed, n_keys = _timings(layers, options, conditions)
    fits = {
        layer.name: _fit(layer, {w: timed[(layer.name, w)] for w in layer.widths()})
        for layer in layers
    }
    return LatencyModel(
        fits=fits,
        elements={layer.name: layer.elements for layer in layers},
        conditions={**conditions, "input_size": [list(x.shape) for x in inputs]},
        table_path=str(path) if path else None,
        timed=n_timed,
        cached=n_keys - n_timed,
        seconds=time.perf_counter() - began,
    )


# -- pruned copies, measured -----------------------------------------------------------------------


def kept_channels(graph: ChannelGraph, dead: set[int]) -> dict[str, tuple[int, int]]:
    """Kept (input, output) channel counts of every layer when the units ``dead`` are removed."""
    return {
        name: (int(keep_in.sum()), int(keep_out.sum()))
        for name, (keep_in, keep_out) in graph.keep_masks(dead).items()
    }


def pruned_copy(graph: ChannelGraph, dead: set[int]) -> nn.Module:
    """A copy of the (ungated) ``graph.model`` with the units ``dead`` cut out of every layer —
    the cut :func:`alphaprune.core.shrink.shrink` makes, on a model without gates."""
    model, layers = copy.deepcopy((graph.model, graph.layers))
    model.eval()
    for name, (keep_in, keep_out) in graph.keep_masks(dead).items():
        if keep_in.all() and keep_out.all():
            continue
        layer: LayerChannels = layers[name]
        if keep_out.numel() and not keep_out.any():
            raise PruningError(f"a latency candidate removes every output channel of '{name}'")
        layer.rule.cut(layer.module, keep_in, keep_out)
    return model


def measure_pruned(
    graph: ChannelGraph, candidates: Mapping[str, set[int]], options: LatencyOptions
) -> dict[str, float]:
    """Milliseconds per forward of each candidate (name → dead units; an empty set is the
    original model), timed in one interleaved run on the latency input, device, runtime and
    threads.

    The first candidate gets its median; every other one the median of its per-round ratio to
    the first, times that median — so that load which comes and goes between rounds shifts all
    of them alike instead of bending their proportions.
    """
    inputs = _latency_inputs(graph, options)
    preparers: dict[Hashable, Preparer] = {}
    with torch_threads(options.threads):
        for name, dead in candidates.items():
            model = pruned_copy(graph, dead) if dead else copy.deepcopy(graph.model).eval()
            call = runner(model, inputs, options.runtime, options.device, options.threads)
            preparers[name] = lambda call=call: call
        times = time_rounds(
            preparers,
            rounds=options.rounds,
            device=options.device if options.runtime == "torch" else "cpu",
            progress=options.progress,
            desc="latency of " + ", ".join(candidates),
        )
    first = next(iter(times))
    reference = statistics.median(times[first])
    return {
        name: reference
        * statistics.median(t / r for t, r in zip(values, times[first], strict=True))
        for name, values in times.items()
    }


def _ratio_spread(ratios: list[float]) -> float:
    """Half-width (95 %) of the median of per-round ratios, from their interquartile range."""
    if len(ratios) < 4:
        return math.inf
    q = statistics.quantiles(ratios, n=4)
    sigma = (q[2] - q[0]) / 1.349
    return 1.96 * 1.2533 * sigma / math.sqrt(len(ratios))


def measure_ratio(graph: ChannelGraph, dead: set[int], options: LatencyOptions) -> dict[str, float]:
    """The latency ratio of the model without the units ``dead`` to the original, measured.

    Both run in the same rounds (the order alternating), and the ratio is the median of the
    per-round ratios, which drift and load that last longer than one round do not bias. Rounds
    are added (up to 4 × ``options.rounds``) until that median is known to ± tolerance / 2.
    Returns ``ratio``, ``original_ms``, ``pruned_ms`` (medians), ``rounds`` and ``spread``.
    """
    inputs = _latency_inputs(graph, options)
    device = options.device if options.runtime == "torch" else "cpu"
    times: dict[Hashable, list[float]] = {"original": [], "pruned": []}
    with torch_threads(options.threads):
        models = {"original": copy.deepcopy(graph.model).eval(), "pruned": pruned_copy(graph, dead)}
        preparers: dict[Hashable, Preparer] = {}
        for name, model in models.items():
            call = runner(model, inputs, options.runtime, options.device, options.threads)
            preparers[name] = lambda call=call: call
        while True:
            more = time_rounds(preparers, options.rounds, device=device, progress=options.progress)
            for key, values in more.items():
                times[key] += values
            ratios = [p / o for p, o in zip(times["pruned"], times["original"], strict=True)]
            spread = _ratio_spread(ratios)
            if spread <= options.tolerance / 2 or len(ratios) >= 4 * options.rounds:
                break
    return {
        "ratio": statistics.median(ratios),
        "original_ms": statistics.median(times["original"]),
        "pruned_ms": statistics.median(times["pruned"]),
        "rounds": len(ratios),
        "spread": spread,
    }
