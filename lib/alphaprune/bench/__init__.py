"""Benchmarks: inference and training-step timing, GPU/CPU monitors, the peer comparison.

Modules: :mod:`~alphaprune.bench.inference` (:func:`benchmark`), :mod:`~alphaprune.bench.training`
(:func:`train_step_benchmark`), :mod:`~alphaprune.bench.timing` (timed calls, block sizing and
the interleaved rotation both share), :mod:`~alphaprune.bench.monitor` (background sampling),
:mod:`~alphaprune.bench.compare` (:func:`compare_pruned`), :mod:`~alphaprune.bench.models`
(:func:`standard_models`), :mod:`~alphaprune.bench.peers` (``torch_pruning``),
:mod:`~alphaprune.bench.device` (device name, conditions), :mod:`~alphaprune.bench.output`
(:func:`write_csv`).
"""

from alphaprune.bench.compare import compare_pruned
from alphaprune.bench.device import device_name
from alphaprune.bench.inference import BENCH_COLUMNS, benchmark
from alphaprune.bench.models import standard_models
from alphaprune.bench.output import write_csv
from alphaprune.bench.peers import torch_pruning_model, torch_pruning_pruner
from alphaprune.bench.training import TRAIN_COLUMNS, train_step_benchmark

__all__ = [
    "BENCH_COLUMNS",
    "TRAIN_COLUMNS",
    "benchmark",
    "compare_pruned",
    "device_name",
    "standard_models",
    "torch_pruning_model",
    "torch_pruning_pruner",
    "train_step_benchmark",
    "write_csv",
]
