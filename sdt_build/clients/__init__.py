"""Clients: where a run happens. Every backend has the same method, ``connect(image)``."""

from sdt_build.clients.base import Client
from sdt_build.clients.local import LocalClient

__all__ = ["Client", "LocalClient"]
