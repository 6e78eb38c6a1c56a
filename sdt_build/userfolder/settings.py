"""sdt.toml: the project's settings, their schema, and their defaults."""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdt_build.constraints import run_pipeline_arguments
from sdt_build.runtime.errors import ProblemList, RunFailure
from sdt_build.runtime.keys import validate_key
from sdt_build.target import SUPPORTED_PYTHONS, default_python
from sdt_build.userfiles import SETTINGS_FILE, confined

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SETTINGS_KEYS = {
    "name": str, "python": str, "base_image": str, "registry": str, "plug_class": str,
    "client_class": str, "keys": list, "run_pipeline": dict, "build_sdists": bool, "upstream_fixes": bool,
}


@dataclass(frozen=True)
class Settings:
    """sdt.toml, with defaults filled in."""

    name: str
    python: str
    base_image: str | None = None
    registry: str | None = None
    plug_class: str | None = None
    client_class: str | None = None
    keys: tuple[tuple, ...] = ()
    run_pipeline: dict[str, Any] = field(default_factory=dict)
    build_sdists: bool = False  # compile packages that have no wheel for the target in the builder stage
    upstream_fixes: bool = True  # sdt_build.runtime.upstream_fixes on every worker and in the smoke test's pipeline


def read_settings(root: Path, found: ProblemList) -> Settings:
    defaults = Settings(name=_image_name(root.name), python=default_python())
    path = root / SETTINGS_FILE
    if not path.exists() or not confined(path, root, SETTINGS_FILE, found):
        return defaults
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        line = re.search(r"line (\d+)", str(exc))
        found.add("SDT-E112", f"sdt.toml is not valid TOML: {exc}", "fix the TOML syntax (strings in quotes, "
                  "tables as [name])", file=SETTINGS_FILE, line=int(line.group(1)) if line else None)
        return defaults
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in SETTINGS_KEYS:
            close = difflib.get_close_matches(key, SETTINGS_KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            found.add("SDT-E112", f"sdt.toml has an unknown setting {key!r}",
                      f"{hint}known settings: {', '.join(SETTINGS_KEYS)}", file=SETTINGS_FILE)
        elif not isinstance(value, SETTINGS_KEYS[key]):
            found.add("SDT-E112", f"sdt.toml setting {key!r} must be a {SETTINGS_KEYS[key].__name__}, "
                      f"not {type(value).__name__}", f"fix {key} in sdt.toml", file=SETTINGS_FILE)
        else:
            values[key] = value
    if "python" in values and values["python"] not in SUPPORTED_PYTHONS:
        found.add("SDT-E112", f"sdt.toml asks for Python {values.pop('python')}, which sdt-build has no SDT "
                  "constraints for", f"set python to one of {', '.join(SUPPORTED_PYTHONS)}",
                  file=SETTINGS_FILE)
    if "name" in values and not re.fullmatch(r"[a-z0-9]+([._-][a-z0-9]+)*", values["name"]):
        found.add("SDT-E112", f"sdt.toml name {values['name']!r} cannot be an image name",
                  f"use lowercase letters, digits and . _ - (e.g. {_image_name(values['name'])!r})",
                  file=SETTINGS_FILE)
        values.pop("name")
    for problem in pipeline_problems(values.get("run_pipeline", {}), values.get("python", defaults.python)):
        found.add("SDT-E129", *problem, file=SETTINGS_FILE)
    if "keys" in values:
        try:
            values["keys"] = tuple(validate_key(k) for k in values["keys"])
        except RunFailure as exc:
            found.add("SDT-E112", f"sdt.toml keys: {exc.cause}", exc.fix, file=SETTINGS_FILE)
            values.pop("keys")
    return Settings(**{**defaults.__dict__, **values})


def pipeline_problems(arguments: dict[str, Any], python: str) -> list[tuple[str, str]]:
    """(cause, fix) for each argument SDT's ``DataHandler.run_pipeline`` does not take."""
    version, known = run_pipeline_arguments(python)
    if known is None:
        return []
    problems = []
    for name in arguments:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append((f"run_pipeline argument {name!r} is not one that DataHandler.run_pipeline of "
                             f"solar-data-tools {version} takes", f"{hint}use one of its arguments: {', '.join(known)}"))
    return problems


def name_project(root: Path) -> str:
    """Name the project after its folder in sdt.toml (written or replaced), and return the name: a
    scaffold keeps no example's name, which would share its image tags and output folder."""
    name = project_name(root)
    path = root / SETTINGS_FILE
    text = path.read_text("utf-8") if path.exists() else ""
    tables = re.search(r"(?m)^\s*\[", text)  # the top-level keys come before the first table
    head, rest = (text[:tables.start()], text[tables.start():]) if tables else (text, "")
    head, named = re.subn(r'(?m)^name\s*=.*$', f'name = "{name}"', head, count=1)
    path.write_text(head + rest if named else f'name = "{name}"\n' + text, "utf-8")
    return name


def project_name(root: Path) -> str:
    """The name a project in folder ``root`` gets: the folder's name as an image name."""
    return _image_name(root.resolve().name)


def _image_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("._-")
    return re.sub(r"[._-]{2,}", "-", name) or "sdt-project"
