"""Runs inside an image (``python3 -m sdt_build.runtime.probe ARGS_JSON``) for the smoke test.

Each step runs on its own, is timed, and ends as one record; the last line printed is one JSON
document. Only the standard library is imported at module level: a broken numeric stack must
show up as a failed step, not as a crash of the probe.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import time
import traceback

from sdt_build.runtime.parity import versions

STEP_MARKER = "SDT-STEP "  # printed as each step starts, so the smoke test can show where it is


def step(name: str, results: list, fn, only: list | None = None) -> object:
    if only is not None and name not in only:
        return None
    sys.stdout.write(f"{STEP_MARKER}{name}\n")  # one write: steps may start side by side
    sys.stdout.flush()
    started = time.perf_counter()
    try:
        detail = fn()
        results.append({"name": name, "ok": True, "seconds": round(time.perf_counter() - started, 3),
                        "detail": str(detail or "")[:2000]})
        return detail
    except BaseException as exc:  # every failure is a result, never a crash of the probe
        results.append({"name": name, "ok": False, "seconds": round(time.perf_counter() - started, 3),
                        "error_type": type(exc).__name__, "detail": f"{type(exc).__name__}: {exc}"[:2000],
                        "traceback": traceback.format_exc()[-4000:]})
        return None


def imports(modules: list[str]) -> str:
    loaded = []
    for module in modules:
        importlib.import_module(module)
        loaded.append(module)
    return ", ".join(loaded)


def user_module(folder: str, module: str, class_name: str) -> str:
    if folder not in sys.path:
        sys.path.insert(0, folder)
    loaded = importlib.import_module(module)
    getattr(loaded, class_name)
    return f"{module}.{class_name}"


def pip_check() -> str:
    done = subprocess.run([sys.executable, "-m", "pip", "check", "--disable-pip-version-check"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError((done.stdout + done.stderr).strip())
    return done.stdout.strip()


# Every command a supported cluster engine starts the scheduler and workers with.
LAUNCH_COMMANDS = (("dask", "scheduler"), ("dask", "worker"), ("dask-scheduler",), ("dask-worker",),
                   ("python3", "-m", "distributed.cli.dask_scheduler"), ("python3", "-m", "distributed.cli.dask_worker"))


def entry_points() -> str:
    found, covered = [], set()
    for command in LAUNCH_COMMANDS:
        path = shutil.which(command[0])
        if path is None:
            raise RuntimeError(f"`{command[0]}` is not on PATH")
        found.append(" ".join(command))
        if " ".join(command) in covered:  # a launcher run before execs exactly this command
            continue
        covered.add(_execs(path))
        done = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"`{' '.join(command)} --version` failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return ", ".join(found)


def _execs(path: str) -> str:
    """The command a shell launcher ends in (``exec COMMAND "$@"``), or "" for any other program."""
    try:
        with open(path, "rb") as launcher:
            text = launcher.read(4096)
    except OSError:
        return ""
    last = text.decode(errors="replace").strip().splitlines()[-1] if text.startswith(b"#!/bin/sh") else ""
    return last.removeprefix("exec ").removesuffix(' "$@"') if last.startswith("exec ") else ""


def own_runtime(pythonpath: str) -> str:
    """sdt_build as the image itself has it, without the copy the smoke test lends: workers need it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run([sys.executable, "-c", "import sdt_build, sdt_build.runtime.task; print(sdt_build.__version__)"],
                          capture_output=True, text=True, env=env, cwd="/", timeout=120)
    if done.returncode != 0:
        raise ModuleNotFoundError("the image has no sdt_build of its own, or one without this sdt-build's runtime "
                                  "part; Dask workers import it to run the plug: "
                                  + (done.stderr.strip().splitlines() or ["?"])[-1])
    return f"sdt_build {done.stdout.strip()}"


def sample(folder: str, class_name: str, key: list) -> str:
    if folder not in sys.path:
        sys.path.insert(0, folder)
    plug = getattr(importlib.import_module("dataplug"), class_name)()
    data = plug.get_data(tuple(key))
    shape = getattr(data, "shape", None)
    if shape is None or not shape[0]:
        raise ValueError(f"get_data{tuple(key)} returned {type(data).__name__} with no rows")
    return f"{shape[0]} rows × {shape[1] if len(shape) > 1 else 1} columns"


def pipeline(days: int, fixes: bool) -> str:
    """A real SDT pipeline on the first ``days`` days of a site that ships with SDT, with the upstream
    fixes applied as the workers apply them (``fixes``)."""
    from pathlib import Path

    from sdt_build.runtime import upstream_fixes

    said = "; ".join(f"{o.name}: {o.status}" + (f" ({o.reason})" if o.status != upstream_fixes.APPLIED else "")
                     for o in upstream_fixes.apply(fixes))
    import pandas as pd
    import sdt_dask
    from solardatatools import DataHandler
    from solardatatools.time_axis_manipulation import make_time_series

    csv = Path(sdt_dask.__file__).parent / "examples" / "example_data" / "ZT162185000441C1203.csv"
    series, _ = make_time_series(pd.read_csv(csv))
    series = series[series.index < series.index[0] + pd.Timedelta(days=days)]
    handler = DataHandler(series)
    handler.run_pipeline(verbose=False)
    report = handler.report(return_values=True, verbose=False)
    capacity = float(report["capacity"])
    if not capacity > 0:
        raise ValueError(f"the pipeline ran but found capacity {capacity}")
    return (f"{days} days, capacity {capacity:.2f} kW, quality {float(report['quality score']):.2f}; "
            f"upstream fixes: {said or 'none'}")


def main(args: dict) -> dict:
    """Every step (or those ``args["only"]`` names), the image's versions and its user id."""
    from concurrent.futures import ThreadPoolExecutor

    from sdt_build.runtime import upstream_fixes

    upstream_fixes.apply(args.get("upstream_fixes", True))  # before SDT is first imported, as on workers
    results: list = []
    only = args.get("only")
    with ThreadPoolExecutor(1) as aside:  # the two subprocess steps run beside the imports
        checks = aside.submit(lambda: (step("pip check", results, pip_check, only),
                                       step("dask entry points", results, entry_points, only)))
        step("imports", results, lambda: imports(["solardatatools", "dask", "distributed", "sdt_build"]), only)
        folder = args["project"]
        step("plug module", results, lambda: user_module(folder, "dataplug", args["plug_class"]), only)
        checks.result()
    if "own_pythonpath" in args:
        step("sdt_build in image", results, lambda: own_runtime(args["own_pythonpath"]), only)
    if args.get("sample_key") is not None:
        step("get_data sample key", results, lambda: sample(folder, args["plug_class"], args["sample_key"]), only)
    if args.get("pipeline_days"):
        step("SDT pipeline", results, lambda: pipeline(args["pipeline_days"], args.get("upstream_fixes", True)), only)
    return {"steps": results, "versions": versions(), "user": os.getuid()}


if __name__ == "__main__":
    print("SDT-PROBE " + json.dumps(main(json.loads(sys.argv[1]))))
