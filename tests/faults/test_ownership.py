"""What sdt-build leaves behind, and what it may remove: `clean` removes only what an owner that is
gone left (never a run still going, another host's containers or those that name no owner), and
SIGTERM during a build removes its smoke and environment-install containers as Ctrl-C does."""

from __future__ import annotations

import io
import json
import shutil
import signal
import socket
import time
import uuid

import pytest
from faultkit import finished, journal_rows, keys_arg, no_traceback, sdt, start, wait_for

from sdt_build.build.daemon import LABEL

pytestmark = pytest.mark.docker


def _owned_by(docker, pid: int) -> list:
    """The containers whose owner label names process ``pid`` (``host:pid[:started]``)."""
    return [c for c in docker.containers.list(all=True, filters={"label": f"{LABEL}.owner"}, ignore_removed=True)
            if c.labels[f"{LABEL}.owner"].split(":")[1:2] == [str(pid)]]


def _cluster_up(docker, pid: int):
    """The scheduler and worker containers of the run ``pid``, once both run."""
    def up():
        found = [c for c in _owned_by(docker, pid) if c.labels.get(f"{LABEL}.role") in ("scheduler", "worker")]
        return found if len(found) == 2 and all(c.status == "running" for c in found) else None
    return up


def _of_image(docker, prefix: str, role: str) -> list:
    """The containers of role ``role`` made from an image whose name starts with ``prefix``."""
    return [c for c in docker.containers.list(all=True, filters={"label": f"{LABEL}.role={role}"},
                                                      ignore_removed=True)
            if c.attrs["Config"]["Image"].startswith(prefix)]


def _running(docker, process, prefix: str, role: str):
    """The running containers ``_of_image`` finds, once there are any (a failure if ``process`` ends first)."""
    def running():
        found = [c for c in _of_image(docker, prefix, role) if c.status == "running"]
        if not found and process.poll() is not None:
            pytest.fail(f"it ended before a {role} container ran: {finished(process)[2][-3000:]}")
        return found
    return running


def _remove_containers(containers) -> None:
    from docker.errors import NotFound

    for container in containers:
        try:
            container.remove(force=True)
        except NotFound:
            pass


def test_clean_removes_only_what_an_owner_that_is_gone_left(docker, trouble, fault_image, tmp_path):
    folder = trouble("docker", workers=1)  # the live run's key runs SDT's pipeline: it needs the memory
    cheap = trouble("docker", workers=1, memory="2GiB", name="doomed")  # the killed run's key never gets there
    others = [  # one of another host, one made before containers named their owner: neither is clean's
        docker.containers.run(fault_image, ["sleep", "600"], detach=True, network_mode="host",
                              name=f"sdt-elsewhere-{uuid.uuid4().hex[:8]}",
                              labels={f"{LABEL}.role": "worker", f"{LABEL}.owner": "another-host:1:1.00"}),
        docker.containers.run(fault_image, ["sleep", "600"], detach=True, network_mode="host",
                              name=f"sdt-unowned-{uuid.uuid4().hex[:8]}", labels={f"{LABEL}.role": "smoke"})]
    gate = socket.socket()  # the live run's key waits until this listens: after both cleans
    gate.bind(("127.0.0.1", 0))
    live = start("run", str(folder), "--image", fault_image, "--output", str(tmp_path / "live"),
                 *keys_arg(("until", gate.getsockname()[1])))
    doomed = None
    try:
        kept = wait_for(_cluster_up(docker, live.pid), timeout=180)
        doomed = start("run", str(cheap), "--image", fault_image, "--output", str(tmp_path / "doomed"),
                       *keys_arg(("sleep", 300)))
        left_behind = wait_for(_cluster_up(docker, doomed.pid), timeout=180)
        doomed.kill()  # SIGKILL: its containers stay, and their owner is gone
        doomed.wait(timeout=30)

        done = sdt("clean", "--json", timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        running = {c.name for c in docker.containers.list(ignore_removed=True)}
        assert {c.name for c in kept + others} <= running  # the live run's, another host's, an unowned one
        assert not _owned_by(docker, doomed.pid)  # what the killed run left is gone
        payload = json.loads(done.stdout)
        removed = {entry["name"]: entry for entry in payload["removed"]}
        left = {entry["name"]: entry for entry in payload["left"]}
        assert {c.name for c in left_behind} <= set(removed), payload
        assert all(removed[c.name]["state"] == "gone" and str(doomed.pid) in removed[c.name]["why"]
                   for c in left_behind), payload
        assert not {c.name for c in kept + others} & set(removed), payload
        assert all(left[c.name]["state"] == "running" for c in kept), payload
        assert left[others[0].name]["state"] == "elsewhere" and "another-host" in left[others[0].name]["why"]
        assert left[others[1].name]["state"] == "unowned"

        human = sdt("clean", timeout=120)  # the same, said to a person: what stays, and why
        assert human.returncode == 0, human.stderr[-3000:]
        assert "another-host" in human.stderr and "--unowned" in human.stderr and "still running" in human.stderr

        gate.listen()
        code, _, err = finished(live, timeout=300)
        assert code == 0, err[-3000:]
        no_traceback(err)
        (row,) = journal_rows(tmp_path / "live")
        assert row["status"] == "ok", row
        assert not _owned_by(docker, live.pid)
    finally:
        gate.close()
        for process in (live, doomed):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        _remove_containers(others + _owned_by(docker, live.pid) + (_owned_by(docker, doomed.pid) if doomed else []))


@pytest.fixture
def unique_folder(trouble, docker):
    """A docker-client trouble folder with a name no one else uses; every container and image made
    from its name, and its build context in the cache, is removed afterwards."""
    from sdt_build.cache import cache_root

    name = f"faults-sigterm-{uuid.uuid4().hex[:8]}"
    folder = trouble("docker", name=name)
    yield folder, name
    shutil.rmtree(cache_root() / "contexts" / name, ignore_errors=True)  # with its environment's wheels
    _remove_containers(c for c in docker.containers.list(all=True, ignore_removed=True)
                       if c.attrs["Config"]["Image"].startswith(name + ":"))
    for image in docker.images.list(name=name):
        docker.images.remove(image.id, force=True)


def test_sigterm_during_the_smoke_test_removes_its_container(docker, base_image, unique_folder):
    folder, name = unique_folder
    # get_data sleeps in the smoke container; SDT's pipeline step is not the point here
    building = start("build", str(folder), "--pipeline-days", "0", "--sample-key", '["sleep", 600]')
    (smoke,) = wait_for(_running(docker, building, name + ":", "smoke"), timeout=900)
    building.send_signal(signal.SIGTERM)
    # a second signal while the container is being removed does not stop its removal
    deadline = time.monotonic() + 30
    while building.poll() is None and time.monotonic() < deadline:
        try:
            smoke.reload()
        except Exception:  # already removed
            break
        if smoke.status != "running":
            break
        time.sleep(0.01)
    if building.poll() is None:
        building.send_signal(signal.SIGINT)
    code, _, err = finished(building, timeout=120)
    assert code in (143, 130), (code, err[-3000:])
    no_traceback(err)
    assert "interrupted (SIG" in err
    assert not _of_image(docker, name + ":", "smoke")


def test_sigterm_during_the_environment_install_removes_its_container(docker, base_image, unique_folder):
    folder, name = unique_folder
    # a base image of its own (same files, another id) gives an environment image of its own to make
    base, _ = docker.images.build(fileobj=io.BytesIO(f"FROM {base_image}\nLABEL {LABEL}.test={name}\n".encode()),
                                  tag=f"{name}-base:1", rm=True, network_mode="host")
    (folder / "sdt.toml").write_text(f'name = "{name}"\nbase_image = "{name}-base:1"\n')
    try:
        building = start("build", str(folder), "--no-smoke")
        wait_for(_running(docker, building, f"{name}-base:", "env-build"), timeout=900)
        building.send_signal(signal.SIGTERM)
        code, _, err = finished(building, timeout=120)
        assert code == 143, err[-3000:]
        no_traceback(err)
        assert "interrupted (SIGTERM)" in err
        assert not _of_image(docker, f"{name}-base:", "env-build")
        assert not docker.images.list(filters={"label": f"{LABEL}.base={name}-base:1"})  # nothing committed
    finally:
        _remove_containers(c for c in docker.containers.list(all=True, ignore_removed=True)
                           if c.attrs["Config"]["Image"].startswith(f"{name}-base:"))
        for image in docker.images.list(filters={"label": f"{LABEL}.base={name}-base:1"}):
            docker.images.remove(image.id, force=True)
        docker.images.remove(base.id, force=True)
