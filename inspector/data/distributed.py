"""Run ``check`` and ``export`` as a Ray Data pipeline, for data that outgrows one machine (``--engine ray``).

The per-record work is the local engine's, unchanged: ``checks.evaluate`` over chunks of loaded records. Ray Data
only moves the records:

    read (one task per byte range of a file)  ->  map_batches (an actor pool: one CheckContext, i.e. one
      tokenizer, per worker)  ->  one small row per run of records back to the driver: its partial Report (and, for
      export, its shard names)

1. **Read.** ``_RecordSource`` is a Ray Data datasource over files on any filesystem pyarrow understands (local,
   ``s3://``, ``gs://``, ...). JSONL files are cut into byte ranges (a range reads the lines that start in it),
   Parquet files into groups of row groups, a ``.json`` file is one range (parsed whole, as the loader does); so one
   big file still feeds every worker. It emits one row per input record with the record's global position: the raw
   JSONL line (blank lines skipped exactly as ``loaders.iter_records`` skips them), the Parquet row, or the record of
   the ``.json`` file. Parsing happens in the workers, with the loader's own per-record functions
   (``files.jsonl_item``, ``formats.normalize_record`` via ``_convert``), so every record becomes the same
   ``Conversation`` or ``Rejected`` (same id, file, line or row, reasons) as locally. A first, cheap pass counts the
   lines and records of every range but the last (Parquet: from its metadata), so each range knows its first line
   number, its first record number in the file and its first global position.
2. **Evaluate.** ``_Evaluator`` (an actor; Ray Data keeps a pool of them) sorts a batch by position, splits it into
   runs of consecutive positions and checks each run with ``iter_outcomes(run, ctx, start=POSITION)`` (``evaluate``
   chunk by chunk, the next chunk tokenized meanwhile), so the verifier's ``sample`` mode picks the same records as
   locally. A bad record is a ``Rejected`` or a finding, never an exception.
   For export, the actor writes the run's accepted rows and rejected rows as one shard each, named after the run's
   first position (``accepted/part-000000001024.jsonl``), first under a temporary name, then moved into place.
3. **Aggregate.** The driver orders the partial reports by position, checks that they cover every position exactly
   once, merges them (``Report.merge``) and, for export, deletes any file a dead attempt left behind and writes
   ``report.json`` last.

Guarantees (tested in ``tests/test_distributed.py``): the report equals the local engine's (counts, codes,
examples); the accepted shards, read in name order, are the local ``accepted.jsonl``, row for row; a worker that
dies is restarted by Ray and its batch runs again, writing the same shard names, so nothing is lost or duplicated.

Left out: a ``datasets`` ``save_to_disk`` folder (convert it to Parquet, or use the local engine), progress per
record (Ray Data shows its own progress bars), and ``pack`` (packing needs every sample in one place).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from inspector.checks.context import CheckContext
from inspector.checks.report import Report
from inspector.checks.run import DEFAULT_CHUNK_SIZE, iter_outcomes
from inspector.conversations import Rejected, Source
from inspector.errors import DataError, InspectorError
from inspector.data.export import ACCEPT_RULE, EXPORT_FORMATS, ExportError, _dumps, accepted_file, accepted_schema, rejected_row
from inspector.data.files import (SUPPORTED_EXTENSIONS, _bounded_lines, _encoding, _iter_jsonl, _LongLine, is_blank_line,
                                  json_file_items, jsonl_item)
from inspector.data.formats import _check_fmt, _convert
from inspector.data.records import MAX_JSON_FILE_BYTES, MAX_RECORD_BYTES

RAY_EXTRA = "ray"
RAY_INSTALL_HINT = "pip install 'sft-inspector[ray]' (from a checkout: pip install -r requirements-ray.txt)"
DEFAULT_BATCH_SIZE = 1024  # records per Ray batch, and so per output shard
SHARD_DIGITS = 12  # part-000000001024: names sort in input order up to 10^12 records
ACCEPTED_DIR, REJECTED_DIR = "accepted", "rejected"
REPORT_FILE = "report.json"

# what a read row carries in ``payload``
LINE, ROW, ITEM = 0, 1, 2  # a raw JSONL line, a pickled Parquet row (a dict), a pickled Conversation / Rejected


def require_ray():
    """Import Ray Data, or raise an InspectorError naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise InspectorError(f"--engine ray needs Ray Data, which is not installed ({exc.name} is missing): "
                             f"{RAY_INSTALL_HINT}") from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """How to run on Ray. ``address``: an existing cluster (``auto``, ``HOST:PORT``, ``ray://HOST:10001``); None
    starts a local Ray with this machine's cores. ``workers``: actors in the pool (default: the cluster's CPUs).
    ``batch_size``: records per batch, and per output shard. ``split_bytes``: bytes of JSONL per read task."""

    address: str | None = None
    workers: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    progress: bool = False
    split_bytes: int | None = None  # bytes per JSONL read task (default: ``split_bytes(total, workers)``)


# --- input: the files to read, named as the local loader names them -----------------------------------------------

@dataclass(frozen=True)
class InputFile:
    """One data file: ``path`` for the filesystem (absolute, or the URI's path), ``name`` as records cite it (what
    ``loaders.iter_records`` would print: the path as given, or the URI), ``kind`` its extension."""

    path: str
    name: str
    kind: str  # "jsonl", "json" or "parquet"
    in_folder: bool = False  # one of a folder's files: a file that cannot be read is one rejected record
    size: int = 0  # bytes, as listed (one stat per file: on object storage each is a request)


def _is_uri(data: str) -> bool:
    return "://" in data and not Path(data).exists()


def _kind(name: str) -> str | None:
    ext = os.path.splitext(name)[1].lower()
    return {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}.get(ext)


def list_inputs(data: str):
    """The filesystem and the files of ``data`` (a file, or a folder's supported files in sorted order, as
    ``loaders.iter_records`` reads them). Raises DataError like the loader for a missing path, an unsupported file
    type or a folder without data files; a ``datasets`` ``save_to_disk`` folder is refused with a way out."""
    import pyarrow.fs as pafs

    if _is_uri(data):
        try:
            fs, root = pafs.FileSystem.from_uri(data)
        except Exception as exc:  # pyarrow: unknown scheme, missing credentials, bad bucket name
            raise DataError(f"cannot open {data}: {exc}") from None
        display = data.rstrip("/")

        def name_of(path: str) -> str:
            return display + path[len(root.rstrip("/")):] if path != root else display
    else:
        fs, root = pafs.LocalFileSystem(), str(Path(data).expanduser().resolve())
        base = Path(data)

        def name_of(path: str) -> str:
            return str(base) if path == root else str(base / os.path.basename(path))
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"data file not found: {data}")
    if info.type == pafs.FileType.Directory:
        entries = fs.get_file_info(pafs.FileSelector(root, recursive=False))
        names = {os.path.basename(e.path) for e in entries}
        if "state.json" in names or "dataset_dict.json" in names:
            raise DataError(f"{data} is a dataset saved with datasets' save_to_disk, which --engine ray does not "
                            "read: save it as Parquet (ds.to_parquet(...)) or use the local engine")
        files = sorted((e for e in entries if e.type == pafs.FileType.File and _kind(e.path)
                        and os.path.basename(e.path) != "dataset_info.json"), key=lambda e: os.path.basename(e.path))
        if not files:
            raise DataError(f"{data} is a folder with no {', '.join(SUPPORTED_EXTENSIONS)} files and is not a dataset "
                            "saved with datasets' save_to_disk")
        return fs, [InputFile(e.path, name_of(e.path), _kind(e.path), in_folder=True, size=e.size or 0)
                    for e in files]
    kind = _kind(root)
    if kind is None:
        ext = os.path.splitext(root)[1].lower()
        shown = repr(ext) if ext else "(no extension)"
        raise DataError(f"unsupported file type {shown} for {data}: supported are {', '.join(SUPPORTED_EXTENSIONS)} "
                        "files, or a folder saved with datasets' save_to_disk")
    return fs, [InputFile(root, name_of(root), kind, size=info.size or 0)]


# --- reading: byte ranges of files, one row per record with its global position ------------------------------------

@dataclass(frozen=True)
class _Range:
    """A piece of one file that one read task reads. JSONL: the lines that start in bytes [begin, end); Parquet:
    row groups [begin, end) holding ``rows`` rows; JSON: the whole file (parsed whole, as the loader does)."""

    file: int
    begin: int
    end: int
    size: int  # bytes, for Ray's estimates
    rows: int | None = None  # known without reading (Parquet metadata)


@dataclass(frozen=True)
class _Start:
    """Where a range starts: its first line number (JSONL), record number in its file, and global position."""

    line: int
    index: int
    position: int


def split_bytes(total: int, workers: int) -> int:
    """Bytes per JSONL read task: about four ranges per worker, between 64 KiB and 128 MiB.

    Example: split_bytes(236 << 20, 2) -> 30932992 (29.5 MiB: 8 ranges for 2 workers).
    """
    return int(min(128 << 20, max(64 << 10, total // max(1, 4 * workers))))


def plan_ranges(files: list[InputFile], fs, split: int) -> list[_Range]:
    """Cut the files into read ranges of about ``split`` bytes (Parquet: whole row groups). A JSONL file that is not
    UTF-8 becomes one ``"jsonl-text"`` range (its entry in ``files`` is replaced with that kind)."""
    import pyarrow.parquet as pq

    ranges: list[_Range] = []
    for k, file in enumerate(files):
        size = file.size
        if file.kind == "jsonl" and _not_utf8(fs, file):
            # UTF-16/32 with a byte-order mark (or text that looks like UTF-16 without one, refused as locally):
            # its lines cannot be cut at b"\n", so the file is one range, decoded as the local loader decodes it
            files[k] = file = dataclasses.replace(file, kind="jsonl-text")
            ranges.append(_Range(k, 0, 0, size))
        elif file.kind == "jsonl":
            cuts = list(range(0, size, split)) or [0]
            ranges += [_Range(k, a, min(a + split, size), min(a + split, size) - a) for a in cuts]
        elif file.kind == "parquet":
            try:
                with fs.open_input_file(file.path) as f:
                    meta = pq.ParquetFile(f).metadata
            except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for a damaged or non-Parquet file
                if not file.in_folder:
                    raise _parquet_error(file.name, exc) from None
                ranges.append(_Range(k, 0, 0, size, 1))  # read, it fails again: one rejected record saying why
                continue
            begin, rows, nbytes = 0, 0, 0
            for g in range(meta.num_row_groups):
                rows += meta.row_group(g).num_rows
                nbytes += meta.row_group(g).total_byte_size
                if nbytes >= split or g == meta.num_row_groups - 1:
                    ranges.append(_Range(k, begin, g + 1, nbytes, rows))
                    begin, rows, nbytes = g + 1, 0, 0
            if meta.num_row_groups == 0:
                ranges.append(_Range(k, 0, 0, 0, 0))
        else:
            ranges.append(_Range(k, 0, 0, size))
    return ranges


def _not_utf8(fs, file: InputFile) -> bool:
    """True when a JSONL file starts with a UTF-16/32 byte-order mark, or looks like UTF-16 without one."""
    with fs.open_input_file(file.path) as f:
        head = f.read(4)
    try:
        return _encoding(head, file.name) is not None
    except DataError:
        return True


def _iter_lines(f, chunk: int = 1 << 20, limit: int | None = None) -> Iterator[bytes | _LongLine]:
    """The lines of a binary stream from where it stands, each with its b"\\n" (the last one without, when the file
    does not end in one): what iterating over a file opened with ``open(path, "rb")`` gives. A line longer than
    ``limit`` (``MAX_RECORD_BYTES``) is read to its end without being kept and stands as a ``_LongLine``, as the
    local loader's ``_bounded_lines`` does."""
    limit = MAX_RECORD_BYTES if limit is None else limit
    rest = b""
    long: _LongLine | None = None  # the line being skipped
    while True:
        data = f.read(chunk)
        if not data:
            break
        if long is not None:
            end = data.find(b"\n")
            if end < 0:
                long.size += len(data)
                continue
            long.size += end + 1
            yield long
            long, data = None, data[end + 1:]
        data = rest + data
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if end - start > limit:  # the line without its \n, as _bounded_lines counts
                yield _LongLine(end + 1 - start, data[start:start + 1000])
            else:
                yield data[start:end + 1]
            start = end + 1
        rest = data[start:]
        if len(rest) > limit:
            long, rest = _LongLine(len(rest), rest[:1000]), b""
    if long is not None:
        yield long
    elif rest:
        yield rest


def range_lines(f, begin: int, end: int) -> Iterator[bytes]:
    """The lines of a seekable binary file that start at a byte in [begin, end). Consecutive ranges give every line
    of the file exactly once: a range skips the line it starts inside of, and reads past ``end`` to finish its last.

    Example: b"ab\\ncd\\nef" with ranges [0, 4) and [4, 8) -> [b"ab\\n", b"cd\\n"] and [b"ef"].
    """
    pos = 0
    if begin > 0:
        f.seek(begin - 1)
        lines = _iter_lines(f)
        pos = begin - 1 + _size(next(lines, b""))  # the rest of the line holding byte begin - 1 (maybe just its \\n)
    else:
        lines = _iter_lines(f)
    for line in lines:
        if pos >= end:
            break
        yield line
        pos += _size(line)


def _size(line: bytes | _LongLine) -> int:
    return line.size if isinstance(line, _LongLine) else len(line)


def _is_blank(raw: bytes, lineno: int) -> bool:
    """``files.is_blank_line`` with a fast answer for the usual line (its first byte printable ASCII)."""
    if isinstance(raw, _LongLine):
        return False
    return not (raw and 0x21 <= raw[0] <= 0x7E) and is_blank_line(raw, lineno)


def _parquet_error(name: str, exc: Exception, row: int | None = None) -> DataError:
    if row is None:
        return DataError(f"{name} is not a readable Parquet file ({exc})")
    return DataError(f"{name}: reading Parquet rows failed after row {row} ({exc})")


def _range_records(fs, file: InputFile, rng: _Range, start: _Start, fmt: str | None
                   ) -> Iterator[tuple[int, int, int, bytes]]:
    """(record number in the file, line or 0, kind, payload) for every record of one range, in order. In a folder,
    a file that cannot be read (broken JSON, a damaged Parquet file) ends with one rejected record saying why, as
    the local loader's ``_iter_folder`` does; the other files go on."""
    index = start.index
    try:
        for record in _read_range(fs, file, rng, start, fmt):
            index = record[0] + 1
            yield record
    except DataError as e:
        if not file.in_folder:
            raise
        where = f" after {index} records" if index else ""
        rejected = Rejected(f"{os.path.basename(file.path)}{'#rest' if index else ''}", Source(file.name),
                            [f"the file could not be read{where}: {e}"], None)
        yield index, 0, ITEM, pickle.dumps(rejected, protocol=pickle.HIGHEST_PROTOCOL)


def _read_range(fs, file: InputFile, rng: _Range, start: _Start, fmt: str | None
                ) -> Iterator[tuple[int, int, int, bytes]]:
    """``_range_records`` without the folder's rule."""
    with fs.open_input_file(file.path) as f:
        if file.kind == "jsonl-text":  # one range: the whole file, decoded as it streams
            encoding = _encoding(f.read(4), file.name)
            f.seek(0)
            try:
                with io.TextIOWrapper(f, encoding=encoding, newline="") as text:
                    for i, item in enumerate(_iter_jsonl(_bounded_lines(text), file.name, fmt)):
                        line = item.source.line if item.source is not None and item.source.line else 0
                        yield i, line, ITEM, pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
            except UnicodeDecodeError as e:
                raise DataError(f"{file.name} is not valid {encoding} text ({e.reason}): save it as UTF-8") from None
        elif file.kind == "jsonl":
            index, lineno = start.index, start.line
            for raw in range_lines(f, rng.begin, rng.end):
                if isinstance(raw, _LongLine):  # rejected as too long; only its size and head travel
                    yield index, lineno, ITEM, pickle.dumps(jsonl_item(raw, file.name, lineno, index, fmt),
                                                            protocol=pickle.HIGHEST_PROTOCOL)
                    index += 1
                elif not _is_blank(raw, lineno):
                    yield index, lineno, LINE, raw
                    index += 1
                lineno += 1
        elif file.kind == "parquet":
            import pyarrow.parquet as pq

            i = start.index
            try:
                pf = pq.ParquetFile(f)
            except Exception as exc:  # as plan_ranges: a damaged or non-Parquet file
                raise _parquet_error(file.name, exc) from None
            try:
                for batch in pf.iter_batches(batch_size=1024, row_groups=list(range(rng.begin, rng.end))):
                    for record in batch.to_pylist():
                        yield i, 0, ROW, pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
                        i += 1
            except (OSError, ValueError) as exc:  # pyarrow.ArrowException subclasses these
                raise _parquet_error(file.name, exc, i) from None
        else:  # .json: parsed whole, as the loader does (it may turn out to be JSON Lines)
            items = json_file_items(f.read(MAX_JSON_FILE_BYTES + 1), file.name, fmt)
            for i, item in enumerate(items):
                yield i, 0, ITEM, pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)


def _count_range(fs, file: InputFile, rng: _Range, fmt: str | None) -> tuple[int, int]:
    """(lines, records) of one range: what the reading pass needs to number the next range."""
    if rng.rows is not None:
        return 0, rng.rows
    if file.kind == "jsonl":
        lines = records = 0
        with fs.open_input_file(file.path) as f:
            for raw in range_lines(f, rng.begin, rng.end):
                lines += 1  # line numbers past line 1 do not change what is blank
                records += not _is_blank(raw, lines if rng.begin == 0 else 2)
        return lines, records
    return 0, sum(1 for _ in _range_records(fs, file, rng, _Start(1, 0, 0), fmt))


def _read_task(fs, files: tuple[InputFile, ...], ranges: tuple[_Range, ...], k: int, starts: tuple[_Start, ...] | None,
               fmt: str | None, block_rows: int, limit: int | None):
    """The blocks of range ``k``: counts (``starts`` None) or records with their global positions."""
    import pyarrow as pa

    rng = ranges[k]
    file = files[rng.file]
    if starts is None:
        lines, records = _count_range(fs, file, rng, fmt)
        yield pa.table({"range": [k], "lines": [lines], "records": [records]})
        return
    offset = starts[k].position - starts[k].index  # the global position of the file's first record
    cols: dict[str, list] = {"position": [], "line": [], "index": [], "kind": [], "payload": []}

    def block():
        n = len(cols["position"])
        return pa.table({"position": pa.array(cols["position"], pa.int64()),
                         "file": pa.array([rng.file] * n, pa.int32()),
                         "line": pa.array(cols["line"], pa.int64()), "index": pa.array(cols["index"], pa.int64()),
                         "kind": pa.array(cols["kind"], pa.int8()),
                         "payload": pa.array(cols["payload"], pa.large_binary())})

    for index, line, kind, payload in _range_records(fs, file, rng, starts[k], fmt):
        position = offset + index
        if limit is not None and position >= limit:
            break
        for key, value in zip(cols, (position, line, index, kind, payload)):
            cols[key].append(value)
        if len(cols["position"]) >= block_rows:
            yield block()
            cols = {key: [] for key in cols}
    if cols["position"]:
        yield block()


def _datasource(fs, files: list[InputFile], ranges: list[_Range], keep: list[int], starts: list[_Start] | None,
                fmt: str | None, block_rows: int, limit: int | None):
    """A Ray Data datasource with one read task per range in ``keep``."""
    import functools

    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    files_t, ranges_t = tuple(files), tuple(ranges)
    starts_t = tuple(starts) if starts is not None else None

    class _RecordSource(Datasource):
        def estimate_inmemory_data_size(self) -> int:
            return sum(ranges[k].size for k in keep)

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            return [ReadTask(functools.partial(_read_task, fs, files_t, ranges_t, k, starts_t, fmt, block_rows, limit),
                             BlockMetadata(num_rows=ranges[k].rows if starts is not None else 1,
                                           size_bytes=ranges[k].size, input_files=[files[ranges[k].file].path],
                                           exec_stats=None))
                    for k in keep]

    return _RecordSource()


def _starts(files: list[InputFile], ranges: list[_Range], counts: dict[int, tuple[int, int]]) -> list[_Start]:
    """Where each range starts, from the (lines, records) of every range before it."""
    out: list[_Start] = []
    position = 0
    for k, rng in enumerate(ranges):
        if k == 0 or ranges[k - 1].file != rng.file:
            line, index = 1, 0
        out.append(_Start(line, index, position))
        lines, records = counts.get(k, (0, 0))
        line, index, position = line + lines, index + records, position + records
    return out


def _to_item(file: InputFile, line: int, index: int, kind: int, payload: bytes, fmt: str | None):
    """A read row -> the Conversation or Rejected the local loader makes of that record."""
    if kind == LINE:
        return jsonl_item(payload, file.name, line, index, fmt)
    if kind == ROW:
        return _convert(pickle.loads(payload), fmt, Source(file.name, row=index), index)
    return pickle.loads(payload)


# --- the workers ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Job:
    """What every worker needs besides the tokenizer (which travels once through the object store)."""

    files: tuple[InputFile, ...]
    fmt: str | None
    opts: Any
    thresholds: Any
    skip: tuple[str, ...]
    verify: str
    chunk_size: int
    out: str | None = None  # export: the output folder (a local path or a URI)
    out_format: str = "jsonl"
    run_id: str = ""
    max_examples: int = 5  # of the driver's Report: each partial keeps as many


def _runs(positions: list[int]) -> list[tuple[int, int]]:
    """(first, last + 1) indices into a sorted list of positions, one per run of consecutive positions.

    Example: [0, 1, 2, 7, 8] -> [(0, 3), (3, 5)].
    """
    out, begin = [], 0
    for i in range(1, len(positions) + 1):
        if i == len(positions) or positions[i] != positions[i - 1] + 1:
            out.append((begin, i))
            begin = i
    return out


def shard_name(start: int, ext: str) -> str:
    """Example: shard_name(1024, "jsonl") -> "part-000000001024.jsonl"."""
    return f"part-{start:0{SHARD_DIGITS}d}.{ext}"


class _ShardWriter:
    """The accepted and rejected shards of one run, written under temporary names and moved into place at close."""

    def __init__(self, job: _Job, start: int):
        import pyarrow.fs as pafs

        self.job = job
        self.fs, self.root = _out_fs(job.out)
        self.names = {ACCEPTED_DIR: shard_name(start, job.out_format), REJECTED_DIR: shard_name(start, "jsonl")}
        self.tmp: dict[str, str] = {}
        self.streams: dict[str, Any] = {}
        self.parquet = None
        self.counts = {"accepted_records": 0, "accepted_samples": 0, "rejected_records": 0}
        self._pafs = pafs

    def _stream(self, part: str):
        if part not in self.streams:
            tmp = f"{self.root}/{part}/.{self.names[part]}.{self.job.run_id}.{secrets.token_hex(4)}.partial"
            self.tmp[part] = tmp
            self.streams[part] = self.fs.open_output_stream(tmp)
        return self.streams[part]

    def write(self, outcomes) -> None:
        accepted: list[dict[str, Any]] = []
        rejected: list[str] = []
        for oc in outcomes:
            if oc.accepted:
                self.counts["accepted_records"] += 1
                self.counts["accepted_samples"] += len(oc.rows)
                accepted.extend(oc.rows)
            else:
                self.counts["rejected_records"] += 1
                rejected.append(_dumps(rejected_row(oc)) + "\n")
        if rejected:
            self._stream(REJECTED_DIR).write("".join(rejected).encode("utf-8"))
        if not accepted:
            return
        if self.job.out_format == "jsonl":
            self._stream(ACCEPTED_DIR).write("".join(_dumps(r) + "\n" for r in accepted).encode("utf-8"))
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            if self.parquet is None:
                self.parquet = pq.ParquetWriter(self._stream(ACCEPTED_DIR), accepted_schema())
            self.parquet.write_table(pa.Table.from_pylist(accepted, schema=accepted_schema()))

    def close(self) -> dict[str, str]:
        """Move the shards into place; returns {"accepted": name or "", "rejected": name or ""}."""
        if self.parquet is not None:
            self.parquet.close()
        for stream in self.streams.values():
            stream.close()
        done = {}
        for part in (ACCEPTED_DIR, REJECTED_DIR):
            if part in self.tmp:
                self.fs.move(self.tmp[part], f"{self.root}/{part}/{self.names[part]}")
            done[part] = self.names[part] if part in self.tmp else ""
        return done


class _Evaluator:
    """A Ray Data actor: loads the tokenizer once (from the object store), then evaluates batch after batch."""

    def __init__(self, setup_ref, job: _Job):
        import ray

        # one CPU per actor: the Rust tokenizer's own thread pool would only contend with the other actors
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        setup = ray.get(setup_ref[0]) if isinstance(setup_ref, list) else setup_ref
        self.job = job
        self.ctx = CheckContext(setup, job.opts, job.thresholds, job.skip, verify=job.verify)

    def __call__(self, batch) -> dict[str, list]:
        job = self.job
        cols = {name: batch.column(name).to_pylist() for name in batch.column_names}
        order = sorted(range(len(cols["position"])), key=cols["position"].__getitem__)
        positions = [cols["position"][i] for i in order]
        out: dict[str, list] = {"start": [], "count": [], "partial": [], "accepted": [], "rejected": [],
                                "accepted_records": [], "accepted_samples": [], "rejected_records": []}
        for a, b in _runs(positions):
            start = positions[a]
            items = [_to_item(job.files[cols["file"][i]], cols["line"][i], cols["index"][i], cols["kind"][i],
                              cols["payload"][i], job.fmt) for i in order[a:b]]
            report = Report(max_examples=job.max_examples)
            writer = _ShardWriter(job, start) if job.out is not None else None
            done: list = []
            for oc in iter_outcomes(items, self.ctx, chunk_size=job.chunk_size, keep_rows=writer is not None,
                                    start=start):
                report.add(oc)
                if writer is not None:
                    done.append(oc)
                    if len(done) >= job.chunk_size:
                        writer.write(done)
                        done = []
            if writer is not None and done:
                writer.write(done)
            names = writer.close() if writer is not None else {ACCEPTED_DIR: "", REJECTED_DIR: ""}
            counts = writer.counts if writer is not None else {}
            out["start"].append(start)
            out["count"].append(b - a)
            out["partial"].append(pickle.dumps(report, protocol=pickle.HIGHEST_PROTOCOL))
            out["accepted"].append(names[ACCEPTED_DIR])
            out["rejected"].append(names[REJECTED_DIR])
            for key in ("accepted_records", "accepted_samples", "rejected_records"):
                out[key].append(counts.get(key, 0))
        return out


# --- the driver -----------------------------------------------------------------------------------------------------

def _out_fs(out: str):
    import pyarrow.fs as pafs

    if _is_uri(out):
        fs, root = pafs.FileSystem.from_uri(out)
        return fs, root.rstrip("/")
    return pafs.LocalFileSystem(), str(Path(out).expanduser().resolve())


def _init_ray(options: RayOptions) -> bool:
    """Connect to ``options.address`` or start a local Ray with this machine's cores; True if we started it.
    An already initialized Ray (a test's ``ray.init(num_cpus=2)``, a ``ray job submit`` driver) is used as it is."""
    import logging

    ray = require_ray()
    _ray_reports_to_stderr()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if not options.address and os.environ.get("RAY_ADDRESS"):  # a `ray job submit` driver: its cluster and env
            ray.init(**kwargs)
        elif options.address:
            _check_reachable(options.address)
            # the cluster's workers may not have this checkout: ship the package with the job
            ray.init(address=options.address, runtime_env={"py_modules": [str(Path(__file__).resolve().parent.parent)]},
                     **kwargs)
        else:
            ray.init(num_cpus=os.cpu_count() or 1, **kwargs)
    except Exception as exc:  # noqa: BLE001 - whatever Ray raises while starting (OSError, TimeoutError, ...)
        where = options.address or os.environ.get("RAY_ADDRESS") or "a local Ray"
        raise InspectorError(f"cannot start or reach Ray ({where}): {str(exc).splitlines()[0]}") from None
    return True


def _ray_reports_to_stderr() -> None:
    """Ray prints what the cluster reports to the driver ("A worker died ...", a task retried) from a background
    thread, to stdout, at any moment, also after a run. stdout is the report's (``--json``), so those lines go to
    stderr: the one function Ray prints them with is wrapped once (left alone if a Ray version has no such
    function)."""
    try:
        import ray._private.worker as worker
    except ImportError:
        return
    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "_to_stderr", False):
        return

    def to_stderr(data, *args, **kwargs):
        return original(dict(data, is_err=True), *args, **kwargs)

    to_stderr._to_stderr = True
    worker.print_to_stdstream = to_stderr


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a HOST:PORT (or ray://HOST:PORT) nothing listens on: Ray itself retries for minutes."""
    import socket

    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit() or not host:
        return  # "auto" and the like: Ray resolves them
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise InspectorError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}): is it running? "
                             "(`ray status` on the head node)") from None


def _inspector_error(exc: BaseException) -> InspectorError | None:
    """The InspectorError (e.g. a DataError from a read task) inside an exception Ray wrapped, as a plain one."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        cause = getattr(e, "cause", None)
        if isinstance(e, InspectorError) and not isinstance(cause, BaseException):
            return e
        stack.extend([cause if isinstance(cause, BaseException) else None, e.__cause__, e.__context__])
    return None


def _readers(tasks: int, workers: int) -> int:
    """Read tasks at a time: reading and splitting lines runs at ~100 MB/s, checking at ~2.5 MB/s per worker, so
    one reader feeds about 16 workers (and every reader is one more process holding memory).

    Example: _readers(8, 2) -> 1; _readers(100, 64) -> 4.
    """
    return max(1, min(tasks, -(-workers // 16)))


def _plan(fs, files: list[InputFile], fmt: str | None, split: int, workers: int = 1
          ) -> tuple[list[_Range], list[_Start]]:
    """The read ranges and where each starts: a counting pass (in Ray tasks) over every range but the last."""
    import ray.data

    ranges = plan_ranges(files, fs, split)
    head = [k for k in range(len(ranges) - 1) if ranges[k].rows is None]
    counts = {k: (0, r.rows) for k, r in enumerate(ranges) if r.rows is not None}
    if head:
        src = _datasource(fs, files, ranges, head, None, fmt, 1, None)
        for row in ray.data.read_datasource(src, override_num_blocks=len(head), num_cpus=0,
                                            concurrency=_readers(len(head), workers)).take_all():
            counts[row["range"]] = (row["lines"], row["records"])
    return ranges, _starts(files, ranges, counts)


def _workers(options: RayOptions) -> int:
    import ray

    if options.workers:
        return options.workers
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _run(data: str, ctx: CheckContext, report: Report, *, fmt: str | None, limit: int | None, chunk_size: int,
         options: RayOptions, out: str | None = None, out_format: str = "jsonl") -> list[dict[str, Any]]:
    """Read, evaluate and merge; returns the per-run rows (start, count, shard names, counts) in input order."""
    import logging
    import warnings

    ray = require_ray()
    fmt = _check_fmt(fmt)
    fs, files = list_inputs(data)
    started = _init_ray(options)
    data_logger = logging.getLogger("ray.data")
    level = data_logger.level
    try:
        import ray.data

        # Ray Data logs a failed task's traceback before raising it; this run raises it itself (a record-level
        # error as the local engine words it, anything else with Ray's traceback), so its logs stay quiet; with no
        # progress bars, none of its progress logging either
        data_logger.setLevel(logging.CRITICAL)
        warnings.filterwarnings("ignore", message=".*minimum number of concurrent actors", category=UserWarning)
        dctx = ray.data.DataContext.get_current()
        dctx.enable_progress_bars = options.progress
        dctx.print_on_execution_start = False
        dctx.verbose_stats_logs = False
        workers = _workers(options)
        total = sum(f.size for f in files)
        ranges, starts = _plan(fs, files, fmt, options.split_bytes or split_bytes(total, workers), workers)
        keep = [k for k in range(len(ranges)) if limit is None or starts[k].position < limit]
        job = _Job(tuple(files), fmt, ctx.opts, ctx.thresholds, tuple(sorted(ctx.skip)), ctx.verify, chunk_size,
                   out=out, out_format=out_format, run_id=secrets.token_hex(4), max_examples=report.max_examples)
        setup_ref = [ray.put(ctx.setup)]  # in a list: Ray would pass a bare ObjectRef argument resolved
        ds = ray.data.read_datasource(_datasource(fs, files, ranges, keep, starts, fmt, options.batch_size, limit),
                                      override_num_blocks=max(1, len(keep)), num_cpus=0,
                                      concurrency=_readers(len(keep), workers))
        ds = ds.map_batches(_Evaluator, fn_constructor_kwargs={"setup_ref": setup_ref, "job": job},
                            batch_size=options.batch_size, batch_format="pyarrow", num_cpus=1,
                            compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1))
        rows = sorted(ds.take_all(), key=lambda r: r["start"])  # what Ray prints goes to stderr (_init_ray)
    except Exception as exc:
        found = _inspector_error(exc)
        if found is not None:
            raise type(found)(str(found)) from None
        raise
    finally:
        data_logger.setLevel(level)
        if started:
            ray.shutdown()
    expected = 0
    for row in rows:  # every position exactly once: a retried batch must not count twice, nor a lost one be missing
        if row["start"] != expected:
            raise InspectorError(f"Ray run incomplete: records {expected}..{row['start'] - 1} missing or repeated "
                                 f"(a batch started at {row['start']})")
        expected += row["count"]
        report.merge(pickle.loads(row["partial"]))
    return rows


def run_check(data: str, ctx: CheckContext, report: Report, *, fmt: str | None = None, limit: int | None = None,
              chunk_size: int = DEFAULT_CHUNK_SIZE, options: RayOptions = RayOptions()) -> Report:
    """``check --engine ray``: fill ``report`` (settings already set by the caller) with every record of ``data``.

    >>> run_check("inspector/demo/demo.jsonl", ctx, Report())   # doctest: +SKIP
    """
    _run(data, ctx, report, fmt=fmt, limit=limit, chunk_size=chunk_size, options=options)
    return report


def _prepare_out(out: str, out_format: str, force: bool):
    """Refuse to mix with an earlier export unless ``force``; with it, remove what an earlier export wrote."""
    import pyarrow.fs as pafs

    if out_format not in EXPORT_FORMATS:
        raise ExportError(f"Unknown export format {out_format!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    fs, root = _out_fs(out)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        raise ExportError(f"--out {out} is a file, not a folder")
    ours = [REPORT_FILE, *(accepted_file(f) for f in EXPORT_FORMATS), "rejected.jsonl"]
    existing: list[str] = []
    if info.type == pafs.FileType.Directory:
        for e in fs.get_file_info(pafs.FileSelector(root, recursive=False)):
            name = os.path.basename(e.path)
            if name in ours or (name in (ACCEPTED_DIR, REJECTED_DIR) and e.type == pafs.FileType.Directory
                                and fs.get_file_info(pafs.FileSelector(e.path, recursive=False))):
                existing.append(name + ("/" if e.type == pafs.FileType.Directory else ""))
    if existing and not force:
        raise ExportError(f"{out} already holds {', '.join(sorted(existing))}: pass --force (force=True) to "
                          "overwrite, or choose another --out folder")
    for name in existing:
        path = f"{root}/{name.rstrip('/')}"
        fs.delete_dir_contents(path) if name.endswith("/") else fs.delete_file(path)
    for part in (ACCEPTED_DIR, REJECTED_DIR):
        fs.create_dir(f"{root}/{part}", recursive=True)
    return fs, root


def run_export(data: str, ctx: CheckContext, report: Report, out: str, *, out_format: str = "jsonl",
               force: bool = False, fmt: str | None = None, limit: int | None = None,
               chunk_size: int = DEFAULT_CHUNK_SIZE, options: RayOptions = RayOptions()) -> dict[str, Any]:
    """``export --engine ray``: write ``out/accepted/part-*.{jsonl,parquet}``, ``out/rejected/part-*.jsonl`` and,
    last, ``out/report.json`` (the report plus an ``export`` section). Returns the export summary."""
    import pyarrow.fs as pafs

    fs, root = _prepare_out(out, out_format, force)
    try:
        rows = _run(data, ctx, report, fmt=fmt, limit=limit, chunk_size=chunk_size, options=options, out=out,
                    out_format=out_format)
    except BaseException:
        for part in (ACCEPTED_DIR, REJECTED_DIR):  # both were empty before this run: nothing here is complete
            try:
                fs.delete_dir(f"{root}/{part}")  # (the folders too: no accepted/ without a report.json)
            except (FileNotFoundError, OSError):
                fs.delete_dir_contents(f"{root}/{part}", missing_dir_ok=True)
        raise
    shards = {part: [r[part] for r in rows if r[part]] for part in (ACCEPTED_DIR, REJECTED_DIR)}
    for part, names in shards.items():  # what a dead attempt left behind (a .partial file, or a shard of a batch
        keep = set(names)                # that ran again elsewhere under the same name: kept, being identical)
        for e in fs.get_file_info(pafs.FileSelector(f"{root}/{part}", recursive=False)):
            if os.path.basename(e.path) not in keep:
                fs.delete_file(e.path)
    if out_format == "parquet" and not shards[ACCEPTED_DIR]:  # an empty shard keeps the schema, as locally
        import pyarrow.parquet as pq

        name = shard_name(0, "parquet")
        with fs.open_output_stream(f"{root}/{ACCEPTED_DIR}/{name}") as stream:
            pq.write_table(accepted_schema().empty_table(), stream)
        shards[ACCEPTED_DIR] = [name]
    summary = {"format": out_format, "accepted_file": f"{ACCEPTED_DIR}/", "rejected_file": f"{REJECTED_DIR}/",
               "accepted_records": sum(r["accepted_records"] for r in rows),
               "accepted_samples": sum(r["accepted_samples"] for r in rows),
               "rejected_records": sum(r["rejected_records"] for r in rows),
               "accepted_shards": len(shards[ACCEPTED_DIR]), "rejected_shards": len(shards[REJECTED_DIR]),
               "engine": "ray", "rule": ACCEPT_RULE}
    report.extra["export"] = summary
    tmp = f"{root}/.{REPORT_FILE}.{secrets.token_hex(4)}.partial"
    with fs.open_output_stream(tmp) as stream:
        stream.write((json.dumps(report.to_dict(), ensure_ascii=False, indent=2, default=str) + "\n").encode("utf-8"))
    fs.move(tmp, f"{root}/{REPORT_FILE}")
    return summary

