"""A SLURM allocation through dask-jobqueue (pip install "sdt-build[hpc]").

The workers run a venv on a file system the compute nodes share, made from this folder's lock:
`sdt-build build DIR --venv /shared/envs/mysites` (the same lock and wheels as the image, smoke-tested).
Each worker is one SLURM job; the scheduler runs where `sdt-build run` runs (a login node).
Unset settings come from dask-jobqueue's configuration (jobqueue.slurm.* in ~/.config/dask/).
`sdt-build run DIR --dry-run` prints the job script without submitting anything.
"""

from sdt_build.clients import SlurmClient


class Slurm(SlurmClient):
    venv = "/shared/envs/mysites"   # or export SDT_VENV
    queue = "standard"               # the partition
    account = "pv-analytics"
    walltime = "02:00:00"
    workers = 20                     # jobs, one Dask worker each
    threads_per_worker = 1           # cores per job
    memory_per_worker = "8GiB"       # per job; one SDT pipeline run peaks near 6 GiB
    job_extra_directives = ("--qos=normal",)
    job_script_prologue = ("module purge",)
    interface = "ib0"                # the network the compute nodes reach the scheduler on
    log_directory = "slurm-logs"
