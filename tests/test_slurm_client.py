"""SlurmClient: Dask workers as jobs of a real single-node SLURM cluster (scripts/slurm.sh), running
the venv `sdt-build build DIR --venv PATH` makes from the project's lock."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import dask
import pytest
from conftest import FIX_SHIFTS, SDT, SITES, assert_same_reports

from sdt_build import SDTDask
from sdt_build.build.workerenv import read_manifest
from sdt_build.clients import SlurmClient
from sdt_build.clients.slurm import sdt_jobs
from sdt_build.constraints import PIPELINE_PEAK_BYTES
from sdt_build.dependencies.resolve import lock
from sdt_build.runtime.errors import RunFailure
from sdt_build.userfolder.project import load_project



def _unique(folder):
    (folder / "sdt.toml").write_text(re.sub(r'name = "[^"]*"', f'name = "sdt-slurm-{uuid.uuid4().hex[:8]}"',
                                            (folder / "sdt.toml").read_text()))
    return folder


@pytest.fixture(scope="session")
def local_csv_venv(tmp_path_factory):
    """examples/local-csv and its venv, made by the command (the lock, the wheels, the smoke test)."""
    from conftest import EXAMPLES

    root = tmp_path_factory.mktemp("slurm")
    folder = root / "local-csv"
    shutil.copytree(EXAMPLES / "local-csv", folder, ignore=shutil.ignore_patterns("__pycache__"))
    _unique(folder)
    venv = root / "shared" / "venv"
    done = subprocess.run([SDT, "build", str(folder), "--venv", str(venv), "--json"], capture_output=True,
                          text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder, venv, json.loads(done.stdout)


def _client(venv, tmp_path, **settings) -> SlurmClient:
    return SlurmClient(venv=venv and str(venv), interface="lo", memory_per_worker="7GiB", log_directory=str(tmp_path / "logs"),
                       startup_timeout=120, **settings)


def _completed_jobs() -> dict[str, str]:
    """Job id → state of every job the cluster's completion log holds (what `sacct` shows here)."""
    done = subprocess.run(["sacct", "--completion", "-n", "-P", "-o", "JobID,State"], capture_output=True,
                          text=True, check=True)
    return dict(line.split("|")[:2] for line in done.stdout.splitlines() if "|" in line)


def test_the_venv_holds_the_lock_and_passed_the_smoke_test(local_csv_venv):
    folder, venv, built = local_csv_venv
    manifest = read_manifest(venv)
    assert manifest["content_hash"] == built["content_hash"] and manifest["smoke_ok"] is True
    assert manifest["pins"] == dict(sorted(lock(load_project(folder, require_env=False)).pins.items()))
    steps = {step["name"]: step["ok"] for step in built["smoke"]["steps"]}
    assert steps == {"imports": True, "plug module": True, "pip check": True, "dask entry points": True,
                     "SDT pipeline": True}, built["smoke"]["steps"]
    assert all(row["severity"] in ("ok", "note") for row in built["smoke"]["parity"]), built["smoke"]["parity"]
    again = subprocess.run([SDT, "build", str(folder), "--venv", str(venv), "--no-smoke", "--json"],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["skipped"] is True  # same content hash: nothing installed again


def test_both_sites_run_as_slurm_jobs_and_equal_a_direct_datahandler(slurm, local_csv_venv, direct_report,
                                                                      tmp_path):
    folder, venv, _ = local_csv_venv
    runner = SDTDask(folder, client=_client(venv, tmp_path, workers=2))
    result = runner.execute(output_dir=tmp_path / "out")
    assert result.ok and result.counts == {"ok": 2}, result.table[["key", "status", "stage", "message"]]
    assert_same_reports(result.table, [((site,), direct_report(site, FIX_SHIFTS)) for site in SITES])
    jobs = result.record["client"]["jobs"]
    assert len(jobs) == 2, result.record["client"]
    completed = _completed_jobs()
    assert all(completed.get(job) == "CANCELLED" for job in jobs.values()), (jobs, completed)  # ended by close
    assert not sdt_jobs()


def test_a_scancelled_job_becomes_a_row_with_its_id_and_resume_completes_it(slurm, local_csv_venv, tmp_path):
    folder, venv, _ = local_csv_venv
    runner = SDTDask(folder, client=_client(venv, tmp_path, workers=2))
    cancelled = {}

    def cancel_one_job_mid_key():
        """Once both workers run a key, cancel the job of one of them."""
        for _ in range(1200):
            dask_client = runner.client._dask_client
            if dask_client is not None and dask_client.status == "running":
                busy = [address for address, tasks in dask_client.processing().items() if tasks]
                if len(busy) == 2:
                    time.sleep(2)
                    name = dask_client.scheduler_info()["workers"][busy[0]]["name"]
                    job = runner.client._jobs[str(name)]
                    subprocess.run(["scancel", job], check=True)
                    cancelled["job"] = job
                    return
            time.sleep(0.25)

    killer = threading.Thread(target=cancel_one_job_mid_key, daemon=True)
    killer.start()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # no silent rerun elsewhere
        result = runner.execute(output_dir=tmp_path / "out", retries=0)
    killer.join(timeout=5)
    assert cancelled, "no job was cancelled"
    assert result.counts == {"ok": 1, "failed": 1}, result.table[["key", "status", "stage", "message"]].to_dict()
    lost = result.table[result.table["status"] == "failed"].iloc[0]
    assert lost["stage"] == "worker lost", lost.to_dict()
    assert f"SLURM job {cancelled['job']}" in lost["message"] and "CANCELLED" in lost["message"], lost["message"]
    assert f"SLURM job {cancelled['job']}" in result.record["lost_workers"]
    assert not sdt_jobs()

    resumed = SDTDask(folder, client=_client(venv, tmp_path, workers=1)).execute(output_dir=tmp_path / "out",
                                                                                 resume=True)
    assert resumed.ok and resumed.counts == {"ok": 2}, resumed.table[["key", "status", "message"]]
    assert resumed.record["already_done"] == 1


def test_a_venv_with_another_dask_is_refused_before_any_job(slurm, tmp_path):
    from sdt_build.sources.wheels import download

    venv = tmp_path / "old-dask"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    wheel = download({"dask": "2025.1.0"}, "3.11", tmp_path / "download.log")["dask"]
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--no-deps", str(wheel)], check=True)
    before = _completed_jobs()
    with pytest.raises(RunFailure) as refused:
        _client(venv, tmp_path, workers=1).connect()
    assert refused.value.code == "SDT-E503" and "dask 2025.1.0" in refused.value.cause, refused.value.cause
    assert f"pip install dask==2025.1.0" in refused.value.fix
    assert f"sdt-build build DIR --venv {venv}" in refused.value.fix
    assert not sdt_jobs() and _completed_jobs() == before  # nothing was submitted


def test_clean_cancels_the_jobs_of_a_crashed_client_and_no_others(slurm, tmp_path):
    live = SlurmClient(python=sys.executable, interface="lo", workers=1, memory_per_worker="6GiB",
                       log_directory=str(tmp_path / "live-logs"))
    live.connect()  # this process's: its job is no leftover
    try:
        script = textwrap.dedent(f"""
            import os, signal
            from sdt_build.clients import SlurmClient
            client = SlurmClient(python={sys.executable!r}, interface="lo", workers=1, memory_per_worker="6GiB",
                                 log_directory={str(tmp_path / 'logs')!r})
            client.connect()
            print("connected", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # a crash: no close, no atexit
        """)
        crashed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert "connected" in crashed.stdout, crashed.stderr[-2000:]
        assert len(sdt_jobs()) == 2  # the crashed client's worker job is left behind
        done = subprocess.run([SDT, "clean", "--json"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert [comment.split(":")[3] for _, comment in sdt_jobs()] == [str(os.getpid())]  # the live one's only
        payload = json.loads(done.stdout)
        cancelled = [entry for entry in payload["removed"] if entry["kind"] == "SLURM job"]
        kept = [entry for entry in payload["left"] if entry["kind"] == "SLURM job"]
        assert [entry["state"] for entry in cancelled] == ["gone"], payload
        assert [entry["state"] for entry in kept] == ["running"] and str(os.getpid()) in kept[0]["why"], payload
        assert [job for job, _ in sdt_jobs()] == [entry["name"] for entry in kept]
    finally:
        live.close()
    assert not sdt_jobs()


def test_dry_run_prints_the_job_script_with_jobqueue_configuration(tmp_path, copy_example):
    folder = copy_example()
    (folder / "client.py").write_text(textwrap.dedent(f"""
        from sdt_build.clients import SlurmClient


        class Cluster(SlurmClient):
            python = {sys.executable!r}
            account = "pv-fleet"
            log_directory = "slurm-logs"
            job_extra_directives = ("--qos=normal",)
    """))
    config = tmp_path / "jobqueue.yaml"
    config.write_text("jobqueue:\n  slurm:\n    queue: debug\n    walltime: '00:10:00'\n    cores: 2\n")
    done = subprocess.run([SDT, "run", str(folder), "--dry-run", "--json"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env={**os.environ, "DASK_CONFIG": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    spec = json.loads(done.stdout)
    script = spec["job_script"]
    for line in ("#SBATCH -p debug", "#SBATCH -A pv-fleet", "#SBATCH -t 00:10:00", "#SBATCH --cpus-per-task=2",
                 "#SBATCH --qos=normal", f"{sys.executable} -m distributed.cli.dask_worker"):
        assert line in script, script
    assert spec["problems"] == []
    assert "#SBATCH -o slurm-logs/dask-worker-%J.out" in script
    assert not (tmp_path / "slurm-logs").exists() and not sdt_jobs()  # a dry run makes and submits nothing


@pytest.mark.parametrize("change, words", [
    ({"venv": None}, "no worker environment"),
    ({"walltime": "two hours"}, "not a SLURM time"),
    ({"memory_per_worker": f"{PIPELINE_PEAK_BYTES // 2**21}MiB"}, "below what SDT needs"),  # half the peak
    ({"interface": "ib7"}, "does not exist on this machine"),
    ({"job_extra_directives": ("qos=normal",)}, "not an sbatch option"),
])
def test_each_wrong_setting_is_named_before_anything_is_submitted(tmp_path, change, words, monkeypatch):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    monkeypatch.delenv("SDT_VENV", raising=False)
    with dask.config.set({"jobqueue.slurm.python": None}):
        client = _client(venv, tmp_path, workers=1)
        for name, value in change.items():
            setattr(client, name, value)
        assert any(words in problem for problem in client.check()), client.check()
        with pytest.raises(RunFailure) as caught:
            client.connect()
    assert caught.value.code == "SDT-E530"


def test_a_refused_submission_is_told_in_slurms_words(slurm, tmp_path):
    with pytest.raises(RunFailure) as refused:
        _client(None, tmp_path, workers=1, python=sys.executable, queue="no-such-partition").connect()
    assert refused.value.code == "SDT-E533" and "Invalid partition" in refused.value.cause, refused.value.cause
    assert not sdt_jobs()


def test_a_job_that_ends_before_its_worker_joins_is_told_with_its_output(slurm, tmp_path):
    """A prologue that fails on the node (a missing module) ends the wait at once, with the job's words."""
    client = _client(None, tmp_path, workers=1, python=sys.executable,
                     job_script_prologue=("echo 'Lmod has detected the following error: python/3.11 is unknown' >&2",
                                          "exit 3"))
    started = time.monotonic()
    with pytest.raises(RunFailure) as ended:
        client.connect()
    assert ended.value.code == "SDT-E534" and "FAILED" in ended.value.cause, ended.value.cause
    assert "python/3.11 is unknown" in ended.value.cause and time.monotonic() - started < 60
    assert not sdt_jobs()
