"""A file in the plug's folder named like a module the workers import from elsewhere (SDT itself, a
package of SDT's set, the standard library, a package the plug requires) would replace it on every
worker, for sdt-build's own task code too. check, build and run refuse it (SDT-E127) before any
container or worker starts, while helper modules and data folders pass; a worker refuses a folder whose file
would replace a package it has."""

from __future__ import annotations

import json

import pytest

from sdt_build import SDTDask
from sdt_build.clients import LocalClient

from faultkit import keys_arg, no_traceback, sdt

FAKE = "class DataHandler:\n    def __init__(self, *args, **kwargs):\n        pass\n"
NOWHERE = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}  # reaching Docker would be exit 10, SDT-E901

# (file written in the folder, requirements.txt, words the message must hold)
SHADOWS = [
    ("solardatatools.py", "", "solardatatools.py would replace the package solardatatools (SDT itself)"),
    ("pandas.py", "", "pandas.py would replace the package pandas (pandas"),
    ("dask.py", "", "dask.py would replace the package dask (dask"),
    ("csv.py", "", "csv.py would replace the standard library's module csv"),
    ("random.py", "", "random.py would replace the standard library's module random"),
    ("boto3.py", "boto3==1.35.0\n", "boto3.py would replace the package boto3 (boto3 in requirements.txt)"),
    ("cv2.py", "opencv-python\n", "cv2.py would replace the package cv2 (opencv-python in requirements.txt)"),
    ("sdt_build.py", "", "sdt_build.py would replace sdt-build's own package sdt_build"),
    ("numpy/__init__.py", "", "the folder numpy/ would replace the package numpy (numpy"),
]


def _helpers_and_data(folder) -> None:
    """What a folder may hold beside the plug and is never refused."""
    (folder / "sites_helpers.py").write_text("NAMES = ()\n")
    (folder / "data").mkdir()
    (folder / "data" / "site.csv").write_text("ts,power\n")
    (folder / "tests").mkdir()  # a folder of scripts without __init__.py is no package: it replaces nothing
    (folder / "tests" / "test_plug.py").write_text("def test_nothing():\n    pass\n")
    (folder / "json").mkdir()  # a data folder named like a module, with no Python in it
    (folder / "json" / "sites.json").write_text("[]\n")


@pytest.mark.parametrize("file, requirements, words", SHADOWS, ids=[s[0] for s in SHADOWS])
def test_check_refuses_a_file_that_shadows_an_importable_module(trouble, file, requirements, words):
    folder = trouble()
    (folder / file).parent.mkdir(exist_ok=True)
    (folder / file).write_text(FAKE)
    if requirements:
        (folder / "requirements.txt").write_text(requirements)
    done = sdt("check", str(folder), "--offline")
    assert done.returncode == 1, done.stdout + done.stderr
    no_traceback(done.stdout + done.stderr)
    assert "SDT-E127" in done.stderr and words in done.stderr, done.stderr
    assert "on every worker" in done.stderr and "rename" in done.stderr, done.stderr
    payload = json.loads(sdt("check", str(folder), "--offline", "--json").stdout)
    (problem,) = [p for p in payload["problems"] if p["code"] == "SDT-E127"]
    assert problem["file"] == file and problem["severity"] == "error", problem


def test_build_and_run_refuse_before_anything_starts(trouble, tmp_path):
    for client in ("local", "docker"):
        folder = trouble(client, name=f"shadow-{client}")  # the trouble plug imports its helper synthetic.py
        _helpers_and_data(folder)
        fine = sdt("check", str(folder), "--offline")
        assert fine.returncode == 0 and "SDT-E127" not in fine.stdout + fine.stderr, fine.stdout + fine.stderr
        (folder / "solardatatools.py").write_text(FAKE)
        output = tmp_path / f"out-{client}"
        commands = [["run", str(folder), "--output", str(output), *keys_arg(("ok", 1))],
                    ["run", str(folder), "--dry-run", *keys_arg(("ok", 1))], ["build", str(folder)]]
        for command in commands:
            done = sdt(*command, env=NOWHERE, timeout=120)
            assert done.returncode == 1, (command, done.stderr[-2000:])
            assert "SDT-E127" in done.stderr and "solardatatools.py would replace" in done.stderr, done.stderr
            no_traceback(done.stderr)
        assert not output.exists()  # no run started: not even its output folder


def test_a_worker_refuses_a_file_that_would_replace_one_of_its_packages(trouble, tmp_path):
    """rich is no package of SDT's image (check lets it be) but this worker has it: the worker says so
    for every key instead of running with the folder's rich.py first on its path."""
    folder = trouble()
    (folder / "rich.py").write_text("print = None\n")
    client = LocalClient(workers=1, threads_per_worker=1, memory_per_worker="3GiB")
    result = SDTDask(folder, client=client).execute([("ok", 1), ("ok", 2)], output_dir=tmp_path / "out")
    rows = result.table.to_dict("records")
    assert len(rows) == 2 and not result.ok
    for row in rows:
        assert (row["status"], row["stage"]) == ("failed", "get_data"), row
        assert row["message"].startswith("SDT-E127: rich.py would replace the package rich"), row["message"]
        assert "rename rich.py" in row["message"], row["message"]
