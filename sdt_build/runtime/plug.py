"""What a dataplug is: the base class users subclass, how plugs declare environment variables, and
which files of the plug's folder would replace a module the workers import from elsewhere.

Imported inside the image and on every worker, so it stays light: no pandas, dask or docker here.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Iterable, Mapping

SHADOW = "SDT-E127"  # a file of the plug's folder named like a module the workers import from elsewhere


@dataclass(frozen=True)
class EnvVar:
    """An environment variable a plug or client reads at run time.

    required: the run cannot start without it. secret: its value is never printed, logged
    or written into an image; it is passed to containers at run time only.
    """

    name: str
    required: bool = True
    secret: bool = False
    default: str | None = None
    help: str = ""

    def value(self) -> str | None:
        """The value here; an empty variable counts as unset (as SDT-E108 does), so the default applies."""
        return os.environ.get(self.name) or self.default

    def shown(self) -> str:
        """The value as it may be displayed."""
        value = self.value()
        if value is None:
            return "<unset>"
        return "****" if self.secret else value


class DataPlug:
    """Base class for dataplugs: where a PV system's power data comes from.

    Subclasses implement ``get_data(key)`` returning a pandas DataFrame that
    ``solardatatools.DataHandler`` accepts (a DatetimeIndex and a power column), and may
    implement ``keys()`` giving the default keys. The class is created with no arguments on
    each worker: read configuration from environment variables declared in ``env``.
    """

    env: tuple[EnvVar, ...] = ()

    def get_data(self, key: tuple) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.get_data(key) is not implemented")


def declared_env(obj: Any) -> tuple[EnvVar, ...]:
    """The EnvVar declarations of a plug or client class (or instance)."""
    declared: Iterable[Any] = getattr(obj, "env", ()) or ()
    return tuple(v if isinstance(v, EnvVar) else EnvVar(str(v)) for v in declared)


def module_name(relative: str | PurePath) -> str | None:
    """The top-level name a file of the plug's folder is imported by, with the folder on sys.path:
    ``X.py`` and an extension module ``X.cpython-311-x86_64-linux-gnu.so`` are X, ``X/__init__.py`` is
    the package X. A folder without ``__init__.py`` replaces nothing (Python looks further for X)."""
    parts = PurePath(relative).parts
    if len(parts) == 1 and parts[0].endswith(".py"):
        name = parts[0][:-3]
    elif len(parts) == 1 and parts[0].endswith(".so"):
        name = parts[0].split(".")[0]
    elif len(parts) == 2 and parts[1] == "__init__.py":
        name = parts[0]
    else:
        return None
    return name if name.isidentifier() else None


def everywhere() -> dict[str, str]:
    """What every worker imports from outside the plug's folder (name → what it is): the standard
    library (as this Python names it) and sdt_build."""
    return {**{name: f"the standard library's module {name}" for name in sys.stdlib_module_names},
            "sdt_build": "sdt-build's own package sdt_build"}


@dataclass(frozen=True)
class Shadow:
    """A file of the plug's folder that would replace ``what`` (the module ``module``): the folder
    comes first on the workers' import path, so its ``module`` is the one everything imports."""

    file: str  # the file that makes it importable: pandas.py, numpy/__init__.py
    module: str
    what: str

    @property
    def entry(self) -> str:
        """What lies at the top of the folder: pandas.py, numpy/."""
        first, *rest = self.file.split("/")
        return f"{first}/" if rest else first

    @property
    def cause(self) -> str:
        shown = f"the folder {self.entry}" if self.entry.endswith("/") else self.entry
        return f"{shown} would replace {self.what} on every worker"

    @property
    def fix(self) -> str:
        return f"rename {self.entry} (e.g. to my_{self.entry}) and change the imports that use it"


def shadows(files: Iterable[str | PurePath], provided: Mapping[str, str]) -> list[Shadow]:
    """The files of the plug's folder that would replace a module of ``provided`` (name → what it is)."""
    found = []
    for relative in files:
        name = module_name(relative)
        if name in provided:
            found.append(Shadow(PurePath(relative).as_posix(), name, provided[name]))
    return found
