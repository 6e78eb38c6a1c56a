"""DockerClient: a real Dask cluster of containers of the image sdt-build built."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
import urllib.request
import uuid
import warnings

import pytest
from conftest import FIX_SHIFTS, SDT, SITES, assert_same_reports, build_context, force_plug_layer
from faultkit import cluster_containers

from sdt_build import SDTDask
from sdt_build.build.daemon import LABEL
from sdt_build.clients import DockerClient
from sdt_build.pipeline import build_project
from sdt_build.runtime.errors import RunFailure

pytestmark = pytest.mark.docker


def _unique(folder):
    (folder / "sdt.toml").write_text(re.sub(r'name = "[^"]*"', f'name = "sdt-dc-{uuid.uuid4().hex[:8]}"',
                                            (folder / "sdt.toml").read_text()))
    return folder


def _worker_name(container) -> str:
    """The Dask worker name a worker container was started with (its ``--name``)."""
    args = container.attrs["Args"]
    return args[args.index("--name") + 1] if "--name" in args else ""


@pytest.fixture
def local_csv_image(docker, base_image, copy_example):
    """The local-csv example's image, with bokeh in the plug's layer (the scheduler's dashboard)."""
    folder = _unique(copy_example())
    (folder / "requirements.txt").write_text("bokeh>=3.1,<4\n")
    built = build_project(folder, smoke=False)
    yield folder, built.image.tag
    docker.images.remove(built.image.image_id, force=True)


def test_local_csv_on_a_container_cluster_survives_a_killed_worker(docker, local_csv_image, direct_report,
                                                                     tmp_path):
    folder, image = local_csv_image
    client = DockerClient(workers=2, threads_per_worker=1, memory_per_worker="7GiB")
    killed = {}
    dashboard = {}

    def kill_a_worker_running_a_key():
        """Once the scheduler sees a worker executing a key, kill that worker's container."""
        for _ in range(1200):
            link = dashboard.get("link")
            if link:
                base = urllib.parse.urljoin(link, "/json/identity.json")
                with urllib.request.urlopen(base, timeout=10) as answer:
                    workers = json.load(answer)["workers"].values()
                busy = [str(w["name"]) for w in workers
                        if w.get("metrics", {}).get("task_counts", {}).get("executing")]
                containers = [c for c in cluster_containers(docker, os.getpid())
                              if c.labels[f"{LABEL}.role"] == "worker" and c.status == "running"]
                for container in containers:
                    if busy and len(containers) == 2 and _worker_name(container) in busy:
                        container.kill()
                        killed["name"] = container.name
                        return
            time.sleep(0.25)

    def fetch_dashboard(record):
        """The scheduler container serves Dask's dashboard on 127.0.0.1 while the run goes on."""
        dashboard["link"] = record["dashboard"]
        if record["dashboard"]:
            with urllib.request.urlopen(record["dashboard"], timeout=10) as answer:
                dashboard.update(status=answer.status, page=answer.read().decode())

    killer = threading.Thread(target=kill_a_worker_running_a_key, daemon=True)
    killer.start()
    with warnings.catch_warnings(record=True) as caught:  # the image's Python differs in its micro version
        warnings.simplefilter("always")
        result = SDTDask(folder, client=client, image=image).execute(output_dir=tmp_path / "out",
                                                                     on_start=fetch_dashboard)
    killer.join(timeout=5)
    assert not [w for w in caught if "Mismatched versions" in str(w.message)]  # the parity check says it instead
    assert killed, "no worker container was killed"
    assert result.ok and result.counts == {"ok": 2}, result.table[["key", "status", "stage", "message"]]
    assert killed["name"] in result.record.get("lost_workers", ""), result.record
    assert "exited 137" in result.record["lost_workers"]
    # The killed worker's key ran again elsewhere: both rows equal SDT's own DataHandler.
    assert_same_reports(result.table, [((site,), direct_report(site, FIX_SHIFTS))
                                       for site in SITES])
    assert not cluster_containers(docker, os.getpid())  # everything removed on close
    assert (dashboard["link"] or "").startswith("http://127.0.0.1:"), dashboard
    assert dashboard["status"] == 200 and "Dask" in dashboard["page"]
    assert (tmp_path / "out" / "report.html").stat().st_size > 10_000


def test_an_image_with_another_dask_is_refused_before_any_task(docker, base_image, copy_example, tmp_path):
    folder = _unique(copy_example())
    built = build_project(folder, context_only=True, context_dir=tmp_path / "context")
    force_plug_layer(built, {"dask": "2025.1.0", "distributed": "2025.1.0"}, tmp_path / "download.log")
    tag = f"{built.context.name}:old-dask"
    build_context(docker, built, tag, tmp_path / "build.log")
    try:
        client = DockerClient(workers=1, threads_per_worker=1, memory_per_worker="7GiB")
        with pytest.raises(RunFailure) as refused:
            SDTDask(folder, client=client, image=tag).execute(output_dir=tmp_path / "out")
        assert refused.value.code == "SDT-E503" and "dask" in refused.value.cause
        assert "pip install dask==" in refused.value.fix or "requirements.txt" in refused.value.fix
        assert not (tmp_path / "out" / "journal.jsonl").exists() or \
            (tmp_path / "out" / "journal.jsonl").read_text() == ""
        assert not cluster_containers(docker, os.getpid())
    finally:
        docker.images.remove(tag, force=True)


def test_leftover_containers_after_a_crash_are_cleaned(docker, local_csv_image):
    _, image = local_csv_image
    script = textwrap.dedent(f"""
        import os, signal
        from sdt_build.clients import DockerClient
        client = DockerClient(workers=1, threads_per_worker=1, memory_per_worker="2GiB")
        client.connect({image!r})
        print("connected", os.getpid(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # a crash: no close, no atexit
    """)
    crashed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "connected" in crashed.stdout, crashed.stderr[-2000:]
    owner = int(crashed.stdout.split()[-1])
    assert len(cluster_containers(docker, owner)) == 2  # scheduler and worker left behind
    done = subprocess.run([SDT, "clean", "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not cluster_containers(docker, owner)


def test_a_broken_image_fails_fast_with_its_log(docker, base_image):
    client = DockerClient(workers=1, threads_per_worker=1, memory_per_worker="2GiB", startup_timeout=30)
    with pytest.raises(RunFailure) as caught:
        client.connect(base_image)  # no dask in the bare base image
    assert caught.value.code == "SDT-E504"
    assert "no dask or distributed" in caught.value.cause
    assert not cluster_containers(docker, os.getpid())
