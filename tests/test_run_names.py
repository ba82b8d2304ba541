"""Run names stay inside the runs folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import one_line_error
from cli_runner import run_cli as cli
from configs import one_step_config as tiny
from configs import write_yaml

from alphaprune.engine.config import ConfigError, config_from_dict

pytestmark = pytest.mark.training  # test tiers: see tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]


# --- case 1: run names stay inside the runs folder -----------------------------------------------


@pytest.mark.parametrize("name", ["..", "../escaped", "a/b", ".hidden", "x/../..", "/abs"])
def test_run_name_must_be_one_plain_folder_name(tmp_path, name):
    with pytest.raises(ConfigError, match=r"name: run name must be one folder name"):
        config_from_dict(tiny(tmp_path, name=name), source="t.yaml")


def test_cli_name_dotdot_writes_nothing_outside_runs(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    path = write_yaml(tmp_path / "x.yaml", tiny(tmp_path, output_dir="runs", epochs=0))
    result = cli("train", str(path), "--set", "name=..", "--no-progress", cwd=work)
    one_line_error(result, "name", "'..'")
    assert list(work.iterdir()) == []  # no ./checkpoints, no ./metrics.csv


def test_run_folder_symlinked_out_of_the_runs_root_is_refused(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "runs" / "base").symlink_to(tmp_path / "elsewhere")
    cfg = config_from_dict(tiny(tmp_path))
    with pytest.raises(ConfigError, match="does not lie inside"):
        _ = cfg.run_dir
