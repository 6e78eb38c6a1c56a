"""Pre-detection: the plug's requirements against SDT's pinned set, before any resolver runs.

Offline and fast (``packaging`` only): specifier vs pin, who in SDT's set needs what, markers
and extras for the target, duplicates, requirement kinds a build cannot take. When an index
answers it adds what only the index knows: unknown names, Requires-Python, yanked releases and
ranges with no wheel for the target, and each wheel URL's own metadata; then the dependency
walk (``walk``) follows the plug's packages (a wheel URL's too) down through their metadata and
names the chain that clashes, with a checked fix, on the line that clashes on its own. Each
finding names the file and line it is about; what follows from another finding's error (no wheel
for a range that must change anyway, "keep it" beside "it cannot fit") is left out.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version as installed_version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from sdt_build.constraints import SDT_PACKAGE, SdtSet, catalog
from sdt_build.dependencies import walk
from sdt_build.requirements import (Constraint, Line, PlugLine, as_constraint, classify, combined, combined_specs,
                                    constraint_lines, satisfiable, url_wheel)
from sdt_build.runtime.errors import Problem
from sdt_build.runtime.parity import MUST_MATCH
from sdt_build.runtime.redact import clip
from sdt_build.sources import index, pipconfig
from sdt_build.target import target
from sdt_build.userfiles import REQUIREMENTS_FILE
from sdt_build.userfolder.project import UserProject

CATALOG = "`sdt-build docs edge-cases`"
OPTION = re.compile(r"^(-[a-zA-Z]|--[a-z-]+)(?:[= ]\s*(.*))?$")
WELL_KNOWN = (
    "boto3", "botocore", "s3fs", "fsspec", "pyarrow", "fastparquet", "psycopg2-binary", "psycopg",
    "sqlalchemy", "redshift-connector", "requests", "httpx", "aiohttp", "pyyaml", "python-dotenv",
    "scikit-learn", "statsmodels", "matplotlib", "seaborn", "plotly", "xarray", "netcdf4", "h5py",
    "tables", "openpyxl", "xlrd", "pvlib", "pvanalytics", "polars", "duckdb", "azure-storage-blob",
    "google-cloud-storage", "pymysql", "influxdb-client", "tqdm", "numba", "shapely", "geopandas",
)


@dataclass(frozen=True)
class Finding:
    """One structured finding about a requirement, rendered as one paragraph."""

    code: str
    severity: str  # error | warning | note
    package: str | None
    cause: str
    fix: str
    plug_asks: str | None = None
    sdt_pins: str | None = None
    needed_by: tuple[str, ...] = field(default_factory=tuple)
    # constraint lines that keep a resolver to what the walk already examined (it need not backtrack further)
    caps: tuple[str, ...] = field(default_factory=tuple)
    file: str | None = None  # where the line it is about was written (relative to the folder)
    line: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cause", clip(self.cause))
        object.__setattr__(self, "fix", clip(self.fix))

    def paragraph(self) -> str:
        parts = [self.cause]
        if self.needed_by:
            parts.append("SDT's set needs " + "; ".join(self.needed_by) + ".")
        parts.append(f"Fix: {self.fix}")
        return " ".join(parts)

    def to_problem(self) -> Problem:
        cause = self.cause if not self.needed_by else \
            f"{self.cause} SDT's set needs {'; '.join(self.needed_by)}."
        return Problem(self.code, cause, self.fix, file=self.file or REQUIREMENTS_FILE, line=self.line,
                       severity=self.severity)

    def to_dict(self) -> dict:
        return {"code": self.code, "severity": self.severity, "package": self.package,
                "plug_asks": self.plug_asks, "sdt_pins": self.sdt_pins, "needed_by": list(self.needed_by),
                "cause": self.cause, "fix": self.fix, "caps": list(self.caps), "file": self.file or REQUIREMENTS_FILE,
                "line": self.line, "paragraph": self.paragraph()}

    @classmethod
    def from_dict(cls, data: dict) -> "Finding":
        return cls(data["code"], data["severity"], data["package"], data["cause"], data["fix"], data["plug_asks"],
                   data["sdt_pins"], tuple(data["needed_by"]), tuple(data["caps"]), data.get("file"), data.get("line"))

    def at(self, line: str | None) -> "Finding":
        """This finding placed at ``line`` (a ``requirements.Line``), unless it has a place already."""
        if self.file is not None or not isinstance(line, Line):
            return self
        return replace(self, file=line.file, line=line.line)


def precheck(project: UserProject, *, offline: bool = False,
             progress: Callable[[int, int], None] | None = None) -> list[Finding]:
    """Every finding about the plug's requirements for the project's target Python.

    ``progress(done, total)`` follows the index look-ups (none with ``offline``)."""
    if not project.requirement_lines:  # SDT's pinned set alone: nothing to check
        return []
    sdt = SdtSet(project.settings.python)
    findings: list[Finding] = []
    constrained = constraint_lines(project.root, project.requirement_lines)
    lines = [classify(text) for text in project.requirement_lines + constrained]
    named: dict[str, list[Requirement]] = {}
    where: dict[str, Line] = {}  # package → the first line that names it
    for position, line in enumerate(lines):
        if line.kind == "name" or (line.kind in ("url", "vcs") and line.requirement is not None):
            requirement = line.requirement
            if requirement.marker and not requirement.marker.evaluate(sdt.env):
                findings.append(Finding(
                    "SDT-E213", "note", requirement.name,
                    f"`{line.text}` does not apply to the image (Python {sdt.python} on linux x86_64), "
                    "so it is left out.", "nothing to do, unless you meant it to apply",
                    plug_asks=line.text).at(line.text))
                continue
            if position >= len(lines) - len(constrained):
                requirement = as_constraint(requirement)
            name = canonicalize_name(requirement.name)
            named.setdefault(name, []).append(requirement)
            where.setdefault(name, line.text)
        else:
            findings.extend(f.at(line.text) for f in _check_special(line, project.root))
    findings.extend(_check_url_lines(lines, named, sdt, project.root))
    for name, requirements in named.items():
        if any(r.url for r in requirements):
            continue  # what a URL brings is judged from the file it points at (_check_url, the walk)
        findings.extend(f.at(where[name]) for f in _check_named(name, requirements, sdt, set(named)))
    if not offline:
        sources = pipconfig.for_lines(project.requirement_lines, project.root)
        findings.extend(_check_index(named, sdt, findings, project.settings.build_sdists, sources, progress))
        findings.extend(_check_url_files(named, findings, sources))
        if not any(f.severity == "error" or f.code == "SDT-E224" for f in findings):  # decided, or no index
            findings.extend(_check_walk(named, sdt, sources))
    # a line with an error must change: a warning that it may stay (SDT-E204, "keep it") follows no more
    broken = {canonicalize_name(f.package) for f in findings if f.severity == "error" and f.package}
    return [f.at(where.get(canonicalize_name(f.package))) if f.package else f for f in findings
            if not (f.code == "SDT-E204" and canonicalize_name(f.package) in broken)]


def _asks(requirements: list[Requirement]) -> str:
    return ", ".join(f"`{r}`" for r in requirements)


def _check_named(name: str, requirements: list[Requirement], sdt: SdtSet, lifted: set[str]) -> list[Finding]:
    findings = []
    spec = combined(requirements)
    asks = _asks(requirements)
    if len(requirements) > 1:
        if not satisfiable([r.specifier for r in requirements], []):
            return [Finding("SDT-E209", "error", name, f"requirements.txt (with its -c files) asks for {name} in "
                            f"ways that cannot all hold: {asks}.", f"keep one line for {name}", plug_asks=asks)]
    if sum(not isinstance(r, Constraint) for r in requirements) > 1:
        findings.append(Finding("SDT-E209", "note", name, f"{name} is listed {len(requirements)} times "
                                f"({asks}); the lines are combined as `{name}{spec}`.",
                                "keep one line per package", plug_asks=asks))
    for requirement in requirements:
        for extra in sorted(requirement.extras):
            findings.extend(_check_extra(name, extra, sdt))
    pinned = sdt.pins.get(name)
    if pinned is None:
        return findings
    pin = Version(pinned)
    # what the rest of SDT's set needs: a package the plug also names may move, so its needs are the walk's
    needed = [(who, spec) for who, spec in sdt.needs.get(name, []) if canonicalize_name(who.split()[0]) not in lifted]
    needed_by = tuple(f"{name}{s} ({who})" for who, s in needed if str(s))
    if spec.contains(pin, prereleases=True):
        return findings
    if name == SDT_PACKAGE:
        findings.append(Finding(
            "SDT-E201", "error", name, f"the plug asks {asks}, but sdt-build's constraints are made for "
            f"solar-data-tools {pinned}.", f"remove the {name} line (the image gets {pinned}); SDT itself is "
            "pinned by sdt-build, not by the plug", plug_asks=asks, sdt_pins=f"{name}=={pinned}"))
        return findings
    if name in MUST_MATCH:
        client = _client_version(name)
        where = f"the client environment runs {name} {client}" if client else f"SDT's set pins {name} {pinned}"
        findings.append(Finding(
            "SDT-E202", "error", name, f"the plug asks {asks}, but {where}; Dask needs the same {name} on the "
            "client, the scheduler and every worker, or tasks fail to deserialize.",
            f"remove the {name} line (the image gets {pinned}, matching the client)" if client in (None, pinned)
            else f"remove the {name} line, and make the client environment match: pip install {name}=={pinned}",
            plug_asks=asks, sdt_pins=f"{name}=={pinned}"))
        return findings
    specs = [spec] + [s for _, s in needed]
    if satisfiable(specs, [pin]):
        findings.append(Finding(
            "SDT-E204", "warning", name, f"the plug asks {asks}, which moves {name} off SDT's tested pin "
            f"{pinned}; SDT's set allows it, so the lock will pick another version.",
            f"keep it if you need it (the smoke test checks the result), or ask for {name}=={pinned} to stay on "
            "the tested version", plug_asks=asks, sdt_pins=f"{name}=={pinned}", needed_by=needed_by))
        return findings
    accepted = combined_specs([s for _, s in needed])
    fix = (f"change the line to `{name}{accepted}`, or remove it" if accepted else f"remove the {name} line") + \
        f" (SDT pins {name}=={pinned})"
    findings.append(Finding(
        "SDT-E203", "error", name, f"the plug asks {asks}, but no {name} version satisfies both that and "
        f"SDT's set (pinned: {name} {pinned}).", fix, plug_asks=asks, sdt_pins=f"{name}=={pinned}",
        needed_by=tuple(f"{name}{s} ({who})" for who, s in needed if str(s) and not satisfiable([spec, s], []))
        or needed_by))
    return findings


def _check_extra(name: str, extra: str, sdt: SdtSet) -> list[Finding]:
    info = sdt.meta.get(name)
    if info is None:
        return []
    if canonicalize_name(extra) not in {canonicalize_name(e) for e in info["extras"]}:
        return [Finding("SDT-E214", "warning", name, f"{name} {info['version']} has no extra [{extra}] "
                        f"(it has: {', '.join(info['extras']) or 'none'}).",
                        f"fix the extra's name or drop [{extra}]", plug_asks=f"{name}[{extra}]")]
    findings = []
    for requirement in sdt.extra_requirements(name, extra):
        dep = canonicalize_name(requirement.name)
        pinned = sdt.pins.get(dep)
        if pinned and not requirement.specifier.contains(Version(pinned), prereleases=True):
            others = [s for _, s in sdt.needs.get(dep, [])]
            severity = "warning" if satisfiable([requirement.specifier] + others, []) else "error"
            findings.append(Finding(
                "SDT-E203" if severity == "error" else "SDT-E204", severity, dep,
                f"{name}[{extra}] needs `{requirement}`, but SDT pins {dep} {pinned}.",
                f"drop the [{extra}] extra, or pin {name} to a release whose [{extra}] accepts {dep} {pinned}",
                plug_asks=f"{name}[{extra}]", sdt_pins=f"{dep}=={pinned}"))
    return findings


def _check_url_lines(lines: list[PlugLine], named: dict[str, list[Requirement]], sdt: SdtSet, root: Path
                     ) -> list[Finding]:
    """``name @ URL`` lines (a wheel, an archive, a repository) that apply to the image: refused for
    a package SDT's set pins or a -c line constrains, else what their URL's form says."""
    findings = []
    for line in lines:
        if line.kind in ("url", "vcs") and line.requirement and canonicalize_name(line.requirement.name) in named:
            refused = _check_url_pinned(line, sdt, named[canonicalize_name(line.requirement.name)])
            checked = _check_url(line, sdt) if line.kind == "url" else _check_special(line, root)
            findings.extend(f.at(line.text) for f in refused or checked)
    return findings


def _check_url_pinned(line: PlugLine, sdt: SdtSet, requirements: list[Requirement]) -> list[Finding]:
    """A URL for a package SDT's set pins, or that a ``-c`` line constrains, is refused: SDT's set
    holds at versions the index serves, and pip cannot hold a URL to a version."""
    name = canonicalize_name(line.requirement.name)
    pinned = sdt.pins.get(name)
    if name == SDT_PACKAGE:
        return [Finding("SDT-E201", "error", name, f"the plug installs {name} from a URL (`{line.text}`), but "
                        f"sdt-build's constraints are made for {name} {pinned}.", f"remove the {name} line (the "
                        f"image gets {pinned}); SDT itself is pinned by sdt-build, not by the plug",
                        plug_asks=line.text, sdt_pins=f"{name}=={pinned}")]
    if name in MUST_MATCH and pinned:
        return [Finding("SDT-E202", "error", name, f"the plug installs {name} from a URL (`{line.text}`); Dask "
                        f"needs the same {name} on the client, the scheduler and every worker ({pinned}).",
                        f"remove the {name} line (the image gets {pinned}, matching the client)",
                        plug_asks=line.text, sdt_pins=f"{name}=={pinned}")]
    limits = [str(r) for r in requirements if isinstance(r, Constraint)]
    if pinned:
        return [Finding("SDT-E232", "error", name, f"`{line.text}` installs {name} from a URL, but SDT's set "
                        f"pins {name} {pinned}: a URL cannot be held to SDT's versions, so the lock could not keep it.",
                        f"list {name} by version instead (`{name}=={pinned}`, or a range SDT's set allows)",
                        plug_asks=line.text, sdt_pins=f"{name}=={pinned}")]
    if limits:
        return [Finding("SDT-E232", "error", name, f"`{line.text}` installs {name} from a URL, but a -c file "
                        f"constrains it (`{limits[0]}`): pip cannot hold a URL to a version.",
                        f"drop the -c line for {name}, or list {name} by version instead of the URL",
                        plug_asks=line.text)]
    return []


def _check_url(line: PlugLine, sdt: SdtSet) -> list[Finding]:
    wheel = url_wheel(line.requirement)
    if wheel is not None:
        if not wheel.tags & target(sdt.python).tags:
            return [Finding("SDT-E208", "error", line.requirement.name,
                            f"the wheel {wheel.filename} is not for Python {sdt.python} on linux x86_64.",
                            f"point at a wheel tagged cp{sdt.python.replace('.', '')} manylinux x86_64 "
                            "(or py3-none-any)", plug_asks=line.text)]
        return []
    return [Finding("SDT-E212", "warning", line.requirement.name, f"`{line.text}` is a direct URL that "
                    "sdt-build can only check by resolving it.",
                    "prefer a released version from the index; `sdt-build check --resolve` resolves it",
                    plug_asks=line.text)]


def _check_url_files(named: dict[str, list[Requirement]], found: list[Finding], sources: pipconfig.IndexSettings
                     ) -> list[Finding]:
    """Each wheel URL's own metadata, read now (the walk then finds it cached): a URL that does not
    serve a readable wheel is the line's error, not a walk that stops early."""
    decided = {canonicalize_name(f.package) for f in found if f.severity == "error" and f.package}
    wheels = [(r, wheel) for name, reqs in named.items() if name not in decided for r in reqs
              if r.url and (wheel := url_wheel(r))]
    findings = []
    if not wheels:
        return findings
    with index.Session(sources, index.budget_seconds()) as session:
        for requirement, wheel in wheels:
            release = index.Release(wheel.version, False, None, True, False, wheel.url)
            try:
                index.metadata(release, session)
            except (index.IndexUnreachable, index.OutOfTime) as exc:  # as for an index: undecided, a note
                why = f"no answer within {index.budget_seconds():g} s" if isinstance(exc, index.OutOfTime) else exc
                findings.append(Finding(
                    "SDT-E224", "note", requirement.name, f"the host of `{requirement}` did not answer ({why}); "
                    "the wheel's own requirements were not checked.", "run `sdt-build check` again once it is "
                    "reachable (SDT_INDEX_BUDGET=SECONDS allows more time)", plug_asks=str(requirement)))
                continue
            except Exception as exc:  # noqa: BLE001 - whatever else the URL serves, it is the line's problem
                why = str(exc) if isinstance(exc, index.BadAnswer) else type(exc).__name__
            else:
                continue
            findings.append(Finding(
                "SDT-E234", "error", requirement.name, f"`{requirement}` points at a wheel that cannot be read "
                f"({why}).", f"check the URL: it must serve the .whl file to this machine (`pip download "
                f"--no-deps '{wheel.url}'` shows what it gets), or list {requirement.name} by version",
                plug_asks=str(requirement)))
    return findings


def _check_special(line: PlugLine, root: Path) -> list[Finding]:
    text = line.text
    if line.kind == "editable":
        target = re.sub(r"^(-e|--editable)[= ]?\s*", "", text)
        return [Finding("SDT-E210", "error", None, f"`{text}` is an editable install, which cannot live in an "
                        "image (it points back at a source tree).",
                        f"drop -e: list `{target}` as a plain path or a released version", plug_asks=text)]
    if line.kind == "vcs":
        return [Finding("SDT-E212", "warning", None, f"`{text}` installs from a version-control repository: "
                        "resolving and building it need that host to be reachable, and the result can change.",
                        "pin a released version from the index, or a tag/commit (`@v1.2`) if it must be VCS",
                        plug_asks=text)]
    if line.kind == "path":
        raw = re.sub(r"^.*@\s*file:(//)?", "", text) if "@" in text else re.sub(r"^file:(//)?", "", text)
        path = (root / raw.split("#")[0].split("[")[0]).resolve()
        if not path.exists():
            return [Finding("SDT-E211", "error", None, f"`{text}` points at {path}, which does not exist.",
                            "fix the path (relative to the folder with requirements.txt)", plug_asks=text)]
        if root.resolve() not in path.parents and path != root.resolve():
            return [Finding("SDT-E211", "error", None, f"`{text}` points outside the project folder; the build "
                            "only sees the folder.", "move the package into the folder, or publish it and "
                            "list it by name", plug_asks=text)]
        return []
    option = OPTION.match(text)
    flag = option.group(1) if option else text.split()[0]
    if flag in ("--index-url", "-i", "--extra-index-url", "--find-links", "-f", "--trusted-host"):
        return [Finding("SDT-E216", "note", None, f"`{text}` is passed on to the resolver and the wheel "
                        "download (the image build itself never reaches an index).",
                        "nothing to do; make sure this machine can reach it", plug_asks=text)]
    if flag in ("-c", "--constraint"):
        return []
    if flag == "--pre":
        return [Finding("SDT-E227", "note", None, "`--pre` lets the resolver pick pre-releases for every "
                        "package.", "prefer naming a pre-release only where you need it (`pkg==2.0rc1`)",
                        plug_asks=text)]
    return [Finding("SDT-E216", "warning", None, f"`{text}` is a pip option sdt-build passes on unchanged.",
                    "remove it unless the resolver needs it", plug_asks=text)]


def _check_walk(named: dict[str, list[Requirement]], sdt: SdtSet, sources: pipconfig.IndexSettings
                ) -> list[Finding]:
    """The walk through the plug's dependencies: a clash named as a chain, with a fix it checked."""
    roots = [r for reqs in named.values() for r in reqs if not isinstance(r, Constraint) and (not r.url or url_wheel(r))]
    limits = [r for reqs in named.values() for r in reqs if isinstance(r, Constraint)]
    if not roots:
        return []
    found = walk.walk(roots, limits, sdt, sources)
    if found.fits is None:
        return [Finding("SDT-E231", "note", None, f"the dependency walk stopped early ({found.stopped}) after "
                        f"reading {found.read} releases' metadata: {', '.join(found.unfinished)} "
                        f"{'was' if len(found.unfinished) == 1 else 'were'} not followed to the end.",
                        "the resolver still checks them (`sdt-build check --resolve`); "
                        "SDT_WALK_BUDGET=SECONDS gives the walk more time")]
    findings = []
    until = time.monotonic() + walk.budget_seconds()  # the checks of the lines and fixes share one budget more
    for clash, windows in _culprits(found, roots, limits, sdt, sources, until):
        asks = _asks(named[clash.root])
        caps = tuple(f"{name}>={windows[name]}" for name, _ in clash.chain[:1] if name in windows)
        what = "the wheel it points at does not fit" if any(r.url for r in named[clash.root]) else \
            "no release of it fits"
        findings.append(Finding(
            "SDT-E230", "error", clash.root, f"the plug asks {asks}, and {what} SDT's set: "
            f"{clash.text()}.", _fix(clash, roots, limits, sdt, sources, until), plug_asks=asks,
            sdt_pins=f"{clash.name}=={clash.pinned}" if clash.pinned else None, caps=caps))
    return findings


def _culprits(found: walk.Walk, roots: list[Requirement], limits: list[Requirement], sdt: SdtSet,
              sources: pipconfig.IndexSettings, until: float) -> list[tuple[walk.Clash, dict[str, str]]]:
    """The clashes to blame, one per plug line, with the windows of the walk that found each.

    A line whose packages fit SDT's set on their own is not blamed when another line does not fit
    on its own: the walk met its older releases only while backtracking from the other's clash
    (``matplotlib>=3.8`` beside an ``ipympl`` pin that needs ipython<9). When every line blamed
    fits alone, the lines are tried one by one for the one that does not; when none is found, the
    lines clash only together and each one met stays blamed."""
    first = {}
    for clash in found.clashes:
        first.setdefault(clash.root, clash)
    blamed = [(clash, found.windows) for clash in first.values()]
    if len(roots) < 2:
        return blamed

    def alone(root: str) -> walk.Walk:
        return walk.walk([r for r in roots if canonicalize_name(r.name) == root], limits, sdt, sources,
                         budget=max(0.0, until - time.monotonic()))

    solo = {root: alone(root) for root in first}
    if all(w.fits is not True for w in solo.values()):
        return blamed
    culprits = [(clash, solo[root].windows) for root, clash in first.items() if solo[root].fits is not True]
    if not culprits:  # every line blamed fits alone: the lines that do not, among the others
        for root in dict.fromkeys(canonicalize_name(r.name) for r in roots):
            if root not in solo and (result := alone(root)).fits is False and result.clashes:
                culprits.append((result.clashes[0], result.windows))
    return culprits or blamed


def _fix(clash: walk.Clash, roots: list[Requirement], limits: list[Requirement], sdt: SdtSet,
         sources: pipconfig.IndexSettings, until: float) -> str:
    """The first change that makes the walk find a fit (each one tried, and one more change on top
    when the first uncovers the next clash, all by ``until``), else what would have to change."""
    def check(lines: list[Requirement]) -> walk.Walk:
        return walk.walk(lines, limits, sdt, sources, budget=max(0.0, until - time.monotonic()))

    for first, changed in _changes(clash, roots, sdt):
        checked = check(changed)
        steps = [(first, checked)]
        if checked.fits is False and checked.clashes:
            steps += [(then, check(more)) for then, more in _changes(checked.clashes[0], changed, sdt)[:2]]
        for number, (text, result) in enumerate(steps):
            if result.fits:
                shown = ", ".join(f"{n} {v}" for n, v in sorted(result.versions.items()))
                return f"{first}{'; and ' + text if number else ''} (checked: then {shown} fit)"
    lifted = {canonicalize_name(r.name) for r in roots}
    if clash.pinned is not None:
        accepted = combined_specs([s for who, s in sdt.needs.get(clash.name, [])
                                   if canonicalize_name(who.split()[0]) not in lifted])
        sdt_needs = f"SDT's set needs {clash.name}{accepted}" if accepted else \
            f"SDT's packages accept any {clash.name}, but no release tried fits the rest"
        other = "point at a wheel" if any(r.url for r in roots if canonicalize_name(r.name) == clash.root) \
            else "pick a release"
        return (f"remove the {clash.root} line, or {other} of {clash.root} whose dependencies accept "
                f"{clash.name} {clash.pinned} ({sdt_needs})")
    return (f"remove the {clash.root} line, or change the lines so that "
            f"{clash.name}{combined_specs([SpecifierSet(clash.needs)])} can hold")


def _changes(clash: walk.Clash, roots: list[Requirement], sdt: SdtSet) -> list[tuple[str, list[Requirement]]]:
    """Changes to the plug's lines that could resolve ``clash``: (what to tell the user, the new lines)."""
    lifted = {canonicalize_name(r.name) for r in roots}
    changes: list[tuple[str, list[Requirement]]] = []
    line = walk.fix_line(clash, sdt, lifted)
    if line:
        changes.append((f"add `{line}` to requirements.txt (SDT's packages allow it: the lock moves the pin, "
                        "warning SDT-E204, and the smoke test checks the image)", roots + [Requirement(line)]))
    for rule in catalog()[1]:
        if clash.reason == rule.reason and any(name == rule.package for name, _ in clash.chain):
            better = Requirement(f"{rule.package}>={rule.first_good}")
            why = (f"the first {rule.package} release that works with {clash.name} {clash.pinned}; "
                   f"source: {rule.source}")
            if rule.package in lifted:
                changes.append((f"change the {rule.package} line to `{better}` ({why})",
                                [r for r in roots if canonicalize_name(r.name) != rule.package] + [better]))
            else:
                changes.append((f"add `{better}` to requirements.txt ({why})", roots + [better]))
    own = next((r for r in roots if canonicalize_name(r.name) == clash.name), None)
    if own is not None and clash.pinned is None:
        wanted = Requirement(f"{clash.name}{combined_specs([SpecifierSet(clash.needs)])}")
        changes.append((f"change `{own}` to `{wanted}`, which {clash.chain[-1][0]} accepts",
                        [r for r in roots if r is not own] + [wanted]))
    return changes


def _client_version(name: str) -> str | None:
    try:
        return installed_version(name)
    except PackageNotFoundError:
        return None


def _check_index(named: dict[str, list[Requirement]], sdt: SdtSet, found: list[Finding], build_sdists: bool,
                 sources: pipconfig.IndexSettings, progress: Callable[[int, int], None] | None) -> list[Finding]:
    """What only the indexes know, for requirements that leave SDT's pins (bounded look-ups). A
    package that already has an error is not looked up: what the index would add (no wheel, say)
    follows from that error, and its fix changes the line anyway."""
    decided = {canonicalize_name(f.package) for f in found if f.severity == "error" and f.package}
    todo = {name: reqs for name, reqs in named.items() if name not in decided and not any(r.url for r in reqs) and (
        name not in sdt.pins or not combined(reqs).contains(Version(sdt.pins[name]), prereleases=True))}
    if not todo:
        return []
    results, skipped = index.look_up(todo, sdt.python, sources, progress=progress or (lambda done, total: None))
    refused = sorted({str(r.args[0]) for r in results.values() if isinstance(r, index.IndexRefused)})
    findings = [Finding("SDT-E228", "error", None, f"the index {where} refused the credentials sent "
                        "(HTTP 401/403), so its packages cannot be looked up or installed.",
                        f"check the user name and token for {where} in the index URL (PIP_INDEX_URL, "
                        f"PIP_EXTRA_INDEX_URL or `pip config list`) or in ~/.netrc (machine {where.split(':')[0]})")
                for where in refused]
    if skipped:
        shown = ", ".join(skipped[:10]) + (f" and {len(skipped) - 10} more" if len(skipped) > 10 else "")
        findings.append(Finding("SDT-E229", "note", None, f"the index look-ups stopped after "
                                f"{index.budget_seconds():.0f} s: {len(skipped)} of {len(todo)} packages were not "
                                f"looked up ({shown}).", "the resolver still checks them (`sdt-build check "
                                "--resolve`); SDT_INDEX_BUDGET=SECONDS allows the look-ups more time"))
    for name, outcome in results.items():
        reqs = todo[name]
        asks = _asks(reqs)
        if isinstance(outcome, index.IndexRefused):
            continue
        if isinstance(outcome, index.NotOnIndex):
            close = difflib.get_close_matches(name, sorted(set(sdt.pins) | set(WELL_KNOWN)), n=3, cutoff=0.6)
            findings.append(Finding("SDT-E205", "error", name, f"there is no package named {name} on the index.",
                                    f"did you mean {' or '.join(close)}?" if close else
                                    "check the spelling on the index (pip index versions NAME)", plug_asks=asks))
        elif isinstance(outcome, index.IndexUnreachable):
            findings.append(Finding("SDT-E224", "note", name, f"the index did not answer for {name} ({outcome}); "
                                    "wheel availability was not checked.", "run `sdt-build check --resolve` "
                                    "once the index is reachable", plug_asks=asks))
        else:
            findings.extend(_judge_releases(name, reqs, combined(reqs), outcome, sdt.python, build_sdists))
    return findings


def _judge_releases(name: str, reqs: list[Requirement], spec: SpecifierSet, releases: list[index.Release],
                    python: str, build_sdists: bool) -> list[Finding]:
    asks = _asks(reqs)
    exact = any(s.operator in ("==", "===") and "*" not in s.version for s in spec)
    pre = _mentions_prerelease(spec)
    matching = [r for r in releases if spec.contains(r.version, prereleases=pre or exact)]
    findings = []
    if not matching:
        newest = ", ".join(str(r.version) for r in releases[:3])
        return [Finding("SDT-E217", "error", name, f"no release of {name} matches {asks} (newest: {newest}).",
                        f"widen the range; {name} {releases[0].version} is the newest" if releases else
                        f"{name} has no releases", plug_asks=asks)]
    live = [r for r in matching if not r.yanked]
    if exact and not live:
        findings.append(Finding("SDT-E207", "warning", name, f"{asks} is a yanked release: its authors withdrew it.",
                                f"pin another version (newest: {releases[0].version})", plug_asks=asks))
    candidates = live or matching
    if pre:
        findings.append(Finding("SDT-E227", "note", name, f"{asks} asks for a pre-release; the resolver will "
                                "allow pre-releases of it.", "nothing to do if that is intended", plug_asks=asks))
    for_python = [r for r in candidates if r.allows_python(python)]
    if not for_python:
        needs = candidates[0].requires_python
        return findings + [Finding(
            "SDT-E206", "error", name, f"every release of {name} matching {asks} requires Python {needs}, and the "
            f"image runs Python {python}.", f"choose a {name} version that supports Python {python}, or set "
            "python in sdt.toml", plug_asks=asks)]
    if not any(r.wheel_for_target for r in for_python):
        with_wheel = next((r for r in releases if r.wheel_for_target and r.allows_python(python)), None)
        hint = f"{name}=={with_wheel.version} has one" if with_wheel else f"no {name} release has one"
        if build_sdists and any(r.has_sdist for r in for_python):
            findings.append(Finding(
                "SDT-E208", "warning", name, f"no release of {name} matching {asks} has a wheel for Python {python} "
                "on linux x86_64; build_sdists = true, so the builder stage compiles it from source.",
                f"nothing to do if it compiles; a version with a wheel builds faster ({hint})", plug_asks=asks))
        else:
            findings.append(Finding(
                "SDT-E208", "error", name, f"no release of {name} matching {asks} has a wheel for Python {python} "
                "on linux x86_64: it would need compiling, which the offline image build does not do.",
                f"pick a version with a wheel ({hint}), or set build_sdists = true in sdt.toml to compile it in "
                f"the builder stage; see {CATALOG}", plug_asks=asks))
    return findings


def _mentions_prerelease(spec: SpecifierSet) -> bool:
    for item in spec:
        try:
            if Version(item.version.rstrip(".*")).is_prerelease:
                return True
        except InvalidVersion:
            continue
    return False
