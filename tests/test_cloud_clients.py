"""Fargate and Azure settings, credentials and images are checked offline, with named errors."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess

import pytest
from conftest import EXAMPLES, SDT
from engines import construct

from sdt_build.clients import AzureClient, FargateClient, KubernetesClient
from sdt_build.constraints import PIPELINE_PEAK_BYTES
from sdt_build.runtime.errors import RunFailure

GOOD_FARGATE = dict(region="us-west-2", vpc="vpc-0123456789abcdef0", subnets=("subnet-0123456789abcdef0",),
                    security_groups=("sg-0123456789abcdef0",), worker_cpu=1024, worker_mem=8192, workers=3,
                    image="123456789012.dkr.ecr.us-west-2.amazonaws.com/sites:abc", tags={"team": "pv"})
GOOD_AZURE = dict(location="westus2", resource_group="pv-rg", vnet="pv-vnet", security_group="pv-nsg",
                  vm_size="Standard_E2s_v5", workers=2, image="myacr.azurecr.io/sites:abc")


@pytest.fixture
def aws_credentials(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws, no ~/.azure
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
                 "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def azure_credentials(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name, value in (("AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000"),
                        ("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c"), ("AZURE_CLIENT_SECRET", "s")):
        monkeypatch.setenv(name, value)


def test_good_fargate_settings_have_no_problems(aws_credentials):
    assert FargateClient(**GOOD_FARGATE).check(GOOD_FARGATE["image"]) == []


@pytest.mark.parametrize("change, words", [
    ({"region": None}, "no region"),
    ({"region": "mars-north-1x"}, "not an AWS region"),
    ({"vpc": "vpc-xyz"}, "not a VPC id"),
    ({"subnets": ("subnet-nothex!",)}, "not a subnet id"),
    ({"security_groups": ("default",)}, "not a security group id"),
    ({"vpc": None}, "subnets are set but vpc is not"),
    ({"worker_cpu": 1000}, "not a Fargate size"),
    ({"worker_cpu": 1024, "worker_mem": 16384}, "does not go with worker_cpu 1024"),
    ({"worker_cpu": 256, "worker_mem": PIPELINE_PEAK_BYTES // 2**21}, "below what SDT needs"),  # half the peak
    ({"tags": {"aws:owner": "x"}}, "reserves"),
    ({"image": "local-csv:abc123"}, "exists only here"),
    ({"image": "127.0.0.1:5000/local-csv:abc"}, "registry on this machine"),
])
def test_each_wrong_fargate_setting_is_named(aws_credentials, change, words):
    settings = {**GOOD_FARGATE, **change}
    client = FargateClient(**settings)
    with pytest.raises(RunFailure) as caught:
        client.connect(settings["image"])
    assert caught.value.code == "SDT-E510"
    assert words in caught.value.detail, caught.value.detail  # every problem, the first one in the cause
    assert caught.value.detail.splitlines()[0] in caught.value.cause
    assert "--dry-run" in caught.value.fix


def test_missing_aws_credentials_are_named(aws_credentials, monkeypatch):
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    problems = FargateClient(**GOOD_FARGATE).check(GOOD_FARGATE["image"])
    assert len(problems) == 1 and "AWS_SECRET_ACCESS_KEY" in problems[0] and "AWS_ACCESS_KEY_ID" not in problems[0]


def test_good_azure_settings_have_no_problems(azure_credentials):
    assert AzureClient(**GOOD_AZURE).check(GOOD_AZURE["image"]) == []


@pytest.mark.parametrize("change, words", [
    ({"location": None}, "no location"),
    ({"location": "West US 2"}, "not an Azure location"),
    ({"resource_group": "bad/group"}, "not a valid name"),
    ({"vnet": None}, "no vnet"),
    ({"security_group": "-x"}, "not a valid name"),
    ({"vm_size": "big"}, "not an Azure VM size"),
    ({"vm_size": "Standard_D2s_v3", "memory_per_worker": "12GiB"}, "less than memory_per_worker"),
    ({"image": "sites:latest"}, "exists only here"),
])
def test_each_wrong_azure_setting_is_named(azure_credentials, change, words):
    settings = {**GOOD_AZURE, **change}
    with pytest.raises(RunFailure) as caught:
        AzureClient(**settings).connect(settings["image"])
    assert caught.value.code == "SDT-E511" and words in caught.value.cause, caught.value.detail


def test_missing_azure_credentials_are_named(azure_credentials, monkeypatch):
    monkeypatch.delenv("AZURE_CLIENT_SECRET")
    problems = AzureClient(**GOOD_AZURE).check(GOOD_AZURE["image"])
    assert len(problems) == 1 and "AZURE_CLIENT_SECRET" in problems[0]
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID")
    assert "AZURE_SUBSCRIPTION_ID" in AzureClient(**GOOD_AZURE).check(GOOD_AZURE["image"])[0]


@pytest.mark.parametrize("backend", ["fargate", "azure"])
def test_dry_run_prints_the_documented_spec(backend, aws_credentials, azure_credentials, tmp_path):
    folder = tmp_path / backend
    shutil.copytree(EXAMPLES / "local-csv", folder)
    shutil.copy(EXAMPLES / "clients" / backend / "client.py", folder / "client.py")
    done = subprocess.run([SDT, "run", str(folder), "--dry-run", "--json"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    spec = json.loads(done.stdout)
    documented = json.loads((EXAMPLES.parent / "docs" / "clients.md").read_text()
                            .split(f"<!-- dry-run {backend} -->")[1].split("```json")[1].split("```")[0])
    assert {k: spec[k] for k in ("backend", "cluster", "kwargs")} == documented


def test_dry_run_masks_a_plug_secret_whatever_its_name(aws_credentials, tmp_path, monkeypatch):
    folder = tmp_path / "fargate"
    shutil.copytree(EXAMPLES / "local-csv", folder)
    shutil.copy(EXAMPLES / "clients" / "fargate" / "client.py", folder / "client.py")
    plug = (folder / "dataplug.py").read_text().replace(
        'env = [', 'env = [EnvVar("PVDB_LOGIN", secret=True), EnvVar("PVDB_SCHEMA"), ')
    (folder / "dataplug.py").write_text(plug)
    monkeypatch.setenv("PVDB_LOGIN", "hunter2")
    monkeypatch.setenv("PVDB_SCHEMA", "public")
    done = subprocess.run([SDT, "run", str(folder), "--dry-run", "--json"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 5, done.stdout + done.stderr  # the secret would travel in plain text: refused
    assert "hunter2" not in done.stdout + done.stderr
    assert '"PVDB_LOGIN": "****"' in done.stdout and '"PVDB_SCHEMA": "public"' in done.stdout
    assert any("PVDB_LOGIN" in p and "plain text" in p for p in json.loads(done.stdout)["problems"])


# --- the installed engines take every setting sdt-build passes --------------------------------

ALL_FARGATE = {**GOOD_FARGATE, "fargate_use_private_ip": True, "fargate_spot": True,
               "cluster_arn": "arn:aws:ecs:us-west-2:123456789012:cluster/pv",
               "execution_role_arn": "arn:aws:iam::123456789012:role/exec",
               "task_role_arn": "arn:aws:iam::123456789012:role/task",
               "task_role_policies": ("arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",),
               "cloudwatch_logs_group": "/sdt/pv"}
ALL_AZURE = {**GOOD_AZURE, "subscription_id": "00000000-0000-0000-0000-000000000000", "subnet": "pv-subnet",
             "public_ingress": False, "bootstrap": False, "extra_bootstrap": ("echo ready",),
             "docker_args": "--shm-size=1g", "extra_vm_options": {"priority": "Spot"}}


def named_parameters(cls) -> set[str]:
    """The keyword parameters ``cls(...)`` really takes: its __init__'s, and down the classes its
    **kwargs are handed to, until one takes no **kwargs (a name nobody reads would vanish there)."""
    import inspect

    names = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)} - {"self"}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return names


@pytest.mark.parametrize("client", [FargateClient(**ALL_FARGATE), AzureClient(**ALL_AZURE)],
                         ids=["fargate", "azure"])
def test_every_setting_binds_to_the_installed_engine(client, aws_credentials, azure_credentials):
    import inspect

    import dask

    cls = client.engine_class()
    kwargs = client.engine_kwargs(client.image, masked=False)
    assert set(kwargs) <= named_parameters(cls), set(kwargs) - named_parameters(cls)
    inspect.signature(cls).bind(**kwargs)
    before = copy.deepcopy(dask.config.config)
    try:  # the real cluster object, up to the cloud API (nothing is started)
        cluster = construct(client, client.image)
        if client.backend == "azure":  # and its VMs, up to create_vm: the NIC and VM parameters
            vm = cluster.scheduler_class(**cluster.scheduler_options)
            assert "docker run" in cluster.render_process_cloud_init(vm)
            assert cluster.subscription_id == ALL_AZURE["subscription_id"]
            assert not {"tags"} & set(vm.extra_vm_options)
            assert dask.config.get("distributed.comm.require-encryption") is True
    finally:
        client.close()
    # what the engine set for its cluster's life is gone once the client closes
    assert dask.config.config == before


def test_kubernetes_settings_bind_to_make_cluster_spec_and_kubecluster():
    import inspect

    from dask_kubernetes.operator import KubeCluster, make_cluster_spec

    client = KubernetesClient(workers=3, namespace="pv", image="registry.example.org/sites:abc")
    inspect.signature(make_cluster_spec).bind(**client.spec_kwargs(client.image))
    kwargs = client.engine_kwargs(client.image)
    assert set(kwargs) <= named_parameters(KubeCluster)
    cluster = construct(client, client.image)
    assert cluster.name == client.name and cluster.namespace == "pv"


@pytest.mark.parametrize("cls, settings", [(FargateClient, GOOD_FARGATE), (AzureClient, GOOD_AZURE)],
                         ids=["fargate", "azure"])
def test_a_plain_secret_is_refused_with_a_fix(cls, settings, aws_credentials, azure_credentials):
    client = cls(**settings).with_environment({"PVDB_LOGIN": "hunter2", "PVDB_SCHEMA": "public"}, {"PVDB_LOGIN"})
    with pytest.raises(RunFailure) as caught:
        client.connect(settings["image"])
    assert caught.value.code == "SDT-E518" and "PVDB_LOGIN" in caught.value.cause
    assert "allow_plain_secrets" in caught.value.fix and "hunter2" not in str(caught.value.__dict__)
    opted = cls(**settings, allow_plain_secrets=True).with_environment({"PVDB_LOGIN": "hunter2"}, {"PVDB_LOGIN"})
    assert opted.engine_kwargs(settings["image"], masked=False)[
        "environment" if cls is FargateClient else "env_vars"] == {"PVDB_LOGIN": "hunter2"}
    assert opted.describe()["secrets"] == {"PVDB_LOGIN": "plain environment (allow_plain_secrets = True)"}


def test_fargate_leaves_aws_keys_to_the_task_role(aws_credentials):
    client = FargateClient(**GOOD_FARGATE).with_environment(
        {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEEXAMPLE00", "AWS_SECRET_ACCESS_KEY": "not-a-real-secret",
         "SDT_S3_BUCKET": "pv"}, {"AWS_SECRET_ACCESS_KEY"})
    assert client.engine_kwargs(GOOD_FARGATE["image"], masked=False)["environment"] == {"SDT_S3_BUCKET": "pv"}


def test_settings_from_dask_configuration_count(aws_credentials, azure_credentials, monkeypatch):
    import dask

    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID")
    with dask.config.set({"cloudprovider.ecs.region_name": "eu-west-1",
                          "cloudprovider.azure.subscription_id": "11111111-1111-1111-1111-111111111111",
                          "cloudprovider.azure.azurevm.vnet": "cfg-vnet"}):
        assert FargateClient(**{**GOOD_FARGATE, "region": None}).check(GOOD_FARGATE["image"]) == []
        azure = AzureClient(**{**GOOD_AZURE, "vnet": None})
        assert azure.check(GOOD_AZURE["image"]) == []
        assert azure.engine_kwargs(GOOD_AZURE["image"])["vnet"] == "cfg-vnet"
    (tmp := __import__("pathlib").Path(os.environ["HOME"]) / ".aws").mkdir()
    (tmp / "config").write_text("[default]\nregion = ap-south-1\n")
    assert FargateClient(**{**GOOD_FARGATE, "region": None}).engine_kwargs(GOOD_FARGATE["image"])["region_name"] \
        == "ap-south-1"


def test_a_cloud_run_is_checked_before_anything_is_built(aws_credentials, tmp_path):
    """A registry the cloud cannot reach, or none at all, stops the run before the build."""
    from sdt_build import SDTDask

    folder = tmp_path / "fargate"
    shutil.copytree(EXAMPLES / "local-csv", folder)
    settings = {**GOOD_FARGATE, "image": None}
    with pytest.raises(RunFailure) as caught:
        SDTDask(folder, client=FargateClient(**settings)).execute(output_dir=tmp_path / "out")
    assert caught.value.code == "SDT-E521" and "registry" in caught.value.fix
    with pytest.raises(RunFailure) as caught:
        SDTDask(folder, client=FargateClient(**settings, registry="127.0.0.1:5000")).execute(
            output_dir=tmp_path / "out")
    assert caught.value.code == "SDT-E510" and "registry on this machine" in caught.value.cause
