"""Fixes to libraries SDT runs on: records (data) and the one function that applies them.

A record names what it changes, the fingerprint of the code it was made for, why, and where the
upstream code is. Three kinds: ``UpstreamFix`` replaces a function; ``DeferredLoad`` makes a module
load its data files on first use instead of at import; ``DefaultChoice`` changes a library's default
to another of its own choices. ``apply`` changes code only where the
installed code is exactly what the fix was made for (its source's fingerprint, not a version
number), once per process, and says what it applied and what it skipped, and why;
``apply(False)`` puts the originals back. Workers apply them before their first key, the smoke
probe before its first import of SDT; the run record, the smoke report and the report page list
the outcome. Imported on workers: standard library only (the replacements import what they fix
when they run).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
import threading
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path
from typing import Callable

APPLIED, SKIPPED, OFF = "applied", "skipped", "off"


@dataclass(frozen=True)
class Outcome:
    """What became of one fix in this process."""

    name: str
    package: str
    version: str | None
    status: str  # applied | skipped | off
    reason: str
    upstream: str

    def to_dict(self) -> dict:
        return asdict(self)


def fingerprint(source: str | Callable) -> str:
    """The digest of a function's source (or of its text) with its whitespace normalised: the same
    for every Python and every install of one release's code."""
    text = source if isinstance(source, str) else inspect.getsource(source)
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:16]


def _installed(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


@dataclass(frozen=True)
class Fix:
    """What every fix names: itself, the distribution ``package`` and the ``module`` it changes, the
    fingerprints of the code it was proven on, why, and where the upstream code is."""

    name: str
    package: str
    module: str
    fingerprints: tuple[str, ...]
    why: str
    upstream: str

    def _unknown(self, what: str, source: str, installed: str | None) -> str | None:
        """Why ``source`` (the text of ``what``) is not the code this fix was made for (None: it is)."""
        found = fingerprint(source)
        if found in self.fingerprints:
            return None
        return (f"{what} in {self.package} {installed} is not the code this fix was made for (fingerprint "
                f"{found}, known {', '.join(self.fingerprints)}): left as it is")


@dataclass(frozen=True)
class UpstreamFix(Fix):
    """One fix: ``module.function`` of the distribution ``package``, replaced by ``replace(original)``
    where the original's source has one of ``fingerprints`` (each release whose code was proven to
    behave as the replacement does)."""

    function: str
    replace: Callable[[Callable], Callable]

    def apply(self, enabled: bool) -> Outcome:
        return _set_attribute(self, self.function, enabled, self._unproven, self.replace)

    def _unproven(self, current: Callable, installed: str | None) -> str | None:
        """Why ``current`` is not shown to be the code this fix was made for (None: it is)."""
        try:
            source = inspect.getsource(current)
        except (OSError, TypeError) as exc:
            return (f"the source of {self.module}.{self.function} cannot be read ({exc}), so it cannot be shown "
                    "to be the code this fix was made for")
        return self._unknown(f"{self.module}.{self.function}", source, installed)


@dataclass(frozen=True)
class DeferredLoad(Fix):
    """One fix: the top-level assignments of ``module`` to ``names`` (data files it reads at import)
    run on first use instead: when a function of the module that reads one of them is first called,
    or the module is asked for one. Made where the module's whole source has one of
    ``fingerprints``, by a loader for that one file; it must be applied before the module is first
    imported, and anywhere the module's top level reads one of the names it is not made at all."""

    names: tuple[str, ...]

    def apply(self, enabled: bool) -> Outcome:
        installed = _installed(self.package)
        outcome = functools.partial(Outcome, self.name, self.package, installed, upstream=self.upstream)
        loaded = sys.modules.get(self.module)
        deferred = getattr(loaded, _LOAD, None)
        if not enabled:
            _DeferringFinder.loads.pop(self.module, None)
            if deferred is not None:  # already imported: everything loaded now, as upstream does at import
                deferred()
            return outcome(OFF, "turned off (upstream_fixes = false)")
        if deferred is not None or (loaded is None and self.module in _DeferringFinder.loads):
            return outcome(APPLIED, self.why)
        if loaded is not None:
            return outcome(SKIPPED, f"{self.module} was imported before the fix could apply: it loaded its data "
                                    "at import, as upstream does")
        path = _module_file(self.package, self.module)
        if path is None:
            return outcome(SKIPPED, f"{self.module} is not in the installed {self.package} ({installed})")
        source = path.read_text(encoding="utf-8", errors="replace")
        if (unknown := self._unknown(self.module, source, installed)) is not None:
            return outcome(SKIPPED, unknown)
        if isinstance(plan := self.plan(source, str(path)), str):
            return outcome(SKIPPED, f"{self.module}: {plan}; left as it is")
        _DeferringFinder.loads[self.module] = (self, path)
        if _DeferringFinder not in sys.meta_path:
            sys.meta_path.insert(0, _DeferringFinder)
        return outcome(APPLIED, self.why)

    def plan(self, source: str, path: str) -> tuple[list, list] | str:
        """The module's top-level statements split into those run at import and the deferred
        assignments, or why it cannot be deferred."""
        try:
            tree = ast.parse(source, path)
        except SyntaxError as exc:
            return f"its source does not parse ({exc})"
        names = set(self.names)
        later = [node for node in tree.body if isinstance(node, ast.Assign) and
                 all(isinstance(t, ast.Name) and t.id in names for t in node.targets)]
        now = [node for node in tree.body if node not in later]
        if {t.id for node in later for t in node.targets} != names:
            return f"not every one of {', '.join(sorted(names))} is a plain top-level assignment"
        if "__getattr__" in {node.name for node in now if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}:
            return "it has a __getattr__ of its own"
        if read := set().union(*(_read_at_import(node) for node in now)) & names:
            return f"its top level reads {', '.join(sorted(read))} at import"
        return now, later


@dataclass(frozen=True)
class DefaultChoice(Fix):
    """One fix: the default ``setting`` of ``module`` (in the distribution ``package``) made ``value``,
    another of the library's own choices, where the code that choice runs (the whole source of each
    module of ``code``, together) has one of ``fingerprints``: each release whose code was proven to
    give the same results as the default's. Where the user chose through ``env``, theirs is kept."""

    setting: str
    value: object
    code: tuple[str, ...]
    env: str

    def apply(self, enabled: bool) -> Outcome:
        return _set_attribute(self, self.setting, enabled, self._unproven, lambda current: self.value)

    def _unproven(self, current: object, installed: str | None) -> str | None:
        """Why this choice is not to be made here (None: it is)."""
        if self.env in os.environ:
            return f"{self.env} is set (to {os.environ[self.env]!r}): your choice is kept"
        files = [_module_file(self.package, name) for name in self.code]
        if None in files:
            return f"{', '.join(self.code)} is not all in the installed {self.package} ({installed})"
        return self._unknown(", ".join(self.code), "\n".join(path.read_text(encoding="utf-8", errors="replace")
                                                          for path in files), installed)


def _set_attribute(fix: Fix, attribute: str, enabled: bool,
                   unproven: Callable[[object, str | None], str | None],
                   value: Callable[[object], object]) -> Outcome:
    """``fix.module``'s ``attribute`` set to ``value(original)`` where ``unproven`` finds no reason
    not to, once; with ``enabled`` False, the original put back."""
    installed = _installed(fix.package)
    outcome = functools.partial(Outcome, fix.name, fix.package, installed, upstream=fix.upstream)
    try:
        module = importlib.import_module(fix.module)
        current = getattr(module, attribute)
    except Exception as exc:  # not installed, or an install broken enough that importing it fails
        return outcome(SKIPPED, f"{fix.module}.{attribute} is not there ({type(exc).__name__}: {exc})")
    if not enabled:
        if fix.name in _originals:
            setattr(module, attribute, _originals.pop(fix.name))
        return outcome(OFF, "turned off (upstream_fixes = false)")
    if fix.name in _originals:
        return outcome(APPLIED, fix.why)
    reason = unproven(current, installed)
    if reason is not None:
        return outcome(SKIPPED, reason)
    _originals[fix.name] = current
    setattr(module, attribute, value(current))
    return outcome(APPLIED, fix.why)


def _module_file(package: str, module: str) -> Path | None:
    """A module's file, found from its distribution's own file list (finding it through the import
    system would import its package, and so the module itself)."""
    relative = module.replace(".", "/") + ".py"
    try:
        files = distribution(package).files or []
    except PackageNotFoundError:
        return None
    for file in files:
        if str(file).replace("\\", "/") == relative:
            return Path(file.locate())
    return None


_LOAD = "__sdt_build_load__"  # the attribute a deferred module keeps its loading function in


class _DeferringFinder:
    """Finds the modules of applied ``DeferredLoad`` fixes at their proven file, for ``_DeferringLoader``."""

    loads: dict[str, tuple[DeferredLoad, Path]] = {}

    @classmethod
    def find_spec(cls, fullname: str, path=None, target=None):
        if fullname not in cls.loads:
            return None
        fix, source = cls.loads[fullname]
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None or Path(spec.origin).resolve() != source.resolve():
            return spec
        spec.loader = _DeferringLoader(fullname, spec.origin, fix)
        return spec


class _DeferringLoader(importlib.machinery.SourceFileLoader):
    """Runs the module without the deferred assignments, which run, in their order, on first use."""

    def __init__(self, fullname: str, path: str, fix: DeferredLoad):
        super().__init__(fullname, path)
        self.fix = fix

    def exec_module(self, module) -> None:
        source = importlib.util.decode_source(self.get_data(self.path))
        plan = self.fix.plan(source, self.path) if fingerprint(source) in self.fix.fingerprints else None
        if not isinstance(plan, tuple):  # changed since it was applied: as upstream does
            return super().exec_module(module)
        now, later = plan
        names = set(self.fix.names)
        exec(compile(ast.Module(now, type_ignores=[]), self.path, "exec"), module.__dict__)
        load = _once(compile(ast.Module(later, type_ignores=[]), self.path, "exec"), module.__dict__)

        def __getattr__(name: str):
            if name in names:
                load()
                return module.__dict__[name]
            raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")

        for owner in [module, *(v for v in vars(module).values()
                                if isinstance(v, type) and v.__module__ == module.__name__)]:
            for attribute, value in list(vars(owner).items()):
                wrapped = _loading_first(value, names, load, module.__name__)
                if wrapped is not value:
                    setattr(owner, attribute, wrapped)
        module.__getattr__ = __getattr__
        setattr(module, _LOAD, load)


def _read_at_import(node: ast.AST) -> set[str]:
    """The names a top-level statement reads when the module runs (not inside function bodies)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        inside = node.args.defaults + node.args.kw_defaults + getattr(node, "decorator_list", [])
        return set().union(*(_read_at_import(n) for n in inside if n is not None))
    read = {node.id} if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) else set()
    return read.union(*(_read_at_import(child) for child in ast.iter_child_nodes(node)))


def _once(code, namespace: dict) -> Callable[[], None]:
    lock = threading.Lock()
    done: list[bool] = []

    def load() -> None:
        with lock:
            if not done:
                exec(code, namespace)
                done.append(True)

    return load


def _reads(code, names: set[str]) -> bool:
    """Whether a code object (or one nested in it) names one of ``names``."""
    return bool(names & set(code.co_names)) or any(_reads(c, names) for c in code.co_consts
                                                   if hasattr(c, "co_names"))


def _loading_first(value, names: set[str], load: Callable[[], None], module: str):
    """``value`` (a function, or a class's method, static or class method or property of
    ``module``) made to ``load()`` before it runs, if its code reads one of ``names``."""
    if isinstance(value, (staticmethod, classmethod)):
        inner = _loading_first(value.__func__, names, load, module)
        return value if inner is value.__func__ else type(value)(inner)
    if isinstance(value, property):
        parts = [_loading_first(f, names, load, module) if f else f for f in (value.fget, value.fset, value.fdel)]
        return value if parts == [value.fget, value.fset, value.fdel] else property(*parts, doc=value.__doc__)
    code = getattr(value, "__code__", None) or getattr(getattr(value, "__wrapped__", None), "__code__", None)
    if code is None or getattr(value, "__module__", None) != module or not _reads(code, names):
        return value  # (a decorated function is found by the code it wraps)

    @functools.wraps(value)
    def call(*args, **kwargs):
        load()
        return value(*args, **kwargs)

    return call


def _sparse_is_diagonal(original: Callable) -> Callable:
    """cvxpy's ``is_diagonal`` without the dense copy: the same sparse subtraction (``A - diag(A)``),
    then ``np.allclose(…, 0)`` over the result's stored entries instead of over its dense array,
    whose other entries are zeros. The same answer, NaN, dtype and error for every input (scipy's
    own arithmetic does the work in both); anything not sparse goes to the original."""

    def is_diagonal(A):
        import numpy as np
        import scipy.sparse as sp

        if not sp.issparse(A):
            return original(A)
        stored = (A - sp.diags_array(A.diagonal())).tocoo()
        stored.sum_duplicates()
        return np.allclose(stored.data, 0)

    is_diagonal.__wrapped__ = original
    return is_diagonal


REMEMBERED_SOLVES = 16  # per thread: a key's repeats come close together (one weight or threshold search)


def _solved_once(original: Callable) -> Callable:
    """``original`` (one of SDT's signal decompositions: a fresh convex problem built and solved from
    its arguments) that answers a call identical to one of this thread's recent calls (every array
    and numpy number the same dtype, shape and bytes; every other argument the same value) with a
    copy of that call's answer instead of solving the same problem again. Calls with other kinds of arguments,
    ``return_all`` (the answer holds the problem) or ``verbose`` (the solver's output is wanted)
    go to the original."""
    import copy
    from collections import OrderedDict

    signature = inspect.signature(original)
    recent = threading.local()

    def solve(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return original(*args, **kwargs)
        bound.apply_defaults()
        if bound.arguments.get("return_all") or bound.arguments.get("verbose"):
            return original(*args, **kwargs)
        call = _call_key(bound.arguments)
        if call is None:
            return original(*args, **kwargs)
        answers = recent.__dict__.setdefault("answers", OrderedDict())
        if call in answers:
            answers.move_to_end(call)
            return copy.deepcopy(answers[call])
        answer = original(*args, **kwargs)
        answers[call] = copy.deepcopy(answer)
        while len(answers) > REMEMBERED_SOLVES:
            answers.popitem(last=False)
        return answer

    return functools.wraps(original)(solve)


def _call_key(arguments: dict) -> tuple | None:
    """A call's arguments as a hashable key, or None when one is of a kind not compared here."""
    import numpy as np

    parts = []
    for name, value in arguments.items():
        if isinstance(value, (np.ndarray, np.generic)) and not value.dtype.hasobject:  # arrays, numpy scalars
            part = ("numpy", value.dtype.str, np.shape(value), hashlib.sha256(value.tobytes()).hexdigest())
        elif value is None or type(value) in (bool, int, float, str):
            part = (type(value).__name__, repr(value))
        else:
            return None
        parts.append((name, part))
    return tuple(parts)


FIXES = (
    UpstreamFix(
        name="cvxpy-sparse-is-diagonal",
        package="cvxpy",
        module="cvxpy.utilities.linalg",
        function="is_diagonal",
        fingerprints=("c6f9c918fa85b78e",  # cvxpy 1.9.3 (SDT's set on Python 3.11 and 3.12)
                      "5d069e8b05f995c1"),  # cvxpy 1.7.5 (on Python 3.10): the same code, scipy.sparse as spar
        replace=_sparse_is_diagonal,
        why="SDT's clipping check asks cvxpy whether a 24,998 × 24,998 sparse constant is PSD; "
            "is_diagonal makes it dense (~5 GB, allocated, filled and compared with 0) to answer what "
            "its stored off-diagonal entries already tell: ~9× the time and memory of a site",
        upstream="is_diagonal in cvxpy/utilities/linalg.py "
                 "(https://github.com/cvxpy/cvxpy/blob/v1.9.3/cvxpy/utilities/linalg.py)"),
    DeferredLoad(
        name="sdt-shade-data-on-first-use",
        package="solar-data-tools",
        module="solardatatools.algorithms.shade",
        names=("BASIS", "Q", "Qr", "LAMBD", "LAMBDr", "MU", "DATA_CORPUS"),
        fingerprints=("631f96e2738e702a",),  # solar-data-tools 2.1.5 (SDT's set on Python 3.10 to 3.12)
        why="importing solardatatools reads the shade analysis's data files (a 75 MB zipped corpus and "
            "~1.8 MB of text) at import, ~1 s and ~440 MiB in every process, for ShadeAnalysis, "
            "which run_pipeline never calls: they are read when ShadeAnalysis first needs them",
        upstream="the module level of solardatatools/algorithms/shade.py "
                 "(https://github.com/slacgismo/solar-data-tools/blob/v2.1.5/solardatatools/algorithms/shade.py)"),
    *(UpstreamFix(name=name, package="solar-data-tools", module="solardatatools.signal_decompositions",
                  function=function, fingerprints=(proven,), replace=_solved_once, why=why,
                  upstream=f"{caller} (https://github.com/slacgismo/solar-data-tools/blob/v2.1.5/{source})")
      for name, function, proven, why, caller, source in (  # fingerprints: solar-data-tools 2.1.5
          ("sdt-quantile-fit-solved-once", "_osd_tl1_l2d2p365", "1876c5f4cd327d8a",
           "the sunrise/sunset search fits the same seasonal quantile problem again for every threshold that "
           "finds the same sunrise and sunset times (57 of 658 solves over 14 fleet sites); an identical call "
           "gets the first answer",
           "_osd_tl1_l2d2p365 in solardatatools/_osd_signal_decompositions.py, called by run_optimizer in "
           "solardatatools/algorithms/sunrise_sunset_estimation.py", "solardatatools/_osd_signal_decompositions.py"),
          ("sdt-capacity-fit-solved-once", "_cvx_l1_pwc_smoothper_trend", "ca21ecd3f9acae19",
           "capacity_clustering solves its chosen weight's problem a second time after the weight search has "
           "solved it (its training mask is the whole filter): one of its 14 solves, the largest step of a "
           "pipeline; an identical call gets the first answer",
           "CapacityChange.run in solardatatools/algorithms/capacity_change.py",
           "solardatatools/algorithms/capacity_change.py"))),
    DefaultChoice(
        name="cvxpy-coo-canon-backend",
        package="cvxpy",
        module="cvxpy.settings",
        setting="DEFAULT_CANON_BACKEND",
        value="COO",
        code=("cvxpy.lin_ops.backends.coo_backend", "cvxpy.lin_ops.backends.base"),
        fingerprints=("5c227f6104cef819",),  # cvxpy 1.9.3 (SDT's set on Python 3.11 and 3.12)
        env="CVXPY_DEFAULT_CANON_BACKEND",
        why="cvxpy builds each problem's matrices with its C++ backend unless told otherwise; its own COO "
            "backend builds the same matrices, byte for byte, for SDT's problems in less time (the "
            "compile is about a quarter of a site)",
        upstream="get_problem_matrix in cvxpy/cvxcore/python/canonInterface.py and cvxpy/lin_ops/backends/"
                 "coo_backend.py (https://github.com/cvxpy/cvxpy/blob/v1.9.3/cvxpy/lin_ops/backends/coo_backend.py)"),
)


_lock = threading.Lock()
_originals: dict[str, Callable] = {}  # fix name → the function it replaced, while it is applied
_last: dict[tuple, tuple] = {}  # (enabled, fixes) → what the last call did, while nothing changed since


def apply(enabled: bool = True, fixes: tuple[Fix, ...] = FIXES) -> tuple[Outcome, ...]:
    """Apply every fix whose target is the code it was made for (or, with ``enabled`` False, put the
    originals back) and say what became of each. Cheap to call again (every key does): nothing is
    applied twice, and the same call as the last one returns its outcome."""
    with _lock:
        if (enabled, fixes) not in _last:
            _last.clear()
            _last[enabled, fixes] = tuple(fix.apply(enabled) for fix in fixes)
        return _last[enabled, fixes]
