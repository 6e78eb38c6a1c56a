"""A key's result: one row, whatever happened to the key. Built on a worker (``task``) or by the
runner (a lost worker, a timeout, a lost cluster), journaled as one flat record.

Imported on workers too: standard library only.
"""

from __future__ import annotations

import traceback as tracebacks
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from sdt_build.runtime.redact import redact, shorten

FIELDS = ("key", "status", "stage", "error_type", "message", "traceback", "worker", "attempts", "run_id", "plug",
          "warnings")
# SDT's report: DataHandler.report's keys, in its order
SDT_REPORT = ("length", "capacity", "sampling", "quality score", "clearness score", "inverter clipping",
              "clipped fraction", "capacity change", "data quality warning", "time shift correction",
              "time zone correction")
# it and the days of data: columns of every results table, empty where a key has none, so code that
# picks them works whatever the keys' outcomes
REPORT_VALUES = (*SDT_REPORT, "num_days")
SECONDS = "seconds "  # the prefix of a duration column: "seconds get_data", …, "seconds total"
WARNINGS = "{category}: {message} (×{count})"  # one line of a row's warnings


@dataclass(frozen=True)
class Row:
    key: tuple
    status: str  # ok | failed
    stage: str | None = None  # where a failed key stopped
    error_type: str | None = None
    message: str | None = None
    traceback: str | None = None
    worker: str | None = None
    attempts: int = 1
    run_id: str | None = None
    plug: str | None = None  # the digest of the plug's code that made the row (client.py aside)
    warnings: str | None = None  # third-party warnings raised while the key ran, one per line (WARNINGS)
    seconds: Mapping[str, float] = field(default_factory=dict)  # per stage, and "total"
    values: Mapping[str, Any] = field(default_factory=dict)  # SDT's report and what else the key produced
    plots: Mapping[str, bytes] = field(default_factory=dict)  # SDT's own figures (PNG), kept for chosen keys only

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def done(cls, key: tuple, values: Mapping[str, Any], seconds: Mapping[str, float], worker: str) -> "Row":
        return cls(key, "ok", worker=worker, seconds=dict(seconds), values=dict(values))

    @classmethod
    def failed(cls, key: tuple, stage: str, exc: BaseException, seconds: Mapping[str, float], worker: str | None,
               values: Mapping[str, Any] | None = None) -> "Row":
        """The key stopped at ``stage`` with ``exc`` (its first line is the message); secrets masked
        before anything is cut."""
        message = redact(str(exc)).strip()
        return cls(key, "failed", stage, type(exc).__name__,
                   message.splitlines()[0][:500] if message else type(exc).__name__,
                   shorten("".join(tracebacks.format_exception(exc)), 8000, tail=True), worker,
                   seconds=dict(seconds), values=dict(values or {}))

    @classmethod
    def lost(cls, key: tuple, attempts: int, error_type: str, message: str, worker: str | None) -> "Row":
        """Its worker died while running it (as often as it may)."""
        return cls(key, "failed", "worker lost", error_type, message, worker=worker, attempts=attempts)

    @classmethod
    def timed_out(cls, key: tuple, attempts: int, message: str, worker: str, seconds: float) -> "Row":
        return cls(key, "failed", "timeout", "Timeout", message, worker=worker, attempts=attempts,
                   seconds={"total": round(seconds, 3)})

    @classmethod
    def unfinished(cls, key: tuple, attempts: int, stage: str, error_type: str, message: str) -> "Row":
        """The run ended before the key did (the scheduler or every worker was lost)."""
        return cls(key, "failed", stage, error_type, message, attempts=attempts)

    @property
    def warning_lines(self) -> list[str]:
        return self.warnings.splitlines() if self.warnings else []

    def to_record(self) -> dict[str, Any]:
        """The flat form of the journal, results.csv and results.parquet (plots go to files of their own)."""
        record = {name: getattr(self, name) for name in FIELDS}
        record["key"] = list(self.key)
        record.update(self.values)
        record.update({f"{SECONDS}{stage}": value for stage, value in self.seconds.items()})
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "Row":
        from sdt_build.runtime.keys import normalize_key

        known: dict[str, Any] = {}
        seconds: dict[str, Any] = {}
        values: dict[str, Any] = {}
        for name, value in record.items():  # one pass: a resume reads every row of a fleet's journal
            if name in FIELDS:
                known[name] = value
            elif name.startswith(SECONDS):
                seconds[name[len(SECONDS):]] = value
            else:
                values[name] = value
        known["key"] = normalize_key(record["key"])
        known["attempts"] = int(known.get("attempts") or 1)
        return cls(**known, seconds=seconds, values=values)

    @staticmethod
    def flat(record: Mapping[str, Any]) -> dict[str, Any]:
        """A journaled record as ``from_record(record).to_record()`` gives it, without making the Row
        (a table of a fleet's rows is made from these)."""
        from sdt_build.runtime.keys import normalize_key

        flat = {**dict.fromkeys(FIELDS), **record}
        flat["key"] = list(normalize_key(record["key"]))
        flat["attempts"] = int(record.get("attempts") or 1)
        return flat

    @staticmethod
    def outcome(record: Mapping[str, Any]) -> tuple[bool, str | None]:
        """Whether a journaled record is ok, and the digest of the plug's code that made it: all a
        resume needs of a row."""
        return record["status"] == "ok", record.get("plug")

    def but(self, **changes: Any) -> "Row":
        """This row with some fields changed."""
        return replace(self, **changes)
