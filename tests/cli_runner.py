"""Run ``python -m alphaprune …`` for a test: in this process (quick) or as a child process.

In-process runs call :func:`alphaprune.cli.main` with the working directory, stdout and stderr of
a child, and turn an escaping exception into exit code 1 with its traceback on stderr (as Python
would), so a test reads the same ``CompletedProcess`` either way. Tests that need a real process
(a kill, torchrun, the ``-m`` entry point itself) pass ``process=True``.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import traceback
from pathlib import Path

from alphaprune.cli import main


def run_cli(
    *args: str, cwd: Path, timeout: float = 240, process: bool = False
) -> subprocess.CompletedProcess:
    """The CLI's exit code, stdout and stderr for ``args`` run in ``cwd``."""
    if process:
        return subprocess.run(
            [sys.executable, "-m", "alphaprune", *args],
            cwd=cwd,
            timeout=timeout,
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    out, err = io.StringIO(), io.StringIO()
    before = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
                code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
            except Exception:  # a bug: Python would print the traceback and exit 1
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def one_line_error(result: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    """The CLI's one ``error: …`` line on stderr, after checking the exit code and ``needles``."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
