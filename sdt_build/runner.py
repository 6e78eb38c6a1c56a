"""SDTDask: run SDT's pipeline for many keys on any client, explain every failure, lose no result.

Keys stream through the cluster with a bounded number in flight; each finished row is appended to
``journal.jsonl`` at once, so a dead worker, scheduler or client (or Ctrl-C) loses nothing that
finished, and ``resume`` runs only what is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from sdt_build import __version__
from sdt_build.clients.base import Client
from sdt_build.clients.local import PIPELINE_PEAK_BYTES
from sdt_build.errors import ProjectError, RunFailure
from sdt_build.project import UserProject, load_project, normalize_key, runtime_env
from sdt_build.redact import redact
from sdt_build.task import (START_TOPIC, PlugBundle, PlugInstaller, key_id, module_version, plug_keys,
                            plug_sizes, run_key)

JOURNAL = "journal.jsonl"
BYSTANDER_LOSSES = 3  # a key lost this often before it started is failed like any other


@dataclass(frozen=True)
class RunOptions:
    """How a run treats its keys."""

    pipeline_kwargs: dict[str, Any] = field(default_factory=dict)
    loss_analysis: bool = False
    timeout: float | None = None  # seconds per key; None: no limit
    retries: int = 1  # extra attempts for a key whose worker died
    max_in_flight: int | None = None  # default: twice the cluster's threads
    check_versions: bool = True  # parity pre-flight against the live cluster


@dataclass(frozen=True)
class RunResult:
    """One row per key (``table``), where the run wrote its files, and its record."""

    table: pd.DataFrame
    output_dir: Path | None
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.counts.get("failed", 0) == 0

    def summary(self) -> dict[str, Any]:
        """Counts, the slowest keys, and failures grouped by stage and cause."""
        table = self.table
        failed = table[table["status"] == "failed"] if len(table) else table
        groups = Counter(zip(failed.get("stage", []), failed.get("error_type", []))) if len(failed) else Counter()
        slowest = table.sort_values("seconds total", ascending=False).head(5) \
            if "seconds total" in table and len(table) else table.iloc[0:0]
        return {
            "counts": self.counts, "seconds": round(self.seconds, 1),
            "parallel_efficiency": self.record.get("parallel_efficiency"),
            "slowest": [{"key": list(r["key"]), "seconds": r["seconds total"]} for _, r in slowest.iterrows()],
            "failures": [{"stage": stage, "error_type": error, "count": count,
                          "example": failed[(failed["stage"] == stage) & (failed["error_type"] == error)]
                          .iloc[0]["message"]} for (stage, error), count in groups.most_common()],
        }


def load_client(project: UserProject) -> Client:
    """Import client.py on this machine and create its client class."""
    path = project.client.file
    spec = importlib.util.spec_from_file_location(f"sdt_user_client_{uuid.uuid4().hex[:8]}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ProjectError("SDT-E119", f"client.py raised {type(exc).__name__} on import: {exc}",
                           "fix client.py so that `python client.py` runs without error",
                           detail=traceback.format_exc()) from exc
    cls = getattr(module, project.client.name)
    if not (isinstance(cls, type) and issubclass(cls, Client)):
        raise ProjectError("SDT-E119", f"{project.client.name} in client.py is not a sdt_build client",
                           "subclass one of sdt_build.clients (LocalClient, DockerClient, …) so that "
                           "connect(image) returns a distributed.Client")
    return cls()


class SDTDask:
    """The Python entry: ``SDTDask(folder).execute(keys)``.

    ``client`` overrides the one in client.py; ``image`` is the tag the scheduler and workers run
    (None: the client's own, or the local Python).
    """

    def __init__(self, path: str | Path, *, client: Client | None = None, image: str | None = None):
        self.project = load_project(path)
        self.client = client or load_client(self.project)
        self.image = image or self.client.image
        # the declared variables that are set here: containers and cloud workers get them at run time
        self.client.runtime_env = runtime_env(self.project)
        self.client.runtime_secrets = {v.name for v in self.project.env if v.secret}

    def execute(self, keys: Iterable[Any] | None = None, output_dir: str | Path | None = None,
                resume: bool = False, *, loss_analysis: bool = False, timeout: float | None = None,
                retries: int = 1, max_in_flight: int | None = None, check_versions: bool = True,
                progress: bool = False, dask_client=None, on_row: Callable[[dict], None] | None = None,
                **run_pipeline_kwargs: Any) -> RunResult:
        """Run every key. Keyword arguments not named here go to ``DataHandler.run_pipeline``.

        A ``dask_client`` you pass is used and left open; otherwise the client from client.py is
        connected and closed at the end.
        """
        options = RunOptions({"verbose": False, **self.project.settings.run_pipeline, **run_pipeline_kwargs},
                             loss_analysis, timeout, retries, max_in_flight, check_versions)
        owns = dask_client is None
        if owns:
            if self.client.needs_image and not self.image:  # the image sdt-build builds (skipped if unchanged)
                from sdt_build.pipeline import build_project

                self.image = build_project(self.project.root).image.tag
            dask_client = self.client.connect(self.image)
        try:
            return run(self.project, dask_client, keys, options, output_dir=output_dir, resume=resume,
                       progress=progress, on_row=on_row, client_settings=self.client.describe(),
                       explain=self.client.explain_lost_worker if owns else None)
        finally:
            if owns:
                self.client.close()


def run(project: UserProject, dask_client, keys: Iterable[Any] | None, options: RunOptions, *,
        output_dir: str | Path | None = None, resume: bool = False, progress: bool = False,
        on_row: Callable[[dict], None] | None = None, client_settings: dict | None = None,
        explain: Callable[[], str | None] | None = None) -> RunResult:
    """Keys → tasks → journal → table, on a connected ``distributed.Client``.

    ``explain`` is the backend's account of dead workers (container logs), added to lost-worker rows.
    """
    started = time.perf_counter()
    output = Path(output_dir) if output_dir else None
    journal = Journal(output / JOURNAL if output else None, resume and output is not None)
    bundle = PlugBundle.from_folder(project.root, project.code_files, project.plug.name)
    warnings = preflight(dask_client, options)
    dask_client.register_plugin(PlugInstaller(bundle))  # the plug's files go to each worker once
    chosen = _keys(keys, project, dask_client, bundle)
    todo = [k for k in chosen if key_id(k) not in journal.done]
    if project.plug.has_size and len(todo) > 1:
        todo = _longest_first(dask_client, bundle, todo)
    record = {"sdt_build": __version__, "project": project.name, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "client": client_settings or {}, "options": {**options.__dict__},
              "keys": len(chosen), "already_done": len(chosen) - len(todo), "warnings": warnings,
              "versions": _cluster_versions(dask_client)}
    stream = Stream(dask_client, bundle, options, journal, on_row, progress, explain)
    try:
        with _performance_report(output, record):
            stream.run(todo)
    finally:
        journal.close()
        lost = explain() if explain else None
        if lost:
            record["lost_workers"] = lost
            record["warnings"].append(f"workers died during the run: {lost}")
        table = _table(journal.rows_for(chosen))
        journal.discard()
        wall = time.perf_counter() - started
        busy = float(table["seconds total"].sum()) if "seconds total" in table else 0.0
        threads = max(1, sum(w.get("nthreads", 1) for w in dask_client.scheduler_info()["workers"].values()))
        record.update(seconds=round(wall, 2), finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
                      parallel_efficiency=round(busy / (stream.seconds * threads), 3) if stream.seconds else None,
                      threads=threads)
        if output:
            _write_outputs(output, table, record)
    counts = {str(k): int(v) for k, v in table["status"].value_counts().items()} if len(table) else {}
    return RunResult(table, output, wall, counts, record)


class Journal:
    """Rows appended (and flushed) as they arrive, kept on disk rather than in memory, so the
    client's memory stays flat however many keys run. Without an output folder it is a temporary
    file. On resume, keys whose last row is ``ok`` count as done."""

    def __init__(self, path: Path | None, resume: bool):
        self.temporary = path is None
        if path is None:
            handle, name = tempfile.mkstemp(prefix="sdt-journal-", suffix=".jsonl")
            os.close(handle)
            path = Path(name)
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not resume and path.exists():
            path.unlink()
        self.done = {key for key, row in self._last_rows().items() if row.get("status") == "ok"}
        self._file = open(path, "a")
        self._lock = threading.Lock()

    def _last_rows(self) -> dict[str, dict]:
        rows: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash is simply redone
                    continue
                row["key"] = normalize_key(row["key"])
                rows[key_id(row["key"])] = row
        return rows

    def add(self, row: dict) -> None:
        with self._lock:
            self._file.write(json.dumps({**row, "key": list(row["key"])}, default=str) + "\n")
            self._file.flush()

    def rows_for(self, keys: list[tuple]) -> list[dict]:
        """The last row of each key, in the order of ``keys``."""
        rows = self._last_rows()
        return [rows[key_id(k)] for k in keys if key_id(k) in rows]

    def close(self) -> None:
        self._file.close()

    def discard(self) -> None:
        if self.temporary:
            self.path.unlink(missing_ok=True)


class Stream:
    """Submits keys with backpressure, enforces timeouts, retries lost ones, journals every row."""

    def __init__(self, dask_client, bundle: PlugBundle, options: RunOptions, journal: Journal,
                 on_row: Callable[[dict], None] | None, progress: bool,
                 explain: Callable[[], str | None] | None = None):
        self.client = dask_client
        self.bundle = bundle
        self.options = options
        self.journal = journal
        self.on_row = on_row
        self.progress = progress
        self.explain = explain
        self.run_id = uuid.uuid4().hex[:8]
        self.started: dict[str, tuple[float, str]] = {}
        self.bystander_losses: dict[str, int] = {}
        self.seconds = 0.0

    def run(self, keys: list[tuple]) -> None:
        from distributed import wait

        if not keys:
            return
        threads = sum(w.get("nthreads", 1) for w in self.client.scheduler_info()["workers"].values()) or 1
        limit = self.options.max_in_flight or max(2, 2 * threads)
        pending = deque((key, 1) for key in keys)
        futures: dict[Any, tuple[tuple, int]] = {}
        self.client.subscribe_topic(START_TOPIC, self._started)
        bar = _Progress(len(keys)) if self.progress else None
        began = time.perf_counter()
        try:
            while pending or futures:
                while pending and len(futures) < limit:
                    key, attempt = pending.popleft()
                    name = f"sdt-{self.run_id}-{key_id(key)}-{attempt}-{uuid.uuid4().hex[:6]}"  # never reused
                    future = self.client.submit(run_key, self.bundle.digest, key, self.options.pipeline_kwargs,
                                                self.options.loss_analysis, pure=False, key=name)
                    futures[future] = (key, attempt)
                try:
                    done, _ = wait(list(futures), timeout=1.0, return_when="FIRST_COMPLETED")
                except TimeoutError:  # nothing finished this second: check timeouts, go on waiting
                    done = set()
                for future in done:
                    key, attempt = futures.pop(future)
                    row = self._row(future, key, attempt)
                    if isinstance(row, int):  # its worker died and the key goes again, as attempt `row`
                        pending.appendleft((key, row))
                        continue
                    self._finish(row, bar)
                if self.options.timeout:
                    for future in self._timed_out(futures):
                        key, attempt = futures.pop(future)
                        self._finish(self._timeout_row(future, key, attempt), bar)
                if bar:
                    bar.update(running=len(futures))
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        finally:
            self.seconds = time.perf_counter() - began
            self.client.unsubscribe_topic(START_TOPIC)
            if bar:
                bar.close()

    def _started(self, event) -> None:
        _, message = event
        self.started[message["key"]] = (time.monotonic(), message["worker"])

    def _row(self, future, key: tuple, attempt: int) -> dict | int:
        """The key's row; or, when its worker died and it may go again, the attempt to submit it as
        (a key that had not started spends none: it was queued behind another key that killed it)."""
        if future.status == "finished":
            row = future.result()
            row["key"] = key
            row["attempts"] = attempt
            if row.get("dependency"):
                row["dependency_version_client"] = module_version(row["dependency"])
                row["message"] = (f"{row['message']} (dependency {row['dependency']}: worker has "
                                  f"{row.get('dependency_version_worker') or 'none'}, client has "
                                  f"{row['dependency_version_client'] or 'none'})")
            return row
        exc = future.exception() if future.status == "error" else None
        if _is_lost_worker(exc):
            started = key_id(key) in self.started
            if not started and self._bystander(key):
                return attempt
            if attempt <= self.options.retries:
                self.started.pop(key_id(key), None)
                return attempt + 1
        return self._lost_row(key, attempt, exc)

    def _bystander(self, key: tuple) -> bool:
        """Whether a key lost before it started may go again without spending an attempt (a few times:
        workers that die before any key starts must still end in rows)."""
        losses = self.bystander_losses[key_id(key)] = self.bystander_losses.get(key_id(key), 0) + 1
        return losses <= BYSTANDER_LOSSES

    def _lost_row(self, key: tuple, attempt: int, exc: BaseException | None) -> dict:
        name = type(exc).__name__ if exc else "CancelledError"
        if _is_lost_worker(exc):
            worker = self.started.get(key_id(key), (None, "unknown (it died before reporting)"))[1]
            memory = _worker_memory(self.client, worker)
            cause = _death_cause(self.client)
            message = (f"the worker running this key died {attempt} time(s) ({cause}). Each worker has "
                       f"{memory}; one SDT pipeline run peaks near 6 GB. Fix: raise memory_per_worker or use "
                       "fewer threads per worker; if memory was not the cause, read the worker logs")
            backend = self.explain() if self.explain else None
            if backend:
                message += f". The backend says: {backend}"
            return {"key": key, "status": "failed", "stage": "worker lost", "error_type": name,
                    "message": message, "worker": worker, "attempts": attempt}
        detail = str(exc) if exc else "the task was cancelled (scheduler restarted or client disconnected)"
        row = {"key": key, "status": "failed", "stage": "worker", "error_type": name, "message": detail[:500],
               "traceback": "".join(traceback.format_exception(exc))[-8000:] if exc else None, "attempts": attempt}
        if exc is not None and ("pickle" in detail.lower() or "deserializ" in detail.lower()):
            row["message"] = (f"{detail[:300]} — results could not be unpickled: the client's and the workers' "
                              "versions differ (see `sdt-build smoke` parity)")
        return row

    def _timed_out(self, futures: dict) -> list:
        now = time.monotonic()
        late = []
        for future, (key, _) in futures.items():
            began = self.started.get(key_id(key))
            if began and now - began[0] > self.options.timeout and future.status == "pending":
                late.append(future)
        return late

    def _timeout_row(self, future, key: tuple, attempt: int) -> dict:
        began, worker = self.started[key_id(key)]
        future.cancel()
        try:  # a running Python thread cannot be stopped: restart its worker process to free it
            self.client.restart_workers([worker], raise_for_error=False)
        except Exception as exc:  # the row explains the timeout whether or not the restart worked
            worker = f"{worker} (restart failed: {exc})"
        return {"key": key, "status": "failed", "stage": "timeout", "error_type": "Timeout",
                "message": f"still running after {self.options.timeout:g} s; its worker was restarted. Fix: raise "
                           "the timeout (--timeout) if the site is just long",
                "worker": worker, "attempts": attempt, "seconds total": round(time.monotonic() - began, 3)}

    def _finish(self, row: dict, bar) -> None:
        self.started.pop(key_id(row["key"]), None)
        self.journal.add(row)
        if self.on_row:
            self.on_row(row)
        if bar:
            bar.advance(row["status"] == "ok")


def _is_lost_worker(exc: BaseException | None) -> bool:
    return exc is not None and type(exc).__name__ in ("KilledWorker", "CommClosedError", "FutureCancelledError")


def _worker_memory(dask_client, worker: str | None) -> str:
    workers = dask_client.scheduler_info().get("workers", {})
    limits = {w.get("memory_limit") for w in workers.values() if w.get("memory_limit")}
    info = workers.get(worker) or {}
    limit = info.get("memory_limit") or (limits.pop() if len(limits) == 1 else None)
    return f"a {limit / 2**30:.1f} GiB memory limit" if limit else "no memory limit"


def _death_cause(dask_client) -> str:
    """What the nannies logged about dead workers: a memory limit, a signal, or nothing known."""
    try:
        logs = dask_client.get_worker_logs(nanny=True)
    except Exception:  # logs are a hint; an old or remote scheduler may not have them
        return "cause unknown"
    text = "\n".join(message for entries in logs.values() for _, message in entries)
    if "memory budget" in text or "Worker exceeded" in text:
        return "memory limit reached: the nanny restarted it"
    if "killed by signal" in text or "was killed" in text:
        return "the process was killed by a signal (the kernel's out-of-memory killer, or someone)"
    return "the process exited"


def preflight(dask_client, options: RunOptions) -> list[str]:
    """Parity (errors stop the run) and memory sanity (warnings) against the live cluster."""
    from sdt_build.smoke import parity_text, preflight as parity

    warnings = []
    if options.check_versions:
        rows = parity(dask_client)
        errors = [r for r in rows if r.severity == "error"]
        if errors:
            raise RunFailure("SDT-E503", f"the cluster runs {errors[0].package} {errors[0].image}, this client "
                             f"{errors[0].client}: tasks would fail or misbehave", errors[0].fix,
                             detail=parity_text(rows))
        warnings += [f"{r.package}: client {r.client}, cluster {r.image}" for r in rows if r.severity == "warning"]
    for address, info in dask_client.scheduler_info().get("workers", {}).items():
        limit = info.get("memory_limit") or 0
        threads = info.get("nthreads", 1) or 1
        if limit and limit / threads < PIPELINE_PEAK_BYTES:
            warnings.append(f"worker {address} has {limit / 2**30:.1f} GiB for {threads} thread(s); one SDT "
                            "pipeline run peaks near 6 GB, so long sites may be killed for memory")
            break
    return warnings


def _keys(keys, project: UserProject, dask_client, bundle: PlugBundle) -> list[tuple]:
    if keys is not None:
        chosen = [normalize_key(k) for k in keys]
    elif project.settings.keys:
        chosen = list(project.settings.keys)
    elif project.plug.has_keys:
        chosen = [normalize_key(k) for k in dask_client.submit(plug_keys, bundle.digest, pure=False).result()]
    else:
        chosen = []
    if not chosen:
        raise RunFailure("SDT-E501", "no keys to run",
                         "pass keys (--key / --keys FILE), list them under keys in sdt.toml, or give "
                         "the plug a keys() method")
    return list({key_id(k): k for k in chosen}.values())  # each key once, in the order given


def _longest_first(dask_client, bundle: PlugBundle, keys: list[tuple]) -> list[tuple]:
    """Keys by the plug's size estimate, largest first, so no long site starts last."""
    sizes = dask_client.submit(plug_sizes, bundle.digest, keys, pure=False).result()
    return [keys[i] for i in sorted(range(len(keys)), key=lambda i: -sizes[i])]


def _cluster_versions(dask_client) -> dict:
    try:
        versions = dask_client.get_versions(check=False, packages=["solar-data-tools"])
    except Exception:  # informational only
        return {}
    return {"client": versions.get("client", {}).get("packages", {}),
            "scheduler": (versions.get("scheduler") or {}).get("packages", {})}


class _performance_report:
    """Dask's performance report when it can be made (it needs bokeh); its absence never fails a run."""

    def __init__(self, output: Path | None, record: dict):
        self.output, self.record, self.inner = output, record, None

    def __enter__(self):
        if self.output is None:
            return self
        if importlib.util.find_spec("bokeh") is None:
            self.record["performance_report"] = "skipped: bokeh is not installed"
            return self
        from distributed import performance_report

        self.inner = performance_report(filename=str(self.output / "dask-report.html"))
        self.inner.__enter__()
        self.record["performance_report"] = str(self.output / "dask-report.html")
        return self

    def __exit__(self, *exc):
        if self.inner is not None:
            try:
                self.inner.__exit__(*exc)
            except Exception as error:  # a report is a bonus
                self.record["performance_report"] = f"failed: {error}"
        return False


class _Progress:
    """done/failed/running, rate and ETA, in terminals and notebooks (rich)."""

    def __init__(self, total: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.failed = 0
        self.bar = Progress(TextColumn("[bold]SDT"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[state]}"), TimeRemainingColumn(), transient=False)
        self.task = self.bar.add_task("keys", total=total, state="")
        self.bar.start()

    def advance(self, ok: bool) -> None:
        self.failed += not ok
        self.bar.advance(self.task)

    def update(self, running: int) -> None:
        self.bar.update(self.task, state=f"failed {self.failed}, running {running}")

    def close(self) -> None:
        self.bar.stop()


def _table(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=["key", "status", "stage"])
    table["key"] = table["key"].map(normalize_key)
    return table


def _write_outputs(output: Path, table: pd.DataFrame, record: dict) -> None:
    table.to_csv(output / "results.csv", index=False)
    try:
        flat = table.assign(key=table["key"].map(key_id)).astype({c: "string" for c in table.columns
                                                                   if table[c].dtype == object and c != "key"})
        flat.to_parquet(output / "results.parquet", index=False)
    except ImportError:
        record["parquet"] = "skipped: pyarrow is not installed"
    (output / "run.json").write_text(redact(json.dumps(record, indent=1, default=str)))
