"""Images through the docker SDK: base images (pulled, or bootstrapped from Debian packages),
builds with the classic builder, tags, pushes, and cleaning up what sdt-build made."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sdt_build.build.context import ENV_FOLDER, BuildContext, EnvContext
from sdt_build.build.daemon import (LABEL, commit, container, docker_client, first_line, forget_bytecode, image_exists,
                                    sweep)
from sdt_build.build.render import ENV_MOUNT, UV_CACHE
from sdt_build.cache import cache_root, log_file
from sdt_build.owner import Owned
from sdt_build.progress import Event, OnEvent, Timings, ignore
from sdt_build.runtime.errors import BuildError, EnvironmentProblem, Problem
from sdt_build.target import DEBIAN_SUITES, target

BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PULL_RETRY_SECONDS = 3600  # a base image that could not be pulled is tried again after this
STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)")


@dataclass(frozen=True)
class BaseChoice:
    """The base image a build starts from, and why it was chosen."""

    image: str  # its name
    image_id: str  # what the daemon calls it; the content hash covers it
    reason: str  # why this one, for the output


def bootstrapped_base_tag(python: str) -> str:
    return f"sdt-base:{target(python).debian_suite or 'bookworm'}-py{python}"


def base_fix(python: str, wanted: str | None = None) -> str:
    """How to get a base image for ``python`` where none is present: bootstrapping only where a
    Debian release ships that Python, loading the official image everywhere."""
    if wanted:
        return f"pull or build {wanted} first, fix base_image in sdt.toml, or remove base_image to use the default"
    official = f"python:{python}-slim"
    load = (f"`docker pull {official}` (without Docker Hub here: `docker save {official}` where it is reachable and "
            "`docker load` it here)")
    if target(python).debian_suite:
        return f"{load}, or `sdt-build base --python {python}` (as root) to bootstrap one from Debian packages"
    return (f"{load}, set base_image in sdt.toml to an image with Python {python}, or set python in sdt.toml to "
            f"{' or '.join(sorted(DEBIAN_SUITES))} (`sdt-build base` bootstraps that one)")


def base_candidates(python: str, wanted: str | None = None) -> list[str]:
    """The base images a build may start from, in the order it tries them."""
    return [wanted] if wanted else [f"python:{python}-slim", bootstrapped_base_tag(python)]


def missing_base(client, python: str, wanted: str | None = None, *, ask_registry: bool = True) -> Problem | None:
    """Why a build would find no base image for ``python``, found without pulling: an error when
    none is here and the registry does not have it (asked for its manifest, or a pull failed within
    the hour), a warning when the build would have to pull one the registry was not asked about."""
    from docker.errors import APIError, NotFound

    candidates = base_candidates(python, wanted)
    if any(image_exists(client, ref) for ref in candidates):
        return None
    failed = _failed_pull(candidates[0])
    if failed is None and ask_registry:
        try:
            client.images.get_registry_data(candidates[0])
            return None
        except (APIError, NotFound) as exc:
            failed = _failed_pull(candidates[0], f"{candidates[0]} cannot be pulled: {first_line(exc)}")
    if failed is None:
        return Problem("SDT-E301", f"no base image for Python {python} here: the build pulls {candidates[0]}",
                       base_fix(python, wanted), severity="warning")
    return Problem("SDT-E301", f"no base image for Python {python}: {failed}", base_fix(python, wanted))


def choose_base(client, python: str, wanted: str | None = None) -> BaseChoice:
    """The base for ``python``: the one asked for, else python:X.Y-slim, else the bootstrapped one."""
    from docker.errors import APIError, ImageNotFound

    ref, *fallback = base_candidates(python, wanted)  # the first is pulled; a bootstrapped one cannot be
    if image_exists(client, ref):
        return BaseChoice(ref, client.images.get(ref).id, f"{ref} is present locally")
    failure = _failed_pull(ref)
    if failure is None:
        try:
            pulled = client.images.pull(ref)
            return BaseChoice(ref, pulled.id, f"pulled {ref}")
        except (APIError, ImageNotFound) as exc:
            failure = _failed_pull(ref, f"{ref} cannot be pulled: {first_line(exc)}")
    if wanted:
        raise BuildError("SDT-E301", f"base image {wanted} is neither present nor pullable", base_fix(python, wanted),
                         detail=failure)
    if image_exists(client, fallback[0]):
        return BaseChoice(fallback[0], client.images.get(fallback[0]).id,
                          f"{failure}; using {fallback[0]}, bootstrapped from Debian packages")
    raise BuildError("SDT-E301", f"no base image for Python {python}: {failure}", base_fix(python), detail=failure)


def _failed_pull(ref: str, failure: str | None = None) -> str | None:
    """Remember that ``ref`` could not be pulled (with ``failure``), or recall it for an hour: a
    registry that did not answer is not asked again on every build."""
    path = cache_root() / "unpullable" / re.sub(r"[^\w.-]", "_", ref)
    if failure is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(failure)
        return failure
    if path.is_file() and time.time() - path.stat().st_mtime < PULL_RETRY_SECONDS:
        return path.read_text()
    return None


def debian_mirror() -> str:
    """The Debian mirror apt already uses (SDT_DEBIAN_MIRROR overrides)."""
    if os.environ.get("SDT_DEBIAN_MIRROR"):
        return os.environ["SDT_DEBIAN_MIRROR"]
    sources = sorted(Path("/etc/apt").glob("sources.list.d/*.sources")) + [Path("/etc/apt/sources.list")]
    for path in sources:
        if not path.exists():
            continue
        for match in re.finditer(r"(?:^URIs:\s*|^deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", path.read_text(), re.M):
            uri = match.group(1)
            if uri.rstrip("/").endswith("/debian"):
                return uri
    return "http://deb.debian.org/debian"


def make_base_image(python: str = "3.11", *, force: bool = False, log_dir: Path | None = None,
                    say: Callable[[str], None] = lambda _: None) -> BaseChoice:
    """Bootstrap a minimal Debian with ``python`` (debootstrap) and import it as an image."""
    client = docker_client()
    tag = bootstrapped_base_tag(python)
    if image_exists(client, tag) and not force:
        return BaseChoice(tag, client.images.get(tag).id, f"{tag} already exists")
    suite = target(python).debian_suite
    if suite is None:
        raise EnvironmentProblem("SDT-E906", f"no Debian release ships Python {python} as its python3",
                                 base_fix(python))
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        raise EnvironmentProblem(
            "SDT-E903", "bootstrapping a base image needs root and debootstrap",
            "run `sdt-build base` as root with debootstrap installed (`apt-get install debootstrap`), or "
            "set base_image in sdt.toml "
            "to an image with Python you already have")
    log_path = log_file(f"base-{suite}-py{python}.log", log_dir)
    with tempfile.TemporaryDirectory(prefix="sdt-base-") as work:
        rootfs = Path(work) / "rootfs"
        mirror = debian_mirror()
        say(f"debootstrap {suite} from {mirror} (log: {log_path})")
        command = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                   suite, str(rootfs), mirror]
        with open(log_path, "w") as log:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise _bootstrap_failure(log_path)
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        tarball = Path(work) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        say(f"importing as {tag}")
        repository, _, version = tag.partition(":")
        client.api.import_image_from_file(
            str(tarball), repository=repository, tag=version,
            changes=["ENV LANG=C.UTF-8", 'CMD ["python3"]', f"LABEL {LABEL}.base=debootstrap-{suite}"])
    return BaseChoice(tag, client.images.get(tag).id, f"bootstrapped {tag} from {mirror}")


def _bootstrap_failure(log_path: Path) -> EnvironmentProblem:
    text = log_path.read_text(errors="replace")
    if "No space left" in text:
        return EnvironmentProblem("SDT-E904", "the disk filled up while bootstrapping the base image",
                                  "free space (docker system prune) and retry", log_path=log_path)
    return EnvironmentProblem(
        "SDT-E907", "debootstrap could not fetch Debian's packages",
        "check that the Debian mirror is reachable, or set SDT_DEBIAN_MIRROR to one that is",
        detail="\n".join(text.splitlines()[-5:]), log_path=log_path)


def build(client, context: Path, tag: str, *, dockerfile: str = "Dockerfile",
          labels: dict[str, str] | None = None, log_path: Path | None = None,
          buildargs: dict[str, str] | None = None, no_cache: bool = False,
          on_line: Callable[[str], None] = lambda _: None, timings: Timings | None = None,
          on_event: OnEvent = ignore, leave_out: tuple[str, ...] = ()) -> str:
    """Build ``context`` with host networking; return the image id. The whole log goes to a file;
    ``timings`` gets the context's transfer and each Dockerfile step (its layer's commit included).
    What ``.dockerignore`` names, and ``leave_out``, is not sent to the daemon."""
    from docker.errors import APIError, BuildError as DockerBuildError
    from docker.utils import tar

    log_path = log_path or log_file(f"build-{tag.replace('/', '_').replace(':', '-')}.log")
    timings = timings if timings is not None else Timings()
    image_id = None
    started = step_started = time.perf_counter()
    step = None
    with open(log_path, "w") as log:
        try:
            ignore = context / ".dockerignore"
            patterns = [line.strip() for line in ignore.read_text().splitlines()] if ignore.is_file() else []
            patterns = [p for p in patterns if p and not p.startswith("#")] + list(leave_out)
            sent = tar(str(context), exclude=patterns, dockerfile=(dockerfile, None))
            for chunk in client.api.build(fileobj=sent, custom_context=True, dockerfile=dockerfile, tag=tag,
                                          network_mode="host", rm=True, forcerm=True,
                                          labels=labels or {}, buildargs=buildargs or {},
                                          nocache=no_cache, decode=True):
                text = ANSI.sub("", chunk.get("stream") or chunk.get("status") or "")
                if text:
                    log.write(text)
                    for line in text.splitlines():
                        if line.strip():
                            on_line(line)
                        found = STEP.match(line)
                        if found:
                            now = time.perf_counter()
                            if step is None:
                                timings.add("build/context transfer", now - started)
                            else:
                                timings.add(f"build/{step}", now - step_started)
                            step, step_started = found.group(0)[:90], now
                            on_event(Event("build", int(found.group(1)), int(found.group(2)),
                                           detail=found.group(3)[:90]))
                if "error" in chunk:
                    log.write(ANSI.sub("", chunk["error"]) + "\n")
                    log.flush()
                    raise classify_build_error(chunk["error"], log_path)
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
        except (APIError, DockerBuildError) as exc:
            log.write(str(exc))
            log.flush()
            raise classify_build_error(str(exc), log_path) from exc
    if step is not None:
        timings.add(f"build/{step}", time.perf_counter() - step_started)
    on_event(Event("build", finished=True))
    return image_id or client.images.get(tag).id


def build_env_image(client, env: EnvContext, *, log_dir: Path | None = None, timings: Timings | None = None,
                    on_event: OnEvent = ignore) -> str:
    """Make the SDT environment image: run its install script in a container of the base image
    (no network; the inputs mounted read-only, uv's cache on a tmpfs) and commit that container.
    No wheel is copied into any layer. Returns the image id."""
    timings = timings if timings is not None else Timings()
    log_path = log_file(f"env-{env.content_hash}.log", log_dir)
    repository, tag = env.tag.split(":")
    with container(client, env.base_image, ["sh", f"{ENV_MOUNT}/install.sh"], role="env-build",
                   network_mode="none", user="0", volumes={str(env.directory): {"bind": ENV_MOUNT, "mode": "ro"}},
                   tmpfs={UV_CACHE: ""}) as install:
        with timings.phase("env/install"):
            on_event(Event("env", detail=f"installing {len(env.lock.sdt_layer)} packages in a container"))
            install.start()
            with open(log_path, "w") as log:
                for raw in install.logs(stream=True, follow=True):
                    text = raw.decode(errors="replace")
                    log.write(text)
                    for line in text.splitlines():
                        if line.strip():
                            on_event(Event("env", detail=line.strip()[:90]))
            status = install.wait()
        if status.get("StatusCode") != 0:
            raise _env_failure(log_path, status.get("StatusCode"))
        with timings.phase("env/commit"):
            on_event(Event("env", detail="committing the environment layer"))
            changes = ['CMD ["python3"]'] + [f'LABEL {k}="{v}"' for k, v in env.labels.items()]
            committed = commit(install, repository, tag, changes)
    forget_bytecode(client, env.tag)
    on_event(Event("env", finished=True))
    return committed.id


def _env_failure(log_path: Path, code) -> BuildError | EnvironmentProblem:
    text = log_path.read_text(errors="replace")
    if "no space left on device" in text.lower():
        return EnvironmentProblem("SDT-E904", "the disk filled up while making the SDT environment image",
                                  "free space (`docker system prune`, `sdt-build clean`) and retry", log_path=log_path)
    last = next((line for line in reversed(text.splitlines()) if line.strip()), f"exit {code}")
    return BuildError("SDT-E306", f"the SDT environment image could not be made: {last}",
                      "read its log; `sdt-build build --no-cache DIR` makes it again from fresh wheels",
                      detail="\n".join(text.splitlines()[-20:]), log_path=log_path)


def classify_build_error(message: str, log_path: Path) -> BuildError | EnvironmentProblem:
    """Name what went wrong in a failed build."""
    log = log_path.read_text(errors="replace") if log_path.exists() else message
    if "no space left on device" in log.lower():
        return EnvironmentProblem("SDT-E904", "the disk filled up during the build",
                                  "free space (`docker system prune`, `sdt-build clean`) and retry",
                                  log_path=log_path)
    if "pull access denied" in log or "manifest unknown" in log or "not found: manifest" in log:
        return BuildError("SDT-E301", "the base image is neither present nor pullable",
                          "run `sdt-build base` to bootstrap one, or set base_image in sdt.toml",
                          detail=message, log_path=log_path)
    said = [line.strip() for line in log.splitlines()  # pip's ERROR lines; uv's error and its cause
            if line.startswith(("ERROR:", "error:")) or line.strip().startswith("cause:")]
    if "pip" in log and said:
        return BuildError("SDT-E303", f"installing the plug's packages failed inside the build: {' '.join(said[-2:])}",
                          "run `sdt-build check --resolve DIR` to find the conflict before building",
                          detail=message, log_path=log_path)
    return BuildError("SDT-E302", f"the image build failed: {first_line(message)}",
                      f"read the build log at {log_path}", detail=message, log_path=log_path)


@dataclass(frozen=True)
class Image:
    """A built (or reused) image."""

    tag: str
    image_id: str
    size: int  # bytes
    skipped: bool  # the content hash was already an image
    seconds: float
    base: str
    log_path: Path | None = None
    pushed: str | None = None  # the pushed reference, when pushed

    def to_dict(self) -> dict:
        return {"tag": self.tag, "image_id": self.image_id, "size": self.size, "skipped": self.skipped,
                "seconds": round(self.seconds, 1), "base": self.base,
                "log": str(self.log_path) if self.log_path else None, "pushed": self.pushed}


def build_image(client, context: BuildContext, *, log_dir: Path | None = None, no_cache: bool = False,
                on_line: Callable[[str], None] = lambda _: None, timings: Timings | None = None,
                on_event: OnEvent = ignore) -> Image:
    """Build the context, or reuse the image its content hash names (``no_cache`` rebuilds anyway)."""
    started = time.perf_counter()
    if image_exists(client, context.tag) and not no_cache:
        found = client.images.get(context.tag)
        return Image(context.tag, found.id, found.attrs.get("Size", 0), True, time.perf_counter() - started,
                     context.base_image)
    log_path = log_file(f"build-{context.tag.replace('/', '_').replace(':', '-')}.log", log_dir)
    image_id = build(client, context.directory, context.tag, log_path=log_path,
                     buildargs=context.buildargs, no_cache=no_cache, on_line=on_line, timings=timings,
                     on_event=on_event, leave_out=(ENV_FOLDER,))
    built = client.images.get(image_id)
    return Image(context.tag, built.id, built.attrs.get("Size", 0), False, time.perf_counter() - started,
                 context.base_image, log_path)


def mark(client, image: Image, passed: bool) -> str:
    """After the smoke test: ``:latest`` for a passing image; a failing one is re-tagged
    ``<name>:smoke-failed-<hash>`` and loses its content tag, so it is never deployed by mistake."""
    repository, digest = image.tag.rsplit(":", 1)
    found = client.images.get(image.image_id)
    if passed:
        found.tag(repository, "latest")
        return f"{repository}:latest"
    found.tag(repository, f"smoke-failed-{digest}")
    client.images.remove(image.tag)
    return f"{repository}:smoke-failed-{digest}"


def push_image(client, image: Image, registry: str, *, on_line: Callable[[str], None] = lambda _: None) -> str:
    """Push ``image`` under ``registry`` as its content tag and as :latest (it passed the smoke
    test); returns the content-tag reference, which never moves."""
    name, tag = image.tag.rsplit(":", 1)
    repository = f"{registry.rstrip('/')}/{name}"
    for pushed in (tag, "latest"):
        client.images.get(image.image_id).tag(repository, pushed)
        _push(client, repository, pushed, on_line)
    return f"{repository}:{tag}"


def untag_pushed(client, reference: str) -> None:
    """Remove this machine's tags of a pushed image (its content tag and :latest under the registry),
    so that what runs it pulls it from the registry; the image stays under its local tag."""
    repository = reference.rsplit(":", 1)[0]
    for tag in (reference, f"{repository}:latest"):
        client.images.remove(tag)


def _push(client, repository: str, tag: str, on_line: Callable[[str], None]) -> None:
    from docker.errors import APIError

    try:
        for chunk in client.images.push(repository, tag, stream=True, decode=True):
            if "error" in chunk:
                raise BuildError("SDT-E305", f"pushing {repository}:{tag} failed: {chunk['error']}",
                                 "check the registry address and `docker login` for it",
                                 detail=str(chunk.get("errorDetail")))
            if chunk.get("status"):
                on_line(f"{chunk['status']} {chunk.get('progress', '')}".strip())
    except APIError as exc:
        raise BuildError("SDT-E305", f"pushing {repository}:{tag} failed: {first_line(exc)}",
                         "check the registry address and `docker login` for it", detail=str(exc)) from exc


def clean(client, *, images: bool = False, unowned: bool = False) -> tuple[list[Owned], list[str]]:
    """Remove the containers whose owner is gone (``daemon.sweep``; with ``unowned``, those that
    name none too), and every image sdt-build built and their bytecode volumes when asked. Returns
    every container found (removed or left, and why) and what images and volumes went.

    The classic builder's intermediate containers carry no labels (its API takes none for them);
    the daemon removes them itself when their step ends (``forcerm``), even when the client that
    started the build is gone."""
    found = sweep(client, unowned=unowned)
    removed = []
    if images:
        for image in client.images.list(filters={"label": f"{LABEL}.content-hash"}):
            client.images.remove(image.id, force=True)
            removed.extend(image.tags or [image.short_id])
        for volume in client.volumes.list(filters={"label": f"{LABEL}.role=bytecode"}):
            volume.remove(force=True)
            removed.append(f"volume {volume.name}")
    return found, removed
