"""Run the fleet on this machine: a Dask LocalCluster of single-threaded workers, one per core."""

from sdt_build.clients import LocalClient


class Fleet(LocalClient):
    threads_per_worker = 1  # workers and memory_per_worker: the defaults (every core, measured memory)
