"""ARCHITECTURE.md stays true: its package tree names every module of each sub-package and no
module that does not exist, and every file or folder its prose points at exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "lib" / "alphaprune"
DOC = (ROOT / "ARCHITECTURE.md").read_text()


def _tree() -> dict[str, set[str]]:
    """{package: modules named} from the first code block's ``pkg/  a · b · c  imports: …``."""
    block = DOC.split("```")[1]
    packages: dict[str, set[str]] = {}
    current = None
    for line in block.splitlines():
        line = re.sub(r"\(.*?\)", "", line)  # "(the run store)" is prose, not a module
        head = re.match(r"\s+([a-z_]+)/\s", line)
        if head:
            current = head.group(1)
            packages[current] = set()
            line = line[head.end() :]
        if current is None:
            continue
        line = line.split("imports:")[0]
        packages[current] |= set(re.findall(r"\b[a-z_]+\b", line))
    return packages


def test_the_tree_names_exactly_the_modules_of_each_package() -> None:
    tree = _tree()
    assert set(tree) == {p.name for p in LIB.iterdir() if (p / "__init__.py").is_file()}
    for package, named in tree.items():
        actual = {
            p.stem if p.suffix == ".py" else p.name
            for p in (LIB / package).iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
        }
        assert named - actual == set(), f"{package}/: ARCHITECTURE.md names missing modules"
        assert actual - named == set(), f"{package}/: modules ARCHITECTURE.md does not name"


def test_every_path_it_points_at_exists() -> None:
    for link in re.findall(r"\]\(([^)#]+)\)", DOC):
        assert (ROOT / link).exists(), link
    for path in re.findall(r"`((?:tests|docs|benchmarks|notebooks|params)/[\w./-]+)`", DOC):
        assert (ROOT / path).exists(), path
