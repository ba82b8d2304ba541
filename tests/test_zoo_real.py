"""The real-model benchmark (``benchmarks/zoo_real.py``, the ``zoo`` extra) on three public
models, and what it relies on: torchvision's PyPI wheel importing on the CPU torch, no model
library in ``alphaprune`` itself, the per-model time limit."""

from __future__ import annotations

import ast
import dataclasses
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# appended, not prepended: tests/zoo.py keeps the name ``zoo``
sys.path.append(str(ROOT / "benchmarks"))

import zoo_real  # noqa: E402
from torchvision_shim import import_torchvision  # noqa: E402

MODEL_LIBRARIES = {"torchvision", "timm", "segmentation_models_pytorch", "diffusers"}
#: Every model issue 18 names.
NAMED = [
    "tv/resnet50",
    "tv/densenet121",
    "tv/mobilenet_v2",
    "tv/shufflenet_v2_x1_0",
    "tv/efficientnet_b0",
    "tv/efficientnet_v2_s",
    "tv/convnext_tiny",
    "tv/vit_b_16",
    "tv/swin_t",
    "timm/efficientnet_b0",
    "timm/mobilenetv3_large_100",
    "timm/rexnet_100",
    "timm/ghostnet_100",
    "timm/convnext_nano",
    "timm/regnetx_002",
    "timm/cspdarknet53",
    "timm/repvgg_a0",
    "timm/res2net50_26w_4s",
    "timm/dpn68",
    "timm/poolformer_s12",
    "timm/mobilevit_xxs",
    "timm/deit_tiny_patch16_224",
    "smp/Unet",
    "smp/UnetPlusPlus",
    "smp/FPN",
    "diffusers/UNet2DModel",
    "diffusers/AutoencoderKL",
]
ROW_COLUMNS = {"params", "flops", "ap_status", "ap_attach_s", "ap_shrink_s", "ap_groups_gated"}


def spec(name: str, size: int) -> zoo_real.Spec:
    (found,) = zoo_real.select([name])
    return dataclasses.replace(found, input_size=(1, 3, size, size))


def test_the_zoo_has_39_models_and_every_one_the_issue_names() -> None:
    names = [s.name for s in zoo_real.MODELS]
    assert len(names) == len(set(names)) == 39
    assert not set(NAMED) - set(names)


@pytest.mark.heavy
def test_the_library_imports_no_model_library() -> None:
    found = []
    for path in sorted((ROOT / "lib" / "alphaprune").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in MODEL_LIBRARIES]
    assert not found


@pytest.mark.slow
def test_torchvision_imports_on_the_cpu_torch_and_builds_a_model() -> None:
    torchvision = import_torchvision()
    assert torch.library.register_fake.__module__ == "torch.library"  # the shim put it back
    model = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1000)


@pytest.mark.slow
def test_resnet18_shrinks_exactly_as_far_as_torch_pruning_and_its_onnx_matches(
    one_torch_thread,
) -> None:
    resnet = spec("tv/resnet18", 64)
    ap_row = zoo_real.run_alphaprune(resnet, onnx=True, save=lambda row: None)
    assert ROW_COLUMNS <= set(ap_row)
    assert ap_row["ap_status"] == "pruned exactly"
    assert ap_row["ap_max_rel_diff"] <= 1e-5
    assert 0.2 < ap_row["ap_params_ratio"] < 0.3  # half of every inner group: ~(1/2)²
    assert 0.2 < ap_row["ap_flops_ratio"] < 0.35
    assert ap_row["ap_pinned"] == ""  # every inner group is pruned
    assert ap_row["ap_onnx_rel_diff"] <= 1e-4  # onnxruntime computes the shrunk model
    assert ap_row["ap_onnx_latency_ratio"] > 0 and ap_row["ap_onnx_calls"] >= 5
    assert ap_row["ap_onnx_exporter"] in (
        "torchscript opset 17",
        "dynamo opset 17",
        "dynamo opset 18",
    )
    tp_row = zoo_real.run_torch_pruning(resnet, onnx=False, save=lambda row: None)
    assert tp_row["tp_status"] == "pruned"
    assert tp_row["tp_params_ratio"] == pytest.approx(ap_row["ap_params_ratio"], abs=5e-4)


@pytest.mark.slow
def test_timm_vit_loses_whole_heads_exactly(one_torch_thread) -> None:
    """timm's own ``Attention`` (fused qkv, ``reshape(B, N, 3, num_heads, head_dim)``, its
    ``attn_dim``): half the heads go, ``num_heads`` follows, the shrunk model equals the gated
    one; also on the manual attention path (``fused_attn = False``) with ``qk_norm`` (a
    LayerNorm over each head's width)."""
    import alphaprune as ap

    for fused, qk_norm in ((True, False), (False, True)):
        build = zoo_real.timm_model(
            "vit_tiny_patch16_224",
            img_size=32,
            patch_size=8,
            depth=2,
            num_classes=5,
            qk_norm=qk_norm,
        )
        torch.manual_seed(0)
        model = build().eval()
        for block in model.blocks:
            block.attn.fused_attn = fused
        x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        plan = ap.attach_gates(model, keep=0.5, example_inputs=x)
        assert plan["blocks.0.attn.qkv"].units == 3  # vit_tiny: 3 heads of 64
        ap.set_alpha(model, 0.0)
        small = ap.shrink(model, example_inputs=x)
        attn = small.blocks[0].attn
        assert (attn.num_heads, attn.head_dim, attn.attn_dim) == (2, 64, 128)
        with torch.no_grad():
            y, expected = small(x * 2), model(x * 2)
        assert (y - expected).abs().max() <= 1e-5 * expected.abs().max() + 1e-6


@pytest.mark.slow
def test_smp_unet_shrinks_exactly(one_torch_thread) -> None:
    row = zoo_real.run_alphaprune(spec("smp/Unet", 64), onnx=False, save=lambda row: None)
    assert row["ap_status"] == "pruned exactly", row["ap_status"]
    assert row["ap_max_rel_diff"] <= 1e-5
    assert row["ap_params_ratio"] < 0.5 and row["ap_flops_ratio"] < 0.5


TINY_UNET = dict(
    sample_size=16,
    block_out_channels=(32, 64),
    down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    layers_per_block=1,
    norm_num_groups=8,
)


@pytest.mark.slow
def test_a_tiny_diffusers_unet_is_shrunk_exactly(one_torch_thread) -> None:
    """At fa44dba alphaprune refused diffusers' UNet2DModel (its forward branches on the
    timestep's shape, which torch.fx could not trace); issue 18 asks for it to be pruned, and
    still to run: it is traced with concrete shapes and shrunk exactly."""
    unet = zoo_real.Spec(
        "diffusers/tiny",
        zoo_real.diffusers_model("UNet2DModel", zoo_real.UNetSample, **TINY_UNET),
        (2, 3, 16, 16),
        timestep=True,
    )
    row = zoo_real.run_alphaprune(unet, onnx=False, save=lambda row: None)
    assert row["ap_status"] == "pruned exactly", row["ap_status"]
    assert row["ap_max_rel_diff"] <= 1e-5 and row["ap_params_ratio"] < 0.75
    tp_row = zoo_real.run_torch_pruning(unet, onnx=False, save=lambda row: None)
    assert tp_row["tp_status"] == "pruned" or tp_row["tp_status"].startswith("broken forward")


def test_a_model_past_its_time_limit_is_stopped_and_reported(tmp_path) -> None:
    """The subprocess guard: a limit no run can meet (0.01 s, less than importing torch)."""
    args = Namespace(threads=1, skip_onnx=True, timeout=0.01)
    row = zoo_real.run_isolated(spec("tv/resnet18", 32), "torch-pruning", args)
    assert row == {"tp_status": "timeout (> 0.01 s) in build"}
