"""The output folder under stress: a full disk, a torn journal, two runs at once, Ctrl-C and SIGTERM.
Whatever happens, every journal line is a whole row, results files are whole or absent, and
--resume finishes the keys without redoing any that finished."""

from __future__ import annotations

import json
import signal
import subprocess

import pandas as pd
import psutil
import pytest
from faultkit import finished, journal_rows, keys_arg, listeners, no_traceback, rows_in, sdt, start, wait_for

from sdt_build.run.results import OutputFolder

OK_KEYS = [("ok", n) for n in range(8)]  # rows of about 600 bytes: more than a page


@pytest.fixture
def small_disk(tmp_path):
    """A 32 MiB tmpfs (room for a whole run's outputs, report and figures included); ``fill(free)`` leaves
    about ``free`` bytes, ``free_all()`` empties the filler."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], check=True)
    filler = mount / "filler"

    class Disk:
        path = mount

        @staticmethod
        def fill(free: int) -> None:
            import os

            stats = os.statvfs(mount)
            filler.write_bytes(b"\0" * max(0, stats.f_bavail * stats.f_frsize - free))

        @staticmethod
        def free_all() -> None:
            filler.unlink()

    yield Disk
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_named_and_loses_no_finished_row(trouble, small_disk):
    folder = trouble()
    output = small_disk.path / "out"
    output.mkdir()
    (output / ".sdt-run.lock").write_text("x")  # their pages are taken: what is left is for the journal
    (output / ".sdt-output.json").write_text('{"project": "faults"}\n')
    small_disk.fill(free=4096)  # one page: room for about four rows
    done = sdt("run", str(folder), "--output", str(output), *keys_arg(*OK_KEYS))
    assert done.returncode == 5, done.stderr[-2000:]
    assert "SDT-E515" in done.stderr and "disk is full" in done.stderr and "--resume" in done.stderr
    no_traceback(done.stderr)
    kept = journal_rows(output)  # every line whole, however the disk filled
    assert 0 < len(kept) < len(OK_KEYS)
    assert not list(output.glob(".*partial")), "a half-written results file was left behind"
    if (output / "results.csv").exists():  # never half a file passed off as results
        assert len(pd.read_csv(output / "results.csv")) == len(kept)

    small_disk.free_all()
    with open(output / "journal.jsonl", "ab") as journal:  # and a crash in the middle of a write
        journal.write(b'{"key": ["ok", 7], "status": "ok", "capac')
    again = sdt("run", str(folder), "--output", str(output), "--resume", *keys_arg(*OK_KEYS))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "torn line" in again.stderr  # reported, and that key ran again
    assert any("torn line" in warning for warning in json.loads((output / "run.json").read_text())["warnings"])
    results = pd.read_csv(output / "results.csv")
    assert len(results) == len(OK_KEYS) and set(results["status"]) == {"ok"}
    assert results["key"].is_unique
    first_run = {json.dumps(row["key"]) for row in kept}
    redone = [row for row in journal_rows(output)[len(kept):] if json.dumps(row["key"]) in first_run]
    assert not redone, "finished keys ran again"


def test_a_second_run_on_the_same_output_is_refused(trouble, tmp_path):
    folder = trouble()
    output = tmp_path / "out"
    first = start("run", str(folder), "--output", str(output), *keys_arg(("late", 15)))
    wait_for(lambda: (output / ".sdt-run.lock").exists() and (output / ".sdt-run.lock").read_text())
    second = sdt("run", str(folder), "--output", str(output), *keys_arg(("ok", 2)), timeout=120)
    assert second.returncode == 5
    assert "SDT-E514" in second.stderr and f"pid {first.pid}" in second.stderr, second.stderr
    no_traceback(second.stderr)
    code, _, err = finished(first)
    assert code == 5, err[-2000:]  # its key fails late, on purpose (no SDT run needed here)
    results = pd.read_csv(output / "results.csv")
    assert results["stage"].tolist() == ["get_data"]  # the first run lost nothing
    OutputFolder(output, resume=True).close()  # the lock went with the first run


def test_ctrl_c_keeps_the_rows_and_resume_finishes(trouble, tmp_path):
    """(SIGTERM is probed on a docker run, where it must also remove the containers.)"""
    stop, code = signal.SIGINT, 130
    folder = trouble()
    output = tmp_path / "out"
    keys = [("ok", 1), ("sleep", 120), ("ok", 2)]
    running = start("run", str(folder), "--output", str(output), *keys_arg(*keys))
    wait_for(lambda: rows_in(output) >= 1)
    listening = listeners({running.pid} | {p.pid for p in psutil.Process(running.pid).children(recursive=True)})
    assert listening and all(address.startswith("127.0.0.1:") for address in listening), listening
    running.send_signal(stop)
    exit_code, _, err = finished(running, timeout=120)
    assert exit_code == code, err[-2000:]
    no_traceback(err)
    record = json.loads((output / "run.json").read_text())
    assert record["interrupted"] == stop.name
    kept = journal_rows(output)
    assert [row["key"] for row in kept] == [["ok", 1]] and kept[0]["status"] == "ok"
    assert len(pd.read_csv(output / "results.csv")) == 1

    again = sdt("run", str(folder), "--output", str(output), "--resume", *keys_arg(*keys),
                env={"SDT_FAULTS_FIXED": "1"})
    assert again.returncode == 0, again.stderr[-2000:]
    record = json.loads((output / "run.json").read_text())
    assert record["already_done"] == 1
    assert record["parallel_efficiency"] <= 1.0  # this run's rows only, not the earlier run's
    rows = journal_rows(output)
    assert [row["key"] for row in rows].count(["ok", 1]) == 1  # not redone
    assert len(pd.read_csv(output / "results.csv")) == 3


def test_a_ctrl_c_that_python_swallows_in_a_finalizer_still_stops_the_run():
    """A signal whose KeyboardInterrupt is raised while a ``__del__`` runs (a future the run loop
    dropped) is only printed by Python; the loop raises it again on its next turn."""
    import os
    import threading
    import time

    from sdt_build.interrupt import Interrupted, raise_if_lost, terminate_as_interrupt

    inside, sent = threading.Event(), threading.Event()

    class Dropped:
        def __del__(self):  # the signal arrives while this runs, however busy the machine
            inside.set()
            sent.wait(30)
            time.sleep(0.05)  # the handler runs here, at the next bytecode

    def send():
        inside.wait(30)
        os.kill(os.getpid(), signal.SIGINT)
        sent.set()

    suite = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, however the suite started
    try:
        with terminate_as_interrupt():
            raise_if_lost()  # nothing yet
            threading.Thread(target=send).start()
            Dropped()  # dropped at once: the interrupt is raised inside __del__, and ignored there
            with pytest.raises(Interrupted) as caught:
                raise_if_lost()
            assert caught.value.signal == "SIGINT" and caught.value.exit_code == 130
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # as it was
        raise_if_lost()  # and nothing is left pending after the block
    finally:
        signal.signal(signal.SIGINT, suite)


def test_a_read_only_output_folder_is_named_with_a_fix_that_fits(trouble, small_disk):
    """A finished output folder whose file system turned read-only: every command that writes there
    says so (not "free space") with its code, and no internal error."""
    folder = trouble()
    output = small_disk.path / "out"
    first = sdt("run", str(folder), "--output", str(output), *keys_arg(("echo", 1)))
    assert first.returncode == 5 and (output / "journal.jsonl").exists(), first.stderr[-2000:]
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk.path)], check=True)
    for args, code in ((("report", str(output)), "SDT-E542"),
                       (("run", str(folder), "--output", str(output), "--resume", *keys_arg(("echo", 1))), "SDT-E515"),
                       (("run", str(folder), "--output", str(output / "new"), *keys_arg(("echo", 1))), "SDT-E515")):
        done = sdt(*args)
        assert done.returncode == 5, (args, done.stderr[-2000:])
        assert code in done.stderr and "read-only" in done.stderr and "free space" not in done.stderr, done.stderr
        no_traceback(done.stderr)
        if code == "SDT-E515":  # --resume is offered where there are rows to keep, never for a new folder
            assert ("--resume" in done.stderr.split("fix:")[1]) == (not args[3].endswith("/new")), (args, done.stderr)
