"""Scoring a study's runs: whole-image PSNR on the test and validation images, the size of the
final (shrunk) model, and its CPU latency.

Every final model is scored on the test images, tiled by the grid protocol so that every pixel
counts (:func:`alphaprune.engine.evaluate.evaluate_images`: one PSNR per whole image); the
validation images only choose between the learning rates of an arm's grid. Scores are cached in
the run's folder, keyed by :data:`EVAL_VERSION` and the images, so a rerun or a later study
reuses them.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn

from alphaprune.engine.config import ExperimentConfig
from alphaprune.engine.threads import torch_threads
from alphaprune.study.store import StoredRun

__all__ = ["EVAL_VERSION", "cpu_latency", "evaluate_run", "final_model"]

#: Bump when the evaluation of a study run changes (cached results are keyed by it).
#: "2": whole-image PSNR on the test split (grid tiles) and on the validation split.
EVAL_VERSION = "2"


def _eval_key(cfg: ExperimentConfig, split) -> str:
    import hashlib

    names = "+".join(split.test) + "|" + "+".join(split.val)
    digest = hashlib.sha256(f"{cfg.data.source}|{names}".encode()).hexdigest()[:12]
    return f"v{EVAL_VERSION}-grid-{cfg.data.crop}-{digest}"


def _final(run: StoredRun, factory: str | None) -> tuple[nn.Module, float | None]:
    """The run's final model and the α its checkpoint stored."""
    from alphaprune.core.gates import gates
    from alphaprune.core.shrink import shrink
    from alphaprune.engine.checkpoint import load_checkpoint

    loaded = load_checkpoint(run.checkpoint, verbose=False, factory=factory)
    model = loaded.model
    if gates(model) and loaded.alpha == 0.0:
        model = shrink(model.eval())
    return model.eval(), loaded.alpha


def final_model(run: StoredRun, factory: str | None = None) -> nn.Module:
    """The run's final model: shrunk when it is gated at α = 0, else as saved. ``factory``: the
    study's own model factory (the user's params; a checkpoint never picks the code that builds
    it)."""
    return _final(run, factory)[0]


def evaluate_run(run: StoredRun, evaluation: ExperimentConfig) -> dict[str, Any]:
    """Test and validation scores per whole image, params and FLOPs of a stored run's final
    model, on the images of ``evaluation``'s data config (cached in the run folder)."""
    from alphaprune.core.shrink import count
    from alphaprune.engine.data import load_images, validation_dataset
    from alphaprune.engine.evaluate import evaluate_images

    images = load_images(evaluation.data.source)
    split = evaluation.data.split_of(list(images))
    key = _eval_key(evaluation, split)
    cached = run.read_eval(key)
    if cached is not None:
        return cached
    # built by the study's own factory (the user's params), not one the checkpoint names
    model, alpha = _final(run, evaluation.model.factory)
    crop = evaluation.data.crop
    scores = {}
    for part in ("test", "val"):
        held = validation_dataset({k: images[k] for k in getattr(split, part)}, crop, "grid")
        scores[part] = evaluate_images(model, held, batch_size=32).as_dict()
    size = count(model, (1, 3, crop, crop))
    result = {
        "test": scores["test"],
        "val": scores["val"],
        "alpha": alpha,
        "params": size["params"],
        "flops": size["flops"],
    }
    run.write_eval(key, result)
    return result


def cpu_latency(
    model: nn.Module, size: int, batch: int = 1, threads: int = 1, repeats: int = 20
) -> dict[str, float]:
    """Median, 10th and 90th percentile wall time (ms) of one forward pass of ``model`` on the
    CPU at ``threads`` torch threads: ``batch`` random images of ``size`` px, after two warm-up
    passes. Measured on this machine, now: compare numbers of one run only."""
    model = model.to("cpu").eval()
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    times = []
    with torch_threads(threads), torch.inference_mode():
        for _ in range(2):
            model(x)
        for _ in range(repeats):
            began = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - began) * 1e3)
    deciles = statistics.quantiles(times, n=10)
    return {
        "latency_ms": statistics.median(times),
        "latency_p10_ms": deciles[0],
        "latency_p90_ms": deciles[-1],
    }
