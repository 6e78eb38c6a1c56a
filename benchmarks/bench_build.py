"""Image build: sdt-build vs the upstream approach (pip install solar-data-tools[dask] in the image).

Same base image, same machine, one run, both sides from empty caches: sdt-build's cold build starts
from a fresh cache folder (wheels, locks, smoke proofs) with no Docker layer cache (its SDT
environment image made again); the upstream image is given network access inside the build (the
proxy's CA copied in, which sdt-build's images never need). Then: a rebuild after editing only
dataplug.py, one after adding a requirement, and `sdt-build build` with nothing changed (timed as a
command, and watched for containers). Each sdt-build case prints where its time went, and what
numpy's transparent huge pages cost SDT's pipeline step on this machine.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import ROOT, timed

from sdt_build.build.daemon import LABEL, docker_client
from sdt_build.build.image import build, choose_base
from sdt_build.build.smoke import PIPELINE_DAYS
from sdt_build.doctor import HUGE_PAGES
from sdt_build.pipeline import build_project
from sdt_build.resources import render_template

# The goals the build suite is held to (ratios; both sides measured in the same run).
GOALS = {"cold / upstream cold": 0.6, "edit dataplug.py / cold": 0.1,
         "add a requirement / cold": 0.2, "image size / upstream": 0.65}
NOOP_SECONDS = 1.0
# SDT's pipeline step of the smoke test, alone and timed after its imports
PIPELINE_STEP = ("import time, pandas, sdt_dask, solardatatools; from sdt_build.runtime.probe import pipeline; "
                 f"t = time.perf_counter(); pipeline({PIPELINE_DAYS}, True); print(time.perf_counter() - t)")

HOST_CA = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))


def naive_context(folder: Path, base: str, sdt_spec: str, requirements: str | None = None,
                  pip_check: bool = False) -> Path:
    """A build context for templates/naive.Dockerfile.j2 (the comparison baseline); with
    ``requirements`` the folder may already hold the files they include."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(render_template(
        "naive.Dockerfile.j2", base=base, sdt_spec=sdt_spec, requirements=requirements is not None, pip_check=pip_check))
    shutil.copy(HOST_CA, folder / "ca.pem")
    if requirements is not None:
        (folder / "requirements.txt").write_text(requirements)
    return folder


def run() -> None:
    client = docker_client()
    base = choose_base(client, "3.11")
    with tempfile.TemporaryDirectory(prefix="sdt-bench-build-") as work:
        work = Path(work)
        project = work / "bench-build"
        shutil.copytree(ROOT / "examples" / "local-csv", project)
        (project / "sdt.toml").write_text((project / "sdt.toml").read_text().replace(
            'name = "local-csv"', 'name = "sdt-bench-build"'))
        os.environ["SDT_CACHE_DIR"] = str(work / "cache")  # empty wheel, lock and proof caches
        upstream_tag = "sdt-bench-upstream:latest"
        try:
            cold, built = timed(lambda: build_project(project, no_cache=True))
            pages = _huge_pages(client, built.image.tag)
            upstream_seconds, upstream_id = timed(lambda: build(
                client, naive_context(work / "upstream", base.image, "'solar-data-tools[dask]'"), upstream_tag,
                buildargs={}, no_cache=True, log_path=work / "upstream.log"))
            with open(project / "dataplug.py", "a") as plug:
                plug.write("\n# edited\n")
            warm, edited = timed(lambda: build_project(project))
            (project / "requirements.txt").write_text("tabulate\n")
            added, with_requirement = timed(lambda: build_project(project))
            noop, containers = _unchanged(client, project)
            ours = client.images.get(built.image.tag).attrs["Size"]
            theirs = client.images.get(upstream_id).attrs["Size"]
        finally:
            os.environ.pop("SDT_CACHE_DIR", None)
            for image in client.images.list(name="sdt-bench-build") + client.images.list(name="sdt-bench-upstream"):
                client.images.remove(image.id, force=True)
    for label, case in (("cold", built), ("edit dataplug.py", edited), ("add a requirement", with_requirement)):
        print(f"   where the time went, {label}: " + _phases(case.timings.phases))
    _split(built.timings.phases, cold, upstream_seconds)
    print(pages)
    ratios = {"cold / upstream cold": cold / upstream_seconds, "edit dataplug.py / cold": warm / cold,
              "add a requirement / cold": added / cold, "image size / upstream": ours / theirs}
    print(f"   cold build, sdt-build (empty caches):     {cold:6.1f} s")
    print(f"   cold build, upstream pip install in image: {upstream_seconds:6.1f} s   "
          f"ratio sdt-build/upstream {ratios['cold / upstream cold']:.2f}   {_verdict('cold / upstream cold', ratios)}")
    print(f"   rebuild + smoke after editing dataplug.py: {warm:6.1f} s   ratio to cold "
          f"{ratios['edit dataplug.py / cold']:.3f}   {_verdict('edit dataplug.py / cold', ratios)}")
    print(f"   rebuild + smoke after adding a requirement:{added:6.1f} s   ratio to cold "
          f"{ratios['add a requirement / cold']:.3f}   {_verdict('add a requirement / cold', ratios)}")
    median = statistics.median(noop)
    print(f"   `sdt-build build` with nothing changed:    {median:6.2f} s (median of "
          f"{', '.join(f'{t:.2f}' for t in noop)})   containers started: {containers}   "
          + ("pass" if median <= NOOP_SECONDS and containers == 0 else f"FAIL (goal ≤ {NOOP_SECONDS:g} s, none)"))
    print(f"   image size: sdt-build {ours / 1e9:.2f} GB, upstream {theirs / 1e9:.2f} GB   "
          f"ratio {ratios['image size / upstream']:.3f}   {_verdict('image size / upstream', ratios)}")
    assert not edited.image.skipped and not with_requirement.image.skipped


def _unchanged(client, project: Path, runs: int = 3) -> tuple[list[float], int]:
    """Seconds of each of ``runs`` `sdt-build build DIR` with nothing changed, and the containers
    they created."""
    command = [str(Path(sys.executable).parent / "sdt-build"), "build", str(project), "--json"]
    since = int(time.time()) - 1
    times = []
    for _ in range(runs):
        seconds, done = timed(lambda: subprocess.run(command, capture_output=True, text=True))
        assert done.returncode == 0, done.stderr[-2000:]
        times.append(seconds)
    until = int(time.time()) + 1
    events = client.events(since=since, until=until, decode=True,
                           filters={"type": "container", "event": "create", "label": f"{LABEL}.role"})
    return times, sum(1 for _ in events)


def _split(phases: list[dict], cold: float, upstream: float) -> None:
    """The cold build's own part beside its smoke test, SDT's pipeline step apart."""
    seconds = {p["name"]: p["seconds"] for p in phases}
    smoke, pipeline = seconds.get("smoke", 0.0), seconds.get("smoke/SDT pipeline", 0.0)
    print(f"   cold, split: build {cold - smoke:.1f} s (ratio to upstream {(cold - smoke) / upstream:.2f}), smoke "
          f"{smoke:.1f} s of which SDT's pipeline step {pipeline:.1f} s")


def _huge_pages(client, image: str) -> str:
    """What numpy's transparent huge pages cost this machine, side by side: the first touch of 1 GiB
    of fresh memory here, and SDT's pipeline step in ``image``, with them on (numpy's default where
    the kernel's policy is madvise) and off. SDT's clipping check touches about 5 GB of fresh memory
    per pipeline (docs/running.md)."""
    touch, step = {}, {}
    for setting in ("1", "0"):
        time.sleep(5)  # memory freed just before is still backed: let the machine settle as after idle
        done = subprocess.run([sys.executable, "-c", "import time, numpy; t = time.perf_counter(); "
                               "numpy.ones(2**27); print(time.perf_counter() - t)"], capture_output=True,
                              text=True, env={**os.environ, HUGE_PAGES: setting})
        touch[setting] = float(done.stdout or "nan")
        time.sleep(5)
        out = client.containers.run(image, ["python3", "-c", PIPELINE_STEP], network_mode="host", remove=True,
                                    environment={HUGE_PAGES: setting})
        step[setting] = float(out.decode().split()[-1])
    return (f"   numpy huge pages on this machine, on | off ({HUGE_PAGES}=0): first touch of 1 GiB "
            f"{touch['1']:.2f} | {touch['0']:.2f} s; SDT's pipeline step ({PIPELINE_DAYS} days) in the image "
            f"{step['1']:.1f} | {step['0']:.1f} s, ratio off/on {step['0'] / step['1']:.2f}")


def _phases(phases: list[dict]) -> str:
    """The top-level phases (and the environment's), with seconds."""
    shown = [p for p in phases if "/" not in p["name"] or p["name"].startswith(("env/", "download/"))]
    return ", ".join(f"{p['name']} {p['seconds']:.1f} s" for p in shown)


def _verdict(name: str, ratios: dict[str, float]) -> str:
    goal = GOALS[name]
    return f"pass (goal ≤ {goal})" if ratios[name] <= goal else f"FAIL (goal ≤ {goal})"
