"""Baseline training and α-schedule pruning runs, with per-epoch checkpoints and resume.

One loop serves both: a baseline run trains the ungated autoencoder at a constant learning rate;
a pruning run loads an original (or a gated checkpoint to restart from), attaches gates and lets
the schedule set α and the learning rate every epoch. After every epoch the run folder gets:

- ``metrics.csv``: epoch, alpha, lr, train_loss, val_loss, val_psnr, val_ssim, seconds, status
- ``checkpoints/last.pt`` and, for pruning, ``checkpoints/alpha_<α>.pt`` (last epoch at that α)

Rerunning the same config continues from ``last.pt``: finished epochs are not redone and their
metrics rows are kept exactly once. Works under ``torchrun`` (DDP, rank 0 writes). While a run
trains, its folder is locked (:mod:`alphaprune.engine.locks`): a second process gets a clear error.

An epoch whose training or validation loss is not finite (inf/NaN) stops the run with
:class:`Diverged`: ``last.pt`` stays the last finite epoch (the resume point), and
``metrics.csv`` gets that epoch's row with ``status`` = ``diverged``.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from alphaprune.atomic import atomic_write_bytes
from alphaprune.core.gates import attach_gates, gates, get_alpha, set_alpha
from alphaprune.core.schedules import Schedule, lr_factor
from alphaprune.engine import distributed
from alphaprune.engine.checkpoint import (
    CheckpointError,
    checkpoint_info,
    last_path,
    load_model,
    milestone_path,
    model_from_state,
    read_checkpoint,
    save_checkpoint,
)
from alphaprune.engine.config import ExperimentConfig
from alphaprune.engine.data import (
    FixedCropDataset,
    GridCropDataset,
    RandomCropDataset,
    load_images,
    split_images,
    validation_dataset,
)
from alphaprune.engine.evaluate import evaluate
from alphaprune.engine.locks import folder_lock
from alphaprune.engine.models import build_model, example_input, load_vgg_weights
from alphaprune.errors import Diverged

__all__ = [
    "RunResult",
    "Diverged",
    "train_baseline",
    "prune",
    "make_datasets",
    "diverged_at",
    "require_finished",
    "METRIC_COLUMNS",
]

METRIC_COLUMNS = [
    "epoch",
    "alpha",
    "lr",
    "train_loss",
    "val_loss",
    "val_psnr",
    "val_ssim",
    "seconds",
    "status",
]
#: ``status`` of a finished epoch, and of the epoch that stopped a run with a non-finite loss.
OK, DIVERGED = "ok", "diverged"
#: Config keys that may change between a run and its resumption: where the run lives, what it
#: runs on, and how many epochs it has (raise ``epochs`` to extend a finished run).
_RESUME_FREE_KEYS = {"name", "output_dir", "device", "epochs"}


@dataclass
class RunResult:
    """What a run leaves behind: its folder, last checkpoint, metrics table and config.

    ``diverged_at`` is the epoch whose loss was not finite (None for a run that did not
    diverge); ``metrics`` then holds the finite epochs before it and ``checkpoint`` the last.
    """

    run_dir: Path
    checkpoint: Path
    metrics: pd.DataFrame
    config: ExperimentConfig
    diverged_at: int | None = None


def diverged_at(run_dir: str | Path) -> int | None:
    """The epoch at which the run in ``run_dir`` diverged, per its ``metrics.csv`` (else None)."""
    path = Path(run_dir) / "metrics.csv"
    try:
        frame = pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return None
    if "status" not in frame.columns:
        return None
    bad = frame.loc[frame["status"] == DIVERGED, "epoch"]
    return int(bad.iloc[-1]) if len(bad) else None


def require_finished(checkpoint: str | Path, stage: str = "shrink") -> None:
    """Raise :class:`Diverged` when ``checkpoint`` is the ``last.pt`` of a run that diverged (it
    is then the last finite epoch, not the run's result)."""
    checkpoint = Path(checkpoint)
    if checkpoint.name != "last.pt" or checkpoint.parent.name != "checkpoints":
        return
    run_dir = checkpoint.parent.parent
    epoch = diverged_at(run_dir)
    if epoch is not None:
        raise Diverged(
            run_dir.name,
            run_dir,
            epoch,
            {},
            f"{stage}: run '{run_dir.name}' diverged at epoch {epoch}, so {checkpoint} is its last "
            f"finite epoch, not a finished model; choose a run that did not diverge",
        )


def make_datasets(
    cfg: ExperimentConfig, world_size: int = 1
) -> tuple[RandomCropDataset, FixedCropDataset | GridCropDataset]:
    """Training (random crops) and validation (fixed crops) datasets of ``cfg.data``.

    With ``steps_per_epoch`` set, an epoch holds exactly ``steps × batch_size × world_size``
    distinct random crops (instead of ``samples_per_epoch``).
    """
    images = load_images(cfg.data.source)
    train_images, val_images = split_images(images, cfg.data.val_images)
    samples = cfg.data.samples_per_epoch
    if cfg.steps_per_epoch:
        samples = cfg.steps_per_epoch * cfg.data.batch_size * world_size
    train = RandomCropDataset(train_images, cfg.data.crop, samples, seed=cfg.seed)
    val = validation_dataset(
        val_images, cfg.data.crop, cfg.data.val_protocol, val_crops=cfg.data.val_crops
    )
    return train, val


def _optimizer(cfg: ExperimentConfig, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = cfg.optimizer
    if opt.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=opt.weight_decay)


class _Loss(nn.Module):
    """Pixel MSE plus, optionally, MSE between features of a frozen encoder."""

    def __init__(self, cfg: ExperimentConfig, feature_encoder: nn.Module | None) -> None:
        super().__init__()
        self.pixel = cfg.loss.pixel
        self.feature = cfg.loss.vgg_feature
        self.encoder = None
        if feature_encoder is not None:
            self.encoder = feature_encoder.eval().requires_grad_(False)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.pixel * F.mse_loss(output, target) if self.pixel else output.new_zeros(())
        if self.encoder is not None:
            loss = loss + self.feature * F.mse_loss(self.encoder(output), self.encoder(target))
        return loss


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _RESUME_FREE_KEYS}


def _write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    frame = _frame(rows)
    atomic_write_bytes(run_dir / "metrics.csv", frame.to_csv(index=False).encode())


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The metrics table of ``rows`` (rows saved before ``status`` existed count as finished)."""
    frame = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    frame["status"] = frame["status"].fillna(OK)
    return frame


def _fresh_baseline(cfg: ExperimentConfig) -> nn.Module:
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model.model_dump())
    if cfg.model.vgg_weights:
        state = torch.load(cfg.model.vgg_weights, map_location="cpu", weights_only=True)
        load_vgg_weights(model, state)
    return model


def _fresh_pruned(cfg: ExperimentConfig, original: Path) -> nn.Module:
    """The model to prune: the original with gates attached, or a gated checkpoint as it is."""
    model = load_model(original, verbose=False)
    if not gates(model):
        attach_gates(
            model,
            keep=cfg.pruning.keep,
            criterion=cfg.pruning.criterion,
            target=cfg.pruning.target,
            example_inputs=example_input(cfg.model.model_dump(), cfg.data.crop),
            budget=cfg.pruning.budget,
            min_keep=cfg.pruning.min_keep,
            round_to=cfg.pruning.round_to,
        )
    return model


def _feature_encoder(cfg: ExperimentConfig, kind: str, original: Path | None) -> nn.Module | None:
    """The frozen encoder of the feature loss: the run's starting encoder, rebuilt the same way
    on resume (baseline: the seeded initial/VGG encoder; pruning: the original's encoder)."""
    if cfg.loss.vgg_feature == 0:
        return None
    if kind == "baseline" or original is None:
        return _fresh_baseline(cfg).encoder
    return load_model(original, verbose=False).encoder


def _run(
    cfg: ExperimentConfig,
    kind: str,
    schedule: Schedule | None,
    original: Path | None,
    progress: bool,
) -> RunResult:
    ctx = distributed.setup(cfg.device)
    try:
        with contextlib.ExitStack() as stack:
            if ctx.is_main:  # fail on a bad output_dir, or a run folder in use, before any work
                stack.enter_context(folder_lock(cfg.run_dir, f"run folder of '{cfg.name}'"))
            return _loop(cfg, kind, schedule, original, progress, ctx)
    finally:
        distributed.teardown(ctx)


def _loop(cfg, kind, schedule, original, progress, ctx) -> RunResult:  # noqa: C901
    run_dir = cfg.run_dir
    ckpt_path = last_path(run_dir)
    rows: list[dict[str, Any]] = []
    optimizer_state = None
    rng_state = None
    start_epoch = 0
    if ckpt_path.exists():
        saved = read_checkpoint(ckpt_path)
        if saved["kind"] != kind or _comparable(saved["config"]) != _comparable(cfg.to_dict()):
            raise CheckpointError(
                f"{ckpt_path} belongs to a different run (kind '{saved['kind']}' or another "
                "config); choose another name/output_dir or delete the folder to start over"
            )
        model = model_from_state(saved["config"]["model"], saved["model"])
        optimizer_state = saved.get("optimizer")
        rows = list(saved.get("metrics", []))
        start_epoch = int(saved["epoch"])
        if original is None and saved.get("original"):
            original = Path(saved["original"])
        if "rng" in saved:
            rng_state = saved["rng"]["torch"]
        if ctx.is_main:
            _write_metrics(run_dir, rows)  # exactly the checkpoint's finished epochs
            if start_epoch < cfg.epochs:
                print(f"resuming {run_dir} after epoch {start_epoch} of {cfg.epochs}")
    elif kind == "baseline":
        model = _fresh_baseline(cfg)
    else:
        model = _fresh_pruned(cfg, original)

    model.to(ctx.device)
    train_ds, val_ds = make_datasets(cfg, ctx.world_size)
    sampler = (
        DistributedSampler(train_ds, ctx.world_size, ctx.rank, shuffle=False)
        if ctx.enabled
        else None
    )
    loader = DataLoader(
        train_ds,
        batch_size=cfg.data.batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=cfg.data.num_workers,
        drop_last=False,
    )
    first_lr = schedule.lr_for(start_epoch) if schedule else cfg.optimizer.lr
    optimizer = _optimizer(cfg, model, first_lr)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    loss_fn = _Loss(cfg, _feature_encoder(cfg, kind, original)).to(ctx.device)
    net = DistributedDataParallel(model) if ctx.enabled else model

    steps = cfg.steps_per_epoch or len(loader)
    if rng_state is not None:  # here, so that building the loss's encoder does not reset it
        torch.set_rng_state(rng_state)
    if ctx.is_main and not ckpt_path.exists() and cfg.epochs > 0:
        # the resume point before the first epoch: a run that diverges at once keeps its start
        alpha = get_alpha(model) if gates(model) else None
        _save(cfg, kind, model, optimizer, schedule, rows, 0, alpha, original, milestone=False)
    epochs = tqdm(
        range(start_epoch, cfg.epochs),
        desc=f"{kind} {cfg.name}",
        unit="epoch",
        initial=start_epoch,
        total=cfg.epochs,
        disable=not (progress and ctx.is_main),
    )
    for epoch in epochs:
        began = time.perf_counter()
        alpha = None
        lr = cfg.optimizer.lr
        if schedule is not None:
            alpha, lr = schedule(epoch)
            set_alpha(model, alpha)
        train_ds.set_epoch(epoch)
        model.train()
        total, seen = 0.0, 0
        batches = itertools.islice(loader, steps)
        for step, batch in enumerate(
            tqdm(
                batches,
                total=steps,
                leave=False,
                desc=f"epoch {epoch}",
                disable=not (progress and ctx.is_main),
            )
        ):
            factor = lr_factor(
                cfg.optimizer.lr_decay,
                epoch * steps + step,
                cfg.epochs * steps,
                cfg.optimizer.warmup_steps,
            )
            for group in optimizer.param_groups:
                group["lr"] = lr * factor
            batch = batch.to(ctx.device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(batch), batch)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * batch.shape[0]
            seen += batch.shape[0]
        train_loss = distributed.all_reduce_mean(ctx, total / max(seen, 1), weight=seen)
        scores = evaluate(model, val_ds, device=ctx.device, batch_size=cfg.data.batch_size)
        row = {
            "epoch": epoch,
            "alpha": alpha,
            "lr": lr,
            "train_loss": train_loss,
            "val_loss": scores["loss"],
            "val_psnr": scores["psnr"],
            "val_ssim": scores["ssim"],
            "seconds": time.perf_counter() - began,
            "status": OK,
        }
        losses = {"train loss": train_loss, "val loss": scores["loss"]}
        if not all(math.isfinite(value) for value in losses.values()):
            if ctx.is_main:  # last.pt is left at the last finite epoch
                _write_metrics(run_dir, [*rows, {**row, "status": DIVERGED}])
            diverged = Diverged(cfg.name, run_dir, epoch, losses)
            diverged.result = RunResult(run_dir, ckpt_path, _frame(rows), cfg, diverged_at=epoch)
            raise diverged
        rows.append(row)
        epochs.set_postfix(alpha=alpha, val_psnr=f"{scores['psnr']:.2f}")
        if ctx.is_main:
            _save(cfg, kind, model, optimizer, schedule, rows, epoch + 1, alpha, original)
        distributed.barrier(ctx)

    if ctx.is_main and not ckpt_path.exists():  # zero epochs: still leave a loadable checkpoint
        alpha = get_alpha(model) if gates(model) else None
        _save(cfg, kind, model, optimizer, schedule, rows, 0, alpha, original)
    distributed.barrier(ctx)
    return RunResult(run_dir, ckpt_path, _frame(rows), cfg)


def _save(cfg, kind, model, optimizer, schedule, rows, epoch, alpha, original, milestone=True):
    payload = {
        "kind": kind,
        "epoch": epoch,
        "alpha": alpha,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "rng": {"torch": torch.get_rng_state()},
        "config": cfg.to_dict(),
        "schedule": schedule.to_dict() if schedule else None,
        "metrics": rows,
        "original": str(original) if original else None,
    }
    run_dir = cfg.run_dir
    # last.pt is the commit point: the milestone is written before it (a kill in between redoes
    # the epoch, milestone included) and metrics.csv right after it (resume rewrites it from the
    # checkpoint's rows, so it never keeps a row the checkpoint lacks).
    if alpha is not None and milestone:
        save_checkpoint(milestone_path(run_dir, alpha), payload)
    save_checkpoint(last_path(run_dir), payload)
    _write_metrics(run_dir, rows)


def train_baseline(cfg: ExperimentConfig, progress: bool = True) -> RunResult:
    """Train the original (ungated) autoencoder for ``cfg.epochs`` at ``cfg.optimizer.lr``."""
    return _run(cfg, "baseline", None, None, progress)


def prune(
    cfg: ExperimentConfig, original: str | Path | None = None, progress: bool = True
) -> RunResult:
    """Prune with the config's α schedule, starting from ``original`` (or ``cfg.init_from``).

    ``original`` is a baseline checkpoint (gates are attached from ``cfg.pruning``) or a gated
    checkpoint (its masks are kept: a restart, e.g. from the milestone at α = 0.1).
    """
    source = original if original is not None else cfg.init_from
    if source is None and not last_path(cfg.run_dir).exists():
        raise ValueError(
            f"prune '{cfg.name}': no original model; set init_from in the config or pass original="
        )
    if source is not None and Path(source).is_file():
        _check_architecture(cfg, Path(source))
    return _run(cfg, "prune", cfg.build_schedule(), Path(source) if source else None, progress)


def _architecture(model: Mapping[str, Any]) -> dict[str, Any]:
    """What defines a model's architecture in a config's ``model`` section."""
    if model.get("factory"):
        return {"factory": model["factory"], "kwargs": dict(model.get("kwargs") or {})}
    return {"layer": model.get("layer", "relu3_1"), "batch_norm": model.get("batch_norm", False)}


def _describe_architecture(arch: Mapping[str, Any]) -> str:
    if "factory" in arch:
        return f"model.factory {arch['factory']} (kwargs {arch['kwargs']})"
    return f"model.layer {arch['layer']} (batch_norm {arch['batch_norm']})"


def _check_architecture(cfg: ExperimentConfig, original: Path) -> None:
    """Refuse an original whose architecture (``model.layer``/``batch_norm``, or ``factory`` and
    its ``kwargs``) is not the config's: the run would train one model and describe it as
    another, and its checkpoints could not be loaded."""
    theirs = _architecture(checkpoint_info(original)["config"].get("model", {}))
    ours = _architecture(cfg.to_dict()["model"])
    if theirs != ours:
        raise CheckpointError(
            f"prune '{cfg.name}': the original {original} was built with "
            f"{_describe_architecture(theirs)} but the config says {_describe_architecture(ours)}; "
            "use the original's model settings"
        )
