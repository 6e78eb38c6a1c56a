"""Clients: where a run happens. Every backend has the same method, ``connect(image)``."""

from sdt_build.clients.base import Client
from sdt_build.clients.local import LocalClient

__all__ = ["Client", "LocalClient", "DockerClient", "SchedulerClient", "FargateClient", "AzureClient"]


def __getattr__(name: str):
    """Backends that need more than the standard library load on first use."""
    if name == "DockerClient":
        from sdt_build.clients.docker import DockerClient

        return DockerClient
    if name == "SchedulerClient":
        from sdt_build.clients.scheduler import SchedulerClient

        return SchedulerClient
    if name in ("FargateClient", "AzureClient"):
        from sdt_build.clients import cloud

        return getattr(cloud, name)
    raise AttributeError(f"module 'sdt_build.clients' has no attribute {name!r}")
