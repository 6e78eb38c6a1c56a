"""The Docker daemon through its SDK: connecting (or saying why not), the labels every container
sdt-build starts carries (its role and its owner), containers that nothing interrupts while they
are made or removed, a throwaway container that runs one command (host network), and finding the
containers whose owner is gone."""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from typing import Iterator

from sdt_build.interrupt import shielded
from sdt_build.owner import UNOWNED, Owned, me, standing
from sdt_build.runtime.errors import EnvironmentProblem

LABEL = "io.sdt-build"
# Where the SDT environment image keeps a folder (owned by its user) for compiled bytecode: the
# containers sdt-build starts mount a Docker volume there (``bytecode_cache``). The image itself
# carries no bytecode, so it stays small.
BYTECODE_DIR = "/var/cache/sdt-bytecode"


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    output: str


def docker_client():
    """A connected docker SDK client, or EnvironmentProblem saying why not."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=600)
        client.ping()
        return client
    except DockerException as exc:
        raise classify_daemon_error(exc) from exc


def classify_daemon_error(exc: Exception) -> EnvironmentProblem:
    text = str(exc)
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if "Permission denied" in text or "PermissionError" in text:
        return EnvironmentProblem(
            "SDT-E902", f"permission denied on the Docker socket ({host})",
            "add your user to the docker group (then log in again), or run as root",
            detail=text)
    return EnvironmentProblem(
        "SDT-E901", f"no Docker daemon answers at {host}",
        "start Docker (`sudo systemctl start docker`, or open Docker Desktop); set DOCKER_HOST if it "
        "listens elsewhere. `sdt-build doctor` checks the machine", detail=text)


def image_exists(client, ref: str) -> bool:
    from docker.errors import APIError, ImageNotFound

    try:
        client.images.get(ref)
        return True
    except ImageNotFound:
        return False
    except APIError as exc:
        if exc.status_code == 400:  # not a reference the daemon reads (``:``): no image here has it
            return False
        raise


def bytecode_cache(client, image) -> tuple[dict, dict[str, str]]:
    """The volume and environment that let the containers of ``image`` (an image object) share one
    SDT environment's compiled bytecode: the first container that imports SDT compiles it, every
    later one (smoke tests, workers) loads it. Nothing for an image sdt-build did not build."""
    environment_tag = (image.labels or {}).get(f"{LABEL}.env")
    if not environment_tag:
        return {}, {}
    name = _bytecode_volume(environment_tag)
    from docker.errors import NotFound

    try:
        client.volumes.get(name)
    except NotFound:
        client.volumes.create(name, labels={f"{LABEL}.role": "bytecode", f"{LABEL}.env": environment_tag})
    return ({name: {"bind": BYTECODE_DIR, "mode": "rw"}},
            {"PYTHONPYCACHEPREFIX": BYTECODE_DIR, "PYTHONDONTWRITEBYTECODE": ""})


def forget_bytecode(client, environment_tag: str) -> None:
    """Drop the bytecode volume of an environment image made again (its files are new)."""
    from docker.errors import APIError, NotFound

    try:
        client.volumes.get(_bytecode_volume(environment_tag)).remove(force=True)
    except (NotFound, APIError):  # none yet, or a running container still uses it: it is checked per file
        pass


def _bytecode_volume(environment_tag: str) -> str:
    return "sdt-bytecode-" + environment_tag.rpartition(":")[2]


def labels(role: str, **more: str) -> dict[str, str]:
    """The labels of every container sdt-build starts: its role, its owner (this process; ``sweep``
    judges the container by it) and ``more`` (``cluster=…``)."""
    return {f"{LABEL}.role": role, f"{LABEL}.owner": str(me()), **{f"{LABEL}.{k}": v for k, v in more.items()}}


def commit(container, repository: str, tag: str, changes: list[str]):
    """Make an image of ``container``. Docker keeps a container's labels in the image it commits,
    and every container of that image (or of one built FROM it) would inherit them: the role and
    owner are emptied, and ``sweep`` passes over a container whose role is empty."""
    cleared = "LABEL " + " ".join(f'{key}=""' for key in labels(""))
    return container.commit(repository=repository, tag=tag, changes=[cleared, *changes])


def container_name(role: str) -> str:
    return f"sdt-{role}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def container(client, image: str, command: list[str], *, role: str, **options) -> Iterator:
    """A container of ``image`` (created, not started; pulled first when absent), labelled as this
    process's, for the block; removed when the block ends, however it ends. Neither its creation
    nor its removal can be cut short by a signal, so none is made that nothing removes."""
    if not image_exists(client, image):
        client.images.pull(image)
    made = []
    try:
        with shielded():
            made.append(client.containers.create(image, command, name=container_name(role), labels=labels(role),
                                                 **options))
        yield made[0]
    finally:
        with shielded():
            for each in made:
                remove(each)


def remove(container) -> None:
    """Remove a container, running or not; one already gone is fine."""
    from docker.errors import APIError, NotFound

    try:
        container.remove(force=True)
    except (NotFound, APIError):
        pass


def sweep(client, *, unowned: bool = False) -> list[Owned]:
    """Every container sdt-build started, with how its owner stands (``owner.standing``): those whose
    owner is gone are removed, and with ``unowned`` those that name no owner (made by older
    versions). A container whose owner runs, or runs on another host, is never touched."""
    found = []
    for each in client.containers.list(all=True, filters={"label": f"{LABEL}.role"}, ignore_removed=True):
        if not each.labels[f"{LABEL}.role"]:  # a label its image inherited (``commit``), not one of ours
            continue
        owner = each.labels.get(f"{LABEL}.owner")
        judged = standing(owner)
        leftover = judged.gone or (unowned and judged.state == UNOWNED)
        if leftover:
            remove(each)
        found.append(Owned("container", each.name, each.labels.get(f"{LABEL}.role", ""), owner, judged, leftover))
    return found


def run_command(client, image: str, command: list[str], *, env: dict[str, str] | None = None,
                user: str | None = None, timeout: float = 600, volumes: dict | None = None) -> CommandResult:
    """Run ``command`` in a throwaway container of ``image`` (host network) and collect its output."""
    with container(client, image, command, role="command", network_mode="host", environment=env or {},
                   user=user, volumes=volumes or {}) as running:
        running.start()
        status = running.wait(timeout=timeout)
        output = running.logs(stdout=True, stderr=True).decode(errors="replace")
        return CommandResult(int(status.get("StatusCode", 1)), output)


def first_line(exc: object) -> str:
    text = str(exc).strip()
    explanation = getattr(exc, "explanation", None)
    if explanation:
        text = str(explanation)
    return text.splitlines()[0] if text else type(exc).__name__
