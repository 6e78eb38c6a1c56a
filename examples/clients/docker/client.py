"""Run in containers of the image sdt-build builds, on this machine: 1 scheduler + 2 workers.

The exact image that goes to the cloud, tested on one workstation. sdt-build builds (or reuses)
the image before connecting; set `image = "..."` to run one you bring.
"""

from sdt_build.clients import DockerClient


class Workstation(DockerClient):
    workers = 2
    threads_per_worker = 1
    memory_per_worker = "7GiB"  # each container gets this (+1 GiB headroom) as its memory limit
