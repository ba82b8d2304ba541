"""Export for deployment: ONNX, torch.export and TorchScript artefacts, verified against the torch
model on fresh inputs before their record is written; the ``export`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_runner import run_cli as cli
from configs import tiny_config, write_yaml
from torch import nn

import alphaprune as ap
from alphaprune.engine import export as export_module
from alphaprune.engine.config import config_from_dict
from alphaprune.engine.export import export, load_exported, record_path
from alphaprune.engine.train import train_baseline
from alphaprune.errors import ModelExportError, PruningError, UserError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gated_unet(alpha: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    model = ap.build_unet(width=8, depth=2).eval()
    ap.attach_gates(model, keep=0.5, target="all", alpha=alpha)
    return model


@pytest.mark.parametrize("fmt", ["pt2", "torchscript"])
def test_export_shrinks_verifies_and_records(tmp_path, fmt) -> None:
    model = gated_unet()
    path = tmp_path / f"unet.{fmt}"
    result = export(model, torch.zeros(1, 3, 32, 32), path, format=fmt, fingerprint="abc")
    record = json.loads(record_path(path).read_text())
    assert result.path == path and path.is_file() and record == result.record
    small = ap.shrink(model)
    assert record["params"] == sum(p.numel() for p in small.parameters())
    assert record["flops"] == ap.count(small, (1, 3, 32, 32))["flops"]
    assert record["alpha"] == 0.0 and record["fingerprint"] == "abc" and record["dynamic_batch"]
    check = record["verification"]
    assert check["passed"] and check["max_rel_diff"] <= 1e-5 and check["inputs"] == [[3, 3, 32, 32]]
    loaded = load_exported(fmt, path)
    x = torch.randn(5, 3, 32, 32)  # a batch size it was never run at
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-4, atol=1e-5)


def test_onnx_export_runs_in_onnxruntime(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    model = ap.build_autoencoder("relu1_1").eval()
    ap.attach_gates(model, keep=0.5, target="both", alpha=0.0)
    path = tmp_path / "ae.onnx"
    record = export(model, torch.zeros(1, 3, 16, 16), path).record
    assert record["opset"] >= 17 and record["verification"]["runtime"].startswith("onnxruntime")
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(load_exported("onnx", path)(x), model(x), rtol=1e-4, atol=1e-5)


def test_a_model_at_another_alpha_is_refused_unless_asked(tmp_path) -> None:
    model = gated_unet(alpha=0.3)
    with pytest.raises(PruningError, match="gates are at α=0.3"):
        export(model, torch.zeros(1, 3, 32, 32), tmp_path / "m.pt2", format="pt2")
    assert not (tmp_path / "m.pt2").exists()
    record = export(
        model, torch.zeros(1, 3, 32, 32), tmp_path / "m.pt2", format="pt2", allow_alpha=True
    ).record
    assert record["alpha"] == 0.3


def test_a_mismatch_leaves_nothing_behind(tmp_path, monkeypatch) -> None:
    real = export_module.load_exported

    def off_by_a_bit(fmt, path):
        loaded = real(fmt, path)
        return lambda *xs: loaded(*xs) * 1.001

    monkeypatch.setattr(export_module, "load_exported", off_by_a_bit)
    path = tmp_path / "unet.pt2"
    with pytest.raises(ModelExportError, match="differs from the torch model: max rel diff"):
        export(gated_unet(), torch.zeros(1, 3, 32, 32), path, format="pt2")
    assert list(tmp_path.iterdir()) == []  # no artefact, no record, no temp file


class FixedBatch(nn.Module):
    """A forward that hard-codes the batch size (``view(1, -1)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 2)

    def forward(self, x):
        return self.fc(self.conv(x).view(1, -1))


def test_a_fixed_batch_size_needs_a_static_export(tmp_path) -> None:
    model = FixedBatch().eval()
    with pytest.raises(ModelExportError, match="static batch"):
        export(model, torch.zeros(1, 3, 8, 8), tmp_path / "f.torchscript.pt", format="torchscript")
    result = export(
        model,
        torch.zeros(1, 3, 8, 8),
        tmp_path / "f.torchscript.pt",
        format="torchscript",
        dynamic_batch=False,
    )
    assert result.record["verification"]["inputs"] == [[1, 3, 8, 8]]
    assert result.record["alpha"] is None  # an ungated model is exported as it is


def test_an_unknown_format_is_a_user_error(tmp_path) -> None:
    with pytest.raises(UserError, match="export format must be one of"):
        export(gated_unet(), torch.zeros(1, 3, 32, 32), tmp_path / "m", format="tflite")


def pruned_run(tmp_path: Path, schedule: dict) -> Path:
    base = train_baseline(config_from_dict(tiny_config(tmp_path, epochs=1)), progress=False)
    data = tiny_config(tmp_path, name="pruned", epochs=1, schedule=schedule)
    data["init_from"] = str(base.checkpoint)
    path = write_yaml(tmp_path / "pruned.yaml", data)
    result = cli("prune", str(path), "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return path


def test_the_export_command(tmp_path) -> None:
    params = pruned_run(tmp_path, {"kind": "constant", "alpha": 0.0, "lr": 1e-3})
    result = cli("export", str(params), "--format", "torchscript", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    out = Path(summary["out"])
    assert out == tmp_path / "runs" / "pruned" / "shrunk.torchscript.pt" and out.is_file()
    assert summary["alpha"] == 0.0 and summary["max_rel_diff"] <= 1e-5
    record = json.loads(record_path(out).read_text())
    assert record["source"].endswith("checkpoints/last.pt") and record["format"] == "torchscript"


def test_the_export_command_refuses_a_run_not_at_alpha_0(tmp_path) -> None:
    params = pruned_run(tmp_path, {"kind": "constant", "alpha": 0.5, "lr": 1e-3})
    result = cli("export", str(params), "--format", "pt2", cwd=tmp_path)
    assert result.returncode == 2 and "gates are at α=0.5" in result.stderr
    assert "Traceback" not in result.stderr
    out = tmp_path / "elsewhere.pt2"
    args = ("export", str(params), "--format", "pt2", "--allow-alpha", "--out", str(out))
    assert cli(*args, cwd=tmp_path).returncode == 0 and out.is_file()
