"""SDTDask: run SDT's pipeline for many keys on the client from client.py, losing no result."""

from __future__ import annotations

import importlib.util
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from sdt_build.clients.base import Client
from sdt_build.errors import ProjectError, RunFailure
from sdt_build.project import CLIENT_FILE, UserProject, load_project, normalize_key
from sdt_build.task import PlugBundle, run_key

JOURNAL = "journal.jsonl"
SUMMARY_CSV = "results.csv"


@dataclass(frozen=True)
class RunResult:
    """One row per key (``table``), and where the run wrote its files."""

    table: pd.DataFrame
    output_dir: Path | None
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.counts.get("failed", 0) == 0


def load_client(project: UserProject) -> Client:
    """Import client.py on this machine and create its client class."""
    path = project.client.file
    spec = importlib.util.spec_from_file_location(f"sdt_user_client_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ProjectError("SDT-E119", f"client.py raised {type(exc).__name__} on import: {exc}",
                           "fix client.py so that `python client.py` runs without error",
                           detail=traceback.format_exc()) from exc
    cls = getattr(module, project.client.name)
    if not (isinstance(cls, type) and issubclass(cls, Client)):
        raise ProjectError("SDT-E119", f"{project.client.name} in client.py is not a sdt_build client",
                           "subclass one of sdt_build.clients (LocalClient, DockerClient, …) so that "
                           "connect(image) returns a distributed.Client")
    return cls()


def journal_key(key: tuple) -> str:
    """A key as it is written to the journal and compared on resume."""
    return json.dumps(list(key), sort_keys=True, default=str)


class SDTDask:
    """The Python entry: ``SDTDask(folder).execute(keys)``.

    ``client`` overrides the one in client.py; ``image`` is the tag the scheduler and workers run
    (None: the client's own, or the local Python).
    """

    def __init__(self, path: str | Path, *, client: Client | None = None, image: str | None = None):
        self.project = load_project(path)
        self.client = client or load_client(self.project)
        self.image = image or self.client.image

    def execute(self, keys: Iterable[Any] | None = None, output_dir: str | Path | None = None,
                resume: bool = False, *, dask_client=None,
                on_row: Callable[[dict], None] = lambda _: None, **run_pipeline_kwargs: Any) -> RunResult:
        """Run every key; rows are appended to ``output_dir``/journal.jsonl as they finish."""
        kwargs = {"verbose": False, **self.project.settings.run_pipeline, **run_pipeline_kwargs}
        output = Path(output_dir) if output_dir else None
        done_rows = _read_journal(output / JOURNAL) if output and resume else []
        if output:
            output.mkdir(parents=True, exist_ok=True)
            if not resume and (output / JOURNAL).exists():
                (output / JOURNAL).unlink()
        started = time.perf_counter()
        owns_client = dask_client is None
        dask_client = dask_client or self.client.connect(self.image)
        try:
            bundle = PlugBundle.from_folder(self.project.root, self.project.code_files, self.project.plug.name)
            all_keys = self._keys(keys, dask_client, bundle)
            finished = {journal_key(normalize_key(r["key"])) for r in done_rows}
            todo = [k for k in all_keys if journal_key(k) not in finished]
            rows = list(done_rows) + self._submit(dask_client, bundle, todo, kwargs, output, on_row)
        finally:
            if owns_client:
                self.client.close()
        table = _table(rows)
        if output:
            table.to_csv(output / SUMMARY_CSV, index=False)
        counts = table["status"].value_counts().to_dict() if len(table) else {}
        return RunResult(table, output, time.perf_counter() - started, counts)

    def _keys(self, keys, dask_client, bundle: PlugBundle) -> list[tuple]:
        if keys is not None:
            chosen = [normalize_key(k) for k in keys]
        elif self.project.settings.keys:
            chosen = list(self.project.settings.keys)
        elif self.project.plug.has_keys:
            chosen = [normalize_key(k) for k in dask_client.submit(_plug_keys, bundle, pure=False).result()]
        else:
            chosen = []
        if not chosen:
            raise RunFailure("SDT-E501", "no keys to run",
                             "pass keys (--key / --keys FILE), list them under keys in sdt.toml, or give "
                             "the plug a keys() method")
        return chosen

    def _submit(self, dask_client, bundle, keys, kwargs, output, on_row) -> list[dict]:
        from distributed import as_completed

        rows = []
        futures = {dask_client.submit(run_key, bundle, key, kwargs, pure=False): key for key in keys}
        journal = open(output / JOURNAL, "a") if output else None
        try:
            for future in as_completed(futures):
                key = futures.pop(future)
                try:
                    row = future.result()
                except Exception as exc:  # the task itself never raises: its worker died
                    row = {"key": key, "status": "failed", "stage": "worker lost",
                           "error_type": type(exc).__name__, "message": str(exc)[:500]}
                rows.append(row)
                on_row(row)
                if journal:
                    journal.write(json.dumps({**row, "key": list(key)}, default=str) + "\n")
                    journal.flush()
        finally:
            if journal:
                journal.close()
        return rows


def _plug_keys(bundle: PlugBundle) -> list:
    return list(bundle.plug_class()().keys())


def _read_journal(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a crash is simply redone
            continue
        if row.get("status") == "ok":
            rows.append({**row, "key": normalize_key(row["key"])})
    return rows


def _table(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=["key", "status", "stage"])
    table["key"] = table["key"].map(normalize_key)
    return table
