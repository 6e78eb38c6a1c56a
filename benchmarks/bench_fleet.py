"""Fleet: N synthetic systems with known truth (examples/fleet) through `sdt-build run` on every core.

python -m benchmarks fleet [--sites N] [--keys N] [--slice N] [--slice-clients local,docker,slurm]
[--no-kill] [--work DIR]. Runs the fleet's N systems and the two real sites with the LocalClient of
client.py (one single-threaded worker per core) through the CLI in a child process, and prints:
sites per hour per core; each worker's resident memory after every site (site 10 against the
last, and the trend); the client's peak memory; the journal, results and report files (sizes, and
the time to write them again from the rows); where the time went, by stage; how often SDT's report
agrees with the truth. Then the same run killed with SIGKILL once the journal holds half the keys
and resumed with --resume: every key must end with exactly one row. With --slice N, the first N
systems on a LocalClient, a DockerClient (4 workers) and a SlurmClient must give identical rows.
Last, the scheduler side at --keys cheap keys (benchmarks/fleet_keys.py, when it is installed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
from benchmarks import ROOT, timed
from benchmarks.bench_runner import _compare, _values

from sdt_build.run.results import PLOTS, RESULTS, OutputFolder, read_journal, results_table
from sdt_build.run.runner import TOTAL, _write_outputs
from sdt_build.runtime.rows import SECONDS
from sdt_build.runtime.task import PEAK_MEMORY, MEMORY_AFTER

EXAMPLE = ROOT / "examples" / "fleet"
SDT = str(Path(sys.executable).parent / "sdt-build")
# A row's fields that say where and when it ran, not what SDT found (and a traceback names paths)
OF_THE_RUN = ("worker", "run_id", "warnings", "attempts", "traceback", PEAK_MEMORY, MEMORY_AFTER)
CAPACITY_TOLERANCE = 0.2  # SDT's capacity estimate within 20 % of the truth's
FLAGS = {"clipping": "inverter clipping", "capacity change": "capacity change", "time shift": "time shift correction"}


def options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks fleet")
    parser.add_argument("--sites", type=int, default=1000, help="synthetic systems (the two real sites come too)")
    parser.add_argument("--keys", type=int, default=100_000, help="cheap keys for the scheduler side (0: skip)")
    parser.add_argument("--slice", type=int, default=0, help="systems run on every client of --slice-clients (0: skip)")
    parser.add_argument("--slice-clients", default="local,docker,slurm", help="comma-separated: local, docker, slurm")
    parser.add_argument("--kill", action=argparse.BooleanOptionalAction, default=True,
                        help="the run killed at half and resumed")
    parser.add_argument("--work", type=Path, default=None, help="keep the runs' folders here (default: a temporary one)")
    return parser.parse_args(argv)


def fleet_plug():
    """The example's plug module (its ``FleetPV`` tells each system's truth)."""
    spec = importlib.util.spec_from_file_location("fleet_plug", EXAMPLE / "dataplug.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def project(work: Path) -> Path:
    folder = work / "fleet"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__", "*.md"))
    return folder


class Watched:
    """`sdt-build run` in a child process (its output in ``log``): its peak resident memory, sampled
    every 0.2 s."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.started = time.perf_counter()
        self.log = log
        with open(log, "w") as out:
            self.process = subprocess.Popen([SDT, "run", *args], env=env, stdout=out, stderr=subprocess.STDOUT)
        self.peak = 0
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        try:
            watched = psutil.Process(self.process.pid)
            while self.process.poll() is None:
                self.peak = max(self.peak, watched.memory_info().rss)
                time.sleep(0.2)
        except psutil.Error:  # it ended between two samples
            pass

    def wait(self) -> float:
        """Seconds from start to exit."""
        self.process.wait()
        self._sampler.join()
        return time.perf_counter() - self.started

    def kill(self) -> int:
        """SIGKILL, as a crash would; the processes it started that outlive it by 20 s are ended too
        (they are this benchmark's), and their number returned."""
        children = psutil.Process(self.process.pid).children(recursive=True)
        self.process.send_signal(signal.SIGKILL)
        self.wait()
        _, alive = psutil.wait_procs(children, timeout=20)
        for child in alive:
            child.kill()
        return len(alive)


def journal(folder: Path) -> list[dict]:
    path = folder / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def key_text(key) -> str:
    return json.dumps(list(key))


def run_fleet(folder: Path, output: Path, env: dict[str, str], *extra: str) -> tuple[float, Watched]:
    watched = Watched([str(folder), "--output", str(output), *extra], env, output.with_suffix(".log"))
    seconds = watched.wait()
    return seconds, watched


def throughput(rows: list[dict], wall: float, record: dict) -> list[str]:
    cores = record.get("threads") or os.cpu_count()
    counts = pd.Series([r["status"] for r in rows]).value_counts().to_dict()
    busy = np.mean([r[TOTAL] for r in rows if r.get(TOTAL) is not None])
    return [f"{len(rows)} keys in {wall:.0f} s wall on {cores} worker thread(s): {counts.get('ok', 0)} ok, "
            f"{counts.get('failed', 0)} failed; {len(rows) / wall * 3600 / cores:.0f} sites per hour per core "
            f"end to end (start-up included), {3600 / busy:.0f} per core from the rows' own time "
            f"({busy:.2f} s per site); parallel efficiency {record.get('parallel_efficiency')}"]


def worker_memory(rows: list[dict]) -> list[str]:
    """Each worker's resident memory after each of its sites (the journal is in finishing order)."""
    lines = []
    by_worker: dict[str, list[float]] = {}
    for row in rows:
        if row.get(MEMORY_AFTER) is not None:
            by_worker.setdefault(row["worker"], []).append(row[MEMORY_AFTER])
    for worker, memory in sorted(by_worker.items()):
        site = 10 if len(memory) > 10 else 1  # the 10th site against the last (the first, in a short run)
        early = memory[site - 1]
        slope = np.polyfit(np.arange(len(memory)), memory, 1)[0] * 100 * 1024 if len(memory) > 2 else 0.0
        lines.append(f"worker {worker}: {len(memory)} sites; memory after site {site} "
                     f"{early:.3f} GiB, after site {len(memory)} {memory[-1]:.3f} GiB "
                     f"({(memory[-1] - early) / early:+.1%}); trend {slope:+.1f} MiB per 100 sites; "
                     f"largest {max(memory):.3f} GiB")
    peaks = [r[PEAK_MEMORY] for r in rows if r.get(PEAK_MEMORY) is not None]
    if peaks:
        lines.append(f"worker peak per site: median {np.median(peaks):.2f} GiB, largest {max(peaks):.2f} GiB")
    return lines or ["no row records its worker's memory"]


def outputs(output: Path, name: str) -> list[str]:
    """The run's files and their sizes, and the time to write each again from the journal here."""
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 2**20:.2f} MiB" for p in sorted(output.iterdir())
                      if p.is_file() and not p.name.startswith("."))
    scan, (rows, _) = timed(lambda: read_journal(output / "journal.jsonl"))
    table = results_table([row.to_record() for row in rows.values()])
    folder = TimedFolder(output.parent / f"{output.name}-written-again", False, project=name)
    folder.start()
    if (output / PLOTS).is_dir():  # the report embeds them
        shutil.copytree(output / PLOTS, folder.folder / PLOTS)
    try:
        appended, _ = timed(lambda: [folder.add(row.but(plots={})) for row in rows.values()])
        total, _ = timed(lambda: _write_outputs(folder, table, json.loads((output / "run.json").read_text())))
    finally:
        folder.close()
    written = {n: s for n, s in folder.seconds.items() if n in (*RESULTS, "run.json")}
    return [f"files: {sizes}",
            f"written again from the {len(rows)} rows: journal {appended / max(len(rows), 1) * 1000:.2f} ms per row "
            f"appended, read whole (--resume's scan) {scan:.2f} s; "
            + ", ".join(f"{n} {s:.2f} s" for n, s in written.items())
            + f", report.html {total - sum(written.values()):.2f} s"]


class TimedFolder(OutputFolder):
    """An output folder that times each file it writes whole."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds: dict[str, float] = {}

    def write(self, name, writer) -> None:
        started = time.perf_counter()
        try:
            super().write(name, writer)
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def profile(rows: list[dict]) -> list[str]:
    """Where the time went: each stage's share of the rows' time, and the slowest sites."""
    table = pd.DataFrame(rows)
    stages = [c for c in table.columns if c.startswith(SECONDS) and c != TOTAL]
    total = table[TOTAL].sum()
    slowest = table.sort_values(TOTAL, ascending=False).head(3)
    return ["time by stage, summed over the sites: " + ", ".join(
                f"{c.removeprefix(SECONDS)} {table[c].sum():.1f} s ({table[c].sum() / total:.0%})" for c in stages),
            "slowest sites: " + ", ".join(f"{r['key']} {r['seconds total']:.1f} s" for _, r in slowest.iterrows())]


def truth_agreement(rows: list[dict], plug) -> list[str]:
    """SDT's report against each system's truth; broken systems must fail, the others must not."""
    fleet = plug.FleetPV()
    capacity, flags, wrong_status = [], {name: [] for name in FLAGS}, []
    for row in rows:
        truth = fleet.truth(tuple(row["key"]))
        if truth is None:  # a real site
            continue
        if (row["status"] == "failed") != bool(truth["broken"]):
            wrong_status.append(f"{row['key']} {row['status']} ({truth['broken'] or 'not broken'}): "
                                f"{row.get('message')}")
            continue
        if truth["broken"]:
            continue
        if not truth["capacity change"]:
            capacity.append(row["capacity"] / truth["capacity"])
        for name, field in FLAGS.items():
            flags[name].append(bool(row[field]) == truth[name])
    broken = sum(1 for r in rows if (t := fleet.truth(tuple(r["key"]))) and t["broken"])
    ratios = np.array(capacity)
    return [f"status as the truth says: {len(rows) - len(wrong_status)} of {len(rows)} rows "
            f"({broken} broken systems failed with their row)" + ("" if not wrong_status else
                                                                 "; WRONG: " + "; ".join(wrong_status[:5])),
            f"capacity within {CAPACITY_TOLERANCE:.0%} of the truth: "
            f"{np.mean(np.abs(ratios - 1) <= CAPACITY_TOLERANCE):.0%} of {len(ratios)} systems without a capacity "
            f"change (SDT / truth: median {np.median(ratios):.2f}, 5-95 % {np.quantile(ratios, 0.05):.2f}-"
            f"{np.quantile(ratios, 0.95):.2f})" if len(ratios) else "capacity: no system to compare",
            "flags agreeing with the truth: " + ", ".join(f"{name} {np.mean(v):.0%} of {len(v)}"
                                                          for name, v in flags.items() if v)]


def killed_and_resumed(folder: Path, work: Path, env: dict[str, str], total: int) -> list[str]:
    """The run SIGKILLed once the journal holds half the keys, then --resume: one row per key."""
    output = work / "killed"
    watched = Watched([str(folder), "--output", str(output)], env, output.with_suffix(".log"))
    while len(journal(output)) < total // 2 and watched.process.poll() is None:
        time.sleep(0.2)
    survivors = watched.kill()
    at_kill = journal(output)
    seen = {key_text(r["key"]) for r in at_kill}
    failed = {key_text(r["key"]) for r in at_kill if r["status"] != "ok"}
    resume_seconds, resumed = run_fleet(folder, output, env, "--resume")
    after = journal(output)
    ran = [key_text(r["key"]) for r in after[len(at_kill):]]
    lines = pd.Series([key_text(r["key"]) for r in after]).value_counts()
    results = pd.read_csv(output / "results.csv")
    record = json.loads((output / "run.json").read_text())
    twice = set(lines[lines > 1].index)
    problems = []
    if len(results) != total or results["key"].duplicated().any():
        problems.append(f"results.csv has {len(results)} rows for {total} keys")
    if set(ran) != (set(lines.index) - seen) | failed or len(ran) != len(set(ran)):
        problems.append(f"the resume ran {len(ran)} keys, not the {total - len(seen)} missing and {len(failed)} "
                        "failed ones once each")
    if twice != failed:
        problems.append(f"{len(twice - failed)} key(s) with an ok row at the kill ran again")
    return [f"killed (SIGKILL) with {len(at_kill)} of {total} rows in the journal "
            f"({total - len(seen)} keys without a row, {len(failed)} failed rows; {survivors} of its processes "
            "outlived it by 20 s and were ended)",
            f"resumed in {resume_seconds:.0f} s (exit {resumed.process.returncode}): it kept "
            f"{record.get('already_done')} ok rows and ran {len(ran)} keys: the {total - len(seen)} without a row "
            f"(those in flight at the kill among them: nothing on disk records a key's start, so which of them "
            f"had started is not known; at most {2 * (record.get('threads') or 1)} were submitted at once) and "
            f"the {len(failed)} failed ones again (--resume runs every key without an ok row)",
            f"every key ends with exactly one row: {'yes' if not problems else 'NO: ' + '; '.join(problems)}; "
            "journal lines per key: " + ", ".join(f"{n} line(s) {k}" for n, k in lines.value_counts().sort_index().items())
            + " keys"]


def slice_rows(folder: Path, work: Path, sites: int, clients: list[str]) -> list[str]:
    """The first ``sites`` systems on each client: every shared field of every row equal."""
    from sdt_build import SDTDask
    from sdt_build.clients import DockerClient, LocalClient, SlurmClient

    keys = [(system,) for system in range(sites)]

    def slurm() -> SlurmClient:
        venv = work / "slurm-venv"
        done = subprocess.run([SDT, "build", str(folder), "--venv", str(venv), "--json"], capture_output=True,
                              text=True, timeout=3600)
        if done.returncode:
            raise RuntimeError(f"the venv could not be made: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        return SlurmClient(venv=str(venv), workers=2, interface="lo", log_directory=str(work / "slurm-logs"))

    made = {"local": LocalClient, "docker": lambda: DockerClient(workers=4, threads_per_worker=1), "slurm": slurm}
    tables, lines = {}, []
    for name in clients:
        seconds, result = timed(lambda: SDTDask(folder, client=made[name]()).execute(
            keys, output_dir=work / f"slice-{name}"))
        tables[name] = _values("ours", result.table)
        lines.append(f"{name}: {len(result.table)} rows in {seconds:.0f} s ({result.counts})")
    fields = sorted({f for table in tables.values() for row in table.values() for f in row}
                    - set(OF_THE_RUN) - {"key"})
    fields = [f for f in fields if not f.startswith(SECONDS)]
    differences = _compare(tables, tuple(fields))
    lines.append(f"{sites} systems, {len(fields)} shared fields, on {', '.join(clients)}: "
                 + ("identical" if not differences else f"{len(differences)} differences: " + "; ".join(differences[:8])))
    return lines


def scheduler_side(keys: int) -> list[str]:
    try:
        from benchmarks.fleet_keys import run_keys
    except ImportError:
        return ["the scheduler side (cheap keys) is not installed here (benchmarks/fleet_keys.py)"]
    return run_keys(keys)


def run(argv: list[str] | None = None) -> None:
    chosen = options(argv or [])
    plug = fleet_plug()
    with tempfile.TemporaryDirectory(prefix="sdt-bench-fleet-") as temporary:
        work = chosen.work or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        folder = project(work)
        env = {**os.environ, "SDT_FLEET_SITES": str(chosen.sites)}
        total = chosen.sites + len(plug.REAL)
        output = work / "whole"
        wall, watched = run_fleet(folder, output, env)
        rows = journal(output)
        if watched.process.returncode not in (0, 5) or len(rows) != total:
            print(f"   the run did not finish (exit {watched.process.returncode}, {len(rows)} of {total} rows):\n"
                  + watched.log.read_text()[-3000:])
            return
        record = json.loads((output / "run.json").read_text())
        print(f"   {chosen.sites} synthetic systems and {len(plug.REAL)} real sites, `sdt-build run` on the "
              f"LocalClient of examples/fleet/client.py:")
        for line in (throughput(rows, wall, record) + worker_memory(rows)
                     + [f"client (the `sdt-build run` process): peak {watched.peak / 2**20:.0f} MiB resident"]
                     + outputs(output, record["project"]) + profile(rows) + truth_agreement(rows, plug)):
            print(f"   {line}")
        if chosen.kill:
            for line in killed_and_resumed(folder, work, env, total):
                print(f"   {line}")
        if chosen.slice:
            for line in slice_rows(folder, work, chosen.slice, chosen.slice_clients.split(",")):
                print(f"   slice: {line}")
        if chosen.keys:
            for line in scheduler_side(chosen.keys):
                print(f"   {line}")
