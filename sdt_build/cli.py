"""The `sdt-build` command: a thin shell over the pipeline functions. Only this module prints."""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import sys
import tempfile
import textwrap
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.markup import RE_TAGS, escape
from rich.table import Table
from rich.text import Text

from sdt_build import __version__
from sdt_build.errors import (EXIT_CODES, INTERNAL_ERROR, INTERRUPTED, BuildError, DependencyConflict, Problem,
                              SdtBuildError, SmokeFailure, counted)
from sdt_build.interrupt import shielded, terminate_as_interrupt
from sdt_build.keys import key_text, parse_key, read_keys_file
from sdt_build.redact import dumps, redact, shorten
from sdt_build.resolve import BACKENDS
from sdt_build.smoke import PIPELINE_DAYS

TABLE_ROWS = 50  # rows a run prints (a fleet's rows are read in its output folder)
REPORT_COLUMNS = {"capacity": "capacity", "quality score": "quality", "clearness score": "clearness",
                  "inverter clipping": "clipping", "clipped fraction": "clipped", "capacity change": "cap. change",
                  "time shift correction": "time shift", "time zone correction": "tz fix",
                  "data quality warning": "quality warn", "seconds total": "seconds"}
STYLES = frozenset({"bold", "dim", "red", "green", "yellow", "cyan"})  # the only markup this module writes

ECHO_LIMIT = 10_000  # characters of one string in --json: whatever a user's file held, never megabytes of it


class Redacted:
    """A text stream whose every write goes through ``redact``: no credential reaches the terminal."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(redact(text))

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def own_markup(text: str) -> str:
    """Text whose only markup is this module's own styles: every other bracket (an extra in
    `pip install "sdt-build[local]"`, a key, a user's message) is escaped, so it prints as written."""
    def keep(tag) -> str:
        ours = not tag[2] and (tag[3] == "/" or set(tag[3].split()) <= STYLES)
        return tag[0] if ours else escape(tag[0])

    return RE_TAGS.sub(keep, text)


class MaskedConsole(Console):
    """A rich console that masks text before rendering it (once rendered, a long secret may be
    folded over lines, where masking the written text could no longer find it), and renders every
    string, a table's cells too, with only this module's styles as markup."""

    def print(self, *objects: Any, **options: Any) -> None:
        super().print(*(redact(o) if isinstance(o, str) else o for o in objects), **options)

    def render_str(self, text: str, **options: Any):
        return super().render_str(own_markup(text) if options.get("markup") is not False else text, **options)


def _console(stream) -> MaskedConsole:
    return MaskedConsole(file=Redacted(stream), width=None if stream.isatty() else 160, emoji=False)


out, err = _console(sys.stdout), _console(sys.stderr)


class Output:
    """Human output (rich) or one JSON document on stdout (``--json``). ``quiet``: errors and warnings
    only; ``verbose``: every detail too (each build line, each key as it finishes, its warnings)."""

    def __init__(self, as_json: bool, debug: bool, quiet: bool = False, verbose: bool = False):
        self.as_json = as_json
        self.debug = debug
        self.quiet = quiet
        self.verbose = verbose and not quiet

    @property
    def shows(self) -> bool:
        """Whether progress, tables and information lines are printed."""
        return not self.as_json and not self.quiet

    def say(self, message: str) -> None:
        if self.shows:
            err.print(message, highlight=False)

    def detail(self, message: str) -> None:
        if self.verbose and not self.as_json:
            err.print(message, highlight=False)

    def warn(self, message: str) -> None:
        if not self.as_json:
            err.print(f"[yellow]warning[/] {message}", highlight=False)

    def emit(self, payload: dict[str, Any], limit: int | None = ECHO_LIMIT) -> None:
        """``payload`` as the command's one JSON document; each string cut to ``limit`` (what a
        user's files hold), unless it is sdt-build's own text (``None``)."""
        if self.as_json:
            click.echo(dumps(payload, limit, indent=2))


def command(group: click.Group, name: str | None = None):
    """A subcommand with --json, --quiet, --verbose and --debug whose errors print as cause + fix,
    never a traceback. SIGTERM stops it as Ctrl-C does: what it started is removed, exit 143."""

    def wrap(fn: Callable) -> click.Command:
        @click.option("--json", "as_json", is_flag=True, help="Print one JSON document (for CI).")
        @click.option("--quiet", "-q", is_flag=True, help="Print errors and warnings only.")
        @click.option("--verbose", "-v", is_flag=True, help="Print every detail (build lines, each key as it "
                      "finishes, its warnings).")
        @click.option("--debug", is_flag=True, help="Show tracebacks.")
        @functools.wraps(fn)
        def run(as_json: bool, quiet: bool, verbose: bool, debug: bool, **kwargs):
            output = Output(as_json, debug, quiet, verbose)
            _mask_standard_streams()
            try:
                with terminate_as_interrupt():
                    code = fn(output, **kwargs)
            except SdtBuildError as exc:
                _print_error(output, exc)
                sys.exit(exc.exit_code)
            except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (interrupt.Interrupted)
                name = getattr(exc, "signal", "SIGINT")
                with shielded():  # everything is cleaned up: another signal would only print a traceback
                    output.emit({"ok": False, "interrupted": name})
                    if not output.as_json:
                        err.print(f"[yellow]interrupted[/] ({name})", highlight=False)
                sys.exit(getattr(exc, "exit_code", INTERRUPTED))
            except Exception as exc:  # a bug of ours: say so, keep the traceback in a file
                _print_internal(output, exc)
                sys.exit(INTERNAL_ERROR)
            sys.exit(code or 0)

        return group.command(name)(run)

    return wrap


def _mask_standard_streams() -> None:
    """What libraries write to this process's stdout and stderr (their log handlers, created when
    they are first imported) is masked as the console's output is."""
    if not isinstance(sys.stdout, Redacted):
        sys.stdout = Redacted(sys.stdout)
    if not isinstance(sys.stderr, Redacted):
        sys.stderr = Redacted(sys.stderr)


def _print_error(output: Output, exc: SdtBuildError) -> None:
    if output.as_json:
        output.emit({"ok": False, "error": exc.to_dict()})
        return
    problems = exc.problems or (Problem(exc.code, exc.cause, exc.fix),)
    for problem in problems:
        _print_problem(problem)
    if exc.detail and (output.debug or not exc.problems):
        err.print(Text(shorten(exc.detail.strip(), 2000, tail=True), style="dim"), highlight=False)
    if exc.log_path:
        err.print(f"  full log: {exc.log_path}", highlight=False)
    if output.debug:
        err.print("".join(traceback.format_exception(exc)), highlight=False)


def _print_problem(problem: Problem) -> None:
    color = {"error": "red", "warning": "yellow"}.get(problem.severity, "cyan")
    where = (" ", (problem.location, "dim")) if problem.location else ()
    # Text, not markup: a cause or fix prints as written, whatever brackets it holds
    err.print(Text.assemble((problem.code, f"bold {color}"), " ", problem.cause, *where), highlight=False)
    err.print(Text.assemble("  ", ("fix:", "green"), " ", problem.fix), highlight=False)


def _print_internal(output: Output, exc: Exception) -> None:
    log = Path(tempfile.gettempdir()) / f"sdt-build-crash-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log.write_text(redact("".join(traceback.format_exception(exc))))
    payload = {"code": "SDT-E999", "cause": redact(f"internal error: {type(exc).__name__}: {exc}"),
               "fix": f"please report it with the traceback in {log}", "log": str(log)}
    if output.as_json:
        output.emit({"ok": False, "error": payload})
    else:
        err.print(f"[bold red]SDT-E999[/] {payload['cause']}\n  [green]fix:[/] {payload['fix']}",
                  highlight=False)
        if output.debug:
            err.print(log.read_text(), highlight=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()))
@click.version_option(__version__, prog_name="sdt-build")
def main() -> None:
    """Check, build, smoke-test and run Solar Data Tools projects (dataplug.py + client.py)."""


class Listed(click.Option):
    """An option whose help ends with the names it takes, read when the help is shown (from what
    the installed package ships). Not click.Choice: an unknown name stays SDT-E120 (exit 1, --json)."""

    def __init__(self, *args: Any, names: Callable[[], list[str]], **kwargs: Any):
        super().__init__(*args, shell_complete=_completing(names), **kwargs)
        self.names = names

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        record = super().get_help_record(ctx)
        names = textwrap.fill(f"One of: {', '.join(self.names())}.", 56, break_on_hyphens=False)
        return record and (record[0], f"{record[1]}\n\n\b\n{names}")  # \b: click keeps the lines as they are


def _completing(names: Callable[[], list[str]]) -> Callable[..., list[str]]:
    """Shell completion (click's) from the names the installed package ships."""
    return lambda ctx, param, incomplete: [n for n in names() if n.startswith(incomplete)]


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
    from sdt_build.errors import ProjectError
    from sdt_build.resources import copy_example
    from sdt_build.settings import name_project, project_name

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
@click.argument("topic", required=False, shell_complete=_completing(_topics))
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
    from sdt_build.precheck import precheck
    from sdt_build.project import inspect_project
    from sdt_build.resolve import lock

    project, problems = inspect_project(directory)
    payload: dict[str, Any] = {"ok": False, "directory": str(directory),
                               "problems": [p.to_dict() for p in problems], "findings": []}
    for problem in problems:
        if not output.as_json:
            _print_problem(problem)
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
            _print_problem(base)
    started = time.perf_counter()
    findings = precheck(project, offline=offline, progress=_lookup_progress(output))
    payload["findings"] = [f.to_dict() for f in findings]
    payload["precheck_seconds"] = round(time.perf_counter() - started, 3)
    for finding in findings:
        if not output.as_json:
            _print_problem(finding.to_problem())
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
    from sdt_build.clients import load_client
    from sdt_build.daemon import docker_client
    from sdt_build.errors import EnvironmentProblem
    from sdt_build.image import missing_base

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
    from sdt_build.project import load_project
    from sdt_build.resolve import lock

    project = load_project(directory, require_env=False)
    result = lock(project, backend=resolver, use_cache=not no_cache)
    target = output_file or project.root / "sdt.lock"
    target.write_text(result.text)
    output.emit({"ok": True, "lock_file": str(target), **result.to_dict()})
    for finding in result.findings:
        if not output.as_json:
            _print_problem(finding.to_problem())
    output.say(f"[green]locked[/] {len(result.pins)} packages for Python {result.python} with {result.backend}"
               f"{' (cached)' if result.cached else ''} in {result.seconds:.1f} s → {target}")
    return 0


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
    from sdt_build.project import load_project

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
    from sdt_build.errors import ProjectError
    from sdt_build.daemon import docker_client, image_exists
    from sdt_build.pipeline import build_project
    from sdt_build.project import load_project, runtime_env
    from sdt_build.smoke import smoke_image

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


def _lookup_progress(output: Output) -> Callable[[int, int], None]:
    """Index look-ups as they finish: a line when they start, then one per tenth done."""
    from sdt_build.index import budget_seconds

    def progress(done: int, total: int) -> None:
        if done == 0:
            output.say(f"looking up {total} package(s) on the indexes (at most {budget_seconds():.0f} s)")
        elif done == total or done % max(1, total // 10) == 0:
            output.say(f"  [dim]looked up {done}/{total}[/]")

    return progress


def _report_smoke(output: Output, junit: Path | None, report) -> None:
    """A smoke report as JUnit XML (when asked) and as tables (unless --json or --quiet, or when it failed)."""
    if report is None:
        return
    _write_junit(junit, report)
    if output.shows or (not report.ok and not output.as_json):
        _print_smoke(report)


def _write_junit(path: Path | None, report) -> None:
    from sdt_build.smoke import junit_xml

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


@command(main, "clean")
@click.option("--images", is_flag=True, help="Also remove every image sdt-build built (and its bytecode volumes).")
@click.option("--cache", is_flag=True, help="Also empty sdt-build's cache (wheels, locks, contexts, logs).")
@click.option("--unowned", is_flag=True, help="Also remove sdt-build containers that name no owner (made by "
              "versions before owner labels): only when you know none of them is in use.")
def clean_command(output: Output, images: bool, cache: bool, unowned: bool) -> int:
    """Remove what sdt-build left behind: containers and SLURM jobs whose owner process on this
    machine is gone (never those of a run, build or smoke test still going, nor another host's), and
    optionally images and caches."""
    from sdt_build.cache import cache_root
    from sdt_build.clients.slurm import cancel_leftovers, slurm_command
    from sdt_build.daemon import docker_client
    from sdt_build.errors import EnvironmentProblem
    from sdt_build.image import clean
    from sdt_build.owner import UNOWNED

    slurm = slurm_command("squeue", "--version") is not None
    found = cancel_leftovers() if slurm else []
    try:
        containers, removed_images = clean(docker_client(), images=images, unowned=unowned)
    except EnvironmentProblem:
        if not slurm:
            raise  # neither Docker nor SLURM here: say what is missing
        containers, removed_images = [], []  # an HPC login node: no Docker daemon
    found += containers
    emptied = []
    if cache and cache_root().exists():
        shutil.rmtree(cache_root())
        emptied.append(str(cache_root()))
    removed, left = [f for f in found if f.removed], [f for f in found if not f.removed]
    output.emit({"ok": True, "removed": [f.to_dict() for f in removed], "left": [f.to_dict() for f in left],
                 "images": removed_images, "cache": emptied})
    for each in found:
        output.say(f"{'[green]removed[/]' if each.removed else '[dim]left[/]'} {each.kind} {each.name} ({each.role}): "
                   f"{each.standing.why}")
    if any(f.standing.state == UNOWNED for f in left):
        output.say("  `sdt-build clean --unowned` removes those that name no owner, when you know none is in use")
    jobs = sum(f.kind == "SLURM job" for f in removed)
    output.say(f"[green]removed[/] {len(removed) - jobs} container(s) whose owner is gone, left {len(left)}, "
               f"{len(removed_images)} image(s)" + (f", cancelled {jobs} SLURM job(s)" if jobs else "")
               + (f", cache {cache_root()}" if cache else ""))
    return 0


@command(main, "base")
@click.option("--python", "python", default="3.11", show_default=True, help="Target Python (X.Y).")
@click.option("--force", is_flag=True, help="Bootstrap again even when the image exists.")
def base_command(output: Output, python: str, force: bool) -> int:
    """Bootstrap a base image from Debian packages (for machines that cannot pull python:X.Y-slim)."""
    from sdt_build.image import make_base_image

    choice = make_base_image(python, force=force, say=output.say)
    output.emit({"ok": True, "image": choice.image, "image_id": choice.image_id, "reason": choice.reason})
    output.say(f"[green]base[/] {choice.image} ({choice.reason})")
    return 0


@command(main, "doctor")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path), required=False)
def doctor_command(output: Output, directory: Path | None) -> int:
    """Check this machine for the journey: Docker, base image, indexes, disk, registry, client. The
    checks are the command's result: they go to stdout (with --quiet, those that are not ok)."""
    from sdt_build.doctor import diagnose

    checks = diagnose(directory)
    failed = any(c.status == "fail" for c in checks)
    output.emit({"ok": not failed, "checks": [c.to_dict() for c in checks]})
    colors = {"ok": "green", "warning": "yellow", "fail": "red"}
    for check in checks:
        if not output.as_json and (output.shows or check.status != "ok"):
            out.print(f"[{colors[check.status]}]{check.status:>7}[/] {check.name}: {check.detail}"
                      + (f"  [green]fix:[/] {check.fix}" if check.fix else ""), highlight=False)
    return 10 if failed else 0


@command(main, "run")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--key", "keys", multiple=True, help="A key: JSON when it starts with [, { or \" (e.g. '[13, [2011, "
              "2012]]'), else one text field as written (12E4 stays text).")
@click.option("--keys", "keys_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Keys from a JSON file (a list of keys, JSON's types) or a CSV file (one key per row, every "
                   "field text as written; lines starting with # are skipped).")
@click.option("--output", "output_dir", type=click.Path(path_type=Path), default=None,
              help="Where results go (default: sdt-results/<name>).")
@click.option("--resume", is_flag=True, help="Run only the keys without a finished row in --output.")
@click.option("--force", is_flag=True, help="Discard the rows already in --output and run every key.")
@click.option("--timeout", type=float, default=None, help="Seconds one key may run (default: no limit).")
@click.option("--retries", type=int, default=1, show_default=True, help="Extra attempts for a key whose worker died.")
@click.option("--loss-analysis", is_flag=True, help="Also run SDT's loss factor analysis (sites over a year).")
@click.option("--max-in-flight", type=int, default=None, help="Keys submitted at once (default: 2 × threads).")
@click.option("--lost-cluster-timeout", type=float, default=60, show_default=True,
              help="Seconds the cluster may have no worker left before the run ends (workers that come back "
                   "are waited for).")
@click.option("--plots", "plots", type=int, default=3, show_default=True,
              help="The first keys run keep SDT's own figures (heatmap, daily energy) for the report.")
@click.option("--plot-key", "plot_keys", multiple=True, help="Keep SDT's figures of this key too (as --key).")
@click.option("--upstream-fixes/--no-upstream-fixes", default=None,
              help="Apply sdt-build's fixes to libraries SDT runs on, on every worker (default: sdt.toml's "
                   "upstream_fixes, on).")
@click.option("--worker-profile", is_flag=True,
              help="Run Dask's profiler on the workers, for the profile in dask-report.html (off: it costs about "
                   "10% of a site's time).")
@click.option("--image", default=None, help="Image the scheduler and workers run (default: the client's).")
@click.option("--dry-run", is_flag=True, help="Print the cluster spec the client would create, and its problems.")
def run_command(output: Output, directory: Path, keys: tuple[str, ...], keys_file: Path | None,
                output_dir: Path | None, resume: bool, force: bool, timeout: float | None, retries: int,
                loss_analysis: bool, max_in_flight: int | None, lost_cluster_timeout: float, plots: int,
                plot_keys: tuple[str, ...], upstream_fixes: bool | None, worker_profile: bool, image: str | None,
                dry_run: bool) -> int:
    """Run SDT's pipeline for every key on the client from client.py."""
    from sdt_build.sdtdask import SDTDask

    chosen = [parse_key(k) for k in keys] + (read_keys_file(keys_file) if keys_file else [])
    runner = SDTDask(directory, image=image)
    if dry_run:
        spec = runner.client.dry_run(runner.image)
        output.emit({"ok": not spec["problems"], **spec})
        if not output.as_json:
            out.print_json(json.dumps({k: v for k, v in spec.items() if k not in ("problems", "job_script")},
                                      default=str))
            if spec.get("job_script"):  # what a batch system is given, as it is given
                out.print(spec["job_script"], highlight=False, markup=False, soft_wrap=True)
            for problem in spec["problems"]:
                err.print(f"[red]problem[/] {problem}", highlight=False)
        return 5 if spec["problems"] else 0
    output_dir = output_dir or Path("sdt-results") / runner.project.name
    workers = counted(runner.client.worker_count(), "worker")
    output.say(f"running {runner.project.name} on the {runner.client.backend} client ({workers} × "
               f"{counted(runner.client.threads_per_worker, 'thread')}); results in {output_dir}")
    result = runner.execute(chosen or None, output_dir=output_dir, resume=resume, force=force, timeout=timeout,
                            retries=retries, loss_analysis=loss_analysis, max_in_flight=max_in_flight,
                            lost_cluster_timeout=lost_cluster_timeout, plots=plots,
                            plot_keys=[parse_key(k) for k in plot_keys], upstream_fixes=upstream_fixes,
                            worker_profile=worker_profile, progress=output.shows,
                            on_start=_run_started(output, runner.client),
                            on_row=_row_finished(output) if output.verbose else None)
    table = result.table
    summary = result.summary()
    if output.as_json:  # every row as JSON is made only when it is printed
        output.emit({"ok": result.ok, "output": str(output_dir), "summary": summary,
                     "problem": result.problem.to_dict() if result.problem else None,
                     "upstream_fixes": result.record.get("upstream_fixes", []),
                     "rows": json.loads(table.drop(columns=["traceback"], errors="ignore").to_json(orient="records"))})
    else:
        if output.shows:
            _print_results(table, output_dir)
        for warning in result.record.get("warnings", []):
            output.warn(warning)
        for group in summary["failures"]:
            err.print(f"[red]{group['count']} failed[/] at {group['stage']} ({group['error_type']}): "
                      f"{group['example']}", highlight=False)
        if result.problem is not None:
            _print_problem(result.problem)
        efficiency = summary.get("parallel_efficiency")
        warned = int(table["warnings"].notna().sum()) if "warnings" in table else 0
        output.say(f"{counted(sum(result.counts.values()), 'key')} in {result.seconds:.0f} s: "
                   + ", ".join(f"{n} {s}" for s, n in result.counts.items())
                   + (f"; parallel efficiency {efficiency:.2f}" if efficiency else "")
                   + f"; results in {output_dir}/results.csv (+ .parquet, journal.jsonl, run.json)"
                   + (f"; {warned} key(s) raised warnings (in their rows and {output_dir}/warnings.log)"
                      if warned else ""))
        report = result.record.get("report", "")
        if report.startswith("failed"):
            output.warn(f"the report was not written: {report}")
        else:
            output.say(f"report: {report}")
    return 0 if result.ok else 5


def _run_started(output: Output, client) -> Callable[[dict], None]:
    """The run's first lines: keys to run, upstream fixes, and the dashboard (or why there is none)."""
    from sdt_build.installer import add_extra

    def started(record: dict) -> None:
        todo = record["keys"] - record["already_done"]
        output.say(f"{counted(todo, 'key')} to run" + (f" ({record['already_done']} already done)"
                                              if record["already_done"] else ""))
        for fix in record.get("upstream_fixes", []):
            output.say(f"upstream fix {fix['name']}: {fix['status']} on {counted(fix['workers'], 'worker')} "
                       f"({fix['package']} {fix['version']})"
                       + ("" if fix["status"] == "applied" else f": {fix['reason']}"))
        if record.get("dashboard"):
            output.say(f"dashboard: {record['dashboard']}")
        elif not client.dashboard:
            output.say("dashboard: off (dashboard = False in client.py)")
        elif client.backend == "docker":
            output.say("dashboard: off (the image has no bokeh: add bokeh>=3.1 to requirements.txt)")
        else:
            output.say(f"dashboard: off (the scheduler has no bokeh: {add_extra('dashboard')})")

    return started


def _row_finished(output: Output) -> Callable:
    def finished(row) -> None:
        seconds = row.seconds.get("total")
        output.detail(f"  {'[green]ok[/]' if row.ok else '[red]failed[/]'} {_cell(row.key)}"
                      + (f" in {seconds:.1f} s" if seconds is not None else "")
                      + ("" if row.ok else f" at {row.stage}: {row.message}"))
        for line in row.warning_lines:
            output.detail(f"    [dim]{line}[/]")

    return finished


@command(main, "report")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--key", "keys", multiple=True, help="Show SDT's figures of this key (as run's --key; default: "
              "the first keys that kept them).")
@click.option("--out", "target", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the page (default: FOLDER/report.html).")
def report_command(output: Output, folder: Path, keys: tuple[str, ...], target: Path | None) -> int:
    """Write the fleet report of a run's output folder: one HTML page that opens with no network."""
    from sdt_build.report import make_report

    written = make_report(folder, [parse_key(k) for k in keys] or None, target)
    output.emit({"ok": True, "report": str(written.path), "bytes": written.size, "keys": written.keys})
    output.say(f"[green]report[/] {written.path} ({written.size / 1e6:.2f} MB, {counted(written.keys, 'key')})")
    return 0


def _print_results(table, output_dir: Path) -> None:
    """The first TABLE_ROWS rows as a table; every row is in the output folder's files."""
    view = Table(title="SDT results", show_lines=False)
    columns = ["key", "status"] + (["stage"] if table["stage"].notna().any() else [])
    columns += [c for c in REPORT_COLUMNS if c in table.columns and table[c].notna().any()]
    for column in columns:
        view.add_column(REPORT_COLUMNS.get(column, column), overflow="fold")
    for _, row in table.head(TABLE_ROWS).iterrows():
        view.add_row(*[_cell(row.get(c)) for c in columns])
    out.print(view)
    if len(table) > TABLE_ROWS:
        out.print(f"… and {len(table) - TABLE_ROWS:,} more rows: every row is in {output_dir}/results.csv, and "
                  f"the summary of them all in {output_dir}/report.html", highlight=False, markup=False)


def _cell(value: Any) -> str:
    """A value as a table shows it (a table's cells are rendered, and folded, after ``print``)."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, tuple):
        return redact(key_text(value))
    return redact(str(value))


if __name__ == "__main__":
    main()
