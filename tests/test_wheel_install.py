"""The wheel is the product: built with `python -m build`, installed with its [local] extra into a
fresh venv outside the checkout, it takes a user from an empty folder through init → check → lock
→ build → smoke → run, and `init` works for every example and client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT
from mdlinks import doc_references

pytestmark = [pytest.mark.docker, pytest.mark.slow]
SITES = ["TAEFC1044741", "ZT162185000441C1203"]


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], check=True,
                   capture_output=True, text=True)
    return next(out.glob("*.whl")), next(out.glob("*.tar.gz"))


def test_wheel_and_sdist_carry_templates_examples_and_license(dists):
    wheel, sdist = dists
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("sdt_build/templates/Dockerfile.j2", "sdt_build/examples/local-csv/dataplug.py",
                   "sdt_build/examples/clients/fargate/client.py", "sdt_build/py.typed",
                   "sdt_build/constraints/py3.11/worker.txt"):
        assert needed in names, needed
    code = {p.relative_to(ROOT).as_posix() for p in (ROOT / "sdt_build").rglob("*.py")
            if "maintainer" not in p.parts and "__pycache__" not in p.parts}
    assert code <= set(names), sorted(code - set(names))  # every floor's folder is a package of the wheel
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not [n for n in names if "__pycache__" in n]
    members = {m.split("/", 1)[1] for m in tarfile.open(sdist).getnames() if "/" in m}
    for needed in ("LICENSE", "README.md", "templates/Dockerfile.j2", "examples/local-csv/dataplug.py"):
        assert needed in members, needed
    for doc in (ROOT / "docs").glob("*.md"):
        assert f"sdt_build/docs/{doc.name}" in names and f"docs/{doc.name}" in members, doc.name
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "License-Expression: BSD-3-Clause" in metadata
    assert "](docs/" not in metadata and "](examples/" not in metadata  # no relative links on the index page


@pytest.fixture(scope="module")
def installed(dists, tmp_path_factory):
    """A fresh venv outside the checkout with the wheel and its [local] extra, installed by uv (one
    of the installers users take; it fetches in parallel where pip takes minutes)."""
    venv = tmp_path_factory.mktemp("user") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run([sys.executable, "-m", "uv", "pip", "install", "-q", "--python", str(venv / "bin/python"),
                           f"{dists[0]}[local]"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


def _user_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}"}


def test_nothing_of_the_checkout_is_used(installed, tmp_path):
    code = ("import json, sys, sdt_build, sdt_build.resources as r; "
            "print(json.dumps({'path': sys.path, 'file': sdt_build.__file__, "
            "'examples': r.example_names(starters=False), 'clients': r.client_names()}))")
    done = subprocess.run([str(installed / "bin/python"), "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env=_user_env(installed), check=True)
    seen = json.loads(done.stdout)
    assert not [p for p in seen["path"] if p and Path(p).resolve().is_relative_to(ROOT)], seen["path"]
    assert Path(seen["file"]).resolve().is_relative_to(installed)
    for example in seen["examples"]:
        run = subprocess.run(["sdt-build", "init", example, "--example", example], cwd=tmp_path,
                             env=_user_env(installed), capture_output=True, text=True)
        assert run.returncode == 0 and (tmp_path / example / "dataplug.py").exists(), run.stderr
    for client in seen["clients"]:
        run = subprocess.run(["sdt-build", "init", f"with-{client}", "--client", client], cwd=tmp_path,
                             env=_user_env(installed), capture_output=True, text=True)
        assert run.returncode == 0 and (tmp_path / f"with-{client}" / "client.py").exists(), run.stderr
    assert {"local-csv", "s3", "sql", "pvdaq", "synthetic", "broken-old-numpy"} <= set(seen["examples"])
    assert {"docker", "scheduler", "fargate", "azure", "slurm", "kubernetes"} <= set(seen["clients"])


def test_docs_read_from_the_installed_package(installed, tmp_path):
    """`sdt-build docs` prints every topic of docs/ from the wheel, and every doc reference in what
    sdt-build prints resolves there."""
    def docs(*args: str) -> dict:
        done = subprocess.run(["sdt-build", "docs", *args, "--json"], cwd=tmp_path, env=_user_env(installed),
                              capture_output=True, text=True)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return json.loads(done.stdout)

    topics = {t["topic"] for t in docs()["topics"]}
    assert topics == {p.stem for p in (ROOT / "docs").glob("*.md")}
    for topic in topics:  # as written: nothing masked or lost on the way
        assert docs(topic)["text"] == (ROOT / "docs" / f"{topic}.md").read_text(), topic
    for reference in doc_references(ROOT):
        assert docs(reference)["topic"] in topics, reference


def test_the_journey_from_an_empty_folder(installed, tmp_path, base_image):
    env = _user_env(installed)

    def sdt(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(["sdt-build", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=1800)
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-3000:])
        return done

    sdt("init", "mysites", "--example", "local-csv")
    sdt("check", "mysites")
    sdt("lock", "mysites")
    assert (tmp_path / "mysites" / "sdt.lock").exists()
    context = json.loads(sdt("build", "mysites", "--context-only", "context", "--json").stdout)
    assert (tmp_path / "context" / "Dockerfile").exists() and context["tag"].startswith("mysites:")  # its own name
    built = json.loads(sdt("build", "mysites", "--no-smoke", "--json").stdout)
    assert built["tag"] == context["tag"]
    smoke = json.loads(sdt("smoke", "mysites", "--json").stdout)
    assert smoke["ok"]
    ran = json.loads(sdt("run", "mysites", "--output", "results", "--json").stdout)
    assert ran["ok"] and sorted(row["key"][0] for row in ran["rows"]) == SITES
    assert (tmp_path / "results" / "results.csv").exists()
