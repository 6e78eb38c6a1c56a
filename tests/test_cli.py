"""The CLI as users and CI call it."""

from __future__ import annotations

import json
import re
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
    from sdt_build.runtime.keys import read_keys_file

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


def test_init_help_lists_every_example_and_client_it_takes():
    from sdt_build.resources import client_names, example_names

    shown = re.sub(r"\s+", " ", run("init", "--help").stdout)
    examples, clients = shown.split("--client")
    for name in example_names(starters=False):
        assert re.search(rf"[ ,]{name}[,.]", examples), name
    for name in client_names():
        assert re.search(rf"[ ,]{name}[,.]", clients), name
    assert {"slurm", "kubernetes"} <= set(client_names()) and "broken-old-numpy" in example_names(starters=False)


def test_init_scaffolds_name_the_new_folder_and_project(tmp_path):
    """Every example (the broken ones too) and every example client: the scaffold's text names the
    folder it was written to and its project, never the example's folder or the name the example
    clients are written for."""
    from sdt_build.resources import SCAFFOLD_NAME, client_names, example_names

    made = [(example, None) for example in example_names(starters=False)] + [("local-csv", c) for c in client_names()]
    for number, (example, client) in enumerate(made):
        target = tmp_path / f"field{number}" / "pv-fleet"
        done = run("init", str(target.relative_to(tmp_path)), "--example", example,
                   *(["--client", client] if client else []), "--json", cwd=tmp_path)
        assert done.returncode == 0, (example, client, done.stdout, done.stderr)
        for path in target.rglob("*"):
            text = path.read_text("utf-8") if path.suffix in (".py", ".md", ".toml") else ""
            assert f"examples/{example}" not in text and SCAFFOLD_NAME not in text, (example, client, path.name)
            assert "../docs/" not in text, (example, path.name)  # a link a scaffold cannot follow
        readme = target / "README.md"
        if readme.exists() and "sdt-build check" in readme.read_text():
            assert f"sdt-build check field{number}/pv-fleet" in readme.read_text(), example
        written = (target / "client.py").read_text()
        if client == "slurm":
            assert 'venv = "/shared/envs/pv-fleet"' in written
        if client in ("fargate", "azure"):
            assert re.search(r'image = "[^"]*/pv-fleet:latest"', written), client


def test_docs_prints_every_topic_offline_and_lists_them():
    topics = json.loads(run("docs", "--json").stdout)["topics"]
    assert {t["topic"] for t in topics} == {p.stem for p in (EXAMPLES.parent / "docs").glob("*.md")}
    listed = run("docs")
    assert listed.returncode == 0 and all(t["topic"] in listed.stdout for t in topics)
    for reference in ("running", "running.md", "docs/running.md#keys"):
        done = run("docs", reference)
        assert done.returncode == 0 and done.stdout == (EXAMPLES.parent / "docs" / "running.md").read_text()
    unknown = run("docs", "nope", "--json")
    assert unknown.returncode == 1 and json.loads(unknown.stdout)["error"]["code"] == "SDT-E120"
    entry = run("docs", "sdt-e203")
    assert entry.stdout.startswith("### SDT-E203 — ") and "**Fix:**" in entry.stdout
    assert "SDT-E204" not in entry.stdout  # that entry alone
    assert run("docs", "SDT-E000").returncode == 1


def test_shell_completion_offers_the_shipped_names():
    import os

    def complete(*words: str) -> list[str]:
        env = {**os.environ, "COMP_WORDS": " ".join(["sdt-build", *words]), "COMP_CWORD": str(len(words)),
               "_SDT_BUILD_COMPLETE": "bash_complete"}
        return [line.split(",", 1)[1] for line in run(env=env).stdout.split()]

    assert complete("init", "x", "--client", "s") == ["scheduler", "slurm"]
    assert complete("init", "x", "--example", "broken-o") == ["broken-old-numpy"]
    assert complete("docs", "ru") == ["running"]
