"""Folder locks: one process at a time writes a report folder or trains in a run folder.

``with folder_lock(folder, "report folder"):`` takes an exclusive ``fcntl.flock`` on
``folder/.alphaprune.lock`` and writes this process's PID into it. The kernel releases the lock
when the process exits, however it ends (crash, ``kill -9``), so a lock file left behind by a dead
process is simply taken over; a live holder makes the second process fail at once with a message
naming the holder's PID.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alphaprune.errors import LockError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking
    fcntl = None  # type: ignore[assignment]

__all__ = ["LockError", "LOCK_FILE", "folder_lock", "lock_holder"]

LOCK_FILE = ".alphaprune.lock"


def lock_holder(folder: str | Path) -> int | None:
    """The PID written in ``folder``'s lock file (None when there is none or it is unreadable)."""
    try:
        text = (Path(folder) / LOCK_FILE).read_text(encoding="ascii").strip()
        return int(text.split()[0]) if text else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None


@contextmanager
def folder_lock(folder: str | Path, what: str = "folder") -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created if needed) for the ``with`` block.

    Raises:
        LockError: another live process holds it (the message names ``what``, the folder and
            the holder's PID).
        OSError: the folder or its lock file cannot be created.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    if fcntl is None:  # pragma: no cover
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = lock_holder(folder)
            who = f"process {holder}" if holder is not None else "another process"
            raise LockError(
                f"{what} {folder} is in use by {who} (lock file {path}); wait for it to finish "
                "or stop it, then run again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # the file stays (removing it would race with a new holder)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
