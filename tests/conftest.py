"""Shared test fixtures, and the test tiers.

Tiers (``make test`` runs them all): ``unit`` is every test without a marker — no training, no
Jupyter kernel, each a fraction of a second, the tier under a minute on a loaded machine
(``make test-unit``, measured by ``benchmarks/unit_tier_time.py``); ``training`` trains models
(engine epochs); ``kernel`` starts Jupyter kernels (papermill); ``heavy`` runs whole models end
to end without either (full-size VGG-19, wall-clock timing, exporters, the bundled data set,
coverage simulations); ``slow`` builds whole reports or studies, or takes seconds.
A unit test that trains or starts a kernel fails and says which marker it needs, so the unit
tier stays what it claims (also when a fixture does the training).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# jsonschema (under nbformat) builds a lark grammar for its optional RFC 3987 "iri" format check
# when rfc3987_syntax is installed (JupyterLab pulls it in): seconds at import, for a format no
# notebook schema uses. Tests run without that optional checker.
sys.modules.setdefault("rfc3987_syntax", None)

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


_test_folders = iter(range(1, 1 << 30))


@pytest.fixture(scope="session")
def per_test_root(tmp_path_factory) -> Path:
    """The parent of every test's own run store and latency cache (one folder each, by number)."""
    return tmp_path_factory.mktemp("per-test")


@pytest.fixture(autouse=True)
def run_store(per_test_root, monkeypatch):
    """Every test (and every notebook it runs) uses its own run store, never the checkout's runs/.
    The folder is named, not made: the store makes it when something is written (a mkdir per
    test, twice, was a second of the unit tier)."""
    root = per_test_root / f"test-{next(_test_folders)}" / "runs"
    monkeypatch.setenv("ALPHAPRUNE_RUNS", str(root))
    return root


@pytest.fixture(autouse=True)
def latency_cache(run_store, monkeypatch):
    """Latency tables go to a folder of the test's own, never to ~/.cache/alphaprune."""
    root = run_store.parent / "latency-cache"
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


_EXCLUDING = re.compile(r"^\s*not \w+(\s+and\s+not \w+)*\s*$")
_MODULE_MARKS = re.compile(r"^pytestmark = (.*)$", re.M)


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    """A test module whose ``pytestmark`` carries a marker that ``-m 'not X and not Y'``
    excludes is not imported at all: each of its tests would be deselected anyway, and
    importing it (papermill, exporters, …) is seconds of the unit tier's start."""
    expression = config.getoption("markexpr", "") or ""
    if not _EXCLUDING.match(expression) or collection_path.suffix != ".py":
        return None
    if not collection_path.name.startswith("test_"):
        return None
    found = _MODULE_MARKS.search(collection_path.read_text())
    excluded = set(re.findall(r"not (\w+)", expression))
    if found and excluded & set(re.findall(r"pytest\.mark\.(\w+)\b(?!\()", found.group(1))):
        return True
    return None


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


# -- tiers -------------------------------------------------------------------------------------

HEAVY_MARKERS = ("training", "kernel", "slow", "heavy")
_current: dict[str, object] = {"unit": False, "test": ""}
_THREADS = {"default": torch.get_num_threads()}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    """Before the test's fixtures are set up: is it a unit test (no tier marker)? After them, a
    unit test runs on one torch thread (its tensors are small, and two threads on a busy 2-core
    machine spin against the load); teardown gives back what the fixtures had set."""
    unit = not any(item.get_closest_marker(m) for m in HEAVY_MARKERS)
    _current.update(unit=unit, test=item.nodeid)
    result = yield
    if unit:
        _THREADS["before"] = torch.get_num_threads()
        torch.set_num_threads(1)
    return result


def pytest_runtest_teardown(item, nextitem):
    _current["unit"] = False
    before = _THREADS.pop("before", None)
    if before is not None and before != torch.get_num_threads():
        torch.set_num_threads(before)


def _refusal(marker: str, what: str) -> AssertionError:
    return AssertionError(
        f"{_current['test']} {what}: mark it @pytest.mark.{marker} (or mark the module with "
        "pytestmark), the unit tier must not"
    )


def _refuse_in_unit_tests(module, name: str, marker: str, what: str) -> None:
    original = getattr(module, name)

    def guarded(*args, **kwargs):
        if _current["unit"]:
            raise _refusal(marker, what)
        return original(*args, **kwargs)

    setattr(module, name, guarded)


class _UnitTierPopen(subprocess.Popen):
    """``subprocess.Popen`` that refuses to start a Jupyter kernel inside a unit test (however it
    is started: papermill, nbclient, jupyter_client). Patched in at configure time instead of
    wrapping papermill, whose import (nbformat's schema checks) costs seconds of the unit tier."""

    def __init__(self, args, *rest, **kwargs):
        words = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
        if _current["unit"] and any("ipykernel" in str(word) for word in words):
            raise _refusal("kernel", "starts a Jupyter kernel")
        super().__init__(args, *rest, **kwargs)


def pytest_configure(config):
    from alphaprune.engine import train

    _refuse_in_unit_tests(train, "_train_epoch", "training", "trains a model")
    subprocess.Popen = _UnitTierPopen
    launcher = sys.modules.get("jupyter_client.launcher")
    if launcher is not None:
        launcher.Popen = _UnitTierPopen
