"""Clients: where a run happens. Every backend has the same method, ``connect(image)``."""

from __future__ import annotations

import importlib.util
import traceback
import uuid
from typing import TYPE_CHECKING

from sdt_build.clients.base import Client
from sdt_build.clients.local import LocalClient
from sdt_build.runtime.errors import ProjectError

if TYPE_CHECKING:
    from sdt_build.userfolder.project import UserProject

__all__ = ["Client", "LocalClient", "DockerClient", "SchedulerClient", "FargateClient", "AzureClient",
           "KubernetesClient", "SlurmClient"]


_BACKENDS = {"DockerClient": "sdt_build.clients.docker", "SchedulerClient": "sdt_build.clients.scheduler",
             "FargateClient": "sdt_build.clients.cloud", "AzureClient": "sdt_build.clients.cloud",
             "KubernetesClient": "sdt_build.clients.kubernetes", "SlurmClient": "sdt_build.clients.slurm"}


def __getattr__(name: str):
    """Backends that need more than the standard library load on first use."""
    if name in _BACKENDS:
        return getattr(importlib.import_module(_BACKENDS[name]), name)
    raise AttributeError(f"module 'sdt_build.clients' has no attribute {name!r}")


def load_client(project: "UserProject") -> Client:
    """Import the project's client.py on this machine and create its client class (with no arguments)."""
    spec = importlib.util.spec_from_file_location(f"sdt_user_client_{uuid.uuid4().hex[:8]}", project.client.file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ProjectError("SDT-E119", f"client.py raised {type(exc).__name__} on import: {exc}",
                           "fix client.py so that `python client.py` runs without error",
                           detail=traceback.format_exc()) from exc
    cls = getattr(module, project.client.name)
    if not (isinstance(cls, type) and issubclass(cls, Client)):
        raise ProjectError("SDT-E119", f"{project.client.name} in client.py is not a sdt_build client",
                           "subclass one of sdt_build.clients (LocalClient, DockerClient, …) so that "
                           "connect(image) returns a distributed.Client")
    return cls()
