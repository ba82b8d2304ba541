"""The report's section headings, numbered, in one place: :class:`~alphaprune.report.sections.Report`
shows them, the figure registry (:mod:`alphaprune.report.outputs`) places figures under them, and
the report notebook shows whatever the sections show (its own markdown holds no heading)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Heading", "HEADINGS"]


@dataclass(frozen=True)
class Heading:
    """A numbered section heading: ``1.1 Weights against the original model``."""

    number: str
    title: str

    @property
    def text(self) -> str:
        """The heading as shown: number and title."""
        return f"{self.number} {self.title}"

    @property
    def level(self) -> int:
        """The HTML heading level: ``<h2>`` for a section (``2.``), ``<h3>`` for ``2.1``."""
        return 1 + len([part for part in self.number.split(".") if part])

    def __str__(self) -> str:
        return self.text


PROGRESS = Heading("1.", "Weekly progress")
WEIGHTS = Heading("1.1", "Weights against the original model")
RECONSTRUCTION = Heading("1.2", "Reconstruction")
SHRINK = Heading("1.3", "Multiplying the weights: the smaller model")
STUDY = Heading("1.4", "Study: does the α schedule pay?")
GPU = Heading("2.", "Addendum: GPU test results")
GPU_RESULTS = Heading("2.1", "Measured on another machine")
PLAN = Heading("3.", "Plan")

#: Every heading, in the report's order.
HEADINGS: tuple[Heading, ...] = (
    PROGRESS,
    WEIGHTS,
    RECONSTRUCTION,
    SHRINK,
    STUDY,
    GPU,
    GPU_RESULTS,
    PLAN,
)
