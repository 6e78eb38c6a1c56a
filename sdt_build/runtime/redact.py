"""Credentials never leave the process: the one function that masks them in whatever sdt-build
shows or writes (terminal, --json, crash files, resolver and download logs, run records, rows).

It masks the user-info part of every URL (``https://user:TOKEN@host`` → ``https://***@host``) and
every credential value sdt-build has seen: those in URLs of the environment (PIP_INDEX_URL …),
those the index settings read from pip's configuration and netrc, and the declared secrets
(``remember``). Values are masked before they are serialised or shortened (``redact_value``,
then ``json.dumps`` or a cut), so no escaping, folding or truncation can split a secret; text
already serialised is masked in its JSON-escaped forms too. Imported on workers: standard
library only.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import unquote, urlsplit

MASK = "***"
USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s'\"<>]+)@")
SHORTEST = 4  # shorter values would mask ordinary text
_secrets: set[str] = set()
_relays: list[subprocess.Popen] = []  # the processes that mask this process's stdout and stderr


def remember(*values: str | None) -> None:
    """Values to mask wherever they appear (a password, a token given as a user name)."""
    for value in values:
        if value and len(value) >= SHORTEST:
            for form in {value, unquote(value)}:
                # as written, and as JSON writes it (quotes, backslashes, non-ASCII escaped or not)
                _secrets.update({form, json.dumps(form)[1:-1], json.dumps(form, ensure_ascii=False)[1:-1]})


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


def redact_value(value: Any, limit: int | None = None) -> Any:
    """``value`` with every string in it masked (through dicts, lists and tuples), for values that
    are serialised afterwards (rows, records, payloads); with ``limit``, each string cut to it."""
    if isinstance(value, str):
        value = redact(value)
        return value if limit is None or len(value) <= limit else \
            f"{value[:limit]}… ({len(value) - limit} more characters)"
    if isinstance(value, dict):
        return {redact_value(k, limit): redact_value(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v, limit) for v in value)
    return value


def shorten(text: str, limit: int, *, tail: bool = False) -> str:
    """``text`` masked, then cut to its first (or, with ``tail``, last) ``limit`` characters: masking
    first, so no cut leaves part of a secret that masking no longer recognises."""
    text = redact(text)
    return text[-limit:] if tail else text[:limit]


def clip(text: str, word: int = 160, total: int = 4000) -> str:
    """A message fit to show whatever a user's file or option held: masked first, each run of more
    than ``word`` characters without a space (a name, a line, a path) cut to its ends, and the whole
    to ``total`` characters; each cut says how much it left out."""
    text = redact(text)
    if len(text) <= word:
        return text
    text = re.sub(rf"\S{{{word + 1},}}", lambda m: f"{m[0][:word // 2]}…{m[0][-20:]} ({len(m[0])} characters)", text)
    return text if len(text) <= total else f"{text[:total]}… ({len(text) - total} more characters)"


def dumps(value: Any, limit: int | None = None, **options: Any) -> str:
    """JSON text of ``value``, masked before serialising and after (what ``default=str`` made); with
    ``limit``, each string cut to that many characters."""
    return redact(json.dumps(redact_value(value, limit), default=str, **options))


def mask_streams(names: Iterable[str]) -> None:
    """From now on, everything this process writes to its stdout and stderr (print, logging, C code
    writing to file descriptors 1 and 2) is masked: the values of the environment variables
    ``names`` and every other remembered secret. Each stream is relayed, line by line, through a
    small process of its own (this file run as a script), so a writer that holds the GIL can never
    wait on its own reader. Once per process; nothing is started when there is nothing to mask."""
    remember(*(os.environ.get(name) for name in names))
    if _relays or not _secrets:
        return
    for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
        if stream is not None:
            stream.flush()
        relay = subprocess.Popen([sys.executable, __file__, *names], stdin=subprocess.PIPE, stdout=fd, stderr=2,
                                 env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        os.dup2(relay.stdin.fileno(), fd)
        relay.stdin.close()  # descriptor ``fd`` now holds the pipe: the relay ends when this process does
        _relays.append(relay)


def _relay(names: list[str]) -> None:
    """Copy standard input to standard output one line at a time, masked (``mask_streams``)."""
    remember(*(os.environ.get(name) for name in names))
    source, target = sys.stdin.buffer, sys.stdout.buffer
    for line in iter(lambda: source.readline(1 << 20), b""):
        target.write(redact(line.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape"))
        target.flush()


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


if __name__ == "__main__":  # the relay of mask_streams
    _relay(sys.argv[1:])
