"""The package version (read by pyproject.toml, checkpoints and the report's library hash)."""

__version__ = "0.1.0"
