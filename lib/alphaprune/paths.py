"""Where things are: the package, the checkout it is installed from, the project folder.

The *project folder* holds ``notebooks/`` (and ``params/``, ``reports/``). It is found from where
the user works, never from where the package happens to be installed (a clone that uses another
checkout's venv builds its own reports): :func:`locate_project`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "PACKAGE_DIR",
    "PROJECT_ENV",
    "checkout",
    "find_project",
    "locate_project",
    "project_dir",
]

#: The ``alphaprune`` package folder (``lib/alphaprune`` in a checkout).
PACKAGE_DIR = Path(__file__).resolve().parent
#: Environment variable naming the project folder outright.
PROJECT_ENV = "ALPHAPRUNE_PROJECT"


def checkout() -> Path | None:
    """The source checkout this package is installed from (``pip install -e .``), else None."""
    root = PACKAGE_DIR.parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def find_project(start: str | Path) -> Path | None:
    """The nearest folder at or above ``start`` that holds ``notebooks/``, else None."""
    folder = Path(start).expanduser().absolute()
    for candidate in (folder, *folder.parents):
        if (candidate / "notebooks").is_dir():
            return candidate
    return None


def locate_project(params_file: str | Path | None = None) -> tuple[Path, str]:
    """The project folder and why it is that one (a phrase for the console).

    In order: the folder holding ``notebooks/`` at or above the params file, ``$ALPHAPRUNE_PROJECT``,
    the one at or above the current folder, the checkout the package is installed from, the
    current folder.
    """
    if params_file is not None:
        found = find_project(Path(params_file).absolute().parent)
        if found is not None:
            return found.resolve(), f"it holds the params file {params_file}"
    env = os.environ.get(PROJECT_ENV)
    if env:
        return Path(env).expanduser().resolve(), f"${PROJECT_ENV}"
    found = find_project(Path.cwd())
    if found is not None:
        return found.resolve(), "the current folder is in it"
    root = checkout()
    if root is not None:
        return (
            root,
            "alphaprune is installed from it (no notebooks/ at or above the current folder)",
        )
    return Path.cwd().resolve(), "the current folder (no notebooks/ found at or above it)"


def project_dir() -> Path:
    """The project folder: ``$ALPHAPRUNE_PROJECT``, else the nearest folder at or above the
    current one holding ``notebooks/``, else the checkout this package is installed from, else
    the current folder (:func:`locate_project` without a params file)."""
    return locate_project()[0]
