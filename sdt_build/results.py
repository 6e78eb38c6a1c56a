"""A run's output folder: one run at a time (a lock), the journal, and result files written whole.

The journal gets one line per finished key, appended and flushed as it arrives; a write that fails
(a full disk) is cut back to the last complete line and stops the run with a named error, so the
journal never holds half a row. A torn last line left by a crash is removed and reported when the
folder is opened again. results.csv, results.parquet and run.json are written to a temporary file
and renamed: they are either the previous version or the new one, never half of one.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from sdt_build.errors import RunFailure
from sdt_build.keys import key_id
from sdt_build.redact import redact
from sdt_build.rows import Row

JOURNAL = "journal.jsonl"
LOCK = ".sdt-run.lock"
RECORD = "run.json"
WARNINGS_LOG = "warnings.log"  # third-party warnings of every key, one line each
PLOTS = "plots"  # SDT's own figures of the keys that keep them: plots/<key>/<name>.png
REPORT = "report.html"
PERFORMANCE = "dask-report.html"  # Dask's performance report (when bokeh is installed)


def read_journal(journal: Path) -> tuple[dict[str, Row], int]:
    """The last row of each key in a journal, and how many lines could not be read."""
    rows: dict[str, Row] = {}
    unreadable = 0
    for line in journal.read_text(errors="replace").splitlines():
        try:
            row = Row.from_record(json.loads(line))
        except (ValueError, KeyError, TypeError):
            unreadable += 1
            continue
        rows[key_id(row.key)] = row
    return rows, unreadable


def plot_folder(folder: Path, key: tuple) -> Path:
    """Where a key's figures are kept (a file-name-safe form of its id, with a digest against clashes)."""
    ident = key_id(key)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", ident).strip("._")[:80] or "key"
    return folder / PLOTS / f"{safe}-{hashlib.sha256(ident.encode()).hexdigest()[:8]}"


def _write_failure(path: Path, exc: OSError) -> RunFailure:
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    cause = f"cannot write {path}: {'the disk is full' if full else exc.strerror or exc}"
    return RunFailure("SDT-E515", cause, "free space there (or choose another --output), then run again with "
                      "--resume: every row already in journal.jsonl is kept and only the missing keys run")


class OutputFolder:
    """The folder's lock and journal for one run; without a folder, a temporary journal only."""

    def __init__(self, folder: Path | None, resume: bool):
        self.folder = folder
        self.notes: list[str] = []
        self._lock_fd: int | None = None
        if folder is None:
            handle, name = tempfile.mkstemp(prefix="sdt-journal-", suffix=".jsonl")
            os.close(handle)
            self.journal = Path(name)
        else:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _write_failure(folder, exc) from exc
            self._lock()
            self.journal = folder / JOURNAL
            if not resume:
                self.journal.unlink(missing_ok=True)
                (folder / WARNINGS_LOG).unlink(missing_ok=True)
                shutil.rmtree(folder / PLOTS, ignore_errors=True)
        self._repair()
        self._fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _lock(self) -> None:
        """Refuse a second run on the same folder while one holds it (the lock dies with its process)."""
        path = self.folder / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunFailure("SDT-E514", f"{self.folder} is in use by another run ({holder})",
                             "wait for that run to finish, or pass another --output") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self._lock_fd = fd

    def _repair(self) -> None:
        """Cut a torn last line (a crash or a full disk mid-write) and note it; its key runs again."""
        if not self.journal.exists():
            return
        data = self.journal.read_bytes()
        end = data.rfind(b"\n") + 1
        torn = data[end:]
        if not torn.strip():
            return
        try:
            with open(self.journal, "r+b") as handle:
                try:
                    json.loads(torn)
                    handle.seek(0, os.SEEK_END)
                    handle.write(b"\n")  # a whole row that only lacks its newline
                except ValueError:
                    handle.truncate(end)
                    self.notes.append(f"{self.journal.name} ended in a torn line ({len(torn)} bytes, cut short by "
                                      "a crash or a full disk); it was removed and that key runs again")
        except OSError as exc:
            raise _write_failure(self.journal, exc) from exc

    def rows(self) -> dict[str, Row]:
        """The last row of each key in the journal."""
        rows, unreadable = read_journal(self.journal)
        if unreadable and not any("unreadable" in note for note in self.notes):
            self.notes.append(f"{unreadable} line(s) of {self.journal.name} are unreadable and were skipped; "
                              "their keys run again")
        return rows

    def done(self) -> set[str]:
        """Keys whose last row is ``ok``."""
        return {key for key, row in self.rows().items() if row.ok}

    def add(self, row: Row) -> None:
        """Append one row as one line (credentials masked); on failure the journal is cut back to where it
        was. Its warnings go to warnings.log and its figures to plots/ (not in a temporary journal's run)."""
        self._append(self._fd, self.journal, (redact(json.dumps(row.to_record(), default=str)) + "\n").encode())
        if self.folder is None:
            return
        self.log([f"{key_id(row.key)}\t{line}" for line in row.warning_lines])
        for name, png in row.plots.items():
            target = plot_folder(self.folder, row.key)
            try:
                target.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _write_failure(target, exc) from exc
            self.write(str((target / f"{name}.png").relative_to(self.folder)), lambda path: path.write_bytes(png))

    def log(self, lines: list[str]) -> None:
        """Append lines to warnings.log (a key or a worker, a tab, the warning)."""
        if not lines or self.folder is None:
            return
        fd = os.open(self.folder / WARNINGS_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            self._append(fd, self.folder / WARNINGS_LOG, redact("".join(f"{line}\n" for line in lines)).encode())
        finally:
            os.close(fd)

    @staticmethod
    def _append(fd: int, path: Path, line: bytes) -> None:
        size = os.fstat(fd).st_size
        try:
            written = 0
            while written < len(line):
                written += os.write(fd, line[written:])
        except OSError as exc:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass  # the reader cuts a torn line too
            raise _write_failure(path, exc) from exc

    def write(self, name: str, writer: Callable[[Path], None]) -> None:
        """Write one result file whole: to a temporary file, then renamed over the old one."""
        target = self.folder / name
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            writer(partial)
            with open(partial, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise _write_failure(target, exc) from exc
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def close(self) -> None:
        """Close the journal and release the folder (a temporary journal is deleted)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.folder is None:
            self.journal.unlink(missing_ok=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
