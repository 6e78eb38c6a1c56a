"""How sdt-build was installed in the running Python, and the command that adds one of its extras
with that same installer (pip, `uv pip`, pipx or `uv tool`), so a fix names a command that works."""

from __future__ import annotations

import json
import shlex
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from urllib.parse import unquote, urlparse

DIST = "sdt-build"


def installer() -> str:
    """'pipx', 'uv tool' (each keeps a receipt in the venv it made), else what the distribution's
    INSTALLER file names ('pip', 'uv', …; 'pip' when it names none)."""
    prefix = Path(sys.prefix)
    if (prefix / "pipx_metadata.json").is_file():
        return "pipx"
    if (prefix / "uv-receipt.toml").is_file():
        return "uv tool"
    try:
        recorded = (distribution(DIST).read_text("INSTALLER") or "").strip()
    except PackageNotFoundError:
        recorded = ""
    return recorded or "pip"


def requirement(extra: str) -> str:
    """sdt-build with ``extra``, from where it was installed: the wheel file or folder it was
    installed from while it is still there (PEP 610's direct_url.json), else the index."""
    try:
        origin = json.loads(distribution(DIST).read_text("direct_url.json") or "null")
    except (PackageNotFoundError, ValueError):
        origin = None
    url = urlparse((origin or {}).get("url", ""))
    if url.scheme != "file" or not Path(unquote(url.path)).exists():
        return f"{DIST}[{extra}]"
    if origin.get("dir_info", {}).get("editable"):
        return f"-e {shlex.quote(unquote(url.path) + f'[{extra}]')}"
    return f"{DIST}[{extra}] @ {origin['url']}"


def add_extra(extra: str) -> str:
    """The command that installs sdt-build's ``extra`` into the Python running sdt-build."""
    wanted = requirement(extra)
    spec = wanted if wanted.startswith("-e ") else shlex.quote(wanted)
    return {
        "pipx": f"pipx install --force {spec}",
        "uv tool": f"uv tool install --force {spec}",
        "uv": f"uv pip install --python {shlex.quote(sys.executable)} {spec}",
    }.get(installer(), f"{shlex.quote(sys.executable)} -m pip install {spec}")
