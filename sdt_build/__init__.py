"""sdt-build: from a dataplug + client folder to a checked image and a Dask run over many PV systems.

Light on purpose: this package is imported inside the image and on every worker, so only the
plug contract is imported eagerly; ``SDTDask`` and the clients load on first use.
"""

import importlib

from sdt_build.runtime.errors import SdtBuildError
from sdt_build.runtime.plug import DataPlug, EnvVar

__version__ = "0.1.0"
__all__ = ["DataPlug", "EnvVar", "Client", "SDTDask", "SdtBuildError", "__version__"]
_LAZY = {"SDTDask": "sdt_build.sdtdask", "Client": "sdt_build.clients.base"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sdt_build' has no attribute {name!r}")
