"""The record formats: recognise which one a record is in, and build its ``Conversation``.

    messages           {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    sharegpt           {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]}
    prompt_completion  {"prompt": "Hi", "completion": "Yo"}                  (TRL; lists of messages work too)
    alpaca             {"instruction": "Hi", "input": "", "output": "Yo"}    (LLaMA-Factory)

``detect_format`` reads a record's keys (and for a message list, its first item's keys); ``fmt=`` forces a format
instead (a name ``_check_fmt`` accepts: "openai" is "messages"). Each format has one builder,
``_from_<format>(record) -> (messages, tools)``, listed in ``_BUILDERS``; the messages themselves are read by
messages.py. ``normalize_record`` runs the detection, the builder and what every format shares (the id, a lone
surrogate refused wherever the template would render it). ``_convert`` is the readers' version that never raises:
one record in, a ``Conversation`` or a ``Rejected`` with its reasons out.

Worked example: {"instruction": "Add", "input": "2 and 2", "output": "4", "system": "Be brief."} is alpaca (it has
instruction/output) and becomes system "Be brief.", user "Add\\n2 and 2", assistant "4": instruction and input are
joined with ``ALPACA_INPUT_SEPARATOR``, as LLaMA-Factory joins them.

Left out on purpose: preference data (chosen/rejected), plain pretraining text, column remapping (LLaMA-Factory's
``dataset_info.json`` ``columns``/``tags``), and message keys a ``Message`` has no field for, which are not passed
on. Checks on what a conversation *says* (role order, empty turns, leaks) belong to inspector/checks, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inspector.conversations import Conversation, Message, Rejected, Source
from inspector.data.messages import _messages, _tools, _with_system
from inspector.data.records import _a, _raw_record_id, _reasons, _record_id, _shape_problem
from inspector.errors import DataError, RecordError

FORMATS = ("messages", "sharegpt", "prompt_completion", "alpaca")
_FORMAT_ALIASES = {"openai": "messages", "prompt-completion": "prompt_completion",
                   "prompt/completion": "prompt_completion"}

# LLaMA-Factory's Alpaca converter joins instruction and input with "\n" ("\n".join([instruction, input]), empty
# ones skipped) in src/llamafactory/data/converter.py; its v1 converter concatenates them with nothing between.
ALPACA_INPUT_SEPARATOR = "\n"

_MESSAGE_LIST_KEYS = ("messages", "conversations", "conversation")


def _check_fmt(fmt: str | None) -> str | None:
    """Validate an explicit format name (a user setting, so a DataError rather than a ValueError)."""
    if fmt is None:
        return None
    name = _FORMAT_ALIASES.get(str(fmt).strip().lower(), str(fmt).strip().lower())
    if name not in FORMATS:
        raise DataError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)} "
                        "(or none, to detect it per record)")
    return name


# ---------------------------------------------------------------------------------------------------------------
# detection


def _sharegpt_items(items: Any) -> bool | None:
    """True if the list's first object uses from/value, False if it uses role, None if it cannot tell."""
    if isinstance(items, list):
        for item in items:
            if isinstance(item, Mapping):
                if item.get("from") is not None:
                    return True
                if item.get("role") is not None:
                    return False
                return None
    return None


def detect_format(record: Any) -> str:
    """Which of the four formats a record is in, from its keys (and for a message list, its items' keys).

    >>> detect_format({"messages": [{"role": "user", "content": "Hi"}]})
    'messages'
    >>> detect_format({"conversations": [{"from": "human", "value": "Hi"}]})
    'sharegpt'
    >>> detect_format({"prompt": "2+2=", "completion": "4"}), detect_format({"instruction": "Add", "output": "4"})
    ('prompt_completion', 'alpaca')
    """
    if not isinstance(record, Mapping):
        raise RecordError(f"record is {_a(record)}, expected a JSON object")
    for key in _MESSAGE_LIST_KEYS:
        items = record.get(key)
        if items is not None:
            sharegpt = _sharegpt_items(items)
            if sharegpt is None:
                sharegpt = key != "messages"
            return "sharegpt" if sharegpt else "messages"
    if record.get("prompt") is not None or record.get("completion") is not None:
        return "prompt_completion"
    if record.get("instruction") is not None or record.get("output") is not None:
        return "alpaca"
    keys = ", ".join(map(str, list(record)[:10])) or "none"
    raise RecordError(
        "record has none of the keys messages, conversations, prompt/completion, instruction/output "
        f"(keys found: {keys})"
    )


def _from_message_list(record: Mapping) -> tuple[list[Message], list[dict[str, Any]] | None]:
    key = next((k for k in _MESSAGE_LIST_KEYS if record.get(k) is not None), None)
    if key is None:
        raise RecordError("record has no 'messages' or 'conversations' list")
    return _messages(record[key], key), _tools(record.get("tools"))


def _from_messages(record: Mapping):
    return _from_message_list(record)


def _from_sharegpt(record: Mapping):
    messages, tools = _from_message_list(record)
    return _with_system(record, messages), tools


def _from_prompt_completion(record: Mapping):
    prompt, completion = record.get("prompt"), record.get("completion")
    if prompt is None:
        raise RecordError("record has 'completion' but no 'prompt'")
    if completion is None:
        extra = " (preference data with chosen/rejected is not supported)" if "chosen" in record else ""
        raise RecordError(f"record has 'prompt' but no 'completion'{extra}")
    messages: list[Message] = []
    for key, value, role in (("prompt", prompt, "user"), ("completion", completion, "assistant")):
        if isinstance(value, str):
            messages.append(Message(role, value))
        elif isinstance(value, list):
            messages.extend(_messages(value, key, label=f"{key} message", allow_empty=True))
        else:
            raise RecordError(f"{key} is {_a(value)}, expected a string or a list of messages")
    if not messages:
        raise RecordError("no messages")
    return _with_system(record, messages), _tools(record.get("tools"))


def _from_alpaca(record: Mapping):
    instruction, extra, output = record.get("instruction"), record.get("input"), record.get("output")
    if instruction is None:
        raise RecordError("alpaca record has no 'instruction'")
    if output is None:
        raise RecordError("alpaca record has no 'output'")
    for key, value in (("instruction", instruction), ("input", extra), ("output", output)):
        if value is not None and not isinstance(value, str):
            raise RecordError(f"{key} is {_a(value)}, expected a string")
    history = record.get("history")
    messages: list[Message] = []
    if history is not None:
        if not isinstance(history, list):
            raise RecordError(f"history is {_a(history)}, expected a list of [user, assistant] pairs")
        for i, pair in enumerate(history):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(s, str) for s in pair)):
                raise RecordError(f"history item {i} is not a [user, assistant] pair of strings")
            messages += [Message("user", pair[0]), Message("assistant", pair[1])]
    query = ALPACA_INPUT_SEPARATOR.join(s for s in (instruction, extra) if s)
    messages += [Message("user", query), Message("assistant", output)]
    return _with_system(record, messages), _tools(record.get("tools"))


_BUILDERS = {
    "messages": _from_messages,
    "sharegpt": _from_sharegpt,
    "prompt_completion": _from_prompt_completion,
    "alpaca": _from_alpaca,
}


def normalize_record(record: Any, *, fmt: str | None = None, source: Source | None = None,
                     index: int = 0) -> Conversation:
    """One raw record -> a Conversation, or RecordError(reason). ``fmt`` forces a format instead of detecting it.

    >>> c = normalize_record({"instruction": "Add 2 and 2", "input": "", "output": "4", "system": "Be brief."})
    >>> [(m.role, m.content) for m in c.messages], c.id, c.format
    ([('system', 'Be brief.'), ('user', 'Add 2 and 2'), ('assistant', '4')], 'record-0', 'alpaca')
    >>> normalize_record({"messages": [{"role": "narrator", "content": "Once"}]})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    inspector.errors.RecordError: message 0 has unknown role 'narrator' (expected one of system, user, ...)
    """
    problem = _shape_problem(record)
    if problem is not None:
        raise RecordError(problem)
    return _normalize(record, _check_fmt(fmt), source, index)


def _normalize(record: Any, fmt: str | None, source: Source | None, index: int) -> Conversation:
    """``normalize_record`` for a record whose shape was checked (``_shape_problem``)."""
    if fmt is None:
        fmt = detect_format(record)
    elif not isinstance(record, Mapping):
        raise RecordError(f"record is {_a(record)}, expected a JSON object")
    messages, tools = _BUILDERS[fmt](record)
    _check_encodable(messages, tools, _raw_record_id(record) or "")
    plain = fmt == "prompt_completion" and isinstance(record.get("prompt"), str) and isinstance(
        record.get("completion"), str)
    return Conversation(id=_record_id(record, source, index), messages=messages, tools=tools, source=source,
                        format=fmt, plain_text=plain)


def _check_encodable(messages: list[Message], tools: Any = None, record_id: str = "") -> None:
    """Reject text no tokenizer can take: lone UTF-16 surrogates (e.g. a JSON escape "\\ud83d" without its pair), in
    anything the template renders: message text, names, tool calls, tool schemas, and the record id.

    >>> _check_encodable([Message("user", "bad \\ud83d")])
    Traceback (most recent call last):
    ...
    inspector.errors.RecordError: message 0 (user) content has a lone surrogate '\\ud83d' at character 4: not valid Unicode text (a broken emoji escape?)
    """
    for i, m in enumerate(messages):
        for what, value in (("content", m.content), ("reasoning", m.reasoning), ("name", m.name),
                            ("tool_calls", m.tool_calls)):
            _refuse_surrogates(value, f"message {i} ({m.role}) {what}")
    _refuse_surrogates(tools, "tools")
    _refuse_surrogates(record_id, "the record id")


def _refuse_surrogates(value: Any, where: str) -> None:
    if isinstance(value, str):
        if value.isascii():
            return
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise RecordError(f"{where} has a lone surrogate {value[exc.start]!r} at character {exc.start}: not "
                              f"valid Unicode text (a broken emoji escape?)") from None
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _refuse_surrogates(key, where)
            _refuse_surrogates(item, where)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _refuse_surrogates(item, where)


def _convert(record: Any, fmt: str | None, source: Source, index: int, checked: bool = False
             ) -> Conversation | Rejected:
    """One record -> Conversation or Rejected. ``checked``: its shape was checked while parsing (``_loads``)."""
    problem = None if checked else _shape_problem(record)
    if problem is not None:  # not kept whole: writing it back out could fail the same way
        return Rejected(id=_record_id(record, source, index), source=source, reasons=[problem], record=None)
    try:
        return _normalize(record, fmt, source, index)
    except RecordError as e:
        return Rejected(id=_record_id(record, source, index), source=source, reasons=_reasons(e), record=record)
