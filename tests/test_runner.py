"""SDTDask on a real local Dask cluster with real SDT on the real PV CSVs."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
import time

import pandas as pd
import pytest
from conftest import EXAMPLES, FIX_SHIFTS, SDT, SITES, assert_same_reports

from sdt_build import SDTDask
from sdt_build.clients import LocalClient
from sdt_build.runtime.errors import RunFailure
from sdt_build.runtime.upstream_fixes import FIXES

SHORT_PLUG = '''
import pandas as pd
from pathlib import Path
from solardatatools.time_axis_manipulation import make_time_series
from sdt_build import DataPlug


class ShortSlices(DataPlug):
    """(site, days): the first `days` days of a real site; site 'missing' raises."""

    def get_data(self, key):
        site, days = key
        import sdt_dask
        folder = Path(sdt_dask.__file__).parent / "examples" / "example_data"
        raw = pd.read_csv(folder / f"{site}.csv")
        series, _ = make_time_series(raw)
        return series[series.index < series.index[0] + pd.Timedelta(days=days)]
'''


@pytest.fixture
def short_project(tmp_path):
    folder = tmp_path / "short"
    folder.mkdir()
    (folder / "dataplug.py").write_text(SHORT_PLUG)
    shutil.copy(EXAMPLES / "local-csv" / "client.py", folder / "client.py")
    return folder


def _small_client():
    return LocalClient(workers=2, threads_per_worker=1, memory_per_worker="7GiB")


def test_failures_are_rows_and_resume_keeps_finished_rows(short_project, tmp_path):
    keys = [("TAEFC1044741", 60), ("missing", 10)]
    out = tmp_path / "out"
    result = SDTDask(short_project, client=_small_client()).execute(keys, output_dir=out)
    table = result.table.set_index("key")
    assert list(result.table["key"].sort_values()) == sorted(keys)
    assert table.loc[[("missing", 10)], "status"].item() == "failed"
    assert table.loc[[("missing", 10)], "stage"].item() == "get_data"
    assert table.loc[[("missing", 10)], "error_type"].item() == "FileNotFoundError"
    assert table.loc[[("TAEFC1044741", 60)], "status"].item() == "ok"
    assert table.loc[[("TAEFC1044741", 60)], "capacity"].item() > 0
    journal = out / "journal.jsonl"
    before = journal.read_text()
    assert len(before.splitlines()) == 2 and pd.read_csv(out / "results.csv").shape[0] == 2
    assert result.counts == {"ok": 1, "failed": 1}

    again = SDTDask(short_project, client=_small_client()).execute(
        [*keys, ("missing", 11)], output_dir=out, resume=True)
    assert len(again.table) == 3 and again.counts == {"ok": 1, "failed": 2}
    assert again.record["already_done"] == 1
    assert journal.read_text().startswith(before)  # the finished row is kept, not run again
    ran = [tuple(json.loads(line)["key"]) for line in journal.read_text().splitlines()[2:]]
    assert sorted(ran) == [("missing", 10), ("missing", 11)]  # the failed key and the new one


def test_no_keys_is_a_named_error(short_project):
    with pytest.raises(RunFailure) as caught:
        SDTDask(short_project, client=_small_client()).execute([])
    assert caught.value.code == "SDT-E501"


@pytest.mark.slow
def test_local_csv_on_one_2_gib_worker_matches_direct_datahandler(direct_report, tmp_path):
    """The example's two real sites, on one worker of 2 GiB (the upstream fixes make that enough),
    give the same report as a direct DataHandler call as installed (no fix applied)."""
    client = LocalClient(workers=1, threads_per_worker=1, memory_per_worker="2GiB")
    result = SDTDask(EXAMPLES / "local-csv", client=client).execute(output_dir=tmp_path / "out")
    assert result.ok, result.table[["key", "stage", "message"]]
    assert {(fix["name"], fix["status"]) for fix in result.record["upstream_fixes"]} == \
        {(fix.name, "applied") for fix in FIXES}  # each applied on the worker before it first imported SDT
    assert_same_reports(result.table, [((site,), direct_report(site, FIX_SHIFTS)) for site in SITES])
    assert result.table["worker peak GiB"].max() < 1.5
    page = (tmp_path / "out" / "report.html").read_text()
    assert "cvxpy-sparse-is-diagonal: applied in cvxpy" in page  # the report page says what was changed


def test_cli_run_exit_code_and_keys_file(short_project, tmp_path):
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps([["missing", 5], ["missing", 6]]))  # rows without an SDT run
    (short_project / "client.py").write_text(textwrap.dedent('''
        from sdt_build.clients import LocalClient

        class Small(LocalClient):
            workers = 2
            threads_per_worker = 1
            memory_per_worker = "7GiB"
    '''))
    done = subprocess.run([SDT, "run", str(short_project), "--keys", str(keys_file), "--output",
                           str(tmp_path / "out"), "--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 5, done.stderr
    payload = json.loads(done.stdout)
    assert payload["summary"]["counts"] == {"failed": 2}
    said = {(fix["name"], fix["status"], fix["workers"]) for fix in payload["upstream_fixes"]}
    assert said == {(fix.name, "applied", 2) for fix in FIXES}, said  # on both workers before the first key
    assert {tuple(r["key"]) for r in payload["rows"]} == {("missing", 5), ("missing", 6)}
    assert "Traceback" not in done.stderr


def _profiling(dask_worker) -> list[bool]:
    return [c.is_running() for n, c in dask_worker.periodic_callbacks.items() if n.startswith("profile")]


def test_dask_profiler_is_off_on_every_worker_unless_asked_for(short_project, tmp_path):
    from distributed import Client, LocalCluster

    key = [("TAEFC1044741", 30)]
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        assert list(client.run(_profiling).values()) == [[True, True]]  # Dask's default
        began = time.time()
        assert SDTDask(short_project).execute(key, dask_client=client).ok
        cluster.scale(2)
        client.wait_for_workers(2)  # a worker that joins later gets the plugin, and no profiler either
        assert list(client.run(_profiling).values()) == [[], []]
        assert client.profile(start=began)["count"] == 0

        began = time.time()
        assert SDTDask(short_project).execute(key, dask_client=client, worker_profile=True).ok
        assert list(client.run(_profiling).values()) == [[True, True], [True, True]]
        assert client.profile(start=began)["count"] > 0  # the run's samples, for dask-report.html

        assert SDTDask(short_project).execute(key, dask_client=client).ok  # the next run asks again: off
        assert list(client.run(_profiling).values()) == [[], []]
