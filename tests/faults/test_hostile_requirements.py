"""Requirements files that attack the tool's patience: 5,000 lines against the machine's real
indexes. The index look-ups are bounded (a pool, a per-request timeout, a total budget), say
what they are doing while they run, and name every package the budget left out."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import EXAMPLES, SDT

LINES = 5000


@pytest.mark.timeout(300)
def test_five_thousand_lines_are_bounded_and_say_so(tmp_path):
    import shutil

    folder = tmp_path / "hostile"
    shutil.copytree(EXAMPLES / "local-csv", folder)
    names = [f"sdt-hostile-probe-{i:04d}" for i in range(LINES)]
    (folder / "requirements.txt").write_text("".join(f"{name}>=1.0\n" for name in names))
    env = {**os.environ, "SDT_CACHE_DIR": str(tmp_path / "cache"), "SDT_INDEX_BUDGET": "5"}
    done = subprocess.run([SDT, "check", str(folder), "--json"], capture_output=True, text=True, env=env)
    payload = json.loads(done.stdout)
    budget = [f for f in payload["findings"] if f["code"] == "SDT-E229"]
    assert len(budget) == 1 and budget[0]["severity"] == "note", payload["findings"][:3]
    missing = {f["package"] for f in payload["findings"] if f["code"] == "SDT-E205"}
    skipped = LINES - len(missing)
    assert skipped > 0 and f"{skipped} of {LINES} packages were not looked up" in budget[0]["cause"]
    assert next(n for n in names if n not in missing) in budget[0]["cause"]  # named, in the file's order
    assert done.returncode == 2  # the names that were looked up are not on any index
    shown = subprocess.run([SDT, "check", str(folder)], capture_output=True, text=True, env=env)
    assert f"looking up {LINES} package(s) on the indexes" in shown.stderr
    assert "SDT-E229" in shown.stderr
