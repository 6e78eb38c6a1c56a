"""The CLI as users and CI call it."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import EXAMPLES, SDT


def run(*args, **kwargs):
    return subprocess.run([SDT, *args], capture_output=True, text=True, timeout=120, **kwargs)


def test_python_dash_m_works():
    done = subprocess.run([sys.executable, "-m", "sdt_build", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and "sdt-build" in done.stdout


def test_init_scaffolds_a_folder_that_passes_check(tmp_path):
    target = tmp_path / "mine"
    done = run("init", str(target), "--json")
    assert done.returncode == 0, done.stderr
    assert "dataplug.py" in json.loads(done.stdout)["files"]
    assert run("check", str(target)).returncode == 0
    again = run("init", str(target))
    assert again.returncode == 1 and "SDT-E121" in again.stderr


def test_init_unknown_example(tmp_path):
    done = run("init", str(tmp_path / "x"), "--example", "nope", "--json")
    assert done.returncode == 1
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "SDT-E120" and "local-csv" in error["fix"]


def test_check_json_describes_the_project():
    done = run("check", str(EXAMPLES / "local-csv"), "--json")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["ok"] and payload["plug"] == "LocalCSV" and payload["client"] == "Laptop"
    assert payload["env"] == [{"name": "SDT_CSV_DIR", "required": False, "secret": False}]


def test_debug_shows_traceback_only_when_asked(tmp_path):
    plain = run("check", str(tmp_path / "nothing"))
    assert plain.returncode == 1 and "Traceback" not in plain.stderr and "SDT-E101" in plain.stderr
    assert "fix:" in plain.stderr


def test_keys_files_keep_what_was_written(tmp_path):
    from sdt_build.keys import read_keys_file

    csv_file = tmp_path / "keys.csv"
    csv_file.write_text('# site,year\n13,2011\n14,"[2011, 2012]"\n# a comment\n')
    assert read_keys_file(csv_file) == [("13", "2011"), ("14", "[2011, 2012]")]  # a CSV field is text
    plain = tmp_path / "plain.csv"
    plain.write_text("TAEFC1044741\nZT162185000441C1203\n")
    assert read_keys_file(plain) == [("TAEFC1044741",), ("ZT162185000441C1203",)]
    json_file = tmp_path / "keys.json"
    json_file.write_text('[[13, [2011, 2012]], ["A"], "B"]')  # list fields need JSON
    assert read_keys_file(json_file) == [(13, [2011, 2012]), ("A",), ("B",)]
    for text in ("[1, 2", '{"a": [1]}', '"keys"'):  # broken, or not a list of keys
        broken = tmp_path / "broken.json"
        broken.write_text(text)
        done = run("run", str(EXAMPLES / "local-csv"), "--keys", str(broken), "--json")
        assert done.returncode == 5 and json.loads(done.stdout)["error"]["code"] == "SDT-E502", (text, done.stdout)


def test_init_with_an_example_client(tmp_path):
    target = tmp_path / "cloud"
    done = run("init", str(target), "--client", "fargate")
    assert done.returncode == 0, done.stderr
    assert "FargateClient" in (target / "client.py").read_text()
    check = run("check", str(target), "--json", "--offline")
    assert check.returncode == 0 and json.loads(check.stdout)["client"] == "Fargate"
    bad = run("init", str(tmp_path / "x"), "--client", "nope")
    assert bad.returncode == 1 and "SDT-E120" in bad.stderr
