"""Baseline training and α-schedule pruning runs, with per-epoch checkpoints and resume.

One loop serves both: a baseline run trains the ungated autoencoder at a constant learning rate;
a pruning run loads an original (or a gated checkpoint to restart from), attaches gates and lets
the schedule set α and the learning rate every epoch. After every epoch the run folder gets:

- ``metrics.csv``: epoch, alpha, lr, train_loss, val_loss, val_psnr, val_ssim, seconds, status
- ``checkpoints/last.pt`` and, for pruning, ``checkpoints/alpha_<α>.pt`` (last epoch at that α)

Rerunning the same config continues from ``last.pt``: finished epochs are not redone and their
metrics rows are kept exactly once. Works under ``torchrun`` (DDP, rank 0 writes). While a run
trains, its folder is locked (:mod:`alphaprune.engine.locks`): a second process gets a clear error.

The loop reads top to bottom like nanoGPT's ``train.py``: a :class:`Phase` says once what kind of
run this is, a :class:`RunState` carries what changes (model, optimizer, epoch, α, metrics rows),
and every epoch is ``_run_epoch`` (set α, ``_train_epoch``, validate) then ``_save(state)``.

An epoch whose training or validation loss is not finite (inf/NaN) stops the run with
:class:`Diverged`: ``last.pt`` stays the last finite epoch (the resume point), and
``metrics.csv`` gets that epoch's row with ``status`` = ``diverged``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from alphaprune.atomic import atomic_write_bytes, atomic_write_text
from alphaprune.core.gates import attach_gates, gates, get_alpha, set_alpha
from alphaprune.core.schedules import Schedule, lr_factor
from alphaprune.engine import distributed
from alphaprune.engine.checkpoint import (
    CheckpointError,
    last_path,
    load_tensors,
    loaded_from,
    milestone_path,
    model_from_state,
    read_checkpoint,
    save_checkpoint,
)
from alphaprune.engine.config import ExperimentConfig, config_from_dict
from alphaprune.engine.data import (
    FixedCropDataset,
    GridCropDataset,
    RandomCropDataset,
    load_images,
    validation_dataset,
)
from alphaprune.engine.distributed import DistContext
from alphaprune.engine.evaluate import evaluate
from alphaprune.engine.locks import folder_lock
from alphaprune.engine.models import build_model, example_input, load_vgg_weights
from alphaprune.engine.threads import torch_threads
from alphaprune.errors import ConfigError, DataError, Diverged, PruningError

__all__ = [
    "RunResult",
    "Diverged",
    "train_baseline",
    "prune",
    "make_datasets",
    "diverged_at",
    "require_finished",
    "METRIC_COLUMNS",
    "BUDGET_FILE",
]

#: In a pruning run's folder: the budget's report (:class:`alphaprune.core.budget.BudgetReport`)
#: when ``pruning.budget`` chose the channels — target, predicted and measured ratio.
BUDGET_FILE = "budget.json"

#: ``lr`` is the learning rate the optimizer used, averaged over the epoch's steps (warm-up and
#: decay included), ``lr_last`` the one of its last step; the schedule's base rate is the config's.
METRIC_COLUMNS = [
    "epoch",
    "alpha",
    "lr",
    "lr_last",
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

RunKind = Literal["baseline", "prune"]


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


@dataclass(frozen=True)
class Phase:
    """What sets a baseline run apart from a pruning run, fixed before the first epoch.

    A baseline has no schedule: it starts from a seeded fresh model, has no gates (α is None)
    and trains at the config's constant learning rate. A pruning run starts from ``original``
    and takes α and the learning rate of every epoch from its schedule.
    """

    kind: RunKind  # saved in every checkpoint: a run resumes only from its own kind
    schedule: Schedule | None = None
    original: Path | None = None  # the model pruning started from, named in every checkpoint
    # the original's checkpoint, read once when the run starts (None: read when first needed)
    original_data: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.kind == "prune") != (self.schedule is not None):
            raise ValueError(
                f"a {self.kind} phase {'needs' if self.kind == 'prune' else 'has no'} schedule"
            )

    @property
    def prunes(self) -> bool:
        """Whether the run gates channels (and so has an α every epoch)."""
        return self.kind == "prune"

    def original_model(self, factory: str | None = None) -> nn.Module:
        """A fresh copy of the original's model (each call builds a new one from the same read)."""
        data = self.original_data
        if data is None:
            data = read_checkpoint(self.original)
        return loaded_from(self.original, data, factory=factory).model

    def alpha_and_lr(self, epoch: int, constant_lr: float) -> tuple[float | None, float]:
        """α (None: no gates) and base learning rate of ``epoch``."""
        if self.schedule is None:
            return None, constant_lr
        return self.schedule(epoch)


@dataclass
class RunState:
    """A run in progress: its config and phase, and what each epoch changes (model, optimizer,
    epoch, α, metrics); ``last.pt`` is this state on disk."""

    cfg: ExperimentConfig
    phase: Phase
    model: nn.Module  # never DDP-wrapped: gates, validation and checkpoints see this one
    optimizer: torch.optim.Optimizer
    epoch: int = 0  # epochs finished, i.e. the next epoch to run
    alpha: float | None = None  # α of the last finished epoch (or of the start); None: no gates
    rows: list[dict[str, Any]] = field(default_factory=list)  # metrics of the finished epochs


@dataclass(frozen=True)
class _Setup:
    """What every epoch uses and none changes: data, loss, this process's place in the run."""

    ctx: DistContext
    net: nn.Module  # the model as trained: DDP-wrapped under torchrun
    loss_fn: _Loss
    train_ds: RandomCropDataset
    val_ds: FixedCropDataset | GridCropDataset
    loader: DataLoader
    steps: int  # batches per epoch
    quiet: bool  # no progress bars: not asked for, or not rank 0


@dataclass
class FreshModel:
    """A new run's model and, for a budget, the report of how its channels were chosen (written
    into the run folder as ``budget.json`` once the folder exists)."""

    model: nn.Module
    budget: Any = None

    def save_budget(self, run_dir: Path) -> None:
        if self.budget is not None:
            text = json.dumps(self.budget.to_dict(), indent=1) + "\n"
            atomic_write_text(run_dir / BUDGET_FILE, text)


# -- the two entry points ----------------------------------------------------------------------


def train_baseline(cfg: ExperimentConfig, progress: bool = True) -> RunResult:
    """Train the original (ungated) autoencoder for ``cfg.epochs`` at ``cfg.optimizer.lr``."""
    return _run(cfg, Phase("baseline"), progress)


def prune(
    cfg: ExperimentConfig, original: str | Path | None = None, progress: bool = True
) -> RunResult:
    """Prune with the config's α schedule, starting from ``original`` (or ``cfg.init_from``).

    ``original`` is a baseline checkpoint (gates are attached from ``cfg.pruning``) or a gated
    checkpoint (its masks are kept: a restart, e.g. from the milestone at α = 0.1).
    """
    source = original if original is not None else cfg.init_from
    if source is None and not last_path(cfg.run_dir).exists():
        raise ConfigError(
            f"prune '{cfg.name}': no original model; set init_from in the config or pass original="
        )
    resuming = last_path(cfg.run_dir).exists()  # a resume needs only its own last.pt
    if source is not None and not Path(source).is_file() and not resuming:
        raise CheckpointError(f"prune '{cfg.name}': the original {source}: checkpoint not found")
    data = None  # the original, read once here for every use of it in this run start
    if source is not None and Path(source).is_file():
        require_finished(source, f"prune '{cfg.name}'")  # a diverged run's last.pt is no result
        saved = read_checkpoint(source)
        _check_architecture(cfg, Path(source), saved["config"])
        # what rebuilding its model needs (its optimizer state is not kept for the whole run)
        data = {key: saved[key] for key in ("kind", "epoch", "alpha", "model", "config")}
    phase = Phase("prune", cfg.build_schedule(), Path(source) if source else None, data)
    return _run(cfg, phase, progress)


# -- the loop: one epoch at a time -------------------------------------------------------------


# the loop: resume or start, then train → validate → save, one epoch at a time


def _run(cfg: ExperimentConfig, phase: Phase, progress: bool) -> RunResult:
    # a new run's model is built (factory, gates, keep, example input) before its folder exists,
    # so a mistake there leaves no half-made run folder behind
    # and at the run's threads: data-driven criteria compute on it
    with torch_threads(cfg.threads):
        fresh = None if last_path(cfg.run_dir).exists() else _fresh_model(cfg, phase, progress)
    ctx = distributed.setup(cfg.device)
    try:
        with contextlib.ExitStack() as stack:
            if ctx.is_main:  # fail on a bad output_dir, or a run folder in use, before any work
                stack.enter_context(folder_lock(cfg.run_dir, f"run folder of '{cfg.name}'"))
            stack.enter_context(torch_threads(cfg.threads))
            return _loop(cfg, phase, progress, ctx, fresh)
    finally:
        distributed.teardown(ctx)


def _loop(
    cfg: ExperimentConfig,
    phase: Phase,
    progress: bool,
    ctx: DistContext,
    fresh: FreshModel | None = None,
) -> RunResult:
    """Run the epochs after the last finished one up to ``cfg.epochs``, saving after each
    (``fresh``: the new run's model, already built)."""
    saved = _resume_point(cfg, phase.kind)
    distributed.barrier(ctx)  # every rank has read the resume point before rank 0 writes one
    if saved is None:
        fresh = fresh if fresh is not None else _fresh_model(cfg, phase, progress and ctx.is_main)
        if ctx.is_main:
            fresh.save_budget(cfg.run_dir)
        model = fresh.model
    else:
        # built from the caller's config (equal to the saved one, see _resume_point): nothing
        # the checkpoint names is imported
        model = model_from_state(cfg.model.model_dump(), saved["model"])
        if phase.original is None and saved.get("original"):
            phase = replace(phase, original=Path(saved["original"]))
        if ctx.is_main:
            _restart_metrics(cfg, saved)
    model.to(ctx.device)
    train_ds, val_ds = make_datasets(cfg, ctx.world_size)
    loader = _train_loader(cfg, train_ds, ctx)
    state = _start_state(cfg, phase, model, saved)
    setup = _Setup(
        ctx=ctx,
        net=DistributedDataParallel(model) if ctx.enabled else model,
        loss_fn=_Loss(cfg, _feature_encoder(cfg, phase)).to(ctx.device),
        train_ds=train_ds,
        val_ds=val_ds,
        loader=loader,
        steps=cfg.steps_per_epoch or len(loader),
        quiet=not (progress and ctx.is_main),
    )
    if saved is not None and "rng" in saved:  # only now: building the loss's encoder reseeds
        torch.set_rng_state(saved["rng"]["torch"])
    if ctx.is_main and saved is None:
        # the resume point before the first epoch, so a run that diverges at once keeps its
        # start; a run of zero epochs ends here, so this is also its result, milestone included
        _save(state, milestone=cfg.epochs == 0)

    epochs = tqdm(
        range(state.epoch, cfg.epochs),
        desc=f"{phase.kind} {cfg.name}",
        unit="epoch",
        initial=state.epoch,
        total=cfg.epochs,
        disable=setup.quiet,
    )
    for epoch in epochs:
        row = _run_epoch(state, setup, epoch)
        if not all(math.isfinite(value) for value in _losses(row).values()):
            raise _diverged(state, row, ctx.is_main)
        state.rows.append(row)
        state.epoch, state.alpha = epoch + 1, row["alpha"]
        epochs.set_postfix(alpha=row["alpha"], val_psnr=f"{row['val_psnr']:.2f}")
        if ctx.is_main:
            _save(state)
        distributed.barrier(ctx)  # no rank starts the next epoch before the save is on disk

    distributed.barrier(ctx)  # … nor returns before it (with zero epochs: the start's save)
    return RunResult(cfg.run_dir, last_path(cfg.run_dir), _frame(state.rows), cfg)


def _run_epoch(state: RunState, setup: _Setup, epoch: int) -> dict[str, Any]:
    """Train ``epoch`` at its α and learning rate, then validate at that α; its metrics row."""
    began = time.perf_counter()
    alpha, lr = state.phase.alpha_and_lr(epoch, state.cfg.optimizer.lr)
    if not gates(state.model):  # nothing to gate (keep 1.0: a fine-tuning control)
        alpha = None
    if alpha is not None:  # before training *and* validation: neither may see a stale α
        set_alpha(state.model, alpha)
    train_loss, lrs = _train_epoch(state, setup, epoch, lr)
    batch_size = state.cfg.data.batch_size
    scores = evaluate(state.model, setup.val_ds, device=setup.ctx.device, batch_size=batch_size)
    return {
        "epoch": epoch,
        "alpha": alpha,
        "lr": sum(lrs) / len(lrs) if lrs else lr,
        "lr_last": lrs[-1] if lrs else lr,
        "train_loss": train_loss,
        "val_loss": scores["loss"],
        "val_psnr": scores["psnr"],
        "val_ssim": scores["ssim"],
        "seconds": time.perf_counter() - began,
        "status": OK,
    }


def _train_epoch(
    state: RunState, setup: _Setup, epoch: int, lr: float
) -> tuple[float, list[float]]:
    """One pass over ``epoch``'s crops at base learning rate ``lr``; the mean training loss over
    all ranks and the learning rate of each step."""
    cfg, optimizer = state.cfg, state.optimizer
    lrs: list[float] = []
    setup.train_ds.set_epoch(epoch)  # before the loader's iterator is made: it picks the crops
    state.model.train()
    total, seen = 0.0, 0
    batches = tqdm(
        itertools.islice(setup.loader, setup.steps),
        total=setup.steps,
        leave=False,
        desc=f"epoch {epoch}",
        disable=setup.quiet,
    )
    for step, batch in enumerate(batches):
        # warm-up and decay follow the step through the whole run, on top of the epoch's rate
        run_step, run_steps = epoch * setup.steps + step, cfg.epochs * setup.steps
        factor = lr_factor(cfg.optimizer.lr_decay, run_step, run_steps, cfg.optimizer.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr * factor
        lrs.append(lr * factor)
        batch = batch.to(setup.ctx.device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss = setup.loss_fn(setup.net(batch), batch)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * batch.shape[0]
        seen += batch.shape[0]
    return distributed.all_reduce_mean(setup.ctx, total / max(seen, 1), weight=seen), lrs


def _losses(row: Mapping[str, Any]) -> dict[str, float]:
    return {"train loss": row["train_loss"], "val loss": row["val_loss"]}


def _diverged(state: RunState, row: dict[str, Any], is_main: bool) -> Diverged:
    """The error for an epoch whose loss is not finite, after recording it in ``metrics.csv``;
    ``last.pt`` is left at the last finite epoch (the resume point)."""
    cfg, epoch = state.cfg, row["epoch"]
    if is_main:
        _write_metrics(cfg.run_dir, [*state.rows, {**row, "status": DIVERGED}])
    losses, checkpoint = _losses(row), last_path(cfg.run_dir)
    shown = ", ".join(f"{key} {value}" for key, value in losses.items())
    message = (
        f"run '{cfg.name}' diverged at epoch {epoch} ({shown}); stopped: {checkpoint} keeps the "
        f"last finite epoch and {cfg.run_dir / 'metrics.csv'} marks the run diverged"
    )
    result = RunResult(cfg.run_dir, checkpoint, _frame(state.rows), cfg, diverged_at=epoch)
    return Diverged(cfg.name, cfg.run_dir, epoch, losses, message, result=result)


def _save(state: RunState, milestone: bool = True) -> None:
    """Save ``state``: its α milestone (when it has an α), ``last.pt``, then ``metrics.csv``."""
    payload = _payload(state)
    run_dir = state.cfg.run_dir
    # last.pt is the commit point: the milestone is written before it (a kill in between redoes
    # the epoch, milestone included) and metrics.csv right after it (resume rewrites it from the
    # checkpoint's rows, so it never keeps a row the checkpoint lacks).
    if state.alpha is not None and milestone:
        save_checkpoint(milestone_path(run_dir, state.alpha), payload)
    save_checkpoint(last_path(run_dir), payload)
    _write_metrics(run_dir, state.rows)


def _payload(state: RunState) -> dict[str, Any]:
    """``state`` as a checkpoint (the format :mod:`alphaprune.engine.checkpoint` reads)."""
    phase = state.phase
    return {
        "kind": phase.kind,
        "epoch": state.epoch,
        "alpha": state.alpha,
        "model": {k: v.detach().cpu() for k, v in state.model.state_dict().items()},
        "optimizer": state.optimizer.state_dict(),
        "rng": {"torch": torch.get_rng_state()},
        "config": state.cfg.to_dict(),
        "schedule": phase.schedule.to_dict() if phase.schedule else None,
        "metrics": state.rows,
        "original": str(phase.original) if phase.original else None,
    }


# -- starting or resuming a run ----------------------------------------------------------------


def _resume_point(cfg: ExperimentConfig, kind: RunKind) -> dict[str, Any] | None:
    """The ``last.pt`` an earlier start of this run left (None for a new run); refused when it
    belongs to another run."""
    path = last_path(cfg.run_dir)
    if not path.exists():
        return None
    saved = read_checkpoint(path)
    if saved["kind"] != kind or _comparable(saved["config"]) != _comparable(cfg.to_dict()):
        if _start_only(saved):
            print(
                f"starting over in {cfg.run_dir}: {path} is the start of another config, "
                "with no finished epoch"
            )
            return None
        raise CheckpointError(
            f"{path} belongs to a different run (kind '{saved['kind']}' or another "
            "config); choose another name/output_dir or delete the folder to start over"
        )
    return saved


def _start_only(saved: Mapping[str, Any]) -> bool:
    """Whether ``saved`` is only the start point a run saves before its first epoch (nothing
    finished, and not the result of a zero-epoch run): it never blocks a corrected rerun."""
    epochs = saved["config"].get("epochs") if isinstance(saved["config"], Mapping) else None
    return int(saved["epoch"]) == 0 and not saved.get("metrics") and epochs != 0


def _restart_metrics(cfg: ExperimentConfig, saved: Mapping[str, Any]) -> None:
    """Put ``metrics.csv`` back to exactly the checkpoint's finished epochs (a diverged epoch's
    row goes: it is tried again) and say where the run goes on."""
    _write_metrics(cfg.run_dir, list(saved.get("metrics", [])))
    if int(saved["epoch"]) < cfg.epochs:
        print(f"resuming {cfg.run_dir} after epoch {saved['epoch']} of {cfg.epochs}")


def _start_state(
    cfg: ExperimentConfig, phase: Phase, model: nn.Module, saved: Mapping[str, Any] | None
) -> RunState:
    """The state before the next epoch: the checkpoint's, or a new run's before epoch 0."""
    epoch = int(saved["epoch"]) if saved is not None else 0
    optimizer = _optimizer(cfg, model, phase.alpha_and_lr(epoch, cfg.optimizer.lr)[1])
    if saved is None:
        return RunState(cfg, phase, model, optimizer, alpha=_current_alpha(model))
    if saved.get("optimizer") is not None:
        optimizer.load_state_dict(saved["optimizer"])
    rows = list(saved.get("metrics", []))
    return RunState(cfg, phase, model, optimizer, epoch, saved.get("alpha"), rows)


def _train_loader(
    cfg: ExperimentConfig, train_ds: RandomCropDataset, ctx: DistContext
) -> DataLoader:
    """Batches of the training crops in order (the dataset shuffles per epoch); under torchrun
    each rank gets its share."""
    sampler = (
        DistributedSampler(train_ds, ctx.world_size, ctx.rank, shuffle=False)
        if ctx.enabled
        else None
    )
    return DataLoader(
        train_ds,
        batch_size=cfg.data.batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=cfg.data.num_workers,
        drop_last=False,
    )


def _fresh_model(cfg: ExperimentConfig, phase: Phase, progress: bool = True) -> FreshModel:
    """A new run's model: the original with gates to prune, or a seeded fresh baseline."""
    if phase.prunes:
        return _fresh_pruned(cfg, phase, progress)
    return FreshModel(_fresh_baseline(cfg))


def _fresh_baseline(cfg: ExperimentConfig) -> nn.Module:
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model.model_dump())
    if cfg.model.vgg_weights:
        state = load_tensors(cfg.model.vgg_weights, what="model.vgg_weights")
        load_vgg_weights(model, state)
    return model


def _fresh_pruned(cfg: ExperimentConfig, phase: Phase, progress: bool = True) -> FreshModel:
    """The model to prune: the original with gates attached, or a gated checkpoint as it is;
    with ``pruning.reinit`` its weights are drawn afresh first (seeded by the run's seed)."""
    # built by the config's own factory: the original's was checked to be the same
    model = phase.original_model(factory=cfg.model.factory)
    # whatever the run draws (the random criterion, re-initialised weights) follows its seed,
    # not the history of the process it runs in (in-process, a worker, after another run)
    torch.manual_seed(cfg.seed)
    if cfg.pruning.reinit:
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    if not gates(model):
        example = example_input(cfg.model.model_dump(), cfg.data.crop)
        _check_example(model, example, cfg)
        latency = _latency_budget(cfg, progress)
        plan = attach_gates(
            model,
            keep=cfg.pruning.keep,
            criterion=cfg.pruning.criterion,
            target=cfg.pruning.target,
            example_inputs=_calibration_input(cfg, example),
            budget=cfg.pruning.budget,
            min_keep=cfg.pruning.min_keep,
            round_to=cfg.pruning.round_to,
            latency=latency,
        )
        if not gates(model) and not cfg.pruning.fine_tune_only:
            raise PruningError(
                f"prune '{cfg.name}': pruning.keep {cfg.pruning.keep!r} on target "
                f"{cfg.pruning.target!r} gates no channel (keep 1.0 keeps them all): nothing "
                "to prune; choose a keep below 1 or a pruning.budget"
            )
        if plan.budget is not None and latency is not None:
            print(plan.budget)
        return FreshModel(model, plan.budget)
    return FreshModel(model, None)


def _calibration_input(cfg: ExperimentConfig, example: torch.Tensor) -> torch.Tensor:
    """The input that traces the model and feeds data-driven criteria (e.g. a Taylor score): one
    batch of the run's own first training crops for the built-in autoencoder, else the model's
    example input."""
    if cfg.model.factory is not None:
        return example
    train = make_datasets(cfg)[0]
    train.set_epoch(0)
    return torch.stack([train[i] for i in range(min(cfg.data.batch_size, len(train)))])


def _check_example(model: nn.Module, example: torch.Tensor, cfg: ExperimentConfig) -> None:
    """A one-line error naming ``model.example_input_size`` (or ``data.crop``) when the model
    cannot run on the input it is traced with."""
    try:
        with torch.no_grad():
            model.eval()(example)
    except Exception as exc:  # the user's model on the user's size: say which key to change
        key = "model.example_input_size" if cfg.model.example_input_size else "data.crop"
        reason = " ".join(str(exc).split())[:300]
        raise ConfigError(
            f"prune '{cfg.name}': the model cannot run on an input of size "
            f"{list(example.shape)} ({key}): {type(exc).__name__}: {reason}"
        ) from None


def _latency_budget(cfg: ExperimentConfig, progress: bool) -> dict[str, Any] | None:
    """The latency options of a latency budget (None for other runs). Every rank of a torchrun
    job would time on its own and could choose other channels, so that is refused."""
    if not (cfg.pruning.budget and "latency" in cfg.pruning.budget):
        return None
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        raise ConfigError(
            "pruning.budget.latency under torchrun: every rank would measure and choose on its "
            "own; start the pruning run in one process (epochs: 0 saves its gates), then resume"
        )
    device = cfg.device if cfg.device != "auto" else None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return {**cfg.pruning.latency.options(device), "progress": progress}


def _feature_encoder(cfg: ExperimentConfig, phase: Phase) -> nn.Module | None:
    """The frozen encoder of the feature loss: the run's starting encoder, rebuilt the same way
    on resume (baseline: the seeded initial/VGG encoder; pruning: the original's encoder)."""
    if cfg.loss.vgg_feature == 0:
        return None
    if not phase.prunes or phase.original is None:
        return _fresh_baseline(cfg).encoder
    return phase.original_model().encoder


def _current_alpha(model: nn.Module) -> float | None:
    return get_alpha(model) if gates(model) else None


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


def make_datasets(
    cfg: ExperimentConfig, world_size: int = 1, held_out: Literal["val", "test"] = "val"
) -> tuple[RandomCropDataset, FixedCropDataset | GridCropDataset]:
    """Training (random crops) and held-out (fixed crops or tiles) datasets of ``cfg.data``.

    The split is by image (``data.val_images`` / ``test_images`` or ``data.split``): training
    never sees a validation or test image. ``held_out="test"`` gives the test images under the
    validation protocol (a :class:`DataError` when the config has no test split). With
    ``steps_per_epoch`` set, an epoch holds exactly ``steps × batch_size × world_size``
    distinct random crops (instead of ``samples_per_epoch``).
    """
    images = load_images(cfg.data.source)
    split = cfg.data.split_of(list(images))
    names = split.val if held_out == "val" else split.test
    if not names:
        raise DataError(
            f"run '{cfg.name}' has no {held_out} images: declare data.test_images (names or "
            "globs) or data.split with a test fraction"
        )
    samples = cfg.data.samples_per_epoch
    if cfg.steps_per_epoch:
        samples = cfg.steps_per_epoch * cfg.data.batch_size * world_size
    train = RandomCropDataset(
        {k: images[k] for k in split.train}, cfg.data.crop, samples, seed=cfg.seed
    )
    held = validation_dataset(
        {k: images[k] for k in names},
        cfg.data.crop,
        cfg.data.val_protocol,
        val_crops=cfg.data.val_crops,
    )
    return train, held


# -- records and checks ------------------------------------------------------------------------


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


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the keys a resumed run may change, with the defaults of keys added
    since it was saved filled in (a config that no longer validates is compared as it is)."""
    try:
        config = config_from_dict(config).to_dict()
    except ConfigError:
        pass
    return {k: v for k, v in config.items() if k not in _RESUME_FREE_KEYS}


def _write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    frame = _frame(rows)
    atomic_write_bytes(run_dir / "metrics.csv", frame.to_csv(index=False).encode())


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The metrics table of ``rows`` (rows saved before ``status`` existed count as finished)."""
    frame = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    frame["status"] = frame["status"].fillna(OK)
    return frame


def _architecture(model: Mapping[str, Any]) -> dict[str, Any]:
    """What defines a model's architecture in a config's ``model`` section."""
    if model.get("factory"):
        return {"factory": model["factory"], "kwargs": dict(model.get("kwargs") or {})}
    return {"layer": model.get("layer", "relu3_1"), "batch_norm": model.get("batch_norm", False)}


def _describe_architecture(arch: Mapping[str, Any]) -> str:
    if "factory" in arch:
        return f"model.factory {arch['factory']} (kwargs {arch['kwargs']})"
    return f"model.layer {arch['layer']} (batch_norm {arch['batch_norm']})"


def _check_architecture(
    cfg: ExperimentConfig, original: Path, original_config: Mapping[str, Any]
) -> None:
    """Refuse an original (whose saved config is ``original_config``) whose architecture
    (``model.layer``/``batch_norm``, or ``factory`` and its ``kwargs``) is not the config's: the
    run would train one model and describe it as another, and its checkpoints could not be
    loaded."""
    theirs = _architecture(original_config.get("model", {}))
    ours = _architecture(cfg.to_dict()["model"])
    if theirs != ours:
        raise CheckpointError(
            f"prune '{cfg.name}': the original {original} was built with "
            f"{_describe_architecture(theirs)} but the config says {_describe_architecture(ours)}; "
            "use the original's model settings"
        )
