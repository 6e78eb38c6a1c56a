"""The user-folder loader (sdt_build/userfolder/project.py) and `sdt-build check`.

Static checks only: no Docker, no SDT pipeline. Every folder under fixtures/bad_projects/ is a
valid project broken in exactly one way; its EXPECT file names the code it must produce, and
the offending line (when the mistake has one) carries the marker ``EXPECT-LINE``. New fixture
folders are picked up automatically.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sdt_build import constraints
from sdt_build.requirements import requirement_names
from sdt_build.runtime.errors import Problem, ProjectError
from sdt_build.runtime.keys import normalize_key
from sdt_build.userfolder import contracts
from sdt_build.userfolder.project import inspect_project, load_project

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
EXAMPLE = ROOT / "examples" / "local-csv"
FIXTURES = TESTS / "fixtures" / "bad_projects"
BAD = sorted(p for p in FIXTURES.iterdir() if (p / "EXPECT").is_file())

# The secret-env-unset fixture declares both: the first must stay unset (E108), the second
# carries a fake value that must never show up in any output.
UNSET_SECRET = "SDT_TEST_FIXTURE_UNSET_SECRET"
SET_SECRET = "SDT_TEST_FIXTURE_SET_SECRET"
FAKE_VALUE = "fake-value-7c1e9b2d-must-never-be-printed"

# Codes whose mistake sits in one file / on one line of the user's folder.
NO_FILE_CODES = {"SDT-E101", "SDT-E102", "SDT-E109"}  # the folder or the file itself is missing
LINE_CODES = {"SDT-E103", "SDT-E105", "SDT-E106", "SDT-E107", "SDT-E111", "SDT-E113", "SDT-E114", "SDT-E126",
              "SDT-E115", "SDT-E116", "SDT-E118", "SDT-E130"}
# A fix tells the user what to do: it starts with one of these.
FIX_OPENINGS = ("add ", "fix ", "make ", "keep ", "give ", "write ", "create ", "save ", "export ",
                "set ", "use ", "define ", "remove ", "rename ", "pass ", "did you mean ", "copy ", "move ")
# What a few fixes must mention besides (fixture name -> text in the fix).
FIX_MENTIONS = {
    "import-not-listed": "`boto3` to requirements.txt",
    "secret-env-unset": f"export {UNSET_SECRET}=",
    "sdt-toml-typo": "'plug_class'",
    "run-pipeline-unknown-argument": "did you mean 'fix_shifts'?",
    "base-defined-nowhere": "did you mean DataPlug?",
    "dockerignore-leaves-out-helper": ".dockerignore",
    "sdt-toml-unsupported-python": "3.11",
    "sdt-toml-bad-name": "my-pv-fleet",
    "two-plug-classes": 'plug_class = "SitePlug"',
    "two-client-classes": 'client_class = "Laptop"',
    "get-data-two-args": "def get_data(self, key)",
    "requirements-missing-include": "common-requirements.txt",
}

SDT_BUILD = Path(sys.executable).parent / "sdt-build"
CLI = [str(SDT_BUILD)] if SDT_BUILD.exists() else [sys.executable, "-m", "sdt_build"]

GOOD_PLUG = '''
import pandas as pd

from sdt_build import DataPlug


class SitePlug(DataPlug):
    def get_data(self, key):
        (site,) = key
        return pd.DataFrame({"power": [0.0]}, index=pd.date_range("2020-01-01", periods=1))
'''
GOOD_CLIENT = '''
from sdt_build.clients import LocalClient


class Laptop(LocalClient):
    workers = 1
'''


@pytest.fixture(autouse=True)
def fixture_env(monkeypatch):
    monkeypatch.delenv(UNSET_SECRET, raising=False)
    monkeypatch.setenv(SET_SECRET, FAKE_VALUE)


def expected_code(folder: Path) -> str:
    lines = (folder / "EXPECT").read_text().splitlines()
    assert len(lines) == 1 and re.fullmatch(r"SDT-E\d{3}", lines[0]), f"{folder}/EXPECT: one code"
    return lines[0]


def marked_line(folder: Path) -> tuple[str, int] | None:
    """(file, line) of the one line carrying EXPECT-LINE, read as bytes (E117 files are not UTF-8)."""
    marks = [(path.name, number)
             for path in sorted(folder.rglob("*")) if path.is_file() and path.name != "EXPECT"
             for number, line in enumerate(path.read_bytes().splitlines(), start=1)
             if b"EXPECT-LINE" in line]
    assert len(marks) <= 1, f"{folder.name}: more than one EXPECT-LINE marker: {marks}"
    return marks[0] if marks else None


def assert_actionable(problem: Problem) -> None:
    fix = problem.fix
    assert isinstance(fix, str) and fix.strip(), f"{problem.code}: empty fix"
    assert "\n" not in fix, f"{problem.code}: the fix is one line: {fix!r}"
    assert fix != problem.cause
    assert fix.lower().startswith(FIX_OPENINGS), f"{problem.code}: the fix should say what to do: {fix!r}"
    for text in (problem.cause, fix):
        assert "None" not in text and " object at 0x" not in text, f"{problem.code}: {text!r}"


def make_project(root: Path, dataplug: str | bytes | None = GOOD_PLUG, client: str | None = GOOD_CLIENT,
                 files: dict[str, str | bytes] | None = None) -> Path:
    """A user folder with dataplug.py, client.py and ``files`` (relative path -> text or bytes)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in {"dataplug.py": dataplug, "client.py": client, **(files or {})}.items():
        if text is None:
            continue
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(textwrap.dedent(text).lstrip())
    return root


def errors_of(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def run_check(directory: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in (UNSET_SECRET, "FORCE_COLOR", "PY_COLORS")}
    base.update({SET_SECRET: FAKE_VALUE, "NO_COLOR": "1", **(env or {})})
    return subprocess.run([*CLI, "check", str(directory), *args], capture_output=True, text=True,
                          env=base, cwd=ROOT, timeout=60)


# --- the bad fixtures -------------------------------------------------------------------------

# what `check` reads with
LOADER = ("userfolder/project.py", "userfolder/settings.py", "userfolder/contracts.py", "requirements.py",
          "userfiles.py")


def loader_codes() -> set[str]:
    return {code for name in LOADER for code in re.findall(r'"(SDT-E1\d\d)"', (ROOT / "sdt_build" / name).read_text())}


def test_fixtures_cover_every_loader_code():
    emitted = loader_codes()
    covered = {expected_code(folder) for folder in BAD} | {"SDT-E101"}  # E101: a path that does not exist
    assert emitted, "no codes found in project.py"
    assert emitted <= covered, f"codes without a fixture in {FIXTURES}: {sorted(emitted - covered)}"


@pytest.mark.parametrize("folder", BAD, ids=lambda p: p.name)
def test_bad_project_reports_its_code(folder):
    code = expected_code(folder)
    project, problems = inspect_project(folder)
    errors = errors_of(problems)
    assert [p.code for p in errors] == [code], f"{folder.name} must be broken in exactly one way: {problems}"
    problem = errors[0]
    assert_actionable(problem)
    if folder.name in FIX_MENTIONS:
        assert FIX_MENTIONS[folder.name] in problem.fix

    mark = marked_line(folder)
    if code in LINE_CODES:
        assert mark is not None, f"{folder.name}: mark the offending line with `# EXPECT-LINE`"
    if mark is not None:
        assert (problem.file, problem.line) == mark
    if code in NO_FILE_CODES:
        assert problem.file is None
    else:
        assert problem.file and (folder / problem.file).is_file(), problem
    if code == "SDT-E117":  # guard: an editor or a git filter must not have "fixed" the bytes
        with pytest.raises(UnicodeDecodeError):
            (folder / problem.file).read_bytes().decode("utf-8")

    with pytest.raises(ProjectError) as raised:
        load_project(folder)
    assert raised.value.code == code and raised.value.exit_code == 1
    assert problem in raised.value.problems
    assert FAKE_VALUE not in repr(problems) + repr(project)


@pytest.mark.parametrize("folder", BAD, ids=lambda p: p.name)
def test_check_json_reports_code(folder):
    code = expected_code(folder)
    result = run_check(folder, "--json")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert FAKE_VALUE not in result.stdout + result.stderr
    payload = json.loads(result.stdout)
    assert payload["ok"] is False
    found = [p for p in payload["problems"] if p["code"] == code]
    assert found and found[0]["severity"] == "error" and found[0]["fix"].strip()


@pytest.mark.parametrize("folder", BAD, ids=lambda p: p.name)
def test_check_human_reports_code_and_fix(folder):
    code = expected_code(folder)
    result = run_check(folder)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert code in result.stderr and "fix:" in result.stderr, output
    assert "Traceback" not in output and "SDT-E999" not in output
    assert FAKE_VALUE not in output


def test_missing_folder(tmp_path):
    missing = tmp_path / "no-such-folder"
    project, problems = inspect_project(missing)
    assert project is None
    assert [p.code for p in problems] == ["SDT-E101"]
    assert_actionable(problems[0])
    with pytest.raises(ProjectError) as raised:
        load_project(missing)
    assert raised.value.code == "SDT-E101"
    for args in ((), ("--json",)):
        result = run_check(missing, *args)
        assert result.returncode == 1
        assert "SDT-E101" in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert "fix:" in run_check(missing).stderr


# --- environment variables and secrets --------------------------------------------------------

def test_unset_secret_is_named_never_valued():
    project, problems = inspect_project(FIXTURES / "secret-env-unset")
    (problem,) = problems
    assert problem.code == "SDT-E108" and UNSET_SECRET in problem.cause and "secret" in problem.cause
    assert problem.file == "dataplug.py"
    assert FAKE_VALUE not in repr(problems)
    env = {v.name: v for v in project.env}
    assert env[UNSET_SECRET].secret and env[UNSET_SECRET].required
    assert env[SET_SECRET].secret and not env[SET_SECRET].required
    assert env[SET_SECRET].shown() == "****"


def test_require_env_false_makes_unset_env_a_warning():
    folder = FIXTURES / "secret-env-unset"
    project, problems = inspect_project(folder, require_env=False)
    assert [(p.code, p.severity) for p in problems] == [("SDT-E108", "warning")]
    assert project is not None and project.findings == tuple(problems)
    assert load_project(folder, require_env=False).plug.name == "SitePlug"
    with pytest.raises(ProjectError) as raised:
        load_project(folder)
    assert raised.value.code == "SDT-E108"


def test_set_secret_passes_and_is_not_printed(monkeypatch):
    secret = "fake-password-0d41e2a9-also-never-printed"
    monkeypatch.setenv(UNSET_SECRET, secret)
    folder = FIXTURES / "secret-env-unset"
    project, problems = inspect_project(folder)
    assert problems == [] and project is not None
    for args in ((), ("--json",)):
        result = run_check(folder, *args, env={UNSET_SECRET: secret})
        assert result.returncode == 0, result.stdout + result.stderr
        assert secret not in result.stdout + result.stderr
        assert FAKE_VALUE not in result.stdout + result.stderr
    payload = json.loads(run_check(folder, "--json", env={UNSET_SECRET: secret}).stdout)
    assert {v["name"]: v["secret"] for v in payload["env"]} == {UNSET_SECRET: True, SET_SECRET: True}


def test_empty_value_counts_as_unset(monkeypatch):
    monkeypatch.setenv(UNSET_SECRET, "")
    _, problems = inspect_project(FIXTURES / "secret-env-unset")
    assert [p.code for p in errors_of(problems)] == ["SDT-E108"]


def test_required_env_with_default_is_not_reported(tmp_path):
    plug = GOOD_PLUG.replace("from sdt_build import DataPlug", "from sdt_build import DataPlug, EnvVar").replace(
        "class SitePlug(DataPlug):\n",
        f'class SitePlug(DataPlug):\n    env = ["{UNSET_SECRET}_PLAIN", EnvVar("{UNSET_SECRET}", default="x")]\n\n')
    project, problems = inspect_project(make_project(tmp_path / "p", plug))
    assert [(p.code, p.cause.split()[3]) for p in problems] == [("SDT-E108", f"{UNSET_SECRET}_PLAIN")]
    assert [v.name for v in project.env] == [f"{UNSET_SECRET}_PLAIN", UNSET_SECRET]


# --- the valid example ------------------------------------------------------------------------

def test_example_passes():
    project, problems = inspect_project(EXAMPLE)
    assert problems == []
    assert project is not None


def test_example_fields():
    project = load_project(EXAMPLE)
    root = EXAMPLE.resolve()
    source = (root / "dataplug.py").read_text().splitlines()
    client_source = (root / "client.py").read_text().splitlines()
    assert project.root == root
    assert project.name == "local-csv" and project.settings.python == "3.11"
    assert project.plug.name == "LocalCSV" and project.plug.file == root / "dataplug.py"
    assert source[project.plug.line - 1].startswith("class LocalCSV(")
    assert project.plug.has_keys
    assert project.client.name == "Laptop" and project.client.file == root / "client.py"
    assert client_source[project.client.line - 1].startswith("class Laptop(")
    assert [(v.name, v.required, v.secret, v.default) for v in project.env] == [
        ("SDT_CSV_DIR", False, False, None)]
    assert project.settings.keys == (("TAEFC1044741",), ("ZT162185000441C1203",))
    assert project.settings.run_pipeline == {"fix_shifts": True}
    assert project.settings.plug_class is None and project.settings.client_class is None
    assert project.requirements_file is None and project.requirement_lines == ()
    assert project.findings == ()
    assert project.code_files == (Path("client.py"), Path("dataplug.py"))


def test_example_check_cli():
    result = run_check(EXAMPLE, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    payload = json.loads(result.stdout)
    assert payload["ok"] is True and payload["problems"] == []
    assert (payload["plug"], payload["client"], payload["name"]) == ("LocalCSV", "Laptop", "local-csv")
    human = run_check(EXAMPLE)
    assert human.returncode == 0 and "ok" in human.stderr and "Traceback" not in human.stderr


# --- keys -------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ([13, [2011, 2012]], (13, [2011, 2012])),
    ((13, [2011, 2012]), (13, [2011, 2012])),
    (["TAEFC1044741"], ("TAEFC1044741",)),
    ("TAEFC1044741", ("TAEFC1044741",)),
    (13, (13,)),
])
def test_normalize_key(raw, expected):
    key = normalize_key(raw)
    assert type(key) is tuple and key == expected
    assert [type(field) for field in key] == [type(field) for field in expected]  # lists stay lists


def test_settings_keys_are_normalized(tmp_path):
    folder = make_project(tmp_path / "p", files={"sdt.toml": 'keys = [[13, [2011, 2012]], ["A1"], "B2", 7]\n'})
    project = load_project(folder)
    assert project.settings.keys == ((13, [2011, 2012]), ("A1",), ("B2",), (7,))
    assert isinstance(project.settings.keys[0][1], list)


def test_sdt_toml_every_setting(tmp_path):
    folder = make_project(tmp_path / "p", files={"sdt.toml": '''
        name = "pvdb-fleet"
        python = "3.11"
        base_image = "python:3.11-slim"
        registry = "ghcr.io/example"
        plug_class = "SitePlug"
        client_class = "Laptop"
        keys = [[13, [2011, 2012]]]

        [run_pipeline]
        fix_shifts = true
        power_col = "ac_power"
        '''})
    settings = load_project(folder).settings
    assert (settings.name, settings.python, settings.base_image, settings.registry) == (
        "pvdb-fleet", "3.11", "python:3.11-slim", "ghcr.io/example")
    assert (settings.plug_class, settings.client_class) == ("SitePlug", "Laptop")
    assert settings.run_pipeline == {"fix_shifts": True, "power_col": "ac_power"}


def test_default_name_comes_from_the_folder(tmp_path):
    assert load_project(make_project(tmp_path / "My PV_Plug")).name == "my-pv_plug"


# --- which class is the plug ------------------------------------------------------------------

def test_helper_base_and_one_subclass_is_one_plug(tmp_path):
    plug = '''
        from sdt_build import DataPlug, EnvVar


        class _Reader:
            def fetch(self, site):
                return site


        class BaseTablePlug(DataPlug):
            env = [EnvVar("SDT_TEST_FIXTURE_OPTIONAL", required=False)]
            table = None

            def get_data(self, key):
                return self.fetch(*key)


        class InverterPlug(BaseTablePlug, _Reader):
            table = "inverters"
        '''
    project, problems = inspect_project(make_project(tmp_path / "p", plug))
    assert problems == []
    assert project.plug.name == "InverterPlug"
    assert [v.name for v in project.env] == ["SDT_TEST_FIXTURE_OPTIONAL"]  # inherited declaration


def test_base_without_dataplug_counts_too(tmp_path):
    plug = '''
        class Reader:
            def get_data(self, key):
                return key


        class SitePlug(Reader):
            pass
        '''
    project, problems = inspect_project(make_project(tmp_path / "p", plug))
    assert problems == [] and project.plug.name == "SitePlug"


def test_inherited_get_data_is_checked(tmp_path):
    plug = '''
        from sdt_build import DataPlug


        class Base(DataPlug):
            def get_data(self):
                return None


        class SitePlug(Base):
            pass
        '''
    _, problems = inspect_project(make_project(tmp_path / "p", plug))
    assert [(p.code, p.line) for p in problems] == [("SDT-E106", 5)]


TWO_PLUGS = GOOD_PLUG + '''

class OtherPlug(DataPlug):
    def get_data(self, key):
        return None
'''
TWO_CLIENTS = GOOD_CLIENT + '''

class Workstation(LocalClient):
    workers = 8
'''


def test_plug_class_and_client_class_pick_among_several(tmp_path):
    folder = make_project(tmp_path / "p", TWO_PLUGS, TWO_CLIENTS)
    _, problems = inspect_project(folder)
    assert sorted(p.code for p in problems) == ["SDT-E105", "SDT-E111"]
    (folder / "sdt.toml").write_text('plug_class = "OtherPlug"\nclient_class = "Workstation"\n')
    project, problems = inspect_project(folder)
    assert problems == []
    assert (project.plug.name, project.client.name) == ("OtherPlug", "Workstation")
    (folder / "sdt.toml").write_text('plug_class = "SitePlug"\n')
    _, problems = inspect_project(folder)
    assert [p.code for p in problems] == ["SDT-E111"]


def test_plug_class_may_name_a_base(tmp_path):
    plug = '''
        from sdt_build import DataPlug


        class SitePlug(DataPlug):
            def get_data(self, key):
                return key


        class CachedSitePlug(SitePlug):
            pass
        '''
    folder = make_project(tmp_path / "p", plug, files={"sdt.toml": 'plug_class = "SitePlug"\n'})
    assert load_project(folder).plug.name == "SitePlug"


def test_plug_class_that_does_not_exist(tmp_path):
    folder = make_project(tmp_path / "p", TWO_PLUGS, files={"sdt.toml": 'plug_class = "PVDBPlug"\n'})
    _, problems = inspect_project(folder)
    (problem,) = problems
    assert problem.code == "SDT-E104" and problem.file == "dataplug.py"
    assert "PVDBPlug" in problem.cause and "SitePlug, OtherPlug" in problem.cause
    assert_actionable(problem)


def test_upstream_style_plug_without_base_is_accepted(tmp_path):
    plug = '''
        """An SDT-upstream dataplug: no sdt_build import, no base class."""
        import pandas as pd


        class PVDBPlug:
            def __init__(self, table="pv"):
                self.table = table

            def get_data(self, keys):
                site, years = keys
                return pd.DataFrame()
        '''
    project, problems = inspect_project(make_project(tmp_path / "p", plug))
    assert problems == []
    assert project.plug.name == "PVDBPlug" and project.plug.env == () and not project.plug.has_keys


def test_optional_arguments_are_fine(tmp_path):
    plug = '''
        from sdt_build import DataPlug


        class SitePlug(DataPlug):
            def __init__(self, table="pv", *, retries=3):
                self.table = table

            def keys(self, limit=None):
                return [("a",)]

            def get_data(self, key, timeout=30):
                return key
        '''
    project, problems = inspect_project(make_project(tmp_path / "p", plug))
    assert problems == [] and project.plug.has_keys


def test_env_may_name_module_constants(tmp_path):
    plug = '''
        from sdt_build import DataPlug, EnvVar

        DEFAULT_URL = "https://example.org/api"
        SECRET = True


        class SitePlug(DataPlug):
            env = [EnvVar("API_URL", required=False, default=DEFAULT_URL), EnvVar("API_KEY", secret=SECRET)]

            def get_data(self, key):
                return key
        '''
    project, problems = inspect_project(make_project(tmp_path / "p", plug))
    assert [p.code for p in problems] == ["SDT-E108"]  # API_KEY unset; nothing unreadable
    url, key = project.plug.env
    assert url.default == "https://example.org/api" and key.secret


def test_connect_with_image_is_fine(tmp_path):
    client = GOOD_CLIENT + '''
    def connect(self, image=None):
        return super().connect(image)
'''
    _, problems = inspect_project(make_project(tmp_path / "p", client=client))
    assert problems == []


# --- imports and requirements -----------------------------------------------------------------

def test_local_modules_are_not_flagged(tmp_path):
    plug = "import pvfleet_helpers\nfrom pvfleet_helpers import scale\nfrom pvfleet_pkg.io import read\n" + GOOD_PLUG
    folder = make_project(tmp_path / "p", plug, files={
        "pvfleet_helpers.py": "def scale(x):\n    return x\n",
        "pvfleet_pkg/__init__.py": "", "pvfleet_pkg/io.py": "def read():\n    pass\n"})
    project, problems = inspect_project(folder)
    assert problems == []
    assert Path("pvfleet_helpers.py") in project.code_files and Path("pvfleet_pkg/io.py") in project.code_files
    (folder / "pvfleet_helpers.py").unlink()  # control: the same import without the file is flagged
    _, problems = inspect_project(folder)
    assert [(p.code, p.line) for p in problems] == [("SDT-E107", 1)]


@pytest.mark.parametrize("statement, distribution", [
    ("import yaml", "PyYAML==6.0.1"),
    ("import sklearn.linear_model", "scikit-learn>=1.3"),
    ("from google.cloud import storage", "google-cloud-storage==2.14.0"),
    ("import influxdb_client", "influxdb-client"),
    ("import my_pv_lib", "My.PV-Lib~=0.3"),
])
def test_import_listed_under_its_distribution_name(tmp_path, monkeypatch, installed_here, statement, distribution):
    top = re.split(r"[ .]", statement)[1]
    base = constraints.module_index("3.11")
    monkeypatch.setattr(constraints, "module_index", lambda python: base - {top})  # not in SDT's image
    installed_here({})  # nor on this host
    folder = make_project(tmp_path / "p", statement + "\n" + GOOD_PLUG)
    _, problems = inspect_project(folder)
    assert [p.code for p in problems] == ["SDT-E107"]  # control: unlisted, it is flagged
    (folder / "requirements.txt").write_text(f"# extra\n{distribution}\n")
    project, problems = inspect_project(folder)
    assert problems == []
    assert project.requirement_lines == (distribution,)


@pytest.fixture
def installed_here(monkeypatch):
    """installed_here(mapping): the distributions this host has, by module (read once per process, so
    read again with the patch, and again after the test)."""
    def patch(mapping: dict[str, list[str]]) -> None:
        monkeypatch.setattr(importlib.metadata, "packages_distributions", lambda: mapping)
        contracts.installed_here.cache_clear()

    yield patch
    contracts.installed_here.cache_clear()


def test_import_mapped_by_installed_metadata(tmp_path, installed_here):
    """An import name the alias table does not know is matched through installed packages' metadata."""
    installed_here({"pvfoo": ["pv-foo-dist"]})
    folder = make_project(tmp_path / "p", "import pvfoo\n" + GOOD_PLUG)
    assert [p.code for p in inspect_project(folder)[1]] == ["SDT-E107"]
    (folder / "requirements.txt").write_text("pv_foo_dist==1.0\n")
    assert inspect_project(folder)[1] == []


def test_import_suggests_the_distribution_name(tmp_path, monkeypatch):
    base = constraints.module_index("3.11")
    monkeypatch.setattr(constraints, "module_index", lambda python: base - {"sklearn"})
    _, problems = inspect_project(make_project(tmp_path / "p", "import sklearn\n" + GOOD_PLUG))
    assert "`scikit-learn`" in problems[0].fix


def test_requirements_includes_comments_and_hashes(tmp_path):
    plug = "import boto3\nimport influxdb_client\nimport my_pv_lib\nimport pyarrow\n" + GOOD_PLUG
    folder = make_project(tmp_path / "p", plug, files={
        "requirements.txt": '''
            # pins for the PVDB plug
            -r base-requirements.txt
            --index-url https://pypi.org/simple

            boto3==1.34.0 \\
                --hash=sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9 \\
                --hash=sha256:f9e8d7c6b5a4938271605f4e3d2c1b0af9e8d7c6b5a4938271605f4e3d2c1b0a
            influxdb-client>=1.40  # InfluxDB 2 API
            ''',
        "base-requirements.txt": "# shared\n--requirement=shared/more.txt\npyarrow==15.0.0\n",
        "shared/more.txt": "my-pv-lib==0.1  # internal\n",
    })
    project, problems = inspect_project(folder)
    assert problems == []
    assert project.requirements_file == folder.resolve() / "requirements.txt"
    assert project.requirement_lines == ("my-pv-lib==0.1", "pyarrow==15.0.0", "--index-url https://pypi.org/simple",
                                         "boto3==1.34.0", "influxdb-client>=1.40")
    assert requirement_names(project.requirement_lines) == ["my-pv-lib", "pyarrow", "boto3", "influxdb-client"]


def test_requirements_include_loop_is_named(tmp_path):
    """pip refuses a file that includes itself again; so does the check, naming the loop."""
    folder = make_project(tmp_path / "p", files={"requirements.txt": "-r other.txt\nrequests\n",
                                                         "other.txt": "-r requirements.txt\nurllib3\n"})
    _, problems = inspect_project(folder)
    (problem,) = errors_of(problems)
    assert problem.code == "SDT-E126" and (problem.file, problem.line) == ("other.txt", 1)
    assert "requirements.txt → other.txt → requirements.txt" in problem.cause


def test_invalid_requirement_line_number_after_continuations():
    folder = FIXTURES / "requirements-invalid-line"
    _, (problem,) = inspect_project(folder)
    physical = (folder / "requirements.txt").read_text().splitlines()
    assert physical[problem.line - 1].startswith("pvlib = ")


# --- encodings --------------------------------------------------------------------------------

def test_utf8_bom_is_accepted(tmp_path):
    folder = make_project(tmp_path / "p", b"\xef\xbb\xbf" + GOOD_PLUG.encode(),
                          files={"requirements.txt": b"\xef\xbb\xbfrequests==2.31.0\n"})
    project, problems = inspect_project(folder)
    assert problems == [] and project.requirement_lines == ("requests==2.31.0",)


def test_null_byte_is_a_syntax_error_with_a_usable_fix(tmp_path):
    _, problems = inspect_project(make_project(tmp_path / "p", GOOD_PLUG.encode() + b"\x00\n"))
    (problem,) = problems
    assert problem.code == "SDT-E103" and problem.file == "dataplug.py"
    assert_actionable(problem)


def test_non_utf8_requirements(tmp_path):
    _, problems = inspect_project(make_project(
        tmp_path / "p", files={"requirements.txt": "pvlib  # Zürich\n".encode("latin-1")}))
    assert [(p.code, p.file) for p in problems] == [("SDT-E117", "requirements.txt")]


def test_fixture_copy_keeps_its_code(tmp_path):
    """Fixtures do not depend on where they live (the image name comes from the folder)."""
    copy = tmp_path / "copied"
    shutil.copytree(FIXTURES / "syntax-error", copy)
    _, problems = inspect_project(copy)
    assert [p.code for p in problems] == ["SDT-E103"]


def test_user_files_doc_lists_every_code_and_setting():
    from sdt_build.userfolder.settings import SETTINGS_KEYS

    doc = (ROOT / "docs" / "user-files.md").read_text()
    emitted = loader_codes()
    missing = sorted(code for code in emitted | {"SDT-E101"} if f"| {code} |" not in doc)
    assert not missing, f"codes missing from the table in docs/user-files.md: {missing}"
    for key in SETTINGS_KEYS:
        assert f"| `{key}` |" in doc or f"| `[{key}]` |" in doc, f"sdt.toml setting {key} is not documented"
