"""Wall time of the unit tier (``make test-unit``) on a machine loaded on purpose.

The unit tier's promise (tests/conftest.py) is "under a minute on a loaded machine". This
script makes the load explicit and repeatable: it starts ``--busy`` processes that spin a
core each, runs the unit tier as ``make test-unit`` does (its marker expression and environment), and prints the wall time beside the
load, so that a number in a note says which load it was measured under::

    .venv/bin/python benchmarks/unit_tier_time.py --busy 0 --busy 2 --busy 4

One line per load: busy spinners, wall seconds (process start to exit, what a user waits),
pytest's own seconds, tests passed, and the 1-minute load average at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPIN = "while True: pass"


def unit_tier() -> str:
    """The unit tier's marker expression, as the Makefile's ``test-unit`` runs it."""
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("UNIT_TIER ="):
            return line.partition("=")[2].strip()
    raise SystemExit("Makefile has no UNIT_TIER line")


def run_unit_tier(busy: int) -> dict[str, object]:
    """One unit-tier run with ``busy`` spinning processes beside it."""
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(busy)]
    try:
        time.sleep(2.0 if busy else 0.0)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-m", unit_tier(), "-p", "no:cacheprovider"],
            cwd=ROOT,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""},  # as make test-unit
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        load = os.getloadavg()[0]
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
    passed = re.search(r"(\d+) passed", tail)
    own = re.search(r"in ([\d.]+)s", tail)
    return {
        "busy": busy,
        "wall_s": round(wall, 1),
        "pytest_s": float(own.group(1)) if own else None,
        "passed": int(passed.group(1)) if passed else 0,
        "returncode": done.returncode,
        "loadavg_1min": round(load, 2),
        "summary": tail,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--busy",
        type=int,
        action="append",
        help="spinning processes beside the run (repeat for several runs; default 0 and 2)",
    )
    args = parser.parse_args(argv)
    print(f"cores: {os.cpu_count()}, commit: {_commit()}, python: {sys.executable}")
    worst = 0
    for busy in args.busy or [0, 2]:
        row = run_unit_tier(busy)
        print(
            f"busy={row['busy']}: {row['wall_s']} s wall, pytest {row['pytest_s']} s, "
            f"{row['passed']} passed, rc {row['returncode']}, load avg {row['loadavg_1min']}"
        )
        if row["returncode"]:
            print(row["summary"])
        worst = max(worst, int(row["returncode"]))
    return worst


def _commit() -> str:
    found = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True)
    return found.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


if __name__ == "__main__":
    sys.exit(main())
