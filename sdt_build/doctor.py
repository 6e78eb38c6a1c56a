"""`sdt-build doctor`: is this machine ready for the journey? One check per line, each with its fix.

Read-only: it asks the Docker daemon, the package indexes and the registry, reads the folder's
settings (``DIR`` is optional) and times a little fresh memory; it builds, pulls and logs in to nothing.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import statistics
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from sdt_build.constraints import PIPELINE_PEAK, PIPELINE_PEAK_BYTES, SDT_PACKAGE, WORKER_MEMORY
from sdt_build.runtime.errors import SdtBuildError, counted
from sdt_build.sources import pipconfig

FREE_BYTES = 5 * 1024**3  # the wheel cache and one build context of SDT's set fit in well under this
THP_POLICY = Path("/sys/kernel/mm/transparent_hugepage/enabled")
HUGE_PAGES = "NUMPY_MADVISE_HUGEPAGE"  # numpy's switch for its transparent huge pages, read at import
HUGE_PAGES_SLOWER = 3  # fresh huge pages this many times slower than small ones: SDT's pipeline suffers


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warning | fail
    detail: str
    fix: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def diagnose(directory: Path | None = None) -> list[Check]:
    """Every check, for the folder's settings when ``directory`` is given (defaults otherwise)."""
    pages = _page_costs()  # first: memory the other checks free is handed out again at once
    project = _project(directory) if directory else None
    python = project.settings.python if project else "3.11"
    sources = pipconfig.for_lines(project.requirement_lines, project.root) if project else pipconfig.from_pip()
    checks, docker = _docker()
    checks.append(_base_image(docker, python, project.settings.base_image if project else None))
    checks += [_index(url, sources) for url in sources.indexes]
    checks.append(_disk())
    checks.append(_workers(project))
    checks.append(_huge_pages(pages, project))
    if project and project.settings.registry:
        checks.append(_registry(project.settings.registry))
    checks += _client(project)
    return checks


def _project(directory: Path):
    from sdt_build.userfolder.project import load_project

    return load_project(directory, require_env=False)


def _docker():
    from sdt_build.build.daemon import docker_client

    try:
        client = docker_client()
    except SdtBuildError as exc:
        return [Check("docker", "fail", f"{exc.code} {exc.cause}", exc.fix)], None
    info = client.version()
    return [Check("docker", "ok", f"daemon {info.get('Version', '?')} (API {info.get('ApiVersion', '?')})")], client


def _base_image(docker, python: str, wanted: str | None) -> Check:
    from sdt_build.build.daemon import image_exists
    from sdt_build.build.image import base_candidates, missing_base

    candidates = base_candidates(python, wanted)
    if docker is None:
        return Check("base image", "fail", f"cannot look for {' or '.join(candidates)} without the Docker daemon",
                     "start Docker first")
    problem = missing_base(docker, python, wanted)
    if problem is not None:
        return Check("base image", "fail" if problem.severity == "error" else "warning", problem.cause, problem.fix)
    present = next((ref for ref in candidates if image_exists(docker, ref)), None)
    return Check("base image", "ok", f"{present} is present" if present else f"{candidates[0]} can be pulled")


def _index(url: str, sources: pipconfig.IndexSettings) -> Check:
    from sdt_build.sources.index import reach

    where = pipconfig.host(url)
    problem = reach(url, sources)
    if problem is None:
        return Check(f"index {where}", "ok", "answers with the configured credentials")
    status, detail, fix = problem
    return Check(f"index {where}", status, detail, fix)


def _disk() -> Check:
    from sdt_build.cache import cache_root

    folder = cache_root()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    detail = f"{free / 1024**3:.1f} GiB free for the cache ({folder})"
    if free < FREE_BYTES:
        return Check("disk", "warning", detail, "free space, `sdt-build clean --cache`, or point SDT_CACHE_DIR at a "
                     f"disk with {FREE_BYTES // 1024**3} GiB free")
    return Check("disk", "ok", detail)


def _workers(project) -> Check:
    """How many local workers this machine runs, and with what memory each, from the measured cost of
    a pipeline run (constraints/pipeline-cost.json) and the folder's client when it is a local one."""
    import psutil

    from sdt_build.clients.local import machine_workers, parse_memory

    memory = WORKER_MEMORY
    if project is not None:
        from sdt_build.clients import load_client

        memory = load_client(project).memory_per_worker or WORKER_MEMORY
    total = psutil.virtual_memory().total
    workers = machine_workers(memory)
    detail = (f"{counted(os.cpu_count() or 1, 'core')}, {total / 2**30:.1f} GiB: {counted(workers, 'local worker')} of "
              f"{memory}; {PIPELINE_PEAK}")
    if parse_memory(memory) < PIPELINE_PEAK_BYTES:
        return Check("workers", "warning", detail, f"set memory_per_worker to at least {WORKER_MEMORY} in client.py")
    return Check("workers", "ok", detail)


def _page_costs() -> tuple[str, bool]:
    """What fresh memory costs here in small and in numpy's transparent huge pages, and whether huge
    ones are the slower. A pipeline run without sdt-build's upstream fixes touches several GB of
    fresh memory per site (with them, under one), and on virtual machines that hand freed memory back
    to their host a fresh huge page can cost many times a small one (docs/running.md)."""
    try:
        policy = THP_POLICY.read_text().split("[")[1].split("]")[0]
    except (OSError, IndexError):
        return "this system has no transparent huge pages", False
    if policy != "madvise":
        return f"the kernel's policy is {policy}: numpy's choice changes nothing", False
    (small, one), (huge, other) = _first_touch(huge=False), _first_touch(huge=True)
    one.close()
    other.close()
    # Memory freed a moment ago is handed out again at once, without the cost, so a huge slice costs
    # either that or what a fresh one costs: the second slowest shows the fresh cost when there is one.
    small, huge = statistics.median(small), sorted(huge)[-2]
    worst = _worst_ratio(huge / small)
    detail = f"fresh memory costs {small:.2f} s per GiB in small pages, {huge:.2f} s in huge pages"
    if worst > huge / small:
        detail += f" (huge ones {worst:.1f}× the small at worst since this machine started)"
    return detail, worst > HUGE_PAGES_SLOWER


def _worst_ratio(ratio: float) -> float:
    """The highest huge-to-small cost measured since this machine started, this one included: memory
    freed shortly before hides the cost from one measurement, never what the machine is."""
    from sdt_build.cache import cache_root

    path = cache_root() / "huge-pages.json"
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ratio
    try:
        seen = json.loads(path.read_text())
    except (OSError, ValueError):
        seen = {}
    worst = max(ratio, seen.get("ratio", 0.0) if seen.get("boot") == boot else 0.0)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"boot": boot, "ratio": worst}))
    except OSError:
        pass  # a read-only cache: this measurement alone
    return worst


def _huge_pages(costs: tuple[str, bool], project) -> Check:
    """numpy's huge pages: a warning where they are the slower and not turned off (here, or in the
    folder's declared env)."""
    detail, slower = costs
    declared = {var.name: var.value() for var in project.env} if project else {}
    if (declared.get(HUGE_PAGES) or os.environ.get(HUGE_PAGES)) == "0":
        return Check("huge pages", "ok", f"{detail}; numpy's are off ({HUGE_PAGES}=0)")
    if slower:
        return Check("huge pages", "warning", f"{detail}: numpy uses huge pages, so SDT's pipeline runs slower",
                     f'declare EnvVar("{HUGE_PAGES}", required=False, default="0") in client.py\'s env (and export '
                     f"{HUGE_PAGES}=0 for local and SLURM workers); `sdt-build docs running` says why")
    return Check("huge pages", "ok", detail)


def _first_touch(*, huge: bool, size: int = 256 * 1024**2, parts: int = 16) -> tuple[list[float], mmap.mmap]:
    """Seconds per GiB to write fresh anonymous memory for the first time, in small or huge pages,
    for each of ``parts`` slices, and that memory (the caller closes it: while it is held, the next
    call gets other memory)."""
    memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if huge:
        memory.madvise(mmap.MADV_HUGEPAGE)
    part = size // parts
    rates = []
    for start in range(0, size, part):
        started = time.perf_counter()
        for offset in range(start, start + part, mmap.PAGESIZE):
            memory[offset] = 1
        rates.append((time.perf_counter() - started) * 1024**3 / part)
    return rates, memory


def _registry(registry: str) -> Check:
    """sdt.toml's registry answers, and docker has a login for it when it asks for one."""
    host = registry.split("/")[0]
    status = None
    for scheme in ("https", "http"):
        try:
            with urllib.request.urlopen(f"{scheme}://{host}/v2/", timeout=5) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (urllib.error.URLError, OSError, ValueError):
            continue
        break
    if status is None:
        return Check(f"registry {host}", "fail", "does not answer", f"check the address in sdt.toml ({registry})")
    if status != 401:
        return Check(f"registry {host}", "ok", "answers; no login needed")
    if host in _docker_logins():
        return Check(f"registry {host}", "ok", "answers; docker has a login for it")
    return Check(f"registry {host}", "fail", "asks for a login and docker has none for it", f"docker login {host}")


def _docker_logins() -> set[str]:
    path = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return set()
    names = set(config.get("auths", {})) | set(config.get("credHelpers", {}))
    return {name.removeprefix("https://").removeprefix("http://").split("/")[0] for name in names}


def _client(project) -> list[Check]:
    """The folder's client: cloud settings and credentials (offline), or SDT importable for a local run."""
    backend = "local"
    if project is not None:
        from sdt_build.clients import load_client
        from sdt_build.clients.cloud import CloudClient

        try:
            client = load_client(project)
        except SdtBuildError as exc:
            return [Check("client", "fail", f"{exc.code} {exc.cause}", exc.fix)]
        backend = client.backend
        if isinstance(client, CloudClient) or backend == "slurm":
            problems = client.dry_run(None)["problems"]
            if problems:
                return [Check(f"client {backend}", "fail", problems[0], "`sdt-build docs clients` lists its "
                              "settings and variables; `sdt-build run DIR --dry-run` lists every problem")]
            return [Check(f"client {backend}", "ok", "settings and credentials are usable (checked offline)"
                          if backend != "slurm" else "settings, sbatch and the worker venv are usable (checked "
                          "offline)")]
    if backend != "local":
        return [Check(f"client {backend}", "ok", "no local requirements")]
    from sdt_build.clients.local import sdt_missing

    missing = sdt_missing()
    if missing is not None:
        return [Check("client local", "fail", f"{missing.code} {missing.cause}", missing.fix)]
    try:
        found = version(SDT_PACKAGE)
    except PackageNotFoundError:
        found = "?"
    return [Check("client local", "ok", f"solar-data-tools {found} importable")]
