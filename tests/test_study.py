"""Studies: spec validation, equal budgets and the configs of every arm kind, the waves of runs,
the statistics (paired by baseline and seed, Holm, TOST, verdicts), the computed sentences, and
the runner end to end (in-process, local processes with identical numbers, Dask, the CLI)."""

import concurrent.futures as cf
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_runner import run_cli

from alphaprune.engine.config import ConfigError
from alphaprune.study.analysis import runs_table, summarise, verdict
from alphaprune.study.execution import plan, run_study
from alphaprune.study.output import write_study
from alphaprune.study.prose import conclusion, encoder_of, seeds_note
from alphaprune.study.spec import load_study, study_from_params
from alphaprune.study.store import RunStore

pytestmark = pytest.mark.training  # test tiers: see tests/conftest.py

REPO = Path(__file__).resolve().parents[1]
CONSTANT_0 = {"kind": "constant", "alpha": 0.0}


def tiny_params(**study):
    params = {
        "device": "cpu",
        "seed": 0,
        "defaults": {
            "model": {"layer": "relu1_1"},
            "data": {"crop": 16, "batch_size": 2, "val_crops": 1},
            "pruning": {"keep": 0.5, "target": "all"},
        },
        "baseline": {"epochs": 2, "steps_per_epoch": 2},
        "study": {
            "name": "t",
            "reference": "one_shot",
            "seeds": 2,
            "max_seeds": 2,
            "budget": {"steps": 2, "steps_per_epoch": 1},
            "latency": {"size": 16, "repeats": 3},
            "methods": {
                "one_shot": {"label": "one-shot", "schedule": CONSTANT_0},
                "step": {"schedule": {"kind": "step", "values": [0.5, 0.0]}},
            },
        },
    }
    params["study"].update(study)
    return params


ALL_KINDS = {
    "one_shot": {"label": "one-shot", "schedule": CONSTANT_0},
    "random": {"schedule": CONSTANT_0, "config": {"pruning": {"criterion": "random"}}},
    "step": {"schedule": {"kind": "step", "values": [1.0, 0.1, 0.0]}},
    "restart": {
        "kind": "restart",
        "start": {"arm": "step", "alpha": 0.1},
        "schedule": {"kind": "restart", "alpha": 0.1, "rate": 5.0, "floor": 0.05},
    },
    "unpruned": {"kind": "unpruned"},
    "scratch": {"kind": "scratch", "architecture": "one_shot"},
}


def kinds_params(**study):
    return tiny_params(
        methods=ALL_KINDS,
        budget={"steps": 4, "steps_per_epoch": 1},
        budgets=[{"flops": 0.8}, {"flops": 0.6}],
        primary_budget={"flops": 0.6},
        **study,
    )


# -- spec ---------------------------------------------------------------------------------------


def test_spec_takes_the_week_defaults_and_gives_equal_budgets_and_pinned_threads():
    spec = study_from_params(tiny_params())
    base = spec.baseline_config()
    assert base.epochs == 2 and base.data.crop == 16 and base.threads == 1
    configs = [spec.arm_config(m, "keep 0.5", 1) for m in spec.methods]
    assert {c.epochs * c.steps_per_epoch for c in configs} == {spec.budget.steps}
    assert {c.data.batch_size for c in configs} == {2} and {c.seed for c in configs} == {1}
    assert {c.threads for c in configs} == {1}
    assert spec.label("step") == "step" and spec.label("one_shot") == "one-shot"
    assert spec.points == {"keep 0.5": None} and spec.primary == "keep 0.5"
    assert spec.test_images() == ["rocket", "china", "flower"]
    three = study_from_params(tiny_params(baselines=3))
    assert [three.baseline_config(k).seed for k in range(3)] == [0, 1, 2]


def test_each_arm_kind_gets_its_config():
    spec = study_from_params(kinds_params())
    point = "flops 0.6"
    cut = spec.arm_config("one_shot", point, 0)
    assert cut.pruning.budget == {"flops": 0.6} and cut.pruning.criterion == "l1"
    assert spec.arm_config("random", point, 0).pruning.criterion == "random"
    unpruned = spec.arm_config("unpruned", point, 0)
    assert unpruned.pruning.keep == 1.0 and unpruned.pruning.budget is None
    assert unpruned.epochs == spec.budget.epochs
    # the restart starts after the step arm's last epoch at α = 0.1 (epoch 1): 2 of 4 epochs left
    assert spec.restart_epochs("restart") == 2 and spec.arm_config("restart", point, 0).epochs == 2
    scratch = spec.arm_config("scratch", point, 0)
    assert scratch.pruning.reinit and scratch.pruning.keep == 1.0
    assert scratch.epochs * scratch.steps_per_epoch == spec.baseline_steps() + spec.budget.steps
    graded = study_from_params(
        tiny_params(
            methods={
                **tiny_params()["study"]["methods"],
                "lr": {"schedule": CONSTANT_0, "lr_grid": [0.01, 0.1]},
            }
        )
    )
    assert graded.lrs("lr") == [0.01, 0.1] and graded.lrs("step") == [None]
    tuned = graded.arm_config("lr", "keep 0.5", 0, lr=0.1)
    assert tuned.optimizer.lr == 0.1 and tuned.build_schedule().lr == 0.1


def test_the_waves_start_from_the_right_runs():
    spec = study_from_params(kinds_params())
    first = plan(spec, [0], "/store", ["base0"], wave=1)
    arms = {(j.key.arm, j.key.point) for j in first}
    assert ("unpruned", "all") in arms  # one run serves every budget
    assert {a for a, _ in arms} == {"one_shot", "random", "step", "unpruned"}
    assert all(j.start == {"run": "base0"} for j in first)
    chosen = {(j.key.arm, j.key.point, 0, 0): f"fp-{j.key.arm}-{j.key.point}" for j in first}
    second = plan(spec, [0], "/store", ["base0"], wave=2, chosen=chosen)
    starts = {(j.key.arm, j.key.point): j.start for j in second}
    assert starts[("restart", "flops 0.6")] == {"run": "fp-step-flops 0.6", "alpha": 0.1}
    assert starts[("scratch", "flops 0.8")] == {"run": "fp-one_shot-flops 0.8", "shrink": True}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"reference": "nope"}, "reference 'nope'"),
        ({"budget": {"steps": 3, "steps_per_epoch": 2}}, "multiple"),
        ({"seeds": 3, "max_seeds": 2}, "max_seeds"),
        ({"seeds": "3"}, "must be an integer"),
        ({"max_seeds": 1e9}, "must be an integer"),
        ({"max_seeds": 10**9}, "needs allow_many_seeds: true"),
        ({"colour": 1}, "unknown key"),
        ({"budgets": [{"flops": 0.5}, {"flops": 0.5}]}, "repeat a point"),
        ({"budgets": [{"flops": 1.5}]}, "must be in \\(0, 1\\)"),
        ({"budgets": [{"flops": 0.5}], "primary_budget": {"flops": 0.3}}, "not one of the budgets"),
        ({"equivalence_db": 0}, "greater than 0"),
        (
            {
                "methods": {
                    "one_shot": {"schedule": CONSTANT_0},
                    "x": {"schedule": CONSTANT_0, "config": {"epochs": 9}},
                }
            },
            "equal budget",
        ),
        (
            {
                "methods": {
                    "one_shot": {"schedule": CONSTANT_0},
                    "x": {"schedule": CONSTANT_0, "config": {"threads": 4}},
                }
            },
            "equal budget",
        ),
        (
            {
                "methods": {
                    "one_shot": {"schedule": CONSTANT_0},
                    "slow": {"schedule": {"kind": "linear", "epochs": 10}},
                }
            },
            "must reach α = 0",
        ),
        (
            {
                "methods": {
                    "one_shot": {"schedule": CONSTANT_0},
                    "u": {"kind": "unpruned", "schedule": CONSTANT_0},
                }
            },
            "has no α schedule",
        ),
        (
            {"methods": {"one_shot": {"schedule": CONSTANT_0}, "s": {"kind": "scratch"}}},
            "architecture",
        ),
        (
            {
                "methods": {
                    "one_shot": {"schedule": CONSTANT_0},
                    "u": {"kind": "unpruned"},
                    "s": {"kind": "scratch", "architecture": "u"},
                }
            },
            "no pruning arm",
        ),
        (
            {
                "methods": {
                    "one_shot": {"schedule": CONSTANT_0},
                    "r": {
                        "kind": "restart",
                        "start": {"arm": "one_shot", "alpha": 0.1},
                        "schedule": {"kind": "restart", "alpha": 0.1},
                    },
                }
            },
            "no epoch at α = 0.1",
        ),
        (
            {
                "budgets": [{"flops": 0.5}],
                "methods": {
                    "one_shot": {"schedule": CONSTANT_0, "config": {"pruning": {"keep": 0.3}}},
                    "x": {"schedule": CONSTANT_0},
                },
            },
            "compression is study.budgets",
        ),
        ({"defaults": {"data": {"test_images": []}}}, "has none"),
    ],
)
def test_bad_specs_are_rejected_with_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        study_from_params(tiny_params(**change), source="p.yaml")


def test_an_arm_may_not_see_other_images():
    methods = {
        "one_shot": {"schedule": CONSTANT_0},
        "x": {"schedule": CONSTANT_0, "config": {"data": {"val_images": ["coffee"]}}},
    }
    with pytest.raises(ConfigError, match="pairing"):
        study_from_params(tiny_params(methods=methods))


def test_the_shipped_study_files_are_valid():
    ci = load_study(REPO / "params" / "studies" / "ci.yaml")
    kinds = {arm.kind for arm in ci.methods.values()}
    criteria = {ci.arm_config(a, ci.primary, 0).pruning.criterion for a in ci.methods}
    assert len(ci.points) == 2 and "unpruned" in kinds and {"random", "tp_magnitude"} <= criteria
    real = load_study(REPO / "params" / "studies" / "schedules.yaml")
    assert real.seeds >= 5 and len(real.methods) >= 4 and real.reference == "one_shot"
    assert real.methods["restart"].kind == "restart" and "start_0.1" in real.methods
    curves = load_study(REPO / "params" / "studies" / "curves.yaml")
    assert len(curves.points) >= 3 and curves.baselines >= 3 and len(curves.methods) >= 7
    assert curves.baseline_config().pruning.target == "all"
    assert {a.kind for a in curves.methods.values()} >= {"schedule", "unpruned", "scratch"}
    before = load_study(REPO / "params" / "studies" / "before.yaml")
    assert before.seeds >= 5 and before.baseline_config().data.val_protocol == "corners"


# -- statistics on made-up runs -------------------------------------------------------------------


def _scores(psnrs):
    """An ImageScores dict with one tile per image at the given PSNRs."""
    count = 300.0
    return {
        "images": [f"im{k}" for k in range(len(psnrs))],
        "psnr": list(psnrs),
        "mse": [10 ** (-p / 10) for p in psnrs],
        "ssim": [0.9] * len(psnrs),
        "tiles": [[[count * 10 ** (-p / 10), count]] for p in psnrs],
    }


def _row(arm, baseline, seed, psnrs, point="keep 0.5"):
    return {
        "arm": arm,
        "point": point,
        "baseline": baseline,
        "seed": seed,
        "lr": None,
        "selected": True,
        "fingerprint": f"{arm}-{baseline}-{seed}-{point}",
        "reused": False,
        "threads": 1,
        "steps": 4,
        "diverged_at": None,
        "train_seconds": 60.0,
        "train_cpu_seconds": 58.0,
        "test": _scores(psnrs),
        "val": _scores([p - 1 for p in psnrs]),
        "alpha": 0.0,
        "params": 50.0,
        "flops": 500.0,
    }


def _bases(n, images=3):
    return [
        {
            "baseline": k,
            "fingerprint": f"base{k}",
            "test": _scores([30.0 + i for i in range(images)]),
            "val": _scores([29.0] * images),
            "params": 100.0,
            "flops": 1000.0,
            "train_cpu_seconds": 500.0,
            "curve": {
                "epoch": [0, 1, 2, 3, 4],
                "val_loss": [1.0, 0.5, 0.4, 0.399, 0.398],
                "val_psnr": [20, 24, 25, 25.1, 25.1],
            },
        }
        for k in range(n)
    ]


def _made_up_study(images=3):
    methods = {name: {"schedule": CONSTANT_0} for name in ("ref", "up", "down", "same", "noisy")}
    spec = study_from_params(
        tiny_params(reference="ref", methods=methods, baselines=2, seeds=4, max_seeds=4)
    )
    rng = np.random.default_rng(0)
    shift = {"ref": 0.0, "up": 0.5, "down": -0.5, "same": 0.0, "noisy": 0.0}
    spread = {"ref": 0.0, "up": 0.05, "down": 0.05, "same": 0.02, "noisy": 1.0}
    rows = []
    for k in range(2):
        for s in range(4):
            level = 28 + rng.normal(0, 1)  # a seed effect shared by every arm (paired)
            for arm in methods:
                value = level + shift[arm] + rng.normal(0, spread[arm])
                rows.append(_row(arm, k, s, [value + i for i in range(images)]))
    return spec, rows, _bases(2, images)


def test_verdicts_follow_holm_and_tost():
    spec, rows, bases = _made_up_study()
    runs = runs_table(spec, rows, bases)
    summary = summarise(spec, runs).set_index("arm")
    assert summary.loc["ref", "verdict"] == "reference"
    assert summary.loc["up", "verdict"] == "better" and summary.loc["down", "verdict"] == "worse"
    assert summary.loc["same", "verdict"] == "equivalent"
    assert summary.loc["noisy", "verdict"] == "undecided"
    others = summary.drop(index="ref")
    assert (others["p_holm"] >= others["p_value"]).all() and (
        others["tost_p_holm"] >= others["tost_p"]
    ).all()
    assert (others["n_pairs"] == 8).all()  # 2 baselines × 4 seeds, paired by (baseline, seed)
    assert (others["diff_sd_low"] < others["diff_std"]).all() and (
        others["diff_std"] < others["diff_sd_high"]
    ).all()
    assert (others["seeds_needed_low"] <= others["seeds_needed"]).all()
    up = runs[runs["arm"] == "up"]
    assert up["diff_to_reference"].mean() == pytest.approx(summary.loc["up", "diff_mean"])
    assert verdict(float("nan"), float("nan"), 1.0, 0.05) == "undecided"


def test_the_conclusion_never_calls_a_worse_arm_best():
    spec, rows, bases = _made_up_study()
    summary = summarise(spec, runs_table(spec, rows, bases))
    text = conclusion(spec, summary, pd.DataFrame({"plateau": [True, True], "baseline": [0, 1]}))
    assert "best" not in text
    assert "down is worse than ref by 0.5" in text or "down is worse than ref by 0.4" in text
    assert "up is better than ref by 0." in text and text.startswith("At keep 0.5, on 8")
    assert "same is equivalent to ref within ±0.2 dB" in text
    assert "noisy against ref is undecided" in text and "8 (baseline, seed) pairs" in text
    assert "Every baseline (2) reached a plateau" in text


def test_too_few_test_images_give_no_evaluation_interval_and_one_image_too():
    for images in (1, 3):
        spec, rows, bases = _made_up_study(images=images)
        runs = runs_table(spec, rows, bases)
        assert runs["test_psnr_ci_low"].isna().all() and runs["diff_eval_ci_low"].isna().all()
        assert runs["eval_interval"].str.contains(f"only {images} image").all()
    spec, rows, bases = _made_up_study(images=6)
    runs = runs_table(spec, rows, bases)
    assert runs["test_psnr_ci_low"].notna().all()
    assert (runs["test_psnr_ci_low"] < runs["test_psnr"]).all()


def test_seeds_note_gives_a_range_and_cpu_hours_from_cpu_seconds():
    spec, rows, bases = _made_up_study()
    runs = runs_table(spec, rows, bases)
    note = seeds_note(spec, summarise(spec, runs), runs)
    assert "noisy − ref" in note and "seeds per baseline would be needed" in note
    assert "interval of the sd" in note and "CPU-hours at the measured 58 CPU-s per run" in note


def test_the_encoder_says_where_its_weights_come_from(tmp_path):
    spec = study_from_params(tiny_params())
    assert "random initialisation" in encoder_of(spec.baseline_config())
    weights = tmp_path / "vgg19.pth"
    weights.write_bytes(b"not really weights")
    cfg = spec.baseline_config().model_copy(deep=True)
    cfg.model.vgg_weights = str(weights)
    assert "ImageNet weights in vgg19.pth (sha256" in encoder_of(cfg)


# -- running --------------------------------------------------------------------------------------


def _check_tables(result, spec):
    runs, summary = result.runs, result.summary
    assert set(runs["status"]) == {"finished"} and (runs["threads"] == 1).all()
    pruned = runs[runs["kind"].isin(["schedule", "restart"])]
    assert (pruned["alpha"] == 0.0).all() and (pruned["flops_ratio"] < 1).all()
    assert runs["test_psnr_ci_low"].isna().all()  # 3 test images: no interval over images
    assert set(summary["budget"]) == set(spec.points)
    ref = summary[summary["arm"] == spec.reference]
    assert (ref["verdict"] == "reference").all()
    assert set(summary["verdict"]) <= {"reference", "better", "worse", "equivalent", "undecided"}
    assert {"p_holm", "tost_p_holm", "latency_ms", "cpu_hours"} <= set(summary.columns)


@pytest.mark.slow
def test_a_study_of_every_arm_kind_runs_caches_and_writes(tmp_path, one_torch_thread):
    spec = study_from_params(kinds_params())
    store = RunStore(tmp_path / "store", log=lambda m: None)
    result = run_study(spec, store, progress=False, log=lambda m: None)
    _check_tables(result, spec)
    runs = result.runs
    unpruned = runs[runs["arm"] == "unpruned"]
    assert unpruned["fingerprint"].nunique() == 2 and (unpruned["flops_ratio"] == 1).all()
    scratch = runs[runs["arm"] == "scratch"].set_index(["budget", "seed"])["flops_ratio"]
    one_shot = runs[runs["arm"] == "one_shot"].set_index(["budget", "seed"])["flops_ratio"]
    pd.testing.assert_series_equal(scratch, one_shot, check_names=False)  # the same architecture
    paths = write_study(result, tmp_path / "report", store, command="python -m alphaprune study x")
    record = json.loads(paths["json"].read_text())
    assert (
        record["conclusion"] == result.conclusion and "random initialisation" in record["encoder"]
    )
    env = record["environment"]
    assert env["threads_per_run"] == 1 and env["torch"] and len(env["library_sha256"]) == 64
    assert record["cpu_hours"] > 0 and record["test_images"] == ["china", "flower", "rocket"]
    timing = pd.DataFrame(record["run_timing"])
    assert (
        len(timing) == result.runs["fingerprint"].nunique()
        and (timing["train_cpu_seconds"] > 0).all()
    )
    for key in ("figure", "curves", "baseline_curves"):
        assert paths[key].stat().st_size > 0
    assert "budget" in pd.read_csv(paths["summary"]).columns

    again = run_study(spec, store, progress=False, log=lambda m: None)
    assert again.runs["reused"].all()
    pd.testing.assert_frame_equal(
        again.summary.drop(columns=["latency_ms", "cpu_hours"]),
        result.summary.drop(columns=["latency_ms", "cpu_hours"]),
    )
    more = study_from_params(kinds_params(seeds=3, max_seeds=3))
    bigger = run_study(more, store, progress=False, log=lambda m: None)
    assert set(bigger.runs["seed"]) == {0, 1, 2}
    assert bigger.runs[bigger.runs["seed"] < 2]["reused"].all()


@pytest.mark.slow
def test_an_lr_grid_is_chosen_on_validation(tmp_path, one_torch_thread):
    methods = {
        "one_shot": {"schedule": CONSTANT_0},
        "tuned": {"schedule": CONSTANT_0, "lr_grid": [1e-4, 1e-2]},
    }
    spec = study_from_params(tiny_params(methods=methods))
    result = run_study(
        spec, RunStore(tmp_path, log=lambda m: None), progress=False, log=lambda m: None
    )
    tuned = result.runs[result.runs["arm"] == "tuned"]
    assert len(tuned) == 4 and tuned["selected"].sum() == 2
    for _, pair in tuned.groupby("seed"):
        assert pair.loc[pair["selected"], "val_psnr"].iloc[0] == pair["val_psnr"].max()


def _numbers(frame):
    timing = [c for c in frame.columns if "seconds" in c or c in ("reused",)]
    return frame.drop(columns=timing)


@pytest.mark.slow
def test_jobs_1_and_jobs_2_give_the_same_study_csv(tmp_path):
    params = REPO / "params" / "studies" / "ci.yaml"
    tables = []
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}"
        done = run_cli(
            "study",
            str(params),
            "--jobs",
            str(jobs),
            "--root",
            str(tmp_path / f"store{jobs}"),
            "--out",
            str(out),
            "--no-progress",
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        tables.append(pd.read_csv(out / "tables" / "study.csv"))
    one, two = (_numbers(t) for t in tables)
    pd.testing.assert_frame_equal(one, two, rtol=0, atol=1e-5)
    summary = pd.read_csv(tmp_path / "out1" / "tables" / "study_summary.csv")
    assert {"budget", "p_holm", "tost_p_holm", "verdict"} <= set(summary.columns)
    assert set(summary["budget"]) == {"flops 0.75", "flops 0.5"}


@pytest.mark.slow
def test_study_on_a_dask_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")  # the 'dask' extra; CI installs it
    spec = study_from_params(tiny_params())
    store = RunStore(tmp_path, log=lambda m: None)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        executor = client.get_executor()
        assert isinstance(executor, cf.Executor)
        result = run_study(spec, store, executor=executor, progress=False, log=lambda m: None)
    _check_tables(result, spec)


@pytest.mark.slow
def test_cli_study_dry_run_and_runs(tmp_path, one_torch_thread):
    missing = run_cli("study", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert missing.returncode == 2 and "missing.yaml: no such file" in missing.stderr
    params = tmp_path / "p.yaml"
    params.write_text(json.dumps(tiny_params()))  # JSON is YAML
    out, store = tmp_path / "out", tmp_path / "store"
    dry = run_cli("study", str(params), "--dry-run", "--root", str(store), cwd=tmp_path)
    assert dry.returncode == 0 and "CPU-hours" in dry.stdout and "baseline" in dry.stdout
    assert not store.exists() or not any(store.glob("*/done.json"))  # a dry run trains nothing
    done = run_cli(
        "study", str(params), "--out", str(out), "--root", str(store), "--no-progress", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "one_shot" in done.stdout and (out / "tables" / "study_summary.csv").exists()
    record = json.loads((out / "study.json").read_text())
    assert record["command"].startswith("python -m alphaprune study")
    again = run_cli("study", str(params), "--dry-run", "--root", str(store), cwd=tmp_path)
    assert again.returncode == 0 and " 0 to train" in again.stdout  # everything reused now
    listing = run_cli("runs", "list", "--root", str(store), cwd=tmp_path)
    assert listing.returncode == 0 and "t-baseline" in listing.stdout
    assert str(out.resolve()) in listing.stdout
    assert run_cli("study", str(params), "--jobs", "0", cwd=tmp_path).returncode == 2
