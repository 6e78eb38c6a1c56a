"""Runner: sdt-build's SDTDask vs upstream's sdt_dask Runner, side by side on the same cluster.

Same work on both sides: 20 keys (the two real sites shipped with SDT, 18 deterministic synthetic
systems of 90 to 360 days), run_pipeline(fix_shifts=True), loss factor analysis where there is more
than a year of data (upstream always does that). One LocalCluster of 2 workers × 1 thread × 9 GiB
serves both. Then: the per-key overhead with a near-zero-cost task, and 10,000 simulated keys
(submission time and the client's memory).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks import ROOT


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


def bench_keys() -> list[tuple]:
    real = [("real", "TAEFC1044741"), ("real", "ZT162185000441C1203")]
    return real + [("synthetic", system, 90 + (system * 53) % 271) for system in range(18)]


def _project(work: Path) -> Path:
    folder = work / "bench-runner"
    folder.mkdir()
    (folder / "dataplug.py").write_text(PLUG.format(synthetic=str(ROOT / "examples" / "synthetic" / "dataplug.py")))
    (folder / "client.py").write_text((ROOT / "examples" / "local-csv" / "client.py").read_text())
    return folder


def _warm_up() -> None:
    import solardatatools  # noqa: F401  (the first import on a worker takes seconds)


def _upstream(dask_client, plug, keys) -> float:
    """Upstream's Runner (its set_up graph, computed without its performance report, which needs bokeh)."""
    from sdt_dask.dask_tool.runner import Runner

    started = time.perf_counter()
    runner = Runner(dask_client, output_path=tempfile.mkdtemp())
    runner.set_up(keys, plug)
    table = dask_client.compute(runner.df_results).result()
    assert len(table) == len(keys)
    return time.perf_counter() - started


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
        client.run(_warm_up)  # both sides start on workers that imported SDT already
        ours = runner.execute(keys, output_dir=Path(work) / "ours", dask_client=client, fix_shifts=True,
                              loss_analysis=True)
        theirs = _upstream(client, module.Bench(), keys)
        ok = ours.counts.get("ok", 0)
        print(f"   {len(keys)} keys, 2 workers × 1 thread: sdt-build {ours.seconds:6.1f} s ({ok} ok), "
              f"upstream Runner {theirs:6.1f} s")
        busy = ours.table.groupby("worker")["seconds total"].sum()
        print(f"   throughput ratio sdt-build/upstream: {theirs / ours.seconds:.2f}   "
              f"parallel efficiency (sum of key times / (wall × workers)): {ours.record['parallel_efficiency']:.2f}"
              f"   (busy per worker: {', '.join(f'{s:.0f} s' for s in busy)})")

        instant = [("instant", n) for n in range(400)]
        overhead = runner.execute(instant, dask_client=client, check_versions=False)
        theirs_instant = _upstream(client, module.Bench(), instant)
        print(f"   overhead per key (a task that fails at once): sdt-build {overhead.seconds / 400 * 1000:.1f} ms, "
              f"upstream {theirs_instant / 400 * 1000:.1f} ms")

    _ten_thousand()


def _ten_thousand() -> None:
    """10,000 keys through a scheduler in its own process (so only the client is measured)."""
    from sdt_build import SDTDask
    from sdt_build.clients import SchedulerClient

    dask = str(Path(sys.executable).parent / "dask")
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"],
                                 stderr=subprocess.PIPE, text=True)
    address = None
    while address is None:
        match = re.search(r"Scheduler at:\s+(tcp://\S+)", scheduler.stderr.readline())
        address = match.group(1) if match else None
    workers = [subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                                 "--no-dashboard"], stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        with tempfile.TemporaryDirectory(prefix="sdt-bench-10k-") as work:
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
    finally:
        for process in workers + [scheduler]:
            process.terminate()
            process.wait(timeout=30)
