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
