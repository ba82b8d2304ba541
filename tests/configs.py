"""Tiny experiment configs shared by the engine tests (seconds per run on 2 cores)."""

from __future__ import annotations

from pathlib import Path

import yaml


def tiny_config(tmp_path: Path, steps: int = 2, samples: int = 4, **changes) -> dict:
    """A relu1_1 run of 2 epochs on 16-pixel crops; ``changes`` set dotted keys (``"data.crop"``)."""
    data = {
        "name": "base",
        "output_dir": str(tmp_path / "runs"),
        "seed": 0,
        "device": "cpu",
        "epochs": 2,
        "steps_per_epoch": steps,
        "model": {"layer": "relu1_1"},
        "data": {"crop": 16, "batch_size": 2, "samples_per_epoch": samples, "val_crops": 1},
        "pruning": {"keep": 0.5, "target": "both"},
        "schedule": {"kind": "linear", "start": 1.0, "end": 0.0, "epochs": 2},
        "optimizer": {"lr": 0.001},
    }
    for key, value in changes.items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return data


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def one_step_config(tmp_path: Path, **changes) -> dict:
    """:func:`tiny_config` at one step of two samples per epoch: the cheapest real run."""
    return tiny_config(tmp_path, steps=1, samples=2, **changes)
