"""Run on this machine: 2 single-threaded workers."""

from sdt_build.clients import LocalClient


class Laptop(LocalClient):
    workers = 2
    threads_per_worker = 1
    memory_per_worker = "8GiB"
