"""Shared fixtures. Tests use the real Docker daemon and base image that `make test` starts/creates:
when they are missing the tests fail (they are never skipped)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SDT = str(Path(sys.executable).parent / "sdt-build")
BASE_IMAGE = os.environ.get("SDT_TEST_BASE_IMAGE", "sdt-base:bookworm-py3.11")


@pytest.fixture(scope="session")
def docker():
    from sdt_build.errors import EnvironmentProblem
    from sdt_build.image import docker_client

    try:
        return docker_client()
    except EnvironmentProblem as exc:
        pytest.fail(f"{exc.code} {exc.cause}: run `make docker-up` first ({exc.fix})")


@pytest.fixture(scope="session")
def base_image(docker):
    from sdt_build.image import image_exists

    if not image_exists(docker, BASE_IMAGE):
        pytest.fail(f"base image {BASE_IMAGE} is missing: run `make base-image` first")
    return BASE_IMAGE


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """A real Docker registry (Debian's docker-registry) on 127.0.0.1, for push tests."""
    import shutil
    import subprocess
    import time
    import urllib.request

    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not Path(binary).exists():
        pytest.fail("docker-registry is missing: run `make test` (scripts/test-services.sh installs it)")
    folder = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = folder / "config.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\nlog:\n  level: warn\n")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                               stderr=open(folder / "registry.log", "w"))
    address = f"127.0.0.1:{port}"
    for _ in range(50):
        try:
            urllib.request.urlopen(f"http://{address}/v2/", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(f"registry did not start: {(folder / 'registry.log').read_text()[-500:]}")
    yield address
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def copy_example(tmp_path):
    """A writable copy of an example folder (so tests can edit it)."""
    import shutil

    def make(name: str = "local-csv", folder_name: str | None = None) -> Path:
        target = tmp_path / (folder_name or name)
        shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns("__pycache__"))
        return target

    return make


def force_plug_layer(context: Path, pins: dict[str, str], log: Path) -> None:
    """Break a build context on purpose: install ``pins`` in the plug layer, whatever the lock says."""
    from sdt_build.wheels import download, link_into

    link_into(list(download(pins, "3.11", log).values()), context / "wheels" / "plug")
    (context / "lock" / "plug.txt").write_text("".join(f"{n}=={v}\n" for n, v in pins.items()))
    dockerfile = context / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace(
        "RUN mkdir -p /opt/sdt/plug \\\n && pip check",
        "RUN mkdir -p /opt/sdt/plug && pip install --no-index --no-deps --target /opt/sdt/plug "
        "--find-links /tmp/wheels -r /tmp/lock/plug.txt \\\n && pip check"))
