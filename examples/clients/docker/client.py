"""Run in containers of the image sdt-build builds, on this machine: a scheduler and a worker per core.

The exact image that goes to the cloud, tested on one workstation. sdt-build builds (or reuses)
the image before connecting; set `image = "..."` to run one you bring.
"""

from sdt_build.clients import DockerClient


class Workstation(DockerClient):
    threads_per_worker = 1
    # workers = 4                # default: one per core, as many as memory holds
    # memory_per_worker = "1GiB" # default (room for the largest measured pipeline run); each container
    #                            # gets it (+1 GiB headroom) as its memory limit
