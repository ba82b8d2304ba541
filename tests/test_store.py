"""The shared run store: fingerprints, reuse, lock, done record, references and gc."""

import json
import multiprocessing
import shutil

import pytest

from alphaprune.engine.checkpoint import last_path
from alphaprune.engine.config import config_from_dict
from alphaprune.study.store import RunStore, canonical_config
from alphaprune.study.store import main as runs_main

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


def tiny(**changes):
    data = json.loads(json.dumps(TINY))
    for key, value in changes.items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return config_from_dict(data)


def test_fingerprint_ignores_where_and_what_name_but_not_what_determines_the_run(tmp_path):
    store = RunStore(tmp_path)
    fp = store.fingerprint(tiny(), "baseline")
    assert fp == store.fingerprint(tiny(name="other", output_dir="x", device="auto"), "baseline")
    assert fp != store.fingerprint(tiny(seed=1), "baseline")
    assert fp != store.fingerprint(tiny(**{"optimizer.lr": 0.01}), "baseline")
    assert fp != store.fingerprint(tiny(), "prune", source=None)
    # a key spelled out at its default value is the same run as one left out
    assert fp == store.fingerprint(tiny(**{"optimizer.weight_decay": 0.0}), "baseline")
    explicit = canonical_config(tiny(**{"optimizer.weight_decay": 0.0}))
    assert "weight_decay" not in explicit.get("optimizer", {})


def test_fingerprint_follows_the_source_run_and_its_milestone(tmp_path):
    store = RunStore(tmp_path, log=lambda m: None)
    base = store.run(tiny(), "baseline", progress=False)
    other = store.run(tiny(seed=3), "baseline", progress=False)
    prune_cfg = tiny(schedule={"kind": "constant", "alpha": 0.0})
    fp = store.fingerprint(prune_cfg, "prune", base)
    assert fp != store.fingerprint(prune_cfg, "prune", other)
    assert fp != store.fingerprint(prune_cfg, "prune", base, source_alpha=0.0)
    # a checkpoint file outside the store is hashed by content
    copy = tmp_path / "copy.pt"
    shutil.copy(base.checkpoint, copy)
    by_file = store.fingerprint(prune_cfg, "prune", copy)
    assert by_file == store.fingerprint(prune_cfg, "prune", base.checkpoint)
    assert by_file != store.fingerprint(prune_cfg, "prune", other.checkpoint)


def test_second_run_is_reused_and_says_so(tmp_path, one_torch_thread):
    messages = []
    store = RunStore(tmp_path / "store", log=messages.append)
    first = store.run(tiny(name="week9"), "baseline", progress=False)
    assert not first.reused and first.checkpoint.exists()
    assert (first.run_dir / "done.json").exists() and (first.run_dir / "run.json").exists()
    mtime = first.checkpoint.stat().st_mtime_ns
    second = store.run(tiny(name="week10"), "baseline", label="week10 baseline", progress=False)
    assert second.reused and second.fingerprint == first.fingerprint
    assert second.checkpoint.stat().st_mtime_ns == mtime  # not trained again
    assert any(m.startswith("reused run week10 baseline") for m in messages)
    pruned = store.run(
        tiny(schedule={"kind": "constant", "alpha": 0.0}), "prune", source=first, progress=False
    )
    assert (
        json.loads((pruned.run_dir / "run.json").read_text())["start"]["run"] == first.fingerprint
    )
    with pytest.raises(ValueError, match="needs a source"):
        store.run(tiny(), "prune")


def test_an_unfinished_run_is_resumed_not_reused(tmp_path, one_torch_thread):
    messages = []
    store = RunStore(tmp_path, log=messages.append)
    run = store.run(tiny(epochs=2), "baseline", progress=False)
    (run.run_dir / "done.json").unlink()  # as if killed after its last checkpoint
    assert store.get(run.fingerprint) is None
    again = store.run(tiny(epochs=2), "baseline", progress=False)
    assert not again.reused and any(m.startswith("resuming") for m in messages)
    assert (again.run_dir / "done.json").exists()


def _train_in_process(root, queue):
    import torch

    torch.set_num_threads(1)
    messages = []
    RunStore(root, log=messages.append).run(tiny(epochs=2), "baseline", progress=False)
    queue.put(messages)


@pytest.mark.slow
def test_two_processes_never_train_the_same_run(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_train_in_process, args=(tmp_path, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    logs = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    trained = [m for log in logs for m in log if m.startswith("training")]
    reused = [m for log in logs for m in log if m.startswith("reused")]
    assert len(trained) == 1 and len(reused) == 1


def test_list_and_gc_keep_referenced_runs_and_their_sources(tmp_path, one_torch_thread, capsys):
    store = RunStore(tmp_path / "store", log=lambda m: None)
    base = store.run(tiny(), "baseline", progress=False)
    pruned = store.run(
        tiny(schedule={"kind": "constant", "alpha": 0.0}), "prune", source=base, progress=False
    )
    orphan = store.run(tiny(seed=5), "baseline", progress=False)
    (store.root / "notes").mkdir()  # not a run folder: never listed or removed
    report = tmp_path / "reports" / "week10"
    store.add_reference(report, [pruned.fingerprint])
    assert json.loads((report / "runs.json").read_text())["runs"] == [pruned.fingerprint]
    store.add_reference(report, [base.fingerprint], role="study")  # a second role is kept apart
    record = json.loads((report / "runs.json").read_text())
    assert record["runs"] == sorted([pruned.fingerprint, base.fingerprint])
    store.add_reference(report, [], role="study")
    assert json.loads((report / "runs.json").read_text())["runs"] == [pruned.fingerprint]
    table = store.list().set_index("fingerprint")
    assert table.loc[pruned.fingerprint, "used_by"] == str(report.resolve())
    assert table.loc[base.fingerprint, "used_by"] == "(start of a used run)"
    assert table.loc[orphan.fingerprint, "used_by"] == ""
    assert (table["size_mb"] > 0).all() and table["done"].all()

    assert store.gc(dry_run=True) == [orphan.fingerprint] and orphan.run_dir.exists()
    assert runs_main(["gc", "--root", str(store.root)]) == 0
    assert "removed 1" in capsys.readouterr().out
    assert not orphan.run_dir.exists() and base.run_dir.exists() and pruned.run_dir.exists()

    shutil.rmtree(report)  # the report is gone (moved or deleted): its runs are kept …
    assert runs_main(["gc", "--root", str(store.root)]) == 0
    assert "runs gc --forget-missing" in capsys.readouterr().out and pruned.run_dir.exists()
    # … until the user says it was deleted
    assert runs_main(["gc", "--root", str(store.root), "--forget-missing"]) == 0
    assert "removed 2" in capsys.readouterr().out
    assert store.list().empty and not list((store.root / ".refs").glob("*.json"))
    assert (store.root / "notes").is_dir()
    assert runs_main(["list", "--root", str(store.root)]) == 0
    assert "no runs" in capsys.readouterr().out


def test_gc_skips_a_run_being_trained(tmp_path, one_torch_thread):
    store = RunStore(tmp_path, log=lambda m: None)
    run = store.run(tiny(), "baseline", progress=False)
    with store.lock(run.fingerprint):
        assert store.gc() == [] and run.run_dir.exists()
    assert store.gc() == [run.fingerprint]


def test_done_record_only_after_the_checkpoint(tmp_path, one_torch_thread, monkeypatch):
    import alphaprune.engine.train as train

    def broken(cfg, progress=True):
        raise RuntimeError("killed")

    monkeypatch.setattr(train, "train_baseline", broken)
    store = RunStore(tmp_path, log=lambda m: None)
    with pytest.raises(RuntimeError, match="killed"):
        store.run(tiny(), "baseline", progress=False)
    fp = store.fingerprint(tiny(), "baseline")
    assert not (store.path(fp) / "done.json").exists() and not last_path(store.path(fp)).exists()
    assert store.get(fp) is None


def test_keys_a_run_does_not_read_do_not_split_the_store(tmp_path):
    store = RunStore(tmp_path)
    fp = store.fingerprint(tiny(), "baseline")
    # a week's baseline carries the week's pruning defaults: the baseline does not read them
    assert fp == store.fingerprint(tiny(**{"pruning.keep": 0.3}), "baseline")
    assert fp == store.fingerprint(tiny(schedule={"kind": "constant", "alpha": 0.0}), "baseline")
    # with steps_per_epoch set, samples_per_epoch is unused
    assert fp == store.fingerprint(tiny(**{"data.samples_per_epoch": 48}), "baseline")
    assert fp != store.fingerprint(tiny(steps_per_epoch=None), "baseline")
    # a pruning run does read them
    pruned = store.fingerprint(tiny(), "prune", source=None)
    assert pruned != store.fingerprint(tiny(**{"pruning.keep": 0.3}), "prune", source=None)
    grid = tiny(**{"data.val_protocol": "grid"})
    assert store.fingerprint(grid, "baseline") == store.fingerprint(
        tiny(**{"data.val_protocol": "grid", "data.val_crops": 5}), "baseline"
    )


def test_shrunk_start_and_links(tmp_path, one_torch_thread):
    from alphaprune.engine.checkpoint import load_model

    store = RunStore(tmp_path / "store", log=lambda m: None)
    base = store.run(tiny(), "baseline", progress=False)
    decay = store.run(
        tiny(epochs=2, schedule={"kind": "step", "values": [0.5, 0.0]}),
        "prune",
        source=base,
        progress=False,
    )
    cfg = tiny(**{"pruning.target": "decoder"})
    plain = store.fingerprint(cfg, "prune", decay, 0.0)
    shrunk_fp = store.fingerprint(cfg, "prune", decay, 0.0, shrink_source=True)
    assert plain != shrunk_fp
    run = store.run(
        cfg, "prune", source=decay, source_alpha=0.0, shrink_source=True, progress=False
    )
    assert run.fingerprint == shrunk_fp and (run.run_dir / "start.pt").exists()
    small, big = (
        load_model(run.checkpoint, verbose=False),
        load_model(decay.checkpoint, verbose=False),
    )
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in big.parameters())

    link = store.link(run, tmp_path / "report" / "runs" / "decoder")
    assert link.is_symlink() and (link / "checkpoints" / "last.pt").exists()
    store.link(base, link)  # replaced atomically
    assert link.resolve() == base.run_dir.resolve()
    real = tmp_path / "report" / "runs" / "real"
    real.mkdir()
    (real / "kept.txt").write_text("a run from before the store")
    store.link(base, real)
    assert real.is_symlink()
    (aside,) = real.parent.glob(".real.before-store-*")
    assert (aside / "kept.txt").read_text() == "a run from before the store"


def test_force_retrains_and_init_from_is_the_start(tmp_path, one_torch_thread):
    messages = []
    store = RunStore(tmp_path, log=messages.append)
    base = store.run(tiny(), "baseline", progress=False)
    again = store.run(tiny(), "baseline", progress=False, force=True)
    assert not again.reused and sum(m.startswith("training") for m in messages) == 2
    cfg = tiny(schedule={"kind": "constant", "alpha": 0.0}, init_from=str(base.checkpoint))
    run = store.run(cfg, "prune", progress=False)  # the start is init_from's content
    assert run.fingerprint == store.fingerprint(cfg, "prune", base.checkpoint)
    moved = tmp_path / "moved.pt"
    shutil.copy(base.checkpoint, moved)
    elsewhere = tiny(schedule={"kind": "constant", "alpha": 0.0}, init_from=str(moved))
    assert store.run(elsewhere, "prune", progress=False).reused  # same file content, same run


def test_a_diverged_run_is_finished_and_reused(tmp_path, one_torch_thread):
    from alphaprune.engine.train import diverged_at

    messages = []
    store = RunStore(tmp_path, log=messages.append)
    cfg = tiny(epochs=2, **{"optimizer.lr": 1e30})
    run = store.run(cfg, "baseline", progress=False)
    assert diverged_at(run.run_dir) is not None
    done = json.loads((run.run_dir / "done.json").read_text())
    assert done["diverged_at"] == diverged_at(run.run_dir)
    assert any(m.startswith("warning: run") for m in messages)
    assert store.run(cfg, "baseline", progress=False).reused


def test_an_interrupted_forced_retrain_keeps_the_previous_run_until_the_new_one_is_done(
    tmp_path, monkeypatch
):
    import alphaprune.engine.train as train

    store = RunStore(tmp_path, log=lambda m: None)
    first = store.run(tiny(), "baseline", progress=False)
    real = train.train_baseline

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "train_baseline", crash)
    with pytest.raises(KeyboardInterrupt):
        store.run(tiny(), "baseline", progress=False, force=True)
    (previous,) = tmp_path.glob(f".{first.fingerprint}.previous-*")
    assert (previous / "done.json").is_file() and last_path(previous).is_file()
    assert store.get(first.fingerprint) is None  # the retrain is not done
    monkeypatch.setattr(train, "train_baseline", real)
    again = store.run(tiny(), "baseline", progress=False)  # resumes the retrain
    assert not again.reused and store.get(first.fingerprint) is not None
    assert not list(tmp_path.glob(f".{first.fingerprint}.previous-*"))
