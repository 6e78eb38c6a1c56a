"""Report: the fleet page of a 100-row and a 10,000-row output folder, side by side.

Each folder holds a journal of rows shaped like SDT's (values drawn from seeded distributions, 1 in
17 keys failed at one of four stages), a run record, a warnings log, and SDT-sized figures (a
heatmap and a daily-energy PNG) for three keys. Printed: time to write the page, its size, and the
time headless Chromium takes from navigation to the load event; the 10,000/100 ratios show the page
does not grow with the fleet.
"""

from __future__ import annotations

import io
import json
import random
import tempfile
from pathlib import Path

from benchmarks import timed
from benchmarks.browser import open_page

SIZES = (100, 10_000)
FAILURES = [("get_data", "FileNotFoundError", "no such file: {key}.csv"),
            ("run_pipeline", "ValueError", "Problem data contains NaN"),
            ("worker lost", "KilledWorker", "the worker running this key died 2 time(s). Fix: raise memory_per_worker"),
            ("timeout", "Timeout", "still running after 600 s. Fix: raise the timeout (--timeout)")]


def _png(kind: str, rng: random.Random, days: int = 490) -> bytes:
    """A PV-like figure as SDT draws it: 5-minute power by day (clear and cloudy days), daily energy."""
    import math

    from matplotlib.figure import Figure

    weather = [rng.choice((1.0, 1.0, 0.9, 0.6, 0.3)) for _ in range(days)]
    season = [0.75 + 0.25 * math.cos(2 * math.pi * (d - 172) / 365) for d in range(days)]
    figure = Figure(figsize=(12, 6) if kind == "heatmap" else (8, 6))
    axes = figure.subplots()
    if kind == "heatmap":
        power = [[max(0.0, math.sin(math.pi * (t - 72) / 144)) * 5 * season[d] * weather[d] for d in range(days)]
                 for t in range(288)]
        axes.imshow(power, aspect="auto", cmap="plasma")
    else:
        axes.plot([30 * season[d] * weather[d] for d in range(days)], linewidth=1)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=72, bbox_inches="tight")
    return buffer.getvalue()


def make_folder(folder: Path, rows: int, seed: int = 7) -> None:
    """An output folder as a run leaves it (journal, run.json, warnings.log, plots/)."""
    from sdt_build.run.results import OutputFolder
    from sdt_build.runtime.rows import Row

    rng = random.Random(seed)
    output = OutputFolder(folder, resume=False)
    output.start()
    try:
        for i in range(rows):
            key = (f"system-{i:05d}", 2020 + i % 4)
            plots = {name: _png(name, rng) for name in ("heatmap", "daily energy")} if i < 3 else {}
            if i % 17 == 5:
                stage, error, message = FAILURES[i % len(FAILURES)]
                row = Row(key, "failed", stage, error, message.format(key=key[0]), None, "tcp://127.0.0.1:1",
                          seconds={"get_data": 0.2, "total": rng.uniform(0.2, 600)})
            else:
                days = rng.randint(90, 1500)
                values = {"length": days / 365, "capacity": rng.lognormvariate(1.5, 0.8), "sampling": 5,
                          "quality score": rng.betavariate(8, 1), "clearness score": rng.betavariate(2, 3),
                          "inverter clipping": rng.random() < 0.2, "clipped fraction": rng.random() * 0.05,
                          "capacity change": rng.random() < 0.05, "data quality warning": rng.random() < 0.3,
                          "time shift correction": rng.random() < 0.1, "time zone correction": 0, "num_days": days}
                pipeline = rng.uniform(4, 30) * days / 500
                row = Row.done(key, values, {"get_data": rng.uniform(0.1, 2), "make DataHandler": 0.3,
                                             "run_pipeline": pipeline, "report": 0.05, "total": pipeline + 1},
                               "tcp://127.0.0.1:1").but(plots=plots)
                if rng.random() < 0.6:
                    row = row.but(warnings="SmallSampleWarning: One or more sample arguments is too small (×3)")
            output.add(row.but(run_id="bench"))
        (folder / "run.json").write_text(json.dumps({
            "sdt_build": "bench", "project": "bench", "run_id": "bench", "keys": rows, "seconds": rows * 3.1,
            "parallel_efficiency": 0.93, "client": {"backend": "local", "workers": 2}, "options": {},
            "warnings": [], "versions": {"client": {"dask": "2026.8.0"}}}))
    finally:
        output.close()


def run() -> None:
    from sdt_build.run.report import make_report

    results = {}
    with tempfile.TemporaryDirectory(prefix="sdt-bench-report-") as work:
        for rows in SIZES:
            folder = Path(work) / f"rows-{rows}"
            make_folder(folder, rows)
            seconds, written = timed(lambda: make_report(folder))
            opened = open_page(written.path)
            assert not opened.console_errors, opened.console_errors
            results[rows] = (seconds, written.size, opened.load_ms)
            print(f"   {rows:>6} rows: written in {seconds:5.2f} s, {written.size / 1e6:5.2f} MB, "
                  f"Chromium load {opened.load_ms:6.0f} ms, outside requests {len(opened.outside_requests)}")
    small, large = results[SIZES[0]], results[SIZES[-1]]
    print(f"   ratio {SIZES[-1]}/{SIZES[0]}: write ×{large[0] / small[0]:.1f}, size ×{large[1] / small[1]:.2f}, "
          f"load ×{large[2] / max(small[2], 1):.2f}")
