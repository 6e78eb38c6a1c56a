"""Pre-check vs pip-compile on the same conflicting input; cached re-lock.

Both sides see the same user folder (a plug asking numpy<1.20 next to SDT's pinned set), in the
same run: the pre-check answers from SDT's metadata (and the index), pip-compile by resolving.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import ROOT, timed
from sdt_build import constraints
from sdt_build.errors import DependencyConflict
from sdt_build.precheck import precheck
from sdt_build.project import load_project
from sdt_build.resolve import lock



def _project(folder: Path, requirements: str) -> Path:
    shutil.copytree(ROOT / "examples" / "local-csv", folder, dirs_exist_ok=True)
    (folder / "requirements.txt").write_text(requirements)
    return folder


def run() -> None:
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        project = load_project(_project(work / "conflict", "numpy<1.20\n"), require_env=False)
        pre_seconds, findings = timed(lambda: precheck(project))
        errors = [f.code for f in findings if f.severity == "error"]
        inputs = work / "naive.in"
        inputs.write_text((constraints.folder("3.11") / "sdt.in").read_text() + "numpy<1.20\n")
        compile_seconds, done = timed(lambda: subprocess.run(
            [sys.executable, "-m", "piptools", "compile", "--no-header", "-o", str(work / "naive.txt"), str(inputs)],
            capture_output=True, text=True))
        last = (done.stderr.strip().splitlines() or ["?"])[-1][:100]
        print(f"   pre-check:   {pre_seconds:7.2f} s  -> {', '.join(errors)}")
        print(f"   pip-compile: {compile_seconds:7.2f} s  -> exit {done.returncode}: {last}")
        print(f"   ratio pip-compile / pre-check: {compile_seconds / pre_seconds:.0f}x")

        clean = load_project(_project(work / "clean", "pyyaml\n"), require_env=False)
        cold, _ = timed(lambda: lock(clean, use_cache=False))
        warm, result = timed(lambda: lock(clean))
        assert result.cached
        print(f"   lock (resolver {result.backend}): cold {cold:.2f} s, cached re-lock {warm:.3f} s "
              f"(ratio {cold / warm:.0f}x)")
        try:
            lock(project)
        except DependencyConflict as exc:
            print(f"   lock on the conflict stops at the pre-check: {exc.code}")
