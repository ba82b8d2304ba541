"""Notes with live numbers: ``{run.decay.psnr:.2f}`` in a week's ``notes:``, filled in from the
report's own tables (``tables/*.csv`` written by the stages), so that prose cannot contradict them.

A reference is ``{PATH}`` or ``{PATH:SPEC}``:

* ``PATH`` is names joined by dots, looked up in a fixed tree of values (:func:`reference_tree`)
  by walking its keys: never ``getattr``, never ``eval``, never indexing. A name may itself hold
  dots (run ``alpha0_lr0.01``): at each level the **longest** key that the rest of the path starts
  with is taken, so ``run.alpha0_lr0.01.psnr`` is run ``alpha0_lr0.01``, value ``psnr``, even when
  a run ``alpha0_lr0`` exists. Only letters, digits, ``_``, ``.`` and ``-`` may appear.
* ``SPEC`` formats a number: ``[sign][width][,][.precision][type]`` with type one of
  ``e E f F g G % d`` (``.2f``, ``+.2f``, ``.3g``, ``,d``, ``.0%``); width and precision have at
  most two digits. A word (a label, a status, a comparison word) takes no spec.
* ``{{`` and ``}}`` are literal braces; ``!r``-style conversions and nested fields are refused.

The tree (``R``, ``O``: names of runs of the week, ``baseline`` included; ``M``: ``original``,
``masked``, ``shrunk``):

====================================  ==========================================================
``run.R.label`` / ``status`` /        words of Table 1: the run's label, its status (finished,
``schedule``                          diverged at epoch N, exploded at epoch N (train loss P)), its
                                      α schedule
``run.R.lr`` / ``weight_decay`` /     numbers of Table 1 (``keep``: fraction of channels kept;
``epochs`` / ``keep`` /               ``train_loss``: last epoch's mean training loss;
``final_alpha`` / ``train_loss`` /    ``psnr``/``ssim``: last epoch's validation PSNR (dB) and
``val_loss`` / ``psnr`` / ``ssim``    SSIM)
``run.R.train_loss_start`` /          the training loss the run started from, its highest, and
``train_loss_peak`` /                 their ratio (see :func:`alphaprune.report.runs.exploded_at`)
``train_loss_growth``
``run.R.psnr_vs.O``                   PSNR of R minus PSNR of O (dB, signed)
``run.R.psnr_gap.O``                  the same, without its sign
``run.R.psnr_cmp.O``                  "higher than", "lower than" or "equal to"
``run.R.loss_ratio.O``                validation loss of R divided by O's
``run.R.loss_factor.O``               the ratio or its inverse, whichever is ≥ 1 ("13.5×")
``run.R.loss_cmp.O``                  "higher than", "lower than" or "equal to"
``best.run`` / ``label`` / ``psnr``   the finished pruning run with the highest validation PSNR
``weights.R.min_ratio`` /             smallest / largest L2-norm ratio of R's kept weights to
``max_ratio`` / ``min_layer`` /       the original's, over the layers of Figure 2, and the layer
``max_layer``                         (runs started from a shrunk model are not compared)
``shrink.params`` / ``flops`` /       the shrunk model's counts and their ratios to the original
``params_ratio`` / ``flops_ratio`` /  (the table of section 1.3); ``original_params`` /
``original_params`` /                 ``original_flops``
``original_flops``
``shrink.max_abs_diff`` /             the largest gated − shrunk output difference, the
``tolerance`` / ``within``            tolerance, and "within" or "above"
``recon.image`` / ``size``            the image of the reconstruction figure and its side
``recon.run`` / ``alpha``             the pruned model's run (its label) and its α, read from its
                                      checkpoint
``recon.original|pruned|shrunk.psnr``  PSNR / SSIM of that one image through each model
(and ``.ssim``)
``gpu.device`` / ``batch_size`` /     the benchmark's device ("CPU: …" or "GPU: …"), batch and
``image_size``                        image size
``gpu.M.ms`` / ``p10`` / ``p90`` /    median (10th, 90th percentile) ms per batch, images per
``images_per_s``                      second
``gpu.M.speedup``                     the original's median time divided by M's
``gpu.M.speed``                       "faster than", "slower than" (the p10–p90 ranges do not
                                      overlap) or "within the timing noise of" the original
``model.encoder``                     what the encoder starts from: ImageNet VGG-19 weights (a
                                      local file, ``model.vgg_weights``) or random initialisation
``model.layer``                       the encoder's last layer (``relu2_1``)
====================================  ==========================================================

A number that is not finite (a run that diverged, a ratio to zero) is written ``n/a (why)``,
never ``nan``. References are checked when the params file is validated (an unknown name or a
spec on a word stops there, naming the note and listing the known names); values are read when
the report is built (:func:`render_notes`).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from alphaprune.errors import ReportParamsError
from alphaprune.report.run_configs import BASELINE
from alphaprune.report.schema import Notes, ReportParams
from alphaprune.report.tables import weight_ranges

__all__ = [
    "Value",
    "NotApplicable",
    "Tables",
    "reference_tree",
    "references",
    "check_notes",
    "render",
    "render_notes",
    "encoder_text",
]

_PATH = re.compile(r"^[A-Za-z0-9_.\-]+$")
_NUMBER_SPEC = re.compile(r"^[+\- ]?\d{0,2}[,_]?(?:\.\d{1,2})?[eEfFgGd%]?$")
#: Characters that Markdown would read as markup in a word taken from the tables.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|#])")
#: The models of the benchmark table (``notebooks/04_gpu_addendum.ipynb``).
BENCH_MODELS = ("original", "masked", "shrunk")
#: Panels of the reconstruction table: (b) original, (c) pruned, (d) shrunk.
RECON_PANELS = {"original": "b", "pruned": "c", "shrunk": "d"}


@dataclass(frozen=True)
class NotApplicable:
    """A value that does not exist (a diverged run's PSNR), and why; written ``n/a (why)``."""

    reason: str = ""

    def __str__(self) -> str:
        return f"n/a ({self.reason})" if self.reason else "n/a"


@dataclass(frozen=True)
class Value:
    """A leaf of the reference tree: a number or a word, read from the report's tables."""

    kind: Literal["number", "word"]
    read: Callable[[Tables], Any]


Tree = dict[str, Any]  # name -> Tree | Value


class Tables:
    """The report folder's ``tables/*.csv``, each read once."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._frames: dict[str, pd.DataFrame] = {}

    def get(self, name: str) -> pd.DataFrame:
        """``tables/<name>.csv`` (an empty frame for an empty file)."""
        if name not in self._frames:
            path = self.folder / "tables" / f"{name}.csv"
            if not path.is_file():
                raise ReportParamsError(
                    f"notes refer to {path.name}, which {path.parent} does not hold (run the "
                    "stage that writes it first)"
                )
            try:
                self._frames[name] = pd.read_csv(path)
            except pd.errors.EmptyDataError:
                self._frames[name] = pd.DataFrame()
        return self._frames[name]

    def row(self, name: str, column: str, key: str) -> pd.Series | None:
        """The row of ``tables/<name>.csv`` whose ``column`` is ``key`` (None if there is none)."""
        frame = self.get(name)
        if column not in frame:
            return None
        rows = frame[frame[column].astype(str) == key]
        return rows.iloc[0] if len(rows) else None


# --- the tree ------------------------------------------------------------------------------------

#: Values of a run: name in the notes -> column of ``tables/experiments.csv`` and kind.
RUN_FIELDS: dict[str, tuple[str, Literal["number", "word"]]] = {
    "label": ("label", "word"),
    "status": ("status", "word"),
    "schedule": ("schedule", "word"),
    "lr": ("lr", "number"),
    "weight_decay": ("weight_decay", "number"),
    "epochs": ("epochs", "number"),
    "keep": ("keep", "number"),
    "final_alpha": ("final_alpha", "number"),
    "train_loss": ("train_loss", "number"),
    "train_loss_start": ("train_loss_start", "number"),
    "train_loss_peak": ("train_loss_peak", "number"),
    "val_loss": ("val_loss", "number"),
    "psnr": ("val_psnr", "number"),
    "ssim": ("val_ssim", "number"),
}


def _number(value: Any, why: str = "") -> int | float | NotApplicable:
    """``value`` as a finite number (a whole number of the table stays an int, so ``{…epochs}``
    reads ``5``), else :class:`NotApplicable` with ``why``."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return NotApplicable(why)
    if isinstance(value, (int, np.integer)):
        return int(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return NotApplicable(why)
    return number if math.isfinite(number) else NotApplicable(why)


def _run_value(tables: Tables, run: str, column: str) -> float | NotApplicable:
    row = tables.row("experiments", "run", run)
    if row is None:
        return NotApplicable(f"run {run} is not in Table 1")
    status = str(row.get("status", "finished"))
    return _number(row.get(column), "" if status == "finished" else status)


def _run_field(run: str, column: str, kind: str) -> Value:
    if kind == "number":
        return Value("number", lambda t: _run_value(t, run, column))

    def word(tables: Tables) -> Any:
        row = tables.row("experiments", "run", run)
        if row is None or pd.isna(row.get(column)):
            return NotApplicable()
        return str(row[column])

    return Value("word", word)


def _growth(run: str) -> Value:
    def read(tables: Tables) -> Any:
        peak = _run_value(tables, run, "train_loss_peak")
        start = _run_value(tables, run, "train_loss_start")
        if isinstance(peak, NotApplicable) or isinstance(start, NotApplicable) or start == 0:
            return NotApplicable()
        return peak / start

    return Value("number", read)


def _pair(run: str, other: str, column: str, how: Callable[[float, float], Any], kind) -> Value:
    """A value computed from the ``column`` of two runs of Table 1."""

    def read(tables: Tables) -> Any:
        a, b = _run_value(tables, run, column), _run_value(tables, other, column)
        for value, name in ((a, run), (b, other)):
            if isinstance(value, NotApplicable):
                return NotApplicable(f"{name}: {value.reason}" if value.reason else "")
        return how(a, b)

    return Value(kind, read)


def _cmp(a: float, b: float) -> str:
    return "higher than" if a > b else "lower than" if a < b else "equal to"


def _ratio(a: float, b: float) -> float | NotApplicable:
    return a / b if b else NotApplicable("division by zero")


def _factor(a: float, b: float) -> float | NotApplicable:
    ratio = _ratio(a, b)
    if isinstance(ratio, NotApplicable) or ratio == 0:
        return NotApplicable("division by zero")
    return max(ratio, 1 / ratio)


def _comparisons(run: str, others: list[str]) -> Tree:
    def each(column: str, how, kind: str) -> Tree:
        return {o: _pair(run, o, column, how, kind) for o in others if o != run}

    return {
        "psnr_vs": each("val_psnr", lambda a, b: a - b, "number"),
        "psnr_gap": each("val_psnr", lambda a, b: abs(a - b), "number"),
        "psnr_cmp": each("val_psnr", _cmp, "word"),
        "loss_ratio": each("val_loss", _ratio, "number"),
        "loss_factor": each("val_loss", _factor, "number"),
        "loss_cmp": each("val_loss", _cmp, "word"),
    }


def _runs(params: ReportParams) -> Tree:
    names = [BASELINE] + [e.name for e in params.experiments]
    tree: Tree = {}
    for run in names:
        fields: Tree = {key: _run_field(run, col, kind) for key, (col, kind) in RUN_FIELDS.items()}
        fields["train_loss_growth"] = _growth(run)
        tree[run] = {**fields, **_comparisons(run, names)}
    return tree


def _weights_value(run: str, field: str) -> Value:
    def read(tables: Tables) -> Any:
        ranges = weight_ranges(tables.get("weights"))
        rows = ranges[ranges["run"].astype(str) == run]
        if rows.empty:
            return NotApplicable(f"{run} not in the weights table")
        value = rows.iloc[0][field]
        if field.endswith("layer"):
            return NotApplicable("no finite ratio") if pd.isna(value) else str(value)
        return _number(value, "not finite")

    return Value("word" if field.endswith("layer") else "number", read)


def _weights(params: ReportParams) -> Tree:
    """Runs compared channel by channel: the experiments that do not start from a shrunk model
    (:func:`alphaprune.report.tables.weights_table`)."""
    how = ("min_ratio", "max_ratio", "min_layer", "max_layer")
    return {
        e.name: {h: _weights_value(e.name, h) for h in how}
        for e in params.experiments
        if not e.start.shrink
    }


def _table_value(table: str, column: str, key: str, field: str, kind="number") -> Value:
    def read(tables: Tables) -> Any:
        row = tables.row(table, column, key)
        if row is None:
            return NotApplicable(f"no row '{key}' in {table}.csv")
        if kind == "word":
            return NotApplicable() if pd.isna(row.get(field)) else str(row.get(field))
        return _number(row.get(field))

    return Value(kind, read)


def _shrink_value(field: str, row: str = "shrunk") -> Value:
    return _table_value("shrink", "model", row, field)


def _shrink() -> Tree:
    def check(field: str) -> Value:
        def read(tables: Tables) -> Any:
            first = tables.get("shrink_check").iloc[0]
            if field == "within":
                return "within" if bool(first["passed"]) else "above"
            return _number(first[field])

        return Value("word" if field == "within" else "number", read)

    return {
        **{f: _shrink_value(f) for f in ("params", "flops", "params_ratio", "flops_ratio")},
        "original_params": _shrink_value("params", "original"),
        "original_flops": _shrink_value("flops", "original"),
        **{f: check(f) for f in ("max_abs_diff", "tolerance", "within")},
    }


def _recon() -> Tree:
    tree: Tree = {
        "image": _table_value("reconstruction", "panel", "a", "run", "word"),
        "run": _table_value("reconstruction", "panel", "c", "run", "word"),
        "alpha": _table_value("reconstruction", "panel", "c", "alpha"),
        "size": Value("number", lambda t: _number(t.get("reconstruction")["input"].map(_side)[0])),
    }
    for model, panel in RECON_PANELS.items():
        tree[model] = {
            m: _table_value("reconstruction", "panel", panel, m) for m in ("psnr", "ssim")
        }
    return tree


def _side(text: str) -> float:
    """The side of ``"astronaut, 128×128"``."""
    match = re.search(r"(\d+)×\d+\s*$", str(text))
    return float(match.group(1)) if match else math.nan


def _bench(model: str, field: str) -> Value:
    def read(tables: Tables) -> Any:
        own, original = (tables.row("benchmark", "model", m) for m in (model, "original"))
        if own is None or original is None:
            return NotApplicable(f"no '{model}' in the benchmark")
        if field == "speedup":
            return _ratio(float(original["latency_ms_median"]), float(own["latency_ms_median"]))
        if field == "speed":
            if float(own["latency_ms_p90"]) < float(original["latency_ms_p10"]):
                return "faster than"
            if float(own["latency_ms_p10"]) > float(original["latency_ms_p90"]):
                return "slower than"
            return "within the timing noise of"
        return _number(own[_BENCH_COLUMNS[field]])

    return Value("word" if field == "speed" else "number", read)


_BENCH_COLUMNS = {
    "ms": "latency_ms_median",
    "p10": "latency_ms_p10",
    "p90": "latency_ms_p90",
    "images_per_s": "throughput_img_s",
}


def _gpu() -> Tree:
    first = "original"
    tree: Tree = {
        "device": _table_value("benchmark", "model", first, "device_label", "word"),
        "batch_size": _table_value("benchmark", "model", first, "batch_size"),
        "image_size": _table_value("benchmark", "model", first, "image_size"),
    }
    for model in BENCH_MODELS:
        tree[model] = {f: _bench(model, f) for f in (*_BENCH_COLUMNS, "speedup", "speed")}
    return tree


def encoder_text(params: ReportParams) -> str:
    """What the original model's encoder starts from, from the baseline's config: ImageNet VGG-19
    weights (``model.vgg_weights``, a local file) or random initialisation."""
    model = params.run_config(BASELINE).get("model", {})
    if model.get("factory"):
        return f"a user model ({model['factory']}), trained from its own initialisation"
    weights = model.get("vgg_weights")
    if weights:
        return f"VGG-19 initialised with ImageNet weights ({Path(weights).name})"
    return "VGG-19 trained here from random initialisation (no ImageNet weights)"


def _model(params: ReportParams) -> Tree:
    model = params.run_config(BASELINE).get("model", {})
    layer = model.get("layer", "relu3_1") if not model.get("factory") else model["factory"]
    return {
        "encoder": Value("word", lambda t: encoder_text(params)),
        "layer": Value("word", lambda t: str(layer)),
    }


def _best(field: str) -> Value:
    """The finished pruning run with the highest validation PSNR (the baseline is not a
    pruning run; a diverged or exploded run is not a result)."""

    def read(tables: Tables) -> Any:
        runs = tables.get("experiments")
        psnr = pd.to_numeric(runs["val_psnr"], errors="coerce")
        ok = (runs["run"].astype(str) != BASELINE) & (runs["status"] == "finished") & psnr.notna()
        if not ok.any():
            return NotApplicable("no finished pruning run")
        best = runs.loc[psnr[ok].idxmax()]
        return _number(best["val_psnr"]) if field == "psnr" else str(best[field])

    return Value("number" if field == "psnr" else "word", read)


def reference_tree(params: ReportParams) -> Tree:
    """Every name the notes of ``params`` may refer to (see the module's docstring)."""
    return {
        "run": _runs(params),
        "best": {field: _best(field) for field in ("run", "label", "psnr")},
        "weights": _weights(params),
        "shrink": _shrink(),
        "recon": _recon(),
        "gpu": _gpu(),
        "model": _model(params),
    }


# --- parsing and rendering -----------------------------------------------------------------------


def references(text: str, where: str) -> Iterator[tuple[str, str | None, str]]:
    """``(literal, path, spec)`` pieces of ``text`` (``path`` None after the last reference);
    a malformed reference raises :class:`ReportParamsError` naming ``where``."""
    try:
        pieces = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ReportParamsError(
            f"{where}: {exc} (write a literal brace as '{{{{' or '}}}}')"
        ) from None
    for literal, path, spec, conversion in pieces:
        if path is None:
            yield literal, None, ""
            continue
        shown = (
            "{"
            + path
            + (f"!{conversion}" if conversion else "")
            + (f":{spec}" if spec else "")
            + "}"
        )
        if conversion is not None or not _PATH.match(path) or "{" in (spec or ""):
            raise ReportParamsError(
                f"{where}: {shown} is not a reference: write {{name.name…}} or {{name…:spec}} "
                "(letters, digits, '_', '.', '-'; no conversions, indexing or nested fields)"
            )
        yield literal, path, spec or ""


def _resolve(tree: Tree, path: str, where: str) -> Value:
    """The leaf at ``path``, taking at each level the longest key the rest starts with."""
    node: Any = tree
    rest, trail = path, []
    while isinstance(node, dict):
        keys = sorted((k for k in node if rest == k or rest.startswith(k + ".")), key=len)
        if not keys:
            under = f"under '{'.'.join(trail)}'" if trail else "at the top"
            what = f"no '{rest}' {under}" if rest else f"'{'.'.join(trail)}' needs one more name"
            raise ReportParamsError(
                f"{where}: unknown reference {{{path}}}: {what} (known: {', '.join(sorted(node))})"
            )
        key = keys[-1]
        node, rest = node[key], rest[len(key) + 1 :]
        trail.append(key)
    if rest:
        raise ReportParamsError(
            f"{where}: unknown reference {{{path}}}: '{'.'.join(trail)}' is a value, "
            f"it has no '{rest}'"
        )
    return node


def _check_spec(value: Value, path: str, spec: str, where: str) -> None:
    if value.kind == "word" and spec:
        raise ReportParamsError(
            f"{where}: {{{path}:{spec}}}: {path} is a word, not a number; drop ':{spec}'"
        )
    if value.kind == "number" and not _NUMBER_SPEC.match(spec):
        raise ReportParamsError(
            f"{where}: {{{path}:{spec}}}: '{spec}' is not a number format: write e.g. '.2f', "
            "'+.2f', '.3g', ',d' or '.0%' (width and precision at most two digits)"
        )


def _format(value: Any, kind: str, spec: str) -> str:
    if isinstance(value, NotApplicable):
        return str(value)
    if kind == "word":
        return _MARKDOWN.sub(r"\\\1", str(value))
    if isinstance(value, float) and not math.isfinite(value):
        return str(NotApplicable())
    if spec.endswith("d"):
        if float(value) != int(value):
            return format(float(value), spec[:-1] + "g")
        value = int(value)
    return format(value, spec)


def _where(params: ReportParams, key: str) -> str:
    return f"{params.source}: notes.{key}"


def check_notes(params: ReportParams) -> None:
    """Check every reference in the notes of ``params`` (names and specs; values are read when the
    report is built); raises :class:`ReportParamsError` naming the note and the reference."""
    tree = reference_tree(params)
    for key, text in params.notes.model_dump().items():
        where = _where(params, key)
        for _, path, spec in references(text, where):
            if path is not None:
                _check_spec(_resolve(tree, path, where), path, spec, where)


def render(text: str, tree: Tree, tables: Tables, where: str = "notes") -> str:
    """``text`` with every reference replaced by its value from ``tables``."""
    out = []
    for literal, path, spec in references(text, where):
        out.append(literal)
        if path is not None:
            value = _resolve(tree, path, where)
            _check_spec(value, path, spec, where)
            out.append(_format(value.read(tables), value.kind, spec))
    return "".join(out)


def render_notes(params: ReportParams, folder: str | Path) -> Notes:
    """The notes of ``params`` with their references filled in from ``folder/tables``."""
    tree, tables = reference_tree(params), Tables(folder)
    rendered: Mapping[str, str] = {
        key: render(text, tree, tables, _where(params, key))
        for key, text in params.notes.model_dump().items()
    }
    return Notes(**rendered)
