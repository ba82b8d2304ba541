"""Seconds of model surgery: alphaprune's attach_gates + shrink vs Torch-Pruning's graph + step.

On VGG-16-BN (torchvision's ``vgg16_bn``, 138 M params) and ResNet-50 (``resnet50``, 25.6 M),
written out here (torchvision is not a dependency), at a 1×3×224×224 example input, keep 0.5 of
every prunable group, L1 criterion, one CPU thread by default:

- **alphaprune**: ``attach_gates`` (trace on fake tensors, plan, gate), then ``set_alpha(0)`` and
  ``shrink`` (trace the gated model on the real input, cut, and verify the result against it —
  the verification is part of the time);
- **Torch-Pruning**: ``MagnitudePruner`` construction (its ``DependencyGraph``) and ``step()``.

Each model is built fresh for each of ``--repeats`` runs; the table gives medians, with one
plain forward pass as a yardstick (on a shared machine wall times swing, their ratios to a
forward pass much less). The first shape-only trace of a process also imports torch's meta
kernels once; that one-time cost is measured on a small model first and printed on its own.
No timing is asserted anywhere.

    .venv/bin/python benchmarks/surgery_speed.py                 # both models, 3 repeats
    .venv/bin/python benchmarks/surgery_speed.py --models resnet50 --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

import alphaprune as ap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo import ResNet50  # noqa: E402

VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG16BN(nn.Module):
    """torchvision ``vgg16_bn()``: features, 7×7 average pool, 4096-4096-1000 classifier."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


MODELS: dict[str, Callable[[], nn.Module]] = {"vgg16_bn": VGG16BN, "resnet50": ResNet50}


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_alphaprune(model: nn.Module, example: Tensor) -> dict[str, float]:
    attach = _seconds(lambda: ap.attach_gates(model, keep=0.5, example_inputs=example))
    ap.set_alpha(model, 0.0)
    shrink = _seconds(lambda: ap.shrink(model, example_inputs=example))
    return {"ap_attach_s": attach, "ap_shrink_s": shrink, "ap_total_s": attach + shrink}


def time_torch_pruning(model: nn.Module, example: Tensor) -> dict[str, float]:
    try:
        import torch_pruning as tp
    except ImportError:
        return {}
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    box: dict[str, object] = {}

    def build() -> None:
        box["pruner"] = tp.pruner.MagnitudePruner(
            model,
            example,
            importance=tp.importance.MagnitudeImportance(p=1),
            pruning_ratio=0.5,
            ignored_layers=[head],
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = _seconds(build)
        step = _seconds(lambda: box["pruner"].step())
    return {"tp_graph_s": graph, "tp_step_s": step, "tp_total_s": graph + step}


def warm_up() -> float:
    """Seconds of the process's first shape-only trace (torch imports its meta kernels)."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 3))
    return _seconds(lambda: ap.analyze(model, torch.zeros(1, 3, 8, 8), values=False))


def measure(name: str, repeats: int) -> dict[str, object]:
    """Medians over ``repeats`` fresh models of each timing, and of one forward pass."""
    example = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    runs: list[dict[str, float]] = []
    for seed in range(repeats):
        torch.manual_seed(seed)
        model = MODELS[name]().eval()
        row = {}
        with torch.no_grad():
            row["forward_s"] = _seconds(lambda m=model: m(example))
        row |= time_alphaprune(model, example)
        torch.manual_seed(seed)
        row |= time_torch_pruning(MODELS[name]().eval(), example)
        runs.append(row)
    medians = {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
    params = sum(p.numel() for p in MODELS[name]().parameters())
    return {"model": name, "params_M": round(params / 1e6, 1)} | medians


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"one-time warm-up of this process (first meta trace): {warm_up():.2f} s")
    table = pd.DataFrame([measure(name, args.repeats) for name in args.models])
    print(f"median of {args.repeats} runs, {args.threads} thread(s), 1x3x224x224 example input")
    print(table.to_string(index=False))
    if "tp_total_s" in table:
        ratio = (table["ap_total_s"] / table["tp_total_s"]).round(2).tolist()
        print(
            f"alphaprune / Torch-Pruning total time: {dict(zip(table['model'], ratio, strict=True))}"
        )


if __name__ == "__main__":
    main()
