"""Training-step benchmark: an Adam step of each model, timed interleaved step by step."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from alphaprune.bench.checks import check_run
from alphaprune.bench.device import run_conditions
from alphaprune.bench.timing import Tally, rotation, timed_calls

__all__ = ["TRAIN_COLUMNS", "train_step_benchmark"]

#: Columns of :func:`train_step_benchmark`, in order (documented there).
TRAIN_COLUMNS = [
    "model",
    "step_ms_median",
    "step_ms_p10",
    "step_ms_p90",
    "overhead_pct",
    "params",
    "device",
    "device_name",
    "torch_version",
    "threads",
    "batch_size",
    "image_size",
    "timed_steps",
    "warmup_steps",
]


def train_step_benchmark(
    models: Mapping[str, nn.Module],
    batch_size: int = 8,
    image_size: int = 128,
    device: torch.device | str = "cpu",
    steps: int = 20,
    warmup: int = 3,
    lr: float = 1e-4,
    reference: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Time an Adam + MSE reconstruction training step of each model, interleaved step by step.

    Each model is deep-copied to ``device`` in ``train()`` mode with its own ``Adam(lr)``; a step
    is ``zero_grad``, forward of a fixed random batch, ``mse_loss(output, input)``, ``backward``,
    ``step``. After ``warmup`` steps each, the models alternate one step at a time, order rotated
    every round, for ``steps`` timed steps each.

    Columns: ``model``; ``step_ms_median``, ``step_ms_p10``, ``step_ms_p90`` (time per step in ms:
    CUDA events on CUDA, ``perf_counter`` on CPU); ``overhead_pct`` (``100 * (median /
    reference median - 1)``, 0 on the ``reference`` row, the first model by default);
    ``params``; and the conditions ``device``, ``device_name``, ``torch_version``, ``threads``,
    ``batch_size``, ``image_size``, ``timed_steps``, ``warmup_steps``.
    """
    names, reference = check_run(
        models, reference, batch_size=batch_size, image_size=image_size, steps=steps
    )
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, 3, image_size, image_size, generator=generator).to(device)
    nets = {name: copy.deepcopy(m).to(device).train() for name, m in models.items()}
    step_of = {name: _training_step(net, x, lr) for name, net in nets.items()}
    for name in names:
        timed_calls(step_of[name], warmup, device)
    tallies = {name: Tally(name) for name in names}
    with tqdm(total=steps * len(names), desc="train steps", disable=not progress) as bar:
        for name, calls in rotation(names, steps, block=1):
            tallies[name].times_ms += timed_calls(step_of[name], calls, device)
            bar.update(calls)
    conditions = {
        **run_conditions(device),
        "batch_size": batch_size,
        "image_size": image_size,
        "timed_steps": steps,
        "warmup_steps": warmup,
    }
    rows = [
        {
            "model": name,
            **tallies[name].quantile_columns("step_ms"),
            "params": sum(p.numel() for p in nets[name].parameters()),
            **conditions,
        }
        for name in names
    ]
    table = pd.DataFrame(rows)
    ref = float(table.loc[table["model"] == reference, "step_ms_median"].iloc[0])
    table["overhead_pct"] = 100.0 * (table["step_ms_median"] / ref - 1.0)
    return table[TRAIN_COLUMNS]


def _training_step(net: nn.Module, x: Tensor, lr: float) -> Callable[[], None]:
    """One Adam + MSE reconstruction step of ``net`` on ``x``, with an optimiser of its own."""
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(net(x), x)
        loss.backward()
        optimiser.step()

    return step
