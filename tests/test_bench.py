"""Benchmarks: CPU table, interleaving, torch-pruning peer, and the NVML sampling path (faked)."""

from __future__ import annotations

import itertools
import math
import sys
import threading
import time
import types

import pytest
import torch
from torch import nn

from alphaprune import attach_gates, build_autoencoder, gates
from alphaprune.bench import (
    BENCH_COLUMNS,
    TRAIN_COLUMNS,
    benchmark,
    compare_pruned,
    standard_models,
    torch_pruning_model,
    train_step_benchmark,
)
from alphaprune.bench.inference import ModelTally
from alphaprune.bench.monitor import Sample, Sampler, Window, nvml_reader, window_stats
from alphaprune.bench.timing import MIN_ROUNDS, block_size, rotation

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models, a shared machine


def wait_for(condition, timeout: float = 5.0) -> None:
    """Poll ``condition`` until it is true (a generous bound, not a timing assertion)."""
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


# --- benchmark() on CPU ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cpu_table(one_torch_thread):  # its rows record threads == 1
    torch.manual_seed(0)
    model = build_autoencoder("relu2_1")
    return compare_pruned(
        model,
        keep=0.5,
        target="both",
        torch_pruning=False,
        batch_size=2,
        image_size=16,
        repeats=4,
        warmup=1,
        progress=False,
    )


@pytest.mark.heavy
def test_compare_pruned_columns_and_sane_values(cpu_table):
    table = cpu_table.set_index("model")
    assert list(cpu_table.columns) == ["model", "keep", "target"] + BENCH_COLUMNS[1:]
    assert list(table.index) == ["original", "masked", "shrunk"]
    assert (table["latency_ms_median"] > 0).all()
    assert (table["latency_ms_p10"] <= table["latency_ms_median"]).all()
    assert (table["latency_ms_median"] <= table["latency_ms_p90"]).all()
    expected = 2 / table["latency_ms_median"] * 1e3
    assert table["throughput_img_s"].tolist() == pytest.approx(expected.tolist())
    # Masking keeps every tensor full size; shrinking cuts FLOPs and parameters.
    assert table.loc["masked", "flops_per_image"] == table.loc["original", "flops_per_image"]
    assert table.loc["shrunk", "flops_per_image"] < table.loc["original", "flops_per_image"]
    assert table.loc["shrunk", "params"] < table.loc["original", "params"]
    for column in ("latency_ratio", "flops_ratio", "params_ratio"):
        assert table.loc["original", column] == 1.0
    assert table.loc["shrunk", "flops_ratio"] == pytest.approx(
        table.loc["shrunk", "flops_per_image"] / table.loc["original", "flops_per_image"]
    )
    assert 0.15 < table.loc["shrunk", "flops_ratio"] < 0.4  # about keep² = 0.25
    assert (table["cpu_util_pct"] >= 0).all()
    assert (table["rss_peak_mib"] > 10).all()


@pytest.mark.heavy
def test_compare_pruned_sweeps_keep_fractions_in_one_run():
    table = compare_pruned(
        build_autoencoder("relu1_1"),
        keep=[0.75, 0.25],
        target="encoder",
        rows=("shrunk",),
        torch_pruning=False,
        batch_size=1,
        image_size=8,
        repeats=2,
        warmup=0,
        progress=False,
    )
    assert table["model"].tolist() == ["original", "shrunk", "shrunk"]
    assert table["keep"].tolist() == [1.0, 0.75, 0.25]
    assert (table["target"] == "encoder").all()
    flops = table["flops_per_image"].tolist()
    assert flops[0] > flops[1] > flops[2]
    with pytest.raises(ValueError, match="'pruned'"):
        compare_pruned(build_autoencoder("relu1_1"), rows=("pruned",))


@pytest.mark.heavy
def test_cpu_rows_record_conditions_and_leave_gpu_columns_empty(cpu_table):
    row = cpu_table.iloc[0]
    assert row["device"] == "cpu"
    assert row["torch_version"] == torch.__version__
    assert row["threads"] == 1
    assert (row["batch_size"], row["image_size"]) == (2, 16)
    assert (row["timed_batches"], row["warmup_batches"], row["block_batches"]) == (4, 1, 1)
    assert isinstance(row["device_name"], str) and row["device_name"]
    gpu_columns = [
        "gpu_util_pct_mean",
        "gpu_util_pct_max",
        "gpu_util_samples",
        "gpu_util_rate_hz",
        "torch_peak_alloc_mib",
        "torch_peak_activation_mib",
        "nvml_mem_used_mib",
    ]
    assert cpu_table[gpu_columns].isna().all().all()


def test_flops_of_a_stride_2_transposed_convolution_are_counted_per_input_pixel():
    deconv = nn.ConvTranspose2d(3, 6, kernel_size=4, stride=2, padding=1)
    table = benchmark(
        {"deconv": deconv}, batch_size=1, image_size=8, repeats=1, warmup=0, progress=False
    )
    # 2 FLOPs per multiply-add, C_in * C_out * k * k multiply-adds per *input* pixel (8 x 8);
    # counting per output pixel (16 x 16) would give four times as much.
    assert table["flops_per_image"].iloc[0] == 2 * 3 * 6 * 4 * 4 * 8 * 8


def test_time_utilisation_and_memory_never_share_a_column():
    kinds = {
        "time": [c for c in BENCH_COLUMNS if "_ms" in c],
        "util": [c for c in BENCH_COLUMNS if "util" in c and "samples" not in c and "hz" not in c],
        "memory": [c for c in BENCH_COLUMNS if c.endswith("_mib")],
    }
    assert kinds["time"] and kinds["util"] and kinds["memory"]
    for a, b in itertools.combinations(kinds.values(), 2):
        assert not set(a) & set(b)
    assert all(
        c.endswith("_pct") or c.endswith("_pct_mean") or c.endswith("_pct_max")
        for c in kinds["util"]
    )


class Logged(nn.Module):
    """A 1x1 convolution that appends its name to a shared log on every forward."""

    def __init__(self, name: str, log: list[str], delay: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.tag, self.log, self.delay = name, log, delay

    def __deepcopy__(self, memo):  # keep the shared log when benchmark() copies the model
        new = Logged(self.tag, self.log, self.delay)
        new.load_state_dict(self.state_dict())
        return new

    def forward(self, x):
        self.log.append(self.tag)
        if self.delay:
            time.sleep(self.delay)
        return self.conv(x)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (1, "ABC BCA CAB ABC".replace(" ", "")),
        (2, "AABBCC BBCCAA".replace(" ", "")),
    ],
)
def test_models_are_timed_interleaved_with_rotating_order(block, expected):
    log: list[str] = []
    models = {name: Logged(name, log) for name in "ABC"}
    repeats = len(expected) // 3
    table = benchmark(
        models,
        batch_size=1,
        image_size=4,
        repeats=repeats,
        warmup=2,
        block=block,
        progress=False,
    )
    assert "".join(log[-len(expected) :]) == expected
    turns = [w["model"] for w in table.attrs["windows"]]
    assert "".join(turns) == expected[::block]
    assert {name: log.count(name) for name in "ABC"} == dict.fromkeys("ABC", 1 + 2 + repeats)
    assert (table["block_batches"] == block).all()


def test_benchmark_leaves_the_callers_models_alone():
    model = build_autoencoder("relu1_1").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    benchmark({"m": model}, batch_size=1, image_size=8, repeats=2, warmup=0, progress=False)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_benchmark_rejects_bad_arguments():
    model = build_autoencoder("relu1_1")
    with pytest.raises(ValueError, match="'nope'"):
        benchmark({"a": model}, reference="nope", progress=False)
    with pytest.raises(ValueError, match="non-empty"):
        benchmark({}, progress=False)
    with pytest.raises(ValueError, match="repeats"):
        benchmark({"a": model}, repeats=0, progress=False)
    with pytest.raises(TypeError, match="models\\['a'\\]"):
        benchmark({"a": "not a model"}, progress=False)


@pytest.mark.heavy
def test_injected_gpu_reader_fills_the_utilisation_and_memory_columns():
    """The NVML columns' plumbing, on CPU: a fake reader returns known values per model."""
    log: list[str] = []
    models = {"A": Logged("A", log, delay=0.02), "B": Logged("B", log, delay=0.02)}

    def fake_read():  # utilisation depends on which model ran last
        running = log[-1] if log else "A"
        return {"gpu_util_pct": 90.0 if running == "A" else 30.0, "nvml_mem_used_mib": 512.0}

    table = benchmark(
        models,
        batch_size=1,
        image_size=4,
        repeats=6,
        warmup=1,
        block=3,
        progress=False,
        sample_interval=0.005,
        settle_s=0.0,
        gpu_reader=fake_read,
    ).set_index("model")
    assert (table["gpu_util_samples"] > 0).all()
    assert (table["gpu_util_rate_hz"] >= 10).all()
    assert (table["nvml_mem_used_mib"] == 512.0).all()
    samples = table.attrs["samples"]
    assert len(samples) >= table["gpu_util_samples"].sum()
    assert all({"time_s", "gpu_util_pct", "rss_mib"} <= set(s) for s in samples)
    # A sample inside a window of A may still see B's last forward for a moment; on average A
    # reads clearly higher, and each maximum is one of the two values the fake returns.
    assert table.loc["A", "gpu_util_pct_mean"] > table.loc["B", "gpu_util_pct_mean"]
    assert set(table["gpu_util_pct_max"]) <= {30.0, 90.0}
    assert table.loc["A", "gpu_util_pct_max"] == 90.0


def test_block_size_fills_min_block_s_on_cuda_but_leaves_min_rounds():
    assert block_size(10.0, repeats=300, min_block_s=0.25, cuda=True) == 25  # 250 ms / 10 ms
    assert block_size(10.0, repeats=30, min_block_s=0.25, cuda=True) == 30 // MIN_ROUNDS
    assert block_size(1e6, repeats=30, min_block_s=0.25, cuda=True) == 1
    assert block_size(10.0, repeats=300, min_block_s=0.25, cuda=False) == 1
    assert block_size(math.nan, repeats=300, min_block_s=0.25, cuda=True) == 1


def test_rotation_shortens_the_last_round_when_block_does_not_divide_repeats():
    turns = list(rotation(["A", "B"], repeats=5, block=2))
    assert turns == [("A", 2), ("B", 2), ("B", 2), ("A", 2), ("A", 1), ("B", 1)]


def test_tally_row_keeps_cuda_peaks_and_falls_back_to_unsettled_nvml_memory():
    """The CUDA-only bookkeeping, without a GPU: peaks are maxima over turns, in MiB."""
    tally = ModelTally("m", params=10, flops=20)
    tally.add_turn([1.0, 3.0], wall_s=0.004, cpu_s=0.002, rss_mib=100.0)
    tally.add_turn([2.0], wall_s=0.002, cpu_s=0.001, rss_mib=90.0)
    tally.add_cuda_peak(peak_bytes=300 * 2**20, base_bytes=100 * 2**20)
    tally.add_cuda_peak(peak_bytes=250 * 2**20, base_bytes=0)
    sampled = {"rss_mib": {"max": 120.0}, "nvml_mem_used_mib": {"max": 700.0}}
    row = tally.row(batch_size=4, sampled=sampled, settled={}, rate_hz=20.0)
    assert (row["latency_ms_median"], row["throughput_img_s"]) == (2.0, 2000.0)
    assert row["cpu_util_pct"] == pytest.approx(50.0)
    assert row["rss_peak_mib"] == 120.0
    assert (row["torch_peak_alloc_mib"], row["torch_peak_activation_mib"]) == (300.0, 250.0)
    assert row["nvml_mem_used_mib"] == 700.0  # no reading after settling: all of them
    assert (row["gpu_util_samples"], row["gpu_util_rate_hz"]) == (0, 20.0)
    assert math.isnan(row["gpu_util_pct_mean"])
    no_reader = tally.row(batch_size=4, sampled=sampled, settled=None, rate_hz=math.nan)
    assert math.isnan(no_reader["nvml_mem_used_mib"]) and math.isnan(no_reader["gpu_util_samples"])


# --- standard models and the torch-pruning peer ---------------------------------------------


def test_standard_models_masked_equals_shrunk():
    torch.manual_seed(1)
    models = standard_models(build_autoencoder("relu2_1"), keep=0.5, torch_pruning=False)
    assert list(models) == ["original", "masked", "shrunk"]
    assert gates(models["masked"]) and not gates(models["shrunk"])
    assert all(g.get_alpha() == 0.0 for g in gates(models["masked"]).values())
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(models["shrunk"](x), models["masked"](x), atol=1e-5, rtol=1e-4)


def test_torch_pruning_peer_has_our_channels_and_our_function():
    import torch_pruning  # noqa: F401  (the test environment installs the 'compare' extra)

    torch.manual_seed(2)
    models = standard_models(build_autoencoder("relu2_1"), keep=0.5, target="both")
    ours, peer = models["shrunk"], models["torch-pruning"]
    assert [p.shape for p in ours.parameters()] == [p.shape for p in peer.parameters()]
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(peer(x), ours(x), atol=1e-5, rtol=1e-4)


def test_torch_pruning_model_uses_the_given_channel_indices():
    import torch_pruning  # noqa: F401  (the test environment installs the 'compare' extra)

    original = build_autoencoder("relu1_1")
    mask = torch.zeros(64, dtype=torch.bool)
    mask[[1, 5, 7]] = True
    peer = torch_pruning_model(original, {"encoder.0": mask}, torch.zeros(1, 3, 8, 8))
    torch.testing.assert_close(peer.encoder[0].weight, original.encoder[0].weight[[1, 5, 7]])
    with pytest.raises(KeyError, match="encoder.99"):
        torch_pruning_model(original, {"encoder.99": mask}, torch.zeros(1, 3, 8, 8))


def test_missing_torch_pruning_skips_the_row_with_a_note(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch_pruning", None)  # import now raises ImportError
    models = standard_models(build_autoencoder("relu1_1"), keep=0.5, torch_pruning="auto")
    assert list(models) == ["original", "masked", "shrunk"]
    assert "torch_pruning not installed" in capsys.readouterr().out
    with pytest.raises(ImportError, match="torch-pruning"):
        standard_models(build_autoencoder("relu1_1"), torch_pruning=True)


# --- training-step benchmark ----------------------------------------------------------------


def test_train_step_benchmark_columns_and_overhead():
    model = build_autoencoder("relu1_1")
    gated = build_autoencoder("relu1_1")
    gated.load_state_dict(model.state_dict())
    attach_gates(gated, keep=0.5, target="both", alpha=0.5)
    table = train_step_benchmark(
        {"plain": model, "gated": gated},
        batch_size=2,
        image_size=8,
        steps=3,
        warmup=1,
        progress=False,
    ).set_index("model")
    assert list(table.reset_index().columns) == TRAIN_COLUMNS
    assert (table["step_ms_p10"] <= table["step_ms_median"]).all()
    assert (table["step_ms_median"] <= table["step_ms_p90"]).all()
    assert table.loc["plain", "overhead_pct"] == 0.0
    expected = 100 * (
        table.loc["gated", "step_ms_median"] / table.loc["plain", "step_ms_median"] - 1
    )
    assert table.loc["gated", "overhead_pct"] == pytest.approx(expected)
    assert table.loc["plain", "params"] == table.loc["gated", "params"]  # gates are buffers


# --- the sampler and NVML (faked) -----------------------------------------------------------


def test_window_stats_arithmetic():
    samples = [Sample(float(t), {"u": float(v)}) for t, v in enumerate([10, 20, 30, 40, 50, 60])]
    windows = [Window("A", 0.0, 1.0), Window("B", 2.0, 4.0), Window("A", 5.0, 5.0)]
    stats = window_stats(samples, windows)
    assert stats["A"]["u"] == {"mean": (10 + 20 + 60) / 3, "max": 60.0, "n": 3.0}
    assert stats["B"]["u"] == {"mean": 40.0, "max": 50.0, "n": 3.0}
    settled = window_stats(samples, windows, settle=1.0)  # drops the first second of each
    assert settled["A"]["u"] == {"mean": 20.0, "max": 20.0, "n": 1.0}
    assert settled["B"]["u"] == {"mean": 45.0, "max": 50.0, "n": 2.0}
    assert window_stats(samples, [Window("C", 10.0, 11.0)]) == {"C": {}}


def fake_pynvml(utilisation: list[float], used_bytes: int) -> types.ModuleType:
    """A stand-in for ``pynvml`` that replays ``utilisation`` and records what it returned."""
    module = types.ModuleType("pynvml")
    values = itertools.cycle(utilisation)
    module.returned = []
    module.handles = []

    def init():
        module.initialised = True

    def handle(index):
        module.handles.append(index)
        return f"handle{index}"

    def rates(h):
        assert h == "handle0"
        value = next(values)
        module.returned.append(value)
        return types.SimpleNamespace(gpu=value, memory=99)  # .memory must not be used

    module.nvmlInit = init
    module.nvmlDeviceGetHandleByIndex = handle
    module.nvmlDeviceGetUtilizationRates = rates
    module.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=used_bytes, total=0)
    return module


@pytest.mark.heavy
def test_nvml_sampler_mean_max_rate_and_stop(monkeypatch):
    fake = fake_pynvml([20, 40, 60, 100], used_bytes=1536 * 2**20)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    read = nvml_reader(0)
    assert fake.initialised and fake.handles == [0]
    with Sampler(read) as sampler:  # default interval
        wait_for(lambda: len(sampler.samples) >= 8)
    assert not sampler.thread.is_alive()
    assert sampler.rate_hz() >= 10
    utils = [s.values["gpu_util_pct"] for s in sampler.samples]
    assert utils == fake.returned[: len(utils)]
    stats = window_stats(sampler.samples, [Window("all", sampler.started, sampler.stopped)])
    assert stats["all"]["gpu_util_pct"]["mean"] == pytest.approx(sum(utils) / len(utils))
    assert stats["all"]["gpu_util_pct"]["max"] == 100.0
    assert stats["all"]["gpu_util_pct"]["n"] == len(utils)
    assert stats["all"]["nvml_mem_used_mib"] == {"mean": 1536.0, "max": 1536.0, "n": len(utils)}


def test_sampler_thread_stops_when_the_body_raises():
    with pytest.raises(KeyError, match="body"):
        with Sampler(lambda: {"u": 1.0}, interval=0.01) as sampler:
            wait_for(lambda: len(sampler.samples) >= 2)
            raise KeyError("body")
    assert not sampler.thread.is_alive()
    count = len(sampler.samples)
    time.sleep(0.05)
    assert len(sampler.samples) == count  # no reading after the stop


def test_sampler_read_error_stops_and_is_reraised():
    calls = itertools.count()

    def read():
        if next(calls) >= 3:
            raise OSError("NVML went away")
        return {"u": 1.0}

    sampler = Sampler(read, interval=0.005).start()
    wait_for(lambda: not sampler.thread.is_alive())
    with pytest.raises(RuntimeError, match="NVML went away"):
        sampler.stop()
    assert len(sampler.samples) == 3
    assert not any(t.name == "alphaprune-sampler" and t.is_alive() for t in threading.enumerate())


def test_sampler_rejects_bad_interval_and_double_start():
    with pytest.raises(ValueError, match="interval"):
        Sampler(lambda: {}, interval=0)
    sampler = Sampler(lambda: {}, interval=0.01).start()
    with pytest.raises(RuntimeError, match="twice"):
        sampler.start()
    sampler.stop()
    assert math.isnan(Sampler(lambda: {}).rate_hz())


def test_nvml_reader_names_the_package_when_pynvml_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(ImportError, match="nvidia-ml-py"):
        nvml_reader(0)
