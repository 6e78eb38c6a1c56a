"""The shape the code keeps: floors that import only downward, one parity contract that agrees with
Dask's own, and images whose content hash depends on the runtime part of sdt_build only."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT

PACKAGE = ROOT / "sdt_build"
# Bottom to top, by top-level module or folder. A module may import from its own floor and the floors
# below, never above.
FLOORS = (
    ("runtime: what images and worker venvs hold", {"runtime"}),
    ("ground: shared names", {"target", "resources", "cache", "constraints", "requirements", "progress", "owner",
                              "interrupt", "installer", "userfiles"}),
    ("the user's folder", {"userfolder"}),
    ("package sources", {"sources"}),
    ("dependencies", {"dependencies"}),
    ("build", {"build"}),
    ("run", {"run", "clients"}),
    ("composition", {"pipeline", "sdtdask", "doctor"}),
    ("shells and maintainer tools", {"cli", "__main__", "maintainer"}),
)
FACADE = "sdt_build"  # the package itself: its public names load lazily from any floor


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _floor(module: str) -> int:
    name = module.removeprefix("sdt_build.").split(".")[0]
    for number, (_, members) in enumerate(FLOORS):
        if name in members:
            return number
    raise AssertionError(f"{module} is on no floor: add it to FLOORS (and docs/architecture.md)")


def _imports(path: Path) -> set[str]:
    """Every sdt_build module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("sdt_build"):
            if node.module == FACADE:
                found |= {f"sdt_build.{a.name}" for a in node.names if (PACKAGE / f"{a.name}.py").exists()
                          or (PACKAGE / a.name).is_dir()}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("sdt_build.")}
    return found


def test_no_module_imports_from_a_floor_above_it():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module(path)
        if module == FACADE or "templates" in path.parts or "examples" in path.parts:
            continue
        for imported in _imports(path):
            if _floor(imported) > _floor(module):
                upward.append(f"{module} (floor {_floor(module)}) imports {imported} (floor {_floor(imported)})")
    assert not upward, "\n".join(upward)


def test_every_floor_is_documented():
    text = (ROOT / "docs" / "architecture.md").read_text()
    for title, members in FLOORS:
        for member in members:
            assert f"`{member}" in text, f"docs/architecture.md does not place {member} ({title})"


def test_the_parity_contract_covers_dasks_own_version_check():
    from distributed import versions

    from sdt_build.runtime import parity

    assert set(versions.required_packages) <= set(parity.MUST_MATCH)
    assert set(versions.optional_packages) <= set(parity.SHOULD_MATCH)
    assert not set(parity.MUST_MATCH) & set(parity.SHOULD_MATCH)


def test_the_parity_module_runs_where_sdt_build_is_not_installed(tmp_path):
    """DockerClient lends the file to images that have no sdt_build: it must need nothing else."""
    from sdt_build.runtime import parity

    copy = tmp_path / "parity.py"
    shutil.copy(parity.__file__, copy)
    done = subprocess.run([sys.executable, "-I", str(copy)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert parity.parse(done.stdout) == parity.versions()


def _content_hash(package_root: Path, example: Path, context: Path) -> str:
    code = ("import sys; from sdt_build.pipeline import build_project; "
            f"print(build_project({str(example)!r}, context_only=True, context_dir=__import__('pathlib').Path("
            f"{str(context)!r})).context.content_hash)")
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    context.parent.mkdir(parents=True)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env,
                          cwd=context.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("example", ["local-csv", "synthetic"])
def test_editing_the_cli_leaves_every_image_hash_unchanged(docker, base_image, tmp_path, example):
    edited = tmp_path / "edited"
    shutil.copytree(PACKAGE, edited / "sdt_build", ignore=shutil.ignore_patterns("__pycache__"))
    cli = edited / "sdt_build" / "cli" / "shell.py"
    cli.write_text(cli.read_text().replace('"""Check, build, smoke-test and run', '"""Check, build, test and run'))
    assert cli.read_text() != (PACKAGE / "cli" / "shell.py").read_text()
    original = _content_hash(ROOT, EXAMPLES / example, tmp_path / "a" / "context")
    assert _content_hash(edited, EXAMPLES / example, tmp_path / "b" / "context") == original


def test_the_runtime_part_stands_alone(tmp_path):
    """What an image holds of sdt_build imports nothing else of it: a worker can run a key, the probe
    can run, and a plug can import the contract."""
    from sdt_build.build.context import runtime_files

    files = runtime_files()
    assert "runtime/task.py" in files and "__init__.py" in files
    for name in files:
        target = tmp_path / "sdt_build" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PACKAGE / name, target)
    code = ("import sys; import sdt_build.runtime.task, sdt_build.runtime.probe, sdt_build.runtime.parity; "
            "from sdt_build import DataPlug, EnvVar; "
            "assert all(m.split('.')[0] != 'sdt_build' or m in ('sdt_build', 'sdt_build.runtime') or "
            f"m.replace('.', '/') + '.py' in {[f'sdt_build/{n}' for n in files]!r} for m in sys.modules), "
            "sorted(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
