"""Packaging promises that hold without building anything."""

from __future__ import annotations

import fnmatch
import sys

from conftest import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_local_extra_pins_what_the_image_gets():
    """`pip install "sdt-build[local]"` gives the client the image's SDT and parity versions
    (`make constraints` writes the extra from the constraints; this keeps them from drifting)."""
    from sdt_build.constraints import available, folder, local_extra, read_lock

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["local"]
    assert extra == local_extra()
    for python in available():
        for name, version in read_lock(folder(python) / "parity.txt").items():
            assert any(line.startswith(f"{name}=={version}") and (";" not in line or python in line)
                       for line in extra), (python, name)


def test_py_typed_is_honest():
    """PEP 561: the marker ships, and the public API it covers is annotated."""
    import inspect

    import sdt_build
    from sdt_build.sdtdask import SDTDask

    assert (ROOT / "sdt_build" / "py.typed").exists()
    assert inspect.signature(SDTDask.execute).return_annotation != inspect.Signature.empty
    assert sdt_build.__all__


def test_docs_ship_inside_the_package_from_their_one_folder():
    """The wheel's sdt_build/docs is the repository's docs/ itself (mapped, not copied), every file of it."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "sdt_build.docs" in setuptools["packages"] and setuptools["package-dir"]["sdt_build.docs"] == "docs"
    patterns = setuptools["package-data"]["sdt_build.docs"]
    for path in (ROOT / "docs").iterdir():
        assert path.name == "__init__.py" or any(fnmatch.fnmatch(path.name, p) for p in patterns), path.name
    assert not (ROOT / "sdt_build" / "docs").exists()
