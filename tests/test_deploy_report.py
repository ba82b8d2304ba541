"""Deployment in the weekly addendum and the benchmarks: the exported model's row, the budget's
table and figure, and the CPU-runnable parts of the GPU script (``benchmarks/deploy_gpu.py``)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

import alphaprune as ap
from alphaprune.bench import benchmark
from alphaprune.core.runtimes import OrtModule, ort_session
from alphaprune.engine.export import export
from alphaprune.report import deploy

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]


def shrunk_unet():
    torch.manual_seed(0)
    model = ap.build_unet(width=8, depth=2).eval()
    ap.attach_gates(model, keep=0.5, target="all", alpha=0.0)
    return model, ap.shrink(model)


def settings(**changes):
    values = {"exported": True, "device": "cpu", "batch_size": 2, "image_size": 32}
    return SimpleNamespace(**{**values, **changes})


@pytest.mark.slow  # an ONNX export and a benchmark run (~10-25 s)
def test_the_exported_row_counts_as_the_shrunk_model(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    _, small = shrunk_unet()
    export(small, torch.zeros(1, 3, 32, 32), tmp_path / "s.onnx", verbose=False)
    ort = OrtModule(ort_session(tmp_path / "s.onnx", threads=1), counted_as=small)
    table = benchmark(
        {"shrunk": small, deploy.EXPORTED: ort},
        batch_size=2,
        image_size=32,
        repeats=2,
        warmup=1,
        progress=False,
    ).set_index("model")
    for column in ("params", "flops_per_image"):
        assert table.loc[deploy.EXPORTED, column] == table.loc["shrunk", column] > 0
    assert table.loc[deploy.EXPORTED, "latency_ms_median"] > 0


@pytest.mark.slow  # exports and times three models (~15 s on a busy machine)
def test_the_addendum_adds_the_exported_row_only_where_it_can(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    _, small = shrunk_unet()
    models = {"shrunk": small}
    deploy.add_exported(models, settings(exported=False))
    assert list(models) == ["shrunk"]
    deploy.add_exported(models, settings(device="cuda"))
    assert list(models) == ["shrunk"] and "no exported row on a GPU" in capsys.readouterr().out
    deploy.add_exported(models, settings())
    assert list(models) == ["shrunk", deploy.EXPORTED]
    record = json.loads((tmp_path / "models" / "shrunk.onnx.json").read_text())
    assert record["verification"]["inputs"] == [[3, 3, 32, 32]]  # a batch it was not exported at
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(models[deploy.EXPORTED](x), small(x), rtol=1e-4, atol=1e-5)


def bench_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": ["original", "masked", "shrunk", deploy.EXPORTED],
            "latency_ratio": [1.0, 1.01, 0.52, 0.41],
            "flops_ratio": [1.0, 1.0, 0.40, 0.40],
        }
    )


RECORD = {
    "kind": "latency",
    "target": 0.5,
    "predicted": 0.51,
    "measured": 0.49,
    "conditions": {
        "device": "cpu",
        "device_name": "Some CPU",
        "runtime": "torch",
        "threads": 1,
        "input_size": [[8, 3, 128, 128]],
    },
}


@pytest.mark.heavy
def test_the_budget_table_and_figure() -> None:
    table = deploy.budget_table(RECORD, bench_table())
    row = table.iloc[0]
    assert row["budget"] == "latency 0.5" and row["predicted_ratio"] == 0.51
    assert row["measured_ratio_at_pruning"] == 0.49 and row["latency_ratio_here"] == 0.52
    assert (
        "8×3×128×128" in row["measured_at_pruning_on"]
        and "1 thread" in row["measured_at_pruning_on"]
    )
    figure = deploy.plot_latency_vs_flops(bench_table(), RECORD, "CPU: Some CPU")
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert "latency budget 0.5" in labels and "predicted when pruning" in labels
    flops = {**RECORD, "kind": "flops", "measured": None}
    labels = deploy.plot_latency_vs_flops(bench_table(), flops, "CPU").axes[0]
    assert "predicted when pruning" not in labels.get_legend_handles_labels()[1]


def test_the_budget_record_is_read_from_the_run_folder(tmp_path) -> None:
    checkpoint = tmp_path / "runs" / "x" / "checkpoints" / "last.pt"
    checkpoint.parent.mkdir(parents=True)
    assert deploy.budget_record(checkpoint) is None
    (tmp_path / "runs" / "x" / "budget.json").write_text(json.dumps(RECORD))
    assert deploy.budget_record(checkpoint) == RECORD


def gpu_script():
    spec = importlib.util.spec_from_file_location(
        "deploy_gpu", ROOT / "benchmarks" / "deploy_gpu.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.heavy
def test_the_gpu_script_formats_step_runs_on_the_cpu(tmp_path) -> None:
    args = ["formats", "--device", "cpu", "--layer", "relu1_1", "--batch", "1", "--size", "16"]
    assert gpu_script().main([*args, "--repeats", "1", "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "deploy_formats.csv")
    assert len(table) == 4 and set(table["channels_last"]) == {True, False}
    assert set(table["bf16_autocast"]) == {True, False}
    assert (table["latency_ratio"] > 0).all() and (table["batch_size"] == 1).all()


@pytest.mark.slow
def test_the_gpu_script_latency_budget_step_runs_on_the_cpu(tmp_path, flops_clock) -> None:
    args = ["latency-budget", "--device", "cpu", "--layer", "relu2_1", "--batch", "1"]
    args += ["--size", "32", "--repeats", "1", "--out", str(tmp_path)]
    assert gpu_script().main([*args, "--cache-dir", str(tmp_path / "cache")]) == 0
    table = pd.read_csv(tmp_path / "deploy_latency_budget.csv").set_index("call")
    assert table.loc["first", "widths_timed"] > 0 and table.loc["second", "widths_timed"] == 0
    assert abs(table.loc["second", "measured_when_chosen"] - 0.5) <= 0.02


def test_the_gpu_check_script_runs_the_deploy_steps() -> None:
    script = (ROOT / "benchmarks" / "gpu_check.sh").read_text()
    for step in ("deploy_gpu.py formats", "deploy_gpu.py latency-budget", "gate_overhead.py"):
        assert step in script
    assert 'timeout "$LIMIT"' in script


@pytest.mark.heavy
def test_the_report_shows_the_exported_row_and_the_budget(tmp_path, monkeypatch) -> None:
    from alphaprune.report.outputs import Figure, Table, save_figure, save_table
    from alphaprune.report.schema import Notes
    from alphaprune.report.sections import Report
    from alphaprune.report.validation import load_report_params

    # the week's notes quote experiments.csv, which this section-only folder does not hold
    params = load_report_params(ROOT / "params" / "ci.yaml").model_copy(update={"notes": Notes()})
    (tmp_path / "tables").mkdir()
    bench = bench_table().assign(
        latency_ms_median=[10.0, 10.1, 5.2, 4.1],
        latency_ms_p10=1.0,
        latency_ms_p90=20.0,
        throughput_img_s=1.0,
        params=100,
        gpu_util_pct_mean=float("nan"),
        device_label="CPU: Some CPU",
        device_kind="CPU",
        device_name="Some CPU",
        image_size=32,
        batch_size=2,
        timed_batches=3,
    )
    save_table(bench, Table.BENCHMARK, folder=tmp_path)
    save_table(deploy.budget_table(RECORD, bench), Table.BUDGET, folder=tmp_path)
    monkeypatch.chdir(tmp_path)  # figures/ is relative to the report folder
    save_figure(deploy.plot_latency_vs_flops(bench, RECORD, "CPU"), Figure.BENCHMARK)
    save_figure(deploy.plot_latency_vs_flops(bench, RECORD, "CPU"), Figure.LATENCY_FLOPS)
    stage = SimpleNamespace(params=params, folder=tmp_path)
    html = "".join(block.data for block in Report(stage).gpu())
    assert (
        "exported (onnxruntime)" in html and "every ratio is to the original in eager torch" in html
    )
    assert "Budget latency 0.5" in html and "predicted to keep 0.510" in html
    assert "measured when it chose: 0.490" in html and "Latency ratio against FLOPs ratio" in html
