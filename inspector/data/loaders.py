"""Read SFT data and normalize every record into a ``Conversation``: the entry points.

``iter_records(path)`` streams a file or folder; ``load_data`` takes a path or records already in memory,
``load_text`` pasted text and ``load_bytes`` an upload. The one rule: every input record gives exactly one output, a
``Conversation`` or a ``Rejected`` carrying its reasons, so ``len(conversations) + len(rejected)`` is the number of
records read. A bad record never raises out of them; only input that cannot be read at all raises ``DataError``.

They put together four modules, one idea each (each imports only the ones above it):

    records.py    one raw record: its bounds (depth, text size, digits), its id, how reasons are worded
    messages.py   one message in any format's names -> ``Message`` (roles, content parts, tool calls, flags)
    formats.py    one record -> ``Conversation``: detect messages / sharegpt / prompt_completion / alpaca, build it
    files.py      one file -> its records: JSON Lines, JSON, Parquet, ``datasets`` folders, within byte bounds
    loaders.py    (here) a path, records, text or bytes -> a ``LoadResult`` or a stream of items

Worked example: line 1 of chat.jsonl, ``{"prompt": "Hi", "completion": "Yo"}``, is read by files.py, detected as
prompt_completion and built by formats.py (its messages read by messages.py), and comes out as
``Conversation("chat-0", [user "Hi", assistant "Yo"], source=chat.jsonl:line 1)``.

To add a new record format (the keys inside one record), 3 steps:
  1. formats.py: write ``_from_<name>(record) -> (messages, tools)`` (read its messages with messages.py's
     ``_messages``; raise ``RecordError`` with a reason that says what to fix) and add it to ``FORMATS`` and
     ``_BUILDERS``;
  2. formats.py: teach ``detect_format`` the keys that say a record is in it;
  3. tests/test_loaders.py: a record that loads to the exact messages, and a bad one rejected with its reason.

To add a new file type (a container), 3 steps:
  1. files.py: write ``_iter_<kind>(path, fmt)`` that yields ``_convert(record, fmt, Source(file, row=i), i)`` for
     each record, in order, and raises ``DataError`` when the file cannot be read at all;
  2. files.py: add its extension to ``SUPPORTED_EXTENSIONS`` and send it to the reader in ``_iter_file``; here, in
     ``load_bytes`` (uploads); and in distributed.py's ``_kind`` for the Ray engine;
  3. tests/test_loaders.py: a file that loads, and a broken one refused with the file named.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

from inspector.conversations import Conversation, LoadResult, Rejected
from inspector.data.files import (_PARQUET_BATCH_ROWS, _is_saved_dataset, _iter_file, _iter_folder, _iter_jsonl,
                                  _iter_rows, _iter_saved_dataset, _parse_json_text)
from inspector.data.formats import _check_fmt
from inspector.errors import DataError


def iter_records(path: str | os.PathLike, *, fmt: str | None = None) -> Iterator[Conversation | Rejected]:
    """Stream a data file (or folder): one Conversation or Rejected per input record, in order.

    Raises DataError at once when the path cannot be read at all (missing, unknown extension, broken JSON, a
    device). JSONL and Parquet are streamed; a .json file is parsed whole. In a folder, a file that cannot be read
    is one Rejected item with the reason.

    >>> import tempfile; d = tempfile.mkdtemp(); p = os.path.join(d, "chat.jsonl")
    >>> _ = open(p, "w").write('{"prompt": "Hi", "completion": "Yo"}\\n{"prompt": 1\\n')
    >>> [type(x).__name__ for x in iter_records(p)], list(iter_records(p))[1].reasons
    (['Conversation', 'Rejected'], ["line 2: invalid JSON (Expecting ',' delimiter: column 13)"])
    """
    fmt = _check_fmt(fmt)
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file not found: {path}")
    if p.is_dir():
        return _iter_saved_dataset(p, fmt) if _is_saved_dataset(p) else _iter_folder(p, fmt)
    return _iter_file(p, fmt)


def _collect(items: Iterator[Conversation | Rejected], fmt: str | None, limit: int | None) -> LoadResult:
    if limit is not None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        items = islice(items, limit)
    result = LoadResult()
    for item in items:
        (result.conversations if isinstance(item, Conversation) else result.rejected).append(item)
    counts = Counter(c.format for c in result.conversations if c.format)
    result.format = fmt or (counts.most_common(1)[0][0] if counts else None)
    return result


def load_data(path_or_records: str | os.PathLike | Iterable[Any] | Mapping, *, fmt: str | None = None,
              limit: int | None = None) -> LoadResult:
    """Load a file/folder path, or normalize in-memory records (Source "<memory>", row i); ``limit`` caps records read.

    >>> r = load_data([{"prompt": "Hi", "completion": "Yo"}, {"text": "raw"}])
    >>> len(r.conversations), r.rejected[0].id, r.format
    (1, 'memory-1', 'prompt_completion')
    """
    fmt = _check_fmt(fmt)
    if isinstance(path_or_records, (str, os.PathLike)):
        items = iter_records(path_or_records, fmt=fmt)
    elif isinstance(path_or_records, Mapping):
        items = _iter_rows([path_or_records], "<memory>", fmt)
    elif isinstance(path_or_records, Iterable) and not isinstance(path_or_records, (bytes, bytearray)):
        items = _iter_rows(path_or_records, "<memory>", fmt)
    else:
        raise DataError(f"cannot load {type(path_or_records).__name__}: give a path or a list of records")
    try:
        return _collect(items, fmt, limit)
    finally:
        close = getattr(items, "close", None)
        if close:
            close()  # release an open file when limit stopped early


def load_text(text: str | bytes, *, fmt: str | None = None, name: str = "<pasted>",
              limit: int | None = None) -> LoadResult:
    """Load pasted JSON (a list or one record) or JSON Lines text.

    >>> r = load_text('{"prompt": "a", "completion": "b"}\\n{"prompt": "c", "completion": "d"}')
    >>> [c.id for c in r.conversations], str(r.conversations[1].source)
    (['pasted-0', 'pasted-1'], '<pasted>:line 2')
    """
    fmt = _check_fmt(fmt)
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{name} is not UTF-8 text (bad byte at offset {e.start})") from None
    return _collect(_parse_json_text(text.lstrip("\ufeff"), name, fmt), fmt, limit)


def load_bytes(data: bytes, name: str, *, fmt: str | None = None, limit: int | None = None) -> LoadResult:
    """Load a file's bytes held in memory (an upload), by the extension of ``name``: JSON, JSONL or Parquet.

    Nothing is written to disk, and sources, fallback ids and messages name ``name`` (the user's file name).

    >>> r = load_bytes(b'{"prompt": "a", "completion": "b"}\\n', "chat.jsonl")
    >>> r.conversations[0].id, str(r.conversations[0].source)
    ('chat-0', 'chat.jsonl:line 1')
    """
    fmt = _check_fmt(fmt)
    ext = Path(name).suffix.lower()
    if ext in (".jsonl", ".ndjson"):
        items: Iterator[Conversation | Rejected] = _iter_jsonl(io.BytesIO(bytes(data)), name, fmt)
    elif ext == ".json":
        try:
            text = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise DataError(f"{name} is not UTF-8 text (bad byte at offset {e.start}); save it as UTF-8") from None
        items = _parse_json_text(text, name, fmt)
    elif ext == ".parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(io.BytesIO(bytes(data)))
        except Exception as e:  # pyarrow raises ArrowInvalid / OSError for a damaged or non-Parquet file
            raise DataError(f"{name} is not a readable Parquet file ({e})") from None
        rows = (r for batch in pf.iter_batches(batch_size=_PARQUET_BATCH_ROWS) for r in batch.to_pylist())
        items = _iter_rows(rows, name, fmt)
    else:
        shown = repr(ext) if ext else "(no extension)"
        raise DataError(f"unsupported file type {shown} for {name}: supported are .jsonl, .ndjson, .json, .parquet")
    return _collect(items, fmt, limit)
