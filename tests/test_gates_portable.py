"""Gated models are ordinary modules: old checkpoints load, and script/export/compile/ONNX work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import alphaprune as ap
from alphaprune.engine.checkpoint import checkpoint_info, load_checkpoint

FIXTURES = Path(__file__).parent / "fixtures"
LEGACY = FIXTURES / "legacy_prune_v0.1.0.torchsave"  # written by alphaprune 0.1.0 (gate modules)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gated_model(alpha: float = 0.3) -> torch.nn.Module:
    torch.manual_seed(0)
    model = ap.build_autoencoder("relu2_1", batch_norm=True).eval()
    ap.attach_gates(model, keep=0.5, alpha=alpha)
    return model


def test_checkpoint_written_before_the_graph_core_loads_with_the_same_output() -> None:
    expected = torch.load(LEGACY.with_suffix(".output.torchsave"), weights_only=True)
    info = checkpoint_info(LEGACY)
    assert info["alpha"] == 0.25 and set(info["gates"]) == {
        "encoder.2",
        "decoder.2",
    }  # old gate modules
    loaded = load_checkpoint(LEGACY, verbose=False)
    model = loaded.model
    assert loaded.alpha == ap.get_alpha(model) == 0.25
    assert sorted(ap.gates(model)) == ["decoder.0", "decoder.3"]  # their consumers hold them
    with torch.no_grad():
        torch.testing.assert_close(model(expected["input"]), expected["output"])
    small = ap.shrink(model)
    with torch.no_grad():
        torch.testing.assert_close(small(expected["input"]), expected["output"])


def test_gate_costs_weights_not_activations_and_gradients_match_activation_gating() -> None:
    model = gated_model(alpha=0.0)
    gate = model.decoder[0]  # gates the 64 channels of encoder.2 → its input axis
    x = torch.rand(2, 3, 16, 16)
    model(x).pow(2).mean().backward()
    pruned = ~gate.mask
    # at α = 0 a pruned input column receives no gradient, a kept one does
    assert gate.weight.grad[:, pruned].abs().max() == 0
    assert gate.weight.grad[:, gate.mask].abs().max() > 0


@pytest.mark.heavy
def test_torch_jit_script_and_export_give_the_same_output() -> None:
    model = gated_model()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), expected)
        exported = torch.export.export(model, (x,))
        torch.testing.assert_close(exported.module()(x), expected)


@pytest.mark.slow
def test_torch_compile_gives_the_same_output() -> None:
    model = gated_model()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model)(x), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_onnx_export_runs_in_onnxruntime_with_the_same_output(tmp_path) -> None:
    import onnxruntime as ort  # a dev extra: make test installs it

    model = gated_model()
    x = torch.rand(1, 3, 32, 32)
    path = tmp_path / "gated.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=True)
    session = ort.InferenceSession(str(path))
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_keeps_alpha_and_checkpoint_round_trip(dtype, tmp_path) -> None:
    model = gated_model(alpha=0.1).to(dtype)
    assert ap.get_alpha(model) == 0.1
    path = tmp_path / "state.pt"
    torch.save(model.state_dict(), path)
    fresh = ap.build_autoencoder("relu2_1", batch_norm=True).to(dtype)
    state = torch.load(path, weights_only=True)
    ap.restore_gates(fresh, state)
    fresh.load_state_dict(state)
    assert ap.get_alpha(fresh) == 0.1
