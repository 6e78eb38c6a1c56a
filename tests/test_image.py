"""Images built for real from the examples: tags, skip, rebuild, plug layer, push, secrets, reference Dockerfiles."""

from __future__ import annotations

import functools
import io
import json
import os
import re
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT, SDT, build_context
from uv import find_uv_bin

from sdt_build.build.daemon import BYTECODE_DIR, LABEL, run_command
from sdt_build.build.render import render_dockerfile
from sdt_build.dependencies.resolve import lock
from sdt_build.pipeline import build_project
from sdt_build.runtime.errors import BuildError
from sdt_build.sources.wheels import link_into
from sdt_build.userfolder.project import load_project

pytestmark = pytest.mark.docker


def _unique(folder: Path) -> Path:
    """Give a copied example its own image name so tests never share tags."""
    (folder / "sdt.toml").write_text(re.sub(r'name = "[^"]*"', f'name = "sdt-test-{uuid.uuid4().hex[:8]}"',
                                            (folder / "sdt.toml").read_text()))
    return folder


def _remove(docker, name: str) -> None:
    for image in docker.images.list(name=name):
        docker.images.remove(image.id, force=True)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """A cache of its own (no smoke proofs, locks or memos of earlier runs), with the wheels already here."""
    from sdt_build.cache import cache_root

    here = cache_root() / "wheels"
    cache = tmp_path / "cache"
    for wheel in here.glob("*/*.whl"):
        target = cache / "wheels" / wheel.parent.name / wheel.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(wheel, target)
    monkeypatch.setenv("SDT_CACHE_DIR", str(cache))
    return cache


def test_build_skip_and_rebuild_after_editing_the_plug(docker, base_image, copy_example, fresh_cache):
    """What is built and smoke-tested again, and what is not (SDT's pipeline step is skipped
    throughout: the skips here are of the steps' inputs, and other tests run the pipeline)."""
    folder = _unique(copy_example())
    name = load_project(folder).name
    build = functools.partial(build_project, folder, pipeline_days=0)
    try:
        first = build()
        image = first.image
        assert not image.skipped and re.fullmatch(rf"{name}:[0-9a-f]{{12}}", image.tag)
        built = docker.images.get(image.tag)
        assert f"{name}:latest" in built.tags
        labels = built.labels
        assert labels["io.sdt-build.content-hash"] == image.tag.split(":")[1]
        assert labels["io.sdt-build.sdt-version"] == "2.1.5"
        assert labels["io.sdt-build.lock-hash"] == first.lock.input_hash
        checks = run_command(docker, image.tag, ["sh", "-c", "id -u; pip check; ls /root 2>&1; "
                                                 "ls ~/.cache/pip 2>&1; command -v gcc || echo no-gcc; "
                                                 "echo bytecode: $(find /opt/sdt -name '*.pyc' | wc -l)"])
        assert checks.output.splitlines()[0] == "1000", checks.output  # non-root
        assert "No broken requirements found." in checks.output
        assert "no-gcc" in checks.output and "Permission denied" in checks.output
        assert "bytecode: 0" in checks.output  # the image carries no bytecode: it is kept in a volume

        # nothing changed: no build, every smoke step proved before, no container started
        time.sleep(1.05 - time.time() % 1)  # events count in whole seconds: start on a fresh one
        since = int(time.time())
        again = build()
        assert again.image.skipped and again.image.tag == image.tag and not again.env_built
        assert again.smoke.ok and all(s.remembered for s in again.smoke.steps)
        assert _containers_created(docker, since) == 0
        volume = "sdt-bytecode-" + labels["io.sdt-build.env"].rpartition(":")[2]
        compiled = run_command(docker, image.tag, ["sh", "-c", f"find {BYTECODE_DIR} -name '*.pyc' | wc -l"],
                               volumes={volume: {"bind": BYTECODE_DIR, "mode": "ro"}})
        assert int(compiled.output.split()[-1]) > 1000, compiled.output  # the smoke test compiled SDT's imports

        with open(folder / "dataplug.py", "a") as plug:
            plug.write("\n# an edit\n")
        edited = build()
        assert not edited.image.skipped and edited.image.tag != image.tag and not edited.env_built
        ran = {s.name for s in edited.smoke.steps if not s.remembered}
        assert ran == {"plug module"}, edited.smoke.steps  # the plug's steps again, not the environment's
        # the builder reuses every step but the project's layer and the labels that name the build
        assert [s.split()[0:2] for s in _steps_built(edited.image.log_path)] == [["COPY", "project/"], ["LABEL",
                f'org.opencontainers.image.version="{edited.image.tag.split(":")[1]}"']]
        (folder / "requirements.txt").write_text("tabulate==0.9.0\n")  # moves no SDT pin, shadows nothing
        added = build()
        ran = {s.name for s in added.smoke.steps if not s.remembered}
        assert ran == {"pip check", "plug module"}, added.smoke.steps
        full = subprocess.run([SDT, "smoke", str(folder), "--full", "--pipeline-days", "0", "--json"],
                              capture_output=True, text=True, timeout=900)
        assert full.returncode == 0, full.stderr
        steps = json.loads(full.stdout)["steps"]
        assert not any(s["remembered"] for s in steps)  # every group again, the environment's included
        assert {s["name"] for s in steps} == {"imports", "plug module", "pip check", "dask entry points"}
        edited_layers = docker.images.get(edited.image.tag).history()
        shared = {layer["Id"] for layer in docker.images.get(image.tag).history()} & \
            {layer["Id"] for layer in edited_layers}
        assert len(shared) >= 4  # base, user, SDT venv, runtime layers are reused
    finally:
        _remove(docker, name)


def _steps_built(log_path: Path) -> list[str]:
    """The Dockerfile instructions the classic builder ran (not taken from its cache), from the build log."""
    steps = re.split(r"^Step \d+/\d+ : ", log_path.read_text(), flags=re.M)[1:]
    return [s.split("\n", 1)[0] for s in steps if "---> Using cache" not in s and not s.startswith(("ARG", "FROM"))]


def _containers_created(docker, since: int) -> int:
    """Containers this process created since ``since`` (seconds), by the daemon's events (which may
    be shared with other work)."""
    from sdt_build.owner import Owner

    events = docker.events(since=since, until=int(time.time()) + 1, decode=True,
                           filters={"type": "container", "event": "create", "label": f"{LABEL}.role"})
    owners = (Owner.parse(e.get("Actor", {}).get("Attributes", {}).get(f"{LABEL}.owner")) for e in events)
    return sum(1 for owner in owners if getattr(owner, "pid", None) == os.getpid())


def test_plug_packages_get_their_own_layer_and_can_move_a_pin(docker, base_image, copy_example, fresh_cache):
    folder = _unique(copy_example())
    (folder / "requirements.txt").write_text("tabulate==0.9.0\npandas>=2.2,<3\n")
    name = load_project(folder).name
    try:
        built = build_project(folder)
        assert set(built.lock.plug_layer) == {"tabulate", "pandas"}
        # the plug's packages change what the environment steps run on: every step ran again
        assert not any(s.remembered for s in built.smoke.steps)
        assert built.lock.moved["pandas"][0] == "3.1.1" and built.lock.moved["pandas"][1].startswith("2.")
        result = run_command(docker, built.image.tag, ["python3", "-c",
                             "import tabulate, pandas, solardatatools; print(tabulate.__version__, pandas.__version__)"])
        assert result.exit_code == 0, result.output
        assert result.output.split()[0] == "0.9.0" and result.output.split()[1].startswith("2.")
    finally:
        _remove(docker, name)


def test_push_to_a_real_registry(docker, base_image, registry, copy_example):
    folder = _unique(copy_example())
    name = load_project(folder).name
    try:
        built = build_project(folder, push=registry)
        assert built.image.pushed == f"{registry}/{built.image.tag}"
        import urllib.request

        tags = json.loads(urllib.request.urlopen(f"http://{registry}/v2/{name}/tags/list").read())
        assert set(tags["tags"]) == {built.image.tag.split(":")[1], "latest"}  # :latest only after smoke
    finally:
        _remove(docker, name)
        _remove(docker, f"{registry}/{name}")


def test_no_secret_or_host_ca_in_any_layer(docker, base_image, copy_example, monkeypatch):
    folder = _unique(copy_example())
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    (folder / ".env").write_text(f"AWS_SECRET_ACCESS_KEY={secret}\n")
    (folder / ".aws").mkdir()
    (folder / ".aws" / "credentials").write_text(f"[default]\naws_secret_access_key = {secret}\n")
    (folder / "server.pem").write_text(f"-----BEGIN PRIVATE KEY-----\n{secret}\n")
    (folder / "id_rsa").write_text(secret)
    (folder / "sites.csv").write_text("site\nA\n")  # ordinary data files do go in
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    name = load_project(folder).name
    try:
        built = build_project(folder)
        history = docker.api.history(built.image.tag)
        assert not any(secret in (layer.get("CreatedBy") or "") for layer in history)
        files, blobs = _layer_files(docker, built.image.tag)
        assert "opt/sdt/project/sites.csv" in files and "opt/sdt/project/dataplug.py" in files
        for forbidden in (".env", ".aws/credentials", "server.pem", "id_rsa"):
            assert not any(f.endswith(forbidden) and "opt/sdt/project" in f for f in files), forbidden
        assert not any(secret.encode() in blob for blob in blobs)
        assert not any("pip.conf" in f or f.endswith("/.pip/pip.conf") for f in files)
        host_only = _host_only_certificates(docker, built.image.tag)
        assert not any(cert in blob for cert in host_only for blob in blobs)
    finally:
        _remove(docker, name)


def _layer_files(docker, tag: str) -> tuple[set[str], list[bytes]]:
    """Every file path in every layer, and the layers' bytes."""
    archive = io.BytesIO(b"".join(docker.images.get(tag).save()))
    files, blobs = set(), []
    with tarfile.open(fileobj=archive) as image:
        for member in image.getmembers():
            if member.name.endswith("layer.tar"):
                blob = image.extractfile(member).read()
                blobs.append(blob)
                with tarfile.open(fileobj=io.BytesIO(blob)) as layer:
                    files.update(layer.getnames())
    return files, blobs


def _host_only_certificates(docker, tag: str) -> list[bytes]:
    """PEM blocks in this host's CA bundle that the image's own bundle does not have (a proxy's CA)."""
    host = Path("/etc/ssl/certs/ca-certificates.crt")
    if not host.exists():
        return []
    pem = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
    image_bundle = run_command(docker, tag, ["cat", "/etc/ssl/certs/ca-certificates.crt"]).output.encode()
    image_certs = set(pem.findall(image_bundle))
    return [cert for cert in pem.findall(host.read_bytes()) if cert not in image_certs]


def test_pip_failure_in_build_is_classified(docker, base_image, copy_example, tmp_path):
    folder = _unique(copy_example())
    built = build_project(folder, context_only=True, context_dir=tmp_path / "context")
    (built.context.directory / "lock" / "plug.txt").write_text("tabulate==0.9.0\n")  # no wheel in the context
    dockerfile = built.context.directory / "Dockerfile"
    dockerfile.write_text(render_dockerfile(built.project, _with_plug_layer(built.lock)))
    link_into([Path(find_uv_bin())], built.context.directory / "tools")
    with pytest.raises(BuildError) as caught:
        build_context(docker, built, f"sdt-test-broken:{uuid.uuid4().hex[:8]}", tmp_path / "build.log")
    assert caught.value.code == "SDT-E303"
    assert "tabulate" in caught.value.cause and "not found" in caught.value.cause, caught.value.cause
    assert caught.value.log_path == tmp_path / "build.log"


def _with_plug_layer(locked):
    from dataclasses import replace

    return replace(locked, plug_layer={"tabulate": "0.9.0"})


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "dockerfiles").glob("*.Dockerfile")))
def test_reference_dockerfiles_match_the_template(example):
    name = example.removesuffix(".Dockerfile")
    project = load_project(EXAMPLES / name, require_env=False)
    rendered = render_dockerfile(project, lock(project))
    assert (ROOT / "dockerfiles" / example).read_text() == rendered, \
        "regenerate with: .venv/bin/python scripts/render-dockerfiles.py"


def test_every_example_has_a_reference_dockerfile():
    examples = {p.name for p in EXAMPLES.iterdir() if (p / "dataplug.py").exists() and not p.name.startswith("broken")}
    references = {p.name.removesuffix(".Dockerfile") for p in (ROOT / "dockerfiles").glob("*.Dockerfile")}
    assert examples <= references


def test_build_cli_json(docker, base_image, copy_example):
    folder = _unique(copy_example())
    name = load_project(folder).name
    try:
        done = subprocess.run([SDT, "build", str(folder), "--json"], capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr
        payload = json.loads(done.stdout)
        for field in ("tag", "image_id", "size", "skipped", "base", "base_reason"):
            assert field in payload
        assert payload["size"] > 100_000_000 and payload["image_id"].startswith("sha256:")
    finally:
        _remove(docker, name)


def test_build_sdists_compiles_a_package_without_wheels_in_the_builder(docker, base_image, copy_example):
    folder = _unique(copy_example())
    (folder / "requirements.txt").write_text("docopt==0.6.2\n")  # published as a source archive only
    (folder / "dataplug.py").write_text("import docopt\n" + (folder / "dataplug.py").read_text())
    name = load_project(folder).name
    try:
        with pytest.raises(Exception) as refused:  # without the opt-in: stopped before the build
            build_project(folder, smoke=False)
        assert getattr(refused.value, "code", None) == "SDT-E208"
        (folder / "sdt.toml").write_text("build_sdists = true\n" + (folder / "sdt.toml").read_text())
        built = build_project(folder, smoke=False)
        assert "sdists" in built.context.dockerfile and (built.context.directory / "sdists").is_dir()
        result = run_command(docker, built.image.tag, ["python3", "-c", "import docopt; print(docopt.__version__)"])
        assert result.exit_code == 0 and result.output.strip() == "0.6.2", result.output
    finally:
        _remove(docker, name)


def test_wheels_download_side_by_side_and_report_packages_and_bytes(tmp_path, monkeypatch):
    from sdt_build.sources.wheels import PARALLEL, download

    monkeypatch.setenv("SDT_CACHE_DIR", str(tmp_path / "cache"))  # nothing cached: every wheel comes down
    pins = {"tabulate": "0.9.0", "six": "1.17.0", "toolz": "1.0.0"}
    events = []
    found = download(pins, "3.11", tmp_path / "download.log", on_event=events.append)
    assert set(found) == set(pins) and all(path.is_file() for path in found.values())
    assert PARALLEL > 1 and events[0].total == 3 and "3 streams" in events[0].detail
    last = events[-1]
    assert last.finished and last.done == 3 and last.bytes == sum(p.stat().st_size for p in found.values())
    assert "Progress" not in (tmp_path / "download.log").read_text()  # progress lines are events, not log
    events.clear()
    download(pins, "3.11", tmp_path / "again.log", on_event=events.append)
    assert events == []  # all cached: nothing fetched, nothing reported
