"""A model factory runs code: what alphaprune imports and calls, and what it refuses (issue 20).

Loading a checkpoint never imports or calls what the checkpoint names; a params file may name no
module of the standard library; a factory that fails says so in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml
from cli_runner import one_line_error
from cli_runner import run_cli as cli
from configs import tiny_config, write_yaml

from alphaprune.engine.checkpoint import (
    CheckpointError,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from alphaprune.engine.config import ConfigError, config_from_dict
from alphaprune.engine.models import build_model, import_factory
from alphaprune.engine.train import train_baseline

ROOT = Path(__file__).resolve().parents[1]
FACTORIES_ENV = "ALPHAPRUNE_FACTORIES"

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.training, pytest.mark.kernel]

#: A user's module: importing it leaves a mark, so a test sees whether anything imported it.
USER_MODULE = """
from pathlib import Path
import torch.nn as nn
Path(__file__).with_name("imported.mark").write_text("imported")

def build(width=4):
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 3, 3, padding=1))

def divides(width=4):
    return 1 / 0

def inner_type_error(width=4):
    return nn.Conv2d(3, "x", 3)

def not_a_module(width=4):
    return width

def needs_32(width=4):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = build(width)
        def forward(self, x):
            assert x.shape[-1] == 32, "this net takes 32-pixel images"
            return self.body(x)
    return Net()
"""


@pytest.fixture(autouse=True)
def trusted_in_this_test_only(monkeypatch):
    """What the CLI trusts (its params' factory) stays within the test that ran it."""
    try:
        import alphaprune.engine.factories as factories
    except ImportError:  # code from before factories had a module of their own
        return
    monkeypatch.setattr(factories, "_TRUSTED", set())


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch) -> Path:
    """``userfactories.py`` importable from ``tmp_path`` (like the user's own package)."""
    folder = tmp_path / "userpkg"
    folder.mkdir()
    (folder / "userfactories.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    sys.modules.pop("userfactories", None)


@pytest.fixture(scope="module")
def baseline_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("baseline")
    cfg = config_from_dict(tiny_config(folder, steps=1, samples=2, epochs=1))
    return train_baseline(cfg, progress=False).checkpoint


def naming(checkpoint: Path, out: Path, model: dict) -> Path:
    """A copy of ``checkpoint`` whose saved config names ``model`` (as a hostile file would)."""
    data = read_checkpoint(checkpoint)
    data["config"] = {**data["config"], "model": model}
    save_checkpoint(out, {k: v for k, v in data.items() if k not in ("format", "version")})
    return out


def hostile(checkpoint: Path, tmp_path: Path) -> tuple[Path, Path]:
    mark = tmp_path / "PWNED"
    path = naming(
        checkpoint,
        tmp_path / "evil.pt",
        {"factory": "os:system", "kwargs": {"command": f"touch {mark}"}},
    )
    return path, mark


# --- a checkpoint names code: nothing is imported or called -------------------------------------


def test_load_model_never_runs_the_factory_a_checkpoint_names(baseline_checkpoint, tmp_path):
    path, mark = hostile(baseline_checkpoint, tmp_path)
    with pytest.raises(CheckpointError, match="standard library") as err:
        load_model(path)
    assert "\n" not in str(err.value) and not mark.exists()


@pytest.mark.parametrize("command", ["evaluate", "shrink"])
def test_cli_refuses_a_checkpoint_naming_os_system(baseline_checkpoint, tmp_path, command):
    path, mark = hostile(baseline_checkpoint, tmp_path)
    params = write_yaml(tmp_path / "p.yaml", tiny_config(tmp_path, steps=1, samples=2))
    result = cli(command, str(params), "--checkpoint", str(path), cwd=tmp_path)
    one_line_error(result, "os:system", "standard library")
    assert not mark.exists()


def test_an_untrusted_factory_in_a_checkpoint_is_not_even_imported(
    baseline_checkpoint, tmp_path, user_module, monkeypatch
):
    spec = "userfactories:build"
    path = naming(baseline_checkpoint, tmp_path / "user.pt", {"factory": spec, "kwargs": {}})
    with pytest.raises(CheckpointError, match="you have not allowed") as err:
        load_model(path)
    assert FACTORIES_ENV in str(err.value) and f"factory='{spec}'" in str(err.value)
    assert not (user_module / "imported.mark").exists()  # refused before any import
    # the three ways the user allows it: an explicit factory, the allow-list, their own params
    with pytest.raises(CheckpointError, match="does not fit"):  # built, but it is a VGG state
        load_model(path, factory=spec)
    assert (user_module / "imported.mark").exists()
    monkeypatch.setenv(FACTORIES_ENV, "otherpkg, userfactories")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(path)


def test_checkpoints_of_a_users_factory_load_with_factory_or_model(tmp_path, user_module):
    spec = "userfactories:build"
    data = tiny_config(tmp_path, steps=1, samples=2, epochs=1, model={"factory": spec})
    data["pruning"]["target"] = "all"
    run = train_baseline(config_from_dict(data), progress=False)
    with pytest.raises(CheckpointError, match="not allowed"):
        load_model(run.checkpoint, verbose=False)
    import userfactories

    model = load_model(run.checkpoint, verbose=False, factory=userfactories.build)
    into = load_model(run.checkpoint, verbose=False, model=userfactories.build())
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), into(x))
    params = write_yaml(tmp_path / "own.yaml", data)  # the CLI trusts its params' factory
    result = cli("evaluate", str(params), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


# --- a params file names code: the standard library is refused ---------------------------------


@pytest.mark.parametrize(
    "spec",
    ["os:system", "subprocess:run", "builtins:exec", "shutil:rmtree", "os.path:join"],
)
def test_standard_library_factories_are_refused(spec, tmp_path):
    with pytest.raises(ConfigError, match="standard library"):
        import_factory(spec)
    with pytest.raises(ConfigError, match="model.factory"):
        config_from_dict(tiny_config(tmp_path, model={"factory": spec}))


def test_cli_set_factory_os_system_runs_nothing(tmp_path):
    mark = tmp_path / "PWNED"
    params = write_yaml(tmp_path / "p.yaml", tiny_config(tmp_path, steps=1, samples=2))
    result = cli(
        "train",
        str(params),
        "--set",
        "model.factory=os:system",
        f"--set=model.kwargs={{command: 'touch {mark}'}}",
        cwd=tmp_path,
    )
    one_line_error(result, "model.factory", "standard library")
    assert not mark.exists() and not (tmp_path / "runs").exists()


def test_report_params_naming_os_system_are_refused_in_the_notebook_too(tmp_path):
    from alphaprune.report.notebook import PARAMETER_NAMES, setup
    from alphaprune.report.validation import report_params_from_dict

    data = yaml.safe_load((ROOT / "params" / "ci.yaml").read_text(encoding="utf-8"))
    data["defaults"]["model"] = {"factory": "os:system", "kwargs": {"command": "touch x"}}
    with pytest.raises(ConfigError, match="standard library"):
        report_params_from_dict(data, source="w.yaml")
    namespace = {name: None for name in PARAMETER_NAMES} | data  # as papermill -f injects it
    with pytest.raises(ConfigError, match="standard library"):
        setup(namespace, "01_prune")


def test_alphaprune_functions_other_than_its_builders_are_refused():
    with pytest.raises(ConfigError, match="not one of alphaprune's model builders"):
        import_factory("alphaprune.atomic:atomic_write_text")
    assert callable(import_factory("alphaprune.engine.models:build_unet"))


# --- a factory that fails: one line naming it ---------------------------------------------------


def call_factory(spec: str, kwargs: dict):
    return build_model({"factory": spec, "kwargs": kwargs})


def test_a_factory_that_raises_is_one_line_naming_it_and_where(tmp_path, user_module):
    with pytest.raises(ConfigError) as err:
        call_factory("userfactories:divides", {"width": 4})
    text = str(err.value)
    assert "'userfactories:divides' raised ZeroDivisionError" in text
    assert "userfactories.py:" in text and "\n" not in text
    params = write_yaml(
        tmp_path / "p.yaml",
        tiny_config(tmp_path, steps=1, samples=2, model={"factory": "userfactories:divides"}),
    )
    one_line_error(cli("train", str(params), cwd=tmp_path), "raised ZeroDivisionError")
    assert not (tmp_path / "runs" / "base").exists()  # no half-made run folder


def test_a_type_error_inside_the_factory_is_not_blamed_on_kwargs(user_module):
    with pytest.raises(ConfigError) as err:
        call_factory("userfactories:inner_type_error", {"width": 4})
    assert "raised TypeError" in str(err.value) and "rejected kwargs" not in str(err.value)
    with pytest.raises(ConfigError, match=r"rejected kwargs \{'widht': 4\}"):
        call_factory("userfactories:build", {"widht": 4})
    with pytest.raises(ConfigError, match="returned int, not a torch module"):
        call_factory("userfactories:not_a_module", {})


def test_a_module_failing_at_import_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "brokenmod.py").write_text("import nosuchdependency_xyz\n")
    (tmp_path / "raisingmod.py").write_text("raise RuntimeError('bad module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="cannot import module 'brokenmod'.*working folder"):
        import_factory("brokenmod:build")
    with pytest.raises(ConfigError, match="raised RuntimeError: bad module"):
        import_factory("raisingmod:build")


# --- the input the model is traced with ---------------------------------------------------------


def test_example_input_with_the_wrong_channel_count_names_the_key(tmp_path, user_module):
    model = {"factory": "userfactories:build", "example_input_size": [1, 4, 16, 16]}
    params = write_yaml(tmp_path / "p.yaml", tiny_config(tmp_path, model=model))
    line = one_line_error(cli("train", str(params), cwd=tmp_path), "model.example_input_size")
    assert "3 channels" in line


def test_a_model_that_cannot_run_on_its_example_input_names_the_key(
    baseline_checkpoint, tmp_path, user_module
):
    model = {"factory": "userfactories:needs_32", "example_input_size": [1, 3, 16, 16]}
    data = tiny_config(tmp_path, steps=1, samples=2, epochs=1, model=model)
    data["data"]["crop"] = 32
    base = train_baseline(config_from_dict({**data, "name": "b32"}), progress=False)
    params = write_yaml(
        tmp_path / "p.yaml", {**data, "name": "p", "init_from": str(base.checkpoint)}
    )
    line = one_line_error(cli("prune", str(params), cwd=tmp_path), "model.example_input_size")
    assert "32-pixel images" in line
    assert not (tmp_path / "runs" / "p").exists()


# --- a factory the notebooks' kernel cannot import ----------------------------------------------


def test_report_names_a_factory_only_the_current_folder_provides(tmp_path, monkeypatch):
    from alphaprune.errors import ReportParamsError
    from alphaprune.report.runner import run_report

    (tmp_path / "cwdonly.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # as `python -m` puts the current folder first
    data = yaml.safe_load((ROOT / "params" / "ci.yaml").read_text(encoding="utf-8"))
    data["defaults"]["model"] = {"factory": "cwdonly:build", "example_input_size": [1, 3, 32, 32]}
    data["notebooks_dir"] = str(ROOT / "notebooks")
    params = write_yaml(tmp_path / "w.yaml", data)
    with pytest.raises(ReportParamsError) as err:
        run_report(params, out_dir=tmp_path / "out")
    text = str(err.value)
    assert "cwdonly" in text and str(tmp_path) in text and "PYTHONPATH" in text
    assert "\n" not in text and not (tmp_path / "out").exists()  # checked before any folder


def test_with_an_allow_list_a_params_factory_outside_it_is_not_even_imported(
    tmp_path, monkeypatch
) -> None:
    """Set ALPHAPRUNE_FACTORIES (a shared machine, CI): a params factory from another package is
    refused before import; one from a listed package and the built-ins still work."""
    from alphaprune.engine.factories import import_factory

    planted = tmp_path / "shellish.py"
    planted.write_text(
        "import pathlib\npathlib.Path(__file__).with_suffix('.ran').touch()\n"
        "def system(cmd):\n    return 0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ALPHAPRUNE_FACTORIES", "mylab.models")
    with pytest.raises(ConfigError, match="not in ALPHAPRUNE_FACTORIES=mylab.models"):
        import_factory("shellish:system")
    assert not planted.with_suffix(".ran").exists()
    assert import_factory("alphaprune.engine.models:build_unet") is not None
    monkeypatch.setenv("ALPHAPRUNE_FACTORIES", "shellish")
    assert callable(import_factory("shellish:system"))  # listed: the user's choice
