"""The cluster engines' own launch specs, run here as containers of an image.

Each ``*_launches`` function drives the installed engine's real classes up to its cloud API and
returns what it would start: the scheduler's and each worker's image, command, environment and
memory, taken from the engine's own output (ECS task definitions and ``run_task`` overrides as a
local AWS API, moto, received them; AzureVMCluster's cloud-init; dask-kubernetes' DaskCluster and
its operator's worker Deployment). ``running`` starts exactly those commands with host networking,
changing only where they listen (127.0.0.1) and the scheduler address the workers are given.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shlex
import subprocess
import time
import uuid
import weakref
from dataclasses import dataclass, field

from services import free_port, wait_ready

from sdt_build.build.daemon import LABEL


@dataclass
class Launch:
    """One process an engine starts: its container's image, command, environment and memory limit."""

    role: str
    image: str
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    memory: str | None = None


def listen_here(launch: Launch, scheduler: str, port: int) -> list[str]:
    """The engine's command, listening on 127.0.0.1 only (the scheduler on ``port``), workers pointed at
    ``scheduler``. Nothing else changes: click takes the last of a repeated option."""
    command = list(launch.command)
    if launch.role == "scheduler":
        return command + ["--host", "127.0.0.1", "--port", str(port), "--dashboard-address", "127.0.0.1:0"]
    if "distributed.cli.dask_spec" in command:  # AzureVMCluster's workers: a Nanny from a JSON spec
        at = command.index("--spec") + 1
        spec = json.loads(command[at])
        spec["opts"]["host"] = "127.0.0.1"
        command[at] = json.dumps(spec)
        return [scheduler if re.fullmatch(r"(tcp|tls)://\S+", part) else part for part in command]
    command = [scheduler if re.fullmatch(r"(tcp|tls)://\S+", part) else part for part in command]
    return command + ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"]


@contextlib.contextmanager
def running(docker, scheduler: Launch, workers: list[Launch], scheme: str = "tcp"):
    """Start the launches as containers here; yield the scheduler's address (``scheme`` as the
    engine configured it) and the containers; remove them after."""
    port = free_port()
    address = f"{scheme}://127.0.0.1:{port}"
    run_id = uuid.uuid4().hex[:8]
    started = []

    def start(launch: Launch, environment: dict[str, str]):
        container = docker.containers.run(
            launch.image, listen_here(launch, address, port), detach=True, network_mode="host",
            environment=environment, mem_limit=launch.memory,
            labels={f"{LABEL}.role": launch.role, f"{LABEL}.cluster": f"engine-{run_id}"},
            name=f"sdt-engine-{launch.role}-{run_id}-{len(started)}")
        started.append(container)
        return container

    try:
        first = start(scheduler, scheduler.environment)
        _wait_for_log(first, r"Scheduler at:\s+\S+")
        for worker in workers:
            start(worker, {**worker.environment, "DASK_SCHEDULER_ADDRESS": address}
                  if "DASK_SCHEDULER_ADDRESS" in worker.environment else worker.environment)
        yield address, started
    finally:
        for container in started:
            container.remove(force=True)


def _wait_for_log(container, pattern: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        logs = container.logs().decode(errors="replace")
        if re.search(pattern, logs):
            return
        if container.status in ("exited", "dead"):
            break
        time.sleep(0.5)
    raise RuntimeError(f"{container.name} did not come up: {logs[-3000:]}")


def construct(client, image: str):
    """The engine's real cluster object, constructed in a running event loop and never started
    (marked closed, so that no clean-up at exit tries to reach the cloud)."""
    from distributed.core import Status

    async def inside():
        return client.make_cluster(image, asynchronous=True)

    cluster = asyncio.run(inside())
    cluster.status = Status.closed
    return cluster


# --- Fargate / ECS: dask-cloudprovider against a local AWS API (moto) -------------------------

@contextlib.contextmanager
def moto_server(folder):
    """moto in server mode on 127.0.0.1, with AWS's managed IAM policies (the engine attaches them)."""
    import os
    import sys
    from pathlib import Path

    port = free_port()
    log = folder / "moto.log"
    process = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                               env={**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"})
    endpoint = f"http://127.0.0.1:{port}"
    import urllib.request

    wait_ready(lambda: urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1), "moto", process, log, timeout=30)
    # A task stays RUNNING until it is stopped (moto would otherwise move it on at every describe_tasks).
    urllib.request.urlopen(urllib.request.Request(
        f"{endpoint}/moto-api/state-manager/set-transition", method="POST", data=json.dumps(
            {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9}}).encode()))
    try:
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


def ecs_launches(client, image: str, docker) -> tuple[list[Launch], dict]:
    """Create the engine's cluster (FargateCluster or ECSCluster) against the AWS API in
    AWS_ENDPOINT_URL, with a throwaway scheduler here standing for the scheduler task; return the
    scheduler and worker launches from what the API received, and the raw definitions and overrides."""
    import boto3

    region = client.engine_kwargs(image)["region_name"]
    ecs = boto3.client("ecs", region_name=region)
    ecs.put_account_setting(name="taskLongArnFormat", value="enabled")  # AWS's default since 2021
    port = free_port()
    stand_in = docker.containers.run(image, ["dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                             "--dashboard-address", "127.0.0.1:0"], detach=True, network_mode="host",
                                     labels={f"{LABEL}.role": "scheduler"})
    try:
        _wait_for_log(stand_in, r"Scheduler at:\s+\S+")

        async def drive():
            cluster = client.make_cluster(image, asynchronous=True, skip_cleanup=True,
                                          scheduler_address=f"tcp://127.0.0.1:{port}")
            try:
                await asyncio.wait_for(_awaited(cluster), 180)
                definitions = {role: ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
                               for role, arn in (("scheduler", cluster.scheduler_task_definition_arn),
                                                 ("worker", cluster.worker_task_definition_arn))}
                tasks = ecs.describe_tasks(cluster=cluster.cluster_arn,
                                           tasks=ecs.list_tasks(cluster=cluster.cluster_arn)["taskArns"])["tasks"]
                return definitions, tasks
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(cluster.close(), 60)
                # The engine deregisters its task definitions from finalizers at interpreter exit, when
                # this event loop is long gone; the AWS API here goes away with the test instead.
                for finalizer in list(weakref.finalize._registry):
                    if (finalizer.peek() or (None,))[0] is cluster:
                        finalizer.detach()

        definitions, tasks = asyncio.run(drive())
    finally:
        stand_in.remove(force=True)
    overrides = [t["overrides"]["containerOverrides"][0] for t in tasks]
    environment = {e["name"]: e["value"] for e in overrides[0].get("environment", [])}
    container = definitions["scheduler"]["containerDefinitions"][0]
    scheduler = Launch("scheduler", container["image"], container["command"], environment, f"{container['memory']}m")
    worker_definition = definitions["worker"]["containerDefinitions"][0]
    workers = [Launch("worker", worker_definition["image"], o["command"],
                      {e["name"]: e["value"] for e in o.get("environment", [])}, f"{worker_definition['memory']}m")
               for o in overrides]
    return [scheduler, *workers], {"task_definitions": definitions, "overrides": overrides}


async def _awaited(cluster):
    return await cluster


# --- Azure: AzureVMCluster's cloud-init ------------------------------------------------------

def azure_launches(client, image: str, port: int) -> tuple[list[Launch], dict]:
    """Construct the engine's AzureVMCluster and its scheduler and worker VMs (everything before the
    VM is created) and parse the `docker run` line of the cloud-init each VM would boot with. Returns
    the launches, the cloud-init texts, and the cluster's TLS credentials (its security)."""
    import yaml

    try:
        cluster = construct(client, image)
        scheduler = cluster.scheduler_class(**cluster.scheduler_options)
        worker_vms = [cluster.worker_class(f"{cluster.protocol}://127.0.0.1:{port}", **cluster.worker_options)
                      for _ in range(client.workers)]
        texts = [cluster.render_process_cloud_init(vm) for vm in [scheduler, *worker_vms]]
    finally:
        client.close()  # the engine's TLS options in Dask's global configuration end with the client
    launches = [_docker_run(yaml.safe_load(text), role)
                for text, role in zip(texts, ["scheduler"] + ["worker"] * len(worker_vms))]
    return launches, {"cloud_init": texts, "security": cluster.security, "protocol": cluster.protocol}


def _docker_run(cloud_init: dict, role: str) -> Launch:
    [line] = [c for c in cloud_init["runcmd"] if isinstance(c, str) and c.startswith("docker run")]
    words = shlex.split(line)[2:]
    environment, at = {}, 0
    while words[at].startswith("-"):
        if words[at] == "-e":
            name, _, value = words[at + 1].partition("=")
            environment[name] = value
            at += 2
        else:
            at += 1
    return Launch(role, words[at], words[at + 1:], environment)


# --- Kubernetes: dask-kubernetes' DaskCluster and its operator's worker Deployment ----------

def kubernetes_launches(client, image: str) -> tuple[list[Launch], dict]:
    """The DaskCluster resource dask-kubernetes makes, the worker Deployment its operator makes of it,
    their env resolved as the kubelet would (values, secretKeyRef from the Secret sdt-build creates,
    $(VAR) references). KubeCluster is constructed too; it would talk to the API server on start."""
    from dask_kubernetes.operator.controller.controller import build_worker_deployment_spec

    spec = client.cluster_spec(image)
    construct(client, image)
    secret = (client.secret_manifest() or {}).get("stringData", {})
    name = spec["metadata"]["name"]
    deployment = build_worker_deployment_spec(f"{name}-default", "default", name, uuid.uuid4().hex[:10],
                                              spec["spec"]["worker"]["spec"], {}, {})
    pods = [("scheduler", spec["spec"]["scheduler"]["spec"])] + \
        [("worker", deployment["spec"]["template"]["spec"])] * spec["spec"]["worker"]["replicas"]
    launches = []
    for role, pod in pods:
        [container] = pod["containers"]
        environment = {}
        for entry in container.get("env") or []:
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            environment[entry["name"]] = secret[ref["key"]] if ref else entry["value"]
        args = [re.sub(r"\$\((\w+)\)", lambda m: environment.get(m.group(1), m.group(0)), a) for a in container["args"]]
        memory = ((container.get("resources") or {}).get("limits") or {}).get("memory")
        launches.append(Launch(role, container["image"], args, environment,
                               memory.replace("Mi", "m").replace("Gi", "g") if memory else None))
    return launches, {"cluster_spec": spec, "worker_deployment": deployment}


def wait_for_workers(address: str, count: int, security=None, timeout: float = 120) -> None:
    from distributed import Client

    with Client(address, security=security, timeout=30) as client:
        client.wait_for_workers(count, timeout=timeout)

