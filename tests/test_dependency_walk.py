"""The dependency walk against the resolver, on the case set of benchmarks/dependency_cases.toml.

For each realistic requirements file, `check` (the pre-check with its walk through the indexes'
metadata) and the resolver (uv, as the lock runs it, without the walk's caps) must agree on
whether it locks, and when it does not, check must name the package to blame. The resolver's
verdicts are cached on disk by input hash, so a second run costs seconds. The two clashes the
walk was made for are fixed with the line check gives, and locked for real.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from benchmarks.dependency_cases import cases, check, folder, resolver
from packaging.version import Version

from sdt_build import constraints
from sdt_build.constraints import SdtSet, catalog
from sdt_build.dependencies.precheck import precheck
from sdt_build.dependencies.resolve import lock
from sdt_build.userfolder.project import load_project

CASES = cases()
PLACEHOLDER = re.compile(r"\bNAME\b|\{\w*\}|\bNone\b|\ba package\b|\bPACKAGE\b|\bVERSION\b|\?\?")


def test_the_case_set_is_large_and_half_transitive():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    conflicts = [c for c in CASES if c.blamed]
    assert sum(c.transitive for c in CASES) >= len(CASES) / 2 - len([c for c in CASES if not c.blamed]) / 2
    assert sum(c.transitive for c in conflicts) >= len(conflicts) / 2


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_check_agrees_with_the_resolver(tmp_path, case):
    _, found = check(case, tmp_path / "check")
    errors = [f for f in found if f.severity == "error"]
    verdict = resolver(case, tmp_path)
    assert (not errors) == verdict["ok"], ([f.paragraph() for f in found], verdict)
    assert bool(errors) == bool(case.blamed), [f.paragraph() for f in errors]
    if errors:
        assert case.blamed in {f.package for f in errors}, [f.paragraph() for f in errors]
    for text in [f.cause for f in found] + [f.fix for f in found] + [verdict["cause"] or "", verdict["fix"] or ""]:
        assert not PLACEHOLDER.search(text), text


@pytest.mark.parametrize("line, blamed, needed", [
    ("s3fs>=2024.3", "s3fs", "python-dateutil"),
    ("boto3>=1.28", "boto3", "python-dateutil"),
    ("pvfactors==1.5.2", "pvfactors", "pvlib"),
])
def test_a_named_clash_comes_with_a_fix_that_locks(tmp_path, line, blamed, needed):
    plug = folder(type(CASES[0])(blamed, line + "\n", blamed), tmp_path)
    (finding,) = [f for f in precheck(load_project(plug, require_env=False)) if f.severity == "error"]
    assert (finding.code, finding.package) == ("SDT-E230", blamed)
    assert f"needs {needed}<" in finding.cause and f"SDT's set pins {needed} {constraints.pins('3.11')[needed]}" \
        in finding.cause, finding.cause
    added = re.search(r"add `([^`]+)` to requirements.txt", finding.fix).group(1)
    assert added.startswith(needed) and "checked: then" in finding.fix
    (plug / "requirements.txt").write_text(f"{line}\n{added}\n")
    project = load_project(plug, require_env=False)
    findings = precheck(project)
    assert not [f for f in findings if f.severity == "error"], [f.paragraph() for f in findings]
    locked = lock(project, backend="uv", use_cache=False, findings=findings, log_dir=tmp_path / "logs")
    assert blamed in locked.pins and locked.pins[needed] != constraints.pins("3.11")[needed]


@pytest.mark.parametrize("requirements, blamed", [
    ("matplotlib>=3.8\nipympl==0.9.4\n", "ipympl"),  # ipympl 0.9.4 needs ipython<9
    ("pandas\nsmart-open[s3]\n", "smart-open"),  # smart-open[s3] → boto3 → botocore needs python-dateutil<3
])
def test_the_line_that_clashes_on_its_own_is_blamed_not_its_neighbour(tmp_path, requirements, blamed):
    plug = folder(type(CASES[0])(blamed, requirements, blamed), tmp_path)
    errors = [f for f in precheck(load_project(plug, require_env=False)) if f.severity == "error"]
    assert [(f.code, f.package) for f in errors] == [("SDT-E230", blamed)], [f.paragraph() for f in errors]
    assert "[s3]" in errors[0].cause or "smart-open" not in requirements


def test_check_resolve_confirms_a_clash_with_the_resolver_capped(tmp_path):
    from sdt_build.runtime.errors import DependencyConflict

    plug = folder(type(CASES[0])("boto3", "boto3\n", "boto3"), tmp_path)
    project = load_project(plug, require_env=False)
    findings = precheck(project)
    (finding,) = [f for f in findings if f.severity == "error"]
    assert finding.caps and finding.caps[0].startswith("boto3>=")
    with pytest.raises(DependencyConflict) as raised:
        lock(project, backend="uv", use_cache=False, findings=findings, confirm=True, log_dir=tmp_path)
    assert raised.value.code == "SDT-E220"
    assert raised.value.cause.startswith("boto3 → botocore") and "python-dateutil<3" in raised.value.cause


def test_the_walk_says_plainly_when_it_stops_early(tmp_path, monkeypatch):
    monkeypatch.setenv("SDT_WALK_BUDGET", "0.000001")
    plug = folder(type(CASES[0])("budget", "s3fs\n", ""), tmp_path)
    found = precheck(load_project(plug, require_env=False))
    (note,) = [f for f in found if f.code == "SDT-E231"]
    assert note.severity == "note" and "s3fs" in note.cause and "stopped early" in note.cause


@pytest.mark.parametrize("python", constraints.available())
def test_every_catalog_entry_still_holds_for_the_pinned_set(python):
    """The pinned set is not itself known to break, and each ABI entry still matters: SDT's pin of
    the package it constrains violates what the old releases need."""
    pins = constraints.pins(python)
    minimums, breaks = catalog()
    assert minimums and breaks
    for minimum in minimums:
        name = minimum.needs.name
        assert minimum.needed_by in pins and name in pins
        assert minimum.needs.specifier.contains(pins[name]), (python, minimum)
        assert minimum.source.startswith("https://") and minimum.reason
        assert (f"{minimum.needed_by} {pins[minimum.needed_by]}, a known minimum", minimum.needs.specifier) \
            in SdtSet(python).needs[name]
    for rule in breaks:
        if rule.package in pins:
            assert Version(pins[rule.package]) >= rule.first_good, (python, rule.package)
        assert not rule.needs.specifier.contains(pins[rule.needs.name]), (python, rule)
        assert rule.source.startswith("https://") and rule.reason and rule.measured
        assert f"{rule.package}>={rule.first_good}" in constraints.catalog_lines(pins)
