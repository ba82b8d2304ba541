"""Background sampling of GPU utilisation, device memory and process memory during a timed run.

A :class:`Sampler` calls a ``read()`` function at a fixed rate in a daemon thread and keeps every
reading with its ``time.perf_counter()`` timestamp. The benchmark records when each model was
running (:class:`Window`) and :func:`window_stats` attributes the readings to models afterwards,
so the sampler itself knows nothing about models and can be tested with a fake ``read``.

Readers:

* :func:`nvml_reader` — NVML (``pynvml`` from ``nvidia-ml-py``): ``gpu_util_pct`` is
  ``nvmlDeviceGetUtilizationRates().gpu``, the percentage of time over the driver's last sample
  period (1/6 s to 1 s, depending on the product) during which at least one kernel ran. It is a
  *time* fraction, not a measure of how much of the GPU was busy, and not memory.
  ``nvml_mem_used_mib`` is ``nvmlDeviceGetMemoryInfo().used``: device memory in use by all
  processes, CUDA context and caching allocator included.
* :func:`process_reader` — psutil: the benchmarking process's resident set size.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Sample",
    "Sampler",
    "Window",
    "combine_readers",
    "nvml_index",
    "nvml_reader",
    "process_reader",
    "window_stats",
]

MIB = 2**20
Reading = Mapping[str, float]


@dataclass(frozen=True)
class Sample:
    """One reading taken at ``time`` (``time.perf_counter()`` seconds)."""

    time: float
    values: Reading


@dataclass(frozen=True)
class Window:
    """``label`` was running from ``start`` to ``end`` (``time.perf_counter()`` seconds)."""

    label: str
    start: float
    end: float


class Sampler:
    """Call ``read()`` every ``interval`` seconds in a background thread; a context manager.

    The thread starts on ``start()``/``__enter__`` and is joined on ``stop()``/``__exit__``, also
    when the body raises. An exception raised by ``read()`` stops the sampling; ``stop()`` re-raises
    it (unless the body already failed, whose exception then takes precedence).

    Args:
        read: returns a mapping of metric name to value; called once on start and at every tick.
        interval: seconds between readings; the default 0.05 gives 20 Hz (at least 10 Hz is needed
            to see NVML's utilisation change within a benchmark window).
    """

    def __init__(self, read: Callable[[], Reading], interval: float = 0.05) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self.read = read
        self.interval = float(interval)
        self.samples: list[Sample] = []
        self.error: BaseException | None = None
        self.started: float | None = None
        self.stopped: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def thread(self) -> threading.Thread | None:
        """The sampling thread (None before ``start``)."""
        return self._thread

    def _take(self) -> None:
        stamp = time.perf_counter()  # when the reading was asked for
        self.samples.append(Sample(stamp, dict(self.read())))

    def _run(self) -> None:
        next_tick = time.perf_counter()
        try:
            while not self._stop.is_set():
                self._take()
                next_tick += self.interval
                delay = next_tick - time.perf_counter()
                if delay < 0:  # fell behind (slow read): skip missed ticks, don't burst
                    next_tick = time.perf_counter()
                    delay = 0.0
                if self._stop.wait(delay):
                    break
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc

    def start(self) -> Sampler:
        """Start the sampling thread (once)."""
        if self._thread is not None:
            raise RuntimeError("Sampler.start() called twice; create a new Sampler")
        self.started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="alphaprune-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self, raise_error: bool = True) -> None:
        """Stop and join the thread; re-raise an error of ``read()`` if ``raise_error``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.stopped is None:
            self.stopped = time.perf_counter()
        if raise_error and self.error is not None:
            raise RuntimeError(f"sampler read() failed: {self.error!r}") from self.error

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.stop(raise_error=exc_type is None)

    def rate_hz(self) -> float:
        """Readings per second between the first and the last reading (nan with fewer than 2)."""
        if len(self.samples) < 2:
            return math.nan
        span = self.samples[-1].time - self.samples[0].time
        return (len(self.samples) - 1) / span if span > 0 else math.nan


def window_stats(
    samples: Sequence[Sample],
    windows: Iterable[Window],
    settle: float = 0.0,
) -> dict[str, dict[str, dict[str, float]]]:
    """Attribute readings to labelled windows and summarise them per label and metric.

    A reading belongs to a window when ``start + settle <= time <= end``; ``settle`` discards the
    readings right after a switch of model, which a lagging counter (NVML averages over its own
    sample period) still partly attributes to the previous one.

    Returns:
        ``{label: {metric: {"mean", "max", "n"}}}``; a label whose windows caught no reading gets
        ``{}``.
    """
    collected: dict[str, dict[str, list[float]]] = {}
    for window in windows:
        per_metric = collected.setdefault(window.label, {})
        lo, hi = window.start + settle, window.end
        for sample in samples:
            if lo <= sample.time <= hi:
                for metric, value in sample.values.items():
                    per_metric.setdefault(metric, []).append(float(value))
    return {
        label: {
            metric: {"mean": sum(v) / len(v), "max": max(v), "n": float(len(v))}
            for metric, v in metrics.items()
        }
        for label, metrics in collected.items()
    }


def nvml_reader(index: int = 0) -> Callable[[], Reading]:
    """A ``read()`` for :class:`Sampler` returning ``gpu_util_pct`` and ``nvml_mem_used_mib``.

    ``index`` is the NVML device index (see :func:`nvml_index` to map a CUDA device). Raises
    ``ImportError`` naming the package if ``pynvml`` (``nvidia-ml-py``) is missing.
    """
    try:
        import pynvml
    except ImportError as exc:
        raise ImportError(
            "GPU utilisation needs NVML bindings: pip install nvidia-ml-py (module 'pynvml')"
        ) from exc
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(int(index))

    def read() -> Reading:
        util = pynvml.nvmlDeviceGetUtilizationRates(handle)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        return {"gpu_util_pct": float(util.gpu), "nvml_mem_used_mib": float(memory.used) / MIB}

    return read


def nvml_index(device: Any) -> int:
    """NVML index of a CUDA ``device``, honouring ``CUDA_VISIBLE_DEVICES`` where torch can."""
    import torch

    device = torch.device(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        return int(torch.cuda._get_nvml_device_index(index))
    except Exception:  # noqa: BLE001 - private helper; fall back to the CUDA index
        return int(index)


def combine_readers(*readers: Callable[[], Reading]) -> Callable[[], dict[str, float]]:
    """One ``read()`` for :class:`Sampler` merging the readings of ``readers`` (later ones win)."""

    def read() -> dict[str, float]:
        out: dict[str, float] = {}
        for reader in readers:
            out.update(reader())
        return out

    return read


def process_reader(pid: int | None = None) -> Callable[[], Reading]:
    """A ``read()`` for :class:`Sampler` returning the process's resident set size, ``rss_mib``."""
    import psutil

    process = psutil.Process(pid)

    def read() -> Reading:
        return {"rss_mib": process.memory_info().rss / MIB}

    return read
