"""What a key is: the plug receives it as a tuple whose fields may be lists (``(13, [2011, 2012])``).

Keys come from the command line, files, sdt.toml or the plug's ``keys()``; they are journaled
and compared as ``key_id`` text. Imported on workers too: standard library only.
"""

from __future__ import annotations

import json
from typing import Any

from sdt_build.errors import RunFailure

FIELD = (str, int, float, bool)


def normalize_key(key: Any) -> tuple:
    """A key as the plug receives it."""
    if isinstance(key, tuple):
        return key
    if isinstance(key, list):
        return tuple(key)
    return (key,)


def validate_key(key: Any) -> tuple:
    """``key`` as a tuple, or RunFailure SDT-E516 when it cannot be one: a key is a value, or a
    non-empty list of values and lists of values (``"SITE"``, ``[13, [2011, 2012]]``)."""
    fields = normalize_key(key)
    valid = bool(fields) and all(
        isinstance(f, FIELD) or isinstance(f, (list, tuple)) and f and all(isinstance(v, FIELD) for v in f)
        for f in fields)
    if not valid:
        shown = json.dumps(key, default=repr)
        raise RunFailure("SDT-E516", f"{shown[:200]} is not a key: a key is a value or a list of values "
                         "(a field may be a list, as in [13, [2011, 2012]])",
                         'write keys like "SITE", ["SITE"] or [13, [2011, 2012]]')
    return fields


def key_id(key: tuple) -> str:
    """A key as text: how it is journaled, compared on resume, and named in events."""
    return json.dumps(list(key), sort_keys=True, default=str)
