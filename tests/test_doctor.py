"""`sdt-build doctor` against the real daemon, base image, the machine's indexes and a real registry."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from conftest import SDT

from sdt_build.clients.local import machine_workers
from sdt_build.constraints import PIPELINE_PEAK, WORKER_MEMORY
from sdt_build.doctor import HUGE_PAGES, HUGE_PAGES_SLOWER, THP_POLICY
from sdt_build.runtime.errors import counted

pytestmark = pytest.mark.docker


def doctor(*args, env=None):
    done = subprocess.run([SDT, "doctor", *args, "--json"], capture_output=True, text=True, timeout=120,
                          env=env or os.environ)
    return done.returncode, {c["name"]: c for c in json.loads(done.stdout)["checks"]}


def test_this_machine_is_ready(base_image):
    code, checks = doctor()
    assert code == 0, checks
    assert checks["docker"]["status"] == "ok" and "daemon" in checks["docker"]["detail"]
    assert checks["base image"]["status"] == "ok"
    assert checks["index pypi.org"]["status"] == "ok"
    assert checks["disk"]["status"] in ("ok", "warning") and "GiB free" in checks["disk"]["detail"]
    assert checks["client local"]["status"] == "ok" and "solar-data-tools" in checks["client local"]["detail"]
    assert checks["huge pages"]["status"] in ("ok", "warning")
    workers = checks["workers"]  # the measured default: a worker per core, as memory holds
    expected = f"{counted(machine_workers(WORKER_MEMORY), 'local worker')} of {WORKER_MEMORY}"
    assert workers["status"] == "ok" and expected in workers["detail"] and PIPELINE_PEAK in workers["detail"], workers
    human = subprocess.run([SDT, "doctor"], capture_output=True, text=True, timeout=120)
    assert len([line for line in human.stdout.splitlines() if line.strip()]) >= len(checks), human  # `doctor > f`


def test_no_daemon_is_one_failed_line_with_a_fix_for_pip_users(tmp_path):
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    code, checks = doctor(env=env)
    assert code == 10 and checks["docker"]["status"] == "fail"
    assert "systemctl start docker" in checks["docker"]["fix"] and "make" not in checks["docker"]["fix"]


def test_the_folders_registry_and_cloud_client(copy_example, registry):
    folder = copy_example("local-csv", "pushes")
    settings = folder / "sdt.toml"
    settings.write_text(f'registry = "{registry}/team"\n' + settings.read_text())  # a top-level key
    code, checks = doctor(str(folder))
    assert checks[f"registry {registry}"]["status"] == "ok", checks
    (folder / "sdt.toml").write_text(settings.read_text().replace(registry, "127.0.0.1:9"))
    code, checks = doctor(str(folder))
    assert code == 10 and checks["registry 127.0.0.1:9"]["status"] == "fail"
    from sdt_build.resources import copy_example as scaffold

    cloud = folder.parent / "cloud"
    scaffold("local-csv", cloud, "cloud", client="fargate")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    code, checks = doctor(str(cloud), env={**env, "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                                           "AWS_CONFIG_FILE": "/nonexistent"})
    assert checks["client fargate"]["status"] == "fail" and checks["client fargate"]["fix"]


def test_numpy_huge_pages_are_measured_and_a_declared_switch_counts(copy_example):
    env = {k: v for k, v in os.environ.items() if k != HUGE_PAGES}
    madvise = "[madvise]" in THP_POLICY.read_text()
    _, checks = doctor(env=env)
    check = checks["huge pages"]
    if madvise:
        small, huge = map(float, re.findall(r"([\d.]+) s", check["detail"]))
        assert small > 0 and huge > 0, check
        worst = max([huge / small] + [float(w) for w in re.findall(r"([\d.]+)× the small", check["detail"])])
        assert check["status"] == ("warning" if worst > HUGE_PAGES_SLOWER else "ok"), check
        assert (check["status"] == "warning") == (HUGE_PAGES in check["fix"]), check
        again = [doctor(env=env)[1]["huge pages"]["status"] for _ in range(2)]  # memory just freed hides the cost
        assert again == [check["status"]] * 2 or check["status"] == "ok" and "warning" in again, (check, again)
    folder = copy_example("local-csv", "no-huge-pages")
    client = folder / "client.py"
    client.write_text(client.read_text().replace("from sdt_build.clients", "from sdt_build import EnvVar\nfrom "
                                                 "sdt_build.clients", 1)
                      + f'    env = [EnvVar("{HUGE_PAGES}", required=False, default="0")]\n')
    _, checks = doctor(str(folder), env=env)
    assert checks["huge pages"]["status"] == "ok", checks["huge pages"]
    assert f"{HUGE_PAGES}=0" in checks["huge pages"]["detail"]
