"""Credentials never leave the process: the one function that masks them in whatever sdt-build
shows or writes (terminal, --json, crash files, resolver and download logs, run records).

It masks the user-info part of every URL (``https://user:TOKEN@host`` → ``https://***@host``) and
every credential value sdt-build has seen: those in URLs of the environment (PIP_INDEX_URL …)
and those the index settings read from pip's configuration and netrc (``remember``).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

MASK = "***"
USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s'\"<>]+)@")
SHORTEST = 4  # shorter values would mask ordinary text
_secrets: set[str] = set()


def remember(*values: str | None) -> None:
    """Values to mask wherever they appear (a password, a token given as a user name)."""
    for value in values:
        if value and len(value) >= SHORTEST:
            _secrets.update({value, unquote(value)})


def remember_url(url: str) -> None:
    """The credentials in ``url``: its password, or its user name when that is all it has (a token)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    remember(parts.password if parts.password else parts.username)


def _from_environment() -> None:
    for value in os.environ.values():
        for match in USERINFO.finditer(value):
            user, _, password = match["userinfo"].partition(":")
            remember(password or user)


def redact(text: str) -> str:
    """``text`` with every URL's credentials and every remembered secret masked."""
    text = USERINFO.sub(rf"\g<scheme>{MASK}@", text)
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def run_logged(command: list[str], log_path: Path, *, env: dict[str, str] | None = None,
               cwd: Path | None = None, append: bool = False,
               on_line: Callable[[str], bool] | None = None) -> int:
    """Run ``command`` with its output written, redacted, to ``log_path`` (after a ``$ command`` line).

    ``on_line`` sees each line first; a line it answers True for is consumed (not logged)."""
    with open(log_path, "a" if append else "w") as log:
        log.write(redact("$ " + " ".join(command)) + "\n")
        log.flush()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   errors="replace", env=env, cwd=cwd)
        for line in process.stdout:
            if on_line is None or not on_line(line):
                log.write(redact(line))
        return process.wait()


_from_environment()
