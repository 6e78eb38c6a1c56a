"""Smoke test and parity on real images, some broken on purpose: each must fail at the right step."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
import xml.etree.ElementTree as ET

import pytest
from conftest import SDT, build_context, force_plug_layer

from sdt_build.build.daemon import LABEL
from sdt_build.build.smoke import junit_xml, smoke_image
from sdt_build.pipeline import build_project
from sdt_build.runtime.parity import compare, versions as client_versions

pytestmark = pytest.mark.docker


def _unique(folder):
    (folder / "sdt.toml").write_text(re.sub(r'name = "[^"]*"', f'name = "sdt-smoke-{uuid.uuid4().hex[:8]}"',
                                            (folder / "sdt.toml").read_text()))
    return folder


@pytest.fixture
def broken_image(docker, base_image, copy_example, tmp_path):
    """Build the local-csv context after ``mutate(built)`` breaks it; yields a factory."""
    made = []

    def make(mutate) -> str:
        folder = _unique(copy_example(folder_name=f"p{len(made)}"))
        built = build_project(folder, context_only=True, context_dir=tmp_path / f"context{len(made)}")
        mutate(built)
        tag = f"{built.context.name}:broken"
        build_context(docker, built, tag, tmp_path / f"build{len(made)}.log")
        made.append(tag)
        return tag

    yield make
    for tag in made:
        docker.images.remove(tag, force=True)


def _failed_step(report):
    return next(s for s in report.steps if not s.ok)


def test_missing_package_fails_at_plug_import(docker, broken_image):
    def import_missing(built):
        plug = built.context.directory / "project" / "dataplug.py"
        plug.write_text("import tabulate\n" + plug.read_text())

    report = smoke_image(docker, broken_image(import_missing), pipeline_days=0)
    assert not report.ok
    step = _failed_step(report)
    assert step.name == "plug module" and "No module named 'tabulate'" in step.detail
    failure = report.failure()
    assert failure.code == "SDT-E402" and "tabulate" in failure.fix and "requirements.txt" in failure.fix


def test_plug_raising_at_import_fails_at_plug_import(docker, broken_image):
    def raise_at_import(built):
        (built.context.directory / "project" / "dataplug.py").write_text("raise RuntimeError('no database configured')\n")

    report = smoke_image(docker, broken_image(raise_at_import), pipeline_days=0)
    step = _failed_step(report)
    assert step.name == "plug module" and "no database configured" in step.detail
    assert "RuntimeError" in step.traceback
    assert all(s.ok for s in report.steps if s.name in ("imports", "pip check", "dask entry points"))


def test_forced_conflicting_lock_fails_pip_check(docker, broken_image, tmp_path):
    def force_conflict(built):
        # pandas requires python-dateutil>=2.9.0; 2.8.2 still imports, so only pip check can tell
        force_plug_layer(built, {"python-dateutil": "2.8.2"}, tmp_path / "download.log")

    report = smoke_image(docker, broken_image(force_conflict), pipeline_days=0)
    step = _failed_step(report)
    assert step.name == "pip check" and "python-dateutil" in step.detail and "pandas" in step.detail
    assert report.failure().code == "SDT-E404"


def test_dask_other_than_the_clients_is_a_parity_error(docker, broken_image, tmp_path):
    def old_dask(built):
        force_plug_layer(built, {"dask": "2025.1.0", "distributed": "2025.1.0"}, tmp_path / "download.log")

    report = smoke_image(docker, broken_image(old_dask), pipeline_days=0)
    assert all(s.ok for s in report.steps), [s for s in report.steps if not s.ok]
    rows = {r.package: r for r in report.parity}
    assert rows["dask"].severity == "error" and rows["dask"].other == "2025.1.0"
    assert rows["distributed"].severity == "error"
    assert "pip install" in rows["dask"].fix or "requirements.txt" in rows["dask"].fix
    failure = report.failure()
    assert failure.code == "SDT-E408" and "dask" in failure.cause


def test_local_csv_image_passes_every_step_with_a_real_pipeline(docker, base_image, copy_example, tmp_path):
    folder = _unique(copy_example())
    built = build_project(folder, sample_key=("ZT162185000441C1203",))
    report = built.smoke
    names = [s.name for s in report.steps]
    # client.py runs where a run starts, never in the image: the image holds no client step
    assert names == ["imports", "plug module", "pip check", "dask entry points", "get_data sample key",
                     "SDT pipeline"]
    assert report.ok, [s for s in report.steps if not s.ok]
    pipeline = report.steps[-1]
    ran = re.match(r"(\d+) days, capacity ([\d.]+) kW, quality ([\d.]+)", pipeline.detail)
    assert ran and int(ran[1]) == 30 and float(ran[2]) > 1 and 0 < float(ran[3]) <= 1, pipeline.detail
    assert "upstream fixes: cvxpy-sparse-is-diagonal: applied" in pipeline.detail  # in the image, as on workers
    assert "rows" in report.steps[names.index("get_data sample key")].detail
    tags = docker.images.get(built.image.tag).tags
    assert f"{built.context.name}:latest" in tags
    suite = ET.fromstring(junit_xml(report))
    assert suite.get("failures") == "0" and len(suite.findall("testcase")) >= len(names)
    docker.images.remove(built.image.image_id, force=True)


def test_failed_smoke_is_never_latest_and_cli_exits_4(docker, base_image, copy_example, tmp_path):
    folder = _unique(copy_example())
    (folder / "dataplug.py").write_text("raise RuntimeError('broken on purpose')\n"
                                        + (folder / "dataplug.py").read_text())
    junit = tmp_path / "smoke.xml"
    done = subprocess.run([SDT, "build", str(folder), "--json", "--junit", str(junit)], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 4, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "SDT-E402" and "broken on purpose" in error["cause"]
    assert "smoke-failed" in error["fix"]
    name = re.search(r'name = "([^"]+)"', (folder / "sdt.toml").read_text()).group(1)
    tags = [t for image in docker.images.list(name=name) for t in image.tags]
    assert tags and all("smoke-failed-" in t for t in tags), tags
    assert ET.parse(junit).getroot().get("failures") != "0"
    for image in docker.images.list(name=name):
        docker.images.remove(image.id, force=True)


def test_parity_rules():
    mine = client_versions()
    same = compare(mine, dict(mine))
    assert all(r.severity == "ok" for r in same)
    micro = dict(mine, python=mine["python"].rsplit(".", 1)[0] + ".0")
    row = next(r for r in compare(mine, micro) if r.package == "python")
    assert row.severity in ("note", "ok")
    minor = dict(mine, python="3.9.18")
    assert next(r for r in compare(mine, minor) if r.package == "python").severity == "error"
    numpy = dict(mine, numpy="1.26.4")
    assert next(r for r in compare(mine, numpy) if r.package == "numpy").severity == "warning"


def test_preflight_against_a_live_cluster_is_clean_for_the_same_environment():
    from distributed import Client, LocalCluster

    from sdt_build.run.runner import cluster_parity

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        assert cluster_parity(client) == ()


def test_sample_key_on_an_image_needs_the_plug_folder():
    done = subprocess.run([SDT, "smoke", "ghcr.io/acme/pv-worker:2.1", "--sample-key", '["A"]', "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "SDT-E123" and "--project DIR" in error["fix"]


@pytest.fixture
def own_image(docker, base_image, copy_example):
    """Images 'brought by the user': built FROM sdt-build's local-csv image with sdt-build's labels
    emptied, with or without sdt_build."""
    import io

    from sdt_build.userfolder.project import load_project

    folder = _unique(copy_example())
    built = build_project(folder, smoke=False)
    made = []

    def make(remove: str | None = None) -> str:
        """The image, with ``remove`` (a path under /opt/sdt/lib/sdt_build, "" for all of it) taken out."""
        labels = " ".join(f'{name}=""' for name in docker.images.get(built.image.tag).labels)
        dockerfile = (f"FROM {built.image.tag}\nLABEL {labels}\n"
                      + ("" if remove is None else f"USER root\nRUN rm -rf /opt/sdt/lib/sdt_build/{remove}\nUSER sdt\n"))
        tag = f"own-pv-worker:{uuid.uuid4().hex[:8]}"
        docker.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, network_mode="host", rm=True)
        made.append(tag)
        return tag

    yield make, load_project(folder, require_env=False)
    for tag in made:
        docker.images.remove(tag, force=True)
    docker.images.remove(built.image.image_id, force=True)


def test_own_image_is_checked_for_its_own_sdt_build(docker, own_image):
    make, project = own_image
    good = smoke_image(docker, make(), project, sample_key=("ZT162185000441C1203",), pipeline_days=0)
    assert not docker.images.get(good.image).labels[f"{LABEL}.content-hash"]
    steps = {s.name: s for s in good.steps}
    assert good.ok and steps["sdt_build in image"].ok and steps["get_data sample key"].ok, good.steps
    # no sdt_build at all; one without this sdt-build's runtime part (as an earlier sdt-build made it)
    for remove in ("", "runtime/task.py"):
        bad = smoke_image(docker, make(remove), project, pipeline_days=0)
        failing = [s.name for s in bad.steps if not s.ok]
        assert failing == ["sdt_build in image"], bad.steps  # the lent copy kept every other step running
        assert bad.failure().code == "SDT-E411"
