"""examples/fleet: deterministic systems whose truth matches their data, broken systems that fail with
a row saying why, rows that record their worker's memory; and how `python -m benchmarks` hands a
suite its options."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
from conftest import EXAMPLES

FLEET = EXAMPLES / "fleet"


@pytest.fixture(scope="module")
def fleet():
    spec = importlib.util.spec_from_file_location("fleet_example", FLEET / "dataplug.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _daily_max(data: pd.DataFrame) -> pd.Series:
    power = data["ac_power"]
    return power.groupby(power.index.normalize()).max()


def test_keys_and_series_are_the_same_every_time(fleet, monkeypatch):
    monkeypatch.setenv("SDT_FLEET_SITES", "5")
    plug = fleet.FleetPV()
    assert plug.keys() == [(0,), (1,), (2,), (3,), (4,), ("real", "TAEFC1044741"), ("real", "ZT162185000441C1203")]
    pd.testing.assert_frame_equal(plug.get_data((5, 60)), fleet.FleetPV().get_data((5, 60)))
    assert plug.truth((5, 60)) == fleet.FleetPV().truth((5, 60)) and plug.truth(("real", "TAEFC1044741")) is None
    assert [plug.size((s,)) for s in range(3)] == [plug.truth((s,))["days"] for s in range(3)]
    lengths = [plug.truth((s,))["days"] for s in range(300)]
    assert min(lengths) >= 90 and max(lengths) <= 5 * 366 and 365 <= np.median(lengths) <= 730


def test_the_truth_is_what_the_data_shows(fleet):
    plug = fleet.FleetPV()
    # 3: power at night, no clipping (4: standby draw at night); 5: clipping and missing timestamps; 32: a capacity change; 0: a time shift
    assert [plug.truth((s, 120))["clipping"] for s in (3, 5)] == [False, True]
    plain, clipped = plug.get_data((3, 120)), plug.get_data((5, 120))
    assert 0.9 <= _daily_max(plain).quantile(0.9) / plug.truth((3, 120))["capacity"] <= 1.05
    assert (plain["ac_power"] == plain["ac_power"].max()).sum() < 5 < 50 < (clipped["ac_power"] == clipped[
        "ac_power"].max()).sum()
    night = {s: plug.get_data((s, 120)).between_time("00:00", "02:00")["ac_power"] for s in (0, 3, 4)}
    assert (night[0] == 0).all() and (night[3] > 0).all() and (night[4] < 0).all()  # a meter's offset, a standby draw
    steps = clipped.index.to_series().diff().dropna()
    assert steps.max() > pd.Timedelta("15min") and steps.min() == pd.Timedelta("15min")  # gaps, 15-minute data

    assert plug.truth((32, 120))["capacity change"]
    at, kept = fleet._system(32, 120)["capacity change"]
    daily = _daily_max(plug.get_data((32, 120)))
    change = int(at * 120)
    assert abs(daily.iloc[change:change + 15].quantile(0.9) / daily.iloc[change - 15:change].quantile(0.9) - kept) < 0.1

    assert plug.truth((0, 120))["time shift"]
    start, end = (int(f * 120) for f in fleet._system(0, 120)["time shift"])
    power = plug.get_data((0, 120))["ac_power"]
    hours = power.index.hour + power.index.minute / 60
    centre = (power * hours).groupby(power.index.normalize()).sum() / power.groupby(power.index.normalize()).sum()
    assert abs(centre.iloc[start:end].median() - centre.iloc[:start].median() - 1) < 0.25  # an hour late


def test_broken_systems_fail_with_their_cause_and_rows_record_worker_memory(fleet, tmp_path):
    from sdt_build import SDTDask
    from sdt_build.clients import LocalClient
    from sdt_build.runtime.task import PEAK_MEMORY, MEMORY_AFTER

    keys = [(3, 90), (5, 120), (0, 90), (7, 60), (77, 60), (147, 60)]
    result = SDTDask(FLEET, client=LocalClient(workers=2, threads_per_worker=1)).execute(
        keys, output_dir=tmp_path / "out")
    rows = {tuple(r["key"]): r for r in result.table.to_dict("records")}
    causes = {"all zeros": "all zero or missing", "all NaN": "all zero or missing", "power as text": "no numeric column"}
    for key in keys:
        row, broken = rows[key], fleet.FleetPV().truth(key)["broken"]
        if broken:
            assert (row["status"], row["stage"]) == ("failed", "get_data") and causes[broken] in row["message"], row
        else:
            assert row["status"] == "ok", row
            assert 0 < row[MEMORY_AFTER] <= row[PEAK_MEMORY] + 0.05, row
    assert result.counts == {"ok": 3, "failed": 3}


HEAP_PLUG = """
from sdt_dask.dataplugs.dataplug import DataPlug

KEPT = []


class Heap(DataPlug):
    def get_data(self, key):
        chunks = [bytes(4000) for _ in range(50_000)]  # 200 MB in pieces glibc takes from its heap
        KEPT.extend(chunks[::25])  # 8 MB kept among the freed 192: none of the heap can go back by itself
        del chunks
        raise ValueError("done with the heap")
"""


def test_a_worker_gives_back_the_memory_a_key_freed(tmp_path):
    from pathlib import Path

    from sdt_build.runtime import task

    (tmp_path / "dataplug.py").write_text(HEAP_PLUG)
    bundle = task.PlugBundle.from_folder(tmp_path, (Path("dataplug.py"),), "Heap")
    task._installed[bundle.digest] = bundle
    try:
        rows = [task.run_key(bundle.digest, (n,), {}) for n in range(3)]
    finally:
        task._installed.pop(bundle.digest)
    for row in rows:
        assert (row.status, row.stage) == ("failed", "get_data"), row
        # the 200 MB were freed inside the key: the process keeps none of them once it is done
        assert row.values[task.MEMORY_AFTER] < row.values[task.PEAK_MEMORY] - 0.15, row.values


def test_a_suite_gets_the_words_after_its_name():
    from benchmarks.__main__ import SUITES, suites

    assert suites([]) == [(name, []) for name in SUITES]
    assert suites(["runner", "fleet", "--sites", "12", "--no-kill"]) == [("runner", []),
                                                                         ("fleet", ["--sites", "12", "--no-kill"])]
    with pytest.raises(SystemExit):
        suites(["--sites", "12"])
