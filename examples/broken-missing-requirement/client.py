"""Run on this machine: a Dask LocalCluster of single-threaded workers, one per core."""

from sdt_build.clients import LocalClient


class Laptop(LocalClient):
    threads_per_worker = 1
    # workers = 4                # default: one per core, as many as memory holds
    # memory_per_worker = "1GiB" # default: room for the largest measured pipeline run
