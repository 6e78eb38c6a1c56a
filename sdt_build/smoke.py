"""Prove an image works, and matches the client, before anything is deployed.

One container of the image (host network, its own non-root user, the declared environment
variables passed at run time only) runs ``sdt_build.probe``; each check is a named step with
pass/fail and time. Parity (``sdt_build.parity``) compares the client environment's versions with
the image's the way Dask's own check would, but before any task runs, and says which side to change.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from sdt_build import constraints, parity
from sdt_build.daemon import LABEL
from sdt_build.errors import SmokeFailure
from sdt_build.parity import ParityRow
from sdt_build.project import UserProject

STEP_CODES = {
    "imports": ("SDT-E401", "rebuild the image with `sdt-build build`; if you bring your own image, install "
                            "solar-data-tools, dask and distributed in it"),
    "plug module": ("SDT-E402", "fix dataplug.py so that `python -c 'import dataplug'` works in the image"),
    "pip check": ("SDT-E404", "rebuild with `sdt-build build` (its lock passes pip check); never install a lock "
                              "that pip check rejects"),
    "dask entry points": ("SDT-E405", "install distributed in the image, with `dask-scheduler` and `dask-worker` "
                                      "launchers (docs/own-image.md): the cluster engines start them"),
    "sdt_build in image": ("SDT-E411", "install sdt_build in your image (docs/own-image.md shows how), or let "
                                       "`sdt-build build` make the image"),
    "get_data sample key": ("SDT-E406", "check the plug against that key, and that its environment variables are "
                                        "set here (they are passed to the container at run time)"),
    "SDT pipeline": ("SDT-E407", "the numeric stack in the image is broken (a missing solver or a mismatched "
                                 "numpy/scipy): rebuild from sdt-build's lock"),
    "non-root user": ("SDT-E412", "rebuild with `sdt-build build` (its images run as the user `sdt`); in your own "
                                  "image, add a user and a USER line"),
}
PROJECT_IN_IMAGE = "/opt/sdt/project"


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool
    seconds: float
    detail: str = ""
    traceback: str = ""


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


def smoke_image(docker, image: str, project: UserProject | None = None, *, sample_key: tuple | None = None,
                pipeline_days: int = 30, env: dict[str, str] | None = None, timeout: float = 900) -> SmokeReport:
    """Run every smoke step in one container of ``image`` and compare its versions with this client."""
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
        volumes[str(Path(__file__).resolve().parent)] = {"bind": "/opt/sdt-smoke/lib/sdt_build", "mode": "ro"}
    args = probe_args(folder, project.plug.name if project else labels.get(f"{LABEL}.plug", ""), sample_key,
                      pipeline_days)
    environment = dict(env or {})
    if not built_by_us:  # the lent copy goes first; the image's own sdt_build is checked on its own
        own = next((e.split("=", 1)[1] for e in inspected.attrs["Config"].get("Env") or []
                    if e.startswith("PYTHONPATH=")), "")
        args["own_pythonpath"] = own
        environment["PYTHONPATH"] = ":".join(filter(None, ["/opt/sdt-smoke/lib", folder, own]))
    container = docker.containers.run(image, ["python3", "-m", "sdt_build.probe", json.dumps(args)], detach=True,
                                      network_mode="host", environment=environment, volumes=volumes,
                                      labels={f"{LABEL}.role": "smoke"})
    try:
        status = container.wait(timeout=timeout)
        logs = container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    result = probe_result(logs, image, f"exit {status.get('StatusCode')}",
                          "read the container output below; the image may lack python3 or sdt_build")
    extra = (Step("non-root user", False, 0.0, "the image runs as root"),) \
        if result.get("user") == 0 and built_by_us else ()
    return report(image, result, bool(args["plug_class"]), started, extra=extra)


def probe_args(folder: str, plug_class: str, sample_key: tuple | None, pipeline_days: int) -> dict:
    """What the probe is asked to check (``sdt_build.probe``'s argument)."""
    return {"project": folder, "plug_class": plug_class,
            "sample_key": list(sample_key) if sample_key is not None else None, "pipeline_days": pipeline_days}


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
