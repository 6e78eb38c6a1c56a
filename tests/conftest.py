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
