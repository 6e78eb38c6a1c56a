"""The client contract: one method, ``connect(image)``, for every backend."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
from typing import TYPE_CHECKING, Any, Iterable

from sdt_build.constraints import WORKER_MEMORY
from sdt_build.installer import add_extra
from sdt_build.runtime.errors import RunFailure, SdtBuildError
from sdt_build.runtime.plug import EnvVar

if TYPE_CHECKING:  # distributed is imported only when a client connects
    import distributed

log = logging.getLogger(__name__)
CLOSE_TIMEOUT = 10  # seconds to close a client or cluster
LOST_CONNECT_TIMEOUT = "1s"  # a cluster whose scheduler is gone: each attempt to reach it while closing
DASHBOARD_PORT = 8787  # Dask's usual dashboard port


@contextlib.contextmanager
def quiet(*names: str):
    """Silence these loggers and their children for a while (Dask's tracebacks about a scheduler
    that is already gone)."""
    loggers = [logging.getLogger(name) for name in {*names, *logging.Logger.manager.loggerDict}
               if any(name == quieted or name.startswith(f"{quieted}.") for quieted in names)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class Client:
    """Where a run happens: compute, auth and environment for one backend.

    Subclass a backend (``LocalClient``, ``DockerClient``…) in ``client.py`` and set its
    attributes, or pass them as keyword arguments. sdt-build calls ``connect(image)`` and
    gets a connected ``distributed.Client``; ``image`` is the tag sdt-build built, or None
    when nothing was built. A client that names its own ``image`` runs that one instead.
    """

    backend: str = "custom"
    workers: int = 2
    threads_per_worker: int = 1
    memory_per_worker: str = WORKER_MEMORY  # room for the largest measured pipeline run (constraints)
    image: str | None = None
    dashboard: bool = True  # the Dask dashboard on 127.0.0.1 where the client starts the scheduler (needs bokeh)
    registry: str | None = None  # where a built image is pushed before the run (the cluster pulls it)
    env: tuple[EnvVar, ...] = ()
    # The project's declared environment variables that are set here, given to the containers, tasks
    # or jobs the client starts at run time (never to an image), and which of them are secret.
    environment: dict[str, str] = {}
    secret_names: frozenset[str] = frozenset()
    # The engine library the client drives on this machine when sdt-build's own dependencies lack it:
    # (module, distribution, the sdt-build extra that installs it)
    engine_library: tuple[str, str, str] | None = None

    def __init__(self, **settings: Any):
        for name, value in settings.items():
            if not hasattr(type(self), name):
                raise TypeError(f"{type(self).__name__} has no setting {name!r}")
            setattr(self, name, value)
        self._dask_client: "distributed.Client | None" = None
        self._cluster = None

    def with_environment(self, values: dict[str, str], secrets: Iterable[str]) -> "Client":
        """A copy of this client that gives ``values`` to what it starts (``secrets`` are never shown)."""
        configured = copy.copy(self)
        configured.environment = dict(values)
        configured.secret_names = frozenset(secrets)
        return configured

    def worker_count(self) -> int:
        """How many workers the cluster gets."""
        return self.workers

    @property
    def needs_image(self) -> bool:
        """True when the scheduler and workers run a container image."""
        return False

    @property
    def needs_registry(self) -> bool:
        """True when the cluster pulls its image from a registry (a built image is pushed first)."""
        return bool(self.registry)

    def preflight(self, registry: str | None) -> None:
        """Raise what would stop ``connect`` once an image is built and pushed to ``registry`` (checked
        before the build, so that a wrong setting costs no build)."""

    def connect(self, image: str | None = None) -> "distributed.Client":
        """Start or reach the cluster and return a connected ``distributed.Client``."""
        raise NotImplementedError(f"{type(self).__name__}.connect(image) is not implemented")

    @staticmethod
    def new_dask_client(target: Any, **kwargs: Any) -> "distributed.Client":
        """A ``distributed.Client`` without Dask's debug log of recent messages, which would keep
        every submitted task's message in memory (client memory then stays flat at 10,000 keys), and
        without Dask's own version table on connecting: the run's parity check (SDT-E503) says
        what differs, once, in sdt-build's words."""
        import warnings

        import dask
        from distributed import Client as DaskClient
        from distributed.versions import VersionMismatchWarning

        with dask.config.set({"distributed.admin.low-level-log-length": 0}), warnings.catch_warnings():
            warnings.simplefilter("ignore", VersionMismatchWarning)  # raised on the loop's thread while we wait
            return DaskClient(target, **kwargs)

    def close(self) -> None:
        """Release what ``connect`` started (the client, then its cluster). Safe to call twice.

        A cluster whose scheduler is already gone is given ``CLOSE_TIMEOUT`` seconds, not Dask's
        reconnect attempts, each of its calls to the scheduler fails after ``LOST_CONNECT_TIMEOUT``,
        and Dask's complaints about the missing scheduler are not printed.
        """
        import dask

        client, self._dask_client = self._dask_client, None
        cluster, self._cluster = getattr(self, "_cluster", None), None
        lost = client is not None and client.status != "running"
        connect = {"distributed.comm.timeouts.connect": LOST_CONNECT_TIMEOUT} if lost else {}
        with quiet("distributed", "tornado"), dask.config.set(connect):
            for closable in (client, cluster):
                if closable is None:
                    continue
                try:
                    closable.close(timeout=CLOSE_TIMEOUT)
                except Exception as exc:  # the backend's own clean-up (containers, jobs) still runs
                    log.debug("closing %s failed: %s", type(closable).__name__, exc)
                    if closable is cluster:  # Dask's exit hook would only wait on the same closing again
                        cluster.shutdown_on_close = False

    def dashboard_address(self) -> str | None:
        """Where a scheduler this client starts serves its dashboard: 127.0.0.1, port 8787 when free
        (else any); None when switched off."""
        if not self.dashboard:
            return None
        import socket

        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", DASHBOARD_PORT))
                return f"127.0.0.1:{DASHBOARD_PORT}"
            except OSError:
                probe.bind(("127.0.0.1", 0))
                return f"127.0.0.1:{probe.getsockname()[1]}"

    def explain_lost_worker(self) -> str | None:
        """What the backend knows about workers that died (container state, logs), if anything."""
        return None

    def dry_run(self, image: str | None = None) -> dict[str, Any]:
        """What ``connect`` would create, without creating it."""
        return {**self.describe(), "image": image or self.image, "problems": self.engine_problems()}

    def engine_problems(self) -> list[str]:
        """Every dry run's first check: the engine library this client drives, if this Python lacks it."""
        if self.engine_library is None:
            return []
        module, distribution, extra = self.engine_library
        if importlib.util.find_spec(module) is not None:
            return []
        return [f"{distribution} is not installed here: {add_extra(extra)}"]

    def describe(self) -> dict[str, Any]:
        """Settings shown in run records and `--dry-run` output."""
        return {
            "backend": self.backend,
            "workers": self.worker_count(),
            "threads_per_worker": self.threads_per_worker,
            "memory_per_worker": self.memory_per_worker,
            "image": self.image,
            "dashboard": self.dashboard,
        }

    def __enter__(self) -> "distributed.Client":
        return self.connect(self.image)

    def __exit__(self, *exc: object) -> None:
        self.close()


def startup_failure(exc: BaseException, explanation: str | None = None) -> SdtBuildError | None:
    """What stopped a cluster from starting, through the engine's wrapping (distributed's "Cluster
    failed to start" RuntimeError): our own error when there is one, a lost scheduler for a comm
    error; None for anything else."""
    chain, seen = exc, set()
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        if isinstance(chain, SdtBuildError):
            return chain
        chain = chain.__cause__ or chain.__context__
    chain, seen = exc, set()
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        if isinstance(chain, OSError) and chain.filename is None:
            return scheduler_lost(chain, explanation)
        chain = chain.__cause__ or chain.__context__
    return None


def scheduler_lost(exc: BaseException, explanation: str | None = None) -> RunFailure:
    """The scheduler went away (a dropped connection, a comm timeout) before any key was submitted:
    nothing ran, and the output folder was not touched."""
    return RunFailure("SDT-E512", f"the client lost the scheduler before any key ran ({type(exc).__name__}: {exc})",
                      "nothing ran and the output folder is as it was: start the run again; if it happens again, "
                      "read the scheduler's log" + (f". The backend says: {explanation}" if explanation else ""))
