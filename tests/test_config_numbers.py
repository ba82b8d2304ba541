"""Numbers in params files: non-finite, bool, huge, YAML 1.1 exponents, duplicate keys, empty files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cli_runner import one_line_error
from cli_runner import run_cli as cli
from configs import one_step_config as tiny
from configs import write_yaml

from alphaprune.engine.config import ConfigError, config_from_dict, load_config

pytestmark = pytest.mark.training  # test tiers: see tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]


# --- case 3 (schema part) and the unclear inputs: numbers --------------------------------------


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("optimizer.lr", ".inf"),
        ("optimizer.weight_decay", ".inf"),
        ("optimizer.weight_decay", ".nan"),
        ("optimizer.momentum", ".nan"),
        ("loss.pixel", ".inf"),
        ("loss.vgg_feature", ".nan"),
        ("pruning.keep", ".nan"),
        ("schedule.lr", ".inf"),
    ],
)
def test_non_finite_numbers_are_refused_everywhere(tmp_path, key, text):
    path = write_yaml(tmp_path / "x.yaml", tiny(tmp_path))
    with pytest.raises(ConfigError) as err:
        load_config(path, [f"{key}={text}"])
    message = str(err.value)
    assert str(path) in message and key.split(".")[0] in message
    assert "\n" not in message


def test_report_params_refuse_non_finite_and_bool_numbers(tmp_path):
    from alphaprune.report.params import ReportParamsError, report_params_from_dict

    data = yaml.safe_load((ROOT / "params" / "ci.yaml").read_text(encoding="utf-8"))
    for section, key, value in [
        ("shrink", "tolerance", float("inf")),
        ("gpu", "gpu_seconds", float("nan")),
        ("gpu", "repeats", True),
    ]:
        bad = json.loads(json.dumps(data))
        bad[section][key] = value
        with pytest.raises(ReportParamsError, match=rf"{section}\.{key}"):
            report_params_from_dict(bad, source="w.yaml")


def test_bool_is_not_an_int(tmp_path):
    for key in ("epochs", "seed", "data.batch_size", "steps_per_epoch"):
        with pytest.raises(ConfigError, match=rf"{key}: must be an integer.*got True"):
            config_from_dict(tiny(tmp_path, **{key: True}), source="t.yaml")


def test_huge_seed_names_the_key(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(tiny(tmp_path)) + "")
    with pytest.raises(ConfigError, match=r"x.yaml: seed: .*99999999999999999999"):
        load_config(path, ["seed=99999999999999999999"])


def test_exponent_without_dot_is_a_float_everywhere(tmp_path):
    path = tmp_path / "x.yaml"
    data = tiny(tmp_path)
    data["schedule"] = {"kind": "constant", "alpha": 0.0, "lr": "LR"}
    data["optimizer"] = {"lr": "LR", "weight_decay": "WD"}
    text = yaml.safe_dump(data).replace("LR", "1e-3").replace("WD", "1E-4")
    path.write_text(text.replace("'", ""))
    assert "lr: 1e-3" in path.read_text()
    cfg = load_config(path, ["loss.pixel=2e0"])
    assert cfg.optimizer.lr == 0.001 and cfg.optimizer.weight_decay == 0.0001
    assert cfg.build_schedule().lr_for(0) == 0.001 and cfg.loss.pixel == 2.0
    with pytest.raises(ConfigError, match="optimizer.lr: must be a number"):
        config_from_dict(tiny(tmp_path, **{"optimizer.lr": "1e-3"}), source="t")  # a string


def test_duplicate_keys_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nepochs: 1\noptimizer: {lr: 0.1}\nepochs: 3\n")
    with pytest.raises(ConfigError, match=r"dup.yaml: not valid YAML: duplicate key 'epochs'"):
        load_config(path)
    nested = tmp_path / "nested.yaml"
    nested.write_text("optimizer:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'lr' \(line 3, column 3\)"):
        load_config(nested)


def test_empty_params_file_is_refused(tmp_path):
    for text in ("", "# only a comment\n", "---\n"):
        path = tmp_path / "empty.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match="empty.yaml: empty params file"):
            load_config(path)
    result = cli("train", str(path), cwd=tmp_path)
    one_line_error(result, "empty params file")
    assert not (tmp_path / "runs").exists()


def test_set_value_that_is_not_yaml_is_one_line(tmp_path):
    path = write_yaml(tmp_path / "x.yaml", tiny(tmp_path))
    with pytest.raises(ConfigError, match=r"--set optimizer.lr: value '\[1,' is not valid YAML"):
        load_config(path, ["optimizer.lr=[1,"])
    result = cli("train", str(path), "--set", "optimizer.lr=[1,", cwd=tmp_path)
    one_line_error(result, "optimizer.lr", "not valid YAML")
