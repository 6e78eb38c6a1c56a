"""Shared fixtures. Tests use the real Docker daemon and base image that `make test` starts/creates:
when they are missing the tests fail (they are never skipped)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from faultkit import fault_image, trouble  # noqa: F401  (fixtures of the fault probes)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SDT = str(Path(sys.executable).parent / "sdt-build")
BASE_IMAGE = os.environ.get("SDT_TEST_BASE_IMAGE", "sdt-base:bookworm-py3.11")


@pytest.fixture(scope="session")
def docker():
    from sdt_build.build.daemon import docker_client
    from sdt_build.runtime.errors import EnvironmentProblem

    try:
        return docker_client()
    except EnvironmentProblem as exc:
        pytest.fail(f"{exc.code} {exc.cause}: run `make docker-up` first ({exc.fix})")


@pytest.fixture(scope="session")
def base_image(docker):
    from sdt_build.build.daemon import image_exists

    if not image_exists(docker, BASE_IMAGE):
        pytest.fail(f"base image {BASE_IMAGE} is missing: run `make base-image` first")
    return BASE_IMAGE


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """A real Docker registry (Debian's docker-registry) on 127.0.0.1, for push tests."""
    import shutil
    import subprocess
    import urllib.request

    from services import free_port, wait_ready

    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not Path(binary).exists():
        pytest.fail("docker-registry is missing: run `make test` (scripts/test-services.sh installs it)")
    folder = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = folder / "config.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\nlog:\n  level: warn\n")
    log = folder / "registry.log"
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    address = f"127.0.0.1:{port}"
    wait_ready(lambda: urllib.request.urlopen(f"http://{address}/v2/", timeout=1), "registry", process, log,
               timeout=10)
    yield address
    process.terminate()
    process.wait(timeout=10)


SECRET_NAME = "SDT_TEST_LOGIN"  # a secret the shared local-csv folder's plug declares


@pytest.fixture(scope="session")
def local_csv_built(docker, base_image, tmp_path_factory):
    """The local-csv example under a name of its own, its plug also declaring the secret
    SECRET_NAME, built once per session (not smoke-tested: tests that need it smoke it):
    (folder, image tag). The image is removed at the end."""
    import re
    import shutil
    import uuid

    from sdt_build.pipeline import build_project

    folder = tmp_path_factory.mktemp("shared") / "local-csv"
    shutil.copytree(EXAMPLES / "local-csv", folder, ignore=shutil.ignore_patterns("__pycache__"))
    toml = folder / "sdt.toml"
    toml.write_text(re.sub(r'name = "[^"]*"', f'name = "sdt-shared-{uuid.uuid4().hex[:8]}"', toml.read_text()))
    plug = folder / "dataplug.py"
    plug.write_text(plug.read_text().replace("env = [", f'env = [EnvVar("{SECRET_NAME}", required=False, secret=True), '))
    built = build_project(folder, smoke=False)
    yield folder, built.image.tag
    docker.images.remove(built.image.image_id, force=True)


@pytest.fixture
def copy_example(tmp_path):
    """A writable copy of an example folder (so tests can edit it)."""
    import shutil

    def make(name: str = "local-csv", folder_name: str | None = None) -> Path:
        target = tmp_path / (folder_name or name)
        shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns("__pycache__"))
        return target

    return make


def force_plug_layer(built, pins: dict[str, str], log: Path) -> None:
    """Break a build context (of ``build_project(..., context_only=True)``) on purpose: install
    ``pins`` in the plug layer, whatever the lock says (the build runs no pip check: the smoke test does)."""
    from dataclasses import replace

    from uv import find_uv_bin

    from sdt_build.build.render import render_dockerfile
    from sdt_build.sources.wheels import download, link_into

    context = built.context.directory
    link_into(list(download(pins, "3.11", log).values()), context / "wheels" / "plug")
    link_into([Path(find_uv_bin())], context / "tools")
    (context / "lock" / "plug.txt").write_text("".join(f"{n}=={v}\n" for n, v in pins.items()))
    (context / "Dockerfile").write_text(render_dockerfile(built.project, replace(built.lock, plug_layer=pins),
                                                          labels=built.context.labels))


def build_context(docker, built, tag: str, log: Path) -> str:
    """Build a context written by ``build_project(..., context_only=True)`` (and perhaps changed),
    making its SDT environment image first when it is missing."""
    from sdt_build.build.daemon import image_exists
    from sdt_build.build.image import build, build_env_image

    if not image_exists(docker, built.context.env.tag):
        build_env_image(docker, built.context.env)
    return build(docker, built.context.directory, tag, buildargs=built.context.buildargs, log_path=log)


# --- data services for the examples (tests/services.py), each on 127.0.0.1 -------------------

SITES = ("TAEFC1044741", "ZT162185000441C1203")  # the real sites inside the SDT wheel
FIX_SHIFTS = (("fix_shifts", True),)  # the examples' [run_pipeline], as direct_report kwargs
PVDAQ_SYSTEMS = dict(zip((34, 51), SITES))


@pytest.fixture(scope="session")
def s3_service(tmp_path_factory):
    from services import start_s3, stop

    service, process = start_s3(tmp_path_factory.mktemp("s3"))
    yield service
    stop(process)


@pytest.fixture(scope="session")
def postgres_service():
    import shutil

    from services import start_postgres, stop

    service, process, folder = start_postgres()
    yield service
    stop(process)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pvdaq_service():
    """PVDAQ-shaped API allowing 2 requests per 4 s, so runs meet its rate limit for real."""
    from services import start_pvdaq

    service = start_pvdaq(PVDAQ_SYSTEMS, rate_limit=2, window=4.0)
    yield service
    service.server.shutdown()


@pytest.fixture(scope="session")
def direct_report():
    """report(site, pipeline kwargs, years=None, column=None): SDT's own DataHandler report on the
    site's series straight from its CSV (optionally only some years, the column renamed), with its
    libraries as installed (no upstream fix)."""
    import functools

    from solardatatools import DataHandler

    from services import site_series

    @functools.cache
    def report(site: str, kwargs: tuple, years: tuple | None = None, column: str | None = None) -> dict:
        from sdt_build.runtime import upstream_fixes

        upstream_fixes.apply(False)  # SDT as installed: the reference the fixed runs are held to
        series = site_series(site)
        if years is not None:
            series = series[series.index.year.isin(years)]
        if column is not None:
            series.columns = [column]
        handler = DataHandler(series)
        handler.run_pipeline(verbose=False, **dict(kwargs))
        return handler.report(return_values=True, verbose=False)

    return report


def assert_same_reports(table, expected: list[tuple[tuple, dict]]) -> None:
    """Each key's row carries exactly the values of its direct DataHandler report (key, report pairs:
    keys may hold lists, so they are not dict keys)."""
    from sdt_build.runtime.keys import key_id

    rows = {key_id(row["key"]): row for row in table.to_dict("records")}
    assert set(rows) == {key_id(k) for k, _ in expected}, sorted(rows)
    for key, report in expected:
        row = rows[key_id(key)]
        assert row["status"] == "ok", (key, row.get("stage"), row.get("message"))
        for field, value in report.items():
            assert row[field] == pytest.approx(value, nan_ok=True), (key, field, row[field], value)


# --- a single-node SLURM cluster (scripts/slurm.sh: munge, slurmctld, slurmd on 127.0.0.1) -------

@pytest.fixture(scope="session")
def slurm():
    """The cluster scripts/slurm.sh runs (started here when it is not running: the script is
    idempotent; `make test-services` and .ci/run start and stop it). SLURM's commands find it
    through SLURM_CONF."""
    import subprocess

    done = subprocess.run(["bash", str(ROOT / "scripts" / "slurm.sh"), "up"], capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        pytest.fail(f"the SLURM cluster did not start: {done.stderr[-2000:]}")
    conf = subprocess.run(["bash", str(ROOT / "scripts" / "slurm.sh"), "env"], capture_output=True, text=True,
                          check=True).stdout.strip().split("=", 1)[1]
    os.environ["SLURM_CONF"] = conf
    return conf
