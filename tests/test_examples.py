"""The data-service examples end to end, each against a real service on 127.0.0.1 loaded from the
real PV CSVs: check → build → smoke with a sample key → SDTDask (S3 and SQL on the container
client, PVDAQ on the local one), with every result equal to SDT's own DataHandler on the same data."""

from __future__ import annotations

import json
import subprocess

import pytest

from sdt_build import SDTDask
from sdt_build.clients import DockerClient, LocalClient
from sdt_build.pipeline import build_project

from conftest import EXAMPLES, FIX_SHIFTS, PVDAQ_SYSTEMS, SDT, SITES, assert_same_reports

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PVDAQ_KWARGS = (*FIX_SHIFTS, ("power_col", "ac_power"))
A, B = PVDAQ_SYSTEMS  # 34: one site's 2016 and 26 readings in 2017; 51: 2018 and 2019


def _local():
    return LocalClient(workers=2, threads_per_worker=1, memory_per_worker="7GiB")


def _containers():
    return DockerClient(workers=2, threads_per_worker=1, memory_per_worker="7GiB")


@pytest.fixture(scope="module")
def services_env(s3_service, postgres_service, pvdaq_service):
    """The three services' variables, set as a user would export them."""
    with pytest.MonkeyPatch.context() as patch:
        for service in (s3_service, postgres_service, pvdaq_service):
            for name, value in service.env.items():
                patch.setenv(name, value)
        yield


SAMPLE_KEYS = {"s3": ("sites/ZT162185000441C1203.parquet",), "sql": ("ZT162185000441C1203",),
               "pvdaq": (B, 2019)}


@pytest.fixture(scope="module")
def built(services_env, docker, base_image):
    """Each example built and smoke-tested (the real pipeline on its sample key, in the image)."""
    images = {}
    for name, key in SAMPLE_KEYS.items():
        result = build_project(EXAMPLES / name, sample_key=key)
        steps = {step.name: step for step in result.smoke.steps}
        assert result.smoke.ok and steps["get_data sample key"].ok, result.smoke
        images[name] = result.image.tag
    return images


@pytest.mark.parametrize("name", ["s3", "sql", "pvdaq"])
def test_example_passes_check(services_env, name):
    done = subprocess.run([SDT, "check", str(EXAMPLES / name), "--json"], capture_output=True, text=True)
    assert done.returncode == 0 and json.loads(done.stdout)["ok"], done.stdout + done.stderr


def test_builds_pass_the_smoke_test_with_a_sample_key(built, docker):
    for name, tag in built.items():
        image = docker.images.get(tag)
        assert any(t.endswith(":latest") for t in image.tags), (name, image.tags)  # only after smoke


def test_s3_on_containers_matches_direct_datahandler(built, s3_service, direct_report, tmp_path):
    result = SDTDask(EXAMPLES / "s3", client=_containers(), image=built["s3"]).execute(
        output_dir=tmp_path / "out")  # keys(): the bucket's listing, README.txt left out
    assert_same_reports(result.table, [((obj,), direct_report(site, FIX_SHIFTS))
                                       for obj, site in s3_service.objects.items()])


def test_sql_on_containers_matches_direct_datahandler(built, direct_report, tmp_path):
    result = SDTDask(EXAMPLES / "sql", client=_containers(), image=built["sql"]).execute(
        output_dir=tmp_path / "out")  # keys(): SELECT DISTINCT site
    assert_same_reports(result.table, [((site,), direct_report(site, FIX_SHIFTS)) for site in SITES])


def test_pvdaq_matches_direct_datahandler_through_the_rate_limit(built, pvdaq_service, direct_report, tmp_path):
    limited_before = pvdaq_service.counts["rate_limited"]
    keys = [(A, [2016, 2017]), (B, 2019), (A, 2030)]
    result = SDTDask(EXAMPLES / "pvdaq", client=_local(), image=built["pvdaq"]).execute(
        keys, output_dir=tmp_path / "out")
    table = result.table
    missing = table[table["key"].map(lambda k: k[1] == 2030)].iloc[0]
    assert (missing["status"], missing["stage"]) == ("failed", "get_data")
    assert "404" in missing["message"] and "system 34, 2030" in missing["message"]
    assert_same_reports(table[table["key"].map(lambda k: k[1] != 2030)], [
        ((A, [2016, 2017]), direct_report(PVDAQ_SYSTEMS[A], PVDAQ_KWARGS, column="ac_power")),
        ((B, 2019), direct_report(PVDAQ_SYSTEMS[B], PVDAQ_KWARGS, years=(2019,), column="ac_power"))])
    # Four requests against a limit of two per 4 s: some were refused with 429 and retried.
    assert pvdaq_service.counts["rate_limited"] > limited_before


def test_pvdaq_bad_api_key_fails_each_key_with_the_api_answer(services_env, monkeypatch, tmp_path):
    monkeypatch.setenv("NREL_API_KEY", "not-a-key")
    result = SDTDask(EXAMPLES / "pvdaq", client=_local()).execute(
        [(A, 2016), (B, 2018)], output_dir=tmp_path / "out")
    assert result.counts == {"failed": 2}
    for message in result.table["message"]:
        assert "403 API_KEY_INVALID" in message and "check NREL_API_KEY" in message
        assert "not-a-key" not in message
