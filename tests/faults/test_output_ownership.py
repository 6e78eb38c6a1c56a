"""An output folder belongs to one project and one run at a time: scaffolds get names of their own,
a run that would discard or mix rows is refused before it touches anything, a run that cannot start
leaves the folder as it was, and --resume keeps every finished row (naming rows of older code)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd

from faultkit import journal_rows, keys_arg, no_traceback, sdt


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) with its content's digest."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_scaffolds_from_one_example_are_projects_of_their_own(tmp_path):
    names = []
    for folder in (tmp_path / "Roof Sites", tmp_path / "fleet_2"):
        done = sdt("init", str(folder), "--example", "local-csv", "--json")
        assert done.returncode == 0, done.stderr
        names.append(json.loads(done.stdout)["name"])
        checked = json.loads(sdt("check", str(folder), "--offline", "--json").stdout)
        assert checked["name"] == names[-1]
    assert names == ["roof-sites", "fleet_2"]


def test_a_run_that_would_discard_or_mix_rows_is_refused_and_touches_nothing(trouble, tmp_path):
    folder = trouble(workers=1)
    output = tmp_path / "out"
    first = sdt("run", str(folder), "--output", str(output), *keys_arg(("raises",)))
    assert first.returncode == 5, first.stderr[-2000:]
    before = snapshot(output)
    assert ".sdt-run.lock" not in before  # the lock goes with the run

    again = sdt("run", str(folder), "--output", str(output), *keys_arg(("raises",)))
    assert again.returncode == 5 and "SDT-E550" in again.stderr and "--resume" in again.stderr, again.stderr
    other = shutil.copytree(folder, tmp_path / "other")
    (other / "sdt.toml").write_text('name = "another-project"\n')
    for extra in ([], ["--resume"]):
        mixed = sdt("run", str(other), "--output", str(output), *extra, *keys_arg(("raises",)))
        assert mixed.returncode == 5 and "SDT-E551" in mixed.stderr and "'faults'" in mixed.stderr, mixed.stderr
        no_traceback(mixed.stderr)
    both = sdt("run", str(folder), "--output", str(output), "--resume", "--force", *keys_arg(("raises",)))
    assert both.returncode == 5 and "SDT-E553" in both.stderr
    assert snapshot(output) == before

    # a run that cannot start (its client cannot fit this machine) leaves the folder as it was, even with
    # --force, and creates no folder that did not exist (nor the parents of one, as sdt-results/ of the default)
    (folder / "client.py").write_text((folder / "client.py").read_text().replace('"7GiB"', '"100000GiB"'))
    for target in (output, tmp_path / "new" / "run"):
        stopped = sdt("run", str(folder), "--output", str(target), "--force", *keys_arg(("raises",)))
        assert stopped.returncode == 10 and "SDT-E905" in stopped.stderr, stopped.stderr[-2000:]
        no_traceback(stopped.stderr)
    assert snapshot(output) == before
    assert not (tmp_path / "new").exists()


def test_resume_names_a_changed_plug_and_keeps_every_finished_row(trouble, tmp_path):
    folder = trouble(workers=1)
    output = tmp_path / "out"
    first = sdt("run", str(folder), "--output", str(output), *keys_arg(("ok", 1), ("ok", 2)))
    assert first.returncode == 0, first.stderr[-2000:]
    made_by = {row["plug"] for row in journal_rows(output)}
    assert len(made_by) == 1

    plug = folder / "dataplug.py"
    plug.write_text(plug.read_text() + "\n# a changed plug\n")
    resumed = sdt("run", str(folder), "--output", str(output), "--resume", *keys_arg(("ok", 1), ("raises",)))
    assert resumed.returncode == 5, resumed.stderr[-2000:]
    record = json.loads((output / "run.json").read_text())
    changed = [w for w in record["warnings"] if "other code of the plug" in w]
    assert changed and changed[0].startswith("2 finished row(s)") and made_by.pop() in changed[0], record["warnings"]
    assert record["plug"] in changed[0] and "other code of the plug" in resumed.stderr
    assert record["already_done"] == 1 and record["other_keys"] == 1
    results = pd.read_csv(output / "results.csv")
    assert sorted(results["key"]) == sorted(["('ok', 1)", "('ok', 2)", "('raises',)"])  # ('ok', 2) is kept
    assert dict(zip(results["key"], results["status"]))["('ok', 2)"] == "ok"
    report = (output / "report.html").read_text()
    assert "ok, 2" in report or "[&#34;ok&#34;, 2]" in report or '["ok", 2]' in report
    assert [row["key"] for row in journal_rows(output)].count(["ok", 1]) == 1  # not run again
