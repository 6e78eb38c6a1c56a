"""Fixes to libraries SDT runs on: records (data) and the one function that applies them.

A record names the function it replaces, the fingerprint of the code it was made for, the
replacement, why, and where the upstream code is. ``apply`` replaces a function only where the
installed one is exactly that code (its source's fingerprint, not a version number), once per
process, and says what it applied and what it skipped, and why; ``apply(False)`` puts the
originals back. Workers apply them before their first key, the smoke probe before its pipeline
step; the run record, the smoke report and the report page list the outcome. Imported on workers:
standard library only (the replacements import what they fix when they run).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import threading
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Callable

APPLIED, SKIPPED, OFF = "applied", "skipped", "off"


@dataclass(frozen=True)
class UpstreamFix:
    """One fix: ``module.function`` of the distribution ``package``, replaced by ``replace(original)``
    where the original's source has one of ``fingerprints`` (each release whose code was proven to
    behave as the replacement does)."""

    name: str
    package: str
    module: str
    function: str
    fingerprints: tuple[str, ...]
    replace: Callable[[Callable], Callable]
    why: str
    upstream: str  # where the upstream code is


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
)

_lock = threading.Lock()
_originals: dict[str, Callable] = {}  # fix name → the function it replaced, while it is applied
_last: dict[tuple, tuple] = {}  # (enabled, fixes) → what the last call did, while nothing changed since


def apply(enabled: bool = True, fixes: tuple[UpstreamFix, ...] = FIXES) -> tuple[Outcome, ...]:
    """Apply every fix whose target is the code it was made for (or, with ``enabled`` False, put the
    originals back) and say what became of each. Cheap to call again (every key does): nothing is
    applied twice, and the same call as the last one returns its outcome."""
    with _lock:
        if (enabled, fixes) not in _last:
            _last.clear()
            _last[enabled, fixes] = tuple(_apply_one(fix, enabled) for fix in fixes)
        return _last[enabled, fixes]


def _apply_one(fix: UpstreamFix, enabled: bool) -> Outcome:
    def outcome(status: str, reason: str) -> Outcome:
        return Outcome(fix.name, fix.package, installed, status, reason, fix.upstream)

    try:
        installed = version(fix.package)
    except PackageNotFoundError:
        installed = None
    try:
        module = importlib.import_module(fix.module)
        current = getattr(module, fix.function)
    except (ImportError, AttributeError) as exc:
        return outcome(SKIPPED, f"{fix.module}.{fix.function} is not there ({type(exc).__name__}: {exc})")
    if not enabled:
        if fix.name in _originals:
            setattr(module, fix.function, _originals.pop(fix.name))
        return outcome(OFF, "turned off (upstream_fixes = false)")
    if fix.name in _originals:
        return outcome(APPLIED, fix.why)
    try:
        found = fingerprint(current)
    except (OSError, TypeError) as exc:
        return outcome(SKIPPED, f"the source of {fix.module}.{fix.function} cannot be read ({exc}), so it cannot "
                                "be shown to be the code this fix was made for")
    if found not in fix.fingerprints:
        return outcome(SKIPPED, f"{fix.module}.{fix.function} in {fix.package} {installed} is not the code this fix "
                                f"was made for (fingerprint {found}, known {', '.join(fix.fingerprints)}): left as "
                                "it is")
    _originals[fix.name] = current
    setattr(module, fix.function, fix.replace(current))
    return outcome(APPLIED, fix.why)
