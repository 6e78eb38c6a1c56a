"""Prove an image works, and matches the client, before anything is deployed.

One container of the image (host network, its own non-root user, the declared environment
variables passed at run time only) runs ``sdt_build.runtime.probe``; each check is a named step with
pass/fail and time. Parity (``sdt_build.runtime.parity``) compares the client environment's versions with
the image's the way Dask's own check would, but before any task runs, and says which side to change.
"""

from __future__ import annotations

import hashlib
import json
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from sdt_build import __version__, constraints
from sdt_build.build.daemon import LABEL, bytecode_cache, container
from sdt_build.cache import cache_root
from sdt_build.progress import Event, OnEvent, ignore
from sdt_build.runtime import parity
from sdt_build.runtime.errors import SmokeFailure
from sdt_build.runtime.parity import ParityRow
from sdt_build.runtime.probe import STEP_MARKER
from sdt_build.userfolder.project import UserProject

STEP_CODES = {
    "imports": ("SDT-E401", "rebuild the image with `sdt-build build`; if you bring your own image, install "
                            "solar-data-tools, dask and distributed in it"),
    "plug module": ("SDT-E402", "fix dataplug.py so that `python -c 'import dataplug'` works in the image"),
    "pip check": ("SDT-E404", "rebuild with `sdt-build build` (its lock passes pip check); never install a lock "
                              "that pip check rejects"),
    "dask entry points": ("SDT-E405", "install distributed in the image, with `dask-scheduler` and `dask-worker` "
                                      "launchers (`sdt-build docs own-image`): the cluster engines start them"),
    "sdt_build in image": ("SDT-E411", "install sdt_build in your image (`sdt-build docs own-image` shows how), or let "
                                       "`sdt-build build` make the image"),
    "get_data sample key": ("SDT-E406", "check the plug against that key, and that its environment variables are "
                                        "set here (they are passed to the container at run time)"),
    "SDT pipeline": ("SDT-E407", "the numeric stack in the image is broken (a missing solver or a mismatched "
                                 "numpy/scipy): rebuild from sdt-build's lock"),
    "non-root user": ("SDT-E412", "rebuild with `sdt-build build` (its images run as the user `sdt`); in your own "
                                  "image, add a user and a USER line"),
}
PROJECT_IN_IMAGE = "/opt/sdt/project"
PIPELINE_DAYS = 30  # days of real data the SDT pipeline step runs on, unless told otherwise


# Each step belongs to a group, proved (and remembered) by what it depends on (``proof_keys``).
GROUPS = {"imports": "environment", "dask entry points": "environment", "SDT pipeline": "environment",
          "pip check": "packages", "plug module": "plug", "get_data sample key": "plug"}
ORDER = ("imports", "plug module", "pip check", "dask entry points", "sdt_build in image", "get_data sample key",
         "SDT pipeline")


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool
    seconds: float
    detail: str = ""
    traceback: str = ""
    remembered: bool = False  # proved before for exactly these inputs: not run again


@dataclass(frozen=True)
class SmokeReport:
    image: str
    steps: tuple[Step, ...]
    parity: tuple[ParityRow, ...]
    seconds: float
    versions: dict = field(default_factory=dict)
    kind: str = "image"  # or "venv": what ``image`` names

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps) and not any(p.severity == "error" for p in self.parity)

    def failure(self, also: str = "") -> SmokeFailure:
        """The first failing step (or parity error) as an error with its code, its fix (and ``also``),
        and this report."""
        for step in self.steps:
            if not step.ok:
                code, fix = STEP_CODES[step.name]
                if step.name == "plug module" and "ModuleNotFoundError" in step.detail:
                    missing = step.detail.split("'")[1] if "'" in step.detail else "the package"
                    fix = f"add the distribution that provides `{missing}` to requirements.txt, then rebuild"
                return SmokeFailure(code, f"smoke step '{step.name}' failed in {self.image}: {step.detail}",
                                    fix + also, detail=step.traceback or None, report=self)
        row = next(p for p in self.parity if p.severity == "error")
        return SmokeFailure("SDT-E408", f"the client runs {row.package} {row.client}, the {self.kind} "
                            f"{row.other}", row.fix + also, detail=parity.text(self.parity), report=self)

    def to_dict(self) -> dict:
        return {"image": self.image, "ok": self.ok, "seconds": round(self.seconds, 1),
                "steps": [s.__dict__ for s in self.steps], "parity": [p.__dict__ for p in self.parity],
                "versions": self.versions}


def probe_args(folder: str, plug_class: str, sample_key: tuple | None, pipeline_days: int,
               upstream_fixes: bool = True) -> dict:
    """What the probe is asked to check (``sdt_build.runtime.probe``'s argument)."""
    return {"project": folder, "plug_class": plug_class,
            "sample_key": list(sample_key) if sample_key is not None else None, "pipeline_days": pipeline_days,
            "upstream_fixes": upstream_fixes}


def probe_result(output: str, where: str, ended: str, fix: str) -> dict:
    """The probe's JSON record from its output (SDT-E409 when it printed none)."""
    line = next((l for l in reversed(output.splitlines()) if l.startswith("SDT-PROBE ")), None)
    if line is None:
        raise SmokeFailure("SDT-E409", f"the smoke probe did not finish in {where} ({ended})", fix,
                           detail=output[-3000:])
    return json.loads(line[len("SDT-PROBE "):])


def report(where: str, result: dict, has_plug: bool, started: float, *, other: str = "image",
           extra: tuple[Step, ...] = ()) -> SmokeReport:
    """The probe's steps and the parity of this client with ``where`` (an image, a venv)."""
    steps = [Step(s["name"], s["ok"], s["seconds"], s.get("detail", ""), s.get("traceback", ""))
             for s in result["steps"] if has_plug or s["name"] != "plug module"]
    python = ".".join((result["versions"].get("python") or "").split(".")[:2])
    pinned = constraints.pins(python) if python in constraints.available() else {}
    rows = parity.compare(parity.versions(), result["versions"], where=other, pinned=pinned)
    return SmokeReport(where, tuple(steps) + extra, rows, time.perf_counter() - started, result["versions"], other)


def smoke_image(docker, image: str, project: UserProject | None = None, *, sample_key: tuple | None = None,
                pipeline_days: int = PIPELINE_DAYS, env: dict[str, str] | None = None, timeout: float = 900,
                remember: bool = False, environment_inputs: dict | None = None,
                on_event: OnEvent = ignore) -> SmokeReport:
    """Run the smoke steps in one container of ``image`` and compare its versions with this client.

    For an image sdt-build built from ``project``, each group of steps that passes is kept as a
    proof; with ``remember``, a group proved before for the same inputs is not run again
    (docs/smoke.md says what each depends on), and when none is left no container starts.
    ``environment_inputs`` (``BuildContext.environment_inputs``) is what of the plug's packages
    SDT's own steps can see; without it they are keyed by every layer but the project's."""
    started = time.perf_counter()
    inspected = docker.images.get(image)
    labels = inspected.labels or {}
    built_by_us = bool(labels.get(f"{LABEL}.content-hash"))  # empty: relabelled by the user
    volumes = {}
    folder = PROJECT_IN_IMAGE
    if project is not None and not built_by_us:  # an image the user brings: lend it the folder
        folder = "/opt/sdt-smoke/project"
        volumes[str(project.root)] = {"bind": folder, "mode": "ro"}
    if not built_by_us:
        volumes[str(Path(__file__).resolve().parents[1])] = {"bind": "/opt/sdt-smoke/lib/sdt_build", "mode": "ro"}
    args = probe_args(folder, project.plug.name if project else labels.get(f"{LABEL}.plug", ""), sample_key,
                      pipeline_days, project.settings.upstream_fixes if project else True)
    environment = dict(env or {})
    if not built_by_us:  # the lent copy goes first; the image's own sdt_build is checked on its own
        own = next((e.split("=", 1)[1] for e in inspected.attrs["Config"].get("Env") or []
                    if e.startswith("PYTHONPATH=")), "")
        args["own_pythonpath"] = own
        environment["PYTHONPATH"] = ":".join(filter(None, ["/opt/sdt-smoke/lib", folder, own]))
    keys = proof_keys(docker, inspected, project, args, environment, environment_inputs) \
        if built_by_us and project else {}
    proofs = {group: _recall(key) for group, key in keys.items()} if remember else {}
    proofs = {group: proof for group, proof in proofs.items() if proof is not None}
    if keys and len(proofs) == len(keys):  # everything proved before: no container
        result = {"steps": [], "versions": proofs["packages"]["versions"], "user": proofs["packages"]["user"]}
    else:
        if proofs:
            args["only"] = [name for name in ORDER if _group(name) not in proofs]
        cache_volumes, cache_environment = bytecode_cache(docker, inspected)
        result = _probe(docker, image, args, {**environment, **cache_environment}, {**volumes, **cache_volumes},
                        timeout, on_event)
    steps = [Step(s["name"], s["ok"], s["seconds"], s.get("detail", ""), s.get("traceback", ""))
             for s in result["steps"]]
    for group, proof in proofs.items():
        steps += [Step(**{**s, "remembered": True}) for s in proof["steps"]]
    steps.sort(key=lambda s: ORDER.index(s.name) if s.name in ORDER else len(ORDER))
    if not args["plug_class"]:
        steps = [s for s in steps if s.name != "plug module"]
    if result.get("user") == 0 and built_by_us:
        steps.append(Step("non-root user", False, 0.0, "the image runs as root"))
    for group, key in keys.items():
        fresh = [s for s in steps if _group(s.name) == group and not s.remembered]
        if group not in proofs and fresh and all(s.ok for s in fresh) and result.get("user") != 0:
            _keep(key, {"steps": [{k: v for k, v in s.__dict__.items() if k != "remembered"} for s in fresh],
                        "versions": result["versions"], "user": result.get("user")})
    python = ".".join((result["versions"].get("python") or "").split(".")[:2])
    pinned = constraints.pins(python) if python in constraints.available() else {}
    on_event(Event("smoke", finished=True))
    return SmokeReport(image, tuple(steps), parity.compare(parity.versions(), result["versions"], pinned=pinned),
                       time.perf_counter() - started, result["versions"])


def _probe(docker, image: str, args: dict, environment: dict, volumes: dict, timeout: float,
           on_event: OnEvent) -> dict:
    """Run ``sdt_build.runtime.probe`` in a container of ``image``; its steps, versions and user."""
    import threading

    planned = args.get("only") or [n for n in ORDER if n != "sdt_build in image" or "own_pythonpath" in args]
    with container(docker, image, ["python3", "-m", "sdt_build.runtime.probe", json.dumps(args)], role="smoke",
                   network_mode="host", environment=environment, volumes=volumes) as probe:

        def follow() -> None:  # where the probe is, as it gets there
            from docker.errors import APIError

            done = 0
            try:
                for raw in probe.logs(stream=True, follow=True):
                    for line in raw.decode(errors="replace").splitlines():
                        if line.startswith(STEP_MARKER):
                            on_event(Event("smoke", done, len(planned), detail=line[len(STEP_MARKER):]))
                            done += 1
            except APIError:  # the container went (a signal removed it): its log ends here
                return

        probe.start()
        watcher = threading.Thread(target=follow, daemon=True)
        watcher.start()
        status = probe.wait(timeout=timeout)
        watcher.join(timeout=5)
        logs = probe.logs(stdout=True, stderr=True).decode(errors="replace")
    return probe_result(logs, image, f"exit {status.get('StatusCode')}",
                        "read the container output below; the image may lack python3 or sdt_build")


def _group(step: str) -> str:
    return GROUPS.get(step, "")


def proof_keys(docker, inspected, project: UserProject, args: dict, environment: dict[str, str],
               environment_inputs: dict | None = None) -> dict[str, str]:
    """What each group of steps depends on, hashed (with the image's ENV/USER/WORKDIR).

    environment (imports, dask entry points, SDT pipeline): the SDT environment image's layers,
    ``environment_inputs`` (sdt-build's runtime part, SDT pins the plug moves, modules of its
    packages that shadow SDT's), the names the project's files import as (one can shadow a package) and
    the whole of any sitecustomize/usercustomize, the pipeline's days and upstream fixes. packages (pip check, and the
    versions parity reads): every layer but the project's. plug (plug module, get_data): every
    layer, the plug class, the sample key and the run-time environment variables."""
    layers = inspected.attrs["RootFS"]["Layers"]
    config = inspected.attrs["Config"]
    setting = [config.get("Env"), config.get("User"), config.get("WorkingDir")]
    names = sorted({name for name in map(_import_name, project.files.files) if name})
    customize = [(project.root / p).read_text(errors="replace") for p in project.files.files
                 if p.name in ("sitecustomize.py", "usercustomize.py")]
    variables = hashlib.sha256(json.dumps(sorted(environment.items())).encode()).hexdigest()
    seen = layers[:-1]  # without what the plug's packages are known to change: everything but the project
    below = _environment_layers(docker, inspected, layers) if environment_inputs is not None else None
    if below is not None:
        seen = below  # the SDT environment image (the runtime part is in environment_inputs)

    def digest(*parts) -> str:
        return hashlib.sha256(json.dumps([__version__, *parts], default=str).encode()).hexdigest()

    return {"environment": digest("environment", seen, setting, names, customize, args["pipeline_days"],
                                  args["upstream_fixes"], environment_inputs),
            "packages": digest("packages", layers[:-1], setting),
            "plug": digest("plug", layers, setting, args["plug_class"], args["sample_key"], variables)}


def _import_name(path: Path) -> str | None:
    """The name a project file can be imported by from the project folder (on PYTHONPATH), if any:
    a top-level folder is a (namespace) package, a top-level module is its stem."""
    if len(path.parts) > 1:
        return path.parts[0]
    return path.stem if path.suffix in (".py", ".pyc", ".so") else None


def _environment_layers(docker, inspected, layers: list[str]) -> list[str] | None:
    """The layers of the SDT environment image ``inspected`` starts FROM, when they are its first."""
    from docker.errors import ImageNotFound

    tag = (inspected.labels or {}).get(f"{LABEL}.env")
    try:
        below = docker.images.get(tag).attrs["RootFS"]["Layers"] if tag else None
    except ImageNotFound:
        return None
    return below if below and layers[:len(below)] == below and len(layers) >= len(below) + 2 else None


def _proof_path(key: str) -> Path:
    return cache_root() / "proofs" / f"{key}.json"


def _recall(key: str) -> dict | None:
    try:
        return json.loads(_proof_path(key).read_text())
    except (OSError, ValueError):
        return None


def _keep(key: str, proof: dict) -> None:
    path = _proof_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(proof))
    partial.replace(path)


def junit_xml(report: SmokeReport) -> str:
    """JUnit XML (one testcase per step and per parity package) for CI systems."""
    cases = [(s.name, s.seconds, None if s.ok else s.detail) for s in report.steps]
    cases += [(f"parity {r.package}", 0.0, None if r.severity != "error" else f"{r.client} vs {r.other}: {r.fix}")
              for r in report.parity]
    suite = ET.Element("testsuite", name="sdt-build smoke", tests=str(len(cases)),
                       failures=str(sum(1 for c in cases if c[2])), time=f"{report.seconds:.3f}")
    ET.SubElement(ET.SubElement(suite, "properties"), "property", name="image", value=report.image)
    for name, seconds, failure in cases:
        case = ET.SubElement(suite, "testcase", classname="sdt-build.smoke", name=name, time=f"{seconds:.3f}")
        if failure:
            ET.SubElement(case, "failure", message=failure[:500]).text = failure
    return ET.tostring(ET.ElementTree(suite).getroot(), encoding="unicode", xml_declaration=True)
