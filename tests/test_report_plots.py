"""Figures a reader can use: a run whose loss leaves the axis stays visible, and figures are
sized to print near full size (their text stays readable on A4)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

from alphaprune.report.plots import plot_training  # noqa: E402


def _metrics(losses: list[float], alphas: list[float | None]) -> pd.DataFrame:
    return pd.DataFrame({"epoch": range(len(losses)), "val_loss": losses, "alpha": alphas})


def test_an_exploded_run_is_drawn_at_the_top_edge_not_dropped() -> None:
    metrics = {
        "baseline": _metrics([0.01, 0.005, 0.004], [None] * 3),
        "decay": _metrics([0.02, 0.01, 0.009], [1.0, 0.5, 0.0]),
        "lr0.1": _metrics([4e10, float("inf")], [0.0, 0.0]),  # week 9's exploded run
    }
    fig = plot_training(metrics, {"lr0.1": "α = 0, lr 0.1"})
    ax_loss = fig.axes[0]
    top = ax_loss.get_ylim()[1]
    markers = [line for line in ax_loss.lines if line.get_marker() == "^"]
    drawn = [y for line in markers for y in line.get_ydata()]
    assert len(drawn) == 2 and all(y <= top for y in drawn)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("α = 0, lr 0.1 (up to" in label and "above the axis" in label for label in labels)
    assert fig.get_size_inches()[0] <= 7.5
