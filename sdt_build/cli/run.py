"""`run` and `report`: keys to rows on a client's cluster, and an output folder's report page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import click
from rich.table import Table

from sdt_build.cli.shell import Output, command, err, main, out, print_problem
from sdt_build.runtime.errors import counted
from sdt_build.runtime.keys import key_text, parse_key, read_keys_file
from sdt_build.runtime.redact import redact

TABLE_ROWS = 50  # rows a run prints (a fleet's rows are read in its output folder)
REPORT_COLUMNS = {"capacity": "capacity", "quality score": "quality", "clearness score": "clearness",
                  "inverter clipping": "clipping", "clipped fraction": "clipped", "capacity change": "cap. change",
                  "time shift correction": "time shift", "time zone correction": "tz fix",
                  "data quality warning": "quality warn", "seconds total": "seconds"}


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
            print_problem(result.problem)
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
    from sdt_build.run.report import make_report

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
