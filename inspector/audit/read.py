"""Read a trainer's own tokenized output: the rows a trainer feeds the model, as ``TokenRow``s.

A trainer leaves its tokenized data in one of a few shapes, and the label can live in one of several columns:

    column            meaning                                                     who writes it
    labels            unshifted labels, -100 = not trained                        TRL 1.16, axolotl, LLaMA-Factory
    assistant_masks   1 = trained (TRL's collator sets labels to -100 where 0)    TRL before its label step
    completion_mask   1 = trained (prompt/completion, completion_only_loss)       TRL before its label step
    (none)            every token is trained (labels = input_ids, padding -100)   TRL's plain language modeling
    attention_mask    0 = padding: never trained
    seq_lengths       packed row: lengths of the samples laid end to end         TRL's bfd packing
    position_ids      packed row: restarts at 0 where a sample starts             padding-free collators

Files: a ``datasets.save_to_disk`` folder (its ``data-*.arrow`` files), ``.arrow``, ``.parquet``, ``.jsonl`` /
``.json``; a folder of such files. A collated batch (``rows_from_batch``) gives the same rows, after padding is
stripped. Packed rows are split back into their samples (``TokenRow.part``).

Example: a row ``{"input_ids": [5, 6, 7, 8], "labels": [-100, -100, 7, 8]}`` -> ``TokenRow(id="row-0",
input_ids=[5, 6, 7, 8], trained=[F, F, T, T], labels=[-100, -100, 7, 8])``, read "from labels (-100 = not
trained)". ``{"input_ids": [...6 ids], "seq_lengths": [2, 4], ...}`` -> two rows, ``row-0/0`` and ``row-0/1``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from inspector.constants import IGNORE_INDEX
from inspector.errors import DataError

LABEL_COLUMNS = ("labels", "assistant_masks", "completion_mask")
# columns that hold the conversation a row came from (TRL keeps them beside the tokens), or its id
REFERENCE_COLUMNS = ("messages", "conversations", "prompt", "completion", "text", "instruction", "input", "output",
                     "system", "tools", "id", "conversation_id", "sample_id")
TOKEN_COLUMNS = ("input_ids", *LABEL_COLUMNS, "attention_mask", "position_ids", "seq_lengths")
DEFAULT_BATCH_ROWS = 1024


@dataclass
class TokenRow:
    """One sample as the trainer holds it. ``trained[i]``: the loss counts token i. ``labels``: the label column
    when there is one (None when the mask came from ``assistant_masks`` / ``completion_mask``). ``index``: the row
    of the dataset; ``part``: the sample's number inside a packed row (None when the row is not packed) and
    ``offset`` where it starts there. ``reference``: the row's non-token columns (``messages``, ``prompt``, ``id``
    ...). ``problems``: what is wrong with the row's packing layout, as (code, message, positions)."""

    id: str
    index: int
    input_ids: np.ndarray
    trained: np.ndarray
    labels: np.ndarray | None = None
    part: int | None = None
    offset: int = 0
    reference: dict[str, Any] = field(default_factory=dict)
    problems: list[tuple[str, str, list[int]]] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class Columns:
    """Which columns were read and how: ``labels_from`` names the column the trained mask comes from."""

    input_ids: str = "input_ids"
    labels_from: str = "none"
    masks: list[str] = field(default_factory=list)
    attention_mask: bool = False
    packing: str | None = None  # "seq_lengths" / "position_ids"
    reference: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        """One line per decision. Example: ["tokens: input_ids", "trained: labels != -100", ...]."""
        how = {"labels": f"labels != {IGNORE_INDEX} (unshifted, as Hugging Face models take them)",
               "assistant_masks": "assistant_masks == 1 (TRL's collator masks the rest)",
               "completion_mask": "completion_mask == 1 (TRL's collator masks the prompt)",
               "assistant_masks+completion_mask": "assistant_masks == 1 and completion_mask == 1",
               "none": "no label column: every token is trained (labels = input_ids, as TRL's collator does)"}
        out = [f"tokens: {self.input_ids}", f"trained: {how.get(self.labels_from, self.labels_from)}"]
        if self.attention_mask:
            out.append("attention_mask: 0 marks padding, never trained (padding is dropped before the audit)")
        if self.packing == "seq_lengths":
            out.append("packed rows: split into samples by seq_lengths")
        elif self.packing == "position_ids":
            out.append("packed rows: split into samples where position_ids restart at 0")
        if self.reference:
            out.append(f"reference columns: {', '.join(self.reference)}")
        if self.ignored:
            out.append(f"not read: {', '.join(self.ignored)}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"input_ids": self.input_ids, "labels_from": self.labels_from, "attention_mask": self.attention_mask,
                "packing": self.packing, "reference": list(self.reference), "ignored": list(self.ignored),
                "described": self.describe()}


def decide_columns(names: Iterable[str]) -> Columns:
    """What to read from a table with these column names. Raises ``DataError`` without ``input_ids``."""
    names = list(names)
    if "input_ids" not in names:
        raise DataError(f"no input_ids column (columns: {', '.join(names) or 'none'}): the audit reads a trainer's "
                        "tokenized output (e.g. trainer.train_dataset.save_to_disk(DIR)); for raw conversations use "
                        "`python -m inspector check`")
    cols = Columns()
    masks = [c for c in ("assistant_masks", "completion_mask") if c in names]
    if "labels" in names:
        cols.labels_from = "labels"
    elif masks:
        cols.labels_from = "+".join(masks)
    cols.masks = masks if "labels" not in names else []
    cols.attention_mask = "attention_mask" in names
    if "seq_lengths" in names:
        cols.packing = "seq_lengths"
    elif "position_ids" in names:
        cols.packing = "position_ids"
    cols.reference = [c for c in names if c in REFERENCE_COLUMNS]
    cols.ignored = [c for c in names if c not in TOKEN_COLUMNS and c not in REFERENCE_COLUMNS]
    if "labels" in names and masks:
        cols.ignored += [c for c in masks if c not in cols.ignored]
    return cols


def _restarts(pos: np.ndarray) -> list[int]:
    """Where a packed row's samples start: position 0 and every index whose position id does not continue the
    previous one. Example: [0, 1, 2, 0, 1] -> [0, 3]."""
    if pos.size == 0:
        return [0]
    breaks = np.flatnonzero(pos[1:] != pos[:-1] + 1) + 1
    return [0, *breaks.tolist()]


def build_rows(index: int, values: Mapping[str, Any], cols: Columns, reference: dict[str, Any] | None = None,
               row_id: str | None = None) -> list[TokenRow]:
    """The sample(s) of one dataset row (several when it is packed), padding removed."""
    ids = np.asarray(values["input_ids"], dtype=np.int64).reshape(-1)
    n = ids.shape[0]
    labels = None
    if cols.labels_from == "labels":
        labels = np.asarray(values["labels"], dtype=np.int64).reshape(-1)
        if labels.shape[0] != n:
            raise DataError(f"row {index}: labels has {labels.shape[0]} values for {n} input_ids")
        trained = labels != IGNORE_INDEX
    else:
        trained = np.ones(n, dtype=bool)
        for c in cols.masks:
            m = np.asarray(values[c], dtype=np.int64).reshape(-1)
            if m.shape[0] != n:
                raise DataError(f"row {index}: {c} has {m.shape[0]} values for {n} input_ids")
            trained &= m != 0
    keep = None
    if cols.attention_mask and values.get("attention_mask") is not None:
        att = np.asarray(values["attention_mask"], dtype=np.int64).reshape(-1)
        if att.shape[0] == n and not att.all():
            keep = att != 0
    pos = values.get("position_ids") if cols.packing is not None else None
    pos = np.asarray(pos, dtype=np.int64).reshape(-1) if pos is not None else None
    if keep is not None:
        ids, trained = ids[keep], trained[keep]
        labels = labels[keep] if labels is not None else None
        pos = pos[keep] if pos is not None and pos.shape[0] == n else pos
    rid = row_id or f"row-{index}"
    ref = reference or {}
    starts: list[int] | None = None
    problems: list[tuple[str, str, list[int]]] = []
    lengths = values.get("seq_lengths") if cols.packing == "seq_lengths" else None
    if lengths is not None:
        lengths = [int(x) for x in np.asarray(lengths).reshape(-1)]
        if sum(lengths) != ids.shape[0]:
            problems.append(("packed-layout", f"seq_lengths add up to {sum(lengths)} tokens, the row has "
                             f"{ids.shape[0]}", []))
        starts = np.cumsum([0, *lengths[:-1]]).tolist() if lengths else [0]
        if pos is not None and pos.shape[0] == ids.shape[0]:
            restarts = set(_restarts(pos))
            missing = [s for s in starts if s not in restarts]
            if missing:
                problems.append(("packed-positions-continue",
                                 f"position_ids do not restart where {len(missing)} packed sample(s) start: each "
                                 "attends to the samples before it", missing[:64]))
    elif cols.packing == "position_ids" and pos is not None and pos.shape[0] == ids.shape[0]:
        starts = _restarts(pos)
    if not starts or len(starts) == 1:
        return [TokenRow(rid, index, ids, trained, labels, None, 0, ref, problems)]
    out = []
    bounds = [*starts, ids.shape[0]]
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        out.append(TokenRow(f"{rid}/{k}", index, ids[a:b], trained[a:b], labels[a:b] if labels is not None
                            else None, k, int(a), {}, problems if k == 0 else []))
    return out


# --- files ------------------------------------------------------------------------------------------------------

def _arrow_batches(path: Path, batch_rows: int) -> Iterator[Any]:
    import pyarrow as pa

    try:
        reader = pa.ipc.open_stream(pa.memory_map(str(path)))
    except pa.ArrowInvalid:
        reader = pa.ipc.open_file(pa.memory_map(str(path)))
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)
        return
    yield from reader


def _table_batches(path: Path, batch_rows: int) -> Iterator[Any]:
    """pyarrow RecordBatches of one file, or of every data file of a save_to_disk folder, in order."""
    if path.is_dir():
        files = sorted(path.glob("data-*.arrow")) or sorted(path.glob("*.arrow"))
        if not files:
            files = sorted([*path.glob("*.parquet"), *path.glob("*.jsonl"), *path.glob("*.json")])
            files = [f for f in files if f.name not in ("dataset_info.json", "state.json")]
        if not files:
            subsets = sorted(p for p in path.iterdir() if p.is_dir() and list(p.glob("*.arrow")))
            if subsets:  # a DatasetDict folder: read its "train" split, or the first
                chosen = next((p for p in subsets if p.name == "train"), subsets[0])
                yield from _table_batches(chosen, batch_rows)
                return
            raise DataError(f"{path}: no .arrow, .parquet or .jsonl file in this folder")
        for f in files:
            yield from _table_batches(f, batch_rows)
        return
    suffix = path.suffix.lower()
    if suffix == ".arrow":
        yield from _arrow_batches(path, batch_rows)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from pq.ParquetFile(str(path)).iter_batches(batch_size=batch_rows)
    elif suffix in (".jsonl", ".json"):
        yield from _json_batches(path, batch_rows)
    else:
        raise DataError(f"{path}: unknown file type {suffix!r}; expected a save_to_disk folder, .arrow, .parquet "
                        "or .jsonl")


def _json_batches(path: Path, batch_rows: int) -> Iterator[list[dict[str, Any]]]:
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from exc
        for i in range(0, len(rows), batch_rows):
            yield rows[i:i + batch_rows]
        return
    batch: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            batch.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {lineno}: not valid JSON ({exc})") from exc
        if len(batch) >= batch_rows:
            yield batch
            batch = []
    if batch:
        yield batch


def _lists(column: Any) -> list[np.ndarray]:
    """A pyarrow list<int> column as one numpy slice per row, without building Python lists."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_list(column.type) and pa.types.is_list(column.type.value_type):  # [[...]] (a batch of 1)
        column = pa.array([v[0] if v else [] for v in column.to_pylist()])
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        return [np.asarray(v) for v in column.to_pylist()]
    offsets = column.offsets.to_numpy()
    values = column.values.to_numpy(zero_copy_only=False)
    return [values[offsets[i]:offsets[i + 1]] for i in range(len(column))]


@dataclass
class Tokenized:
    """A tokenized dataset being read: ``columns`` says what was read and how; iterate ``rows()`` once."""

    path: str
    columns: Columns
    _batches: Iterator[Any]
    _first: Any
    rows_read: int = 0

    def rows(self, limit: int | None = None) -> Iterator[TokenRow]:
        batch = self._first
        index = 0
        while batch is not None:
            for row in _batch_rows(batch, self.columns, index):
                if limit is not None and row.index >= limit:
                    return
                yield row
            index += _batch_len(batch)
            self.rows_read = index if limit is None else min(index, limit)
            batch = next(self._batches, None)


def _batch_len(batch: Any) -> int:
    return len(batch) if isinstance(batch, list) else batch.num_rows


def _names(batch: Any) -> list[str]:
    if isinstance(batch, list):
        names: list[str] = []
        for r in batch[:50]:
            names += [k for k in r if k not in names]
        return names
    return list(batch.schema.names)


def _batch_rows(batch: Any, cols: Columns, start: int) -> Iterator[TokenRow]:
    if isinstance(batch, list):
        for i, r in enumerate(batch):
            if not isinstance(r, Mapping) or "input_ids" not in r:
                raise DataError(f"row {start + i}: not an object with input_ids")
            ref = {k: r[k] for k in cols.reference if k in r}
            yield from build_rows(start + i, r, cols, ref, _row_id(ref))
        return
    token_cols = {c: _lists(batch.column(c)) for c in TOKEN_COLUMNS if c in batch.schema.names}
    ref_cols = {c: batch.column(c).to_pylist() for c in cols.reference}
    for i in range(batch.num_rows):
        values = {c: v[i] for c, v in token_cols.items()}
        ref = {c: v[i] for c, v in ref_cols.items()}
        yield from build_rows(start + i, values, cols, ref, _row_id(ref))


def _row_id(ref: Mapping[str, Any]) -> str | None:
    for key in ("id", "conversation_id", "sample_id"):
        v = ref.get(key)
        if isinstance(v, (str, int)) and not isinstance(v, bool):
            return str(v)
    return None


def open_tokenized(path: str | Path, batch_rows: int = DEFAULT_BATCH_ROWS) -> Tokenized:
    """Open a tokenized dataset and decide its columns from the first batch. Raises ``DataError`` (a missing file,
    no ``input_ids``, an unreadable file) with the path and the reason."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{path}: no such file or folder")
    try:
        batches = _table_batches(p, batch_rows)
        first = next(batches, None)
    except DataError:
        raise
    except Exception as exc:  # pyarrow's own errors: a truncated or foreign file
        raise DataError(f"{path}: cannot read it as a tokenized dataset ({type(exc).__name__}: {exc})") from exc
    if first is None:
        raise DataError(f"{path}: holds no rows")
    return Tokenized(str(path), decide_columns(_names(first)), batches, first)


def rows_from_batch(batch: Mapping[str, Any], start: int = 0) -> tuple[Columns, list[TokenRow]]:
    """A collated batch (tensors or arrays of shape (batch, length)) as rows: padding stripped by attention_mask,
    padding-free rows split where position_ids restart. ``start``: the index of the batch's first row."""
    plain = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)) for k, v in batch.items()
             if k in TOKEN_COLUMNS and v is not None}
    cols = decide_columns(plain)
    ids = plain["input_ids"]
    ids = ids.reshape(1, -1) if ids.ndim == 1 else ids
    rows: list[TokenRow] = []
    for b in range(ids.shape[0]):
        values = {k: (v[b] if v.ndim > 1 else v) for k, v in plain.items() if k != "seq_lengths"}
        rows += build_rows(start + b, values, cols)
    return cols, rows
