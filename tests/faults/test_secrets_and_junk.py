"""A declared secret goes nowhere but the containers that need it at run time, and the junk a user
folder holds (.env, .git, keys, virtualenvs, ignored files) reaches neither an image nor a worker."""

from __future__ import annotations

import json
import os
import tarfile
import uuid
from pathlib import Path

from faultkit import cluster_containers, keys_arg, sdt

from sdt_build.build.daemon import LABEL
from sdt_build.pipeline import build_project
from sdt_build.userfolder.project import load_project


def _files_holding(folder: Path, marker: bytes) -> list[str]:
    return [str(path) for path in folder.rglob("*") if path.is_file() and marker in path.read_bytes()]


def _layers_holding(docker, tag: str, marker: bytes, tmp_path: Path) -> list[str]:
    """Every file of every layer of the image (``docker save``: one ``layer.tar`` per layer, and the
    image's JSON), searched for ``marker``."""
    saved = tmp_path / "image.tar"
    with open(saved, "wb") as out:
        for chunk in docker.images.get(tag).save(named=True):
            out.write(chunk)
    found = []
    with tarfile.open(saved) as image:
        for member in filter(tarfile.TarInfo.isfile, image.getmembers()):
            handle = image.extractfile(member)
            if member.name.endswith("layer.tar"):
                with tarfile.open(fileobj=handle) as layer:
                    found += [f"{member.name}:{entry.name}" for entry in filter(tarfile.TarInfo.isfile, layer)
                              if marker in layer.extractfile(entry).read()]
            elif marker in handle.read():
                found.append(member.name)
    return found


def test_a_declared_secret_appears_in_no_output_file_or_layer(docker, base_image, trouble, tmp_path):
    marker = f"sdt-marker-{uuid.uuid4().hex}"
    folder = trouble("docker", name=f"faults-secret-{uuid.uuid4().hex[:6]}")
    cache, logs, temp, output = (tmp_path / name for name in ("cache", "logs", "tmp", "out"))
    temp.mkdir()
    env = {"SDT_FAULTS_SECRET": marker, "SDT_CACHE_DIR": str(cache), "SDT_LOG_DIR": str(logs), "TMPDIR": str(temp)}
    shown = []
    for command in (["check", str(folder), "--offline"], ["check", str(folder), "--offline", "--json"],
                    ["build", str(folder), "--json"], ["run", str(folder), "--dry-run", "--json"],
                    ["run", str(folder), "--output", str(output), *keys_arg(("leaks",))]):  # the row that carries it
        done = sdt(*command, env=env, timeout=900)
        assert done.returncode in (0, 5), (command, done.stderr[-2000:])
        shown.append(done.stdout + done.stderr)
    assert not [text for text in shown if marker in text], "the secret was printed"
    rows = {row["key"][0]: row for row in map(json.loads, (output / "journal.jsonl").read_text().splitlines())}
    assert rows["leaks"]["error_type"] == "PermissionError" and "***" in rows["leaks"]["message"]
    for place in (cache, logs, temp, output):
        assert not _files_holding(place, marker.encode()), place
    project = load_project(folder, require_env=False)
    tag = f"{project.name}:latest"
    try:
        assert not _layers_holding(docker, tag, marker.encode(), tmp_path)
    finally:
        docker.images.remove(tag, force=True)
    assert not cluster_containers(docker, done.pid)  # the run's


def test_junk_in_the_folder_reaches_neither_the_context_nor_the_workers(trouble, tmp_path):
    folder = trouble()
    junk = {".env": "TOKEN=abc", ".git/config": "[core]", "id_rsa": "-----BEGIN", "deploy.pem": "cert",
            "venv/lib/helper.py": "x = 1", "myenv/pyvenv.cfg": "home = /usr", "myenv/lib/tool.py": "y = 2",
            "data/big.csv": "1,2", "notes/secret.txt": "s", "kept.txt": "kept", "lib/util.py": "z = 3"}
    for name, text in junk.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    (folder / ".dockerignore").write_text("# large data stays out\ndata/\nnotes/secret.txt\n")
    built = build_project(folder, context_only=True, context_dir=tmp_path / "ctx")
    shipped = {p.relative_to(tmp_path / "ctx" / "project").as_posix()
               for p in (tmp_path / "ctx" / "project").rglob("*") if p.is_file()}
    assert shipped == {"dataplug.py", "client.py", "synthetic.py", "sdt.toml", "kept.txt", "lib/util.py",
                       ".dockerignore"}, shipped
    assert {p.as_posix() for p in built.project.code_files} == {"client.py", "dataplug.py", "synthetic.py",
                                                                "lib/util.py"}


def test_without_a_docker_daemon_each_command_says_so_in_one_line(trouble, tmp_path):
    folder = trouble("docker")
    env = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    run = ["run", str(folder), "--output", str(tmp_path / "out"), *keys_arg(("ok", 1))]
    for command in (["build", str(folder)], ["smoke", str(folder)], run):
        done = sdt(*command, env=env, timeout=300)
        assert done.returncode == 10, (command, done.stderr[-2000:])
        errors = [line for line in done.stderr.splitlines() if line.startswith("SDT-E")]
        assert len(errors) == 1 and errors[0].startswith("SDT-E901") and "unix:///nonexistent/docker.sock" in errors[0]
        assert "fix:" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_keys_at_scale_unicode_and_nested(trouble, tmp_path):
    folder = trouble()
    keys = tmp_path / "keys.csv"
    keys.write_text("".join(f"site-{n % 50_000},{n % 3}\n" for n in range(100_000)))  # half of them twice
    done = sdt("run", str(folder), "--dry-run", "--keys", str(keys), "--json", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    binary = tmp_path / "keys.bin"
    binary.write_bytes(os.urandom(4096))
    refused = sdt("run", str(folder), "--dry-run", "--keys", str(binary))
    assert refused.returncode == 5 and "SDT-E502" in refused.stderr and "Traceback" not in refused.stderr
    nested = sdt("run", str(folder), "--dry-run", "--key", '["ok", [1, [2, 3]]]')
    assert nested.returncode == 5 and "SDT-E516" in nested.stderr


def test_a_unicode_key_round_trips(trouble, tmp_path):
    output = tmp_path / "out"
    key = ("raises", "Zürich — 北京 ☀")  # its row comes back fast, without an SDT run
    done = sdt("run", str(trouble()), "--output", str(output), *keys_arg(key))
    assert done.returncode == 5, done.stderr[-2000:]
    (row,) = [json.loads(line) for line in (output / "journal.jsonl").read_text(encoding="utf-8").splitlines()]
    assert tuple(row["key"]) == key and row["error_type"] == "ValueError" and key[1] in row["message"]
    import pandas as pd

    assert pd.read_parquet(output / "results.parquet")["key"].tolist() == [json.dumps(list(key), sort_keys=True)]


def test_cluster_containers_run_as_a_plain_user(docker, trouble, fault_image, tmp_path):
    from sdt_build.clients import DockerClient

    client = DockerClient(workers=1, threads_per_worker=1, memory_per_worker="2GiB")
    client.connect(fault_image)
    try:
        containers = cluster_containers(docker, os.getpid())
        assert {c.labels[f"{LABEL}.role"] for c in containers} == {"scheduler", "worker"}
        for container in containers:
            assert container.exec_run(["id", "-u"]).output.decode().strip() == "1000", container.name
    finally:
        client.close()
    assert not cluster_containers(docker, os.getpid())
