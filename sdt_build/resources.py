"""The files sdt-build ships beside its code: Dockerfile templates, example folders and the docs.

The one place that finds them. A wheel installs the repository's top-level ``templates/``,
``examples/`` and ``docs/`` as the packages ``sdt_build.templates``, ``sdt_build.examples`` and
``sdt_build.docs`` (pyproject.toml maps them); an editable install maps the same names onto the
checkout's folders. A missing resource means the installation is incomplete (SDT-E909), never a
bug of the user's.
"""

from __future__ import annotations

import os
import re
import shutil
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from sdt_build.runtime.errors import EnvironmentProblem, ProjectError
from sdt_build.runtime.redact import shorten

if TYPE_CHECKING:
    from importlib.abc import Traversable

TEMPLATES = "sdt_build.templates"
EXAMPLES = "sdt_build.examples"
DOCS = "sdt_build.docs"
TROUBLESHOOTING = "troubleshooting"  # the topic with an entry per error code
ERROR_CODE = re.compile(r"SDT-E\d{3}", re.I)
CLIENTS = "clients"  # examples/clients/<name>/client.py
# The project name the example clients are written for (an image, a venv path): `init` writes the
# new project's name in its place, as it writes the new folder's path for ``examples/<example>``.
SCAFFOLD_NAME = "mysites"
DOC_LINK = re.compile(r"\[([^\]]+)\]\((?:\.\./)+docs/([\w-]+)\.md(?:#[\w-]+)?\)")  # an example's link into docs/


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
        "must be built with `python -m build`, which packs templates/, examples/ and docs/")


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


def copy_example(name: str, target: Path, project: str, client: str | None = None) -> list[Path]:
    """Write example ``name`` (and, when given, example client ``client``) into ``target`` for the
    project named ``project``: its text names the new folder and project, never the example's.
    Returns the files written."""
    with resources.as_file(_folder(EXAMPLES) / name) as source:
        shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    if client:
        target.joinpath("client.py").write_text((_folder(EXAMPLES) / CLIENTS / client / "client.py").read_text())
    written = sorted(p for p in target.rglob("*") if p.is_file())
    folder = re.compile(rf"\bexamples/{re.escape(name)}\b")
    for path in written:
        if path.suffix in (".py", ".md", ".toml", ".txt"):
            text = path.read_text("utf-8")
            new = re.sub(rf"\b{SCAFFOLD_NAME}\b", project, folder.sub(lambda _: target.as_posix(), text))
            new = DOC_LINK.sub(r"\1 (`sdt-build docs \2`)", new)
            if new != text:
                path.write_text(new, "utf-8")
    return written


def doc_topics() -> dict[str, str]:
    """Each docs topic (a docs/ file's name without .md) and its title (the first heading)."""
    topics = {}
    for path in sorted(_folder(DOCS).iterdir(), key=lambda p: p.name):
        if path.name.endswith(".md"):
            title = next((line.lstrip("# ").strip() for line in path.read_text("utf-8").splitlines()
                          if line.startswith("# ")), "")
            topics[path.name[:-3]] = title
    return topics


def doc_topic(reference: str) -> str:
    """The topic a reference names, written as a topic (``running``), a file (``running.md``), a
    path with an anchor (``docs/running.md#keys``) or an error code (``SDT-E203``: troubleshooting);
    SDT-E120 when there is none."""
    if ERROR_CODE.fullmatch(reference.strip()):
        return TROUBLESHOOTING
    topic = re.sub(r"^(?:\./)?(?:docs/)?", "", reference.split("#", 1)[0].strip()).removesuffix(".md")
    topics = doc_topics()
    if topic not in topics:
        raise ProjectError("SDT-E120", f"there is no docs topic named {shorten(reference, 80)!r}",
                           f"choose one of: {', '.join(topics)} (sdt-build docs lists them), or an error code")
    return topic


def doc_text(reference: str) -> str:
    """The Markdown text of the topic ``reference`` names (as ``doc_topic`` reads it); for an error
    code, its entry in the troubleshooting topic."""
    text = (_folder(DOCS) / f"{doc_topic(reference)}.md").read_text("utf-8")
    if not ERROR_CODE.fullmatch(reference.strip()):
        return text
    code = reference.strip().upper()
    entry = re.search(rf"^### {code} .*?(?=^##|\Z)", text, re.M | re.S)
    if entry is None:
        raise ProjectError("SDT-E120", f"there is no error code {code}",
                           f"`sdt-build docs {TROUBLESHOOTING}` lists every code")
    return entry.group(0).rstrip() + "\n"
