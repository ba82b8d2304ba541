"""A diverged run is never used as a result (issue 20): evaluating it, pruning from it, or
starting a report's experiment from its last checkpoint stops with exit code 3 naming it."""

from __future__ import annotations

import pytest
from cli_runner import one_line_error
from cli_runner import run_cli as cli
from configs import tiny_config, write_yaml

from alphaprune.engine.config import config_from_dict
from alphaprune.engine.train import train_baseline
from alphaprune.errors import Diverged

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def wild(tmp_path, **changes) -> dict:
    """A run that diverges in its first epoch (SGD at lr 1e30)."""
    data = tiny_config(tmp_path, steps=1, samples=2, name="div", epochs=2, **changes)
    data["optimizer"] = {"name": "sgd", "lr": 1e30}
    return data


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    folder = tmp_path_factory.mktemp("diverged")
    data = wild(folder)
    with pytest.raises(Diverged):
        train_baseline(config_from_dict(data), progress=False)
    return folder, data


def test_evaluate_of_a_diverged_run_exits_3(diverged):
    folder, data = diverged
    params = write_yaml(folder / "div.yaml", data)
    one_line_error(cli("evaluate", str(params), cwd=folder), "diverged at epoch", code=3)


def test_prune_from_a_diverged_runs_last_checkpoint_exits_3(diverged):
    folder, data = diverged
    params = write_yaml(folder / "p.yaml", tiny_config(folder, steps=1, samples=2, name="p"))
    result = cli(
        "prune", str(params), "--set", "init_from=runs/div/checkpoints/last.pt", cwd=folder
    )
    one_line_error(result, "run 'div' diverged at epoch", code=3)
    assert not (folder / "runs" / "p").exists()


def test_a_report_experiment_may_not_start_from_a_diverged_run(tmp_path, monkeypatch):
    from alphaprune.report.runs import run_all
    from alphaprune.study.store import RunStore

    monkeypatch.chdir(tmp_path)
    base = {**tiny_config(tmp_path, steps=1, samples=2, epochs=1), "output_dir": "runs"}
    experiments = [
        {"name": "div", "config": {**wild(tmp_path), "output_dir": "runs"}},
        {
            "name": "next",
            "start": {"run": "div"},
            "config": {**tiny_config(tmp_path, steps=1, samples=2), "name": "next"},
        },
    ]
    store = RunStore(tmp_path / "store", log=lambda m: None)
    with pytest.raises(Diverged, match="experiment 'next' starts from the last checkpoint of run"):
        run_all({**base, "name": "baseline"}, experiments, progress=False, store=store)
    assert not (tmp_path / "runs" / "next").exists()
