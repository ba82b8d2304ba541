"""Report reading: captions and cells that do not break mid-phrase, readable weight figure with
a diverged run, measured GPU results from a CSV."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from alphaprune.report import html as rh
from alphaprune.report import plots, tables


def test_captions_and_cells_keep_numbers_and_phrases_together() -> None:
    html = rh.caption_html("difference 3e-07 (tolerance 0.0001) on 128×128 images, 25.07 dB")
    for number in ("3e-07", "0.0001", "128×128", "25.07 dB"):
        assert f'<span class="nobreak">{number}</span>' in html
    assert rh.keep_together("constant α = 0") == "constant α\u00a0=\u00a00"
    assert rh.keep_together("α 1 → 0.5 → 0") == "α\u00a01\u00a0→ 0.5\u00a0→ 0"
    table = rh.ReportBuilder().table(pd.DataFrame({"schedule": ["constant α = 0"]}), "x 3e-07")
    assert "constant α\u00a0=\u00a00" in table.data


def test_weight_figure_uses_log_scale_for_a_diverged_run() -> None:
    rows = [
        {"layer": f"conv{i}", "run": run, "l2_ratio": ratio}
        for i in range(3)
        for run, ratio in (("ok", 1.02), ("diverged", 25.0))
    ]
    fig = plots.plot_weight_ratios_by_run(pd.DataFrame(rows))
    assert fig.axes[0].get_yscale() == "log"
    calm = pd.DataFrame([{"layer": "conv0", "run": "ok", "l2_ratio": 1.02}])
    assert plots.plot_weight_ratios_by_run(calm).axes[0].get_yscale() == "linear"


def test_gpu_results_csv_is_labelled(tmp_path: Path) -> None:
    path = tmp_path / "shrink_speed_relu3_1.csv"
    pd.DataFrame(
        [
            {
                "model": "shrunk",
                "latency_ms_median": 1.5,
                "device": "cuda",
                "device_name": "H200",
                "measured_at": "2026-11-20 10:00 UTC",
            }
        ]
    ).to_csv(path, index=False)
    table = tables.gpu_results(path)
    assert table["source"][0] == path.name and table["device_name"][0] == "H200"
    assert table["measured_at"][0] == "2026-11-20 10:00 UTC"
    pd.read_csv(path).drop(columns="measured_at").to_csv(path, index=False)  # an older CSV
    assert tables.gpu_results(path)["measured_at"][0] == "date not recorded"
    with pytest.raises(FileNotFoundError, match="gpu_check.sh"):
        tables.gpu_results(tmp_path / "missing.csv")


def test_markdown_prose_keeps_alpha_equals_number_together() -> None:
    text = rh.ReportBuilder.markdown("at α =\n0. and α = 0.1\n> quoted <b>bold</b>").data
    assert text == "at α\u00a0=\u00a00. and α\u00a0=\u00a00.1\n> quoted <b>bold</b>"
