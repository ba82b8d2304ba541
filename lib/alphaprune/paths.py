"""Where things are: the package, the checkout it is installed from, the project folder."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PACKAGE_DIR", "checkout", "project_dir"]

#: The ``alphaprune`` package folder (``lib/alphaprune`` in a checkout).
PACKAGE_DIR = Path(__file__).resolve().parent


def checkout() -> Path | None:
    """The source checkout this package is installed from (``pip install -e .``), else None."""
    root = PACKAGE_DIR.parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def project_dir() -> Path:
    """The project folder (holding ``notebooks/`` and ``params/``): ``$ALPHAPRUNE_PROJECT``, else
    the checkout this package is installed from, else the working directory."""
    env = os.environ.get("ALPHAPRUNE_PROJECT")
    if env:
        return Path(env).expanduser().resolve()
    return checkout() or Path.cwd()
