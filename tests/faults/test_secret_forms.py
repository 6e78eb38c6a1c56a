"""A declared secret is masked by value, whatever its characters and wherever lines are folded: in
every result file (masked before serialising), in what a LocalClient worker prints on the user's
terminal, in `run -v` lines rich folds, and never given to a scheduler container."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from faultkit import cluster_containers, keys_arg, no_traceback, sdt

SECRET = "SDT_FAULTS_SECRET"


def hostile_secret() -> tuple[str, list[str]]:
    """A secret with a quote, a backslash and non-ASCII text, longer than a console line (a 421-character
    token), and the random pieces of it no output may hold (short enough to survive folding)."""
    random = os.urandom(192).hex()
    secret = f'Pa"ss\\wörd-{random}-é'
    assert len(secret) > 390
    return secret, [random[i:i + 12] for i in range(0, len(random), 12)]


def holders(texts: dict[str, str], pieces: list[str]) -> list[str]:
    return [name for name, text in texts.items() if any(piece in text for piece in pieces)]


def test_a_hostile_secret_is_masked_in_every_file_stream_and_folded_line(trouble, tmp_path):
    secret, pieces = hostile_secret()
    folder = trouble("local", workers=1)
    output = tmp_path / "out"
    done = sdt("run", str(folder), "--output", str(output), "-v", *keys_arg(("leaks",), ("raises",)),
               env={SECRET: secret})
    assert done.returncode == 5, done.stderr[-3000:]
    no_traceback(done.stderr)
    assert "connecting with ***" in done.stdout + done.stderr  # the worker's print reached the terminal, masked
    shown = {"stdout": done.stdout, "stderr": done.stderr}
    shown.update({str(path): path.read_bytes().decode("utf-8", "replace") for path in output.rglob("*")
                  if path.is_file()})
    shown["results.parquet as read"] = pd.read_parquet(output / "results.parquet").to_json()
    assert {"results.csv", "results.parquet", "journal.jsonl", "report.html", "run.json"} <= \
        {Path(name).name for name in shown}
    assert not holders(shown, pieces), "the secret was written or shown"
    rows = {row["key"][0]: row for row in map(json.loads, (output / "journal.jsonl").read_text().splitlines())}
    assert rows["leaks"]["message"] == "the server refused the token ***"
    assert rows["leaks"]["error_type"] == "PermissionError" and rows["raises"]["error_type"] == "ValueError"


def test_the_scheduler_container_gets_no_declared_secret(docker, fault_image):
    from sdt_build.clients import DockerClient

    secret, pieces = hostile_secret()
    client = DockerClient(workers=1, threads_per_worker=1, memory_per_worker="2GiB").with_environment(
        {SECRET: secret, "SDT_FAULTS_FIXED": "1"}, {SECRET})
    client.connect(fault_image)
    try:
        environments = {c.labels["io.sdt-build.role"]: c.attrs["Config"]["Env"] for c in cluster_containers(docker, os.getpid())}
    finally:
        client.close()
    assert set(environments) == {"scheduler", "worker"}
    assert "SDT_FAULTS_FIXED=1" in environments["scheduler"]  # the other declared variables still reach it
    assert not holders({"scheduler": "\n".join(environments["scheduler"])}, pieces)
    assert f"{SECRET}={secret}" in environments["worker"]  # the plug runs there and reads it
    assert not cluster_containers(docker, os.getpid())
