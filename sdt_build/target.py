"""The target: the Python and platform an image (or a worker venv) runs.

One value for every stage that must agree on it: the pre-check's markers and wheel tags, the
resolvers (pip-compile and uv), the wheel download and the base images. The platform is linux
x86_64 with the C library of Debian bookworm (glibc 2.36), the default base; every manylinux tag
up to that floor installs there.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cached_property, lru_cache

from packaging.tags import Tag, compatible_tags, cpython_tags

SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12")
DEFAULT_PYTHON = "3.11"
GLIBC = (2, 36)  # Debian bookworm
# Debian releases whose python3 is that Python: the only Pythons a base image can be bootstrapped for.
DEBIAN_SUITES = {"3.11": "bookworm"}


@dataclass(frozen=True)
class Target:
    python: str  # "3.11"
    machine: str = "x86_64"
    glibc: tuple[int, int] = GLIBC

    @cached_property
    def platforms(self) -> tuple[str, ...]:
        """Wheel platform tags this target installs, newest first (pip does not expand a --platform)."""
        major, newest = self.glibc
        return tuple(f"manylinux_{major}_{minor}_{self.machine}" for minor in range(newest, 4, -1)) + tuple(
            f"{legacy}_{self.machine}" for legacy in ("manylinux2014", "manylinux2010", "manylinux1"))

    @cached_property
    def tags(self) -> frozenset[Tag]:
        version = tuple(int(p) for p in self.python.split("."))
        return frozenset(list(cpython_tags(version, platforms=self.platforms)) + list(
            compatible_tags(version, interpreter=f"cp{version[0]}{version[1]}", platforms=self.platforms)))

    @cached_property
    def markers(self) -> dict[str, str]:
        """PEP 508 marker values (``extra`` empty)."""
        return {"python_version": self.python, "python_full_version": f"{self.python}.0", "sys_platform": "linux",
                "platform_system": "Linux", "platform_machine": self.machine, "os_name": "posix",
                "implementation_name": "cpython", "platform_python_implementation": "CPython",
                "platform_release": "", "platform_version": "", "implementation_version": f"{self.python}.0",
                "extra": ""}

    @property
    def uv_platform(self) -> str:
        return f"{self.machine}-manylinux_{self.glibc[0]}_{self.glibc[1]}"

    @property
    def pip_download_args(self) -> list[str]:
        """pip arguments that select wheels for this target."""
        args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", self.python]
        for platform in self.platforms:
            args += ["--platform", platform]
        return args

    @property
    def wheel_folder(self) -> str:
        """The name of this target's wheel cache."""
        return f"cp{self.python.replace('.', '')}-manylinux_{self.machine}"

    @property
    def debian_suite(self) -> str | None:
        return DEBIAN_SUITES.get(self.python)

    def describe(self) -> str:
        return f"Python {self.python} on linux {self.machine} (glibc {self.glibc[0]}.{self.glibc[1]})"


@lru_cache(maxsize=None)
def target(python: str) -> Target:
    return Target(python)


def host_python() -> str:
    """This interpreter's X.Y."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def default_python() -> str:
    """The target when sdt.toml names none: this interpreter's, when supported (parity with the client)."""
    return host_python() if host_python() in SUPPORTED_PYTHONS else DEFAULT_PYTHON
