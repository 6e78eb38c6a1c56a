"""`init`, `docs`, `check` and `lock`: the user's folder and its dependencies."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from sdt_build.cli.shell import Listed, Output, command, completing, lookup_progress, main, print_problem
from sdt_build.dependencies.resolve import BACKENDS
from sdt_build.runtime.errors import BuildError, DependencyConflict, Problem, SdtBuildError
from sdt_build.runtime.redact import shorten


def _examples() -> list[str]:
    from sdt_build.resources import example_names

    return example_names(starters=False)


def _clients() -> list[str]:
    from sdt_build.resources import client_names

    return client_names()


@command(main, "init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--example", cls=Listed, names=_examples, default="local-csv", show_default=True,
              help="Example to start from (broken-*: one common mistake each).")
@click.option("--client", "client_example", cls=Listed, names=_clients, default=None,
              help="Use this example client.py instead.")
@click.option("--force", is_flag=True, help="Write into a folder that already has files.")
def init_command(output: Output, directory: Path, example: str, client_example: str | None, force: bool) -> int:
    """Scaffold a user folder from an example."""
    from sdt_build.resources import copy_example
    from sdt_build.runtime.errors import ProjectError
    from sdt_build.userfolder.settings import name_project, project_name

    for kind, name, available in (("example", example, _examples()),
                                  ("example client", client_example, _clients())):
        if name is not None and name not in available:
            raise ProjectError("SDT-E120", f"there is no {kind} named {shorten(name, 80)!r}",
                               f"choose one of: {', '.join(available)}")
    if directory.exists() and any(directory.iterdir()) and not force:
        raise ProjectError("SDT-E121", f"{directory} already has files",
                           "choose an empty folder, or pass --force to overwrite")
    copy_example(example, directory, project_name(directory), client_example)
    name = name_project(directory)
    written = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
    output.emit({"ok": True, "directory": str(directory), "example": example, "name": name, "files": written})
    output.say(f"[green]created[/] {directory} (project {name}) from example {example}: {', '.join(written)}")
    output.say(f"next: sdt-build check {directory}")
    return 0


def _topics() -> list[str]:
    from sdt_build.resources import doc_topics

    return list(doc_topics())


@command(main, "docs")
@click.argument("topic", required=False, shell_complete=completing(_topics))
def docs_command(output: Output, topic: str | None) -> int:
    """Print a topic of sdt-build's docs (offline, as installed), or an error code's entry
    (SDT-E203); without TOPIC, list the topics."""
    from sdt_build.resources import doc_text, doc_topic, doc_topics

    topics = doc_topics()
    if topic is None:
        output.emit({"ok": True, "topics": [{"topic": name, "title": title} for name, title in topics.items()]})
        if not output.as_json:
            width = max(map(len, topics))
            click.echo("\n".join(f"{name:<{width}}  {title}" for name, title in topics.items()))
            output.say("read one: sdt-build docs TOPIC")
        return 0
    name, text = doc_topic(topic), doc_text(topic)
    output.emit({"ok": True, "topic": name, "title": topics[name], "text": text}, limit=None)  # the docs whole
    if not output.as_json:
        click.echo(text, nl=False)
    return 0


@command(main, "check")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--resolve", is_flag=True, help="Also run the full resolver (pip-compile or uv).")
@click.option("--offline", is_flag=True, help="Skip the index lookups (wheels, Requires-Python, names).")
@click.option("--resolver", type=click.Choice(BACKENDS), default="auto", show_default=True,
              envvar="SDT_RESOLVER", help="Resolver for --resolve.")
def check_command(output: Output, directory: Path, resolve: bool, offline: bool, resolver: str) -> int:
    """Validate the folder's contract, then its requirements against SDT's pinned set."""
    from sdt_build.dependencies.precheck import precheck
    from sdt_build.dependencies.resolve import lock
    from sdt_build.userfolder.project import inspect_project

    project, problems = inspect_project(directory)
    payload: dict[str, Any] = {"ok": False, "directory": str(directory),
                               "problems": [p.to_dict() for p in problems], "findings": []}
    for problem in problems:
        if not output.as_json:
            print_problem(problem)
    if project is None or any(p.severity == "error" for p in problems):
        output.emit(payload)
        return 1
    payload.update(name=project.name, python=project.settings.python, plug=project.plug.name,
                   client=project.client.name, requirements=list(project.requirement_lines),
                   env=[{"name": v.name, "required": v.required, "secret": v.secret} for v in project.env])
    base = _missing_base(project, offline)
    if base is not None:
        payload["problems"].append(base.to_dict())
        if not output.as_json:
            print_problem(base)
    started = time.perf_counter()
    findings = precheck(project, offline=offline, progress=lookup_progress(output))
    payload["findings"] = [f.to_dict() for f in findings]
    payload["precheck_seconds"] = round(time.perf_counter() - started, 3)
    for finding in findings:
        if not output.as_json:
            print_problem(finding.to_problem())
    errors = [f for f in findings if f.severity == "error"]
    if errors and not (resolve and all(f.code == "SDT-E230" for f in errors)):
        output.emit(payload)
        return 2
    if base is not None and base.severity == "error":
        output.emit(payload)
        return BuildError.exit_code
    if resolve:  # the pre-check ran once, above; a dependency clash it found goes to the resolver too
        try:
            result = lock(project, backend=resolver, findings=findings, confirm=bool(errors))
        except DependencyConflict as exc:
            if not errors:
                raise
            payload["resolver"] = exc.to_dict()
            output.say(f"[red]the resolver agrees[/]: {exc.code} {exc.cause}")
            output.emit(payload)
            return 2
        payload["lock"] = result.to_dict()
        if errors:
            output.say("[yellow]the resolver found a lock although the dependency walk did not[/]")
            output.emit(payload)
            return 2
        output.say(f"[green]resolved[/] {len(result.pins)} packages with {result.backend}"
                   f"{' (cached)' if result.cached else ''} in {result.seconds:.1f} s; "
                   f"plug adds/moves: {', '.join(f'{n}=={v}' for n, v in result.plug_layer.items()) or 'nothing'}")
    payload["ok"] = True
    output.emit(payload)
    output.say(f"[green]ok[/] {directory}: plug {project.plug.name}, client {project.client.name}, "
               f"Python {project.settings.python}, {len(project.requirement_lines)} extra requirement line(s)")
    return 0


def _missing_base(project, offline: bool) -> Problem | None:
    """What stops the build from finding a base image, when a Docker daemon is here to ask (check
    runs without one too); ``offline``: without asking the registry. A warning only, when the
    folder's client runs no image (a LocalClient): only `build` would need one."""
    from sdt_build.build.daemon import docker_client
    from sdt_build.build.image import missing_base
    from sdt_build.clients import load_client
    from sdt_build.runtime.errors import EnvironmentProblem

    try:
        client = docker_client()
    except EnvironmentProblem:
        return None
    problem = missing_base(client, project.settings.python, project.settings.base_image, ask_registry=not offline)
    if problem is None or problem.severity != "error":
        return problem
    try:
        runs_images = load_client(project).needs_image
    except SdtBuildError:
        runs_images = True  # named by `run`; the base image is still needed by a build
    if runs_images:
        return problem
    return replace(problem, cause=f"{problem.cause} (only `sdt-build build` needs it: {project.client.name} runs "
                                  "no image)", severity="warning")


@command(main, "lock")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--output", "output_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the lock (default: DIR/sdt.lock).")
@click.option("--resolver", type=click.Choice(BACKENDS), default="auto", show_default=True,
              envvar="SDT_RESOLVER", help="pip-compile (the target's Python) or uv (any target).")
@click.option("--no-cache", is_flag=True, help="Resolve again even when the inputs are unchanged.")
def lock_command(output: Output, directory: Path, output_file: Path | None, resolver: str, no_cache: bool) -> int:
    """Resolve the plug's requirements with SDT's pinned set and write the lock the image installs."""
    from sdt_build.dependencies.resolve import lock
    from sdt_build.userfolder.project import load_project

    project = load_project(directory, require_env=False)
    result = lock(project, backend=resolver, use_cache=not no_cache)
    target = output_file or project.root / "sdt.lock"
    target.write_text(result.text)
    output.emit({"ok": True, "lock_file": str(target), **result.to_dict()})
    for finding in result.findings:
        if not output.as_json:
            print_problem(finding.to_problem())
    output.say(f"[green]locked[/] {len(result.pins)} packages for Python {result.python} with {result.backend}"
               f"{' (cached)' if result.cached else ''} in {result.seconds:.1f} s → {target}")
    return 0
