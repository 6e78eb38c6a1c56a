"""The dependency case set (dependency_cases.toml): each requirements file through `sdt-build check`
and through the resolver, on a copy of examples/local-csv.

The resolver runs as the lock does (uv, SDT's pins held, the catalog's facts) but without the
walk's caps, so its verdict is its own; verdicts are cached on disk by a hash of every input.
Used by tests/test_dependency_walk.py and benchmarks/bench_resolve.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import ROOT

from sdt_build import constraints
from sdt_build.cache import cache_root
from sdt_build.dependencies.precheck import Finding, precheck
from sdt_build.dependencies.resolve import lock
from sdt_build.runtime.errors import DependencyConflict
from sdt_build.userfolder.project import load_project

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CASES = Path(__file__).with_name("dependency_cases.toml")


@dataclass(frozen=True)
class Case:
    id: str
    requirements: str
    blamed: str
    transitive: bool = False


def cases() -> list[Case]:
    return [Case(**entry) for entry in tomllib.loads(CASES.read_text())["case"]]


def folder(case: Case, work: Path) -> Path:
    target = work / case.id
    shutil.copytree(ROOT / "examples" / "local-csv", target, ignore=shutil.ignore_patterns("__pycache__"))
    (target / "requirements.txt").write_text(case.requirements)
    return target


def check(case: Case, work: Path) -> tuple[float, list[Finding]]:
    """(seconds, findings) of the pre-check on the case."""
    project = load_project(folder(case, work), require_env=False)
    started = time.perf_counter()
    found = precheck(project)
    return time.perf_counter() - started, found


def resolver(case: Case, work: Path) -> dict:
    """The resolver's own verdict: {"ok": bool, "code", "cause", "fix"} (cached by input hash)."""
    python = "3.11"
    uv = subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(json.dumps([case.requirements, (constraints.folder(python) / "sdt.in").read_text(),
                                     constraints.pins(python), constraints.catalog_lines(constraints.pins(python)),
                                     uv, "wheels only"]).encode()).hexdigest()[:24]
    cached = cache_root() / "agreement" / f"{key}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    project = load_project(folder(case, work / "resolver"), require_env=False)
    try:
        lock(project, backend="uv", use_cache=False, findings=[], confirm=True, log_dir=work / "logs")
        verdict = {"ok": True, "code": None, "cause": None, "fix": None}
    except DependencyConflict as exc:
        verdict = {"ok": False, "code": exc.code, "cause": exc.cause, "fix": exc.fix}
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(verdict))
    return verdict
