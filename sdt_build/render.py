"""The Dockerfile, rendered from ``templates/Dockerfile.j2``: text from inputs, nothing else.

Deterministic, so dockerfiles/ can be checked against it; the template is the only place
Dockerfile text lives.
"""

from __future__ import annotations

from sdt_build.constraints import SDT_PACKAGE
from sdt_build.project import UserProject
from sdt_build.resolve import ResolvedLock
from sdt_build.resources import render_template

TEMPLATE = "Dockerfile.j2"
UID = 1000


def render_dockerfile(project: UserProject, lock: ResolvedLock, sdists: bool = False) -> str:
    """The Dockerfile text for ``project``, its lock and (``sdists``) source builds."""
    return render_template(
        TEMPLATE, name=project.name, python=lock.python, default_base=f"python:{lock.python}-slim", uid=UID,
        plug_packages=bool(lock.plug_layer), sdists=sdists, sdt_version=lock.pins.get(SDT_PACKAGE, "?"),
        plug_class=project.plug.name, client_class=project.client.name)
