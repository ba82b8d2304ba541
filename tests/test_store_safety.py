"""The run store keeps what reports need and deletes only what it wrote (issue 20): the store's
folder, gc, references that survive a move, holds of work in progress, links and swapped
checkpoints."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from cli_runner import one_line_error
from cli_runner import run_cli as cli

from alphaprune.engine.config import config_from_dict
from alphaprune.errors import UserError
from alphaprune.study.store import RunStore

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.training]

TINY = {
    "name": "tiny",
    "seed": 0,
    "device": "cpu",
    "epochs": 1,
    "steps_per_epoch": 1,
    "model": {"layer": "relu1_1"},
    "data": {"crop": 16, "batch_size": 2, "val_crops": 1},
    "pruning": {"keep": 0.5, "target": "encoder"},
}
FP_A, FP_B, FP_C = "a" * 16, "b" * 16, "c" * 16


def tiny(**changes):
    return config_from_dict({**json.loads(json.dumps(TINY)), **changes})


def store_run(root: Path, fp: str, start: str | None = None) -> Path:
    """A run folder as the store writes it (no training: gc only reads records)."""
    folder = root / fp
    (folder / "checkpoints").mkdir(parents=True)
    start_record = {"run": start, "alpha": None} if start else None
    (folder / "run.json").write_text(json.dumps({"fingerprint": fp, "start": start_record}))
    (folder / "done.json").write_text(json.dumps({"fingerprint": fp}))
    (folder / "checkpoints" / "last.pt").write_bytes(b"weights")
    (folder / "metrics.csv").write_text("epoch\n0\n")
    return folder


# --- which folder is the store ------------------------------------------------------------------


def test_an_empty_ALPHAPRUNE_RUNS_is_unset_and_gc_spares_a_users_folder(tmp_path, monkeypatch):
    (tmp_path / "project" / "notebooks").mkdir(parents=True)
    default = tmp_path / "project" / "runs"  # the project's store, not the installed checkout's
    monkeypatch.setenv("ALPHAPRUNE_PROJECT", str(tmp_path / "project"))
    monkeypatch.setenv("ALPHAPRUNE_RUNS", "")
    mine = tmp_path / "work" / "0123456789abcdef"
    mine.mkdir(parents=True)
    (mine / "precious.txt").write_text("mine")
    result = cli("runs", "gc", cwd=tmp_path / "work")
    assert result.returncode == 0 and str(default) in result.stdout
    assert (mine / "precious.txt").read_text() == "mine"
    # even pointed at it, gc deletes no folder the store did not write
    result = cli("runs", "gc", "--root", str(mine.parent), cwd=tmp_path)
    assert result.returncode == 0 and "removed 0" in result.stdout
    assert "no run.json of the store" in result.stdout and (mine / "precious.txt").exists()


@pytest.mark.parametrize("value", ["runs", "./store", "a/b"])
def test_a_relative_ALPHAPRUNE_RUNS_is_an_error(tmp_path, monkeypatch, value):
    monkeypatch.setenv("ALPHAPRUNE_RUNS", value)
    one_line_error(cli("runs", "list", cwd=tmp_path), "ALPHAPRUNE_RUNS", "relative")
    with pytest.raises(UserError, match="absolute folder"):
        RunStore()
    assert not (tmp_path / value).exists()


def test_a_store_that_is_a_file_is_an_error(tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv("ALPHAPRUNE_RUNS", str(afile))
    one_line_error(cli("runs", "gc", cwd=tmp_path), str(afile), "is a file")
    monkeypatch.delenv("ALPHAPRUNE_RUNS")
    one_line_error(cli("runs", "list", "--root", str(afile), cwd=tmp_path), "is a file")


# --- gc deletes only folders it wrote, and is never stopped half-way ------------------------------


def test_gc_removes_only_run_folders_the_store_wrote(tmp_path):
    root = tmp_path / "store"
    plain = store_run(root, FP_A)
    foreign = store_run(root, FP_B)
    (foreign / "notes.txt").write_text("the user's")
    renamed = store_run(root, FP_C)
    (renamed / "run.json").write_text(json.dumps({"fingerprint": FP_A}))
    messages = []
    assert RunStore(root, log=messages.append).gc() == [FP_A]
    assert not plain.exists() and (foreign / "notes.txt").exists() and renamed.exists()
    said = "\n".join(messages)
    assert "files the store did not write (notes.txt)" in said
    assert "does not name this folder" in said


def test_a_run_folder_that_is_a_link_never_breaks_gc(tmp_path):
    root = tmp_path / "store"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    store_run(root, FP_A)
    (root / FP_B).symlink_to(elsewhere, target_is_directory=True)
    store_run(root, FP_C)
    result = cli("runs", "gc", "--root", str(root), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "removed 2" in result.stdout and "symbolic link" in result.stdout
    assert (root / FP_B).is_symlink() and (elsewhere / "keep.txt").exists()
    assert not (root / FP_A).exists() and not (root / FP_C).exists()


def test_a_run_folder_that_is_a_link_is_never_written_through(tmp_path):
    store = RunStore(tmp_path / "store", log=lambda m: None)
    a = store.run(tiny(), "baseline", progress=False)
    before = (a.run_dir / "run.json").read_text()
    other = tiny(seed=7)
    (store.root / store.fingerprint(other, "baseline")).symlink_to(a.run_dir)
    with pytest.raises(UserError, match="symbolic link"):
        store.run(other, "baseline", progress=False)
    assert (a.run_dir / "run.json").read_text() == before


@pytest.mark.parametrize(
    "content", ["[1, 2]", '{"runs": []}', "{not json", '{"owner": "/x", "runs": [3]}']
)
def test_a_malformed_reference_file_is_one_line_not_a_traceback(tmp_path, content):
    root = tmp_path / "store"
    store_run(root, FP_A)
    (root / ".refs").mkdir()
    (root / ".refs" / "x.json").write_text(content)
    line = one_line_error(cli("runs", "gc", "--root", str(root), cwd=tmp_path), "x.json")
    assert "gc stops" in line and (root / FP_A).exists()  # it may have held that run
    listed = cli("runs", "list", "--root", str(root), cwd=tmp_path)
    assert listed.returncode == 0 and "warning:" in listed.stdout and FP_A in listed.stdout


# --- references survive a move; gone folders keep their runs until forgotten --------------------


def test_references_survive_moving_the_report_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ALPHAPRUNE_PROJECT", str(tmp_path / "project"))
    root = tmp_path / "store"
    store_run(root, FP_A)
    store_run(root, FP_B, start=FP_A)
    store = RunStore(root, log=lambda m: None)
    report = tmp_path / "project" / "reports" / "week10"
    store.add_reference(report, [FP_B])
    moved = report.with_name("week10-old")
    report.rename(moved)  # inside reports/: found again by the id in its runs.json
    assert store.gc() == [] and (root / FP_A).exists() and (root / FP_B).exists()
    assert store.references() == {str(moved.resolve()): [FP_B]}
    elsewhere = tmp_path / "archive" / "week10"
    elsewhere.parent.mkdir()
    moved.rename(elsewhere)  # out of sight: kept (it may still exist) …
    messages = []
    assert RunStore(root, log=messages.append).gc() == []
    assert "--forget-missing" in "\n".join(messages)
    store.add_reference(elsewhere, [FP_B])  # … and its next build finds its own record again
    assert len(list((root / ".refs").glob("*.json"))) == 1
    shutil.rmtree(elsewhere)  # deleted: the user says so
    assert sorted(store.gc(forget_missing=True)) == [FP_A, FP_B]


def test_a_folder_rebuilt_in_place_or_copied_gets_its_own_record(tmp_path):
    root = tmp_path / "store"
    for fp in (FP_A, FP_B, FP_C):
        store_run(root, fp)
    store = RunStore(root, log=lambda m: None)
    report = tmp_path / "reports" / "w"
    store.add_reference(report, [FP_A])
    copy = tmp_path / "reports" / "w-copy"
    shutil.copytree(report, copy)
    store.add_reference(copy, [FP_C])  # a copy is another owner: the original keeps FP_A
    shutil.rmtree(report)
    report.mkdir()
    store.add_reference(report, [FP_B])  # deleted and rebuilt: the old record is stale
    assert sorted(store.gc()) == [FP_A]
    assert len(list((root / ".refs").glob("*.json"))) == 2


# --- work in progress holds its runs ------------------------------------------------------------


def test_gc_while_a_report_trains_keeps_its_finished_baseline(tmp_path, monkeypatch):
    import alphaprune.engine.train as train
    from alphaprune.report.runs import run_all

    store = RunStore(tmp_path / "store", log=lambda m: None)
    real = train.prune
    removed = []

    def prune_after_a_gc(*args, **kwargs):
        removed.extend(RunStore(store.root, log=lambda m: None).gc())
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "prune", prune_after_a_gc)
    report = tmp_path / "report"
    report.mkdir()
    monkeypatch.chdir(report)
    base = {**TINY, "name": "baseline", "output_dir": "runs"}
    experiment = {**base, "name": "p", "schedule": {"kind": "constant", "alpha": 0.0}}
    results = run_all(base, [{"name": "p", "config": experiment}], progress=False, store=store)
    assert removed == [] and results["p"].checkpoint.exists()
    record = json.loads((report / "runs.json").read_text())
    assert list(record["roles"]) == ["runs"] and len(record["runs"]) == 2  # hold replaced


def test_a_report_killed_mid_way_keeps_holding_its_runs(tmp_path, monkeypatch):
    import alphaprune.engine.train as train
    from alphaprune.report.runs import run_all

    store = RunStore(tmp_path / "store", log=lambda m: None)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "prune", killed)
    report = tmp_path / "report"
    report.mkdir()
    monkeypatch.chdir(report)
    base = {**TINY, "name": "baseline", "output_dir": "runs"}
    experiment = {**base, "name": "p", "schedule": {"kind": "constant", "alpha": 0.0}}
    with pytest.raises(KeyboardInterrupt):
        run_all(base, [{"name": "p", "config": experiment}], progress=False, store=store)
    assert store.gc() == [] and (report / "runs" / "baseline" / "done.json").exists()
    assert "runs:in-progress" in json.loads((report / "runs.json").read_text())["roles"]


def test_gc_while_a_study_trains_keeps_its_runs(tmp_path, monkeypatch):
    from test_study import tiny_params

    import alphaprune.engine.train as train
    from alphaprune.study.execution import run_study
    from alphaprune.study.output import write_study
    from alphaprune.study.spec import study_from_params

    store = RunStore(tmp_path / "store", log=lambda m: None)
    real = train.prune
    removed = []

    def prune_after_a_gc(*args, **kwargs):
        removed.extend(RunStore(store.root, log=lambda m: None).gc())
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "prune", prune_after_a_gc)
    out = tmp_path / "study"
    spec = study_from_params(tiny_params())
    result = run_study(spec, store, progress=False, log=lambda m: None, owner=out)
    assert removed == []
    write_study(result, out, store)
    record = json.loads((out / "runs.json").read_text())
    assert list(record["roles"]) == ["study"] and len(record["runs"]) == 5


# --- a finished run is reused only with the checkpoints it vouches for ---------------------------


def test_a_checkpoint_swapped_after_the_run_is_refused_on_reuse(tmp_path):
    store = RunStore(tmp_path / "store", log=lambda m: None)
    a = store.run(tiny(), "baseline", progress=False)
    b = store.run(tiny(seed=3), "baseline", progress=False)
    os.utime(a.checkpoint)  # touched, same bytes: still the run's checkpoint
    assert store.run(tiny(), "baseline", progress=False).reused
    shutil.copy(b.checkpoint, a.checkpoint)
    with pytest.raises(UserError, match="not the checkpoint its run's done.json vouches for"):
        store.run(tiny(), "baseline", progress=False)


def test_reading_a_stored_run_never_imports_the_factory_it_names(tmp_path, monkeypatch):
    """A run.json edited in a shared store to name another factory: reading the run checks the
    name's form and imports nothing (reading a file never runs code)."""
    import sys

    store = RunStore(tmp_path / "store", log=lambda m: None)
    run = store.run(tiny(), "baseline", progress=False)
    planted = tmp_path / "planted_factory_module.py"
    planted.write_text("import pathlib\npathlib.Path(__file__).with_suffix('.ran').touch()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    info = json.loads((run.run_dir / "run.json").read_text())
    info["config"]["model"] = {"factory": "planted_factory_module:build"}
    (run.run_dir / "run.json").write_text(json.dumps(info))
    stored = store.get(run.fingerprint)
    assert stored is not None and stored.config.model.factory == "planted_factory_module:build"
    assert "planted_factory_module" not in sys.modules
    assert not planted.with_suffix(".ran").exists()
