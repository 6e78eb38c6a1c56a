"""The Docker daemon through its SDK: connecting (or saying why not), labels that mark what
sdt-build starts, and a throwaway container that runs one command (host network)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sdt_build.errors import EnvironmentProblem

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
    from docker.errors import ImageNotFound

    try:
        client.images.get(ref)
        return True
    except ImageNotFound:
        return False


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


def run_command(client, image: str, command: list[str], *, env: dict[str, str] | None = None,
                user: str | None = None, timeout: float = 600, volumes: dict | None = None) -> CommandResult:
    """Run ``command`` in a throwaway container of ``image`` (host network) and collect its output."""
    container = client.containers.run(image, command, detach=True, network_mode="host",
                                      environment=env or {}, user=user, volumes=volumes or {},
                                      labels={f"{LABEL}.role": "command"})
    try:
        status = container.wait(timeout=timeout)
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
        return CommandResult(int(status.get("StatusCode", 1)), output)
    finally:
        container.remove(force=True)


def first_line(exc: object) -> str:
    text = str(exc).strip()
    explanation = getattr(exc, "explanation", None)
    if explanation:
        text = str(explanation)
    return text.splitlines()[0] if text else type(exc).__name__
