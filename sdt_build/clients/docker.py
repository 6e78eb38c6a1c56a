"""DockerClient: the scheduler and workers as containers of the built image, on this machine.

Built on distributed's ``SpecCluster`` with one ``ProcessInterface`` per container, the way
dask-cloudprovider builds its clusters. Every container uses host networking, listens on
127.0.0.1, carries the ``io.sdt-build.*`` labels with its owner (this process) and is removed on
close, at interpreter exit, or, once its owner is gone, by the next cluster or ``sdt-build clean``.
"""

from __future__ import annotations

import asyncio
import atexit
import re
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any

import dask
from distributed.deploy.spec import ProcessInterface, SpecCluster

from sdt_build.build.daemon import (LABEL, bytecode_cache, container_name, docker_client, labels, remove, run_command,
                                    sweep)
from sdt_build.clients.base import Client, quiet, scheduler_lost, startup_failure
from sdt_build.clients.local import machine_workers, parse_memory
from sdt_build.interrupt import shielded
from sdt_build.runtime.errors import RunFailure

if TYPE_CHECKING:
    import distributed

_live: "weakref.WeakSet[DockerContainer]" = weakref.WeakSet()
# Dask serves /health and /metrics even with --no-dashboard; by default on every interface.
LOOPBACK_ANY_PORT = "127.0.0.1:0"
STARTING_CONNECT_TIMEOUT = "5s"  # the client's connects to a scheduler container while the cluster starts
MEMORY_RESTART = re.compile(r"exceeded \d+% memory budget")  # the nanny's line before it restarts a worker


def _not_up(cause: str, logs: str) -> RunFailure:
    """SDT-E517: a container of the cluster did not come up, with the log it left."""
    causes = "a broken image (run `sdt-build smoke IMAGE`), a port in use, or too little memory"
    return RunFailure("SDT-E517", cause, f"read its log below: {causes}" if logs.strip() else
                      f"it left no log (stopped from outside, e.g. `docker kill`, or killed at once): run again; "
                      f"if it happens again, look for {causes}", detail=logs[-3000:] or None)


class DockerContainer(ProcessInterface):
    """One container running a Dask scheduler or worker; ``address`` comes from its log."""

    role = "container"
    ready = re.compile(r"$^")

    def __init__(self, image: str, cluster_id: str, environment: dict[str, str] | None = None,
                 startup_timeout: float = 90, mem_limit: int | None = None, nano_cpus: int | None = None,
                 obituaries: list[str] | None = None, volumes: dict | None = None, **kwargs: Any):
        super().__init__(scheduler=kwargs.get("scheduler"), name=kwargs.get("name"))
        self.image = image
        self.cluster_id = cluster_id
        self.environment = environment or {}
        self.volumes = volumes or {}
        self.startup_timeout = startup_timeout
        self.mem_limit = mem_limit
        self.nano_cpus = nano_cpus
        self.obituaries = obituaries if obituaries is not None else []
        self.container = None

    def command(self) -> list[str]:
        raise NotImplementedError

    async def start(self) -> None:
        import docker

        loop = asyncio.get_running_loop()
        client = docker.from_env()
        self.container = await loop.run_in_executor(None, lambda: client.containers.run(
            self.image, self.command(), detach=True, network_mode="host", environment=self.environment,
            volumes=self.volumes, labels=labels(self.role, cluster=self.cluster_id),
            mem_limit=self.mem_limit, nano_cpus=self.nano_cpus, name=container_name(self.role)))
        _live.add(self)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            logs, status = await loop.run_in_executor(None, self._logs_and_status)
            match = self.ready.search(logs)
            if match:
                self.address = match.group(1)
                await super().start()
                return
            if status in ("exited", "dead"):
                break
            stopped = await loop.run_in_executor(None, self._scheduler_stopped)
            if stopped is not None:  # a worker would wait for it until Dask's connect timeout
                await self.close()
                raise _not_up(f"the scheduler container of {self.image} stopped while the {self.role} containers "
                              "were starting", stopped)
            await asyncio.sleep(0.5)
        logs, status = await loop.run_in_executor(None, self._logs_and_status)
        await self.close()
        raise _not_up(f"the {self.role} container of {self.image} did not come up "
                      f"({'it exited' if status in ('exited', 'dead') else f'no address after {self.startup_timeout:g} s'})",
                      logs)

    def _scheduler_stopped(self) -> str | None:
        """The log of the scheduler container this one needs, once it has stopped or gone; else None."""
        return None

    def _logs_and_status(self) -> tuple[str, str]:
        self.container.reload()
        return self.container.logs().decode(errors="replace"), self.container.status

    async def close(self) -> None:
        """Remove the container; one that died first leaves its exit code and last log lines behind."""
        if self.container is not None:
            container, self.container = self.container, None
            await asyncio.get_running_loop().run_in_executor(None, self._bury, container)
        await super().close()

    def _bury(self, container) -> None:
        self.bury_into(container, self.obituaries)
        remove(container)

    @staticmethod
    def bury_into(container, notes: list[str]) -> None:
        """What went wrong in a container, added to ``notes``: a dead one's exit code, out-of-memory
        flag and last log lines; a live one's worker restarts by its nanny for memory."""
        from docker.errors import APIError, NotFound

        try:
            container.reload()
            state = container.attrs.get("State", {})
            log = container.logs(tail=400).decode(errors="replace")
            restarts = len(MEMORY_RESTART.findall(log))
            memory = f"; its worker exceeded the memory limit {restarts} time(s)" if restarts else ""
            if container.status in ("exited", "dead"):
                tail = "\n".join(log.strip().splitlines()[-5:]).replace("\n", " | ")
                notes.append(f"container {container.name} exited {state.get('ExitCode')}"
                             + (" (out of memory)" if state.get("OOMKilled") else "") + f"{memory}: {tail[-400:]}")
            elif restarts:
                notes.append(f"container {container.name}: its worker exceeded the memory limit {restarts} "
                             "time(s) and the nanny restarted it")
        except (NotFound, APIError):
            pass


class DockerScheduler(DockerContainer):
    role = "scheduler"
    ready = re.compile(r"Scheduler at:\s+(tcp://[\d.]+:\d+)")

    def __init__(self, dashboard: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.dashboard = dashboard

    def command(self) -> list[str]:
        """A dashboard on 127.0.0.1 when asked (served only when the image has bokeh)."""
        view = ["--dashboard", "--dashboard-address", self.dashboard] if self.dashboard else \
            ["--no-dashboard", "--dashboard-address", LOOPBACK_ANY_PORT]
        return ["dask", "scheduler", "--host", "127.0.0.1", "--port", "0", *view]


class DockerWorker(DockerContainer):
    role = "worker"
    ready = re.compile(r"Start worker at:\s+(tcp://[\d.]+:\d+)")

    def __init__(self, scheduler: str, name: Any, threads: int = 1, memory: int | None = None, **kwargs: Any):
        super().__init__(scheduler=scheduler, name=name, **kwargs)
        self.scheduler = scheduler
        self.worker_name = str(name)
        self.threads = threads
        self.memory = memory

    def _scheduler_stopped(self) -> str | None:
        from docker.errors import APIError

        try:
            found = docker_client().containers.list(all=True, filters={"label": [
                f"{LABEL}.cluster={self.cluster_id}", f"{LABEL}.role=scheduler"]})
            if any(c.status not in ("exited", "dead") for c in found):
                return None
            return "".join(c.logs(tail=400).decode(errors="replace") for c in found)
        except APIError:  # not known this time (removed while it was read, a busy daemon): asked again
            return None

    def command(self) -> list[str]:
        command = ["dask", "worker", self.scheduler, "--host", "127.0.0.1", "--nthreads", str(self.threads),
                   "--name", self.worker_name, "--no-dashboard", "--dashboard-address", LOOPBACK_ANY_PORT]
        if self.memory:
            command += ["--memory-limit", str(self.memory)]
        return command


@atexit.register
def _remove_leftovers() -> None:
    """Containers of a cluster that was never closed (a crash, Ctrl-C in a notebook)."""
    for process in list(_live):
        if process.container is not None:
            remove(process.container)


class DockerClient(Client):
    """A scheduler and ``workers`` worker containers of the image, on this machine."""

    backend = "docker"
    workers: int | None = None  # None: one per core, as many as this machine's memory holds
    startup_timeout: float = 120

    def worker_count(self) -> int:
        return self.workers if self.workers is not None else machine_workers(self.memory_per_worker)

    @property
    def needs_image(self) -> bool:
        return True

    def connect(self, image: str | None = None) -> "distributed.Client":

        image = image or self.image
        if not image:
            raise RunFailure("SDT-E506", "DockerClient needs an image to run",
                             "build one with `sdt-build build DIR` (SDTDask does it for you), or set image in client.py")
        self._remove_orphans()
        self._check_parity(image)
        memory = parse_memory(self.memory_per_worker)
        cluster_id = self._cluster_id = uuid.uuid4().hex[:8]
        cluster_name = f"sdt-docker-{cluster_id}"
        self._obituaries: list[str] = []
        volumes, bytecode = self._bytecode_cache(image)
        shared = {"image": image, "cluster_id": cluster_id, "environment": {**self.environment, **bytecode},
                  "volumes": volumes, "startup_timeout": self.startup_timeout, "obituaries": self._obituaries}
        worker = {"cls": DockerWorker, "options": {**shared, "threads": self.threads_per_worker, "memory": memory,
                                                    "mem_limit": memory + 2**30,
                                                    "nano_cpus": int(self.threads_per_worker * 1e9)}}
        # the scheduler runs no plug code: it gets none of the declared secrets
        public = {name: value for name, value in shared["environment"].items() if name not in self.secret_names}
        try:
            # tornado's tracebacks of a container that went away, and distributed's "Cluster closed without
            # starting up": the error below says it once
            with quiet("tornado", "distributed.deploy.spec"):
                # the cluster's calls to its own scheduler, on this machine: one that stopped while the cluster
                # started is given up on in seconds when the cluster closes, not Dask's 30 s per call
                with dask.config.set({"distributed.comm.timeouts.connect": STARTING_CONNECT_TIMEOUT}):
                    self._cluster = SpecCluster(scheduler={"cls": DockerScheduler,
                                                           "options": {**shared, "environment": public,
                                                                       "dashboard": self.dashboard_address()}},
                                                workers={f"docker-{i}": worker for i in range(self.worker_count())},
                                                worker=worker, name=cluster_name)
                self._dask_client = self.new_dask_client(self._cluster)
        except Exception as exc:  # the engine wraps what stopped it; the scheduler may have gone away
            failure = startup_failure(exc, self.explain_lost_worker())
            # SpecCluster closed itself when it failed and its containers go below: Dask's exit hook would
            # only call its stopped scheduler again
            for cluster in list(SpecCluster._instances):
                if cluster.name == cluster_name:
                    cluster.shutdown_on_close = False
            self.close()  # no container of a cluster that did not start is left behind
            if failure is None:
                raise
            raise failure from exc
        except BaseException:
            self.close()
            raise
        try:
            with quiet("tornado"):
                self._dask_client.wait_for_workers(self.worker_count(), timeout=self.startup_timeout)
        except TimeoutError as exc:
            self.close()
            raise RunFailure("SDT-E505", f"only some of the {self.worker_count()} worker containers joined within "
                             f"{self.startup_timeout:g} s", "check `docker ps -a --filter label=io.sdt-build.cluster` "
                             "and the workers' logs; lower workers or memory_per_worker if the machine is full") from exc
        except OSError as exc:
            explanation = self.explain_lost_worker()
            self.close()
            raise scheduler_lost(exc, explanation) from exc
        return self._dask_client

    @staticmethod
    def _bytecode_cache(image: str) -> tuple[dict, dict[str, str]]:
        """The environment's shared bytecode (daemon.bytecode_cache): workers start without compiling SDT."""
        from docker.errors import ImageNotFound

        client = docker_client()
        try:
            return bytecode_cache(client, client.images.get(image))
        except ImageNotFound:
            return {}, {}

    @staticmethod
    def _remove_orphans() -> None:
        """Remove what a process that died without closing it (SIGKILL, a crash) left behind: it holds
        memory a new cluster needs. The rule is ``sdt-build clean``'s (``daemon.sweep``)."""
        sweep(docker_client())

    def _check_parity(self, image: str) -> None:
        """Refuse an image whose Dask cannot talk to this client, before any container starts. The
        image reports its versions with sdt-build's parity module lent to it (it needs only python3)."""
        from sdt_build import constraints
        from sdt_build.runtime import parity

        lent = "/tmp/sdt-build-parity.py"
        result = run_command(docker_client(), image, ["python3", lent], timeout=120,
                             volumes={parity.__file__: {"bind": lent, "mode": "ro"}})
        versions = parity.parse(result.output)
        if versions is None:
            raise RunFailure("SDT-E504", f"{image} cannot report its Python packages (exit {result.exit_code})",
                             "check the image with `sdt-build smoke IMAGE`: it needs python3 on PATH and an "
                             "entrypoint that runs the command it is given", detail=result.output[-2000:])
        missing = [name for name in ("dask", "distributed") if not versions.get(name)]
        if missing:
            raise RunFailure("SDT-E504", f"{image} has no {' or '.join(missing)}: it cannot run a Dask scheduler "
                             "or workers", "build the image with `sdt-build build DIR`, or add dask and "
                             "distributed to the image you bring", detail=result.output[-2000:])
        python = ".".join((versions.get("python") or "").split(".")[:2])
        pinned = constraints.pins(python) if python in constraints.available() else {}
        parity.require(parity.compare(parity.versions(), versions, where="image", pinned=pinned), f"image {image}")

    def close(self) -> None:
        """Close the cluster, then remove any of its containers still there (a lost scheduler
        cannot retire its workers; a second Ctrl-C may cut the closing short, never this)."""
        try:
            super().close()
        finally:
            cluster_id = getattr(self, "_cluster_id", None)
            if cluster_id:
                import docker

                with shielded():
                    for container in docker.from_env().containers.list(
                            all=True, filters={"label": f"{LABEL}.cluster={cluster_id}"}):
                        DockerContainer.bury_into(container, self._obituaries)
                        remove(container)

    def explain_lost_worker(self) -> str | None:
        """What the cluster's containers say about lost workers: exit codes, out of memory, last log
        lines, and how often a nanny restarted its worker for memory (from containers already
        removed, exited ones, and live ones)."""
        import docker

        notes = list(getattr(self, "_obituaries", []))
        if getattr(self, "_cluster_id", None):
            for container in docker.from_env().containers.list(
                    all=True, filters={"label": f"{LABEL}.cluster={self._cluster_id}"}):
                if not any(container.name in note for note in notes):
                    DockerContainer.bury_into(container, notes)
        return "; ".join(notes) or None
