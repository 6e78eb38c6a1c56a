"""The files sdt-build ships beside its code: Dockerfile templates and example folders.

The one place that finds them. A wheel installs the repository's top-level ``templates/`` and
``examples/`` as the packages ``sdt_build.templates`` and ``sdt_build.examples`` (pyproject.toml
maps them); an editable install maps the same names onto the checkout's folders. A missing
resource means the installation is incomplete (SDT-E909), never a bug of the user's.
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from sdt_build.errors import EnvironmentProblem

if TYPE_CHECKING:
    from importlib.abc import Traversable

TEMPLATES = "sdt_build.templates"
EXAMPLES = "sdt_build.examples"
CLIENTS = "clients"  # examples/clients/<name>/client.py


def _folder(package: str) -> Traversable:
    try:
        folder = resources.files(package)
    except ModuleNotFoundError:
        raise incomplete(package.rsplit(".", 1)[-1], package) from None
    if not folder.is_dir():
        raise incomplete(package.rsplit(".", 1)[-1], str(folder))
    return folder


def incomplete(what: str, where: str) -> EnvironmentProblem:
    return EnvironmentProblem(
        "SDT-E909", f"installation incomplete: sdt-build's {what} are missing ({where})",
        "reinstall sdt-build (pip install --force-reinstall sdt-build); a wheel built from a checkout "
        "must be built with `python -m build`, which packs templates/ and examples/")


def template_text(name: str) -> str:
    """A template's text; SDT_TEMPLATES names a folder whose templates replace the shipped ones (each
    template it holds; the others are the shipped ones)."""
    override = os.environ.get("SDT_TEMPLATES")
    path = Path(override) / name if override and (Path(override) / name).is_file() else _folder(TEMPLATES) / name
    if not path.is_file():
        raise incomplete(f"templates ({name})", str(path))
    return path.read_text()


def render_template(template: str, /, html: bool = False, **values) -> str:
    """Render a Jinja template strictly: an unknown name is an error, never an empty string (``html``:
    values are escaped)."""
    import jinja2

    environment = jinja2.Environment(loader=jinja2.FunctionLoader(template_text), autoescape=html,
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return environment.get_template(template).render(**values)


def example_names(*, starters: bool = True) -> list[str]:
    """Example folders (those with a dataplug.py); ``starters`` leaves out broken-* (they teach mistakes)."""
    return sorted(p.name for p in _folder(EXAMPLES).iterdir() if p.is_dir() and (p / "dataplug.py").is_file()
                  and not (starters and p.name.startswith("broken-")))


def client_names() -> list[str]:
    folder = _folder(EXAMPLES) / CLIENTS
    return sorted(p.name for p in folder.iterdir() if (p / "client.py").is_file()) if folder.is_dir() else []


def copy_example(name: str, target: Path, client: str | None = None) -> None:
    """Write example ``name`` (and, when given, example client ``client``) into ``target``."""
    with resources.as_file(_folder(EXAMPLES) / name) as source:
        shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    if client:
        target.joinpath("client.py").write_text((_folder(EXAMPLES) / CLIENTS / client / "client.py").read_text())
