"""Progress of long steps and their timings: one event type every stage reports through, and a
recorder of named phases (what `build --json` and the benchmark print)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator


@dataclass(frozen=True)
class Event:
    """Where a long step is: ``phase`` (download, env, build, smoke), ``done`` of ``total`` units
    (None: unknown), bytes so far for downloads, and what it is doing now."""

    phase: str
    done: int = 0
    total: int | None = None
    bytes: int = 0
    detail: str = ""
    finished: bool = False


OnEvent = Callable[[Event], None]


def ignore(_: Event) -> None:
    """The default listener."""


@dataclass
class Timings:
    """Named phases in the order they ran, each with its seconds (and what it did)."""

    phases: list[dict] = field(default_factory=list)

    @contextmanager
    def phase(self, name: str, **info) -> Iterator[dict]:
        """Time the body as ``name``; the yielded dict takes more facts (bytes, packages, skipped)."""
        record = {"name": name, **info}
        started = time.perf_counter()
        try:
            yield record
        finally:
            record["seconds"] = round(time.perf_counter() - started, 3)
            self.phases.append(record)

    def add(self, name: str, seconds: float, **info) -> None:
        self.phases.append({"name": name, "seconds": round(seconds, 3), **info})

    def total(self, *, leaving: tuple[str, ...] = ()) -> float:
        """Seconds of the top-level phases (a name with "/" is part of one), but those ``leaving`` out."""
        return round(sum(p["seconds"] for p in self.phases if "/" not in p["name"] and p["name"] not in leaving), 3)
