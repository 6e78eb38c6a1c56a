"""Docs stay in step with the code: every error code has a troubleshooting entry."""

from __future__ import annotations

import re

from conftest import ROOT
from mdlinks import broken_links, doc_references, slugs

from sdt_build.resources import doc_text
from sdt_build.runtime.errors import EXIT_CODES

CODE = re.compile(r"SDT-E\d{3}")


def codes_in_source() -> set[str]:
    return {code for path in (ROOT / "sdt_build").rglob("*.py") for code in CODE.findall(path.read_text())}


def test_every_error_code_has_a_troubleshooting_entry():
    doc = (ROOT / "docs" / "troubleshooting.md").read_text()
    documented = set(re.findall(r"^### (SDT-E\d{3}) ", doc, re.M))
    missing = codes_in_source() - documented
    assert not missing, f"codes without an entry in docs/troubleshooting.md: {sorted(missing)}"
    for code in documented:
        entry = doc.split(f"### {code} ")[1].split("\n### ")[0]
        assert "**Cause:**" in entry and "**Fix:**" in entry, code
        assert entry.split("\n## ")[0].strip() in doc_text(code), code  # what `sdt-build docs CODE` prints


def test_readme_starts_with_pip_install_then_the_two_commands_and_lists_exit_codes():
    readme = (ROOT / "README.md").read_text()
    blocks = readme.split("```")[1::2]
    assert blocks[0].split("\n", 1)[1].startswith('pip install "sdt-build')  # users first
    assert "make demo" in blocks[1] and "make test" in blocks[1]  # then contributors
    assert not re.search(r"\]\((?!https?://)", readme)  # the package index renders no relative link
    for code in EXIT_CODES:
        assert re.search(rf"^\|\s*{code}\s*\|", readme, re.M), f"exit code {code} missing from README"


def test_reliability_names_every_fault_probe_and_only_probes_that_exist():
    """docs/reliability.md lists each promise with the test that holds it."""
    doc = (ROOT / "docs" / "reliability.md").read_text()
    named = set(re.findall(r"`(test_\w+\.py::test_\w+)`", doc))
    probes = {f"{path.name}::{name}" for path in (ROOT / "tests" / "faults").glob("test_*.py")
              for name in re.findall(r"^def (test_\w+)", path.read_text(), re.M)}
    assert named == probes, {"not in the doc": sorted(probes - named), "no such test": sorted(named - probes)}


def test_every_doc_reference_in_a_message_resolves_through_sdt_build_docs():
    """What sdt-build prints sends users to `sdt-build docs TOPIC` (or docs/TOPIC.md), and each one
    prints a topic (and the anchor is one of its headings) from the installed package."""
    import json
    import subprocess

    from conftest import SDT

    references = doc_references(ROOT)
    assert {"edge-cases", "running", "clients", "own-image"} <= {r.split("#")[0].removesuffix(".md")
                                                                 for r in references}
    for reference in sorted(references):
        done = subprocess.run([SDT, "docs", reference, "--json"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (reference, done.stdout, done.stderr)
        if "#" in reference:
            assert reference.split("#")[1] in slugs(json.loads(done.stdout)["text"]), reference


def test_docs_links_resolve():
    """Every relative link in docs/ (and every docs/X.md it or README names) reaches a file, and its
    anchor a heading of that file."""
    docs = ROOT / "docs"
    pages = [*sorted(docs.glob("*.md")), ROOT / "README.md"]
    broken = [line for page in pages for line in broken_links(page, docs=docs)]
    assert not broken, "\n".join(broken)
