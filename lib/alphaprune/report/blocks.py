"""Deprecated alias of :mod:`alphaprune.report.sections` (goes next release)."""

from alphaprune.report.sections import *  # noqa: F403

__import__("warnings").warn("use alphaprune.report.sections", DeprecationWarning, stacklevel=2)
