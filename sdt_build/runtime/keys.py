"""What a key is: the plug receives it as a tuple whose fields may be lists (``(13, [2011, 2012])``).

Keys come from the command line, files, sdt.toml or the plug's ``keys()``; they are journaled
and compared as ``key_id`` text, which is always strict JSON. Each source keeps what it was
written as: text from a CSV file or a bare ``--key`` stays text (``12E4`` is not 120000.0), JSON
and TOML keep their own types. Imported on workers too: standard library only.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from sdt_build.runtime.errors import RunFailure

FIELD = (str, int, float, bool)
JSON_START = ('[', '{', '"')  # a --key that starts so is JSON; any other is one text field


def normalize_key(key: Any) -> tuple:
    """A key as the plug receives it."""
    if isinstance(key, tuple):
        return key
    if isinstance(key, list):
        return tuple(key)
    return (key,)


def _value(field: Any) -> bool:
    """A value a key field may be: text, a number (not NaN or infinite: JSON has neither) or a bool."""
    return isinstance(field, FIELD) and not (isinstance(field, float) and not math.isfinite(field))


def validate_key(key: Any) -> tuple:
    """``key`` as a tuple, or RunFailure SDT-E516 when it cannot be one: a key is a value, or a
    non-empty list of values and lists of values (``"SITE"``, ``[13, [2011, 2012]]``)."""
    fields = normalize_key(key)
    valid = bool(fields) and all(
        _value(f) or isinstance(f, (list, tuple)) and f and all(_value(v) for v in f) for f in fields)
    if not valid:
        shown = json.dumps(key, default=repr)
        raise RunFailure("SDT-E516", f"{shown[:200]} is not a key: a key is a value or a list of values "
                         "(a field may be a list, as in [13, [2011, 2012]]; NaN and Infinity are no values)",
                         'write keys like "SITE", ["SITE"] or [13, [2011, 2012]]')
    return fields


def key_id(key: tuple) -> str:
    """A key as text: how it is journaled, compared on resume, and named in events (strict JSON)."""
    return json.dumps(list(key), sort_keys=True, default=str, allow_nan=False)


def key_text(key: tuple) -> str:
    """A key as people read it (the console's tables, the report): its fields as written, a comma
    between them (``TAEFC1044741``, ``13, [2011, 2012]``)."""
    return ", ".join(json.dumps(list(f), default=str) if isinstance(f, (list, tuple)) else str(f)
                     for f in normalize_key(key))


def parse_key(text: str) -> tuple:
    """A key written on the command line: JSON when it starts with ``[``, ``{`` or ``"`` (JSON's
    types kept: ``[13, [2011, 2012]]``), else one text field exactly as written (``12E4``, ``012345``)."""
    if not text.startswith(JSON_START):
        return (text,)
    try:
        return validate_key(_strict_json(text))
    except ValueError as exc:
        raise RunFailure("SDT-E516", f"{text[:200]} is not a key: it starts with {text[0]} like JSON but is not "
                         f"JSON ({exc})", 'write it as JSON, e.g. [13, [2011, 2012]] (or "[A" for text that '
                         'starts with [, { or ")') from exc


def read_keys_file(path: str | os.PathLike) -> list[tuple]:
    """The keys of a file, or RunFailure SDT-E502 when it cannot be read (SDT-E516 for one that is
    not a key). A ``.json`` file is a JSON list of keys, with JSON's types. Any other file is CSV:
    one key per row, each field text exactly as written (the csv module's quoting applies); blank
    lines and lines that start with ``#`` are skipped, and there is no header row."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".json":
            keys = _strict_json(path.read_text("utf-8-sig"))
            if not isinstance(keys, list):
                raise ValueError(f"a JSON keys file holds a list of keys, not {type(keys).__name__}")
        else:
            with path.open(encoding="utf-8-sig", newline="") as file:
                keys = [row for row in csv.reader(line for line in file if not line.startswith("#")) if row]
    except (ValueError, OSError, csv.Error) as exc:
        raise RunFailure("SDT-E502", f"cannot read keys from {path}: {exc}",
                         "give a JSON list of keys (.json), or a CSV file with one key per row") from exc
    return [validate_key(key) for key in keys]


def _strict_json(text: str) -> Any:
    """JSON as the standard has it: NaN, Infinity and -Infinity are refused (ValueError)."""
    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise ValueError("it is nested too deep") from None
