"""Run the weekly report: execute the notebooks in order with papermill, then export HTML + PDF.

``run_report("params/week09.yaml")`` executes ``notebooks/01_prune.ipynb`` … ``06_report.ipynb``,
in the order of their numbers, into the report folder (``reports/week09/``) exactly as a user
would from the project folder::

    papermill notebooks/01_prune.ipynb reports/week09/01_prune.ipynb -f params/week09.yaml \
        -p out_dir reports/week09 [-p retrain True]

(the params file's keys are the papermill parameters of every stage, read once here, see
:mod:`alphaprune.report.notebook`; ``--force`` adds ``retrain``). The kernels start in the project
folder, found from the params file's location (:func:`alphaprune.paths.locate_project`); what
they say on their stderr with :mod:`alphaprune.report.console` (each run trained, resumed or
reused, its epochs) reaches the console. The stages write ``figures/*.png`` and ``tables/*.csv``
there; the executed ``06_report`` notebook is exported to ``report.html`` and ``report.pdf``, and
the last console line names them.

A stage is skipped when its content hash (the notebook's cells, its parameters, the hashes of
the stages before it and the library's source) equals the one recorded in ``.stages.json`` and its
executed notebook, output files and the files it vouches for (``01_prune``: every run of the week
in ``runs/``, which ``runs gc`` could have deleted) are still there; once a stage runs, every later
stage runs too. ``force=True`` reruns all (and retrains: see :func:`run_report`). When a notebook fails, the runner stops, keeps the
failed executed notebook (the error is in it), prints the failing cell's error and raises
:class:`StageFailed`; earlier results are kept.

The export (``report.html``, ``report.pdf``) has its own record, ``.export.json``, written only
after both files are in place and keyed by the executed ``06_report`` notebook they were made from:
an export that was killed or ran out of disk is redone by the next run. One process at a time
builds a report folder (:func:`alphaprune.engine.locks.folder_lock`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from alphaprune.atomic import atomic_write_text
from alphaprune.engine.factories import BUILTIN_FACTORIES
from alphaprune.engine.locks import folder_lock
from alphaprune.engine.provenance import (  # a stage reruns when the library changes
    environment,
    library_digest,
)
from alphaprune.errors import (
    NotebookMissing,
    ReportError,
    ReportFolderError,
    ReportParamsError,
    StageFailed,
)
from alphaprune.paths import locate_project, project_dir
from alphaprune.report import console, export
from alphaprune.report.index import write_index
from alphaprune.report.run_configs import BASELINE, RUNS_DIR
from alphaprune.report.schema import ReportParams
from alphaprune.report.stages import PRUNE, REPORT, STAGES, stage_notebook, stage_parameters
from alphaprune.report.validation import read_report_params
from alphaprune.study.store import default_root

__all__ = [
    "Stage",
    "StageRecord",
    "ReportError",
    "StageFailed",
    "run_report",
    "run_stages",
    "stage_hash",
    "STATE_FILE",
]

STATE_FILE = ".stages.json"
#: Record of the last complete export: which executed notebook report.html/pdf were made from.
EXPORT_FILE = ".export.json"
#: Sub-folders whose files count as a stage's outputs.
OUTPUT_DIRS = ("figures", "tables")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class Stage:
    """One notebook to execute with its papermill parameters; ``requires``: files (relative to
    the report folder) it vouches for, which must still exist for it to be skipped;
    ``settings``: what its hash covers (default: the parameters)."""

    name: str
    notebook: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    requires: list[str] = field(default_factory=list)
    #: what the stage's results depend on (default: ``parameters``): the validated params
    settings: dict[str, Any] | None = None


@dataclass
class StageRecord:
    """What happened to a stage: ``ran`` (else skipped), seconds taken, files it wrote."""

    name: str
    hash: str
    ran: bool
    seconds: float
    notebook: Path
    outputs: list[str]


def _notebook_digest(path: Path) -> str:
    """Hash of a notebook's cell types and sources (outputs and metadata do not count)."""
    nb = nbformat.read(path, as_version=4)
    cells = [[cell.cell_type, cell.source] for cell in nb.cells]
    return hashlib.sha256(json.dumps(cells).encode("utf-8")).hexdigest()


#: Top-level params that only the report's text reads: a change reruns the report stage alone.
PROSE_KEYS = frozenset({"notes", "title", "author", "date", "week"})
#: Where things are read from or written to, and ``retrain`` (``--force`` reruns every stage
#: anyway), not what a stage makes: never part of a hash.
PLACE_KEYS = frozenset({"out_dir", "output_dir", "notebooks_dir", "params_file", "retrain"})


def _hashed_parameters(stage: Stage) -> dict:
    drop = PLACE_KEYS if stage.name == REPORT else PLACE_KEYS | PROSE_KEYS
    settings = stage.parameters if stage.settings is None else stage.settings
    return {key: value for key, value in settings.items() if key not in drop}


def stage_hash(stage: Stage, previous: Sequence[str] = ()) -> str:
    """Content hash of ``stage``: its notebook's cells, the parameters it depends on (the prose
    only for the report stage; output and notebook folders never), the earlier stages' hashes and
    the library's source."""
    payload = {
        "notebook": _notebook_digest(stage.notebook),
        "parameters": _hashed_parameters(stage),
        "previous": list(previous),
        "library": library_digest(),
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _load_state(out_dir: Path) -> dict[str, Any]:
    path = out_dir / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return state.get("stages", {}) if isinstance(state, dict) else {}


def _save_state(out_dir: Path, stages: dict[str, Any]) -> None:
    text = json.dumps({"version": 1, "stages": stages}, indent=2, sort_keys=True)
    atomic_write_text(out_dir / STATE_FILE, text)


def _snapshot(out_dir: Path) -> dict[str, tuple[float, int]]:
    files = {}
    for sub in OUTPUT_DIRS:
        for path in (out_dir / sub).glob("**/*"):
            if path.is_file():
                stat = path.stat()
                files[path.relative_to(out_dir).as_posix()] = (stat.st_mtime, stat.st_size)
    return files


def _up_to_date(record: dict[str, Any] | None, digest: str, out_dir: Path, executed: Path) -> bool:
    if not record or record.get("hash") != digest or not executed.is_file():
        return False
    return all((out_dir / name).is_file() for name in record.get("outputs", []))


def _gone(stage: Stage, out_dir: Path) -> str | None:
    """The first file ``stage`` vouches for that is no longer there (links followed)."""
    return next((name for name in stage.requires if not (out_dir / name).is_file()), None)


def _say(progress: bool, line: str) -> None:
    if progress:
        print(line, flush=True)


def _failure(stage: Stage, executed: Path, exc: Exception) -> StageFailed:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        trace = _ANSI.sub("", "\n".join(exc.traceback or []))
        source = exc.source if len(exc.source) < 2000 else exc.source[:2000] + "\n…"
        detail = (
            f"--- cell {exc.cell_index} (In [{exc.exec_count}]) of {stage.name} ---\n{source}\n"
            f"--- error ---\n{trace}"
        )
        return StageFailed(
            stage.name, executed, exc.cell_index, f"{exc.ename}: {exc.evalue}", detail
        )
    text = _ANSI.sub("", str(exc)).strip().splitlines()
    error = f"{type(exc).__name__}: {text[-1] if text else ''}"
    found = _cell_error(exc)
    if found is not None:  # a cell failed, then saving the notebook failed too (a full disk)
        cell, cell_error = found
        return StageFailed(
            stage.name,
            executed,
            cell,
            f"{cell_error}; then saving the notebook failed: {error}",
            kept=False,
        )
    if isinstance(exc, OSError) and (  # not the kernel: writing the executed notebook failed
        exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) or exc.filename == str(executed)
    ):
        return StageFailed(
            stage.name, executed, None, error, kept=False, where="saving its executed notebook"
        )
    return StageFailed(stage.name, executed, None, error)


def _cell_error(exc: BaseException) -> tuple[int, str] | None:
    """The failed cell's index and error, read from the notebook papermill was executing when
    ``exc`` (not a cell error itself: e.g. saving the notebook) was raised."""
    from nbformat import NotebookNode

    tb = exc.__traceback__
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            nb = getattr(value, "nb", value)
            if not isinstance(nb, NotebookNode) or "cells" not in nb:
                continue
            for index, cell in enumerate(nb.cells):
                for output in cell.get("outputs", []):
                    if output.get("output_type") == "error":
                        return index, f"{output.get('ename')}: {output.get('evalue')}"
        tb = tb.tb_next
    return None


def _execute(
    stage: Stage,
    executed: Path,
    kernel_name: str,
    cwd: str | Path | None,
    progress: bool,
    label: str,
) -> float:
    """Run one stage's notebook into ``executed``; its seconds, or :class:`StageFailed` (the
    executed notebook, with the error, is kept)."""
    import papermill

    start = time.perf_counter()
    try:
        # as `papermill NOTEBOOK OUT -f PARAMS -p out_dir DIR` from the project folder
        papermill.execute_notebook(
            str(stage.notebook),
            str(executed),
            parameters=stage.parameters,
            kernel_name=kernel_name,
            progress_bar=False,
            log_output=False,
            # the kernel's progress lines (alphaprune.report.console), as they come
            stderr_file=console.ConsoleEcho() if progress else None,
            cwd=str(cwd if cwd is not None else project_dir()),
        )
    except Exception as exc:
        failure = _failure(stage, executed, exc)
        _say(progress, f"{label}: FAILED after {time.perf_counter() - start:.1f} s")
        print(failure.detail or str(failure), file=sys.stderr)
        print(f"executed notebook (with the error) kept at {executed}", file=sys.stderr)
        raise failure from None
    return time.perf_counter() - start


def run_stages(
    stages: Sequence[Stage],
    out_dir: str | Path,
    force: bool = False,
    progress: bool = True,
    kernel_name: str = "python3",
    cwd: str | Path | None = None,
) -> list[StageRecord]:
    """Execute ``stages`` in order into ``out_dir``, skipping unchanged ones.

    The kernels start in ``cwd`` (default: the project folder, as for a user who runs papermill
    there); the report notebooks never depend on it (see :mod:`alphaprune.report.notebook`).

    Raises:
        ReportError: a notebook file is missing.
        StageFailed: a notebook raised; earlier stages' results and records are kept.
    """
    out_dir = Path(out_dir).resolve()
    missing = [str(s.notebook) for s in stages if not Path(s.notebook).is_file()]
    if missing:
        raise NotebookMissing(f"notebook(s) not found: {', '.join(missing)}")
    for sub in OUTPUT_DIRS:
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    state = _load_state(out_dir)
    records: list[StageRecord] = []
    hashes: list[str] = []
    dirty = force
    for index, stage in enumerate(stages, start=1):
        executed = stage_notebook(out_dir, stage.name)
        digest = stage_hash(stage, hashes)
        hashes.append(digest)
        label = f"[{index}/{len(stages)}] {stage.name}"
        unchanged = not dirty and _up_to_date(state.get(stage.name), digest, out_dir, executed)
        gone = _gone(stage, out_dir) if unchanged else None
        if gone:  # e.g. its runs deleted from the store: never "unchanged" over dangling links
            _say(progress, f"{label}: {gone} is gone (deleted from the run store?); running again")
        elif unchanged:
            record = state[stage.name]
            records.append(
                StageRecord(stage.name, digest, False, 0.0, executed, record.get("outputs", []))
            )
            _say(progress, f"{label}: skipped (unchanged)")
            continue
        dirty = True  # every later stage depends on this one's outputs
        for name in [s.name for s in stages[index - 1 :]]:
            state.pop(name, None)
        _save_state(out_dir, state)
        before = _snapshot(out_dir)
        _say(progress, f"{label}: running …")
        seconds = _execute(stage, executed, kernel_name, cwd, progress, label)
        after = _snapshot(out_dir)
        outputs = sorted(name for name, meta in after.items() if before.get(name) != meta)
        state[stage.name] = {
            "hash": digest,
            "seconds": round(seconds, 2),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "notebook": executed.name,
            "outputs": outputs,
        }
        _save_state(out_dir, state)
        records.append(StageRecord(stage.name, digest, True, seconds, executed, outputs))
        if stage.name == REPORT:  # its files are the export's, which comes next
            _say(progress, f"{label}: assembled in {seconds:.1f} s; exporting …")
        else:
            _say(progress, f"{label}: ran in {seconds:.1f} s ({len(outputs)} files written)")
    return records


def run_report(
    params_path: str | Path,
    force: bool = False,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Build the report of ``params_path``; returns the report folder.

    Writes the executed notebooks, ``figures/``, ``tables/``, ``report.html`` and (with Chromium)
    ``report.pdf`` into ``out_dir`` (default: the params' ``output_dir``, e.g. ``reports/week09``).
    Unchanged stages are skipped, and unchanged training runs in ``runs/`` are reused;
    ``force=True`` starts from scratch: it retrains every model (the run store keeps each
    previous run until its retraining is done) and reruns every stage. Everything is checked
    first (params, notebooks, a usable and writable folder, factories the notebooks can import,
    no other process building it). ``--force`` moves and deletes nothing in the folder: the
    links in ``runs/`` are replaced as the runs finish.

    Raises:
        ReportParamsError: the params file is missing or invalid (names the file and key).
        StageFailed: a notebook failed (names the stage, cell, error and the kept notebook).
        ReportError: a notebook is missing, the folder is not writable or the export failed.
        LockError: another process is building the same report folder (names its PID).
    """
    data, params = read_report_params(params_path)  # the file is read here, once
    project, why = locate_project(params.source)
    folder = Path(out_dir).resolve() if out_dir is not None else params.report_dir()
    notebooks = params.notebooks()
    # every stage gets the file's keys as papermill -f passes them, the folder and --force
    parameters = stage_parameters(data, out_dir=folder, retrain=force)
    hashed = params.model_dump(mode="json")
    requires = {PRUNE: _run_files(params)}
    stages = [
        Stage(name, stage_notebook(notebooks, name), parameters, requires.get(name, []), hashed)
        for name in STAGES
    ]
    _say(progress, f"project folder {project} ({why})")
    _check_notebooks(stages, params)
    _check_folder(folder, params)
    _check_kernel_imports(params, project)
    _check_writable(folder)  # the first check that makes the folder
    _say(progress, f"{params.report_title}: {len(stages)} stages into {folder}")
    with folder_lock(folder, "report folder"):
        if force:
            _forget_records(folder)
        records = run_stages(stages, folder, force=force, progress=progress, cwd=project)
        _write_provenance(folder, params)
        message = _export(records[-1].notebook, folder, params.report_title)
    reports = project / "reports"
    if folder.parent == reports:  # never an index.html in a folder alphaprune does not own
        _say(progress, f"index of every week: {write_index(reports)}")
    _say(progress, message)  # the last line names the report's files
    return folder


#: In a report folder: what computed it (commit, library hash, versions, device, CPU, threads)
#: and each run's fingerprint, wall and CPU seconds and threads, from its done.json.
PROVENANCE_FILE = "provenance.json"


def run_provenance(folder: Path) -> dict[str, dict[str, Any]]:
    """Each run of the report (``runs/<name>`` links into the store): its store record."""
    records: dict[str, dict[str, Any]] = {}
    for link in sorted((folder / RUNS_DIR).glob("*")):
        try:
            done = json.loads((link.resolve() / "done.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not finished (or not a run folder): nothing to vouch for
        keys = ("fingerprint", "epochs", "seconds", "cpu_seconds", "threads", "diverged_at")
        records[link.name] = {key: done.get(key) for key in keys}
    return records


def _write_provenance(folder: Path, params: ReportParams) -> None:
    record = {
        "params": str(params.source),
        "environment": environment(device=params.device),
        "runs": run_provenance(folder),
    }
    atomic_write_text(folder / PROVENANCE_FILE, json.dumps(record, indent=1, default=str))


def _check_notebooks(stages: Sequence[Stage], params: ReportParams) -> None:
    """NotebookMissing naming every stage notebook that is missing or not a readable notebook,
    and where the params say to look for them."""
    missing = [str(s.notebook) for s in stages if not Path(s.notebook).is_file()]
    if missing:
        where = (
            f"notebooks_dir in {params.source}"
            if params.notebooks_dir
            else f"the project's notebooks/ (set notebooks_dir in {params.source})"
        )
        raise NotebookMissing(f"notebook(s) not found: {', '.join(missing)}; looked in {where}")
    for stage in stages:
        try:
            _notebook_digest(stage.notebook)
        except Exception as exc:  # nbformat raises many kinds; all mean "not a notebook"
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise NotebookMissing(f"{stage.notebook}: not a readable notebook: {reason}") from None


def _run_files(params: ReportParams) -> list[str]:
    """What ``01_prune`` vouches for: every run of the week, complete, through its link."""
    files = ("done.json", "checkpoints/last.pt")
    return [f"{RUNS_DIR}/{name}/{f}" for name in _run_names(params) for f in files]


def _check_folder(folder: Path, params: ReportParams) -> None:
    """ReportFolderError when the report folder is the project (or above it) or the run store
    (or in or above it): a report writes and replaces files there, and must not there."""
    folder = folder.resolve()
    project = params.project().resolve()
    store = default_root().expanduser().absolute().resolve()
    if folder == project or project.is_relative_to(folder):
        where = "the project folder" if folder == project else f"above the project {project}"
        raise ReportFolderError(f"report folder {folder} is {where}; set name or output_dir")
    if folder.is_relative_to(store) or store.is_relative_to(folder):
        raise ReportFolderError(
            f"report folder {folder} and the run store {store} overlap; set name or output_dir"
        )


def _check_writable(folder: Path) -> None:
    """ReportFolderError (exit 2) naming ``folder`` when it is a file or cannot be written."""
    if folder.exists() and not folder.is_dir():
        raise ReportFolderError(f"report folder {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=".write-test.")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ReportFolderError(f"report folder {folder} is not writable: {reason}") from None


_FIND_SPEC = "import importlib.util, sys; sys.exit(importlib.util.find_spec(sys.argv[1]) is None)"


def _check_kernel_imports(params: ReportParams, project: Path) -> None:
    """ReportParamsError when a model factory imports here but not where the notebooks' kernels
    start (the project folder): e.g. a module found only in the current folder."""
    specs = {(params.run_config(n).get("model") or {}).get("factory") for n in _run_names(params)}
    for spec in sorted(s for s in specs if s and s not in BUILTIN_FACTORIES):
        module = spec.split(":")[0].split(".")[0]
        found = subprocess.run(
            [sys.executable, "-c", _FIND_SPEC, module], cwd=project, capture_output=True
        )
        if found.returncode != 0:
            raise ReportParamsError(
                f"{params.source}: model.factory '{spec}': module '{module}' imports here (from "
                f"{os.getcwd()}, on this process's sys.path) but not in the report's notebooks, "
                f"which start in {project}; install it (pip install -e) or add its folder "
                "to PYTHONPATH"
            )


def _run_names(params: ReportParams) -> list[str]:
    return [BASELINE] + [e.name for e in params.experiments]


def _forget_records(folder: Path) -> None:
    """``--force``: drop the records that vouch for the stages and the export (first: a kill from
    here on reruns every stage). Nothing else in the folder is moved or deleted."""
    _save_state(folder, {})
    (folder / EXPORT_FILE).unlink(missing_ok=True)


def _export_key(notebook: Path, title: str) -> str:
    """What an export is made from: the executed notebook's bytes, its title, the exporter."""
    digest = hashlib.sha256(notebook.read_bytes())
    digest.update(title.encode("utf-8") + b"\0")
    digest.update(Path(export.__file__).read_bytes())
    return digest.hexdigest()


def _export(notebook: Path, folder: Path, title: str) -> str:
    """Export ``notebook`` to report.html/pdf unless the export record says they are current;
    returns the console's last line, naming both files. The record is written only after both files are in place."""
    html, pdf = folder / "report.html", folder / "report.pdf"
    record_path = folder / EXPORT_FILE
    key = _export_key(notebook, title)
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}
    current = isinstance(record, dict) and record.get("key") == key and html.is_file()
    if current and record.get("pdf") and pdf.is_file():
        return _report_line("up to date", html, pdf)
    if current and not record.get("pdf") and export.find_chromium() is None:
        return _report_line("up to date", html, None)
    record_path.unlink(missing_ok=True)  # from here until the new record, nothing is current
    try:
        result = export.export_report(notebook, folder, title=title)
    except export.ExportError as exc:
        raise ReportError(f"export of {notebook} failed: {exc}") from None
    except OSError as exc:
        raise ReportError(f"export of {notebook} into {folder} failed: {exc}") from None
    made = {"key": key, "html": result.html.name, "pdf": result.pdf.name if result.pdf else None}
    atomic_write_text(record_path, json.dumps(made, indent=2))
    return _report_line("written", result.html, result.pdf)


def _report_line(state: str, html: Path, pdf: Path | None) -> str:
    """The console's last line: the report's files."""
    if pdf is None:
        return f"report {state}: {html} (no PDF: {export.PDF_HINT})"
    return f"report {state}: {html} and {pdf}"
