"""Connect to a Dask scheduler that already runs (HPC, Kubernetes, a shared server).

The address comes from SDT_SCHEDULER_ADDRESS unless set here; tls:// addresses need the three
TLS files. The scheduler's workers must run the same dask/distributed as this client: sdt-build
checks before submitting anything.
"""

from sdt_build.clients import SchedulerClient


class SharedScheduler(SchedulerClient):
    address = None  # e.g. "tcp://dask.example.org:8786"; default: $SDT_SCHEDULER_ADDRESS
    tls_ca_file = None
    tls_client_cert = None
    tls_client_key = None
