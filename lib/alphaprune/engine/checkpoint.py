"""Checkpoints that carry their α: atomic writes, safe loads, and models rebuilt at the stored α.

A checkpoint is a plain dict of tensors and primitives (loadable with ``weights_only=True``):
``format``, ``version``, ``kind`` (baseline / prune / shrunk), ``epoch`` (finished epochs),
``alpha`` (α of the gates when saved, None for an ungated model), ``model`` (state dict with the
gates' masks and α), ``optimizer``, ``rng``, ``config``, ``schedule`` and ``metrics`` (the rows
of finished epochs).
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alphaprune.atomic import atomic_target
from alphaprune.core.gates import (
    gate_masks_in_state,
    gates,
    get_alpha,
    migrate_state_dict,
    restore_gates,
    set_alpha,
)
from alphaprune.core.layer_rules import ParamRule, heads_rule_for, rule_for
from alphaprune.engine.factories import require_trusted
from alphaprune.engine.models import build_model, example_input
from alphaprune.errors import CheckpointError, UserError

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "read_checkpoint",
    "checkpoint_info",
    "LoadedModel",
    "load_checkpoint",
    "load_model",
    "milestone_path",
    "last_path",
    "shrunk_path",
]

FORMAT = "alphaprune-checkpoint/1"


def last_path(run_dir: str | Path) -> Path:
    """The checkpoint written after every epoch."""
    return Path(run_dir) / "checkpoints" / "last.pt"


def milestone_path(run_dir: str | Path, alpha: float) -> Path:
    """The checkpoint of the last epoch run at ``alpha``; the name holds α exactly (``repr``), so
    two different α never share a file and a tiny non-zero α is never filed as 0."""
    return Path(run_dir) / "checkpoints" / f"alpha_{float(alpha)!r}.pt"


def shrunk_path(checkpoint: str | Path) -> Path:
    """Where the shrunk copy of ``checkpoint`` lies: beside it, ``<stem>_shrunk.pt``."""
    path = Path(checkpoint)
    return path.with_stem(f"{path.stem}_shrunk")


def save_checkpoint(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Atomically save a checkpoint dict (``format`` and ``version`` are added)."""
    from alphaprune.version import __version__

    with atomic_target(path) as tmp:
        torch.save({"format": FORMAT, "version": __version__, **payload}, tmp)
    return path


def load_tensors(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a :class:`CheckpointError` naming the
    file (and ``what`` it is for) when it is missing, truncated or corrupted."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found")
    try:
        if zipfile.is_zipfile(path):  # torch.load does not check the CRCs itself
            with zipfile.ZipFile(path) as archive:
                broken = archive.testzip()
            if broken is not None:
                raise CheckpointError(f"{path}: {what} is corrupted (CRC mismatch in {broken})")
        return torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    # the unpickler of a damaged file can raise almost anything (IndexError, struct.error,
    # UnicodeDecodeError, ...): each is this file's fault, never the caller's
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: cannot read {what} (truncated or corrupted?): {reason[:200]}"
        ) from None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict with ``torch.load(weights_only=True)``; clear errors naming the file
    (also for inf/NaN weights: no checkpoint alphaprune writes holds them)."""
    path = Path(path)
    data = load_tensors(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an alphaprune checkpoint (no '{FORMAT}' marker)")
    for key in ("model", "config", "epoch", "alpha", "kind"):
        if key not in data:
            raise CheckpointError(f"{path}: checkpoint lacks '{key}'")
    alpha = data["alpha"]
    if not isinstance(data["model"], dict) or not isinstance(data["config"], dict):
        raise CheckpointError(f"{path}: checkpoint's 'model' or 'config' is not a mapping")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float))):
        raise CheckpointError(f"{path}: checkpoint's 'alpha' is not a number: {alpha!r}")
    if alpha is not None and not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise CheckpointError(f"{path}: checkpoint's 'alpha' is not a number in [0, 1]: {alpha!r}")
    bad = [
        name
        for name, value in data["model"].items()
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all()
    ]
    if bad:
        raise CheckpointError(
            f"{path} holds non-finite (inf/NaN) weights in {len(bad)} tensor(s), e.g. {bad[0]}; "
            "was it saved by a run that diverged?"
        )
    return data


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    """α, epoch, kind, version, config and kept/total channels per gate, without building a model."""
    data = read_checkpoint(path)
    state = data["model"]
    masks = gate_masks_in_state(state)
    return {
        "path": str(path),
        "alpha": data["alpha"],
        "epoch": data["epoch"],
        "kind": data["kind"],
        "version": data.get("version"),
        "config": data["config"],
        "gates": {name: (int(m.sum()), int(m.numel())) for name, m in masks.items()},
    }


def _resize_to_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Give every layer of ``model`` the (smaller) shapes found in ``state`` (a shrunk model)."""
    for name, module in model.named_modules():  # parents first: heads before their layers
        for rule in (heads_rule_for(module), rule_for(module)):
            if rule is not None:
                rule.resize_to(module, state, f"{name}." if name else "")
        if rule_for(module) is None:
            _resize_params_to_state(module, state, f"{name}." if name else "")


def _resize_params_to_state(module: nn.Module, state: Mapping[str, torch.Tensor], prefix: str):
    """A parameter or buffer the forward reads itself, cut by the graph along one axis
    (:class:`ParamRule`: LayerScale ``gamma``, a position embedding ``(1, N, C)``): its shape
    from ``state`` where that is smaller along exactly that one axis."""
    for attr, tensor in [*module._parameters.items(), *module._buffers.items()]:
        saved = state.get(prefix + attr)
        if tensor is None or not isinstance(saved, torch.Tensor) or saved.dim() != tensor.dim():
            continue
        axes = [d for d in range(tensor.dim()) if saved.shape[d] != tensor.shape[d]]
        if len(axes) == 1 and saved.shape[axes[0]] < tensor.shape[axes[0]]:
            ParamRule(attr, axes[0]).resize_to(module, state, prefix)


def model_from_state(
    model_cfg: Mapping[str, Any],
    state: Mapping[str, torch.Tensor],
    factory: str | Callable[..., nn.Module] | None = None,
    model: nn.Module | None = None,
) -> nn.Module:
    """Build the model described by ``model_cfg`` and load ``state`` (gated or shrunk).

    ``model_cfg`` must come from the caller's own config, or its factory must be trusted (see
    :func:`load_model`); ``factory`` replaces its factory, and a given ``model`` is loaded
    instead of building one. State dicts written before gates moved into their consumers are
    migrated on the way.
    """
    if model is None:
        model = build_model(model_cfg, factory=factory)
    _resize_to_state(model, state)  # first: a shrunk model may be gated again
    state = migrate_state_dict(model, state)
    restore_gates(model, state)
    model.load_state_dict(state, strict=True)
    return model


def _model_of(
    path: str | Path,
    data: Mapping[str, Any],
    factory: str | Callable[..., nn.Module] | None,
    model: nn.Module | None,
) -> nn.Module:
    """The checkpoint's model, built without importing anything the checkpoint names unless the
    user trusts it (:mod:`alphaprune.engine.factories`)."""
    model_cfg = data["config"].get("model", {})
    if not isinstance(model_cfg, Mapping):
        raise CheckpointError(f"{path}: checkpoint's config.model is not a mapping")
    if factory is None and model is None:
        require_trusted(model_cfg.get("factory"), f"checkpoint {path}")
    try:
        return model_from_state(model_cfg, data["model"], factory=factory, model=model)
    except (RuntimeError, ValueError, KeyError) as exc:
        if isinstance(exc, UserError):
            raise
        raise CheckpointError(f"{path}: model state does not fit its config: {exc}") from None


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model rebuilt from a checkpoint, with what the checkpoint says about it.

    ``alpha`` is the α stored in the checkpoint (None for an ungated original; for a shrunk model,
    the α of the gated model it was shrunk from); ``evaluated_alpha`` the α the model computes at
    now (another one only with ``alpha_overridden``). ``config`` is the run's config as saved.
    """

    model: nn.Module
    path: Path
    kind: str  # baseline / prune / shrunk
    epoch: int  # finished epochs
    alpha: float | None
    evaluated_alpha: float | None
    alpha_overridden: bool
    config: Mapping[str, Any]

    def describe(self) -> str:
        """One line: file, kind, epoch and α (``loaded …`` is what :func:`load_checkpoint`
        prints)."""
        shown = "no gates" if self.alpha is None else f"α={self.alpha:g}"
        extra = ""
        if self.alpha_overridden:
            extra = f", evaluated at α={self.evaluated_alpha:g} (override)"
        return f"{self.path} ({self.kind}, epoch {self.epoch}, {shown}{extra})"


def _at_alpha(
    path: str | Path,
    model: nn.Module,
    stored: float | None,
    alpha: float | None,
    override_alpha: bool,
) -> bool:
    """Check the gates hold the stored α and set ``alpha`` when asked (and allowed); whether it
    was overridden."""
    gated = bool(gates(model))
    if gated:
        held = get_alpha(model, per_gate=True)
        if stored is None or not all(abs(value - stored) <= 1e-12 for value in held.values()):
            raise CheckpointError(f"{path}: gates hold α={held} but the checkpoint says {stored}")
    if alpha is None or (stored is not None and float(alpha) == float(stored)):
        return False
    if not gated:
        what = "an ungated model" if stored is None else f"a shrunk model fixed at α={stored:g}"
        raise CheckpointError(f"{path} holds {what}; it cannot be evaluated at α={alpha:g}")
    if not override_alpha:
        raise CheckpointError(
            f"{path} was saved at α={stored:g}; asked for α={alpha:g}. Pass "
            "override_alpha=True (CLI: --override-alpha) to use another α on purpose"
        )
    set_alpha(model, alpha)
    return True


def loaded_from(
    path: str | Path,
    data: Mapping[str, Any],
    alpha: float | None = None,
    override_alpha: bool = False,
    device: str | torch.device = "cpu",
    *,
    factory: str | Callable[..., nn.Module] | None = None,
    model: nn.Module | None = None,
) -> LoadedModel:
    """:func:`load_checkpoint` on ``data``, the dict :func:`read_checkpoint` already read from
    ``path`` (one read can build several models); nothing is printed."""
    built = _model_of(path, data, factory, model)
    stored = data["alpha"]
    overridden = _at_alpha(path, built, stored, alpha, override_alpha)
    built.to(device).eval()
    return LoadedModel(
        model=built,
        path=Path(path),
        kind=str(data["kind"]),
        epoch=int(data["epoch"]),
        alpha=stored,
        evaluated_alpha=float(alpha) if overridden else stored,
        alpha_overridden=overridden,
        config=data["config"],
    )


def load_checkpoint(
    path: str | Path,
    alpha: float | None = None,
    override_alpha: bool = False,
    device: str | torch.device = "cpu",
    verbose: bool = True,
    *,
    factory: str | Callable[..., nn.Module] | None = None,
    model: nn.Module | None = None,
) -> LoadedModel:
    """Rebuild the model saved in ``path`` at the α it was saved with, in eval mode, as a
    :class:`LoadedModel` (the model with the checkpoint's path, kind, epoch, α and config).

    Asking for another ``alpha`` is an error unless ``override_alpha=True`` (then the gates are
    set to it: ``evaluated_alpha`` is that α, ``alpha`` still the stored one, and
    ``alpha_overridden`` is True). A shrunk or ungated model has no other α.

    Loading never imports or calls anything the checkpoint names. The model is built by
    ``factory`` (``"package.module:function"`` or a callable, called with the checkpoint's saved
    ``kwargs``), or loaded into ``model`` (an ``nn.Module`` of the same architecture); without
    either, by the built-in VGG autoencoder, or by the factory the checkpoint names only when it
    is trusted: one of alphaprune's builders, the factory of the params this process runs with,
    or a package listed in ``$ALPHAPRUNE_FACTORIES`` (see ``docs/safety.md``). With ``verbose``
    one line says what was loaded.
    """
    loaded = loaded_from(
        path, read_checkpoint(path), alpha, override_alpha, device, factory=factory, model=model
    )
    if verbose:
        print(f"loaded {loaded.describe()}")
    return loaded


# The attributes load_model hung on the module before LoadedModel held them; still set for one
# release so that code reading ``model.checkpoint_alpha`` keeps working (deprecated).
_LEGACY_ATTRIBUTES = {
    "checkpoint_alpha": "alpha",
    "checkpoint_epoch": "epoch",
    "checkpoint_path": "path",
    "alpha_overridden": "alpha_overridden",
}


def load_model(
    path: str | Path,
    alpha: float | None = None,
    override_alpha: bool = False,
    device: str | torch.device = "cpu",
    verbose: bool = True,
    *,
    factory: str | Callable[..., nn.Module] | None = None,
    model: nn.Module | None = None,
) -> nn.Module:
    """The model saved in ``path``, at its stored α, in eval mode: ``load_checkpoint(...).model``
    (same arguments, see :func:`load_checkpoint`). Use :func:`load_checkpoint` when you need the
    checkpoint's α, epoch, path or config.

    Deprecated, removed in the next release: the module still carries ``checkpoint_alpha``,
    ``checkpoint_epoch``, ``checkpoint_path`` and ``alpha_overridden``; read them from
    :class:`LoadedModel` (``alpha``, ``epoch``, ``path``, ``alpha_overridden``) instead.
    """
    loaded = load_checkpoint(
        path, alpha, override_alpha, device, verbose, factory=factory, model=model
    )
    for name, field_name in _LEGACY_ATTRIBUTES.items():
        value = getattr(loaded, field_name)
        setattr(loaded.model, name, str(value) if isinstance(value, Path) else value)
    return loaded.model


def shrink_checkpoint(
    path: str | Path,
    out: str | Path,
    image_size: int = 64,
    seed: int = 0,
    factory: str | Callable[..., nn.Module] | None = None,
) -> dict[str, Any]:
    """Shrink the gated model in ``path``, verify it against the gated model, save it to ``out``.

    Returns parameters/FLOPs before and after and the max |difference| of the outputs on a random
    ``image_size`` batch (or of the model's ``example_input_size``). The saved checkpoint (kind ``shrunk``) loads with :func:`load_model`.
    """
    from alphaprune.core.shrink import count, shrink

    data = read_checkpoint(path)
    model = loaded_from(path, data, factory=factory).model
    if not gates(model):
        raise CheckpointError(f"{path}: model has no α gates; nothing to shrink")
    example = example_input(data["config"].get("model", {}), image_size)
    small = shrink(model, example_inputs=example)
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(2, *example.shape[1:], generator=generator)
    with torch.no_grad():
        diff = float((model(x) - small(x)).abs().max())
    size = tuple(example.shape)
    before, after = count(model, size), count(small, size)
    payload = {
        "kind": "shrunk",
        "epoch": data["epoch"],
        "alpha": data["alpha"],
        "model": small.state_dict(),
        "config": data["config"],
        "source": str(path),
    }
    save_checkpoint(out, payload)
    return {
        "source": str(path),
        "out": str(out),
        "alpha": data["alpha"],
        "max_abs_diff": diff,
        "params_before": before["params"],
        "params_after": after["params"],
        "flops_before": before["flops"],
        "flops_after": after["flops"],
    }
