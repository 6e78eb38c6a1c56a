"""The parity contract: the packages a client, its scheduler and every worker must share.

Dask's own version check (``distributed/versions.py``) names the same required and optional
packages; sdt-build checks them before an image is used or a task is submitted, and adds
solar-data-tools, whose results should not differ from one environment to another. Standard
library only, and runnable as a file: inside an image or a worker venv, ``python parity.py``
(or ``python -m sdt_build.runtime.parity``) prints their versions, even where sdt_build is not installed.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

# Must be equal everywhere: tasks fail to deserialize, or Dask misbehaves, otherwise.
MUST_MATCH = ("dask", "distributed", "cloudpickle", "msgpack", "tornado", "toolz")
# Should be equal: results may differ, or pickled data may not load.
SHOULD_MATCH = ("numpy", "pandas", "lz4", "solar-data-tools")
PACKAGES = MUST_MATCH + SHOULD_MATCH
MARKER = "SDT-VERSIONS "  # the line ``python -m sdt_build.runtime.parity`` prints


@dataclass(frozen=True)
class ParityRow:
    package: str
    client: str | None
    other: str | None
    severity: str  # ok | note | warning | error
    fix: str = ""


def versions() -> dict[str, str | None]:
    """Python's version and each parity package's, in this environment (None: not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def parse(output: str) -> dict[str, str | None] | None:
    """The versions in the output of ``python -m sdt_build.runtime.parity`` (None when it printed none)."""
    line = next((line for line in output.splitlines() if line.startswith(MARKER)), None)
    return json.loads(line[len(MARKER):]) if line else None


def compare(client: dict, other: dict, where: str = "image",
            pinned: dict[str, str] | None = None) -> tuple[ParityRow, ...]:
    """One row per package: Python major.minor and MUST_MATCH differences are errors, the rest
    warnings (a micro version a note). ``pinned`` (SDT's pins for the other side) picks the fix."""
    rows = []
    ours, theirs = client.get("python") or "", other.get("python") or ""
    if ours.split(".")[:2] != theirs.split(".")[:2]:
        rows.append(ParityRow("python", ours, theirs, "error",
                              f"run the client on Python {'.'.join(theirs.split('.')[:2])}, or set python = "
                              f"\"{'.'.join(ours.split('.')[:2])}\" in sdt.toml and rebuild"))
    else:
        rows.append(ParityRow("python", ours, theirs, "ok" if ours == theirs else "note",
                              "" if ours == theirs else "micro versions differ; Dask only warns about this"))
    pinned = pinned or {}
    for name in PACKAGES:
        mine, theirs = client.get(name), other.get(name)
        if mine == theirs or (mine is None and name in SHOULD_MATCH):
            rows.append(ParityRow(name, mine, theirs, "ok"))
            continue
        if theirs is None:
            fix = f"the {where} lacks {name}: rebuild it with sdt-build"
        elif pinned.get(name) == theirs or mine is None:
            fix = f"change the client: pip install {name}=={theirs}"
        else:
            fix = (f"change the {where}: remove the {name} pin from requirements.txt and rebuild (sdt-build pins "
                   f"{pinned.get(name, '?')}), or change the client: pip install {name}=={theirs}")
        rows.append(ParityRow(name, mine, theirs, "error" if name in MUST_MATCH else "warning", fix))
    return tuple(rows)


def text(rows: tuple[ParityRow, ...]) -> str:
    return "\n".join(f"{r.severity:8} {r.package:17} client {r.client or '-':14} other {r.other or '-':14} {r.fix}"
                     for r in rows)


def require(rows: tuple[ParityRow, ...], where: str) -> None:
    """Refuse to run against ``where`` (a cluster, an image, a venv) when a row is an error (SDT-E503)."""
    from sdt_build.runtime.errors import RunFailure

    errors = [r for r in rows if r.severity == "error"]
    if errors:
        first = errors[0]
        raise RunFailure("SDT-E503", f"the {where} runs {first.package} {first.other}, this client {first.client}: "
                         "tasks would fail or misbehave", first.fix, detail=text(rows))


if __name__ == "__main__":
    print(MARKER + json.dumps(versions()))
