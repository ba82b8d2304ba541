"""The addendum's benchmark table flags timing differences smaller than their spread, and its
caption says how big the masked model really is."""

from __future__ import annotations

import pandas as pd

from alphaprune.report.sections import masked_size, timing_flags


def _bench(p10: list[float], p90: list[float], params_ratio: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": ["original", "masked", "shrunk"],
            "latency_ms_p10": p10,
            "latency_ms_p90": p90,
            "params_ratio": params_ratio,
        }
    )


def test_a_row_whose_range_overlaps_the_original_is_within_noise() -> None:
    # week 10 on a loaded CPU: shrunk p10/p90 14.5/302 ms against the original's 100/130 ms
    bench = _bench([100.0, 95.0, 14.5], [130.0, 140.0, 302.0], [1.0, 1.0, 0.25])
    assert timing_flags(bench) == ["", "within noise", "within noise"]
    clear = _bench([100.0, 95.0, 40.0], [130.0, 140.0, 60.0], [1.0, 1.0, 0.25])
    assert timing_flags(clear) == ["", "within noise", ""]


def test_the_masked_model_is_called_full_size_only_when_it_is() -> None:
    assert masked_size(_bench([1, 1, 1], [2, 2, 2], [1.0, 1.0, 0.25])) == "α = 0, full size"
    partly = masked_size(_bench([1, 1, 1], [2, 2, 2], [1.0, 0.6312, 0.25]))
    assert "full size" not in partly and "0.631 of the original's parameters" in partly
