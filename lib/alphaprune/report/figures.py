"""Deprecated (goes next release): the old storeroom of the report, split by what it held.

* :mod:`alphaprune.report.plots` — every ``plot_*`` function;
* :mod:`alphaprune.report.html` — :class:`ReportBuilder`, ``caption_html``, ``keep_together``,
  ``alpha_text``;
* :mod:`alphaprune.report.tables` — the table builders, ``shrink_check``, ``load_image``;
* :mod:`alphaprune.report.outputs` — ``enter``, ``save_figure``, ``save_table`` and the registry
  of output names (``Figure``, ``Table``).

Importing this module still works and warns (DeprecationWarning).
"""

from __future__ import annotations

import warnings

from alphaprune.report.html import ReportBuilder, alpha_text, caption_html, keep_together
from alphaprune.report.outputs import enter, save_figure, save_table
from alphaprune.report.plots import (
    plot_benchmark,
    plot_channels,
    plot_reconstruction,
    plot_training,
    plot_weight_ratios_by_run,
)
from alphaprune.report.tables import (
    benchmark_table,
    channel_table,
    count_table,
    gpu_results,
    load_image,
    reconstruction_panels,
    shrink_check,
    weight_ranges,
    weights_table,
)

__all__ = [
    "enter",
    "save_figure",
    "save_table",
    "plot_training",
    "plot_reconstruction",
    "plot_benchmark",
    "plot_weight_ratios_by_run",
    "load_image",
    "alpha_text",
    "channel_table",
    "ReportBuilder",
    "weights_table",
    "weight_ranges",
    "reconstruction_panels",
    "shrink_check",
    "count_table",
    "plot_channels",
    "gpu_results",
    "benchmark_table",
    "keep_together",
    "caption_html",
]

warnings.warn(
    "alphaprune.report.figures is split: import from alphaprune.report.plots, .html, .tables "
    "and .outputs",
    DeprecationWarning,
    stacklevel=2,
)
