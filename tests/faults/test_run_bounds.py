"""Nothing a run is given can make it spin or wait forever: every numeric option is range-checked
before anything starts, the plug's size() is bounded like a key, and SIGTERM while the plug is asked
for sizes still writes the run's outputs."""

from __future__ import annotations

import json
import signal
import time

import pandas as pd
import pytest

from faultkit import finished, keys_arg, no_traceback, sdt, start, wait_for

BAD_OPTIONS = [("--max-in-flight", "-1"), ("--max-in-flight", "0"), ("--timeout", "-1"), ("--timeout", "0"),
               ("--timeout", "nan"), ("--retries", "-5"), ("--plots", "-1"), ("--lost-cluster-timeout", "-1")]


@pytest.mark.parametrize("option,value", BAD_OPTIONS)
def test_an_option_out_of_range_is_refused_before_anything_starts(trouble, tmp_path, option, value):
    output = tmp_path / "out"
    began = time.monotonic()
    done = sdt("run", str(trouble(workers=1)), "--output", str(output), f"{option}={value}",
               *keys_arg(("raises",)), timeout=60)
    assert time.monotonic() - began < 60
    assert done.returncode == 5 and "SDT-E552" in done.stderr and option in done.stderr, done.stderr
    no_traceback(done.stderr)
    assert not output.exists()


def test_a_size_that_never_answers_is_bounded_by_the_timeout(trouble, tmp_path):
    output = tmp_path / "out"
    began = time.monotonic()
    done = sdt("run", str(trouble(workers=1)), "--output", str(output), "--timeout", "5",
               *keys_arg(("endless-size",), ("raises",)), timeout=180)
    assert time.monotonic() - began < 120
    assert done.returncode == 5, done.stderr[-2000:]
    warnings = json.loads((output / "run.json").read_text())["warnings"]
    assert any("size() did not answer within 5 s" in w for w in warnings), warnings
    assert sorted(pd.read_csv(output / "results.csv")["stage"]) == ["get_data", "get_data"]  # both keys ran


def test_sigterm_while_sizes_are_asked_writes_the_outputs(trouble, tmp_path):
    output = tmp_path / "out"
    running = start("run", str(trouble(workers=1)), "--output", str(output),
                    *keys_arg(("endless-size",), ("raises",)))
    wait_for(lambda: (output / "journal.jsonl").exists(), timeout=120)  # the run has started: sizes are asked
    time.sleep(2)
    running.send_signal(signal.SIGTERM)
    code, _, err = finished(running, timeout=120)
    assert code == 143, err[-2000:]
    no_traceback(err)
    record = json.loads((output / "run.json").read_text())
    assert record["interrupted"] == "SIGTERM" and record["keys"] == 2
    assert (output / "results.csv").exists()


def test_a_plug_whose_keys_fail_or_hang_is_named_not_an_internal_error(tmp_path):
    from faultkit import CLIENTS

    folder = tmp_path / "listed"
    folder.mkdir()
    (folder / "client.py").write_text(CLIENTS["local"].format(workers=1, memory="2GiB"))
    plug = ("import time\n\nfrom sdt_build import DataPlug\n\n\nclass Listed(DataPlug):\n    def keys(self):\n"
            "        {body}\n\n    def get_data(self, key):\n        raise ValueError('unused')\n")
    for body, code, said in (("raise RuntimeError('the site index is down')", "SDT-E555", "the site index is down"),
                             ("time.sleep(3600)", "SDT-E554", "did not answer within 5 s")):
        (folder / "dataplug.py").write_text(plug.format(body=body))
        done = sdt("run", str(folder), "--output", str(tmp_path / "out"), "--timeout", "5", timeout=180)
        assert done.returncode == 5 and code in done.stderr and said in done.stderr, done.stderr[-2000:]
        no_traceback(done.stderr)
        assert not (tmp_path / "out").exists()  # the run never started
