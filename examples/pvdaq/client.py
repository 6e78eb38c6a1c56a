"""Run on this machine: a Dask LocalCluster of 2 single-threaded workers."""

from sdt_build.clients import LocalClient


class Laptop(LocalClient):
    workers = 2
    threads_per_worker = 1
    memory_per_worker = "8GiB"  # one SDT pipeline run peaks near 6 GiB
