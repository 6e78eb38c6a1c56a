"""The command's shell: the console that masks every line, --json/--quiet/--verbose/--debug, errors
printed as cause + fix, and the `sdt-build` group every command joins. Only the CLI prints."""

from __future__ import annotations

import functools
import sys
import tempfile
import textwrap
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.markup import RE_TAGS, escape
from rich.text import Text

from sdt_build import __version__
from sdt_build.interrupt import shielded, terminate_as_interrupt
from sdt_build.runtime.errors import EXIT_CODES, INTERNAL_ERROR, INTERRUPTED, Problem, SdtBuildError
from sdt_build.runtime.redact import dumps, redact, shorten

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
        print_problem(problem)
    if exc.detail and (output.debug or not exc.problems):
        err.print(Text(shorten(exc.detail.strip(), 2000, tail=True), style="dim"), highlight=False)
    if exc.log_path:
        err.print(f"  full log: {exc.log_path}", highlight=False)
    if output.debug:
        err.print("".join(traceback.format_exception(exc)), highlight=False)


def print_problem(problem: Problem) -> None:
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
        super().__init__(*args, shell_complete=completing(names), **kwargs)
        self.names = names

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        record = super().get_help_record(ctx)
        names = textwrap.fill(f"One of: {', '.join(self.names())}.", 56, break_on_hyphens=False)
        return record and (record[0], f"{record[1]}\n\n\b\n{names}")  # \b: click keeps the lines as they are


def completing(names: Callable[[], list[str]]) -> Callable[..., list[str]]:
    """Shell completion (click's) from the names the installed package ships."""
    return lambda ctx, param, incomplete: [n for n in names() if n.startswith(incomplete)]


def lookup_progress(output: Output) -> Callable[[int, int], None]:
    """Index look-ups as they finish: a line when they start, then one per tenth done."""
    from sdt_build.sources.index import budget_seconds

    def progress(done: int, total: int) -> None:
        if done == 0:
            output.say(f"looking up {total} package(s) on the indexes (at most {budget_seconds():.0f} s)")
        elif done == total or done % max(1, total // 10) == 0:
            output.say(f"  [dim]looked up {done}/{total}[/]")

    return progress
