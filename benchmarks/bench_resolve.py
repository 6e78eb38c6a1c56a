"""The pre-check (with its dependency walk) against the resolver on the dependency case set.

Every case of benchmarks/dependency_cases.toml goes through `check` twice, with an empty metadata
cache (cold) and then with the cache it filled (warm), and through the resolver (uv, SDT's pins
held, no caps; its verdicts cached by input hash). Printed: per case the two check times, both
verdicts and the blamed package; then the aggregates, the agreement count, and `sdt-build check
--resolve` on an unsatisfiable boto3 (the resolver capped by the walk's finding).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from benchmarks import ROOT, timed
from benchmarks.dependency_cases import cases, check, folder, resolver

from sdt_build.dependencies.resolve import lock
from sdt_build.userfolder.project import load_project


def run() -> None:
    chosen = cases()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        verdicts = {c.id: resolver(c, work / "resolver") for c in chosen}  # the resolver's, cached by input
        fresh = work / "cache"
        previous = os.environ.get("SDT_CACHE_DIR")
        os.environ["SDT_CACHE_DIR"] = str(fresh)
        try:
            cold = {c.id: check(c, work / "cold")[0] for c in chosen}
            warm = {c.id: check(c, work / "warm") for c in chosen}
        finally:
            os.environ.pop("SDT_CACHE_DIR") if previous is None else os.environ.update(SDT_CACHE_DIR=previous)
        agree = named = 0
        print(f"   {'case':28s} {'cold':>6s} {'warm':>6s}  check   resolver  blamed")
        for case in chosen:
            seconds, found = warm[case.id]
            errors = [f for f in found if f.severity == "error"]
            verdict = verdicts[case.id]
            same = (not errors) == verdict["ok"]
            agree += same
            blamed = sorted({f.package for f in errors if f.package})
            named += (not errors) or case.blamed in blamed
            print(f"   {case.id:28s} {cold[case.id]:6.2f} {seconds:6.2f}  {'ok' if not errors else 'error':6s}  "
                  f"{'ok' if verdict['ok'] else verdict['code']:8s}  {', '.join(blamed) or '-'}"
                  f"{'' if same else '   DISAGREE'}")
        warm_times = [s for s, _ in warm.values()]
        print(f"   cases: {len(chosen)} ({sum(c.transitive for c in chosen)} transitive conflicts); "
              f"check agrees with the resolver on {agree}/{len(chosen)}, names the blamed package on "
              f"{named}/{len(chosen)}")
        print(f"   check warm: median {statistics.median(warm_times):.2f} s, max {max(warm_times):.2f} s; "
              f"cold: median {statistics.median(cold.values()):.2f} s, max {max(cold.values()):.2f} s")

        boto3 = folder(type(chosen[0])("boto3-resolve", "boto3\n", "boto3"), work / "cli")
        seconds, done = timed(lambda: subprocess.run(
            [str(ROOT / ".venv" / "bin" / "sdt-build"), "check", str(boto3), "--resolve", "--json"],
            capture_output=True, text=True))
        print(f"   sdt-build check --resolve on unsatisfiable boto3 (default resolver): {seconds:.2f} s, "
              f"exit {done.returncode}")
        shutil.rmtree(work / "cli", ignore_errors=True)

        clean = load_project(folder(type(chosen[0])("clean", "pyyaml\n", ""), work / "lock"), require_env=False)
        cold_lock, _ = timed(lambda: lock(clean, use_cache=False))
        warm_lock, result = timed(lambda: lock(clean))
        assert result.cached
        print(f"   lock (resolver {result.backend}): cold {cold_lock:.2f} s, cached re-lock {warm_lock:.3f} s "
              f"(ratio {cold_lock / warm_lock:.0f}x)")
