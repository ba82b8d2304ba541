"""Run and report folders are locked while in use; a dead holder is taken over."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from configs import one_step_config as tiny
from lock_holder import hold_lock, release

from alphaprune.engine.checkpoint import (
    last_path,
)
from alphaprune.engine.config import config_from_dict
from alphaprune.engine.locks import LockError, folder_lock, lock_holder
from alphaprune.engine.train import train_baseline

pytestmark = pytest.mark.training  # test tiers: see tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]


# --- locks -----------------------------------------------------------------------------------------


def test_run_folder_is_locked_while_training_and_a_dead_holder_is_taken_over(tmp_path):
    cfg = config_from_dict(tiny(tmp_path, epochs=1))
    holder = hold_lock(cfg.run_dir)
    try:
        with pytest.raises(
            LockError, match=rf"run folder of 'base' .* in use by process {holder.pid}"
        ):
            train_baseline(cfg, progress=False)
        assert not last_path(cfg.run_dir).exists()
    finally:
        release(holder)
    assert lock_holder(cfg.run_dir) == holder.pid  # a stale lock file naming a dead process …
    result = train_baseline(cfg, progress=False)  # … is taken over
    assert len(result.metrics) == 1
    assert lock_holder(cfg.run_dir) is None  # released at the end


def test_lock_is_released_when_the_holder_crashes(tmp_path):
    folder = tmp_path / "f"
    with pytest.raises(ZeroDivisionError):
        with folder_lock(folder, "report folder"):
            assert lock_holder(folder) == os.getpid()
            1 / 0  # noqa: B018
    with folder_lock(folder, "report folder"):
        pass
