"""Argument checks shared by :func:`~alphaprune.bench.benchmark` and
:func:`~alphaprune.bench.train_step_benchmark`."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

__all__ = ["check_positive", "check_run"]


def check_positive(**values: int) -> None:
    """Raise ``ValueError`` naming the first keyword whose value is not a positive integer."""
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")


def check_run(
    models: Mapping[str, nn.Module], reference: str | None, **positive: int
) -> tuple[list[str], str]:
    """Check the models, the ``positive`` counts and the reference; the names and the reference.

    ``reference`` defaults to the first model's name.
    """
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty dict of name -> nn.Module")
    for name, model in models.items():
        if not isinstance(model, nn.Module):
            raise TypeError(f"models['{name}'] is a {type(model).__name__}, not an nn.Module")
    check_positive(**positive)
    names = list(models)
    reference = names[0] if reference is None else reference
    if reference not in models:
        raise ValueError(f"reference '{reference}' is not one of the models {names}")
    return names, reference
