"""Keys reach the plug as they were written. A CSV keys file and a bare ``--key`` give text, never
numbers, booleans or NaN (a serial like ``12E4`` or ``012345`` is asked for as itself); a JSON keys
file keeps JSON's types; NaN and Infinity, which are not JSON, are refused with a code; and every
line of the journal is strict JSON."""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path

from faultkit import no_traceback, sdt

from sdt_build import SDTDask
from sdt_build.clients import LocalClient
from sdt_build.runtime.errors import RunFailure

# Each written as a CSV field after "echo,": what the plug must receive, character for character.
WRITTEN = ["12E4", "1e5", "012345", "12345", "true", "NaN", "Infinity", "-Infinity", "null", " spaced ",
           "Zürich — 北京 ☀", "[2011, 2012]"]


def _strict(line: str) -> dict:
    """A journal line as strict JSON: NaN and Infinity are not JSON."""
    def refuse(constant: str):
        raise AssertionError(f"{constant} in the journal: {line[:300]}")

    return json.loads(line, parse_constant=refuse)


def _rows(output: Path) -> dict[str, dict]:
    """The journal's rows by key (as JSON text), each line checked as strict JSON; results.csv has the
    same keys."""
    rows = {json.dumps(row["key"]): row
            for row in map(_strict, (output / "journal.jsonl").read_text("utf-8").splitlines())}
    with open(output / "results.csv", newline="", encoding="utf-8") as file:
        cells = [json.dumps(list(ast.literal_eval(record["key"]))) for record in csv.DictReader(file)]
    assert sorted(cells) == sorted(rows), (cells, list(rows))
    return rows


def _id(key) -> str:
    return json.dumps(list(key))


def _received(row: dict) -> tuple:
    """The key as the trouble plug's get_data received it (its "echo" error quotes the repr)."""
    assert (row["status"], row["stage"], row["error_type"]) == ("failed", "get_data", "ValueError"), row
    return ast.literal_eval(row["message"].removeprefix("get_data received "))


def test_csv_keys_and_bare_key_arrive_as_written(trouble, tmp_path):
    folder = trouble(workers=1)
    keys = tmp_path / "keys.csv"
    with open(keys, "w", newline="", encoding="utf-8") as file:
        file.write("# kind,value\n")  # a comment line names the fields
        csv.writer(file).writerows(["echo", value] for value in WRITTEN)
        file.write("\n")  # a blank line is no key
    output = tmp_path / "out"
    done = sdt("run", str(folder), "--keys", str(keys), "--output", str(output),
               "--key", "12345", "--key", '["echo", 12E4, true, "012345"]', timeout=600)
    assert done.returncode == 5, done.stderr[-3000:]  # every key fails on purpose (the echo)
    no_traceback(done.stderr)
    rows = _rows(output)
    expected = [("echo", value) for value in WRITTEN]
    json_key = ("echo", 120000.0, True, "012345")
    assert set(rows) == {*map(_id, expected), _id(("12345",)), _id(json_key)}, list(rows)
    for key in expected:
        got = _received(rows[_id(key)])
        assert got == key and all(type(field) is str for field in got), (key, got)
    # a bare --key is one text field; one that starts like JSON is JSON, with JSON's types
    assert "'12345'" in rows[_id(("12345",))]["message"]
    got = _received(rows[_id(json_key)])
    assert got == json_key and [type(f) for f in got] == [str, float, bool, str], got


def test_json_keys_file_keeps_json_types_through_the_api(trouble, tmp_path):
    folder = trouble()
    keys = tmp_path / "keys.json"
    keys.write_text('[["echo", 12E4], ["echo", 12345], ["echo", 1.5], ["echo", true], ["echo", "12E4"], '
                    '["echo", [2011, 2012]]]')
    written = [["echo", 120000.0], ["echo", 12345], ["echo", 1.5], ["echo", True], ["echo", "12E4"],
               ["echo", [2011, 2012]]]
    client = LocalClient(workers=1, threads_per_worker=1, memory_per_worker="2GiB")
    result = SDTDask(folder, client=client).execute(keys, output_dir=tmp_path / "out")  # a path is a keys file
    assert not result.ok and len(result.table) == len(written)
    rows = _rows(tmp_path / "out")
    for key in written:
        got = _received(rows[_id(key)])
        assert got == tuple(key) and [type(f) for f in got] == [type(f) for f in key], (key, got)


def test_nan_and_infinity_are_refused_with_a_code(trouble, tmp_path):
    folder = trouble()
    for constant in ("NaN", "Infinity", "-Infinity"):
        keys = tmp_path / f"{constant}.json"
        keys.write_text(f'[["echo", 1], ["echo", {constant}]]')
        done = sdt("run", str(folder), "--dry-run", "--keys", str(keys))
        assert done.returncode == 5 and "SDT-E502" in done.stderr and constant in done.stderr, done.stderr
        no_traceback(done.stderr)
        given = sdt("run", str(folder), "--dry-run", "--key", f'["echo", {constant}]')
        assert given.returncode == 5 and "SDT-E516" in given.stderr, given.stderr
        no_traceback(given.stderr)
    huge = tmp_path / "huge.json"
    huge.write_text('[["echo", 1e999]]')  # valid JSON, but a float overflows to infinity
    done = sdt("run", str(folder), "--dry-run", "--keys", str(huge))
    assert done.returncode == 5 and "SDT-E516" in done.stderr, done.stderr
    no_traceback(done.stderr)
    (folder / "sdt.toml").write_text('name = "faults"\nkeys = [["echo", nan], ["echo", inf]]\n')  # TOML has both
    checked = sdt("check", str(folder), "--offline")
    assert checked.returncode == 1 and "SDT-E112" in checked.stderr and "sdt.toml keys" in checked.stderr
    no_traceback(checked.stderr)
    (folder / "sdt.toml").write_text('name = "faults"\n')
    try:
        SDTDask(folder).execute([("echo", float("nan"))], output_dir=tmp_path / "never")
    except RunFailure as exc:
        assert exc.code == "SDT-E516"
    else:
        raise AssertionError("a NaN key was accepted")
    assert not (tmp_path / "never").exists()


def test_csv_rule_has_no_header_guess(tmp_path):
    from sdt_build.runtime.keys import read_keys_file

    keys = tmp_path / "keys.csv"
    keys.write_text('site,year\n13,2011\n14,"[2011, 2012]"\n"#5",x\n# a comment\n\n', encoding="utf-8")
    assert read_keys_file(keys) == [("site", "year"), ("13", "2011"), ("14", "[2011, 2012]"), ("#5", "x")]
    single = tmp_path / "sites.csv"
    single.write_text("\ufeffalpha\n12E4\n1e5\n", encoding="utf-8")  # a byte-order mark is not part of a key
    assert read_keys_file(single) == [("alpha",), ("12E4",), ("1e5",)]
