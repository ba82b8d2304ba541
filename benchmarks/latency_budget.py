"""Issue 19's targets in one command: latency budgets measured on this CPU, and verified exports.

    nice -n 0 .venv/bin/python benchmarks/latency_budget.py            # everything (~10-20 min)
    .venv/bin/python benchmarks/latency_budget.py --only vgg mobilenet  # a part
    .venv/bin/python benchmarks/latency_budget.py --threads 2 --repeats 20

Random-init models, 1 intra-op thread by default. Sections:

- **vgg**: the VGG autoencoder (relu3_1, target both), batch 8, 128². The latency table is built
  into a fresh cache folder (seconds), then built again (it must come from the cache). Then
  ``budget={"latency": 0.5}`` and ``budget={"flops": 0.5}``; the original and both shrunk models
  are timed in one interleaved run: their latency ratios (median of the per-round ratios to the
  original, with the interquartile range) and FLOPs ratios. Target: the latency budget's measured ratio in [0.45, 0.55].
- **mobilenet**: MobileNetV2 (torchvision's layout, ``benchmarks/zoo.py``), 224², batch 1,
  target all: the same two budgets. Target: latency ratio in [0.45, 0.55] while the FLOPs
  budget's latency ratio lands elsewhere.
- **export**: the shrunk VGG autoencoder (keep 0.5), the U-Net of ``params/examples/unet.yaml``
  (keep 0.5, target all) and ResNet-50 (keep 0.5, target all, 224²) exported to ONNX, ``.pt2`` and
  TorchScript and verified (max rel diff <= 1e-5); ResNet-50's original and shrunk ONNX models timed
  in onnxruntime (and eager torch) in one interleaved run. Target: ONNX latency ratio <= 1.1 ×
  FLOPs ratio.

Prints every number with its conditions (CPU, threads, load average, torch, commit) and writes
``benchmarks/results/latency_budget.csv``.
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

import alphaprune as ap
from alphaprune.bench import device_name, write_csv
from alphaprune.core.runtimes import OrtModule, ort_session, time_rounds
from alphaprune.engine.export import export

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo import MobileNetV2, ResNet50, randomise_norms  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "latency_budget.csv"


# -- helpers -----------------------------------------------------------------------------------------


def conditions(threads: int) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"{device_name('cpu')}, {os.cpu_count()} CPUs, {threads} thread(s), torch "
        f"{torch.__version__}, commit {commit or '?'}, load average {load}"
    )


def gated(model: nn.Module, example: Tensor, **gating) -> tuple[nn.Module, object]:
    """A copy of ``model`` with gates at α = 0 and its plan."""
    copy_ = copy.deepcopy(model)
    plan = ap.attach_gates(copy_, alpha=0.0, example_inputs=example, **gating)
    return copy_, plan


def timed_table(
    models: dict[str, nn.Module], batch: int, size: int, repeats: int, against: dict | None = None
) -> pd.DataFrame:
    """All models timed in one interleaved run (``repeats`` rounds, order rotating): the median ms
    of each, and its latency ratio to its reference (``against[name]``, default ``"original"``)
    as the median of the per-round ratios (with their interquartile range) — load that lasts
    longer than a round shifts both alike — beside its FLOPs and params ratios."""
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    nets = {name: copy.deepcopy(model).eval() for name, model in models.items()}
    times = time_rounds(
        {name: (lambda net=net: lambda: net(x)) for name, net in nets.items()}, repeats
    )
    rows = []
    for name, net in nets.items():
        reference = (against or {}).get(name, "original")
        ratios = pd.Series([t / r for t, r in zip(times[name], times[reference], strict=True)])
        counted, base = _counts(net, size), _counts(nets[reference], size)
        rows.append(
            {
                "model": name,
                "latency_ms_median": float(pd.Series(times[name]).median()),
                "latency_ratio": float(ratios.median()),
                "ratio_p25": float(ratios.quantile(0.25)),
                "ratio_p75": float(ratios.quantile(0.75)),
                "flops_ratio": counted["flops"] / base["flops"],
                "params_ratio": counted["params"] / base["params"],
            }
        )
    return pd.DataFrame(rows)


def _counts(net: nn.Module, size: int) -> dict[str, int]:
    source = getattr(net, "counted_as", None)
    return ap.count(source if source is not None else net, (1, 3, size, size))


def report(rows: list[dict], name: str, value: float, target: str, ok: bool, note: str = ""):
    mark = "PASS" if ok else "MISS"
    print(f"  [{mark}] {name}: {value:.4g}  (target {target}){'  ' + note if note else ''}")
    rows.append({"check": name, "value": value, "target": target, "pass": ok, "note": note})


# -- sections ------------------------------------------------------------------------------------------


def budgets(
    name: str,
    model: nn.Module,
    example: Tensor,
    target: str,
    repeats: int,
    rows: list[dict],
    cache: str | None = None,
) -> None:
    """Latency and FLOPs budget 0.5 on ``model``; both shrunk models timed with the original."""
    latency = {"progress": False, **({"cache_dir": cache} if cache else {})}
    began = time.perf_counter()
    lat_model, plan = gated(model, example, budget={"latency": 0.5}, target=target, latency=latency)
    seconds = time.perf_counter() - began
    print(plan.budget)
    for attempt in plan.budget.attempts:
        print(f"    candidate: {attempt}")
    print(f"  latency budget chosen in {seconds:.1f} s (table, anchors and measured candidates)")
    flops_model, _ = gated(model, example, budget={"flops": 0.5}, target=target)
    models = {
        "original": model,
        "latency budget 0.5": ap.shrink(lat_model, example_inputs=example),
        "flops budget 0.5": ap.shrink(flops_model, example_inputs=example),
    }
    table = timed_table(models, example.shape[0], example.shape[-1], repeats)
    print(table.to_string(index=False))
    ratios = table.set_index("model")["latency_ratio"]
    flops = table.set_index("model")["flops_ratio"]
    lat = float(ratios["latency budget 0.5"])
    report(
        rows,
        f"{name}: latency budget 0.5, measured latency ratio",
        lat,
        "[0.45, 0.55]",
        0.45 <= lat <= 0.55,
        f"predicted {plan.budget.predicted:.3f}, FLOPs ratio {flops['latency budget 0.5']:.3f}",
    )
    other = float(ratios["flops budget 0.5"])
    report(
        rows,
        f"{name}: FLOPs budget 0.5, measured latency ratio",
        other,
        "outside [0.45, 0.55]",
        not 0.45 <= other <= 0.55,
        f"FLOPs ratio {flops['flops budget 0.5']:.3f}",
    )


def vgg(args, rows: list[dict]) -> None:
    print("\n== VGG autoencoder relu3_1, target both, batch 8, 128×128")
    torch.manual_seed(0)
    model = ap.build_autoencoder("relu3_1").eval()
    example = torch.zeros(8, 3, 128, 128)
    with tempfile.TemporaryDirectory() as cache:
        options = {"progress": False, "cache_dir": cache, "measure": False}
        for call in ("first", "second"):
            began = time.perf_counter()
            _, plan = gated(model, example, budget={"latency": 0.5}, target="both", latency=options)
            table = plan.budget.table
            print(
                f"  {call} call: {table['timed']} widths timed, {table['cached']} from the cache, "
                f"table {table['seconds']:.1f} s, attach_gates {time.perf_counter() - began:.1f} s"
            )
            if call == "first":
                report(
                    rows,
                    "vgg: latency table build (s)",
                    table["seconds"],
                    "< 60",
                    table["seconds"] < 60,
                )
            else:
                report(
                    rows,
                    "vgg: widths timed on the second call",
                    table["timed"],
                    "0 (cache)",
                    table["timed"] == 0,
                )
    budgets("vgg", model, example, "both", args.repeats, rows)


def mobilenet(args, rows: list[dict]) -> None:
    print("\n== MobileNetV2, target all, batch 1, 224×224")
    torch.manual_seed(0)
    model = randomise_norms(MobileNetV2()).eval()
    budgets("mobilenet_v2", model, torch.zeros(1, 3, 224, 224), "all", args.repeats * 3, rows)


def exports(args, rows: list[dict]) -> None:
    print("\n== exports: shrunk at keep 0.5, verified on fresh inputs (max rel diff <= 1e-5)")
    torch.manual_seed(0)
    cases = {
        "vgg_relu3_1": (ap.build_autoencoder("relu3_1"), torch.zeros(1, 3, 128, 128), "both"),
        "unet_example": (ap.build_unet(width=8, depth=2), torch.zeros(1, 3, 32, 32), "all"),
        "resnet50": (randomise_norms(ResNet50()), torch.zeros(1, 3, 224, 224), "all"),
    }
    with tempfile.TemporaryDirectory() as folder:
        for name, (model, example, target) in cases.items():
            small, _ = gated(model.eval(), example, keep=0.5, target=target)
            for fmt in ("onnx", "pt2", "torchscript"):
                path = Path(folder) / f"{name}.{fmt}"
                result = export(small, example, path, format=fmt, verbose=False)
                rel = result.record["verification"]["max_rel_diff"]
                report(rows, f"export {name} {fmt}: max rel diff", rel, "<= 1e-5", rel <= 1e-5)
        onnx_latency(cases["resnet50"], Path(folder), args, rows)


def onnx_latency(case, folder: Path, args, rows: list[dict]) -> None:
    model, example, target = case
    small = ap.shrink(gated(model, example, keep=0.5, target=target)[0], example_inputs=example)
    original = folder / "resnet50_original.onnx"
    export(model, example, original, verbose=False)
    sessions = {
        "onnxruntime original": OrtModule(ort_session(original, args.threads), counted_as=model),
        "onnxruntime shrunk": OrtModule(
            ort_session(folder / "resnet50.onnx", args.threads), counted_as=small
        ),
        "torch original": model,
        "torch shrunk": small,
    }
    print(f"  ResNet-50, batch 1, 224×224, {args.threads} thread(s), one interleaved run")
    against = {"onnxruntime shrunk": "onnxruntime original", "torch shrunk": "torch original"}
    against["onnxruntime original"] = against["torch original"] = "torch original"
    table = timed_table(sessions, 1, 224, args.repeats * 2, against)
    by = table.set_index("model")
    ort_ratio = float(by.loc["onnxruntime shrunk", "latency_ratio"])
    torch_ratio = float(by.loc["torch shrunk", "latency_ratio"])
    flops = float(by.loc["torch shrunk", "flops_ratio"])
    print(table.to_string(index=False))
    report(
        rows,
        "resnet50: ONNX latency ratio / FLOPs ratio",
        ort_ratio / flops,
        "<= 1.1",
        ort_ratio <= 1.1 * flops,
        f"ONNX ratio {ort_ratio:.3f}, FLOPs ratio {flops:.3f}, torch eager ratio {torch_ratio:.3f}",
    )


SECTIONS = {"vgg": vgg, "mobilenet": mobilenet, "export": exports}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10, help="timed batches per model")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"conditions: {conditions(args.threads)}")
    rows: list[dict] = []
    for name in args.only:
        SECTIONS[name](args, rows)
    print(f"\n== summary ({conditions(args.threads)})")
    for row in rows:
        print(
            f"  [{'PASS' if row['pass'] else 'MISS'}] {row['check']}: {row['value']:.4g} "
            f"(target {row['target']}) {row['note']}"
        )
    write_csv(pd.DataFrame(rows), args.out)
    return 0 if all(row["pass"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
