"""A page opened in headless Chromium (Debian's `chromium`, driven by playwright over the DevTools
protocol): console errors, requests that leave the file, load time, what each report section shows,
and a screenshot. Used by tests/test_report.py and benchmarks/bench_report.py."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# An empty profile and nothing that reaches the network on its own (the machine has none).
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@dataclass
class Opened:
    console_errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)  # anything not from the file itself
    load_ms: float = 0.0  # navigation start to the load event, as the page measured it
    sections: dict[str, dict[str, int]] = field(default_factory=dict)  # id -> plots (svg, img) and text length
    failure_groups: list[str] = field(default_factory=list)  # the failure table's rows as text
    sideways: int = 0  # pixels the page is wider than the window (it scrolls sideways when > 0)
    overlaps: list[str] = field(default_factory=list)  # plot parts that cover each other (OVERLAPS)


# A plot whose parts carry ids PLOT-area (the axes), PLOT-bar-N, PLOT-count-N (a bar's number) and
# PLOT-legend: no legend over a bar or a number, no number on a bar or outside the axes.
OVERLAPS = """() => {
    const box = e => e.getBoundingClientRect();
    const meet = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
    const within = (a, b) => a.left >= b.left - 1 && a.right <= b.right + 1
        && a.top >= b.top - 1 && a.bottom <= b.bottom + 1;
    const found = [];
    for (const area of document.querySelectorAll('svg [id$="-area"]')) {
        const plot = area.id.slice(0, -'-area'.length), svg = area.closest('svg');
        const parts = kind => [...svg.querySelectorAll(`[id^="${plot}-${kind}"]`)];
        const bars = parts('bar-'), counts = parts('count-'), legends = parts('legend');
        for (const legend of legends)
            for (const other of [...bars, ...counts])
                if (meet(box(legend), box(other))) found.push(`${legend.id} covers ${other.id}`);
        for (const count of counts) {
            if (!within(box(count), box(area))) found.push(`${count.id} leaves the plot area`);
            for (const bar of bars) if (meet(box(count), box(bar))) found.push(`${count.id} is on ${bar.id}`);
        }
    }
    return found;
}"""


def chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        raise RuntimeError("chromium is missing: run `bash scripts/test-services.sh` (Debian's chromium)")
    return path


def open_page(page_file: Path, screenshot: Path | None = None, width: int = 1280) -> Opened:
    """Open ``page_file`` in a fresh headless Chromium ``width`` pixels wide and describe what it shows."""
    from playwright.sync_api import sync_playwright

    opened = Opened()
    with tempfile.TemporaryDirectory(prefix="sdt-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=chromium(), headless=True, args=ARGS, viewport={"width": width, "height": 900})
        try:
            page = context.new_page()
            page.on("console", lambda m: opened.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: opened.console_errors.append(str(e)))
            page.on("request", lambda r: opened.outside_requests.append(r.url)
                    if not r.url.startswith(("file://", "data:")) else None)
            page.goto(page_file.resolve().as_uri(), wait_until="load")
            opened.load_ms = page.evaluate("() => { const n = performance.getEntriesByType('navigation')[0]; "
                                           "return n.loadEventEnd - n.startTime; }")
            opened.sections = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('section')]
                .map(s => [s.id, {plots: s.querySelectorAll('svg, img').length,
                                  drawn: [...s.querySelectorAll('svg, img')].filter(e => {
                                      const r = e.getBoundingClientRect(); return r.width > 50 && r.height > 50;
                                  }).length,
                                  text: s.innerText.length}]))""")
            opened.failure_groups = page.eval_on_selector_all("tr.failure-group", "rows => rows.map(r => r.innerText)")
            opened.sideways = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            opened.overlaps = page.evaluate(OVERLAPS)
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            context.close()
    return opened
