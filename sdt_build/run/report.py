"""The fleet report: one self-contained HTML page of a run's output folder.

Counts and wall time; failures grouped by stage and cause, each with an example and its fix;
distributions of SDT's report values; keys by runtime; SDT's own figures of the keys that kept
them; the run record. Plots are matplotlib SVG (histograms and bars: their size does not grow with
the number of keys) and SDT's PNG figures, all inline, so the page opens with no network and no
JavaScript. The page's HTML is ``templates/report.html.j2``.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sdt_build.resources import render_template
from sdt_build.run.results import (PERFORMANCE, PLOTS, RECORD, REPORT, WARNINGS_LOG, discard, plot_folder, read_journal,
                                   results_table)
from sdt_build.runtime.errors import RunFailure, unwritable
from sdt_build.runtime.keys import key_id, key_text
from sdt_build.runtime.redact import redact
from sdt_build.runtime.rows import SECONDS, Row
from sdt_build.runtime.task import PLOTS as FIGURES

TOTAL = f"{SECONDS}total"
HISTOGRAMS = {"capacity": "capacity (kW)", "quality score": "data quality score", "clearness score":
              "clearness score", "clipped fraction": "clipped fraction", "num_days": "days of data"}
FLAGS = ("inverter clipping", "time shift correction", "capacity change", "data quality warning")
SLOWEST = 25  # keys listed by runtime (every key is in results.csv)
GROUPS = 20  # failure groups shown; the rest are summed
FIGURE_KEYS = 6  # keys whose SDT figures the page shows at most
# What to do about a failure at a stage whose message carries no fix of its own.
STAGE_FIXES = {
    "get_data": "the plug could not fetch this key's data: try the key alone with `sdt-build smoke DIR "
                "--sample-key KEY` and fix get_data or the key",
    "make DataHandler": "SDT could not take what get_data returned: return a DataFrame with a DatetimeIndex "
                        "and a numeric power column",
    "run_pipeline": "SDT's pipeline could not analyse this data (too short, constant, or mostly missing): "
                    "look at the key's data; pipeline options go under [run_pipeline] in sdt.toml",
    "report": "SDT's report failed after its pipeline: look at the key's data and SDT's message",
    "loss analysis": "the loss factor analysis needs more than a year of clean data: run without "
                     "--loss-analysis for such keys",
}
DEPENDENCY_FIX = "install the same version of {package} on this machine and the workers (`sdt-build smoke`)"


@dataclass(frozen=True)
class Written:
    path: Path
    size: int
    keys: int


def failure_groups(table: pd.DataFrame, limit: int | None = None) -> list[dict[str, Any]]:
    """Failed keys grouped by stage and error type, largest first: count, an example key and message, the fix."""
    if not len(table) or "status" not in table:
        return []
    failed = table[table["status"] == "failed"]
    if not len(failed):
        return []
    stage = failed["stage"].fillna("unknown")
    error = failed["error_type"].fillna("unknown") if "error_type" in failed else pd.Series("unknown", failed.index)
    groups = []
    for (where, cause), rows in failed.groupby([stage, error], sort=False):
        first = rows.iloc[0]
        message = str(first.get("message") or cause)
        groups.append({"stage": where, "error_type": cause, "count": len(rows), "key": list(first["key"]),
                       "key_text": key_text(first["key"]),
                       "example": message, "fix": _fix(where, message, first.get("dependency"))})
    groups.sort(key=lambda g: -g["count"])
    return groups[:limit] if limit else groups


def _fix(stage: str, message: str, dependency: Any) -> str:
    if "Fix: " in message:
        return message.split("Fix: ", 1)[1].split(". The backend says")[0].strip()
    if isinstance(dependency, str) and dependency:
        return DEPENDENCY_FIX.format(package=dependency)
    return STAGE_FIXES.get(stage, "read the key's message and traceback in results.csv")


def load(folder: Path) -> tuple[pd.DataFrame, dict]:
    """The rows (last of each key, from the journal) and the run record of an output folder."""
    journal = folder / "journal.jsonl"
    if not journal.is_file():
        raise RunFailure("SDT-E540", f"{folder} holds no run results (no journal.jsonl)",
                         "pass the folder a run wrote (`sdt-build run DIR --output FOLDER`; default "
                         "sdt-results/<name>)")
    rows, _ = read_journal(journal, Row.flat)
    table = results_table(rows.values())
    record: dict = {}
    if (folder / RECORD).is_file():
        try:
            record = json.loads((folder / RECORD).read_text())
        except ValueError:
            record = None
        if not isinstance(record, dict):
            record = {"warnings": [f"{RECORD} is unreadable: the run record is left out"]}
    return table, record


def make_report(folder: Path, keys: list[tuple] | None = None, target: Path | None = None) -> Written:
    """``sdt-build report``: the page of an output folder, from its files."""
    table, record = load(folder)
    return write_report(folder, table, record, keys, target)


def write_report(folder: Path, table: pd.DataFrame, record: dict, keys: list[tuple] | None = None,
                 target: Path | None = None) -> Written:
    """Render the page to ``target`` (default report.html in the folder), whole or not at all."""
    if keys:
        missing = [k for k in keys if not _figures(folder, k)]
        if missing:
            raise RunFailure("SDT-E541", f"no SDT figures were kept for {', '.join(key_id(k) for k in missing)}",
                             "figures are drawn on the workers while a key runs (the first keys, and those named "
                             "with --plot-key): run the key again with `sdt-build run DIR --key K --plot-key K "
                             "--output OTHER`, or pick a key from plots/ in the output folder")
    html = redact(render(folder, table, record, keys))
    target = target or folder / REPORT
    partial = target.with_name(f".{target.name}.partial")
    try:
        partial.write_text(html, "utf-8")
        partial.replace(target)
    except OSError as exc:
        discard(partial)
        why, fix = unwritable(exc)
        raise RunFailure("SDT-E542", f"cannot write the report {target}: {why}",
                         f"{fix}, or pass --out FILE elsewhere") from exc
    return Written(target, len(html.encode()), len(table))


def render(folder: Path, table: pd.DataFrame, record: dict, keys: list[tuple] | None = None) -> str:
    """The page's HTML."""
    import matplotlib

    matplotlib.rcParams.update({"svg.fonttype": "none", "font.size": 9, "svg.hashsalt": "sdt-build"})
    counts = {str(k): int(v) for k, v in table["status"].value_counts().items()} if len(table) else {}
    groups = failure_groups(table)
    shown = groups[:GROUPS]
    other = sum(g["count"] for g in groups[GROUPS:])
    return render_template(
        "report.html.j2", html=True,
        title=f"{record.get('project') or folder.name}: SDT fleet report",
        record=record, folder=str(folder), counts=counts, keys=len(table),
        wall=record.get("seconds"), efficiency=record.get("parallel_efficiency"),
        status_plot=_status_plot(table), stage_plot=_stage_plot(table),
        failures=shown, other_failures=other, failure_plot=_failure_plot(shown) if shown else None,
        distributions=[p for p in [_histogram(table, c, label) for c, label in HISTOGRAMS.items()]
                       + [_flags_plot(table)] if p],
        runtime_plot=_histogram(table, TOTAL, "seconds per key (all stages)"),
        slowest=_slowest(table), stages=[c[len(SECONDS):] for c in _stage_columns(table)],
        figures=_figure_sections(folder, table, keys),
        warnings=_warning_groups(folder), memory=record.get("memory_warnings"),
        record_json=json.dumps(record, indent=1, default=str, sort_keys=True),
        performance=PERFORMANCE if (folder / PERFORMANCE).is_file() else None,
    )


# --- plots: small SVGs whose size does not depend on the number of keys -------------------------

def _svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # inline: no XML prologue or doctype


def _figure(width: float = 4.2, height: float = 2.6):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    return figure, figure.subplots()


def _counts(axis, plot: str) -> None:
    """An axis that counts keys: whole numbers only (its id, PLOT-keys-axis, lets a test read them)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))
    axis.set_gid(f"{plot}-keys-axis")


def _status_plot(table: pd.DataFrame) -> str:
    figure, axes = _figure()
    counts = table["status"].value_counts() if len(table) else pd.Series(dtype=int)
    colors = ["#2e7d32" if s == "ok" else "#c62828" for s in counts.index]
    axes.barh([str(s) for s in counts.index], counts.values, color=colors)
    for y, value in enumerate(counts.values):
        axes.annotate(f" {value}", (value, y), va="center")
    axes.set_xlim(0, max(counts.max() if len(counts) else 1, 1) * 1.15)  # room for the counts
    _counts(axes.xaxis, "status")
    axes.set_xlabel("keys")
    axes.set_title("keys by status")
    return _svg(figure)


def _stage_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c.startswith(SECONDS) and c != TOTAL]


def _stage_plot(table: pd.DataFrame) -> str | None:
    """Median seconds per stage; None when there is no bar to draw (no key timed a stage, or every
    median is 0 s): the page says so instead."""
    columns = _stage_columns(table)
    medians = [float(pd.to_numeric(table[c], errors="coerce").median()) for c in columns]
    pairs = [(c[len(SECONDS):], m) for c, m in zip(columns, medians) if not math.isnan(m)]
    if not any(m > 0 for _, m in pairs):
        return None
    figure, axes = _figure()
    axes.barh([p[0] for p in pairs], [p[1] for p in pairs], color="#1565c0")
    axes.set_xlabel("seconds (median over keys)")
    axes.set_title("time per stage")
    return _svg(figure)


def _failure_plot(groups: list[dict]) -> str:
    figure, axes = _figure(6, 0.5 + 0.32 * len(groups))
    labels = [f"{g['stage']}: {g['error_type']}" for g in groups][::-1]
    axes.barh(labels, [g["count"] for g in groups][::-1], color="#c62828")
    _counts(axes.xaxis, "failures")
    axes.set_xlabel("failed keys")
    axes.set_title("failures by stage and cause")
    return _svg(figure)


def _histogram(table: pd.DataFrame, column: str, label: str) -> str | None:
    if column not in table:
        return None
    values = pd.to_numeric(table[column], errors="coerce").dropna()
    values = values[values.map(math.isfinite)]
    if not len(values):
        return None
    figure, axes = _figure()
    axes.hist(values, bins=min(40, max(5, int(math.sqrt(len(values))))), color="#1565c0")
    _counts(axes.yaxis, re.sub(r"\W+", "-", column))
    axes.set_xlabel(label)
    axes.set_ylabel("keys")
    axes.set_title(f"{label}: median {values.median():.3g}, {len(values)} keys")
    return _svg(figure)


def _flags_plot(table: pd.DataFrame) -> str | None:
    """How many keys raised each flag: bars of yes and no, the yes count right of each bar, the
    legend below the plot (never over a bar). Its parts carry ids (flag-bar-*, flag-count-*,
    flag-legend, flag-area) so a browser can check that none covers another."""
    present = [f for f in FLAGS if f in table and table[f].notna().any()]
    if not present:
        return None
    figure, axes = _figure(4.8, 2.8)
    true, false = [], []
    for flag in present:
        values = table[flag].dropna().map(lambda v: str(v).lower() in ("true", "1", "1.0"))
        true.append(int(values.sum()))
        false.append(int((~values).sum()))
    yes = axes.barh(present, true, color="#ef6c00", label="yes")
    no = axes.barh(present, false, left=true, color="#90a4ae", label="no")
    totals = [t + f for t, f in zip(true, false)]
    for y, (value, total) in enumerate(zip(true, totals)):
        axes.annotate(f" {value} yes", (total, y), va="center", gid=f"flag-count-{y}")
    axes.set_xlim(0, max(totals + [1]) * 1.3)  # room for the counts right of the longest bar
    for number, bar in enumerate([*yes, *no]):
        bar.set_gid(f"flag-bar-{number}")
    axes.patch.set_gid("flag-area")
    _counts(axes.xaxis, "flag")
    axes.set_xlabel("keys")
    legend = axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2, frameon=False)
    legend.set_gid("flag-legend")
    axes.set_title("flags: clipping, time shifts, capacity changes, quality")
    return _svg(figure)


# --- tables -----------------------------------------------------------------------------------

def _slowest(table: pd.DataFrame) -> list[dict]:
    if TOTAL not in table or not len(table):
        return []
    ordered = table.assign(_t=pd.to_numeric(table[TOTAL], errors="coerce")).sort_values("_t", ascending=False)
    rows = []
    for _, row in ordered.head(SLOWEST).iterrows():
        rows.append({"key": key_text(row["key"]), "status": row["status"], "total": _number(row[TOTAL]),
                     "stages": [_number(row[c]) for c in _stage_columns(table)]})
    return rows


def _number(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(number) else f"{number:.1f}"


def _warning_groups(folder: Path) -> list[dict]:
    """Warnings of warnings.log, alike when they differ only in numbers: an example of each, with how
    many keys (or workers) raised it."""
    path = folder / WARNINGS_LOG
    if not path.is_file():
        return []
    groups: dict[str, dict] = {}
    for line in path.read_text(errors="replace").splitlines():
        source, _, text = line.partition("\t")
        message = text.rsplit(" (×", 1)[0]
        group = groups.setdefault(re.sub(r"\d+(\.\d+)?", "#", message), {"message": message, "sources": set()})
        group["sources"].add(source)
    ordered = sorted(groups.values(), key=lambda g: -len(g["sources"]))
    return [{"message": g["message"], "count": len(g["sources"]), "example": _source_text(sorted(g["sources"])[0])}
            for g in ordered]


def _source_text(source: str) -> str:
    """A warnings.log source as the page shows it: a key as written (its line holds its key_id), or a worker."""
    try:
        return key_text(json.loads(source))
    except ValueError:
        return source


# --- SDT's own figures ------------------------------------------------------------------------

def _figures(folder: Path, key: tuple) -> dict[str, str]:
    where = plot_folder(folder, key)
    return {name: base64.b64encode((where / f"{name}.png").read_bytes()).decode()
            for name in FIGURES if (where / f"{name}.png").is_file()}


def _figure_sections(folder: Path, table: pd.DataFrame, keys: list[tuple] | None) -> list[dict]:
    """The chosen keys' figures, else those of the first keys that kept some (in the table's order)."""
    if not (folder / PLOTS).is_dir():
        return []
    kept = {path.name for path in (folder / PLOTS).iterdir()}  # a few folders, however many keys
    candidates = keys or (k for k in (table["key"] if len(table) else ()) if plot_folder(folder, k).name in kept)
    sections = []
    for number, key in enumerate(candidates, 1):
        figures = _figures(folder, key)
        if figures:
            sections.append({"key": key_text(key), "figures": figures})
        if not keys and (len(sections) >= FIGURE_KEYS or number >= len(kept)):
            break
    return sections
