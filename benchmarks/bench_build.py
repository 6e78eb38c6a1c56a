"""Image build: sdt-build vs the upstream approach (pip install solar-data-tools[dask] in the image).

Same base image, same machine, one run. sdt-build's cold build starts from empty caches (a fresh
wheel cache and no Docker layer cache); the upstream image is given network access inside the
build (the proxy's CA copied in, which sdt-build's images never need). Then: a warm rebuild after
editing only dataplug.py, and a rebuild after adding one requirement.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from benchmarks import ROOT, timed
from sdt_build.daemon import docker_client
from sdt_build.image import build, choose_base
from sdt_build.pipeline import build_project
from sdt_build.resources import render_template

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
        os.environ["SDT_CACHE_DIR"] = str(work / "cache")  # empty wheel and lock caches
        upstream_tag = "sdt-bench-upstream:latest"
        try:
            cold, built = timed(lambda: build_project(project, no_cache=True))
            upstream_seconds, upstream_id = timed(lambda: build(
                client, naive_context(work / "upstream", base.image, "'solar-data-tools[dask]'"), upstream_tag,
                buildargs={}, no_cache=True, log_path=work / "upstream.log"))
            with open(project / "dataplug.py", "a") as plug:
                plug.write("\n# edited\n")
            warm, edited = timed(lambda: build_project(project))
            (project / "requirements.txt").write_text("tabulate\n")
            added, with_requirement = timed(lambda: build_project(project))
            ours = client.images.get(built.image.tag).attrs["Size"]
            theirs = client.images.get(upstream_id).attrs["Size"]
        finally:
            os.environ.pop("SDT_CACHE_DIR", None)
            for image in client.images.list(name="sdt-bench-build") + client.images.list(name="sdt-bench-upstream"):
                client.images.remove(image.id, force=True)
    print(f"   cold build, sdt-build (empty caches):     {cold:6.1f} s")
    print(f"   cold build, upstream pip install in image: {upstream_seconds:6.1f} s   "
          f"ratio sdt-build/upstream {cold / upstream_seconds:.2f}")
    print(f"   rebuild after editing dataplug.py:         {warm:6.1f} s   ratio to cold {warm / cold:.3f}")
    print(f"   rebuild after adding one requirement:      {added:6.1f} s   ratio to cold {added / cold:.3f}")
    print(f"   image size: sdt-build {ours / 1e9:.2f} GB, upstream {theirs / 1e9:.2f} GB   "
          f"ratio {ours / theirs:.2f}")
    assert not edited.image.skipped and not with_requirement.image.skipped
