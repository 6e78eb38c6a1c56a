"""Kubernetes through dask-kubernetes' operator (pip install "sdt-build[kubernetes]").

The cluster needs the Dask operator installed; this machine needs a Kubernetes configuration
(KUBECONFIG or ~/.kube/config). The image must be in a registry the nodes can pull from: with
`registry` set, `sdt-build run DIR` builds, smoke-tests and pushes it there first. Declared secrets
go into a Kubernetes Secret the pods read, never into the cluster spec.
"""

from sdt_build.clients import KubernetesClient


class Kubernetes(KubernetesClient):
    namespace = "pv-analytics"
    registry = "registry.example.org/pv"
    workers = 10
    threads_per_worker = 1
    worker_cpu = "1"
    memory_per_worker = "2GiB"  # the pods' memory request and limit, and Dask's limit
