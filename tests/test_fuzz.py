"""Malformed data, fuzzed with hypothesis: the loaders and every label strategy take whatever a stranger's file
holds without an exception escaping, and every record is accepted or rejected with a reason.

Invariants checked on every example:
- ``normalize_record`` returns a Conversation (roles in ROLES, text content) or raises RecordError with a reason;
- ``iter_records`` on a written file yields exactly one item per non-blank line (JSONL) or per list entry (JSON),
  each a Conversation or a Rejected with non-empty reasons; only an unreadable file raises, and then DataError;
- ``LabelEngine.build`` under every strategy gives, for every conversation, samples or a SampleError with a reason;
  in a sample ``len(labels) == len(input_ids)``, each label is IGNORE_INDEX or the id at that position, offsets lie
  within the text, and every per-token list has one entry per token.

Examples are bounded (``max_examples``) so the file runs in well under a minute; ``derandomize`` keeps CI runs
reproducible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from inspector.constants import IGNORE_INDEX, ROLES, SEGMENTS
from inspector.conversations import Conversation, LoadResult, Rejected
from inspector.errors import DataError, RecordError
from inspector.labels.engine import STRATEGIES, LabelEngine, LabelOptions
from inspector.data.formats import normalize_record
from inspector.data.loaders import iter_records, load_data, load_text

FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])

# --- what strangers put in their files ---------------------------------------------------------------------------

ODD_TEXTS = ["", " ", "\n\n", "\t", "مرحبا بالعالم", "שלום עולם", "\u202egnirts desrever\u202c", "👩‍👩‍👧‍👦🎉🇺🇳",
             "e\u0301\u0301\u0301", "<|im_end|>", "<|im_start|>assistant\n", "<｜end▁of▁sentence｜>", "</s>", "[INST]",
             "{{ 7 * 7 }}", "{% raise %}", "\x00\x01\x1f", "\ufeffBOM", "a\u2028b\u2029c", "\r\nwindows\r\n",
             "null", "-100", "ﷺ" * 3, "\U0010fffd", "\\u0000"]
TEXT = st.one_of(
    st.text(max_size=30),  # hypothesis' text() never makes lone surrogates
    st.sampled_from(ODD_TEXTS),
    st.tuples(st.text(min_size=1, max_size=4), st.integers(200, 1500)).map(lambda t: t[0] * t[1]),  # long texts
)
# Lone surrogates: what a JSON "\ud83d" escape (half an emoji, cut by an ASCII-escaping writer) decodes to. Only in
# the loader fuzzing: the loader rejects them with a reason, so the label engine never sees them.
SURROGATES = ["\ud800", "a\udc80b", "\udfff\ud83d", "😀\ud83d"]
TEXT_ANY = st.one_of(TEXT, st.sampled_from(SURROGATES))
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False), TEXT_ANY)
JUNK = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                    max_leaves=6)
ROLE_NAMES = list(ROLES) + ["human", "gpt", "model", "bot", "function_call", "observation", "function", "ipython",
                            "USER", "Assistant", " user", "narrator", "", "developer"]
ROLE = st.one_of(st.sampled_from(ROLE_NAMES), JUNK)
PART = st.one_of(st.fixed_dictionaries({"type": st.sampled_from(["text", "input_text", "image_url", "image", "x"]),
                                        "text": st.one_of(TEXT_ANY, JUNK)}), TEXT_ANY, JUNK)
CONTENT = st.one_of(TEXT_ANY, TEXT, st.none(), st.lists(PART, max_size=3), JUNK)
TOOL_CALL = st.one_of(
    st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
        {"name": st.one_of(TEXT, JUNK), "arguments": st.one_of(TEXT, st.dictionaries(st.text(max_size=5), SCALAR))})}),
    JUNK)
MESSAGE = st.one_of(
    st.fixed_dictionaries({"role": ROLE, "content": CONTENT},
                          optional={"tool_calls": st.lists(TOOL_CALL, max_size=2), "name": st.one_of(TEXT, JUNK),
                                    "loss_weight": st.one_of(st.floats(), JUNK), "train": JUNK,
                                    "reasoning_content": st.one_of(TEXT, JUNK), "extra": JUNK}),
    st.fixed_dictionaries({"from": ROLE, "value": CONTENT}, optional={"weight": JUNK}),
    st.fixed_dictionaries({}, optional={"role": ROLE, "content": CONTENT}),  # missing fields
    JUNK,
)
RECORD = st.one_of(
    st.fixed_dictionaries({"messages": st.one_of(st.lists(MESSAGE, max_size=6), JUNK)},
                          optional={"id": JUNK, "tools": JUNK, "system": st.one_of(TEXT, JUNK)}),
    st.fixed_dictionaries({"conversations": st.one_of(st.lists(MESSAGE, max_size=6), JUNK)},
                          optional={"system": st.one_of(TEXT, JUNK), "tools": JUNK, "id": JUNK}),
    st.fixed_dictionaries({"prompt": st.one_of(TEXT, st.lists(MESSAGE, max_size=3), JUNK)},
                          optional={"completion": st.one_of(TEXT, st.lists(MESSAGE, max_size=2), JUNK)}),
    st.fixed_dictionaries({"instruction": st.one_of(TEXT, JUNK)},
                          optional={"input": st.one_of(TEXT, JUNK), "output": st.one_of(TEXT, JUNK),
                                    "system": st.one_of(TEXT, JUNK), "history": JUNK}),
    JUNK,
)

# Conversations the loader accepts, to exercise the label engine: known roles in any order, odd texts.
GOOD_MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "user", "assistant", "system",
                                                                "tool"]), "content": TEXT})
GOOD_RECORD = st.one_of(
    st.lists(GOOD_MESSAGE, min_size=1, max_size=6).map(lambda ms: {"messages": ms}),
    st.tuples(TEXT, TEXT).map(lambda t: {"messages": [{"role": "user", "content": t[0]},
                                                      {"role": "assistant", "content": t[1]}]}),
    st.tuples(TEXT, TEXT, TEXT).map(lambda t: {"instruction": t[0], "input": t[1], "output": t[2]}),
)

# Records the loader mostly accepts but that use every optional field: aliases, tool calls, names, weights, flags,
# reasoning, list content.
TEXT_PARTS = st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}), min_size=1, max_size=3)
CALL = st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
    {"name": st.sampled_from(["get_weather", "search", "x"]),
     "arguments": st.one_of(st.dictionaries(st.sampled_from(["city", "q"]), TEXT, max_size=2), TEXT)})},
    optional={"id": st.sampled_from(["call_1", "abc123XYZ"])})
RICH_MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(ROLE_NAMES[:12]), "content": st.one_of(TEXT, TEXT_PARTS)},
    optional={"tool_calls": st.lists(CALL, min_size=1, max_size=2), "name": st.sampled_from(["get_weather", "bob"]),
              "loss_weight": st.sampled_from([0.0, 0.5, 1.0]), "train": st.booleans(),
              "reasoning_content": TEXT})
RICH_RECORD = st.one_of(
    st.fixed_dictionaries({"messages": st.lists(RICH_MESSAGE, min_size=1, max_size=5)},
                          optional={"tools": st.lists(st.fixed_dictionaries(
                              {"type": st.just("function"), "function": st.fixed_dictionaries(
                                  {"name": st.just("get_weather"), "description": TEXT,
                                   "parameters": st.just({"type": "object", "properties": {}})})}), max_size=2),
                              "system": TEXT}),
    st.lists(st.fixed_dictionaries({"from": st.sampled_from(["human", "gpt", "system", "function_call", "observation"]),
                                    "value": TEXT}), min_size=1, max_size=5).map(lambda ms: {"conversations": ms}),
    st.fixed_dictionaries({"prompt": st.one_of(TEXT, st.lists(RICH_MESSAGE, min_size=1, max_size=2)),
                           "completion": st.one_of(TEXT, st.lists(RICH_MESSAGE, min_size=1, max_size=1))}),
    st.fixed_dictionaries({"instruction": TEXT, "output": TEXT},
                          optional={"input": TEXT, "system": TEXT,
                                    "history": st.lists(st.tuples(TEXT, TEXT).map(list), max_size=2)}),
)


def assert_conversation(conv: Conversation) -> None:
    assert isinstance(conv, Conversation) and isinstance(conv.id, str) and conv.id
    for m in conv.messages:
        assert m.role in ROLES, m.role
        assert isinstance(m.content, str)


def assert_rejected(rej: Rejected) -> None:
    assert isinstance(rej, Rejected) and isinstance(rej.id, str) and rej.id
    assert rej.reasons and all(isinstance(r, str) and r.strip() for r in rej.reasons), rej.reasons


def assert_item(item) -> None:
    if isinstance(item, Conversation):
        assert_conversation(item)
    else:
        assert_rejected(item)


# --- loaders -----------------------------------------------------------------------------------------------------

@FAST
@given(RECORD)
def test_normalize_record_accepts_or_names_the_reason(record):
    try:
        conv = normalize_record(record)
    except RecordError as exc:
        assert str(exc).strip()
        return
    assert_conversation(conv)


@FAST
@given(st.lists(RECORD, max_size=8))
def test_load_data_in_memory_covers_every_record(records):
    result = load_data(records)
    assert result.total == len(records)
    for item in result.conversations + result.rejected:
        assert_item(item)


def _line_bytes(kind: str, record, junk: bytes, cut: int) -> bytes:
    if kind == "record":
        return json.dumps(record, ensure_ascii=False).encode("utf-8", "surrogatepass")  # a lone one: not UTF-8
    if kind == "ascii-escaped":
        return json.dumps(record, ensure_ascii=True).encode("ascii")
    if kind == "truncated":
        text = json.dumps(record, ensure_ascii=False).encode("utf-8", "surrogatepass")
        return text[: cut % max(1, len(text))]
    if kind == "bytes":  # anything but a newline, often not UTF-8
        return junk.replace(b"\n", b"")
    if kind == "latin1":
        return json.dumps({"messages": [{"role": "user", "content": "café"}]}).encode("utf-8").replace(b"\xc3\xa9",
                                                                                                     b"\xe9")
    return b"   " if kind == "blank" else b""


LINE = st.tuples(st.sampled_from(["record", "record", "ascii-escaped", "truncated", "bytes", "latin1", "blank"]),
                 RECORD, st.binary(max_size=40), st.integers(0, 10_000))


def _expected_items(lines: list[bytes]) -> int:
    """One item per line that is not blank (the loader's documented rule); undecodable lines count."""
    n = 0
    for i, raw in enumerate(lines):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            n += 1
            continue
        if i == 0:
            text = text.lstrip("\ufeff")
        n += bool(text.rstrip("\r\n").strip())
    return n


@FAST
@given(st.lists(LINE, max_size=10), st.booleans(), st.booleans(), st.integers(0, 10_000))
def test_jsonl_file_yields_one_item_per_line(tmp_path_factory, lines, bom, cut_file, cut_at):
    raw_lines = [_line_bytes(*line) for line in lines]
    data = b"\n".join(raw_lines)
    if bom:
        data = b"\xef\xbb\xbf" + data
    if cut_file and data:  # a file cut off mid-write
        data = data[: cut_at % len(data)]
    path = tmp_path_factory.mktemp("fuzz") / "data.jsonl"
    path.write_bytes(data)
    items = list(iter_records(path))
    assert len(items) == _expected_items(data.split(b"\n"))
    for item in items:
        assert_item(item)
    lines_seen = [item.source.line for item in items]
    assert lines_seen == sorted(lines_seen) and len(set(lines_seen)) == len(lines_seen)


@FAST
@given(st.lists(RECORD, max_size=6), st.integers(0, 10_000), st.booleans())
def test_json_file_whole_or_truncated(tmp_path_factory, records, cut_at, cut):
    text = json.dumps(records)  # ASCII, lone surrogates as \ud83d escapes
    if cut:
        text = text[: cut_at % len(text)]
    path = tmp_path_factory.mktemp("fuzz") / "data.json"
    path.write_text(text, encoding="utf-8")
    if not cut:
        items = list(iter_records(path))
        assert len(items) == len(records)
        for item in items:
            assert_item(item)
        return
    if not text.strip():  # cut to nothing: an empty file holds no records (the checks report no-records)
        assert list(iter_records(path)) == []
        return
    with pytest.raises(DataError) as info:
        list(iter_records(path))
    assert str(info.value).strip() and str(path) in str(info.value)


@FAST
@given(st.binary(max_size=200))
def test_json_file_of_random_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "data.json"
    path.write_bytes(data)
    try:
        items = list(iter_records(path))
    except DataError as exc:
        assert str(exc).strip()
        return
    for item in items:
        assert_item(item)


# Shapes that crashed whole runs: nesting past Python's parser (RecursionError), numbers past the int conversion
# limit (ValueError), NaN weights. Wrapped around a good record, in a line among good lines.
HOSTILE_SHAPE = st.one_of(
    st.integers(90, 3000).map(lambda d: "[" * d + "1" + "]" * d),
    st.integers(90, 3000).map(lambda d: '{"a": ' * d + "1" + "}" * d),
    st.integers(4000, 6000).map(lambda n: "9" * n),
    st.integers(4000, 6000).map(lambda n: "-" + "1" * n + ".5"),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", '"\\ud800"', '"\\udfff\\ud83d"']),
)
HOSTILE_SLOT = st.sampled_from(['{"id": @, "messages": [{"role": "user", "content": "Hi"}, '
                                '{"role": "assistant", "content": "Yo"}]}',
                                '{"messages": [{"role": "user", "content": @}, {"role": "assistant", "content": "x"}]}',
                                '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", '
                                '"content": "Yo", "loss_weight": @}]}',
                                '{"prompt": "Hi", "completion": "Yo", "tools": @}', "@"])


@FAST
@given(st.lists(st.tuples(HOSTILE_SLOT, HOSTILE_SHAPE).map(lambda t: t[0].replace("@", t[1])), min_size=1,
                max_size=4), st.booleans())
def test_hostile_shapes_are_rejected_one_record_at_a_time(tmp_path_factory, bad_lines, as_json_list):
    good = '{"prompt": "Hi", "completion": "Yo"}'
    lines = [good] + [x for line in bad_lines for x in (line, good)]
    folder = tmp_path_factory.mktemp("hostile")
    if as_json_list:
        path = folder / "data.json"
        path.write_text("[" + ",\n".join(lines) + "]", encoding="utf-8")
    else:
        path = folder / "data.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = list(iter_records(path))
    assert len(items) == len(lines)
    for i, item in enumerate(items):
        assert_item(item)
        if i % 2 == 0:  # the good records around each bad one
            assert isinstance(item, Conversation), item
    assert json.dumps([getattr(x, "id") for x in items]).encode("utf-8")  # every id is printable


@FAST
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300),
                 st.lists(RECORD, max_size=4).map(lambda rs: "\n".join(json.dumps(r) for r in rs)),
                 st.lists(RECORD, max_size=4).map(json.dumps)))
def test_load_text_returns_a_result_or_a_data_error(text):
    try:
        result = load_text(text)
    except DataError as exc:
        assert str(exc).strip()
        return
    assert isinstance(result, LoadResult)
    for item in result.conversations + result.rejected:
        assert_item(item)


@settings(max_examples=12, deadline=None, derandomize=True, database=None)
@given(st.integers(0, 10**6))
def test_truncated_parquet_file_is_a_data_error(tmp_path_factory, cut_at):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("fuzz")
    whole = folder / "whole.parquet"
    rows = [{"prompt": f"question {i}", "completion": f"answer {i}"} for i in range(50)]
    pq.write_table(pa.Table.from_pylist(rows), whole)
    data = whole.read_bytes()
    cut = folder / "cut.parquet"
    cut.write_bytes(data[: cut_at % len(data)])
    with pytest.raises(DataError) as info:
        list(iter_records(cut))
    assert "cut.parquet" in str(info.value)


# --- the label engine under every strategy ------------------------------------------------------------------------

def assert_sample_invariants(sample) -> None:
    n = len(sample.input_ids)
    assert len(sample.labels) == n
    assert len(sample.segments) == n and len(sample.message_index) == n and len(sample.straddles) == n
    offsets = np.asarray(sample.offsets)
    assert offsets.shape == (n, 2)
    for i, (tok, lab) in enumerate(zip(sample.input_ids, sample.labels)):
        assert lab == IGNORE_INDEX or lab == tok, (i, tok, lab)
    if n:
        assert (offsets[:, 0] >= 0).all() and (offsets[:, 0] <= offsets[:, 1]).all()
        assert (offsets[:, 1] <= len(sample.text)).all()
    assert set(sample.segments) <= set(SEGMENTS)
    record = sample.to_record()
    assert record["labels"] == list(sample.labels) and len(record["attention_mask"]) == n


def _check_build(setup, convs: list[Conversation], opts: LabelOptions) -> None:
    samples, errors = LabelEngine(setup).build(convs, opts)
    for s in samples:
        assert_sample_invariants(s)
        assert s.strategy == opts.strategy
    for e in errors:
        assert e.reason.strip()
    covered = {s.conversation_id for s in samples} | {e.conversation_id for e in errors}
    assert covered == {c.id for c in convs}
    if opts.max_length is not None:
        assert all(len(s.input_ids) <= opts.max_length for s in samples)


def _conversations(records) -> list[Conversation]:
    out = []
    for i, record in enumerate(records):
        try:
            out.append(normalize_record(record, index=i))
        except RecordError:
            pass
    return out


@SLOW
@given(st.lists(GOOD_RECORD, min_size=1, max_size=3), st.sampled_from(STRATEGIES),
       st.one_of(st.none(), st.integers(1, 64)), st.sampled_from(["right", "left"]), st.booleans())
def test_every_strategy_keeps_the_label_invariants_tiny(tiny_setup, records, strategy, max_length, side, label_eot):
    convs = _conversations(records)
    assume(convs)
    _check_build(tiny_setup, convs, LabelOptions(strategy=strategy, max_length=max_length, truncation_side=side,
                                                 label_eot=label_eot))


@SLOW
@given(st.lists(GOOD_RECORD, min_size=1, max_size=3), st.sampled_from(STRATEGIES),
       st.one_of(st.none(), st.integers(1, 64)))
def test_every_strategy_keeps_the_label_invariants_deepseek(deepseek_setup, records, strategy, max_length):
    convs = _conversations(records)
    assume(convs)
    _check_build(deepseek_setup, convs, LabelOptions(strategy=strategy, max_length=max_length))


@SLOW
@given(st.lists(RICH_RECORD, min_size=1, max_size=3), st.sampled_from(STRATEGIES))
def test_whatever_the_loader_accepts_can_be_labeled(tiny_setup, deepseek_setup, records, strategy):
    """What the loader accepts with every optional field in use (aliases, tool calls, names, weights, flags,
    reasoning, list content) goes through both tokenizers without an exception."""
    convs = _conversations(records)
    assume(convs)
    for setup in (tiny_setup, deepseek_setup):
        _check_build(setup, convs, LabelOptions(strategy=strategy))



# A JSON "\ud83d" escape is valid JSON and decodes to a lone surrogate, which the Rust tokenizer refuses
# ("TextEncodeInput must be Union[...]"): today it escapes LabelEngine.build as a TypeError and ends a whole CLI run.
SURROGATE_LINE = '{"messages": [{"role": "user", "content": "Hi \\ud83d"}, {"role": "assistant", "content": "Yo"}]}'


def test_lone_surrogates_load_as_text():
    result = load_text(SURROGATE_LINE)
    assert result.total == 1
    item = (result.conversations + result.rejected)[0]
    assert_item(item)


def test_lone_surrogates_are_rejected_or_become_a_sample_error(deepseek_setup):
    result = load_text(SURROGATE_LINE + "\n" + SURROGATE_LINE.replace("\\ud83d", "ok"))
    assert result.total == 2
    if result.rejected:  # the loader's way out: a reason naming the escape
        assert any("surrogate" in r for r in result.rejected[0].reasons)
    for strategy in STRATEGIES:
        samples, errors = LabelEngine(deepseek_setup).build(result.conversations, LabelOptions(strategy=strategy))
        assert {s.conversation_id for s in samples} | {e.conversation_id for e in errors} == \
            {c.id for c in result.conversations}
        assert "pasted-1" in {s.conversation_id for s in samples}  # the good record is not lost with the bad one

# --- limits: the CLI streams files of any size; export stays inside its folder ------------------------------------

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from conftest import train_tiny_tokenizer

    path = tmp_path_factory.mktemp("tiny-tokenizer")
    train_tiny_tokenizer("bpe").save_pretrained(str(path))
    return path


def _peak_rss_mb_of_check(data, tiny_dir) -> tuple[float, dict]:
    """Run ``python -m inspector check DATA --json`` in a fresh process; return its peak RSS (MB) and report."""
    code = ("import resource, runpy, sys\n"
            "sys.argv = ['inspector', 'check', %r, '--tokenizer', %r, '--json', '--no-progress']\n"
            "try:\n    runpy.run_module('inspector', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "sys.stderr.write('PEAK_KB=%%d\\n' %% resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
            % (str(data), str(tiny_dir)))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    peak = [line for line in out.stderr.splitlines() if line.startswith("PEAK_KB=")]
    assert peak, out.stderr[-2000:]
    return int(peak[-1][8:]) / 1024, json.loads(out.stdout)


def test_cli_check_memory_does_not_grow_with_the_number_of_records(tmp_path, tiny_dir):
    """50,000 records of 1.5 kB each (75 MB, rejected by the loader, so the run is quick) need about the memory
    of 5,000: the CLI keeps no per-record object (holding them would add well over 75 MB)."""
    pad = "z" * 1500

    def write(name: str, n: int) -> Path:
        path = tmp_path / name
        with open(path, "w", encoding="utf-8") as f:
            for i in range(n - 1):
                f.write(json.dumps({"text": pad, "i": i}) + "\n")
            f.write(json.dumps({"prompt": "Hi", "completion": "Hello!"}) + "\n")
        return path

    small_peak, small = _peak_rss_mb_of_check(write("small.jsonl", 5_000), tiny_dir)
    big_peak, big = _peak_rss_mb_of_check(write("big.jsonl", 50_000), tiny_dir)
    assert small["totals"]["records"] == 5_000 and big["totals"]["records"] == 50_000
    assert big["totals"]["rejected_by_loader"] == 49_999 and big["totals"]["conversations"] == 1
    assert big_peak - small_peak < 25, (small_peak, big_peak)


def test_cli_check_streams_records_as_they_arrive(tmp_path, tiny_dir):
    """Valid records through the whole check pipeline from a FIFO: the first outcome comes out while the writer
    is still blocked on the pipe, far from the end of its 50,000 records."""
    from inspector import cli
    from inspector.cli.main import main as cli_main
    from inspector.cli import run as cli_run

    fifo = tmp_path / "stream.jsonl"
    os.mkfifo(fifo)
    total = 50_000
    written = [0]
    line = (json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]})
            + "\n").encode()

    def writer() -> None:
        try:
            with open(fifo, "wb", buffering=0) as f:
                for _ in range(total):
                    f.write(line)
                    written[0] += 1
        except (BrokenPipeError, OSError):
            pass

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    args = cli.build_parser().parse_args(["check", str(fifo), "--tokenizer", str(tiny_dir), "--no-progress"])
    spec, ctx, _report = cli_run._prepare(args)
    outcomes = cli_run.run_outcomes(cli_run._items(args), ctx, spec, chunk_size=args.chunk_size)
    first = next(outcomes)
    at_first = written[0]
    outcomes.close()  # closes the file: the writer gets a broken pipe and stops
    t.join(timeout=30)
    assert first.accepted and first.record_id == "stream-0"
    assert at_first < 5_000, at_first
    assert not t.is_alive()


def _export(argv, capsys) -> tuple[int, str]:
    from inspector import cli
    from inspector.cli.main import main as cli_main

    code = cli_main(argv)
    return code, capsys.readouterr().err


@pytest.fixture()
def small_data(tmp_path):
    path = tmp_path / "in" / "data.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps({"prompt": "Hi", "completion": "Hello!"}) + "\n{not json\n", encoding="utf-8")
    return path


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() and not p.is_symlink() else b"")
            for p in sorted(folder.rglob("*"))}


def test_export_refuses_to_overwrite_without_force(tmp_path, tiny_dir, small_data, capsys):
    out = tmp_path / "out"
    argv = ["export", str(small_data), "--tokenizer", str(tiny_dir), "--out", str(out), "--no-progress"]
    assert _export(argv, capsys)[0] == 0
    first = _tree(out)
    assert sorted(first) == ["accepted.jsonl", "rejected.jsonl", "report.json"]
    (out / "accepted.jsonl").write_text("mine\n", encoding="utf-8")
    code, err = _export(argv, capsys)
    assert code == 2 and "already holds" in err and "--force" in err
    assert (out / "accepted.jsonl").read_text(encoding="utf-8") == "mine\n"
    assert sorted(_tree(out)) == sorted(first)  # no temporary file left behind either
    assert _export(argv + ["--force"], capsys)[0] == 0
    assert _tree(out)["accepted.jsonl"] == first["accepted.jsonl"]


def test_export_never_writes_outside_its_folder(tmp_path, tiny_dir, small_data, capsys):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n", encoding="utf-8")
    (out / "rejected.jsonl").symlink_to(victim)
    before = _tree(tmp_path)
    code, err = _export(["export", str(small_data), "--tokenizer", str(tiny_dir), "--out", str(out), "--force",
                         "--no-progress"], capsys)
    assert code == 2 and "symbolic link" in err
    assert victim.read_text(encoding="utf-8") == "keep me\n"
    assert _tree(tmp_path) == before

    (out / "rejected.jsonl").unlink()
    nested = out / "b" / "c"
    assert _export(["export", str(small_data), "--tokenizer", str(tiny_dir), "--out", str(nested), "--no-progress"],
                   capsys)[0] == 0
    after = _tree(tmp_path)
    new = sorted(set(after) - set(before))
    assert new == ["out/b", "out/b/c", "out/b/c/accepted.jsonl", "out/b/c/rejected.jsonl", "out/b/c/report.json"]
    assert sorted(set(before) - set(after)) == ["out/rejected.jsonl"]  # the link this test removed itself
    assert victim.read_text(encoding="utf-8") == "keep me\n"


APP = ROOT / "app.py"


def _paste(at, text: str):
    at.sidebar.radio(key="sb_data_source").set_value("Paste JSON").run()
    at.sidebar.text_area(key="sb_data_paste").input(text).run()
    return at


@pytest.mark.skipif(not APP.is_file(), reason="app.py does not exist yet")
def test_app_record_and_size_limits_say_so(monkeypatch):
    from pages.common import ui
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(ui, "MAX_RECORDS", 3)
    rows = "\n".join(json.dumps({"prompt": f"Q{i}", "completion": f"A{i}"}) for i in range(5))
    at = _paste(AppTest.from_file(str(APP), default_timeout=120).run(), rows)
    assert not at.exception
    assert any("Only the first 3 records are used" in str(w.value) for w in at.sidebar.warning)
    assert any(c.value == "3 conversations" for c in at.sidebar.caption)

    monkeypatch.setattr(ui, "MAX_UPLOAD_MB", 100 / 2**20)  # 100 bytes
    at = _paste(AppTest.from_file(str(APP), default_timeout=120).run(), rows)
    assert not at.exception
    assert any("larger than" in str(e.value) for e in at.sidebar.error), [e.value for e in at.sidebar.error]


@pytest.mark.skipif(not APP.is_file(), reason="app.py does not exist yet")
@pytest.mark.parametrize("text, fragment", [
    ('{"messages": [{"role": "user", "content": "Hi"}', "ends before the JSON is complete"),
    ("[1, 2, 3]", "no conversation could be read"),
    ('{"messages": "Hi"}', "no conversation could be read"),
])
def test_app_survives_malformed_pasted_data(text, fragment):
    from streamlit.testing.v1 import AppTest

    at = _paste(AppTest.from_file(str(APP), default_timeout=120).run(), text)
    assert not at.exception
    assert any(fragment in str(e.value) for e in at.sidebar.error), [e.value for e in at.sidebar.error]


def test_cli_check_reports_a_lone_surrogate_record_instead_of_crashing(tmp_path, tiny_dir):
    data = tmp_path / "surrogate.jsonl"
    data.write_text(SURROGATE_LINE + "\n" + json.dumps({"prompt": "Hi", "completion": "Yo"}) + "\n",
                    encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", "inspector", "check", str(data), "--tokenizer", str(tiny_dir),
                          "--json", "--no-progress"], capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in out.stderr, out.stderr[-1500:]
    assert out.returncode in (0, 1)
    assert json.loads(out.stdout)["totals"]["records"] == 2


@pytest.mark.skipif(not APP.is_file(), reason="app.py does not exist yet")
def test_app_survives_a_lone_surrogate_record():
    from streamlit.testing.v1 import AppTest

    at = _paste(AppTest.from_file(str(APP), default_timeout=120).run(), SURROGATE_LINE)
    assert not at.exception, [e.value for e in at.exception]
    assert any("lone surrogate" in str(e.value) for e in at.sidebar.error), [e.value for e in at.sidebar.error]
