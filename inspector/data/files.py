"""The containers records come in, read within byte bounds: JSON Lines, JSON, Parquet, ``datasets`` folders.

    .jsonl / .ndjson   streamed line by line, each line read in at most ``MAX_RECORD_BYTES`` (``_bounded_lines``);
                       blank lines skipped and not counted; line numbers 1-based; UTF-8, or UTF-16/32 with a BOM
    .json              read whole (at most ``MAX_JSON_FILE_BYTES``): a list of records, one record, or a list under
                       data / train / examples; several objects one a line are read as JSON Lines
    .parquet           streamed in batches of 1,024 rows
    a folder           saved by ``datasets`` ``save_to_disk`` (its train split), or a plain folder of such files
                       read in sorted order: a file that cannot be read is one Rejected, the other files load

Every reader yields one item per record, in order: what ``formats._convert`` makes of the record, or a Rejected for
a line or item that cannot even be parsed. Only input that cannot be read at all raises ``DataError`` (a missing
file, an unknown extension, a device such as /dev/zero). ``jsonl_item``, ``json_file_items`` and ``_bounded_lines``
are shared with the Ray engine (distributed.py), so both engines read a file the same way.

Worked example: chat.jsonl holding the lines ``{"prompt": "a", "completion": "b"}``, an empty line and
``{"prompt": 1`` gives a Conversation ``chat-0`` (line 1) and a Rejected ``chat-1`` (line 3) with the reason
"line 3: invalid JSON (Expecting ',' delimiter: column 13)".
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from inspector.conversations import Conversation, Rejected, Source
from inspector.data.formats import _convert, detect_format
from inspector.data.records import MAX_JSON_FILE_BYTES, MAX_RECORD_BYTES, _a, _excerpt, _loads, _stem
from inspector.errors import DataError, RecordError

SUPPORTED_EXTENSIONS = (".jsonl", ".ndjson", ".json", ".parquet")
_JSON_CONTAINER_KEYS = ("data", "train", "examples")
_PARQUET_BATCH_ROWS = 1024


class _LongLine:
    """A line longer than ``MAX_RECORD_BYTES``: skipped to its end without being kept (``_bounded_lines``)."""

    def __init__(self, size: int, head: bytes | str):
        self.size, self.head = size, head


def _bounded_lines(f: Any, limit: int | None = None) -> Iterator[bytes | str | _LongLine]:
    """The lines of a binary (or text) file, each read in at most ``limit`` bytes (characters). A longer line is
    read to its end in pieces that are dropped, and stands as a ``_LongLine``: a file with no line end at all
    (a device, a stream of zeros) never makes one line the size of the file."""
    limit = MAX_RECORD_BYTES if limit is None else limit
    newline: Any = None
    while True:
        line = f.readline(limit + 1)
        if not line:
            return
        if newline is None:
            newline = b"\n" if isinstance(line, bytes) else "\n"
        if len(line) > limit and not line.endswith(newline):
            size = len(line)
            while True:
                piece = f.readline(1 << 20)
                size += len(piece)
                if not piece or piece.endswith(newline):
                    break
            yield _LongLine(size, line[:1000])
        else:
            yield line


def _jsonl_text(raw: bytes | str, lineno: int) -> str:
    """A JSONL line as the text to parse: decoded (UnicodeDecodeError when it is not UTF-8), a BOM dropped on line 1,
    and only the line end stripped, so columns in reasons match the file."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    if lineno == 1:
        text = text.lstrip("\ufeff")
    return text.rstrip("\r\n")


def is_blank_line(raw: bytes | str | _LongLine, lineno: int) -> bool:
    """True when a JSONL line holds no record (whitespace only): it is skipped and takes no record number.

    >>> is_blank_line(b"  \\r\\n", 3), is_blank_line(b"\\xff\\n", 3), is_blank_line("{}", 1)
    (True, False, False)
    """
    if isinstance(raw, _LongLine):
        return False  # a record, rejected as too long
    try:
        return not _jsonl_text(raw, lineno).strip()
    except UnicodeDecodeError:
        return False  # a record, rejected as not UTF-8


def jsonl_item(raw: bytes | str | _LongLine, file: str, lineno: int, index: int,
               fmt: str | None) -> Conversation | Rejected | None:
    """One JSONL line (1-based ``lineno``) -> its Conversation or Rejected (``index``: the record's number in the
    file, for fallback ids), or None for a blank line. ``_iter_jsonl`` and the Ray engine both read lines with it.

    >>> jsonl_item(b'{"prompt": 1\\n', "data/chat.jsonl", 2, 1, None).reasons
    ["line 2: invalid JSON (Expecting ',' delimiter: column 13)"]
    """
    source = Source(file, line=lineno)
    stem = _stem(Source(file))
    if isinstance(raw, _LongLine):
        reason = (f"line {lineno}: {raw.size:,} bytes long, more than the {MAX_RECORD_BYTES:,} one record may "
                  "hold: not read (is the file JSON Lines, one record a line?)")
        return Rejected(f"{stem}-{index}", source, [reason], _excerpt(raw.head))
    try:
        text = _jsonl_text(raw, lineno)
    except UnicodeDecodeError as e:
        shown = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        reason = f"line {lineno}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
        return Rejected(f"{stem}-{index}", source, [reason], shown)
    if not text.strip():
        return None
    try:
        record = _loads(text)
    except json.JSONDecodeError as e:
        reason = f"line {lineno}: invalid JSON ({e.msg}: column {e.colno})"
        return Rejected(f"{stem}-{index}", source, [reason], text)
    except RecordError as e:  # too deep, a huge number, too much text: not kept whole
        return Rejected(f"{stem}-{index}", source, [f"line {lineno}: {e}"], _excerpt(text))
    return _convert(record, fmt, source, index, checked=True)


def _iter_jsonl(lines: Iterable[bytes | str | _LongLine], file: str, fmt: str | None
                ) -> Iterator[Conversation | Rejected]:
    """One item per non-blank line. Bytes are decoded line by line, so one bad line does not sink the others."""
    index = 0
    for lineno, raw in enumerate(lines, 1):
        item = jsonl_item(raw, file, lineno, index, fmt)
        if item is not None:
            yield item
            index += 1


# Byte-order marks of the encodings JSON may come in besides UTF-8 (longest first: UTF-32 LE starts like UTF-16 LE).
_BOMS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe", "utf-16"),
         (b"\xfe\xff", "utf-16"))


def _encoding(head: bytes, path: Path | str) -> str | None:
    """The encoding a byte-order mark names (None: UTF-8). Text that looks like UTF-16 without one is refused.

    Example: _encoding(b"\xff\xfe{\x00", p) -> "utf-16"; _encoding(b'{"a', p) -> None
    """
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    if len(head) >= 2 and ((head[0] == 0 and 32 <= head[1] < 127) or (head[1] == 0 and 32 <= head[0] < 127)):
        raise DataError(f"{path} looks like UTF-16 text without a byte-order mark (every other byte is 0): save it "
                        "as UTF-8")
    return None


def _open_data(path: Path) -> Any:
    """Open a data file for reading in binary, with a clear DataError when it cannot be read."""
    try:
        return open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None


def _iter_jsonl_file(path: Path, fmt: str | None) -> Iterator[Conversation | Rejected]:
    """Stream a JSON Lines file: UTF-8, or UTF-16/UTF-32 with a byte-order mark (decoded as it streams)."""
    f = _open_data(path)
    try:
        encoding = _encoding(f.peek(4)[:4], path)
    except BaseException:
        f.close()
        raise

    def items() -> Iterator[Conversation | Rejected]:
        source = io.TextIOWrapper(f, encoding=encoding, newline="") if encoding else f
        with source:
            try:
                yield from _iter_jsonl(_bounded_lines(source), str(path), fmt)
            except UnicodeDecodeError as e:
                raise DataError(f"{path} is not valid {encoding} text ({e.reason}): save it as UTF-8") from None
            except OSError as e:
                raise DataError(f"{path}: reading failed ({e.strerror or e})") from None

    return items()


def _iter_rows(rows: Iterable[Any], file: str, fmt: str | None) -> Iterator[Conversation | Rejected]:
    for i, record in enumerate(rows):
        yield _convert(record, fmt, Source(file, row=i), i)


def _records_in(value: Any, name: str) -> list[Any]:
    """The records of a parsed JSON document: a list, a dict holding one under data/train/examples, or one record."""
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping):
        try:
            detect_format(value)
            return [value]
        except RecordError:
            pass
        for key in _JSON_CONTAINER_KEYS:
            if isinstance(value.get(key), list):
                return value[key]
        return [value]  # rejected later, with the reason
    raise DataError(f"{name}: the top-level JSON value is {_a(value)}; expected a list of records or one record object")


def _first_line_is_object(text: str) -> bool:
    """True if the first non-blank line is a whole JSON object by itself: the text is JSON Lines. (A first line too
    deep or with too long a number to read counts too when it starts like an object: it is rejected as a line.)"""
    for line in text.split("\n"):
        if line.strip():
            try:
                return isinstance(_loads(line), dict)
            except json.JSONDecodeError:
                return False
            except RecordError:
                return line.lstrip().startswith("{")
    return False


def _json_error(name: str, e: json.JSONDecodeError, text: str) -> DataError:
    where = f"line {e.lineno}, column {e.colno}"
    if e.pos >= len(text.rstrip()):
        return DataError(f"{name} is not valid JSON: it ends before the JSON is complete ({e.msg} at {where}); "
                         "the file may be truncated")
    return DataError(f"{name} is not valid JSON: {e.msg} at {where}")


# A JSON string (escapes included) or one of the characters that shape an array: enough to find an array's items.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]', re.DOTALL)


def _split_json_array(text: str) -> Iterator[str]:
    """The texts of the items of a top-level JSON array, found without parsing them (strings skipped whole), so
    each can be read on its own. Example: '[{"a": [1, 2]}, 3]' -> '{"a": [1, 2]}', '3'."""
    depth = 0
    start = None
    for m in _JSON_TOKEN.finditer(text):
        token = m.group()
        if token[0] == '"':
            continue
        if token in "[{":
            depth += 1
            if depth == 1:
                start = m.end()
        elif token in "]}":
            depth -= 1
            if depth == 0:
                piece = text[start:m.start()].strip()
                if piece:
                    yield piece
                return
        elif depth == 1:  # a comma between two items
            yield text[start:m.start()].strip()
            start = m.end()
    if start is not None and text[start:].strip():  # the array never closes: what is left is one (broken) item
        yield text[start:].strip()


def _iter_json_items(text: str, name: str, fmt: str | None) -> Iterator[Conversation | Rejected]:
    """A JSON array read item by item: one item nested too deep (or with a huge number) is rejected alone."""
    stem = _stem(Source(name))
    for i, piece in enumerate(_split_json_array(text)):
        source = Source(name, row=i)
        try:
            record = _loads(piece)
        except json.JSONDecodeError as e:
            yield Rejected(f"{stem}-{i}", source, [f"record {i}: invalid JSON ({e.msg})"], _excerpt(piece))
        except RecordError as e:
            yield Rejected(f"{stem}-{i}", source, [f"record {i}: {e}"], _excerpt(piece))
        else:
            yield _convert(record, fmt, source, i, checked=True)


def _parse_json_text(text: str, name: str, fmt: str | None) -> Iterator[Conversation | Rejected]:
    """JSON first; JSON Lines when the text is several JSON objects, one a line (named .json or pasted). Text that
    is too deep or holds a number too long to parse whole is read record by record instead."""
    if not text.strip():
        raise DataError(f"{name} is empty")
    try:
        value = _loads(text)
    except json.JSONDecodeError as e:
        if not text.lstrip().startswith("[") and _first_line_is_object(text):
            return _iter_jsonl(text.split("\n"), name, fmt)  # not splitlines(): JSON strings may hold U+2028
        raise _json_error(name, e, text) from None
    except RecordError as e:
        if text.lstrip().startswith("["):
            return _iter_json_items(text, name, fmt)
        if _first_line_is_object(text) and "\n" in text.strip():
            return _iter_jsonl(text.split("\n"), name, fmt)
        return iter([Rejected(f"{_stem(Source(name))}-0", Source(name, row=0), [str(e)], _excerpt(text))])
    return _iter_rows(_records_in(value, name), name, fmt)


def _iter_json_file(path: Path, fmt: str | None) -> Iterator[Conversation | Rejected]:
    """A .json file, read whole (at most ``MAX_JSON_FILE_BYTES``): UTF-8, or UTF-16/32 with a byte-order mark. An
    empty file holds no records."""
    with _open_data(path) as f:
        try:
            data = f.read(MAX_JSON_FILE_BYTES + 1)
        except OSError as e:
            raise DataError(f"{path}: reading failed ({e.strerror or e})") from None
    return json_file_items(data, path, fmt)


def json_file_items(data: bytes, path: Path | str, fmt: str | None) -> Iterator[Conversation | Rejected]:
    """The records of a .json file's bytes (read with at most ``MAX_JSON_FILE_BYTES + 1`` bytes): the local loader
    and the Ray engine both parse them here."""
    if len(data) > MAX_JSON_FILE_BYTES:
        raise DataError(f"{path} is larger than {MAX_JSON_FILE_BYTES // 2**20} MiB: a .json file is read whole; "
                        "write the records as JSON Lines (.jsonl, one record a line) to stream them")
    encoding = _encoding(data[:4], path) or "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        shown = "UTF-8" if encoding == "utf-8-sig" else encoding.upper()
        raise DataError(f"{path} is not {shown} text (bad byte at offset {e.start}); save it as UTF-8") from None
    if not text.strip():
        return iter(())
    return _parse_json_text(text.lstrip("\ufeff"), str(path), fmt)


def _iter_parquet(path: Path, fmt: str | None) -> Iterator[Conversation | Rejected]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for a damaged or non-Parquet file
        raise DataError(f"{path} is not a readable Parquet file ({e})") from None

    def rows() -> Iterator[Conversation | Rejected]:
        i = 0
        try:
            for batch in pf.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
                for record in batch.to_pylist():
                    yield _convert(record, fmt, Source(str(path), row=i), i)
                    i += 1
        except (OSError, ValueError) as e:  # pyarrow.ArrowException subclasses these
            raise DataError(f"{path}: reading Parquet rows failed after row {i} ({e})") from None
        finally:
            pf.close()

    return rows()


def _is_saved_dataset(path: Path) -> bool:
    # state.json / dataset_dict.json are what save_to_disk writes; dataset_info.json alone is not enough, since
    # LLaMA-Factory keeps a config file of that name next to its data files.
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def _iter_saved_dataset(path: Path, fmt: str | None) -> Iterator[Conversation | Rejected]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # datasets raises FileNotFoundError / its own errors for a damaged folder
        raise DataError(f"{path}: cannot load the saved dataset ({e})") from None
    if isinstance(ds, datasets.DatasetDict):
        if not ds:
            raise DataError(f"{path}: the saved DatasetDict has no splits")
        ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
    return _iter_rows(ds, str(path), fmt)


def _check_readable_file(path: Path) -> None:
    """Refuse what is not a file of data: a device (``/dev/zero`` never ends), a socket. Regular files and pipes
    (``<(zcat data.jsonl.gz)``, a FIFO) are read, a JSON Lines one record a line in bounded pieces."""
    try:
        mode = os.stat(path).st_mode  # follows symbolic links: what would be read
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    if stat.S_ISREG(mode) or stat.S_ISFIFO(mode):
        return
    kind = ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    raise DataError(f"{path} is {kind}, not a file of data: refused")


def _iter_file(path: Path, fmt: str | None) -> Iterator[Conversation | Rejected]:
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        shown = repr(ext) if ext else "(no extension)"
        raise DataError(f"unsupported file type {shown} for {path}: supported are "
                        f"{', '.join(SUPPORTED_EXTENSIONS)} files, or a folder saved with datasets' save_to_disk")
    _check_readable_file(path)
    if ext in (".jsonl", ".ndjson"):
        return _iter_jsonl_file(path, fmt)
    if ext == ".json":
        return _iter_json_file(path, fmt)
    return _iter_parquet(path, fmt)


def _iter_folder(path: Path, fmt: str | None) -> Iterator[Conversation | Rejected]:
    """Every data file of a folder, in sorted order. A file that cannot be read (no permission, broken JSON, a
    device) is one rejected item with its reason; the other files load."""
    try:
        files = sorted(p for p in path.iterdir()
                       if p.suffix.lower() in SUPPORTED_EXTENSIONS and p.name != "dataset_info.json"
                       and not p.is_dir())
        # a FIFO or socket named *.jsonl would block: stat (which never opens) and skip it (devices are refused below)
        odd = {p for p in files if p.exists() and (stat.S_ISFIFO(p.stat().st_mode) or stat.S_ISSOCK(p.stat().st_mode))}
    except OSError as e:
        raise DataError(f"cannot list the folder {path}: {e.strerror or e}") from None
    if not files:
        raise DataError(f"{path} is a folder with no {', '.join(SUPPORTED_EXTENSIONS)} files and is not a dataset "
                        "saved with datasets' save_to_disk")

    def chain() -> Iterator[Conversation | Rejected]:
        for file in files:
            if file in odd:
                yield Rejected(file.name, Source(str(file)), ["not a regular file (a FIFO or socket): skipped, never "
                                                              "opened"], None)
                continue
            count = 0
            try:
                for item in _iter_file(file, fmt):
                    count += 1
                    yield item
            except DataError as e:
                where = f" after {count} records" if count else ""
                yield Rejected(f"{file.name}{'#rest' if count else ''}", Source(str(file)),
                               [f"the file could not be read{where}: {e}"], None)

    return chain()
