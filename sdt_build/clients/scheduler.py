"""SchedulerClient: connect to a scheduler that already runs (HPC, Kubernetes, a shared server)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from sdt_build.clients.base import Client
from sdt_build.runtime.errors import RunFailure
from sdt_build.runtime.plug import EnvVar

if TYPE_CHECKING:
    import distributed


class SchedulerClient(Client):
    """``address`` (or SDT_SCHEDULER_ADDRESS), with TLS when the scheduler's address is tls://.

    The workers are whatever the scheduler has; the parity pre-flight checks they match this client.
    """

    backend = "scheduler"
    address: str | None = None
    tls_ca_file: str | None = None
    tls_client_cert: str | None = None
    tls_client_key: str | None = None
    connect_timeout: float = 30
    env = (EnvVar("SDT_SCHEDULER_ADDRESS", required=False, help="scheduler address, e.g. tcp://host:8786"),)

    def connect(self, image: str | None = None) -> "distributed.Client":
        from distributed.security import Security

        address = self.address or os.environ.get("SDT_SCHEDULER_ADDRESS")
        if not address:
            raise RunFailure("SDT-E507", "SchedulerClient has no scheduler address",
                             "set address in client.py or export SDT_SCHEDULER_ADDRESS=tcp://HOST:8786")
        security = None
        if address.startswith("tls://"):
            missing = [n for n in ("tls_ca_file", "tls_client_cert", "tls_client_key") if not getattr(self, n)]
            if missing:
                raise RunFailure("SDT-E507", f"a tls:// scheduler needs {', '.join(missing)}",
                                 "set the CA file, client certificate and key in client.py")
            security = Security(tls_ca_file=self.tls_ca_file, tls_client_cert=self.tls_client_cert,
                                tls_client_key=self.tls_client_key, require_encryption=True)
        try:
            self._dask_client = self.new_dask_client(address, security=security, timeout=self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise RunFailure("SDT-E508", f"no scheduler answered at {address} within {self.connect_timeout:g} s",
                             "check the address and that the scheduler runs (and is reachable from here)",
                             detail=str(exc)) from exc
        return self._dask_client
