"""Import torchvision's PyPI wheel on the CPU build of torch.

torchvision's PyPI wheel for Linux ships a ``_C.so`` linked against the CUDA build of torch
(``libtorch_cuda.so``), which the CPU build does not have, so its custom operators (``nms``,
``roi_align``, …) never load. Most of torchvision copes (``register_meta`` checks
``extension._has_ops()``), but ``_meta_registrations.py`` registers two fake kernels with a bare
``torch.library.register_fake("torchvision::nms")`` / ``("torchvision::qnms")``, and
``import torchvision`` fails with ``RuntimeError: operator torchvision::nms does not exist``.

:func:`import_torchvision` imports it with those registrations skipped for operators that do not
exist. Models (``torchvision.models``) and transforms work; the detection operators (``nms`` …)
still raise when called. Where the ops do load (a ``+cpu`` wheel from PyTorch's index), nothing is
skipped. Only the benchmarks and their tests use torchvision: the library never imports it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from types import ModuleType

import torch
import torch.library

__all__ = ["import_torchvision"]


def _op_exists(qualname: str) -> bool:
    namespace, _, name = qualname.partition("::")
    try:
        getattr(getattr(torch.ops, namespace), name.split(".")[0])
    except (AttributeError, RuntimeError):
        return False
    return True


@contextlib.contextmanager
def _fake_kernels_of_missing_ops_skipped() -> Iterator[list[str]]:
    """``torch.library.register_fake`` that does nothing for a ``torchvision::`` operator that
    does not exist (the names skipped are collected in the yielded list)."""
    real = torch.library.register_fake
    skipped: list[str] = []

    def register_fake(op, func=None, /, *args, **kwargs):
        name = op if isinstance(op, str) else ""
        if name.startswith("torchvision::") and not _op_exists(name):
            skipped.append(name)
            return func if func is not None else (lambda fn: fn)
        return real(op, func, *args, **kwargs)

    torch.library.register_fake = register_fake
    try:
        yield skipped
    finally:
        torch.library.register_fake = real


def import_torchvision() -> ModuleType:
    """``torchvision``, imported on the CPU torch (see the module docstring)."""
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    with _fake_kernels_of_missing_ops_skipped():
        import torchvision
    return torchvision
