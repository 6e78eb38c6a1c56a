"""One error vocabulary: every failure a user can meet has a stable code, a cause and a fix.

Library code raises these; only the CLI prints them. Codes are documented in
docs/troubleshooting.md (a test keeps the two in step).

Code ranges: SDT-E1xx user files, SDT-E2xx dependencies, SDT-E3xx image build,
SDT-E4xx smoke test, SDT-E5xx run, SDT-E9xx the machine's environment.
"""

from __future__ import annotations

import errno
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sdt_build.runtime.redact import clip


@dataclass(frozen=True)
class Problem:
    """One finding about the user's files: where it is, what is wrong, how to fix it."""

    code: str
    cause: str
    fix: str
    file: str | None = None
    line: int | None = None
    severity: str = "error"  # "error" stops the stage; "warning" and "note" do not

    def __post_init__(self) -> None:
        object.__setattr__(self, "cause", clip(self.cause))
        object.__setattr__(self, "fix", clip(self.fix))

    @property
    def location(self) -> str:
        if self.file is None:
            return ""
        return f"{self.file}:{self.line}" if self.line else self.file

    def to_dict(self) -> dict:
        return asdict(self)


class SdtBuildError(Exception):
    """Base of every error sdt-build raises on purpose; each kind names its exit code and meaning."""

    exit_code = 1
    meaning = "error"

    def __init_subclass__(cls, *, exit_code: int, meaning: str, **more):
        super().__init_subclass__(**more)
        cls.exit_code, cls.meaning = exit_code, meaning

    def __init__(
        self,
        code: str,
        cause: str,
        fix: str,
        detail: str | None = None,
        problems: tuple[Problem, ...] = (),
        log_path: Path | None = None,
    ):
        cause, fix = clip(cause), clip(fix)
        super().__init__(f"{code}: {cause}")
        self.code = code
        self.cause = cause
        self.fix = fix
        self.detail = detail
        self.problems = tuple(problems)
        self.log_path = log_path

    @classmethod
    def from_problems(cls, problems: list[Problem] | tuple[Problem, ...]) -> "SdtBuildError":
        """One error for a list of findings; the first error-level finding leads."""
        errors = [p for p in problems if p.severity == "error"]
        first = errors[0]
        cause = first.cause if len(errors) == 1 else f"{first.cause} (and {len(errors) - 1} more problem(s))"
        return cls(first.code, cause, first.fix, problems=tuple(problems))

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "cause": self.cause,
            "fix": self.fix,
            "detail": self.detail,
            "log": str(self.log_path) if self.log_path else None,
            "problems": [p.to_dict() for p in self.problems],
            "exit_code": self.exit_code,
        }


class ProjectError(SdtBuildError, exit_code=1, meaning="bad user files"):
    """The user's folder breaks the contract."""


class DependencyConflict(SdtBuildError, exit_code=2, meaning="dependency conflict"):
    """The plug's requirements cannot live with SDT's pinned set."""


class BuildError(SdtBuildError, exit_code=3, meaning="image build failed"):
    """The image could not be built."""


class SmokeFailure(SdtBuildError, exit_code=4, meaning="smoke test failed"):
    """The image was built but does not work. ``report`` holds every step when there is one."""

    def __init__(self, code: str, cause: str, fix: str, detail: str | None = None, *, report=None, **more):
        super().__init__(code, cause, fix, detail, **more)
        self.report = report

    def to_dict(self) -> dict:
        return {**super().to_dict(), "smoke": self.report.to_dict() if self.report is not None else None}


class RunFailure(SdtBuildError, exit_code=5, meaning="run finished with failed keys, or could not start"):
    """A run finished with failed keys, or could not start."""


class EnvironmentProblem(SdtBuildError, exit_code=10,
                         meaning="environment problem: no Docker daemon, not root, missing tool"):
    """Something on the machine is missing or broken: no Docker daemon, not root…"""


def unwritable(exc: OSError) -> tuple[str, str]:
    """Why a file could not be written, and what to do about it, from the error's number: a full disk
    wants space, a read-only file system or a folder without permission wants another place."""
    number = exc.errno
    if number in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full", "free space there"
    if number == errno.EROFS:
        return "the file system is read-only", "choose a folder on a writable file system"
    if number in (errno.EACCES, errno.EPERM):
        return "permission denied", "choose a folder you can write to (or give yourself write permission there)"
    if number == errno.ENAMETOOLONG:
        return "the file name is too long", "choose a shorter path"
    return exc.strerror or str(exc), "choose a folder you can write to"


INTERNAL_ERROR = 70  # a bug of sdt-build's (SDT-E999)
INTERRUPTED = 130  # Ctrl-C; a signal's stop is 128 + its number (143 for SIGTERM)
EXIT_CODES = {
    0: "success",
    **{cls.exit_code: f"{cls.meaning} ({cls.__name__})" for cls in (
        ProjectError, DependencyConflict, BuildError, SmokeFailure, RunFailure, EnvironmentProblem)},
    INTERNAL_ERROR: "internal error (SDT-E999): a bug, its traceback saved to a file",
    INTERRUPTED: "interrupted (Ctrl-C; 143 for SIGTERM)",
}


def counted(number: int, noun: str) -> str:
    """``1 thread``, ``2 threads``: a number with its noun, for messages."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


@dataclass
class ProblemList:
    """Collects findings while a stage inspects the user's files."""

    items: list[Problem] = field(default_factory=list)

    def add(self, code: str, cause: str, fix: str, file: str | None = None,
            line: int | None = None, severity: str = "error") -> None:
        self.items.append(Problem(code, cause, fix, file, line, severity))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.items if p.severity == "error"]
