"""The build context: a folder sdt-build writes (never the user's folder itself) with the plug's
wheels, the lock, sdt-build's runtime part, the user's files and the rendered Dockerfile; its
content hash names the image. Beside it, ``env/``: the SDT environment's inputs (SDT's locked
wheels, the install script, uv), whose own hash names the environment image every plug with the
same constraints and base starts FROM. ``env/`` never goes to the plug's build.

Only the files named here go in: the user's files through ``userfiles`` (secrets, caches and links
that leave the folder stay out), and of sdt-build only the runtime part an image needs (the plug
contract, the task, the smoke probe, the parity check), so a change elsewhere in sdt-build
(its CLI, say) leaves every image's hash as it was.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from sdt_build import __version__
from sdt_build.build.render import render_dockerfile, render_env_script
from sdt_build.cache import cache_root
from sdt_build.constraints import module_index, pins
from sdt_build.dependencies.resolve import ResolvedLock
from sdt_build.progress import OnEvent, ignore
from sdt_build.runtime.errors import BuildError
from sdt_build.runtime.redact import redact
from sdt_build.sources.wheels import download, download_sdists, link_into, read_wheel
from sdt_build.userfiles import IGNORED
from sdt_build.userfolder.project import UserProject

PACKAGE = Path(__file__).resolve().parent.parent


def runtime_files() -> list[str]:
    """What of sdt_build an image and every worker venv holds (paths in the package): its public
    facade and the runtime folder, whole."""
    return ["__init__.py", *sorted(path.relative_to(PACKAGE).as_posix() for path in (PACKAGE / "runtime").glob("*.py"))]


ENV_REPOSITORY = "sdt-env"
ENV_FOLDER = "env"  # the environment's inputs, beside the plug's context (never sent with it)


@dataclass(frozen=True)
class EnvContext:
    """The SDT environment image's inputs (``directory``: sdt.txt, install.sh, and once filled,
    wheels/ and uv) and the tag their hash gives."""

    directory: Path
    script: str
    content_hash: str
    base_image: str
    lock: ResolvedLock

    @property
    def tag(self) -> str:
        return f"{ENV_REPOSITORY}:{self.content_hash}"

    @property
    def labels(self) -> dict[str, str]:
        return {"io.sdt-build.content-hash": self.content_hash, "io.sdt-build.env": self.content_hash,
                "io.sdt-build.base": self.base_image, "io.sdt-build.version": __version__}


@dataclass(frozen=True)
class BuildContext:
    """Everything the image build needs, and the tag its content hash gives."""

    directory: Path
    dockerfile: str
    name: str
    content_hash: str
    base_image: str
    lock: ResolvedLock
    env: EnvContext
    labels: dict[str, str] = field(default_factory=dict)  # what the Dockerfile's last LABEL says
    # what of the plug's packages SDT's own code can see (``environment_inputs``)
    environment_inputs: dict = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.content_hash}"

    @property
    def buildargs(self) -> dict[str, str]:
        return {"SDT_ENV_IMAGE": self.env.tag}


def context_folder(project: UserProject, directory: Path | None = None) -> Path:
    """The folder a project's context is written to (emptied first)."""
    folder = directory or cache_root() / "contexts" / project.name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def environment(lock: ResolvedLock, base_image: str, base_id: str, folder: Path) -> EnvContext:
    """Write SDT's whole pinned set and the install script to ``folder/env`` and hash them with the
    base image's id and uv's version: the same SDT set on the same base is the same image, for
    every plug (the pins a plug moves are installed again in its own layer, which comes first)."""
    from importlib.metadata import version

    directory = folder / ENV_FOLDER
    directory.mkdir(parents=True, exist_ok=True)
    script = render_env_script(lock)
    lock_text = "".join(f"{n}=={v}\n" for n, v in sorted(env_pins(lock).items()))
    (directory / "install.sh").write_text(script)
    (directory / "sdt.txt").write_text(lock_text)
    digest = hashlib.sha256("\0".join([script, lock_text, base_id, version("uv")]).encode()).hexdigest()[:12]
    return EnvContext(directory, script, digest, base_image, lock)


def env_pins(lock: ResolvedLock) -> dict[str, str]:
    """What the environment image holds: SDT's pinned set for the lock's Python."""
    return pins(lock.python)


def fill_environment(env: EnvContext, *, log_dir: Path | None = None, on_event: OnEvent = ignore) -> None:
    """Download SDT's locked wheels for the target and link them (and uv) into the environment's folder."""
    pinned = env_pins(env.lock)
    wheels = _download(pinned, env.lock, log_dir, on_event)
    link_into([wheels[n] for n in pinned], env.directory / "wheels")
    _link_uv(env.directory)


def _link_uv(folder: Path) -> None:
    """uv, which installs the locked wheels inside the build: the environment's and the plug's."""
    from uv import find_uv_bin

    link_into([Path(find_uv_bin())], folder)


def assemble(project: UserProject, lock: ResolvedLock, env: EnvContext, *, folder: Path, log_dir: Path | None = None,
             on_event: OnEvent = ignore) -> BuildContext:
    """Download the plug's wheels for the target and write the plug's part of the context."""
    base_image = env.base_image
    wheels, sdists, build_wheels = wheelhouse(lock, log_dir or cache_root() / "logs", project.settings.build_sdists,
                                              on_event, plug_only=True)
    link_into([wheels[n] for n in lock.plug_layer if n in wheels], folder / "wheels" / "plug")
    link_into(list(sdists.values()), folder / "sdists")
    link_into(build_wheels, folder / "wheels" / "build")
    if lock.plug_layer or sdists:
        _link_uv(folder / "tools")
    (folder / "lock").mkdir()
    (folder / "lock" / "plug.txt").write_text("".join(f"{n}=={v}\n" for n, v in sorted(lock.plug_layer.items())))
    for relative in runtime_files():
        target = folder / "runtime" / "sdt_build" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PACKAGE / relative, target)
    project.files.copy(project.root, folder / "project")
    (folder / ".dockerignore").write_text("\n".join(f"**/{p}" for p in IGNORED) + "\n")
    digest = _content_hash(folder, render_dockerfile(project, lock, sdists=bool(sdists)), env.tag)
    labels = {"org.opencontainers.image.version": digest,
              "io.sdt-build.content-hash": digest, "io.sdt-build.lock-hash": lock.input_hash,
              "io.sdt-build.base": base_image, "io.sdt-build.env": env.tag, "io.sdt-build.version": __version__}
    source = _source_url(project.root)
    if source:
        labels["org.opencontainers.image.source"] = source
    dockerfile = render_dockerfile(project, lock, sdists=bool(sdists), labels=labels)
    (folder / "Dockerfile").write_text(dockerfile)
    return BuildContext(folder, dockerfile, project.name, digest, base_image, lock, env, labels,
                        environment_inputs(folder, lock, [wheels[n] for n in lock.plug_layer if n in wheels], sdists))


def environment_inputs(folder: Path, lock: ResolvedLock, plug_wheels: list[Path], sdists: dict[str, Path]) -> dict:
    """What SDT's own code in the image runs with besides the environment image: sdt-build's
    runtime part (hashed), the SDT pins the plug moves, the modules its wheels provide that SDT's
    set provides too (they come first on PYTHONPATH), and the packages built from source (whose
    modules are known only once built)."""
    runtime = hashlib.sha256()
    for path in sorted((folder / "runtime").rglob("*")):
        if path.is_file():
            runtime.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    provided = {module for path in plug_wheels for module in read_wheel(path).modules}
    return {"runtime": runtime.hexdigest(), "moved": sorted(lock.moved),
            "shadowed": sorted(provided & module_index(lock.python)), "from source": sorted(sdists)}


def _source_url(root: Path) -> str | None:
    """The folder's git remote, without credentials (never a local path: it says nothing in a registry)."""
    try:
        done = subprocess.run(["git", "-C", str(root), "config", "--get", "remote.origin.url"],
                              capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    url = done.stdout.strip()
    return redact(url) if done.returncode == 0 and url else None


def wheelhouse(lock: ResolvedLock, log_dir: Path, build_sdists: bool, on_event: OnEvent = ignore,
               plug_only: bool = False) -> tuple[dict[str, Path], dict[str, Path], list[Path]]:
    """Target wheels of the lock (``plug_only``: of the plug's layer); with ``build_sdists``, source
    archives (and their build requirements) for the plug's packages that have no wheel for the target."""
    from_source = _without_wheel(lock) if build_sdists and lock.plug_layer else {}
    wanted = lock.plug_layer if plug_only else lock.pins
    wheels = _download({n: v for n, v in wanted.items() if n not in from_source}, lock, log_dir, on_event)
    if not from_source:
        return wheels, {}, []
    log_path = _wheels_log(lock, log_dir)
    try:
        sdists, build_wheels = download_sdists(from_source, lock.python, log_path, lock.sources)
    except subprocess.CalledProcessError as exc:
        raise _no_wheel(lock, log_path) from exc
    return wheels, sdists, build_wheels


def _wheels_log(lock: ResolvedLock, log_dir: Path | None) -> Path:
    folder = log_dir or cache_root() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"wheels-{lock.input_hash[:8]}.log"


def _download(pins: dict[str, str], lock: ResolvedLock, log_dir: Path | None, on_event: OnEvent) -> dict[str, Path]:
    """Target wheels of ``pins`` (from the cache, else the indexes); SDT-E304 when one has none."""
    log_path = _wheels_log(lock, log_dir)
    try:
        return download(pins, lock.python, log_path, lock.sources, on_event, urls=lock.urls)
    except subprocess.CalledProcessError as exc:
        raise _no_wheel(lock, log_path) from exc


def _no_wheel(lock: ResolvedLock, log_path: Path) -> BuildError:
    text = log_path.read_text(errors="replace")
    missing = sorted(set(re.findall(r"No matching distribution found for (\S+)", text)))
    return BuildError("SDT-E304", f"no wheel for Python {lock.python} on linux x86_64: "
                      f"{', '.join(missing) or 'see the log'}",
                      "pin a version that has a wheel for the target, or set build_sdists = true in sdt.toml "
                      "(`sdt-build docs edge-cases`)", log_path=log_path)


def _without_wheel(lock: ResolvedLock) -> dict[str, str]:
    """The plug's pins whose release has no wheel for the target (per the indexes)."""
    from sdt_build.sources import index

    found, _ = index.look_up(lock.plug_layer, lock.python, lock.sources)
    missing = {}
    for name, releases in found.items():
        release = None if isinstance(releases, Exception) else \
            next((r for r in releases if str(r.version) == lock.plug_layer[name]), None)
        if release is not None and not release.wheel_for_target and release.has_sdist:
            missing[name] = lock.plug_layer[name]
    return missing


def _content_hash(folder: Path, dockerfile: str, env_tag: str) -> str:
    """Covers the plug's lock, the rendered template (without the labels that name the build),
    runtime and user code, and the environment image (whose tag covers SDT's lock, its script and the base image's id)."""
    digest = hashlib.sha256(dockerfile.encode() + b"\0" + env_tag.encode())
    for sub in ("lock", "runtime", "project"):
        for path in sorted((folder / sub).rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]
