"""The worker environment as a venv on a shared path, for clusters without Docker (SLURM).

It holds what the image holds, from the same sources: every pin of the project's lock installed
from the same target wheels (``context.wheelhouse``, no index reached), sdt-build's runtime part
(``context.runtime_files``) and the user's files, both on the venv's path as ``/opt/sdt/lib`` and
``/opt/sdt/project`` are in the image. Then the smoke probe runs in it (pip check among its steps)
and the manifest ``sdt-build.json`` records its content hash; a venv whose hash is unchanged is
not installed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sdt_build import __version__
from sdt_build.build.context import PACKAGE, runtime_files, wheelhouse
from sdt_build.build.smoke import PIPELINE_DAYS, SmokeReport, probe_args, probe_result, report
from sdt_build.cache import cache_root
from sdt_build.dependencies.resolve import ResolvedLock
from sdt_build.runtime.errors import RunFailure
from sdt_build.runtime.redact import run_logged
from sdt_build.userfolder.project import UserProject

MANIFEST = "sdt-build.json"
LIB = Path("sdt") / "lib"  # sdt-build's runtime part, as /opt/sdt/lib in the image
PROJECT = Path("sdt") / "project"  # the user's files, as /opt/sdt/project


@dataclass(frozen=True)
class WorkerEnv:
    """A built (or reused) venv."""

    path: Path
    python: str
    content_hash: str
    lock_hash: str
    skipped: bool
    seconds: float
    log_path: Path | None = None
    smoke: SmokeReport | None = None

    @property
    def interpreter(self) -> Path:
        return self.path / "bin" / "python"

    def to_dict(self) -> dict:
        return {"venv": str(self.path), "python": self.python, "content_hash": self.content_hash,
                "lock_hash": self.lock_hash, "skipped": self.skipped, "seconds": round(self.seconds, 1),
                "log": str(self.log_path) if self.log_path else None,
                "smoke": self.smoke.to_dict() if self.smoke else None}


def read_manifest(path: Path) -> dict | None:
    """The manifest of a venv sdt-build made (None: not one of ours)."""
    try:
        return json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def interpreter_for(python: str) -> str:
    """A Python X.Y on this machine to make the venv with (this one when it is X.Y)."""
    if "%d.%d" % sys.version_info[:2] == python:
        return sys.executable
    found = shutil.which(f"python{python}")
    if found:
        return found
    raise RunFailure("SDT-E536", f"no Python {python} on this machine to make the worker venv with",
                             f"install python{python} (or load its module) so that `python{python}` is on PATH, or "
                             f"set python = \"{'%d.%d' % sys.version_info[:2]}\" in sdt.toml to use this one")


def build_venv(project: UserProject, lock: ResolvedLock, path: Path, *, smoke: bool = True,
               sample_key: tuple | None = None, pipeline_days: int = PIPELINE_DAYS,
               env: dict[str, str] | None = None, log_dir: Path | None = None) -> WorkerEnv:
    """Install the lock into a venv at ``path`` (skipped when its content hash is unchanged), then
    run the smoke probe in it. A failing probe raises SmokeFailure with its report."""
    started = time.perf_counter()
    path = Path(path).absolute()
    interpreter = interpreter_for(lock.python)
    version = subprocess.run([interpreter, "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    digest = content_hash(project, lock, version)
    log_dir = log_dir or cache_root() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"venv-{project.name}-{digest}.log"
    manifest = read_manifest(path)
    skipped = bool(manifest and manifest.get("content_hash") == digest and (path / "bin" / "python").exists())
    if not skipped:
        if path.exists() and any(path.iterdir()) and manifest is None:
            raise RunFailure("SDT-E535", f"{path} exists and is not a venv sdt-build made",
                             "choose an empty or new folder for --venv (sdt-build replaces only venvs it made)")
        _install(project, lock, path, interpreter, log_path)
        _write_manifest(path, {"content_hash": digest, "lock_hash": lock.input_hash, "python": version,
                               "project": project.name, "plug": project.plug.name, "sdt_build": __version__,
                               "pins": dict(sorted(lock.pins.items())),
                               "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    built = WorkerEnv(path, version, digest, lock.input_hash, skipped, time.perf_counter() - started, log_path)
    if not smoke:
        return built
    result = smoke_venv(path, project, sample_key=sample_key, pipeline_days=pipeline_days, env=env)
    _write_manifest(path, {**(read_manifest(path) or {}), "smoke_ok": result.ok, "versions": result.versions})
    if not result.ok:
        raise result.failure(also=f" (then run `sdt-build build DIR --venv {path}` again)")
    return WorkerEnv(**{**built.__dict__, "smoke": result, "seconds": time.perf_counter() - started})


def content_hash(project: UserProject, lock: ResolvedLock, python: str) -> str:
    """Covers the interpreter's version, every pin, sdt-build's runtime part and the user's files."""
    digest = hashlib.sha256(f"venv\0{python}\0".encode())
    digest.update("".join(f"{n}=={v}\n" for n, v in sorted(lock.pins.items())).encode())
    for name in runtime_files():
        digest.update(f"runtime/{name}\0".encode() + (PACKAGE / name).read_bytes() + b"\0")
    for relative in project.files.files:
        digest.update(f"project/{relative}\0".encode() + (project.root / relative).read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def _install(project: UserProject, lock: ResolvedLock, path: Path, interpreter: str, log_path: Path) -> None:
    """A fresh venv at ``path`` with every pin from the target wheels, the runtime part and the user's files."""
    wheels, sdists, build_wheels = wheelhouse(lock, log_path.parent, project.settings.build_sdists)
    if path.exists():
        shutil.rmtree(path)
    code = run_logged([interpreter, "-m", "venv", str(path)], log_path)
    if code == 0:  # ours from now on: a later build may replace it even when this one fails
        _write_manifest(path, {"content_hash": None, "installing": time.strftime("%Y-%m-%dT%H:%M:%S")})
    with tempfile.TemporaryDirectory(prefix="sdt-venv-") as work:
        requirements = Path(work) / "lock.txt"
        requirements.write_text("".join(f"{n}=={v}\n" for n, v in sorted(lock.pins.items())))
        links = [str(p.parent) for p in {*wheels.values(), *sdists.values(), *build_wheels}]
        command = [str(path / "bin" / "python"), "-m", "pip", "install", "--no-index", "--no-deps",
                   "--no-cache-dir", "--disable-pip-version-check", "-r", str(requirements)]
        for folder in sorted(set(links)):
            command += ["--find-links", folder]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        if code == 0:
            code = run_logged(command, log_path, env=environment, append=True)
    if code != 0:
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.startswith("ERROR:")]
        raise RunFailure("SDT-E537", f"installing the lock into the venv {path} failed: "
                         f"{(lines or ['see the log'])[-1]}",
                         "read the log; check that the folder is writable and the disk has room, then run "
                         "`sdt-build build DIR --venv PATH` again", log_path=log_path)
    for role in ("scheduler", "worker"):  # the launchers cluster engines call, as the image has them
        launcher = path / "bin" / f"dask-{role}"
        launcher.write_text(f'#!/bin/sh\nexec "{path / "bin" / "python"}" -m distributed.cli.dask_{role} "$@"\n')
        launcher.chmod(0o755)
    lib = path / LIB / "sdt_build"
    for name in runtime_files():
        (lib / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PACKAGE / name, lib / name)
    project.files.copy(project.root, path / PROJECT)
    site = subprocess.run([str(path / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "sdt-build.pth").write_text(f"{path / LIB}\n{path / PROJECT}\n")


def smoke_venv(path: Path, project: UserProject, *, sample_key: tuple | None = None,
               pipeline_days: int = PIPELINE_DAYS, env: dict[str, str] | None = None,
               timeout: float = 900) -> SmokeReport:
    """The smoke probe's steps in the venv (its own python, its bin/ first on PATH), and parity."""
    started = time.perf_counter()
    folder = str(path / PROJECT)
    args = probe_args(folder, project.plug.name, sample_key, pipeline_days, project.settings.upstream_fixes)
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    environment.update(env or {})
    environment["PATH"] = f"{path / 'bin'}{os.pathsep}{environment.get('PATH', '')}"
    try:
        done = subprocess.run([str(path / "bin" / "python"), "-m", "sdt_build.runtime.probe", json.dumps(args)],
                              capture_output=True, text=True, env=environment, cwd=folder, timeout=timeout)
        output, ended = done.stdout + done.stderr, f"exit {done.returncode}"
    except subprocess.TimeoutExpired as exc:
        output, ended = f"{exc.stdout or ''}{exc.stderr or ''}", f"still running after {timeout:g} s"
    result = probe_result(output, str(path), ended,
                          f"read the output below; rebuild the venv with `sdt-build build DIR --venv {path}`")
    return report(str(path), result, True, started, other="venv")


def _write_manifest(path: Path, manifest: dict) -> None:
    temporary = path / f".{MANIFEST}.tmp"
    temporary.write_text(json.dumps(manifest, indent=1))
    temporary.replace(path / MANIFEST)
