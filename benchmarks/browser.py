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


def chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        raise RuntimeError("chromium is missing: run `bash scripts/test-services.sh` (Debian's chromium)")
    return path


def open_page(page_file: Path, screenshot: Path | None = None) -> Opened:
    """Open ``page_file`` in a fresh headless Chromium and describe what it shows."""
    from playwright.sync_api import sync_playwright

    opened = Opened()
    with tempfile.TemporaryDirectory(prefix="sdt-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=chromium(), headless=True, args=ARGS, viewport={"width": 1280, "height": 900})
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
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            context.close()
    return opened
