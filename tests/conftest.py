"""Shared test fixtures."""

from pathlib import Path

import pytest
import torch

CI_PARAMS = Path(__file__).resolve().parents[1] / "params" / "ci.yaml"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small tensors: one intra-op thread is as fast, and far faster on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def session_run_store(tmp_path_factory):
    """A run store for the whole session, so that module-scoped fixtures (the CI report) never
    train into the checkout's runs/ either."""
    root = tmp_path_factory.mktemp("session-run-store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ALPHAPRUNE_RUNS", str(root))
        yield root


@pytest.fixture(autouse=True)
def run_store(tmp_path_factory, monkeypatch):
    """Every test (and every notebook it runs) uses its own run store, never the checkout's runs/."""
    root = tmp_path_factory.mktemp("run-store")
    monkeypatch.setenv("ALPHAPRUNE_RUNS", str(root))
    return root


@pytest.fixture(autouse=True)
def latency_cache(tmp_path_factory, monkeypatch):
    """Latency tables go to a folder of the test's own, never to ~/.cache/alphaprune."""
    root = tmp_path_factory.mktemp("latency-cache")
    monkeypatch.setenv("ALPHAPRUNE_CACHE", str(root))
    return root


@pytest.fixture
def flops_clock(monkeypatch):
    """A deterministic clock for the latency code: every timed call 'takes' 1 ms per MFLOP it
    computes, so latency tables, anchors and measurements are exact and repeatable."""
    from torch.utils.flop_counter import FlopCounterMode

    from alphaprune.core import runtimes

    def block_ms(call, calls, device):
        with FlopCounterMode(display=False) as counter:
            call()
        return calls * counter.get_total_flops() / 1e6

    monkeypatch.setattr(runtimes, "_block_ms", block_ms)


@pytest.fixture(scope="session")
def ci_report(tmp_path_factory, session_run_store) -> Path:
    """The CI report (params/ci.yaml), built once per session (about 1.5 minutes on 2 cores) for
    the tests that read it (tests/test_report.py, tests/test_report_prose.py); mark them slow."""
    from alphaprune.report.runner import run_report

    out = tmp_path_factory.mktemp("ci_report")
    assert run_report(CI_PARAMS, out_dir=out) == out.resolve()
    return out


def pytest_collection_modifyitems(config, items):
    """The quick tier (``-m 'not slow'``) never builds a report: a test that uses the CI report
    must carry the ``slow`` marker, else the run stops here and names it."""
    unmarked = [
        item.nodeid
        for item in items
        if "ci_report" in getattr(item, "fixturenames", ())
        and item.get_closest_marker("slow") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "mark these @pytest.mark.slow (they build the CI report): " + ", ".join(unmarked)
        )
