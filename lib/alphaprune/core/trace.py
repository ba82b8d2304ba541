"""Trace a model with ``torch.fx`` while running it on its example input: a *concrete* trace.

Every proxy carries the value its node had on the example input, so shape queries are plain
numbers: ``if h % 32:``, ``assert len(t.shape) == 1``, ``for i in range(x.size(1))`` and
``isinstance(x, torch.Tensor)`` all resolve as they would in eager mode, and the traced graph
is the one the example input takes. Sizes read from a tensor (``x.shape[1]``, ``x.size()``) stay
nodes of the graph, so a reshape written as ``view(b, c, -1)`` is still seen to follow the
tensor's channel count, while ``view(b, 16, -1)`` is seen to fix it.

Branching on tensor *values* (``if x.sum() > 0:``, ``.item()`` in a condition) would make the
graph depend on the data: it stops the trace with an :class:`UnsupportedModelError` that names the
file and line. Functions libraries hide from ``torch.fx`` with ``torch.fx.wrap`` are traced into
(their shape logic resolves here), and leaf modules are the layers a rule is registered for
(:mod:`alphaprune.core.layer_rules`), gated layers and ``torch.nn``'s own modules.

The graph is only analysed, never run: each node's value is reduced to ``node.meta["shape"]``
(a tuple for a tensor, a list of them for a tuple of tensors) once the trace is done.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import linecache
import operator
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, fx, nn
from torch.fx import _symbolic_trace as fx_trace

from alphaprune.core.gated_layers import AlphaGate
from alphaprune.core.layer_rules import rule_for
from alphaprune.errors import UnsupportedModelError

__all__ = ["trace", "node_shape", "size_reads", "SHAPE", "GUARD"]

SHAPE, GUARD, _VALUE, _DATA = "shape", "guard", "concrete_value", "data_dependent"
#: Tensor methods whose result depends on tensor values, not only on shapes.
_DATA_METHODS = {"item", "tolist", "nonzero", "unique", "masked_select", "argwhere", "numpy"}
_HERE = str(Path(__file__).resolve())
_TORCH_DIR = str(Path(torch.__file__).resolve().parent)


def node_shape(node: object):
    """The recorded shape of a node's value (None for a non-tensor)."""
    return node.meta.get(SHAPE) if isinstance(node, fx.Node) else None


def _value(proxy: fx.Proxy) -> Any:
    return proxy.node.meta.get(_VALUE)


def _values(arg: Any) -> Any:
    """``arg`` with every proxy replaced by its value."""
    if isinstance(arg, fx.Proxy):
        return _value(arg)
    kind = type(arg)
    if kind in (tuple, list):
        return kind(_values(a) for a in arg)
    if kind is dict:
        return {k: _values(v) for k, v in arg.items()}
    if kind is slice:
        return slice(_values(arg.start), _values(arg.stop), _values(arg.step))
    return arg


def _where(frame) -> str:
    """``file:line: source`` of a frame."""
    line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" + (f" ({line})" if line else "")


def _user_frame_of(exc: BaseException) -> str | None:
    """The innermost frame of ``exc``'s traceback outside torch and this module."""
    found = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        name = str(Path(frame.f_code.co_filename).resolve())
        if name != _HERE and not name.startswith(_TORCH_DIR):
            found = (frame, lineno)
    if found is None:
        return None
    frame, lineno = found
    line = linecache.getline(frame.f_code.co_filename, lineno).strip()
    return f"{frame.f_code.co_filename}:{lineno}" + (f" ({line})" if line else "")


class _ConcreteProxy(fx.Proxy):
    """An fx proxy that knows its value on the example input."""

    def _data_dependent(self) -> bool:
        return isinstance(_value(self), Tensor) or bool(self.node.meta.get(_DATA))

    def _concrete(self, what: str):
        """The value, for Python to branch on or to bake into the graph as a constant: recorded
        as a guard (``node.meta["guard"]``), since the code then depends on it."""
        where = _where(sys._getframe(2))
        if self._data_dependent():
            raise UnsupportedModelError(
                f"cannot be traced by torch.fx: its forward {what} a tensor's values at {where}, "
                "so its graph depends on the data and its channel structure is unknown. "
                "Branching on shapes is fine; move the value test out of forward"
            )
        self.node.meta.setdefault(GUARD, where)
        return _value(self)

    def __setitem__(self, key, value) -> None:
        self.tracer.create_proxy("call_function", operator.setitem, (self, key, value), {})

    def __bool__(self) -> bool:
        return bool(self._concrete("branches on"))

    def __index__(self) -> int:
        return self._concrete("converts to a number").__index__()

    def __int__(self) -> int:
        return int(self._concrete("converts to a number"))

    def __float__(self) -> float:
        return float(self._concrete("converts to a number"))

    def __len__(self) -> int:
        return len(_value(self))

    def __iter__(self):
        value = _value(self)
        if isinstance(value, (tuple, list, Tensor)):
            return iter([self[i] for i in range(len(value))])
        return super().__iter__()

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        attribute = getattr(_value(self), name)
        if isinstance(attribute, (Tensor, torch.Size)):
            return self.tracer.create_proxy("call_function", getattr, (self, name), {})
        if callable(attribute):
            return fx.proxy.Attribute(self, name)  # a method call becomes a call_method node
        return attribute  # dtype, device, ndim, is_cuda, …: constants of this trace


class _ConcreteTracer(fx.Tracer):
    """fx tracer that runs every node on concrete values as it records it."""

    def __init__(self, inputs: dict[str, Any]) -> None:
        super().__init__()
        self.inputs = inputs
        self.running = False  # computing a value: modules and attributes behave as in eager mode
        self.tensor_names: dict[int, str] = {}

    def trace(self, root, concrete_args=None):
        self.tensor_names = {id(t): n for n, t in root.named_parameters(remove_duplicate=True)}
        for name, buffer in root.named_buffers():
            self.tensor_names.setdefault(id(buffer), name)
        return super().trace(root, concrete_args)

    def call_module(self, m: nn.Module, forward, args, kwargs):
        if self.running:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict):
        """A parameter or buffer read in forward becomes a ``get_attr`` node (looked up by
        identity in one table: torch.fx searches every parameter at each access)."""
        name = self.tensor_names.get(id(attr_val)) if isinstance(attr_val, Tensor) else None
        if self.running or name is None:
            return attr_val
        if name not in parameter_proxy_cache:
            parameter_proxy_cache[name] = self.create_proxy("get_attr", name, (), {})
        return parameter_proxy_cache[name]

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, AlphaGate) or rule_for(m) is not None:
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ConcreteProxy(node, self)

    def create_arg(self, a: Any):
        if isinstance(a, fx.Proxy):
            return a.node
        if type(a) in (Tensor, nn.Parameter) and id(a) in self.tensor_names:
            return self.create_node("get_attr", self.tensor_names[id(a)], (), {})
        return super().create_arg(a)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, *rest, **kw):
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, *rest, **kw)
        node = proxy.node
        node.meta[_VALUE] = self._run(kind, target, args, kwargs)
        node.meta[_DATA] = (kind == "call_method" and target in _DATA_METHODS) or any(
            n.meta.get(_DATA) for n in node.all_input_nodes
        )
        return proxy if isinstance(proxy, _ConcreteProxy) else self.proxy(node)

    def _run(self, kind: str, target, args, kwargs) -> Any:
        if kind == "placeholder":
            return self.inputs.get(target, args[0] if args else None)
        args, kwargs = _values(args), _values(kwargs)
        self.running = True  # torch.fx's patches stay; they see this flag (reverting is slow)
        try:
            return self._call(kind, target, args, kwargs)
        finally:
            self.running = False

    def _call(self, kind: str, target, args, kwargs) -> Any:
        if kind == "get_attr":
            return _fetch(self.root, target)
        if kind == "call_function":
            return target(*args, **kwargs)
        if kind == "call_method":
            return getattr(args[0], target)(*args[1:], **kwargs)
        return self.root.get_submodule(target)(*args, **kwargs)


_ISINSTANCE = isinstance


def _isinstance(obj: object, classes) -> bool:
    """``isinstance`` that sees a proxy as its value (``isinstance(x, torch.Tensor)``,
    ``torch.is_tensor(x)``, ``isinstance(size, int)`` answer as in eager mode)."""
    if not _ISINSTANCE(obj, _ConcreteProxy):
        return _ISINSTANCE(obj, classes)
    targets = classes if _ISINSTANCE(classes, tuple) else (classes,)
    if any(_ISINSTANCE(c, type) and issubclass(c, fx.Proxy) for c in targets):
        return _ISINSTANCE(obj, classes)
    return _ISINSTANCE(_value(obj), classes)


def _is_tensor(obj: object) -> bool:
    return _isinstance(obj, Tensor)


@contextlib.contextmanager
def _eager_type_checks(model: nn.Module):
    """While tracing, ``isinstance`` in the modules of the model's own packages (not torch's
    or alphaprune's) and ``torch.is_tensor`` see proxies as their values. (A proxy that claimed
    a tensor's class would fool C code into reading it as a tensor.)"""
    packages = {type(m).__module__.split(".")[0] for m in model.modules()} - {"torch", "alphaprune"}
    patched = []
    for name in _modules_of(frozenset(packages), len(sys.modules)):
        namespace = getattr(sys.modules.get(name), "__dict__", None)
        if namespace is not None and "isinstance" not in namespace:
            namespace["isinstance"] = _isinstance
            patched.append(namespace)
    torch.is_tensor = _is_tensor
    try:
        yield
    finally:
        torch.is_tensor = _TORCH_IS_TENSOR
        for namespace in patched:
            namespace.pop("isinstance", None)


_TORCH_IS_TENSOR = torch.is_tensor


@functools.lru_cache(maxsize=8)
def _modules_of(packages: frozenset[str], n_modules: int) -> tuple[str, ...]:
    """Names in ``sys.modules`` of ``packages`` and their sub-modules (cached while the number
    of imported modules stays ``n_modules``: a scan of every module is milliseconds a trace)."""
    dotted = tuple(f"{package}." for package in packages)
    return tuple(name for name in list(sys.modules) if name in packages or name.startswith(dotted))


def _fetch(root: nn.Module, target: str) -> Any:
    value: Any = root
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _unwrapped():
    """torch.fx's registry of ``fx.wrap``-ed functions, emptied while tracing (and restored)."""
    saved = dict(fx_trace._wrapped_fns_to_patch), list(fx_trace._wrapped_methods_to_patch)
    fx_trace._wrapped_fns_to_patch.clear()
    fx_trace._wrapped_methods_to_patch.clear()
    return saved


def _restore(saved) -> None:
    fx_trace._wrapped_fns_to_patch.update(saved[0])
    fx_trace._wrapped_methods_to_patch.extend(saved[1])


def _signature_split(model: nn.Module, n_inputs: int) -> tuple[list[str], dict[str, Any]]:
    """Names of the forward's first ``n_inputs`` parameters, and the defaults of the rest."""
    params = list(inspect.signature(model.forward).parameters.values())
    named = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(named) < n_inputs:
        raise UnsupportedModelError(
            f"{type(model).__name__}.forward takes {len(named)} positional inputs, "
            f"example_inputs has {n_inputs}"
        )
    rest = {p.name: p.default for p in params[n_inputs:] if p.kind is not p.VAR_KEYWORD}
    missing = [name for name, default in rest.items() if default is inspect.Parameter.empty]
    if missing:
        raise UnsupportedModelError(
            f"{type(model).__name__}.forward needs {missing} too: pass every input in "
            "example_inputs=(…)"
        )
    return [p.name for p in named[:n_inputs]], rest


def trace(model: nn.Module, inputs: Sequence[Tensor], values: bool = True) -> tuple[fx.Graph, Any]:
    """The fx graph ``model`` runs on ``inputs`` (eval mode, no grad), and its output.

    With ``values=False`` the trace runs on meta tensors (shapes without arithmetic, so almost
    free); where an operation has no meta kernel, reads data or meets a CPU constant, it runs
    on the real tensors instead. The output is then None. Raises :class:`UnsupportedModelError` naming the file and
    line where the forward branches on tensor values, or where tracing failed otherwise.
    """
    if not values:
        try:
            with _on_meta(model):
                return _trace(model, [t.to("meta") for t in inputs])[0], None
        except UnsupportedModelError:
            raise
        except Exception:  # noqa: BLE001 - no meta kernel, data read, a CPU constant: run it
            pass
    return _trace(model, inputs)


@contextlib.contextmanager
def _on_meta(model: nn.Module):
    """``model`` with every parameter and buffer swapped for a meta tensor (shapes without
    data, so layers run without arithmetic) for the duration of the context; ties are kept."""
    saved: list[tuple[dict, str, Tensor]] = []
    metas: dict[int, Tensor] = {}
    try:
        for module in model.modules():
            for store in (module._parameters, module._buffers):
                for name, tensor in store.items():
                    if tensor is not None:
                        saved.append((store, name, tensor))
                        store[name] = metas.setdefault(id(tensor), tensor.detach().to("meta"))
        yield
    finally:
        for store, name, tensor in saved:
            store[name] = tensor


def _trace(model: nn.Module, inputs: Sequence[Tensor]) -> tuple[fx.Graph, Any]:
    names, defaults = _signature_split(model, len(inputs))
    tracer = _ConcreteTracer({n: t.clone() for n, t in zip(names, inputs, strict=True)})
    before, saved = set(vars(model)), _unwrapped()
    try:
        with _eager_type_checks(model):
            graph = tracer.trace(model, concrete_args=defaults or None)
        output = next(n for n in graph.nodes if n.op == "output")
        result = fx.node.map_arg(output.args[0], lambda n: n.meta.get(_VALUE))
        for node in graph.nodes:
            value = node.meta.pop(_VALUE, None)
            if node.op == "get_attr" and value is None:  # a buffer torch.fx made a node of itself
                value = _fetch(model, node.target)
            node.meta[SHAPE] = _shape_of(value)
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(f"{type(model).__name__} {exc}") from None
    except Exception as exc:
        if inputs and inputs[0].is_meta:
            raise
        raise _failed(model, inputs, exc) from None
    finally:
        _restore(saved)
        for name in set(vars(model)) - before:  # constants torch.fx stowed on the model
            delattr(model, name)
    return graph, result


def _failed(model: nn.Module, inputs: Sequence[Tensor], exc: Exception) -> UnsupportedModelError:
    """The model's own code raised under tracing: say where."""
    shapes = [tuple(t.shape) for t in inputs]
    return UnsupportedModelError(
        f"{type(model).__name__} cannot be traced by torch.fx on an example input of shape "
        f"{shapes}: {type(exc).__name__}: {exc} (at {_user_frame_of(exc) or '?'}). Pass "
        "example_inputs= that the model accepts, or move that code out of forward"
    )


def size_reads(node: fx.Node) -> list[tuple[fx.Node, list[int]]]:
    """The tensors, and their axes, whose sizes a non-tensor value was computed from."""
    found, stack, seen = [], [node], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        read = _size_read(current)
        if read is not None:
            found.append(read)
            continue
        stack.extend(a for a in current.all_input_nodes if not isinstance(node_shape(a), tuple))
    return found


def _size_read(node: fx.Node) -> tuple[fx.Node, list[int]] | None:
    """``(x, axes)`` for ``x.shape``/``x.size()`` (every axis), ``x.shape[i]``, ``x.size(i)``."""
    if node.op == "call_function" and node.target is operator.getitem:
        whole = _whole_size(node.args[0])
        if whole is not None:
            axes = list(range(len(node_shape(whole))))
            index = node.args[1]
            picked = axes[index] if isinstance(index, (int, slice)) else axes
            return whole, picked if isinstance(picked, list) else [picked]
    whole = _whole_size(node)
    if whole is not None:
        return whole, list(range(len(node_shape(whole))))
    if node.op == "call_method" and node.target == "size" and isinstance(node.args[0], fx.Node):
        shape = node_shape(node.args[0])
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if isinstance(shape, tuple) and isinstance(dim, int):
            return node.args[0], [dim % len(shape)]
    return None


def _whole_size(node: object) -> fx.Node | None:
    """``x`` when ``node`` is ``x.shape``, ``x.size()`` or ``x.numel()``."""
    if not isinstance(node, fx.Node) or not node.args:
        return None
    x = node.args[0]
    if not isinstance(x, fx.Node) or not isinstance(node_shape(x), tuple):
        return None
    if node.op == "call_function" and node.target is getattr and node.args[1] == "shape":
        return x
    if node.op == "call_method" and node.target in ("numel", "nelement"):
        return x
    if node.op == "call_method" and node.target == "size" and len(node.args) == 1:
        return None if "dim" in node.kwargs else x
    return None


def _shape_of(value: Any):
    if isinstance(value, Tensor):
        return tuple(value.shape)
    if isinstance(value, (tuple, list)) and not isinstance(value, torch.Size):
        return [_shape_of(v) for v in value]
    return None


def describe(node: fx.Node) -> str:
    """How the plan names a graph node: ``layer 'blocks.0.fc1'`` or ``'add' (node add_3)``."""
    if node.op == "call_module":
        return f"layer '{node.target}'"
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "?")
    return f"'{target}' (node {node.name})"
