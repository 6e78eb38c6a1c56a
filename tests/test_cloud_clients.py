"""Fargate and Azure settings, credentials and images are checked offline, with named errors."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from sdt_build.clients import AzureClient, FargateClient
from sdt_build.errors import RunFailure

from conftest import EXAMPLES, SDT

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
    ({"worker_cpu": 512, "worker_mem": 4096}, "below the ~6 GiB"),
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
    assert words in caught.value.cause, caught.value.detail
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
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hunter2" not in done.stdout + done.stderr
    assert '"PVDB_LOGIN": "****"' in done.stdout and '"PVDB_SCHEMA": "public"' in done.stdout
