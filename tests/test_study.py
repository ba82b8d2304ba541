"""Studies: spec validation, equal budgets, the runner (in-process, local processes, Dask),
tables, the computed conclusion and the seeds estimate."""

import concurrent.futures as cf
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from alphaprune.engine.config import ConfigError
from alphaprune.study.grid import (
    StudySpec,
    conclusion,
    load_study,
    plan,
    run_study,
    seeds_note,
    study_from_params,
    worker_threads,
    write_study,
)
from alphaprune.study.store import RunStore

pytestmark = pytest.mark.training  # test tiers: see tests/conftest.py

REPO = Path(__file__).resolve().parents[1]


def tiny_params(**study):
    params = {
        "device": "cpu",
        "seed": 0,
        "defaults": {
            "model": {"layer": "relu1_1"},
            "data": {"crop": 16, "batch_size": 2, "val_crops": 2},
            "pruning": {"keep": 0.5, "target": "encoder"},
        },
        "baseline": {"epochs": 1, "steps_per_epoch": 2},
        "study": {
            "name": "t",
            "reference": "one_shot",
            "seeds": 2,
            "max_seeds": 2,
            "budget": {"steps": 2, "steps_per_epoch": 1},
            "methods": {
                "one_shot": {"label": "one-shot", "schedule": {"kind": "constant", "alpha": 0.0}},
                "step": {"schedule": {"kind": "step", "values": [0.5, 0.0]}},
            },
        },
    }
    params["study"].update(study)
    return params


def test_spec_takes_the_week_defaults_and_baseline_and_gives_equal_budgets():
    spec = study_from_params(tiny_params())
    assert spec.baseline_config().epochs == 1 and spec.baseline_config().data.crop == 16
    configs = [spec.method_config(m, 1) for m in spec.methods]
    assert {c.epochs * c.steps_per_epoch for c in configs} == {spec.budget.steps}
    assert {c.data.batch_size for c in configs} == {2} and {c.seed for c in configs} == {1}
    assert spec.label("step") == "step" and spec.label("one_shot") == "one-shot"
    jobs = plan(spec, [0, 1], "/store", "fp", threads=1)
    assert [(j.method, j.seed) for j in jobs] == [
        ("one_shot", 0),
        ("step", 0),
        ("one_shot", 1),
        ("step", 1),
    ]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"reference": "nope"}, "reference 'nope'"),
        ({"budget": {"steps": 3, "steps_per_epoch": 2}}, "multiple"),
        ({"seeds": 3, "max_seeds": 2}, "max_seeds"),
        ({"colour": 1}, "unknown key"),
        (
            {
                "methods": {
                    "one_shot": {"schedule": {"kind": "constant", "alpha": 0.0}},
                    "x": {"schedule": {"kind": "constant", "alpha": 0.0}, "config": {"epochs": 9}},
                }
            },
            "equal budget",
        ),
        (
            {
                "methods": {
                    "one_shot": {"schedule": {"kind": "constant", "alpha": 0.0}},
                    "slow": {"schedule": {"kind": "linear", "epochs": 10}},
                }
            },
            "must reach α = 0",
        ),
        (
            {
                "methods": {
                    "one_shot": {"schedule": {"kind": "constant", "alpha": 0.0}},
                    "x": {
                        "schedule": {"kind": "constant", "alpha": 0.0},
                        "config": {"data": {"val_images": ["coffee"]}},
                    },
                }
            },
            "validates on other images",
        ),
    ],
)
def test_bad_specs_are_rejected_with_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        study_from_params(tiny_params(**change), source="p.yaml")


def test_curves_may_use_a_cheaper_protocol_but_scores_use_the_baselines():
    spec = study_from_params(tiny_params(curve_protocol="grid"))
    assert spec.method_config("step", 0).data.val_protocol == "grid"
    assert spec.baseline_config().data.val_protocol == "corners"
    job = plan(spec, [0], "/store", "fp")[0]
    assert job.eval_config["data"]["val_protocol"] == "corners"


def test_the_shipped_study_files_are_valid():
    ci = load_study(REPO / "params" / "studies" / "ci.yaml")
    assert len(ci.methods) == 2 and ci.seeds == 2
    real = load_study(REPO / "params" / "studies" / "schedules.yaml")
    assert real.seeds >= 5 and len(real.methods) >= 4 and real.reference == "one_shot"
    assert real.baseline_config().model.layer in ("relu2_1", "relu3_1")
    before = load_study(REPO / "params" / "studies" / "before.yaml")
    assert before.seeds >= 5 and before.baseline_config().data.val_protocol == "corners"


def test_worker_threads_do_not_oversubscribe():
    assert worker_threads(1, cores=8) == 8
    assert worker_threads(2, cores=8) == 4
    assert worker_threads(16, cores=8) == 1


def _summary(diffs, lows, highs, ns=(5, 5), stds=(0.4, 0.4)):
    rows = [
        {
            "method": "ref",
            "label": "one-shot",
            "n": ns[0],
            "diff_mean": math.nan,
            "diff_std": math.nan,
            "diff_ci_low": math.nan,
            "diff_ci_high": math.nan,
            "p_value": math.nan,
            "seeds_needed": math.nan,
        }
    ]
    for i, (d, lo, hi, n, s) in enumerate(zip(diffs, lows, highs, ns, stds, strict=False)):
        rows.append(
            {
                "method": f"m{i}",
                "label": f"method {i}",
                "n": n,
                "diff_mean": d,
                "diff_std": s,
                "diff_ci_low": lo,
                "diff_ci_high": hi,
                "p_value": 0.01,
                "seeds_needed": 9,
            }
        )
    return pd.DataFrame(rows)


def _spec():
    return StudySpec.model_validate(
        {
            "reference": "ref",
            "budget": {"steps": 2, "steps_per_epoch": 1},
            "methods": {
                "ref": {"label": "one-shot", "schedule": {"kind": "constant", "alpha": 0}},
                "m0": {"schedule": {"kind": "constant", "alpha": 0}},
            },
        }
    )


def test_conclusion_sentence_is_computed_from_the_summary():
    spec = _spec()
    win = conclusion(spec, _summary([0.4, -0.1], [0.1, -0.5], [0.7, 0.3]))
    assert win.startswith("method 0 beats one-shot by 0.40 dB, 95 % CI [+0.10, +0.70], n = 5")
    lose = conclusion(spec, _summary([-0.6], [-0.9], [-0.3]))
    assert lose.startswith("method 0 is worse than one-shot by 0.60 dB")
    none = conclusion(spec, _summary([0.2, -0.1], [-0.1, -0.5], [0.5, 0.3]))
    assert none.startswith("No significant difference between any method and one-shot")
    assert "+0.20 dB" in none and "[-0.10, +0.50]" in none


def test_seeds_note_says_when_the_interval_is_too_wide():
    spec = _spec()
    runs = pd.DataFrame({"train_seconds": [60.0, 60.0], "threads": [1, 1]})
    wide = seeds_note(spec, _summary([0.2], [-0.3], [0.7], stds=(0.4,)), runs)
    assert "wider than the requested ±0.3 dB" in wide and "about 9 seeds" in wide
    assert "CPU core-hours" in wide
    narrow = seeds_note(spec, _summary([0.2], [0.1], [0.3], stds=(0.1,)), runs)
    assert narrow.startswith("With n = 5 seeds every paired interval is within ±0.3 dB")


def _check_tables(result, spec):
    runs, summary = result.runs, result.summary
    assert len(runs) == len(spec.methods) * spec.seeds
    assert set(runs["steps"]) == {spec.budget.steps} and (runs["alpha"] == 0.0).all()
    assert (runs["psnr_ci_low"] <= runs["val_psnr"]).all()
    assert (runs["val_psnr"] <= runs["psnr_ci_high"]).all()
    assert (runs["flops_ratio"] < 1).all() and (runs["params_ratio"] < 1).all()
    assert (runs["n_items"] == result.original["n_items"]).all()
    ref = summary.set_index("method").loc[spec.reference]
    other = summary.set_index("method").loc["step"]
    assert ref["n"] == spec.seeds and ref["ci_low"] <= ref["mean"] <= ref["ci_high"]
    assert math.isnan(ref["diff_mean"]) and not math.isnan(other["diff_mean"])
    per_seed = runs[runs["method"] == "step"]["diff_to_reference"]
    assert other["diff_mean"] == pytest.approx(per_seed.mean())
    assert other["diff_std"] == pytest.approx(per_seed.std(ddof=1))
    assert 0 <= other["p_value"] <= 1 and other["diff_eval_halfwidth"] >= 0


@pytest.mark.slow
def test_study_runs_caches_and_writes_its_tables(tmp_path, one_torch_thread):
    spec = study_from_params(tiny_params())
    store = RunStore(tmp_path / "store", log=lambda m: None)
    messages = []
    result = run_study(spec, store, progress=False, log=messages.append)
    _check_tables(result, spec)
    assert not result.runs["reused"].any()
    assert result.conclusion.endswith(".") and "one-shot" in result.conclusion

    paths = write_study(result, tmp_path / "report", store)
    written = pd.read_csv(paths["summary"])
    assert list(written["method"]) == ["one_shot", "step"]
    table = pd.read_csv(paths["runs"])
    assert {"method", "seed", "val_psnr", "val_ssim", "params", "flops"} <= set(table.columns)
    assert paths["figure"].stat().st_size > 0
    record = json.loads(paths["json"].read_text())
    assert record["conclusion"] == result.conclusion
    assert set(store.list()["used_by"]) <= {
        str((tmp_path / "report").resolve()),
        "(start of a used run)",
    }

    again = run_study(spec, store, progress=False, log=messages.append)
    assert again.runs["reused"].all()
    pd.testing.assert_frame_equal(again.summary, result.summary)

    # more seeds later only add runs
    more = study_from_params(tiny_params(seeds=3, max_seeds=3))
    bigger = run_study(more, store, progress=False, log=lambda m: None)
    assert len(bigger.runs) == 6 and bigger.runs["reused"].sum() == 4


@pytest.mark.slow
def test_study_adds_seeds_when_the_interval_is_too_wide(tmp_path, one_torch_thread):
    spec = study_from_params(tiny_params(seeds=2, max_seeds=3, target_halfwidth_db=1e-6))
    messages = []
    result = run_study(
        spec, RunStore(tmp_path, log=lambda m: None), progress=False, log=messages.append
    )
    assert sorted(set(result.runs["seed"])) == [0, 1, 2]
    assert any("adding seeds 2..2" in m for m in messages)
    assert "wider than the requested" in result.seeds_note


@pytest.mark.slow
def test_study_in_local_worker_processes_matches_in_process(tmp_path):
    spec = study_from_params(tiny_params())
    one = run_study(
        spec,
        RunStore(tmp_path / "a", log=lambda m: None),
        progress=False,
        log=lambda m: None,
        threads=1,
    )
    two = run_study(
        spec,
        RunStore(tmp_path / "b", log=lambda m: None),
        jobs=2,
        progress=False,
        log=lambda m: None,
    )
    assert set(two.runs["threads"]) == {worker_threads(2)}
    pd.testing.assert_series_equal(one.runs["val_psnr"], two.runs["val_psnr"], rtol=1e-4)


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
    assert set(result.runs["threads"]) == {1}


@pytest.mark.slow
def test_cli_study_and_runs(tmp_path, capsys, one_torch_thread):
    from alphaprune.cli import main

    assert main(["study", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: no such file" in capsys.readouterr().err
    params = tmp_path / "p.yaml"
    params.write_text(json.dumps(tiny_params(seeds=2)))  # JSON is YAML
    out = tmp_path / "out"
    store = tmp_path / "store"
    assert (
        main(["study", str(params), "--out", str(out), "--root", str(store), "--no-progress"]) == 0
    )
    printed = capsys.readouterr().out
    assert "one-shot" in printed and (out / "tables" / "study_summary.csv").exists()
    assert main(["runs", "list", "--root", str(store)]) == 0
    listing = capsys.readouterr().out
    assert "t-baseline" in listing and str(out.resolve()) in listing
    assert main(["study", str(params), "--jobs", "0"]) == 2
