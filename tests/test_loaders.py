"""loaders: every format normalizes to the exact messages, every bad record gets its own reason, nothing is lost.

The invariant checked throughout: conversations + rejected == number of input records.
Tests over LLaMA-Factory's demo files need SFT_CORPUS (the ``corpus`` fixture in conftest.py skips without it).
"""

from __future__ import annotations

import doctest
import json
import tracemalloc
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inspector.data import files, formats, loaders, messages, records
from inspector.constants import ROLES
from inspector.conversations import Conversation, Message, Rejected, Source
from inspector.errors import DataError, RecordError
from inspector.data.formats import detect_format, normalize_record
from inspector.data.loaders import iter_records, load_data, load_text


def pairs(conv: Conversation) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in conv.messages]


def write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}


# --------------------------------------------------------------------------------------------- each format


@pytest.mark.parametrize("module", [records, messages, formats, files, loaders], ids=lambda m: m.__name__)
def test_doctests_in_loaders_hold(module):
    result = doctest.testmod(module)
    assert result.attempted >= 2 and result.failed == 0


def test_openai_messages_with_tools_reasoning_and_tool_calls():
    call = {"type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}
    record = {
        "id": 42,
        "tools": json.dumps([{"type": "function", "function": {"name": "add", "parameters": {}}}]),
        "messages": [
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": "1+2?"},
            {"role": "assistant", "content": None, "tool_calls": [call], "reasoning_content": "Add them."},
            {"role": "tool", "content": "3", "name": "add"},
            {"role": "assistant", "content": "3", "weight": 1},
        ],
    }
    conv = normalize_record(record)
    assert conv.format == "messages" and conv.id == "42" and conv.source is None
    assert conv.tools == [{"type": "function", "function": {"name": "add", "parameters": {}}}]
    assert conv.messages == [
        Message("system", "Use tools."),
        Message("user", "1+2?"),
        Message("assistant", "", reasoning="Add them.", tool_calls=[call]),  # passed through as given
        Message("tool", "3", name="add"),
        Message("assistant", "3", trainable=True),
    ]
    assert conv.template_messages()[2] == {"role": "assistant", "content": "", "reasoning_content": "Add them.",
                                           "tool_calls": [call]}


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning", "thinking"])
def test_reasoning_field_names(key):
    conv = normalize_record({"messages": [{"role": "user", "content": "q"},
                                          {"role": "assistant", "content": "a", key: "think"}]})
    assert conv.messages[1].reasoning == "think"


@pytest.mark.parametrize("key", ["conversation", "conversations"])
def test_conversations_key_with_role_content_is_messages_format(key):
    conv = normalize_record({key: GOOD["messages"]})
    assert conv.format == "messages" and pairs(conv) == [("user", "Hi"), ("assistant", "Hello!")]


def test_sharegpt_with_system_function_call_and_observation():
    record = {
        "system": "You are helpful.",
        "tools": '[{"name": "search", "description": "Search", "parameters": {"type": "object"}}]',
        "conversations": [
            {"from": "human", "value": "Find cats"},
            {"from": "function_call", "value": '{"name": "search", "arguments": {"q": "cats"}}'},
            {"from": "observation", "value": '{"hits": 3}'},
            {"from": "gpt", "value": "Found 3."},
        ],
    }
    conv = normalize_record(record, source=Source("data/glaive.json", row=5), index=5)
    assert conv.format == "sharegpt" and conv.id == "glaive-5"
    assert conv.tools == [{"name": "search", "description": "Search", "parameters": {"type": "object"}}]
    assert conv.messages == [
        Message("system", "You are helpful."),
        Message("user", "Find cats"),
        Message("assistant", "",  # a parsed call becomes structured tool_calls, not content too
                tool_calls=[{"type": "function", "function": {"name": "search", "arguments": {"q": "cats"}}}]),
        Message("tool", '{"hits": 3}'),
        Message("assistant", "Found 3."),
    ]


def test_sharegpt_function_call_variants():
    record = {"conversations": [
        {"from": "human", "value": "x"},
        {"from": "function_call", "value": "not json at all"},  # kept as content, no tool_calls
        {"from": "tool", "value": "r"},
        {"from": "function_call", "value": '[{"name": "a", "arguments": "{\\"x\\": 1}"}, {"name": "b"}]'},
    ]}
    m = normalize_record(record).messages
    assert (m[1].role, m[1].content, m[1].tool_calls) == ("assistant", "not json at all", None)
    assert m[2].role == "tool"
    assert m[3].tool_calls == [{"type": "function", "function": {"name": "a", "arguments": {"x": 1}}},
                               {"type": "function", "function": {"name": "b", "arguments": {}}}]


def test_sharegpt_items_under_messages_key_and_system_already_leading():
    record = {"system": "S", "messages": [{"from": "system", "value": "S"}, {"from": "human", "value": "u"},
                                          {"from": "gpt", "value": "a"}]}
    conv = normalize_record(record)
    assert conv.format == "sharegpt"
    assert pairs(conv) == [("system", "S"), ("user", "u"), ("assistant", "a")]  # not doubled


def test_prompt_completion_strings_with_system():
    conv = normalize_record({"prompt": "2+2=", "completion": "4", "system": "Math."})
    assert conv.format == "prompt_completion"
    assert pairs(conv) == [("system", "Math."), ("user", "2+2="), ("assistant", "4")]


def test_prompt_completion_conversational():
    record = {"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "u"}],
              "completion": [{"role": "assistant", "content": "a"}]}
    assert pairs(normalize_record(record)) == [("system", "S"), ("user", "u"), ("assistant", "a")]


def test_alpaca_input_history_system():
    record = {"instruction": "Translate", "input": "chat", "output": "cat", "system": "Be exact.",
              "history": [["hi", "hello"], ["how are you", "fine"]]}
    conv = normalize_record(record)
    assert conv.format == "alpaca"
    assert pairs(conv) == [("system", "Be exact."), ("user", "hi"), ("assistant", "hello"),
                           ("user", "how are you"), ("assistant", "fine"),
                           ("user", "Translate" + formats.ALPACA_INPUT_SEPARATOR + "chat"), ("assistant", "cat")]
    assert formats.ALPACA_INPUT_SEPARATOR == "\n"  # LLaMA-Factory: "\n".join([instruction, input])


def test_alpaca_without_input():
    for extra in ({}, {"input": ""}, {"input": None}):
        conv = normalize_record({"instruction": "Say hi", "output": "hi", **extra})
        assert pairs(conv) == [("user", "Say hi"), ("assistant", "hi")]


def test_list_of_parts_text_value_reasoning_and_tool_call():
    record = {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "value": "there"}]},
        {"role": "assistant", "content": [
            {"type": "reasoning", "value": "Think "}, {"type": "reasoning", "text": "more"},
            {"type": "tool_call", "value": '{"name": "f", "arguments": {"k": 1}}'},
            {"type": "tool_call", "value": {"name": "g", "arguments": "{}"}},
        ]},
        {"role": "tool", "content": [{"type": "text", "value": "ok"}]},
        {"role": "assistant", "content": [{"type": "text", "value": "Done"}]},
    ]}
    m = normalize_record(record).messages
    assert m[0] == Message("user", "Hello there")
    assert m[1] == Message("assistant", "", reasoning="Think more", tool_calls=[
        {"type": "function", "function": {"name": "f", "arguments": {"k": 1}}},
        {"type": "function", "function": {"name": "g", "arguments": {}}},
    ])
    assert (m[2].role, m[2].content, m[3].content) == ("tool", "ok", "Done")


def test_per_message_loss_weight_and_train_flags():
    record = {"messages": [
        {"role": "user", "content": "a", "loss_weight": 0.0},
        {"role": "assistant", "content": "b", "loss_weight": 1.0},
        {"role": "assistant", "content": "c", "loss_weight": 0.5, "train": True},
        {"role": "user", "content": "d", "train": False},
        {"role": "assistant", "content": "e", "trainable": True},
        {"role": "assistant", "content": "f", "weight": 0},
        {"role": "assistant", "content": "g"},
    ]}
    m = normalize_record(record).messages
    assert [(x.trainable, x.loss_weight) for x in m] == [
        (False, 0.0), (True, 1.0), (True, 0.5), (False, None), (True, None), (False, None), (None, None)]


@pytest.mark.parametrize("raw, role", [
    ("human", "user"), ("user", "user"), ("gpt", "assistant"), ("assistant", "assistant"), ("model", "assistant"),
    ("bot", "assistant"), ("system", "system"), ("tool", "tool"), ("function", "tool"), ("observation", "tool"),
    ("ipython", "tool"), ("Human", "user"),
])
def test_role_aliases(raw, role):
    conv = normalize_record({"messages": [{"role": raw, "content": "x"}]})
    assert conv.messages[0].role == role and conv.messages[0].name is None


def test_tool_alias_keeps_name_only_when_given():
    conv = normalize_record({"messages": [{"role": "function", "content": "3", "name": "add"}]})
    assert (conv.messages[0].role, conv.messages[0].name) == ("tool", "add")


@pytest.mark.parametrize("record, expected", [
    ({"id": "abc", **GOOD}, "abc"),
    ({"conversation_id": 7, **GOOD}, "7"),
    ({"uuid": "u-1", **GOOD}, "u-1"),
    (GOOD, "chat-3"),
])
def test_conversation_id(record, expected):
    assert normalize_record(record, source=Source("/x/chat.jsonl", line=4), index=3).id == expected


def test_conversation_id_without_source():
    assert normalize_record(GOOD, index=9).id == "record-9"


def test_explicit_format_overrides_detection():
    record = {"conversations": [{"role": "user", "content": "u"}], "instruction": "i", "output": "o"}
    assert normalize_record(record).format == "messages"
    conv = normalize_record(record, fmt="alpaca")
    assert conv.format == "alpaca" and pairs(conv) == [("user", "i"), ("assistant", "o")]
    with pytest.raises(RecordError, match="alpaca record has no 'instruction'"):
        normalize_record(GOOD, fmt="alpaca")
    with pytest.raises(DataError, match="unknown format 'csv'"):
        normalize_record(GOOD, fmt="csv")


@pytest.mark.parametrize("record, fmt", [
    (GOOD, "messages"),
    ({"messages": [{"from": "human", "value": "x"}]}, "sharegpt"),
    ({"conversations": [{"from": "human", "value": "x"}]}, "sharegpt"),
    ({"conversations": []}, "sharegpt"),
    ({"prompt": "p", "completion": "c"}, "prompt_completion"),
    ({"instruction": "i", "input": "", "output": "o"}, "alpaca"),
])
def test_detect_format(record, fmt):
    assert detect_format(record) == fmt


def test_detect_format_nothing_matches():
    with pytest.raises(RecordError, match=r"^record has none of the keys messages, conversations, prompt/completion, "
                                          r"instruction/output \(keys found: text, label\)$"):
        detect_format({"text": "raw", "label": 1})
    with pytest.raises(RecordError, match="record is an array, expected a JSON object"):
        detect_format([1, 2])


# --------------------------------------------------------------------------------------------- bad records


def msgs(*items):
    return {"messages": list(items)}


U = {"role": "user", "content": "u"}
A = {"role": "assistant", "content": "a"}

BAD_RECORDS = [
    (msgs(U, A, {"role": "narrator", "content": "x"}),
     "message 2 has unknown role 'narrator' (expected one of system, user, assistant, tool or their ShareGPT names)"),
    (msgs(U, A, {"role": "user", "content": [{"type": "image", "url": "x.png"}]}),
     "unsupported content part type 'image' in message 2"),
    (msgs({"role": "system", "content": "s"}, U, A, {"role": "user", "content": None}),
     "message 3 (user) has no content"),
    (msgs(U, {"role": "assistant"}), "message 1 (assistant) has no content"),
    (msgs(U, {"role": "assistant", "content": 5}),
     "message 1 (assistant) content is a number, expected a string or a list of parts"),
    (msgs(U, {"role": "assistant", "content": {"type": "text", "text": "a"}}),
     "message 1 (assistant) content is an object, expected a string or a list of parts"),
    (msgs(U, "hello"), "message 1 is a string, expected an object with a role and content"),
    (msgs({"content": "x"}), "message 0 has no role (expected a 'role' or 'from' key)"),
    (msgs({"role": 3, "content": "x"}), "message 0 role is a number, expected a string"),
    (msgs(U, {"role": "assistant", "content": [{"type": "text", "text": 1}]}),
     "message 1 content part 0 (text) has a number as its text, expected a string"),
    (msgs(U, {"role": "assistant", "content": [7]}),
     'message 1 content part 0 is a number, expected an object like {"type": "text", ...}'),
    (msgs(U, {"role": "assistant", "content": [{"type": "tool_call", "value": "nope"}]}),
     "message 1 content part 0 (tool_call) is not a JSON object with a 'name'"),
    (msgs(U, {"role": "assistant", "content": "a", "tool_calls": {"name": "f"}}),
     "message 1 tool_calls is an object, expected an array of calls"),
    (msgs(U, {"role": "assistant", "content": "a", "loss_weight": "1"}),
     "message 1 loss_weight is a string, expected a number"),
    (msgs(U, {"role": "assistant", "content": "a", "train": "yes"}),
     "message 1 train is a string, expected true or false"),
    (msgs(U, {"role": "assistant", "content": "a", "loss_weight": 0.0, "train": True}),
     "message 1 has conflicting training flags (loss_weight says do not train, train says train)"),
    (msgs(U, {"role": "assistant", "content": "a", "name": 1}), "message 1 name is a number, expected a string"),
    ({"messages": "hi"}, "'messages' is a string, expected a list of messages"),
    ({"messages": []}, "no messages"),
    ({**GOOD, "tools": "[{oops"},
     "tools is not valid JSON (Expecting property name enclosed in double quotes: column 3)"),
    ({**GOOD, "tools": {"name": "f"}}, "tools is an object, expected a list of tool schemas"),
    ({"conversations": [{"from": "human", "value": "u"}], "system": ["s"]}, "system is an array, expected a string"),
    ({"system": "A", "conversations": [{"from": "system", "value": "B"}]},
     "record has both a 'system' field and a different leading system message; keep one"),
    ({"prompt": "p"}, "record has 'prompt' but no 'completion'"),
    ({"prompt": "p", "chosen": "c", "rejected": "r"},
     "record has 'prompt' but no 'completion' (preference data with chosen/rejected is not supported)"),
    ({"prompt": 1, "completion": "c"}, "prompt is a number, expected a string or a list of messages"),
    ({"prompt": [{"role": "user"}], "completion": "c"}, "prompt message 0 (user) has no content"),
    ({"instruction": "i"}, "alpaca record has no 'output'"),
    ({"instruction": "i", "output": 3}, "output is a number, expected a string"),
    ({"instruction": "i", "output": "o", "history": [["only one"]]},
     "history item 0 is not a [user, assistant] pair of strings"),
    ({"text": "raw"}, "record has none of the keys messages, conversations, prompt/completion, instruction/output "
                      "(keys found: text)"),
    ("just a string", "record is a string, expected a JSON object"),
]


@pytest.mark.parametrize("record, reason", BAD_RECORDS)
def test_bad_record_reason(record, reason):
    with pytest.raises(RecordError) as info:
        normalize_record(record)
    assert str(info.value) == reason


def test_every_bad_message_is_reported():
    record = msgs({"role": "narrator", "content": "x"}, U, {"role": "user", "content": None})
    [rejected] = load_data([record]).rejected
    assert rejected.reasons == [
        "message 0 has unknown role 'narrator' (expected one of system, user, assistant, tool or their ShareGPT names)",
        "message 2 (user) has no content",
    ]


def test_bad_records_rejected_good_ones_kept_in_memory():
    records = [GOOD] + [r for r, _ in BAD_RECORDS] + [{"prompt": "p", "completion": "c"}]
    result = load_data(records)
    assert result.total == len(records)
    last = len(records) - 1
    assert [c.source for c in result.conversations] == [Source("<memory>", row=0), Source("<memory>", row=last)]
    assert [r.reasons for r in result.rejected] == [[reason] for _, reason in BAD_RECORDS]
    assert result.rejected[0].id == "memory-1" and result.rejected[0].record is BAD_RECORDS[0][0]


# --------------------------------------------------------------------------------------------- files


def test_jsonl_with_every_kind_of_bad_line(tmp_path):
    lines = [
        json.dumps({"id": "good-1", **GOOD}).encode(),                                   # line 1
        b"",                                                                             # line 2: blank, skipped
        b'{"messages": [{"role": "user", "content": "hi"} {"role": "assistant"}]}',      # line 3: bad JSON
        '{"prompt": "caf\u00e9", "completion": "ok"}'.encode("latin-1"),                 # line 4: not UTF-8
        json.dumps({"id": "r-role", "messages": [U, {"role": "narrator", "content": "x"}]}).encode(),  # 5
        json.dumps({"messages": [U, {"role": "assistant", "content": None}]}).encode(),  # line 6
        json.dumps({"messages": [U, {"role": "assistant", "content": 12}]}).encode(),    # line 7
        b"   ",                                                                          # line 8: blank
        json.dumps({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}).encode(),
        json.dumps({"instruction": "i", "output": "o"}).encode(),                        # line 10, no final newline
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\r\n".join(lines[:4]) + b"\r\n" + b"\n".join(lines[4:]))

    items = list(iter_records(path))
    assert len(items) == 8  # blank lines are not records
    result = load_data(path)
    assert result.total == 8 and len(result.conversations) == 3 and len(result.rejected) == 5
    assert [c.id for c in result.conversations] == ["good-1", "mixed-6", "mixed-7"]
    assert [c.source.line for c in result.conversations] == [1, 9, 10]
    assert [c.format for c in result.conversations] == ["messages", "sharegpt", "alpaca"]
    assert result.format == "messages"  # ties go to the first seen

    bad = {r.source.line: r for r in result.rejected}
    assert sorted(bad) == [3, 4, 5, 6, 7]
    assert bad[3].reasons == ["line 3: invalid JSON (Expecting ',' delimiter: column 49)"]
    assert bad[3].record == lines[2].decode() and bad[3].id == "mixed-1"
    assert bad[4].reasons == ["line 4: not valid UTF-8 (byte 0xe9 at column 16)"]
    assert bad[4].record == '{"prompt": "caf\ufffd", "completion": "ok"}'
    assert bad[5].id == "r-role" and bad[5].reasons == [
        "message 1 has unknown role 'narrator' (expected one of system, user, assistant, tool or their ShareGPT names)"]
    assert bad[5].record == {"id": "r-role", "messages": [U, {"role": "narrator", "content": "x"}]}
    assert bad[6].reasons == ["message 1 (assistant) has no content"]
    assert bad[7].reasons == ["message 1 (assistant) content is a number, expected a string or a list of parts"]
    assert bad[7].to_dict()["source"] == f"{path}:line 7"


def test_jsonl_with_bom_and_ndjson_extension(tmp_path):
    path = tmp_path / "x.ndjson"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n")
    result = load_data(path)
    assert len(result.conversations) == 1 and not result.rejected


def test_json_list_dict_container_and_single_record(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps([GOOD, {"text": "x"}, GOOD]))
    result = load_data(tmp_path / "list.json")
    assert (len(result.conversations), len(result.rejected)) == (2, 1)
    assert result.rejected[0].source == Source(str(tmp_path / "list.json"), row=1)
    assert result.rejected[0].id == "list-1"
    for key in ("data", "train", "examples"):
        (tmp_path / f"{key}.json").write_text(json.dumps({key: [GOOD, GOOD, GOOD]}))
        assert len(load_data(tmp_path / f"{key}.json").conversations) == 3
    (tmp_path / "one.json").write_text(json.dumps({"prompt": "p", "completion": "c"}))
    [conv] = load_data(tmp_path / "one.json").conversations
    assert conv.id == "one-0" and conv.source == Source(str(tmp_path / "one.json"), row=0)


def test_truncated_json_raises_data_error_naming_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(json.dumps([GOOD, GOOD])[:-20])
    with pytest.raises(DataError) as info:
        iter_records(path)
    message = str(info.value)
    assert str(path) in message and "line 1, column" in message and "truncated" in message
    with pytest.raises(DataError, match="broken.json"):
        load_data(path)


def test_invalid_json_in_the_middle(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"messages": []},\n  {"messages": [] oops}\n]')
    with pytest.raises(DataError, match=r"bad\.json is not valid JSON: Expecting ',' delimiter at line 3, column 19$"):
        iter_records(path)


def test_json_scalar_empty_and_non_utf8(tmp_path):
    (tmp_path / "n.json").write_text("42")
    with pytest.raises(DataError, match="top-level JSON value is a number"):
        load_data(tmp_path / "n.json")
    (tmp_path / "e.json").write_text("  \n")  # no records, like an empty .jsonl (the checks report no-records)
    assert load_data(tmp_path / "e.json").total == 0
    (tmp_path / "l.json").write_bytes(b'[{"prompt": "caf\xe9"}]')
    with pytest.raises(DataError, match="l.json is not UTF-8"):
        load_data(tmp_path / "l.json")


def test_json_lines_named_json_are_read_as_lines(tmp_path):
    path = tmp_path / "lines.json"
    path.write_text(json.dumps(GOOD) + "\n" + "{bad\n" + json.dumps(GOOD) + "\n")
    result = load_data(path)
    assert (len(result.conversations), len(result.rejected)) == (2, 1)
    assert result.rejected[0].source == Source(str(path), line=2)


def test_missing_path_unknown_extension_unknown_format(tmp_path):
    with pytest.raises(DataError, match=r"^data file not found: .*nope\.jsonl$"):
        iter_records(tmp_path / "nope.jsonl")
    (tmp_path / "d.csv").write_text("a,b\n")
    with pytest.raises(DataError, match=r"unsupported file type '\.csv' .*\.jsonl, \.ndjson, \.json, \.parquet"):
        load_data(tmp_path / "d.csv")
    (tmp_path / "ok.jsonl").write_text(json.dumps(GOOD))
    with pytest.raises(DataError, match="unknown format 'chatml'"):
        load_data(tmp_path / "ok.jsonl", fmt="chatml")


def test_parquet_round_trip(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [
        {"id": "p0", "messages": [
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 2}'}}]},
            {"role": "tool", "content": "4", "name": "add"},
            {"role": "assistant", "content": "4", "loss_weight": 1.0},
        ], "tools": '[{"name": "add"}]'},
        {"id": "p1", "messages": [{"role": "user", "content": "hi"}, {"role": "narrator", "content": "x"}],
         "tools": ""},
        {"id": "p2", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}],
         "tools": None},
    ] * 700  # 2100 rows: more than one batch
    path = tmp_path / "chat.parquet"
    pq.write_table(pa.Table.from_pylist(records), path, row_group_size=500)

    result = load_data(path)
    assert result.total == 2100 and len(result.rejected) == 700
    first = result.conversations[0]
    assert first.id == "p0" and first.source == Source(str(path), row=0) and first.tools == [{"name": "add"}]
    # Parquet gives every struct every key (missing ones are None): they must read as absent.
    assert first.messages == [
        Message("user", "What is 2+2?"),
        Message("assistant", "", tool_calls=[
            {"type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 2}'}}]),
        Message("tool", "4", name="add"),
        Message("assistant", "4", trainable=True, loss_weight=1.0),
    ]
    assert result.rejected[0].source == Source(str(path), row=1)
    assert result.rejected[-1].source.row == 2098
    assert [m.content for m in result.conversations[-1].messages] == ["hi", "hey"]
    limited = load_data(path, limit=5)
    assert (limited.total, len(limited.conversations)) == (5, 3)  # p0 p1 p2 p0 p1


def test_damaged_parquet(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="bad.parquet is not a readable Parquet file"):
        iter_records(path)


def test_save_to_disk_dataset_and_dataset_dict(tmp_path):
    import datasets

    rows = [{"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}],
             "system": "S" if i % 2 else ""} for i in range(5)]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    result = load_data(tmp_path / "ds")
    assert result.total == 5 and not result.rejected and result.format == "sharegpt"
    assert pairs(result.conversations[1]) == [("system", "S"), ("user", "q1"), ("assistant", "a1")]
    assert pairs(result.conversations[0]) == [("user", "q0"), ("assistant", "a0")]
    assert result.conversations[4].source == Source(str(tmp_path / "ds"), row=4)
    assert result.conversations[4].id == "ds-4"

    other = datasets.Dataset.from_list([{"prompt": "p", "completion": "c"}])
    datasets.DatasetDict({"validation": other, "train": datasets.Dataset.from_list(rows)}).save_to_disk(
        str(tmp_path / "dd"))
    assert load_data(tmp_path / "dd").total == 5  # the train split
    datasets.DatasetDict({"test": other}).save_to_disk(str(tmp_path / "dt"))
    assert load_data(tmp_path / "dt").format == "prompt_completion"  # no train split: the first


def test_folder_of_files_in_sorted_order(tmp_path):
    write_jsonl(tmp_path / "b.jsonl", [{"prompt": "b", "completion": "1"}, {"text": "bad"}])
    (tmp_path / "a.json").write_text(json.dumps([{"prompt": "a", "completion": "1"}]))
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "dataset_info.json").write_text(json.dumps({"mydata": {"file_name": "a.json"}}))  # LLaMA-Factory config
    result = load_data(tmp_path)
    assert [c.id for c in result.conversations] == ["a-0", "b-0"] and result.rejected[0].id == "b-1"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="folder with no"):
        load_data(tmp_path / "empty")


# --------------------------------------------------------------------------------------------- load_data / load_text


def test_load_data_limit_and_format_vote(tmp_path):
    path = tmp_path / "big.jsonl"
    write_jsonl(path, [{"prompt": "p", "completion": "c"}] * 3 + [GOOD] * 5)
    assert load_data(path).format == "messages"
    limited = load_data(path, limit=4)
    assert limited.total == 4 and limited.format == "prompt_completion"
    assert load_data(path, limit=0).total == 0
    assert load_data(path, fmt="messages").rejected[0].reasons == ["record has no 'messages' or 'conversations' list"]
    assert load_data([]).format is None
    assert load_data(GOOD).total == 1  # one record dict


def test_load_text_json_and_jsonl():
    result = load_text(json.dumps([GOOD, {"text": "x"}]))
    assert result.total == 2 and result.conversations[0].source == Source("<pasted>", row=0)
    assert result.rejected[0].id == "pasted-1"
    jsonl = json.dumps(GOOD) + "\n\n" + '{"messages": [}' + "\n" + json.dumps({"prompt": "a", "completion": "b"})
    result = load_text(jsonl, name="<clipboard>")
    assert result.total == 3 and [c.source.line for c in result.conversations] == [1, 4]
    assert result.rejected[0].reasons == ["line 3: invalid JSON (Expecting value: column 15)"]
    assert result.conversations[0].id == "clipboard-0"
    assert load_text(json.dumps(GOOD)).total == 1
    assert load_text('{"prompt": "a\u2028b", "completion": "c"}\n' + json.dumps(GOOD)).total == 2


def test_load_text_broken_json_and_empty():
    with pytest.raises(DataError, match=r"<pasted> is not valid JSON: .*truncated"):
        load_text('[{"messages": [{"role": "user", "content": "hi"}')
    with pytest.raises(DataError, match="is not valid JSON"):
        load_text('{\n  "messages": [\n    {"role": "user", "content": "hi"}\n  ]\n')
    with pytest.raises(DataError, match="empty"):
        load_text("  \n ")


# --------------------------------------------------------------------------------------------- streaming, invariants


def test_jsonl_is_streamed(tmp_path):
    path = tmp_path / "big.jsonl"
    record = {"messages": [{"role": "user", "content": "x" * 400}, {"role": "assistant", "content": "y" * 400}]}
    with open(path, "w") as f:
        for i in range(6000):
            f.write(json.dumps({"id": i, **record}) + "\n")
    assert path.stat().st_size > 5_000_000
    items = iter_records(path)
    assert isinstance(items, types.GeneratorType)
    tracemalloc.start()
    count = sum(1 for _ in items)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 6000 and peak < 1_000_000, peak


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
ROLE_NAMES = st.sampled_from(sorted(messages.ROLE_ALIASES) + ["narrator", ""])
PART = st.fixed_dictionaries({"type": st.sampled_from(["text", "reasoning", "tool_call", "image"]),
                              "value": st.text(max_size=5) | JSON_VALUES})
MESSAGE = st.fixed_dictionaries(
    {"role": ROLE_NAMES},
    optional={"content": st.text(max_size=5) | st.none() | st.lists(PART, max_size=3) | JSON_VALUES,
              "tool_calls": JSON_VALUES, "loss_weight": JSON_VALUES, "name": JSON_VALUES, "train": JSON_VALUES},
)
RECORD = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries({"messages": st.lists(MESSAGE, max_size=4)}, optional={"tools": JSON_VALUES}),
    st.fixed_dictionaries({"conversations": st.lists(MESSAGE, max_size=4)}, optional={"system": JSON_VALUES}),
    st.fixed_dictionaries({"prompt": JSON_VALUES | st.text(), "completion": JSON_VALUES | st.lists(MESSAGE)}),
    st.fixed_dictionaries({"instruction": JSON_VALUES | st.text()},
                          optional={"input": JSON_VALUES, "output": JSON_VALUES | st.text(), "history": JSON_VALUES}),
)


@settings(max_examples=300, deadline=None)
@given(RECORD)
def test_normalize_only_ever_raises_record_error(record):
    try:
        conv = normalize_record(record)
    except RecordError as e:
        assert str(e)
        return
    assert conv.messages and all(m.role in ROLES and isinstance(m.content, str) for m in conv.messages)


@settings(max_examples=100, deadline=None)
@given(st.lists(RECORD, max_size=8))
def test_count_invariant(records):
    result = load_data(records)
    assert len(result.conversations) + len(result.rejected) == len(records)
    assert all(isinstance(r, Rejected) and r.reasons for r in result.rejected)


# --------------------------------------------------------------------------------------------- the real corpus


CORPUS_FILES = {
    "glaive_toolcall_en_demo.json": (300, "sharegpt"),
    "v1_sft_demo.jsonl": (500, "messages"),
    "reason_tool_use_demo_50.jsonl": (50, "messages"),
    "alpaca_en_demo.json": (999, "alpaca"),
    "identity.json": (91, "alpaca"),
}


@pytest.mark.parametrize("name", sorted(CORPUS_FILES))
def test_corpus_file_fully_accepted(corpus, name):
    count, fmt = CORPUS_FILES[name]
    result = load_data(corpus / "data" / name)
    assert result.rejected == [] and len(result.conversations) == count and result.format == fmt
    assert all(m.role in ROLES for c in result.conversations for m in c.messages)


def test_corpus_glaive(corpus):
    convs = load_data(corpus / "data" / "glaive_toolcall_en_demo.json").conversations
    first = convs[0]
    assert first.id == "glaive_toolcall_en_demo-0"
    assert first.tools and all(isinstance(t, dict) for t in first.tools) and first.tools[0]["name"] == "search_recipes"
    assert [m.role for m in first.messages][:6] == ["user", "assistant", "user", "assistant", "tool", "assistant"]
    call = first.messages[3]
    assert call.content == "" and call.tool_calls[0]["function"]["name"] == "search_recipes"
    assert call.tool_calls == [{"type": "function", "function": {
        "name": "search_recipes", "arguments": {"ingredients": ["chicken", "bell peppers", "rice"]}}}]
    assert first.messages[4].content.startswith('{"recipes": [')
    # every function_call turn in the file parsed into a tool call; records with "[]" tools have none
    assert sum(1 for c in convs for m in c.messages if m.tool_calls) == 211
    assert sum(1 for c in convs if c.tools is None) == 109


def test_corpus_v1_sft(corpus):
    convs = load_data(corpus / "data" / "v1_sft_demo.jsonl").conversations
    first = convs[0]
    assert first.source.line == 1
    assert first.messages == [
        Message("user", "hi", trainable=False, loss_weight=0.0),
        Message("assistant", "Hello! I am {{name}}, an AI assistant developed by {{author}}. "
                "How can I assist you today?", trainable=True, loss_weight=1.0),
    ]
    assert all(m.trainable is (m.role == "assistant") for c in convs for m in c.messages)


def test_corpus_reason_tool_use(corpus):
    convs = load_data(corpus / "data" / "reason_tool_use_demo_50.jsonl").conversations
    assert all(isinstance(c.tools, list) for c in convs[:1])
    assert convs[0].tools[0]["function"]["name"] == "get_device_asset_by_identifier"
    second = convs[1].messages
    assert [m.role for m in second[:5]] == ["system", "user", "assistant", "tool", "assistant"]
    call = second[2]
    assert call.content == "" and call.reasoning.startswith("Alright, the user wants information about")
    assert call.tool_calls == [{"type": "function", "function": {"name": "get_movie_details",
                                                                 "arguments": {"title": "Inception"}}}]
    assert second[3].content.startswith('[{"title": "Inception"')
    messages = [m for c in convs for m in c.messages]
    assert sum(len(m.tool_calls or []) for m in messages) == 68  # every tool_call part
    assert sum(1 for m in messages if m.role == "assistant" and m.reasoning) == 112  # every reasoning part
    assert sum(1 for c in convs if c.tools is None) == 2  # the two records with "[]"


def test_corpus_alpaca_and_identity(corpus):
    alpaca = load_data(corpus / "data" / "alpaca_en_demo.json").conversations
    assert pairs(alpaca[0])[0] == ("user", "Describe a process of making crepes.")
    raw = json.loads((corpus / "data" / "alpaca_en_demo.json").read_text())
    with_input = next(i for i, r in enumerate(raw) if r["input"])
    assert alpaca[with_input].messages[0].content == raw[with_input]["instruction"] + "\n" + raw[with_input]["input"]
    identity = load_data(corpus / "data" / "identity.json").conversations
    assert pairs(identity[0]) == [("user", "hi"), ("assistant", "Hello! I am {{name}}, an AI assistant developed by "
                                                               "{{author}}. How can I assist you today?")]


def test_corpus_folder(corpus):
    result = load_data(corpus / "data")
    assert result.total == sum(n for n, _ in CORPUS_FILES.values()) and not result.rejected
    assert result.format == "alpaca"


def test_tool_call_id_is_kept_and_passed_to_templates():
    record = {"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": {}}}]},
        {"role": "tool", "content": "7C", "tool_call_id": "call_1"},
        {"role": "assistant", "content": "7C."},
    ]}
    conv = normalize_record(record)
    assert conv.messages[2].tool_call_id == "call_1"
    assert conv.template_messages()[2] == {"role": "tool", "content": "7C", "tool_call_id": "call_1"}
    with pytest.raises(RecordError, match="tool_call_id"):
        normalize_record({"messages": [{"role": "tool", "content": "x", "tool_call_id": ["bad"]}]})


def test_lone_surrogate_is_rejected_with_a_reason(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "hi \\ud83d"}, {"role": "assistant", "content": "x"}]}\n'
                    '{"messages": [{"role": "user", "content": "ok \\ud83d\\ude00"}, {"role": "assistant", "content": "y"}]}\n')
    result = load_data(str(path))
    assert len(result.conversations) == 1 and result.conversations[0].messages[0].content == "ok \U0001F600"
    assert len(result.rejected) == 1
    assert "lone surrogate" in result.rejected[0].reasons[0] and "message 0 (user)" in result.rejected[0].reasons[0]


def test_lone_surrogates_are_rejected_wherever_the_template_would_see_them():
    base = {"role": "assistant", "content": None,
            "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"q": "x \ud83d"}}}]}
    with pytest.raises(RecordError, match=r"message 1 \(assistant\) tool_calls has a lone surrogate"):
        normalize_record({"messages": [{"role": "user", "content": "hi"}, base]})
    with pytest.raises(RecordError, match="tools has a lone surrogate"):
        normalize_record({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}],
                          "tools": [{"name": "f", "description": "bad \udc00"}]})
    with pytest.raises(RecordError, match="the record id has a lone surrogate"):
        normalize_record({"id": "x\ud83d", "messages": [{"role": "user", "content": "hi"}]})


# --------------------------------------------------------------------------------------------- hostile input
# Each of these crashed a whole run (a traceback, nothing written) or refused a whole file. Now each is one rejected
# record with the reason, and the records around it load.

HUGE_NUMBER = '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], "n": ' \
              + "9" * 5000 + "}"
DEEP = "[" * 100_000 + "]" * 100_000
DEEP_IN_CONTENT = '{"messages": [{"role": "user", "content": ' + DEEP + '}, {"role": "assistant", "content": "x"}]}'
DEEP_OBJECT = '{"a": ' * 50_000 + "1" + "}" * 50_000


def _nested(depth: int) -> dict:
    """A record whose message content is a list nested ``depth`` levels below the record (built without recursion)."""
    value: object = "x"
    for _ in range(depth - 3):  # record -> messages -> message -> content: three levels before the lists
        value = [value]
    return {"messages": [{"role": "user", "content": value}, {"role": "assistant", "content": "Yo"}]}


@pytest.mark.parametrize("bad, fragment", [
    (HUGE_NUMBER, "holds a number of 5,000 digits"),
    (DEEP, "JSON nested too deeply to read"),
    (DEEP_IN_CONTENT, "JSON nested too deeply to read"),
    (DEEP_OBJECT, "JSON nested too deeply to read"),
    (json.dumps(_nested(150)), "nested 101 or more levels deep"),
])
def test_one_hostile_line_among_a_thousand_good_ones(tmp_path, bad, fragment):
    path = tmp_path / "data.jsonl"
    good = json.dumps(GOOD) + "\n"
    path.write_text(good * 500 + bad + "\n" + good * 500, encoding="utf-8")
    result = load_data(path)
    assert (len(result.conversations), len(result.rejected)) == (1000, 1)
    rej = result.rejected[0]
    assert rej.source == Source(str(path), line=501) and fragment in rej.reasons[0], rej.reasons
    assert rej.record is None or (isinstance(rej.record, str) and len(rej.record) < 1100)  # an excerpt, not the lot


def _tool_schema_record(depth: int) -> dict:
    """A record whose deepest object sits ``depth`` levels down: record (1) -> tools (2) -> tool (3) -> function (4)
    -> parameters (5) -> items -> ... -> {"type": "string"} (depth)."""
    value: object = {"type": "string"}
    for _ in range(depth - 5):
        value = {"items": value}
    return {"tools": [{"type": "function", "function": {"name": "f", "parameters": value}}], **GOOD}


def test_nesting_up_to_the_limit_loads():
    assert records.MAX_DEPTH == 100
    record = _tool_schema_record(100)
    assert records._shape_problem(record) is None
    assert normalize_record(record).tools == record["tools"]
    with pytest.raises(RecordError, match="nested 101 or more levels deep"):
        normalize_record(_tool_schema_record(101))


def test_in_memory_records_too_deep_or_with_huge_numbers_are_rejected():
    """What the app passes in (records already parsed) gets the same bounds as what files hold."""
    huge = {**GOOD, "id": 10**5000}
    result = load_data([GOOD, _nested(5000), {**GOOD, "n": 10**5000}, huge, GOOD])
    assert [c.id for c in result.conversations] == ["memory-0", "memory-4"]
    reasons = [r.reasons[0] for r in result.rejected]
    assert "nested 101 or more levels deep" in reasons[0]
    assert "number of more than 4,300 digits" in reasons[1] and "number of more than 4,300 digits" in reasons[2]
    assert [r.id for r in result.rejected] == ["memory-1", "memory-2", "memory-3"]  # str(10**5000) would raise
    assert all(r.record is None for r in result.rejected)  # not kept: writing them back out would fail the same way


def test_a_json_file_reads_item_by_item_when_one_item_is_too_deep(tmp_path):
    path = tmp_path / "data.json"
    path.write_text("[" + json.dumps(GOOD) + ", " + DEEP_IN_CONTENT + ", " + json.dumps(GOOD) + ", "
                    + HUGE_NUMBER + ", " + json.dumps({"id": "s", **GOOD}) + "]", encoding="utf-8")
    result = load_data(path)
    assert [c.id for c in result.conversations] == ["data-0", "data-2", "s"]
    assert [(r.source.row, r.reasons[0].split(":")[0]) for r in result.rejected] == [(1, "record 1"), (3, "record 3")]
    assert "too deeply" in result.rejected[0].reasons[0] and "5,000 digits" in result.rejected[1].reasons[0]


def test_a_top_level_json_document_nested_too_deep_is_one_rejected_record(tmp_path):
    for text in (DEEP, DEEP_OBJECT):
        path = tmp_path / "deep.json"
        path.write_text(text, encoding="utf-8")
        result = load_data(path)
        assert result.total == 1 and len(result.rejected) == 1, result
        assert "too deeply" in result.rejected[0].reasons[0]
    # pasted text (the app) takes the same road
    result = load_text(json.dumps(GOOD) + "\n" + DEEP_IN_CONTENT + "\n" + json.dumps(GOOD))
    assert (len(result.conversations), len(result.rejected)) == (2, 1)
    result = load_text("[" + json.dumps(GOOD) + "," + HUGE_NUMBER + "]")
    assert (len(result.conversations), len(result.rejected)) == (1, 1)


def test_json_text_inside_a_record_is_bounded_too():
    deep_args = {"role": "assistant", "content": None,
                 "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "x"}}]}
    call = {"from": "function_call", "value": json.dumps({"name": "f", "arguments": {}})[:-2] + DEEP + "}"}
    result = load_data([{"conversations": [{"from": "human", "value": "Hi"}, call]},
                        {"messages": [{"role": "user", "content": "Hi"}, deep_args], "tools": DEEP},
                        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}],
                         "tools": "[" + HUGE_NUMBER + "]"}])
    assert result.total == 3
    assert "tools: JSON nested too deeply" in result.rejected[-2].reasons[0]
    assert "tools: holds a number of 5,000 digits" in result.rejected[-1].reasons[0]


def test_a_too_long_line_is_skipped_without_being_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MAX_RECORD_BYTES", 1000)  # read by files._bounded_lines and jsonl_item
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + "x" * 5000 + "\n" + json.dumps(GOOD) + "\n" + "y" * 3000,
                    encoding="utf-8")
    items = list(iter_records(path))
    assert [type(x).__name__ for x in items] == ["Conversation", "Rejected", "Conversation", "Rejected"]
    assert items[1].reasons == ["line 2: 5,001 bytes long, more than the 1,000 one record may hold: not read (is "
                                "the file JSON Lines, one record a line?)"]
    assert items[3].source.line == 4 and "3,000 bytes long" in items[3].reasons[0]
    assert len(items[1].record) < 1100


def test_a_line_is_read_in_bounded_pieces(monkeypatch):
    """A stream with no line end (what /dev/zero gives) is read 1 MiB at a time and never kept whole."""
    import io

    reads = []

    class Endless(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, b):
            n = len(b)
            if sum(reads) > 40 * 2**20:
                return 0
            b[:n] = b"\0" * n
            reads.append(n)
            return n

    f = io.BufferedReader(Endless(), buffer_size=2**16)
    tracemalloc.start()
    items = list(files._bounded_lines(f, limit=2**20))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(items) == 1 and isinstance(items[0], files._LongLine) and items[0].size > 40 * 2**20
    assert peak < 8 * 2**20, peak


def test_devices_are_refused_and_pipes_are_read(tmp_path):
    link = tmp_path / "zero.jsonl"
    link.symlink_to("/dev/zero")
    with pytest.raises(DataError, match=r"zero\.jsonl is a character device, not a file of data: refused"):
        iter_records(link)
    with pytest.raises(DataError, match="character device"):
        load_data(link)


def test_utf16_jsonl_and_json_are_decoded(tmp_path):
    text = json.dumps(GOOD) + "\n" + json.dumps({"prompt": "Grüße", "completion": "ok"}) + "\n"
    for encoding, name in (("utf-16", "le-bom.jsonl"), ("utf-16-be", "be.jsonl"), ("utf-32", "u32.jsonl")):
        data = text.encode(encoding)
        if encoding == "utf-16-be":
            data = b"\xfe\xff" + data
        (tmp_path / name).write_bytes(data)
        result = load_data(tmp_path / name)
        assert (len(result.conversations), len(result.rejected)) == (2, 0), (name, result.rejected)
        assert result.conversations[1].messages[0].content == "Grüße"
    (tmp_path / "list.json").write_bytes(json.dumps([GOOD, GOOD]).encode("utf-16"))
    assert len(load_data(tmp_path / "list.json").conversations) == 2
    (tmp_path / "nobom.jsonl").write_bytes(text.encode("utf-16-le"))
    with pytest.raises(DataError, match="looks like UTF-16 text without a byte-order mark"):
        load_data(tmp_path / "nobom.jsonl")


def test_one_unreadable_file_in_a_folder_is_rejected_and_the_rest_load(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [GOOD, GOOD])
    (tmp_path / "b.json").write_text("[" + json.dumps(GOOD) + ", {broken", encoding="utf-8")
    (tmp_path / "c.jsonl").symlink_to("/dev/zero")
    (tmp_path / "d.parquet").write_bytes(b"not parquet")
    write_jsonl(tmp_path / "e.jsonl", [GOOD])
    result = load_data(tmp_path)
    assert len(result.conversations) == 3
    assert [(r.id, r.reasons[0].split(":")[0]) for r in result.rejected] == [
        ("b.json", "the file could not be read"), ("c.jsonl", "the file could not be read"),
        ("d.parquet", "the file could not be read")]
    assert "character device" in result.rejected[1].reasons[0] and "not valid JSON" in result.rejected[0].reasons[0]


def test_no_records_is_an_empty_result_for_every_container(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "blank.jsonl").write_text("\n" * 100_000)
    (tmp_path / "empty.json").write_bytes(b"")
    (tmp_path / "list.json").write_text("[]")
    pq.write_table(pa.table({"messages": pa.array([], type=pa.list_(pa.struct([("role", pa.string()),
                                                                                ("content", pa.string())])))}),
                   tmp_path / "zero.parquet")
    for name in ("empty.jsonl", "blank.jsonl", "empty.json", "list.json", "zero.parquet"):
        assert load_data(tmp_path / name).total == 0, name


@pytest.mark.parametrize("value, shown", [("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf")])
def test_loss_weight_nan_or_infinite_is_rejected(value, shown):
    line = ('{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo", '
            f'"loss_weight": {value}}}]}}')
    result = load_text(line)
    assert len(result.rejected) == 1
    assert result.rejected[0].reasons == [f"message 1 loss_weight is {shown}, expected a finite number (0 = do not "
                                          "train)"]
    assert load_text(line.replace(value, "0.0")).conversations[0].messages[1].trainable is False


def test_a_record_id_with_a_lone_surrogate_is_rejected_and_printable():
    result = load_text('{"id": "bad\\ud800", "messages": [{"role": "user", "content": "Hi"}, '
                       '{"role": "assistant", "content": "Yo"}]}')
    rej = result.rejected[0]
    assert rej.id == "bad\\ud800" and rej.id.encode("utf-8")
    assert "the record id has a lone surrogate" in rej.reasons[0]


def test_a_number_of_exactly_4300_digits_is_not_called_longer(tmp_path):
    """Issue 21: 4,300 digits is what Python still converts; the message said "more than 4,300 digits" for it."""
    assert not records._huge_int(10 ** 4300 - 1) and records._huge_int(10 ** 4300)
    assert records._huge_int(-(10 ** 4300)) and not records._huge_int(-(10 ** 4300 - 1))
    p = tmp_path / "n.jsonl"
    rows = [{"prompt": "Hi", "completion": "Yo", "n": 10 ** 4300 - 1}]
    p.write_text(json.dumps(rows[0]) + "\n" + '{"prompt": "Hi", "completion": "Yo", "n": 1' + "0" * 4300 + "}\n")
    result = loaders.load_data(p)
    assert len(result.conversations) == 1
    (bad,) = result.rejected
    assert "4,301 digits" in bad.reasons[0] and "4,300 digits" in bad.reasons[0]


def test_a_fifo_in_a_data_folder_is_rejected_with_a_reason_and_never_opened(tmp_path):
    import os
    import threading

    (tmp_path / "a.jsonl").write_text('{"prompt": "Hi", "completion": "Yo"}\n')
    os.mkfifo(tmp_path / "b.jsonl")
    out = []
    t = threading.Thread(target=lambda: out.append(list(loaders.iter_records(tmp_path))), daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "reading a folder with a FIFO in it blocked"
    items = out[0]
    assert [type(x).__name__ for x in items] == ["Conversation", "Rejected"]
    assert items[1].id == "b.jsonl" and "not a regular file" in items[1].reasons[0]
