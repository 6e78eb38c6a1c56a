"""The scheduler side of a fleet at 100,000 cheap keys, through `sdt-build run` and `sdt-build report`.

A scheduler and two single-threaded workers run in processes of their own (bench_runner's
``dask_processes``); the plug's get_data fails at once, so each key costs the runner and Dask only.
Measured on the CLI's own process: keys per second from the first row to the last, wall time, peak
memory and its growth while rows arrive; run.json's write times and sizes of results.csv,
results.parquet and report.html. Then `--resume` over an output folder holding n rows shaped like
SDT's (bench_report's ``make_folder``): the resume scan (the CLI's time from "running" to "keys to
run" beside the fresh run's, and the scan alone with its profile), and the report page of those n rows
opened in headless Chromium (a screenshot is kept beside the temporary folder).
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from benchmarks import ROOT, timed
from benchmarks.bench_report import make_folder
from benchmarks.bench_runner import dask_processes
from benchmarks.browser import open_page

PLUG = '''
from sdt_build import DataPlug


class Instant(DataPlug):
    """Every key fails at once: the run costs the runner and Dask only."""

    def get_data(self, key):
        raise LookupError("no data: a scheduler-side measurement")
'''
CLIENT = '''
from sdt_build.clients import SchedulerClient


class Bench(SchedulerClient):
    address = {address!r}
'''
PROJECT = "bench-keys"
SAMPLE_SECONDS = 0.2


@dataclass
class Watched:
    """A CLI command's output lines (seconds since its start), its memory and its journal over time."""

    seconds: float = 0.0
    returncode: int | None = None
    lines: list[tuple[float, str]] = field(default_factory=list)
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # seconds, RSS bytes, journal bytes

    def line_at(self, text: str) -> float:
        return next(at for at, line in self.lines if text in line)

    def rows_between(self) -> tuple[float, float]:
        """When the journal got its first new row, and its last."""
        start, end = self.samples[0][2], self.samples[-1][2]
        first = next(at for at, _, size in self.samples if size > start)
        return first, next(at for at, _, size in self.samples if size >= end)

    def rss_at(self, fraction: float) -> int:
        """The process's memory when the journal had grown by ``fraction`` of what the run added."""
        start, end = self.samples[0][2], self.samples[-1][2]
        return next(rss for _, rss, size in self.samples if size - start >= max(fraction * (end - start), 1))


def _watch(arguments: list[str], journal: Path) -> Watched:
    """Run ``sdt-build ARGUMENTS`` from this checkout, sampling its memory and ``journal``'s size."""
    watched = Watched()
    began = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "sdt_build", *arguments], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})

    def read() -> None:
        for line in process.stdout:
            watched.lines.append((time.perf_counter() - began, line.rstrip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    measured = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            rss = measured.memory_info().rss
        except psutil.NoSuchProcess:
            break
        watched.samples.append((time.perf_counter() - began, rss, journal.stat().st_size if journal.exists() else 0))
        time.sleep(SAMPLE_SECONDS)
    watched.returncode = process.wait()
    watched.seconds = time.perf_counter() - began
    reader.join()
    watched.samples.append((watched.seconds, watched.samples[-1][1], journal.stat().st_size if journal.exists() else 0))
    return watched


def _outputs(folder: Path) -> str:
    """run.json's write times and sizes of the result files."""
    written = json.loads((folder / "run.json").read_text()).get("outputs", {})
    return ", ".join(f"{name} {w['seconds']:.2f} s / {w['bytes'] / 2**20:.1f} MiB" for name, w in written.items())


def _profile(function, count: int = 5) -> tuple[float, str]:
    """``function``'s seconds, and where they went (its own time per function, largest first)."""
    profile = cProfile.Profile()
    seconds, _ = timed(lambda: profile.runcall(function))
    stats = pstats.Stats(profile).stats
    everything = sum(entry[2] for entry in stats.values()) or 1
    top = sorted(stats.items(), key=lambda item: -item[1][2])[:count]
    return seconds, ", ".join(f"{Path(file).stem}:{name} {entry[2] / everything:.0%}"
                              for (file, _, name), entry in top)


def _scan(folder: Path) -> dict:
    """What a resume does with an output folder before its first key: open it, read its journal."""
    from sdt_build.run.results import OutputFolder

    output = OutputFolder(folder, resume=True, project=PROJECT)
    try:
        output.start()
        return output.finished()
    finally:
        output.close()


def _gib(value: int) -> str:
    return f"{value / 2**30:.2f} GiB"


def run_keys(n: int = 100_000) -> list[str]:
    """The lines to print for ``n`` keys."""
    from sdt_build.run.report import make_report

    lines = []
    with dask_processes() as address, tempfile.TemporaryDirectory(prefix="sdt-bench-keys-") as work:
        work = Path(work)
        project = work / PROJECT
        project.mkdir()
        (project / "dataplug.py").write_text(PLUG)
        (project / "client.py").write_text(CLIENT.format(address=address))
        resumed = work / "resumed"
        make_folder(resumed, n)  # n rows shaped like SDT's, 1 in 17 failed
        record = json.loads((resumed / "run.json").read_text())
        (resumed / "run.json").write_text(json.dumps({**record, "project": PROJECT}))
        keys = work / "keys.json"
        keys.write_text(json.dumps([json.loads(line)["key"] for line in (resumed / "journal.jsonl").open()]))
        common = ["--keys", str(keys), "--max-in-flight", "64", "--plots", "0"]

        _watch(["run", str(project), "--output", str(work / "warm"), "--key", "warm-up"], work / "warm" / "j")
        fresh = _watch(["run", str(project), "--output", str(work / "fresh"), *common],
                       work / "fresh" / "journal.jsonl")
        first, last = fresh.rows_between()
        peak = max(rss for _, rss, _ in fresh.samples)
        lines.append(f"{n:,} keys that fail at once, `sdt-build run` on a scheduler with 2 workers × 1 thread "
                     f"(exit {fresh.returncode}): {n / (last - first):,.0f} keys/s from the first row to the last, "
                     f"{fresh.seconds:.0f} s in all ({first:.1f} s to the first row, {fresh.seconds - last:.1f} s "
                     "after the last)")
        lines.append(f"client memory (the CLI's process): peak {_gib(peak)}; at the first row "
                     f"{_gib(fresh.rss_at(0))}, at half {_gib(fresh.rss_at(0.5))}, at the last "
                     f"{_gib(fresh.rss_at(1))}")
        lines.append(f"written at the end ({n:,} failed rows): {_outputs(work / 'fresh')}; journal "
                     f"{(work / 'fresh' / 'journal.jsonl').stat().st_size / 2**20:.1f} MiB")

        again = _watch(["run", str(project), "--output", str(resumed), "--resume", *common],
                       resumed / "journal.jsonl")
        scans = [watched.line_at("keys to run") - watched.line_at("running ") for watched in (again, fresh)]
        todo = next(line for _, line in again.lines if "keys to run" in line)
        seconds, where = _profile(lambda: _scan(resumed))
        lines.append(f"--resume over a journal of {n:,} SDT-shaped rows "
                     f"({(resumed / 'journal.jsonl').stat().st_size / 2**20:.0f} MiB; {todo.strip()}): the "
                     f"CLI from 'running' to 'keys to run' {scans[0]:.1f} s (the fresh run: {scans[1]:.1f} s), "
                     f"{again.seconds:.0f} s in all, peak {_gib(max(rss for _, rss, _ in again.samples))}; the scan "
                     f"alone, under cProfile (the folder opened, the journal read as a resume reads it) "
                     f"{seconds:.1f} s ({where})")
        lines.append(f"written at the end ({n:,} SDT-shaped rows): {_outputs(resumed)}")

        report, made = timed(lambda: subprocess.run(
            [sys.executable, "-m", "sdt_build", "report", str(resumed)], capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)}))
        seconds, where = _profile(lambda: make_report(resumed))
        screenshot = Path(tempfile.gettempdir()) / f"sdt-keys-report-{n}.png"
        opened = open_page(resumed / "report.html", screenshot)
        lines.append(f"`sdt-build report` of {n:,} rows: {report:.1f} s (exit {made.returncode}), "
                     f"{(resumed / 'report.html').stat().st_size / 2**20:.2f} MiB; make_report alone, under cProfile "
                     f"{seconds:.1f} s ({where}); Chromium load {opened.load_ms:.0f} ms, "
                     f"{len(opened.sections)} sections, {opened.sideways} px sideways, console errors "
                     f"{len(opened.console_errors)}; screenshot {screenshot}")
    return lines


if __name__ == "__main__":
    for printed in run_keys(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000):
        print(f"   {printed}")
