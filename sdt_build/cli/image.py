"""`build` and `smoke`: an image or worker venv, and its smoke test."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

import click
from rich.markup import escape
from rich.table import Table

from sdt_build.build.smoke import PIPELINE_DAYS
from sdt_build.cli.shell import Output, command, err, main
from sdt_build.dependencies.resolve import BACKENDS
from sdt_build.runtime.errors import SmokeFailure
from sdt_build.runtime.keys import parse_key
from sdt_build.runtime.redact import shorten


def smoke_options(func: Callable) -> Callable:
    """The smoke test's options, the same on `build` and `smoke`."""
    for option in reversed((
            click.option("--sample-key", default=None,
                         help="Smoke-test get_data on this key (as run's --key: e.g. SITE, or '[13, 2011]')."),
            click.option("--pipeline-days", default=PIPELINE_DAYS, show_default=True, type=click.IntRange(min=0),
                         help="Days of real data for the smoke test's SDT pipeline step (0 skips it)."),
            click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), default=None,
                         help="Write the smoke test as JUnit XML."))):
        func = option(func)
    return func


@command(main, "build")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--push", "registry", is_flag=False, flag_value="", default=None,
              help="Push the image to this registry (host[:port][/path]); alone, to sdt.toml's registry.")
@click.option("--resolver", type=click.Choice(BACKENDS), default="auto", show_default=True,
              envvar="SDT_RESOLVER", help="pip-compile (the target's Python) or uv (any target).")
@click.option("--context-only", "context_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the build context (Dockerfile, wheels, lock, code) to this folder and stop.")
@click.option("--no-cache", is_flag=True, help="Rebuild every layer, even when the image exists.")
@click.option("--no-smoke", is_flag=True, help="Skip the smoke test (the image is still tagged :latest).")
@smoke_options
@click.option("--venv", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Instead of an image: a venv at this path (a shared file system, for SLURM) from the same "
                   "lock and wheels, smoke-tested.")
def build_command(output: Output, directory: Path, registry: str | None, resolver: str,
                  context_dir: Path | None, no_cache: bool, no_smoke: bool, sample_key: str | None,
                  pipeline_days: int, junit: Path | None, venv: Path | None) -> int:
    """Build the image the scheduler and workers run (skipped when nothing changed), or a venv (--venv)."""
    from sdt_build.pipeline import build_project, build_venv_project

    key = parse_key(sample_key) if sample_key else None
    if venv is not None:
        try:
            locked, built_venv = build_venv_project(directory, venv, resolver=resolver, smoke=not no_smoke,
                                                    sample_key=key, pipeline_days=pipeline_days, say=output.say)
        except SmokeFailure as exc:
            _report_smoke(output, junit, exc.report)
            raise
        _report_smoke(output, junit, built_venv.smoke)
        output.emit({"ok": True, "lock": locked.to_dict(), **built_venv.to_dict()})
        verb = "unchanged, install skipped" if built_venv.skipped else f"installed in {built_venv.seconds:.0f} s"
        output.say(f"[green]venv[/] {built_venv.path} (Python {built_venv.python}, content hash "
                   f"{built_venv.content_hash}) {verb}; "
                   + ("smoke test passed" if built_venv.smoke else "smoke test skipped"))
        return 0

    last = {"line": ""}

    def progress(line: str) -> None:
        if output.verbose:  # each build line; otherwise the steps show as progress
            output.detail(f"  [dim]{shorten(line, 300)}[/]")
        last["line"] = line

    try:
        with _progress(output) as on_event:
            built = build_project(directory, push=registry, resolver=resolver, context_dir=context_dir,
                                  context_only=context_dir is not None, no_cache=no_cache, smoke=not no_smoke,
                                  sample_key=key, pipeline_days=pipeline_days, say=output.say,
                                  on_line=progress, on_event=on_event)
    except SmokeFailure as exc:
        _report_smoke(output, junit, exc.report)
        raise
    _report_smoke(output, junit, built.smoke)
    payload = {"ok": True, "name": built.project.name, "base": built.context.base_image,
               "base_reason": built.base_reason, "context": str(built.context.directory),
               "content_hash": built.context.content_hash, "environment": built.context.env.tag,
               "environment_built": built.env_built, "lock": built.lock.to_dict(),
               "phases": built.timings.phases}
    if built.image is None:
        output.emit({**payload, "tag": built.context.tag})
        output.say(f"[green]context[/] written to {built.context.directory} (tag would be {built.context.tag})")
        return 0
    payload.update(built.image.to_dict())
    payload["smoke"] = built.smoke.to_dict() if built.smoke else None
    output.emit(payload)
    image = built.image
    seconds = built.timings.total(leaving=("smoke", "tag", "push"))  # the whole build, its environment too
    verb = "exists, build skipped" if image.skipped else f"built in {seconds:.0f} s"
    output.say(f"[green]image[/] {image.tag} ({image.size / 1e9:.2f} GB) {verb}; "
               + ("smoke test passed, " if built.smoke else "smoke test skipped, ") + "tagged :latest")
    if image.pushed:
        output.say(f"[green]pushed[/] {image.pushed}")
    return 0


@contextlib.contextmanager
def _progress(output: Output):
    """A listener that shows long steps as rich progress on stderr (nothing with --json or --quiet):
    the download (packages and bytes), the environment's install, each Dockerfile step, each smoke step."""
    from rich.filesize import decimal
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from sdt_build.progress import Event

    if not output.shows:
        yield lambda _: None
        return
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                   TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), TextColumn("[dim]{task.fields[detail]}"),
                   console=err)
    tasks: dict[str, int] = {}
    names = {"download": "download", "env": "environment", "build": "build steps", "smoke": "smoke steps"}

    def on_event(event: Event) -> None:
        if not tasks:  # drawn from the first event on: a build that stops before any prints no bar
            bar.start()
        if event.phase not in tasks:
            tasks[event.phase] = bar.add_task(names.get(event.phase, event.phase), total=event.total, unit="",
                                              detail="")
        task = tasks[event.phase]
        unit = ""
        if event.phase == "download":
            unit = f"{event.done}/{event.total} wheels, {decimal(event.bytes)}"
        elif event.total:
            unit = f"{min(event.done, event.total)}/{event.total}"
        if event.finished:
            total = bar.tasks[task].total
            if event.phase != "download":
                unit = f"{total:.0f}/{total:.0f}" if total else "done"
            bar.update(task, completed=total if total is not None else 1, total=total or 1, detail="", unit=unit)
        else:
            bar.update(task, completed=event.done, total=event.total, detail=escape(shorten(event.detail, 60)),
                       unit=unit)

    try:
        yield on_event
    finally:
        if tasks:
            bar.stop()


def _named_image(folder: str) -> str | None:
    """The image client.py's client names (it runs that one, not the folder's build)."""
    from sdt_build.clients import load_client
    from sdt_build.userfolder.project import load_project

    return load_client(load_project(folder, require_env=False)).image


def _pull(docker, image: str) -> None:
    from docker.errors import APIError

    try:
        docker.images.pull(image)
    except APIError:
        pass  # not pullable: said as SDT-E410 next


@command(main, "smoke")
@click.argument("target")
@smoke_options
@click.option("--project", "project_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="With an IMAGE: the plug folder to test in it (your own image).")
@click.option("--full", is_flag=True, help="Run every step, even those proved before for the same inputs.")
def smoke_command(output: Output, target: str, sample_key: str | None, pipeline_days: int, junit: Path | None,
                  project_dir: Path | None, full: bool) -> int:
    """Prove an image works and matches this client: TARGET is a project folder (its image) or an image."""
    from sdt_build.build.daemon import docker_client, image_exists
    from sdt_build.build.smoke import smoke_image
    from sdt_build.pipeline import build_project
    from sdt_build.runtime.errors import ProjectError
    from sdt_build.userfolder.project import load_project, runtime_env

    key = parse_key(sample_key) if sample_key else None
    if project_dir is not None and Path(target).is_dir():
        raise ProjectError("SDT-E123", "--project goes with an IMAGE; TARGET is already a project folder",
                           f"run `sdt-build smoke {target}`, or `sdt-build smoke IMAGE --project {target}`")
    if key is not None and project_dir is None and not Path(target).is_dir():
        raise ProjectError("SDT-E123", "--sample-key needs the plug, and an IMAGE alone does not name it",
                           f"add --project DIR (the folder with dataplug.py): sdt-build smoke {target} "
                           "--project DIR --sample-key …")
    if Path(target).is_dir() and _named_image(target):  # the image client.py runs
        project_dir, target = Path(target), _named_image(target)
    if Path(target).is_dir():  # build (skipped when unchanged), then smoke-test and tag
        try:
            with _progress(output) as on_event:
                report = build_project(target, sample_key=key, pipeline_days=pipeline_days, full_smoke=full,
                                       say=output.say, on_event=on_event).smoke
        except SmokeFailure as exc:
            _report_smoke(output, junit, exc.report)
            raise
    else:
        docker = docker_client()
        if not image_exists(docker, target) and project_dir is not None:  # client.py's image, from its registry
            _pull(docker, target)
        if not image_exists(docker, target):
            raise SmokeFailure("SDT-E410", f"{target} is neither a project folder nor a local image",
                               "pass a folder with dataplug.py, or an image (pull it first)")
        project = load_project(project_dir, require_env=False) if project_dir else None
        with _progress(output) as on_event:
            report = smoke_image(docker, target, project, sample_key=key, pipeline_days=pipeline_days,
                                 env=runtime_env(project) if project else None, on_event=on_event)
    _report_smoke(output, junit, report)
    if report.ok:
        output.emit(report.to_dict())
    else:
        raise report.failure()
    output.say(f"[green]smoke test passed[/] for {report.image} in {report.seconds:.0f} s")
    return 0


def _report_smoke(output: Output, junit: Path | None, report) -> None:
    """A smoke report as JUnit XML (when asked) and as tables (unless --json or --quiet, or when it failed)."""
    if report is None:
        return
    _write_junit(junit, report)
    if output.shows or (not report.ok and not output.as_json):
        _print_smoke(report)


def _write_junit(path: Path | None, report) -> None:
    from sdt_build.build.smoke import junit_xml

    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(junit_xml(report))


def _print_smoke(report) -> None:
    steps = Table(title=f"smoke test: {report.image}")  # an image, or a venv's path
    for column in ("step", "result", "seconds", "detail"):
        steps.add_column(column, overflow="fold")
    for step in report.steps:
        result = "[green]pass[/]" if step.ok else "[red]FAIL[/]"
        steps.add_row(step.name, result + (" [dim](proved before)[/]" if step.remembered else ""),
                      f"{step.seconds:.1f}", shorten(step.detail, 200))
    err.print(steps)
    parity = Table(title=f"parity: this client vs the {report.kind}")
    for column in ("package", "client", report.kind, "", "fix"):
        parity.add_column(column, overflow="fold")
    colors = {"ok": "green", "note": "cyan", "warning": "yellow", "error": "red"}
    for row in report.parity:
        parity.add_row(row.package, row.client or "-", row.other or "-",
                       f"[{colors[row.severity]}]{row.severity}[/]", row.fix)
    err.print(parity)
