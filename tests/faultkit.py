"""Helpers and fixtures for the fault probes (tests/faults/): a misbehaving plug folder and its
image, the CLI as a user runs it, and what a run leaves behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TROUBLE_PLUG = ROOT / "tests" / "faults" / "trouble_plug.py"
SDT = str(Path(sys.executable).parent / "sdt-build")
CLIENTS = {
    "local": "from sdt_build.clients import LocalClient\n\n\nclass Here(LocalClient):\n"
             "    workers = {workers}\n    threads_per_worker = 1\n    memory_per_worker = \"{memory}\"\n",
    "docker": "from sdt_build.clients import DockerClient\n\n\nclass Containers(DockerClient):\n"
              "    workers = {workers}\n    threads_per_worker = 1\n    memory_per_worker = \"{memory}\"\n"
              "    startup_timeout = 120\n",
}


def trouble_folder(parent: Path, client: str = "local", *, workers: int = 2, memory: str = "7GiB",
                   name: str = "faults") -> Path:
    """A user folder with the trouble plug and a client of the given kind."""
    folder = parent / name
    folder.mkdir(parents=True)
    shutil.copy(TROUBLE_PLUG, folder / "dataplug.py")
    shutil.copy(ROOT / "examples" / "synthetic" / "dataplug.py", folder / "synthetic.py")
    (folder / "client.py").write_text(CLIENTS[client].format(workers=workers, memory=memory))
    (folder / "sdt.toml").write_text(f'name = "{name}"\n')
    return folder


def sdt(*args: str, env: dict[str, str] | None = None, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """The CLI, as a user runs it; ``.pid`` is its process id (the owner its containers name)."""
    with subprocess.Popen([SDT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, **(env or {})}, **kwargs) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    done = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    done.pid = process.pid
    return done


# Starts a program with Ctrl-C at its default, as in a terminal: a test suite started in the
# background of a shell ignores SIGINT, and its children would inherit that.
INTERRUPTIBLE = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                 "os.execv(sys.argv[1], sys.argv[1:])")


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The CLI in the background (to be interrupted)."""
    return subprocess.Popen([sys.executable, "-c", INTERRUPTIBLE, SDT, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def journal_rows(output: Path) -> list[dict]:
    """Every line of the journal must be a complete row."""
    return [json.loads(line) for line in (output / "journal.jsonl").read_text().splitlines()]


def keys_arg(*keys) -> list[str]:
    args = []
    for key in keys:
        args += ["--key", json.dumps(list(key))]
    return args


@pytest.fixture
def trouble(tmp_path):
    """make(client="local", **settings) → a fresh trouble folder."""
    return lambda client="local", **settings: trouble_folder(tmp_path, client, **settings)


@pytest.fixture(scope="session")
def fault_image(docker, base_image, tmp_path_factory):
    """The trouble plug's image, built once (its smoke test is not the point here)."""
    from sdt_build.pipeline import build_project

    folder = trouble_folder(tmp_path_factory.mktemp("fault-image"), "docker", name=f"faults-{uuid.uuid4().hex[:6]}")
    built = build_project(folder, smoke=False)
    yield built.image.tag
    docker.images.remove(built.image.image_id, force=True)


def wait_for(condition, timeout: float = 300, every: float = 0.5):
    """Poll ``condition()`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {getattr(condition, '__name__', condition)}")


def finished(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def rows_in(output: Path) -> int:
    path = output / "journal.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


def cluster_containers(docker, owner: int | None = None) -> list:
    """Cluster containers on the daemon; with ``owner``, only those that process started (the
    daemon may be shared with other work)."""
    from sdt_build.build.daemon import LABEL
    from sdt_build.owner import Owner

    found = docker.containers.list(all=True, filters={"label": f"{LABEL}.cluster"}, ignore_removed=True)
    return [c for c in found if owner is None or getattr(Owner.parse(c.labels.get(f"{LABEL}.owner")), "pid", None) == owner]


def no_traceback(text: str) -> None:
    assert "Traceback" not in text and "SDT-E999" not in text, text[-3000:]


def listeners(pids: set[int]) -> list[str]:
    """The local addresses of every listening TCP socket these processes hold (``ss -ltnp``)."""
    import re

    table = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in table.splitlines()
            if {int(pid) for pid in re.findall(r"pid=(\d+)", line)} & pids]
