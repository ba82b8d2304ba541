"""Model factories: the user's code that builds a model, named ``"package.module:function"``.

A factory *runs code*: naming one in a params file is like writing ``from package.module import
function; function(**kwargs)`` in a script. So alphaprune imports a factory (never evaluates a
string) and refuses, wherever the name comes from:

* a module of Python's standard library or ``builtins`` (``os:system`` is not a model builder);
* an alphaprune function that is not one of its model builders (:data:`BUILTIN_FACTORIES`).

Loading a checkpoint never imports or calls what the checkpoint names. Its factory is used only
when the user trusts it: a built-in builder, a factory named by the user's own params (the CLI
and the report notebooks :func:`trust_factory` the factories of the params they run with), or a
package listed in ``$ALPHAPRUNE_FACTORIES`` (comma-separated package prefixes, e.g.
``mylab.models,timm``); otherwise the caller passes ``factory=`` (see
:func:`alphaprune.engine.checkpoint.load_model`). With ``$ALPHAPRUNE_FACTORIES`` set, the
params' own factories must come from a listed package too (a shared machine, CI). See
``docs/safety.md``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
import sysconfig
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from alphaprune.errors import CheckpointError, ConfigError, UserError

__all__ = [
    "BUILTIN_FACTORIES",
    "FACTORIES_ENV",
    "FACTORY_PATTERN",
    "call_factory",
    "check_factory_name",
    "import_factory",
    "trust_factory",
    "trusted_factory",
    "require_trusted",
]

#: alphaprune's own model builders: always allowed, in params and in checkpoints.
BUILTIN_FACTORIES = frozenset(
    {
        "alphaprune.engine.models:build_autoencoder",
        "alphaprune.engine.models:build_unet",
    }
)
#: Comma-separated package prefixes (or full ``module:function`` names) whose factories a
#: checkpoint may name.
FACTORIES_ENV = "ALPHAPRUNE_FACTORIES"
FACTORY_PATTERN = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
#: Not model builders: the standard library's modules, plus the interpreter's own namespaces.
_REFUSED_TOP = frozenset(sys.stdlib_module_names) | {"builtins", "__main__"}
#: Factories trusted by this process (the factories of the params it runs with).
_TRUSTED: set[str] = set()


def check_factory_name(spec: Any) -> tuple[str, str]:
    """``(module, function)`` of ``spec`` when it is a usable factory name, else a one-line
    :class:`ConfigError` (nothing is imported here)."""
    if not isinstance(spec, str) or not FACTORY_PATTERN.match(spec):
        raise ConfigError(f"model factory must look like 'package.module:function', got {spec!r}")
    module, function = spec.split(":")
    top = module.split(".")[0]
    if top in _REFUSED_TOP:
        raise ConfigError(
            f"model factory '{spec}': '{top}' is part of Python's standard library, not a model "
            "builder; a factory runs code, so alphaprune refuses these (see docs/safety.md)"
        )
    if top == "alphaprune" and spec not in BUILTIN_FACTORIES:
        raise ConfigError(
            f"model factory '{spec}' is not one of alphaprune's model builders "
            f"({', '.join(sorted(BUILTIN_FACTORIES))})"
        )
    return module, function


def import_factory(spec: str) -> Callable[..., nn.Module]:
    """The function named by ``"package.module:function"``, imported (never evaluated).

    Raises a one-line :class:`ConfigError` naming the module or function when it is refused
    (:func:`check_factory_name`), cannot be imported (naming this process's working folder,
    the first place Python looks) or is not there.
    """
    module_name, function_name = check_factory_name(spec)
    if _allowed() and not _allowed_by_env(spec) and spec not in BUILTIN_FACTORIES:
        raise ConfigError(
            f"model factory '{spec}' is not in {FACTORIES_ENV}={','.join(_allowed())}: with the "
            "variable set, every factory (params, --set, notebooks, checkpoints) must come from "
            "a package it lists"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"model factory '{spec}': cannot import module '{module_name}' ({exc}) in this "
            f"process (working folder {os.getcwd()}); install it (pip install -e) or put its "
            "folder on PYTHONPATH"
        ) from None
    except Exception as exc:  # the user's module fails while it is imported: name where
        raise ConfigError(
            f"model factory '{spec}': importing '{module_name}' raised {_described(exc)}"
        ) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(
            f"model factory '{spec}': module '{module_name}' has no function '{function_name}'"
        )
    return function


def _described(exc: BaseException) -> str:
    """``Type: message (at file:line)`` of an exception raised in the user's code: the deepest
    line outside installed packages and Python itself (else the deepest line)."""
    text = " ".join(str(exc).split())[:300]
    frames = traceback.extract_tb(exc.__traceback__)[1:]  # [0] is alphaprune's call
    library = (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["stdlib"])
    own = [f for f in frames if not f.filename.startswith(library)]
    frame = (own or frames or [None])[-1]
    where = f" (at {frame.filename}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {text}{where}" if text else f"{type(exc).__name__}{where}"


def call_factory(
    factory: str | Callable[..., nn.Module], kwargs: Mapping[str, Any] | None = None
) -> nn.Module:
    """``factory(**kwargs)`` (a name is imported first), checked to be a torch module.

    Kwargs the factory's signature does not take are named (``model.kwargs``); an exception
    raised inside the factory becomes one line naming the factory, the error and where it was
    raised.
    """
    function = import_factory(factory) if isinstance(factory, str) else factory
    name = factory if isinstance(factory, str) else getattr(factory, "__qualname__", factory)
    kwargs = dict(kwargs or {})
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # no signature to check (a C function): the call will tell
        signature = None
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"model factory '{name}' rejected kwargs {kwargs}: {exc}") from None
    try:
        model = function(**kwargs)
    except UserError:
        raise  # already one line (e.g. build_unet's own checks)
    except Exception as exc:  # the user's code: one line naming it and where it failed
        raise ConfigError(f"model factory '{name}' raised {_described(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model factory '{name}' returned {type(model).__name__}, not a torch module"
        )
    return model


def _allowed() -> list[str]:
    return [item.strip() for item in os.environ.get(FACTORIES_ENV, "").split(",") if item.strip()]


def trusted_factory(spec: str) -> bool:
    """Whether a checkpoint may name ``spec``: a built-in builder, a factory of the params this
    process runs with (:func:`trust_factory`) or one allowed by ``$ALPHAPRUNE_FACTORIES``."""
    return spec in BUILTIN_FACTORIES or spec in _TRUSTED or _allowed_by_env(spec)


def _allowed_by_env(spec: str) -> bool:
    """Whether ``$ALPHAPRUNE_FACTORIES`` lists ``spec``, its module or a package above it."""
    module = spec.split(":")[0]
    return any(
        spec == entry or module == entry or module.startswith(entry + ".") for entry in _allowed()
    )


def trust_factory(spec: str | None) -> None:
    """Trust ``spec`` (a factory of the user's own params) in checkpoints for this process."""
    if spec is not None:
        check_factory_name(spec)
        _TRUSTED.add(spec)


def require_trusted(spec: Any, source: str) -> None:
    """A one-line :class:`CheckpointError` unless the factory named by ``source`` (a checkpoint)
    may be imported: it names the factory and how to allow it."""
    if spec is None:
        return
    try:
        check_factory_name(spec)  # the standard library is refused even when allowed
    except ConfigError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    if not trusted_factory(spec):
        top = spec.split(":")[0].split(".")[0]
        raise CheckpointError(
            f"{source} names model factory '{spec}', which you have not allowed: loading a "
            "checkpoint never runs code it names. If you trust it, set model.factory to it in "
            f"your params, pass factory='{spec}' to load_model, or set {FACTORIES_ENV}={top}"
        )
