"""One run store shared by every week and study: training runs keyed by what determines them.

A run's *fingerprint* hashes its kind (baseline / prune), its config (without ``name``,
``output_dir`` and ``device``, and without keys left at their default value, so that adding an
option does not invalidate the store), what it reads from disk (image folder, VGG weights), the
fingerprint of the run it starts from (and the α of that run's milestone) and
:data:`TRAINING_CODE_VERSION`. The run lives in ``<root>/<fingerprint>/``::

    run.json        what the run is (written before training starts)
    checkpoints/    last.pt, alpha_<α>.pt (see :mod:`alphaprune.engine.train`)
    metrics.csv
    done.json       written only after last.pt of the final epoch exists: the run is complete
    eval/<key>.json evaluation results cached by callers (e.g. studies)

Two processes never train the same run at once: :meth:`RunStore.run` holds an exclusive lock
(``fcntl.flock`` on ``<root>/.locks/<fingerprint>.lock``) while it trains, and a process that
waited for the lock finds the run done and reuses it. A killed run resumes from its last
checkpoint; one that finished is reused only while its checkpoints are the files ``done.json``
vouches for (size, time and SHA-256). Reports and studies *refer* to the runs they use
(:mod:`alphaprune.study.refs`: a hold written before the first run trains, the final list when
they are done); :meth:`RunStore.gc` removes only run folders it wrote (a ``run.json`` naming the
folder's fingerprint, nothing else in it, never a symbolic link) that no reference needs,
directly or as the start of a needed run.

The store is ``$ALPHAPRUNE_RUNS`` (an absolute folder; empty counts as unset), else ``runs/`` of
the checkout.

Command line: ``python -m alphaprune runs list|gc [--root runs] [--dry-run]``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from alphaprune.atomic import atomic_write_text
from alphaprune.engine.checkpoint import last_path, milestone_path
from alphaprune.engine.config import IMPORT_FACTORY, ExperimentConfig
from alphaprune.errors import ConfigError, StoreError
from alphaprune.paths import project_dir
from alphaprune.study.refs import References, final_change, hold_change

__all__ = [
    "project_store",
    "TRAINING_CODE_VERSION",
    "RunStore",
    "StoredRun",
    "canonical_config",
    "main",
]


#: Default store: ``runs/`` at the repository root of a checkout (else of the working directory);
#: ``$ALPHAPRUNE_RUNS`` overrides it.
def project_store() -> Path:
    """The default store: ``runs/`` of the project the user works in (``$ALPHAPRUNE_PROJECT``,
    else the folder at or above the current one holding ``notebooks/``, else the checkout the
    package is installed from) — never another checkout's because its venv is borrowed."""
    return project_dir() / "runs"


#: Part of every fingerprint. Bump it when a change to the training code or to a config default
#: changes what a run with the same config produces.
#: "2": the bundled data gained a test split (three images no run trains on), held-out PSNR is
#: the mean over whole images, and data-driven criteria see a batch of training crops.
TRAINING_CODE_VERSION = "2"
_FREE_KEYS = ("name", "output_dir", "device")
Kind = Literal["baseline", "prune"]
_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")
#: The lock that orders references and gc: a hold written after gc began waits for it.
_REFS_LOCK = "refs"


#: The variable that moves the store.
RUNS_ENV = "ALPHAPRUNE_RUNS"
#: What alphaprune writes into a run folder (besides its hidden temp files ``.<name>.*.tmp``):
#: files, and folders with the suffixes of their files. gc leaves a folder holding anything else.
_RUN_FILES = {"run.json", "done.json", "metrics.csv", "start.pt", "budget.json", ".alphaprune.lock"}
_RUN_FOLDERS = {"checkpoints": ".pt", "eval": ".json"}


def default_root() -> Path:
    """``$ALPHAPRUNE_RUNS`` if set (an empty value counts as unset), else :func:`project_store`.

    A relative value is a :class:`StoreError`: the report notebooks work inside the report
    folder, so the same value would name another store there than in the shell that set it.
    """
    raw = os.environ.get(RUNS_ENV, "")
    if not raw.strip():
        return project_store()
    path = Path(raw).expanduser()
    if not path.is_absolute():
        raise StoreError(
            f"{RUNS_ENV}={raw!r} is a relative path: set it to an absolute folder (the report "
            "notebooks run inside the report folder, where a relative store would land)"
        )
    return path


def _check_root(root: Path) -> Path:
    """``root`` (absolute), or a :class:`StoreError` when it exists and is not a folder."""
    root = root.expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise StoreError(f"run store {root} is a file, not a folder (check {RUNS_ENV} / --root)")
    return root


def _drop_defaults(value: Any, default: Any) -> Any:
    """``value`` without the (nested) keys whose value equals ``default``'s."""
    if isinstance(value, dict) and isinstance(default, dict):
        kept = {}
        for key, item in value.items():
            if key in default and item == default[key]:
                continue
            kept[key] = _drop_defaults(item, default.get(key))
        return kept
    return value


def canonical_config(cfg: ExperimentConfig, kind: str = "prune") -> dict[str, Any]:
    """The config keys that determine a run: no name/output_dir/device, no default values, and
    no keys the run does not read (a baseline's pruning/schedule; samples_per_epoch when
    steps_per_epoch is set; val_crops under the grid protocol; init_from, whose content is part
    of the fingerprint as the run's start instead)."""
    data = {k: v for k, v in cfg.to_dict().items() if k not in _FREE_KEYS + ("init_from",)}
    if kind == "baseline":
        for key in ("pruning", "schedule"):
            data.pop(key, None)
    if cfg.steps_per_epoch:
        data["data"].pop("samples_per_epoch", None)
    if cfg.data.val_protocol == "grid":
        data["data"].pop("val_crops", None)
    defaults = ExperimentConfig().to_dict()
    return _drop_defaults(data, defaults)


def _input_manifest(cfg: ExperimentConfig) -> dict[str, Any]:
    """Files a run reads besides its config (names, sizes, modification times)."""
    manifest: dict[str, Any] = {}
    if cfg.data.source != "bundled":
        folder = Path(cfg.data.source)
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        manifest["data"] = [
            (p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
            for p in files
        ]
    if cfg.model.vgg_weights and Path(cfg.model.vgg_weights).is_file():
        stat = Path(cfg.model.vgg_weights).stat()
        manifest["vgg_weights"] = (stat.st_size, stat.st_mtime_ns)
    return manifest


@dataclass(frozen=True)
class StoredRun:
    """A complete run of the store."""

    fingerprint: str
    run_dir: Path
    kind: str
    config: ExperimentConfig
    reused: bool

    @property
    def checkpoint(self) -> Path:
        return last_path(self.run_dir)

    def milestone(self, alpha: float) -> Path:
        return milestone_path(self.run_dir, alpha)

    @property
    def metrics(self) -> pd.DataFrame:
        return pd.read_csv(self.run_dir / "metrics.csv")

    def read_eval(self, key: str) -> dict[str, Any] | None:
        """A cached evaluation result, or None."""
        path = self.run_dir / "eval" / f"{key}.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None

    def write_eval(self, key: str, result: Mapping[str, Any]) -> None:
        """Cache an evaluation result (atomic)."""
        atomic_write_text(self.run_dir / "eval" / f"{key}.json", json.dumps(dict(result)))


@dataclass(frozen=True)
class _Request:
    """A run to train: its fingerprint, display name, config and where it starts."""

    fingerprint: str
    name: str
    cfg: ExperimentConfig
    kind: Kind
    source: StoredRun | str | Path | None
    source_alpha: float | None
    shrink_source: bool


class RunStore:
    """Runs keyed by fingerprint under ``root`` (default :func:`default_root`)."""

    def __init__(self, root: str | Path | None = None, log=print) -> None:
        self.root = _check_root(Path(root) if root is not None else default_root())
        self.log = log
        self.refs = References(self.root, log)

    # -- fingerprints -------------------------------------------------------------------------

    def fingerprint(
        self,
        cfg: ExperimentConfig,
        kind: Kind,
        source: StoredRun | str | Path | None = None,
        source_alpha: float | None = None,
        shrink_source: bool = False,
    ) -> str:
        """Hash of everything that determines the run (see the module docstring).

        ``source`` is the run it starts from (a :class:`StoredRun`) or a checkpoint file outside
        the store (hashed by content).
        """
        if isinstance(source, StoredRun):
            start: Any = {"run": source.fingerprint, "alpha": source_alpha}
            if shrink_source:
                start["shrink"] = True
        elif source is not None:
            start = {"file_sha256": _file_sha256(Path(source))}
        else:
            start = None
        payload = {
            "kind": kind,
            "config": canonical_config(cfg, kind),
            "start": start,
            "inputs": _input_manifest(cfg),
            "code": TRAINING_CODE_VERSION,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def path(self, fingerprint: str) -> Path:
        return self.root / fingerprint

    # -- running --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, fingerprint: str, blocking: bool = True) -> Iterator[bool]:
        """Exclusive lock of one run; yields False if ``blocking=False`` and it is held."""
        folder = self.root / ".locks"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{fingerprint}.lock", "a+") as handle:
            flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
            try:
                fcntl.flock(handle.fileno(), flags)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def get(self, fingerprint: str) -> StoredRun | None:
        """The complete run with ``fingerprint``, or None; a :class:`StoreError` when its folder
        is a symbolic link or a checkpoint is not the file its ``done.json`` vouches for."""
        run_dir = self._own_folder(fingerprint)
        try:
            done = json.loads((run_dir / "done.json").read_text(encoding="utf-8"))
            info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None
        if done.get("fingerprint") != fingerprint or not last_path(run_dir).exists():
            return None
        _verify_files(run_dir, done.get("files") or {})
        # a stored file names a factory: checked for its form, never imported by reading it
        cfg = ExperimentConfig.model_validate(info["config"], context={IMPORT_FACTORY: False})
        return StoredRun(fingerprint, run_dir, info["kind"], cfg, reused=True)

    def _own_folder(self, fingerprint: str) -> Path:
        """The run folder of ``fingerprint``; never a symbolic link (nothing is read or written
        through one: it may point at another run or outside the store)."""
        run_dir = self.path(fingerprint)
        if run_dir.is_symlink():
            raise StoreError(
                f"{run_dir} is a symbolic link, not a run folder of the store: alphaprune "
                "never reads or writes runs through links there; remove the link"
            )
        return run_dir

    def run(
        self,
        cfg: ExperimentConfig,
        kind: Kind = "baseline",
        source: StoredRun | str | Path | None = None,
        source_alpha: float | None = None,
        label: str | None = None,
        progress: bool = True,
        shrink_source: bool = False,
        force: bool = False,
    ) -> StoredRun:
        """The run of ``cfg``: reused when the store has it, else trained (or resumed) under lock.

        ``kind="prune"`` needs ``source``: a stored run (its last checkpoint, or its milestone at
        ``source_alpha``) or a checkpoint file. ``shrink_source=True`` (stored source only) first
        shrinks that checkpoint into the run's ``start.pt`` and prunes the smaller model.
        ``force=True`` trains it again from scratch even if the store has it.
        """
        if kind == "prune" and source is None and cfg.init_from:
            source = Path(cfg.init_from)
        if kind == "prune" and source is None:
            raise ConfigError(f"prune run '{cfg.name}' needs a source run or checkpoint")
        if shrink_source and not isinstance(source, StoredRun):
            raise ConfigError("shrink_source needs a stored source run")
        fp = self.fingerprint(cfg, kind, source, source_alpha, shrink_source)
        name = label or cfg.name
        found = None if force else self.get(fp)
        if found is None:
            with self.lock(fp):
                found = None if force else self.get(fp)  # another process may have finished it
                if found is None:
                    request = _Request(fp, name, cfg, kind, source, source_alpha, shrink_source)
                    return self._train(request, force=force, progress=progress)
        self.log(f"reused run {name} ({fp}) from {self.root}")
        return found

    def _train(self, request: _Request, force: bool, progress: bool) -> StoredRun:
        """Train ``request`` in its folder (under its lock); ``done.json`` is written last."""
        from alphaprune.engine.train import Diverged, prune, train_baseline

        fp, name = request.fingerprint, request.name
        self._own_folder(fp)
        if force and self.path(fp).exists():
            # set aside, deleted only once the new run is done; an interrupted retrain resumes
            # on the next call (without force) and the previous result waits until then
            os.replace(self.path(fp), self.root / f".{fp}.previous-{time.time_ns()}")
        run_cfg = request.cfg.model_copy(update={"output_dir": str(self.root), "name": fp})
        run_dir = self.path(fp)
        run_dir.mkdir(parents=True, exist_ok=True)
        info = {"fingerprint": fp, "name": name, "kind": request.kind, "start": None}
        info |= {"config": run_cfg.to_dict(), "created": time.time()}
        # first: the folder is the store's (gc knows it) before anything else is written in it
        atomic_write_text(run_dir / "run.json", json.dumps(info, indent=1))
        original, info["start"] = self._start_point(request, run_dir)
        atomic_write_text(run_dir / "run.json", json.dumps(info, indent=1))
        resuming = last_path(run_dir).exists()
        self.log(f"{'resuming' if resuming else 'training'} run {name} ({fp}) in {run_dir}")
        began, cpu_began = time.perf_counter(), time.process_time()
        diverged = None
        try:
            if request.kind == "baseline":
                result = train_baseline(run_cfg, progress=progress)
            else:
                result = prune(run_cfg, original=original, progress=progress)
        except Diverged as exc:  # finished too: the same config would diverge again
            if exc.result is None:
                raise
            result, diverged = exc.result, exc.epoch
            self.log(f"warning: {exc}")
        if not result.checkpoint.exists():  # the done record vouches for the checkpoint
            raise RuntimeError(f"run {fp} finished without {result.checkpoint}")
        done = {"fingerprint": fp, "finished": time.time(), "epochs": run_cfg.epochs}
        done |= {"seconds": time.perf_counter() - began, "diverged_at": diverged}
        # CPU seconds of this process (all its threads) while it trained: a resumed run counts
        # only the part trained since the resume
        done |= {"cpu_seconds": time.process_time() - cpu_began, "threads": _threads_used(run_cfg)}
        done["files"] = _file_records(run_dir)  # what the record vouches for, byte for byte
        atomic_write_text(run_dir / "done.json", json.dumps(done))
        for previous in self.root.glob(f".{fp}.previous-*"):
            shutil.rmtree(previous, ignore_errors=True)
        return StoredRun(fp, run_dir, request.kind, run_cfg, reused=False)

    def _start_point(
        self, request: _Request, run_dir: Path
    ) -> tuple[Path | None, dict[str, Any] | None]:
        """The checkpoint a prune run starts from, and how ``run.json`` records it."""
        source = request.source
        if source is None:
            return None, None
        if not isinstance(source, StoredRun):
            return Path(source), {"file": str(source)}
        start: dict[str, Any] = {"run": source.fingerprint, "alpha": request.source_alpha}
        alpha = request.source_alpha
        original = source.checkpoint if alpha is None else source.milestone(alpha)
        if not original.exists():
            raise FileNotFoundError(
                f"run '{request.name}' starts from {original}, which run {source.fingerprint} "
                "did not write (is there an epoch at that α in its schedule?)"
            )
        if request.shrink_source:
            from alphaprune.engine.checkpoint import shrink_checkpoint

            start["shrink"] = True
            shrunk = run_dir / "start.pt"
            if not shrunk.exists():  # written atomically by save_checkpoint
                shrink_checkpoint(
                    original,
                    shrunk,
                    image_size=request.cfg.data.crop,
                    factory=request.cfg.model.factory,  # the run's own, not one it names
                )
            original = shrunk
        return original, start

    def link(self, run: StoredRun, path: str | Path) -> Path:
        """Make ``path`` (e.g. ``reports/week10/runs/baseline``) a symlink to ``run``'s folder,
        replacing a link there atomically. A real folder there (a report from before the store,
        or a copy) is moved aside to ``.<name>.before-store-<time>``, never deleted."""
        path = Path(path)
        if path.exists() and not path.is_symlink():
            aside = path.with_name(f".{path.name}.before-store-{time.time_ns()}")
            os.replace(path, aside)
            self.log(f"moved {path} aside to {aside} (runs now live in the store {self.root})")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.link")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run.run_dir.resolve(), target_is_directory=True)
        os.replace(tmp, path)
        return path

    # -- references, listing, garbage collection -------------------------------------------

    def add_reference(
        self, owner: str | Path, fingerprints: Sequence[str], role: str = "runs"
    ) -> Path:
        """Record that folder ``owner`` (a report, a study) uses ``fingerprints`` for ``role``
        (e.g. a week's ``runs`` and its ``study``: each role's list is kept separately), and
        release ``role``'s in-progress hold (:meth:`hold`).

        Writes ``<owner>/runs.json`` (the folder's id, every role, and ``runs``: their union) and
        the store's reference file ``.refs/<id>.json`` (both atomic); a later call for the same
        owner and role replaces that role's list. Returns the store's file.
        """
        with self.lock(_REFS_LOCK):  # never while gc decides what is needed
            return self.refs.update(owner, final_change(role, fingerprints))

    def hold(self, owner: str | Path, fingerprints: Sequence[str], role: str = "runs") -> Path:
        """Add ``fingerprints`` to ``owner``'s in-progress hold for ``role``: gc keeps them until
        :meth:`add_reference` for that role replaces the hold with the final list (a crash
        leaves the hold, so nothing the work needed is lost)."""
        with self.lock(_REFS_LOCK):  # after it returns, gc sees the hold
            return self.refs.update(owner, hold_change(role, fingerprints))

    def references(self, strict: bool = False) -> dict[str, list[str]]:
        """Owner folder → fingerprints, for every reference that is not stale (an owner whose
        folder is gone is kept: it may have moved); ``strict``: a malformed file is an error."""
        return {
            str(ref.owner): ref.runs for ref in self.refs.read(strict) if ref.state() != "stale"
        }

    def _run_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        # only run folders (named by a fingerprint), never a link: gc touches nothing else
        return sorted(
            p
            for p in self.root.iterdir()
            if _FINGERPRINT.match(p.name) and p.is_dir() and not p.is_symlink()
        )

    def _start_of(self, fingerprint: str) -> str | None:
        try:
            info = json.loads((self.path(fingerprint) / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        start = (info.get("start") or {}) if isinstance(info, dict) else {}
        return start.get("run") if isinstance(start, dict) else None

    def needed(self, references: Mapping[str, Sequence[str]] | None = None) -> set[str]:
        """Fingerprints referenced (by default: :meth:`references`), and the runs they start
        from (transitively)."""
        refs = self.references() if references is None else references
        todo = [fp for fps in refs.values() for fp in fps]
        needed: set[str] = set()
        while todo:
            fp = todo.pop()
            if fp in needed:
                continue
            needed.add(fp)
            parent = self._start_of(fp)
            if parent:
                todo.append(parent)
        return needed

    def list(self) -> pd.DataFrame:
        """One row per run folder: fingerprint, name, kind, done, size (MB), modified, used_by."""
        used: dict[str, list[str]] = {}
        references = self.references()
        for owner, fps in references.items():
            shown = owner if Path(owner).is_dir() else f"{owner} (gone)"
            for fp in fps:
                used.setdefault(fp, []).append(shown)
        needed = self.needed(references)
        rows = []
        for run_dir in self._run_dirs():
            fp = run_dir.name
            try:
                info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                info = {}
            info = info if isinstance(info, dict) else {}
            size = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
            rows.append(
                {
                    "fingerprint": fp,
                    "name": info.get("name", "?"),
                    "kind": info.get("kind", "?"),
                    "done": (run_dir / "done.json").exists(),
                    "size_mb": size / 2**20,
                    "modified": pd.Timestamp(run_dir.stat().st_mtime, unit="s").floor("s"),
                    "used_by": ", ".join(used.get(fp, []))
                    or ("(start of a used run)" if fp in needed else ""),
                }
            )
        columns = ["fingerprint", "name", "kind", "done", "size_mb", "modified", "used_by"]
        return pd.DataFrame(rows, columns=columns)

    def gc(self, dry_run: bool = False, forget_missing: bool = False) -> list[str]:
        """Remove the runs no reference needs; returns their fingerprints.

        Only folders the store wrote go (see the module docstring); a run being trained, a run
        folder holding other files and a link are left, and said so. A reference whose folder is
        gone keeps its runs (its report may have moved; one moved inside the project's
        ``reports/`` is found by its id) unless ``forget_missing``. A malformed reference file
        stops gc with a :class:`StoreError` naming it.
        """
        if not self.root.is_dir():
            return []
        with self.lock(_REFS_LOCK):  # no hold is written while gc decides and removes
            return self._gc(dry_run, forget_missing)

    def _gc(self, dry_run: bool, forget_missing: bool) -> list[str]:
        records = self.refs.follow_moves(self.refs.read(strict=True), dry_run)
        states = {ref.path: ref.state() for ref in records}
        missing = [ref for ref in records if states[ref.path] == "missing"]
        keep = [ref for ref in records if states[ref.path] == "live"]
        if not forget_missing:
            keep += missing
        needed = self.needed({str(ref.path): ref.runs for ref in keep})
        removed = [fp for fp in self._removable(needed) if self._remove(fp, dry_run)]
        for ref in records:  # drop the records of owners that are stale (or forgotten)
            if ref not in keep and not dry_run:
                ref.path.unlink(missing_ok=True)
        if missing and not forget_missing:
            held = len({fp for ref in missing for fp in ref.runs})
            self.log(
                f"kept {held} run(s) of {len(missing)} folder(s) that are gone (moved or "
                f"deleted): {', '.join(str(ref.owner) for ref in missing)}; if deleted, free "
                "them with: runs gc --forget-missing"
            )
        return removed

    def _removable(self, needed: set[str]) -> list[str]:
        """Fingerprints of run folders gc may remove: not needed, written by the store."""
        out = []
        for path in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if not _FINGERPRINT.match(path.name) or path.name in needed:
                continue
            why = _not_a_store_run(path)
            if why:
                self.log(f"left {path} alone: {why}")
            else:
                out.append(path.name)
        return out

    def _remove(self, fp: str, dry_run: bool) -> bool:
        """Remove run ``fp`` unless it is being trained; whether it went (or would go)."""
        with self.lock(fp, blocking=False) as free:
            if not free:
                return False  # being trained right now
            if not dry_run:
                shutil.rmtree(self.path(fp))
                (self.root / ".locks" / f"{fp}.lock").unlink(missing_ok=True)
            return True


def _not_a_store_run(path: Path) -> str | None:
    """None when ``path`` is a run folder the store wrote and holds nothing else; else why not."""
    if path.is_symlink():
        return "a symbolic link, not a run folder"
    if not path.is_dir():
        return "not a folder"
    try:
        info = json.loads((path / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return "no run.json of the store in it"
    if not isinstance(info, dict) or info.get("fingerprint") != path.name:
        return "its run.json does not name this folder"
    strange = [p.name for p in path.iterdir() if not _written_by_store(p)]
    if strange:
        return f"it holds files the store did not write ({', '.join(sorted(strange)[:3])})"
    return None


def _temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _written_by_store(path: Path) -> bool:
    """Whether ``path`` (an entry of a run folder) is one the store or its run wrote."""
    if path.is_symlink():
        return False
    if path.is_file():
        return path.name in _RUN_FILES or _temp(path.name)
    suffix = _RUN_FOLDERS.get(path.name)
    if suffix is None or not path.is_dir():
        return False
    return all(
        not p.is_symlink() and p.is_file() and (p.name.endswith(suffix) or _temp(p.name))
        for p in path.iterdir()
    )


def _file_records(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Size, modification time and SHA-256 of the checkpoints a finished run vouches for."""
    files = sorted((run_dir / "checkpoints").glob("*.pt")) + sorted(run_dir.glob("start.pt"))
    records = {}
    for path in files:
        stat = path.stat()
        records[path.relative_to(run_dir).as_posix()] = {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": _file_sha256(path),
        }
    return records


def _verify_files(run_dir: Path, records: Mapping[str, Any]) -> None:
    """A :class:`StoreError` when a recorded checkpoint that exists is not the recorded file (a
    copied-over or swapped checkpoint); the SHA-256 decides when size or time differ."""
    for name, record in records.items():
        path = run_dir / name
        if not path.is_file() or not isinstance(record, dict):
            continue
        stat = path.stat()
        if (stat.st_size, stat.st_mtime_ns) == (record.get("size"), record.get("mtime_ns")):
            continue
        if stat.st_size == record.get("size") and _file_sha256(path) == record.get("sha256"):
            continue  # touched or copied with the same content
        raise StoreError(
            f"{path} is not the checkpoint its run's done.json vouches for (it was replaced or "
            f"changed after the run finished); delete {run_dir} to train the run again"
        )


def _threads_used(cfg: ExperimentConfig) -> int:
    import torch

    return cfg.threads if cfg.threads is not None else torch.get_num_threads()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    """``runs list|gc``: show the store's runs (size, users) or remove unreferenced ones."""
    parser = argparse.ArgumentParser(prog="python -m alphaprune runs", description=main.__doc__)
    parser.add_argument("action", choices=["list", "gc"])
    parser.add_argument(
        "--root", help=f"store folder (default ${RUNS_ENV}, else the project's runs/)"
    )
    parser.add_argument("--dry-run", action="store_true", help="gc: only say what would go")
    parser.add_argument(
        "--forget-missing",
        action="store_true",
        help="gc: also free the runs of reports and studies whose folder is gone",
    )
    args = parser.parse_args(argv)
    store = RunStore(args.root)
    if args.action == "list":
        table = store.list()
        if table.empty:
            print(f"no runs in {store.root}")
        else:
            print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
            print(f"{len(table)} runs, {table['size_mb'].sum():.1f} MB in {store.root}")
        return 0
    removed = store.gc(dry_run=args.dry_run, forget_missing=args.forget_missing)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(removed)} unreferenced run(s) from {store.root}: {' '.join(removed)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
