"""What grows with a fleet stays in bounds, held at a small size (its figures at 100,000 keys come
from benchmarks/fleet_keys.py): a resume reads the journal once and only what it needs, a torn line
is found from the journal's end, the report looks only at the figures kept, and a run prints a
bounded table and records how long each output took to write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from faultkit import keys_arg, sdt


def _journal(folder: Path, rows, tail: bytes = b"") -> Path:
    folder.mkdir()
    journal = folder / "journal.jsonl"
    journal.write_bytes(b"".join(json.dumps(row.to_record()).encode() + b"\n" for row in rows) + tail)
    return journal


def test_a_resume_reads_each_keys_last_row_and_cuts_a_long_torn_line(tmp_path):
    from sdt_build.run.results import OutputFolder
    from sdt_build.runtime.errors import RunFailure
    from sdt_build.runtime.rows import Row

    done = Row.done(("a", 1), {"capacity": 5.0}, {"total": 1.0}, "w").but(plug="old")
    rows = [Row.done(("b",), {}, {"total": 1.0}, "w").but(plug="new"), done,
            Row.failed(("b",), "get_data", ValueError("gone"), {}, "w")]  # b's last row failed
    torn = b'{"key": ["c"], "status": "ok", "message": "' + b"x" * 200_000  # longer than a read from the end
    journal = _journal(tmp_path / "out", rows, b"not json\n" + torn)
    with pytest.raises(RunFailure) as refused:  # a refusal counts the lines, without reading the rows
        OutputFolder(tmp_path / "out", resume=False)
    assert refused.value.code == "SDT-E550" and "holds 5 row(s)" in refused.value.cause, refused.value.cause
    output = OutputFolder(tmp_path / "out", resume=True)
    try:
        output.start()
        assert journal.read_bytes().endswith(b"not json\n")  # the torn line cut, every whole line kept
        assert any(f"torn line ({len(torn)} bytes" in note for note in output.notes), output.notes
        finished = output.finished()
        assert finished == {ident: (row.ok, row.plug) for ident, row in output.rows().items()}
        assert finished == {'["a", 1]': (True, "old"), '["b"]': (False, None)}
        assert any("1 line(s)" in note and "unreadable" in note for note in output.notes)
        assert output.rows(Row.flat) == {ident: row.to_record() for ident, row in output.rows().items()}
    finally:
        output.close()


def test_the_report_looks_only_at_the_figures_kept(tmp_path, monkeypatch):
    """Of 3,000 keys one kept SDT's figures: the page shows them, having looked at that key alone."""
    from sdt_build.run import report
    from sdt_build.run.results import plot_folder
    from sdt_build.runtime.rows import Row

    rows = [Row.done((f"site-{n}",), {"capacity": 1.0 + n % 7}, {"total": 1.0}, "w") for n in range(3000)]
    folder = _journal(tmp_path / "fleet", rows).parent
    kept = plot_folder(folder, ("site-2900",))
    kept.mkdir(parents=True)
    (kept / f"{next(iter(report.FIGURES))}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    looked = []
    figures = report._figures
    monkeypatch.setattr(report, "_figures", lambda where, key: looked.append(key) or figures(where, key))
    html = report.make_report(folder).path.read_text()
    assert looked == [("site-2900",)]
    assert f'alt="{next(iter(report.FIGURES))} of site-2900"' in html


def test_a_run_of_many_keys_prints_a_bounded_table_and_times_its_outputs(trouble, tmp_path):
    from sdt_build.cli.run import TABLE_ROWS

    folder = trouble(workers=1)
    output = tmp_path / "out"
    keys = [("echo", n) for n in range(TABLE_ROWS + 10)]  # each fails at once, with no SDT work
    done = sdt("run", str(folder), "--output", str(output), "--plots", "0", *keys_arg(*keys))
    assert done.returncode == 5, done.stderr[-2000:]
    assert "echo, 0 " in done.stdout and f"echo, {TABLE_ROWS - 1} " in done.stdout
    assert f"echo, {TABLE_ROWS} " not in done.stdout
    assert f"… and 10 more rows: every row is in {output}/results.csv" in " ".join(done.stdout.split())
    written = json.loads((output / "run.json").read_text())["outputs"]
    assert set(written) == {"results.csv", "results.parquet", "report.html"}
    for name, figures in written.items():
        assert figures["bytes"] == (output / name).stat().st_size and figures["seconds"] >= 0
