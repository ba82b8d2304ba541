"""Export an executed report notebook to a self-contained HTML file and print it to PDF.

The HTML hides all code, embeds every image (``data:image/png;base64``), loads nothing from the
internet (no require.js or mermaid from a CDN; MathJax from jupyter-server-mathjax's local copy
when installed) and carries a small "short paper" stylesheet. The PDF is printed from that HTML
by headless Chromium; without a Chromium the HTML is still written and the message says how to
get the PDF. Both files are written atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2
import nbformat

from alphaprune.atomic import atomic_target, atomic_write_bytes
from alphaprune.errors import ExportError

__all__ = [
    "ExportResult",
    "ExportError",
    "export_report",
    "to_html",
    "html_to_pdf",
    "find_chromium",
]

#: Executable names tried, in order, by :func:`find_chromium`.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PDF_HINT = "install Chromium for the PDF ('sudo apt-get install chromium') and rerun"

REPORT_CSS = """
body.jp-Notebook, main { background: #fff; }
main {
  max-width: 46em; margin: 0 auto; padding: 1.5em 1em 3em;
  font-family: "DejaVu Serif", "Liberation Serif", Georgia, "Times New Roman", serif;
  font-size: 11pt; line-height: 1.45; color: #111;
}
.jp-RenderedHTMLCommon, .jp-RenderedMarkdown, .jp-RenderedHTMLCommon p,
.jp-RenderedHTMLCommon li, .jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th {
  font-family: inherit; font-size: 11pt; line-height: 1.45; color: #111;
}
.jp-Cell, .jp-OutputArea-output, .jp-RenderedHTMLCommon { padding: 0; }
.jp-OutputPrompt, .jp-InputPrompt { display: none; }
.jp-RenderedHTMLCommon h1, .jp-RenderedHTMLCommon h2, .jp-RenderedHTMLCommon h3 {
  font-family: inherit; color: #111; break-after: avoid;
}
/* block layout (not flex) so that Chromium can keep a heading with what follows it */
.jp-Cell, .jp-Cell-outputWrapper, .jp-OutputArea, .jp-OutputArea-child, .jp-OutputArea-output {
  display: block;
}
.jp-OutputArea-output, .jp-RenderedHTML, .jp-RenderedHTMLCommon {
  overflow: visible; max-height: none;
}
.jp-RenderedHTMLCommon h1 { font-size: 1.7em; text-align: center; margin: 0.2em 0 0.3em; }
.jp-RenderedHTMLCommon h2 { font-size: 1.3em; margin-top: 1.4em; border: none; }
.jp-RenderedHTMLCommon h3 { font-size: 1.1em; margin-top: 1.1em; }
.report-byline { text-align: center; color: #444; margin-bottom: 1.5em; }
/* a group (heading, prose, its table) may break between its parts: keeping a whole section on
   one page pushed it to the next and left half-empty pages; each table and figure stays whole */
.report-keep { break-inside: auto; }
.report-keep > :first-child { break-after: avoid; }
figure.report-figure img { max-height: 225mm; width: auto; }
figure.report-figure { margin: 0.8em auto; text-align: center; break-inside: avoid; }
figure.report-figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption, .report-table caption {
  font-size: 0.92em; color: #222; margin-top: 0.4em; text-align: center; caption-side: bottom;
}
figcaption b, .report-table caption b { font-weight: bold; }
.jp-RenderedHTMLCommon table.report-table, table.report-table {
  margin: 1em auto; border-collapse: collapse; font-size: 0.9em; break-inside: avoid;
  table-layout: auto; width: auto; max-width: 100%;
}
.jp-RenderedHTMLCommon table.report-table th, .jp-RenderedHTMLCommon table.report-table td,
table.report-table th, table.report-table td {
  padding: 0.2em 0.4em; border: none; text-align: right; font-size: 0.9em;
  font-family: inherit;
}
.jp-RenderedHTMLCommon table.report-table td:first-child,
.jp-RenderedHTMLCommon table.report-table th:first-child { text-align: left; }
table.report-table thead th { border-bottom: 1px solid #000; }
table.report-table tbody tr:last-child td { border-bottom: 1px solid #000; }
table.report-table { border-top: 1.5px solid #000; }
/* no line breaks inside numbers or short phrases: table cells wrap only at the spaces that the
   table builder left breakable (keep_together); numbers in captions never break */
.nobreak { white-space: nowrap; }
table.report-table.report-compact th, table.report-table.report-compact td {
  font-size: 0.8em; padding: 0.15em 0.25em;
}
table.report-table.report-compact td:first-child { min-width: 5.5em; }
table.report-table td:first-child { min-width: 7em; }
table.report-table th { vertical-align: bottom; }
@page { size: A4; margin: 18mm 16mm; }
@media print { main { max-width: none; padding: 0; } }
"""

# Extends nbconvert's lab template: no CDN scripts (require.js, mermaid), optional local MathJax.
_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
{%- if resources.mathjax_url -%}{{ super() }}{%- endif -%}
{%- endblock html_head_js_mathjax -%}
{%- block html_head_css -%}<style type="text/css">{{ resources.report_css }}</style>{%- endblock -%}
"""


@dataclass
class ExportResult:
    """What :func:`export_report` wrote; ``pdf`` is None when it could not be made."""

    html: Path
    pdf: Path | None
    message: str


def local_mathjax_url() -> str:
    """``file://`` URL of jupyter-server-mathjax's MathJax 2 (``""`` when it is not installed)."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        return ""
    script = Path(jupyter_server_mathjax.__file__).parent / "static" / "MathJax.js"
    if not script.is_file():
        return ""
    return script.as_uri() + "?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def to_html(notebook: str | Path, html: str | Path, title: str | None = None) -> Path:
    """Write the executed ``notebook`` as report HTML (no code, images embedded) to ``html``."""
    from nbconvert import HTMLExporter

    notebook, html = Path(notebook), Path(html)
    nb = nbformat.read(notebook, as_version=4)
    if title:
        nb.metadata["title"] = title
    exporter = HTMLExporter(
        extra_loaders=[jinja2.DictLoader({"alphaprune_report.html.j2": _TEMPLATE})],
        template_file="alphaprune_report.html.j2",
        exclude_input=True,
        exclude_markdown=True,  # the notebook's own notes; the report is in its outputs
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
        mathjax_url=local_mathjax_url(),
    )
    resources = {"report_css": REPORT_CSS, "metadata": {"name": title or notebook.stem}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    atomic_write_bytes(html, body.encode("utf-8"))
    return html


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable on ``PATH``, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def html_to_pdf(html: str | Path, pdf: str | Path, chromium: str, timeout: float = 180) -> Path:
    """Print ``html`` to ``pdf`` with headless ``chromium`` (atomically); ExportError on failure."""
    html, pdf = Path(html).resolve(), Path(pdf)
    pdf.parent.mkdir(parents=True, exist_ok=True)
    with (
        atomic_target(pdf, suffix=".tmp.pdf") as tmp,
        tempfile.TemporaryDirectory(prefix="alphaprune-chromium-") as profile,
    ):
        command = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            # let MathJax typeset before printing (virtual time: fast when there is nothing to do)
            "--virtual-time-budget=10000",
            f"--print-to-pdf={tmp}",
            html.as_uri(),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ExportError(
                f"{chromium} did not finish printing {html} within {timeout:.0f} s"
            ) from None
        if done.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            tail = "\n".join((done.stderr or "").strip().splitlines()[-5:])
            raise ExportError(
                f"{chromium} failed to print {html} to PDF (exit code {done.returncode}): {tail}"
            )
    return pdf


def export_report(
    notebook: str | Path, out_dir: str | Path, title: str | None = None, stem: str = "report"
) -> ExportResult:
    """Write ``out_dir/report.html`` from the executed ``notebook`` and, with Chromium, the PDF."""
    out_dir = Path(out_dir)
    html = to_html(notebook, out_dir / f"{stem}.html", title=title)
    chromium = find_chromium()
    if chromium is None:
        stale = out_dir / f"{stem}.pdf"
        stale.unlink(missing_ok=True)  # an old PDF would not match the new HTML
        return ExportResult(html, None, f"wrote {html}; no Chromium found: {PDF_HINT}")
    pdf = html_to_pdf(html, out_dir / f"{stem}.pdf", chromium)
    return ExportResult(html, pdf, f"wrote {html} and {pdf}")
