"""The build stages composed: folder → pre-check → lock → context → image → smoke test → tag (→ push).
The CLI and SDTDask both call this."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sdt_build.build.context import BuildContext, assemble, context_folder, environment, fill_environment
from sdt_build.build.daemon import docker_client, image_exists
from sdt_build.build.image import (BaseChoice, Image, bootstrapped_base_tag, build_env_image, build_image, choose_base,
                                   mark, push_image)
from sdt_build.build.smoke import PIPELINE_DAYS, SmokeReport, smoke_image
from sdt_build.build.workerenv import WorkerEnv, build_venv
from sdt_build.dependencies.resolve import ResolvedLock, lock
from sdt_build.progress import OnEvent, Timings, ignore
from sdt_build.runtime.errors import EnvironmentProblem, ProjectError
from sdt_build.userfolder.project import UserProject, load_project, runtime_env


@dataclass(frozen=True)
class Built:
    project: UserProject
    lock: ResolvedLock
    context: BuildContext
    image: Image | None  # None when only the context was written
    base_reason: str
    smoke: SmokeReport | None = None
    env_built: bool = False  # the SDT environment image was made by this build
    timings: Timings = field(default_factory=Timings)


def build_project(path: str | Path, *, push: str | None = None, resolver: str | None = None,
                  context_dir: Path | None = None, context_only: bool = False, no_cache: bool = False,
                  smoke: bool = True, sample_key: tuple | None = None, pipeline_days: int = PIPELINE_DAYS,
                  full_smoke: bool = False, say: Callable[[str], None] = lambda _: None,
                  on_line: Callable[[str], None] = lambda _: None, on_event: OnEvent = ignore) -> Built:
    """Check, lock, render, build and smoke-test ``path``.

    The resolver is ``resolver``, else $SDT_RESOLVER, else auto. The SDT environment image is made
    once per constraint set and base; the plug's image starts FROM it and is skipped when its
    content hash is already an image. Smoke steps proved before for the same inputs are not run
    again (``full_smoke`` or ``no_cache`` runs them all); SDT's pipeline step runs on
    ``pipeline_days`` days of real data (0 skips it). Only an image that passed the smoke test is
    tagged ``:latest`` or pushed; a failing one raises SmokeFailure (with the report).
    """
    timings = Timings()
    with timings.phase("load"):
        project = load_project(path, require_env=False)
    if push == "":  # --push with no value: the registry client.py names, else sdt.toml's
        push = client_registry(project) or project.settings.registry
        if not push:
            raise ProjectError("SDT-E122", "--push was given no registry and neither client.py nor sdt.toml "
                               "names one", 'pass --push HOST[:PORT][/PATH], or set registry = "…" in client.py '
                               "or sdt.toml")
    with timings.phase("lock") as record:
        locked = lock(project, backend=resolver or os.environ.get("SDT_RESOLVER") or "auto")
        record.update(packages=len(locked.pins), cached=locked.cached)
    say(f"lock: {len(locked.pins)} packages ({len(locked.plug_layer)} from the plug)"
        f"{', cached' if locked.cached else ''}")
    with timings.phase("base"):
        if context_only:
            base = _base_for_context(project)
        else:
            client = docker_client()
            base = choose_base(client, project.settings.python, project.settings.base_image)
    say(f"base: {base.image} ({base.reason})")
    folder = context_folder(project, context_dir)
    env = environment(locked, base.image, base.image_id, folder)
    make_env = context_only or no_cache or not image_exists(client, env.tag)
    if make_env:
        with timings.phase("download", packages=len(locked.sdt_layer)):
            fill_environment(env, on_event=on_event)
    with timings.phase("context") as record:
        context = assemble(project, locked, env, folder=folder, on_event=on_event)
        record["plug packages"] = len(locked.plug_layer)
    if context_only:
        return Built(project, locked, context, None, base.reason, timings=timings)
    if make_env:
        say(f"environment: making {env.tag} ({len(locked.sdt_layer)} packages, shared by every plug on this "
            "constraint set)")
        with timings.phase("environment"):
            build_env_image(client, env, timings=timings, on_event=on_event)
    else:
        say(f"environment: {env.tag} exists")
    with timings.phase("build") as record:
        image = build_image(client, context, no_cache=no_cache, on_line=on_line, timings=timings, on_event=on_event)
        record["skipped"] = image.skipped
    say(f"image: {image.tag} {'exists, build skipped' if image.skipped else f'built in {timings.total():.0f} s'}")
    report = None
    if smoke:
        with timings.phase("smoke"):
            report = smoke_image(client, image.tag, project, sample_key=sample_key, pipeline_days=pipeline_days,
                                 env=runtime_env(project), remember=not (full_smoke or no_cache),
                                 environment_inputs=context.environment_inputs, on_event=on_event)
        for step in report.steps:
            timings.add(f"smoke/{step.name}", 0.0 if step.remembered else step.seconds, remembered=step.remembered)
        if not report.ok:
            failed_tag = mark(client, image, passed=False)
            raise report.failure(also=f" (the image is tagged {failed_tag}, not :latest)")
    with timings.phase("tag"):
        mark(client, image, passed=True)
    if push:
        with timings.phase("push"):
            image = Image(**{**image.__dict__, "pushed": push_image(client, image, push, on_line=on_line)})
    return Built(project, locked, context, image, base.reason, report, make_env, timings)


def build_venv_project(path: str | Path, venv: Path, *, resolver: str | None = None, smoke: bool = True,
                       sample_key: tuple | None = None, pipeline_days: int = PIPELINE_DAYS,
                       say: Callable[[str], None] = lambda _: None) -> tuple[ResolvedLock, WorkerEnv]:
    """Check and lock ``path`` as for an image, then install the same lock and wheels into the venv
    ``venv`` (skipped when unchanged) and smoke-test it there. No Docker daemon is needed."""
    project = load_project(path, require_env=False)
    locked = lock(project, backend=resolver or os.environ.get("SDT_RESOLVER") or "auto")
    say(f"lock: {len(locked.pins)} packages ({len(locked.plug_layer)} from the plug)"
        f"{', cached' if locked.cached else ''}")
    if smoke:
        say("smoke test in the venv: imports, the plug, pip check, dask entry points, a real SDT pipeline, parity")
    built = build_venv(project, locked, venv, smoke=smoke, sample_key=sample_key, pipeline_days=pipeline_days,
                       env=runtime_env(project))
    return locked, built


def client_registry(project: UserProject) -> str | None:
    """The registry client.py's client pushes to (its ``registry``), if any."""
    from sdt_build.clients import load_client

    return load_client(project).registry


def _base_for_context(project: UserProject) -> BaseChoice:
    """The base a context is rendered for; with no Docker daemon, the named one unresolved.

    Without a daemon the base's image id is unknown, so the content hash covers its name only
    (``unresolved:<name>``): a later build with the daemon gets its own tag.
    """
    try:
        client = docker_client()
    except EnvironmentProblem:
        ref = project.settings.base_image or bootstrapped_base_tag(project.settings.python)
        return BaseChoice(ref, f"unresolved:{ref}", f"no Docker daemon: {ref} not resolved, so the content hash "
                          "covers its name, not its image id")
    return choose_base(client, project.settings.python, project.settings.base_image)
