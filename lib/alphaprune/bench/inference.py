"""Inference benchmark: time, utilisation and memory of models timed side by side.

Time, utilisation and memory are separate columns, each named with its unit (``*_ms``,
``*_pct``, ``*_mib``); see :func:`benchmark` for every column.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from alphaprune.bench.checks import check_positive, check_run
from alphaprune.bench.device import run_conditions
from alphaprune.bench.monitor import (
    MIB,
    Sampler,
    Window,
    combine_readers,
    nvml_index,
    nvml_reader,
    process_reader,
    window_stats,
)
from alphaprune.bench.timing import Tally, block_size, rotation, sync, timed_calls
from alphaprune.core.shrink import count

__all__ = ["BENCH_COLUMNS", "ModelTally", "benchmark"]

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

#: One model's sampler readings summarised per metric (see :func:`window_stats`).
Stats = Mapping[str, Mapping[str, float]]


@dataclass
class ModelTally(Tally):
    """One model's timed batches, CPU time and memory over all of its turns."""

    params: int = 0
    flops: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    rss_end_mib: float = 0.0
    peak_alloc_mib: float = math.nan
    peak_activation_mib: float = math.nan

    def add_turn(self, times_ms: list[float], wall_s: float, cpu_s: float, rss_mib: float) -> None:
        """Add one turn: its batch times, wall and CPU seconds, and the RSS at its end."""
        self.times_ms += times_ms
        self.wall_s += wall_s
        self.cpu_s += cpu_s
        self.rss_end_mib = max(self.rss_end_mib, rss_mib)

    def add_cuda_peak(self, peak_bytes: int, base_bytes: int) -> None:
        """Add one turn's CUDA allocator peak, and what was allocated when the turn started."""
        self.peak_alloc_mib = np.nanmax([self.peak_alloc_mib, peak_bytes / MIB])
        self.peak_activation_mib = np.nanmax(
            [self.peak_activation_mib, (peak_bytes - base_bytes) / MIB]
        )

    def row(
        self, batch_size: int, sampled: Stats, settled: Stats | None, rate_hz: float
    ) -> dict[str, Any]:
        """This model's columns before the ratios and the conditions.

        ``sampled`` summarises the readings taken during the model's turns, ``settled`` those
        after the settling time of each turn (None when no GPU reader ran).
        """
        latency = self.quantile_columns("latency_ms")
        return {
            "model": self.name,
            **latency,
            "throughput_img_s": batch_size / latency["latency_ms_median"] * 1e3,
            "params": self.params,
            "flops_per_image": self.flops,
            "cpu_util_pct": 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else math.nan,
            "rss_peak_mib": max(sampled.get("rss_mib", {}).get("max", 0.0), self.rss_end_mib),
            **_gpu_columns(sampled, settled, rate_hz),
            "torch_peak_alloc_mib": self.peak_alloc_mib,
            "torch_peak_activation_mib": self.peak_activation_mib,
        }


def _gpu_columns(sampled: Stats, settled: Stats | None, rate_hz: float) -> dict[str, float]:
    """The GPU reader's columns: NaN without a reader; utilisation from the settled readings."""
    if settled is None:
        names = ["gpu_util_pct_mean", "gpu_util_pct_max", "gpu_util_samples", "gpu_util_rate_hz"]
        return dict.fromkeys([*names, "nvml_mem_used_mib"], math.nan)
    util = settled.get("gpu_util_pct", {})
    # Memory does not lag like utilisation: with no reading left after settling, take them all.
    memory = settled.get("nvml_mem_used_mib") or sampled.get("nvml_mem_used_mib", {})
    return {
        "gpu_util_pct_mean": util.get("mean", math.nan),
        "gpu_util_pct_max": util.get("max", math.nan),
        "gpu_util_samples": int(util.get("n", 0)),
        "gpu_util_rate_hz": rate_hz,
        "nvml_mem_used_mib": memory.get("max", math.nan),
    }


def _cpu_seconds(process: Any) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


@dataclass
class _Run:
    """What every turn shares: the copied models, their input batch, the device, this process."""

    nets: dict[str, nn.Module]
    x: Tensor
    device: torch.device
    process: Any
    progress: bool

    def warm_up(self, warmup: int) -> float:
        """Run the untimed batches (at least one on CUDA); the fastest one in ms (nan if none)."""
        calls = max(warmup, 1 if self.device.type == "cuda" else 0)
        fastest = []
        for net in self.nets.values():
            times = timed_calls(lambda net=net: net(self.x), calls, self.device)
            fastest.append(min(times) if times else math.nan)
        return min(fastest)

    def turn(self, tally: ModelTally, calls: int) -> Window:
        """Time ``calls`` batches of one model into its ``tally``; when they ran."""
        net, cuda = self.nets[tally.name], self.device.type == "cuda"
        sync(self.device)
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
        cpu0, t0 = _cpu_seconds(self.process), time.perf_counter()
        times = timed_calls(lambda: net(self.x), calls, self.device)
        t1, cpu1 = time.perf_counter(), _cpu_seconds(self.process)
        tally.add_turn(times, t1 - t0, cpu1 - cpu0, self.process.memory_info().rss / MIB)
        if cuda:
            tally.add_cuda_peak(torch.cuda.max_memory_allocated(self.device), base)
        return Window(tally.name, t0, t1)

    def turns(
        self, turns: Sequence[tuple[str, int]], tallies: Mapping[str, ModelTally], sampler: Sampler
    ) -> list[Window]:
        """Run ``turns`` (name, batches) while ``sampler`` samples; when each one ran."""
        total = sum(calls for _, calls in turns)
        windows = []
        bar = tqdm(total=total, desc="benchmark", unit="batch", disable=not self.progress)
        with bar, sampler:
            for name, calls in turns:
                windows.append(self.turn(tallies[name], calls))
                bar.update(calls)
        return windows


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
    leaves :data:`~alphaprune.bench.timing.MIN_ROUNDS` turns per model, so that NVML's
    utilisation counter, which averages over its own sample period, sees mostly one model at a
    time; give ``repeats`` enough batches for that. A background thread
    samples at ``1 / sample_interval`` Hz (20 by default) while the models run.

    Columns (one row per model, in the order of ``models``; NaN where not measured):

    * ``model`` — the key in ``models``.
    * ``latency_ms_median``, ``latency_ms_p10``, ``latency_ms_p90`` — time per batch in ms over the
      ``timed_batches`` timed batches: CUDA events around each forward on CUDA, ``perf_counter``
      on CPU.
    * ``throughput_img_s`` — images per second, ``batch_size / latency_ms_median * 1000``.
    * ``params`` — number of parameters; ``flops_per_image`` — forward FLOPs for one image
      (:func:`alphaprune.count`, i.e. ``torch.utils.flop_counter``; a multiply-add is 2 FLOPs);
      for an exported model in onnxruntime, those of the torch model it was exported from.
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
    names, reference = check_run(
        models, reference, batch_size=batch_size, image_size=image_size, repeats=repeats
    )
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    if block is not None:
        check_positive(block=block)
    run = _prepare(models, batch_size, image_size, _usable(device), seed, progress)
    cuda = run.device.type == "cuda"
    shape = (1, 3, image_size, image_size)
    tallies = {name: ModelTally(name, **_count(net, shape)) for name, net in run.nets.items()}
    if gpu_reader is None and cuda:
        gpu_reader = _nvml_reader_or_none(run.device)
    readers = [process_reader(), *([gpu_reader] if gpu_reader else [])]
    sampler = Sampler(combine_readers(*readers), interval=sample_interval)
    with torch.inference_mode():
        fastest_ms = run.warm_up(warmup)
        block = block_size(fastest_ms, repeats, min_block_s, cuda) if block is None else block
        windows = run.turns(list(rotation(names, repeats, block)), tallies, sampler)
    if settle_s is None:
        settle_s = min_block_s / 4 if cuda else 0.0
    rows = _rows(tallies, sampler, windows, settle_s if gpu_reader else None, batch_size)
    conditions = {
        **run_conditions(run.device),
        "batch_size": batch_size,
        "image_size": image_size,
        "timed_batches": repeats,
        "warmup_batches": warmup,
        "block_batches": block,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if cuda else math.nan,
    }
    table = _with_ratios(pd.DataFrame([{**row, **conditions} for row in rows]), reference)
    table = table[BENCH_COLUMNS].copy()
    table.attrs["samples"] = [{"time_s": smp.time, **smp.values} for smp in sampler.samples]
    table.attrs["windows"] = [
        {"model": w.label, "start_s": w.start, "end_s": w.end} for w in windows
    ]
    return table


def _count(net: nn.Module, shape: tuple[int, ...]) -> dict[str, int]:
    """Parameters and FLOPs of ``net``, or of the torch model it stands for (``counted_as``: an
    exported model in onnxruntime, :class:`alphaprune.core.runtimes.OrtModule`)."""
    source = getattr(net, "counted_as", None)
    return count(source if isinstance(source, nn.Module) else net, shape)


def _usable(device: torch.device | str) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{device}' requested but torch.cuda.is_available() is False")
    return device


def _prepare(
    models: Mapping[str, nn.Module],
    batch_size: int,
    image_size: int,
    device: torch.device,
    seed: int,
    progress: bool,
) -> _Run:
    """Copies of ``models`` on ``device`` in ``eval()`` and the random batch they all run."""
    import psutil

    nets = {name: copy.deepcopy(model).to(device).eval() for name, model in models.items()}
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, image_size, image_size, generator=generator).to(device)
    return _Run(nets, x, device, psutil.Process(), progress)


def _nvml_reader_or_none(device: torch.device) -> Callable[[], Mapping[str, float]] | None:
    """NVML's reader for ``device``, or None (with a note) without pynvml or the NVML library."""
    try:
        return nvml_reader(nvml_index(device))
    except Exception as exc:  # noqa: BLE001 - no pynvml or no NVML library: no util columns
        print(f"note: no GPU utilisation/NVML memory columns ({exc})")
        return None


def _rows(
    tallies: Mapping[str, ModelTally],
    sampler: Sampler,
    windows: list[Window],
    gpu_settle_s: float | None,
    batch_size: int,
) -> list[dict[str, Any]]:
    """Each model's row; ``gpu_settle_s`` None when no GPU reader ran (its columns stay NaN)."""
    sampled = window_stats(sampler.samples, windows, settle=0.0)
    settled = None
    if gpu_settle_s is not None:
        settled = window_stats(sampler.samples, windows, settle=gpu_settle_s)
    rate_hz = sampler.rate_hz() if settled is not None else math.nan
    return [
        tally.row(
            batch_size,
            sampled.get(name, {}),
            None if settled is None else settled.get(name, {}),
            rate_hz,
        )
        for name, tally in tallies.items()
    ]


def _with_ratios(table: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Add latency, FLOPs and parameter ratios to the ``reference`` row."""
    ref = table.set_index("model").loc[reference]
    table["latency_ratio"] = table["latency_ms_median"] / ref["latency_ms_median"]
    table["flops_ratio"] = table["flops_per_image"] / ref["flops_per_image"]
    table["params_ratio"] = table["params"] / ref["params"]
    return table
