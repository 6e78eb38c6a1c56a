"""Pinned SDT constraints per target Python, and what they provide.

Each ``py3.X/`` folder holds the files ``make constraints`` writes for that target.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).parent


def folder(python: str) -> Path:
    return HERE / f"py{python}"


@lru_cache(maxsize=None)
def module_index(python: str) -> frozenset[str]:
    """Top-level import names provided by SDT's pinned set for ``python``."""
    path = folder(python) / "modules.txt"
    if not path.exists():
        path = folder("3.11") / "modules.txt"
    return frozenset(line.strip() for line in path.read_text().splitlines() if line.strip())
