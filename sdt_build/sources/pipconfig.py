"""Where packages come from: pip's configuration, read once, handed to every tool that reaches an index.

pip's own settings are the user's truth (pip config files, PIP_* variables, and the options of
requirements.txt). ``pip config list`` (pip's public command) gives the merged files and
variables; the options of requirements.txt are added the way pip adds them. The result goes to
the pre-check's look-ups (an unearth client), pip-compile and ``pip download`` (PIP_* variables)
and uv (UV_* variables: uv does not read pip's files), so all of them see the same indexes,
find-links, certificates, trusted hosts and constraint files. Credentials stay in URLs and netrc,
where each tool reads them itself; they are never put on a command line, and ``redact`` masks them.
"""

from __future__ import annotations

import ast
import hashlib
import json
import netrc
import os
import re
import subprocess
import sys
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from sdt_build.cache import cache_root
from sdt_build.runtime.redact import redact, remember, remember_url

PYPI = "https://pypi.org/simple"
# pip's sections in the order pip lets them override each other (variables last).
SECTIONS = ("global", "install", "download", ":env:")
LIST_KEYS = ("extra-index-url", "find-links", "trusted-host", "constraint")
TRUE = ("1", "true", "yes", "on")
# The variables these settings replace (others, such as PIP_PROXY or PIP_DEFAULT_TIMEOUT, pass through).
PIP_KEYS = {f"PIP_{key}" for key in ("INDEX_URL", "EXTRA_INDEX_URL", "FIND_LINKS", "TRUSTED_HOST", "CONSTRAINT",
                                     "NO_INDEX", "CERT", "CLIENT_CERT")}
UV_KEYS = {f"UV_{key}" for key in ("INDEX_URL", "EXTRA_INDEX_URL", "DEFAULT_INDEX", "INDEX", "FIND_LINKS",
                                   "INSECURE_HOST", "INDEX_STRATEGY", "NO_INDEX")}


@dataclass(frozen=True, repr=False)
class IndexSettings:
    """The package sources and TLS settings every index-reaching tool gets."""

    index_url: str = PYPI
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    cert: str | None = None
    client_cert: str | None = None
    trusted_hosts: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never the credentials
        return f"IndexSettings({', '.join(self.describe())})"

    @property
    def indexes(self) -> tuple[str, ...]:
        return () if self.no_index else tuple(dict.fromkeys((self.index_url, *self.extra_index_urls)))

    def describe(self) -> list[str]:
        """Every source as the user may see it (no credentials)."""
        return [redact(url) for url in (*self.indexes, *self.find_links)]

    def with_options(self, lines: tuple[str, ...] | list[str], root: Path) -> "IndexSettings":
        """These settings plus the pip options of requirement lines (as pip applies them)."""
        changes: dict = {}
        for line in lines:
            match = re.match(r"^(-i|--index-url|--extra-index-url|-f|--find-links|--trusted-host|--no-index)"
                             r"(?:[= ]\s*(\S+))?$", line.strip())
            if not match:
                continue
            flag, value = match.groups()
            if flag == "--no-index":
                changes["no_index"] = True
            elif value is None:
                continue
            elif flag in ("-i", "--index-url"):
                changes["index_url"] = value.rstrip("/")
            elif flag == "--extra-index-url":
                changes["extra_index_urls"] = (*changes.get("extra_index_urls", self.extra_index_urls),
                                               value.rstrip("/"))
            elif flag in ("-f", "--find-links"):
                local = root / value
                changes["find_links"] = (*changes.get("find_links", self.find_links),
                                         str(local.resolve()) if "://" not in value and local.exists() else value)
            else:
                changes["trusted_hosts"] = (*changes.get("trusted_hosts", self.trusted_hosts), value)
        settings = replace(self, **changes) if changes else self
        settings.remember_credentials()
        return settings

    def remember_credentials(self) -> None:
        """Tell ``redact`` every credential these sources use (in their URLs or in netrc)."""
        for url in (*self.indexes, *self.find_links):
            remember_url(url)
            remember(netrc_password(url))

    def pip_env(self) -> dict[str, str]:
        """The environment for pip (pip-compile, pip download): these settings, whatever the files say."""
        return _environment(PIP_KEYS, {
            "PIP_INDEX_URL": self.index_url, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_EXTRA_INDEX_URL": " ".join(self.extra_index_urls), "PIP_FIND_LINKS": " ".join(self.find_links),
            "PIP_TRUSTED_HOST": " ".join(self.trusted_hosts), "PIP_CONSTRAINT": " ".join(self.constraints),
            "PIP_NO_INDEX": "1" if self.no_index else "", "PIP_CERT": self.cert, "PIP_CLIENT_CERT": self.client_cert,
        })

    def uv_env(self) -> dict[str, str]:
        """The environment for uv, in uv's words; uv also picks the best match across indexes, as pip does."""
        return _environment(UV_KEYS, {
            "UV_DEFAULT_INDEX": self.index_url, "UV_INDEX_STRATEGY": "unsafe-best-match", "UV_NO_PROGRESS": "1",
            "UV_INDEX": " ".join(self.extra_index_urls), "UV_FIND_LINKS": ",".join(self.find_links),
            "UV_INSECURE_HOST": " ".join(self.trusted_hosts),
            "SSL_CERT_FILE": self.cert, "SSL_CLIENT_CERT": self.client_cert,
        })

    def uv_args(self) -> list[str]:
        return ["--no-index"] if self.no_index else []


def netrc_password(url: str) -> str | None:
    """The password netrc holds for ``url``'s host (pip, uv and the look-ups all read netrc)."""
    host = urlsplit(url).hostname
    if not host:
        return None
    try:
        found = netrc.netrc(os.environ.get("NETRC")).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None
    return found[2] if found else None


def host(url: str) -> str:
    """What an index is called in messages: its host (and port), or the local path."""
    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2] if parts.netloc else parts.path or url


def from_pip() -> IndexSettings:
    """pip's configuration as pip itself merges it (files, then PIP_* variables)."""
    return _from_pip(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("PIP_"))))


@lru_cache(maxsize=4)
def _from_pip(variables: tuple[tuple[str, str], ...]) -> IndexSettings:
    """Read once per set of PIP_* variables (they change pip's answer), and kept on disk while
    pip's configuration files are unchanged (unless the answer holds a credential)."""
    stats = [(str(path), path.stat().st_mtime_ns, path.stat().st_size) if path.is_file() else None
             for path in _config_files()]
    key = hashlib.sha256(json.dumps([sys.executable, variables, stats]).encode()).hexdigest()[:20]
    kept = cache_root() / "pip-config" / f"{key}.txt"
    if kept.is_file():
        return settings_from_listing(kept.read_text())
    try:
        listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                                 text=True, timeout=30, env={**os.environ, "PIP_NO_INPUT": "1"}).stdout
    except (OSError, subprocess.SubprocessError):
        return settings_from_listing("")
    settings = settings_from_listing(listing)
    if redact(listing) == listing:  # nothing secret in it
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_text(listing)
    return settings


def _config_files() -> list[Path]:
    """The files pip reads its configuration from, as pip lists them: global, user, site, and
    PIP_CONFIG_FILE."""
    home = Path.home()
    user = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    files = [Path(d) / "pip" / "pip.conf" for d in os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)
             if d]
    files += [Path("/etc/pip.conf"), home / ".pip" / "pip.conf", user / "pip" / "pip.conf",
              Path(sys.prefix) / "pip.conf"]
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    return files


def settings_from_listing(listing: str) -> IndexSettings:
    """``pip config list`` output (``section.key='value'`` lines) → settings; later sections win."""
    found: dict[str, dict[str, str]] = {}
    for line in listing.splitlines():
        match = re.match(r"^(?P<section>[^.=]*)\.(?P<key>[\w-]+)=(?P<value>.*)$", line.strip())
        if not match:
            continue
        try:
            value = ast.literal_eval(match["value"])
        except (ValueError, SyntaxError):
            continue
        found.setdefault(match["key"].replace("_", "-"), {})[match["section"]] = str(value)
    merged = {key: next(values[s] for s in reversed(SECTIONS) if s in values)
              for key, values in found.items() if any(s in values for s in SECTIONS)}

    def listed(key: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(merged.get(key, "").split()))

    settings = IndexSettings(
        index_url=merged.get("index-url", PYPI).rstrip("/"),
        extra_index_urls=tuple(url.rstrip("/") for url in listed("extra-index-url")),
        find_links=listed("find-links"),
        no_index=merged.get("no-index", "").lower() in TRUE,
        cert=merged.get("cert") or None,
        client_cert=merged.get("client-cert") or None,
        trusted_hosts=listed("trusted-host"),
        constraints=listed("constraint"),
    )
    settings.remember_credentials()
    return settings


def for_lines(lines: tuple[str, ...] | list[str], root: Path) -> IndexSettings:
    """pip's configuration plus the options of a project's requirement lines."""
    return from_pip().with_options(lines, root)


def _environment(replaced: set[str], settings: dict[str, str | None]) -> dict[str, str]:
    """This process's environment without the tool's own keys, plus the settings that have a value."""
    env = {k: v for k, v in os.environ.items() if k not in replaced}
    return env | {k: v for k, v in settings.items() if v}
