"""Wheels for the target (not the host): download them with the user's pip configuration into a
shared cache, and read what each wheel says about itself (requirements, Requires-Python, modules)."""

from __future__ import annotations

import email.parser
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

from sdt_build.cache import cache_root
from sdt_build.progress import Event, OnEvent, ignore
from sdt_build.runtime.redact import run_logged
from sdt_build.sources.pipconfig import IndexSettings, from_pip
from sdt_build.target import target

PARALLEL = 8  # pip processes downloading at once (the work is waiting on the network)
RAW_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)")


@dataclass(frozen=True)
class WheelInfo:
    """What one wheel declares about itself."""

    name: str
    version: str
    filename: str
    requires: tuple[str, ...]
    requires_python: str | None
    extras: tuple[str, ...]
    modules: tuple[str, ...]


def wheel_cache(python: str) -> Path:
    folder = cache_root() / "wheels" / target(python).wheel_folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def download(pins: dict[str, str], python: str, log_path: Path, sources: IndexSettings | None = None,
             on_event: OnEvent = ignore, urls: dict[str, str] | None = None) -> dict[str, Path]:
    """Fetch the wheel of every ``name==version`` for the target into the cache (only missing ones),
    from ``sources`` (pip's configuration by default), in up to ``PARALLEL`` pip processes at once;
    a name in ``urls`` (a ``name @ URL`` line of the lock) from its URL.

    Returns name → wheel path. Raises subprocess.CalledProcessError with the log written to
    ``log_path`` when pip cannot get one. ``on_event`` hears packages and bytes as they arrive.
    """
    folder = wheel_cache(python)
    present = cached_wheels(folder)
    wanted = {(canonicalize_name(name), version) for name, version in pins.items()}
    urls = {canonicalize_name(name): url for name, url in (urls or {}).items()}
    missing = sorted(urls.get(name, f"{name}=={version}") for name, version in wanted if (name, version) not in present)
    if missing:
        _download_parallel(missing, python, folder, log_path, sources or from_pip(), on_event)
        present = cached_wheels(folder)
    return {name: present[(canonicalize_name(name), version)] for name, version in pins.items()}


def _download_parallel(missing: list[str], python: str, folder: Path, log_path: Path, sources: IndexSettings,
                       on_event: OnEvent) -> None:
    """``pip download`` over ``missing`` split into round-robin chunks, run side by side; one log."""
    chunks = [missing[i::PARALLEL] for i in range(min(PARALLEL, len(missing)))]
    lock = threading.Lock()
    state = {"done": 0, "bytes": 0}
    current: dict[int, int] = {}  # chunk → bytes of the wheel it is downloading now
    on_event(Event("download", 0, len(missing), 0, f"{len(missing)} wheels in {len(chunks)} streams"))

    def line(number: int, text: str) -> bool:
        progress = RAW_PROGRESS.match(text)
        with lock:
            if progress:
                current[number] = int(progress.group(1))
            elif text.startswith(("Saved ", "File was already downloaded ")):
                saved = folder / Path(text.split(" ")[-1].strip()).name
                state["done"] += 1
                state["bytes"] += saved.stat().st_size if saved.is_file() else 0
                current.pop(number, None)
            else:
                return False
            seen = state["bytes"] + sum(current.values())
            on_event(Event("download", state["done"], len(missing), seen, text.strip()[:80] if not progress else ""))
        return bool(progress)

    def run(number: int) -> int:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", _progress_mode(),
                   "--disable-pip-version-check", "-d", str(folder), *target(python).pip_download_args,
                   *chunks[number]]
        return run_logged(command, _chunk_log(log_path, number), env=sources.pip_env(),
                          on_line=lambda text: line(number, text))

    with ThreadPoolExecutor(len(chunks)) as pool:
        codes = list(pool.map(run, range(len(chunks))))
    with open(log_path, "w") as log:
        for number in range(len(chunks)):
            log.write(_chunk_log(log_path, number).read_text(errors="replace"))
            _chunk_log(log_path, number).unlink()
    on_event(Event("download", state["done"], len(missing), state["bytes"], finished=True))
    failed = next((code for code in codes if code != 0), None)
    if failed is not None:
        raise subprocess.CalledProcessError(failed, ["pip", "download"])


def _chunk_log(log_path: Path, number: int) -> Path:
    return log_path.with_name(f"{log_path.name}.{number}")


def _progress_mode() -> str:
    """pip's machine-readable progress (``raw``, pip 24.1 and later), else none."""
    from importlib.metadata import version

    from packaging.version import Version

    return "raw" if Version(version("pip")) >= Version("24.1") else "off"


def cached_wheels(folder: Path) -> dict[tuple[str, str], Path]:
    """(canonical name, version) → wheel file, for every wheel in ``folder``."""
    found = {}
    for path in folder.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(path.name)
        found[(canonicalize_name(name), str(version))] = path
    return found


def read_wheel(path: Path) -> WheelInfo:
    """Metadata and top-level import names from a wheel file, without installing it."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        dist_info = next(n.split("/")[0] for n in names if re.match(r"[^/]+\.dist-info/METADATA$", n))
        meta = email.parser.Parser().parsestr(archive.read(f"{dist_info}/METADATA").decode("utf-8", "replace"))
        top_level = f"{dist_info}/top_level.txt"
        if top_level in names:
            modules = {m.strip() for m in archive.read(top_level).decode().splitlines() if m.strip()}
        else:
            modules = set()
            for name in names:
                first = name.split("/")[0]
                if first.endswith((".dist-info", ".data")):
                    continue
                if "/" in name or name.endswith(".py") or name.endswith(".so"):
                    modules.add(first.split(".")[0])
    return WheelInfo(
        name=meta["Name"], version=meta["Version"], filename=path.name,
        requires=tuple(meta.get_all("Requires-Dist") or ()),
        requires_python=meta.get("Requires-Python"),
        extras=tuple(meta.get_all("Provides-Extra") or ()),
        modules=tuple(sorted(m for m in modules if m and not m.startswith("_") and m.isidentifier())),
    )


def link_into(paths: list[Path], folder: Path) -> None:
    """Hard-link (or copy across file systems) wheels into a build context."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        target = folder / path.name
        if target.exists():
            continue
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def _pip(command: list[str], log_path: Path, sources: IndexSettings | None, append: bool = False) -> None:
    code = run_logged(command, log_path, env=(sources or from_pip()).pip_env(), append=append)
    if code != 0:
        raise subprocess.CalledProcessError(code, command)


def download_sdists(pins: dict[str, str], python: str, log_path: Path, sources: IndexSettings | None = None
                    ) -> tuple[dict[str, Path], list[Path]]:
    """Source archives of ``pins``, and the target wheels that building them needs (build-system.requires).

    For ``build_sdists = true``: the builder stage compiles these, with no index, from the context.
    """
    folder = cache_root() / "sdists"
    folder.mkdir(parents=True, exist_ok=True)
    _pip([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:", "--progress-bar", "off",
          "--disable-pip-version-check", "-d", str(folder), *(f"{n}=={v}" for n, v in sorted(pins.items()))],
         log_path, sources, append=True)
    sdists = {}
    for name, version in pins.items():
        prefix = re.compile(rf"^{re.escape(canonicalize_name(name)).replace('-', '[-_.]')}-{re.escape(version)}"
                            r"\.(tar\.gz|zip)$", re.I)
        sdists[name] = next(p for p in folder.iterdir() if prefix.match(p.name))
    requires = sorted({r for path in sdists.values() for r in build_requires(path)})
    build_folder = cache_root() / "build-wheels" / hashlib.sha256("\n".join(requires + [python]).encode()).hexdigest()[:16]
    build_folder.mkdir(parents=True, exist_ok=True)
    _pip([sys.executable, "-m", "pip", "download", "--progress-bar", "off", "--disable-pip-version-check",
          "-d", str(build_folder), *target(python).pip_download_args, *requires], log_path, sources, append=True)
    return sdists, sorted(build_folder.glob("*.whl"))


def build_requires(sdist: Path) -> list[str]:
    """``[build-system] requires`` of a source archive (setuptools and wheel when it declares none)."""
    import tarfile

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    text = None
    if sdist.name.endswith(".zip"):
        with zipfile.ZipFile(sdist) as archive:
            name = next((n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/pyproject.toml")), None)
            text = archive.read(name).decode() if name else None
    else:
        with tarfile.open(sdist) as archive:
            member = next((m for m in archive.getmembers()
                           if m.name.count("/") == 1 and m.name.endswith("/pyproject.toml")), None)
            text = archive.extractfile(member).read().decode() if member else None
    declared = tomllib.loads(text).get("build-system", {}).get("requires") if text else None
    return list(declared) if declared else ["setuptools>=40.8.0", "wheel"]
