"""The Dockerfile (``templates/Dockerfile.j2``) and the SDT environment's install script
(``templates/sdt-env.sh.j2``), rendered: text from inputs, nothing else.

Deterministic, so dockerfiles/ can be checked against it; the template is the only place
Dockerfile text lives.
"""

from __future__ import annotations

from sdt_build.build.daemon import BYTECODE_DIR
from sdt_build.constraints import SDT_PACKAGE, pins
from sdt_build.dependencies.resolve import ResolvedLock
from sdt_build.resources import render_template
from sdt_build.userfolder.project import UserProject

TEMPLATE = "Dockerfile.j2"
ENV_TEMPLATE = "sdt-env.sh.j2"
UID = 1000
ENV_MOUNT = "/mnt"  # where the environment's inputs are mounted while it is made (empty in every Debian)
UV_CACHE = "/tmp/uv-cache"  # uv's cache while it installs: a tmpfs, never part of the image


def render_dockerfile(project: UserProject, lock: ResolvedLock, sdists: bool = False,
                      labels: dict[str, str] | None = None) -> str:
    """The Dockerfile text for ``project``, its lock and (``sdists``) source builds; ``labels``
    (those that name one build) end it as one instruction."""
    return render_template(
        TEMPLATE, name=project.name, python=lock.python,
        plug_packages=bool(lock.plug_layer), sdists=sdists, sdt_version=lock.pins.get(SDT_PACKAGE, "?"),
        plug_class=project.plug.name, client_class=project.client.name, labels=labels or {})


def render_env_script(lock: ResolvedLock) -> str:
    """The shell script that makes the SDT environment image for ``lock``'s Python (SDT's pinned set)."""
    return render_template(ENV_TEMPLATE, python=lock.python, sdt_version=pins(lock.python).get(SDT_PACKAGE, "?"),
                           uid=UID, mount=ENV_MOUNT, uv_cache=UV_CACHE, bytecode=BYTECODE_DIR)
