"""Runner: sdt-build's SDTDask (upstream fixes off, then on) vs upstream's sdt_dask Runner, on one cluster.

Same work on every side: 20 keys (the two real sites shipped with SDT, 18 deterministic synthetic
systems of 90 to 360 days, some with clipping, a capacity change or a time shift),
run_pipeline(fix_shifts=True), loss factor analysis where there is more than a year of data
(upstream always does that). One LocalCluster of 2 workers × 1 thread × 9 GiB serves every side;
its workers are restarted before each side, so each starts alike (SDT imported, nothing of the
other side's memory or fixes left). Then: each side's worker profile (where the time goes), every
shared output compared, one site at a time in fresh processes with the fixes off and on (time and
peak memory), the per-key overhead with a near-zero-cost task, and 10,000 simulated keys
(submission time and the client's memory).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import psutil
from benchmarks import ROOT

from sdt_build.runtime.rows import SDT_REPORT

PLUG = '''
import importlib.util
from pathlib import Path

import pandas as pd
import sdt_dask
from solardatatools.time_axis_manipulation import make_time_series

from sdt_build import DataPlug

_spec = importlib.util.spec_from_file_location("synthetic_plug", {synthetic!r})
_synthetic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_synthetic)
REAL = Path(sdt_dask.__file__).parent / "examples" / "example_data"


class Bench(DataPlug):
    """("real", site) or ("synthetic", system, days); ("instant", n) fails at once (overhead runs)."""

    def size(self, key):
        if key[0] == "real":
            return 10_000 if key[1] == "TAEFC1044741" else 226  # over a year: loss analysis comes too
        return key[2] if key[0] == "synthetic" else 0

    def get_data(self, key):
        if key[0] == "instant":
            raise LookupError("no data: an overhead measurement")
        if key[0] == "real":
            return make_time_series(pd.read_csv(REAL / f"{{key[1]}}.csv"))[0]
        return _synthetic.SyntheticPV().get_data((key[1], key[2]))
'''
# One site in a fresh process: its pipeline's seconds and the process's peak memory (the fixes on or off).
ONE_SITE = '''
import json, resource, sys, time
sys.path.insert(0, {folder!r})
from sdt_build.runtime import upstream_fixes
fixes = upstream_fixes.apply({fixes!r})  # before SDT is first imported, as on workers
from dataplug import Bench
from solardatatools import DataHandler
data = Bench().get_data({key!r})
started = time.perf_counter()
handler = DataHandler(data)
handler.run_pipeline(verbose=False, fix_shifts=True)
seconds = time.perf_counter() - started
report = handler.report(return_values=True, verbose=False)
print(json.dumps({{"seconds": seconds, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "fixes": [o.status for o in fixes], "report": {{k: float(v) for k, v in report.items()}}}}))
'''


def bench_keys() -> list[tuple]:
    real = [("real", "TAEFC1044741"), ("real", "ZT162185000441C1203")]
    return real + [("synthetic", system, 90 + (system * 53) % 271) for system in range(18)]


def _project(work: Path) -> Path:
    folder = work / "bench-runner"
    folder.mkdir()
    (folder / "dataplug.py").write_text(PLUG.format(synthetic=str(ROOT / "examples" / "synthetic" / "dataplug.py")))
    (folder / "client.py").write_text((ROOT / "examples" / "local-csv" / "client.py").read_text())
    return folder


@contextlib.contextmanager
def dask_processes(workers: int = 2) -> Iterator[str]:
    """A scheduler and single-threaded workers, each in a process of its own (so a client's memory is
    its own): the scheduler's address."""
    dask = str(Path(sys.executable).parent / "dask")
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"],
                                 stderr=subprocess.PIPE, text=True)
    address = None
    while address is None:
        match = re.search(r"Scheduler at:\s+(tcp://\S+)", scheduler.stderr.readline())
        address = match.group(1) if match else None
    started = [subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                                 "--no-dashboard"], stderr=subprocess.DEVNULL) for _ in range(workers)]
    try:
        yield address
    finally:
        for process in started + [scheduler]:
            process.terminate()
            process.wait(timeout=30)


def _warm_up(fixes: bool | None) -> None:
    """SDT imported on a worker (the first import takes seconds), after the side's upstream fixes
    (``None``: upstream's side, which has none), as sdt-build's workers do before their first key."""
    if fixes is not None:
        from sdt_build.runtime import upstream_fixes

        upstream_fixes.apply(fixes)
    import solardatatools  # noqa: F401


def _upstream(dask_client, plug, keys):
    """Upstream's Runner (its set_up graph, computed without its performance report, which needs bokeh)."""
    from sdt_dask.dask_tool.runner import Runner

    runner = Runner(dask_client, output_path=tempfile.mkdtemp())
    runner.set_up(keys, plug)
    table = dask_client.compute(runner.df_results).result()
    assert len(table) == len(keys)
    return table


def _side(dask_client, work, fixes: bool | None = None):
    """One side on freshly restarted workers: its result, wall seconds and the workers' profile."""
    dask_client.restart()
    dask_client.run(_warm_up, fixes)
    began, started = time.time(), time.perf_counter()
    result = work()
    seconds = time.perf_counter() - started
    return result, seconds, dask_client.profile(start=began, stop=time.time())


def profile_top(state: dict, count: int = 8) -> list[tuple[str, float]]:
    """The functions a statistical profile (distributed's) saw most often, inclusive of what they
    called: (module:function, share of the samples)."""
    totals: dict[str, int] = {}

    def walk(node: dict, above: frozenset) -> None:
        description = node.get("description") or {}
        name = f"{Path(description.get('filename', '?')).stem}:{description.get('name', '?')}"
        if description and name not in above:
            totals[name] = totals.get(name, 0) + node.get("count", 0)
            above = above | {name}
        for child in (node.get("children") or {}).values():
            walk(child, above)

    walk(state, frozenset())
    everything = max(state.get("count", 0), 1)
    return sorted(((n, c / everything) for n, c in totals.items()), key=lambda item: -item[1])[:count]


def _values(side: str, table) -> dict[str, dict]:
    """Each key's outputs by key text (upstream's key fields come back as columns, NaN where a key
    has fewer, numbers as floats)."""
    import math

    rows = {}
    for record in table.to_dict("records"):
        if side == "upstream":
            fields = [record[c] for c in sorted(record) if c.startswith("key_field_")]
            key = [int(f) if isinstance(f, float) and f.is_integer() else f for f in fields
                   if not (isinstance(f, float) and math.isnan(f))]
        else:
            key = list(record["key"])
        rows[json.dumps(key, default=str)] = record
    return rows


def _compare(sides: dict[str, dict[str, dict]], fields: tuple[str, ...]) -> list[str]:
    """``fields`` of every key, each side against the first: the differences found."""
    import math

    names = list(sides)
    differences = []
    for key, record in sides[names[0]].items():
        for other in names[1:]:
            theirs = sides[other].get(key)
            if theirs is None:
                differences.append(f"{key}: no row on {other}")
                continue
            for field in fields:
                mine, value = record.get(field), theirs.get(field)
                both_nan = all(isinstance(v, float) and math.isnan(v) for v in (mine, value))
                if not both_nan and mine != value and not (isinstance(mine, float) and isinstance(value, float)
                                                           and math.isclose(mine, value, rel_tol=1e-9)):
                    differences.append(f"{key} {field}: {names[0]} {mine!r}, {other} {value!r}")
    return differences


def _one_site(folder: Path, key: tuple, fixes: bool) -> dict:
    done = subprocess.run([sys.executable, "-c", ONE_SITE.format(folder=str(folder), key=key, fixes=fixes)],
                          capture_output=True, text=True, timeout=900)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run() -> None:
    import importlib.util

    import cloudpickle
    from distributed import Client, LocalCluster

    from sdt_build import SDTDask

    keys = bench_keys()
    with tempfile.TemporaryDirectory(prefix="sdt-bench-runner-") as work, \
            LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="9GiB", processes=True,
                         host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster) as client:
        folder = _project(Path(work))
        spec = importlib.util.spec_from_file_location("bench_plug", folder / "dataplug.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_plug"] = module
        spec.loader.exec_module(module)
        cloudpickle.register_pickle_by_value(module)  # upstream pickles the plug object into its tasks

        runner = SDTDask(folder)

        def ours(fixes: bool, name: str):
            # profiled, as the upstream side is (Dask's default): each side's profile is printed below
            return lambda: runner.execute(keys, output_dir=Path(work) / name, dask_client=client, fix_shifts=True,
                                          loss_analysis=True, upstream_fixes=fixes, worker_profile=True)

        off, off_seconds, off_profile = _side(client, ours(False, "off"), False)
        theirs, theirs_seconds, theirs_profile = _side(client, lambda: _upstream(client, module.Bench(), keys))
        on, on_seconds, on_profile = _side(client, ours(True, "on"), True)
        print(f"   {len(keys)} keys, 2 workers × 1 thread, each side on restarted workers:")
        for label, seconds, result in (("sdt-build, upstream fixes off", off_seconds, off),
                                       ("upstream sdt_dask Runner", theirs_seconds, None),
                                       ("sdt-build, upstream fixes on", on_seconds, on)):
            extra = "" if result is None else (f"({result.counts.get('ok', 0)} ok, parallel efficiency "
                                               f"{result.record['parallel_efficiency']:.2f})")
            print(f"     {label:32s} {seconds:7.1f} s   throughput ratio to upstream {theirs_seconds / seconds:5.2f}  "
                  f"{extra}")
        reports = _compare({"fixes off": _values("ours", off.table), "upstream": _values("upstream", theirs),
                            "fixes on": _values("ours", on.table)}, SDT_REPORT)
        loss = tuple(c for c in on.table.columns if c.startswith("loss ") and c != "loss_analysis")
        losses = _compare({"fixes off": _values("ours", off.table), "fixes on": _values("ours", on.table)}, loss)
        for what, differences in ((f"SDT's report, {len(keys)} keys, 3 sides", reports),
                                  (f"loss analysis ({len(loss)} outputs; sdt-build seeds its Monte Carlo by key, "
                                   "upstream does not), fixes off and on", losses)):
            print(f"   every shared output equal, {what}: "
                  + ("yes" if not differences else f"NO, {len(differences)}: " + "; ".join(differences[:8])))
        for label, profile in (("sdt-build, fixes off", off_profile), ("upstream Runner", theirs_profile),
                               ("sdt-build, fixes on", on_profile)):
            print(f"   profile of the workers, {label} (share of samples, inclusive): "
                  + ", ".join(f"{name} {share:.0%}" for name, share in profile_top(profile)))
        short = [k for k in keys if k != ("real", "TAEFC1044741")]  # a year or less each: no loss analysis
        _, theirs_short, _ = _side(client, lambda: _upstream(client, module.Bench(), short))
        _, ours_short, _ = _side(client, lambda: runner.execute(short, output_dir=Path(work) / "short", fix_shifts=True,
                                                                dask_client=client, loss_analysis=True,
                                                                worker_profile=True), True)
        print(f"   the {len(short)} keys of a year or less (no loss analysis on either side, so no key's Monte Carlo "
              f"bounds the wall): upstream {theirs_short:.1f} s, sdt-build with the fixes {ours_short:.1f} s, "
              f"throughput ratio {theirs_short / ours_short:.2f}")
        stages = [c for c in on.table.columns if c.startswith("seconds ") and c != "seconds total"]
        print("   sdt-build's stages, summed over the keys (s), fixes off / on: " + ", ".join(
            f"{c.removeprefix('seconds ')} {off.table[c].sum():.1f} / {on.table[c].sum():.1f}" for c in stages))
        for label, table in (("off", off.table), ("on", on.table)):
            loss = table["seconds loss analysis"].fillna(0) if "seconds loss analysis" in table else 0
            per_site = (table["seconds total"] - loss).mean()
            print(f"   fixes {label}: {per_site:.2f} s per site without loss analysis (get_data included), "
                  f"{3600 / per_site:.0f} sites per hour per core")
        peaks = on.table["worker peak GiB"]
        print(f"   worker peak memory per key with the fixes on: median {peaks.median():.2f} GiB, largest "
              f"{peaks.max():.2f} GiB (off: largest {off.table['worker peak GiB'].max():.2f} GiB)")

        print("   one site at a time, fresh process each, run_pipeline(fix_shifts=True): fixes off → on")
        for key in keys[:2] + [k for k in keys if k[0] == "synthetic" and k[1] in (1, 4, 5, 13)]:
            unfixed, fixed = _one_site(folder, key, False), _one_site(folder, key, True)
            same = unfixed["report"] == fixed["report"]
            print(f"     {str(key):34s} {unfixed['seconds']:6.1f} s, {unfixed['peak']:5.2f} GiB  →  "
                  f"{fixed['seconds']:6.1f} s, {fixed['peak']:5.2f} GiB   "
                  f"({unfixed['seconds'] / fixed['seconds']:4.1f}× faster, {unfixed['peak'] / fixed['peak']:4.1f}× "
                  f"less memory; report {'identical' if same else 'DIFFERS'})")

        instant = [("instant", n) for n in range(400)]
        overhead = runner.execute(instant, dask_client=client, check_versions=False)
        started = time.perf_counter()
        _upstream(client, module.Bench(), instant)
        print(f"   overhead per key (a task that fails at once): sdt-build {overhead.seconds / 400 * 1000:.1f} ms, "
              f"upstream {(time.perf_counter() - started) / 400 * 1000:.1f} ms")

    _ten_thousand()


def _ten_thousand() -> None:
    """10,000 keys through a scheduler in its own process (so only the client is measured)."""
    from sdt_build import SDTDask
    from sdt_build.clients import SchedulerClient

    with dask_processes() as address, tempfile.TemporaryDirectory(prefix="sdt-bench-10k-") as work:
        runner = SDTDask(_project(Path(work)), client=SchedulerClient(address=address))
        runner.execute([("instant", n) for n in range(200)], check_versions=False)  # warm up
        process = psutil.Process(os.getpid())
        samples: list[tuple[int, float]] = []
        before = process.memory_info().rss

        def sample(row) -> None:
            if (row.key[1] + 1) % 2500 == 0:
                samples.append((row.key[1] + 1, (process.memory_info().rss - before) / 2**20))

        started = time.perf_counter()
        big = runner.execute([("instant", n) for n in range(10_000)], check_versions=False,
                             max_in_flight=64, on_row=sample)
        seconds = time.perf_counter() - started
        growth = ", ".join(f"{n}: +{mib:.0f} MiB" for n, mib in samples)
        print(f"   10,000 simulated keys: {seconds:.0f} s ({len(big.table)} rows, {10_000 / seconds:.0f} keys/s); "
              f"client memory during the run {growth}; with the 10,000-row table "
              f"+{(process.memory_info().rss - before) / 2**20:.0f} MiB")
