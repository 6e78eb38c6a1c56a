"""What the console prints is what was meant: brackets in messages as written, fixes that name the
installer sdt-build came with and run as printed, and no noise around them."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SDT

UV = [sys.executable, "-m", "uv"]


def test_brackets_in_messages_and_table_cells_print_as_written():
    from rich.table import Table

    from sdt_build.cli.shell import _console

    stream = io.StringIO()
    console = _console(stream)
    table = Table()
    table.add_column("fix")
    table.add_row("pip install 'sdt-build[hpc]'")
    console.print("[green]fix:[/] pip install \"sdt-build[local]\" for key [13, 2011] \\[x] :smile:")
    console.print(table)
    text = stream.getvalue()
    assert "[green]" not in text and 'pip install "sdt-build[local]" for key [13, 2011] \\[x] :smile:' in text
    assert "sdt-build[hpc]" in text
    done = subprocess.run([SDT, "init", "x", "--example", "nope[local]"], capture_output=True, text=True)
    assert done.returncode == 1 and "'nope[local]'" in done.stderr, done.stderr


def test_the_readme_installs_what_the_scaffold_runs():
    """The scaffold's client is a LocalClient: every way the README installs sdt-build adds [local]."""
    lines = re.findall(r"(?:pip|pipx|uv tool) install [\"']?sdt-build[^\s\"']*", (ROOT / "README.md").read_text())
    assert len(lines) >= 3 and all(line.endswith("[local]") for line in lines), lines


@pytest.fixture
def scaffold(tmp_path):
    done = subprocess.run([SDT, "init", str(tmp_path / "mysites")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return tmp_path / "mysites"


def _tool_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "UV_TOOL_DIR": str(tmp_path / "tools"), "UV_TOOL_BIN_DIR": str(tmp_path / "bin"),
            "PATH": os.pathsep.join([str(tmp_path / "bin"), str(Path(sys.executable).parent), env["PATH"]])}


def _printed_fix(stderr: str, code: str) -> str:
    """The fix line under ``code`` in the human output, as a terminal shows it."""
    lines = stderr.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(code))
    return lines[at + 1].strip().removeprefix("fix:").strip()


def test_run_without_sdt_stops_first_and_its_printed_fix_runs_for_uv_tool(tmp_path, scaffold):
    env = _tool_env(tmp_path)
    subprocess.run([*UV, "tool", "install", "-q", str(ROOT)], env=env, check=True, capture_output=True)
    tool = str(tmp_path / "bin" / "sdt-build")
    done = subprocess.run([tool, "run", str(scaffold), "--output", str(tmp_path / "out")], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 5 and "SDT-E539" in done.stderr, done.stderr
    assert not (tmp_path / "out" / "journal.jsonl").exists()
    fix = _printed_fix(done.stderr, "SDT-E539")
    assert fix.startswith("uv tool install") and "sdt-build[local]" in fix, fix
    ran = subprocess.run(fix, shell=True, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr[-2000:]
    doctor = subprocess.run([tool, "doctor", str(scaffold), "--json"], capture_output=True, text=True, env=env,
                            timeout=120)
    check = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "client local")
    assert check["status"] == "ok", check


def test_every_engine_dry_run_names_its_missing_library(tmp_path):
    """Installed without extras, the dry run of each engine's client names the library it drives and
    the install that adds it, first among its problems (exit 5), as the run itself would stop."""
    env = _tool_env(tmp_path)
    subprocess.run([*UV, "tool", "install", "-q", str(ROOT)], env=env, check=True, capture_output=True)
    tool = str(tmp_path / "bin" / "sdt-build")
    for client, library, extra in (("fargate", "dask-cloudprovider", "cloud"), ("azure", "dask-cloudprovider", "cloud"),
                                   ("kubernetes", "dask-kubernetes", "kubernetes"), ("slurm", "dask-jobqueue", "hpc")):
        folder = tmp_path / client
        made = subprocess.run([tool, "init", str(folder), "--client", client], capture_output=True, text=True,
                              env=env, timeout=120)
        assert made.returncode == 0, made.stderr
        done = subprocess.run([tool, "run", str(folder), "--dry-run", "--json"], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=120)
        spec = json.loads(done.stdout)
        assert done.returncode == 5 and spec["problems"], (client, done.stdout, done.stderr)
        first = spec["problems"][0]
        assert first.startswith(f"{library} is not installed here: uv tool install") and f"[{extra}]" in first, \
            (client, first)


def test_the_fix_names_the_installer_of_the_venv(tmp_path):
    """uv pip (its INSTALLER file) gets `uv pip install` into that Python, and the printed fix
    runs; pip's INSTALLER gets that Python's pip; a pipx venv (its metadata file) gets pipx."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = _tool_env(tmp_path)
    subprocess.run([*UV, "pip", "install", "-q", "--python", python, str(ROOT)], env=env, check=True)

    def fix() -> str:
        return subprocess.run([python, "-c", "from sdt_build.installer import add_extra; print(add_extra('local'))"],
                              capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout.strip()

    by_uv = fix()
    assert by_uv.startswith(f"uv pip install --python {python} ") and "sdt-build[local] @ file://" in by_uv
    assert subprocess.run(by_uv, shell=True, env=env, capture_output=True).returncode == 0
    assert subprocess.run([python, "-c", "import solardatatools"], env=env).returncode == 0
    installer = next((venv / "lib").glob("python*/site-packages/sdt_build-*.dist-info/INSTALLER"))
    installer.write_text("pip\n")
    assert fix().startswith(f"{python} -m pip install ")
    (venv / "pipx_metadata.json").write_text("{}")
    assert fix().startswith("pipx install --force ")
    assert shlex.split(fix())[-1].startswith("sdt-build[local]")


@pytest.mark.docker
@pytest.mark.parametrize("python", ["3.11", "3.12"])
def test_a_python_without_a_base_image_is_reported_by_check_with_a_fix_that_does_not_loop(
        tmp_path, python, docker):
    """check says before any build what the build would say (SDT-E301), and its fix never sends to
    `sdt-build base` for a Python that command refuses (SDT-E906). A client that runs no image (the
    scaffold's LocalClient) gets it as a warning: its run needs no base image."""
    from docker.errors import APIError

    from sdt_build.build.daemon import image_exists
    from sdt_build.build.image import base_candidates
    from sdt_build.target import DEBIAN_SUITES

    base = subprocess.run([SDT, "base", "--python", python, "--json"], capture_output=True, text=True)
    if python not in DEBIAN_SUITES:
        assert base.returncode == 10 and json.loads(base.stdout)["error"]["code"] == "SDT-E906"
        assert "sdt-build base" not in json.loads(base.stdout)["error"]["fix"].replace(
            "`sdt-build base` bootstraps that one", "")
    try:
        reachable = any(image_exists(docker, ref) for ref in base_candidates(python)) or bool(
            docker.images.get_registry_data(f"python:{python}-slim"))
    except APIError:
        reachable = False
    for client, severity, code in (("docker", "error", 3), (None, "warning", 0)):
        folder = tmp_path / f"mysites-{client or 'local'}"
        subprocess.run([SDT, "init", str(folder), *(["--client", client] if client else [])], check=True,
                       capture_output=True)
        settings = folder / "sdt.toml"
        settings.write_text(re.sub(r'(?m)^python = ".*"$', f'python = "{python}"', settings.read_text()))
        done = subprocess.run([SDT, "check", str(folder), "--json"], capture_output=True, text=True, timeout=120)
        payload = json.loads(done.stdout)
        if reachable:
            assert done.returncode == 0 and not payload["problems"], payload
            continue
        assert done.returncode == code and payload["ok"] == (code == 0), (client, payload)
        problem = next(p for p in payload["problems"] if p["code"] == "SDT-E301")
        assert problem["severity"] == severity, (client, problem)
        assert f"Python {python}" in problem["cause"] and f"python:{python}-slim" in problem["fix"]
        assert (f"sdt-build base --python {python}" in problem["fix"]) == (python in DEBIAN_SUITES), problem


def test_the_wheel_builds_without_warnings_and_carries_every_example(tmp_path):
    """Examples and templates ship as package data: no setuptools warning per example folder."""
    import zipfile

    done = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "absent from the `packages` configuration" not in done.stdout + done.stderr
    names = set(zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist())
    shipped = {f"sdt_build/examples/{p.relative_to(ROOT / 'examples')}" for p in (ROOT / "examples").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts}
    assert shipped <= names, sorted(shipped - names)[:5]


@pytest.mark.parametrize("dashboard", [False, True])
def test_a_quiet_local_run_prints_only_its_result_and_leaves_no_lock(tmp_path, scaffold, dashboard):
    """With Dask's usual dashboard port taken, a run (the dashboard on or off) prints nothing of
    distributed's; its record says the dashboard it served, and the folder's lock goes with it."""
    import socket

    client = scaffold / "client.py"
    client.write_text(client.read_text().replace("threads_per_worker = 1", f"threads_per_worker = 1\n    workers = 1\n"
                                                 f"    dashboard = {dashboard}"))
    with socket.socket() as taken:
        try:
            taken.bind(("127.0.0.1", 8787))
            taken.listen()
        except OSError:
            pass  # taken already
        done = subprocess.run([SDT, "run", str(scaffold), "--key", "no-such-site", "--output", str(tmp_path / "out"),
                               "--quiet"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 5, done.stderr
    assert "8787" not in done.stderr and "already in use" not in done.stderr, done.stderr
    assert done.stdout == "" and done.stderr.startswith("1 failed at get_data"), done.stderr
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["client"]["dashboard"] == (record["dashboard"] is not None), record
    assert not (tmp_path / "out" / ".sdt-run.lock").exists()
    human = subprocess.run([SDT, "run", str(scaffold), "--key", "no-such-site", "--output", str(tmp_path / "out"),
                            "--force"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert "1 worker × 1 thread)" in human.stderr and "\n1 key in " in human.stderr, human.stderr
    assert "(s)" not in human.stderr.split("results in")[0], human.stderr


def test_a_build_that_stops_or_is_quiet_draws_no_bar(tmp_path, scaffold):
    (scaffold / "requirements.txt").write_text("numpy<1.20\n")
    stopped = subprocess.run([SDT, "build", str(scaffold)], capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 2 and stopped.stderr.startswith("SDT-E2"), stopped.stderr
    (scaffold / "requirements.txt").write_text("")
    quiet = subprocess.run([SDT, "build", str(scaffold), "--context-only", str(tmp_path / "context"), "--quiet"],
                           capture_output=True, text=True, timeout=600)
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == "", quiet.stderr


def test_doctor_results_go_to_stdout(tmp_path):
    done = subprocess.run([SDT, "doctor"], capture_output=True, text=True, timeout=120)
    assert "docker:" in done.stdout and "client local:" in done.stdout and "docker:" not in done.stderr, done


@pytest.mark.docker
def test_a_build_says_how_long_the_whole_build_took(tmp_path, scaffold, docker, base_image):
    """"built in N s" is the build as the user waited for it, the SDT environment it made included
    (on a base of its own, so the environment is made here), not the image's last layers alone."""
    import io
    import time
    import uuid

    base = docker.images.build(fileobj=io.BytesIO(f"FROM {base_image}\nLABEL sdt.test={uuid.uuid4().hex}\n".encode()),
                               tag=f"sdt-test-base:{uuid.uuid4().hex[:8]}", rm=True)[0]
    made = []
    try:
        settings = scaffold / "sdt.toml"
        settings.write_text(f'base_image = "{base.tags[0]}"\n' + settings.read_text())
        started = time.perf_counter()
        done = subprocess.run([SDT, "build", str(scaffold), "--no-smoke"], capture_output=True, text=True,
                              timeout=1800)
        waited = time.perf_counter() - started
        made = re.findall(r"environment: making (\S+)", done.stderr) + re.findall(r"image (\S+) \(", done.stderr)
        assert done.returncode == 0 and len(made) == 2, done.stderr[-3000:]
        seconds = float(re.search(r"\) built in (\d+) s", done.stderr).group(1))
        assert waited - 5 <= seconds <= waited + 1, (seconds, waited, done.stderr)  # less the CLI's own start
    finally:
        for tag in made[::-1] + [f"{made[-1].split(':')[0]}:latest"] * (len(made) == 2) + [base.id]:
            docker.images.remove(tag, force=True)
