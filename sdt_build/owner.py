"""Who started something: a process on a host, with its start time so that a reused pid is not
taken for it. Every container and SLURM job sdt-build starts names its owner; what an owner that
is gone left behind is a leftover, and only leftovers are removed (by ``sdt-build clean``, and by a
new cluster that needs the memory)."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

# Seconds two readings of one process's start time may differ by: psutil derives it from the boot
# time, which moves when the wall clock is adjusted. A pid reused within a second is not seen here.
SAME_START = 1.0
HOST_PID_NAMESPACE = 0xEFFFFFFC  # the kernel's first pid namespace (PROC_PID_INIT_INO): the host's own
GONE, RUNNING, ELSEWHERE, UNOWNED = "gone", "running", "elsewhere", "unowned"


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: float | None = None  # its start time (seconds since the epoch); older versions wrote none

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}" + (f":{self.started:.2f}" if self.started is not None else "")

    @classmethod
    def parse(cls, text: str | None) -> Owner | None:
        """``host:pid:started``, or ``host:pid`` as older versions wrote it; None for anything else."""
        parts = (text or "").split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1].isdigit():
            return None
        try:
            started = float(parts[2]) if len(parts) == 3 else None
        except ValueError:
            return None
        return cls(parts[0], int(parts[1]), started)


def me() -> Owner:
    """This process, here."""
    import psutil

    return Owner(here(), os.getpid(), psutil.Process().create_time())


def here() -> str:
    """Where a pid means this process: the host's name, and the pid namespace when it is not the
    host's own (in a container that shares the host's name and Docker daemon, pids are its own)."""
    try:
        space = os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # no /proc (macOS): the host's
        space = HOST_PID_NAMESPACE
    name = socket.gethostname()
    return name if space == HOST_PID_NAMESPACE else f"{name}/pid-namespace-{space}"


@dataclass(frozen=True)
class Standing:
    """How the owner of something stands: ``state`` is one of GONE (a leftover), RUNNING, ELSEWHERE
    (another host's: its processes cannot be seen from here) and UNOWNED (no owner named)."""

    state: str
    why: str

    @property
    def gone(self) -> bool:
        return self.state == GONE


def standing(text: str | None) -> Standing:
    """How the owner named by ``text`` (``str(Owner)``) stands: the one rule for leftovers."""
    import psutil

    owner = Owner.parse(text)
    if owner is None:
        return Standing(UNOWNED, "it names no owner (an sdt-build older than owner labels made it)")
    if owner.host != here():
        return Standing(ELSEWHERE, f"its owner runs on {owner.host}, not here ({here()}): only `sdt-build clean` "
                                   "there can tell whether it is left over")
    try:
        process = psutil.Process(owner.pid)
        started = process.create_time()
        alive = process.status() != psutil.STATUS_ZOMBIE
        name = process.name()
    except psutil.NoSuchProcess:  # none (or it ended while we looked, or is a zombie)
        return Standing(GONE, f"its owner, process {owner.pid} on this machine, is gone")
    except psutil.AccessDenied:  # another user's: it exists, and is taken for the owner
        return Standing(RUNNING, f"its owner, process {owner.pid} on this machine (another user's), is running")
    if owner.started is not None and abs(started - owner.started) > SAME_START:
        return Standing(GONE, f"its owner, process {owner.pid} started {_when(owner.started)}, is gone (pid "
                              f"{owner.pid} is now {name}, started {_when(started)})")
    if not alive:
        return Standing(GONE, f"its owner, process {owner.pid} on this machine, has ended")
    return Standing(RUNNING, f"its owner, process {owner.pid} ({name}) on this machine, is still running")


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


@dataclass(frozen=True)
class Owned:
    """Something sdt-build started (a container, a SLURM job), how its owner stands, and whether it
    was removed."""

    kind: str  # "container", "SLURM job"
    name: str
    role: str
    owner: str | None
    standing: Standing
    removed: bool

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "role": self.role, "owner": self.owner,
                "state": self.standing.state, "why": self.standing.why}
