"""The real Docker daemon: build from the bootstrapped base, run Python, classify failures."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest
from conftest import SDT

from sdt_build.build.daemon import classify_daemon_error, run_command
from sdt_build.build.image import build, choose_base
from sdt_build.runtime.errors import BuildError, EnvironmentProblem


def _context(tmp_path, dockerfile: str):
    (tmp_path / "Dockerfile").write_text(dockerfile)
    return tmp_path


def test_build_from_bootstrapped_base_and_run_a_command(docker, base_image, tmp_path):
    tag = f"sdt-test-small:{uuid.uuid4().hex[:8]}"
    context = _context(tmp_path, f"FROM {base_image}\nRUN python3 -m venv /opt/venv\n"
                                 "RUN useradd --create-home --uid 1000 sdt\nUSER sdt\n")
    lines = []
    try:
        image_id = build(docker, context, tag, labels={"io.sdt-build.test": "1"}, log_path=tmp_path / "b.log",
                         on_line=lines.append)
        assert image_id.startswith("sha256:")
        assert (tmp_path / "b.log").read_text().count("Step ") >= 3
        result = run_command(docker, tag, ["python3", "-c",
                                           "import sys, os, getpass; print(sys.version_info[:2], getpass.getuser())"])
        assert result.exit_code == 0, result.output
        assert "(3, 11) sdt" in result.output
        venv = run_command(docker, tag, ["python3", "-c", "import subprocess; print(subprocess.check_output("
                                         "['/opt/venv/bin/python', '-c', 'print(40 + 2)']).decode())"])
        assert "42" in venv.output
        assert docker.images.get(tag).labels["io.sdt-build.test"] == "1"
    finally:
        docker.images.remove(tag, force=True)


def test_failed_build_is_classified_with_log(docker, base_image, tmp_path):
    context = _context(tmp_path, f"FROM {base_image}\nRUN echo building && exit 7\n")
    with pytest.raises(BuildError) as caught:
        build(docker, context, f"sdt-test-broken:{uuid.uuid4().hex[:8]}", log_path=tmp_path / "fail.log")
    assert caught.value.code == "SDT-E302"
    assert caught.value.log_path == tmp_path / "fail.log"
    assert "building" in (tmp_path / "fail.log").read_text()


def test_missing_base_image_names_the_fix(docker):
    with pytest.raises(BuildError) as caught:
        choose_base(docker, "3.11", wanted=f"sdt-no-such-base:{uuid.uuid4().hex[:8]}")
    assert caught.value.code == "SDT-E301"
    assert "base_image" in caught.value.fix


def test_default_base_falls_back_to_bootstrapped(docker, base_image):
    choice = choose_base(docker, "3.11")
    if choice.image == "python:3.11-slim":  # a machine that can pull the official image uses it
        assert "python:3.11-slim" in choice.reason
    else:
        assert choice.image == base_image
        assert "bootstrapped" in choice.reason


def test_dead_daemon_is_an_environment_problem(tmp_path):
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    done = subprocess.run([SDT, "base", "--json"], env=env, capture_output=True, text=True)
    assert done.returncode == 10
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "SDT-E901"
    assert "systemctl start docker" in error["fix"] and "make" not in error["fix"]  # a pip user has no Makefile
    assert "Traceback" not in done.stderr


def test_permission_denied_is_named():
    problem = classify_daemon_error(PermissionError(13, "Permission denied"))
    assert isinstance(problem, EnvironmentProblem)
    assert problem.code == "SDT-E902"
