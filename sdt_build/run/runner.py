"""The run: SDT's pipeline for many keys on a connected Dask cluster, every failure explained, no
result lost.

Keys stream through the cluster with a bounded number in flight; each finished row is appended to
``journal.jsonl`` at once, so a dead worker, scheduler or client (or Ctrl-C, or SIGTERM) loses
nothing that finished, and ``resume`` runs only what is missing. A scheduler that goes away, or a
cluster left with no workers, ends the run with a row for every key that did not finish. The run
takes a connected client: building the image and starting the cluster are the caller's
(``sdtdask.SDTDask`` composes them).
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
import uuid
from collections import Counter, deque
from concurrent.futures import CancelledError
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from sdt_build import __version__
from sdt_build.clients.base import scheduler_lost
from sdt_build.constraints import PIPELINE_PEAK, PIPELINE_PEAK_BYTES, UNFIXED_PEAK_BYTES, pins
from sdt_build.interrupt import raise_if_lost
from sdt_build.run.report import failure_groups, write_report
from sdt_build.run.results import PERFORMANCE, REPORT, OutputFolder, results_table
from sdt_build.runtime import parity, upstream_fixes
from sdt_build.runtime.errors import Problem, RunFailure
from sdt_build.runtime.keys import key_id, validate_key
from sdt_build.runtime.redact import dumps
from sdt_build.runtime.rows import SECONDS, Row
from sdt_build.runtime.task import (PEAK_MEMORY, START_TOPIC, WORKER_LOG_TOPIC, WORKER_LOGGERS, DaskProfiler,
                                    PlugBundle, PlugCallFailed, PlugInstaller, module_version, plug_keys, plug_sizes,
                                    run_key)
from sdt_build.userfiles import CLIENT_FILE
from sdt_build.userfolder.project import UserProject

BYSTANDER_LOSSES = 3  # a key lost this often before it started is failed like any other
SIZES_SECONDS = 120  # the longest the plug's size() may take for a run's keys when no --timeout is set
WORKERS_POLL_SECONDS = 2.0
WORKERS_ANSWER_SECONDS = 5.0  # a live scheduler answers in milliseconds
TOTAL = f"{SECONDS}total"


@dataclass(frozen=True)
class RunOptions:
    """How a run treats its keys."""

    pipeline_kwargs: dict[str, Any] = field(default_factory=dict)
    loss_analysis: bool = False
    timeout: float | None = None  # seconds per key; None: no limit
    retries: int = 1  # extra attempts for a key whose worker died
    max_in_flight: int | None = None  # default: twice the cluster's threads
    check_versions: bool = True  # parity pre-flight against the live cluster
    lost_cluster_timeout: float = 60  # seconds a cluster may have no workers left before the run ends
    plots: int = 3  # the first keys run keep SDT's own figures (for the report)
    plot_keys: tuple[tuple, ...] = ()  # and these keys too
    upstream_fixes: bool = True  # sdt_build.runtime.upstream_fixes on every worker (False: their originals)
    worker_profile: bool = False  # Dask's profiler on the workers (task.use_profiler), for the performance report

    def __post_init__(self) -> None:
        """Every number in its range (SDT-E552), before anything starts."""
        wrong = []
        for name, value, whole, least, optional in (
                ("timeout", self.timeout, False, 0, True), ("retries", self.retries, True, 0, False),
                ("max_in_flight", self.max_in_flight, True, 1, True),
                ("lost_cluster_timeout", self.lost_cluster_timeout, False, 0, False),
                ("plots", self.plots, True, 0, False)):
            if value is None and optional:
                continue
            number = isinstance(value, int if whole else (int, float)) and not isinstance(value, bool)
            if not (number and (value >= least if whole else value > least)):  # NaN is in no range
                rule = f"a whole number, {least} or more" if whole else "a number of seconds above 0"
                wrong.append(f"{name} (--{name.replace('_', '-')}) is {value!r}: it must be {rule}"
                             + (" (or none)" if optional else ""))
        if wrong:
            raise RunFailure("SDT-E552", "; ".join(wrong), "give each option a value in its range")


@dataclass(frozen=True)
class RunResult:
    """One row per key (``table``), where the run wrote its files, and its record."""

    table: pd.DataFrame
    output_dir: Path | None
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    problem: Problem | None = None  # why the run ended early (the scheduler or every worker was lost)

    @property
    def ok(self) -> bool:
        return self.counts.get("failed", 0) == 0 and self.problem is None

    def summary(self) -> dict[str, Any]:
        """Counts, the slowest keys, and failures grouped by stage and cause (each with an example and a fix)."""
        table = self.table
        slowest = table.sort_values(TOTAL, ascending=False).head(5) if TOTAL in table and len(table) \
            else table.iloc[0:0]
        return {
            "counts": self.counts, "seconds": round(self.seconds, 1),
            "parallel_efficiency": self.record.get("parallel_efficiency"),
            "slowest": [{"key": list(r["key"]), "seconds": r[TOTAL]} for _, r in slowest.iterrows()],
            "failures": failure_groups(table),
        }


class ClusterLost(Exception):
    """The scheduler went away, or no worker was left: every key that did not finish gets a row."""

    def __init__(self, problem: Problem, stage: str, error_type: str, unfinished: list[tuple[tuple, int]]):
        super().__init__(problem.cause)
        self.problem = problem
        self.unfinished = unfinished
        self.stage = stage
        self.error_type = error_type

    def rows(self, explanation: str | None) -> list[Row]:
        message = f"{self.problem.cause}; this key did not finish. Fix: {self.problem.fix}"
        if explanation:
            message += f". The backend says: {explanation}"
        return [Row.unfinished(key, attempt, self.stage, self.error_type, message) for key, attempt in self.unfinished]


@dataclass(frozen=True)
class Resubmit:
    """A key whose worker died goes again, as this attempt."""

    attempt: int


def run(project: UserProject, dask_client, keys: list[tuple] | None, options: RunOptions, output: OutputFolder, *,
        progress: bool = False, on_row: Callable[[Row], None] | None = None, client_settings: dict | None = None,
        explain: Callable[[], str | None] | None = None,
        on_start: Callable[[dict], None] | None = None) -> RunResult:
    """Keys → tasks → journal → table, on a connected ``distributed.Client``.

    ``explain`` is the backend's account of dead workers (container logs), added to lost-worker rows;
    ``on_start`` gets the run record (keys, dashboard link) once the keys are known. The output
    folder is started (``OutputFolder.start``) only once the keys are known: a run that stops
    earlier leaves it as it was.
    """
    started = time.perf_counter()
    try:
        bundle, warnings = prepare_cluster(dask_client, project, options)
        fixes, unfixed = apply_fixes(dask_client, options.upstream_fixes)
        chosen = choose_keys(keys, project, dask_client, bundle, options)
    except OSError as exc:  # distributed's comm errors (no file named): the scheduler went away before any key ran
        if exc.filename is not None:
            raise
        raise scheduler_lost(exc, explain() if explain else None) from exc
    earlier = output.record()
    output.start()
    stream = Stream(dask_client, bundle, options, output, on_row, progress, explain)
    dashboard = dashboard_link(dask_client, (client_settings or {}).get("dashboard", True))
    record = {"sdt_build": __version__, "project": project.name, "run_id": stream.run_id, "plug": stream.plug,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "client": {**(client_settings or {}), "dashboard": dashboard is not None},  # as served, not as asked
              "options": {**options.__dict__}, "keys": len(chosen), "already_done": None,
              "upstream_fixes": fixes, "warnings": warnings + unfixed + output.notes,
              "versions": _cluster_versions(dask_client), "dashboard": dashboard}
    try:
        todo = remaining(chosen, output, project, dask_client, bundle, options, record, earlier)
    except BaseException as exc:  # SIGTERM while the plug sizes the keys: the outputs are written all the same
        problem, failure = _stopped(exc, record)
    else:
        record["already_done"] = len(chosen) - len(todo)
        if on_start:
            on_start(record)
        problem, failure = stream_keys(stream, todo, output, record, explain)
    try:
        result = conclude(output, chosen, record, stream, started, explain, problem)
    except RunFailure:
        if failure is None:
            raise
        result = None  # the first failure is the one to tell
    if failure is not None:
        raise failure
    return result


def prepare_cluster(dask_client, project: UserProject, options: RunOptions) -> tuple[PlugBundle, list[str]]:
    """Check the cluster (parity, memory) and give every worker the plug's files (once)."""
    warnings = check_cluster(dask_client, options)
    bundle = PlugBundle.from_folder(project.root, project.code_files, project.plug.name,
                                    tuple(var.name for var in project.env if var.secret))
    dask_client.register_plugin(PlugInstaller(bundle))
    dask_client.register_plugin(DaskProfiler(options.worker_profile))
    return bundle, warnings


def apply_fixes(dask_client, enabled: bool) -> tuple[list[dict], list[str]]:
    """The upstream fixes applied on every worker before the first key (each key applies them too, on
    workers that join later): what became of each, with how many workers, and a warning for a fix
    that was asked for and not applied."""
    try:
        answers = dask_client.run(upstream_fixes.apply, enabled)
    except Exception as exc:  # workers whose sdt_build has no upstream fixes (an image the user brings)
        return [], [f"the workers could not say which upstream fixes they apply ({type(exc).__name__}: {exc})"]
    seen: dict[tuple, dict] = {}
    for outcomes in answers.values():
        for outcome in outcomes:
            entry = seen.setdefault(astuple(outcome), {**outcome.to_dict(), "workers": 0})
            entry["workers"] += 1
    fixes = list(seen.values())
    warnings = [f"the upstream fix {f['name']} was not applied on {f['workers']} worker(s): {f['reason']}"
                for f in fixes if enabled and f["status"] != upstream_fixes.APPLIED]
    return fixes, warnings


def choose_keys(keys: list[tuple] | None, project: UserProject, dask_client, bundle: PlugBundle,
                options: RunOptions) -> list[tuple]:
    """The keys given, else sdt.toml's, else the plug's ``keys()`` (run on a worker, within --timeout
    when one is set); each once, in order."""
    if keys is not None:
        chosen = list(keys)
    elif project.settings.keys:
        chosen = list(project.settings.keys)
    elif project.plug.has_keys:
        try:
            listed = _bounded(dask_client, dask_client.submit(plug_keys, bundle.digest, pure=False), options.timeout)
        except Exception as exc:  # its worker died
            listed = PlugCallFailed.of(exc)
        if isinstance(listed, PlugCallFailed):
            raise RunFailure("SDT-E555", f"the plug's keys() failed: {listed}", "fix keys() in dataplug.py, or pass "
                             "the keys (--key / --keys FILE, or keys in sdt.toml)")
        if listed is None:
            raise RunFailure("SDT-E554", f"the plug's keys() did not answer within {options.timeout:g} s (--timeout)",
                             "make keys() quick, or pass the keys (--key / --keys FILE, or keys in sdt.toml); its "
                             "worker was restarted")
        chosen = [validate_key(k) for k in listed]
    else:
        chosen = []
    if not chosen:
        raise RunFailure("SDT-E501", "no keys to run",
                         "pass keys (--key / --keys FILE), list them under keys in sdt.toml, or give "
                         "the plug a keys() method")
    return list({key_id(k): k for k in chosen}.values())


def remaining(chosen: list[tuple], output: OutputFolder, project: UserProject, dask_client, bundle: PlugBundle,
              options: RunOptions, record: dict, earlier: dict) -> list[tuple]:
    """The keys without an ``ok`` row in the journal, largest first when the plug can tell sizes
    (within --timeout, else SIZES_SECONDS: sizes are an estimate, never worth a stalled run).
    Finished rows that other code or settings made are kept, and named in the record's warnings."""
    finished = output.finished()
    done = {key for key, (ok, _) in finished.items() if ok}
    changed = sorted({plug for ok, plug in finished.values() if ok and plug and plug != code_digest(bundle)})
    if changed:
        count = sum(ok and plug in changed for ok, plug in finished.values())
        record["warnings"].append(
            f"{count} finished row(s) were made by other code of the plug (its .py files changed since: plug "
            f"{', '.join(changed)}, now {code_digest(bundle)}); they are kept as they are. Fix: --force runs every key "
            "again with this code")
    before = (earlier.get("options") or {}).get("pipeline_kwargs")
    if done and before is not None and before != options.pipeline_kwargs:
        record["warnings"].append(
            f"the finished rows were made with other run_pipeline arguments ({json.dumps(before, default=str)}, now "
            f"{json.dumps(options.pipeline_kwargs, default=str)}); they are kept as they are. Fix: --force runs every "
            "key again with these")
    todo = [k for k in chosen if key_id(k) not in done]
    if project.plug.has_size and len(todo) > 1:
        bound = options.timeout or SIZES_SECONDS
        sizes = _bounded(dask_client, dask_client.submit(plug_sizes, bundle.digest, todo, pure=False), bound)
        if sizes is None:
            record["warnings"].append(f"the plug's size() did not answer within {bound:g} s for {len(todo)} keys: "
                                      "they run in the order given, and its worker was restarted. Fix: make size() "
                                      "quick (it is asked once per run for every key), or remove it")
        else:
            todo = [todo[i] for i in sorted(range(len(todo)), key=lambda i: -sizes[i])]
    return todo


def code_digest(bundle: PlugBundle) -> str:
    """The digest of the plug's code a row records: every .py file but client.py (where a run happens
    does not change what it computes)."""
    return PlugBundle(tuple(f for f in bundle.files if f[0] != CLIENT_FILE), bundle.class_name).digest


def _bounded(dask_client, future, seconds: float | None):
    """The future's result, or None when it did not finish within ``seconds`` (None: no limit); then it
    is cancelled and the worker running it restarted (a Python thread cannot be stopped)."""
    from distributed import wait

    if seconds is not None:
        try:
            wait([future], timeout=seconds)
        except TimeoutError:
            pass
        if future.status == "pending":
            workers = [w for w, keys in dask_client.processing().items() if future.key in keys]
            future.cancel()  # first: a task the scheduler still knows would go to the restarted worker again
            try:
                dask_client.restart_workers(workers, raise_for_error=False)
            except Exception:  # the caller says what did not answer whether or not the restart worked
                pass
            return None
    return future.result()


def _stopped(exc: BaseException, record: dict) -> tuple[Problem | None, BaseException]:
    """An interrupt or a full disk, to be raised once the outputs are written."""
    if isinstance(exc, KeyboardInterrupt):
        record["interrupted"] = getattr(exc, "signal", "SIGINT")
    return None, exc


def stream_keys(stream: "Stream", todo: list[tuple], output: OutputFolder, record: dict,
                explain: Callable[[], str | None] | None) -> tuple[Problem | None, BaseException | None]:
    """Run the keys. A lost cluster gives rows for what did not finish; an interrupt or a full disk
    is returned (to be raised once the outputs are written)."""
    try:
        with _performance_report(output.folder, record, stream.client):
            stream.run(todo)
    except ClusterLost as lost:
        record["warnings"].append(f"{lost.problem.code} {lost.problem.cause}")
        try:
            for row in lost.rows(explain() if explain else None):
                stream.finish(row)
        except BaseException as exc:
            return lost.problem, exc
        return lost.problem, None
    except BaseException as exc:  # Ctrl-C, SIGTERM, a full disk: the outputs are written all the same
        return _stopped(exc, record)
    return None, None


def conclude(output: OutputFolder, chosen: list[tuple], record: dict, stream: "Stream", started: float,
             explain: Callable[[], str | None] | None, problem: Problem | None) -> RunResult:
    """The table of every key's last row, the run record, and the files that hold them."""
    lost = explain() if explain else None
    if lost:
        record["lost_workers"] = lost
        record["warnings"].append(f"workers died during the run: {lost}")
    rows = output.rows(Row.flat)  # records, not Rows: a fleet's table is made once
    record["warnings"] += [note for note in output.notes if note not in record["warnings"]]
    asked = {key_id(k) for k in chosen}
    others = [row for ident, row in rows.items() if ident not in asked]
    if others:  # the folder's results hold every key it has a row of
        record["other_keys"] = len(others)
        record["warnings"].append(f"{len(others)} key(s) of earlier runs in this folder were not asked for this time; "
                                  "their rows are kept in the results and the report")
    table = results_table([rows[key_id(k)] for k in chosen if key_id(k) in rows] + others)
    wall = time.perf_counter() - started
    mine = table[table["run_id"] == stream.run_id] if "run_id" in table else table.iloc[0:0]
    busy = float(mine[TOTAL].sum()) if TOTAL in mine else 0.0
    record.update(seconds=round(wall, 2), finished=time.strftime("%Y-%m-%dT%H:%M:%S"), threads=stream.threads,
                  parallel_efficiency=round(busy / (stream.seconds * stream.threads), 3) if stream.seconds else None)
    if problem is not None:
        record["problem"] = problem.to_dict()
    output.log([f"worker {e.get('worker')}\t{e.get('logger')}: {e.get('message')}" for e in stream.worker_log])
    _memory_summary(record, [e for e in stream.worker_log if e.get("logger") == WORKER_LOGGERS[0]], table)
    if output.folder is not None:
        _write_outputs(output, table, record)
    counts = dict(Counter(rows[key_id(k)]["status"] for k in chosen if key_id(k) in rows).most_common())
    return RunResult(table, output.folder, wall, counts, record, problem)


class Stream:
    """Submits keys with backpressure, enforces timeouts, retries lost ones, journals every row."""

    def __init__(self, dask_client, bundle: PlugBundle, options: RunOptions, output: OutputFolder,
                 on_row: Callable[[Row], None] | None, progress: bool,
                 explain: Callable[[], str | None] | None = None):
        self.client = dask_client
        self.bundle = bundle
        self.options = options
        self.output = output
        self.on_row = on_row
        self.progress = progress
        self.explain = explain
        self.run_id = uuid.uuid4().hex[:8]
        self.plug = code_digest(bundle)
        self.largest_peak = 0.0  # GiB: the largest worker peak a finished key of this run recorded
        self.started: dict[str, tuple[float, str]] = {}
        self.bystander_losses: dict[str, int] = {}
        self.memory_limits: dict[str, int] = {}  # worker → bytes, remembered after it dies
        self.threads = 1
        self.seconds = 0.0
        self._workers_seen_at: float | None = None
        self._polled = 0.0
        self._bar: _Progress | None = None
        self.worker_log: list[dict] = []  # distributed's warnings on the workers
        self.plot_ids: set[str] = set()

    def run(self, keys: list[tuple]) -> None:
        from distributed import wait

        self.threads = max(1, sum(w.get("nthreads", 1) for w in (self._workers() or {}).values()))
        if not keys:
            return
        limit = self.options.max_in_flight or max(2, 2 * self.threads)
        pending = deque((key, 1) for key in keys)
        futures: dict[Any, tuple[tuple, int]] = {}
        self.plot_ids = {key_id(k) for k in keys[:self.options.plots]} | {key_id(k) for k in self.options.plot_keys}
        self.client.subscribe_topic(START_TOPIC, self._started)
        self.client.subscribe_topic(WORKER_LOG_TOPIC, lambda event: self.worker_log.append(event[1]))
        self._bar = _Progress(len(keys)) if self.progress else None
        began = time.perf_counter()
        try:
            while pending or futures:
                raise_if_lost()  # a Ctrl-C that met a dropped future's __del__ is not lost
                self._check_cluster(futures, pending)
                while pending and len(futures) < limit:
                    key, attempt = pending.popleft()
                    name = f"sdt-{self.run_id}-{key_id(key)}-{attempt}-{uuid.uuid4().hex[:6]}"  # never reused
                    future = self.client.submit(run_key, self.bundle.digest, key, self.options.pipeline_kwargs,
                                                self.options.loss_analysis, key_id(key) in self.plot_ids,
                                                self.options.upstream_fixes, pure=False, key=name)
                    futures[future] = (key, attempt)
                try:
                    done, _ = wait(list(futures), timeout=1.0, return_when="FIRST_COMPLETED")
                except (TimeoutError, CancelledError, ValueError):  # nothing finished, or the client lost its scheduler
                    done = set()
                if self.client.status != "running":
                    continue  # the next check names the loss; no row comes from a cancelled future
                results = self._gather(done)
                for future in done:
                    key, attempt = futures.pop(future)
                    outcome = self._outcome(future, key, attempt, results.get(future.key))
                    if isinstance(outcome, Resubmit):
                        pending.appendleft((key, outcome.attempt))
                    else:
                        self.finish(outcome)
                if self.options.timeout:
                    for future in self._timed_out(futures):
                        key, attempt = futures.pop(future)
                        self.finish(self._timeout_row(future, key, attempt))
                if self._bar:
                    self._bar.update(running=len(futures))
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        finally:
            self.seconds = time.perf_counter() - began
            if self.client.status == "running":
                self.client.unsubscribe_topic(START_TOPIC)
                self.client.unsubscribe_topic(WORKER_LOG_TOPIC)
            if self._bar:
                self._bar.close()

    def finish(self, row: Row) -> None:
        """Journal a key's row (at once: nothing finished is kept only in memory)."""
        self.started.pop(key_id(row.key), None)
        self.largest_peak = max(self.largest_peak, row.values.get(PEAK_MEMORY) or 0.0)
        row = row.but(run_id=self.run_id, plug=self.plug)
        self.output.add(row)
        if self.on_row:
            self.on_row(row)
        if self._bar:
            self._bar.advance(row.ok)

    def _workers(self) -> dict[str, dict] | None:
        """The scheduler's workers; None when it does not answer within WORKERS_ANSWER_SECONDS (a
        scheduler that is gone would hold the call for the whole connect timeout: the status check tells)."""
        try:
            return self.client.sync(self.client.scheduler.identity, n_workers=-1,
                                    callback_timeout=WORKERS_ANSWER_SECONDS).get("workers", {})
        except (OSError, ValueError, TimeoutError):
            return None

    def _check_cluster(self, futures: dict, pending: deque) -> None:
        """Raise ClusterLost when the scheduler went away, or when no worker has been left for
        ``lost_cluster_timeout`` seconds (workers that come back, as nannies restart them, are waited for)."""
        unfinished = lambda: list(futures.values()) + list(pending)  # noqa: E731
        if self.client.status != "running":
            address = getattr(self.client.scheduler, "address", None) or "the scheduler"
            raise ClusterLost(Problem("SDT-E512", f"the client lost the scheduler ({address})",
                                      "run again with --resume: finished keys are kept and only these run; if it "
                                      "happens again, read the scheduler's log"),
                              "scheduler lost", "SchedulerLost", unfinished())
        now = time.monotonic()
        if now - self._polled < WORKERS_POLL_SECONDS:
            return
        self._polled = now
        workers = self._workers()
        if workers is None:  # no answer: gone (the next turn's status check says so) or busy
            return
        if workers:
            self._workers_seen_at = now
            self.memory_limits.update({a: w["memory_limit"] for a, w in workers.items() if w.get("memory_limit")})
            return
        if self._workers_seen_at is not None and now - self._workers_seen_at > self.options.lost_cluster_timeout:
            raise ClusterLost(Problem("SDT-E513", f"no worker has been left in the cluster for "
                                                  f"{self.options.lost_cluster_timeout:g} s",
                                      f"if the workers ran out of memory, raise memory_per_worker ({self._peaks()}) "
                                      "or lower threads_per_worker; then run again with --resume"),
                              "no workers", "NoWorkers", unfinished())

    def _peaks(self) -> str:
        """What a key needs, as measured: sdt-build's figure, and this run's largest key so far."""
        said = PIPELINE_PEAK if self.options.upstream_fixes else \
            f"without upstream fixes one SDT pipeline run peaks near {UNFIXED_PEAK_BYTES / 2**30:.1f} GiB"
        if self.largest_peak:
            said += f"; the largest key of this run so far peaked at {self.largest_peak:.1f} GiB on its worker"
        return said

    def _started(self, event) -> None:
        _, message = event
        self.started[message["key"]] = (time.monotonic(), message["worker"])

    def _gather(self, done) -> dict[str, Row]:
        """The rows of the finished futures, fetched together (one round trip, not one per key); a
        future whose row cannot be fetched is left out (``_outcome`` asks it alone)."""
        finished = {future.key: future for future in done if future.status == "finished"}
        try:
            return self.client.gather(finished, errors="skip") if finished else {}
        except Exception:  # the scheduler went away: each future tells what became of it
            return {}

    def _outcome(self, future, key: tuple, attempt: int, row: Row | None = None) -> Row | Resubmit:
        """The key's row (``row``, when gathered already); or, when its worker died and it may go
        again, the attempt to submit it as (a key that had not started spends none: it was queued
        behind another key that killed it)."""
        if future.status == "finished":
            row = row if row is not None else future.result()
            row = row.but(key=key, attempts=attempt)
            dependency = row.values.get("dependency")
            if dependency:
                client = module_version(dependency)
                row = row.but(values={**row.values, "dependency_version_client": client},
                              message=f"{row.message} (dependency {dependency}: worker has "
                                      f"{row.values.get('dependency_version_worker') or 'none'}, client has "
                                      f"{client or 'none'})")
            return row
        exc = future.exception() if future.status == "error" else None
        if _is_lost_worker(exc):
            if key_id(key) not in self.started and self._bystander(key):
                return Resubmit(attempt)
            if attempt <= self.options.retries:
                self.started.pop(key_id(key), None)
                return Resubmit(attempt + 1)
        return self._lost_row(key, attempt, exc)

    def _bystander(self, key: tuple) -> bool:
        """Whether a key lost before it started may go again without spending an attempt (a few times:
        workers that die before any key starts must still end in rows)."""
        losses = self.bystander_losses[key_id(key)] = self.bystander_losses.get(key_id(key), 0) + 1
        return losses <= BYSTANDER_LOSSES

    def _lost_row(self, key: tuple, attempt: int, exc: BaseException | None) -> Row:
        if _is_lost_worker(exc):
            worker = self.started.get(key_id(key), (None, "unknown (it died before reporting)"))[1]
            message = (f"the worker running this key died {attempt} time(s) ({_death_cause(self.client)}). Each "
                       f"worker has {self._memory(worker)}; {self._peaks()}. Fix: raise "
                       "memory_per_worker or use fewer threads per worker; if memory was not the cause, read the "
                       "worker logs")
            backend = self.explain() if self.explain else None
            if backend:
                message += f". The backend says: {backend}"
            return Row.lost(key, attempt, type(exc).__name__, message, worker)
        if exc is None:
            return Row.unfinished(key, attempt, "worker", "CancelledError",
                                  "the task was cancelled (scheduler restarted or client disconnected)")
        row = Row.failed(key, "worker", exc, {}, None).but(attempts=attempt)
        detail = str(exc)
        if "pickle" in detail.lower() or "deserializ" in detail.lower():
            row = row.but(message=f"{detail[:300]} — results could not be unpickled: the client's and the workers' "
                                  "versions differ (see `sdt-build smoke` parity)")
        return row

    def _memory(self, worker: str | None) -> str:
        """The memory limit of ``worker`` as it was while it lived (the cluster's, when they all agree)."""
        self.memory_limits.update({a: w["memory_limit"] for a, w in (self._workers() or {}).items()
                                   if w.get("memory_limit")})
        limits = set(self.memory_limits.values())
        limit = self.memory_limits.get(worker) or (max(limits) if len(limits) == 1 else None)
        if limit:
            return f"a {limit / 2**30:.1f} GiB memory limit"
        if not limits:
            return "no memory limit"
        return "memory limits of " + ", ".join(sorted(f"{value / 2**30:.1f}" for value in limits)) + " GiB"

    def _timed_out(self, futures: dict) -> list:
        now = time.monotonic()
        late = []
        for future, (key, _) in futures.items():
            began = self.started.get(key_id(key))
            if began and now - began[0] > self.options.timeout and future.status == "pending":
                late.append(future)
        return late

    def _timeout_row(self, future, key: tuple, attempt: int) -> Row:
        began, worker = self.started[key_id(key)]
        future.cancel()
        try:  # a running Python thread cannot be stopped: restart its worker process to free it
            self.client.restart_workers([worker], raise_for_error=False)
        except Exception as exc:  # the row explains the timeout whether or not the restart worked
            worker = f"{worker} (restart failed: {exc})"
        return Row.timed_out(key, attempt, f"still running after {self.options.timeout:g} s; its worker was "
                             "restarted. Fix: raise the timeout (--timeout) if the site is just long",
                             worker, time.monotonic() - began)


def _is_lost_worker(exc: BaseException | None) -> bool:
    return exc is not None and type(exc).__name__ in ("KilledWorker", "CommClosedError", "FutureCancelledError")


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


def check_cluster(dask_client, options: RunOptions) -> list[str]:
    """Parity with the live scheduler and workers (errors stop the run, SDT-E503) and memory
    sanity (warnings), before anything is submitted."""
    warnings = []
    if options.check_versions:
        rows = cluster_parity(dask_client)
        parity.require(rows, "cluster")
        warnings += [f"{r.package}: client {r.client}, cluster {r.other}" for r in rows if r.severity == "warning"]
    peak = PIPELINE_PEAK_BYTES if options.upstream_fixes else UNFIXED_PEAK_BYTES
    for address, info in dask_client.scheduler_info().get("workers", {}).items():
        limit = info.get("memory_limit") or 0
        threads = info.get("nthreads", 1) or 1
        if limit and limit / threads < peak:
            warnings.append(f"worker {address} has {limit / 2**30:.1f} GiB for {threads} thread(s); one SDT pipeline "
                            f"run peaks near {peak / 2**30:.1f} GiB"
                            + ("" if options.upstream_fixes else " without upstream fixes")
                            + ", so long sites may be killed for memory")
            break
    return warnings


def cluster_parity(dask_client) -> tuple[parity.ParityRow, ...]:
    """Parity rows against the scheduler and every worker (each difference once)."""
    versions = dask_client.get_versions(check=False, packages=list(parity.SHOULD_MATCH))
    mine = parity.versions()
    rows: list[parity.ParityRow] = []
    remotes = [("scheduler", versions.get("scheduler"))] + sorted((versions.get("workers") or {}).items())
    for where, info in remotes:
        if not info:
            continue
        packages = dict(info.get("packages", {}))
        python = re.match(r"\d+\.\d+\.\d+", str(info.get("host", {}).get("python") or packages.get("python")))
        packages["python"] = python.group(0) if python else None
        version = ".".join((packages["python"] or "").split(".")[:2])
        for row in parity.compare(mine, packages, where=where, pinned=_pins(version)):
            if row.severity != "ok" and not any(r.package == row.package and r.other == row.other for r in rows):
                rows.append(row)
    return tuple(rows)


def _pins(python: str) -> dict[str, str]:
    from sdt_build.constraints import available

    return pins(python) if python in available() else {}


def dashboard_link(dask_client, wanted: bool = True) -> str | None:
    """The Dask dashboard's address, when the client asked for one and the scheduler can serve it
    (it has bokeh; without, its web server answers only /health and a page saying bokeh is missing)."""
    if not wanted:
        return None
    try:
        if not dask_client.run_on_scheduler(module_version, "bokeh"):
            return None
        return dask_client.dashboard_link
    except Exception:  # informational only
        return None


def _memory_summary(record: dict, events: list[dict], table: pd.DataFrame) -> None:
    """distributed's memory warnings of the workers: counted in the record, and one line among the
    run's warnings when they matter (a worker died or was restarted during the run)."""
    if not events:
        return
    workers = sorted({e.get("worker", "?") for e in events})
    record["memory_warnings"] = {"count": len(events), "workers": workers, "last": events[-1].get("message", "")}
    lost = int((table["stage"] == "worker lost").sum()) if "stage" in table and len(table) else 0
    if lost or record.get("lost_workers"):
        record["warnings"].append(f"workers warned about their memory {len(events)} time(s) ({len(workers)} "
                                  f"worker(s); last: {events[-1].get('message', '')[:200]}); {PIPELINE_PEAK}: "
                                  "raise memory_per_worker or use fewer threads per worker")


def _cluster_versions(dask_client) -> dict:
    try:
        versions = dask_client.get_versions(check=False, packages=list(parity.SHOULD_MATCH))
    except Exception:  # informational only
        return {}
    return {"client": versions.get("client", {}).get("packages", {}),
            "scheduler": (versions.get("scheduler") or {}).get("packages", {})}


class _performance_report:
    """Dask's performance report when it can be made (it needs bokeh, and a scheduler to ask); its
    absence never fails a run."""

    def __init__(self, output: Path | None, record: dict, dask_client):
        self.output, self.record, self.inner, self.client = output, record, None, dask_client

    def __enter__(self):
        if self.output is None:
            return self
        if importlib.util.find_spec("bokeh") is None:
            self.record["performance_report"] = "skipped: bokeh is not installed"
            return self
        from distributed import performance_report

        self.inner = performance_report(filename=str(self.output / PERFORMANCE))
        self.inner.__enter__()
        self.record["performance_report"] = str(self.output / PERFORMANCE)
        return self

    def __exit__(self, *exc):
        if self.inner is not None and self.client.status != "running":  # asking would wait out the connect timeout
            self.record["performance_report"] = "skipped: the scheduler was lost"
        elif self.inner is not None:
            try:
                self.inner.__exit__(*exc)
            except Exception as error:  # a report is a bonus
                self.record["performance_report"] = f"failed: {error}"
        return False


class _Progress:
    """done/failed/running, rate and ETA, in terminals and notebooks (rich); elsewhere (a CI log)
    one line per tenth of the keys."""

    def __init__(self, total: int):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.failed = 0
        self.done = 0
        self.total = total
        self.running = 0
        self.console = Console(stderr=True)
        self.live = self.console.is_terminal or self.console.is_jupyter
        self.began = time.monotonic()
        self.bar = Progress(TextColumn("[bold]SDT"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[state]}"), TimeRemainingColumn(), transient=False,
                            console=self.console)
        self.task = self.bar.add_task("keys", total=total, state="")
        if self.live:
            self.bar.start()

    def advance(self, ok: bool) -> None:
        self.failed += not ok
        self.done += 1
        self.bar.advance(self.task)
        if not self.live and (self.done == self.total or self.done % max(1, self.total // 10) == 0):
            elapsed = time.monotonic() - self.began
            left = elapsed / self.done * (self.total - self.done)
            self.console.print(f"SDT {self.done}/{self.total} keys: failed {self.failed}, running {self.running}, "
                               f"{elapsed:.0f} s so far, about {left:.0f} s left", highlight=False)

    def update(self, running: int) -> None:
        self.running = running
        self.bar.update(self.task, state=f"failed {self.failed}, running {running}")

    def close(self) -> None:
        if self.live:
            self.bar.stop()


def _write_outputs(output: OutputFolder, table: pd.DataFrame, record: dict) -> None:
    """results.csv, results.parquet, run.json and the report, each written whole; run.json ends with
    how long each took and its size (``outputs``)."""
    timed = record["outputs"] = {}

    def write(name: str, writer: Callable[[], Any]) -> None:
        began = time.perf_counter()
        writer()
        timed[name] = {"seconds": round(time.perf_counter() - began, 3), "bytes": (output.folder / name).stat().st_size}

    write("results.csv", lambda: output.write("results.csv", lambda path: table.to_csv(path, index=False)))
    try:
        flat = table.assign(key=table["key"].map(key_id)).astype({c: "string" for c in table.columns
                                                                   if table[c].dtype == object and c != "key"})
        write("results.parquet",
              lambda: output.write("results.parquet", lambda path: flat.to_parquet(path, index=False)))
    except ImportError:
        record["parquet"] = "skipped: pyarrow is not installed"
    record["report"] = str(output.folder / REPORT)
    output.write("run.json", lambda path: path.write_text(dumps(record, indent=1)))
    try:
        write(REPORT, lambda: write_report(output.folder, table, record))
    except Exception as exc:  # the report is made from the files above; they are kept whatever happens here
        record["report"] = f"failed: {type(exc).__name__}: {exc} (make it again with `sdt-build report " \
                           f"{output.folder}`)"
    output.write("run.json", lambda path: path.write_text(dumps(record, indent=1)))
