"""Check a built report's prose against its own tables, reading only the HTML.

Used by tests/test_report_prose.py on the CI report, and by hand on a week's report::

    .venv/bin/python tests/prose_check.py params/week09.yaml reports/week09/report.html

Each note of the params file is turned into a pattern (its literal text, every reference a
group), matched against the report's text, and every captured value is compared with what the
HTML tables and captions show: a value a table shows must read the same; a difference or ratio of
two table cells must agree within the cells' rounding; a comparison word must agree with the
cells' order. Nothing here uses :mod:`alphaprune.report.prose` to compute a value.
"""

from __future__ import annotations

import html as html_lib
import re
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from alphaprune.report.params import load_report_params
from alphaprune.report.prose import references
from alphaprune.report.schema import ReportParams

#: Table 1's header of each run value.
RUN_COLUMNS = {
    "label": "run",
    "schedule": "α schedule",
    "lr": "base lr",
    "weight_decay": "weight decay",
    "epochs": "epochs",
    "keep": "keep",
    "final_alpha": "final α",
    "train_loss": "train loss",
    "val_loss": "val. loss",
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "status": "status",
}


def normal(text: str) -> str:
    """Text as read: entities decoded, no-break spaces as spaces, runs of spaces as one."""
    return re.sub(r"\s+", " ", html_lib.unescape(text).replace("\xa0", " ")).strip()


@dataclass
class Table:
    caption: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)

    def cell(self, key_column: str, key: str, column: str) -> str:
        i, j = self.headers.index(key_column), self.headers.index(column)
        matches = [row[j] for row in self.rows if row[i] == key]
        if len(matches) != 1:
            raise AssertionError(f"{len(matches)} rows '{key}' in table '{self.caption[:40]}'")
        return matches[0]


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[Table] = []
        self.captions: list[str] = []
        self.text: list[str] = []
        self._table: Table | None = None
        self._cell: list[str] | None = None
        self._in: str = ""
        self._skip: str = ""

    def handle_starttag(self, tag, attrs):
        if tag in ("style", "script", "title"):
            self._skip = tag
        elif tag == "table":
            self._table = Table()
        elif tag in ("td", "th", "caption", "figcaption"):
            self._cell, self._in = [], tag
        elif tag == "tr" and self._table is not None:
            self._row: list[str] = []

    def handle_endtag(self, tag):
        if tag == self._skip:
            self._skip = ""
        elif tag in ("td", "th", "caption", "figcaption") and self._cell is not None:
            self._end_cell(tag, normal("".join(self._cell)))
            self._cell = None
        elif tag == "tr" and self._table is not None:
            if self._row and not self._table.headers:
                self._table.headers = self._row
            elif self._row:
                self._table.rows.append(self._row)
        elif tag == "table" and self._table is not None:
            self.tables.append(self._table)
            self._table = None
        elif tag in ("p", "li", "h1", "h2", "h3", "div"):
            self.text.append(" ")

    def _end_cell(self, tag: str, text: str) -> None:
        if tag == "figcaption":
            self.captions.append(text)
        elif self._table is not None and tag == "caption":
            self._table.caption = text
        elif self._table is not None:
            self._row.append(text)

    def handle_data(self, data):
        if self._skip:
            return
        if self._cell is not None:
            self._cell.append(data)
        elif self._table is None:
            self.text.append(data)


@dataclass
class Report:
    """The parts of a report's HTML the check reads."""

    tables: list[Table]
    captions: list[str]
    text: str

    @classmethod
    def read(cls, path: str | Path) -> Report:
        parser = _Parser()
        parser.feed(Path(path).read_text(encoding="utf-8"))
        return cls(parser.tables, parser.captions, normal("".join(parser.text)))

    def table(self, starts: str) -> Table:
        found = [t for t in self.tables if starts in t.caption]
        if not found:
            raise AssertionError(f"no table whose caption has {starts!r}")
        return found[0]


def _pattern(text: str, key: str) -> tuple[re.Pattern, list[tuple[str, str]]]:
    """A pattern for a note as the report shows it: literal parts (Markdown emphasis and list
    markers dropped), each reference a group."""
    parts, refs = [], []
    text = re.sub(r"^\s*(?:[-*+]|\d+\.)\s+", "", text, flags=re.M)
    for literal, path, spec in references(text, key):
        plain = normal(literal.replace("**", "").replace("*", ""))
        words = [re.escape(w) for w in plain.split(" ") if w]
        parts.append(r"\s*" + r"\s+".join(words) + r"\s*" if words else r"\s*")
        if path is not None:
            parts.append(r"(.+?)")
            refs.append((path, spec))
    # the note ends where the report's text goes on (a lazy group must not stop inside "0.0001.")
    return re.compile("".join(parts) + r"(?=\s|$)", re.S), refs


def _num(text: str) -> float:
    return float(text.replace(",", "").replace("×", "").strip())


def _close(a: float, b: float, rel: float = 0.0, absolute: float = 0.0) -> bool:
    return abs(a - b) <= absolute + rel * max(abs(a), abs(b)) + 1e-12


class Checker:
    """Compares the captured values of one report with its tables."""

    def __init__(self, report: Report, params: ReportParams) -> None:
        self.report = report
        self.labels = {"baseline": "baseline (original)"}
        self.labels.update({e.name: e.label or e.name for e in params.experiments})
        self.runs = report.table("Runs of the week")
        self.checked: list[str] = []

    def run_cell(self, run: str, column: str) -> str:
        return self.runs.cell("run", normal(self.labels[run]), RUN_COLUMNS[column])

    def _split_run(self, rest: str) -> tuple[str, str]:
        """``name.rest`` with the longest run name (names may hold dots)."""
        names = sorted((n for n in self.labels if rest.startswith(n + ".")), key=len)
        run = names[-1]
        return run, rest[len(run) + 1 :]

    def check(self, path: str, shown: str) -> None:
        """Raise AssertionError when ``shown`` (the value in the prose) disagrees with the
        tables."""
        head, _, rest = path.partition(".")
        getattr(self, f"_check_{head}")(rest, shown.strip())
        self.checked.append(f"{{{path}}} = {shown.strip()}")

    def _check_run(self, rest: str, shown: str) -> None:
        run, what = self._split_run(rest)
        if what in RUN_COLUMNS:
            expected = self.run_cell(run, what)
            assert shown == expected or (shown.startswith("n/a") and expected == "—"), (
                f"run.{rest}: prose {shown!r}, Table 1 {expected!r}"
            )
            return
        kind, other = what.split(".", 1)
        column = "psnr" if kind.startswith("psnr") else "val_loss"
        cells = [self.run_cell(r, column) for r in (run, other)]
        if shown.startswith("n/a"):
            assert "—" in cells, f"run.{rest}: prose {shown!r}, Table 1 {cells}"
            return
        a, b = (_num(c) for c in cells)
        expected = {
            "psnr_vs": (a - b, 0.0101, 0.0),
            "psnr_gap": (abs(a - b), 0.0101, 0.0),
            "loss_ratio": (a / b, 0.0, 0.02),
            "loss_factor": (max(a / b, b / a), 0.0, 0.02),
        }
        if kind in expected:
            value, absolute, rel = expected[kind]
            assert _close(_num(shown), value, rel, absolute), (
                f"run.{rest}: prose {shown!r}, from Table 1 {value:.4g} ({cells})"
            )
        elif kind in ("psnr_cmp", "loss_cmp"):
            word = "higher than" if a > b else "lower than" if a < b else None
            assert word is None or shown == word, f"run.{rest}: prose {shown!r}, Table 1 {cells}"
        else:
            raise AssertionError(f"unchecked reference run.{rest}")

    def _check_best(self, rest: str, shown: str) -> None:
        rows = [
            (float(row[self.runs.headers.index("PSNR (dB)")]), row)
            for row in self.runs.rows
            if row[self.runs.headers.index("status")] == "finished"
            and row[0] != self.labels["baseline"]
        ]
        psnr, row = max(rows, key=lambda r: r[0])
        expected = {"psnr": f"{psnr:.2f}", "label": row[0]}[rest]
        assert normal(shown) == expected, (f"best.{rest}", shown, expected)

    def _check_weights(self, rest: str, shown: str) -> None:
        run, what = self._split_run(rest)
        table = self.report.table("L2 norm of each pruned model's kept weights")
        header = {
            "min_ratio": "smallest ratio",
            "max_ratio": "largest ratio",
            "min_layer": "layer (smallest)",
            "max_layer": "layer (largest)",
        }[what]
        expected = table.cell("run", normal(self.labels[run]), header)
        assert shown == expected, (f"weights.{rest}", shown, expected)

    def _check_shrink(self, rest: str, shown: str) -> None:
        table = self.report.table("Parameters and FLOPs")
        columns = {"params_ratio": "params / original", "flops_ratio": "FLOPs / original"}
        if rest in columns:
            expected = table.cell("model", "shrunk", columns[rest])
            assert shown == expected, (f"shrink.{rest}", shown, expected)
        elif rest in ("max_abs_diff", "tolerance", "within"):
            assert re.search(rf"(?<![\d.]){re.escape(shown)}(?![\d])", table.caption), (
                f"shrink.{rest}: {shown!r} not in {table.caption!r}"
            )
        else:
            raise AssertionError(f"unchecked reference shrink.{rest}")

    def _check_gpu(self, rest: str, shown: str) -> None:
        table = self.report.table("Time per batch of")
        if rest == "device":
            assert shown in table.caption, (rest, shown)
            return
        model, what = rest.split(".")
        ms = {m: _num(table.cell("model", m, "ms / batch")) for m in ("original", model)}
        if what == "ms":
            assert shown == table.cell("model", model, "ms / batch"), (rest, shown)
        elif what == "speedup":
            assert _close(_num(shown), ms["original"] / ms[model], rel=0.01), (rest, shown)
        elif what == "speed":
            p10, p90 = (_num(table.cell("model", model, c)) for c in ("p10", "p90"))
            o10, o90 = (_num(table.cell("model", "original", c)) for c in ("p10", "p90"))
            word = (
                "faster than"
                if p90 < o10
                else "slower than"
                if p10 > o90
                else "within the timing noise of"
            )
            assert shown == word, (rest, shown, word)
        else:
            raise AssertionError(f"unchecked reference gpu.{rest}")

    def _check_recon(self, rest: str, shown: str) -> None:
        caption = next(c for c in self.report.captions if "(a) Original image" in c)
        if rest == "alpha":
            assert f"α = {shown}" in caption, (rest, shown, caption)
        elif rest in ("run", "image"):
            assert normal(shown) in caption, (rest, shown, caption)
        else:
            raise AssertionError(f"unchecked reference recon.{rest}")

    def _check_model(self, rest: str, shown: str) -> None:
        assert shown in self.report.text, (rest, shown)


def check_report(params_file: str | Path, html_file: str | Path) -> list[str]:
    """Every reference of the params' notes, checked against the report's tables; returns
    ``{path} = value`` lines (raises AssertionError at the first disagreement)."""
    params = load_report_params(params_file)
    report = Report.read(html_file)
    checker = Checker(report, params)
    for key, text in params.notes.model_dump().items():
        pattern, refs = _pattern(text, key)
        match = pattern.search(report.text)
        assert match, f"notes.{key}: its rendered text is not in the report"
        for (path, _), shown in zip(refs, match.groups(), strict=True):
            checker.check(path, shown)
    return checker.checked


if __name__ == "__main__":
    for line in check_report(sys.argv[1], sys.argv[2]):
        print(line)
    print("every reference agrees with the tables")
