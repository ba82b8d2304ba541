"""Inference and training-step benchmarks of original, masked and shrunk models.

Masking channels (gates at α = 0) leaves every tensor its full size, so a masked model is no
faster than the original; only :func:`alphaprune.core.shrink` makes one smaller. :func:`compare_pruned`
measures exactly that, side by side and interleaved, optionally next to ``torch_pruning``'s model
with the same kept channels. Time, utilisation and memory are separate columns, each named with
its unit (``*_ms``, ``*_pct``, ``*_mib``); see :func:`benchmark` for every column.
"""

from __future__ import annotations

import copy
import math
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from alphaprune.atomic import atomic_write_text
from alphaprune.bench.monitor import (
    MIB,
    Sampler,
    Window,
    nvml_index,
    nvml_reader,
    process_reader,
    window_stats,
)
from alphaprune.core.gates import attach_gates
from alphaprune.core.shrink import count, shrink

__all__ = [
    "BENCH_COLUMNS",
    "TRAIN_COLUMNS",
    "benchmark",
    "compare_pruned",
    "standard_models",
    "torch_pruning_model",
    "train_step_benchmark",
    "device_name",
    "write_csv",
]

#: On CUDA the automatic block size leaves each model at least this many turns.
MIN_ROUNDS = 3

#: Columns of :func:`benchmark`, in order (documented there).
BENCH_COLUMNS = [
    "model",
    "latency_ms_median",
    "latency_ms_p10",
    "latency_ms_p90",
    "throughput_img_s",
    "params",
    "flops_per_image",
    "latency_ratio",
    "flops_ratio",
    "params_ratio",
    "cpu_util_pct",
    "rss_peak_mib",
    "gpu_util_pct_mean",
    "gpu_util_pct_max",
    "gpu_util_samples",
    "gpu_util_rate_hz",
    "torch_peak_alloc_mib",
    "torch_peak_activation_mib",
    "nvml_mem_used_mib",
    "device",
    "device_name",
    "torch_version",
    "threads",
    "batch_size",
    "image_size",
    "timed_batches",
    "warmup_batches",
    "block_batches",
    "cudnn_benchmark",
]

#: Columns of :func:`train_step_benchmark`, in order (documented there).
TRAIN_COLUMNS = [
    "model",
    "step_ms_median",
    "step_ms_p10",
    "step_ms_p90",
    "overhead_pct",
    "params",
    "device",
    "device_name",
    "torch_version",
    "threads",
    "batch_size",
    "image_size",
    "timed_steps",
    "warmup_steps",
]


def device_name(device: torch.device | str) -> str:
    """Human-readable name of ``device``: the GPU's name, or the CPU model from /proc/cpuinfo."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_calls(fn: Callable[[], Any], n: int, device: torch.device) -> list[float]:
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


def _check_models(models: Mapping[str, nn.Module]) -> None:
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty dict of name -> nn.Module")
    for name, model in models.items():
        if not isinstance(model, nn.Module):
            raise TypeError(f"models['{name}'] is a {type(model).__name__}, not an nn.Module")


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")


def _cpu_seconds(process: Any) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _combine(*readers: Callable[[], Mapping[str, float]]) -> Callable[[], dict[str, float]]:
    def read() -> dict[str, float]:
        out: dict[str, float] = {}
        for reader in readers:
            out.update(reader())
        return out

    return read


def _quantiles(values: Sequence[float]) -> tuple[float, float, float]:
    p10, median, p90 = np.percentile(np.asarray(values, dtype=float), [10, 50, 90])
    return float(median), float(p10), float(p90)


def benchmark(
    models: Mapping[str, nn.Module],
    batch_size: int = 8,
    image_size: int = 128,
    device: torch.device | str = "cpu",
    repeats: int = 30,
    warmup: int = 3,
    block: int | None = None,
    min_block_s: float = 0.25,
    reference: str | None = None,
    sample_interval: float = 0.05,
    settle_s: float | None = None,
    seed: int = 0,
    progress: bool = True,
    gpu_reader: Callable[[], Mapping[str, float]] | None = None,
) -> pd.DataFrame:
    """Time inference of each model, interleaved, and measure utilisation and memory apart.

    Every model is deep-copied, moved to ``device`` and put in ``eval()``; it runs under
    ``torch.inference_mode()`` on the same random batch ``(batch_size, 3, image_size,
    image_size)``. After ``warmup`` untimed batches per model, the models take turns in rounds,
    each running a *block* of consecutive batches per turn, with the order rotated every round
    (A B C, B C A, …), until each has run ``repeats`` timed batches: drift (thermal, clocks, other
    load) hits all models alike. On CPU a block is 1 batch; on CUDA it is as many batches of the
    fastest model as fill ``min_block_s`` seconds (from the warm-up timings), but no more than
    leaves :data:`MIN_ROUNDS` turns per model, so that NVML's utilisation counter, which averages
    over its own sample period, sees mostly one model at a time; give ``repeats`` enough batches
    for that. A background thread
    samples at ``1 / sample_interval`` Hz (20 by default) while the models run.

    Columns (one row per model, in the order of ``models``; NaN where not measured):

    * ``model`` — the key in ``models``.
    * ``latency_ms_median``, ``latency_ms_p10``, ``latency_ms_p90`` — time per batch in ms over the
      ``timed_batches`` timed batches: CUDA events around each forward on CUDA, ``perf_counter``
      on CPU.
    * ``throughput_img_s`` — images per second, ``batch_size / latency_ms_median * 1000``.
    * ``params`` — number of parameters; ``flops_per_image`` — forward FLOPs for one image
      (:func:`alphaprune.count`, i.e. ``torch.utils.flop_counter``; a multiply-add is 2 FLOPs).
    * ``latency_ratio``, ``flops_ratio``, ``params_ratio`` — this model's median latency, FLOPs
      and parameters divided by those of ``reference`` (1 on the reference row).
    * ``cpu_util_pct`` — CPU time of this process (all threads, user + system; psutil) during the
      model's timed blocks, as a percentage of their wall time; 100 = one core busy, so it can
      exceed 100 with several threads. Measured on every device.
    * ``rss_peak_mib`` — largest resident set size of this process (psutil) sampled during the
      model's blocks and at the end of each; all models are resident at once, so it is a property
      of the run, not of a model alone.
    * ``gpu_util_pct_mean``, ``gpu_util_pct_max`` — CUDA only: mean and max of NVML
      ``utilization.gpu`` samples (percent of time a kernel was running) taken during the model's
      blocks, skipping the first ``settle_s`` seconds of each. A time fraction, not memory.
    * ``gpu_util_samples`` — how many NVML samples went into those; ``gpu_util_rate_hz`` — the
      achieved sampling rate of the whole run.
    * ``torch_peak_alloc_mib`` — CUDA only: ``torch.cuda.max_memory_allocated`` during the model's
      blocks (reset before each): every model's weights, which are all resident, plus this one's
      activations. ``torch_peak_activation_mib`` — that peak minus what was allocated when the
      block started, i.e. what this model's forward needed on top.
    * ``nvml_mem_used_mib`` — CUDA only: max of NVML's device memory in use (all processes, CUDA
      context and caching allocator included) during the model's blocks.
    * ``device``, ``device_name``, ``torch_version``, ``threads`` (``torch.get_num_threads()``),
      ``batch_size``, ``image_size``, ``timed_batches``, ``warmup_batches``, ``block_batches``,
      ``cudnn_benchmark`` (CUDA only) — the conditions of the measurement.

    ``table.attrs["samples"]`` holds the raw readings (dicts of ``time_s`` and one key per metric)
    and ``table.attrs["windows"]`` when each model ran (dicts of ``model``, ``start_s``,
    ``end_s``), on the same ``perf_counter`` clock, for plots of utilisation over time.

    Args:
        models: name -> model; must accept ``(N, 3, image_size, image_size)``.
        reference: model name the ratios divide by (default: the first).
        block: batches per turn; default 1 on CPU, ``min_block_s`` worth on CUDA.
        settle_s: seconds of utilisation samples skipped at the start of each block (default
            ``min_block_s / 4`` on CUDA, 0 on CPU).
        progress: show a ``tqdm`` bar over the timed batches.
        gpu_reader: replaces the NVML reader (:func:`alphaprune.bench.monitor.nvml_reader`) as the
            source of ``gpu_util_pct`` and ``nvml_mem_used_mib`` readings; used on any device when
            given (tests inject a fake here).
    """
    _check_models(models)
    _check_positive(batch_size=batch_size, image_size=image_size, repeats=repeats)
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    if block is not None:
        _check_positive(block=block)
    names = list(models)
    reference = names[0] if reference is None else reference
    if reference not in models:
        raise ValueError(f"reference '{reference}' is not one of the models {names}")
    device = torch.device(device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise RuntimeError(f"device '{device}' requested but torch.cuda.is_available() is False")

    import psutil

    process = psutil.Process()
    nets = {name: copy.deepcopy(model).to(device).eval() for name, model in models.items()}
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, image_size, image_size, generator=generator).to(device)
    counts = {name: count(net, (1, 3, image_size, image_size)) for name, net in nets.items()}

    if gpu_reader is None and cuda:
        try:
            gpu_reader = nvml_reader(nvml_index(device))
        except Exception as exc:  # noqa: BLE001 - no pynvml or no NVML library: no util columns
            print(f"note: no GPU utilisation/NVML memory columns ({exc})")
    read = _combine(process_reader(), *([gpu_reader] if gpu_reader else []))

    latencies: dict[str, list[float]] = {name: [] for name in names}
    wall = dict.fromkeys(names, 0.0)
    cpu = dict.fromkeys(names, 0.0)
    rss_end: dict[str, float] = dict.fromkeys(names, 0.0)
    peak_alloc: dict[str, float] = dict.fromkeys(names, math.nan)
    peak_extra: dict[str, float] = dict.fromkeys(names, math.nan)
    windows: list[Window] = []

    with torch.inference_mode():
        warm_ms = {}
        for name, net in nets.items():
            times = _timed_calls(lambda net=net: net(x), max(warmup, 1 if cuda else 0), device)
            warm_ms[name] = min(times) if times else math.nan
        if block is None:
            fastest = min(warm_ms.values())
            block = 1
            if cuda and fastest > 0:
                longest = math.ceil(repeats / MIN_ROUNDS)  # keep at least MIN_ROUNDS turns each
                block = max(1, min(longest, math.ceil(min_block_s * 1e3 / fastest)))
        if settle_s is None:
            settle_s = min_block_s / 4 if cuda else 0.0

        done = dict.fromkeys(names, 0)
        bar = tqdm(total=repeats * len(names), desc="benchmark", unit="batch", disable=not progress)
        sampler = Sampler(read, interval=sample_interval)
        with sampler:
            turn = 0
            while any(done[n] < repeats for n in names):
                order = names[turn % len(names) :] + names[: turn % len(names)]
                turn += 1
                for name in order:
                    n = min(block, repeats - done[name])
                    if n <= 0:
                        continue
                    net = nets[name]
                    _sync(device)
                    if cuda:
                        torch.cuda.reset_peak_memory_stats(device)
                        base = torch.cuda.memory_allocated(device)
                    cpu0, t0 = _cpu_seconds(process), time.perf_counter()
                    latencies[name] += _timed_calls(lambda net=net: net(x), n, device)
                    t1, cpu1 = time.perf_counter(), _cpu_seconds(process)
                    windows.append(Window(name, t0, t1))
                    wall[name] += t1 - t0
                    cpu[name] += cpu1 - cpu0
                    rss_end[name] = max(rss_end[name], process.memory_info().rss / MIB)
                    if cuda:
                        peak = torch.cuda.max_memory_allocated(device)
                        peak_alloc[name] = np.nanmax([peak_alloc[name], peak / MIB])
                        peak_extra[name] = np.nanmax([peak_extra[name], (peak - base) / MIB])
                    done[name] += n
                    bar.update(n)
        bar.close()

    stats = window_stats(sampler.samples, windows, settle=0.0)
    gpu_stats = window_stats(sampler.samples, windows, settle=settle_s) if gpu_reader else {}
    env = {
        "device": str(device),
        "device_name": device_name(device),
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "image_size": image_size,
        "timed_batches": repeats,
        "warmup_batches": warmup,
        "block_batches": block,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if cuda else math.nan,
    }
    rows = []
    for name in names:
        median, p10, p90 = _quantiles(latencies[name])
        rss = stats.get(name, {}).get("rss_mib", {}).get("max", 0.0)
        util = gpu_stats.get(name, {}).get("gpu_util_pct", {})
        mem = gpu_stats.get(name, {}).get("nvml_mem_used_mib", {})
        if gpu_reader and not mem:  # no sample after settling: fall back to unsettled samples
            mem = stats.get(name, {}).get("nvml_mem_used_mib", {})
        rows.append(
            {
                "model": name,
                "latency_ms_median": median,
                "latency_ms_p10": p10,
                "latency_ms_p90": p90,
                "throughput_img_s": batch_size / median * 1e3,
                "params": counts[name]["params"],
                "flops_per_image": counts[name]["flops"],
                "cpu_util_pct": 100.0 * cpu[name] / wall[name] if wall[name] > 0 else math.nan,
                "rss_peak_mib": max(rss, rss_end[name]),
                "gpu_util_pct_mean": util.get("mean", math.nan),
                "gpu_util_pct_max": util.get("max", math.nan),
                "gpu_util_samples": int(util.get("n", 0)) if gpu_reader else math.nan,
                "gpu_util_rate_hz": sampler.rate_hz() if gpu_reader else math.nan,
                "torch_peak_alloc_mib": peak_alloc[name],
                "torch_peak_activation_mib": peak_extra[name],
                "nvml_mem_used_mib": mem.get("max", math.nan),
                **env,
            }
        )
    table = pd.DataFrame(rows)
    ref = table.set_index("model").loc[reference]
    table["latency_ratio"] = table["latency_ms_median"] / ref["latency_ms_median"]
    table["flops_ratio"] = table["flops_per_image"] / ref["flops_per_image"]
    table["params_ratio"] = table["params"] / ref["params"]
    table = table[BENCH_COLUMNS].copy()
    table.attrs["samples"] = [{"time_s": smp.time, **smp.values} for smp in sampler.samples]
    table.attrs["windows"] = [
        {"model": w.label, "start_s": w.start, "end_s": w.end} for w in windows
    ]
    return table


def torch_pruning_model(
    original: nn.Module, masks: Mapping[str, Tensor], example_input: Tensor
) -> nn.Module:
    """``torch_pruning``'s pruned copy of an ungated ``original`` keeping the same channels.

    For every convolution name in ``masks`` (True = kept, as in ``AlphaGate.mask``), the channels
    ``~mask`` are removed with ``torch_pruning.DependencyGraph`` (which also cuts the consumer's
    inputs). Raises ``ImportError`` if ``torch_pruning`` is not installed.
    """
    import torch_pruning as tp

    model = copy.deepcopy(original).eval()
    graph = tp.DependencyGraph().build_dependency(
        model, example_inputs=example_input.to(next(model.parameters()).device), verbose=False
    )
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        if name not in modules:
            raise KeyError(f"mask for '{name}', but the model has no module of that name")
        pruned = torch.nonzero(~torch.as_tensor(mask, dtype=torch.bool).cpu()).flatten().tolist()
        if not pruned:
            continue
        group = graph.get_pruning_group(modules[name], tp.prune_conv_out_channels, idxs=pruned)
        if not graph.check_pruning_group(group):
            raise ValueError(f"torch_pruning refuses to prune {len(pruned)} channels of '{name}'")
        group.prune()
    return model


def standard_models(
    original: nn.Module,
    keep: float | Mapping[str, float] = 0.5,
    target: str = "both",
    criterion: str = "l1",
    torch_pruning: bool | str = "auto",
    image_size: int = 64,
) -> dict[str, nn.Module]:
    """The models the report compares, built from an ungated ``original``.

    Returns ``{"original", "masked", "shrunk"[, "torch-pruning"]}``: the original (a copy);
    the same model with :func:`attach_gates` (``keep``, ``criterion``, ``target``) at α = 0, which
    computes the pruned function at full size; :func:`shrink` of that; and ``torch_pruning``'s
    model with the same kept channels (see :func:`torch_pruning_model`). ``torch_pruning``:
    ``"auto"`` adds that row when the package is installed and prints a note when it is not,
    ``True`` requires it, ``False`` leaves it out. ``image_size`` is only for tracing.
    """
    if torch_pruning not in ("auto", True, False):
        raise ValueError(f"torch_pruning must be 'auto', True or False, got {torch_pruning!r}")
    base = copy.deepcopy(original).eval()
    masked = copy.deepcopy(base)
    gate_map = attach_gates(masked, keep=keep, criterion=criterion, target=target, alpha=0.0)
    models: dict[str, nn.Module] = {"original": base, "masked": masked, "shrunk": shrink(masked)}
    if torch_pruning is False:
        return models
    try:
        import torch_pruning as _  # noqa: F401
    except ImportError:
        if torch_pruning is True:
            raise ImportError(
                "torch_pruning=True but torch-pruning is not installed: "
                "pip install 'alphaprune[compare]' (torch-pruning==1.6.1)"
            ) from None
        print("note: torch_pruning not installed; skipping the 'torch-pruning' row")
        return models
    masks = {name: group.mask for name, group in gate_map.items()}  # tp couples the rest
    example = torch.zeros(1, 3, image_size, image_size)
    models["torch-pruning"] = torch_pruning_model(base, masks, example)
    return models


def compare_pruned(
    original: nn.Module,
    keep: float | Sequence[float] = 0.5,
    target: str = "both",
    criterion: str = "l1",
    torch_pruning: bool | str = "auto",
    rows: Sequence[str] = ("masked", "shrunk", "torch-pruning"),
    **bench_kwargs: Any,
) -> pd.DataFrame:
    """Benchmark :func:`standard_models` at one or several ``keep`` fractions in one interleaved run.

    The table starts with the ``"original"`` row (the reference of every ratio) and then, for each
    ``keep`` in order, the ``rows`` asked for (``"masked"``, ``"shrunk"``, ``"torch-pruning"``;
    the last only when ``torch_pruning`` allows it). ``bench_kwargs`` go to :func:`benchmark`
    (``batch_size``, ``image_size``, ``device``, ``repeats``, …). Columns: ``model``, ``keep``
    (1.0 on the original), ``target``, then :data:`BENCH_COLUMNS` after ``model``.
    """
    keeps = [keep] if isinstance(keep, (int, float)) else list(keep)
    if not keeps:
        raise ValueError("keep must be a fraction or a non-empty list of fractions")
    unknown = sorted(set(rows) - {"masked", "shrunk", "torch-pruning"})
    if unknown:
        raise ValueError(f"rows {unknown} unknown; choose from 'masked', 'shrunk', 'torch-pruning'")
    models: dict[str, nn.Module] = {"original": original}
    labels: dict[str, tuple[str, float]] = {"original": ("original", 1.0)}
    wants_tp = torch_pruning if "torch-pruning" in rows else False
    for fraction in keeps:
        built = standard_models(original, fraction, target, criterion, wants_tp)
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


def train_step_benchmark(
    models: Mapping[str, nn.Module],
    batch_size: int = 8,
    image_size: int = 128,
    device: torch.device | str = "cpu",
    steps: int = 20,
    warmup: int = 3,
    lr: float = 1e-4,
    reference: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Time an Adam + MSE reconstruction training step of each model, interleaved step by step.

    Each model is deep-copied to ``device`` in ``train()`` mode with its own ``Adam(lr)``; a step
    is ``zero_grad``, forward of a fixed random batch, ``mse_loss(output, input)``, ``backward``,
    ``step``. After ``warmup`` steps each, the models alternate one step at a time, order rotated
    every round, for ``steps`` timed steps each.

    Columns: ``model``; ``step_ms_median``, ``step_ms_p10``, ``step_ms_p90`` (time per step in ms:
    CUDA events on CUDA, ``perf_counter`` on CPU); ``overhead_pct`` (``100 * (median /
    reference median - 1)``, 0 on the ``reference`` row, the first model by default);
    ``params``; and the conditions ``device``, ``device_name``, ``torch_version``, ``threads``,
    ``batch_size``, ``image_size``, ``timed_steps``, ``warmup_steps``.
    """
    _check_models(models)
    _check_positive(batch_size=batch_size, image_size=image_size, steps=steps)
    names = list(models)
    reference = names[0] if reference is None else reference
    if reference not in models:
        raise ValueError(f"reference '{reference}' is not one of the models {names}")
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, 3, image_size, image_size, generator=generator).to(device)
    nets = {name: copy.deepcopy(m).to(device).train() for name, m in models.items()}
    optims = {name: torch.optim.Adam(net.parameters(), lr=lr) for name, net in nets.items()}

    def step(name: str) -> None:
        optims[name].zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(nets[name](x), x)
        loss.backward()
        optims[name].step()

    for name in names:
        _timed_calls(lambda name=name: step(name), warmup, device)
    times: dict[str, list[float]] = {name: [] for name in names}
    with tqdm(total=steps * len(names), desc="train steps", disable=not progress) as bar:
        for i in range(steps):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                times[name] += _timed_calls(lambda name=name: step(name), 1, device)
                bar.update(1)
    rows = []
    for name in names:
        median, p10, p90 = _quantiles(times[name])
        rows.append(
            {
                "model": name,
                "step_ms_median": median,
                "step_ms_p10": p10,
                "step_ms_p90": p90,
                "params": sum(p.numel() for p in nets[name].parameters()),
                "device": str(device),
                "device_name": device_name(device),
                "torch_version": torch.__version__,
                "threads": torch.get_num_threads(),
                "batch_size": batch_size,
                "image_size": image_size,
                "timed_steps": steps,
                "warmup_steps": warmup,
            }
        )
    table = pd.DataFrame(rows)
    ref = float(table.loc[table["model"] == reference, "step_ms_median"].iloc[0])
    table["overhead_pct"] = 100.0 * (table["step_ms_median"] / ref - 1.0)
    return table[TRAIN_COLUMNS]


def write_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a benchmark table to CSV atomically (folders created) and say where."""
    path = Path(path)
    atomic_write_text(path, table.to_csv(index=False))
    print(f"wrote {path}")
    return path
