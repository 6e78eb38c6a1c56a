"""Container clusters going wrong under a real run: the scheduler container killed, SIGTERM to the
CLI, workers killed by their memory limit. Every key ends in a row or the run says why it
stopped; no container is left behind; nothing listens beyond 127.0.0.1; --resume completes."""

from __future__ import annotations

import json
import re
import signal

import pandas as pd
import psutil
import pytest
from faultkit import (cluster_containers, finished, journal_rows, keys_arg, listeners, no_traceback, rows_in, sdt,
                      start, wait_for)

from sdt_build.build.daemon import LABEL

pytestmark = pytest.mark.docker


def _role(docker, role: str, owner: int) -> list:
    return [c for c in cluster_containers(docker, owner) if c.labels.get(f"{LABEL}.role") == role]


def _listeners(docker, owner: int) -> list[str]:
    """The listening addresses of every process in the cluster's containers."""
    pids = set()
    for container in cluster_containers(docker, owner):
        container.reload()
        root = container.attrs["State"]["Pid"]
        if root:
            pids |= {root} | {child.pid for child in psutil.Process(root).children(recursive=True)}
    return listeners(pids)


def test_a_killed_scheduler_ends_the_run_with_a_row_for_every_key(docker, trouble, fault_image, tmp_path):
    folder = trouble("docker", workers=2)
    output = tmp_path / "out"
    keys = [("ok", 1), ("sleep", 300), ("ok", 2)]
    running = start("run", str(folder), "--image", fault_image, "--output", str(output), *keys_arg(*keys))
    wait_for(lambda: rows_in(output) >= 1)
    (scheduler,) = _role(docker, "scheduler", running.pid)
    scheduler.kill()
    code, _, err = finished(running, timeout=180)
    assert code == 5, err[-3000:]
    no_traceback(err)
    assert "SDT-E512" in err and "the client lost the scheduler" in err and "--resume" in err
    rows = {json.dumps(row["key"]): row for row in journal_rows(output)}
    assert rows[json.dumps(["ok", 1])]["status"] == "ok"  # finished before: kept
    lost = [rows[json.dumps(list(key))] for key in keys[1:]]
    assert all(row["stage"] == "scheduler lost" for row in lost), lost
    record = json.loads((output / "run.json").read_text())
    assert record["problem"]["code"] == "SDT-E512" and any("SDT-E512" in w for w in record["warnings"])
    assert len(pd.read_csv(output / "results.csv")) == 3
    assert not cluster_containers(docker, running.pid)

    again = sdt("run", str(folder), "--image", fault_image, "--output", str(output), "--resume", *keys_arg(*keys),
                env={"SDT_FAULTS_FIXED": "1"})
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((output / "run.json").read_text())["already_done"] == 1
    assert set(pd.read_csv(output / "results.csv")["status"]) == {"ok"}


def test_sigterm_stops_a_docker_run_cleanly_and_nothing_listens_beyond_loopback(docker, trouble, fault_image,
                                                                                tmp_path):
    folder = trouble("docker", workers=2)
    output = tmp_path / "out"
    keys = [("ok", 1), ("sleep", 300), ("sleep", 301)]
    running = start("run", str(folder), "--image", fault_image, "--output", str(output), *keys_arg(*keys))
    wait_for(lambda: rows_in(output) >= 1)
    listening = _listeners(docker, running.pid)
    assert len(listening) >= 5, listening  # scheduler, its HTTP server, and per worker: nanny, worker, HTTP
    assert all(address.startswith("127.0.0.1:") for address in listening), listening

    running.send_signal(signal.SIGTERM)
    code, _, err = finished(running, timeout=120)
    assert code == 143, err[-3000:]
    no_traceback(err)
    assert not cluster_containers(docker, running.pid)  # nothing left running
    record = json.loads((output / "run.json").read_text())
    assert record["interrupted"] == "SIGTERM"
    (row,) = journal_rows(output)
    assert row["status"] == "ok" and re.match(r"docker-\d+ tcp://127\.0\.0\.1:\d+$", row["worker"]), row["worker"]
    assert len(pd.read_csv(output / "results.csv")) == 1


def test_workers_killed_for_memory_end_the_run_and_resume_completes(docker, trouble, fault_image, tmp_path):
    folder = trouble("docker", workers=1, memory="2GiB")
    output = tmp_path / "out"
    done = sdt("run", str(folder), "--image", fault_image, "--output", str(output), "--lost-cluster-timeout", "10",
               *keys_arg(("hog", 30000)), timeout=600)
    assert done.returncode == 5, done.stderr[-3000:]
    no_traceback(done.stderr)
    (row,) = journal_rows(output)
    # The nanny restarts the worker until Dask gives up on the key (a `worker lost` row), or the
    # container dies with it (the run ends with SDT-E513): either way the row names the memory limit,
    # remembered after the worker is gone, and what the container said.
    assert row["stage"] in ("worker lost", "no workers"), row
    assert "SDT-E513" in done.stderr if row["stage"] == "no workers" else "memory_per_worker" in done.stderr
    assert "2.0 GiB memory limit" in row["message"] or "exceeded the memory limit" in row["message"], row
    assert "exceeded the memory limit" in row["message"] or "out of memory" in row["message"], row
    assert not cluster_containers(docker, done.pid)

    (folder / "client.py").write_text((folder / "client.py").read_text().replace("2GiB", "7GiB"))
    again = sdt("run", str(folder), "--image", fault_image, "--output", str(output), "--resume",
                *keys_arg(("hog", 30000)), env={"SDT_FAULTS_FIXED": "1"})
    assert again.returncode == 0, again.stderr[-3000:]
    assert set(pd.read_csv(output / "results.csv")["status"]) == {"ok"}


def test_a_client_killed_outright_loses_no_row_and_resume_finishes(docker, trouble, fault_image, tmp_path):
    folder = trouble("docker", workers=2)
    output = tmp_path / "out"
    keys = [("ok", 1), ("sleep", 300), ("ok", 2)]
    running = start("run", str(folder), "--image", fault_image, "--output", str(output), *keys_arg(*keys))
    wait_for(lambda: rows_in(output) >= 1)
    running.kill()  # SIGKILL: no clean-up of any kind
    running.wait(timeout=30)
    kept = journal_rows(output)  # every line whole
    assert [row["key"] for row in kept] == [["ok", 1]]
    again = sdt("run", str(folder), "--image", fault_image, "--output", str(output), "--resume", *keys_arg(*keys),
                env={"SDT_FAULTS_FIXED": "1"})
    assert again.returncode == 0, again.stderr[-3000:]
    rows = journal_rows(output)
    assert [row["key"] for row in rows].count(["ok", 1]) == 1  # not redone
    assert len(pd.read_csv(output / "results.csv")) == 3
    # the killed run's containers went too
    assert not cluster_containers(docker, running.pid) and not cluster_containers(docker, again.pid)


@pytest.mark.parametrize("moment", ["scheduler up", "workers up"])
def test_a_scheduler_gone_while_the_run_starts_is_named_and_touches_nothing(docker, trouble, fault_image, tmp_path,
                                                                            moment):
    """The scheduler container killed as the cluster comes up (as soon as it runs, or once workers
    run too): exit 5 with the container named (SDT-E517) or the scheduler lost before any key ran
    (SDT-E512), never an internal error; no output folder made, no container left."""
    folder = trouble("docker", workers=2)
    output = tmp_path / "out"
    running = start("run", str(folder), "--image", fault_image, "--output", str(output), *keys_arg(("ok", 1)))

    def mine(role: str) -> list:
        return [c for c in _role(docker, role, running.pid) if c.status == "running"]

    wait_for(lambda: mine("scheduler") and (moment == "scheduler up" or len(mine("worker")) == 2), every=0.1)
    (scheduler,) = mine("scheduler")
    scheduler.kill()
    code, _, err = finished(running, timeout=180)
    assert code == 5, err[-3000:]
    no_traceback(err)
    assert re.search(r"SDT-E51[27]", err) and "scheduler" in err, err[-3000:]
    assert "Cluster closed without starting up" not in err, err[-3000:]  # sdt-build's message only
    if "read its log below" in err:  # a fix that points at a log is followed by it
        assert err.split("read its log below", 1)[1].strip().count("\n") >= 1, err[-3000:]
    assert not output.exists()
    assert not cluster_containers(docker, running.pid)
