"""Load and validate a user folder: dataplug.py, client.py, requirements.txt, sdt.toml.

Everything here is static (``ast``, ``packaging``, ``tomllib``): the plug's own packages need
not be installed where the check runs, and nothing of the user's code is executed.
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from sdt_build import constraints
from sdt_build.errors import Problem, ProblemList, ProjectError, RunFailure
from sdt_build.plug import EnvVar
from sdt_build.userfiles import FileSet, inside, scan

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PLUG_FILE = "dataplug.py"
CLIENT_FILE = "client.py"
REQUIREMENTS_FILE = "requirements.txt"
SETTINGS_FILE = "sdt.toml"
SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12")
CONTRACT_FILES = (PLUG_FILE, CLIENT_FILE, REQUIREMENTS_FILE, SETTINGS_FILE)

# Import names whose distribution is named differently (import name -> distribution).
IMPORT_ALIASES = {
    "sklearn": "scikit-learn", "yaml": "pyyaml", "PIL": "pillow", "bs4": "beautifulsoup4",
    "dateutil": "python-dateutil", "cv2": "opencv-python", "jwt": "pyjwt", "dotenv": "python-dotenv",
    "attr": "attrs", "Crypto": "pycryptodome", "OpenSSL": "pyopenssl", "magic": "python-magic",
    "serial": "pyserial", "usb": "pyusb", "MySQLdb": "mysqlclient", "psycopg2": "psycopg2-binary",
    "psycopg": "psycopg[binary]", "google": "google-cloud-storage", "azure": "azure-storage-blob",
    "snowflake": "snowflake-connector-python", "pyarrow": "pyarrow", "fitz": "pymupdf",
    "dns": "dnspython", "docx": "python-docx", "gi": "pygobject", "skimage": "scikit-image",
    "influxdb_client": "influxdb-client", "pymysql": "pymysql", "redshift_connector": "redshift-connector",
}

SETTINGS_KEYS = {
    "name": str, "python": str, "base_image": str, "registry": str, "plug_class": str,
    "client_class": str, "keys": list, "run_pipeline": dict, "build_sdists": bool,
}


@dataclass(frozen=True)
class ClassSpec:
    """A class found in one of the user's files."""

    file: Path
    name: str
    line: int
    env: tuple[EnvVar, ...] = ()
    has_keys: bool = False
    has_size: bool = False  # a size(key) estimate, for longest-first ordering


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


@dataclass(frozen=True)
class UserProject:
    """A validated user folder, handed to the resolve stage and to the runner."""

    root: Path
    settings: Settings
    plug: ClassSpec
    client: ClassSpec
    requirements_file: Path | None
    requirement_lines: tuple[str, ...]
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

    files = scan(root)
    for link, target in files.outside:
        if str(link) in CONTRACT_FILES:
            continue  # an error where the file is read
        found.add("SDT-E125", f"{link} is a symlink to {target}, outside the folder: it is left out of the "
                  "image and the workers", "copy what the plug needs into the folder, or remove the link",
                  file=str(link), severity="warning")
    settings = _read_settings(root, found)
    requirements_file = root / REQUIREMENTS_FILE
    lines = _read_requirements(requirements_file, root, found) if requirements_file.exists() else ()

    plug = client = None
    plug_tree = _parse(root, PLUG_FILE, found, missing_code="SDT-E102",
                       missing_fix="add dataplug.py with one class that has get_data(self, key) "
                                   "(`sdt-build init DIR` writes a starting point)")
    if plug_tree is not None:
        plug = _find_plug(plug_tree, root / PLUG_FILE, settings, found)
        _check_imports(plug_tree, root, PLUG_FILE, lines, settings.python, found)
    client_tree = _parse(root, CLIENT_FILE, found, missing_code="SDT-E109",
                         missing_fix="add client.py with one class that subclasses a sdt_build client, "
                                     "e.g. `class Laptop(LocalClient): workers = 2`")
    if client_tree is not None:
        client = _find_client(client_tree, root / CLIENT_FILE, settings, found)

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


def _parse(root: Path, name: str, found: ProblemList, missing_code: str,
           missing_fix: str) -> ast.Module | None:
    path = root / name
    if not path.is_file():
        found.add(missing_code, f"{name} is missing from {root}", missing_fix)
        return None
    if not _confined(path, root, name, found):
        return None
    try:
        source = path.read_bytes().decode("utf-8-sig")  # Python accepts a UTF-8 BOM, so do we
    except (OSError, UnicodeDecodeError) as exc:
        found.add("SDT-E117", f"{name} cannot be read as UTF-8 text ({exc.__class__.__name__})",
                  f"save {name} as UTF-8", file=name)
        return None
    try:
        return ast.parse(source, filename=name)
    except SyntaxError as exc:
        where = f"line {exc.lineno} of {name}" if exc.lineno else name
        found.add("SDT-E103", f"syntax error in {name}: {exc.msg}",
                  f"fix {where} (python -m py_compile {name} shows it too)",
                  file=name, line=exc.lineno)
        return None


def _base_names(node: ast.ClassDef) -> list[str]:
    names = []
    for base in node.bases:
        if isinstance(base, ast.Name):
            names.append(base.id)
        elif isinstance(base, ast.Attribute):
            names.append(base.attr)
    return names


def _methods(node: ast.ClassDef) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    return {item.name: item for item in node.body
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _leaf_classes(classes: list[ast.ClassDef]) -> list[ast.ClassDef]:
    """Candidates that no other candidate inherits from (helper bases are not the plug)."""
    used_as_base = {base for cls in classes for base in _base_names(cls)}
    return [cls for cls in classes if cls.name not in used_as_base]


def _lineage(cls: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> list[ast.ClassDef]:
    """The class and its bases defined in the same file, nearest first."""
    chain, todo = [], [cls]
    while todo:
        current = todo.pop(0)
        if current in chain:
            continue
        chain.append(current)
        todo.extend(classes[b] for b in _base_names(current) if b in classes)
    return chain


def _inherited_method(cls: ast.ClassDef, classes: dict[str, ast.ClassDef], name: str):
    for owner in _lineage(cls, classes):
        method = _methods(owner).get(name)
        if method is not None:
            return method
    return None


def _pick(candidates: list[ast.ClassDef], wanted: str | None, kind: str, file: str,
          found: ProblemList, none_code: str, many_code: str, none_fix: str) -> ast.ClassDef | None:
    if wanted:
        chosen = [c for c in candidates if c.name == wanted]
        if not chosen:
            names = ", ".join(c.name for c in candidates) or "none"
            found.add(none_code, f"{file} has no {kind} class named {wanted} (found: {names})",
                      f"fix {kind}_class in sdt.toml or the class name in {file}", file=file)
            return None
        return chosen[0]
    leaves = _leaf_classes(candidates)
    if not leaves:
        found.add(none_code, f"{file} defines no {kind} class", none_fix, file=file)
        return None
    if len(leaves) > 1:
        listed = ", ".join(f"{c.name} (line {c.lineno})" for c in leaves)
        found.add(many_code, f"{file} defines {len(leaves)} {kind} classes: {listed}",
                  f"keep one {kind} class in {file}, or name the one to use with "
                  f'{kind}_class = "{leaves[0].name}" in sdt.toml', file=file, line=leaves[1].lineno)
        return None
    return leaves[0]


def _find_plug(tree: ast.Module, path: Path, settings: Settings, found: ProblemList) -> ClassSpec | None:
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    candidates = [c for c in classes.values()
                  if "DataPlug" in _base_names(c) or "get_data" in _methods(c)
                  or any(b in classes for b in _base_names(c))
                  and _inherited_method(c, classes, "get_data") is not None]
    cls = _pick(candidates, settings.plug_class, "plug", PLUG_FILE, found, "SDT-E104", "SDT-E105",
                "add a class that subclasses sdt_build.DataPlug and defines get_data(self, key)")
    if cls is None:
        return None
    get_data = _inherited_method(cls, classes, "get_data")
    if get_data is None:
        found.add("SDT-E106", f"plug class {cls.name} does not define get_data",
                  "add `def get_data(self, key: tuple) -> pandas.DataFrame` to the class",
                  file=PLUG_FILE, line=cls.lineno)
    else:
        _check_one_argument(get_data, "get_data", "key", cls.name, found, "SDT-E106")
    init = _inherited_method(cls, classes, "__init__")
    if init is not None and _required_args(init):
        names = ", ".join(_required_args(init))
        found.add("SDT-E114", f"{cls.name}.__init__ needs arguments ({names}); sdt-build creates the "
                  "plug with none on every worker",
                  "give those parameters defaults, or read them from environment variables declared "
                  "in `env`", file=PLUG_FILE, line=init.lineno)
    keys = _inherited_method(cls, classes, "keys")
    if keys is not None and _required_args(keys):
        found.add("SDT-E118", f"{cls.name}.keys() must take no arguments, it takes "
                  f"{', '.join(_required_args(keys))}",
                  "define `def keys(self)` returning a list of key tuples", file=PLUG_FILE, line=keys.lineno)
    env = _env_declaration(cls, classes, _constants(tree), PLUG_FILE, found)
    has_size = _inherited_method(cls, classes, "size") is not None
    return ClassSpec(path, cls.name, cls.lineno, env, keys is not None, has_size)


def _find_client(tree: ast.Module, path: Path, settings: Settings, found: ProblemList) -> ClassSpec | None:
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    candidates = [c for c in classes.values()
                  if any(b.endswith("Client") for b in _base_names(c)) or "connect" in _methods(c)]
    cls = _pick(candidates, settings.client_class, "client", CLIENT_FILE, found, "SDT-E110", "SDT-E111",
                "add a class that subclasses a sdt_build client, "
                "e.g. `from sdt_build.clients import LocalClient` and `class Laptop(LocalClient): ...`")
    if cls is None:
        return None
    connect = _inherited_method(cls, classes, "connect")
    if connect is not None:
        _check_one_argument(connect, "connect", "image", cls.name, found, "SDT-E116")
    return ClassSpec(path, cls.name, cls.lineno,
                     _env_declaration(cls, classes, _constants(tree), CLIENT_FILE, found))


def _positional(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.arg]:
    args = fn.args.posonlyargs + fn.args.args
    decorators = {d.id for d in fn.decorator_list if isinstance(d, ast.Name)}
    return args if "staticmethod" in decorators else args[1:]


def _required_args(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    positional = _positional(fn)
    required = positional[: len(positional) - len(fn.args.defaults)]
    required_kw = [a for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults) if d is None]
    return [a.arg for a in required + required_kw]


def _check_one_argument(fn, name: str, arg: str, owner: str, found: ProblemList, code: str) -> None:
    """``name`` must be a plain method taking exactly one argument (``arg``) besides self."""
    file = PLUG_FILE if code == "SDT-E106" else CLIENT_FILE
    wanted = f"def {name}(self, {arg})"
    if isinstance(fn, ast.AsyncFunctionDef):
        found.add(code, f"{owner}.{name} is async; sdt-build calls it as a plain function",
                  f"make it `{wanted}`", file=file, line=fn.lineno)
        return
    positional = _positional(fn)
    takes_one = bool(positional) or fn.args.vararg is not None
    if len(_required_args(fn)) > 1 or not takes_one:
        got = ", ".join(a.arg for a in positional) or "no argument"
        example = ": the key is one tuple, e.g. (site_id, year)" if arg == "key" else ""
        found.add(code, f"{owner}.{name} takes ({got}); sdt-build calls it with one {arg}",
                  f"make it `{wanted}`{example}", file=file, line=fn.lineno)


def _constants(tree: ast.Module) -> dict[str, Any]:
    """Module-level ``NAME = <literal>`` assignments, which env declarations may refer to."""
    found = {}
    for item in tree.body:
        if isinstance(item, ast.Assign) and len(item.targets) == 1 and isinstance(item.targets[0], ast.Name):
            try:
                found[item.targets[0].id] = ast.literal_eval(item.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                found.pop(item.targets[0].id, None)  # reassigned to something not literal
    return found


def _env_declaration(cls: ast.ClassDef, classes: dict[str, ast.ClassDef], constants: dict[str, Any],
                     file: str, found: ProblemList) -> tuple[EnvVar, ...]:
    """``env = [EnvVar("NAME", secret=True), "OTHER"]`` in the class (or an in-file base)."""
    for owner in _lineage(cls, classes):
        for item in owner.body:
            target = None
            if isinstance(item, ast.Assign) and len(item.targets) == 1:
                target = item.targets[0]
            elif isinstance(item, ast.AnnAssign):
                target = item.target
            if isinstance(target, ast.Name) and target.id == "env" and item.value is not None:
                return _literal_env(item.value, constants, file, found)
    return ()


def _literal_env(node: ast.expr, constants: dict[str, Any], file: str,
                 found: ProblemList) -> tuple[EnvVar, ...]:
    fix = ('write env = [EnvVar("NAME", required=True, secret=False), ...] with literal values '
           '(or module-level constants)')
    if not isinstance(node, (ast.List, ast.Tuple)):
        found.add("SDT-E115", "env must be a list of EnvVar(...) declarations", fix,
                  file=file, line=node.lineno)
        return ()
    declared = []
    for element in node.elts:
        try:
            if isinstance(element, ast.Constant) and isinstance(element.value, str):
                declared.append(EnvVar(element.value))
                continue
            if not (isinstance(element, ast.Call) and getattr(element.func, "id",
                                                              getattr(element.func, "attr", "")) == "EnvVar"):
                raise ValueError("not an EnvVar(...) call")
            args = [_literal(a, constants) for a in element.args]
            kwargs = {k.arg: _literal(k.value, constants) for k in element.keywords}
            var = EnvVar(*args, **kwargs)
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var.name):
                raise ValueError(f"{var.name!r} is not a valid variable name")
            declared.append(var)
        except (ValueError, TypeError, SyntaxError) as exc:
            found.add("SDT-E115", f"environment declaration cannot be read statically: {exc}", fix,
                      file=file, line=element.lineno)
    return tuple(declared)


def _literal(node: ast.expr, constants: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    try:
        return ast.literal_eval(node)
    except ValueError:  # its own message shows an AST object's repr, not the user's code
        raise ValueError(f"`{ast.unparse(node)}` is not a literal value") from None


def _imports(tree: ast.Module) -> list[tuple[str, int, bool]]:
    """Absolute imports (dotted name, line, optional) anywhere in the module.

    Optional: inside ``try: … except ImportError`` (a fallback exists) or ``if TYPE_CHECKING:``.
    """
    optional_lines: set[int] = set()
    for node in ast.walk(tree):
        guarded = []
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            guarded = node.body
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            guarded = node.body
        for statement in guarded:
            optional_lines.update(n.lineno for n in ast.walk(statement) if hasattr(n, "lineno"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend((a.name, node.lineno, node.lineno in optional_lines) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.extend((f"{node.module}.{a.name}", node.lineno, node.lineno in optional_lines)
                         for a in node.names)
    return names


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    caught = ast.unparse(handler.type)
    return any(name in caught for name in ("ImportError", "ModuleNotFoundError", "Exception"))


def _check_imports(tree: ast.Module, root: Path, file: str, lines: tuple[str, ...], python: str,
                   found: ProblemList) -> None:
    required = {canonicalize_name(name) for name in requirement_names(lines)}
    base = constraints.module_index(python)
    reported = set()
    for dotted, line, optional in _imports(tree):
        top = dotted.split(".")[0]
        if top in reported or top in sys.stdlib_module_names or top == "sdt_build" or top in base:
            continue
        if (root / f"{top}.py").exists() or (root / top / "__init__.py").exists() or (root / top).is_dir():
            continue
        if _provided_by(dotted, required):
            continue
        reported.add(top)
        suggestion = IMPORT_ALIASES.get(top, top.replace("_", "-"))
        found.add("SDT-E107", f"{file} imports {top}, which is not in SDT's image and not listed in "
                  "requirements.txt" + (" (the import has a fallback)" if optional else ""),
                  f"add `{suggestion}` to requirements.txt (or remove the import)", file=file, line=line,
                  severity="warning" if optional else "error")


def _provided_by(dotted: str, required: set[str]) -> bool:
    parts = dotted.split(".")
    for depth in range(len(parts), 0, -1):
        if canonicalize_name("-".join(parts[:depth])) in required:
            return True
    alias = IMPORT_ALIASES.get(parts[0])
    if alias and canonicalize_name(Requirement(alias).name) in required:
        return True
    try:
        from importlib.metadata import packages_distributions
        dists = packages_distributions().get(parts[0], [])
    except Exception:  # broken metadata on the host never blocks a check
        dists = []
    return any(canonicalize_name(d) in required for d in dists)


def requirement_names(lines: tuple[str, ...]) -> list[str]:
    """Distribution names the requirement lines ask for (name-based lines only)."""
    names = []
    for line in lines:
        if line.startswith("-"):
            match = re.search(r"#egg=([A-Za-z0-9_.\-]+)", line)
            if match:
                names.append(match.group(1))
            continue
        try:
            names.append(Requirement(line).name)
        except InvalidRequirement:
            continue
    return names


INVALID_LINES_SHOWN = 5  # per file: past these, one finding says how many more (it may not be a requirements file)


def _confined(path: Path, root: Path, name: str, found: ProblemList) -> bool:
    """Files sdt-build reads must lie in the folder: a link or include that leaves it is never read."""
    if inside(path, root):
        return True
    found.add("SDT-E125", f"{name} points outside the folder ({path.resolve()}); sdt-build reads only the "
              "folder's own files", "copy the file into the folder and refer to it there", file=name)
    return False


def _read_requirements(path: Path, root: Path, found: ProblemList, chain: tuple[Path, ...] = ()
                       ) -> tuple[str, ...]:
    """Logical requirement lines (comments, blanks and --hash options stripped, -r followed).

    Includes (``-r``) and constraint files (``-c``) must lie inside the folder, and an include
    loop is an error: neither is ever read from elsewhere or followed forever.
    """
    name = str(path.relative_to(root)) if chain else path.name
    if not _confined(path, root, name, found):
        return ()
    try:
        text = path.read_bytes().decode("utf-8-sig")  # pip accepts a UTF-8 BOM
    except (OSError, UnicodeDecodeError) as exc:
        found.add("SDT-E117", f"{name} cannot be read as UTF-8 text ({exc.__class__.__name__})",
                  f"save {name} as UTF-8", file=name)
        return ()
    chain = chain + (path.resolve(),)
    lines: list[str] = []
    invalid = 0
    for number, raw in _logical_lines(text):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        line = re.sub(r"\s--hash[= ]\S+", "", line).strip()
        if not line:
            continue
        option = FILE_OPTION.match(line)
        if option:
            target = _included(option.group(2), path, root, chain, name, number, found)
            if target is not None and option.group(1) in ("-r", "--requirement"):
                lines.extend(_read_requirements(target, root, found, chain))
            elif target is not None:
                lines.append(f"-c {target.relative_to(root.resolve())}")
            continue
        if line.startswith("-") or "://" in line or line.startswith((".", "/")):
            lines.append(line)  # options, editables, URLs and paths: judged by the resolve stage
            continue
        try:
            Requirement(line)
        except InvalidRequirement as exc:
            invalid += 1
            if invalid <= INVALID_LINES_SHOWN:
                found.add("SDT-E113", f"{name} line {number} is not a valid requirement: {raw.strip()[:120]!r}",
                          f"write it as `name`, `name==1.2` or `name>=1,<2` ({str(exc).splitlines()[0][:200]})",
                          file=name, line=number)
            continue
        lines.append(line)
    if invalid > INVALID_LINES_SHOWN:
        found.add("SDT-E113", f"{name} has {invalid - INVALID_LINES_SHOWN} more lines that are not requirements "
                  f"({invalid} in all)", f"check that {name} is a requirements file", file=name)
    return tuple(lines)


FILE_OPTION = re.compile(r"^(-r|--requirement|-c|--constraint)(?:[= ]\s*|(?=[^-\s]))(\S+)$")


def _included(include: str, path: Path, root: Path, chain: tuple[Path, ...], name: str, number: int,
              found: ProblemList) -> Path | None:
    """The file a ``-r``/``-c`` line names, when it may be read: inside the folder, present, no loop."""
    target = (path.parent / include).resolve()
    if not inside(target, root):
        found.add("SDT-E126", f"{name} line {number} includes {include}, which is outside the project folder",
                  "move the file into the folder (the build only sees the folder), or list its lines here",
                  file=name, line=number)
        return None
    if not target.is_file():
        found.add("SDT-E113", f"{name} line {number} includes {include}, which does not exist",
                  f"create {include} or remove the line", file=name, line=number)
        return None
    if target in chain:
        loop = " → ".join(str(p.relative_to(root.resolve())) for p in chain + (target,))
        found.add("SDT-E126", f"{name} line {number} includes {include} again: an include loop ({loop})",
                  "remove one of the -r lines that form the loop", file=name, line=number)
        return None
    return target


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(number of the first physical line, text) with backslash continuations joined."""
    logical: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 1
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending.append(raw[:-1])
            continue
        logical.append((start, " ".join(pending + [raw])))
        pending = []
    if pending:
        logical.append((start, " ".join(pending)))
    return logical


def _read_settings(root: Path, found: ProblemList) -> Settings:
    defaults = Settings(name=_image_name(root.name), python=_default_python())
    path = root / SETTINGS_FILE
    if not path.exists() or not _confined(path, root, SETTINGS_FILE, found):
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
    if "keys" in values:
        try:
            values["keys"] = tuple(validate_key(k) for k in values["keys"])
        except RunFailure as exc:
            found.add("SDT-E112", f"sdt.toml keys: {exc.cause}", exc.fix, file=SETTINGS_FILE)
            values.pop("keys")
    return Settings(**{**defaults.__dict__, **values})


def runtime_env(project: UserProject) -> dict[str, str]:
    """The declared environment variables that are set here: passed to containers at run time only."""
    return {var.name: var.value() for var in project.env if var.value() is not None}


def normalize_key(key: Any) -> tuple:
    """A key as the plug receives it: a tuple whose fields may be lists (``(13, [2011, 2012])``)."""
    if isinstance(key, tuple):
        return key
    if isinstance(key, list):
        return tuple(key)
    return (key,)


KEY_FIELD = (str, int, float, bool)


def validate_key(key: Any) -> tuple:
    """``key`` as a tuple, or RunFailure SDT-E516 when it cannot be one: a key is a value, or a
    non-empty list of values and lists of values (``"SITE"``, ``[13, [2011, 2012]]``)."""
    fields = normalize_key(key)
    valid = bool(fields) and all(
        isinstance(f, KEY_FIELD) or isinstance(f, (list, tuple)) and f and all(isinstance(v, KEY_FIELD) for v in f)
        for f in fields)
    if not valid:
        shown = json.dumps(key, default=repr)
        raise RunFailure("SDT-E516", f"{shown[:200]} is not a key: a key is a value or a list of values "
                           "(a field may be a list, as in [13, [2011, 2012]])",
                           'write keys like "SITE", ["SITE"] or [13, [2011, 2012]]')
    return fields


def _image_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("._-")
    return re.sub(r"[._-]{2,}", "-", name) or "sdt-project"


def _default_python() -> str:
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    return here if here in SUPPORTED_PYTHONS else "3.11"
