"""Where sdt-build keeps what it can make again: wheels, locks, index answers, build contexts, logs."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path


def cache_root() -> Path:
    """SDT_CACHE_DIR, else ~/.cache/sdt-build (``sdt-build clean --cache`` empties it)."""
    return Path(os.environ.get("SDT_CACHE_DIR", Path.home() / ".cache" / "sdt-build"))


def log_file(name: str, folder: Path | None = None) -> Path:
    """A new, time-stamped log file: in ``folder``, else SDT_LOG_DIR, else $TMPDIR/sdt-build-logs."""
    directory = folder or Path(os.environ.get("SDT_LOG_DIR", Path(tempfile.gettempdir()) / "sdt-build-logs"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"


def write_cached(path: Path, text: str) -> None:
    """Write a cache entry whole or not at all (a reader never meets half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    partial.write_text(text)
    os.replace(partial, path)
