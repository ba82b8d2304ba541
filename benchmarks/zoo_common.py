"""What the two zoo benchmarks share (``zoo.py``: hand-written architectures; ``zoo_real.py``:
the models people download): random norms, the exactness verdict and the table helpers.

A module of its own because ``tests/zoo.py`` already owns the name ``zoo`` on a test's path."""

from __future__ import annotations

import traceback
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

#: Norm layers whose statistics and affine parameters are drawn at random.
NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


def randomise_norms(model: nn.Module, seed: int = 0, layer_norm: bool = False) -> nn.Module:
    """Random norm statistics and affine parameters (and PReLU slopes) so that wrong cuts show
    in the output: at their default init (γ = 1, β = 0, mean 0, var 1) a wrongly cut BatchNorm
    is nearly invisible. ``layer_norm`` includes ``nn.LayerNorm`` (and subclasses)."""
    g = torch.Generator().manual_seed(seed)
    kinds = NORMS + ((nn.LayerNorm,) if layer_norm else ())
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, kinds):
                if getattr(m, "running_mean", None) is not None:
                    m.running_mean.uniform_(-0.5, 0.5, generator=g)
                    m.running_var.uniform_(0.5, 2.0, generator=g)
                if getattr(m, "weight", None) is not None:
                    m.weight.uniform_(0.5, 1.5, generator=g)
                if getattr(m, "bias", None) is not None:
                    m.bias.uniform_(-0.5, 0.5, generator=g)
            elif isinstance(m, nn.PReLU):
                m.weight.uniform_(-0.5, 0.5, generator=g)
    return model


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def short(exc: BaseException, limit: int = 110) -> str:
    """An exception's message on one line, at most ``limit`` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error(exc: BaseException, limit: int = 110) -> str:
    """``Type: message (file:line)``, the line where it was raised: an empty message (a bare
    ``assert``) still says where."""
    frames = traceback.extract_tb(exc.__traceback__)
    place = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {short(exc, limit)}{place}"


def exactness(got: Tensor, gated: Tensor, reference: Tensor) -> tuple[str | None, float | None]:
    """``(problem, max_rel_diff)`` of a shrunk model's output ``got`` against the gated model's
    ``gated`` (rel ≤ 1e-5 of ``max|gated|``, plus 1e-6 absolute); ``reference`` is the ungated
    model's output, which α = 0 must change (else the gates are not wired). ``problem`` is None
    when the output is exact."""
    if got.shape != gated.shape:
        return f"wrong: output shape {tuple(got.shape)} != {tuple(gated.shape)}", None
    scale = float(gated.abs().max())
    diff = float((got - gated).abs().max())
    bound = 1e-5 * scale + 1e-6
    rel = diff / scale if scale > 0 else diff
    if not diff <= bound:
        return f"wrong: max diff {diff:.3g} > {bound:.3g}", rel
    if not float((gated - reference).abs().max()) > 100 * bound:
        return "wrong: gates not wired (α = 0 changes nothing)", rel
    return None, rel


def markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table.iterrows():
        cells = ["" if pd.isna(v) else str(v) for v in row]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def tp_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch-pruning")  # the module's __version__ says 1.6.0 in 1.6.1
    except PackageNotFoundError:
        return "(not installed)"
