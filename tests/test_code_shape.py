"""The code's shape, as ARCHITECTURE.md states it: package layering, one exception hierarchy,
functions a reader holds in their head, the CLI's exit codes."""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

import pytest
from cli_runner import run_cli

import alphaprune
from alphaprune import errors
from alphaprune.paths import PACKAGE_DIR

ROOT = Path(__file__).resolve().parents[1]

#: What each sub-package may import from alphaprune (besides itself and the top-level helpers).
SHARED = {"alphaprune.errors", "alphaprune.atomic", "alphaprune.paths", "alphaprune.version"}
MAY_IMPORT = {
    "core": set(),
    "engine": {"core"},
    "study": {"core", "engine"},
    "bench": {"core", "engine"},
    "report": {"core", "engine", "study", "bench"},
}
#: A function body (without its docstring) longer than this needs a ``# long: why`` comment on
#: the line above its ``def``.
MAX_FUNCTION_LINES = 60


def _modules() -> list[tuple[str, Path]]:
    return [
        ("alphaprune." + ".".join(path.relative_to(PACKAGE_DIR).with_suffix("").parts), path)
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
    ]


@functools.cache
def _tree(path: Path) -> ast.Module:
    """``path`` parsed once for every test of this module."""
    return ast.parse(path.read_text())


def _all_imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Every module ``path`` imports, at the top or (unless ``top_level_only``) in a function."""
    tree = _tree(path)
    names = set()
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _imported(path: Path) -> set[str]:
    """Every alphaprune module ``path`` imports."""
    return {name for name in _all_imports(path) if name.split(".")[0] == "alphaprune"}


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_sub_packages_import_only_the_layers_below(package: str) -> None:
    allowed = {f"alphaprune.{p}" for p in MAY_IMPORT[package] | {package}}
    wrong = []
    for module, path in _modules():
        if module.split(".")[1:2] != [package]:
            continue
        for name in _imported(path):
            if name not in SHARED and ".".join(name.split(".")[:2]) not in allowed:
                wrong.append(f"{module} imports {name}")
    assert not wrong, "\n".join(wrong)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_import_nodes(tree: ast.AST):
    """Import statements anywhere in ``tree`` (functions too), except under ``if TYPE_CHECKING:``
    (annotations only: never executed)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            yield from _runtime_import_nodes(ast.Module(body=node.orelse, type_ignores=[]))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        else:
            yield from _runtime_import_nodes(node)


def import_graph() -> dict[str, set[str]]:
    """alphaprune module → the alphaprune modules it imports at run time (function-level
    imports counted; ``from pkg import module`` resolved to the module)."""
    modules = {_module_name(path): path for path in PACKAGE_DIR.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in _runtime_import_nodes(_tree(path)):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    found.add(full if full in modules else node.module)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    """No module imports itself through others, not even from inside a function (a lazy import
    that hides a cycle is a cycle: the packages would not be layers)."""
    cycle = _cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_core_needs_nothing_but_torch() -> None:
    """Model surgery loads wherever torch does: no pandas, pydantic or matplotlib at import time
    in ``core`` (``GatingPlan.table()`` imports pandas when it is called)."""
    third_party = set()
    for path in sorted((PACKAGE_DIR / "core").glob("*.py")):
        for name in _all_imports(path, top_level_only=True):
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top not in {"alphaprune", "torch"}:
                third_party.add(f"{path.name}: {name}")
    assert not third_party, sorted(third_party)


def test_the_top_level_holds_only_the_api_cli_and_shared_helpers() -> None:
    top = {path.stem for path in PACKAGE_DIR.glob("*.py")}
    assert top == {"__init__", "__main__", "cli", "errors", "atomic", "paths", "version"}


def test_every_exception_lives_in_errors_under_one_root() -> None:
    stray = []
    for info in pkgutil.walk_packages(alphaprune.__path__, "alphaprune."):
        if info.name.endswith("__main__"):
            continue  # importing it runs the CLI
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == info.name
                and info.name != "alphaprune.errors"
            ):
                stray.append(f"{info.name}.{name}")
    assert not stray, f"exceptions outside alphaprune.errors: {stray}"
    for name in errors.__all__:
        obj = getattr(errors, name)
        if inspect.isclass(obj):
            assert issubclass(obj, errors.AlphapruneError), name


def test_user_errors_exit_2_failed_runs_1_divergence_3() -> None:
    assert errors.ConfigError.exit_code == errors.CheckpointError.exit_code == 2
    assert errors.NotebookMissing.exit_code == 2  # a user error and a report error
    assert errors.StageFailed.exit_code == errors.ExportError.exit_code == 1
    assert errors.Diverged("r", Path("runs/r"), 3, {"loss": float("nan")}).exit_code == 3
    assert issubclass(errors.ConfigError, ValueError)  # `except ValueError` still catches it


@pytest.mark.training
def test_cli_reports_a_user_error_in_one_line_and_a_bug_with_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import alphaprune.engine.config as config

    params = tmp_path / "p.yaml"
    params.write_text("name: x\n")

    def bad_value(*args, **kwargs):
        raise errors.ConfigError("p.yaml: optimizer.lr: must be > 0")

    monkeypatch.setattr(config, "load_config", bad_value)
    user = run_cli("train", str(params), cwd=tmp_path)
    assert user.returncode == 2 and user.stderr == "error: p.yaml: optimizer.lr: must be > 0\n"

    def bug(*args, **kwargs):
        return {}["missing key"]

    monkeypatch.setattr(config, "load_config", bug)
    crash = run_cli("train", str(params), cwd=tmp_path)
    assert crash.returncode == 1
    assert "Traceback" in crash.stderr and "KeyError: 'missing key'" in crash.stderr


def _long_functions(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(_tree(path)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = node.body
        if (
            len(body) > 1
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            body = body[1:]  # the docstring does not count
        length = node.end_lineno - body[0].lineno + 1
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        reason = lines[first - 2].strip() if first >= 2 else ""
        if length > MAX_FUNCTION_LINES and not reason.startswith("# long:"):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_is_longer_than_a_screen_without_a_reason() -> None:
    files = sorted((ROOT / "lib").rglob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
    long = [entry for path in files for entry in _long_functions(path)]
    assert not long, "split these into named steps, or say why above the def (# long: …):\n" + (
        "\n".join(long)
    )


def test_the_formatter_owns_the_layout() -> None:
    files = [p for d in ("lib", "tests", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    marked = [str(p.relative_to(ROOT)) for p in files if "fmt: " + "skip" in p.read_text()]
    assert not marked, f"formatter markers left in {marked}"
