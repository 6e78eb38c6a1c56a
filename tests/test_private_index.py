"""A private index behind basic auth (pypiserver on 127.0.0.1, serving a package only it has):
check, lock and build reach it with the credentials in PIP_INDEX_URL or in a netrc, the
machine's other indexes stay in use, and the token shows up in no output, log, file or image layer.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import SDT
from services import make_wheel, start_private_index, stop

pytestmark = pytest.mark.docker
PACKAGE = "sdt-build-private-probe"


@pytest.fixture(scope="module")
def private_index(tmp_path_factory):
    folder = tmp_path_factory.mktemp("private-index")
    wheels = [make_wheel(folder, PACKAGE, "0.1.0", "ANSWER = 42\n"),
              make_wheel(folder, PACKAGE, "0.2.0", "ANSWER = 43\n")]
    index, process = start_private_index(folder, wheels)
    yield index
    stop(process)


def _env(tmp_path: Path, index_url: str, **extra: str) -> dict[str, str]:
    """The private index first, the machine's own indexes as extras; caches and logs in tmp_path."""
    from sdt_build.sources.pipconfig import from_pip

    from sdt_build.sources.wheels import cache_root

    machine = from_pip()
    cache = tmp_path / "cache"
    wheels = cache / "wheels" / "cp311-manylinux_x86_64"
    wheels.mkdir(parents=True)
    for wheel in (cache_root() / "wheels" / "cp311-manylinux_x86_64").glob("*.whl"):  # SDT's set, already here
        os.link(wheel, wheels / wheel.name)
    return {**os.environ, "PIP_INDEX_URL": index_url,
            "PIP_EXTRA_INDEX_URL": " ".join(dict.fromkeys((machine.index_url, *machine.extra_index_urls))),
            "SDT_CACHE_DIR": str(cache), "SDT_LOG_DIR": str(tmp_path / "logs"), **extra}


def _project(copy_example, tmp_path: Path) -> Path:
    folder = copy_example("local-csv", "private-plug")
    settings = folder / "sdt.toml"
    settings.write_text(settings.read_text().replace('name = "local-csv"', 'name = "sdt-test-private-plug"'))
    (folder / "requirements.txt").write_text(f"{PACKAGE}==0.1.0\n")
    (folder / "dataplug.py").write_text((folder / "dataplug.py").read_text().replace(
        "import pandas as pd", "import pandas as pd\nimport sdt_build_private_probe", 1))
    return folder


def _run(env, *args):
    return subprocess.run([SDT, *args], capture_output=True, text=True, env=env, timeout=1800)


def _files_with(token: str, *folders: Path) -> list[str]:
    return [str(p) for folder in folders if folder.exists() for p in folder.rglob("*")
            if p.is_file() and token.encode() in p.read_bytes()]


def _image_layers_with(docker, tag: str, token: str, tmp_path: Path) -> list[str]:
    """Every file of every layer of the image (docker save) that holds the token."""
    archive = tmp_path / "image.tar"
    with open(archive, "wb") as out:
        for chunk in docker.images.get(tag).save(named=True):
            out.write(chunk)
    found = []
    with tarfile.open(archive) as image:
        for member in image.getmembers():
            if not member.isfile():
                continue
            data = image.extractfile(member).read()
            if member.name.endswith(".tar"):
                with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                    found += [f"{member.name}:{m.name}" for m in layer.getmembers()
                              if m.isfile() and token.encode() in layer.extractfile(m).read()]
            elif token.encode() in data:
                found.append(member.name)
    return found


def test_credentials_in_the_url(private_index, copy_example, tmp_path, docker, base_image):
    folder = _project(copy_example, tmp_path)
    env = _env(tmp_path, private_index.url())
    crashes_before = set(Path("/tmp").glob("sdt-build-crash-*.log"))
    outputs = []
    for args in (("check", str(folder)), ("check", str(folder), "--json"), ("lock", str(folder), "--json"),
                 ("build", str(folder), "--no-smoke", "--json")):
        done = _run(env, *args)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-3000:])
    built = json.loads(done.stdout)
    assert built["lock"]["plug_packages"] == {PACKAGE: "0.1.0"}
    token = private_index.token
    assert not [o for o in outputs if token in o]
    crashes = set(Path("/tmp").glob("sdt-build-crash-*.log")) - crashes_before
    assert not _files_with(token, folder, tmp_path / "cache", tmp_path / "logs", *crashes)
    assert not _image_layers_with(docker, built["tag"], token, tmp_path)
    probe = docker.containers.run(built["tag"], ["python3", "-c", "import sdt_build_private_probe as p; "
                                                "print(p.ANSWER)"], network_mode="host", remove=True)
    assert probe.decode().strip() == "42"  # the private package is in the image
    for tag in (built["tag"], built["tag"].rsplit(":", 1)[0] + ":latest"):
        docker.images.remove(tag, force=True)


def test_credentials_in_netrc(private_index, copy_example, tmp_path):
    folder = _project(copy_example, tmp_path)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {private_index.user} password {private_index.token}\n")
    netrc.chmod(0o600)
    env = _env(tmp_path, private_index.url(token=""), NETRC=str(netrc))
    for backend in ("pip-compile", "uv"):
        done = _run(env, "lock", str(folder), "--resolver", backend, "--no-cache")
        assert done.returncode == 0, (backend, done.stderr[-3000:])
        assert f"{PACKAGE}==0.1.0" in (folder / "sdt.lock").read_text()
    done = _run(env, "build", str(folder), "--context-only", str(tmp_path / "context"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert list((tmp_path / "context" / "wheels" / "plug").glob("sdt_build_private_probe-0.1.0-*.whl"))
    assert private_index.token not in done.stdout + done.stderr
    assert not _files_with(private_index.token, folder, tmp_path / "cache", tmp_path / "logs",
                           tmp_path / "context")


def test_wrong_credentials_name_the_index_not_the_token(private_index, copy_example, tmp_path):
    folder = _project(copy_example, tmp_path)
    wrong = "wrong" + private_index.token[::-1]
    env = _env(tmp_path, private_index.url(token=wrong))
    done = _run(env, "check", str(folder))
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if "SDT-E228" in line]
    assert len(lines) == 1 and private_index.host in lines[0], done.stderr
    assert "fix:" in done.stderr and "netrc" in done.stderr
    assert wrong not in done.stdout + done.stderr and private_index.token not in done.stdout + done.stderr
    doctor = _run(env, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert doctor.returncode == 10 and checks[f"index {private_index.host}"]["status"] == "fail"
    assert wrong not in doctor.stdout
