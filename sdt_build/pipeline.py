"""The stages composed: folder → lock → context → image. The CLI and SDTDask both call these."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sdt_build.image import Image, build_image, choose_base, docker_client, push_image
from sdt_build.project import UserProject, load_project
from sdt_build.render import BuildContext, prepare
from sdt_build.resolve import ResolvedLock, lock


@dataclass(frozen=True)
class Built:
    project: UserProject
    lock: ResolvedLock
    context: BuildContext
    image: Image | None  # None when only the context was written
    base_reason: str


def build_project(path: str | Path, *, push: str | None = None, resolver: str = "auto",
                  context_dir: Path | None = None, context_only: bool = False, no_cache: bool = False,
                  say: Callable[[str], None] = lambda _: None,
                  on_line: Callable[[str], None] = lambda _: None) -> Built:
    """Check, lock, render and build ``path`` (skipped when its content hash is already an image)."""
    project = load_project(path, require_env=False)
    locked = lock(project, backend=resolver)
    say(f"lock: {len(locked.pins)} packages ({len(locked.plug_layer)} from the plug)"
        f"{', cached' if locked.cached else ''}")
    client = docker_client()
    base = choose_base(client, project.settings.python, project.settings.base_image)
    say(f"base: {base.image} ({base.reason})")
    context = prepare(project, locked, base.image, base.image_id, directory=context_dir)
    if context_only:
        return Built(project, locked, context, None, base.reason)
    image = build_image(client, context, no_cache=no_cache, on_line=on_line)
    if push:
        image = Image(**{**image.__dict__, "pushed": push_image(client, image, push, on_line=on_line)})
    return Built(project, locked, context, image, base.reason)
