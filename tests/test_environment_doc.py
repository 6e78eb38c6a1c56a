"""docs/environment.md names every environment variable the code, the examples and the scripts read.

The scan is static: literal names in ``os.environ.get("X")`` (or ``.setdefault``),
``os.environ["X"]``, ``"X" in os.environ``, ``os.getenv("X")``, ``EnvVar("X", ...)``, bare strings
in a class's ``env = [...]``, click's ``envvar="X"``, ``${X:-default}`` in shell scripts and
``X ?= value`` in the Makefile, in sdt_build/, examples/ (notebooks included), scripts/,
benchmarks/ and .ci/. Names built at run time (``f"AZURE_{name}"``) cannot be found this way; the
page lists those by hand.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from conftest import ROOT

DOC = ROOT / "docs" / "environment.md"
PYTHON_FOLDERS = ("sdt_build", "examples", "scripts", "benchmarks")
SHELL_FILES = ("scripts/*.sh", "examples/**/*.sh", ".ci/run")
NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# Used when a file cannot be parsed (a notebook cell with magics, a file being written).
PYTHON_PATTERNS = [re.compile(p) for p in (
    rf"environ\.(?:get|setdefault)\(\s*['\"]({NAME})['\"]",
    rf"environ\[\s*['\"]({NAME})['\"]\s*\]",
    rf"getenv\(\s*['\"]({NAME})['\"]",
    rf"EnvVar\(\s*(?:name\s*=\s*)?['\"]({NAME})['\"]",
    rf"envvar\s*=\s*['\"]({NAME})['\"]",
)]
SHELL_DEFAULT = re.compile(rf"\$\{{({NAME}):?[-=?+]")
MAKE_DEFAULT = re.compile(rf"^({NAME})\s*\?=", re.M)


def _is_environ(node: ast.expr) -> bool:
    """``os.environ`` or a bare ``environ`` (from os import environ)."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or \
        (isinstance(node, ast.Name) and node.id == "environ")


def _text(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def names_in_python(source: str) -> set[str]:
    """Literal environment variable names a Python source reads or declares (a module-level
    ``NAME = "VALUE"`` constant standing for a name counts too, as it does in ``env``)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {m for pattern in PYTHON_PATTERNS for m in pattern.findall(source)}
    constants = {item.targets[0].id: _text(item.value) for item in tree.body
                 if isinstance(item, ast.Assign) and len(item.targets) == 1
                 and isinstance(item.targets[0], ast.Name) and _text(item.value) is not None}

    def text(node: ast.expr | None) -> str | None:
        return constants.get(node.id) if isinstance(node, ast.Name) else _text(node)

    found: set[str | None] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = text(node.args[0]) if node.args else None
            if called in ("get", "setdefault") and isinstance(func, ast.Attribute) and _is_environ(func.value):
                found.add(first)
            elif called == "getenv":
                found.add(first)
            elif called == "EnvVar":
                keyword = next((k.value for k in node.keywords if k.arg == "name"), None)
                found.add(first or text(keyword))
            found.update(text(k.value) for k in node.keywords if k.arg == "envvar")
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_environ(node.value):
            found.add(text(node.slice))
        elif isinstance(node, ast.Compare) and any(isinstance(op, ast.In) for op in node.ops) \
                and any(_is_environ(c) for c in node.comparators):
            found.add(text(node.left))
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                targets = item.targets if isinstance(item, ast.Assign) else \
                    [item.target] if isinstance(item, ast.AnnAssign) else []
                if any(isinstance(t, ast.Name) and t.id == "env" for t in targets) \
                        and isinstance(item.value, (ast.List, ast.Tuple)):
                    found.update(text(e) for e in item.value.elts)
    return {name for name in found if name and re.fullmatch(NAME, name)}


def _notebook_source(path: Path) -> str:
    """The code cells of a notebook, with IPython magics and shell escapes left out."""
    try:
        cells = json.loads(path.read_text("utf-8")).get("cells", [])
    except (ValueError, OSError):
        return path.read_text("utf-8", errors="replace")
    lines = []
    for cell in cells:
        if cell.get("cell_type") == "code":
            source = cell.get("source", "")
            text = "".join(source) if isinstance(source, list) else source
            lines += [line for line in text.splitlines() if not line.lstrip().startswith(("%", "!"))]
    return "\n".join(lines)


def variables_read() -> dict[str, set[str]]:
    """Variable name → the files that read or declare it."""
    found: dict[str, set[str]] = {}

    def add(names: set[str], path: Path) -> None:
        for name in names:
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))

    for folder in PYTHON_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            if path.suffix == ".py":
                add(names_in_python(path.read_text("utf-8", errors="replace")), path)
            elif path.suffix == ".ipynb":
                add(names_in_python(_notebook_source(path)), path)
    for pattern in SHELL_FILES:
        for path in sorted(ROOT.glob(pattern)):
            if path.is_file():
                add(set(SHELL_DEFAULT.findall(path.read_text("utf-8", errors="replace"))), path)
    makefile = ROOT / "Makefile"
    if makefile.exists():
        add(set(MAKE_DEFAULT.findall(makefile.read_text())), makefile)
    return found


def documented(name: str, text: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None


def test_every_variable_read_is_documented():
    text = DOC.read_text("utf-8")
    missing = {name: sorted(files) for name, files in variables_read().items() if not documented(name, text)}
    assert not missing, f"environment variables missing from docs/environment.md: {missing}"


def test_the_scan_finds_what_it_should():
    """The scanner itself: every form of read, and the variables known to be read today."""
    source = '''
import os
from os import environ, getenv
from sdt_build import DataPlug, EnvVar
A = os.environ.get("V_GET")
B = os.environ["V_ITEM"]
C = "V_IN" in os.environ
D = getenv("V_GETENV")
E = environ.get("V_BARE")
F = os.environ.setdefault("V_SETDEFAULT", "1")
os.environ["V_WRITTEN"] = "x"
KEY = "V_CONSTANT"
class Plug(DataPlug):
    env = [EnvVar("V_ENVVAR", secret=True), EnvVar(name="V_KEYWORD"), "V_BARE_STRING", EnvVar(KEY)]
'''
    assert names_in_python(source) == {"V_GET", "V_ITEM", "V_IN", "V_GETENV", "V_BARE", "V_ENVVAR",
                                       "V_KEYWORD", "V_BARE_STRING", "V_SETDEFAULT", "V_CONSTANT"}
    assert names_in_python('x = os.environ.get("V_BROKEN"\n') == {"V_BROKEN"}  # a syntax error: regex
    assert SHELL_DEFAULT.findall('SOCKET="${V_SHELL:-/var/run/docker.sock}" ${LOCAL}') == ["V_SHELL"]
    found = variables_read()
    for name in ("SDT_CACHE_DIR", "SDT_LOG_DIR", "SDT_RESOLVER", "SDT_SCHEDULER_ADDRESS", "AWS_PROFILE",
                 "AZURE_CLIENT_SECRET", "SDT_INDEX_BUDGET", "DOCKER_HOST", "SDT_CSV_DIR", "SDT_DOCKER_SOCKET"):
        assert name in found, name


def test_every_documented_row_names_when_and_who():
    """Each table row of the page has a variable in its first cell and no empty cell."""
    for line in DOC.read_text("utf-8").splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            assert all(cells), f"empty cell in docs/environment.md: {line}"
