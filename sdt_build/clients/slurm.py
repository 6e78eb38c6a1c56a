"""SlurmClient: Dask workers as SLURM jobs (dask-jobqueue's SLURMCluster), each running the venv
``sdt-build build DIR --venv PATH`` made from the project's lock on a shared file system.

The scheduler runs in this process; each job runs one Dask worker with ``threads_per_worker``
cores and ``memory_per_worker`` memory. Settings left unset come from dask-jobqueue's own
configuration (``jobqueue.slurm.*``), as SLURMCluster reads it. Before any job is submitted the
settings are checked and the venv's Python reports its versions (parity). Every job carries a
comment naming sdt-build and its owner process, so jobs of a client that died (and only those:
``owner.standing``) are cancelled on the next connect and by ``sdt-build clean``; a job SLURM
ended (scancel, walltime, memory) is named with its id and SLURM's state in the rows of the keys
it lost.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import subprocess
import time
import uuid
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdt_build.clients.base import Client, quiet
from sdt_build.clients.local import parse_memory
from sdt_build.constraints import PIPELINE_PEAK, PIPELINE_PEAK_BYTES, WORKER_MEMORY
from sdt_build.installer import add_extra
from sdt_build.owner import Owned, me, standing
from sdt_build.runtime.errors import RunFailure
from sdt_build.runtime.plug import EnvVar

if TYPE_CHECKING:
    import distributed

COMMENT = "sdt-build"  # every job's --comment starts with it: "sdt-build:<cluster>:<owner>"
# SLURM's time limit formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S
WALLTIME = re.compile(r"^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+|\d+-\d+:\d{1,2}|\d+-\d+:\d{1,2}:\d{1,2})$")
# What SLURM's end states mean for a worker, and what to change.
ENDED = {
    "CANCELLED": "cancelled (scancel, or an administrator)",
    "TIMEOUT": "it reached its walltime: raise walltime in client.py",
    "OUT_OF_MEMORY": "it ran out of its memory: raise memory_per_worker in client.py",
    "NODE_FAIL": "its node failed",
    "PREEMPTED": "preempted by a job of higher priority",
    "FAILED": "the worker exited with an error: read the job's output file",
    "BOOT_FAIL": "its node did not boot",
    "DEADLINE": "it reached its deadline",
    "COMPLETED": "the worker exited (it lost its scheduler, or was told to close)",
}
_live: "weakref.WeakSet[SlurmClient]" = weakref.WeakSet()


def slurm_command(*args: str, timeout: float = 30) -> subprocess.CompletedProcess | None:
    """Run a SLURM command; None when it is not installed or does not answer."""
    if shutil.which(args[0]) is None:
        return None
    try:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None


def sdt_jobs() -> list[tuple[str, str]]:
    """(job id, comment) of this user's queued or running jobs that sdt-build submitted (not those
    already ending: SLURM shows a cancelled job as COMPLETING for a while)."""
    done = slurm_command("squeue", "--me", "-h", "-o", "%i|%T|%k")
    if done is None or done.returncode != 0:
        return []
    jobs = [line.split("|", 2) for line in done.stdout.splitlines() if line.count("|") >= 2]
    return [(job, comment) for job, state, comment in jobs
            if state != "COMPLETING" and comment.startswith(COMMENT + ":")]


def cancel_jobs(cluster: str) -> None:
    """Cancel the jobs of one cluster."""
    chosen = [job for job, comment in sdt_jobs() if comment.split(":")[1] == cluster]
    if chosen:
        slurm_command("scancel", *chosen)


def cancel_leftovers() -> list[Owned]:
    """Cancel the jobs whose owner process is gone (``owner.standing``, the rule containers are
    judged by too); every job sdt-build submitted, with how its owner stands."""
    found = []
    for job, comment in sdt_jobs():
        _, cluster, owner = (comment.split(":", 2) + ["", ""])[:3]
        judged = standing(owner)
        found.append(Owned("SLURM job", job, f"worker of cluster {cluster}", owner, judged, judged.gone))
    gone = [each.name for each in found if each.removed]
    if gone:
        slurm_command("scancel", *gone)
    return found


def job_states(job_ids: list[str]) -> dict[str, dict[str, str]]:
    """State, exit code and reason of each job, from squeue (queued and running), then sacct (with the
    accounting database, else the job completion log), then scontrol (recently ended jobs)."""
    found: dict[str, dict[str, str]] = {}
    if not job_ids:
        return found
    ids = ",".join(job_ids)
    done = slurm_command("squeue", "-h", "-j", ids, "-o", "%i|%T|%r")
    for line in (done.stdout.splitlines() if done and done.returncode == 0 else []):
        job, state, reason = (line.split("|") + ["", ""])[:3]
        if state != "COMPLETING":  # ending: its end state (CANCELLED, TIMEOUT…) is in the records below
            found[job] = {"state": state, "reason": reason}
    missing = [j for j in job_ids if j not in found]
    for extra in ((), ("--completion",)):
        if not missing:
            break
        done = slurm_command("sacct", *extra, "-n", "-P", "-X", "-j", ",".join(missing), "-o", "JobID,State,ExitCode")
        for line in (done.stdout.splitlines() if done and done.returncode == 0 else []):
            job, state, code = (line.split("|") + ["", ""])[:3]
            if job in missing and state:
                found[job] = {"state": state.split()[0], "exit_code": code, "reason": state}
        missing = [j for j in job_ids if j not in found]
    for job in missing:
        done = slurm_command("scontrol", "show", "job", "-o", job)
        if done and done.returncode == 0:
            fields = dict(re.findall(r"(\w+)=(\S*)", done.stdout))
            found[job] = {"state": fields.get("JobState", "?"), "exit_code": fields.get("ExitCode", ""),
                          "reason": fields.get("Reason", "")}
    return found


def job_output(job_id: str, log_directory: str | None = None, lines: int = 30) -> str:
    """The last ``lines`` lines of a job's error and output files (from scontrol, else the log folder)."""
    paths: list[Path] = []
    done = slurm_command("scontrol", "show", "job", "-o", job_id)
    if done and done.returncode == 0:
        fields = dict(re.findall(r"(\w+)=(\S*)", done.stdout))
        paths = [Path(fields[name]) for name in ("StdErr", "StdOut") if fields.get(name)]
    if log_directory:
        paths += sorted(Path(log_directory).glob(f"*-{job_id}.*"))
    texts = []
    for path in dict.fromkeys(paths):
        try:
            texts += path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
    return "\n".join(texts[-lines:])


class SlurmClient(Client):
    """``workers`` SLURM jobs of one Dask worker each, running the venv at ``venv``."""

    backend = "slurm"
    cluster_class = "dask_jobqueue.SLURMCluster"
    engine_library = ("dask_jobqueue", "dask-jobqueue", "hpc")
    workers = 2  # jobs, one Dask worker each
    threads_per_worker: int | None = None  # cores per job (None: jobqueue.slurm.cores, else 1)
    memory_per_worker: str | None = None  # memory per job (None: jobqueue.slurm.memory, else WORKER_MEMORY)
    venv: str | None = None  # the venv `sdt-build build DIR --venv PATH` made (or SDT_VENV)
    python: str | None = None  # or any Python on the shared file system (None: the venv's)
    queue: str | None = None  # partition (-p)
    account: str | None = None  # -A
    walltime: str | None = None  # -t, e.g. "02:00:00"
    job_extra_directives: tuple[str, ...] = ()  # more #SBATCH lines, e.g. ("--qos=normal",)
    job_script_prologue: tuple[str, ...] = ()  # shell lines before the worker starts (module load …)
    interface: str | None = None  # network interface of the scheduler and workers (ib0, eth0; lo here)
    local_directory: str | None = None  # node-local scratch for the workers
    log_directory: str | None = None  # where each job's output file goes
    scheduler_options: dict[str, Any] = {}  # passed to the Dask scheduler that runs in this process
    startup_timeout: float = 600  # seconds the jobs may queue before the run gives up
    env = (EnvVar("SDT_VENV", required=False, help="the worker venv when `venv` is not set"),
           EnvVar("SLURM_CONF", required=False, help="the cluster's slurm.conf when it is not the default"))

    def __init__(self, **settings: Any):
        import dask

        super().__init__(**settings)
        if self.threads_per_worker is None:
            self.threads_per_worker = dask.config.get("jobqueue.slurm.cores", None) or 1
        if self.memory_per_worker is None:
            self.memory_per_worker = dask.config.get("jobqueue.slurm.memory", None) or WORKER_MEMORY
        self._cluster_id = uuid.uuid4().hex[:8]
        self._jobs: dict[str, str] = {}  # Dask worker name → SLURM job id, kept after a job ends

    def _python(self) -> str | None:
        import dask

        venv = self.venv or os.environ.get("SDT_VENV")
        if self.python:
            return self.python
        if venv:
            return str(Path(venv) / "bin" / "python")
        return dask.config.get("jobqueue.slurm.python", None)

    def check(self) -> list[str]:
        """Every setting problem (empty when connect may go ahead); nothing is submitted."""
        problems = []
        python = self._python()
        if not python:
            problems.append("no worker environment: set venv in client.py (or SDT_VENV) to the venv that "
                            "`sdt-build build DIR --venv PATH` made on a shared file system")
        elif not Path(python).exists():
            problems.append(f"the workers' Python {python} does not exist here: build the venv with "
                            f"`sdt-build build DIR --venv {self.venv or os.environ.get('SDT_VENV') or 'PATH'}` "
                            "on a file system the compute nodes share")
        if self.walltime is not None and not WALLTIME.match(str(self.walltime)):
            problems.append(f"walltime {self.walltime!r} is not a SLURM time (MM, HH:MM:SS, D-HH:MM:SS)")
        try:
            memory = parse_memory(self.memory_per_worker)
            if memory < PIPELINE_PEAK_BYTES:
                problems.append(f"memory_per_worker {self.memory_per_worker} is below what SDT needs: "
                                f"{PIPELINE_PEAK}")
        except (ValueError, TypeError):
            problems.append(f"memory_per_worker {self.memory_per_worker!r} is not an amount of memory (like 8GiB)")
        if not isinstance(self.workers, int) or self.workers < 1 or \
                not isinstance(self.threads_per_worker, int) or self.threads_per_worker < 1:
            problems.append("workers and threads_per_worker must be whole numbers of at least 1")
        problems += [f"job_extra_directives {line!r} is not an sbatch option (like --qos=normal)"
                     for line in self.job_extra_directives if not str(line).startswith("-")]
        if self.interface:
            import psutil

            if self.interface not in psutil.net_if_addrs():
                problems.append(f"interface {self.interface!r} does not exist on this machine, where the scheduler "
                                f"runs (it has {', '.join(sorted(psutil.net_if_addrs()))})")
        if shutil.which("sbatch") is None:
            problems.append("sbatch is not on PATH: run on a machine that can submit SLURM jobs (a login node)")
        return problems

    def job_options(self) -> dict[str, Any]:
        """The SLURMCluster keyword arguments; unset ones are left to jobqueue.slurm.* configuration."""
        import dask

        options: dict[str, Any] = {
            "cores": self.threads_per_worker, "processes": 1,
            "memory": f"{parse_memory(self.memory_per_worker) // 2**20}MiB",
            "python": self._python(),
            "job_extra_directives": [*(dask.config.get("jobqueue.slurm.job-extra-directives", None) or []),
                                     *self.job_extra_directives,
                                     f"--comment={COMMENT}:{self._cluster_id}:{me()}"],
            "worker_extra_args": [*(dask.config.get("jobqueue.slurm.worker-extra-args", None) or []),
                                  "--dashboard-address", "127.0.0.1:0"],
        }
        for name in ("queue", "account", "walltime", "interface", "local_directory", "log_directory"):
            if getattr(self, name) is not None:
                options[name] = getattr(self, name)
        if self.job_script_prologue:
            options["job_script_prologue"] = list(self.job_script_prologue)
        return options

    def _scheduler_options(self) -> dict[str, Any]:
        import dask

        configured = dask.config.get("jobqueue.slurm.scheduler-options", None) or {}
        return {"dashboard_address": "127.0.0.1:0", **configured, **self.scheduler_options}

    def job_script(self) -> str:
        """The job script dask-jobqueue submits for each worker (scheduler address and name filled in
        when the cluster starts)."""
        import tempfile

        from dask_jobqueue.slurm import SLURMJob

        options = self.job_options()
        logs = options.get("log_directory")
        if logs is None or Path(logs).is_dir():
            return SLURMJob("tcp://<scheduler>:<port>", name="<worker>", **options).job_script()
        with tempfile.TemporaryDirectory() as stand_in:  # SLURMJob creates its log folder: not in a dry run
            script = SLURMJob("tcp://<scheduler>:<port>", name="<worker>",
                              **{**options, "log_directory": stand_in}).job_script()
        return script.replace(stand_in, str(logs))

    def dry_run(self, image: str | None = None) -> dict[str, Any]:
        missing = self.engine_problems()
        spec = {"backend": self.backend, "cluster": self.cluster_class, "jobs": self.workers,
                "kwargs": self.job_options(), "scheduler_options": self._scheduler_options(),
                "environment": sorted(self.environment), "problems": missing + self.check()}
        if not missing:
            spec["job_script"] = self.job_script()
        return spec

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "python": self._python(), "queue": self.queue, "account": self.account,
                "walltime": self.walltime, "jobs": dict(self._jobs)}

    def connect(self, image: str | None = None) -> "distributed.Client":
        problems = self.check()
        if problems:
            raise RunFailure("SDT-E530", f"SlurmClient settings are not valid: {problems[0]}",
                             "fix the settings in client.py (or their variables); `sdt-build run DIR --dry-run` "
                             "shows every problem and the job script", detail="\n".join(problems))
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError as exc:
            raise RunFailure("SDT-E531", "SlurmClient needs dask-jobqueue on this machine",
                             add_extra("hpc")) from exc
        self._check_environment()
        cancel_leftovers()
        self._cluster = SLURMCluster(job_cls=_recording_job(), scheduler_options=self._scheduler_options(),
                                     **self.job_options())
        _live.add(self)
        try:
            with quiet("tornado", "asyncio"):  # a refused submission is told below, not as a traceback
                self._cluster.scale(jobs=self.workers)
                self._dask_client = self.new_dask_client(self._cluster)
                self._wait_for_workers()
        except BaseException:
            self.close()
            raise
        return self._dask_client

    def _wait_for_workers(self) -> None:
        """Until every job's worker has joined; a refused submission or a job that cannot start
        ends the wait with SLURM's own words."""
        deadline = time.monotonic() + self.startup_timeout
        polls = 0
        while True:
            self._record_jobs()
            polls += 1
            if polls % 5 == 0:
                self._raise_for_ended_jobs()
            refused = [job.refused for job in list(self._cluster.workers.values()) if getattr(job, "refused", None)]
            if refused:
                said = re.findall(r"sbatch: error: (.*)", refused[0])
                raise RunFailure("SDT-E533", f"sbatch refused the worker job: {said[-1] if said else refused[0][-300:]}",
                                 "fix queue, account, walltime, memory_per_worker or job_extra_directives in "
                                 "client.py; `sdt-build run DIR --dry-run` prints the job script",
                                 detail=refused[0][-3000:])
            try:
                self._dask_client.wait_for_workers(self.workers, timeout=1)
                return
            except TimeoutError:
                pass
            if time.monotonic() > deadline:
                states = job_states(list(self._jobs.values()))
                waiting = "; ".join(f"job {job} {s['state']} ({s['reason']})" for job, s in states.items()) or \
                    "no job was submitted"
                raise RunFailure("SDT-E534", f"the {self.workers} SLURM jobs did not all start a worker within "
                                 f"{self.startup_timeout:g} s: {waiting}",
                                 "a queued job waits for resources (raise startup_timeout, or ask for less memory "
                                 "or time); a job that ended wrote why in its output file (log_directory)")

    def _raise_for_ended_jobs(self) -> None:
        """A job SLURM ended before all workers joined ends the wait at once, with its output's last words."""
        states = job_states(list(self._jobs.values()))
        for job, state in sorted(states.items()):
            if state["state"] in ENDED:
                output = job_output(job, self.log_directory)
                last = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "")
                raise RunFailure("SDT-E534", f"SLURM job {job} ended {state['state']} before its worker joined: "
                                 f"{last or ENDED[state['state']]}",
                                 "read the job's output (below, or in log_directory); run the venv's Python by "
                                 "hand on a compute node (srun --pty bash) to see the worker start",
                                 detail=output or None)

    def _check_environment(self) -> None:
        """The venv's Python reports its versions (sdt-build's parity module lent as a file) and
        imports sdt-build's runtime part; a difference that breaks Dask stops here, before any job."""
        from sdt_build import constraints
        from sdt_build.runtime import parity

        python = self._python()
        venv = self.venv or os.environ.get("SDT_VENV")
        where = f"worker venv {venv}" if venv and not self.python else f"workers' Python {python}"
        try:
            done = subprocess.run([python, parity.__file__], capture_output=True, text=True, timeout=120,
                                  cwd="/", env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RunFailure("SDT-E532", f"the workers' Python {python} does not run here: {exc}",
                             "rebuild the venv with `sdt-build build DIR --venv PATH`") from exc
        versions = parity.parse(done.stdout)
        if versions is None:
            raise RunFailure("SDT-E532", f"the workers' Python {python} cannot report its packages "
                             f"(exit {done.returncode})", "rebuild the venv with `sdt-build build DIR --venv PATH`",
                             detail=(done.stdout + done.stderr)[-2000:])
        python_version = ".".join((versions.get("python") or "").split(".")[:2])
        pinned = constraints.pins(python_version) if python_version in constraints.available() else {}
        rows = parity.compare(parity.versions(), versions, where="venv", pinned=pinned)
        try:
            parity.require(rows, where)
        except RunFailure as exc:
            raise RunFailure(exc.code, exc.cause, f"{exc.fix}; or rebuild the venv from this folder's lock: "
                             f"sdt-build build DIR --venv {venv or 'PATH'}", detail=exc.detail) from None
        done = subprocess.run([python, "-c", "import sdt_build.runtime.task"], capture_output=True, text=True, timeout=120,
                              cwd="/", env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        if done.returncode != 0:
            raise RunFailure("SDT-E532", f"the workers' Python {python} has no sdt-build runtime: workers could "
                             "not run a key", "build the venv with `sdt-build build DIR --venv PATH`",
                             detail=done.stderr[-2000:])

    def _record_jobs(self) -> None:
        cluster = self._cluster
        for name, job in list(getattr(cluster, "workers", {}).items()):
            if getattr(job, "job_id", None):
                self._jobs[str(name)] = str(job.job_id)

    def explain_lost_worker(self) -> str | None:
        """SLURM's account of this cluster's jobs that ended while the run went on: id, state, why."""
        if self._cluster is not None:
            self._record_jobs()
        states = job_states(list(self._jobs.values()))
        notes = []
        for name, job in sorted(self._jobs.items()):
            state = states.get(job)
            if state is None or state["state"] in ("RUNNING", "PENDING", "CONFIGURING", "COMPLETING", "SUSPENDED"):
                continue
            meaning = ENDED.get(state["state"], state.get("reason") or "")
            code = f", exit code {state['exit_code']}" if state.get("exit_code") else ""
            notes.append(f"SLURM job {job} (worker {name}) ended {state['state']}{code}: {meaning}")
        return "; ".join(notes) or None

    def close(self) -> None:
        """Close the cluster (dask-jobqueue cancels its jobs), then cancel any of its jobs still queued."""
        if self._cluster is not None:
            self._record_jobs()
        super().close()
        cancel_jobs(self._cluster_id)
        _live.discard(self)


@functools.cache
def _recording_job():
    """dask-jobqueue's SLURMJob that keeps sbatch's answer when a submission is refused."""
    from dask_jobqueue.slurm import SLURMJob

    class RecordingSLURMJob(SLURMJob):
        refused: str | None = None

        async def start(self) -> None:
            try:
                await super().start()
            except RuntimeError as exc:
                self.refused = str(exc)
                raise

    return RecordingSLURMJob


@atexit.register
def _cancel_leftovers() -> None:
    """Jobs of a cluster that was never closed (a crash, Ctrl-C in a notebook)."""
    for client in list(_live):
        cancel_jobs(client._cluster_id)
