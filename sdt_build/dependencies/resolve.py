"""Joint resolution: the plug's requirements with SDT's pinned set, for the target (not the host).

SDT's pins hold for every package the plug does not constrain (a ``-c`` file); packages the plug
names are resolved from its line and what SDT's set needs of them, so a conflict is a failed
resolution, never a silent override. The lock is cached by a hash of every input.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from sdt_build import __version__, constraints
from sdt_build.cache import cache_root, write_cached
from sdt_build.constraints import SdtSet
from sdt_build.dependencies.precheck import Finding, precheck
from sdt_build.dependencies.walk import Clash, fix_line
from sdt_build.requirements import (classify, combined_specs, constraint_files, constraint_lines, requirement_names,
                                    url_wheel)
from sdt_build.runtime.errors import DependencyConflict, EnvironmentProblem
from sdt_build.runtime.redact import run_logged
from sdt_build.sources import pipconfig
from sdt_build.sources.pipconfig import IndexSettings
from sdt_build.target import host_python, target
from sdt_build.userfolder.project import UserProject

BACKENDS = ("auto", "pip-compile", "uv")


@dataclass(frozen=True)
class ResolvedLock:
    """The full lock for the image, split into SDT's shared layer and the plug's own packages."""

    python: str
    backend: str
    pins: dict[str, str]
    sdt_layer: dict[str, str]
    plug_layer: dict[str, str]
    moved: dict[str, tuple[str, str]]
    text: str
    input_hash: str
    cached: bool
    seconds: float
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    # where its packages come from: the wheel download uses the same sources as the resolver
    sources: IndexSettings = field(default_factory=pipconfig.from_pip, repr=False, compare=False)
    urls: dict[str, str] = field(default_factory=dict)  # name → the wheel URL a ``name @ URL`` line locked

    def to_dict(self) -> dict:
        return {"python": self.python, "backend": self.backend, "input_hash": self.input_hash,
                "cached": self.cached, "seconds": round(self.seconds, 3), "packages": len(self.pins),
                "plug_packages": self.plug_layer, "urls": self.urls,
                "moved": {k: {"sdt": a, "locked": b} for k, (a, b) in self.moved.items()},
                "findings": [f.to_dict() for f in self.findings]}


def check_dependencies(project: UserProject, *, offline: bool = False,
                       findings: list[Finding] | None = None) -> list[Finding]:
    """The pre-check's findings (those given, or found now); DependencyConflict when one is an error."""
    findings = precheck(project, offline=offline) if findings is None else findings
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise DependencyConflict.from_problems([f.to_problem() for f in findings])
    return findings


def lock(project: UserProject, *, backend: str = "auto", use_cache: bool = True,
         findings: list[Finding] | None = None, log_dir: Path | None = None, confirm: bool = False) -> ResolvedLock:
    """Resolve with the backend after the pre-check (its ``findings`` when the caller already has
    them: the pre-check runs once); the lock, and the findings that came with it, come from the
    cache when inputs are unchanged (no pre-check then).

    The resolver also gets the catalog's facts (``constraints.catalog_lines``) and the findings'
    caps (what the dependency walk already examined), so it does not backtrack through releases
    the walk ruled out. ``confirm`` runs it even when the pre-check found a dependency clash
    (SDT-E230), to have the resolver's own verdict on it."""
    python = project.settings.python
    chosen = choose_backend(backend, python)
    sdt_inputs = (constraints.folder(python) / "sdt.in").read_text()
    pins = constraints.pins(python)
    constrained = set(requirement_names(project.requirement_lines
                                        + constraint_lines(project.root, project.requirement_lines)))
    held = {name: version for name, version in pins.items() if name not in constrained}
    kept = [f"{name}=={version}" for name, version in sorted(held.items())] + constraints.catalog_lines(held)
    sources = pipconfig.for_lines(project.requirement_lines, project.root)
    plug_lines = [_absolute(line, project.root) for line in project.requirement_lines if not _source_option(line)]
    digest = hashlib.sha256(json.dumps([__version__, python, chosen, project.settings.build_sdists, sdt_inputs,
                                        kept, plug_lines, _local_contents(project), sources.describe(),
                                        _texts(sources.constraints)]).encode()).hexdigest()[:20]
    cached = cache_root() / "locks" / f"{digest}.json"
    started = time.perf_counter()
    if use_cache and cached.exists() and project.requirement_lines:
        # unchanged inputs: the lock and the pre-check's findings that came with it (none is run again)
        entry = json.loads(cached.read_text())
        if findings is None:
            findings = [Finding.from_dict(found) for found in entry["findings"]]
        if not confirm:
            check_dependencies(project, findings=findings)
        return _result(python, chosen, entry["lock"], digest, True, time.perf_counter() - started, findings,
                       project, sources)
    if confirm:
        findings = precheck(project) if findings is None else findings
    else:
        findings = check_dependencies(project, findings=findings)
    if not project.requirement_lines:  # nothing to merge: SDT's pinned set is the lock
        text = (constraints.folder(python) / "worker.txt").read_text()
        return _result(python, "sdt-pins", text, digest, True, time.perf_counter() - started, findings, project,
                       sources)

    pre = any(line.strip() == "--pre" for line in project.requirement_lines)
    caps = [cap for f in findings for cap in f.caps]
    with tempfile.TemporaryDirectory(prefix="sdt-resolve-") as work:
        inputs = Path(work) / "requirements.in"
        inputs.write_text(sdt_inputs + "\n".join(plug_lines) + "\n")
        text = compile_for_target(chosen, python, inputs, kept + caps, _log_path(log_dir, digest), pre=pre,
                                  sources=sources, roots=tuple(requirement_names(project.requirement_lines)),
                                  binary_only=not project.settings.build_sdists)
    write_cached(cached, json.dumps({"lock": text, "findings": [f.to_dict() for f in findings]}))
    return _result(python, chosen, text, digest, False, time.perf_counter() - started, findings, project, sources)


def _source_option(line: str) -> bool:
    """An index, find-links or trusted-host option: the resolver gets those with the sources (pipconfig)."""
    return bool(re.match(r"^(-i|--index-url|--extra-index-url|-f|--find-links|--trusted-host|--no-index)\b",
                         line.strip()))


def _texts(paths: tuple[str, ...]) -> list[str]:
    return [Path(p).read_text(errors="replace") if Path(p).is_file() else "" for p in paths]


def choose_backend(backend: str, python: str) -> str:
    """uv (it resolves for any target, in seconds where pip-compile takes tens); pip-compile when asked
    (for the interpreter it runs on only)."""
    host = host_python()
    if backend == "auto":
        backend = "uv"
    if backend == "pip-compile" and host != python:
        raise EnvironmentProblem("SDT-E908", f"pip-compile resolves for the Python it runs on ({host}), and the "
                                 f"target is {python}", "use --resolver uv (it resolves for any target), or run "
                                 f"sdt-build from a Python {python} environment")
    if backend == "uv" and not _uv_available():
        raise EnvironmentProblem("SDT-E908", "the uv resolver is not installed", "pip install uv, or use "
                                 "--resolver pip-compile from a Python of the target version")
    return backend


def _uv_available() -> bool:
    import importlib.util

    return shutil.which("uv") is not None or importlib.util.find_spec("uv") is not None


def compile_for_target(backend: str, python: str, inputs: Path, constraint_lines: list[str], log_path: Path,
                       *, pre: bool = False, pip_compile: list[str] | None = None,
                       sources: IndexSettings | None = None, roots: tuple[str, ...] = (),
                       binary_only: bool = False) -> str:
    """Resolve ``inputs`` under ``constraint_lines`` for ``python``; return the lock text.

    Both backends get the same ``sources`` (pip's configuration by default), pip's constraint files
    included. pip-compile resolves for the micro version it runs on (3.11.7, say), while the image
    may have 3.11.2: pins whose Requires-Python excludes X.Y.0 are capped and resolved again (at
    most 3 times). ``binary_only``: only releases with a wheel, as the image installs them (the
    dependency walk counts the same releases).
    """
    sources = sources or pipconfig.from_pip()
    caps: dict[str, list[str]] = {}
    output = inputs.parent / "lock.txt"
    inputs.write_text("".join(f"-c {path}\n" for path in ("sdt-pins.txt", *sources.constraints)) + inputs.read_text())
    log_path.write_text("")
    for _ in range(4):
        (inputs.parent / "sdt-pins.txt").write_text(
            "\n".join(constraint_lines + [f"{n}" + ",".join(f"!={v}" for v in vs) for n, vs in sorted(caps.items())])
            + "\n")
        command = _command(backend, python, inputs, output, pre, pip_compile, sources)
        if binary_only and backend == "uv":
            command[-3:-3] = ["--only-binary", ":all:"]
        env = sources.uv_env() if backend == "uv" else sources.pip_env()
        if binary_only and backend != "uv":
            env["PIP_ONLY_BINARY"] = ":all:"
        if run_logged(command, log_path, env=env, cwd=inputs.parent, append=True) != 0 or not output.exists():
            raise explain_failure(log_path.read_text(errors="replace"), log_path, backend, python, roots)
        text = output.read_text().replace(f"{inputs.parent}/", "")
        if backend == "uv":
            return text
        fixed = {line.split("==")[0] for line in constraint_lines if "==" in line}
        bad = python_floor_violations({n: v for n, v in constraints.read_lock_text(text).items()
                                       if n not in fixed}, python, sources)
        if not bad:
            return text
        with open(log_path, "a") as log:
            log.write(f"excluding releases that need a newer Python than {python}.0: {sorted(bad)}\n")
        caps.update(bad)
    raise DependencyConflict("SDT-E206", f"the resolver keeps choosing releases that need a newer Python than "
                             f"{python}.0: {', '.join(caps)}", "pin those packages to older releases in "
                             "requirements.txt", log_path=log_path)


def python_floor_violations(pins: dict[str, str], python: str, sources: IndexSettings) -> dict[str, list[str]]:
    """For each pin whose Requires-Python excludes ``python``.0: every release of it that does."""
    from sdt_build.sources import index

    found, _ = index.look_up(pins, python, sources)
    bad = {}
    for name, releases in found.items():
        if isinstance(releases, Exception):
            continue
        release = next((r for r in releases if str(r.version) == pins[name]), None)
        if release is not None and not release.allows_python(python):
            bad[name] = [str(r.version) for r in releases if not r.allows_python(python)]
    return bad


def _command(backend: str, python: str, inputs: Path, output: Path, pre: bool,
             pip_compile: list[str] | None, sources: IndexSettings) -> list[str]:
    if backend == "pip-compile":
        return [*(pip_compile or [sys.executable, "-m", "piptools", "compile"]), "--strip-extras",
                "--allow-unsafe", "--no-header", "--annotation-style=line", "--no-emit-index-url",
                "--no-emit-find-links", "--no-emit-trusted-host", *(["--pre"] if pre else []),
                "-o", str(output), str(inputs)]
    uv = shutil.which("uv")
    prefix = [uv] if uv else [sys.executable, "-m", "uv"]
    return [*prefix, "pip", "compile", "--python-version", python, "--python-platform", target(python).uv_platform,
            "--no-header", "--annotation-style", "line", "--no-emit-index-url", "--no-emit-find-links",
            *(["--prerelease", "allow"] if pre else []), *sources.uv_args(), "-o", str(output), str(inputs)]


def _absolute(line: str, root: Path) -> str:
    """Relative paths in requirement lines (``-c``, local packages) made absolute for the resolver."""
    for path in constraint_files(root, [line]):
        return f"-c {path.resolve()}"
    if line.startswith((".", "file:")) and classify(line).kind == "path":
        return str((root / re.sub(r"^file:(//)?", "", line)).resolve())
    return line


def _local_contents(project: UserProject) -> list[str]:
    """Constraint files' text, so editing one invalidates the cached lock."""
    return [path.read_text() for path in constraint_files(project.root, project.requirement_lines) if path.is_file()]


def _result(python, backend, text, digest, cached, seconds, findings, project, sources) -> ResolvedLock:
    urls = constraints.read_lock_urls(text)
    pins = {**constraints.read_lock_text(text), **_url_versions(urls)}
    sdt_pins = constraints.pins(python)
    sdt_layer = {n: v for n, v in pins.items() if sdt_pins.get(n) == v}
    plug_layer = {n: v for n, v in pins.items() if n not in sdt_layer}
    moved = {n: (sdt_pins[n], v) for n, v in plug_layer.items() if n in sdt_pins}
    _verify(project, pins)
    return ResolvedLock(python, backend, pins, sdt_layer, plug_layer, moved, text, digest, cached, seconds,
                        tuple(findings), sources, urls)


def _url_versions(urls: dict[str, str]) -> dict[str, str]:
    """The version of each locked wheel URL (from its file name); a URL that is no wheel cannot be
    installed by the image build, which takes wheels only (SDT-E233)."""
    versions = {}
    for name, url in urls.items():
        wheel = url_wheel(Requirement(f"{name} @ {url}"))
        if wheel is None:
            raise DependencyConflict("SDT-E233", f"{name} is installed from {url}, which is not a wheel (a "
                                     "repository or a source archive): the image build takes a URL only as a wheel "
                                     "(build_sdists compiles releases of the index, by version)",
                                     f"build a wheel of it (`pip wheel --no-deps '{url}'`) and point the {name} line "
                                     "at that wheel's URL, or list a released version by name")
        versions[name] = str(wheel.version)
    return versions


def _verify(project: UserProject, pins: dict[str, str]) -> None:
    """Every name the plug asks for is in the lock at a version its line accepts (a URL line: its wheel's)."""
    env = target(project.settings.python).markers
    for text in project.requirement_lines:
        requirement = classify(text).requirement
        if requirement is None or (requirement.marker and not requirement.marker.evaluate(env)):
            continue
        if requirement.url and (wheel := url_wheel(requirement)):
            requirement = Requirement(f"{requirement.name}=={wheel.version}")
        name = canonicalize_name(requirement.name)
        locked = pins.get(name)
        if locked is None or not requirement.specifier.contains(Version(locked), prereleases=True):
            raise DependencyConflict("SDT-E225", f"the lock has {name} {locked or 'missing'}, which does not "
                                     f"satisfy `{text}`", "report this: the resolver's output broke the plug's "
                                     "requirement")


def _log_path(log_dir: Path | None, digest: str) -> Path:
    folder = log_dir or cache_root() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"resolve-{time.strftime('%Y%m%d-%H%M%S')}-{digest[:8]}.log"


FAILURES = (
    # (code, pattern, cause, fix, cause and fix when the log names no package); the first that
    # matches wins, so a missing distribution (which pip-compile's traceback and uv's "No solution
    # found" also report) is told before a conflict
    ("SDT-E223", r"CERTIFICATE_VERIFY_FAILED|SSLError|certificate verify failed|invalid peer certificate|"
                 r"problem confirming the ssl certificate",
     "the resolver could not verify the index's TLS certificate (a TLS-intercepting proxy?)",
     "give pip your proxy's CA: `pip config set global.cert /path/to/ca.pem` (or PIP_CERT / SSL_CERT_FILE)",
     None, None),
    ("SDT-E228", r"401 Unauthorized|403 Forbidden|Credentials not correct|status client error \(40[13]",
     "an index refused the credentials the resolver sent (HTTP 401/403)",
     "check the user name and token in the index URL (PIP_INDEX_URL, `pip config list`) or in ~/.netrc",
     None, None),
    ("SDT-E235", r"unable to access '[^']*': (?:Could not resolve host|Failed to connect|Could not connect|"
                 r"Connection timed out|Connection refused)",
     "git could not reach {package}, the host of a version-control requirement (`name @ git+…`)",
     "check this machine's DNS, network or proxy for {package} (git reads HTTPS_PROXY), or list a released "
     "version from the index instead of the repository",
     "git could not reach the host of a version-control requirement (`name @ git+…`)",
     "the log names the host: check this machine's DNS, network or proxy for it, or list a released version "
     "from the index instead of the repository"),
    ("SDT-E224", r"Failed to establish a new connection|Temporary failure in name resolution|Name or service not "
                 r"known|Network is unreachable|Max retries exceeded|Connection refused|dns error|Could not connect",
     "the package index is unreachable from this machine",
     "check the network/proxy settings, or point pip at a reachable index (pip config set global.index-url …)",
     None, None),
    ("SDT-E233", r"Building source distributions (?:for \S+ )?is disabled",
     "{package} is installed from a source archive or a repository (a `name @ URL` line), which is not a wheel: "
     "the resolver builds no source distributions, and the image build takes a URL only as a wheel",
     "build a wheel of it (`pip wheel --no-deps` with the URL of the {package} line) and point that line at the "
     "wheel's URL, or list a released version by name",
     "a `name @ URL` line points at a source archive or a repository, which is not a wheel: the resolver builds no "
     "source distributions, and the image build takes a URL only as a wheel",
     "build a wheel of it (`pip wheel --no-deps` with the line's URL) and point the line at that wheel's URL, or "
     "list a released version by name"),
    ("SDT-E222", r"metadata-generation-failed|Getting requirements to build wheel did not run successfully|"
                 r"Failed to build|subprocess-exited-with-error|Failed to download and build",
     "the resolver had to build {package} from source to read its metadata, and that build failed",
     "choose a {package} version that has a wheel for the target (`sdt-build docs edge-cases`)",
     "the resolver had to build one of the requirements from source to read its metadata, and that build failed",
     "the log names the build that failed: choose a version of it with a wheel for the target "
     "(`sdt-build docs edge-cases`)"),
    ("SDT-E221", r"No matching distribution found for|Could not find a version that satisfies the requirement|"
                 r"not found in the package registry|was not found in the package registry|"
                 r"there is no version of \S+ and you require|only \S+ (?:is|are) available and you require",
     "no release of {package} fits the request for the target",
     "check the name and version range (pip index versions {package})",
     "the resolver found no release for one of the requirements",
     "the log names the requirement: check its name and version range (`pip index versions` with its name)"),
    ("SDT-E220", r"ResolutionImpossible|No solution found when resolving|Could not find a version that matches|"
                 r"conflicting dependencies|The conflict is caused by",
     "the plug's requirements and SDT's set cannot all hold: the resolver found no version of {package} that "
     "satisfies every requirement on it",
     "loosen or remove the plug's line for {package}; `sdt-build check` shows who needs what",
     "the plug's requirements and SDT's set cannot all hold",
     "`sdt-build check` walks the dependencies and names the chain that clashes; the lines that matter are "
     "shown above"),
)


def explain_failure(log: str, log_path: Path, backend: str, python: str | None = None,
                    roots: tuple[str, ...] = ()) -> DependencyConflict:
    """Turn a resolver's log into one named error with the lines that matter (never a traceback).

    A clash with SDT's pins is told in the dependency walk's chain form, from the plug's line
    (``roots``) down to the package that needs the pinned one, with the line that fixes it."""
    for code, pattern, cause, fix, cause_unnamed, fix_unnamed in FAILURES:
        if re.search(pattern, log, re.I):
            package = _failing_package(log, code)
            detail = _relevant_lines(log, code)
            # a pin clash is told as one (E220) even when the report ends in "no version of X" (E221):
            # the only release a URL line offers, or every release of a line, was ruled out by it
            clash = _pin_clash(log, python, roots) if code in ("SDT-E220", "SDT-E221") and python else None
            if clash is not None:
                return DependencyConflict("SDT-E220", clash[0], clash[1], detail=detail, log_path=log_path)
            if package is None and cause_unnamed is not None:
                cause, fix = cause_unnamed, fix_unnamed
            return DependencyConflict(code, cause.format(package=package), fix.format(package=package),
                                      detail=detail, log_path=log_path)
    tail = "\n".join(line for line in log.splitlines()[-5:] if line.strip())
    return DependencyConflict("SDT-E226", f"the {backend} resolver failed", "read the resolver log",
                              detail=tail, log_path=log_path)


# What a package in the resolution asked of another: pip's traceback and summary, and uv's report.
_ASKED = (
    re.compile(r"SpecifierRequirement\('(?P<req>[^']+)'\), parent=LinkCandidate\('[^']*/"
               r"(?P<parent>[A-Za-z0-9_.]+?)-(?P<version>\d[^-/']*?)(?:-[^'/]*\.whl|\.tar\.gz|\.zip)"),
    re.compile(r"^\s*(?P<parent>[A-Za-z0-9][A-Za-z0-9_.\-]*) (?P<version>\d\S*) depends on (?P<req>\S+)", re.M),
    re.compile(r"(?P<parent>[A-Za-z0-9][A-Za-z0-9_.\-]*?)(?P<version>[<>=!~]=?[^ ,]+(?:,[<>=!~]=?[^ ,]+)*)? "
               r"depends on (?P<req>[A-Za-z0-9][A-Za-z0-9_.\-]*[<>=!~][^ ]*?)(?= and |,? we | or |$)", re.M),
)


def _pin_clash(log: str, python: str, roots: tuple[str, ...] = ()) -> tuple[str, str] | None:
    """A package pulled in by the plug needs an SDT pin outside its version: the chain from the
    plug's line down to it (as the dependency walk tells it), and the fix.

    SDT's pins hold for every package the plug does not name, so this is the usual conflict of a
    plug's transitive dependency (boto3 → botocore → python-dateutil<3) with SDT's set.
    """
    sdt = SdtSet(python)
    asked: dict[str, dict[str, dict[str, str]]] = {}  # pinned name → parent → parent version → spec
    edges: dict[str, set[str]] = {}  # child → parents, every "X depends on Y" of the report
    for pattern in _ASKED:
        for match in pattern.finditer(log):
            try:
                requirement = Requirement(match["req"].strip("'\","))
            except InvalidRequirement:
                continue
            name = canonicalize_name(requirement.name)
            parent = canonicalize_name(match["parent"])
            edges.setdefault(name, set()).add(parent)
            pin = sdt.pins.get(name)
            if pin is None or parent == name or name in roots or requirement.specifier.contains(pin, prereleases=True):
                continue
            asked.setdefault(name, {}).setdefault(parent, {})[(match["version"] or "").strip()] = \
                str(requirement.specifier)
    if not asked:
        return None
    # The clash every newest release of a parent shares is the one that binds (uv also reports
    # clashes of old releases it ruled out on the way).
    name, parents = max(asked.items(), key=lambda item: (
        any(_open_ended(v) for versions in item[1].values() for v in versions),
        sum(len(v) for v in item[1].values())))
    parent, versions = max(parents.items(), key=lambda item: (any(_open_ended(v) for v in item[1]), len(item[1])))
    newest = max(versions, key=_version_key)
    chain = _chain_up(parent, edges, roots) + ((parent, _span(list(versions))),)
    clash = Clash(chain, name, versions[newest], f"SDT's set pins {name} {sdt.pins[name]}", sdt.pins[name])
    line = fix_line(clash, sdt, set(roots))
    if line:
        fix = (f"add `{line}` to requirements.txt: SDT's packages allow it, so the lock moves the pin "
               "(warning SDT-E204) and the smoke test checks the result")
    else:
        sdt_allows = combined_specs([s for _, s in sdt.needs.get(name, [])]) or f"=={sdt.pins[name]}"
        fix = (f"SDT's packages need {name}{sdt_allows}: pick a {chain[0][0]} release whose {name} requirement "
               "fits that, or remove its line")
    return clash.text(), fix


def _chain_up(name: str, edges: dict[str, set[str]], roots: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The links of the report from one of the plug's lines down to ``name`` (exclusive)."""
    paths: dict[str, tuple[tuple[str, str], ...]] = {name: ()}
    queue = [name]
    while queue:
        current = queue.pop(0)
        if current in roots:
            return paths[current]
        for parent in sorted(edges.get(current, ())):
            if parent not in paths:
                paths[parent] = ((parent, ""),) + paths[current]
                queue.append(parent)
    return ()


def _open_ended(version: str) -> bool:
    """uv's ">=1.44.8": every release from there on."""
    return version.startswith(">") and "<" not in version


def _span(versions: list[str]) -> str:
    """'1.31.0 … 1.31.85' for the releases pip tried, or uv's open-ended range when it gave one."""
    opened = sorted({v for v in versions if _open_ended(v)}, key=_version_key)
    if opened:
        return opened[0]
    known = sorted({v for v in versions if v and v[0].isdigit()}, key=_version_key)
    if not known:
        return ""
    return known[0] if len(known) == 1 else f"{known[0]} … {known[-1]}"


def _version_key(text: str) -> Version:
    try:
        return Version(text.lstrip("<>=!~"))
    except ValueError:
        return Version("0")


def _failing_package(log: str, code: str) -> str | None:
    """The package a failure is about, as the resolver named it."""
    name = r"([A-Za-z0-9][A-Za-z0-9_.\-]*)"
    if code == "SDT-E222":
        built = re.findall(r"Failed to (?:download and )?build [`']" + name, log)
        if built:
            return built[-1]
        failure = re.search(next(p for c, p, *_ in FAILURES if c == code), log)
        collected = re.findall(r"Collecting " + name, log[: failure.start()] if failure else log)
        return collected[-1] if collected else None
    if code == "SDT-E235":
        host = re.findall(r"unable to access '(?:\w+://)?([^/':]+)", log)
        return host[-1] if host else None
    patterns = [r"Building source distributions for [`']?" + name, r"No matching distribution found for " + name,
                r"satisfies the requirement " + name,
                r"Because " + name + r" was not found", r"there is no version of " + name,
                r"Because only " + name, r"Could not find a version that matches " + name,
                r"The user requested " + name, r"SpecifierRequirement\('" + name + r"[^']*'\), parent=None",
                r"you require " + name]
    for pattern in patterns:
        found = re.findall(pattern, log)
        if found:
            return found[-1]
    return None


def _relevant_lines(log: str, code: str) -> str:
    lines = log.splitlines()
    keep = [line for line in lines if re.search(r"conflict is caused by|depends on|requested|Because|"
                                               r"we can conclude|Could not find|No matching|ERROR:|error:|"
                                               r"requirements are unsatisfiable|^\s*\w*Error: ", line)]
    frames = [line for line in lines if not line.lstrip().startswith(("File ", "Traceback", "^", "~"))]
    keep = [line for line in keep if line in frames]
    return "\n".join(keep[:25]) or "\n".join(frames[-10:])
