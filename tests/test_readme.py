"""README's first steps, run as written from an empty folder outside the checkout: the quick start
(after its pip line) and the Python example, on the folder the quick start makes."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SDT

README = (ROOT / "README.md").read_text()


def _block(language: str, number: int = 0) -> str:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)[number]


def _rows(results: Path) -> list[dict]:
    with open(results / "results.csv", newline="") as table:
        return list(csv.DictReader(table))


def test_quick_start_uses_only_what_its_scaffold_runs():
    """A scaffold whose client runs no image is not sent through `build`, whose image it never uses."""
    from sdt_build.clients import load_client
    from sdt_build.userfolder.project import load_project

    quick = _block("bash")
    example = re.search(r"sdt-build init \S+ --example (\S+)", quick).group(1)
    if not load_client(load_project(ROOT / "examples" / example)).needs_image:
        assert not re.search(r"sdt-build (build|smoke)\b", quick), quick


@pytest.mark.slow
def test_quick_start_and_python_example_run_as_written(tmp_path):
    env = {**os.environ, "PATH": f"{Path(SDT).parent}{os.pathsep}{os.environ['PATH']}"}
    commands = [line.split("#")[0].strip() for line in _block("bash").splitlines()]
    for command in [c for c in commands if c and not c.startswith("pip ")]:
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=1800)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-3000:])
    project = re.search(r"sdt-build init (\S+)", _block("bash")).group(1)
    rows = _rows(tmp_path / "sdt-results" / project)
    assert rows and all(row["status"] == "ok" for row in rows), rows

    script = tmp_path / "example.py"
    script.write_text(_block("python"))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    output = re.search(r'output_dir="([^"]+)"', _block("python")).group(1)
    rows = _rows(tmp_path / output)
    assert rows and all(row["status"] == "ok" for row in rows), rows


def test_python_example_with_a_key_that_fails_ends_with_its_own_message(tmp_path):
    """When every key fails, the table still has SDT's report columns (empty), so the script's own
    column selection works and it ends with its own message (exit 1), not a pandas KeyError."""
    env = {**os.environ, "PATH": f"{Path(SDT).parent}{os.pathsep}{os.environ['PATH']}"}
    example = _block("python")
    project = re.search(r'SDTDask\("([^"]+)"\)', example).group(1)
    scaffold = re.search(r"sdt-build init \S+ --example (\S+)", _block("bash")).group(1)
    made = subprocess.run([SDT, "init", project, "--example", scaffold], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    script = tmp_path / "example.py"
    script.write_text(re.sub(r"\.execute\(\[.*\],(\s*output_dir)", r'.execute([("no-such-site",)],\1', example))
    assert "no-such-site" in script.read_text()
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 1 and "1 key(s) failed" in done.stderr, (done.stdout[-2000:], done.stderr[-3000:])
    assert "Traceback" not in done.stderr and "no-such-site" in done.stdout, done.stderr[-3000:]
