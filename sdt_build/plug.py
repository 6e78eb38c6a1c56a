"""What a dataplug is: the base class users subclass, and how plugs declare environment variables.

Imported inside the image and on every worker, so it stays light: no pandas, dask or docker here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable


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
