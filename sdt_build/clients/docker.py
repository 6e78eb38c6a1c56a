"""DockerClient: the scheduler and workers as containers of the built image, on this machine.

Built on distributed's ``SpecCluster`` with one ``ProcessInterface`` per container, the way
dask-cloudprovider builds its clusters. Every container uses host networking, listens on
127.0.0.1, carries the ``io.sdt-build.*`` labels (so ``sdt-build clean`` finds leftovers) and is
removed on close, at interpreter exit, or by ``sdt-build clean`` after a crash.
"""

from __future__ import annotations

import asyncio
import atexit
import re
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any

from distributed.deploy.spec import ProcessInterface, SpecCluster

from sdt_build.clients.base import Client
from sdt_build.clients.local import parse_memory
from sdt_build.errors import RunFailure
from sdt_build.image import LABEL

if TYPE_CHECKING:
    import distributed

_live: "weakref.WeakSet[DockerContainer]" = weakref.WeakSet()


class DockerContainer(ProcessInterface):
    """One container running a Dask scheduler or worker; ``address`` comes from its log."""

    role = "container"
    ready = re.compile(r"$^")

    def __init__(self, image: str, cluster_id: str, environment: dict[str, str] | None = None,
                 startup_timeout: float = 90, mem_limit: int | None = None, nano_cpus: int | None = None,
                 **kwargs: Any):
        super().__init__(scheduler=kwargs.get("scheduler"), name=kwargs.get("name"))
        self.image = image
        self.cluster_id = cluster_id
        self.environment = environment or {}
        self.startup_timeout = startup_timeout
        self.mem_limit = mem_limit
        self.nano_cpus = nano_cpus
        self.container = None

    def command(self) -> list[str]:
        raise NotImplementedError

    async def start(self) -> None:
        import docker

        loop = asyncio.get_running_loop()
        client = docker.from_env()
        self.container = await loop.run_in_executor(None, lambda: client.containers.run(
            self.image, self.command(), detach=True, network_mode="host", environment=self.environment,
            labels={f"{LABEL}.role": self.role, f"{LABEL}.cluster": self.cluster_id},
            mem_limit=self.mem_limit, nano_cpus=self.nano_cpus, name=f"sdt-{self.role}-{uuid.uuid4().hex[:8]}"))
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
            await asyncio.sleep(0.5)
        logs, status = await loop.run_in_executor(None, self._logs_and_status)
        await self.close()
        raise RunFailure("SDT-E504", f"the {self.role} container of {self.image} did not come up "
                         f"({'it exited' if status in ('exited', 'dead') else f'no address after {self.startup_timeout:g} s'})",
                         "read its log below: a broken image (run `sdt-build smoke IMAGE`), a port in use, or too "
                         "little memory", detail=logs[-3000:])

    def _logs_and_status(self) -> tuple[str, str]:
        self.container.reload()
        return self.container.logs().decode(errors="replace"), self.container.status

    async def close(self) -> None:
        if self.container is not None:
            container, self.container = self.container, None
            await asyncio.get_running_loop().run_in_executor(None, _remove, container)
        await super().close()


class DockerScheduler(DockerContainer):
    role = "scheduler"
    ready = re.compile(r"Scheduler at:\s+(tcp://[\d.]+:\d+)")

    def command(self) -> list[str]:
        return ["dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]


class DockerWorker(DockerContainer):
    role = "worker"
    ready = re.compile(r"Start worker at:\s+(tcp://[\d.]+:\d+)")

    def __init__(self, scheduler: str, name: Any, threads: int = 1, memory: int | None = None, **kwargs: Any):
        super().__init__(scheduler=scheduler, name=name, **kwargs)
        self.scheduler = scheduler
        self.worker_name = str(name)
        self.threads = threads
        self.memory = memory

    def command(self) -> list[str]:
        command = ["dask", "worker", self.scheduler, "--host", "127.0.0.1", "--nthreads", str(self.threads),
                   "--name", self.worker_name, "--no-dashboard"]
        if self.memory:
            command += ["--memory-limit", str(self.memory)]
        return command


def _remove(container) -> None:
    from docker.errors import APIError, NotFound

    try:
        container.remove(force=True)
    except (NotFound, APIError):
        pass


@atexit.register
def _remove_leftovers() -> None:
    """Containers of a cluster that was never closed (a crash, Ctrl-C in a notebook)."""
    for process in list(_live):
        if process.container is not None:
            _remove(process.container)


class DockerClient(Client):
    """A scheduler and ``workers`` worker containers of the image, on this machine."""

    backend = "docker"
    memory_per_worker = "7GiB"
    startup_timeout: float = 120

    @property
    def needs_image(self) -> bool:
        return True

    def connect(self, image: str | None = None) -> "distributed.Client":
        from distributed import Client as DaskClient

        image = image or self.image
        if not image:
            raise RunFailure("SDT-E506", "DockerClient needs an image to run",
                             "build one with `sdt-build build DIR` (SDTDask does it for you), or set image in client.py")
        memory = parse_memory(self.memory_per_worker)
        cluster_id = self._cluster_id = uuid.uuid4().hex[:8]
        shared = {"image": image, "cluster_id": cluster_id, "environment": dict(self.runtime_env),
                  "startup_timeout": self.startup_timeout}
        worker = {"cls": DockerWorker, "options": {**shared, "threads": self.threads_per_worker, "memory": memory,
                                                    "mem_limit": memory + 2**30,
                                                    "nano_cpus": int(self.threads_per_worker * 1e9)}}
        self._cluster = SpecCluster(scheduler={"cls": DockerScheduler, "options": shared},
                                    workers={f"docker-{i}": worker for i in range(self.workers)},
                                    worker=worker, name=f"sdt-docker-{cluster_id}")
        self._dask_client = DaskClient(self._cluster)
        try:
            self._dask_client.wait_for_workers(self.workers, timeout=self.startup_timeout)
        except TimeoutError as exc:
            self.close()
            raise RunFailure("SDT-E505", f"only some of the {self.workers} worker containers joined within "
                             f"{self.startup_timeout:g} s", "check `docker ps -a --filter label=io.sdt-build.cluster` "
                             "and the workers' logs; lower workers or memory_per_worker if the machine is full") from exc
        return self._dask_client

    def close(self) -> None:
        super().close()
        cluster = getattr(self, "_cluster", None)
        if cluster is not None:
            cluster.close()
            self._cluster = None

    def explain_lost_worker(self) -> str | None:
        """What the dead worker containers say: out of memory, exit code, last log lines."""
        import docker

        client = docker.from_env()
        if getattr(self, "_cluster_id", None) is None:
            return None
        dead = client.containers.list(all=True, filters={"label": f"{LABEL}.cluster={self._cluster_id}",
                                                         "status": "exited"})
        notes = []
        for container in dead:
            state = container.attrs.get("State", {})
            tail = container.logs(tail=5).decode(errors="replace").strip().replace("\n", " | ")
            notes.append(f"container {container.name} exited {state.get('ExitCode')}"
                         + (" (out of memory)" if state.get("OOMKilled") else "") + f": {tail[-400:]}")
        return "; ".join(notes) or None
