"""Write a packed dataset: ``packed.jsonl`` (one row per packed sequence) and ``report.json``, safely.

Each ``packed.jsonl`` row is ``PackedSequence.to_record``: ``input_ids``, ``labels`` (as packed: the collator's own
masking is not applied), ``position_ids`` (restarting at every ``seq_lengths`` boundary), ``seq_lengths``,
``sample_ids`` (the samples in the row, in order) and ``sample_lengths`` (their tokens there).
``datasets.load_dataset("json", data_files="DIR/packed.jsonl")`` loads it, and TRL's collator reads ``seq_lengths``.

The rules are the export's (``export``): nothing outside ``out_dir`` is touched, existing files are kept unless
``force``, symbolic links are refused, and both files are written under temporary names and renamed at the end, so a
failed run leaves no half-written output.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, Iterable

from inspector.data.export import REPORT_FILE, ExportError, _inside, _os_error, _prepare_dir, clean_stale_partials

PACKED_FILE = "packed.jsonl"


def write_packed(out_dir: str | os.PathLike, records: Iterable[dict[str, Any]], report: dict[str, Any], *,
                 force: bool = False) -> dict[str, Any]:
    """Write ``records`` to ``out_dir/packed.jsonl`` and ``report`` to ``out_dir/report.json``.

    Returns {"packed_file": path, "report_file": path, "sequences": rows written}.
    """
    folder = _prepare_dir(out_dir)
    clean_stale_partials(folder)  # what a killed run left
    targets = {name: _inside(folder, name) for name in (PACKED_FILE, REPORT_FILE)}
    existing = [p.name for p in targets.values() if p.exists() or p.is_symlink()]
    if existing and not force:
        raise ExportError(f"{folder} already holds {', '.join(existing)}: pass --force (force=True) to overwrite, or "
                          "choose another --out folder")
    for p in targets.values():
        if p.is_symlink():
            raise ExportError(f"{p} is a symbolic link: refusing to write through it")
    tmp: dict[str, Path] = {}
    try:
        for name in targets:
            tmp[name] = folder / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.partial"
        count = 0
        with open(tmp[PACKED_FILE], "x", encoding="utf-8") as fh:
            for row in records:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        with open(tmp[REPORT_FILE], "x", encoding="utf-8") as fh:
            fh.write(json.dumps(report, ensure_ascii=False, indent=2, default=str) + "\n")
        for name, path in tmp.items():
            os.replace(path, targets[name])
        tmp = {}
    except OSError as exc:  # a full disk, a read-only folder: a clear error, never a traceback
        raise _os_error(exc, folder, "writing the packed dataset") from None
    finally:
        for path in tmp.values():
            try:
                path.unlink()
            except OSError:
                pass
    return {"packed_file": str(targets[PACKED_FILE]), "report_file": str(targets[REPORT_FILE]), "sequences": count}
