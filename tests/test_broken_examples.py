"""The deliberately broken examples (examples/broken-*): each fails the way its README says.

Every examples/broken-* folder declares near the top of its README.md one line

    Expect: check exit 2 SDT-E203 SDT-E208
    Expect: build exit 4 SDT-E402

``check``: ``sdt-build check DIR --json`` exits with that code and reports exactly those error
codes (warnings and notes aside). ``build``: check passes, and the build pipeline's smoke test
fails with that code (needs Docker). New folders are picked up automatically; one without an
``Expect:`` line fails. docs/common-mistakes.md must list each folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT, SDT
from mdlinks import broken_links

from sdt_build.runtime.errors import SmokeFailure
from sdt_build.userfolder.project import inspect_project

BROKEN = sorted(p for p in EXAMPLES.iterdir() if p.is_dir() and p.name.startswith("broken-"))
EXPECT = re.compile(r"^Expect: (check|build) exit (\d+)((?: SDT-E\d{3})+)[ \t]*$", re.M)
DOC = ROOT / "docs" / "common-mistakes.md"
MARKER = "BROKEN ON PURPOSE"
FAKE_VALUE = "fake-value-5b0d8e61-must-never-be-printed"
READS_ENV = re.compile(r"""(?:environ\[|environ\.get\(|getenv\()\s*["']([A-Za-z_][A-Za-z0-9_]*)["']""")


def expectation(folder: Path) -> tuple[str, int, set[str]] | None:
    """(stage, exit code, error codes) from the README's one ``Expect:`` line; None without one."""
    readme = folder / "README.md"
    found = EXPECT.findall(readme.read_text("utf-8")) if readme.is_file() else []
    if len(found) != 1:
        return None
    stage, exit_code, codes = found[0]
    return stage, int(exit_code), set(codes.split())


def _stage(stage: str) -> list[Path]:
    return [folder for folder in BROKEN if (expectation(folder) or ("",))[0] == stage]


def declared_env(folder: Path) -> list[str]:
    project, _ = inspect_project(folder, require_env=False)
    return [var.name for var in project.env] if project is not None else []


def run_check(folder: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`sdt-build check DIR --json` with the folder's declared variables unset (unless ``env`` sets them)."""
    removed = set(declared_env(folder)) | {"FORCE_COLOR", "PY_COLORS"}
    base = {k: v for k, v in os.environ.items() if k not in removed}
    base.update({"NO_COLOR": "1", **(env or {})})
    return subprocess.run([SDT, "check", str(folder), "--json"], capture_output=True, text=True, env=base,
                          cwd=ROOT, timeout=300)


def error_codes(payload: dict) -> set[str]:
    return {p["code"] for p in payload["problems"] + payload["findings"] if p["severity"] == "error"}


def assert_links_resolve(markdown: Path) -> None:
    broken = broken_links(markdown)
    assert not broken, broken


def test_there_are_broken_examples():
    assert len(BROKEN) >= 4, BROKEN
    assert _stage("check"), "at least one mistake must be caught by `sdt-build check`"


@pytest.mark.parametrize("folder", BROKEN, ids=lambda p: p.name)
def test_broken_example_is_complete(folder):
    for name in ("dataplug.py", "client.py", "README.md"):
        assert (folder / name).is_file(), f"{folder.name}: {name} is missing"
    expected = expectation(folder)
    assert expected is not None, (f"{folder.name}/README.md needs exactly one line like "
                                  "`Expect: check exit 2 SDT-E203` (stage check or build)")
    stage, exit_code, codes = expected
    assert exit_code in ((1, 2) if stage == "check" else (4,)), f"{folder.name}: exit {exit_code} at {stage}"
    assert MARKER in (folder / "dataplug.py").read_text("utf-8"), \
        f"{folder.name}/dataplug.py: its docstring must say what is {MARKER}"
    readme = (folder / "README.md").read_text("utf-8")
    body = EXPECT.sub("", readme)
    for code in codes:
        assert code in body, f"{folder.name}/README.md shows no output with {code}"
    assert "## The fix" in readme, f"{folder.name}/README.md: show the fix"
    assert_links_resolve(folder / "README.md")
    troubleshooting = (ROOT / "docs" / "troubleshooting.md").read_text("utf-8")
    for code in codes:
        assert f"### {code} " in troubleshooting


@pytest.mark.parametrize("folder", _stage("check"), ids=lambda p: p.name)
def test_check_reports_the_expected_codes(folder):
    _, exit_code, codes = expectation(folder)
    result = run_check(folder)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == exit_code, result.stdout + result.stderr
    payload = json.loads(result.stdout)
    assert payload["ok"] is False
    assert error_codes(payload) == codes, payload
    for problem in payload["problems"] + payload["findings"]:
        assert problem["fix"].strip(), problem


@pytest.mark.parametrize("folder", [f for f in _stage("check") if expectation(f)[2] == {"SDT-E108"}],
                         ids=lambda p: p.name)
def test_unset_variable_examples_pass_once_exported(folder):
    """The fix for SDT-E108 is to export the variable; its value never shows in the output."""
    result = run_check(folder, env={name: FAKE_VALUE for name in declared_env(folder)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["ok"] is True
    assert FAKE_VALUE not in result.stdout + result.stderr


def test_common_mistakes_page_lists_every_broken_example():
    doc = DOC.read_text("utf-8")
    for folder in BROKEN:
        assert f"](../examples/{folder.name}/)" in doc, f"docs/common-mistakes.md does not link {folder.name}"
        _, exit_code, codes = expectation(folder) or ("", 0, set())
        row = next((line for line in doc.splitlines() if f"../examples/{folder.name}/" in line), "")
        for code in codes:
            assert code in row, f"docs/common-mistakes.md: the {folder.name} row does not name {code}"
        assert f"({exit_code})" in row, f"docs/common-mistakes.md: the {folder.name} row does not give exit {exit_code}"
    assert_links_resolve(DOC)


@pytest.mark.docker
@pytest.mark.parametrize("folder", _stage("build"), ids=lambda p: p.name)
def test_smoke_test_reports_the_expected_code(folder, docker, base_image, tmp_path, monkeypatch):
    """Check passes; the build's smoke test fails with the code, and the image never becomes :latest."""
    from sdt_build.pipeline import build_project

    _, exit_code, codes = expectation(folder)
    checked = run_check(folder)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    copy = tmp_path / folder.name
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("__pycache__"))
    name = f"sdt-test-{folder.name}-{uuid.uuid4().hex[:8]}"
    settings = copy / "sdt.toml"
    text = settings.read_text("utf-8") if settings.exists() else ""
    settings.write_text(re.sub(r'(?m)^name = "[^"]*"$', f'name = "{name}"', text) if "name = " in text
                        else f'name = "{name}"\n{text}')
    # Whatever the plug reads is set here, as in the analyst's shell: the failure must come from the image.
    for variable in set(READS_ENV.findall((copy / "dataplug.py").read_text("utf-8"))):
        monkeypatch.setenv(variable, FAKE_VALUE)

    try:
        with pytest.raises(SmokeFailure) as raised:
            build_project(copy)
        failure = raised.value
        assert {failure.code} == codes and failure.exit_code == exit_code, failure.to_dict()
        assert failure.report is not None and not failure.report.ok
        assert FAKE_VALUE not in json.dumps(failure.to_dict(), default=str)
        tags = [tag for image in docker.images.list(name=name) for tag in image.tags]
        assert tags and not any(tag.endswith(":latest") for tag in tags), tags
        assert any(":smoke-failed-" in tag for tag in tags), tags
    finally:
        for image in docker.images.list(name=name):
            docker.images.remove(image.id, force=True)


def test_common_mistakes_try_one_works_outside_a_checkout(tmp_path):
    """The page's first commands, run as written in an empty folder (as a pip user would), end with
    the code and exit they announce."""
    block = DOC.read_text("utf-8").split("```bash\n")[1].split("```")[0]
    commands = [line for line in block.splitlines() if line.strip()]
    code, exit_code = re.search(r"# (SDT-E\d{3}), exit (\d+)", commands[-1]).groups()
    env = {**os.environ, "PATH": f"{Path(SDT).parent}{os.pathsep}{os.environ['PATH']}", "NO_COLOR": "1"}
    for number, command in enumerate(commands):
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        expected = int(exit_code) if number == len(commands) - 1 else 0
        assert done.returncode == expected and (number < len(commands) - 1 or code in done.stderr), \
            (command, done.stdout, done.stderr)
