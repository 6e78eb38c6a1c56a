"""What runs on a worker for one key: get_data → DataHandler → run_pipeline → report (→ loss analysis).

A task never raises: it returns one row saying how far the key got and why it stopped. The plug's
files reach each worker once (``PlugInstaller``, a Dask worker plugin) and are imported once per
worker process, so any backend runs exactly the code the user has. Heavy objects never leave the
worker.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import importlib.util
import io
import logging
import os
import re
import socket
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from sdt_build.runtime import upstream_fixes
from sdt_build.runtime.keys import key_id
from sdt_build.runtime.plug import SHADOW, everywhere, shadows
from sdt_build.runtime.redact import mask_streams, shorten
from sdt_build.runtime.rows import WARNINGS, Row

START_TOPIC = "sdt-build-start"
PEAK_MEMORY = "worker peak GiB"  # a row's value: its worker process's peak memory while the key ran
MEMORY_AFTER = "worker memory GiB"  # and its worker process's resident memory once the key was done
PLUG_FOLDER = "sdt-build-plugs"  # where a worker writes the plug's files, under its temporary folder
# distributed's warnings on a worker, sent to the client (for the run's log and summary) instead of the
# worker's stderr: its memory monitor, and sizeof's note on deep messages (the performance report's profiles)
WORKER_LOG_TOPIC = "sdt-build-worker-log"
WORKER_LOGGERS = ("distributed.worker.memory", "distributed.sizeof")
PLOTS = {"heatmap": lambda handler: handler.plot_heatmap(matrix="raw"),
         "daily energy": lambda handler: handler.plot_daily_energy()}  # SDT's own figures, by name
_load_lock = threading.Lock()
_draw_lock = threading.Lock()
_task = threading.local()  # the warnings of the key this thread runs
_original_showwarning = warnings.showwarning
_shown: set[tuple] = set()  # warnings shown outside a key
_loaded: dict[str, type] = {}
_installed: dict[str, "PlugBundle"] = {}


@dataclass(frozen=True)
class PlugBundle:
    """The user's Python files, the name of the plug class in dataplug.py, and the names of its
    declared secrets (masked in everything a worker prints)."""

    files: tuple[tuple[str, bytes], ...]  # byte for byte: Python decodes each as its encoding line says
    class_name: str
    secrets: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        h = hashlib.sha256(self.class_name.encode())
        for name, data in self.files:
            h.update(name.encode() + b"\0" + data + b"\0")
        return h.hexdigest()[:16]

    @classmethod
    def from_folder(cls, root: Path, relative_files: tuple[Path, ...], class_name: str,
                    secrets: tuple[str, ...] = ()) -> "PlugBundle":
        return cls(tuple((str(p), (root / p).read_bytes()) for p in relative_files), class_name, secrets)

    def plug_class(self) -> type:
        """Import dataplug.py on this process (once) and return the plug class. The plug's folder goes
        first on sys.path, so its helper modules are the ones the plug imports; a file of it that would
        replace a module this worker has is refused (PlugContractError, SDT-E127)."""
        digest = self.digest
        with _load_lock:
            if digest not in _loaded:
                found = shadows([name for name, _ in self.files], installed_modules())
                if found:
                    raise PlugContractError(f"{SHADOW}: {found[0].cause}. Fix: {found[0].fix}")
                folder = Path(tempfile.gettempdir()) / PLUG_FOLDER / digest
                for name, data in self.files:
                    _write_once(folder / name, data)
                if str(folder) not in sys.path:
                    sys.path.insert(0, str(folder))
                module_name = f"sdt_user_dataplug_{digest}"
                spec = importlib.util.spec_from_file_location(module_name, folder / "dataplug.py")
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
                _loaded[digest] = getattr(module, self.class_name)
            return _loaded[digest]


def installed_modules() -> dict[str, str]:
    """What this worker imports from outside the plug's folder (module → what it is): the packages
    installed here (the image's, a venv's or the local Python's; the plug's dependencies' too), the
    standard library and sdt_build."""
    from importlib.metadata import packages_distributions

    try:
        installed = packages_distributions()
    except Exception:  # broken metadata of one package never stops a worker
        installed = {}
    found = {module: f"the package {module} ({', '.join(sorted(set(dists)))}, installed on the workers)"
             for module, dists in installed.items()}
    return {**found, **everywhere()}


class PlugInstaller(WorkerPlugin):
    """A Dask worker plugin that gives every worker the plug's files, once: the scheduler keeps it
    and hands it to workers that join or restart later, so each task only names the plug by digest."""

    idempotent = True

    def __init__(self, bundle: PlugBundle):
        self.bundle = bundle
        self.name = f"sdt-build-plug-{bundle.digest}"

    def setup(self, worker) -> None:
        mask_streams(self.bundle.secrets)
        _installed[self.bundle.digest] = self.bundle
        capture_warnings()
        _forward_worker_log(worker)

    def teardown(self, worker) -> None:
        _installed.pop(self.bundle.digest, None)


class DaskProfiler(WorkerPlugin):
    """Dask's profiler on every worker on or off, as the run asks: registered by each run under one
    name, it replaces the last run's on the scheduler and its workers, and workers that join later
    follow the run in progress."""

    name = "sdt-build-profiler"

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def setup(self, worker) -> None:
        use_profiler(worker, self.enabled)


# Dask's profiler: a worker's periodic callbacks, each with its setting and the Worker method it calls
PROFILER = {"profile": ("interval", "trigger_profile"), "profile-cycle": ("cycle", "cycle_profile")}


def use_profiler(worker, enabled: bool) -> None:
    """Dask's statistical profiler on this worker on or off. It samples every running task's stack
    100 times a second and keeps an hour of samples, for the performance report's profile: on SDT's
    deep stacks ~10 % of a site's time, and a worker's memory grew ~190 MiB per 100 fleet sites.
    Removed callbacks stay off on a worker that is still starting (it starts those it has)."""
    import dask
    from dask.utils import parse_timedelta
    from distributed import profile
    from tornado.ioloop import PeriodicCallback

    callbacks = worker.periodic_callbacks
    if not enabled:
        for name in PROFILER:
            callback = callbacks.pop(name, None)
            if callback is not None:
                callback.stop()
        worker.profile_history.clear()
        worker.profile_keys_history.clear()
        worker.profile_keys.clear()
        worker.profile_recent = profile.create()
        return
    running = any(callback.is_running() for callback in callbacks.values())
    for name, (setting, method) in PROFILER.items():
        if name not in callbacks:
            every = parse_timedelta(dask.config.get(f"distributed.worker.profile.{setting}"), default="ms")
            callbacks[name] = PeriodicCallback(getattr(worker, method), every * 1000)
            if running:
                callbacks[name].start()


def capture_warnings() -> None:
    """Warnings raised while a key runs go to its row, not to the worker's stderr (where a local
    cluster prints them over the client's progress bar); each one every time, so every key's row
    has all of its own. Warnings outside a key are shown as before."""
    if warnings.showwarning is not _showwarning:
        warnings.showwarning = _showwarning
        warnings.simplefilter("always")


def _showwarning(message, category, filename, lineno, file=None, line=None) -> None:
    sink = getattr(_task, "warnings", None)
    if sink is None:  # outside a key: once per place, as Python's default filter does
        if (category, str(message), filename, lineno) not in _shown:
            _shown.add((category, str(message), filename, lineno))
            _original_showwarning(message, category, filename, lineno, file, line)
        return
    sink[(category.__name__, shorten(" ".join(str(message).split()), 300))] += 1


class _WorkerLog(logging.Handler):
    """distributed's warnings on this worker, as events for the client."""

    def __init__(self, worker):
        super().__init__(logging.WARNING)
        self.worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.worker.log_event(WORKER_LOG_TOPIC, {"worker": self.worker.address, "logger": record.name,
                                                     "message": record.getMessage()})
        except Exception:  # a diagnostic: never a reason to disturb the worker
            pass


def _forward_worker_log(worker) -> None:
    for name in WORKER_LOGGERS:
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if isinstance(h, _WorkerLog)]:
            logger.removeHandler(handler)
        logger.addHandler(_WorkerLog(worker))
        logger.propagate = False


def installed(digest: str) -> PlugBundle:
    """The bundle PlugInstaller put on this worker."""
    try:
        return _installed[digest]
    except KeyError:
        raise RuntimeError(f"the plug (digest {digest}) was not installed on this worker") from None


def _write_once(target: Path, data: bytes) -> None:
    """Write ``target`` atomically: other worker processes may be importing the same file now."""
    if target.exists() and target.read_bytes() == data:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
    partial.write_bytes(data)
    os.replace(partial, target)


def run_key(digest: str, key: tuple, pipeline_kwargs: dict[str, Any], loss_analysis: bool = False,
            plots: bool = False, fixes: bool = True) -> Row:
    """Run SDT for one key with the installed plug ``digest``, and return its row (never raises).
    With ``plots``, the row also carries SDT's own figures of the key (PNG); ``fixes`` applies the
    upstream fixes in this process first (False puts the originals back)."""
    upstream_fixes.apply(fixes)
    capture_warnings()
    _task.warnings = Counter()
    try:
        with PeakMemory() as peak:
            row = _run_key(digest, key, pipeline_kwargs, loss_analysis, plots)
    finally:
        caught, _task.warnings = _task.warnings, None
    lines = [WARNINGS.format(category=c, message=m, count=n) for (c, m), n in caught.most_common()]
    give_back(drew=bool(row.plots))
    row = row.but(values={**row.values, PEAK_MEMORY: peak.gib, MEMORY_AFTER: _gib(_resident())})
    return row.but(warnings="\n".join(lines)) if lines else row


def give_back(drew: bool) -> None:
    """Free what a key left behind, so a worker's memory after a key is what it still holds, not the
    largest key it has run: the heap pages glibc keeps after a free, and with ``drew`` the figures
    first (each a reference cycle holding its pixels; a full collection costs ~0.1 s, so only then)."""
    if drew:
        gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None (musl, macOS, Windows)."""
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


class PeakMemory:
    """This process's peak resident memory while a block runs, in GiB: the kernel's high-water mark,
    reset when the block starts, on a worker with one thread (Linux); else the largest of samples
    taken every 50 ms (keys running beside it on other threads count too)."""

    EVERY = 0.05

    def __enter__(self) -> "PeakMemory":
        self.gib: float | None = None
        self._stop = threading.Event()
        self._largest = 0
        self._sampler = None
        if not (_threads() == 1 and _reset_high_water()):
            self._sampler = threading.Thread(target=self._sample, daemon=True, name="sdt-peak-memory")
            self._sampler.start()
        return self

    def _sample(self) -> None:
        while True:
            self._largest = max(self._largest, _resident())
            if self._stop.wait(self.EVERY):
                return

    def __exit__(self, *exc) -> None:
        if self._sampler is None:
            largest = _high_water()
        else:
            self._stop.set()
            self._sampler.join()
            largest = max(self._largest, _resident())
        self.gib = _gib(largest)


def _gib(size: int) -> float | None:
    return round(size / 2**30, 3) if size else None


def _threads() -> int:
    try:
        from distributed import get_worker

        return get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        return threading.active_count()


def _reset_high_water() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM, the peak resident set size (Linux 4.0 and later)
        return True
    except OSError:
        return False


def _proc_status(field: str) -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _high_water() -> int:
    return _proc_status("VmHWM:")


def _resident() -> int:
    return _proc_status("VmRSS:") or _psutil_rss()


def _psutil_rss() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except Exception:  # a measurement only
        return 0


def _run_key(digest: str, key: tuple, pipeline_kwargs: dict[str, Any], loss_analysis: bool, plots: bool) -> Row:
    _announce(key)
    worker = _where()
    values: dict[str, Any] = {}
    clock = _Stages()
    started = time.perf_counter()
    try:
        clock.start("get_data")
        plug = installed(digest).plug_class()()
        data = check_power_data(plug.get_data(key))

        clock.start("make DataHandler")
        from solardatatools import DataHandler

        handler = DataHandler(data)
        del data

        clock.start("run_pipeline")
        handler.run_pipeline(**pipeline_kwargs)

        clock.start("report")
        report = handler.report(return_values=True, verbose=False)
        values.update({name: _plain(value) for name, value in (report or {}).items()})
        values["num_days"] = int(handler.num_days)

        if loss_analysis:
            if handler.num_days <= 365:
                values["loss_analysis"] = f"skipped: {handler.num_days} days of data (it needs more than a year)"
            else:
                import numpy as np

                clock.start("loss analysis")
                # SDT's loss analysis is a Monte Carlo on numpy's global random state: seeded from the
                # key, a key's numbers are the same on every run, worker and client
                np.random.seed(int(hashlib.sha256(key_id(key).encode()).hexdigest()[:8], 16))
                handler.run_loss_factor_analysis(verbose=False)
                loss = handler.loss_analysis.report()
                values.update({f"loss {name}": _plain(value) for name, value in loss.items()})
                values["loss_analysis"] = "done"
        clock.stop()
        figures = draw(handler) if plots else {}
    except BaseException as exc:  # a task reports every failure instead of raising it
        if isinstance(exc, KeyboardInterrupt) and threading.current_thread() is threading.main_thread():
            raise  # a signal to this process (a Dask worker runs tasks on other threads: never there)
        stage = clock.stop()
        clock.seconds["total"] = round(time.perf_counter() - started, 3)
        row = Row.failed(key, stage, exc, clock.seconds, worker, {**values, **dependency_problem(exc)})
        if isinstance(exc, Exception):
            return row
        return row.but(message=shorten(f"{stage} raised {type(exc).__name__}({str(exc)!r}), which ends a whole "
                                       "process, not one key. Fix: raise an exception (e.g. ValueError) for a key "
                                       "that cannot be done", 500))
    clock.seconds["total"] = round(time.perf_counter() - started, 3)
    return Row.done(key, values, clock.seconds, worker).but(plots=figures)


def draw(handler) -> dict[str, bytes]:
    """SDT's own figures of one key as PNG (a figure SDT cannot draw is left out, with a warning)."""
    import matplotlib

    matplotlib.use("Agg")  # a worker has no display
    import matplotlib.pyplot as plt

    figures = {}
    with _draw_lock:  # pyplot's current figure is one per process
        for name, plot in PLOTS.items():
            try:
                figure = plot(handler)
                if figure is not None:
                    buffer = io.BytesIO()
                    figure.savefig(buffer, format="png", dpi=72, bbox_inches="tight")
                    figures[name] = buffer.getvalue()
            except Exception as exc:  # a figure is a bonus: its absence never fails the key
                warnings.warn(f"SDT's {name} plot failed: {type(exc).__name__}: {exc}", RuntimeWarning)
            finally:
                plt.close("all")
    return figures


class PlugContractError(ValueError):
    """get_data returned something SDT cannot use; the message says what came back and what to return."""


EXPECTED = "expected a DataFrame with a DatetimeIndex and a power column"


def check_power_data(data: Any) -> Any:
    """``data`` when SDT's DataHandler can take it, else PlugContractError naming what came back."""
    import numpy as np
    import pandas as pd

    if data is None:
        raise PlugContractError(f"get_data returned None; {EXPECTED}. Fix: return the frame (a missing `return`?)")
    if isinstance(data, pd.Series):
        raise PlugContractError(f"get_data returned a Series; {EXPECTED}. Fix: return series.to_frame(\"power\")")
    if not isinstance(data, pd.DataFrame):
        raise PlugContractError(f"get_data returned {type(data).__module__}.{type(data).__name__}; {EXPECTED}")
    if data.empty:
        raise PlugContractError(f"get_data returned an empty DataFrame ({len(data)} rows × {data.shape[1]} columns); "
                                f"{EXPECTED}. Fix: check that the source has data for this key")
    if not isinstance(data.index, pd.DatetimeIndex):
        raise PlugContractError(f"get_data returned a DataFrame indexed by {type(data.index).__name__} "
                                f"({data.index.dtype}); {EXPECTED}. Fix: data.set_index(pd.to_datetime(...))")
    if data.index.tz is not None:
        raise PlugContractError(f"get_data returned a DatetimeIndex in the time zone {data.index.tz}; {EXPECTED} in "
                                "local time without a time zone (SDT reads the clock times). Fix: return "
                                "data.tz_localize(None) (the zone's clock time), or data.tz_convert(zone)"
                                ".tz_localize(None) for another zone's")
    if not any(pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
               for dtype in data.dtypes):
        kinds = ", ".join(f"{name} ({dtype})" for name, dtype in list(data.dtypes.items())[:5])
        raise PlugContractError(f"get_data returned a DataFrame with no numeric column ({kinds}); {EXPECTED}. "
                                "Fix: convert the power column with pd.to_numeric")
    numbers = data.select_dtypes("number").to_numpy(dtype=float, na_value=float("nan"))
    if not (numbers[np.isfinite(numbers)] != 0).any():
        raise PlugContractError(f"get_data returned {len(data)} readings that are all zero or missing (NaN); "
                                f"{EXPECTED} that holds some power. Fix: check the source's data for this key (a "
                                "logger that recorded nothing, a wrong column)")
    if not data.index.is_monotonic_increasing:
        raise PlugContractError("get_data returned a DataFrame whose DatetimeIndex is not in time order; "
                                f"{EXPECTED}. Fix: return data.sort_index()")
    return data


def _where() -> str:
    """The Dask worker running this task (its name and address), else this host and process."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"
    name = str(worker.name)
    return worker.address if name == worker.address else f"{name} {worker.address}"


def dependency_problem(exc: BaseException) -> dict[str, Any]:
    """When an error comes from a dependency (missing module, a library's AttributeError, a pickle
    from another version): the package and its version here."""
    package = None
    if isinstance(exc, ImportError):
        package = (getattr(exc, "name", None) or "").split(".")[0] or None
        if package is None:
            match = re.search(r"cannot import name '\w+' from '([\w.]+)'", str(exc))
            package = match.group(1).split(".")[0] if match else None
    elif isinstance(exc, (AttributeError, TypeError)) or type(exc).__name__ == "UnpicklingError":
        frames = traceback.extract_tb(exc.__traceback__)
        library = [f for f in frames if "site-packages" in f.filename or "dist-packages" in f.filename]
        if library and library[-1] is frames[-1]:
            package = re.split(r"[/\\]", library[-1].filename.split("-packages")[1].lstrip("/\\"))[0]
    if not package:
        return {}
    return {"dependency": package, "dependency_version_worker": module_version(package)}


def module_version(module: str) -> str | None:
    """The version of the distribution that provides ``module`` here (None when absent)."""
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    for name in packages_distributions().get(module, [module]):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def _announce(key: tuple) -> None:
    """Tell the client this key started, and where (for per-key timeouts)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    worker.log_event(START_TOPIC, {"key": key_id(key), "worker": worker.address, "time": time.time()})


class _Stages:
    """Seconds per stage of one key: a stage lasts from its start to the next one's, or to whatever
    ended it (an exception, SystemExit or KeyboardInterrupt alike), so loading the plug and importing
    SDT count too."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.stage = "get_data"
        self.since: float | None = None

    def start(self, stage: str) -> None:
        self.stop()
        self.stage, self.since = stage, time.perf_counter()

    def stop(self) -> str:
        """End the running stage (if one runs); return the last stage's name."""
        if self.since is not None:
            self.seconds[self.stage] = round(time.perf_counter() - self.since, 3)
            self.since = None
        return self.stage


def _plain(value: Any) -> Any:
    """numpy scalars to Python scalars, so rows serialise to JSON, CSV and Parquet alike."""
    item = getattr(value, "item", None)
    return item() if callable(item) and getattr(value, "ndim", 1) == 0 else value


@dataclass(frozen=True)
class PlugCallFailed:
    """A call of one of the plug's own methods raised: returned, not raised, so the client tells it
    with a code (and the worker logs no crash)."""

    error_type: str
    message: str
    where: str | None  # the plug's last frame: "dataplug.py, line 8, in keys"

    @classmethod
    def of(cls, exc: BaseException) -> "PlugCallFailed":
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if PLUG_FOLDER in f.filename]
        where = f"{Path(frames[-1].filename).name}, line {frames[-1].lineno}, in {frames[-1].name}" if frames else None
        return cls(type(exc).__name__, shorten(str(exc), 300), where)

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}" + (f" ({self.where})" if self.where else "")


def plug_keys(digest: str) -> list | PlugCallFailed:
    """The plug's own keys (run on a worker: the client needs none of the plug's packages)."""
    try:
        return list(installed(digest).plug_class()().keys())
    except Exception as exc:  # told by the client (SDT-E555)
        return PlugCallFailed.of(exc)


def plug_sizes(digest: str, keys: list[tuple]) -> list[float]:
    """The plug's size estimate per key, for longest-first ordering (0 where it cannot tell; a plug
    that cannot even load tells each key's row why)."""
    try:
        plug = installed(digest).plug_class()()
    except Exception:  # an estimate only: never a reason to fail a run
        return [0.0] * len(keys)
    sizes = []
    for key in keys:
        try:
            sizes.append(float(plug.size(key)))
        except Exception:
            sizes.append(0.0)
    return sizes
