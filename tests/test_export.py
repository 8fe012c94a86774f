"""Export: every input record lands in exactly one of accepted/rejected, rows are trainer-ready (``datasets`` loads
them, ``DataCollatorForSeq2Seq`` pads them), files are never overwritten without force and never written outside
the folder, and records are streamed chunk by chunk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspector.checks import CheckContext, Report, iter_outcomes
from inspector.constants import IGNORE_INDEX
from inspector.conversations import Conversation, Message
from inspector.data.export import ACCEPT_RULE, ExportError, export_data, export_outcomes
from inspector.labels.engine import LabelEngine, LabelOptions
from inspector.data.loaders import load_data

RECORDS = [
    {"id": "ok-1", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"},
                                {"role": "assistant", "content": "The quick brown fox."}]},
    {"id": "zero", "messages": [{"role": "user", "content": "Hi"},
                                {"role": "assistant", "content": "Yo", "loss_weight": 0}]},
    {"id": "two", "messages": [{"role": "user", "content": "Hello! How can I help"},
                               {"role": "assistant", "content": "The quick brown fox."},
                               {"role": "user", "content": "What describes software?"},
                               {"role": "assistant", "content": "Text: the lazy dog."}]},
    {"id": "uu", "messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hi?"},
                              {"role": "assistant", "content": "Yo"}]},
    {"id": "narrator", "messages": [{"role": "narrator", "content": "Once"}]},
    {"prompt": "2+2=", "completion": "4"},
]
BAD_LINE = '{"id": "broken", "messages": ['


@pytest.fixture()
def data_file(tmp_path) -> Path:
    lines = [json.dumps(r) for r in RECORDS]
    lines.insert(3, BAD_LINE)
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def record_id(sample_id: str) -> str:
    return sample_id.split("#turn")[0]


@pytest.mark.parametrize("strategy", ["assistant-only", "split-turns"])
def test_every_record_lands_in_exactly_one_file(tiny_setup, data_file, tmp_path, strategy):
    out = tmp_path / "out"
    report = export_data(data_file, tiny_setup, out, LabelOptions(strategy=strategy))
    accepted = read_jsonl(out / "accepted.jsonl")
    rejected = read_jsonl(out / "rejected.jsonl")
    accepted_records = list(dict.fromkeys(record_id(r["id"]) for r in accepted))
    rejected_ids = [r["id"] for r in rejected]
    assert len(accepted_records) + len(rejected) == len(RECORDS) + 1 == report.records
    assert set(accepted_records).isdisjoint(rejected_ids)
    assert accepted_records == ["ok-1", "two", "uu", "data-6"]
    assert rejected_ids == ["zero", "data-3", "narrator"]
    if strategy == "split-turns":
        assert [r["id"] for r in accepted if record_id(r["id"]) == "two"] == ["two#turn0", "two#turn1"]


def test_zero_trainable_record_is_rejected_with_its_reason(tiny_setup, data_file, tmp_path):
    export_data(data_file, tiny_setup, tmp_path / "out")
    rejected = {r["id"]: r for r in read_jsonl(tmp_path / "out" / "rejected.jsonl")}
    zero = rejected["zero"]
    assert zero["stage"] == "checks"
    assert zero["reasons"] == [f"no-trainable-tokens: 0 of {_tokens(tiny_setup, RECORDS[1])} tokens are trained "
                               f"(every label is {IGNORE_INDEX}): every assistant message is marked not to train "
                               "(train=false / loss_weight 0)"]
    assert zero["findings"][0]["code"] == "no-trainable-tokens"
    # the normalized conversation is kept and loads again as it was
    again = load_data([zero["conversation"]]).conversations[0]
    assert [(m.role, m.content, m.loss_weight) for m in again.messages] == [("user", "Hi", None),
                                                                           ("assistant", "Yo", 0.0)]
    broken = rejected["data-3"]
    assert broken["stage"] == "load" and broken["record"] == BAD_LINE
    assert broken["reasons"][0].startswith("line 4: invalid JSON")
    assert rejected["narrator"]["reasons"][0].startswith("message 0 has unknown role 'narrator'")


def _tokens(setup, record) -> int:
    conv = load_data([record]).conversations[0]
    return LabelEngine(setup).build_one(conv)[0].num_tokens


def test_rows_match_the_engine_and_carry_assistant_masks(tiny_setup, data_file, tmp_path):
    export_data(data_file, tiny_setup, tmp_path / "out")
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "out" / "accepted.jsonl")}
    conv = load_data([RECORDS[2]]).conversations[0]
    sample = LabelEngine(tiny_setup).build_one(conv)[0]
    row = rows["two"]
    assert list(row) == ["id", "input_ids", "attention_mask", "labels", "assistant_masks"]
    assert row["input_ids"] == sample.input_ids and row["labels"] == sample.labels
    assert row["attention_mask"] == [1] * len(sample.input_ids)
    assert row["assistant_masks"] == [int(x != IGNORE_INDEX) for x in sample.labels]
    assert sum(row["assistant_masks"]) == sample.num_trainable > 0


def test_report_json_has_counts_and_the_rule(tiny_setup, data_file, tmp_path):
    export_data(data_file, tiny_setup, tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert report["totals"]["records"] == 7
    assert report["totals"]["accepted_records"] + report["totals"]["rejected_records"] == 7
    files = report["export"].pop("files")  # written last, report.json names the files it belongs to
    assert report["export"] == {"format": "jsonl", "accepted_file": "accepted.jsonl",
                                "rejected_file": "rejected.jsonl", "accepted_records": 4, "accepted_samples": 4,
                                "rejected_records": 3, "rule": ACCEPT_RULE}
    assert files == {name: (tmp_path / "out" / name).stat().st_size for name in ("accepted.jsonl", "rejected.jsonl")}
    assert report["checks"]["no-trainable-tokens"]["examples"] == ["zero"]
    assert report["checks"]["record-rejected"]["records"] == 2


def test_datasets_loads_the_export_and_a_collator_pads_a_batch(tiny_setup, data_file, tmp_path):
    import datasets
    import numpy as np

    export_data(data_file, tiny_setup, tmp_path / "out")
    ds = datasets.load_dataset("json", data_files=str(tmp_path / "out" / "accepted.jsonl"), split="train")
    assert ds.num_rows == 4
    assert set(ds.column_names) == {"id", "input_ids", "attention_mask", "labels", "assistant_masks"}
    batch = [{k: ds[i][k] for k in ("input_ids", "attention_mask", "labels")} for i in range(ds.num_rows)]
    tok = tiny_setup.tokenizer
    longest = max(len(b["input_ids"]) for b in batch)
    try:
        from transformers import DataCollatorForSeq2Seq

        padded = DataCollatorForSeq2Seq(tok, padding=True, return_tensors="np")(batch)
        padded = {k: np.asarray(v) for k, v in padded.items()}
    except (ImportError, RuntimeError):  # the same rule by hand: labels with IGNORE_INDEX, ids with the pad id
        padded = {
            "input_ids": np.array([b["input_ids"] + [tok.pad_token_id] * (longest - len(b["input_ids"]))
                                   for b in batch]),
            "attention_mask": np.array([b["attention_mask"] + [0] * (longest - len(b["attention_mask"]))
                                        for b in batch]),
            "labels": np.array([b["labels"] + [IGNORE_INDEX] * (longest - len(b["labels"])) for b in batch]),
        }
    for key in ("input_ids", "attention_mask", "labels"):
        assert padded[key].shape == (4, longest)
    for i, b in enumerate(batch):
        n = len(b["input_ids"])
        assert padded["input_ids"][i, :n].tolist() == b["input_ids"]
        assert padded["labels"][i, :n].tolist() == b["labels"]
        assert (padded["input_ids"][i, n:] == tok.pad_token_id).all()
        assert (padded["labels"][i, n:] == IGNORE_INDEX).all()
        assert padded["attention_mask"][i].tolist() == [1] * n + [0] * (longest - n)


def test_parquet_export_holds_the_same_rows(tiny_setup, data_file, tmp_path):
    import datasets

    export_data(data_file, tiny_setup, tmp_path / "j")
    export_data(data_file, tiny_setup, tmp_path / "p", fmt="parquet", chunk_size=2)
    rows = read_jsonl(tmp_path / "j" / "accepted.jsonl")
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "p" / "accepted.parquet"), split="train")
    assert ds.to_list() == rows
    assert read_jsonl(tmp_path / "p" / "rejected.jsonl") == read_jsonl(tmp_path / "j" / "rejected.jsonl")


def test_parquet_export_with_nothing_accepted_still_has_the_schema(tiny_setup, tmp_path):
    import pyarrow.parquet as pq

    convs = [Conversation("z", [Message("user", "Hi"), Message("assistant", "Yo", trainable=False)])]
    report = export_data(convs, tiny_setup, tmp_path / "p", fmt="parquet")
    table = pq.read_table(tmp_path / "p" / "accepted.parquet")
    assert table.num_rows == 0 and table.column_names[:2] == ["id", "input_ids"]
    assert report.rejected_records == 1


def test_refuses_to_overwrite_without_force(tiny_setup, data_file, tmp_path):
    out = tmp_path / "out"
    export_data(data_file, tiny_setup, out)
    before = (out / "accepted.jsonl").read_text(encoding="utf-8")
    with pytest.raises(ExportError, match="already holds accepted.jsonl, rejected.jsonl, report.json"):
        export_data(data_file, tiny_setup, out)
    assert (out / "accepted.jsonl").read_text(encoding="utf-8") == before
    with pytest.raises(ExportError, match="accepted.jsonl"):  # another format still sees the earlier export
        export_data(data_file, tiny_setup, out, fmt="parquet")
    export_data(data_file, tiny_setup, out, fmt="parquet", force=True)
    assert sorted(p.name for p in out.iterdir()) == ["accepted.parquet", "rejected.jsonl", "report.json"]


def test_never_writes_through_a_link_out_of_the_folder(tiny_setup, data_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("keep me", encoding="utf-8")
    (out / "rejected.jsonl").symlink_to(outside)
    with pytest.raises(ExportError, match="symbolic link"):
        export_data(data_file, tiny_setup, out, force=True)
    assert outside.read_text(encoding="utf-8") == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["rejected.jsonl"]


def test_out_must_be_a_folder(tiny_setup, data_file, tmp_path):
    f = tmp_path / "file"
    f.write_text("x", encoding="utf-8")
    with pytest.raises(ExportError, match="is a file"):
        export_data(data_file, tiny_setup, f)


def test_a_failed_export_leaves_nothing_behind(tiny_setup, tmp_path):
    ctx = CheckContext(tiny_setup)

    def outcomes():
        yield from iter_outcomes([Conversation("a", [Message("user", "Hi"), Message("assistant", "Yo")])], ctx,
                                 keep_rows=True)
        raise RuntimeError("disk full")

    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk full"):
        export_outcomes(outcomes(), out)
    assert list(out.iterdir()) == []


def test_records_are_streamed_chunk_by_chunk(tiny_setup):
    pulled = []

    def items():
        for i in range(10):
            pulled.append(i)
            yield Conversation(f"c{i}", [Message("user", "Hi"), Message("assistant", "Yo")])

    stream = iter_outcomes(items(), CheckContext(tiny_setup), chunk_size=3, keep_rows=True)
    first = next(stream)
    assert first.record_id == "c0" and pulled == [0, 1, 2]
    assert len(list(stream)) == 9 and len(pulled) == 10


def test_export_report_matches_check_report(tiny_setup, data_file, tmp_path):
    from inspector.data.loaders import iter_records

    checked = Report().add_all(iter_outcomes(iter_records(data_file), CheckContext(tiny_setup)))
    exported = export_data(data_file, tiny_setup, tmp_path / "out")
    assert checked.to_dict()["checks"] == exported.to_dict()["checks"]
    assert checked.to_dict()["totals"] == exported.to_dict()["totals"]


# --- faults: the export is all or nothing, and a failure says why ------------------------------------------------
# Each case first writes a good export with other content, then fails a second export with --force: the folder must
# hold exactly the first export afterwards (no half-committed mix, no hidden partial files).

def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: (p.read_bytes() if p.is_file() else b"<dir>") for p in sorted(folder.iterdir())}


@pytest.fixture()
def first_export(tiny_setup, tmp_path) -> tuple[Path, dict[str, bytes]]:
    out = tmp_path / "out"
    data = tmp_path / "first.jsonl"
    data.write_text(json.dumps(RECORDS[0]) + "\n", encoding="utf-8")
    export_data(data, tiny_setup, out)
    return out, _tree(out)


class _FullDisk:
    """A text file whose writes fail with ENOSPC once ``budget`` characters were written (close fails too, as a
    buffered file flushing into a full disk does)."""

    def __init__(self, real, budget: int):
        self.real, self.budget = real, budget

    def write(self, text: str) -> int:
        import errno

        self.budget -= len(text)
        if self.budget < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real.write(text)

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        self.real.close()
        if self.budget < 0:
            import errno

            raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("budget", [0, 200, 5000])
def test_full_disk_while_writing_jsonl(tiny_setup, data_file, first_export, monkeypatch, budget):
    import inspector.data.export as export_mod

    out, before = first_export
    real_open = open
    monkeypatch.setattr(export_mod, "open", lambda *a, **k: _FullDisk(real_open(*a, **k), budget), raising=False)
    with pytest.raises(ExportError) as info:
        export_data(data_file, tiny_setup, out, force=True)
    assert str(info.value).startswith("No space left on the device")
    assert "the export was not written (partial files removed)" in str(info.value)
    assert _tree(out) == before


def test_full_disk_while_writing_parquet(tiny_setup, data_file, first_export, monkeypatch):
    import errno

    import pyarrow.parquet as pq

    out, before = first_export

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full)
    with pytest.raises(ExportError, match="No space left on the device"):
        export_data(data_file, tiny_setup, out, fmt="parquet", force=True)
    assert _tree(out) == before


def test_full_disk_when_the_files_are_synced(tiny_setup, data_file, first_export, monkeypatch):
    import errno
    import os

    out, before = first_export

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(ExportError, match="No space left on the device"):
        export_data(data_file, tiny_setup, out, force=True)
    monkeypatch.undo()
    assert _tree(out) == before


def test_a_failed_rename_while_committing_puts_the_old_export_back(tiny_setup, data_file, first_export, monkeypatch):
    import errno
    import os

    out, before = first_export
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if Path(src).name == "rejected.jsonl" and Path(src).parent.name.endswith(".partial"):
            raise OSError(errno.EIO, "Input/output error")  # the second new file fails to move in
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(ExportError, match=r"Cannot write in .*Input/output error"):
        export_data(data_file, tiny_setup, out, force=True)
    monkeypatch.undo()
    assert _tree(out) == before
    assert ("accepted.jsonl", "accepted.jsonl") in calls  # it got as far as putting the first new file in place


def test_a_read_only_folder_is_a_clear_error(tiny_setup, data_file, first_export, monkeypatch):
    import errno
    import os

    out, before = first_export
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if Path(path).name.startswith(".sft-inspector-export."):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    with pytest.raises(ExportError, match=r"Cannot write in .*out \(Read-only file system\) while preparing"):
        export_data(data_file, tiny_setup, out, force=True)
    monkeypatch.undo()
    assert _tree(out) == before
    if os.geteuid() != 0:  # a real read-only folder (root may write anyway)
        out.chmod(0o555)
        try:
            with pytest.raises(ExportError, match="Cannot write in"):
                export_data(data_file, tiny_setup, out, force=True)
        finally:
            out.chmod(0o755)
        assert _tree(out) == before


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="Linux /proc")
def test_out_in_proc_is_a_clear_error(tiny_setup, data_file):
    with pytest.raises(ExportError, match="Cannot write in /proc/"):
        export_data(data_file, tiny_setup, "/proc/self", force=True)


def test_report_json_being_a_folder_is_refused_before_anything_is_written(tiny_setup, data_file, first_export):
    out, _ = first_export
    (out / "report.json").unlink()
    (out / "report.json").mkdir()
    before = _tree(out)
    with pytest.raises(ExportError, match=r"report\.json is a folder .*not a file"):
        export_data(data_file, tiny_setup, out, force=True)
    assert _tree(out) == before


def test_partials_of_a_killed_run_are_removed_by_the_next_run(tiny_setup, data_file, tmp_path):
    import subprocess
    import sys

    from inspector.data.export import STAGING_PREFIX

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # that process has ended: what it left is stale
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f"{STAGING_PREFIX}{pid}.0123abcd.partial"
    stale.mkdir()
    (stale / "accepted.jsonl").write_text("half\n", encoding="utf-8")
    old_style = out / f".accepted.jsonl.{pid}.0123abcd.partial"  # what older versions left
    old_style.write_text("half\n", encoding="utf-8")
    alive = out / f"{STAGING_PREFIX}{os_getpid()}.feedbeef.partial"  # a run still going (this process): left alone
    alive.mkdir()
    export_data(data_file, tiny_setup, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(["accepted.jsonl", "rejected.jsonl", "report.json",
                                                            alive.name])


def os_getpid() -> int:
    import os

    return os.getpid()


def test_rejected_jsonl_is_strict_json_with_lone_surrogates_and_nan(tiny_setup, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "bad\\ud800", "messages": [{"role": "user", "content": "Hi"}]}\n'
                    '{"messages": [{"role": "user", "content": "Hi \\udc00"}, '
                    '{"role": "assistant", "content": "Yo"}]}\n'
                    '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo", '
                    '"loss_weight": NaN}]}\n' + json.dumps(RECORDS[0]) + "\n", encoding="utf-8")
    report = export_data(data, tiny_setup, tmp_path / "out")
    assert (report.accepted_records, report.rejected_records) == (1, 3)
    lines = (tmp_path / "out" / "rejected.jsonl").read_bytes().decode("utf-8").splitlines()

    def strict(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    rows = [json.loads(line, parse_constant=strict) for line in lines]
    assert [r["id"] for r in rows] == ["bad\\ud800", "d-1", "d-2"]
    assert rows[0]["record"]["id"] == "bad\ud800"  # written as the escape it arrived as
    assert rows[2]["record"]["messages"][1]["loss_weight"] == "NaN"
    assert "loss_weight is nan" in rows[2]["reasons"][0]


def test_when_even_the_undo_fails_the_old_files_are_kept_and_named(tiny_setup, data_file, first_export, monkeypatch):
    import errno
    import os

    out, before = first_export
    real_replace = os.replace

    def replace(src, dst):
        if Path(src).name in ("rejected.jsonl", "old-rejected.jsonl") and Path(src).parent.name.endswith(".partial"):
            raise OSError(errno.EIO, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(ExportError, match=r"the previous rejected\.jsonl could not be put back: they are in .*partial"):
        export_data(data_file, tiny_setup, out, force=True)
    monkeypatch.undo()
    staging = [p for p in out.iterdir() if p.name.endswith(".partial")]
    assert len(staging) == 1 and (staging[0] / "old-rejected.jsonl").read_bytes() == before["rejected.jsonl"]
    import subprocess
    import sys

    from inspector.data.export import STAGING_PREFIX, clean_stale_partials

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    kept = staging[0].rename(out / f"{STAGING_PREFIX}{dead}.0123abcd.partial")  # as if its run had been killed
    assert clean_stale_partials(out) == [] and kept.exists()  # never deleted by a later run


def test_chunks_are_bounded_by_text_size_too():
    """A run of very long records is taken a few at a time (each chunk is built and tokenized at once); text that
    is not ASCII counts four bytes a character, an upper bound of its UTF-8 size."""
    from inspector.checks import DEFAULT_CHUNK_TEXT, chunks, text_size

    def conv(cid, text):
        return Conversation(cid, [Message("user", text), Message("assistant", "Yo")])

    long, short, emoji = conv("l", "x" * 3000), conv("s", "Hi"), conv("e", "😀" * 1000)
    assert (text_size(long), text_size(short), text_size(emoji)) == (3002, 4, 4002)
    sizes = [[c.id for c in chunk] for chunk in chunks([long, short, long, long, short, emoji], 10, 5000)]
    assert sizes == [["l", "s"], ["l"], ["l", "s"], ["e"]]
    assert [len(c) for c in chunks([short] * 7, 3, 5000)] == [3, 3, 1]  # by count, as before
    assert DEFAULT_CHUNK_TEXT == 4_000_000


def test_a_full_disk_while_writing_a_packed_dataset_is_a_clear_error(tmp_path, monkeypatch):
    import errno

    import inspector.data.packed_export as packed_mod

    real_open = open
    monkeypatch.setattr(packed_mod, "open", lambda *a, **k: _FullDisk(real_open(*a, **k), 10), raising=False)
    out = tmp_path / "packed"
    rows = [{"input_ids": list(range(50)), "labels": list(range(50))}] * 3
    with pytest.raises(ExportError, match="No space left on the device .* while writing the packed dataset"):
        packed_mod.write_packed(out, rows, {"totals": {}})
    assert list(out.iterdir()) == []
    assert errno.ENOSPC  # the error _FullDisk raises
