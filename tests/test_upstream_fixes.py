"""The upstream fixes are safe by construction: each replaces only the code it was made for, and its
answer equals the original's on generated inputs (property tests), for every release it names."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdt_build.runtime import upstream_fixes
from sdt_build.runtime.task import PEAK_MEMORY, MEMORY_AFTER
from sdt_build.runtime.upstream_fixes import (APPLIED, FIXES, OFF, SKIPPED, DefaultChoice, DeferredLoad, UpstreamFix,
                                              fingerprint)

IS_DIAGONAL = next(fix for fix in FIXES if fix.name == "cvxpy-sparse-is-diagonal")
SHADE_DATA = next(fix for fix in FIXES if fix.name == "sdt-shade-data-on-first-use")
COO_BACKEND = next(fix for fix in FIXES if fix.name == "cvxpy-coo-canon-backend")
# cvxpy 1.7.5's is_diagonal, as its wheel has it (cvxpy/utilities/linalg.py): SDT's set on Python 3.10
CVXPY_1_7_5 = textwrap.dedent('''\
    def is_diagonal(A):
        if spar.issparse(A):
            off_diagonal_elements = A - spar.diags_array(A.diagonal())
            off_diagonal_elements = off_diagonal_elements.toarray()
        elif isinstance(A, np.ndarray):
            off_diagonal_elements = A - np.diag(np.diag(A))
        else:
            raise ValueError("Unsupported matrix type.")

        return np.allclose(off_diagonal_elements, 0)
    ''')


def _installed():
    from cvxpy.utilities import linalg

    upstream_fixes.apply(False)
    return linalg.is_diagonal


def _release_1_7_5():
    namespace = {"np": np, "spar": sp}
    exec(CVXPY_1_7_5, namespace)
    return namespace["is_diagonal"]


ORIGINALS = {"installed": _installed, "cvxpy 1.7.5": _release_1_7_5}

BOUNDARY = [0.0, -0.0, 1e-8, -1e-8, 1.0000001e-8, 9.999999e-9, 1e-300, 5e-324, 1.5, -2.0, 1e6]
SPECIAL = [np.nan, np.inf, -np.inf]
FORMATS = ["csr", "csc", "coo", "dia", "lil", "dok", "bsr"]


@st.composite
def matrices(draw):
    """A sparse matrix (array or matrix class, any format) or a dense array: values at allclose's
    boundary, NaN and inf, explicit stored zeros, duplicate entries, empty and 1×1 shapes."""
    n = draw(st.integers(0, 6))
    m = n if draw(st.integers(0, 9)) else draw(st.integers(0, 6))  # mostly square
    values = st.sampled_from(BOUNDARY + SPECIAL) if draw(st.booleans()) else st.sampled_from(BOUNDARY)
    count = draw(st.integers(0, 2 * max(n * m, 1))) if n and m else 0
    rows = draw(st.lists(st.integers(0, max(n - 1, 0)), min_size=count, max_size=count))
    cols = draw(st.lists(st.integers(0, max(m - 1, 0)), min_size=count, max_size=count))
    data = draw(st.lists(values, min_size=count, max_size=count))
    if draw(st.booleans()):  # only the diagonal: what a diagonal answer needs
        cols = rows = [min(r, m - 1) for r in rows] if m else rows
    dtype = draw(st.sampled_from([np.float64, np.float32, np.complex128, np.int64]))
    if np.dtype(dtype).kind == "i":
        data = [int(round(d)) if np.isfinite(d) else 0 for d in data]
    coo = sp.coo_array((np.array(data, dtype=dtype), (np.array(rows, dtype=int), np.array(cols, dtype=int))),
                       shape=(n, m))
    kind = draw(st.sampled_from(["dense"] + FORMATS))
    if kind == "dense":
        return coo.toarray()
    matrix = coo if kind == "coo" and draw(st.booleans()) else coo.asformat(kind)  # coo keeps duplicates
    return sp.coo_matrix(matrix).asformat(kind) if draw(st.booleans()) else matrix


def _answer(function, A):
    try:
        return ("value", bool(function(A)))
    except Exception as exc:  # the original's errors must be the replacement's too
        return ("raises", type(exc).__name__)


@pytest.mark.parametrize("release", sorted(ORIGINALS))
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(A=matrices())
def test_the_sparse_is_diagonal_answers_as_the_original(release, A):
    original = ORIGINALS[release]()
    replaced = IS_DIAGONAL.replace(original)
    before = A.copy()
    assert _answer(replaced, A) == _answer(original, A)
    if sp.issparse(A):  # and it changes nothing of the matrix it is given
        assert type(A) is type(before) and A.format == before.format
        assert np.array_equal(A.toarray(), before.toarray(), equal_nan=True)


def test_the_boundary_cases_by_name():
    """The cases the properties must cover, each written out."""
    original = _installed()
    replaced = IS_DIAGONAL.replace(original)
    cases = {
        "1x1": sp.csr_array([[3.0]]), "empty": sp.csr_array((0, 0)), "identity": sp.identity(5, format="dia"),
        "tiny off-diagonal": sp.csr_array([[1.0, 1e-8], [0.0, 1.0]]),
        "just over": sp.csr_array([[1.0, 1.0000001e-8], [0.0, 1.0]]),
        "stored zero": sp.csr_array((np.array([1.0, 0.0, 2.0]), (np.array([0, 0, 1]), np.array([0, 1, 1]))),
                                    shape=(2, 2)),
        "nan off": sp.coo_array([[1.0, np.nan], [0.0, 1.0]]), "inf diag": sp.coo_array([[np.inf, 0.0], [0.0, 1.0]]),
        "duplicates that cancel": sp.coo_array((np.array([1.0, -1.0, 2.0]), (np.array([0, 0, 1]), np.array([1, 1, 1]))),
                                               shape=(2, 2)),
        "matrix class": sp.csc_matrix(np.eye(3)), "dense": np.eye(3), "non-square": sp.csr_array(np.ones((2, 3))),
    }
    for name, A in cases.items():
        assert _answer(replaced, A) == _answer(original, A), name


def test_each_named_release_is_the_code_its_fingerprint_says():
    from cvxpy.utilities import linalg

    assert fingerprint(CVXPY_1_7_5) in IS_DIAGONAL.fingerprints
    assert fingerprint(_installed()) in IS_DIAGONAL.fingerprints
    assert upstream_fixes.apply()[0].status == APPLIED and linalg.is_diagonal is not _installed()


SOLVED_ONCE = [fix for fix in FIXES if getattr(fix, "replace", None) is upstream_fixes._solved_once]


def _counted(original):
    calls = []

    def solve(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    solve.__signature__ = __import__("inspect").signature(original)
    return solve, calls


def _days(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 6 + np.sin(2 * np.pi * t / 365.2425) + 0.1 * rng.standard_normal(n)


@pytest.mark.parametrize("fix", SOLVED_ONCE, ids=lambda fix: fix.name)
def test_an_identical_solve_gets_a_copy_of_the_first_answer_and_nothing_else_does(fix):
    import importlib

    upstream_fixes.apply(False)
    original = getattr(importlib.import_module(fix.module), fix.function)
    assert fingerprint(original) in fix.fingerprints
    counted, calls = _counted(original)
    replaced = fix.replace(counted)
    signal, mask = _days(200, 1), np.ones(200, dtype=bool)
    mask[::7] = False
    first = replaced(signal, mask)
    again = replaced(signal.copy(), mask.copy())  # equal content, other objects
    assert len(calls) == 1
    expected = original(signal, mask)  # the original, solving again: the same answer, bit for bit
    for answer in (first, again):
        for got, want in zip(np.atleast_1d(answer) if isinstance(answer, np.ndarray) else answer,
                             np.atleast_1d(expected) if isinstance(expected, np.ndarray) else expected):
            assert np.array_equal(got, want, equal_nan=True)
    (again if isinstance(again, np.ndarray) else again[0])[:] = 0  # a caller changing its answer ...
    third = replaced(signal, mask)
    assert np.array_equal(third if isinstance(third, np.ndarray) else third[0],
                          first if isinstance(first, np.ndarray) else first[0])  # ... changes no later one
    other = mask.copy()
    other[3] = False
    replaced(signal, other)  # one entry of one argument differs: solved
    replaced(signal, mask, **({"tau": 0.5} if "tl1" in fix.function else {"w3": 2}))  # another setting
    replaced(signal.astype(np.float32), mask)  # same values, another dtype
    replaced(signal, mask, verbose=True)  # the solver's output is wanted
    weight = _weight(fix)
    for _ in range(2):  # numpy's numbers (SDT's weight search passes them) are compared by dtype and bytes
        replaced(signal, mask, **{weight: np.float64(_DEFAULTS[weight])})
    assert len(calls) == 6
    replaced(signal, mask, **{weight: np.float32(_DEFAULTS[weight])})  # another dtype: solved
    replaced(signal, pd.Series(mask))  # an argument of a kind not compared: solved
    assert len(calls) == 8


_DEFAULTS = {"tau": 0.75, "w2": 2e1}


def _weight(fix) -> str:
    return "tau" if "tl1" in fix.function else "w2"


def test_other_code_is_left_alone_and_off_puts_the_original_back():
    from cvxpy.utilities import linalg

    original = _installed()
    changed = UpstreamFix(**{**IS_DIAGONAL.__dict__, "name": "cvxpy-other", "fingerprints": ("0" * 16,)})
    (outcome,) = upstream_fixes.apply(fixes=(changed,))
    assert outcome.status == SKIPPED and "not the code this fix was made for" in outcome.reason
    assert linalg.is_diagonal is original
    missing = UpstreamFix(**{**IS_DIAGONAL.__dict__, "name": "gone", "module": "cvxpy.no_such_module"})
    assert upstream_fixes.apply(fixes=(missing,))[0].status == SKIPPED
    assert upstream_fixes.apply()[0].status == APPLIED and linalg.is_diagonal is not original
    assert upstream_fixes.apply()[0].status == APPLIED  # again: nothing applied twice
    assert linalg.is_diagonal.__wrapped__ is original
    assert upstream_fixes.apply(False)[0].status == OFF and linalg.is_diagonal is original


def _solver_inputs(monkeypatch, key: tuple) -> list[str]:
    """The digest of every problem a pipeline hands Clarabel (P, c, A, b and the cones), in order."""
    import hashlib

    from conftest import EXAMPLES
    from cvxpy.reductions.solvers.conic_solvers.clarabel_conif import CLARABEL
    from solardatatools import DataHandler

    seen = []
    solve = CLARABEL.solve_via_data

    def observed(self, data, *args, **kwargs):
        digest = hashlib.sha256(repr(data["dims"]).encode())
        for name in ("P", "c", "A", "b"):
            value = data.get(name)
            if value is not None and sp.issparse(value):
                value = sp.csc_array(value)
                value.sort_indices()
                parts = (value.shape, value.data, value.indices, value.indptr)
            else:
                parts = (np.shape(value), np.ascontiguousarray(value))
            for part in parts:
                digest.update(part.tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
        seen.append(digest.hexdigest())
        return solve(self, data, *args, **kwargs)

    spec = importlib.util.spec_from_file_location("synthetic_plug", EXAMPLES / "synthetic" / "dataplug.py")
    plug = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plug)
    with monkeypatch.context() as patched:
        patched.setattr(CLARABEL, "solve_via_data", observed)
        DataHandler(plug.SyntheticPV().get_data(key)).run_pipeline(verbose=False, fix_shifts=True)
    return seen


@pytest.mark.parametrize("key", [(5, 120), (13, 400)], ids=["capacity-change", "time-shift"])
def test_the_coo_backend_hands_the_solver_the_same_problems_byte_for_byte(monkeypatch, key):
    import cvxpy.settings

    upstream_fixes.apply(False)
    monkeypatch.delenv(COO_BACKEND.env, raising=False)
    try:
        default = _solver_inputs(monkeypatch, key)
        assert upstream_fixes.apply(fixes=(COO_BACKEND,))[0].status == APPLIED
        assert cvxpy.settings.DEFAULT_CANON_BACKEND == "COO"
        chosen = _solver_inputs(monkeypatch, key)
    finally:
        upstream_fixes.apply(False)
    assert cvxpy.settings.DEFAULT_CANON_BACKEND == "CPP"
    assert len(default) > 20 and chosen == default


def test_a_default_choice_keeps_the_users_own_and_leaves_other_code_alone(monkeypatch):
    import cvxpy.settings

    upstream_fixes.apply(False)
    monkeypatch.setenv(COO_BACKEND.env, "SCIPY")
    (outcome,) = upstream_fixes.apply(fixes=(COO_BACKEND,))
    assert outcome.status == SKIPPED and "CVXPY_DEFAULT_CANON_BACKEND is set (to 'SCIPY')" in outcome.reason
    assert cvxpy.settings.DEFAULT_CANON_BACKEND == "CPP"
    monkeypatch.delenv(COO_BACKEND.env)
    other = DefaultChoice(**{**COO_BACKEND.__dict__, "name": "cvxpy-other", "fingerprints": ("0" * 16,)})
    (outcome,) = upstream_fixes.apply(fixes=(other,))
    assert outcome.status == SKIPPED and "not the code this fix was made for" in outcome.reason
    gone = DefaultChoice(**{**COO_BACKEND.__dict__, "name": "gone", "code": ("cvxpy.lin_ops.backends.nothing",)})
    assert upstream_fixes.apply(fixes=(gone,))[0].status == SKIPPED
    assert cvxpy.settings.DEFAULT_CANON_BACKEND == "CPP"
    try:
        assert upstream_fixes.apply(fixes=(COO_BACKEND,))[0].status == APPLIED
        assert upstream_fixes.apply(fixes=(COO_BACKEND,))[0].status == APPLIED  # nothing applied twice
        assert cvxpy.settings.DEFAULT_CANON_BACKEND == "COO"
    finally:
        assert upstream_fixes.apply(False, fixes=(COO_BACKEND,))[0].status == OFF
    assert cvxpy.settings.DEFAULT_CANON_BACKEND == "CPP"


# A module that reads "data files" at import, in a distribution of its own: where each way in to a
# deferred name must load the data first, and each shape of module the fix must leave alone.
LAZY_MODULE = textwrap.dedent('''\
    import functools

    LOADS = []


    def _read(name):
        LOADS.append(name)
        return name.upper()


    A = _read("a")
    B = A + "!"
    C = 3


    def uses_a():
        return A


    def uses_nothing():
        return C


    @functools.lru_cache
    def cached():
        return B


    class K:
        def method(self):
            return B

        @staticmethod
        def static():
            return A

        @classmethod
        def klass(cls):
            return B

        @property
        def prop(self):
            return A

        def nested(self):
            return (lambda: A)()
    ''')
WAYS_IN = {"function": lambda m: m.uses_a(), "decorated": lambda m: m.cached(), "method": lambda m: m.K().method(),
           "static": lambda m: m.K.static(), "class method": lambda m: m.K.klass(), "property": lambda m: m.K().prop,
           "nested": lambda m: m.K().nested(), "attribute": lambda m: m.B}


def _lazy_package(root, source=LAZY_MODULE):
    """A distribution of its own (its files listed in RECORD, as pip installs them) on ``root``."""
    name = f"lazy_{uuid.uuid4().hex[:8]}"
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    (root / name / "data.py").write_text(source)
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "RECORD").write_text(f"{name}/__init__.py,,\n{name}/data.py,,\n")
    return DeferredLoad(name=f"{name}-data", package=name, module=f"{name}.data", names=("A", "B"),
                        fingerprints=(fingerprint(source),), why="test", upstream="here")


@pytest.mark.parametrize("way", list(WAYS_IN))
def test_a_deferred_name_is_loaded_once_on_first_use_whichever_way_in(tmp_path, monkeypatch, way):
    import importlib

    monkeypatch.syspath_prepend(str(tmp_path))
    fix = _lazy_package(tmp_path)
    try:
        assert upstream_fixes.apply(fixes=(fix,))[0].status == APPLIED
        module = importlib.import_module(fix.module)
        assert module.LOADS == [] and "A" not in vars(module) and module.uses_nothing() == 3
        assert module.LOADS == []  # what reads no deferred name does not load
        assert WAYS_IN[way](module) in ("A", "A!")
        assert module.LOADS == ["a"] and vars(module)["B"] == "A!"
        assert [f(module) for f in WAYS_IN.values()] == ["A", "A!", "A!", "A", "A!", "A", "A", "A!"]
        assert module.LOADS == ["a"]  # once
        assert upstream_fixes.apply(fixes=(fix,))[0].status == APPLIED  # again: nothing applied twice
    finally:
        upstream_fixes.apply(False, fixes=(fix,))


@pytest.mark.parametrize("change, reason", [
    (lambda s: s.replace("C = 3", "C = A * 2"), "its top level reads A at import"),
    (lambda s: s.replace("B = A + \"!\"", "B, D = A + \"!\", 1"), "plain top-level assignment"),
    (lambda s: s + "\n\ndef __getattr__(name):\n    raise AttributeError(name)\n", "__getattr__ of its own"),
])
def test_a_module_that_cannot_be_deferred_safely_is_left_as_it_is(tmp_path, monkeypatch, change, reason):
    import importlib

    monkeypatch.syspath_prepend(str(tmp_path))
    fix = _lazy_package(tmp_path, change(LAZY_MODULE))
    (outcome,) = upstream_fixes.apply(fixes=(fix,))
    assert outcome.status == SKIPPED and reason in outcome.reason, outcome
    assert importlib.import_module(fix.module).LOADS == ["a"]  # loaded at import, as written


def test_other_code_earlier_imports_and_off_are_each_said_and_leave_upstream_behaviour(tmp_path, monkeypatch):
    import importlib

    monkeypatch.syspath_prepend(str(tmp_path))
    other = _lazy_package(tmp_path)
    other = DeferredLoad(**{**other.__dict__, "fingerprints": ("0" * 16,)})
    (outcome,) = upstream_fixes.apply(fixes=(other,))
    assert outcome.status == SKIPPED and "not the code this fix was made for" in outcome.reason
    assert importlib.import_module(other.module).LOADS == ["a"]

    early = _lazy_package(tmp_path)
    importlib.import_module(early.module)
    (outcome,) = upstream_fixes.apply(fixes=(early,))
    assert outcome.status == SKIPPED and "imported before the fix could apply" in outcome.reason

    off = _lazy_package(tmp_path)
    assert upstream_fixes.apply(fixes=(off,))[0].status == APPLIED
    module = importlib.import_module(off.module)
    assert module.LOADS == []
    assert upstream_fixes.apply(False, fixes=(off,))[0].status == OFF
    assert module.LOADS == ["a"] and vars(module)["B"] == "A!"  # off: everything loaded, as upstream has it
    gone = DeferredLoad(**{**off.__dict__, "name": "gone", "module": f"{off.package}.nothing"})
    assert upstream_fixes.apply(fixes=(gone,))[0].status == SKIPPED


SHADE_VALUES = '''
import hashlib, json, resource, sys
from sdt_build.runtime import upstream_fixes
outcomes = {o.name: o.status for o in upstream_fixes.apply(sys.argv[1] == "on")}
import solardatatools
from solardatatools.algorithms import shade
at_import = sorted(n for n in json.loads(sys.argv[2]) if n in vars(shade))
digest = hashlib.sha256()
for name in json.loads(sys.argv[2]):
    value = getattr(shade, name)
    digest.update(value.to_csv().encode() if hasattr(value, "to_csv") else value.tobytes())
digest.update(repr(sorted((k, repr(v)) for k, v in shade.make_class_parameters(rank=6).items())).encode())
print(json.dumps({"fixes": outcomes, "at_import": at_import, "digest": digest.hexdigest()}))
'''


def test_shade_data_is_read_on_first_use_and_is_the_same_data():
    """In fresh processes, as a worker meets it: with the fix, importing SDT reads none of the shade
    analysis's data; asked for, every value (and what ShadeAnalysis's class parameters make of them)
    is what an unfixed import reads."""
    answers = {}
    for side in ("on", "off"):
        done = subprocess.run([sys.executable, "-c", SHADE_VALUES, side, json.dumps(SHADE_DATA.names)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        answers[side] = json.loads(done.stdout.strip().splitlines()[-1])
    assert answers["on"]["fixes"][SHADE_DATA.name] == APPLIED and answers["on"]["at_import"] == []
    assert answers["off"]["fixes"][SHADE_DATA.name] == OFF
    assert answers["off"]["at_import"] == sorted(SHADE_DATA.names)
    assert answers["on"]["digest"] == answers["off"]["digest"]


PLUG = '''
from pathlib import Path

import pandas as pd
import sdt_dask
from solardatatools.time_axis_manipulation import make_time_series

from sdt_build import DataPlug
from synthetic import SyntheticPV


class Sites(DataPlug):
    def get_data(self, key):
        if key[0] == "real":
            folder = Path(sdt_dask.__file__).parent / "examples" / "example_data"
            return make_time_series(pd.read_csv(folder / f"{key[1]}.csv"))[0]
        return SyntheticPV().get_data((key[1], key[2]))
'''
# Both real sites, and synthetic systems with clipping, a capacity change and a time shift (1, 5, 13)
SITES = [("real", "TAEFC1044741"), ("real", "ZT162185000441C1203"), ("synthetic", 1, 200), ("synthetic", 5, 120),
         ("synthetic", 13, 400)]
OF_THE_RUN = {"worker", "run_id", "warnings", "attempts", PEAK_MEMORY, MEMORY_AFTER}  # where and when, not what


@pytest.mark.slow
def test_every_field_of_a_row_is_the_same_with_the_fixes_on_and_off(tmp_path):
    from conftest import EXAMPLES

    from sdt_build import SDTDask
    from sdt_build.clients import LocalClient
    from sdt_build.runtime.keys import key_id

    folder = tmp_path / "sites"
    folder.mkdir()
    (folder / "dataplug.py").write_text(PLUG)
    (folder / "synthetic.py").write_text((EXAMPLES / "synthetic" / "dataplug.py").read_text())
    (folder / "client.py").write_text("from sdt_build.clients import LocalClient\n\n\nclass Here(LocalClient):\n"
                                      "    pass\n")
    client = LocalClient(workers=2, threads_per_worker=1, memory_per_worker="7GiB")
    for fix_shifts in (True, False):
        tables = {}
        for fixes in (False, True):
            result = SDTDask(folder, client=client).execute(SITES, upstream_fixes=fixes, fix_shifts=fix_shifts)
            assert result.ok, result.table[["key", "stage", "message"]]
            said = result.record["upstream_fixes"]
            assert {fix["name"] for fix in said} == {fix.name for fix in FIXES}, said
            assert all(fix["status"] == (APPLIED if fixes else OFF) and fix["workers"] == 2 for fix in said), said
            tables[fixes] = {key_id(r["key"]): r for r in result.table.to_dict("records")}
        for key, row in tables[False].items():
            fixed = tables[True][key]
            fields = {f for f in row if f not in OF_THE_RUN and not f.startswith("seconds ")}
            assert fields == {f for f in fixed if f not in OF_THE_RUN and not f.startswith("seconds ")}
            for field in fields:
                assert row[field] == fixed[field] or (row[field] != row[field] and fixed[field] != fixed[field]), \
                    (key, fix_shifts, field, row[field], fixed[field])
        peaks = {fixes: max(r["worker peak GiB"] for r in tables[fixes].values()) for fixes in tables}
        assert peaks[True] < 1.5 < 4 < peaks[False], peaks  # the dense copy is what the fix leaves out
