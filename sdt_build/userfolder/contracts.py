"""The plug and client contracts, checked statically (``ast``): the classes in dataplug.py and
client.py, their methods' shapes, the environment variables they declare, whether every
package dataplug.py imports is in SDT's image or requirements.txt, and that no file of the folder
would replace a module the workers import from elsewhere. Nothing of the user's code runs.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import importlib.util
import pkgutil
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from sdt_build import constraints
from sdt_build.requirements import requirement_names
from sdt_build.runtime.errors import ProblemList
from sdt_build.runtime.plug import SHADOW, EnvVar, everywhere, shadows
from sdt_build.userfiles import CLIENT_FILE, PLUG_FILE, FileSet, confined, left_out, read_source, undecodable
from sdt_build.userfolder.settings import Settings

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

@dataclass(frozen=True)
class ClassSpec:
    """A class found in one of the user's files."""

    file: Path
    name: str
    line: int
    env: tuple[EnvVar, ...] = ()
    has_keys: bool = False
    has_size: bool = False  # a size(key) estimate, for longest-first ordering


def parse(root: Path, name: str, found: ProblemList, missing_code: str,
           missing_fix: str) -> ast.Module | None:
    path = root / name
    if not path.is_file():
        found.add(missing_code, f"{name} is missing from {root}", missing_fix)
        return None
    if not confined(path, root, name, found):
        return None
    if undecodable(root, Path(name), found):
        return None
    try:
        return ast.parse(read_source(path), filename=name)
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


def find_plug(tree: ast.Module, path: Path, settings: Settings, found: ProblemList) -> ClassSpec | None:
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


def find_client(tree: ast.Module, path: Path, settings: Settings, found: ProblemList) -> ClassSpec | None:
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


def check_imports(tree: ast.Module, root: Path, file: str, lines: tuple[str, ...], python: str,
                   found: ProblemList) -> None:
    required = requirement_modules(requirement_names(lines), python)
    base = constraints.module_index(python)
    reported = set()
    for dotted, line, optional in _imports(tree):
        top = dotted.split(".")[0]
        if top in reported or top in sys.stdlib_module_names or top == "sdt_build" or top in base:
            continue
        if (root / f"{top}.py").exists() or (root / top / "__init__.py").exists() or (root / top).is_dir():
            continue
        if top in required or _provided_by(dotted, set(required.values())):
            continue
        reported.add(top)
        suggestion = IMPORT_ALIASES.get(top, top.replace("_", "-"))
        found.add("SDT-E107", f"{file} imports {top}, which is not in SDT's image and not listed in "
                  "requirements.txt" + (" (the import has a fallback)" if optional else ""),
                  f"add `{suggestion}` to requirements.txt (or remove the import)", file=file, line=line,
                  severity="warning" if optional else "error")


def _provided_by(dotted: str, required: set[str]) -> bool:
    """A namespace package's distribution named after the import (``google.cloud.storage``)."""
    parts = dotted.split(".")
    return any(canonicalize_name("-".join(parts[:depth])) in required for depth in range(len(parts), 0, -1))


def requirement_modules(required: Iterable[str], python: str) -> dict[str, str]:
    """The top-level modules the plug's requirements (canonical names) are known to provide, offline
    and before any lock (module → distribution): the name itself (``boto3``), the import names known
    to differ (``opencv-python`` → ``cv2``), SDT's metadata for a package of its set, and this
    machine's metadata for a distribution installed here."""
    required = set(required)
    aliases = {canonicalize_name(Requirement(dist).name): module for module, dist in IMPORT_ALIASES.items()}
    modules = {}
    for name in required:
        modules[name.replace("-", "_")] = name
        if name in aliases:
            modules[aliases[name]] = name
        for module in constraints.metadata(python).get(name, {}).get("modules", ()):
            modules[module] = name
    for module, dists in installed_here().items():
        modules.update({module: canonicalize_name(d) for d in dists if canonicalize_name(d) in required})
    return modules


@lru_cache(maxsize=1)
def installed_here() -> dict[str, list[str]]:
    """This machine's installed distributions by top-level module (read once: it walks every one)."""
    try:
        from importlib.metadata import packages_distributions
        return packages_distributions()
    except Exception:  # broken metadata on the host never blocks a check
        return {}


def importable(python: str, lines: tuple[str, ...]) -> dict[str, str]:
    """What the workers of the image import from outside the plug's folder (module → what it is):
    the plug's requirements, SDT's pinned set for ``python``, the standard library and sdt_build."""
    provided = {module: f"the package {module} ({dist} in requirements.txt)"
                for module, dist in requirement_modules(requirement_names(lines), python).items()}
    for dist, info in constraints.metadata(python).items():
        owner = "SDT itself" if dist == constraints.SDT_PACKAGE else f"{dist} {info['version']}, in SDT's pinned set"
        provided.update({module: f"the package {module} ({owner})" for module in info["modules"]})
    return {**provided, **everywhere()}


PUBLIC_MODULES = ("sdt_build", "sdt_build.clients")  # what a user's files import from sdt-build


@lru_cache(maxsize=None)
def module_names(module: str) -> tuple[frozenset[str], tuple[str, ...]] | None:
    """What ``from module import …`` can name (its module-level names and submodules) and its public
    names (``__all__``), read from its source without importing it; None when there is no such module."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    tree = ast.parse(Path(spec.origin).read_text("utf-8"))
    public: tuple[str, ...] = ()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            public = tuple(ast.literal_eval(node.value))
    names = _bound(tree) | set(public)
    names.update(m.name for m in pkgutil.iter_modules(spec.submodule_search_locations or ()))
    return frozenset(names), public


def _bound(tree: ast.Module) -> set[str]:
    """Names a module binds at its top level (in if/try/with blocks too); ``*`` when it star-imports."""
    names: set[str] = set()
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(a.asname or a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            names.update(_stored(node.targets))
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
            names.update(_stored([node.target]))
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            names.update(_stored([item.optional_vars for item in node.items if item.optional_vars]))
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        if not isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):  # their bodies are theirs
            for field in ("body", "orelse", "finalbody", "handlers"):
                todo.extend(getattr(node, field, []))
    return names


def _stored(targets: list[ast.expr]) -> set[str]:
    return {n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)}


def check_names(tree: ast.Module, file: str, found: ProblemList) -> None:
    """SDT-E130 for a name the file uses at its top level that is defined nowhere: a class's base, or
    a name imported from sdt_build that sdt_build does not have; with the nearest existing name."""
    public = {name: module for module in PUBLIC_MODULES for name in (module_names(module) or ((), ()))[1]}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "sdt_build":
            known = module_names(node.module)
            if known is None:
                close = difflib.get_close_matches(node.module, PUBLIC_MODULES, n=1)
                found.add("SDT-E130", f"{file} imports from {node.module}, which does not exist",
                          (f"did you mean {close[0]}? " if close else "") + "use one of sdt-build's modules for user "
                          f"files: {', '.join(PUBLIC_MODULES)}", file=file, line=node.lineno)
                continue
            for alias in node.names:
                if alias.name != "*" and alias.name not in known[0]:
                    found.add("SDT-E130", f"{file} imports {alias.name} from {node.module}, which has no such name",
                              _did_you_mean(alias.name, public, known[1]), file=file, line=node.lineno)
    bound = _bound(tree)
    if "*" in bound:
        return  # a star import may define anything
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                root = base
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id not in bound and not hasattr(builtins, root.id):
                    found.add("SDT-E130", f"class {node.name} in {file} subclasses {root.id}, which is defined "
                              "nowhere (not imported, not defined in the file)",
                              _did_you_mean(root.id, public, sorted(bound)), file=file, line=node.lineno)


def _did_you_mean(name: str, public: dict[str, str], nearby: Iterable[str]) -> str:
    """The nearest name among the file's own and sdt_build's public ones, and where it comes from."""
    close = difflib.get_close_matches(name, [*nearby, *public], n=1, cutoff=0.6)
    if not close:
        return f"define it, or import it; sdt_build's public names: {', '.join(public)}"
    if close[0] in public:
        return f"did you mean {close[0]}? (`from {public[close[0]]} import {close[0]}`)"
    return f"did you mean {close[0]}?"


def check_left_out(root: Path, files: FileSet, found: ProblemList) -> None:
    """SDT-E128 for each file the workers need that the folder's file rules leave out of the image
    and the workers: dataplug.py and the folder's modules it imports (and theirs)."""
    kept = set(files.files) | {link for link, _ in files.outside}  # a link leaving the folder: SDT-E125
    needed, todo = [], [Path(PLUG_FILE)]
    while todo:
        path = todo.pop(0)
        if path in needed or not (root / path).is_file():
            continue
        needed.append(path)
        try:
            tree = ast.parse(read_source(root / path))
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            continue  # named where it is read
        for dotted, _, _ in _imports(tree):
            top = dotted.split(".")[0]
            todo += [Path(f"{top}.py"), Path(top, "__init__.py")]
    for path in needed:
        if path not in kept:
            why, fix, where, line = left_out(root, path)
            found.add("SDT-E128", f"the workers import {path}, but {why}", fix, file=where, line=line)


def check_shadowing(files: FileSet, lines: tuple[str, ...], python: str, found: ProblemList) -> None:
    """SDT-E127 for each file of the folder that would replace a module the image's workers import."""
    for shadow in shadows(files.files, importable(python, lines)):
        found.add(SHADOW, shadow.cause, shadow.fix, file=shadow.file)
