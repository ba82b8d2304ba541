"""The test tiers hold (tests/conftest.py): inside an unmarked (unit) test, training or starting
a Jupyter kernel fails and names the marker it needs; with that marker it runs. Unit tests run
on one torch thread, marked ones on the machine's default."""

import subprocess
import sys

import pytest
import torch

from alphaprune.engine import train

# A command that names the kernel launcher but only starts Python (fast, no kernel).
KERNEL_LIKE = [sys.executable, "-c", "pass", "ipykernel_launcher"]


def test_a_unit_test_that_starts_a_kernel_fails_naming_the_kernel_marker():
    with pytest.raises(
        AssertionError, match=r"starts a Jupyter kernel: mark it @pytest.mark.kernel"
    ):
        subprocess.run(KERNEL_LIKE, check=True)


def test_a_unit_test_that_trains_fails_naming_the_training_marker():
    with pytest.raises(AssertionError, match=r"trains a model: mark it @pytest.mark.training"):
        train._train_epoch()


def test_a_unit_test_may_start_other_processes():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


@pytest.mark.kernel
def test_a_kernel_test_may_start_a_kernel():
    subprocess.run(KERNEL_LIKE, check=True)


@pytest.mark.training
def test_a_training_test_reaches_the_training_code():
    with pytest.raises(TypeError):  # the real function, called without its arguments
        train._train_epoch()


def test_a_unit_test_runs_on_one_torch_thread():
    assert torch.get_num_threads() == 1


@pytest.mark.slow
def test_a_marked_test_runs_on_the_default_threads():
    import conftest

    assert torch.get_num_threads() == conftest._THREADS["default"]
