"""Run a model in eval mode and give every module back its own training flag."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["eval_mode"]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the ``with`` body, then restore each module's own flag.

    ``model.train(flag)`` afterwards would set one flag on every submodule, and so flip, e.g., a
    BatchNorm a training loop deliberately keeps in eval mode; this puts back exactly what each
    module had, also when the body raises. Yields ``model``.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
