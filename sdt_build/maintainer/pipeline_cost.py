"""What one SDT pipeline run costs, measured: ``python -m sdt_build.maintainer.pipeline_cost``.

Each site runs ``DataHandler(data).run_pipeline(fix_shifts=True)`` in a fresh process (as a worker
would meet it), once with sdt-build's upstream fixes and once without; the process's seconds and
peak memory are kept in ``sdt_build/constraints/pipeline-cost.json``, the fact that sizing, the
clients' defaults, doctor and every message about memory come from. Sites: the two real ones
shipped with SDT and synthetic systems of 90 days to three years with clipping, a capacity change
and a time shift.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent.parent / "constraints" / "pipeline-cost.json"
SITES = (("real", "TAEFC1044741"), ("real", "ZT162185000441C1203"), ("synthetic", 1, 90), ("synthetic", 4, 365),
         ("synthetic", 5, 365), ("synthetic", 13, 730), ("synthetic", 2, 1095))
ONE_SITE = '''
import importlib.util, json, resource, sys, time
from importlib import resources
import pandas as pd
from sdt_build.runtime import upstream_fixes
site, fixes = json.loads(sys.argv[1]), sys.argv[2] == "on"
outcomes = upstream_fixes.apply(fixes)
if site[0] == "real":
    import sdt_dask
    from pathlib import Path
    from solardatatools.time_axis_manipulation import make_time_series
    data = make_time_series(pd.read_csv(Path(sdt_dask.__file__).parent / "examples" / "example_data" / f"{site[1]}.csv"))[0]
else:
    with resources.as_file(resources.files("sdt_build.examples") / "synthetic" / "dataplug.py") as path:
        spec = importlib.util.spec_from_file_location("synthetic_plug", path)
        plug = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(plug)
    data = plug.SyntheticPV().get_data((site[1], site[2]))
from solardatatools import DataHandler
started = time.perf_counter()
handler = DataHandler(data)
handler.run_pipeline(verbose=False, fix_shifts=True)
seconds = time.perf_counter() - started
report = handler.report(return_values=True, verbose=False)
print(json.dumps({"seconds": round(seconds, 2), "peak_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
                  "days": int(handler.num_days), "applied": [o.name for o in outcomes if o.status == "applied"],
                  "report": {k: (v if isinstance(v, (bool, int, str)) else float(v)) for k, v in report.items()}}))
'''


def measure(site: tuple, fixes: bool) -> dict:
    """One site's pipeline in a fresh process: seconds, peak memory, days, fixes applied, SDT's report."""
    done = subprocess.run([sys.executable, "-c", ONE_SITE, json.dumps(list(site)), "on" if fixes else "off"],
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{site}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    sites = []
    for site in SITES:
        on, off = measure(site, True), measure(site, False)
        same = on["report"] == off["report"]
        print(f"{str(site):40s} {off['seconds']:6.1f} s {off['peak_gib']:5.2f} GiB → {on['seconds']:6.1f} s "
              f"{on['peak_gib']:5.2f} GiB ({on['days']} days; report {'identical' if same else 'DIFFERS'})")
        if not same or not on["applied"]:
            raise SystemExit(f"{site}: the fixes changed SDT's report or were not applied; nothing written")
        sites.append({"site": list(site), "days": on["days"], "with_fixes": {k: on[k] for k in ("seconds", "peak_gib")},
                      "without": {k: off[k] for k in ("seconds", "peak_gib")}})

    def summary(side: str) -> dict:
        return {"peak_gib": max(s[side]["peak_gib"] for s in sites),
                "median_seconds": statistics.median(s[side]["seconds"] for s in sites)}

    OUTPUT.write_text(json.dumps({
        "measured": time.strftime("%Y-%m-%d"), "python": sys.version.split()[0],
        "how": "python -m sdt_build.maintainer.pipeline_cost: DataHandler(data).run_pipeline(fix_shifts=True) per "
               "site in a fresh process; peak_gib is that process's peak resident memory",
        "with_fixes": summary("with_fixes"), "without": summary("without"), "sites": sites}, indent=1) + "\n")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
