"""The edge-case catalog, for real: each case's requirement lines through the naive two-step build
and through ``sdt-build check``, side by side (the source of docs/edge-cases.md).

The naive build is what users wrote before sdt-build (templates/naive.Dockerfile.j2): a venv,
`pip install -r requirements.txt`, then `pip install solar-data-tools`, then `pip check`.

The only additions are what this machine needs for pip to reach the index at all: the host's CA
bundle is copied into the (throwaway) build context and handed to pip as a build argument
(``PIP_CERT``, build time only), and ``docker build --network host``. Nothing here is part of
sdt-build's own images: the contexts are temporary folders, removed with their images.

    python -m benchmarks.naive_catalog                 # every case, 2 builds at a time
    python -m benchmarks.naive_catalog numpy-old boto3 # some cases
    python -m benchmarks.naive_catalog --check-only    # only `sdt-build check` (seconds)

Results go to --out (default /tmp/sdt-naive-catalog): one JSON per case with the trimmed output,
the full build log, the per-step timings and the `sdt-build check --json` payload.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.bench_build import naive_context

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "local-csv"
SDT_BUILD = str(Path(sys.executable).parent / "sdt-build")
BASE = "sdt-base:bookworm-py3.11"


LOCAL_PACKAGE = {
    "pyproject.toml": '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
                      '[project]\nname = "mypkg"\nversion = "0.1.0"\n',
    "mypkg/__init__.py": "VALUE = 1\n",
}
NUMPY_WIN = ("https://files.pythonhosted.org/packages/c5/31/7fc6239c12bce7e931463251cca4426c465e1876ba3cc785402ef4dd8f4e"
             "/numpy-2.4.6-cp311-cp311-win_amd64.whl")
DOTENV_WHEEL = ("https://files.pythonhosted.org/packages/6a/3e/b68c118422ec867fa7ab88444e1274aa40681c606d59ac27de5a5588f0"
                "82/python_dotenv-1.0.1-py3-none-any.whl")
DOTENV_HASHES = ("sha256:f7b63ef50f1b690dddf550d03497b66d609393b40b564ed0d674909a68ebf16a",
                 "sha256:e324ee90a023d808f1959c46bcbc04446a10ced277783dc6ee09987c37ec10ca")


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    requirements: str
    files: dict[str, str] = field(default_factory=dict)  # relative to the user folder
    outside: dict[str, str] = field(default_factory=dict)  # relative to the folder's parent


def _package(prefix: str) -> dict[str, str]:
    return {f"{prefix}/{name}": text for name, text in LOCAL_PACKAGE.items()}


CASES = (
    Case("exact-pin", "Exact pin of a package SDT does not have", "python-dotenv==1.0.1\n"),
    Case("range", "A range", "boto3>=1.34,<2\n"),
    Case("not-equal", "`!=` that excludes SDT's pin", "pandas!=3.1.1\n"),
    Case("compatible-release", "`~=` (compatible release)", "python-dotenv~=1.0\n"),
    Case("extra-valid", "A valid extra", "requests[socks]\n"),
    Case("extra-unknown", "An extra the package does not have", "requests[sockz]\n"),
    Case("marker-excludes", "A marker that excludes linux / Python 3.11", 'pywin32>=306; sys_platform == "win32"\n'),
    Case("marker-includes", "A marker that includes linux / Python 3.11",
         'python-dotenv>=1.0; python_version >= "3.10" and sys_platform == "linux"\n'),
    Case("includes", "`-r` and `-c` includes", "-r more.txt\n-c constraints.txt\nboto3\n",
         files={"more.txt": "python-dotenv\n", "constraints.txt": "python-dotenv<1.1\nboto3==1.34.131\n"}),
    Case("comments", "Comments, blank lines and continuations",
         "# data access\n\npython-dotenv==1.0.1   # .env files\n\n   \nboto3>=1.34,\\\n  <2  # S3\n"),
    Case("duplicates", "The same package twice, compatibly", "requests>=2.30\nrequests<3\n"),
    Case("duplicates-conflicting", "The same package twice, incompatibly",
         "python-dotenv==1.0.1\npython-dotenv==1.2.1\n"),
    Case("sdt-pin-same", "A package SDT pins, at SDT's version", "numpy==2.4.6\n"),
    Case("sdt-pin-moved", "A package SDT pins, at another version SDT's set allows", "requests==2.32.3\n"),
    Case("numpy-old", "A package SDT pins, at a version SDT's set cannot take (numpy<1.20)", "numpy<1.20\n"),
    Case("sdt-version", "solar-data-tools itself at another version", "solar-data-tools==1.5.0\n"),
    Case("dask-version", "dask / distributed at versions other than the client's",
         "dask==2024.8.0\ndistributed==2024.8.0\n"),
    Case("nonexistent", "A package that does not exist (typo)", "pandsa\n"),
    Case("normalised-name", "A name written differently from its canonical form", "Scikit_Learn==1.9.1\n"),
    Case("vcs", "A VCS URL", "pvanalytics @ git+https://github.com/pvlib/pvanalytics@v0.2.2\n"),
    Case("path-inside", "A local package inside the folder", "./vendor/mypkg\n", files=_package("vendor/mypkg")),
    Case("path-outside", "A local package outside the folder", "../shared/mypkg\n", outside=_package("shared/mypkg")),
    Case("path-missing", "A local path that does not exist", "./vendor/nothere\n"),
    Case("editable", "An editable install (`-e`)", "-e ./vendor/mypkg\n", files=_package("vendor/mypkg")),
    Case("wheel-wrong-platform", "A direct wheel URL for another platform", f"numpy @ {NUMPY_WIN}\n"),
    Case("wheel-compatible", "A direct wheel URL that fits", f"python-dotenv @ {DOTENV_WHEEL}\n"),
    Case("hashes", "`--hash` lines (hash-checking mode)",
         "python-dotenv==1.0.1 \\\n    --hash=" + DOTENV_HASHES[0] + " \\\n    --hash=" + DOTENV_HASHES[1] + "\n"),
    Case("index-options", "`--index-url` / `--extra-index-url` lines",
         "--index-url https://pypi.org/simple\n--extra-index-url https://pypi.org/simple\npython-dotenv==1.0.1\n"),
    Case("pre-release", "A pre-release", "rich==13.0.0a1\n"),
    Case("yanked", "A yanked release", "requests==2.32.0\n"),
    Case("requires-python", "A release whose Requires-Python excludes 3.11", "django==6.0\n"),
    Case("no-wheel", "A release with no wheel for the target (cp311 linux)", "pyyaml==5.4.1\n"),
    Case("no-release", "A range no release matches", "python-dotenv>=99\n"),
    Case("boto3", "boto3==1.34.131 added after SDT (the issue's second measurement)", "boto3==1.34.131\n"),
)

KEEP = re.compile(
    r"^(ERROR|WARNING|error:|note:|hint:)|Successfully installed|Requirement already satisfied: (numpy|pandas|requests|"
    r"solar-data-tools)|has requirement|requires |is incompatible|conflict|ResolutionImpossible|pkg_resources|"
    r"ModuleNotFoundError|AttributeError|No matching distribution|Could not find|not a supported wheel|cython_sources|"
    r"yanked|does not provide the extra|Ignoring|No broken requirements|Cannot install|Double requirement|"
    r"returned a non-zero code|Cannot find command|Invalid requirement|does not exist|Building wheel|"
    r"Preparing metadata|Downloading (numpy|PyYAML|pyyaml)|Collecting|Installing build dependencies|"
    r"satisfies the requirement|Obtaining|Running setup.py develop|Looking in indexes|hash|\w+Error\b|"
    r"Broken toolchain|metadata-generation-failed|subprocess-exited-with-error", re.I)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _write(base: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _folder(case: Case, work: Path, with_example: bool) -> Path:
    folder = work / "plug"
    if with_example:
        shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        folder.mkdir(parents=True)
    (folder / "requirements.txt").write_text(case.requirements)
    _write(folder, case.files)
    _write(work, case.outside)
    return folder


def naive_build(case: Case) -> dict:
    """Build the naive Dockerfile for ``case``; output lines with their time since the start."""
    with tempfile.TemporaryDirectory(prefix=f"naive-{case.key}-") as work:
        context = _folder(case, Path(work), with_example=False)
        naive_context(context, BASE, "solar-data-tools", requirements=(context / "requirements.txt").read_text(),
                      pip_check=True)
        tag = f"sdt-naive-{case.key}:latest"
        started = time.perf_counter()
        lines: list[tuple[float, str]] = []
        process = subprocess.Popen(["docker", "build", "--network", "host", "--no-cache", "--rm", "--force-rm",
                                    "-t", tag, str(context)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, env={**os.environ, "DOCKER_BUILDKIT": "0"})
        for line in process.stdout:
            lines.append((round(time.perf_counter() - started, 1), ANSI.sub("", line.rstrip("\n"))))
        code = process.wait()
        seconds = time.perf_counter() - started
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
    steps = [(t, text) for t, text in lines if text.startswith("Step ")]
    timings = []
    for number, (t, text) in enumerate(steps):
        end = steps[number + 1][0] if number + 1 < len(steps) else seconds
        timings.append({"step": text.split(" : ", 1)[-1], "seconds": round(end - t, 1)})
    failed_step = steps[-1][1].split(" : ", 1)[-1] if code != 0 and steps else None
    relevant = [text for _, text in lines if KEEP.search(text) and not text.startswith("Step ")
                and not text.lstrip().startswith("File ")]
    return {"exit_code": code, "seconds": round(seconds, 1), "failed_step": failed_step, "steps": timings,
            "relevant": [r[:400] for r in relevant], "log": "\n".join(f"[{t:7.1f}] {x}" for t, x in lines)}


def sdt_check(case: Case) -> dict:
    """`sdt-build check DIR --json` on a copy of examples/local-csv with the case's lines."""
    with tempfile.TemporaryDirectory(prefix=f"check-{case.key}-") as work:
        folder = _folder(case, Path(work), with_example=True)
        started = time.perf_counter()
        done = subprocess.run([SDT_BUILD, "check", str(folder), "--json"], capture_output=True, text=True)
        seconds = time.perf_counter() - started
    payload = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {"raw": done.stdout}
    findings = [{k: f[k] for k in ("code", "severity", "package", "paragraph")} for f in payload.get("findings", [])]
    problems = [{k: p[k] for k in ("code", "severity", "cause", "fix")} for p in payload.get("problems", [])]
    return {"exit_code": done.returncode, "seconds": round(seconds, 2), "precheck_seconds":
            payload.get("precheck_seconds"), "findings": findings, "problems": problems,
            "stderr": done.stderr.strip()[-2000:]}


def run_case(case: Case, out: Path, naive: bool, check: bool) -> dict:
    path = out / f"{case.key}.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    result.update(key=case.key, title=case.title, requirements=case.requirements, files=sorted(case.files),
                  outside=sorted(case.outside))
    if check:
        result["check"] = sdt_check(case)
    if naive:
        result["naive"] = naive_build(case)
    path.write_text(json.dumps(result, indent=1))
    summary = f"{case.key:24s}"
    if naive:
        summary += f" naive: exit {result['naive']['exit_code']} in {result['naive']['seconds']:6.1f} s" \
                   f" ({result['naive']['failed_step'] or 'built'})"
    if check:
        codes = ", ".join(f"{f['code']}/{f['severity']}" for f in result["check"]["findings"]) or "-"
        summary += f" | check: exit {result['check']['exit_code']} [{codes}]"
    print(summary, flush=True)
    return result


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help="case keys (default: all)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/sdt-naive-catalog"))
    parser.add_argument("--jobs", type=int, default=2, help="naive builds at a time")
    parser.add_argument("--check-only", action="store_true")
    parser.add_argument("--naive-only", action="store_true")
    args = parser.parse_args(argv)
    chosen = [c for c in CASES if not args.cases or c.key in args.cases]
    unknown = set(args.cases) - {c.key for c in CASES}
    if unknown:
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}; known: {', '.join(c.key for c in CASES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    naive, check = not args.check_only, not args.naive_only
    with ThreadPoolExecutor(max_workers=max(1, args.jobs) if naive else 1) as pool:
        list(pool.map(lambda c: run_case(c, args.out, naive, check), chosen))


if __name__ == "__main__":
    main(sys.argv[1:])
