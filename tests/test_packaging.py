"""The core install: pyproject's required dependencies are torch, numpy, pyyaml and pydantic, and
the core API (attach_gates, shrink, explain, print(plan), export to TorchScript) runs in a
process where every optional package is missing; a command that needs one names its extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]

# every top-level package an extra brings (import names)
OPTIONAL = [
    "pandas",
    "matplotlib",
    "PIL",
    "skimage",
    "sklearn",
    "scipy",
    "tqdm",
    "psutil",
    "pytorch_msssim",
    "papermill",
    "nbconvert",
    "nbformat",
    "ipykernel",
    "ipywidgets",
    "pynvml",
    "onnx",
    "onnxruntime",
    "torch_pruning",
    "torchvision",
    "dask",
]

BLOCKER = textwrap.dedent(
    f"""
    import importlib.abc, sys
    BLOCKED = set({OPTIONAL!r})
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
    sys.meta_path.insert(0, Block())
    """
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_the_core_install_requires_only_torch_numpy_pyyaml_pydantic() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {
        dep.split("=")[0].split(">")[0].split("[")[0].strip() for dep in project["dependencies"]
    }
    assert names == {"torch", "numpy", "pyyaml", "pydantic"}
    extras = project["optional-dependencies"]
    assert {"train", "report", "bench"} <= set(extras)
    assert any(dep.startswith("jupyterlab") for dep in extras["report"])


def test_the_core_api_runs_without_any_optional_package() -> None:
    result = _run(
        """
        import torch
        import alphaprune as ap
        model = ap.build_autoencoder("relu2_1")
        x = torch.rand(1, 3, 32, 32)
        plan = ap.attach_gates(model, keep=0.5, target="encoder", example_inputs=x)
        ap.set_alpha(model, 0.0)
        small = ap.shrink(model)
        assert torch.allclose(small(x), model(x), atol=1e-5)
        assert "pruned" in str(plan) and "encoder.0" in ap.explain(model, example_inputs=x, show=False)
        torch.jit.trace(small, x)
        missing = [m for m in BLOCKED if m in sys.modules]
        assert not missing, missing
        print("core ok")
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "core ok" in result.stdout


def test_a_command_that_needs_an_extra_names_it() -> None:
    result = _run(
        """
        from alphaprune.cli import main
        sys.exit(main(["report", "params/ci.yaml"]))
        """
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "pip install 'alphaprune[" in result.stderr
    assert "Traceback" not in result.stderr
