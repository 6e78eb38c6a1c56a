"""The user's files: which files of a project folder go into the image and onto the workers.

One rule for both: secrets, caches and virtual environments stay out (with the folder's own
``.dockerignore``), and a symlink counts only when it points inside the folder; one that leaves
it (``data -> /etc/shadow``) is never read, and the check names it.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import tokenize
from dataclasses import dataclass
from pathlib import Path

from sdt_build.runtime.errors import ProblemList
from sdt_build.runtime.redact import redact

PLUG_FILE = "dataplug.py"
CLIENT_FILE = "client.py"
REQUIREMENTS_FILE = "requirements.txt"
SETTINGS_FILE = "sdt.toml"
CONTRACT_FILES = (PLUG_FILE, CLIENT_FILE, REQUIREMENTS_FILE, SETTINGS_FILE)
# A run's output folder holds the owner file its runs write (older ones: a journal and a run record)
OUTPUT_OWNER = ".sdt-output.json"
JOURNAL = "journal.jsonl"
RECORD = "run.json"
RUN_LEFTOVERS = ("dask-worker-space", "dask-scratch-space")  # what Dask leaves where a run starts
# Never copied from the user's folder (on top of the folder's own .dockerignore).
IGNORED = (
    ".git", ".hg", ".svn", "__pycache__", "*.pyc", ".venv", "venv", ".env", ".env.*", "*.env", ".envrc",
    "*.pem", "*.key", "*.p12", "*.pfx", "*.crt", "id_rsa*", "id_ed25519*", "id_ecdsa*", ".ssh", ".aws",
    ".azure", ".gcloud", ".kube", ".docker", ".netrc", ".pypirc", ".pgpass", "credentials*",
    "*.lock", ".ipynb_checkpoints", "sdt-results", ".sdt", ".pytest_cache", ".mypy_cache", "*.log",
    *RUN_LEFTOVERS,
)
IGNORE_FILE = ".dockerignore"


def output_folder(path: Path) -> bool:
    """Whether ``path`` is a folder that runs write their results to (never part of a project's files)."""
    return os.path.isfile(path / OUTPUT_OWNER) or (os.path.isfile(path / JOURNAL) and os.path.isfile(path / RECORD))


@dataclass(frozen=True)
class FileSet:
    """The files that travel (relative, sorted), and the symlinks left out because they leave the folder."""

    files: tuple[Path, ...]
    outside: tuple[tuple[Path, str], ...] = ()  # (link, where it points)

    @property
    def code(self) -> tuple[Path, ...]:
        """The Python files among them: what every worker imports."""
        return tuple(p for p in self.files if p.suffix == ".py")

    def copy(self, root: Path, dest: Path) -> None:
        """Copy the files from ``root`` into ``dest`` (made if missing); requirement files with any
        index credentials masked."""
        dest.mkdir(parents=True, exist_ok=True)
        for relative in self.files:
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / relative, target)
            if relative.suffix == ".txt":  # requirement files may name an index with its credentials
                text = target.read_text(errors="replace")
                if redact(text) != text:
                    target.write_text(redact(text))


def read_source(path: Path) -> str:
    """A Python file's text as Python reads it: in the encoding its PEP 263 line declares (UTF-8, with
    or without a byte-order mark, when it declares none). UnicodeDecodeError or SyntaxError (an
    unknown encoding) when it cannot be decoded so."""
    with tokenize.open(path) as handle:
        return handle.read()


def undecodable(root: Path, relative: Path, found: ProblemList) -> bool:
    """Whether a Python file of the folder cannot be read as Python would (SDT-E117 in ``found``)."""
    try:
        read_source(root / relative)
        return False
    except (OSError, UnicodeDecodeError, SyntaxError) as exc:
        reason = exc.msg if isinstance(exc, SyntaxError) else type(exc).__name__
        found.add("SDT-E117", f"{relative} cannot be decoded in its declared encoding (UTF-8 unless a "
                  f"`# -*- coding: … -*-` line says otherwise): {reason}",
                  f"save {relative} as UTF-8, or declare its encoding in its first or second line "
                  "(e.g. `# -*- coding: latin-1 -*-`)", file=str(relative))
        return True


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` (symlinks resolved) lies in the folder ``root``."""
    resolved, root = Path(os.path.realpath(path)), Path(os.path.realpath(root))  # a link loop: where it stops
    return resolved == root or root in resolved.parents


def confined(path: Path, root: Path, name: str, found: ProblemList) -> bool:
    """Whether a file sdt-build must read lies in the folder; if not, SDT-E125 and it is never read."""
    if inside(path, root):
        return True
    found.add("SDT-E125", f"{name} points outside the folder ({os.path.realpath(path)}); sdt-build reads only the "
              "folder's own files", "copy the file into the folder and refer to it there", file=name)
    return False


def matching(relative: Path, patterns: tuple[str, ...]) -> str | None:
    """The first pattern that leaves ``relative`` out (matching one of its parts, or the whole path)."""
    return next((pattern for pattern in patterns
                 if any(fnmatch.fnmatch(part, pattern) for part in relative.parts)
                 or fnmatch.fnmatch(str(relative), pattern)), None)


def ignored(relative: Path, patterns: tuple[str, ...]) -> bool:
    return matching(relative, patterns) is not None


def _matcher(lines: list[str]):
    from docker.utils.build import PatternMatcher

    return PatternMatcher(lines)


class UserRules:
    """The folder's own ``.dockerignore``, read as Docker reads it (the docker SDK's matcher): paths
    from the folder's top, the last line that matches decides, and a ``!`` line takes a path back."""

    def __init__(self, root: Path):
        path = root / IGNORE_FILE
        text = path.read_text(errors="replace") if path.is_file() and inside(path, root) else ""
        self.lines = tuple((number, line.strip()) for number, line in enumerate(text.splitlines(), 1)
                           if line.strip() and not line.lstrip().startswith("#"))
        self.matcher = _matcher([line for _, line in self.lines])
        self.takes_back = any(line.startswith("!") for _, line in self.lines)

    def leaves_out(self, relative: Path) -> bool:
        return bool(self.lines) and self.matcher.matches(relative.as_posix())

    def prunes(self, folder: Path) -> bool:
        """Whether nothing under ``folder`` can travel (no ``!`` line could take a file of it back)."""
        return not self.takes_back and self.leaves_out(folder)

    def deciding(self, relative: Path) -> tuple[int, str] | None:
        """The line (number, text) that leaves ``relative`` out, if one does."""
        if not self.leaves_out(relative):
            return None
        return next(((number, line) for number, line in reversed(self.lines)
                     if _matcher([line.removeprefix("!")]).matches(relative.as_posix())), None)


def left_out(root: Path, relative: Path) -> tuple[str, str, str, int | None]:
    """Why a file of the folder is not among the files that travel, how to let it travel, and the
    file and line that say so."""
    rule = UserRules(root).deciding(relative)
    if rule is not None:
        number, line = rule
        return (f"line {number} `{line}` of {IGNORE_FILE} leaves it out",
                f"remove or narrow that line of {IGNORE_FILE}, or add `!{relative.as_posix()}` below it",
                IGNORE_FILE, number)
    pattern = matching(relative, IGNORED)
    if pattern is not None:
        return (f"it is named like a secret or a cache (`{pattern}`), which never leave the folder",
                f"rename {relative}", str(relative), None)
    results = next((parent for parent in relative.parents if output_folder(root / parent)), relative.parent)
    return (f"it lies in {results}, a run's output folder, which never goes to the image or the workers",
            f"move {relative} out of {results}", str(relative), None)


def scan(root: Path, found: ProblemList | None = None) -> FileSet:
    """Walk ``root`` without following links; keep regular files and links to files inside it.
    Links that leave the folder are findings (SDT-E125 warnings) in ``found``; the contract files
    among them are errors where they are read."""
    root = root.resolve()
    rules = UserRules(root)
    files: list[Path] = []
    outside: list[tuple[Path, str]] = []
    for current, folders, names in os.walk(root):
        here = Path(current)
        kept = []
        for name in folders:
            relative = (here / name).relative_to(root)
            if (ignored(relative, IGNORED) or rules.prunes(relative) or os.path.exists(here / name / "pyvenv.cfg")
                    or output_folder(here / name)):
                continue  # a virtualenv, or a run's results: they would change every image's hash
            if (here / name).is_symlink():  # never followed: inside, its files are listed where they are
                if not inside(here / name, root):
                    outside.append((relative, os.readlink(here / name)))
                continue
            kept.append(name)
        folders[:] = sorted(kept)
        for name in names:
            path = here / name
            relative = path.relative_to(root)
            if ignored(relative, IGNORED) or rules.leaves_out(relative):
                continue
            if path.is_symlink() and not inside(path, root):
                outside.append((relative, os.readlink(path)))
            elif os.path.isfile(path):  # regular files and links to them (not sockets, fifos, links to nothing)
                files.append(relative)
    if found is not None:
        for link, target in sorted(outside):
            if str(link) not in CONTRACT_FILES:
                found.add("SDT-E125", f"{link} is a symlink to {target}, outside the folder: it is left out of the "
                          "image and the workers", "copy what the plug needs into the folder, or remove the link",
                          file=str(link), severity="warning")
    return FileSet(tuple(sorted(files)), tuple(sorted(outside)))
