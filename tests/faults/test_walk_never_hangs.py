"""The dependency walk never hangs, whatever the index does and wherever the walk is cut.

Hundreds of cold walks (an empty cache each) against a real index on 127.0.0.1 (``services.
SyntheticIndex``: PEP 691 pages and PEP 658 metadata files of a made-up dependency graph), cut at
every point: budgets of nothing and of a few milliseconds up to a whole walk, the index falling
silent after each look-up in turn, walks that succeed or fail while their read-ahead is still
queued (their shutdown racing the read-ahead's callbacks). Each walk must return within its
budget and a grace, leave no thread of its look-ups running, and write nothing to the cache once
it has returned. Then ``sdt-build check`` against an index that accepts connections and never
answers, or drips one byte a second, must end within its budgets and name what it did not look up.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest
from conftest import EXAMPLES, SDT
from packaging.requirements import Requirement
from services import start_synthetic_index

from sdt_build.constraints import SdtSet
from sdt_build.dependencies import walk
from sdt_build.sources import index
from sdt_build.sources.pipconfig import IndexSettings

GRACE = 3.0  # seconds a cut walk or look-up may take past its budget
THREADS = ("sdt-walk", "sdt-index")  # the names of the look-up pools' threads
APP = Requirement("walkprobe-app")
CLASH = Requirement("walkprobe-clash")  # every release needs a numpy SDT's pin rules out


def _graph() -> dict[str, dict[str, list[str]]]:
    """The app's newest releases need core and io (which need util and numpy); each older release,
    and each older core, needs a package of its own with a chain below it: packages the walk never
    follows but reads ahead, so a walk ends with read-ahead still queued."""
    projects: dict[str, dict[str, list[str]]] = {
        "walkprobe-app": {f"1.{i}": ["walkprobe-core>=1.2", "walkprobe-io", "numpy>=1.20"] if i >= 12
                          else [f"walkprobe-old{i}>=1"] for i in range(16)},
        "walkprobe-core": {f"1.{i}": ["walkprobe-util>=1"] if i >= 8 else [f"walkprobe-legacy{i}"]
                           for i in range(12)},
        "walkprobe-io": {f"0.{i}": ["walkprobe-util", 'tomli; python_version < "3.0"'] for i in range(5)},
        "walkprobe-util": {f"1.{i}": [] for i in range(10)},
        "walkprobe-clash": {f"2.{i}": ["numpy<1"] for i in range(4)},
    }
    for i in range(16):
        projects[f"walkprobe-old{i}"] = {f"1.{v}": [f"walkprobe-deep{i}"] for v in range(10)}
        projects[f"walkprobe-deep{i}"] = {f"3.{v}": ["walkprobe-util"] for v in range(3)}
    for i in range(8):
        projects[f"walkprobe-legacy{i}"] = {f"0.{v}": [] for v in range(4)}
    return projects


@pytest.fixture(scope="module")
def synthetic():
    served = start_synthetic_index(_graph())
    yield served
    served.stop()


def _cache(folder: Path) -> dict[str, int]:
    """Each file of a cache folder and when it was last written (-1: gone while being listed)."""
    found = {}
    for path in folder.rglob("*") if folder.exists() else ():
        try:
            found[str(path)] = path.stat().st_mtime_ns
        except FileNotFoundError:  # a cache entry written (renamed into place) just now
            found[str(path)] = -1
    return found


def _stacks(threads: list[threading.Thread]) -> str:
    """Where ``threads`` are, for the message of a walk that hung."""
    frames = sys._current_frames()
    return "\n".join(f"{t.name}:\n{''.join(traceback.format_stack(frames[t.ident]))}" for t in threads
                     if t.ident in frames)


class Walks:
    """Cold walks, one after another, each in a thread of its own so that a hang is seen, not
    suffered; what went wrong is gathered and told at the end."""

    def __init__(self, served, tmp_path: Path, monkeypatch):
        self.served, self.tmp_path, self.monkeypatch = served, tmp_path, monkeypatch
        self.sdt = SdtSet("3.11")
        self.sources = IndexSettings(index_url=served.url)
        self.count = 0
        self.problems: dict[str, list[str]] = {"hung": [], "raised": [], "left threads running": [],
                                               "wrong outcome": []}
        self.left: dict[Path, dict[str, int]] = {}  # each walk's cache as it was when the walk returned

    def run(self, budget: float, what: str, roots=(APP,), expect=lambda found: True) -> None:
        self.count += 1
        label = f"walk {self.count} ({what}, budget {budget:.4f} s)"
        cache = self.tmp_path / f"cache-{self.count}"
        self.monkeypatch.setenv("SDT_CACHE_DIR", str(cache))
        box: dict = {}

        def one():
            try:
                box["found"] = walk.walk(list(roots), [], self.sdt, self.sources, budget=budget)
            except BaseException as exc:  # noqa: BLE001 - told by the test
                box["error"] = exc

        before = set(threading.enumerate())
        runner = threading.Thread(target=one, daemon=True, name="test-walk")
        runner.start()
        runner.join(budget + GRACE)
        running = [t for t in threading.enumerate() if t not in before and t.name.startswith(THREADS)]
        self.left[cache] = _cache(cache)
        if runner.is_alive():
            self.problems["hung"].append(f"{label}\n{_stacks([runner, *running])}")
        elif "error" in box:
            self.problems["raised"].append(f"{label}: {box['error']!r}")
        elif not expect(box["found"]):
            self.problems["wrong outcome"].append(f"{label}: {box['found']}")
        if running and not runner.is_alive():
            self.problems["left threads running"].append(f"{label}: {[t.name for t in running]}\n{_stacks(running)}")

    def verdict(self) -> None:
        changed = [str(folder) for folder, files in self.left.items() if _cache(folder) != files]
        told = {kind: found for kind, found in self.problems.items() if found}
        if changed:
            told["wrote the cache after returning"] = changed
        assert not told, "; ".join(f"{len(found)} of {self.count} walks {kind} (first: {found[0]})"
                                   for kind, found in told.items())


def _cut(found: walk.Walk) -> bool:
    """A walk that was cut: it says it ran out of time (or it finished first)."""
    return bool(found.fits) or (found.fits is None and "ran out" in (found.stopped or ""))


@pytest.mark.timeout(900)
def test_cold_walks_cut_at_every_point_return_in_time_and_leave_nothing_running(synthetic, tmp_path,
                                                                                 monkeypatch):
    walks = Walks(synthetic, tmp_path, monkeypatch)
    synthetic.behave(latency=0.003)
    started = time.monotonic()
    walks.run(10, "a whole walk", expect=lambda found: found.versions.get("walkprobe-app") == "1.15")
    full, asked = time.monotonic() - started, synthetic.served
    assert asked > 30, asked

    # budgets of nothing, of microseconds, and spread over a whole walk (and past it)
    for budget in [0.0, 1e-6, 1e-4, 1e-3] + [full * 1.5 * step / 76 for step in range(1, 77)]:
        synthetic.behave(latency=0.003)
        walks.run(budget, "cut by its budget", expect=_cut)

    # the index falls silent after each look-up in turn: the walk is cut wherever it then is
    for answered in sorted(set(range(0, asked + 1, max(1, asked // 60))) | {0, 1, 2, asked}):
        synthetic.behave(answered=answered)
        walks.run(0.25, f"the index silent after {answered} answers", expect=_cut)

    # walks that end (fitting or not) with their read-ahead still queued: shutdown races callbacks
    for number in range(max(70, 201 - walks.count)):
        synthetic.behave(latency=random.choice((0.0, 0.002, 0.006)))
        if number % 7 == 0:
            walks.run(10, "a clash", roots=(APP, CLASH), expect=lambda found: found.fits is False and found.clashes)
        else:
            walks.run(10, "a walk that fits", expect=lambda found: found.versions.get("walkprobe-app") == "1.15")

    assert walks.count >= 200
    time.sleep(0.5)  # what a thread left running would write, it has written by now
    walks.verdict()


@pytest.mark.timeout(300)
def test_look_ups_cut_by_their_budget_leave_nothing_running(synthetic, tmp_path, monkeypatch):
    sources = IndexSettings(index_url=synthetic.url)
    names = sorted(_graph())
    for number, budget in enumerate([0.0, 1e-4, 0.005, 0.02, 0.05, 0.1, 0.3] * 3):
        monkeypatch.setenv("SDT_CACHE_DIR", str(tmp_path / f"cache-{number}"))
        synthetic.behave(latency=0.02, answered=None if number % 3 else len(names) // 2)
        before, started = set(threading.enumerate()), time.monotonic()
        results, skipped = index.look_up(names, "3.11", sources, budget=budget)
        assert time.monotonic() - started <= budget + GRACE
        running = [t.name for t in threading.enumerate() if t not in before and t.name.startswith(THREADS)]
        assert not running, (budget, running)
        assert set(results) | set(skipped) == set(names) and not set(results) & set(skipped)


BUDGET = 1  # seconds, for the look-ups and for the walk


@pytest.mark.timeout(300)
@pytest.mark.parametrize("trickle", [None, "headers", "body"], ids=["never-answers", "drips-headers", "drips-body"])
def test_check_ends_within_its_budgets_when_the_index_does_not_answer(synthetic, tmp_path, trickle):
    import shutil

    folder = tmp_path / "plug"
    shutil.copytree(EXAMPLES / "local-csv", folder)
    (folder / "requirements.txt").write_text("walkprobe-app\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PIP_")}, "PIP_CONFIG_FILE": os.devnull,
           "PIP_INDEX_URL": synthetic.url, "SDT_CACHE_DIR": str(tmp_path / "cache"),
           "SDT_INDEX_BUDGET": str(BUDGET), "SDT_WALK_BUDGET": str(BUDGET)}
    synthetic.behave(answered=None if trickle else 0, trickle=trickle)
    started = time.monotonic()
    done = subprocess.run([SDT, "check", str(folder), "--json"], capture_output=True, text=True, env=env, timeout=120)
    seconds = time.monotonic() - started
    synthetic.behave()
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    # the look-ups' budget, the walk's, and a grace for starting Python and reading pip's settings
    assert seconds < 2 * BUDGET + 2 * GRACE, seconds
    payload = json.loads(done.stdout)
    codes = {f["code"]: f for f in payload["findings"]}
    assert codes["SDT-E229"]["severity"] == "note" and "walkprobe-app" in codes["SDT-E229"]["cause"], codes
    walked = codes["SDT-E231"]
    assert walked["severity"] == "note" and "walkprobe-app" in walked["cause"] and "ran out" in walked["cause"], walked
    assert done.returncode == 0 and payload["ok"], payload
