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
grow with the number of records. Existing files are never overwritten unless ``force=True``. The export is all or
nothing: files are written into a hidden staging folder inside ``out_dir`` and committed at the end (old files
moved aside, new ones renamed in, ``report.json`` last); a failure at any point (a full disk, a read-only folder,
SIGTERM) removes the staging folder and leaves ``out_dir`` as it was, with an ``ExportError`` saying why. A run
killed outright leaves its staging folder behind; the next export into the folder removes it.
"""

from __future__ import annotations

import errno
import json
import math
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterable

from inspector.checks.catalog import Thresholds
from inspector.checks.context import CheckContext
from inspector.checks.report import Report, report_settings
from inspector.checks.run import DEFAULT_CHUNK_SIZE, Outcome, iter_outcomes
from inspector.conversations import Conversation, Rejected
from inspector.errors import InspectorError
from inspector.labels.engine import LabelOptions
from inspector.template.tokenizer import ChatSetup

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
    """One line of strict JSON. Text that UTF-8 cannot hold (a lone surrogate in a rejected record) is written as
    JSON escapes ("\\ud800"), as it arrived; NaN and infinities (a rejected ``loss_weight: NaN``) as the strings
    "NaN", "Infinity"; a value JSON cannot hold at all becomes its description."""
    try:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)
        except ValueError as exc:
            if "Out of range float" not in str(exc):
                raise
            value = _finite(value)
            text = json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)
    except (ValueError, RecursionError) as exc:  # a number past the int limit, nesting past the stack
        return json.dumps({"unwritable": f"{type(exc).__name__}: {exc}"})
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(value, ensure_ascii=True, default=str)
    return text


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinite floats as strings. Example: {"w": float("nan")} -> {"w": "NaN"}."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


STAGING_PREFIX = ".sft-inspector-export."  # + pid + random + ".partial": one hidden folder per run, inside --out


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def clean_stale_partials(folder: Path) -> list[str]:
    """Remove what killed runs left in ``folder`` (their process is gone): staging folders, and the hidden
    ``.accepted.jsonl.<pid>.<hex>.partial`` files of older versions. Returns the names removed."""
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.endswith(".partial"):
            continue
        parts = name[len(STAGING_PREFIX):].split(".") if name.startswith(STAGING_PREFIX) else name.split(".")[-3:]
        pid = next((int(x) for x in parts if x.isdigit()), None)
        if pid is None or pid == os.getpid() or _is_alive(pid):
            continue
        if entry.is_dir() and not entry.is_symlink():
            if any(x.name.startswith("old-") for x in entry.iterdir()):
                continue  # a commit that could not be undone left the previous export here: never delete it
            shutil.rmtree(entry, ignore_errors=True)
        else:
            try:
                entry.unlink()
            except OSError:
                continue
        removed.append(name)
    return removed


def _os_error(exc: OSError, folder: Path, doing: str) -> ExportError:
    """An OSError while writing as a clear ExportError: nothing of the new export is left in ``folder``."""
    reason = exc.strerror or f"{type(exc).__name__}: {exc}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = f"No space left on the device ({reason})"
    else:
        what = f"Cannot write in {folder} ({reason})"
    return ExportError(f"{what} while {doing}: the export was not written (partial files removed), {folder} is "
                       "as it was")


class ExportWriter:
    """Writes outcomes into a hidden staging folder inside ``out_dir`` as they come; ``finish(report)`` commits.
    Use as a context manager: leaving it without ``finish`` (an error, Ctrl-C, SIGTERM) removes the staging folder.

    The commit is all or nothing: the old files are moved aside into the staging folder, the new ones are renamed
    into place (``report.json`` last), and only then is the staging folder removed; if a rename fails, everything
    is moved back. A run killed outright (SIGKILL) leaves its staging folder, which the next export into the same
    folder removes. Readers can rely on ``report.json``: it is written last and lists the files it belongs to.

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
        clean_stale_partials(self.dir)
        existing = [p.name for p in [*self.targets.values(), *self.stale] if p.exists() or p.is_symlink()]
        if existing and not force:
            raise ExportError(f"{self.dir} already holds {', '.join(existing)}: pass --force (force=True) to "
                              "overwrite, or choose another --out folder")
        for p in [*self.targets.values(), *self.stale]:
            if p.is_symlink():
                raise ExportError(f"{p} is a symbolic link: refusing to write through it")
            if p.exists() and not p.is_file():
                raise ExportError(f"{p} is a folder (or another non-file), not a file: remove it or choose another "
                                  "--out folder")
        self.closed = False
        self.keep_staging = False  # set when a failed commit could not put the old files back
        self.tmp: dict[str, Path] = {}
        self.accepted_records = self.accepted_samples = self.rejected_records = 0
        self._rows: list[dict[str, Any]] = []
        self._parquet = None
        self._accepted_fh = self._rejected_fh = None
        self.staging = self.dir / f"{STAGING_PREFIX}{os.getpid()}.{secrets.token_hex(4)}.partial"
        try:
            self.staging.mkdir()
            self._rejected_fh = self._open_tmp("rejected")
            if fmt == "jsonl":
                self._accepted_fh = self._open_tmp("accepted")
            else:
                self.tmp["accepted"] = self.staging / self.names["accepted"]
        except OSError as exc:
            self.abort()
            raise _os_error(exc, self.dir, "preparing the export") from None

    def _open_tmp(self, key: str):
        path = self.staging / self.names[key]
        self.tmp[key] = path
        return open(path, "x", encoding="utf-8")

    def write(self, outcome: Outcome) -> None:
        """Write one record's outcome: its samples' rows to accepted, or one row to rejected."""
        try:
            self._write(outcome)
        except OSError as exc:
            self.abort()
            raise _os_error(exc, self.dir, "writing the export") from None

    def _write(self, outcome: Outcome) -> None:
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
        """Write report.json, close every file and commit them (see the class). Returns the export summary."""
        try:
            if self.fmt == "parquet":
                self._flush_parquet()  # also creates an empty file with the schema when nothing was accepted
                self._parquet.close()
                self._parquet = None
            else:
                _close_synced(self._accepted_fh)
            _close_synced(self._rejected_fh)
            report.extra["export"] = self.summary()
            report.extra["export"]["files"] = {self.names[k]: self.tmp[k].stat().st_size
                                               for k in ("accepted", "rejected")}
            data = report.to_dict()
            report_fh = self._open_tmp("report")
            report_fh.write(json.dumps(data, ensure_ascii=True, indent=2, default=str) + "\n")
            _close_synced(report_fh)
            self._commit()
        except OSError as exc:
            self.abort()
            raise _os_error(exc, self.dir, "writing the export") from None
        self.closed = True
        return data["export"]

    def _commit(self) -> None:
        """Old files aside, new files in (report.json last), staging removed; undone on any failure."""
        moved_aside: list[tuple[Path, Path]] = []
        placed: list[Path] = []
        try:
            for target in [self.targets["report"], self.targets["accepted"], self.targets["rejected"], *self.stale]:
                if target.exists():
                    aside = self.staging / f"old-{target.name}"
                    os.replace(target, aside)
                    moved_aside.append((aside, target))
            for key in ("accepted", "rejected", "report"):
                os.replace(self.tmp[key], self.targets[key])
                placed.append(self.targets[key])
        except OSError as exc:
            for target in placed:
                try:
                    target.unlink()
                except OSError:
                    pass
            stuck = []
            for aside, target in moved_aside:
                try:
                    os.replace(aside, target)
                except OSError:
                    stuck.append(target.name)
            if stuck:  # the file system refuses even that: keep the old files where they are and say so
                self.keep_staging = True
                raise ExportError(f"Cannot write in {self.dir} ({exc.strerror or exc}) while committing the export, "
                                  f"and the previous {', '.join(stuck)} could not be put back: they are in "
                                  f"{self.staging}") from None
            raise
        self.tmp = {}
        shutil.rmtree(self.staging, ignore_errors=True)
        _fsync_dir(self.dir)

    def abort(self) -> None:
        """Close and delete everything of this run (nothing final is touched). Never raises: it runs on the way
        out of another error (a full disk fails again when a file is closed)."""
        for fh in (self._accepted_fh, self._rejected_fh):
            if fh is not None and not fh.closed:
                try:
                    fh.close()
                except Exception:
                    pass
        if self._parquet is not None:
            try:
                self._parquet.close()
            except Exception:
                pass
            self._parquet = None
        if not self.keep_staging:
            shutil.rmtree(self.staging, ignore_errors=True)
        self.tmp = {}
        self.closed = True

    def __enter__(self) -> "ExportWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self.closed:
            self.abort()
        return False


def _close_synced(fh: Any) -> None:
    """Flush, fsync and close: a full disk shows up here, before anything is renamed into place."""
    fh.flush()
    os.fsync(fh.fileno())
    fh.close()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _prepare_dir(out_dir: str | os.PathLike) -> Path:
    path = Path(out_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise ExportError(f"--out {out_dir} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"Cannot create the output folder {out_dir}: {exc.strerror or exc}") from None
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
    from inspector.data.loaders import iter_records

    ctx = CheckContext(setup, options, thresholds, skip)
    items = iter_records(data, fmt=data_format) if isinstance(data, (str, os.PathLike)) else data
    report = Report(settings=report_settings(setup, options, thresholds), skipped=sorted(ctx.skip))
    return export_outcomes(iter_outcomes(items, ctx, chunk_size=chunk_size, keep_rows=True), out_dir, fmt=fmt,
                           force=force, report=report)

