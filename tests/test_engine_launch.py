"""Fargate, Azure and Kubernetes: each engine's own scheduler and worker launches, run here.

The launch specs come from the installed engines (tests/engines.py says how); their commands run
as containers of the built local-csv image and a real site runs on them, equal to SDT's own
DataHandler. What no test here can prove: that the cloud accepts the request (IAM permissions,
quotas, networking, the registry's login), that the operator runs in a real Kubernetes.
"""

from __future__ import annotations

import json

import pytest

from sdt_build import SDTDask
from sdt_build.clients import AzureClient, FargateClient, KubernetesClient, SchedulerClient

from conftest import FIX_SHIFTS, SECRET_NAME, SITES, assert_same_reports
from engines import azure_launches, ecs_launches, kubernetes_launches, moto_server, running

pytestmark = pytest.mark.docker
SECRET = "s3cr3t-value-9f27c1"  # must appear in no task definition, override, pod spec, cloud-init or run record
AWS_SECRET = "aws-secret-key-5b1e77"


SITE = SITES[1]  # the shorter of the two real sites


def _run_a_site(folder, address, direct_report, output, security=None):
    tls = {} if security is None else {"tls_ca_file": security.tls_ca_file,
                                       "tls_client_cert": security.tls_client_cert,
                                       "tls_client_key": security.tls_client_key}
    result = SDTDask(folder, client=SchedulerClient(address=address, **tls)).execute([(SITE,)], output_dir=output)
    assert result.ok and result.counts == {"ok": 1}, result.table[["key", "status", "stage", "message"]]
    assert_same_reports(result.table, [((SITE,), direct_report(SITE, FIX_SHIFTS))])
    return (output / "run.json").read_text()


def test_fargate_task_definitions_run_here(docker, local_csv_built, direct_report, tmp_path, monkeypatch):
    """FargateCluster against moto: its registered task definitions and run_task overrides, run as containers."""
    folder, image = local_csv_built
    with moto_server(tmp_path) as endpoint:
        for name, value in (("AWS_ENDPOINT_URL", endpoint), ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE00"),
                            ("AWS_SECRET_ACCESS_KEY", AWS_SECRET), ("AWS_EC2_METADATA_DISABLED", "true")):
            monkeypatch.setenv(name, value)
        client = FargateClient(region="us-west-2", workers=1, worker_cpu=1024, worker_mem=8192,
                               threads_per_worker=1, tags={"project": "pv"},
                               fargate_use_private_ip=True).with_environment(
            {"SDT_CSV_DIR": "", "AWS_SECRET_ACCESS_KEY": AWS_SECRET}, {"AWS_SECRET_ACCESS_KEY"})
        launches, sent = ecs_launches(client, image, docker)
    scheduler, *workers = launches
    assert scheduler.command[0] == "dask-scheduler" and [w.command[0] for w in workers] == ["dask-worker"]
    assert "--memory-limit" in workers[0].command and workers[0].memory == "8192m"
    assert AWS_SECRET not in json.dumps(sent) and "AWS_SECRET_ACCESS_KEY" not in workers[0].environment
    with running(docker, scheduler, workers) as (address, _):
        record = _run_a_site(folder, address, direct_report, tmp_path / "out")
    assert AWS_SECRET not in record + json.dumps(client.describe())


def test_azure_cloud_init_runs_here(docker, local_csv_built, direct_report, tmp_path, monkeypatch):
    """AzureVMCluster's cloud-init `docker run` lines (TLS and all), run as containers."""
    folder, image = local_csv_built
    for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"):
        monkeypatch.setenv(name, "00000000-0000-0000-0000-000000000001")
    client = AzureClient(location="westus2", resource_group="pv-rg", vnet="pv-vnet", security_group="pv-nsg",
                         subscription_id="00000000-0000-0000-0000-000000000000", workers=1,
                         memory_per_worker="7GiB", extra_bootstrap=("true",)).with_environment(
        {"SDT_CSV_DIR": ""}, set())
    from services import free_port

    port = free_port()
    launches, made = azure_launches(client, image, port)
    scheduler, *workers = launches
    assert scheduler.command[scheduler.command.index("python"):][:3] == ["python", "-m", "distributed.cli.dask_scheduler"]
    with running(docker, scheduler, workers, scheme=made["protocol"]) as (address, _):
        assert address.startswith("tls://")
        _run_a_site(folder, address, direct_report, tmp_path / "out", security=made["security"])


def test_kubernetes_cluster_spec_runs_here(docker, local_csv_built, direct_report, tmp_path):
    """dask-kubernetes' DaskCluster and its operator's worker Deployment, run as containers; the
    declared secret reaches the pods through a Kubernetes Secret only."""
    folder, image = local_csv_built
    client = KubernetesClient(workers=1, memory_per_worker="7GiB").with_environment(
        {"SDT_CSV_DIR": "", SECRET_NAME: SECRET}, {SECRET_NAME})
    launches, made = kubernetes_launches(client, image)
    scheduler, *workers = launches
    assert scheduler.command[0] == "dask-scheduler" and workers[0].command[0] == "dask-worker"
    assert SECRET not in json.dumps(made) + json.dumps(client.describe())
    assert client.secret_manifest()["stringData"] == {SECRET_NAME: SECRET}
    assert workers[0].environment[SECRET_NAME] == SECRET  # what the kubelet gives the pod from the Secret
    assert SECRET_NAME not in scheduler.environment  # the scheduler runs no plug code
    with running(docker, scheduler, workers) as (address, _):
        record = _run_a_site(folder, address, direct_report, tmp_path / "out")
    assert SECRET not in record


def test_a_registry_bound_run_pushes_then_runs_the_pulled_image(docker, local_csv_built, registry, direct_report,
                                                                 tmp_path, monkeypatch):
    """build → smoke → push (content tag and :latest) → local registry tags removed → the cluster pulls."""
    import urllib.request

    from sdt_build.clients import DockerClient

    folder, tag = local_csv_built
    monkeypatch.setenv(SECRET_NAME, SECRET)
    result = SDTDask(folder, client=DockerClient(workers=1, memory_per_worker="7GiB", registry=registry)).execute(
        [(SITE,)], output_dir=tmp_path / "out")
    assert result.ok and result.counts == {"ok": 1}, result.table[["key", "status", "stage", "message"]]
    assert_same_reports(result.table, [((SITE,), direct_report(SITE, FIX_SHIFTS))])
    name, content = tag.rsplit(":", 1)
    listed = json.loads(urllib.request.urlopen(f"http://{registry}/v2/{name}/tags/list", timeout=10).read())
    assert sorted(listed["tags"]) == sorted([content, "latest"])
    record = (tmp_path / "out" / "run.json").read_text()
    assert json.loads(record)["client"]["image"] == f"{registry}/{tag}"
    # the run's containers pulled the content tag back from the registry; :latest was not pulled
    assert docker.images.get(f"{registry}/{tag}").id == docker.images.get(tag).id
    assert f"{registry}/{name}:latest" not in docker.images.get(tag).tags
    assert SECRET not in record
    docker.images.remove(f"{registry}/{tag}")


def test_smoke_of_a_folder_checks_the_image_its_client_names(local_csv_built, tmp_path):
    import shutil
    import subprocess

    from conftest import SDT

    folder, tag = local_csv_built
    copy = tmp_path / "named"
    shutil.copytree(folder, copy)
    (copy / "client.py").write_text("from sdt_build.clients import DockerClient\n\n\n"
                                    f"class Named(DockerClient):\n    image = {tag!r}\n")
    done = subprocess.run([SDT, "smoke", str(copy), "--pipeline-days", "0", "--json"], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["image"] == tag
    launchers = next(s for s in report["steps"] if s["name"] == "dask entry points")
    assert launchers["ok"] and "dask-scheduler" in launchers["detail"] and "dask-worker" in launchers["detail"]
