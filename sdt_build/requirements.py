"""The requirements model: requirements.txt read as pip reads it, each line classified, and the
specifier arithmetic the pre-check, the resolver and the dependency page share.

Reading is confined to the project folder: a ``-r``/``-c`` file elsewhere is never opened, and an
include loop is an error (as in pip).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import Specifier, SpecifierSet
from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from sdt_build.runtime.errors import ProblemList
from sdt_build.userfiles import confined, inside

# -r/-c lines as pip writes them; after reading, a constraint file is kept as ``-c <relative path>``.
FILE_OPTION = re.compile(r"^(-r|--requirement|-c|--constraint)(?:[= ]\s*|(?=[^-\s]))(\S+)$")
CONSTRAINT = re.compile(r"^-c (\S+)$")


INVALID_LINES_SHOWN = 5  # per file: past these, one finding says how many more (it may not be a requirements file)


class Line(str):
    """A requirement line's text that knows where it was written: ``file`` (relative to the folder)
    and ``line`` (its first physical line), so every finding about it can say ``file:line``."""

    file: str | None
    line: int | None

    def __new__(cls, text: str, file: str | None = None, line: int | None = None) -> "Line":
        made = super().__new__(cls, text)
        made.file, made.line = file, line
        return made


def read_requirements(path: Path, root: Path, found: ProblemList, chain: tuple[Path, ...] = ()
                       ) -> tuple[Line, ...]:
    """Logical requirement lines (comments, blanks and --hash options stripped, -r followed).

    Includes (``-r``) and constraint files (``-c``) must lie inside the folder, and an include
    loop is an error: neither is ever read from elsewhere or followed forever.
    """
    name = str(path.relative_to(root)) if chain else path.name
    if not confined(path, root, name, found):
        return ()
    try:
        text = path.read_bytes().decode("utf-8-sig")  # pip accepts a UTF-8 BOM
    except (OSError, UnicodeDecodeError) as exc:
        found.add("SDT-E117", f"{name} cannot be read as UTF-8 text ({exc.__class__.__name__})",
                  f"save {name} as UTF-8", file=name)
        return ()
    chain = chain + (path.resolve(),)
    lines: list[Line] = []
    invalid = 0
    for number, raw in logical_lines(text):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        line = re.sub(r"\s--hash[= ]\S+", "", line).strip()
        if not line:
            continue
        option = FILE_OPTION.match(line)
        if option:
            target = _included(option.group(2), path, root, chain, name, number, found)
            if target is not None and option.group(1) in ("-r", "--requirement"):
                lines.extend(read_requirements(target, root, found, chain))
            elif target is not None:
                lines.append(Line(f"-c {target.relative_to(root.resolve())}", name, number))
            continue
        if line.startswith("-") or "://" in line or line.startswith((".", "/")):
            lines.append(Line(line, name, number))  # options, editables, URLs and paths: judged later
            continue
        try:
            Requirement(line)
        except InvalidRequirement as exc:
            invalid += 1
            if invalid <= INVALID_LINES_SHOWN:
                found.add("SDT-E113", f"{name} line {number} is not a valid requirement: {raw.strip()[:120]!r}",
                          f"write it as `name`, `name==1.2` or `name>=1,<2` ({str(exc).splitlines()[0][:200]})",
                          file=name, line=number)
            continue
        lines.append(Line(line, name, number))
    if invalid > INVALID_LINES_SHOWN:
        found.add("SDT-E113", f"{name} has {invalid - INVALID_LINES_SHOWN} more lines that are not requirements "
                  f"({invalid} in all)", f"check that {name} is a requirements file", file=name)
    return tuple(lines)


def _included(include: str, path: Path, root: Path, chain: tuple[Path, ...], name: str, number: int,
              found: ProblemList) -> Path | None:
    """The file a ``-r``/``-c`` line names, when it may be read: inside the folder, present, no loop."""
    target = (path.parent / include).resolve()
    if not inside(target, root):
        found.add("SDT-E126", f"{name} line {number} includes {include}, which is outside the project folder",
                  "move the file into the folder (the build only sees the folder), or list its lines here",
                  file=name, line=number)
        return None
    if not target.is_file():
        found.add("SDT-E113", f"{name} line {number} includes {include}, which does not exist",
                  f"create {include} or remove the line", file=name, line=number)
        return None
    if target in chain:
        loop = " → ".join(str(p.relative_to(root.resolve())) for p in chain + (target,))
        found.add("SDT-E126", f"{name} line {number} includes {include} again: an include loop ({loop})",
                  "remove one of the -r lines that form the loop", file=name, line=number)
        return None
    return target


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(number of the first physical line, text) with backslash continuations joined."""
    logical: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 1
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending.append(raw[:-1])
            continue
        logical.append((start, " ".join(pending + [raw])))
        pending = []
    if pending:
        logical.append((start, " ".join(pending)))
    return logical


@dataclass(frozen=True)
class PlugLine:
    """One logical requirement line, classified."""

    text: str
    kind: str  # name | url | vcs | path | editable | option
    requirement: Requirement | None = None


def classify(line: str) -> PlugLine:
    if line.startswith(("-e ", "--editable")):
        return PlugLine(line, "editable")
    if line.startswith("-"):
        return PlugLine(line, "option")
    if re.match(r"^(git|hg|svn|bzr)\+", line) or re.search(r"@\s*(git|hg|svn|bzr)\+", line):
        try:
            return PlugLine(line, "vcs", Requirement(line))  # ``name @ git+…``: its name is known
        except InvalidRequirement:
            return PlugLine(line, "vcs")
    if line.startswith((".", "/", "file:")) or re.search(r"@\s*file:", line):
        return PlugLine(line, "path")
    try:
        requirement = Requirement(line)
    except InvalidRequirement:
        return PlugLine(line, "url" if "://" in line else "option")
    return PlugLine(line, "url" if requirement.url else "name", requirement)


def constraint_files(root: Path, lines: Iterable[str]) -> list[Path]:
    """The ``-c`` files the (read) requirement lines name, inside ``root``."""
    return [root / match.group(1) for line in lines if (match := CONSTRAINT.match(line))]


def constraint_lines(root: Path, lines: Iterable[str]) -> tuple[Line, ...]:
    """Requirement lines of the ``-c`` files (they narrow versions too)."""
    found: list[Line] = []
    for path in constraint_files(root, lines):
        if path.is_file() and inside(path, root):
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
                line = re.sub(r"(^|\s)#.*$", "", line).strip()
                if line and not line.startswith("-"):
                    found.append(Line(line, str(path.relative_to(root)), number))
    return tuple(found)


def requirement_names(lines: Iterable[str]) -> list[str]:
    """Canonical names the lines ask for or constrain, in order (``#egg=`` names of option lines too)."""
    names: list[str] = []
    for line in lines:
        requirement = classify(line).requirement
        if requirement is not None:
            names.append(canonicalize_name(requirement.name))
        elif line.startswith("-") and (egg := re.search(r"#egg=([A-Za-z0-9_.\-]+)", line)):
            names.append(canonicalize_name(egg.group(1)))
    return list(dict.fromkeys(names))


class UrlWheel(NamedTuple):
    url: str  # without its fragment
    filename: str
    version: Version
    tags: frozenset[Tag]


def url_wheel(requirement: Requirement) -> UrlWheel | None:
    """The wheel a ``name @ URL`` requirement points at; None when it points at no wheel (a
    repository, a source archive)."""
    url = (requirement.url or "").split("#")[0]
    filename = url.split("?")[0].rsplit("/", 1)[-1]
    try:
        _, version, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    return UrlWheel(url, filename, version, tags)


class Constraint(Requirement):
    """A line from a ``-c`` file: it narrows versions but does not ask for the package."""


def as_constraint(requirement: Requirement) -> Requirement:
    return Constraint(str(requirement))


def combined(requirements: list[Requirement]) -> SpecifierSet:
    combined = SpecifierSet()
    for requirement in requirements:
        combined &= requirement.specifier
    return combined


def satisfiable(specs: list[SpecifierSet], known: list[Version]) -> list[Version]:
    """Versions (from ``known`` and the specifiers' own boundaries) that satisfy every spec."""
    candidates = set(known)
    for spec in specs:
        for item in spec:
            try:
                base = Version(item.version.rstrip(".*"))
            except InvalidVersion:
                continue
            major, minor, micro = (list(base.release) + [0, 0])[:3]
            candidates.update({base, Version(f"{major}.{minor}.{micro + 1}"), Version(f"{major}.{minor + 1}"),
                               Version(f"{major + 1}")})
            if micro:
                candidates.add(Version(f"{major}.{minor}.{micro - 1}"))
            if minor:
                candidates.add(Version(f"{major}.{minor - 1}.999"))
            if major:
                candidates.add(Version(f"{major - 1}.999.999"))
    return sorted((v for v in candidates if all(spec.contains(v, prereleases=True) for spec in specs)),
                  reverse=True)


def combined_specs(specs: list[SpecifierSet]) -> str:
    """The specifiers as one short range, written as packaging normalises it (``<3.0.dev0``, not
    ``<3.0dev``): the highest lower bound, the lowest upper bound, exclusions; an exact version
    alone when one is asked and the rest allow it (``==2023.12.2``, not ``>=2021.09.0,==2023.12.2``)."""
    lower = upper = None
    others: list[Specifier] = []
    for spec in specs:
        for item in map(normalised, spec):
            try:
                version = Version(item.version)
            except InvalidVersion:
                others.append(item)
                continue
            if item.operator in (">=", ">") and (lower is None or version > Version(lower.version)):
                lower = item
            elif item.operator in ("<", "<=") and (upper is None or version < Version(upper.version)):
                upper = item
            elif item.operator in ("!=", "==", "~=", "==="):
                others.append(item)
    bounds = [b for b in (lower, upper) if b is not None]
    window = SpecifierSet(",".join(map(str, bounds)))
    kept = [o for o in dict.fromkeys(others)
            if o.operator != "!=" or window.contains(o.version.rstrip(".*"), prereleases=True)]
    whole = SpecifierSet(",".join(map(str, bounds + kept)))
    exact = next((o for o in kept if o.operator == "==" and not o.version.endswith(".*")
                  and whole.contains(o.version, prereleases=True)), None)
    return str(exact) if exact is not None else ",".join(map(str, bounds + kept))


def normalised(item: Specifier) -> Specifier:
    """``item`` with its version written as packaging normalises it (``<3.0dev`` → ``<3.0.dev0``)."""
    wildcard = item.version.endswith(".*")
    try:
        version = Version(item.version[:-2] if wildcard else item.version)
    except InvalidVersion:
        return item
    return Specifier(f"{item.operator}{version}{'.*' if wildcard else ''}")
