"""Prove an image works, and matches the client, before anything is deployed.

One container of the image (host network, its own non-root user, the declared environment
variables passed at run time only) runs ``sdt_build.probe``; each check is a named step with
pass/fail and time. Parity compares the client environment's versions with the image's (or a
live cluster's) the way Dask's own check would, but before any task runs, and says which side to
change.
"""

from __future__ import annotations

import json
import platform
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version as installed_version
from pathlib import Path

from sdt_build import constraints
from sdt_build.errors import SmokeFailure
from sdt_build.image import LABEL
from sdt_build.project import UserProject

# Must be equal on client and workers (Dask fails or misbehaves otherwise).
PARITY_ERRORS = ("dask", "distributed", "cloudpickle", "msgpack", "tornado", "toolz")
# Should be equal: results may differ, or pickled data may not load.
PARITY_WARNINGS = ("numpy", "pandas", "lz4", "solar-data-tools")
STEP_CODES = {
    "imports": ("SDT-E401", "rebuild the image with `sdt-build build`; if you bring your own image, install "
                            "solar-data-tools, dask and distributed in it"),
    "plug module": ("SDT-E402", "fix dataplug.py so that `python -c 'import dataplug'` works in the image"),
    "client module": ("SDT-E403", "fix client.py so that `python -c 'import client'` works in the image"),
    "pip check": ("SDT-E404", "rebuild with `sdt-build build` (its lock passes pip check); never install a lock "
                              "that pip check rejects"),
    "dask entry points": ("SDT-E405", "install distributed in the image: cloud clusters start `dask scheduler` "
                                      "and `dask worker`"),
    "sdt_build in image": ("SDT-E411", "install sdt_build in your image (docs/own-image.md shows how), or let "
                                       "`sdt-build build` make the image"),
    "get_data sample key": ("SDT-E406", "check the plug against that key, and that its environment variables are "
                                        "set here (they are passed to the container at run time)"),
    "SDT pipeline": ("SDT-E407", "the numeric stack in the image is broken (a missing solver or a mismatched "
                                 "numpy/scipy): rebuild from sdt-build's lock"),
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
class ParityRow:
    package: str
    client: str | None
    image: str | None
    severity: str  # ok | note | warning | error
    fix: str = ""


@dataclass(frozen=True)
class SmokeReport:
    image: str
    steps: tuple[Step, ...]
    parity: tuple[ParityRow, ...]
    seconds: float
    versions: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps) and not any(p.severity == "error" for p in self.parity)

    def failure(self) -> SmokeFailure:
        """The first failing step (or parity error) as an error with its code and fix."""
        for step in self.steps:
            if not step.ok:
                code, fix = STEP_CODES[step.name]
                if step.name == "plug module" and "ModuleNotFoundError" in step.detail:
                    missing = step.detail.split("'")[1] if "'" in step.detail else "the package"
                    fix = f"add the distribution that provides `{missing}` to requirements.txt, then rebuild"
                return SmokeFailure(code, f"smoke step '{step.name}' failed in {self.image}: {step.detail}",
                                    fix, detail=step.traceback or None)
        row = next(p for p in self.parity if p.severity == "error")
        return SmokeFailure("SDT-E408", f"the client runs {row.package} {row.client}, the image "
                            f"{row.image}", row.fix, detail=parity_text(self.parity))

    def to_dict(self) -> dict:
        return {"image": self.image, "ok": self.ok, "seconds": round(self.seconds, 1),
                "steps": [s.__dict__ for s in self.steps], "parity": [p.__dict__ for p in self.parity],
                "versions": self.versions}


def client_versions() -> dict[str, str | None]:
    """Versions in this (the client's) environment."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PARITY_ERRORS + PARITY_WARNINGS:
        try:
            found[name] = installed_version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def compare(client: dict, other: dict, where: str = "image") -> tuple[ParityRow, ...]:
    """Parity rows: Python major.minor is an error, micro a note; Dask's wire packages errors."""
    rows = []
    ours, theirs = client.get("python") or "", other.get("python") or ""
    if ours.split(".")[:2] != theirs.split(".")[:2]:
        rows.append(ParityRow("python", ours, theirs, "error",
                              f"run the client on Python {'.'.join(theirs.split('.')[:2])}, or set python = "
                              f"\"{'.'.join(ours.split('.')[:2])}\" in sdt.toml and rebuild"))
    else:
        rows.append(ParityRow("python", ours, theirs, "ok" if ours == theirs else "note",
                              "" if ours == theirs else "micro versions differ; Dask only warns about this"))
    python = ".".join(theirs.split(".")[:2])
    pinned = constraints.pins(python) if python in constraints.available() else {}
    for name in PARITY_ERRORS + PARITY_WARNINGS:
        mine, image = client.get(name), other.get(name)
        if mine == image or (mine is None and name in PARITY_WARNINGS):
            rows.append(ParityRow(name, mine, image, "ok"))
            continue
        severity = "error" if name in PARITY_ERRORS else "warning"
        if image is None:
            fix = f"the {where} lacks {name}: rebuild it with sdt-build"
        elif pinned.get(name) == image or mine is None:
            fix = f"change the client: pip install {name}=={image}"
        else:
            fix = (f"change the {where}: remove the {name} pin from requirements.txt and rebuild (sdt-build pins "
                   f"{pinned.get(name, '?')}), or change the client: pip install {name}=={image}")
        rows.append(ParityRow(name, mine, image, severity, fix))
    return tuple(rows)


def preflight(dask_client) -> tuple[ParityRow, ...]:
    """Parity against a live cluster: the scheduler's and every worker's versions."""
    versions = dask_client.get_versions(check=False, packages=["solar-data-tools", "lz4"])
    mine = client_versions()
    rows: list[ParityRow] = []
    remotes = [("scheduler", versions.get("scheduler"))] + sorted((versions.get("workers") or {}).items())
    for where, info in remotes:
        if not info:
            continue
        packages = dict(info.get("packages", {}))
        python = re.match(r"\d+\.\d+\.\d+", str(info.get("host", {}).get("python") or packages.get("python")))
        packages["python"] = python.group(0) if python else None
        for row in compare(mine, packages, where=where):
            if row.severity != "ok" and not any(r.package == row.package and r.image == row.image for r in rows):
                rows.append(row)
    return tuple(rows)


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
    args = {"project": folder,
            "plug_class": project.plug.name if project else labels.get(f"{LABEL}.plug", ""),
            "client_class": project.client.name if project else labels.get(f"{LABEL}.client", ""),
            "sample_key": list(sample_key) if sample_key is not None else None,
            "pipeline_days": pipeline_days}
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
    line = next((l for l in reversed(logs.splitlines()) if l.startswith("SDT-PROBE ")), None)
    if line is None:
        raise SmokeFailure("SDT-E409", f"the smoke probe did not finish in {image} (exit {status.get('StatusCode')})",
                           "read the container output below; the image may lack python3 or sdt_build",
                           detail=logs[-3000:])
    result = json.loads(line[len("SDT-PROBE "):])
    steps = [Step(s["name"], s["ok"], s["seconds"], s.get("detail", ""), s.get("traceback", ""))
             for s in result["steps"]]
    if not args["plug_class"]:
        steps = [s for s in steps if s.name not in ("plug module", "client module")]
    if result.get("user") == 0 and built_by_us:
        steps.append(Step("non-root user", False, 0.0, "the image runs as root"))
    return SmokeReport(image, tuple(steps), compare(client_versions(), result["versions"]),
                       time.perf_counter() - started, result["versions"])


def parity_text(rows: tuple[ParityRow, ...]) -> str:
    return "\n".join(f"{r.severity:8} {r.package:17} client {r.client or '-':14} image {r.image or '-':14} {r.fix}"
                     for r in rows)


def junit_xml(report: SmokeReport) -> str:
    """JUnit XML (one testcase per step and per parity package) for CI systems."""
    cases = [(s.name, s.seconds, None if s.ok else s.detail) for s in report.steps]
    cases += [(f"parity {r.package}", 0.0, None if r.severity != "error" else f"{r.client} vs {r.image}: {r.fix}")
              for r in report.parity]
    suite = ET.Element("testsuite", name="sdt-build smoke", tests=str(len(cases)),
                       failures=str(sum(1 for c in cases if c[2])), time=f"{report.seconds:.3f}")
    ET.SubElement(ET.SubElement(suite, "properties"), "property", name="image", value=report.image)
    for name, seconds, failure in cases:
        case = ET.SubElement(suite, "testcase", classname="sdt-build.smoke", name=name, time=f"{seconds:.3f}")
        if failure:
            ET.SubElement(case, "failure", message=failure[:500]).text = failure
    return ET.tostring(ET.ElementTree(suite).getroot(), encoding="unicode", xml_declaration=True)
