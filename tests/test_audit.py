"""The audit on our own export and on mutations of it: every mutation is named (flip, shift, drop the closing, train a
user turn), the clean export passes, and the readers take every shape (JSONL, Parquet, Arrow, save_to_disk, packed
rows, mask columns). Tiny tokenizer trained in-process; no TRL needed (tests/test_audit_trl.py runs TRL itself)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import CHATML
from inspector.cli.main import main
from inspector.constants import IGNORE_INDEX

CONVS = [
    {"id": "a", "messages": [{"role": "user", "content": "Hello! How can I help"},
                             {"role": "assistant", "content": "The quick brown fox."},
                             {"role": "user", "content": "What describes software?"},
                             {"role": "assistant", "content": "Text: the lazy dog."}]},
    {"id": "b", "messages": [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Probe question about apples?"},
                             {"role": "assistant", "content": "I have chicken and rice."}]},
    {"id": "c", "messages": [{"role": "user", "content": "How can I restore my Unity?"},
                             {"role": "assistant", "content": "Answer the question."}]},
]


@pytest.fixture(scope="module")
def tok_dir(tiny_tokenizer, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tok")
    tiny_tokenizer.save_pretrained(str(path))
    return str(path)


@pytest.fixture(scope="module")
def exported(tok_dir, tmp_path_factory) -> tuple[Path, Path]:
    """Our own export of CONVS: (raw data, accepted.jsonl)."""
    tmp = tmp_path_factory.mktemp("export")
    raw = tmp / "raw.jsonl"
    raw.write_text("".join(json.dumps(c) + "\n" for c in CONVS), encoding="utf-8")
    assert main(["export", str(raw), "--tokenizer", tok_dir, "--out", str(tmp / "out")]) == 0
    return raw, tmp / "out" / "accepted.jsonl"


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_rows(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def audit_json(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["audit", *argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_our_export_passes_by_reference_and_by_recovery(exported, tok_dir, capsys):
    raw, accepted = exported
    code, report = audit_json(capsys, str(accepted), "--tokenizer", tok_dir, "--reference", str(raw))
    assert code == 0
    assert report["tied_by"] == {"--reference by id": 3} and report["compared_by"] == {"rendered": 3}
    assert report["totals"]["differing_tokens"] == 0 and report["patterns"] == []
    assert report["columns"]["labels_from"] == "labels"
    code, report = audit_json(capsys, str(accepted), "--tokenizer", tok_dir)
    assert code == 0 and report["tied_by"] == {"recovered from tokens": 3}
    assert report["totals"]["differing_tokens"] == 0


def _tok(tiny_tokenizer, text):
    return tiny_tokenizer.convert_tokens_to_ids(text)


def _mutate(rows, fn):
    out = []
    for r in rows:
        r = dict(r, labels=list(r["labels"]))
        fn(r)
        out.append(r)
    return out


def _codes(report) -> dict[str, int]:
    return {code: v["records"] for code, v in report["codes"].items()}


def test_mutations_are_each_named(exported, tok_dir, tiny_tokenizer, tmp_path, capsys):
    raw, accepted = exported
    rows = rows_of(accepted)
    im_end = _tok(tiny_tokenizer, "<|im_end|>")
    im_start = _tok(tiny_tokenizer, "<|im_start|>")

    def flip(r):  # trainer's mask inverted
        r["labels"] = [i if l == IGNORE_INDEX else IGNORE_INDEX for i, l in zip(r["input_ids"], r["labels"])]

    def shift(r):  # the classic hand-written bug: labels = input_ids[1:]
        r["labels"] = [x if m != IGNORE_INDEX else IGNORE_INDEX
                       for x, m in zip(r["input_ids"][1:] + [IGNORE_INDEX], r["labels"])]

    def drop_closing(r):
        r["labels"] = [IGNORE_INDEX if i == im_end else l for i, l in zip(r["input_ids"], r["labels"])]

    def train_user(r):  # every token of the first user turn trained, from its <|im_start|> to its <|im_end|>
        ids = r["input_ids"]
        a = ids.index(im_start)
        b = ids.index(im_end, a)
        for k in range(a, b + 1):
            r["labels"][k] = ids[k]

    def shifted_right(r):
        ids = r["input_ids"]
        r["labels"] = [ids[k - 1] if l != IGNORE_INDEX and k > 0 else IGNORE_INDEX for k, l in enumerate(r["labels"])]

    expect = {flip: {"prompt-trained", "answer-not-trained", "closing-not-trained"},
              shift: {"labels-shifted"}, shifted_right: {"labels-shifted"},
              drop_closing: {"closing-not-trained"}, train_user: {"prompt-trained", "extra-trained-tokens"}}
    for fn, codes in expect.items():
        path = write_rows(tmp_path / f"{fn.__name__}.jsonl", _mutate(rows, fn))
        code, report = audit_json(capsys, path, "--tokenizer", tok_dir, "--reference", str(raw))
        assert code == 1, fn.__name__
        errors = {c for c, v in report["codes"].items() if v["findings"] and v["severity"] == "error"}
        assert codes <= set(report["codes"]), (fn.__name__, report["codes"])
        assert errors, fn.__name__
        assert all(report["codes"][c]["records"] == 3 for c in codes if c != "extra-trained-tokens"), fn.__name__
    # the shift names its direction and the positions' tokens
    code, report = audit_json(capsys, str(tmp_path / "shift.jsonl"), "--tokenizer", tok_dir)
    first = report["patterns"][0]
    assert first["pattern"] == "labels shifted left by one" and first["records"] == 3
    assert first["first"]["details"]["tokens"] and first["first"]["positions"]
    code, report = audit_json(capsys, str(tmp_path / "shifted_right.jsonl"), "--tokenizer", tok_dir)
    assert report["patterns"][0]["pattern"] == "labels shifted right by one"
    # drop the closing: the positions are exactly the <|im_end|> after each answer
    code, report = audit_json(capsys, str(tmp_path / "drop_closing.jsonl"), "--tokenizer", tok_dir,
                              "--reference", str(raw))
    rec = next(r for r in report["records"] if r["id"] == "a")
    f = next(f for f in rec["findings"] if f["code"] == "closing-not-trained")
    ids = rows[0]["input_ids"]
    trained_ends = [k for k, (i, l) in enumerate(zip(ids, rows[0]["labels"])) if i == im_end and l != IGNORE_INDEX]
    assert f["positions"] == trained_ends and set(f["details"]["tokens"]) == {"'<|im_end|>'"}


def test_eos_masked_through_pad_equals_eos(tiny_tokenizer, tok_dir, tmp_path, capsys):
    """A hand-written pipeline: plain text + EOS, with pad == eos masking every EOS label."""
    eos = tiny_tokenizer.eos_token_id
    ids = tiny_tokenizer.encode("The quick brown fox jumps over the lazy dog.", add_special_tokens=False) + [eos]
    row = {"input_ids": ids, "labels": ids[:-1] + [IGNORE_INDEX]}
    code, report = audit_json(capsys, write_rows(tmp_path / "eos.jsonl", [row, row]), "--tokenizer", tok_dir)
    assert code == 1 and report["codes"]["eos-never-trained"]["records"] == 2
    assert report["codes"]["not-tied"]["records"] == 2  # nothing to tie it to: token-only checks ran
    assert report["untied_reasons"]


def test_truncated_answer_and_double_bos(tiny_tokenizer, tok_dir, tmp_path, capsys):
    bos = tiny_tokenizer.bos_token_id
    ids = [bos, bos] + tiny_tokenizer.encode("Hello! How can I help", add_special_tokens=False)
    row = {"input_ids": ids, "labels": [IGNORE_INDEX] * 4 + ids[4:]}
    code, report = audit_json(capsys, write_rows(tmp_path / "t.jsonl", [row]), "--tokenizer", tok_dir,
                              "--fail-on", "warning")
    assert code == 1 and {"answer-truncated", "double-bos"} <= set(report["codes"])


def test_readers_parquet_arrow_save_to_disk_and_masks(exported, tok_dir, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw, accepted = exported
    rows = rows_of(accepted)
    masks = [{"id": r["id"], "input_ids": r["input_ids"], "assistant_masks": r["assistant_masks"]} for r in rows]
    table = pa.Table.from_pylist(masks)
    pq.write_table(table, tmp_path / "m.parquet")
    with pa.OSFile(str(tmp_path / "m.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list([{**m, "messages": c["messages"]} for m, c in zip(masks, CONVS)]).save_to_disk(
        str(tmp_path / "saved"))
    for path, tied in ((tmp_path / "m.parquet", "--reference by id"), (tmp_path / "m.arrow", "--reference by id"),
                       (tmp_path / "saved", "stored messages column")):
        code, report = audit_json(capsys, str(path), "--tokenizer", tok_dir, "--reference", str(raw))
        assert code == 0, path
        assert report["columns"]["labels_from"] == "assistant_masks" and report["tied_by"] == {tied: 3}
        assert report["totals"]["differing_tokens"] == 0
    # completion_mask alone, with padding that attention_mask marks
    width = max(len(r["input_ids"]) for r in rows) + 3
    padded = [{"id": r["id"], "input_ids": r["input_ids"] + [0] * (width - len(r["input_ids"])),
               "attention_mask": [1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])),
               "completion_mask": r["assistant_masks"] + [1] * (width - len(r["input_ids"]))} for r in rows]
    code, report = audit_json(capsys, write_rows(tmp_path / "cm.jsonl", padded), "--tokenizer", tok_dir,
                              "--reference", str(raw))
    assert code == 0 and report["columns"]["labels_from"] == "completion_mask"
    assert report["totals"]["tokens"] == sum(len(r["input_ids"]) for r in rows)  # padding dropped


def test_packed_rows_split_and_positions_checked(exported, tok_dir, tmp_path, capsys):
    raw, accepted = exported
    rows = rows_of(accepted)
    ids = sum((r["input_ids"] for r in rows), [])
    labels = sum((r["labels"] for r in rows), [])
    lengths = [len(r["input_ids"]) for r in rows]
    good = {"input_ids": ids, "labels": labels, "seq_lengths": lengths,
            "position_ids": sum((list(range(n)) for n in lengths), [])}
    code, report = audit_json(capsys, write_rows(tmp_path / "p.jsonl", [good]), "--tokenizer", tok_dir)
    assert code == 0 and report["totals"]["samples"] == 3 and report["columns"]["packing"] == "seq_lengths"
    assert report["tied_by"] == {"recovered from tokens": 3} and report["totals"]["differing_tokens"] == 0
    bad = dict(good, position_ids=list(range(len(ids))))
    code, report = audit_json(capsys, write_rows(tmp_path / "b.jsonl", [bad]), "--tokenizer", tok_dir)
    assert code == 1
    f = report["patterns"][0]
    assert f["code"] == "packed-positions-continue" and f["first"]["positions"] == [lengths[0],
                                                                                    lengths[0] + lengths[1]]
    only_positions = {"input_ids": ids, "labels": labels, "position_ids": good["position_ids"]}
    code, report = audit_json(capsys, write_rows(tmp_path / "q.jsonl", [only_positions]), "--tokenizer", tok_dir)
    assert code == 0 and report["totals"]["samples"] == 3 and report["columns"]["packing"] == "position_ids"


def test_loading_errors_exit_2(tok_dir, tmp_path, capsys):
    assert main(["audit", str(tmp_path / "missing"), "--tokenizer", tok_dir]) == 2
    path = write_rows(tmp_path / "raw.jsonl", CONVS)
    assert main(["audit", path, "--tokenizer", tok_dir]) == 2
    assert "no input_ids column" in capsys.readouterr().err


def test_text_output_names_columns_and_patterns(exported, tok_dir, capsys):
    raw, accepted = exported
    assert main(["audit", str(accepted), "--tokenizer", tok_dir, "--reference", str(raw)]) == 0
    out = capsys.readouterr().out
    assert "trained: labels != -100" in out and "No findings" in out and "PASSED" in out


# --- the Audit page -----------------------------------------------------------------------------------------------

AUDIT_PAGE = "pages/6_audit.py"


def _core_audit(setup, bug):
    """The page's audit computed by the core directly: the demo's samples, the simulated bug, no reference."""
    from inspector.audit.compare import AuditContext
    from inspector.audit.read import TokenRow
    from inspector.audit.run import audit_token_rows
    from inspector.data.loaders import load_data
    from inspector.labels.engine import LabelEngine, LabelOptions
    from inspector.template.tokenizer import DEMO_DIR

    convs = load_data(DEMO_DIR / "demo.jsonl").conversations
    from pages.common.ui import DEFAULT_MAX_LENGTH

    samples, _ = LabelEngine(setup).build(convs, LabelOptions(max_length=DEFAULT_MAX_LENGTH))  # the sidebar's
    closing = AuditContext(setup).closing_ids
    rows = []
    for i, s in enumerate(samples):
        ids, labels = s.ids_array(), s.labels_array()
        if bug == "shift labels by one":
            labels = np.where(labels != IGNORE_INDEX, np.append(ids[1:], IGNORE_INDEX), IGNORE_INDEX)
        rows.append(TokenRow(s.id, i, ids, labels != IGNORE_INDEX, labels))
    return audit_token_rows(rows, setup, keep=len(rows))


def test_audit_page_shows_what_the_core_finds(deepseek_setup):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120).run()
    at.switch_page(AUDIT_PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Audit"]
    report, audits = _core_audit(deepseek_setup, "none")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Samples"] == f"{report.samples:,}"
    assert metrics["Tokens that differ"] == f"{report.differing_tokens:,}"
    assert metrics["Errors"] == f"{report.count('error'):,}"

    at.selectbox(key="audit_bug").set_value("shift labels by one").run()
    assert not at.exception, [e.value for e in at.exception]
    report, audits = _core_audit(deepseek_setup, "shift labels by one")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Errors"] == f"{report.count('error'):,}" and report.count("error") > 0
    charts = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    bars = charts["audit_patterns"]["data"]
    assert any("labels-shifted" in y for t in bars for y in t["y"])
    errors = next(t for t in bars if t["name"] == "error")
    assert sum(errors["x"]) == sum(p.records for p in report.patterns.values() if p.severity == "error")
    # the record on screen: its token table has a row per token, the trainer's and the inspector's labels
    record = at.selectbox(key="audit_record").value
    audit = next(a for a in audits if a.row.id == record)
    at.toggle(key="audit_only_diff").set_value(False).run()
    table = next(h.value for h in at.html if "sfti-audit" in h.value)
    assert table.count('class="sfti-row"') == min(audit.row.num_tokens, 4000)
    assert table.count('data-differs="true"') == audit.differences == 0  # shifted: compared by tokens only
    assert any(f.severity == "error" for f in audit.findings)
    shifted = [a for a in audits if any(f.code == "labels-shifted" for f in a.findings)]
    assert len(shifted) == sum(bool(a.row.trained.any()) for a in audits) > 0  # every sample that trains anything

    at.selectbox(key="audit_bug").set_value("drop the closing").run()
    assert not at.exception, [e.value for e in at.exception]
    at.toggle(key="audit_only_diff").set_value(False).run()
    record = at.selectbox(key="audit_record").value
    table = next(h.value for h in at.html if "sfti-audit" in h.value)
    assert table.count('data-differs="true"') >= 1, record  # the closing, trained by the inspector only


def test_plain_text_prompt_completion_is_built_as_trl_trains_it(tiny_setup, tiny_tokenizer):
    """TRL trains a plain-text prompt/completion as tokenizer(prompt + completion) + EOS, the prompt's tokens masked,
    no chat template; the engine builds it the same way and says so. A conversational pair keeps the template."""
    from inspector.data import normalize_record
    from inspector.labels.engine import LabelEngine, LabelOptions

    tok = tiny_tokenizer
    prompt, completion = "The quick brown fox", " jumps over the lazy dog."
    conv = normalize_record({"prompt": prompt, "completion": completion})
    assert conv.plain_text
    sample = LabelEngine(tiny_setup).build_one(conv, LabelOptions())[0]
    n_prompt = len(tok(prompt)["input_ids"])
    want = tok(prompt + completion)["input_ids"] + [tok.eos_token_id]
    assert sample.input_ids == want
    assert sample.labels == [IGNORE_INDEX] * n_prompt + want[n_prompt:]
    assert any("without a chat template" in n for n in sample.notes)
    chat = normalize_record({"prompt": [{"role": "user", "content": prompt}],
                             "completion": [{"role": "assistant", "content": completion}]})
    assert not chat.plain_text
    chat_sample = LabelEngine(tiny_setup).build_one(chat, LabelOptions())[0]
    assert tok.convert_tokens_to_ids("<|im_start|>") in chat_sample.input_ids
