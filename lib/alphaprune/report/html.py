"""The report's HTML and text: :class:`ReportBuilder` (numbered figures and tables, captions,
headings, blocks a page break keeps together) and the text helpers it uses. All text is Unicode
(α), so no MathJax is needed; images are embedded, so the exported HTML is self-contained."""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["ReportBuilder", "alpha_text", "caption_html", "keep_together"]


def alpha_text(alpha: float | None) -> str:
    """``α = 0.1`` for a gated model, ``no gates`` for the original (None)."""
    if alpha is None or (isinstance(alpha, float) and math.isnan(alpha)):
        return "no gates"
    return f"α = {float(alpha):g}"


class ReportBuilder:
    """HTML pieces of the report with automatic figure and table numbers.

    Each method returns an ``IPython.display.HTML`` object (display it, or let it be the cell's
    value); :meth:`markdown` returns ``IPython.display.Markdown``. Images are embedded as base64
    PNG, so the exported HTML is self-contained.
    """

    def __init__(self) -> None:
        self.figures = 0
        self.tables = 0

    @staticmethod
    def _html(text: str):
        from IPython.display import HTML

        return HTML(text)

    def title(self, title: str, byline: str = ""):
        """The report's title (``<h1>``) and an optional byline (author, date)."""
        text = f"<h1>{html.escape(title)}</h1>"
        if byline:
            text += f'<p class="report-byline">{html.escape(byline)}</p>'
        return self._html(text)

    def section(self, title: str, level: int = 2):
        """A section heading (``<h2>`` by default)."""
        return self._html(f"<h{level}>{html.escape(title)}</h{level}>")

    @staticmethod
    def markdown(text: str):
        """Prose in Markdown (from the params file); empty text shows nothing. ``α = 0`` never
        breaks across lines."""
        from IPython.display import Markdown

        return Markdown(
            re.sub(r"α[ \t]*\n?[ \t]*=[ \t]*\n?[ \t]*(?=[-+]?\d)", "α\u00a0=\u00a0", text or "")
        )

    def group(self, *parts):
        """Several pieces (HTML or Markdown objects) as one block that a page break avoids
        splitting, e.g. a heading, its prose and its figure."""
        from nbconvert.filters.markdown_mistune import markdown2html_mistune

        pieces = []
        for part in parts:
            if part is None:
                continue
            if type(part).__name__ == "Markdown":
                pieces.append(markdown2html_mistune(part.data or ""))
            else:
                pieces.append(part.data if hasattr(part, "data") else str(part))
        return self._html('<div class="report-keep">' + "".join(pieces) + "</div>")

    def figure(self, path: str | Path, caption: str, width: str = "100%"):
        """``<figure>`` with the PNG at ``path`` embedded and "Figure N. caption" under it."""
        self.figures += 1
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        return self._html(
            f'<figure class="report-figure" id="figure-{self.figures}">'
            f'<img src="data:image/png;base64,{data}" style="width:{width}" '
            f'alt="Figure {self.figures}"/>'
            f"<figcaption><b>Figure {self.figures}.</b> {caption_html(caption)}</figcaption>"
            "</figure>"
        )

    def table(
        self,
        df: pd.DataFrame,
        caption: str,
        formats: Mapping[str, str] | None = None,
        columns: Mapping[str, str] | None = None,
        compact: bool = False,
    ):
        """A booktabs-style table with "Table N. caption" above it.

        ``formats``: column -> format spec (``".3g"``); ``columns``: column -> header shown
        (only those columns, in that order, when given); ``compact``: smaller type and padding,
        for a table with many columns (Table 1) to fit the page's width.
        """
        self.tables += 1
        frame = df.copy()
        for column, spec in (formats or {}).items():
            if column in frame:
                frame[column] = frame[column].map(lambda v, s=spec: _fmt(v, s))
        if columns:
            frame = frame[[c for c in columns if c in frame]].rename(columns=dict(columns))
        frame = frame.map(lambda v: keep_together(v) if isinstance(v, str) else v)
        classes = ["report-table", "report-compact"] if compact else "report-table"
        body = frame.to_html(index=False, border=0, classes=classes, na_rep="—", escape=True)
        caption_tag = (
            f'<caption style="caption-side: top"><b>Table {self.tables}.</b> '
            f"{caption_html(caption)}</caption>"
        )
        body = body.replace(">\n  <thead>", ">\n" + caption_tag + "\n  <thead>", 1)
        return self._html(body)


#: Numbers (with exponent, unit-like suffixes, ×) that a line must not break inside.
_NUMBER = re.compile(r"[-+]?\d[\d.,]*(?:[eE][-+]?\d+)?(?:\s?(?:×|x)\s?\d+)?(?:\s?(?:dB|%|ms|px))?")
_GLUE = re.compile(r"[ \t]*([=≤≥<>])[ \t]*|[ \t]+(→)")


def keep_together(text: str) -> str:
    """``text`` with non-breaking spaces where a line must not break: around ``=``, before
    ``→`` (a line may break after it) and after a short word before a number (``α = 0``, ``lr 0.01``, ``rate 0.3``)."""
    text = _GLUE.sub(lambda m: f"\u00a0{m.group(1)}\u00a0" if m.group(1) else "\u00a0→", text)
    return re.sub(r"\b(\w{1,5}) (?=[-+]?\d)", "\\1\u00a0", text)


def caption_html(caption: str) -> str:
    """Escaped caption text whose numbers (``3e-07``, ``128×128``, ``25.07 dB``) never break."""
    out, last = [], 0
    for match in _NUMBER.finditer(caption):
        out.append(html.escape(caption[last : match.start()]))
        out.append(f'<span class="nobreak">{html.escape(match.group(0))}</span>')
        last = match.end()
    out.append(html.escape(caption[last:]))
    return "".join(out)


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)
