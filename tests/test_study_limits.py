"""A study's seeds are whole numbers, and a study too large to run is refused with its size
(issue 20); every study says how many runs it starts and about how long they take."""

from __future__ import annotations

import pytest
from test_study import tiny_params

from alphaprune.engine.config import ConfigError
from alphaprune.study.spec import study_from_params

pytestmark = pytest.mark.training  # test tiers: see tests/conftest.py


@pytest.mark.parametrize(
    "change, key",
    [
        ({"seeds": "3"}, "study.seeds"),
        ({"seeds": 2.0}, "study.seeds"),
        ({"max_seeds": 1e9}, "study.max_seeds"),
        ({"max_seeds": True}, "study.max_seeds"),
        ({"budget": {"steps": "2", "steps_per_epoch": 1}}, "study.budget.steps"),
    ],
)
def test_seeds_and_steps_are_strict_integers(change, key):
    with pytest.raises(ConfigError, match=rf"p.yaml: {key}: must be an integer"):
        study_from_params(tiny_params(**change), source="p.yaml")


def test_a_huge_max_seeds_is_refused_with_the_number_of_runs():
    with pytest.raises(ConfigError, match=r"up to 2,000,000,000 runs.*allow_many_seeds"):
        study_from_params(tiny_params(max_seeds=1_000_000_000), source="p.yaml")
    spec = study_from_params(tiny_params(max_seeds=150, allow_many_seeds=True))
    assert spec.max_seeds == 150


def test_a_study_says_how_many_runs_and_how_long(tmp_path, one_torch_thread):
    from alphaprune.study.execution import run_study
    from alphaprune.study.store import RunStore

    messages = []
    spec = study_from_params(tiny_params())
    run_study(spec, RunStore(tmp_path, log=lambda m: None), progress=False, log=messages.append)
    (line,) = [m for m in messages if m.startswith("study 't': ")]
    assert line.startswith("study 't': 2 arms × 1 budget(s) × 1 baseline(s) × 2 seeds = 4 runs")
    assert "(at most 4 with max_seeds 2)" in line and "s each on this machine" in line
