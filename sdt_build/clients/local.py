"""LocalClient: a Dask LocalCluster of processes on this machine; no image."""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import TYPE_CHECKING

from sdt_build.clients.base import Client
from sdt_build.constraints import PIPELINE_PEAK, PIPELINE_PEAK_BYTES
from sdt_build.installer import add_extra
from sdt_build.runtime.errors import EnvironmentProblem, RunFailure, counted

if TYPE_CHECKING:
    import distributed

log = logging.getLogger(__name__)


def sdt_missing() -> RunFailure | None:
    """Why this Python cannot run SDT for a LocalClient (its workers are processes of it), if it cannot."""
    if importlib.util.find_spec("solardatatools") is not None:
        return None
    return RunFailure("SDT-E539", "solar-data-tools is not importable in this Python, and a LocalClient runs SDT "
                      "in it", add_extra("local"))


def parse_memory(value: str | int | float) -> int:
    """Bytes from '7GiB', '6 GB', 6.5 (GiB) or a byte count."""
    from dask.utils import parse_bytes

    if isinstance(value, (int, float)) and value < 4096:
        return int(value * 2**30)
    return int(parse_bytes(value))


def machine_workers(memory_per_worker: str | int | float) -> int:
    """One worker per core of this machine, as many as its memory holds (at least one)."""
    import psutil

    return max(1, min(os.cpu_count() or 1, psutil.virtual_memory().total // max(parse_memory(memory_per_worker), 1)))


class LocalClient(Client):
    """Workers as local processes. Checks workers × memory against this machine first."""

    backend = "local"
    workers: int | None = None  # None: one per core, as many as this machine's memory holds

    def worker_count(self) -> int:
        return self.workers if self.workers is not None else machine_workers(self.memory_per_worker)

    def fit_check(self) -> list[str]:
        """Raise when the cluster cannot fit this machine; return warnings for tight fits."""
        import psutil

        total = psutil.virtual_memory().total
        cores = os.cpu_count() or 1
        per_worker = parse_memory(self.memory_per_worker)
        warnings = []
        workers = self.worker_count()
        if workers * per_worker > total:
            fits = max(1, total // max(per_worker, 1))
            raise EnvironmentProblem(
                "SDT-E905",
                f"{counted(workers, 'worker')} × {self.memory_per_worker} need more memory than this machine "
                f"has ({total / 2**30:.1f} GiB)",
                f"set workers = {fits} (or lower memory_per_worker) in client.py",
            )
        if per_worker < PIPELINE_PEAK_BYTES:
            warnings.append(
                f"memory_per_worker {self.memory_per_worker} is too little: {PIPELINE_PEAK}, so long sites may be "
                "killed for memory"
            )
        if workers * self.threads_per_worker > cores:
            warnings.append(
                f"{counted(workers, 'worker')} × {counted(self.threads_per_worker, 'thread')} exceed this "
                f"machine's {counted(cores, 'core')}: runs will be slower, not faster"
            )
        return warnings

    def connect(self, image: str | None = None) -> "distributed.Client":
        from distributed import LocalCluster

        missing = sdt_missing()
        if missing is not None:
            raise missing
        for warning in self.fit_check():
            log.warning(warning)
        if image:
            log.info("LocalClient runs on this machine's Python; image %s is not used", image)
        dashboard = self.dashboard_address() if importlib.util.find_spec("bokeh") else None
        cluster = LocalCluster(
            n_workers=self.worker_count(),
            threads_per_worker=self.threads_per_worker,
            memory_limit=parse_memory(self.memory_per_worker),
            processes=True,
            host="127.0.0.1",
            # the dashboard needs bokeh here (the run's start line says when it is missing); without
            # one the scheduler still serves /health, on a free port rather than on Dask's usual one
            dashboard_address=dashboard or "127.0.0.1:0",
            scheduler_kwargs={"dashboard": dashboard is not None},
        )
        self._cluster = cluster
        self._dask_client = self.new_dask_client(cluster)
        return self._dask_client

