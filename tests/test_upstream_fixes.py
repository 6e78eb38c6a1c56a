"""The upstream fixes are safe by construction: each replaces only the code it was made for, and its
answer equals the original's on generated inputs (property tests), for every release it names."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdt_build import upstream_fixes
from sdt_build.upstream_fixes import APPLIED, FIXES, OFF, SKIPPED, UpstreamFix, fingerprint

IS_DIAGONAL = next(fix for fix in FIXES if fix.name == "cvxpy-sparse-is-diagonal")
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
OF_THE_RUN = {"worker", "run_id", "warnings", "attempts", "worker peak GiB"}  # where and when, not what


@pytest.mark.slow
def test_every_field_of_a_row_is_the_same_with_the_fixes_on_and_off(tmp_path):
    from conftest import EXAMPLES

    from sdt_build import SDTDask
    from sdt_build.clients import LocalClient
    from sdt_build.keys import key_id

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
            (fix,) = result.record["upstream_fixes"]
            assert fix["status"] == (APPLIED if fixes else OFF) and fix["workers"] == 2, fix
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
