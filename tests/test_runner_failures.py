"""The runner on a real Dask cluster when things go wrong: raising plugs, a hanging key, a worker
killed mid-run, a missing module; then resume. Every key ends in exactly one row."""

from __future__ import annotations

import json
import shutil

import dask
import distributed  # noqa: F401  (loads its config before dask.config.set touches it)
import pytest
from conftest import EXAMPLES

from sdt_build import SDTDask
from sdt_build.clients import LocalClient
from sdt_build.runtime.keys import key_id

TROUBLE_PLUG = '''
import os
import signal
import time
from pathlib import Path

from sdt_build import DataPlug

import importlib
import importlib.util

_spec = importlib.util.spec_from_file_location("synthetic_plug", {synthetic!r})
_synthetic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_synthetic)


class Trouble(DataPlug):
    """(name, days): 'ok' gives synthetic data; the others misbehave unless SDT_TEST_FIXED is set."""

    def get_data(self, key):
        name, days = key
        calls = Path({calls!r}) / f"{{name}}.calls"
        calls.write_text(str(int(calls.read_text()) + 1 if calls.exists() else 1))
        if not os.environ.get("SDT_TEST_FIXED"):
            if name == "raises":
                raise ValueError("site 'raises' has no data")
            if name == "hangs":
                time.sleep(3600)
            if name == "dies":  # a moment into its work, as a crash is: the key its worker ran before
                time.sleep(1)     # it has reported its end by then (killed at once, that report can be lost)
                os.kill(os.getpid(), signal.SIGKILL)
            if name == "dependency":
                importlib.import_module("sdt_no_such_module")  # as if the image lacked a package
        return _synthetic.SyntheticPV().get_data((3, days))
'''


@pytest.fixture
def trouble(tmp_path):
    folder = tmp_path / "trouble"
    folder.mkdir()
    calls = tmp_path / "calls"
    calls.mkdir()
    (folder / "dataplug.py").write_text(TROUBLE_PLUG.format(synthetic=str(EXAMPLES / "synthetic" / "dataplug.py"),
                                                            calls=str(calls)))
    shutil.copy(EXAMPLES / "local-csv" / "client.py", folder / "client.py")
    return folder, calls


def test_every_failure_is_a_row_and_resume_redoes_only_what_failed(trouble, tmp_path, monkeypatch):
    folder, calls = trouble
    monkeypatch.delenv("SDT_TEST_FIXED", raising=False)
    keys = [("ok", 30), ("raises", 30), ("dies", 30), ("dependency", 30), ("ok2", 30)]
    out = tmp_path / "out"
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        client = LocalClient(workers=2, threads_per_worker=1, memory_per_worker="7GiB")
        result = SDTDask(folder, client=client).execute(keys, output_dir=out, retries=1)
    rows = result.table.set_index(result.table["key"].map(key_id))
    assert sorted(rows.index) == sorted(key_id(k) for k in keys)  # exactly one row per key

    def row(name):
        return rows.loc[key_id((name, 30))]

    assert row("ok")["status"] == "ok" and row("ok2")["status"] == "ok" and row("ok")["capacity"] > 0, \
        rows[["status", "stage", "attempts", "message"]].to_string()
    # Keys queued behind one that killed its worker went again without spending an attempt.
    assert row("ok")["attempts"] == 1 and row("ok2")["attempts"] == 1
    assert (row("raises")["stage"], row("raises")["error_type"]) == ("get_data", "ValueError")
    assert "has no data" in row("raises")["message"] and "Traceback" in row("raises")["traceback"]
    assert row("dies")["stage"] == "worker lost" and row("dies")["attempts"] == 2
    assert "GiB memory limit" in row("dies")["message"] and "Fix:" in row("dies")["message"]
    assert row("dependency")["stage"] == "get_data" and row("dependency")["dependency"] == "sdt_no_such_module"
    assert "client has none" in row("dependency")["message"]
    summary = result.summary()
    assert summary["counts"] == {"ok": 2, "failed": 3}
    assert {f["stage"] for f in summary["failures"]} == {"get_data", "worker lost"}
    for name in ("results.csv", "results.parquet", "journal.jsonl", "run.json"):
        assert (out / name).exists(), name
    record = json.loads((out / "run.json").read_text())
    assert record["keys"] == 5  # and Dask's performance report is written, failures and all (bokeh is a dev extra)
    assert record["performance_report"] == str(out / "dask-report.html") and (out / "dask-report.html").stat().st_size

    # Resume (the plug still broken) runs the failed keys again and only them.
    names = ("ok", "ok2", "raises", "dependency")
    before = {name: int((calls / f"{name}.calls").read_text()) for name in names}
    client = LocalClient(workers=2, threads_per_worker=1, memory_per_worker="7GiB")
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        again = SDTDask(folder, client=client).execute(keys, output_dir=out, resume=True, retries=0)
    assert again.counts == {"ok": 2, "failed": 3}, again.table[["key", "status", "stage", "message"]].to_string()
    ran = {name: int((calls / f"{name}.calls").read_text()) - before[name] for name in names}
    assert ran == {"ok": 0, "ok2": 0, "raises": 1, "dependency": 1}
    assert again.record["already_done"] == 2


def test_a_key_over_its_timeout_is_a_row_and_the_key_behind_it_runs(trouble, tmp_path, monkeypatch):
    """The hung key's worker is restarted; the key queued behind it on that worker runs, no attempt spent."""
    folder, _ = trouble
    monkeypatch.delenv("SDT_TEST_FIXED", raising=False)
    client = LocalClient(workers=1, threads_per_worker=1, memory_per_worker="7GiB")
    result = SDTDask(folder, client=client).execute([("hangs", 30), ("raises", 30)], output_dir=tmp_path / "out",
                                                    timeout=8, retries=1)
    rows = result.table.set_index(result.table["key"].map(key_id))
    hung, behind = rows.loc[key_id(("hangs", 30))], rows.loc[key_id(("raises", 30))]
    assert hung["stage"] == "timeout" and "still running after 8 s" in hung["message"], hung.to_dict()
    assert "Fix: raise the timeout" in hung["message"] and hung["attempts"] == 1
    assert (behind["stage"], behind["error_type"], behind["attempts"]) == ("get_data", "ValueError", 1)


def test_run_pipeline_kwargs_reach_sdt(tmp_path):
    client = LocalClient(workers=2, threads_per_worker=1, memory_per_worker="7GiB")
    runner = SDTDask(EXAMPLES / "synthetic", client=client)
    shifted = [(5, 150)]  # system 5 has a one-hour clock shift part way through
    # SDT corrects the shift only when asked (its default is fix_shifts=False): the row shows it was asked.
    with_fix = runner.execute(shifted, fix_shifts=True)
    assert with_fix.table.iloc[0]["time shift correction"], with_fix.table.iloc[0].to_dict()


def test_a_users_dask_client_is_left_open(tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, memory_limit="7GiB") as cluster, Client(cluster) as mine:
        result = SDTDask(EXAMPLES / "synthetic").execute([(1, 40)], dask_client=mine)
        assert result.ok
        assert mine.status == "running" and mine.submit(sum, [1, 2]).result() == 3
