"""The build context: a folder sdt-build writes (never the user's folder itself) with the target's
wheels, the lock, sdt-build's runtime part, the user's files and the rendered Dockerfile. Its
content hash names the image.

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
from sdt_build.cache import cache_root
from sdt_build.errors import BuildError
from sdt_build.project import UserProject
from sdt_build.redact import redact
from sdt_build.render import render_dockerfile
from sdt_build.resolve import ResolvedLock
from sdt_build.userfiles import IGNORED
from sdt_build.wheels import download, download_sdists, link_into

PACKAGE = Path(__file__).resolve().parent
# What of sdt_build an image (and every worker) needs: the plug contract, keys and result rows,
# the task, the smoke probe and the parity check.
RUNTIME = ("__init__.py", "errors.py", "plug.py", "keys.py", "rows.py", "task.py", "probe.py", "parity.py")


@dataclass(frozen=True)
class BuildContext:
    """Everything the image build needs, and the tag its content hash gives."""

    directory: Path
    dockerfile: str
    name: str
    content_hash: str
    base_image: str
    lock: ResolvedLock
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.content_hash}"


def assemble(project: UserProject, lock: ResolvedLock, base_image: str, base_id: str, *,
            directory: Path | None = None, log_dir: Path | None = None) -> BuildContext:
    """Download the wheelhouse for the target and write the build context folder."""
    folder = directory or cache_root() / "contexts" / project.name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    wheels, sdists, build_wheels = wheelhouse(lock, log_dir or cache_root() / "logs", project.settings.build_sdists)
    link_into([wheels[n] for n in lock.sdt_layer], folder / "wheels" / "sdt")
    link_into([wheels[n] for n in lock.plug_layer if n in wheels], folder / "wheels" / "plug")
    link_into(list(sdists.values()), folder / "sdists")
    link_into(build_wheels, folder / "wheels" / "build")
    (folder / "lock").mkdir()
    (folder / "lock" / "sdt.txt").write_text("".join(f"{n}=={v}\n" for n, v in sorted(lock.sdt_layer.items())))
    (folder / "lock" / "plug.txt").write_text("".join(f"{n}=={v}\n" for n, v in sorted(lock.plug_layer.items())))
    for relative in RUNTIME:
        target = folder / "runtime" / "sdt_build" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PACKAGE / relative, target)
    for relative in project.files.files:
        target = folder / "project" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project.root / relative, target)
        if relative.suffix == ".txt":  # requirement files may name an index with its credentials
            text = target.read_text(errors="replace")
            if redact(text) != text:
                target.write_text(redact(text))
    (folder / "project").mkdir(exist_ok=True)
    dockerfile = render_dockerfile(project, lock, sdists=bool(sdists))
    (folder / "Dockerfile").write_text(dockerfile)
    (folder / ".dockerignore").write_text("\n".join(f"**/{p}" for p in IGNORED) + "\n")
    digest = _content_hash(folder, dockerfile, base_id)
    labels = {"org.opencontainers.image.version": digest,
              "io.sdt-build.content-hash": digest, "io.sdt-build.lock-hash": lock.input_hash,
              "io.sdt-build.base": base_image, "io.sdt-build.version": __version__}
    source = _source_url(project.root)
    if source:
        labels["org.opencontainers.image.source"] = source
    return BuildContext(folder, dockerfile, project.name, digest, base_image, lock, labels)


def _source_url(root: Path) -> str | None:
    """The folder's git remote, without credentials (never a local path: it says nothing in a registry)."""
    try:
        done = subprocess.run(["git", "-C", str(root), "config", "--get", "remote.origin.url"],
                              capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    url = done.stdout.strip()
    return redact(url) if done.returncode == 0 and url else None


def wheelhouse(lock: ResolvedLock, log_dir: Path, build_sdists: bool
                ) -> tuple[dict[str, Path], dict[str, Path], list[Path]]:
    """Target wheels of the lock; with ``build_sdists``, source archives (and their build
    requirements) for the plug's packages that have no wheel for the target."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"wheels-{lock.input_hash[:8]}.log"
    from_source = _without_wheel(lock) if build_sdists else {}
    try:
        wheels = download({n: v for n, v in lock.pins.items() if n not in from_source}, lock.python, log_path,
                          lock.sources)
        sdists, build_wheels = download_sdists(from_source, lock.python, log_path, lock.sources) \
            if from_source else ({}, [])
    except subprocess.CalledProcessError as exc:
        text = log_path.read_text(errors="replace")
        missing = sorted(set(re.findall(r"No matching distribution found for (\S+)", text)))
        raise BuildError("SDT-E304", f"no wheel for Python {lock.python} on linux x86_64: "
                         f"{', '.join(missing) or 'see the log'}",
                         "pin a version that has a wheel for the target, or set build_sdists = true in sdt.toml "
                         "(docs/edge-cases.md)", log_path=log_path) from exc
    return wheels, sdists, build_wheels


def _without_wheel(lock: ResolvedLock) -> dict[str, str]:
    """The plug's pins whose release has no wheel for the target (per the indexes)."""
    from sdt_build import index

    found, _ = index.look_up(lock.plug_layer, lock.python, lock.sources)
    missing = {}
    for name, releases in found.items():
        release = None if isinstance(releases, Exception) else \
            next((r for r in releases if str(r.version) == lock.plug_layer[name]), None)
        if release is not None and not release.wheel_for_target and release.has_sdist:
            missing[name] = lock.plug_layer[name]
    return missing


def _content_hash(folder: Path, dockerfile: str, base_id: str) -> str:
    """Covers the lock, the rendered template, runtime and user code, and the base image's id."""
    digest = hashlib.sha256(dockerfile.encode() + b"\0" + base_id.encode())
    for sub in ("lock", "runtime", "project"):
        for path in sorted((folder / sub).rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]
