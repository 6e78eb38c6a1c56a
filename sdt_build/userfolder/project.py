"""Load and validate a user folder: dataplug.py, client.py, requirements.txt, sdt.toml.

Everything here is static: the plug's own packages need not be installed where the check runs,
and nothing of the user's code is executed. The parts: the file set (``userfiles``), sdt.toml
(``settings``), requirements.txt (``requirements``), the plug and client classes and the files that
would replace an importable module (``contracts``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sdt_build.requirements import Line, read_requirements
from sdt_build.runtime.errors import Problem, ProblemList, ProjectError
from sdt_build.runtime.plug import EnvVar
from sdt_build.runtime.redact import remember
from sdt_build.userfiles import CLIENT_FILE, PLUG_FILE, REQUIREMENTS_FILE, FileSet, scan, undecodable
from sdt_build.userfolder.contracts import (ClassSpec, check_imports, check_left_out, check_names, check_shadowing,
                                            find_client, find_plug, parse)
from sdt_build.userfolder.settings import Settings, read_settings


@dataclass(frozen=True)
class UserProject:
    """A validated user folder, handed to the resolve stage and to the runner."""

    root: Path
    settings: Settings
    plug: ClassSpec
    client: ClassSpec
    requirements_file: Path | None
    requirement_lines: tuple[Line, ...]  # each knows its file and line
    files: FileSet = FileSet(())
    findings: tuple[Problem, ...] = ()

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def env(self) -> tuple[EnvVar, ...]:
        """Every environment variable the plug and the client declare (plug first, no repeats)."""
        seen: dict[str, EnvVar] = {}
        for var in self.plug.env + self.client.env:
            seen.setdefault(var.name, var)
        return tuple(seen.values())

    @property
    def code_files(self) -> tuple[Path, ...]:
        """The user's Python files: what the image holds and every worker imports."""
        return self.files.code


def load_project(path: str | os.PathLike, *, require_env: bool = True) -> UserProject:
    """Load ``path`` and raise ProjectError listing every problem when it breaks the contract."""
    project, problems = inspect_project(path, require_env=require_env)
    if project is None or any(p.severity == "error" for p in problems):
        raise ProjectError.from_problems(problems)
    return project


def inspect_project(path: str | os.PathLike, *, require_env: bool = True
                    ) -> tuple[UserProject | None, list[Problem]]:
    """Every finding about the folder, and the project when it could be assembled."""
    root = Path(path).expanduser().resolve()
    found = ProblemList()
    if not root.is_dir():
        found.add("SDT-E101", f"{path} is not a folder",
                  "pass the folder that holds dataplug.py and client.py (see `sdt-build init`)")
        return None, found.items

    files = scan(root, found)
    for helper in files.code:  # dataplug.py and client.py are read below
        if str(helper) not in (PLUG_FILE, CLIENT_FILE):
            undecodable(root, helper, found)
    settings = read_settings(root, found)
    requirements_file = root / REQUIREMENTS_FILE
    lines = read_requirements(requirements_file, root, found) if requirements_file.exists() else ()
    check_shadowing(files, lines, settings.python, found)
    check_left_out(root, files, found)

    def read(name: str, missing_code: str, missing_fix: str):
        tree = parse(root, name, found, missing_code=missing_code, missing_fix=missing_fix)
        if tree is not None:
            check_names(tree, name, found)
        return tree

    plug = client = None
    plug_tree = read(PLUG_FILE, "SDT-E102", "add dataplug.py with one class that has get_data(self, key) "
                                            "(`sdt-build init DIR` writes a starting point)")
    if plug_tree is not None:
        plug = find_plug(plug_tree, root / PLUG_FILE, settings, found)
        check_imports(plug_tree, root, PLUG_FILE, lines, settings.python, found)
    client_tree = read(CLIENT_FILE, "SDT-E109", "add client.py with one class that subclasses a sdt_build "
                                                "client, e.g. `class Laptop(LocalClient): workers = 2`")
    if client_tree is not None:
        client = find_client(client_tree, root / CLIENT_FILE, settings, found)

    if plug is not None and client is not None:
        declared = {var.name: (var, CLIENT_FILE) for var in client.env}
        declared.update({var.name: (var, PLUG_FILE) for var in plug.env})  # the plug's declaration wins
        for var, where in declared.values():
            if var.required and var.default is None and not os.environ.get(var.name):
                found.add("SDT-E108", f"required environment variable {var.name} is not set"
                          + (" (secret)" if var.secret else ""),
                          f"export {var.name}=… before running (declared in {where})",
                          file=where, severity="error" if require_env else "warning")
    if plug is None or client is None:
        return None, found.items
    project = UserProject(root, settings, plug, client,
                          requirements_file if requirements_file.exists() else None, lines, files,
                          tuple(p for p in found.items if p.severity != "error"))
    return project, found.items


def runtime_env(project: UserProject) -> dict[str, str]:
    """The declared environment variables that are set here: passed to containers at run time only.
    The secret ones' values are masked wherever sdt-build shows or writes text (``redact``)."""
    values = {var.name: var.value() for var in project.env if var.value() is not None}
    remember(*(values.get(var.name) for var in project.env if var.secret))
    return values
