"""Solar Data Tools as sdt-build knows it: the pinned set per target Python, what it provides,
who in it needs what, and the facts about SDT every stage relies on.

Data and accessors only. Each ``py3.X/`` folder holds what ``make constraints``
(``sdt_build/maintainer/constraints.py``) wrote for that target: the worker lock, the
client-side lock, per-package metadata and import names.
"""

from __future__ import annotations

import ast
import json
import math
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from sdt_build.target import target

HERE = Path(__file__).parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")
URL_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*@\s*(\S+)")
SDT_PACKAGE = "solar-data-tools"
# What one pipeline run costs, measured with sdt-build's upstream fixes and without
# (``python -m sdt_build.maintainer.pipeline_cost``): sizing and every message about memory come from it.
PIPELINE_COST = json.loads((HERE / "pipeline-cost.json").read_text())
PIPELINE_PEAK_BYTES = int(PIPELINE_COST["with_fixes"]["peak_gib"] * 2**30)
UNFIXED_PEAK_BYTES = int(PIPELINE_COST["without"]["peak_gib"] * 2**30)
PIPELINE_PEAK = (f"one SDT pipeline run peaks near {PIPELINE_PEAK_BYTES / 2**30:.1f} GiB "
                 f"({UNFIXED_PEAK_BYTES / 2**30:.1f} GiB without sdt-build's upstream fixes)")
# A worker's memory by default: room for the largest measured pipeline run 2.5 times over (the Dask
# worker itself, longer sites, and the nanny's pause at 80 %), in half GiB.
WORKER_MEMORY = f"{math.ceil(PIPELINE_PEAK_BYTES * 2.5 / 2**29) / 2:g}GiB"


def folder(python: str) -> Path:
    return HERE / f"py{python}"


def available() -> tuple[str, ...]:
    return tuple(sorted(p.name[2:] for p in HERE.glob("py3.*") if (p / "worker.txt").exists()))


def read_lock(path: Path) -> dict[str, str]:
    """``name==version`` lines of a lock file as {canonical name: version}."""
    return read_lock_text(path.read_text())


def read_lock_text(text: str) -> dict[str, str]:
    return _read_lines(text, PIN)


def read_lock_urls(text: str) -> dict[str, str]:
    """``name @ URL`` lines of a lock (direct-URL requirements, as pip-compile and uv write them) as
    {canonical name: URL}."""
    return _read_lines(text, URL_PIN)


def _read_lines(text: str, pattern: re.Pattern) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        match = pattern.match(line.strip())
        if match:
            found[canonicalize_name(match.group(1))] = match.group(2)
    return found


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
                              SDT_PACKAGE: pins(python)[SDT_PACKAGE]}.items():
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


PIPELINE_SOURCE = "solardatatools/data_handler.py"  # where DataHandler.run_pipeline is defined


def pipeline_parameters(source: str) -> tuple[str, ...] | None:
    """The arguments ``DataHandler.run_pipeline`` takes, read from the text of SDT's data_handler.py
    (None when it takes any keyword, or cannot be found there)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name == "DataHandler":
            for method in node.body:
                if isinstance(method, ast.FunctionDef) and method.name == "run_pipeline":
                    if method.args.kwarg is not None:
                        return None
                    args = method.args.posonlyargs + method.args.args + method.args.kwonlyargs
                    return tuple(a.arg for a in args[1:])
    return None


@lru_cache(maxsize=None)
def run_pipeline_arguments(python: str) -> tuple[str, tuple[str, ...] | None]:
    """SDT's version and the arguments its ``DataHandler.run_pipeline`` takes: of SDT installed here
    when it is (a LocalClient runs that one), else of the version pinned for ``python`` (read from
    its wheel when the constraints were made)."""
    import importlib.metadata
    import importlib.util

    try:
        spec = importlib.util.find_spec("solardatatools")
        source = Path(next(iter(spec.submodule_search_locations))) / Path(PIPELINE_SOURCE).name
        return importlib.metadata.version(SDT_PACKAGE), pipeline_parameters(source.read_text("utf-8"))
    except (AttributeError, TypeError, StopIteration, OSError, ValueError, SyntaxError,
            importlib.metadata.PackageNotFoundError):
        info = metadata(python)[SDT_PACKAGE]
        return info["version"], info.get("run_pipeline")


@lru_cache(maxsize=None)
def module_index(python: str) -> frozenset[str]:
    """Top-level import names provided by SDT's pinned set for ``python``."""
    return frozenset(line.strip() for line in (folder(python) / "modules.txt").read_text().splitlines()
                     if line.strip())


@dataclass(frozen=True)
class Minimum:
    """SDT needs ``needs`` although no pinned package's metadata says so (needs.toml ``[[minimum]]``)."""

    needs: Requirement
    needed_by: str
    reason: str
    source: str


@dataclass(frozen=True)
class AbiBreak:
    """Releases of ``package`` below ``first_good`` really need ``needs`` (needs.toml ``[[abi]]``)."""

    package: str
    first_good: Version
    needs: Requirement
    reason: str
    source: str
    measured: str

    def applies(self, name: str, version: Version) -> bool:
        return canonicalize_name(name) == self.package and version < self.first_good


@lru_cache(maxsize=None)
def catalog() -> tuple[tuple[Minimum, ...], tuple[AbiBreak, ...]]:
    """The known minimum versions and ABI breaks of needs.toml, with the source of each."""
    data = tomllib.loads((HERE / "needs.toml").read_text("utf-8"))
    minimums = tuple(Minimum(Requirement(m["needs"]), canonicalize_name(m["needed_by"]), m["reason"], m["source"])
                     for m in data.get("minimum", ()))
    breaks = tuple(AbiBreak(canonicalize_name(a["package"]), Version(a["first_good"]), Requirement(a["needs"]),
                            a["reason"], a["source"], a["measured"]) for a in data.get("abi", ()))
    return minimums, breaks


class SdtSet:
    """SDT's pinned set for one target Python: its pins, and who in it needs what of each package."""

    def __init__(self, python: str):
        self.python = python
        self.pins = pins(python)
        self.meta = metadata(python)
        self.env = target(python).markers
        self.needs: dict[str, list[tuple[str, SpecifierSet]]] = {}
        for name, info in self.meta.items():
            for text in info["requires"]:
                self._add_need(f"{name} {info['version']}", text, "")
        for minimum in catalog()[0]:  # what SDT needs beyond its metadata (needs.toml)
            self._add_need(f"{minimum.needed_by} {self.pins[minimum.needed_by]}, a known minimum",
                           str(minimum.needs), "")

    def _add_need(self, who: str, text: str, extra: str) -> None:
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate({**self.env, "extra": extra}):
            return
        self.needs.setdefault(canonicalize_name(requirement.name), []).append((who, requirement.specifier))

    def extra_requirements(self, name: str, extra: str) -> list[Requirement]:
        info = self.meta.get(canonicalize_name(name), {})
        found = []
        for text in info.get("requires", ()):
            requirement = Requirement(text)
            if requirement.marker and "extra" in str(requirement.marker) \
                    and requirement.marker.evaluate({**self.env, "extra": extra}):
                found.append(requirement)
        return found


def catalog_lines(held: dict[str, str]) -> list[str]:
    """The catalog as constraint lines for a resolver, given the pins ``held`` fixed: every known
    minimum, and for each ABI break whose ``needs`` a held pin violates, its first good release."""
    minimums, breaks = catalog()
    lines = [str(m.needs) for m in minimums]
    for rule in breaks:
        pin = held.get(canonicalize_name(rule.needs.name))
        if pin is not None and not rule.needs.specifier.contains(pin, prereleases=True):
            lines.append(f"{rule.package}>={rule.first_good}")
    return lines
