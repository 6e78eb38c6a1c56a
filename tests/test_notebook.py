"""The user-journey notebook (examples/notebook/journey.ipynb) runs top to bottom on the real
local-csv example: check, build + smoke, an SDTDask run, the results table, the fleet report inline,
a site's heatmap."""

from __future__ import annotations

import base64
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import EXAMPLES

NOTEBOOK = EXAMPLES / "notebook" / "journey.ipynb"
SITES = {"TAEFC1044741": 490, "ZT162185000441C1203": 226}  # key -> days of data

pytestmark = [pytest.mark.docker, pytest.mark.slow]


class _Tables(HTMLParser):
    """Rows (lists of cell texts) of the HTML tables pandas displays."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _records(html: str) -> list[dict[str, str]]:
    parser = _Tables()
    parser.feed(html)
    header, *rows = parser.rows
    return [dict(zip(header[1:], row[1:])) for row in rows]  # column 0 is the index


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_journey_notebook_runs_on_the_local_csv_example(docker, base_image, monkeypatch):
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError as exc:
        pytest.fail(f"{exc.name} is missing: pip install nbclient nbformat ipykernel matplotlib")

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    stored = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in stored), "store the notebook without outputs"
    tags = [c.metadata.get("tags", [None])[0] for c in stored]
    for needed in ("setup", "check", "error", "build", "smoke", "run", "results", "report", "site", "heatmap",
                   "cleanup"):
        assert needed in tags, f"no code cell tagged {needed!r}"

    # The kernel must run this interpreter (the venv's), not another python3 on the machine.
    notebook.cells.insert(0, nbformat.v4.new_code_cell(
        f"import sys\nassert sys.executable == {sys.executable!r}, sys.executable\nprint(sys.executable)"))
    watched = {folder: _files(folder) for folder in (EXAMPLES / "local-csv", NOTEBOOK.parent)}
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # the check below is about files the notebook writes

    NotebookClient(notebook, kernel_name="python3", timeout=900,
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()

    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert _text(code[0]).strip() == sys.executable
    for cell in code:
        assert cell.execution_count is not None, cell.source[:80]
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, (cell.source[:80], errors)
    cells = {c.metadata["tags"][0]: c for c in code if c.metadata.get("tags")}

    checked = _text(cells["check"])
    assert "plug     LocalCSV" in checked and "client   Laptop" in checked
    assert "requirement findings: 0" in checked

    shown = _text(cells["error"])
    assert "code:  SDT-E106" in shown and "fix:   make it `def get_data(self, key)`" in shown

    assert re.search(r"image local-csv:[0-9a-f]{12}: (reused|built in)", _text(cells["build"]))
    assert "passed" in _text(cells["smoke"])

    assert "{'ok': 2, 'failed': 1}" in _text(cells["run"])

    results = cells["results"].outputs
    html = next(o.data["text/html"] for o in results if o.output_type == "execute_result")
    rows = {row["key"]: row for row in _records(html)}
    for site, days in SITES.items():
        row = rows[f"({site},)"]
        assert row["status"] == "ok", row
        assert float(row["capacity"]) > 0, row
        assert float(row["num_days"]) == days, row
        assert 0 <= float(row["quality score"]) <= 1, row
        assert row["inverter clipping"] in ("True", "False"), row
    missing = rows["(NO_SUCH_SITE,)"]
    assert missing["status"] == "failed" and missing["stage"] == "get_data", missing

    shown = next(o.data["text/html"] for o in cells["report"].outputs if o.output_type == "execute_result")
    assert shown.startswith("<iframe srcdoc=") and "SDT fleet report" in shown and "failure-group" in shown
    assert "data:image/png;base64," in shown and "&lt;svg" in shown  # SDT's figures and the fleet's plots
    assert re.search(r"^report: .+report\.html \(\d+\.\d\d MB\)$", _text(cells["report"]), re.M)

    local = re.search(r"capacity ([\d.]+) kW \(the run's row says ([\d.]+)\)", _text(cells["site"]))
    assert local and local.group(1) == local.group(2) and float(local.group(1)) > 0

    pngs = [o.data["image/png"] for o in cells["heatmap"].outputs if "image/png" in o.get("data", {})]
    assert pngs, "the heatmap cell shows no image"
    png = base64.b64decode(pngs[0])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000

    output = Path(re.search(r"^outputs: (.+)$", _text(cells["setup"]), re.M).group(1))
    assert output.name.startswith("sdt-journey-") and not output.exists(), "the run's temporary folder is left"
    for folder, before in watched.items():
        assert _files(folder) == before, f"the notebook wrote into {folder}"
