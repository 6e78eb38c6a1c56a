"""What a package index says about a project (PEP 691 JSON): releases, files, Requires-Python,
yanked releases and which files are wheels for the target. Used by the pre-check when an index
answers; never required (``check --offline`` and an unreachable index skip it)."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import (InvalidSdistFilename, InvalidWheelFilename, canonicalize_name,
                             parse_sdist_filename, parse_wheel_filename)
from packaging.version import InvalidVersion, Version

from sdt_build.wheels import MANYLINUX, cache_root

ACCEPT = "application/vnd.pypi.simple.v1+json"
TTL_SECONDS = 6 * 3600


@dataclass(frozen=True)
class Release:
    version: Version
    yanked: bool
    requires_python: str | None
    wheel_for_target: bool
    has_sdist: bool

    def allows_python(self, python: str) -> bool:
        """True when every micro release of ``python`` (X.Y.0 up) may install it."""
        if not self.requires_python:
            return True
        try:
            return Version(f"{python}.0") in SpecifierSet(self.requires_python)
        except InvalidSpecifier:
            return True


class NotOnIndex(Exception):
    """The index has no project of that name."""


class IndexUnreachable(Exception):
    """No answer from the index (offline, proxy, TLS)."""


@lru_cache(maxsize=None)
def target_tags(python: str) -> frozenset[Tag]:
    version = tuple(int(p) for p in python.split("."))
    platforms = list(MANYLINUX)
    return frozenset(list(cpython_tags(version, platforms=platforms))
                     + list(compatible_tags(version, interpreter=f"cp{version[0]}{version[1]}",
                                            platforms=platforms)))


def index_url() -> str:
    """The user's primary index (PIP_INDEX_URL, pip config, else PyPI)."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"].rstrip("/")
    return _configured_index()


@lru_cache(maxsize=1)
def _configured_index() -> str:
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                              capture_output=True, text=True, timeout=10)
        if done.returncode == 0 and done.stdout.strip().startswith("http"):
            return done.stdout.strip().rstrip("/")
    except (OSError, subprocess.SubprocessError):
        pass
    return "https://pypi.org/simple"


def _ssl_context() -> ssl.SSLContext:
    cafile = os.environ.get("PIP_CERT") or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    return ssl.create_default_context(cafile=cafile if cafile and Path(cafile).exists() else None)


def releases(name: str, python: str, *, timeout: float = 5.0, index: str | None = None) -> list[Release]:
    """Every release of ``name`` on the index, newest first (cached on disk for a few hours)."""
    project = canonicalize_name(name)
    cache = cache_root() / "index" / f"{project}.json"
    if cache.exists() and time.time() - cache.stat().st_mtime < TTL_SECONDS:
        data = json.loads(cache.read_text())
        if data.get("missing"):
            raise NotOnIndex(project)
    else:
        url = f"{index or index_url()}/{project}/"
        request = urllib.request.Request(url, headers={"Accept": ACCEPT, "User-Agent": "sdt-build"})
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=_ssl_context()) as response:
                data = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps({"missing": True}))
                raise NotOnIndex(project) from exc
            raise IndexUnreachable(f"{url}: HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise IndexUnreachable(f"{url}: {exc}") from exc
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"files": [
            {k: f.get(k) for k in ("filename", "requires-python", "yanked")} for f in data.get("files", [])
        ]}))
    return _releases(data.get("files", []), python)


def _releases(files: list[dict], python: str) -> list[Release]:
    tags = target_tags(python)
    grouped: dict[Version, dict] = {}
    for item in files:
        filename = item.get("filename", "")
        try:
            if filename.endswith(".whl"):
                _, version, _, file_tags = parse_wheel_filename(filename)
                wheel = bool(file_tags & tags)
                sdist = False
            elif filename.endswith((".tar.gz", ".zip")):
                _, version = parse_sdist_filename(filename)
                wheel, sdist = False, True
            else:
                continue
        except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
            continue
        entry = grouped.setdefault(version, {"yanked": True, "requires_python": None,
                                             "wheel": False, "sdist": False})
        entry["yanked"] = entry["yanked"] and bool(item.get("yanked"))
        entry["requires_python"] = entry["requires_python"] or item.get("requires-python")
        entry["wheel"] = entry["wheel"] or wheel
        entry["sdist"] = entry["sdist"] or sdist
    return [Release(v, e["yanked"], e["requires_python"], e["wheel"], e["sdist"])
            for v, e in sorted(grouped.items(), reverse=True)]
