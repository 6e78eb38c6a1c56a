"""A new user's own mistakes: each is named with its code and a fix by `check` (or by the key's row),
never an internal error, a traceback or a row that blames something else."""

from __future__ import annotations

import json

from faultkit import keys_arg, no_traceback, sdt


def _problems(folder) -> tuple[int, list[dict]]:
    done = sdt("check", str(folder), "--offline", "--json")
    no_traceback(done.stderr)
    return done.returncode, json.loads(done.stdout).get("problems", [])


def test_python_files_are_read_in_their_declared_encoding(trouble, tmp_path):
    """A helper in latin-1 with its encoding line works as Python runs it, on the workers too; one
    without the line is SDT-E117 naming it, from `check` (not an internal error from `run`)."""
    folder = trouble(name="encodings")
    (folder / "labels.py").write_bytes('# -*- coding: latin-1 -*-\nNAME = "café"\n'.encode("latin-1"))
    plug = (folder / "dataplug.py").read_text()
    (folder / "dataplug.py").write_text(plug.replace("import os\n", "import os\n\nimport labels\n", 1).replace(
        'raise ValueError(f"get_data received {key!r}")', 'raise ValueError(f"{labels.NAME} received {key!r}")'))
    code, problems = _problems(folder)
    assert code == 0 and not [p for p in problems if p["severity"] == "error"], problems
    ran = sdt("run", str(folder), "--output", str(tmp_path / "out"), *keys_arg(("echo", 1)))
    assert ran.returncode == 5, ran.stderr[-2000:]
    no_traceback(ran.stderr)
    row = json.loads((tmp_path / "out" / "journal.jsonl").read_text().splitlines()[0])
    assert "café received" in row["message"], row

    (folder / "labels.py").write_bytes('NAME = "café"\n'.encode("latin-1"))
    code, problems = _problems(folder)
    assert code == 1 and [(p["code"], p["file"]) for p in problems] == [("SDT-E117", "labels.py")], problems
    assert "coding" in problems[0]["fix"]
    ran = sdt("run", str(folder), "--output", str(tmp_path / "again"), *keys_arg(("echo", 1)))
    assert ran.returncode == 1 and "SDT-E117" in ran.stderr, ran.stderr[-2000:]
    no_traceback(ran.stderr)


def test_a_package_name_of_any_length_is_named_and_cut_short(trouble):
    """A name too long for a file or a URL is no package (not an internal error), and a megabyte of it
    is shown cut to its ends, in the console and in --json alike."""
    folder = trouble(name="long-names")
    (folder / "requirements.txt").write_text("a" * 300 + "\n")
    done = sdt("check", str(folder))
    assert done.returncode == 2 and "SDT-E205" in done.stderr, done.stderr[-2000:]
    no_traceback(done.stderr)

    (folder / "requirements.txt").write_text("b" * 1_000_000 + "\n")
    done = sdt("check", str(folder))
    assert done.returncode == 2 and "SDT-E205" in done.stderr and "(1000000 characters)" in done.stderr
    assert len(done.stdout + done.stderr) < 5_000
    as_json = sdt("check", str(folder), "--json")
    assert as_json.returncode == 2 and len(as_json.stdout) < 100_000
    assert json.loads(as_json.stdout)["findings"][0]["code"] == "SDT-E205"


def test_sys_exit_and_keyboard_interrupt_in_get_data_are_rows_that_name_them(trouble, tmp_path):
    """Not a dead worker per key and rows that blame memory: one failed row each, naming what the
    plug raised and the fix; the workers live on and the run ends at once."""
    folder = trouble(name="exits")
    output = tmp_path / "out"
    done = sdt("run", str(folder), "--output", str(output), "--retries", "2",
               *keys_arg(("exits", 3), ("exits", "no data"), ("interrupts",), ("echo", 1)), timeout=300)
    assert done.returncode == 5, done.stderr[-3000:]
    no_traceback(done.stderr)
    assert len(done.stderr.splitlines()) < 40, done.stderr[-3000:]
    rows = {json.dumps(row["key"]): row for row in
            (json.loads(line) for line in (output / "journal.jsonl").read_text().splitlines())}
    assert len(rows) == 4
    for key, kind in ((["exits", 3], "SystemExit"), (["exits", "no data"], "SystemExit"),
                      (["interrupts"], "KeyboardInterrupt")):
        row = rows[json.dumps(key)]
        assert (row["stage"], row["error_type"]) == ("get_data", kind), row
        assert kind in row["message"] and "raise an exception" in row["message"], row
        assert "memory" not in row["message"] and row.get("attempts", 1) == 1, row
    assert "received ('echo', 1)" in rows[json.dumps(["echo", 1])]["message"]
    for row in rows.values():  # the stage that raised holds its time (loading the plug included)
        stages = sum(v for k, v in row.items() if k.startswith("seconds ") and k != "seconds total")
        assert row["seconds total"] - stages < 0.02, row
    assert "worker" not in done.stderr.lower() or "lost" not in done.stderr.lower(), done.stderr


def test_a_dockerignore_that_leaves_out_what_the_workers_import_is_named(trouble, tmp_path):
    """dataplug.py, or a module of the folder it imports, left out by .dockerignore (or named like a
    secret) is SDT-E128 naming the file and the line; `run` refuses it before any worker starts."""
    folder = trouble(name="ignores")
    for text, lines, files in (("dataplug.py", [1], ["dataplug.py"]),
                               ("*.py", [1, 1], ["dataplug.py", "synthetic.py"]),
                               ("# helpers\nsynth*", [2], ["synthetic.py"]),
                               ("*.py\n!dataplug.py", [1], ["synthetic.py"]),
                               ("!synthetic.py\n*.py\n!dataplug.py", [2], ["synthetic.py"])):
        (folder / ".dockerignore").write_text(text + "\n")
        code, problems = _problems(folder)
        found = [(p["code"], p["file"], p["line"]) for p in problems if p["severity"] == "error"]
        assert code == 1 and found == [("SDT-E128", ".dockerignore", n) for n in lines], (text, problems)
        assert all(f"the workers import {file}," in p["cause"] for p, file in zip(problems, files)), problems
        assert ".dockerignore" in problems[0]["fix"]
    ran = sdt("run", str(folder), "--output", str(tmp_path / "out"), *keys_arg(("echo", 1)))
    assert ran.returncode == 1 and "SDT-E128" in ran.stderr and not (tmp_path / "out").exists(), ran.stderr
    no_traceback(ran.stderr)

    (folder / ".dockerignore").write_text("notes/\n*.csv\nclient.py\n")  # nothing the workers import
    assert _problems(folder)[0] == 0
    # Docker's idiom: leave out everything of a kind, then take back what is needed (the last line wins)
    (folder / "notes").mkdir()
    (folder / "notes" / "keep.py").write_text("")
    (folder / "notes" / "drop.py").write_text("")
    (folder / "scratch.py").write_text("")
    (folder / ".dockerignore").write_text("*.py\n!dataplug.py\n!synth*.py\nnotes\n!notes/keep.py\n")
    assert _problems(folder)[0] == 0
    built = sdt("build", str(folder), "--context-only", str(tmp_path / "ctx"))
    assert built.returncode == 0, built.stderr
    project = tmp_path / "ctx" / "project"
    copied = {p.relative_to(project).as_posix() for p in project.rglob("*.py")}
    assert copied == {"dataplug.py", "synthetic.py", "notes/keep.py"}, copied
    (folder / ".dockerignore").unlink()
    (folder / "credentials_store.py").write_text("TOKEN_FILE = 'token.txt'\n")
    (folder / "dataplug.py").write_text("import credentials_store\n" + (folder / "dataplug.py").read_text())
    code, problems = _problems(folder)
    assert code == 1 and [(p["code"], p["file"]) for p in problems] == [("SDT-E128", "credentials_store.py")]
    assert "rename" in problems[0]["fix"]


def test_an_output_folder_inside_the_project_leaves_the_content_hash_alone(trouble, tmp_path):
    """Results written into the project folder (any name, the owner file's or an older run's journal
    and run record) and Dask's scratch space never enter the image: the content hash stays put."""
    folder = trouble(name="inside")

    def content_hash() -> str:
        context = tmp_path / f"context-{len(list(tmp_path.glob('context-*')))}"
        done = sdt("build", str(folder), "--context-only", str(context), "--json")
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)["content_hash"]

    before = content_hash()
    ran = sdt("run", str(folder), "--output", str(folder / "my results"), *keys_arg(("echo", 1)))
    assert ran.returncode == 5 and (folder / "my results" / ".sdt-output.json").exists(), ran.stderr[-2000:]
    older = folder / "runs" / "2026-11"  # an output folder of a version before the owner file
    older.mkdir(parents=True)
    for name in ("journal.jsonl", "run.json", "results.csv"):
        (older / name).write_text("{}\n")
    (folder / "dask-scratch-space" / "worker-1").mkdir(parents=True)
    (folder / "dask-scratch-space" / "worker-1" / "storage.pkl").write_bytes(b"\0")
    assert content_hash() == before
    (folder / "notes.csv").write_text("a,b\n")  # the user's own files still count
    assert content_hash() != before


def test_an_unknown_run_pipeline_argument_is_named_before_any_key_runs(trouble, tmp_path):
    """Checked against SDT's own DataHandler.run_pipeline (the one installed here, else the pinned
    version's), with the nearest name; sdt.toml's table and SDTDask's keyword arguments alike."""
    import inspect

    from solardatatools import DataHandler

    from sdt_build import SDTDask
    from sdt_build.runtime.errors import ProjectError

    known = [name for name in inspect.signature(DataHandler.run_pipeline).parameters if name != "self"]
    folder = trouble(name="pipeline-args")
    settings = folder / "sdt.toml"
    settings.write_text(settings.read_text() + "\n[run_pipeline]\nfix_shift = true\nsolver = \"CLARABEL\"\n")
    code, problems = _problems(folder)
    assert code == 1 and [(p["code"], p["file"]) for p in problems] == [("SDT-E129", "sdt.toml")], problems
    assert "'fix_shift'" in problems[0]["cause"] and "did you mean 'fix_shifts'?" in problems[0]["fix"]
    assert all(name in problems[0]["fix"] for name in known)
    ran = sdt("run", str(folder), "--output", str(tmp_path / "out"), *keys_arg(("echo", 1)))
    assert ran.returncode == 1 and "SDT-E129" in ran.stderr and not (tmp_path / "out").exists(), ran.stderr
    no_traceback(ran.stderr)

    settings.write_text(settings.read_text().replace("fix_shift =", "fix_shifts ="))
    assert _problems(folder)[0] == 0
    try:
        SDTDask(folder).execute([("echo", 1)], output_dir=tmp_path / "api", verbos=True)
    except ProjectError as exc:
        assert exc.code == "SDT-E129" and "did you mean 'verbose'?" in exc.fix
    else:
        raise AssertionError("an unknown keyword argument ran")
    assert not (tmp_path / "api").exists()


def test_names_defined_nowhere_are_named_with_the_nearest_one(trouble):
    """A base class or a name imported from sdt_build that exists nowhere: SDT-E130 naming it, its
    line and the name meant (with its import), in dataplug.py and client.py alike."""
    folder = trouble(name="typos")
    plug, client = folder / "dataplug.py", folder / "client.py"
    original_plug, original_client = plug.read_text(), client.read_text()
    cases = [
        (plug, original_plug.replace("class Trouble(DataPlug)", "class Trouble(DataPlu)"),
         "DataPlu", "did you mean DataPlug? (`from sdt_build import DataPlug`)"),
        (plug, original_plug.replace("import DataPlug, EnvVar", "import DataPlug, EnvVar, DataPlg"),
         "DataPlg", "did you mean DataPlug?"),
        (client, original_client.replace("(LocalClient)", "(LocalClinet)"),
         "LocalClinet", "did you mean LocalClient? (`from sdt_build.clients import LocalClient`)"),
        (client, original_client.replace("from sdt_build.clients import", "from sdt_build.client import"),
         "sdt_build.client,", "did you mean sdt_build.clients?"),
    ]
    for path, text, name, fix in cases:
        plug.write_text(original_plug)
        client.write_text(original_client)
        path.write_text(text)
        code, problems = _problems(folder)
        named = [p for p in problems if p["code"] == "SDT-E130"]
        assert code == 1 and problems[0] == named[0], problems
        assert name in named[0]["cause"] and fix in named[0]["fix"] and named[0]["file"] == path.name, named
        original = original_plug if path == plug else original_client
        line = next(n for n, (new, old) in enumerate(zip(text.splitlines(), original.splitlines()), 1) if new != old)
        assert named[0]["line"] == line, (named, line)
