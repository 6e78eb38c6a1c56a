"""A run's output folder: one project's, one run at a time (a lock), the journal, and result files
written whole.

The journal gets one line per finished key, appended and flushed as it arrives; a write that fails
(a full disk) is cut back to the last complete line and stops the run with a named error, so the
journal never holds half a row. A torn last line left by a crash is removed and reported when the
folder is opened again. results.csv, results.parquet and run.json are written to a temporary file
and renamed: they are either the previous version or the new one, never half of one. Nothing
changes in the folder until a run has started, and a run never discards rows it was not told to.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from sdt_build.runtime.errors import RunFailure, unwritable
from sdt_build.runtime.keys import key_id, normalize_key
from sdt_build.runtime.redact import dumps, redact
from sdt_build.runtime.rows import FIELDS, REPORT_VALUES, Row
from sdt_build.userfiles import JOURNAL, OUTPUT_OWNER, RECORD

if TYPE_CHECKING:
    import pandas as pd

LOCK = ".sdt-run.lock"
WARNINGS_LOG = "warnings.log"  # third-party warnings of every key, one line each
PLOTS = "plots"  # SDT's own figures of the keys that keep them: plots/<key>/<name>.png
REPORT = "report.html"
PERFORMANCE = "dask-report.html"  # Dask's performance report (when bokeh is installed)
RESULTS = ("results.csv", "results.parquet")  # every key's last row, written whole at the end of a run


def read_journal(journal: Path, make: Callable[[dict], Any] = Row.from_record) -> tuple[dict[str, Any], int]:
    """The last row of each key in a journal (``make`` of its record: the Row, or only what a resume
    needs), and how many lines could not be read."""
    rows: dict[str, Any] = {}
    unreadable = 0
    with open(journal, errors="replace") as lines:  # line by line: never the whole journal in memory
        for line in lines:
            try:
                record = json.loads(line)
                rows[key_id(normalize_key(record["key"]))] = make(record)
            except (ValueError, KeyError, TypeError):
                unreadable += 1
    return rows, unreadable


def results_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Flat rows (``Row.flat`` of journaled records) as the results table (results.csv,
    ``RunResult.table``, the report's): a row's fields and SDT's report values always, empty where a
    key has none, then whatever else the rows hold."""
    import pandas as pd

    table = pd.DataFrame(list(records))
    stable = [*FIELDS, *REPORT_VALUES]
    table = table.reindex(columns=[*stable, *(c for c in table.columns if c not in stable)])
    table["key"] = table["key"].map(normalize_key)
    return table


def count_rows(journal: Path) -> int:
    """How many rows a journal holds (its non-blank lines), without parsing them (a refusal needs
    only the count)."""
    count = 0
    with open(journal, "rb") as handle:
        for line in handle:
            count += bool(line.strip())
    return count


def _last_line(journal: Path, chunk: int = 1 << 16) -> tuple[int, bytes]:
    """Where the journal's last line starts, and its bytes after the last newline (read from the end:
    a fleet's journal is never read whole for this)."""
    with open(journal, "rb") as handle:
        start = handle.seek(0, os.SEEK_END)
        tail = b""
        while start > 0:
            step = min(chunk, start)
            start -= step
            handle.seek(start)
            tail = handle.read(step) + tail
            cut = tail.rfind(b"\n")
            if cut >= 0:
                return start + cut + 1, tail[cut + 1:]
        return 0, tail


def plot_folder(folder: Path, key: tuple) -> Path:
    """Where a key's figures are kept (a file-name-safe form of its id, with a digest against clashes)."""
    ident = key_id(key)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", ident).strip("._")[:80] or "key"
    return folder / PLOTS / f"{safe}-{hashlib.sha256(ident.encode()).hexdigest()[:8]}"


def discard(path: Path) -> None:
    """Remove a partial file if it is there (on a read-only file system it never was)."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


class OutputFolder:
    """The folder's lock and journal for one run of one project; without a folder, a temporary journal.

    Opening it only checks and locks: a folder that holds finished rows is refused unless the run
    resumes them or ``force`` discards them, and one that another project's runs wrote is refused
    unless ``force``. Nothing in it changes until the run has started (``start``), so a run that
    cannot start leaves an existing folder as it was, and a folder it created is removed again.
    """

    def __init__(self, folder: Path | None, resume: bool, *, project: str | None = None, force: bool = False):
        self.folder = folder
        self.resume = resume
        self.force = force
        self.project = project
        self.notes: list[str] = []
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._created: Path | None = None  # the outermost folder this run made (sdt-results/ of sdt-results/NAME)
        if resume and force:
            raise RunFailure("SDT-E553", "--resume keeps the rows of the output folder and --force discards them",
                             "choose one: --resume to run only the missing keys, --force to run every key again")
        if folder is None:
            self.journal = None
            return
        self.journal = folder / JOURNAL
        self._claim()
        try:
            self._created = next((p for p in reversed((folder, *folder.parents)) if not p.exists()), None)
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._failure(folder, exc) from exc
        self._lock()

    def _claim(self) -> None:
        """Refuse, before anything is touched, a run that would mix or discard another run's rows."""
        rows = count_rows(self.journal) if self.journal.is_file() else 0
        if not rows or self.force:
            return
        owner = self.owner()
        if self.project and owner and owner != self.project:
            raise RunFailure("SDT-E551", f"{self.folder} holds {rows} row(s) of project {owner!r}, not of "
                             f"{self.project!r}", "pass another --output (each project's default is "
                             "sdt-results/<name>), or --force to discard those rows")
        if not self.resume:
            raise RunFailure("SDT-E550", f"{self.folder} holds {rows} row(s) of an earlier run, and a new run "
                             "would discard them", "--resume keeps them and runs only the keys without an ok row; "
                             "--force discards them and runs every key; or pass another --output")

    def owner(self) -> str | None:
        """The project whose runs write this folder (its owner file, else its run record)."""
        try:
            return json.loads((self.folder / OUTPUT_OWNER).read_text())["project"]
        except (OSError, ValueError, TypeError, KeyError):
            return self.record().get("project")

    def record(self) -> dict:
        """The run record the folder's last run wrote (empty when there is none)."""
        try:
            record = json.loads((self.folder / RECORD).read_text()) if self.folder else {}
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def start(self) -> None:
        """The run has started: a run that does not resume drops the folder's earlier outputs, a torn
        journal line is repaired, and the journal opens for appending."""
        if self.folder is None:
            handle, name = tempfile.mkstemp(prefix="sdt-journal-", suffix=".jsonl")
            os.close(handle)
            self.journal = Path(name)
        else:
            if not self.resume:
                for name in (JOURNAL, WARNINGS_LOG, RECORD, REPORT, PERFORMANCE, *RESULTS):
                    try:
                        (self.folder / name).unlink(missing_ok=True)
                    except OSError as exc:
                        raise self._failure(self.folder / name, exc) from exc
                shutil.rmtree(self.folder / PLOTS, ignore_errors=True)
            if self.project and self.owner() != self.project:
                self.write(OUTPUT_OWNER, lambda path: path.write_text(json.dumps({"project": self.project}) + "\n"))
            self._repair()
        try:
            self._fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise self._failure(self.journal, exc) from exc

    def _lock(self) -> None:
        """Refuse a second run on the same folder while one holds it (the lock dies with its process;
        its file is removed when the run closes the folder)."""
        path = self.folder / LOCK
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise self._failure(path, exc) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise RunFailure("SDT-E514", f"{self.folder} is in use by another run ({holder})",
                                 "wait for that run to finish, or pass another --output") from None
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a file another run removed while this one waited for it
                break
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        except OSError:
            pass  # the lock holds without its note (a full disk)
        self._lock_fd = fd

    def _repair(self) -> None:
        """Cut a torn last line (a crash or a full disk mid-write) and note it; its key runs again."""
        if not self.journal.exists():
            return
        end, torn = _last_line(self.journal)
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
            raise self._failure(self.journal, exc) from exc

    def rows(self, make: Callable[[dict], Any] = Row.from_record) -> dict[str, Any]:
        """The last row of each key in the journal (``make`` of its record, as read_journal)."""
        if self.journal is None or not self.journal.is_file():
            return {}
        rows, unreadable = read_journal(self.journal, make)
        if unreadable and not any("unreadable" in note for note in self.notes):
            self.notes.append(f"{unreadable} line(s) of {self.journal.name} are unreadable and were skipped; "
                              "their keys run again")
        return rows

    def finished(self) -> dict[str, tuple[bool, str | None]]:
        """Each key's last row as a resume needs it (Row.outcome), without making the rows: the scan
        of a 100,000-line journal takes a third of the time."""
        return self.rows(Row.outcome)

    def add(self, row: Row) -> None:
        """Append one row as one line (credentials masked); on failure the journal is cut back to where it
        was. Its warnings go to warnings.log and its figures to plots/ (not in a temporary journal's run)."""
        self._append(self._fd, self.journal, (dumps(row.to_record()) + "\n").encode())
        if self.folder is None:
            return
        self.log([f"{key_id(row.key)}\t{line}" for line in row.warning_lines])
        for name, png in row.plots.items():
            target = plot_folder(self.folder, row.key)
            try:
                target.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise self._failure(target, exc) from exc
            self.write(str((target / f"{name}.png").relative_to(self.folder)), lambda path: path.write_bytes(png))

    def log(self, lines: list[str]) -> None:
        """Append lines to warnings.log (a key or a worker, a tab, the warning)."""
        if not lines or self.folder is None:
            return
        try:
            fd = os.open(self.folder / WARNINGS_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise self._failure(self.folder / WARNINGS_LOG, exc) from exc
        try:
            self._append(fd, self.folder / WARNINGS_LOG, redact("".join(f"{line}\n" for line in lines)).encode())
        finally:
            os.close(fd)

    def _failure(self, path: Path, exc: OSError) -> RunFailure:
        """SDT-E515; its fix offers --resume only when the folder's journal holds rows to keep."""
        try:
            rows = self.folder is not None and self.journal.is_file() and self.journal.stat().st_size > 0
        except OSError:
            rows = False
        why, fix = unwritable(exc)
        again = " with --resume: every row already in journal.jsonl is kept and only the missing keys run" \
            if rows else ""
        return RunFailure("SDT-E515", f"cannot write {path}: {why}", f"{fix} (or pass another --output), then run "
                          f"again{again}")

    def _append(self, fd: int, path: Path, line: bytes) -> None:
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
            raise self._failure(path, exc) from exc

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
            discard(partial)
            raise self._failure(target, exc) from exc
        except BaseException:
            discard(partial)
            raise

    def close(self) -> None:
        """Close the journal and release the folder: its lock file goes, a temporary journal is deleted,
        and the folders this run created but never started in are removed again."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if self.folder is None:
                self.journal.unlink(missing_ok=True)
        if self._lock_fd is not None:
            (self.folder / LOCK).unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None
            if self._created is not None:
                self._remove_empty()

    def _remove_empty(self) -> None:
        """Remove the folder, and the parents this run made, while they are empty."""
        for path in (self.folder, *self.folder.parents):
            if any(path.iterdir()):
                return
            path.rmdir()
            if path == self._created:
                return
