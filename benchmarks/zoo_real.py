"""The real-model zoo of issue 18: 39 public architectures, alphaprune vs Torch-Pruning 1.6.1.

Models come from torchvision, timm, segmentation-models-pytorch and diffusers (the ``zoo`` extra:
``pip install -e '.[zoo]'``, see docs/models.md) at random init: no weights are downloaded
(``weights=None``, ``pretrained=False``, ``encoder_weights=None``, diffusers from a config dict;
``HF_HUB_OFFLINE=1``). Norm statistics and affine parameters, and parameters left constant by
their init (zero heads, LayerScale 1e-6), are drawn at random so that a wrong cut shows in the
output. Each model is run twice, each time in a fresh subprocess with a time limit (``--timeout``):

- **alphaprune**: ``attach_gates(keep=0.5, target="all")``, ``set_alpha(0)``, ``shrink``; the
  shrunk model against the gated one on an input other than the traced one (``rel <= 1e-5``).
  Status: ``pruned exactly``, ``nothing pruned``, ``refused (stage): reason`` (an alphaprune
  ``UserError``), ``wrong: …`` or ``raw error (stage): type``. ``ap_pinned`` sums up the groups
  it leaves whole and why (every group: ``zoo_real_pinned.csv``).
- **Torch-Pruning**: ``BasePruner`` + ``MagnitudeImportance(p=1)``, ``pruning_ratio=0.5``, the
  output layer (the last Conv/Linear the forward calls) ignored, and for timm's attention its
  recipe for heads (``num_heads`` of each ``qkv``, whole heads at the same ratio, the counts
  written back after ``step()``), ``step()``, then a forward pass that must keep the output
  shape. Attributes other code reads (torchvision ViT's ``hidden_dim``, PoolFormer's
  ``Scale.shape``) are not patched: a stale one is a ``broken forward``. Status ``pruned``,
  ``nothing pruned``, ``broken forward: …``, ``raw error: …`` or ``timeout``.

Columns: params and FLOPs ratios (``torch.utils.flop_counter``, via ``ap.count`` for one input),
``ap_attach_s`` / ``ap_shrink_s`` (trace + gate; shrink with its own verification pass),
``tp_build_s`` / ``tp_step_s``, and for each pruned model its ONNX export (opset 17, dynamic
batch) timed in onnxruntime (one thread) interleaved with the original's ONNX:
``*_onnx_latency_ratio`` = pruned / original median latency, batch 1 at the table's input size.

    nice -n 10 .venv/bin/python benchmarks/zoo_real.py       # all 39: results/zoo_real.csv
    .venv/bin/python benchmarks/zoo_real.py --only tv/resnet18 smp/Unet --skip-tp --skip-onnx
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn
from torchvision_shim import import_torchvision
from zoo_common import error, exactness, markdown, n_params, randomise_norms, short
from zoo_onnx import onnx_latency

import alphaprune as ap
from alphaprune.atomic import atomic_write_text
from alphaprune.bench import torch_pruning_pruner, write_csv
from alphaprune.errors import UserError

RESULTS = Path(__file__).parent / "results"
PRUNERS = ("alphaprune", "torch-pruning")

# -- the models ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A model of the zoo: ``name`` is ``library/model``; ``timestep``: the forward also takes
    a diffusion timestep (one integer per sample)."""

    name: str
    build: Callable[[], nn.Module] = field(repr=False)
    input_size: tuple[int, ...]
    timestep: bool = False

    @property
    def library(self) -> str:
        return self.name.split("/")[0]

    def inputs(self, seed: int) -> tuple[Tensor, ...]:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(self.input_size, generator=g)
        if not self.timestep:
            return (x,)
        return (x, torch.randint(0, 1000, (self.input_size[0],), generator=g))


class UNetSample(nn.Module):
    """A diffusers UNet whose forward returns the predicted tensor (``return_dict=False``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, sample: Tensor, timestep: Tensor) -> Tensor:
        return self.model(sample, timestep, return_dict=False)[0]


class VAESample(nn.Module):
    """A diffusers autoencoder whose forward returns the reconstruction (posterior mode)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, sample: Tensor) -> Tensor:
        return self.model(sample, return_dict=False)[0]


def offline_import(name: str):
    """Import a model library with the Hugging Face hub offline (nothing may be downloaded) and
    torchvision imported first, through the shim (timm and smp import it)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import_torchvision()
    return importlib.import_module(name)


def torchvision_model(name: str, **kwargs) -> Callable[[], nn.Module]:
    return lambda: getattr(offline_import("torchvision.models"), name)(weights=None, **kwargs)


def timm_model(name: str, **kwargs) -> Callable[[], nn.Module]:
    return lambda: offline_import("timm").create_model(name, pretrained=False, **kwargs)


def smp_model(arch: str, encoder: str = "resnet18") -> Callable[[], nn.Module]:
    smp = "segmentation_models_pytorch"
    return lambda: getattr(offline_import(smp), arch)(encoder_name=encoder, encoder_weights=None)


def diffusers_model(cls: str, wrapper: type[nn.Module], **config) -> Callable[[], nn.Module]:
    return lambda: wrapper(getattr(offline_import("diffusers"), cls)(**config))


#: google/ddpm-cifar10-32's UNet (35.7 M params, 32² images).
DDPM_CIFAR10 = dict(
    sample_size=32,
    block_out_channels=(128, 256, 256, 256),
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    layers_per_block=2,
    attention_head_dim=None,
    downsample_padding=0,
    flip_sin_to_cos=False,
    freq_shift=1,
    norm_eps=1e-6,
)
#: Stable Diffusion's VAE (stabilityai/sd-vae-ft-mse, 83.7 M params).
SD_VAE = dict(
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    latent_channels=4,
    sample_size=256,
)

S128, S224 = (1, 3, 128, 128), (1, 3, 224, 224)
TORCHVISION = [
    Spec("tv/resnet18", torchvision_model("resnet18"), S128),
    Spec("tv/resnet50", torchvision_model("resnet50"), S128),
    Spec("tv/resnext50_32x4d", torchvision_model("resnext50_32x4d"), S128),
    Spec("tv/densenet121", torchvision_model("densenet121"), S128),
    Spec("tv/vgg16_bn", torchvision_model("vgg16_bn"), S128),
    Spec("tv/alexnet", torchvision_model("alexnet"), S128),
    Spec("tv/squeezenet1_1", torchvision_model("squeezenet1_1"), S128),
    Spec("tv/googlenet", torchvision_model("googlenet", aux_logits=False, init_weights=True), S128),
    Spec(
        "tv/inception_v3",
        torchvision_model("inception_v3", aux_logits=False, init_weights=True),
        S128,
    ),
    Spec("tv/mobilenet_v2", torchvision_model("mobilenet_v2"), S128),
    Spec("tv/mobilenet_v3_large", torchvision_model("mobilenet_v3_large"), S128),
    Spec("tv/mnasnet1_0", torchvision_model("mnasnet1_0"), S128),
    Spec("tv/shufflenet_v2_x1_0", torchvision_model("shufflenet_v2_x1_0"), S128),
    Spec("tv/efficientnet_b0", torchvision_model("efficientnet_b0"), S128),
    Spec("tv/efficientnet_v2_s", torchvision_model("efficientnet_v2_s"), S128),
    Spec("tv/regnet_y_400mf", torchvision_model("regnet_y_400mf"), S128),
    Spec("tv/convnext_tiny", torchvision_model("convnext_tiny"), S128),
    Spec("tv/vit_b_16", torchvision_model("vit_b_16"), S224),
    Spec("tv/swin_t", torchvision_model("swin_t"), S224),
]
TIMM = [
    Spec(f"timm/{name}", timm_model(name), S224 if "224" in name else S128)
    for name in (
        "efficientnet_b0",
        "mobilenetv3_large_100",
        "rexnet_100",
        "ghostnet_100",
        "convnext_nano",
        "regnetx_002",
        "cspdarknet53",
        "repvgg_a0",
        "res2net50_26w_4s",
        "dpn68",
        "dla34",
        "poolformer_s12",
        "mobilevit_xxs",
        "deit_tiny_patch16_224",
    )
]
SMP = [
    Spec(f"smp/{a}", smp_model(a), S128) for a in ("Unet", "UnetPlusPlus", "FPN", "DeepLabV3Plus")
]
DIFFUSERS = [
    Spec(
        "diffusers/UNet2DModel",
        diffusers_model("UNet2DModel", UNetSample, **DDPM_CIFAR10),
        (1, 3, 32, 32),
        timestep=True,
    ),
    Spec(
        "diffusers/AutoencoderKL",
        diffusers_model("AutoencoderKL", VAESample, **SD_VAE),
        (1, 3, 64, 64),
    ),
]
MODELS: list[Spec] = TORCHVISION + TIMM + SMP + DIFFUSERS

# -- building and measuring ------------------------------------------------------------------------


def randomise_constants(model: nn.Module, seed: int = 0) -> nn.Module:
    """Parameters that their init leaves constant (a zero classifier, LayerScale γ = 1e-6, zero
    biases) drawn at random: a wrong cut through them would not show in the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() < 2 or not bool((p == p.flatten()[0]).all()):
                continue
            if p.dim() >= 2:
                p.normal_(0.0, p[0].numel() ** -0.5, generator=g)
            elif float(p.flatten()[0]) == 0.0:
                p.uniform_(-0.1, 0.1, generator=g)
            else:
                p.uniform_(0.5, 1.5, generator=g)
    return model


def build(spec: Spec, seed: int = 0) -> nn.Module:
    """The model at random init, in eval mode, the same for the same ``seed``."""
    torch.manual_seed(seed)
    model = spec.build()
    randomise_norms(randomise_constants(model, seed), seed, layer_norm=True)
    return model.eval()


def flops(model: nn.Module, inputs: tuple[Tensor, ...]) -> int:
    """Forward FLOPs for ``inputs`` (``ap.count`` where the model takes one image)."""
    if len(inputs) == 1:
        return ap.count(model, tuple(inputs[0].shape))["flops"]
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return int(counter.get_total_flops())


def output_layer(model: nn.Module, inputs: tuple[Tensor, ...]) -> nn.Module:
    """The last Conv/Linear the forward pass calls: the classifier or the output convolution."""
    called: list[nn.Module] = []
    kinds = (nn.modules.conv._ConvNd, nn.Linear)
    hooks = [
        m.register_forward_hook(lambda mod, _i, _o: called.append(mod))
        for m in model.modules()
        if isinstance(m, kinds)
    ]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return called[-1]


def ratios(prefix: str, before: dict, small: nn.Module, inputs: tuple[Tensor, ...]) -> dict:
    return {
        f"{prefix}_params_ratio": round(n_params(small) / before["params"], 4),
        f"{prefix}_flops_ratio": round(flops(small, inputs) / before["flops"], 4),
    }


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    t0 = time.perf_counter()
    result = fn()
    return result, round(time.perf_counter() - t0, 3)


# -- alphaprune ------------------------------------------------------------------------------------


def _reason_kind(reason: str) -> str:
    """A pin reason without the node and layer names, so that like reasons count together."""
    import re

    reason = re.sub(r" \(node [^)]*\)", "", reason)
    return re.sub(r"layer '[^']*'", "a layer", reason)


#: Reasons a group stays whole that no pruner could change (as ``attach_gates`` exempts them).
STRUCTURAL = ("model input", "model output", "not read by any layer")


def pinned(name: str, groups: list) -> tuple[str, list[dict]]:
    """The ``groups`` (a plan's or ``ap.analyze``'s) left whole for a reason of the graph (not
    the model's own input or output, nor an unused output): a one-line summary by reason
    (most channels first) and one record per group."""
    rows = [
        {"model": name, "group": g.name, "channels": g.channels, "reason": g.skip}
        | {"layers": " ".join(g.layers if hasattr(g, "layers") else g.owners)}
        for g in groups
        if g.skip and not any(io in g.skip for io in STRUCTURAL)
    ]
    if not rows:
        return "", rows
    kinds = pd.DataFrame(rows).assign(kind=lambda t: t["reason"].map(_reason_kind))
    by = kinds.groupby("kind")["channels"].agg(["count", "sum"]).sort_values("sum", ascending=False)
    text = "; ".join(f"{n}× ({c} ch) {k}" for k, (n, c) in by.iterrows())
    return short(Exception(text), 300), rows


def why_whole(spec: Spec, model: nn.Module) -> tuple[str, list[dict]]:
    """For a refused model: the groups ``ap.analyze`` finds and leaves whole (none if it
    cannot trace the model)."""
    try:
        return pinned(spec.name, ap.analyze(model, spec.inputs(1)).groups)
    except UserError:
        return "", []


def shrink_exactly(spec: Spec, model: nn.Module, row: dict) -> tuple[nn.Module, str]:
    """attach, shrink and verify on ``model`` (timings and the plan into ``row``): the shrunk
    model and its status."""
    example, test = spec.inputs(1), spec.inputs(2)
    with torch.no_grad():
        reference = model(*test)
    plan, row["ap_attach_s"] = timed(
        lambda: ap.attach_gates(model, keep=0.5, target="all", example_inputs=example)
    )
    row["ap_groups_gated"] = len(plan)
    row["ap_pinned"], row["pinned_groups"] = pinned(spec.name, plan.groups)
    row["stage"] = "shrink"
    ap.set_alpha(model, 0.0)
    small, row["ap_shrink_s"] = timed(lambda: ap.shrink(model, example_inputs=example))
    if len(plan) == 0:
        return small, "nothing pruned"
    with torch.no_grad():
        problem, row["ap_max_rel_diff"] = exactness(small(*test), model(*test), reference)
    return small, problem or "pruned exactly"


def run_alphaprune(spec: Spec, onnx: bool = True, save: Callable[[dict], None] = print) -> dict:
    """One model through alphaprune: the ``ap_*`` columns (``save`` gets the row as it grows)."""
    model = build(spec)
    example = spec.inputs(1)
    row = {"params": n_params(model), "flops": flops(model, example), "stage": "attach"}
    try:
        small, row["ap_status"] = shrink_exactly(spec, model, row)
    except UserError as exc:
        if row["stage"] == "attach":  # else the plan said it
            row["ap_pinned"], row["pinned_groups"] = why_whole(spec, model)
        return row | {"ap_status": f"refused ({row['stage']}): {short(exc, 300)}"}
    except Exception as exc:  # noqa: BLE001 - the point is to see every raw error
        traceback.print_exc(file=sys.stderr)
        return row | {"ap_status": f"raw error ({row['stage']}): {error(exc)}"}
    row |= ratios("ap", row, small, example) | {"stage": "onnx"}
    save(row)
    if onnx and row["ap_status"] == "pruned exactly":
        row |= onnx_latency("ap", build(spec), small, spec.inputs(3))
    return row


# -- Torch-Pruning ---------------------------------------------------------------------------------


def tp_forward_status(model: nn.Module, example: tuple[Tensor, ...], shape: torch.Size) -> str:
    try:
        with torch.no_grad():
            out = model(*example)
    except Exception as exc:  # noqa: BLE001
        return f"broken forward: {error(exc, 80)}"
    if out.shape != shape:
        return f"broken forward: output shape {tuple(out.shape)} != {tuple(shape)}"
    return "pruned"


def attention_heads(model: nn.Module) -> dict[nn.Module, int]:
    """Torch-Pruning's recipe for timm's attention: each ``qkv`` projection with its head count."""
    return {
        m.qkv: m.num_heads
        for m in model.modules()
        if isinstance(getattr(m, "qkv", None), nn.Linear)
        and isinstance(getattr(m, "num_heads", None), int)
    }


def write_back_heads(model: nn.Module, num_heads: dict[nn.Module, int]) -> None:
    """After ``step()``: each attention's head count (and ``attn_dim``) to what is left, as
    Torch-Pruning's ViT example does by hand."""
    for m in model.modules():
        qkv = getattr(m, "qkv", None)
        if isinstance(qkv, nn.Linear) and qkv in num_heads:
            m.num_heads = num_heads[qkv]
            if hasattr(m, "attn_dim"):
                m.attn_dim = m.num_heads * m.head_dim


def run_torch_pruning(spec: Spec, onnx: bool = True, save: Callable[[dict], None] = print) -> dict:
    """One model through Torch-Pruning's own pass: the ``tp_*`` columns."""
    model = build(spec)
    example = spec.inputs(1)
    row = {"params": n_params(model), "flops": flops(model, example), "stage": "build"}
    with torch.no_grad():
        shape = model(*example).shape
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ignored = [output_layer(model, example)]
            heads = attention_heads(model)
            pruner, row["tp_build_s"] = timed(
                lambda: torch_pruning_pruner(model, example, 0.5, ignored, heads)
            )
            row["stage"] = "step"
            _, row["tp_step_s"] = timed(pruner.step)
            write_back_heads(model, pruner.num_heads)
    except Exception as exc:  # noqa: BLE001
        return row | {"tp_status": f"raw error ({row['stage']}): {error(exc, 80)}"}
    row["tp_params_ratio"] = round(n_params(model) / row["params"], 4)
    row["tp_status"] = tp_forward_status(model, example, shape)
    if row["tp_status"] != "pruned":
        return row
    row |= ratios("tp", row, model, example)
    if row["tp_params_ratio"] >= 1.0:
        return row | {"tp_status": "nothing pruned"}
    row["stage"] = "onnx"
    save(row)
    if onnx:
        row |= onnx_latency("tp", build(spec), model, spec.inputs(3))
    return row


RUNNERS = {"alphaprune": run_alphaprune, "torch-pruning": run_torch_pruning}

# -- one subprocess per model and pruner -----------------------------------------------------------


def run_isolated(spec: Spec, pruner: str, args: argparse.Namespace) -> dict:
    """``RUNNERS[pruner]`` on ``spec`` in a subprocess, killed after ``args.timeout`` seconds;
    what it finished before a timeout or a crash is kept."""
    prefix = "ap" if pruner == "alphaprune" else "tp"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        cmd = [sys.executable, __file__, "--worker", pruner, "--only", spec.name]
        cmd += ["--row-out", str(out), "--threads", str(args.threads)]
        cmd += ["--skip-onnx"] if args.skip_onnx else []
        try:
            code = subprocess.run(cmd, timeout=args.timeout, stdout=sys.stderr).returncode
        except subprocess.TimeoutExpired:
            code = None
        row = json.loads(out.read_text()) if out.exists() else {}
    stage = row.pop("stage", "build")
    if code == 0:
        return row
    what = f"timeout (> {args.timeout:g} s)" if code is None else f"crashed (exit code {code})"
    if f"{prefix}_status" in row and stage == "onnx":
        return row | {f"{prefix}_onnx_exporter": f"{what} in onnx"}
    return row | {f"{prefix}_status": f"{what} in {stage}"}


def worker(args: argparse.Namespace) -> int:
    """The subprocess: one model, one pruner; its row as JSON in ``args.row_out``."""
    warnings.simplefilter("ignore")
    (spec,) = select(args.only)
    path = Path(args.row_out)

    def save(row: dict) -> None:
        atomic_write_text(path, json.dumps(row, default=str))

    save(RUNNERS[args.worker](spec, onnx=not args.skip_onnx, save=save))
    return 0


# -- the table -------------------------------------------------------------------------------------

SHOWN = [
    "model",
    "input",
    "params_m",
    "ap_status",
    "ap_params_ratio",
    "ap_flops_ratio",
    "ap_attach_s",
    "ap_shrink_s",
    "ap_onnx_latency_ratio",
    "tp_status",
    "tp_params_ratio",
    "tp_flops_ratio",
    "tp_build_s",
    "tp_step_s",
    "tp_onnx_latency_ratio",
]


def library_version(spec: Spec) -> str:
    from importlib.metadata import version

    dist = {"tv": "torchvision", "smp": "segmentation-models-pytorch"}.get(
        spec.library, spec.library
    )
    return f"{dist} {version(dist)}"


def conditions(threads: int) -> dict:
    """The conditions the numbers depend on, in every row."""
    from alphaprune.bench import device_name

    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        cwd=RESULTS.parent,
    ).stdout.strip()
    return {
        "commit": commit,
        "torch": torch.__version__,
        "threads": threads,
        "cpu": device_name(torch.device("cpu")),
        "measured_at": time.strftime("%Y-%m-%d %H:%M", time.gmtime()) + " UTC",
    }


def summary(table: pd.DataFrame) -> str:
    ap_s, tp_s = (
        table["ap_status"].fillna(""),
        table.get("tp_status", pd.Series(dtype=str)).fillna(""),
    )
    return (
        f"alphaprune: {int((ap_s == 'pruned exactly').sum())}/{len(table)} pruned exactly, "
        f"{int(ap_s.str.startswith('refused').sum())} refused, "
        f"{int(ap_s.str.startswith('wrong').sum())} wrong, "
        f"{int(ap_s.str.startswith(('raw error', 'crashed', 'timeout')).sum())} raw errors/timeouts; "
        f"Torch-Pruning: {int((tp_s == 'pruned').sum())}/{len(table)} pruned and run, "
        f"{int(tp_s.str.startswith('broken').sum())} broken forward, "
        f"{int(tp_s.str.startswith(('raw error', 'crashed')).sum())} raw errors, "
        f"{int(tp_s.str.startswith('timeout').sum())} timeouts"
    )


def run_model(spec: Spec, args: argparse.Namespace) -> tuple[dict, list[dict]]:
    """Both pruners on one model: its row and its pinned groups."""
    row = {"model": spec.name, "input": "x".join(map(str, spec.input_size))}
    for pruner in PRUNERS[: 1 if args.skip_tp else 2]:
        row |= run_isolated(spec, pruner, args)
    row["library"] = library_version(spec)
    row["params_m"] = round(row["params"] / 1e6, 2) if "params" in row else None
    return row, row.pop("pinned_groups", [])


def select(names: list[str] | None) -> list[Spec]:
    if not names:
        return MODELS
    known = {s.name: s for s in MODELS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; known: {', '.join(known)}")
    return [known[n] for n in names]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="e.g. tv/resnet50 timm/dla34")
    parser.add_argument("--skip-tp", action="store_true", help="alphaprune only")
    parser.add_argument("--skip-onnx", action="store_true", help="no ONNX export and timing")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per model and pruner")
    parser.add_argument("--out", default=str(RESULTS / "zoo_real.csv"))
    parser.add_argument("--list", action="store_true", help="print the model names and exit")
    parser.add_argument("--worker", choices=PRUNERS, help=argparse.SUPPRESS)
    parser.add_argument("--row-out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        return worker(args)
    if args.list:
        print("\n".join(f"{s.name}  {'x'.join(map(str, s.input_size))}" for s in MODELS))
        return 0
    out, rows, groups, where = Path(args.out), [], [], conditions(args.threads)
    for spec in select(args.only):
        start = time.perf_counter()
        row, pins = run_model(spec, args)
        rows.append(row | where)
        groups += pins
        atomic_write_text(out, pd.DataFrame(rows).to_csv(index=False))  # kept if stopped
        print(
            f"{spec.name}: {row.get('ap_status')} | {row.get('tp_status', '-')} "
            f"({time.perf_counter() - start:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    table = pd.DataFrame(rows)
    shown = table[[c for c in SHOWN if c in table.columns]].copy()
    for col in ("ap_status", "tp_status"):  # the CSV has them whole
        if col in shown:
            shown[col] = shown[col].map(lambda v: v if pd.isna(v) else short(Exception(v), 120))
    print(markdown(shown))
    print("\n" + summary(table))
    print(f"conditions: {where}")
    write_csv(table, out)
    write_csv(pd.DataFrame(groups), out.with_name(out.stem + "_pinned.csv"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
