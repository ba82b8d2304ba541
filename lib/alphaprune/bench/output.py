"""Writing benchmark tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from alphaprune.atomic import atomic_write_text

__all__ = ["write_csv"]


def write_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a benchmark table to CSV atomically (folders created) and say where."""
    path = Path(path)
    atomic_write_text(path, table.to_csv(index=False))
    print(f"wrote {path}")
    return path
