"""Which runs of the store a report or study folder needs: its reference, kept by a folder id.

A folder that uses runs (its *owner*: a report folder, a study's output folder) holds
``runs.json``, whose ``id`` names it for good; the store keeps the same record in
``<store>/.refs/<id>.json``. The record lists the owner's runs by *role* (a week's ``runs`` and
its ``study``), and ``<role>:in-progress`` while a report or study is still training: written
before the first run starts, replaced by the final list when it is done, so that ``runs gc``
never deletes a run that work in progress needs.

A reference survives a move of its folder: the id inside the folder, not its path, is what
counts. A record whose folder has gone is kept (the folder may have been moved where the store
does not look) until ``runs gc --forget-missing``; one whose folder now holds another id (the
report was deleted and rebuilt) is stale and dropped.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alphaprune.atomic import atomic_write_text
from alphaprune.errors import StoreError
from alphaprune.paths import project_dir

__all__ = ["OWNER_FILE", "HOLD", "Reference", "References"]

#: The record inside the owner folder.
OWNER_FILE = "runs.json"
#: Suffix of the role that holds the runs of work in progress.
HOLD = ":in-progress"
_ID = re.compile(r"^[0-9a-f]{16,32}$")
_FP = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class Reference:
    """One reference record of the store: its file, owner folder, id and runs by role."""

    path: Path
    owner: Path
    id: str | None  # None for a record written before folder ids (keyed by the owner's path)
    roles: dict[str, list[str]]

    @property
    def runs(self) -> list[str]:
        return sorted({fp for fps in self.roles.values() for fp in fps})

    def state(self) -> str:
        """``live`` (its folder holds it), ``missing`` (the folder is gone: moved or deleted) or
        ``stale`` (the folder now holds another report's id)."""
        if not self.owner.is_dir():
            return "missing"
        if self.id is None:
            return "live"
        found = owner_id(self.owner)
        return "stale" if found is not None and found != self.id else "live"


def owner_id(folder: Path) -> str | None:
    """The id in ``folder/runs.json`` (None when there is none or it is unreadable)."""
    try:
        record = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    value = record.get("id") if isinstance(record, dict) else None
    return value if isinstance(value, str) and _ID.match(value) else None


def _parse(path: Path) -> Reference:
    """A reference file, or a one-line :class:`StoreError` saying what is wrong with it."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: unreadable reference file ({type(exc).__name__})") from None
    if not isinstance(record, dict) or not isinstance(record.get("owner"), str):
        raise StoreError(f"{path}: malformed reference file (no 'owner' folder)")
    roles = record.get("roles")
    if roles is None:  # written before roles existed
        roles = {"runs": record.get("runs")}
    valid = isinstance(roles, dict) and all(
        isinstance(fps, list) and all(isinstance(fp, str) and _FP.match(fp) for fp in fps)
        for fps in roles.values()
    )
    if not valid:
        raise StoreError(f"{path}: malformed reference file (its runs are not fingerprints)")
    rid = record.get("id")
    rid = rid if isinstance(rid, str) and _ID.match(rid) else None
    return Reference(path, Path(record["owner"]), rid, {str(k): list(v) for k, v in roles.items()})


class References:
    """The reference records in ``<root>/.refs/``."""

    def __init__(self, root: Path, log: Callable[[str], None]) -> None:
        self.folder = root / ".refs"
        self.root = root
        self.log = log

    def read(self, strict: bool) -> list[Reference]:
        """Every record; a malformed one is a :class:`StoreError` (``strict``: gc must not guess
        what it holds) or a one-line warning and skipped."""
        records = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                records.append(_parse(path))
            except StoreError as exc:
                if strict:
                    raise StoreError(
                        f"{exc}; it may hold runs a report needs, so gc stops here: fix or "
                        "delete it, then run gc again"
                    ) from None
                self.log(f"warning: {exc} (skipped)")
        return records

    def update(self, owner: str | Path, change: Callable[[dict[str, list[str]]], None]) -> Path:
        """Apply ``change`` to the roles of ``owner``'s record and write it (owner's ``runs.json``
        and the store's file, both atomic); returns the store's file."""
        owner = Path(owner).resolve()
        rid = self._id_for(owner)
        path = self.folder / f"{rid}.json"
        roles = self._roles(path) or self._roles(self._path_keyed(owner))
        change(roles)
        roles = {role: fps for role, fps in roles.items() if fps}
        record = {
            "id": rid,
            "owner": str(owner),
            "store": str(self.root.resolve()),
            "runs": sorted({fp for fps in roles.values() for fp in fps}),
            "roles": roles,
            "updated": time.time(),
        }
        owner.mkdir(parents=True, exist_ok=True)
        atomic_write_text(owner / OWNER_FILE, json.dumps(record, indent=1))
        atomic_write_text(path, json.dumps(record, indent=1))
        self._drop_path_keyed(owner)
        return path

    def _id_for(self, owner: Path) -> str:
        """The owner's id; a new one for a new folder, or for a copy of another owner's folder."""
        rid = owner_id(owner)
        if rid is not None:
            try:
                known = _parse(self.folder / f"{rid}.json").owner
            except StoreError:
                known = owner
            if known != owner and owner_id(known) == rid:  # both exist: this one is a copy
                rid = None
        return rid or uuid.uuid4().hex[:16]

    @staticmethod
    def _roles(path: Path) -> dict[str, list[str]]:
        try:
            return _parse(path).roles if path.is_file() else {}
        except StoreError:
            return {}

    def _path_keyed(self, owner: Path) -> Path:
        """Where the record of ``owner`` lay before folder ids (keyed by its path)."""
        return self.folder / f"{hashlib.sha256(str(owner).encode()).hexdigest()[:16]}.json"

    def _drop_path_keyed(self, owner: Path) -> None:
        """Remove ``owner``'s record from before folder ids (its roles were carried over)."""
        old = self._path_keyed(owner)
        try:
            legacy = old.is_file() and _parse(old).id is None
        except StoreError:
            legacy = False
        if legacy:
            old.unlink(missing_ok=True)

    def follow_moves(self, records: Sequence[Reference], dry_run: bool) -> list[Reference]:
        """Records whose folder has gone, looked up by id in the project's ``reports/``: a found
        folder becomes the record's owner (the report was moved there)."""
        moved = {ref.id: ref for ref in records if ref.id and ref.state() == "missing"}
        if not moved:
            return list(records)
        found: dict[str, Path] = {}
        for folder in _report_folders():
            rid = owner_id(folder)
            if rid in moved:
                found[rid] = folder.resolve()
        out = []
        for ref in records:
            if ref.id in found:
                self.log(f"reference {ref.id}: {ref.owner} moved to {found[ref.id]}")
                ref = Reference(ref.path, found[ref.id], ref.id, ref.roles)
                if not dry_run:
                    record = json.loads(ref.path.read_text(encoding="utf-8"))
                    record["owner"] = str(ref.owner)
                    atomic_write_text(ref.path, json.dumps(record, indent=1))
            out.append(ref)
        return out


def _report_folders() -> Iterator[Path]:
    """Folders under the project's ``reports/`` (three levels) that hold a ``runs.json``."""
    base = project_dir() / "reports"
    for pattern in ("*/" + OWNER_FILE, "*/*/" + OWNER_FILE, "*/*/*/" + OWNER_FILE):
        for path in base.glob(pattern):
            yield path.parent


def hold_change(role: str, fingerprints: Sequence[str]) -> Callable[[dict[str, Any]], None]:
    """A change that adds ``fingerprints`` to ``role``'s in-progress hold."""

    def change(roles: dict[str, Any]) -> None:
        roles[role + HOLD] = sorted(set(roles.get(role + HOLD, [])) | set(fingerprints))

    return change


def final_change(role: str, fingerprints: Sequence[str]) -> Callable[[dict[str, Any]], None]:
    """A change that sets ``role``'s runs and releases its in-progress hold."""

    def change(roles: dict[str, Any]) -> None:
        roles[role] = sorted(set(fingerprints))
        roles.pop(role + HOLD, None)

    return change
