"""The fleet report of a real run (real SDT on slices of the two real sites, a local Dask cluster),
opened in headless Chromium; the console of that run; the dashboard while it runs; `sdt-build report`."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from benchmarks.browser import open_page
from conftest import ROOT, SDT
from test_runner import SHORT_PLUG

ARTIFACTS = ROOT / "artifacts"  # gitignored: the screenshot a run of this test leaves
PLOT_SECTIONS = ("overview", "failures", "distributions", "runtime", "figures")
# The plug warns as third-party code does; SDT and pandas add their own.
WARNING_PLUG = SHORT_PLUG.replace("        site, days = key\n", "        site, days = key\n"
                                  "        import warnings\n"
                                  "        warnings.warn(f'slice of {days} days', UserWarning)\n")
CLIENT = '''
from sdt_build.clients import LocalClient


class Small(LocalClient):
    workers = 2
    threads_per_worker = 1
    memory_per_worker = "7GiB"
'''
KEYS = [["TAEFC1044741", 60], ["missing", 10], ["ZT162185000441C1203", 45], ["TAEFC1044741", 0]]
THIRD_PARTY = re.compile(r"\w+Warning\b|- WARNING -|warnings\.warn")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """`sdt-build run` over ok and failing keys, read while it runs: (stdout+stderr, exit code, output
    folder, what the dashboard answered)."""
    folder = tmp_path_factory.mktemp("report")
    project = folder / "fleet"
    project.mkdir()
    (project / "dataplug.py").write_text(WARNING_PLUG)
    (project / "client.py").write_text(CLIENT)
    (folder / "keys.json").write_text(json.dumps(KEYS))
    output = folder / "out"
    process = subprocess.Popen([SDT, "run", str(project), "--keys", str(folder / "keys.json"), "--output",
                                str(output)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dashboard: dict = {}
    lines: list[str] = []

    def read_stderr() -> None:
        for line in process.stderr:
            lines.append(line)
            found = re.match(r"dashboard: (http://\S+)", line)
            if found:
                with urllib.request.urlopen(found.group(1), timeout=10) as answer:
                    dashboard.update(link=found.group(1), status=answer.status, page=answer.read().decode())

    reader = threading.Thread(target=read_stderr)
    reader.start()
    stdout = process.stdout.read()
    process.wait(timeout=600)
    reader.join(timeout=30)
    return stdout + "".join(lines), process.returncode, output, dashboard


def test_run_console_shows_no_third_party_warnings(run):
    console, code, output, dashboard = run
    assert code == 5, console
    assert not THIRD_PARTY.findall(console), console
    table = pd.read_json(output / "journal.jsonl", lines=True)
    warned = table[table["status"] == "ok"]
    assert len(warned) == 2 and warned["warnings"].str.contains("UserWarning: slice of").all(), table
    log = (output / "warnings.log").read_text().splitlines()
    for _, row in table.dropna(subset=["warnings"]).iterrows():
        for line in row["warnings"].splitlines():
            assert f"{json.dumps(row['key'])}\t{line}" in log
    summary = console.replace("\n", "")
    assert re.search(r"\d key\(s\) raised warnings \(in their rows and .*warnings\.log\)", summary)


def test_dashboard_is_served_on_loopback_while_the_run_goes(run):
    console, _, output, dashboard = run
    assert dashboard.get("link", "").startswith("http://127.0.0.1:"), console
    assert dashboard["status"] == 200 and "Dask" in dashboard["page"]
    assert json.loads((output / "run.json").read_text())["dashboard"] == dashboard["link"]


def test_report_renders_in_chromium(run):
    console, _, output, _ = run
    page = output / "report.html"
    assert f"report: {page}" in console.replace("\n", "")
    assert page.stat().st_size < 5_000_000
    screenshot = ARTIFACTS / "report.png"
    opened = open_page(page, screenshot)
    assert opened.console_errors == [] and opened.outside_requests == []
    for section in PLOT_SECTIONS:
        assert opened.sections[section]["drawn"] >= 1, (section, opened.sections)
    assert opened.sections["record"]["text"] > 0 and opened.sections["warnings"]["text"] > 0
    table = pd.read_json(output / "journal.jsonl", lines=True)
    failed = table[table["status"] == "failed"]
    groups = failed.groupby(["stage", "error_type"]).size()
    assert len(opened.failure_groups) == len(groups) >= 1
    for (stage, error), count in groups.items():
        assert any(row.split("\t")[:3] == [stage, error, str(count)] for row in opened.failure_groups), \
            (stage, error, opened.failure_groups)
    assert screenshot.stat().st_size > 50_000


def test_report_command(run, tmp_path):
    _, _, output, _ = run
    chosen = tmp_path / "chosen.html"
    done = subprocess.run([SDT, "report", str(output), "--key", '["ZT162185000441C1203", 45]', "--out", str(chosen),
                           "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["report"] == str(chosen) and payload["keys"] == len(KEYS)
    text = chosen.read_text()
    assert text.count("data:image/png;base64,") == 2  # the chosen key's heatmap and daily energy
    assert re.findall(r'alt="heatmap of ([^"]+)"', text) == ["ZT162185000441C1203, 45"]  # the key as written

    quiet = subprocess.run([SDT, "report", str(output), "--out", str(tmp_path / "q.html"), "--quiet"],
                           capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""

    never_kept = subprocess.run([SDT, "report", str(output), "--key", '["missing", 10]'], capture_output=True,
                                text=True, timeout=120)
    assert never_kept.returncode == 5 and "SDT-E541" in never_kept.stderr
    nothing = subprocess.run([SDT, "report", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert nothing.returncode == 5 and "SDT-E540" in nothing.stderr and "Traceback" not in nothing.stderr


# --- the page's layout, on rows written as a run writes them (no run needed) -------------------

FLAGS_OF = [(True, False, False, False), (False, True, False, False), (True, False, True, False),
            (False, False, False, False), (False, False, False, True)]
LONG = "[Errno 2] No such file or directory: '/srv/pv_archive/" + "_".join(["site_TAEFC1044741_power"] * 8) + ".csv'"


def _rows_folder(folder: Path, rows) -> Path:
    folder.mkdir()
    (folder / "journal.jsonl").write_text("".join(json.dumps(row.to_record(), default=str) + "\n" for row in rows))
    return folder


def _fleet(folder: Path) -> Path:
    """Five sites that finished with SDT's flags, two that failed with a long message."""
    from sdt_build.run.report import FLAGS
    from sdt_build.runtime.rows import Row

    rows = [Row.done((f"SITE-{n}", [2011, 2012]), {"capacity": 4.5 + n, "quality score": 0.8, "num_days": 300 + n,
                                                  **dict(zip(FLAGS, flags))},
                     {"get_data": 1.0, "make DataHandler": 0.1, "run_pipeline": 20.0 + n, "report": 0.2,
                      "total": 21.3 + n}, "tcp://127.0.0.1:1")
            for n, flags in enumerate(FLAGS_OF)]
    rows += [Row.failed((f"SITE-{n}", [2011, 2012]), "get_data", OSError(LONG), {"get_data": 0.5, "total": 0.5},
                        "tcp://127.0.0.1:1") for n in (7, 8)]
    return _rows_folder(folder, rows)


def _count_labels(html: str) -> dict[str, list[str]]:
    """The tick labels of every axis that counts keys, by its id."""
    import xml.etree.ElementTree as ET

    labels = {}
    for svg in re.findall(r"<svg.*?</svg>", html, re.S):
        for axis in ET.fromstring(svg).iter():
            if axis.get("id", "").endswith("-keys-axis"):
                labels[axis.get("id")] = [t.text for t in axis.iter() if t.tag.endswith("text") and t.text
                                          and re.fullmatch(r"[−\-\d.]+", t.text.strip())]
    return labels


def test_report_layout_counts_and_keys(tmp_path):
    """Axes that count keys show whole numbers; keys read as written; with every key lost (no stage
    timed) the page says so instead of drawing an empty plot."""
    from sdt_build.run.report import make_report
    from sdt_build.runtime.rows import Row

    html = make_report(_fleet(tmp_path / "fleet")).path.read_text()
    labels = _count_labels(html)
    assert {"status-keys-axis", "failures-keys-axis", "flag-keys-axis", "capacity-keys-axis"} <= set(labels)
    for axis, ticks in labels.items():
        assert ticks and all(float(t.replace("−", "-")).is_integer() for t in ticks), (axis, ticks)
    assert "<td>SITE-7, [2011, 2012]</td>" in html and "[&#34;SITE" not in html

    lost = [Row.lost((f"SITE-{n}",), 2, "KilledWorker", "its worker died", None) for n in range(3)]
    at_once = [Row.failed((f"SITE-{n}",), "get_data", SystemExit(n), {"get_data": 0.0, "total": 0.0}, None)
               for n in range(2)] + [Row.failed(("tz",), "make DataHandler", ValueError("tz"),
                                                {"get_data": 0.05, "make DataHandler": 0.0, "total": 0.05}, None)]
    for name, rows in (("lost", lost), ("at-once", at_once)):
        html = make_report(_rows_folder(tmp_path / name, rows)).path.read_text()
        assert "time per stage" not in html and "no measurable time in any stage" in html, name


def test_report_warnings_show_keys_as_written(tmp_path):
    """The warnings table's example key reads as in every other table (``SITE-7, [2011, 2012]``), a
    worker as its address."""
    from sdt_build.run.report import make_report

    folder = _fleet(tmp_path / "fleet")
    (folder / "warnings.log").write_text('["SITE-7",[2011,2012]]\tUserWarning: slice (×2)\n'
                                         "worker tcp://127.0.0.1:1\tdistributed.worker: slow (×1)\n")
    html = make_report(folder).path.read_text()
    table = html.split('class="third-party-warnings"')[1].split("</table>")[0]
    assert "<td>SITE-7, [2011, 2012]</td>" in table and "<td>worker tcp://127.0.0.1:1</td>" in table, table
    assert "&#34;" not in table


@pytest.mark.parametrize("width", [700, 1280])
def test_report_layout_in_chromium(tmp_path, width):
    """At a narrow and a wide window: nothing makes the page scroll sideways, and no plot's legend
    or number covers a bar or leaves its axes."""
    from sdt_build.run.report import make_report

    page = make_report(_fleet(tmp_path / "fleet")).path
    html = page.read_text()
    assert all(f'id="flag-{part}"' in html for part in ("area", "legend", "bar-0", "count-0"))  # what is checked
    opened = open_page(page, width=width)
    assert opened.console_errors == []
    assert opened.sideways <= 0, f"the page is {opened.sideways} px wider than a {width} px window"
    assert opened.overlaps == [], opened.overlaps
    assert opened.sections["distributions"]["drawn"] >= 2
