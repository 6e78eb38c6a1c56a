"""Pinned SDT constraints per target Python, and what they provide.

Each ``py3.X/`` folder holds what ``make constraints`` (``constraints/generate.py``) wrote for
that target: the worker lock, the client-side lock, per-package metadata and import names.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from packaging.utils import canonicalize_name

HERE = Path(__file__).parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def folder(python: str) -> Path:
    return HERE / f"py{python}"


def available() -> tuple[str, ...]:
    return tuple(sorted(p.name[2:] for p in HERE.glob("py3.*") if (p / "worker.txt").exists()))


def read_lock(path: Path) -> dict[str, str]:
    """``name==version`` lines of a lock file as {canonical name: version}."""
    return read_lock_text(path.read_text())


def read_lock_text(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        match = PIN.match(line.strip())
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


@lru_cache(maxsize=None)
def pins(python: str) -> dict[str, str]:
    """SDT's pinned worker set for ``python``."""
    return read_lock(folder(python) / "worker.txt")



def local_extra() -> list[str]:
    """The ``[local]`` extra: SDT and the parity packages at the image's versions, per target Python,
    so ``pip install "sdt-build[local]"`` gives a client that matches the image it builds."""
    pinned: dict[str, dict[str, str]] = {}  # name → python → version
    for python in available():
        for name, version in {**read_lock(folder(python) / "parity.txt"),
                              "solar-data-tools": pins(python)["solar-data-tools"]}.items():
            pinned.setdefault(name, {})[python] = version
    lines = []
    for name, versions in pinned.items():
        if len(set(versions.values())) == 1 and len(versions) == len(available()):
            lines.append(f"{name}=={next(iter(versions.values()))}")
        else:
            lines += [f"{name}=={v}; python_version == '{python}'" for python, v in versions.items()]
    return lines


@lru_cache(maxsize=None)
def metadata(python: str) -> dict[str, dict]:
    """Per pinned package: version, requires, requires_python, extras, modules, wheel."""
    return json.loads((folder(python) / "metadata.json").read_text())


@lru_cache(maxsize=None)
def module_index(python: str) -> frozenset[str]:
    """Top-level import names provided by SDT's pinned set for ``python``."""
    return frozenset(line.strip() for line in (folder(python) / "modules.txt").read_text().splitlines()
                     if line.strip())
