"""Progress lines from inside a stage's kernel for the console of ``alphaprune report``.

A notebook's kernel has no terminal: what it prints lands in the executed notebook. The lines of
this module also go to the kernel's ``stderr`` stream with a fixed prefix; the runner hands
papermill a ``stderr_file`` (:class:`ConsoleEcho`) that prints every prefixed line to the console
as it arrives, and nothing else. Plain papermill shows them with ``--log-output``.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import TextIO

__all__ = ["PREFIX", "say", "EpochWatch", "ConsoleEcho", "duration"]

#: Start of every progress line on the kernel's stderr.
PREFIX = "[alphaprune] "


def say(line: str) -> None:
    """Write one progress line (to the notebook's stderr and, under the runner, the console)."""
    print(PREFIX + line, file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _epochs_done(metrics: Path) -> int:
    """Rows of a run's ``metrics.csv`` (written atomically after each epoch)."""
    try:
        return max(0, len(metrics.read_text(encoding="utf-8").splitlines()) - 1)
    except OSError:
        return 0


class EpochWatch:
    """While a run trains, say ``NAME: epoch E/N, ETA …`` each time its ``metrics.csv`` grows.

    A thread polls the file: training itself is not touched (and a torchrun run is seen too).
    """

    def __init__(self, name: str, run_dir: Path, total: int, every: float = 2.0) -> None:
        self.name, self.total, self.every = name, total, every
        self.metrics = run_dir / "metrics.csv"
        # before training starts: a resumed run's finished epochs do not count for the ETA
        self._start, self._first = time.monotonic(), _epochs_done(self.metrics)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> EpochWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        seen = self._first
        while not self._stop.wait(self.every):
            done = _epochs_done(self.metrics)
            if done == seen or done > self.total:
                continue
            seen = done
            rate = (time.monotonic() - self._start) / max(1, done - self._first)
            eta = f", ETA {duration(rate * (self.total - done))}" if done < self.total else ""
            say(f"{self.name}: epoch {done}/{self.total}{eta}")


class ConsoleEcho:
    """A ``stderr_file`` for papermill: prints each line that starts with :data:`PREFIX` to
    ``out`` (indented, prefix removed) as soon as the line is complete."""

    def __init__(self, out: TextIO | None = None, indent: str = "    ") -> None:
        self.out, self.indent, self._partial = out, indent, ""

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            line = line.rsplit("\r", 1)[-1]
            if line.startswith(PREFIX):
                print(self.indent + line[len(PREFIX) :], file=self.out or sys.stdout, flush=True)
        return len(text)

    def flush(self) -> None:
        """Nothing buffered but an incomplete line."""
