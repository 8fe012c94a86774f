"""Export validated samples for a trainer: what passed the checks, what did not and why, and the report.

``export_data(path, setup, out_dir)`` writes three files into ``out_dir`` and nowhere else:

- ``accepted.jsonl`` (or ``accepted.parquet``): one row per sample with ``id``, ``input_ids``, ``attention_mask``,
  ``labels`` (IGNORE_INDEX where the loss ignores a token) and ``assistant_masks`` (1 where labels != IGNORE_INDEX,
  the column TRL's assistant-only training reads). ``datasets.load_dataset("json", data_files=...)`` loads it.
- ``rejected.jsonl``: one row per rejected input record with its ``reasons``: loader rejections (with the raw
  record) and conversations with an error-level finding (with the normalized conversation, loadable again).
- ``report.json``: the same report as ``python -m inspector check --json``, plus an ``export`` section.

The rule (``ACCEPT_RULE``): every input record lands in exactly one of the two files. A record is accepted when it
became a conversation, produced at least one sample and has no error-level finding; for ``split-turns`` the record
is accepted or rejected as a whole (all its samples, or none), after leaving out the samples of answers the record
marks not to train (``loss_weight: 0``), which train nothing by design.

Example: 3 records, one with ``loss_weight: 0`` on its only answer and one invalid JSON line -> accepted.jsonl holds
1 row, rejected.jsonl 2 rows ("no-trainable-tokens: 0 of 23 tokens are trained ...", "line 3: invalid JSON ...").

Streaming: records are processed in chunks (``checks.iter_outcomes``) and written as they come, so memory does not
grow with the number of records. Existing files are never overwritten unless ``force=True``; files are written
under temporary names in ``out_dir`` and renamed at the end, so a failed run leaves no half-written export.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, Iterable

from .checks import DEFAULT_CHUNK_SIZE, CheckContext, Outcome, Report, Thresholds, iter_outcomes, report_settings
from .conversations import Conversation, Rejected
from .errors import InspectorError
from .labels import LabelOptions
from .tokenizer import ChatSetup

EXPORT_FORMATS = ("jsonl", "parquet")
REJECTED_FILE = "rejected.jsonl"
REPORT_FILE = "report.json"
ACCEPT_RULE = ("a record is accepted when it became a conversation, produced at least one sample and has no "
               "error-level finding; split-turns records are accepted or rejected as a whole (samples of answers "
               "marked not to train are left out)")
_PARQUET_FLUSH_ROWS = 512


class ExportError(InspectorError):
    """The export cannot be written (files exist without force, the folder is a file, a path leaves the folder)."""


def accepted_file(fmt: str) -> str:
    """Example: accepted_file("parquet") -> "accepted.parquet"."""
    return f"accepted.{fmt}"


def accepted_schema():
    """The Arrow schema of accepted.parquet: id, input_ids, attention_mask, labels, assistant_masks."""
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("input_ids", pa.list_(pa.int32())),
                      ("attention_mask", pa.list_(pa.int8())), ("labels", pa.list_(pa.int32())),
                      ("assistant_masks", pa.list_(pa.int8()))])


def conversation_to_dict(conv: Conversation) -> dict[str, Any]:
    """A conversation as a ``messages`` record the loaders read back (training flags kept).

    Example: Conversation("a", [Message("user", "Hi"), Message("assistant", "Yo", loss_weight=0.0)]) ->
    {"id": "a", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo",
    "loss_weight": 0.0}]}
    """
    messages = []
    for m in conv.messages:
        d = m.to_template_dict()
        if m.loss_weight is not None:
            d["loss_weight"] = m.loss_weight
        elif m.trainable is not None:
            d["train"] = m.trainable
        messages.append(d)
    out: dict[str, Any] = {"id": conv.id, "messages": messages}
    if conv.tools:
        out["tools"] = conv.tools
    return out


def rejected_row(outcome: Outcome) -> dict[str, Any]:
    """The rejected.jsonl row of a rejected outcome: id, source, stage ("load" or "checks"), reasons, and the raw
    record (loader) or the normalized conversation (checks)."""
    if outcome.rejected is not None:
        row = outcome.rejected.to_dict()
        row["stage"] = "load"
        return row
    errors = [f.to_dict() for f in outcome.findings if f.severity == "error"]
    row = {"id": outcome.record_id, "source": outcome.source, "stage": "checks", "reasons": outcome.reasons(),
           "findings": errors}
    if outcome.conversation is not None:
        row["conversation"] = conversation_to_dict(outcome.conversation)
    return row


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


class ExportWriter:
    """Writes outcomes into ``out_dir`` as they come. Use as a context manager; ``finish(report)`` commits.

    >>> with ExportWriter("out", "jsonl") as w:         # doctest: +SKIP
    ...     for oc in outcomes: w.write(oc); report.add(oc)
    ...     w.finish(report)
    """

    def __init__(self, out_dir: str | os.PathLike, fmt: str = "jsonl", *, force: bool = False):
        if fmt not in EXPORT_FORMATS:
            raise ExportError(f"Unknown export format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}")
        self.fmt = fmt
        self.dir = _prepare_dir(out_dir)
        self.names = {"accepted": accepted_file(fmt), "rejected": REJECTED_FILE, "report": REPORT_FILE}
        self.targets = {k: _inside(self.dir, name) for k, name in self.names.items()}
        # an accepted file of the other format from an earlier run would leave two "accepted" sets side by side
        self.stale = [_inside(self.dir, accepted_file(f)) for f in EXPORT_FORMATS if f != fmt]
        existing = [p.name for p in [*self.targets.values(), *self.stale] if p.exists() or p.is_symlink()]
        if existing and not force:
            raise ExportError(f"{self.dir} already holds {', '.join(existing)}: pass --force (force=True) to "
                              "overwrite, or choose another --out folder")
        for p in [*self.targets.values(), *self.stale]:
            if p.is_symlink():
                raise ExportError(f"{p} is a symbolic link: refusing to write through it")
        self.tmp: dict[str, Path] = {}
        self.accepted_records = self.accepted_samples = self.rejected_records = 0
        self._rows: list[dict[str, Any]] = []
        self._parquet = None
        self._accepted_fh = None
        self._rejected_fh = self._open_tmp("rejected")
        if fmt == "jsonl":
            self._accepted_fh = self._open_tmp("accepted")
        else:
            self.tmp["accepted"] = self._tmp_path("accepted")
        self.closed = False

    def _tmp_path(self, key: str) -> Path:
        """A new hidden file next to the target (created here, so the normal umask applies)."""
        for _ in range(100):
            path = self.dir / f".{self.names[key]}.{os.getpid()}.{secrets.token_hex(4)}.partial"
            try:
                with open(path, "x", encoding="utf-8"):
                    return path
            except FileExistsError:
                continue
        raise ExportError(f"Cannot create a temporary file in {self.dir}")

    def _open_tmp(self, key: str):
        path = self._tmp_path(key)
        self.tmp[key] = path
        return open(path, "w", encoding="utf-8")

    def write(self, outcome: Outcome) -> None:
        """Write one record's outcome: its samples' rows to accepted, or one row to rejected."""
        if outcome.accepted:
            if outcome.rows is None:
                raise ValueError("accepted outcomes need their rows: evaluate(..., keep_rows=True)")
            self.accepted_records += 1
            self.accepted_samples += len(outcome.rows)
            if self._accepted_fh is not None:
                for row in outcome.rows:
                    self._accepted_fh.write(_dumps(row) + "\n")
            else:
                self._rows.extend(outcome.rows)
                if len(self._rows) >= _PARQUET_FLUSH_ROWS:
                    self._flush_parquet()
        else:
            self.rejected_records += 1
            self._rejected_fh.write(_dumps(rejected_row(outcome)) + "\n")

    def _flush_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = accepted_schema()
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(str(self.tmp["accepted"]), schema)
        if self._rows:
            self._parquet.write_table(pa.Table.from_pylist(self._rows, schema=schema))
            self._rows = []

    def summary(self) -> dict[str, Any]:
        return {"format": self.fmt, "accepted_file": self.names["accepted"], "rejected_file": REJECTED_FILE,
                "accepted_records": self.accepted_records, "accepted_samples": self.accepted_samples,
                "rejected_records": self.rejected_records, "rule": ACCEPT_RULE}

    def finish(self, report: Report) -> dict[str, Any]:
        """Write report.json, close every file and move them to their final names. Returns the export summary."""
        if self.fmt == "parquet":
            self._flush_parquet()  # also creates an empty file with the schema when nothing was accepted
            self._parquet.close()
            self._parquet = None
        else:
            self._accepted_fh.close()
        self._rejected_fh.close()
        report.extra["export"] = self.summary()
        data = report.to_dict()
        report_tmp = self._open_tmp("report")
        with report_tmp:
            report_tmp.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
        for key, tmp in self.tmp.items():
            os.replace(tmp, self.targets[key])
        self.tmp = {}
        for p in self.stale:
            if p.exists():
                p.unlink()
        self.closed = True
        return data["export"]

    def abort(self) -> None:
        """Close and delete the temporary files (nothing final is touched)."""
        for fh in (self._accepted_fh, self._rejected_fh):
            if fh is not None and not fh.closed:
                fh.close()
        if self._parquet is not None:
            try:
                self._parquet.close()
            except Exception:
                pass
            self._parquet = None
        for tmp in self.tmp.values():
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
        self.tmp = {}
        self.closed = True

    def __enter__(self) -> "ExportWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self.closed:
            self.abort()
        return False


def _prepare_dir(out_dir: str | os.PathLike) -> Path:
    path = Path(out_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise ExportError(f"--out {out_dir} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"Cannot create the output folder {out_dir}: {exc}") from exc
    return path.resolve()


def _inside(folder: Path, name: str) -> Path:
    """``folder / name``, refusing anything that would resolve outside ``folder``."""
    target = folder / name
    if target.resolve().parent != folder and not target.is_symlink():
        raise ExportError(f"{target} resolves outside {folder}")
    return target


def export_outcomes(outcomes: Iterable[Outcome], out_dir: str | os.PathLike, *, fmt: str = "jsonl",
                    force: bool = False, report: Report | None = None) -> Report:
    """Write a stream of outcomes (built with ``keep_rows=True``) and their report. Returns the report."""
    report = report if report is not None else Report()
    with ExportWriter(out_dir, fmt, force=force) as writer:
        for oc in outcomes:
            writer.write(oc)
            report.add(oc)
        writer.finish(report)
    return report


def export_data(data: str | os.PathLike | Iterable[Conversation | Rejected], setup: ChatSetup,
                out_dir: str | os.PathLike, options: LabelOptions = LabelOptions(), *, fmt: str = "jsonl",
                force: bool = False, data_format: str | None = None, thresholds: Thresholds = Thresholds(),
                skip: Iterable[str] = (), chunk_size: int = DEFAULT_CHUNK_SIZE) -> Report:
    """Check and export a data file (streamed with ``loaders.iter_records``) or loaded items in one call.

    >>> report = export_data("inspector/demo/demo.jsonl", load_setup(), "out/demo")   # doctest: +SKIP
    >>> report.accepted_records + report.rejected_records == report.records           # doctest: +SKIP
    True
    """
    from .loaders import iter_records

    ctx = CheckContext(setup, options, thresholds, skip)
    items = iter_records(data, fmt=data_format) if isinstance(data, (str, os.PathLike)) else data
    report = Report(settings=report_settings(setup, options, thresholds), skipped=sorted(ctx.skip))
    return export_outcomes(iter_outcomes(items, ctx, chunk_size=chunk_size, keep_rows=True), out_dir, fmt=fmt,
                           force=force, report=report)

