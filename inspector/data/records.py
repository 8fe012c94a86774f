"""One raw record, before it has a format: the bounds it must keep, the id it goes by, how reasons are worded.

Every format (formats.py, messages.py) and every container (files.py) shares these:

- bounds, far beyond any real conversation: ``MAX_DEPTH`` levels of objects and arrays inside each other,
  ``MAX_RECORD_BYTES`` of text (one JSONL line is read in at most that many bytes), ``MAX_JSON_FILE_BYTES`` for a
  .json file read whole, numbers of at most ``MAX_INT_DIGITS`` digits. ``_loads`` parses JSON text within them;
  ``_shape_problem`` checks a record that arrives parsed (Parquet, ``datasets``, the app). A record past a bound is
  rejected with the reason and the rest load: nothing in it can exhaust memory or Python's stack further down.
- ids: the record's own ``id`` / ``conversation_id`` / ``uuid``, else ``{file stem}-{index}`` (record 3 of
  data/chat.jsonl without an id is ``chat-3``; an in-memory record 1 is ``memory-1``).
- reasons: ``_a`` names a JSON kind (``_a([1]) == "an array"``), ``_error`` bundles several reasons into one
  ``RecordError`` and ``_reasons`` takes them back out for ``Rejected.reasons``.

Worked example: ``_loads('{"n": ' + "9" * 5000 + '}')`` raises RecordError("holds a number of 5,000 digits: more
than the 4,300 digits a number may have"): that line of a file becomes one Rejected with this reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inspector.conversations import Source
from inspector.errors import RecordError

# Bounds on what one record may hold (far beyond any real conversation). A record past one is rejected with the
# reason and the rest load: nothing about it can exhaust memory or Python's stack further down.
MAX_DEPTH = 100  # objects and arrays inside each other (real records: under 10, tool schemas included)
MAX_RECORD_BYTES = 16 * 2**20  # one JSONL line, read in at most this many bytes; the text one record holds
MAX_JSON_FILE_BYTES = 512 * 2**20  # a .json file is read whole; larger data belongs in JSON Lines (streamed)
MAX_INT_DIGITS = 4300  # Python's int conversion limit (sys.get_int_max_str_digits)

_ID_KEYS = ("id", "conversation_id", "uuid")


def _a(value: Any) -> str:
    """The JSON kind of a value with its article, for reasons.

    >>> _a("x"), _a(3), _a(None), _a([1]), _a({})
    ('a string', 'a number', 'null', 'an array', 'an object')
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    return f"a {type(value).__name__}"


def _get(d: Mapping, *keys: str) -> Any:
    """The first of ``keys`` whose value is not None (Parquet and datasets fill missing struct keys with None)."""
    for key in keys:
        value = d.get(key)
        if value is not None:
            return value
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _huge_int(value: Any) -> bool:
    """An int of more than ``MAX_INT_DIGITS`` digits (too long for ``str()``). Example: _huge_int(10**4300) -> True
    (4,301 digits); _huge_int(10**4300 - 1) -> False (4,300 digits, which Python still converts)."""
    return isinstance(value, int) and value.bit_length() > 14_280 and abs(value) >= _INT_LIMIT


_INT_LIMIT = 10 ** MAX_INT_DIGITS  # the smallest number of MAX_INT_DIGITS + 1 digits


def _loads(text: str) -> Any:
    """``json.loads`` that raises only ``json.JSONDecodeError`` (not JSON) or ``RecordError`` with the reason: JSON
    nested deeper than Python's parser goes (``RecursionError``) or than ``MAX_DEPTH``, a number too long for
    ``int``, more text than a record may hold (``_shape_problem``).

    Example: _loads("[" * 100000) raises RecordError("JSON nested too deeply to read ...")
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise RecordError(f"JSON nested too deeply to read (objects and arrays inside each other; a record may "
                          f"nest {MAX_DEPTH} levels)") from None
    except ValueError as e:  # "Exceeds the limit (4300 digits) for integer string conversion: value has N digits"
        m = re.search(r"has (\d+) digits", str(e))
        digits = f"{int(m.group(1)):,} digits" if m else f"more than {MAX_INT_DIGITS:,} digits"
        raise RecordError(f"holds a number of {digits}: more than the {MAX_INT_DIGITS:,} digits a number may have"
                          ) from None
    # short text with few brackets can be neither too deep nor hold a huge number: skip the walk
    if len(text) > MAX_INT_DIGITS or text.count("[") + text.count("{") > MAX_DEPTH:
        problem = _shape_problem(value)
        if problem is not None:
            raise RecordError(problem)
    return value


def _shape_problem(record: Any) -> str | None:
    """Why a parsed record cannot be used safely, or None: nested deeper than ``MAX_DEPTH``, a number longer than
    ``MAX_INT_DIGITS`` digits, or more than ``MAX_RECORD_BYTES`` characters of text. Iterative, so it never runs
    out of stack itself.

    Example: _shape_problem({"messages": [[[[]]]]}) -> None; a record 200 levels deep -> "nested 101 levels ..."
    """
    chars = 0
    stack = [(record, 1)]
    while stack:
        value, depth = stack.pop()
        t = type(value)
        if t is str:
            chars += len(value)
            continue
        if depth > MAX_DEPTH and (t is dict or t is list or isinstance(value, (Mapping, list, tuple))):
            return (f"record is nested {MAX_DEPTH + 1} or more levels deep (objects and arrays inside each other), "
                    f"more than the {MAX_DEPTH} a record may have")
        if t is dict or isinstance(value, Mapping):
            for key, item in value.items():
                if isinstance(key, str):
                    chars += len(key)
                stack.append((item, depth + 1))
        elif t is list or isinstance(value, (list, tuple)):
            stack.extend((item, depth + 1) for item in value)
        elif _huge_int(value):
            return f"record holds a number of more than {MAX_INT_DIGITS:,} digits"
        if chars > MAX_RECORD_BYTES:
            break
    if chars > MAX_RECORD_BYTES:
        return (f"record holds more than {MAX_RECORD_BYTES:,} characters of text, more than one record may hold "
                "(the rendered text of a record is limited to 2,000,000 characters anyway)")
    return None


def _excerpt(value: Any, limit: int = 1000) -> str | None:
    """The start of a record's text, for a record that is not kept whole (too deep, too large)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else value.decode("utf-8", "replace") if isinstance(value, bytes) \
        else None
    if text is None:
        return None
    text = printable(text)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text):,} characters)"


def _error(reasons: list[str]) -> RecordError:
    """One RecordError for several reasons; ``.reasons`` keeps them apart for ``Rejected.reasons``."""
    err = RecordError("; ".join(reasons))
    err.reasons = list(reasons)
    return err


def _reasons(err: RecordError) -> list[str]:
    return list(getattr(err, "reasons", None) or [str(err)])


def _stem(source: Source | None) -> str:
    """The name used in fallback ids: the file stem, "record" without a source, "memory" for "<memory>"."""
    if source is None:
        return "record"
    name = source.file
    if name.startswith("<") and name.endswith(">"):
        return name[1:-1] or "record"
    return Path(name).stem or name


def _record_id(record: Any, source: Source | None, index: int) -> str:
    """The record's own id (id, conversation_id or uuid) as a string, else f"{stem}-{index}".

    >>> _record_id({"id": 7}, None, 3), _record_id({}, Source("data/chat.jsonl", line=4), 3)
    ('7', 'chat-3')
    """
    raw = _raw_record_id(record)
    return printable(raw) if raw is not None else f"{_stem(source)}-{index}"


def _raw_record_id(record: Any) -> str | None:
    """The record's own id as written (it may hold lone surrogates, which ``_check_encodable`` rejects)."""
    if isinstance(record, Mapping):
        for key in _ID_KEYS:
            value = record.get(key)
            if _huge_int(value):
                continue  # str() would raise: the fallback id names the record instead
            if value is not None and value != "" and not isinstance(value, (Mapping, list)):
                return str(value)
    return None


def printable(text: str) -> str:
    """``text`` with lone surrogates written as escapes, so it can be printed and written as UTF-8 (a record id
    like "bad\\ud800" is shown, not a crash). Example: printable("a\\ud800") -> "a\\\\ud800"."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
