"""Markdown as GitHub reads it (a page's heading anchors, the relative links that reach nothing), and
the doc references in what sdt-build prints."""

from __future__ import annotations

import re
from pathlib import Path

LINK = re.compile(r"\]\(([^)\s]+)\)")
DOC_REFERENCE = re.compile(r"\bdocs/([\w-]+\.md(?:#[\w-]+)?)|`sdt-build docs ([\w-]+(?:#[\w-]+)?)`")


def doc_references(root: Path) -> set[str]:
    """Every doc reference (``docs/NAME.md#anchor`` or `sdt-build docs NAME`) in the code and data
    sdt-build ships (the maintainer tools aside: they run in a checkout)."""
    shipped = [path for path in (root / "sdt_build").rglob("*.py") if "maintainer" not in path.parts]
    shipped += [*(root / "templates").glob("*.j2"), *(root / "sdt_build" / "constraints").glob("*.toml")]
    return {a or b for path in shipped for a, b in DOC_REFERENCE.findall(path.read_text("utf-8"))}


def slugs(markdown: str) -> set[str]:
    """The anchors GitHub gives a page's headings (a repeated one -1, -2…), and explicit ids."""
    found, seen = set(), {}
    for heading in re.findall(r"^#{1,6} (.+?)\s*$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return found | set(re.findall(r'<a (?:id|name)="([^"]+)"', markdown))


def broken_links(page: Path, *, docs: Path | None = None) -> list[str]:
    """The links of ``page`` (outside code blocks) whose file or heading does not exist; with ``docs``,
    also each `docs/NAME.md` the text names, looked up in that folder."""
    text = re.sub(r"```.*?```", "", page.read_text("utf-8"), flags=re.S)
    links = [(page.parent, link) for link in LINK.findall(text) if not re.match(r"[a-z]+:", link)]
    if docs is not None:
        links += [(docs, f"{name}.md") for name in re.findall(r"\bdocs/([\w-]+)\.md", text)]
    broken = []
    for folder, link in links:
        path, _, anchor = link.partition("#")
        target = (folder / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{page.name}: {link} (no such file)")
        elif anchor and target.suffix == ".md" and anchor not in slugs(target.read_text("utf-8")):
            broken.append(f"{page.name}: {link} (no such heading)")
    return broken
