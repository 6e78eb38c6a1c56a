"""Hostile input: links and includes that leave the folder, keys that are not keys, and get_data
returning things SDT cannot use. Each ends in one named line or one clear row; nothing outside the
folder is read, shown, copied into an image or shipped to a worker."""

from __future__ import annotations

import json
import os
from pathlib import Path

from faultkit import keys_arg, no_traceback, sdt

from sdt_build import SDTDask
from sdt_build.build.daemon import run_command
from sdt_build.clients import LocalClient
from sdt_build.pipeline import build_project
from sdt_build.runtime.task import PlugBundle

SECRET_FILE = Path("/etc/shadow")  # root-only on every Debian; its first line must never show up


def _secret_lines() -> list[str]:
    return [line for line in SECRET_FILE.read_text().splitlines() if line.strip()][:3]


def test_symlinks_that_leave_the_folder_reach_neither_the_image_nor_the_workers(trouble, docker, base_image,
                                                                                 tmp_path):
    folder = trouble("docker", name="faults-links")
    (folder / "shadowlink").symlink_to(SECRET_FILE)
    (folder / "leak.py").symlink_to("/etc/passwd")
    (folder / "etc").symlink_to("/etc", target_is_directory=True)
    (folder / "notes.txt").write_text("kept\n")
    (folder / "same-notes.txt").symlink_to("notes.txt")  # inside the folder: its content travels

    checked = sdt("check", str(folder), "--offline", "--json")
    assert checked.returncode == 0, checked.stderr
    warned = {p["file"] for p in json.loads(checked.stdout)["problems"] if p["code"] == "SDT-E125"}
    assert warned == {"shadowlink", "leak.py", "etc"}
    for line in _secret_lines():
        assert line not in checked.stdout + checked.stderr

    bundle = PlugBundle.from_folder(folder, build_project(folder, context_only=True,
                                                          context_dir=tmp_path / "ctx").project.code_files, "Trouble")
    assert {name for name, _ in bundle.files} == {"client.py", "dataplug.py", "synthetic.py"}
    shipped = sorted(p.relative_to(tmp_path / "ctx" / "project").as_posix()
                     for p in (tmp_path / "ctx" / "project").rglob("*"))
    assert "shadowlink" not in shipped and "leak.py" not in shipped and not any(s.startswith("etc") for s in shipped)

    built = build_project(folder, smoke=False)
    try:
        listing = run_command(docker, built.image.tag, ["ls", "-A", "/opt/sdt/project"]).output.split()
        assert "shadowlink" not in listing and "leak.py" not in listing and "etc" not in listing
        assert "notes.txt" in listing and "same-notes.txt" in listing
        copied = run_command(docker, built.image.tag, ["cat", "/opt/sdt/project/same-notes.txt"]).output
        assert copied.strip() == "kept"
    finally:
        docker.images.remove(built.image.image_id, force=True)


def test_requirement_includes_never_leave_the_folder(trouble):
    folder = trouble()
    (folder / "requirements.txt").write_text(f"-r {SECRET_FILE}\n-r ../../../../../../../../etc/passwd\n"
                                             "--constraint=/etc/passwd\npvlib\n")
    checked = sdt("check", str(folder), "--offline")
    assert checked.returncode == 1
    named = [line for line in checked.stderr.splitlines() if "SDT-E126" in line]
    assert len(named) == 3 and all("outside the project folder" in line for line in named), checked.stderr
    shown = checked.stdout + checked.stderr
    for line in _secret_lines() + ["root:x:0:0"]:
        assert line not in shown
    assert "SDT-E113" not in shown  # nothing of those files was parsed as requirements


def test_an_include_loop_is_one_error(trouble):
    folder = trouble()
    (folder / "requirements.txt").write_text("-r more.txt\npvlib\n")
    (folder / "more.txt").write_text("-r requirements.txt\n")
    checked = sdt("check", str(folder), "--offline", timeout=30)
    assert checked.returncode == 1
    assert "include loop (requirements.txt → more.txt → requirements.txt)" in checked.stderr


def test_keys_that_are_not_keys_are_refused_before_anything_runs(trouble, tmp_path):
    folder = trouble()
    for bad in ('{"a": 1}', "[]", "[null]", '[{"site": 1}]'):
        done = sdt("run", str(folder), "--dry-run", "--key", bad)
        assert done.returncode == 5, (bad, done.stderr)
        assert "SDT-E516" in done.stderr and "is not a key" in done.stderr, done.stderr
        no_traceback(done.stderr)
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([["ok", 1], {"site": 2}]))
    done = sdt("run", str(folder), "--dry-run", "--keys", str(keys))
    assert done.returncode == 5 and "SDT-E516" in done.stderr
    fine = sdt("run", str(folder), "--dry-run", *keys_arg(("ok", 1), (13, [2011, 2012])))
    assert fine.returncode == 0, fine.stderr


def test_get_data_that_returns_no_power_series_is_a_clear_row(trouble, tmp_path):
    folder = trouble()
    expected = {"none": "returned None", "empty": "empty DataFrame", "strings": "no numeric column",
                "series": "returned a Series", "unsorted": "not in time order", "no-index": "indexed by RangeIndex", "tz": "time zone UTC",
                "zeros": "all zero or missing", "nan": "all zero or missing"}
    keys = [(kind,) for kind in expected]
    client = LocalClient(workers=2, threads_per_worker=1, memory_per_worker="7GiB")
    result = SDTDask(folder, client=client).execute(keys, output_dir=tmp_path / "out")
    rows = {row["key"][0]: row for row in result.table.to_dict("records")}
    assert len(rows) == len(expected)
    for kind, words in expected.items():
        row = rows[kind]
        assert (row["status"], row["stage"], row["error_type"]) == ("failed", "get_data", "PlugContractError"), row
        assert words in row["message"] and "expected a DataFrame with a DatetimeIndex" in row["message"]
        assert "Fix:" in row["message"]
    assert os.path.exists(tmp_path / "out" / "results.csv")
