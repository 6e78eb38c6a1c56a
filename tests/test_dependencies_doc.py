"""docs/dependencies.md is what the locks say: regenerated in memory, it must equal the file."""

from __future__ import annotations

import re

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from sdt_build import constraints
from sdt_build.maintainer import dependency_page as docs
from sdt_build.target import target

from conftest import ROOT

PAGE = ROOT / "docs" / "dependencies.md"


def row(name: str) -> list[str]:
    """The cells of ``name``'s row in the packages table."""
    line = next(line for line in PAGE.read_text().splitlines() if line.startswith(f"| {name} |"))
    return [cell.strip() for cell in line.strip("|").split(" | ")]


def test_page_is_up_to_date():
    assert PAGE.read_text() == docs.render(), \
        "docs/dependencies.md is stale: run `python -m sdt_build.maintainer.dependency_page`"


def test_numpy_row_shows_the_pins_and_who_sets_the_lower_bound():
    pythons = constraints.available()
    cells = dict(zip(["package", *pythons, "allowed", "parity", "known"], row("numpy")))
    for python in pythons:
        assert cells[python] == constraints.read_lock(constraints.folder(python) / "worker.txt")["numpy"]
    env = target("3.11").markers
    wanted = next(req for req in map(Requirement, constraints.metadata("3.11")["pandas"]["requires"])
                  if req.name == "numpy" and (req.marker is None or req.marker.evaluate(env)))
    on_311 = docs.allowed(docs.load("3.11"), "numpy")
    assert on_311 in cells["allowed"]
    assert re.search(rf"`{re.escape(docs.spec_text(wanted.specifier))}` \([^)]*\bpandas\b", on_311)
    assert cells["parity"] == "should match"
    assert "`<1.20`" in cells["known"] and "SDT-E208" in cells["known"]
    assert "(edge-cases.md#15-numpy-old)" in cells["known"]


def test_rules_from_the_code_reach_the_page():
    assert row("solar-data-tools")[-1] == "any other version (SDT-E201)"
    assert row("dask")[-2:] == ["must match", "any version but the client's (SDT-E202)"]
    assert "`==2.32.0`: yanked" in row("requests")[-1]


@pytest.mark.parametrize("python", constraints.available())
def test_every_pin_is_inside_what_the_set_allows(python):
    lock = docs.load(python)
    outside = [(name, who, str(spec)) for name, asks in lock.asks.items() for who, spec in asks
               if not spec.contains(Version(lock.pins[name]), prereleases=True)]
    assert not outside
