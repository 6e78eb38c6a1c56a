"""KubernetesClient: a DaskCluster of dask-kubernetes' operator, from its own ``make_cluster_spec``.

Checked offline first like the other engine clients. Declared secrets go into a Kubernetes Secret
that sdt-build creates beside the cluster; the pods read them through ``secretKeyRef``, so the
cluster spec never holds a value. dask-kubernetes stays on the client side
(``pip install "sdt-build[kubernetes]"``); the cluster needs the operator installed.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdt_build.clients.cloud import CloudClient
from sdt_build.clients.local import parse_memory
from sdt_build.constraints import PIPELINE_PEAK, PIPELINE_PEAK_BYTES
from sdt_build.installer import add_extra
from sdt_build.runtime.errors import RunFailure

if TYPE_CHECKING:
    import distributed


class KubernetesClient(CloudClient):
    """Dask on Kubernetes (dask-kubernetes' KubeCluster; the Dask operator must run in the cluster)."""

    backend = "kubernetes"
    cluster_class = "dask_kubernetes.operator.KubeCluster"
    engine_library = ("dask_kubernetes", "dask-kubernetes", "kubernetes")
    problems_code = "SDT-E520"
    name: str | None = None  # the DaskCluster's name; default sdt-<8 hex digits>
    namespace: str | None = None  # default: the kubeconfig's
    worker_cpu: str = "1"
    idle_timeout: int = 0
    scheduler_service_type: str = "ClusterIP"
    secret_name: str | None = None  # the Secret holding the declared secrets; default <name>-env

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        self.name = self.name or f"sdt-{uuid.uuid4().hex[:8]}"

    def _engine(self, module: str):
        import importlib

        try:
            return importlib.import_module(module)
        except ImportError as exc:
            raise RunFailure("SDT-E519", "KubernetesClient needs dask-kubernetes on this machine",
                             add_extra("kubernetes")) from exc

    def engine_class(self):
        return self._engine("dask_kubernetes.operator").KubeCluster

    def check(self, image: str | None) -> list[str]:
        problems = []
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?", self.name):
            problems.append(f"name {self.name!r} is not a Kubernetes name (lowercase letters, digits, -; ≤ 32)")
        if self.namespace and not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", self.namespace):
            problems.append(f"namespace {self.namespace!r} is not a Kubernetes name")
        if parse_memory(self.memory_per_worker) < PIPELINE_PEAK_BYTES:
            problems.append(f"memory_per_worker {self.memory_per_worker}: {PIPELINE_PEAK}")
        if not re.fullmatch(r"\d+(\.\d+)?|\d+m", str(self.worker_cpu)):
            problems.append(f"worker_cpu {self.worker_cpu!r} is not a Kubernetes CPU quantity (1, 0.5, 500m)")
        if self.workers < 1 or self.threads_per_worker < 1:
            problems.append("workers and threads_per_worker must be at least 1")
        config = os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config"))
        if not os.environ.get("KUBERNETES_SERVICE_HOST") and not any(
                Path(p).exists() for p in config.split(os.pathsep) if p):
            problems.append(f"no Kubernetes configuration: {config} does not exist and this is not a pod "
                            "(set KUBECONFIG, or run `kubectl config view` to check)")
        return problems + self._image_problems(image)

    def secret_plan(self, strict: bool = True) -> dict[str, str]:
        return {n: f"Kubernetes Secret {self._secret_name()} (secretKeyRef)" for n in sorted(self.secret_names_here())}

    def _secret_name(self) -> str:
        return self.secret_name or f"{self.name}-env"

    def _env(self) -> list[dict[str, Any]]:
        secret = self.secret_names_here()
        return [{"name": n, "valueFrom": {"secretKeyRef": {"name": self._secret_name(), "key": n}}} if n in secret
                else {"name": n, "value": v} for n, v in sorted(self.environment.items())]

    def spec(self, image: str) -> dict[str, Any]:
        """The cluster spec; without dask-kubernetes, which makes it, the arguments it would be made of."""
        return self.spec_kwargs(image) if self.engine_problems() else super().spec(image)

    def spec_kwargs(self, image: str) -> dict[str, Any]:
        """The keyword arguments of dask-kubernetes' ``make_cluster_spec``."""
        memory = f"{parse_memory(self.memory_per_worker) // 2**20}Mi"
        resources = {"limits": {"cpu": str(self.worker_cpu), "memory": memory},
                     "requests": {"cpu": str(self.worker_cpu), "memory": memory}}
        return {"name": self.name, "image": image, "n_workers": self.workers, "resources": resources,
                "env": self._env(), "idle_timeout": self.idle_timeout,
                "scheduler_service_type": self.scheduler_service_type,
                "worker_command": f"dask-worker --nthreads {self.threads_per_worker} "
                                  f"--memory-limit {parse_memory(self.memory_per_worker)}"}

    def cluster_spec(self, image: str) -> dict[str, Any]:
        """The DaskCluster resource, made by dask-kubernetes itself; the scheduler's pod reads none of
        the declared secrets (it runs no plug code)."""
        spec = self._engine("dask_kubernetes.operator").make_cluster_spec(**self.spec_kwargs(image))
        secret = self.secret_names_here()
        for container in spec["spec"]["scheduler"]["spec"]["containers"]:
            container["env"] = [entry for entry in container.get("env") or [] if entry["name"] not in secret]
        return spec

    def secret_manifest(self) -> dict[str, Any] | None:
        """The Secret the pods read declared secrets from (values only here, never in the cluster spec)."""
        secret = self.secret_names_here()
        if not secret:
            return None
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": self._secret_name(), **({"namespace": self.namespace} if self.namespace else {})},
                "stringData": {n: self.environment[n] for n in sorted(secret)}}

    def engine_kwargs(self, image: str, *, masked: bool = True) -> dict[str, Any]:
        return {"custom_cluster_spec": self.cluster_spec(image), "namespace": self.namespace,
                "shutdown_on_close": True}

    def connect(self, image: str | None = None) -> "distributed.Client":
        image = image or self.image
        self._raise_problems(image)
        manifest = self.secret_manifest()
        if manifest is not None:
            import kr8s

            kr8s.objects.Secret(manifest, api=kr8s.api(namespace=self.namespace)).create()
        self._cluster = self.make_cluster(image)
        self._dask_client = self.new_dask_client(self._cluster)
        return self._dask_client

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "name": self.name, "namespace": self.namespace}
