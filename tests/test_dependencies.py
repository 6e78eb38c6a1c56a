"""Every kind of requirement line a plug can bring, against SDT's pinned set.

Each case runs the pre-check on a temporary copy of examples/local-csv with a requirements.txt
written for it, and asserts the codes, the severities, that the message names the package and
that it gives a fix. docs/edge-cases.md shows the same cases next to what the naive two-step
Dockerfile does with them (benchmarks/naive_catalog.py produces that side). Then: the CLI's exit
codes, the pre-check's speed, and explain_failure on real resolver logs made here by running
pip-compile and uv on bad inputs. PyPI is reachable here and in CI.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import EXAMPLES, SDT
from packaging.utils import canonicalize_name
from packaging.version import Version

from sdt_build import constraints
from sdt_build.constraints import SdtSet
from sdt_build.dependencies.precheck import Finding, precheck
from sdt_build.dependencies.resolve import compile_for_target, explain_failure, lock
from sdt_build.runtime.errors import DependencyConflict
from sdt_build.userfolder.project import load_project

PY = "3.11"
PINS = constraints.pins(PY)
NUMPY_WIN = ("numpy @ https://files.pythonhosted.org/packages/c5/31/7fc6239c12bce7e931463251cca4426c465e1876ba3cc785402ef4"
             "dd8f4e/numpy-2.4.6-cp311-cp311-win_amd64.whl")
DOTENV_WHEEL = ("python-dotenv @ https://files.pythonhosted.org/packages/6a/3e/b68c118422ec867fa7ab88444e1274aa40681c606d5"
                "9ac27de5a5588f082/python_dotenv-1.0.1-py3-none-any.whl")
PVANALYTICS_WHEEL = ("pvanalytics @ https://files.pythonhosted.org/packages/aa/c5/6d641a3ddf7ecc512a42040e1aa0873ddc1cd808"
                     "b1d3d5a5c5b00397636c/pvanalytics-0.2.2-py3-none-any.whl")
S3FS_WHEEL = ("s3fs @ https://files.pythonhosted.org/packages/5b/d6/b8a748b7d3fc7b0fd2ede1cf26a80281d65cc24d5d56b66c3a4c"
              "87e256e2/s3fs-2023.12.2-py3-none-any.whl")  # needs fsspec==2023.12.2; SDT's set pins another
SDT_FROM_GIT = "solar-data-tools @ git+https://github.com/slacgismo/solar-data-tools@v1.5.0"
DOTENV_HASHES = ("sha256:f7b63ef50f1b690dddf550d03497b66d609393b40b564ed0d674909a68ebf16a",
                 "sha256:e324ee90a023d808f1959c46bcbc04446a10ced277783dc6ee09987c37ec10ca")
LOCAL_PACKAGE = {
    "pyproject.toml": '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
                      '[project]\nname = "mypkg"\nversion = "0.1.0"\n',
    "mypkg/__init__.py": "VALUE = 1\n",
}


def _package(prefix: str) -> dict[str, str]:
    return {f"{prefix}/{name}": text for name, text in LOCAL_PACKAGE.items()}


def _write(base: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text(text)


def make_folder(tmp_path: Path, requirements: str, files: dict[str, str] | None = None,
                outside: dict[str, str] | None = None) -> Path:
    """A copy of examples/local-csv with this requirements.txt (and files beside or outside it)."""
    folder = tmp_path / "plug"
    shutil.copytree(EXAMPLES / "local-csv", folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "requirements.txt").write_text(requirements)
    _write(folder, files or {})
    _write(tmp_path, outside or {})
    return folder


def check(tmp_path: Path, requirements: str, *, offline: bool = False, **files) -> list[Finding]:
    return precheck(load_project(make_folder(tmp_path, requirements, **files), require_env=False), offline=offline)


def codes(found: list[Finding]) -> list[tuple[str, str]]:
    return sorted((f.code, f.severity) for f in found)


def assert_explained(finding: Finding, *names: str) -> None:
    """The one-paragraph message names the package (or the line) and gives a fix."""
    text = finding.paragraph()
    for name in names:
        assert name.lower() in text.lower(), f"{finding.code} does not name {name}: {text}"
    assert finding.fix.strip() and "Fix: " in text, text
    assert "Traceback" not in text


# (id, requirements.txt, extra files, files outside the folder, expected (code, severity) pairs,
#  what each finding's message must name). The ids are the cases of docs/edge-cases.md.
CASES = [
    ("exact-pin", "python-dotenv==1.0.1\n", {}, {}, [], ()),
    ("range", "boto3>=1.34,<2\n", {}, {}, [("SDT-E230", "error")], ("boto3", "python-dateutil")),
    ("not-equal-keeps-pin", "pandas!=3.0.0\n", {}, {}, [], ()),
    ("not-equal", f"pandas!={PINS['pandas']}\n", {}, {}, [("SDT-E204", "warning")], ("pandas",)),
    ("compatible-release", "python-dotenv~=1.0\n", {}, {}, [], ()),
    ("extra-valid", "requests[socks]\n", {}, {}, [], ()),
    ("extra-unknown", "requests[sockz]\n", {}, {}, [("SDT-E214", "warning")], ("requests", "sockz")),
    ("marker-excludes", 'pywin32>=306; sys_platform == "win32"\n', {}, {}, [("SDT-E213", "note")], ("pywin32",)),
    ("marker-includes", 'python-dotenv>=1.0; python_version >= "3.10" and sys_platform == "linux"\n', {}, {}, [], ()),
    ("includes", "-r more.txt\n-c constraints.txt\nboto3\n",
     {"more.txt": "python-dotenv\n", "constraints.txt": "python-dotenv<1.1\nboto3==1.34.131\n"}, {},
     [("SDT-E230", "error")], ("boto3", "python-dateutil")),
    ("comments", "# data access\n\npython-dotenv==1.0.1   # .env files\n\n   \nboto3>=1.34,\\\n  <2  # S3\n",
     {}, {}, [("SDT-E230", "error")], ("boto3",)),
    ("duplicates", "requests>=2.30\nrequests<3\n", {}, {}, [("SDT-E209", "note")], ("requests",)),
    ("duplicates-conflicting", "python-dotenv==1.0.1\npython-dotenv==1.2.1\n", {}, {}, [("SDT-E209", "error")],
     ("python-dotenv", "1.0.1", "1.2.1")),
    ("sdt-pin-same", f"numpy=={PINS['numpy']}\n", {}, {}, [], ()),
    ("sdt-pin-moved", "requests==2.32.3\n", {}, {}, [("SDT-E204", "warning")], ("requests", PINS["requests"])),
    ("numpy-old", "numpy<1.20\n", {}, {}, [("SDT-E203", "error")], ("numpy",)),
    ("sdt-version", "solar-data-tools==1.5.0\n", {}, {}, [("SDT-E201", "error")],
     ("solar-data-tools", PINS["solar-data-tools"])),
    ("dask-version", "dask==2024.8.0\ndistributed==2024.8.0\n", {}, {},
     [("SDT-E202", "error"), ("SDT-E202", "error")], ()),
    ("nonexistent", "pandsa\n", {}, {}, [("SDT-E205", "error")], ("pandsa", "pandas")),
    ("normalised-name", f"Scikit_Learn=={PINS['scikit-learn']}\n", {}, {}, [], ()),
    ("normalised-name-moved", "Scikit_Learn<1.0\n", {}, {}, [("SDT-E208", "error")],
     ("scikit-learn",)),
    ("vcs", "pvanalytics @ git+https://github.com/pvlib/pvanalytics@v0.2.2\n", {}, {}, [("SDT-E212", "warning")],
     ("pvanalytics",)),
    ("path-inside", "./vendor/mypkg\n", _package("vendor/mypkg"), {}, [], ()),
    ("path-outside", "../shared/mypkg\n", {}, _package("shared/mypkg"), [("SDT-E211", "error")], ("../shared/mypkg",)),
    ("path-missing", "./vendor/nothere\n", {}, {}, [("SDT-E211", "error")], ("vendor/nothere",)),
    ("editable", "-e ./vendor/mypkg\n", _package("vendor/mypkg"), {}, [("SDT-E210", "error")], ("./vendor/mypkg",)),
    ("wheel-wrong-platform", NUMPY_WIN + "\n", {}, {}, [("SDT-E232", "error")], ("numpy", PINS["numpy"])),
    ("wheel-wrong-platform-unpinned", "orjson @ https://files.pythonhosted.org/packages/00/00/orjson-3.10.7-cp311-none-"
     "win_amd64.whl\n", {}, {}, [("SDT-E208", "error")], ("orjson", "win_amd64")),
    ("sdt-from-git", SDT_FROM_GIT + "\n", {}, {}, [("SDT-E201", "error")], ("solar-data-tools", PINS["solar-data-tools"])),
    ("url-constrained", PVANALYTICS_WHEEL + "\n-c constraints.txt\n", {"constraints.txt": "pvanalytics<0.3\n"}, {},
     [("SDT-E232", "error")], ("pvanalytics", "pvanalytics<0.3")),
    ("wheel-url-fits", PVANALYTICS_WHEEL + "\n", {}, {}, [], ()),
    ("wheel-compatible", DOTENV_WHEEL + "\n", {}, {}, [], ()),
    ("hashes", "python-dotenv==1.0.1 \\\n    --hash=" + DOTENV_HASHES[0] + " \\\n    --hash=" + DOTENV_HASHES[1] + "\n",
     {}, {}, [], ()),
    ("index-options", "--index-url https://pypi.org/simple\n--extra-index-url https://pypi.org/simple\n"
     "python-dotenv==1.0.1\n", {}, {}, [("SDT-E216", "note"), ("SDT-E216", "note")], ("index-url",)),
    ("other-pip-option", "--prefer-binary\npython-dotenv\n", {}, {}, [("SDT-E216", "warning")], ("--prefer-binary",)),
    ("pre-release", "rich==13.0.0a1\n", {}, {}, [("SDT-E227", "note")], ("rich", "13.0.0a1")),
    ("pre-flag", "--pre\npython-dotenv\n", {}, {}, [("SDT-E227", "note")], ("--pre",)),
    ("yanked", "requests==2.32.0\n", {}, {}, [("SDT-E204", "warning"), ("SDT-E207", "warning")],
     ("requests", "2.32.0")),
    ("requires-python", "django==6.0\n", {}, {}, [("SDT-E206", "error")], ("django", "3.11", ">=3.12")),
    ("no-wheel", "pyyaml==5.4.1\n", {}, {}, [("SDT-E208", "error")], ("pyyaml", "5.4.1")),
    # pandas<2 may move SDT's pin (E204 alone would say "keep it"), but no pandas<2 fits numpy 2 (E230)
    ("moved-but-clashes", "pandas<2\n", {}, {}, [("SDT-E230", "error")], ("pandas", "numpy")),
    ("no-release", "python-dotenv>=99\n", {}, {}, [("SDT-E217", "error")], ("python-dotenv",)),
    ("boto3", "boto3==1.34.131\n", {}, {}, [("SDT-E230", "error")], ("boto3", "botocore", "python-dateutil")),
]


@pytest.mark.parametrize("requirements, files, outside, expected, names",
                         [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_requirement_kind(tmp_path, requirements, files, outside, expected, names):
    found = check(tmp_path, requirements, files=files, outside=outside)
    assert codes(found) == sorted(expected), [f.paragraph() for f in found]
    for finding in found:
        assert_explained(finding, *names)
        if finding.package:
            assert canonicalize_name(finding.package) in finding.paragraph().lower().replace("_", "-")


def test_dask_version_names_the_client_and_the_fix(tmp_path):
    found = {f.package: f for f in check(tmp_path, "dask==2024.8.0\ndistributed==2024.8.0\n")}
    for name in ("dask", "distributed"):
        finding = found[name]
        assert_explained(finding, name, "2024.8.0", "client", PINS[name])
        assert finding.sdt_pins == f"{name}=={PINS[name]}"


def test_numpy_below_1_20_names_who_needs_what(tmp_path):
    found = {f.code: f for f in check(tmp_path, "numpy<1.20\n")}
    conflict = found["SDT-E203"]
    text = conflict.paragraph()
    assert conflict.plug_asks == "`numpy<1.20`" and conflict.sdt_pins == f"numpy=={PINS['numpy']}"
    assert "numpy<1.20" in text and PINS["numpy"] in text
    needers = {who.split()[0] for who, spec in SdtSet(PY).needs["numpy"]
               if str(spec) and not spec.contains("1.19.5")}
    assert needers, "SDT's metadata should say who needs numpy>=…"
    for who in needers:  # every SDT package that rules numpy 1.19 out is named
        assert who in text, f"{who} missing from: {text}"
    assert "Fix: change the line to `numpy" in text
    # numpy<1.20 also has no wheel for the target, but that follows from the conflict (whose fix
    # changes the line anyway): no second finding offers build_sdists, which could not help
    assert set(found) == {"SDT-E203"}, [f.paragraph() for f in found.values()]


def test_findings_say_the_file_and_line_they_are_about(tmp_path):
    folder = make_folder(tmp_path, "# data access\nrequests\n-r more.txt\n--prefer-binary\n",
                         files={"more.txt": "python-dotenv\n\nnumpy<1.20\n"})
    found = {f.code: f for f in precheck(load_project(folder, require_env=False))}
    assert (found["SDT-E203"].file, found["SDT-E203"].line) == ("more.txt", 3)
    assert (found["SDT-E216"].file, found["SDT-E216"].line) == ("requirements.txt", 4)
    assert found["SDT-E203"].to_problem().location == "more.txt:3"
    done = subprocess.run([SDT, "check", str(folder), "--json"], capture_output=True, text=True, timeout=120)
    located = {(f["code"], f["file"], f["line"]) for f in json.loads(done.stdout)["findings"]}
    assert located == {("SDT-E203", "more.txt", 3), ("SDT-E216", "requirements.txt", 4)}
    shown = subprocess.run([SDT, "check", str(folder)], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "COLUMNS": "400"})
    assert "more.txt:3" in shown.stderr and "requirements.txt:4" in shown.stderr, shown.stderr


def test_fix_ranges_are_written_as_packaging_normalises_them():
    from packaging.specifiers import SpecifierSet

    from sdt_build.requirements import combined_specs

    assert combined_specs([SpecifierSet("<3.0dev")]) == "<3.0.dev0"
    assert combined_specs([SpecifierSet(">=2021.09.0"), SpecifierSet("==2023.12.2")]) == "==2023.12.2"
    assert combined_specs([SpecifierSet(">=1.25"), SpecifierSet("<2.7,>=1.26.4"), SpecifierSet("!=1.24.0,>=1.20")]) \
        == ">=1.26.4,<2.7"


def test_a_line_with_an_extra_is_shown_with_it(tmp_path):
    # the console prints findings through rich: `[sockz]` must not be read as markup and dropped
    folder = make_folder(tmp_path, "requests[sockz]\n")
    done = subprocess.run([SDT, "check", str(folder), "--offline"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "400"})
    assert "SDT-E214" in done.stderr and "[sockz]" in done.stderr, done.stderr


def test_a_wheel_url_is_locked_and_downloaded_from_its_url(tmp_path, monkeypatch):
    monkeypatch.setenv("SDT_CACHE_DIR", str(tmp_path / "cache"))
    from sdt_build.sources.wheels import download

    project = load_project(make_folder(tmp_path, PVANALYTICS_WHEEL + "\n"), require_env=False)
    assert [f for f in precheck(project) if f.severity == "error"] == []
    locked = lock(project, use_cache=False, log_dir=tmp_path / "logs")
    url = PVANALYTICS_WHEEL.split(" @ ")[1]
    assert locked.pins["pvanalytics"] == "0.2.2" and locked.urls == {"pvanalytics": url}
    assert locked.plug_layer["pvanalytics"] == "0.2.2" and locked.to_dict()["urls"] == {"pvanalytics": url}
    wheels = download({"pvanalytics": "0.2.2"}, PY, tmp_path / "wheels.log", locked.sources, urls=locked.urls)
    assert wheels["pvanalytics"].name == "pvanalytics-0.2.2-py3-none-any.whl"
    assert url in (tmp_path / "wheels.log").read_text()


def test_a_source_archive_url_stops_the_lock_with_a_fix(tmp_path):
    # build_sdists lets the resolver build it for its metadata; the image build could not install it
    folder = make_folder(tmp_path, "pvanalytics @ https://files.pythonhosted.org/packages/13/63/16f0254f2c44e8e5c34a040"
                                   "798f6ecf7239ba196ffbf5e38a02a0c45a1a8/pvanalytics-0.2.2.tar.gz\n")
    (folder / "sdt.toml").write_text("build_sdists = true\n" + (folder / "sdt.toml").read_text())
    with pytest.raises(DependencyConflict) as raised:
        lock(load_project(folder, require_env=False), use_cache=False, log_dir=tmp_path / "logs")
    assert raised.value.code == "SDT-E233" and "pip wheel --no-deps" in raised.value.fix, raised.value.cause


def test_a_wheel_url_whose_own_needs_clash_is_found_and_the_resolver_names_the_pin(tmp_path):
    # the quick check reads the wheel's own metadata from its URL; --resolve then blames the pin it
    # clashes with, not "no release of s3fs"
    project = load_project(make_folder(tmp_path, S3FS_WHEEL + "\n"), require_env=False)
    findings = precheck(project)
    (finding,) = [f for f in findings if f.severity == "error"]
    assert (finding.code, finding.package, finding.line) == ("SDT-E230", "s3fs", 1)
    assert "s3fs 2023.12.2 needs fsspec==2023.12.2" in finding.cause and PINS["fsspec"] in finding.cause
    with pytest.raises(DependencyConflict) as raised:
        lock(project, use_cache=False, findings=findings, confirm=True, log_dir=tmp_path / "logs")
    exc = raised.value
    assert exc.code == "SDT-E220" and "fsspec" in exc.cause and "fsspec" in exc.fix, (exc.code, exc.cause, exc.fix)
    assert_no_traceback(exc)


@pytest.fixture
def served(tmp_path):
    """A plain file host on 127.0.0.1 (no metadata files, no ranges): the folder it serves, and its URL."""
    folder = tmp_path / "host"
    folder.mkdir()
    handler = lambda *args, **kwargs: http.server.SimpleHTTPRequestHandler(*args, directory=str(folder), **kwargs)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_wheel_url_off_the_index_is_read_from_the_wheel_itself(tmp_path, served):
    # a wheel built elsewhere, whose host serves neither metadata files nor ranges: its METADATA is
    # read out of the whole download, and its Requires-Dist clash with SDT's set is named at its line
    import zipfile

    folder, url = served
    name = f"inhouse_{uuid.uuid4().hex[:8]}"
    with zipfile.ZipFile(folder / f"{name}-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", "")
        wheel.writestr(f"{name}-1.0.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
                       "Requires-Dist: fsspec<2024\nRequires-Dist: python-dotenv\n")
        wheel.writestr(f"{name}-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{name}-1.0.dist-info/RECORD", "")
    line = f"{name} @ {url}/{name}-1.0-py3-none-any.whl"
    found = check(tmp_path, f"python-dotenv\n{line}\n")
    (finding,) = [f for f in found if f.severity == "error"]
    assert (finding.code, finding.package, finding.line) == ("SDT-E230", canonicalize_name(name), 2), finding
    assert f"{canonicalize_name(name)} 1.0 needs fsspec<2024" in finding.cause and PINS["fsspec"] in finding.cause
    assert "the wheel it points at does not fit" in finding.cause


def test_compatible_move_is_a_warning_that_names_the_pin(tmp_path):
    (finding,) = check(tmp_path, "requests==2.32.3\n")
    assert (finding.code, finding.severity) == ("SDT-E204", "warning")
    assert finding.sdt_pins == f"requests=={PINS['requests']}"
    assert f"requests=={PINS['requests']}" in finding.fix


def test_offline_skips_what_only_the_index_knows(tmp_path):
    assert codes(check(tmp_path, "numpy<1.20\npandsa\ndjango==6.0\n", offline=True)) == [("SDT-E203", "error")]


def test_unreachable_index_is_a_note(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens on the discard port
    name = f"sdt-build-test-{uuid.uuid4().hex[:8]}"  # never in the index cache
    (finding,) = check(tmp_path, f"{name}==1.0\n")
    assert (finding.code, finding.severity) == ("SDT-E224", "note")
    assert_explained(finding, name)


def test_precheck_answers_numpy_below_1_20_in_under_a_second(tmp_path):
    project = load_project(make_folder(tmp_path, "numpy<1.20\n"), require_env=False)
    precheck(project)  # fills the on-disk index cache
    for offline in (False, True):
        started = time.perf_counter()
        found = precheck(project, offline=offline)
        seconds = time.perf_counter() - started
        assert "SDT-E203" in {f.code for f in found}
        assert seconds < 1.0, f"precheck(offline={offline}) took {seconds:.2f} s"


def _cli_check(folder: Path) -> tuple[int, dict]:
    done = subprocess.run([SDT, "check", str(folder), "--json"], capture_output=True, text=True, timeout=120)
    return done.returncode, json.loads(done.stdout)


def test_cli_exit_codes(tmp_path):
    code, payload = _cli_check(make_folder(tmp_path / "clean", "python-dotenv==1.0.1\n"))
    assert (code, payload["ok"]) == (0, True)

    code, payload = _cli_check(make_folder(tmp_path / "conflict", "numpy<1.20\n"))
    assert (code, payload["ok"]) == (2, False)
    assert [(f["code"], f["file"], f["line"]) for f in payload["findings"]] == [("SDT-E203", "requirements.txt", 1)]

    code, payload = _cli_check(make_folder(tmp_path / "broken", "numpy>>1\n-r missing.txt\n"))
    assert (code, payload["ok"]) == (1, False)
    assert [p["code"] for p in payload["problems"]] == ["SDT-E113", "SDT-E113"]


def test_cli_warnings_do_not_fail_the_check(tmp_path):
    code, payload = _cli_check(make_folder(tmp_path, "requests==2.32.3\n"))
    assert code == 0 and [f["code"] for f in payload["findings"]] == ["SDT-E204"]


# --- explain_failure on real resolver logs ---------------------------------------------------------

def _resolve(tmp_path: Path, backend: str, lines: list[str]) -> DependencyConflict:
    """Run the resolver the way lock() does (SDT's inputs + the plug's lines, SDT's other pins as -c)."""
    inputs = tmp_path / "requirements.in"
    inputs.write_text((constraints.folder(PY) / "sdt.in").read_text() + "\n".join(lines) + "\n")
    from sdt_build.requirements import classify

    named = {canonicalize_name(classify(line).requirement.name) for line in lines}
    kept = [f"{n}=={v}" for n, v in sorted(PINS.items()) if n not in named]
    with pytest.raises(DependencyConflict) as raised:
        compile_for_target(backend, PY, inputs, kept, tmp_path / "resolve.log")
    return raised.value


def assert_no_traceback(exc: DependencyConflict) -> None:
    message = "\n".join(filter(None, (exc.cause, exc.fix, exc.detail)))
    assert "Traceback" not in message and 'File "' not in message, message
    assert exc.log_path and exc.log_path.exists()


@pytest.mark.parametrize("backend", ["uv", "pip-compile"])
def test_lock_conflict_between_plug_packages_is_e220(tmp_path, backend):
    # The walk finds the clash (SDT-E230); with confirm the resolver runs anyway and gives its own verdict.
    project = load_project(make_folder(tmp_path, "boto3==1.34.131\nbotocore==1.35.0\n"), require_env=False)
    with pytest.raises(DependencyConflict) as raised:
        lock(project, backend=backend, use_cache=False, log_dir=tmp_path / "logs", confirm=True)
    exc = raised.value
    assert exc.code == "SDT-E220" and exc.exit_code == 2
    assert "botocore" in exc.cause and "botocore" in exc.fix
    assert "ResolutionImpossible" in exc.log_path.read_text() or "No solution found" in exc.log_path.read_text()
    assert_no_traceback(exc)


@pytest.mark.parametrize("backend", ["uv", "pip-compile"])
def test_a_dependency_of_the_plug_against_an_sdt_pin_names_both_and_the_line_that_fixes_it(tmp_path, backend):
    # boto3 → botocore needs python-dateutil<3; SDT's set pins python-dateutil 4.0.0. The resolver's
    # report (run despite the walk's finding, capped by it) is told as a chain from the plug's line;
    # the fix the error gives is then applied, and the lock must succeed with it.
    folder = make_folder(tmp_path, "boto3>=1.28\n")
    with pytest.raises(DependencyConflict) as raised:
        lock(load_project(folder, require_env=False), backend=backend, use_cache=False, log_dir=tmp_path / "logs",
             confirm=True)
    exc = raised.value
    assert exc.code == "SDT-E220", (exc.cause, exc.detail)
    assert exc.cause.startswith(("boto3 → botocore", "botocore ")) and "needs python-dateutil<3" in exc.cause
    assert f"pins python-dateutil {PINS['python-dateutil']}" in exc.cause
    line = re.search(r"add `([^`]+)` to requirements.txt", exc.fix).group(1)
    assert line.startswith("python-dateutil>=") and line.endswith("<3.0.0")
    (folder / "requirements.txt").write_text(f"boto3>=1.28\n{line}\n")
    locked = lock(load_project(folder, require_env=False), backend=backend, use_cache=False,
                  log_dir=tmp_path / "logs")
    assert Version(locked.pins["python-dateutil"]) < Version("3") and "botocore" in locked.pins
    assert [f.code for f in locked.findings] == ["SDT-E204"]


@pytest.mark.parametrize("backend", ["uv", "pip-compile"])
@pytest.mark.parametrize("line, package", [("pandsa", "pandsa"), ("python-dotenv>=99", "python-dotenv")])
def test_no_matching_distribution_is_e221(tmp_path, backend, line, package):
    exc = _resolve(tmp_path, backend, [line])
    assert exc.code == "SDT-E221", (exc.code, exc.cause, exc.detail)
    assert package in exc.cause and package in exc.fix
    assert_no_traceback(exc)


def test_sdist_build_failure_is_e222(tmp_path):
    # PyYAML 5.4.1 has no cp311 wheel; its setup.py breaks under Cython 3 (cython_sources).
    exc = _resolve(tmp_path, "pip-compile", ["pyyaml==5.4.1"])
    assert exc.code == "SDT-E222", (exc.code, exc.cause, exc.detail)
    assert "pyyaml" in exc.cause.lower() and "pyyaml" in exc.fix.lower()
    assert "cython_sources" in exc.detail
    assert_no_traceback(exc)


@pytest.mark.slow
def test_numpy_below_1_20_with_pip_compile(tmp_path):
    # pip-compile downloads numpy 1.19.5's sdist and builds its metadata (~30-40 s). Where a C
    # compiler is present that works and the resolver then reports the conflict (E220); where
    # the build breaks (no compiler, no pkg_resources) it is E222. Either way: numpy, no traceback.
    exc = _resolve(tmp_path, "pip-compile", ["numpy<1.20"])
    assert exc.code in ("SDT-E220", "SDT-E222"), (exc.code, exc.cause, exc.detail)
    assert "numpy" in exc.cause and "numpy" in exc.fix
    assert "numpy-1.19" in exc.log_path.read_text() or "numpy_" in exc.log_path.read_text()
    assert_no_traceback(exc)


@pytest.fixture
def untrusted_index(tmp_path):
    """An HTTPS index on 127.0.0.1 whose self-signed certificate no CA file vouches for."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("backend", ["pip-compile", "uv"])
def test_tls_failure_is_e223(tmp_path, untrusted_index, backend):
    empty_ca = tmp_path / "empty-ca.pem"
    empty_ca.write_text("")
    (tmp_path / "pip.conf").write_text(f"[global]\nindex-url = {untrusted_index}\n")
    inputs = tmp_path / "requirements.in"
    inputs.write_text("python-dotenv==1.0.1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    # One retry: pip-compile prints pip's "Retrying ... SSLError" warning but not (without -v) the final
    # "Could not fetch URL"; with no retry at all its log only says "from versions: none" (E221).
    env.update(PIP_CONFIG_FILE=str(tmp_path / "pip.conf"), PIP_CERT=str(empty_ca), PIP_RETRIES="1",
               SSL_CERT_FILE=str(empty_ca))
    if backend == "pip-compile":
        command = [sys.executable, "-m", "piptools", "compile", "--no-header", "-o", "lock.txt", str(inputs)]
    else:
        command = [sys.executable, "-m", "uv", "pip", "compile", "--no-cache", "--no-config", "--index-url",
                   untrusted_index, "--python-version", PY, "-o", "lock.txt", str(inputs)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    log = tmp_path / "resolve.log"
    log.write_text(done.stdout + done.stderr)
    exc = explain_failure(log.read_text(), log, backend)
    assert exc.code == "SDT-E223", (exc.code, exc.cause, exc.detail)
    assert "TLS" in exc.cause and "PIP_CERT" in exc.fix
    assert_no_traceback(exc)


def test_an_unchanged_lock_comes_from_the_cache_with_its_findings_and_no_precheck(tmp_path, monkeypatch):
    monkeypatch.setenv("SDT_CACHE_DIR", str(tmp_path / "cache"))
    folder = make_folder(tmp_path, 'tabulate\npywin32; sys_platform == "win32"\n')
    first = lock(load_project(folder, require_env=False), log_dir=tmp_path / "logs")
    assert not first.cached and [f.code for f in first.findings] == ["SDT-E213"]

    def no_precheck(*args, **kwargs):
        raise AssertionError("the pre-check ran for an unchanged lock")

    with monkeypatch.context() as patched:
        patched.setattr("sdt_build.dependencies.resolve.precheck", no_precheck)
        again = lock(load_project(folder, require_env=False), log_dir=tmp_path / "logs")
    assert again.cached and again.text == first.text and again.findings == first.findings
    (folder / "requirements.txt").write_text("tabulate<0.9\n")
    changed = lock(load_project(folder, require_env=False), log_dir=tmp_path / "logs")
    assert not changed.cached and changed.pins["tabulate"].startswith("0.8")
