"""Regenerate the pinned SDT constraints (``make constraints``).

For each target Python: lock solar-data-tools + dask + distributed with pip-compile (run by an
interpreter of that version; uv when none is found), lock the cloud clients' packages for the
client side on top of it, download every worker wheel for linux x86_64 and record what each
declares (requirements, Requires-Python, import names). Writes into ``constraints/py3.X/``:

    sdt.in          the inputs             worker.txt      the worker image's lock
    parity.txt      the worker pins the client must share (Dask's version check)
    client.in       client-side inputs     client.txt      the client side's lock
    metadata.json   per pinned package     modules.txt     import names the image provides
    inputs.json     how and when all this was made

Then rewrites docs/dependencies.md from all of it (``maintainer/dependency_page.py``), and pyproject.toml's
``[local]`` extra: SDT and the parity packages at the image's versions (``constraints.local_extra``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib.metadata import version as installed_version
from pathlib import Path

from packaging.utils import canonicalize_name

from sdt_build.constraints import (HERE, PIPELINE_SOURCE, SDT_PACKAGE, folder, local_extra, pipeline_parameters,
                                   read_lock)
from sdt_build.dependencies.resolve import compile_for_target
from sdt_build.maintainer import dependency_page
from sdt_build.runtime.parity import PACKAGES as PARITY
from sdt_build.sources.wheels import download, read_wheel
from sdt_build.target import SUPPORTED_PYTHONS

SDT_VERSION = "2.1.5"
WORKER_INPUTS = [f"solar-data-tools=={SDT_VERSION}", "dask", "distributed"]
# Client side only: the cloud cluster managers never go into the worker image. The client shares
# the worker's versions of what crosses the wire; the rest (boto's pins, say) may differ.
CLIENT_INPUTS = [f"solar-data-tools=={SDT_VERSION}", "dask-cloudprovider[aws,azure]", "pyarrow"]
COMPILE_FLAGS = ["--strip-extras", "--allow-unsafe", "--no-emit-index-url", "--no-emit-find-links",
                 "--annotation-style=line"]


def interpreter(python: str) -> str | None:
    """A working interpreter of ``python`` on this machine (PATH, then pyenv), or None."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == python:
        return sys.executable
    candidates = [shutil.which(f"python{python}")]
    candidates += sorted(str(p) for p in (Path.home() / ".pyenv" / "versions").glob(f"{python}.*/bin/python{python}"))
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == python:
            return candidate
    return None


def compile_lock(python: str, inputs: Path, output: Path, work: Path, tool: str = "pip-compile") -> str:
    """Lock ``inputs`` for ``python``; returns a description of the tool used.

    pip-compile runs under an interpreter of the target version; uv (any target) when there is
    none, or when asked: the client lock backtracks through boto's releases, which uv does in
    seconds and pip's resolver in tens of minutes.
    """
    exe = interpreter(python) if tool == "pip-compile" else None
    staging = work / f"{output.stem}-{python}"
    staging.mkdir(parents=True, exist_ok=True)
    shutil.copy(inputs, staging / "requirements.in")
    for sibling in inputs.parent.glob("*.txt"):  # -c files the inputs name
        shutil.copy(sibling, staging / sibling.name)
    if exe:
        venv = work / f"venv{python}"
        if not venv.exists():
            subprocess.run([exe, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin/pip"), "install", "-q", "pip-tools>=7.4"], check=True)
        text = compile_for_target("pip-compile", python, staging / "requirements.in", [], staging / "log.txt",
                                  pip_compile=[str(venv / "bin/pip-compile")])
        version = subprocess.run([str(venv / "bin/pip-compile"), "--version"], capture_output=True, text=True)
        described = version.stdout.strip()
    else:
        text = compile_for_target("uv", python, staging / "requirements.in", [], staging / "log.txt")
        why = "asked for" if tool == "uv" else f"no python{python} interpreter found"
        described = f"uv {installed_version('uv')} ({why})"
    output.write_text(text)
    return described


def generate(python: str, work: Path) -> None:
    target = folder(python)
    target.mkdir(parents=True, exist_ok=True)
    (target / "sdt.in").write_text("\n".join(WORKER_INPUTS) + "\n")
    worker_tool = compile_lock(python, target / "sdt.in", target / "worker.txt", work)
    pins = read_lock(target / "worker.txt")
    (target / "parity.txt").write_text("".join(f"{n}=={pins[n]}\n" for n in PARITY if n in pins))
    (target / "client.in").write_text("-c parity.txt\n" + "\n".join(CLIENT_INPUTS) + "\n")
    client_tool = compile_lock(python, target / "client.in", target / "client.txt", work, tool="uv")
    log = work / f"download-{python}.log"
    try:
        wheels = download(pins, python, log)
    except subprocess.CalledProcessError:
        sys.exit(f"downloading py{python} wheels failed:\n" + "\n".join(
            line for line in log.read_text().splitlines() if "ERROR" in line))
    metadata, modules = {}, set()
    for name, path in sorted(wheels.items()):
        info = read_wheel(path)
        metadata[canonicalize_name(name)] = {
            "version": info.version, "requires": list(info.requires),
            "requires_python": info.requires_python, "extras": list(info.extras),
            "modules": list(info.modules), "wheel": info.filename,
        }
        if canonicalize_name(name) == SDT_PACKAGE:
            with zipfile.ZipFile(path) as archive:
                source = archive.read(PIPELINE_SOURCE).decode("utf-8")
            metadata[SDT_PACKAGE]["run_pipeline"] = pipeline_parameters(source)
        modules.update(info.modules)
    (target / "metadata.json").write_text(json.dumps(metadata, indent=1, sort_keys=True) + "\n")
    (target / "modules.txt").write_text("\n".join(sorted(modules)) + "\n")
    (target / "inputs.json").write_text(json.dumps({
        "python": python, "platform": "linux x86_64 (manylinux 2_5 … 2_36)",
        "solar_data_tools": SDT_VERSION, "worker_inputs": WORKER_INPUTS, "client_inputs": CLIENT_INPUTS,
        "worker_lock_tool": worker_tool, "client_lock_tool": client_tool,
        "compile_flags": COMPILE_FLAGS, "created": datetime.date.today().isoformat(),
        "packages": len(pins),
    }, indent=1) + "\n")
    print(f"py{python}: {len(pins)} pinned packages, {len(modules)} import names ({worker_tool})")


def write_local_extra(pyproject: Path = HERE.parent.parent / "pyproject.toml") -> Path:
    """Rewrite the ``local = [...]`` extra of pyproject.toml from the constraints."""
    lines = "".join(f'    "{line}",\n' for line in local_extra())
    text = re.sub(r"^local = \[.*?^\]", f"local = [\n{lines}]", pyproject.read_text(), count=1, flags=re.M | re.S)
    pyproject.write_text(text)
    return pyproject


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", action="append", choices=SUPPORTED_PYTHONS,
                        help="target(s) to regenerate (default: all)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sdt-constraints-") as work:
        for python in args.python or SUPPORTED_PYTHONS:
            generate(python, Path(work))
    print(f"constraints written under {HERE}; {dependency_page.write()} and {write_local_extra()} rewritten")


if __name__ == "__main__":
    main()
