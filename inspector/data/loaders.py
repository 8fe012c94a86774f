"""Read SFT data and normalize every record into a ``Conversation``.

Four record formats are understood, detected per record (or forced with ``fmt=``):

    messages           {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    sharegpt           {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]}
    prompt_completion  {"prompt": "Hi", "completion": "Yo"}                  (TRL; lists of messages work too)
    alpaca             {"instruction": "Hi", "input": "", "output": "Yo"}    (LLaMA-Factory)

in four containers: JSON Lines (.jsonl/.ndjson, streamed line by line), JSON (.json: a list of records, read
whole), Parquet (.parquet, streamed in batches) and a folder written by ``datasets`` ``save_to_disk`` (or a plain
folder of such files, read in sorted order).

The one rule: every input record gives exactly one output, a ``Conversation`` or a ``Rejected`` carrying its
reasons, so ``len(conversations) + len(rejected)`` is the number of records read. A bad record never raises out of
``iter_records``/``load_data``/``load_text``; only input that cannot be read at all raises ``DataError``.

Conventions: message numbers in reasons are 0-based positions in the record's list (``message 2`` is
``messages[2]``); JSONL lines are 1-based. Parts of a list content are concatenated as they are: nothing is added
between them, since the point is to show exactly what is trained on.

Left out on purpose: image/audio/video parts (rejected with a reason, never dropped), preference data
(chosen/rejected), plain pretraining text, hub ids/URLs, CSV, column remapping (LLaMA-Factory's
``dataset_info.json`` ``columns``/``tags``), and message keys a ``Message`` has no field for (``tool_call_id``, ...),
which are not passed on. Checks on what the conversation *says* (role order, empty turns, leaks) belong to the
checks, not here.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

from inspector.constants import ROLES
from inspector.conversations import Conversation, LoadResult, Message, Rejected, Source
from inspector.errors import DataError, RecordError

FORMATS = ("messages", "sharegpt", "prompt_completion", "alpaca")
_FORMAT_ALIASES = {"openai": "messages", "prompt-completion": "prompt_completion",
                   "prompt/completion": "prompt_completion"}

# Every role name a record may use, mapped onto constants.ROLES (matched case-insensitively).
ROLE_ALIASES = {
    "system": "system",
    "user": "user", "human": "user",
    "assistant": "assistant", "gpt": "assistant", "model": "assistant", "bot": "assistant",
    "function_call": "assistant",  # ShareGPT: an assistant turn whose value is the call
    "tool": "tool", "function": "tool", "observation": "tool", "ipython": "tool",
}
assert set(ROLE_ALIASES.values()) == set(ROLES)

SUPPORTED_EXTENSIONS = (".jsonl", ".ndjson", ".json", ".parquet")

# LLaMA-Factory's Alpaca converter joins instruction and input with "\n" ("\n".join([instruction, input]), empty
# ones skipped) in src/llamafactory/data/converter.py; its v1 converter concatenates them with nothing between.
ALPACA_INPUT_SEPARATOR = "\n"

_ID_KEYS = ("id", "conversation_id", "uuid")
_MESSAGE_LIST_KEYS = ("messages", "conversations", "conversation")
_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")
_JSON_CONTAINER_KEYS = ("data", "train", "examples")
_PARQUET_BATCH_ROWS = 1024
_UNKNOWN_ROLE_HINT = "expected one of system, user, assistant, tool or their ShareGPT names"

# Bounds on what one record may hold (far beyond any real conversation). A record past one is rejected with the
# reason and the rest load: nothing about it can exhaust memory or Python's stack further down.
MAX_DEPTH = 100  # objects and arrays inside each other (real records: under 10, tool schemas included)
MAX_RECORD_BYTES = 16 * 2**20  # one JSONL line, read in at most this many bytes; the text one record holds
MAX_JSON_FILE_BYTES = 512 * 2**20  # a .json file is read whole; larger data belongs in JSON Lines (streamed)
MAX_INT_DIGITS = 4300  # Python's int conversion limit (sys.get_int_max_str_digits)


# ---------------------------------------------------------------------------------------------------------------
# small helpers


def _a(value: Any) -> str:
    """The JSON kind of a value with its article, for reasons.

    >>> _a("x"), _a(3), _a(None), _a([1]), _a({})
    ('a string', 'a number', 'null', 'an array', 'an object')
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    return f"a {type(value).__name__}"


def _get(d: Mapping, *keys: str) -> Any:
    """The first of ``keys`` whose value is not None (Parquet and datasets fill missing struct keys with None)."""
    for key in keys:
        value = d.get(key)
        if value is not None:
            return value
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _huge_int(value: Any) -> bool:
    """An int of more than ``MAX_INT_DIGITS`` digits (too long for ``str()``). Example: _huge_int(10**4300) -> True
    (4,301 digits); _huge_int(10**4300 - 1) -> False (4,300 digits, which Python still converts)."""
    return isinstance(value, int) and value.bit_length() > 14_280 and abs(value) >= _INT_LIMIT


_INT_LIMIT = 10 ** MAX_INT_DIGITS  # the smallest number of MAX_INT_DIGITS + 1 digits


def _loads(text: str) -> Any:
    """``json.loads`` that raises only ``json.JSONDecodeError`` (not JSON) or ``RecordError`` with the reason: JSON
    nested deeper than Python's parser goes (``RecursionError``) or than ``MAX_DEPTH``, a number too long for
    ``int``, more text than a record may hold (``_shape_problem``).

    Example: _loads("[" * 100000) raises RecordError("JSON nested too deeply to read ...")
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise RecordError(f"JSON nested too deeply to read (objects and arrays inside each other; a record may "
                          f"nest {MAX_DEPTH} levels)") from None
    except ValueError as e:  # "Exceeds the limit (4300 digits) for integer string conversion: value has N digits"
        m = re.search(r"has (\d+) digits", str(e))
        digits = f"{int(m.group(1)):,} digits" if m else f"more than {MAX_INT_DIGITS:,} digits"
        raise RecordError(f"holds a number of {digits}: more than the {MAX_INT_DIGITS:,} digits a number may have"
                          ) from None
    # short text with few brackets can be neither too deep nor hold a huge number: skip the walk
    if len(text) > MAX_INT_DIGITS or text.count("[") + text.count("{") > MAX_DEPTH:
        problem = _shape_problem(value)
        if problem is not None:
            raise RecordError(problem)
    return value


def _shape_problem(record: Any) -> str | None:
    """Why a parsed record cannot be used safely, or None: nested deeper than ``MAX_DEPTH``, a number longer than
    ``MAX_INT_DIGITS`` digits, or more than ``MAX_RECORD_BYTES`` characters of text. Iterative, so it never runs
    out of stack itself.

    Example: _shape_problem({"messages": [[[[]]]]}) -> None; a record 200 levels deep -> "nested 101 levels ..."
    """
    chars = 0
    stack = [(record, 1)]
    while stack:
        value, depth = stack.pop()
        t = type(value)
        if t is str:
            chars += len(value)
            continue
        if depth > MAX_DEPTH and (t is dict or t is list or isinstance(value, (Mapping, list, tuple))):
            return (f"record is nested {MAX_DEPTH + 1} or more levels deep (objects and arrays inside each other), "
                    f"more than the {MAX_DEPTH} a record may have")
        if t is dict or isinstance(value, Mapping):
            for key, item in value.items():
                if isinstance(key, str):
                    chars += len(key)
                stack.append((item, depth + 1))
        elif t is list or isinstance(value, (list, tuple)):
            stack.extend((item, depth + 1) for item in value)
        elif _huge_int(value):
            return f"record holds a number of more than {MAX_INT_DIGITS:,} digits"
        if chars > MAX_RECORD_BYTES:
            break
    if chars > MAX_RECORD_BYTES:
        return (f"record holds more than {MAX_RECORD_BYTES:,} characters of text, more than one record may hold "
                "(the rendered text of a record is limited to 2,000,000 characters anyway)")
    return None


def _excerpt(value: Any, limit: int = 1000) -> str | None:
    """The start of a record's text, for a record that is not kept whole (too deep, too large)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else value.decode("utf-8", "replace") if isinstance(value, bytes) \
        else None
    if text is None:
        return None
    text = printable(text)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text):,} characters)"


def _error(reasons: list[str]) -> RecordError:
    """One RecordError for several reasons; ``.reasons`` keeps them apart for ``Rejected.reasons``."""
    err = RecordError("; ".join(reasons))
    err.reasons = list(reasons)
    return err


def _reasons(err: RecordError) -> list[str]:
    return list(getattr(err, "reasons", None) or [str(err)])


def _check_fmt(fmt: str | None) -> str | None:
    """Validate an explicit format name (a user setting, so a DataError rather than a ValueError)."""
    if fmt is None:
        return None
    name = _FORMAT_ALIASES.get(str(fmt).strip().lower(), str(fmt).strip().lower())
    if name not in FORMATS:
        raise DataError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)} "
                        "(or none, to detect it per record)")
    return name


def _stem(source: Source | None) -> str:
    """The name used in fallback ids: the file stem, "record" without a source, "memory" for "<memory>"."""
    if source is None:
        return "record"
    name = source.file
    if name.startswith("<") and name.endswith(">"):
        return name[1:-1] or "record"
    return Path(name).stem or name


def _record_id(record: Any, source: Source | None, index: int) -> str:
    """The record's own id (id, conversation_id or uuid) as a string, else f"{stem}-{index}".

    >>> _record_id({"id": 7}, None, 3), _record_id({}, Source("data/chat.jsonl", line=4), 3)
    ('7', 'chat-3')
    """
    raw = _raw_record_id(record)
    return printable(raw) if raw is not None else f"{_stem(source)}-{index}"


def _raw_record_id(record: Any) -> str | None:
    """The record's own id as written (it may hold lone surrogates, which ``_check_encodable`` rejects)."""
    if isinstance(record, Mapping):
        for key in _ID_KEYS:
            value = record.get(key)
            if _huge_int(value):
                continue  # str() would raise: the fallback id names the record instead
            if value is not None and value != "" and not isinstance(value, (Mapping, list)):
                return str(value)
    return None


def printable(text: str) -> str:
    """``text`` with lone surrogates written as escapes, so it can be printed and written as UTF-8 (a record id
    like "bad\\ud800" is shown, not a crash). Example: printable("a\\ud800") -> "a\\\\ud800"."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


# ---------------------------------------------------------------------------------------------------------------
# format detection


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


# ---------------------------------------------------------------------------------------------------------------
# messages


def _call(obj: Any) -> dict[str, Any] | None:
    """A tool call in the OpenAI shape from {"name", "arguments"} (arguments given as JSON text are parsed).

    >>> _call({"name": "add", "arguments": '{"a": 1}'})
    {'type': 'function', 'function': {'name': 'add', 'arguments': {'a': 1}}}
    """
    if not isinstance(obj, Mapping):
        return None
    if isinstance(obj.get("function"), Mapping):  # already {"type": "function", "function": {...}}
        return dict(obj)
    name = obj.get("name")
    if not isinstance(name, str):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            parsed = _loads(args)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, Mapping):
            args = dict(parsed)
    return {"type": "function", "function": {"name": name, "arguments": args}}


def _calls_from(value: Any) -> list[dict[str, Any]] | None:
    """Tool calls from a JSON text or value holding one call or a list of calls; None if it is not that."""
    if isinstance(value, str):
        try:
            value = _loads(value)
        except json.JSONDecodeError:
            return None
    if isinstance(value, Mapping):
        call = _call(value)
        return [call] if call else None
    if isinstance(value, list) and value:
        calls = [_call(v) for v in value]
        return calls if all(calls) else None
    return None


def _message_tool_calls(value: Any, where: str) -> list[dict[str, Any]]:
    """A message's own ``tool_calls``: a list of objects (or its JSON text), passed through as they are."""
    if value is None:
        return []
    return _json_objects(value, f"{where} tool_calls", "an array of calls", f"{where} tool call")


def _json_objects(value: Any, what: str, expected: str, item: str) -> list[dict[str, Any]]:
    """A list of objects, or its JSON text, checked item by item. Example: '[{"a": 1}]' -> [{"a": 1}]."""
    if isinstance(value, str):
        try:
            value = _loads(value)
        except json.JSONDecodeError as e:
            raise RecordError(f"{what} is not valid JSON ({e.msg}: column {e.colno})") from None
        except RecordError as e:
            raise RecordError(f"{what}: {e}") from None
    if not isinstance(value, list):
        raise RecordError(f"{what} is {_a(value)}, expected {expected}")
    for j, obj in enumerate(value):
        if not isinstance(obj, Mapping):
            raise RecordError(f"{item} {j} is {_a(obj)}, expected an object")
    return [dict(obj) for obj in value]


def _content(raw: Any, where: str, role: str) -> tuple[str | None, list[str], list[dict[str, Any]]]:
    """(text, reasoning pieces, tool calls) from a content that is a string, None, or a list of parts.

    >>> _content([{"type": "text", "value": "Hi "}, {"type": "text", "text": "there"}], "message 0", "user")
    ('Hi there', [], [])
    """
    if raw is None:
        return None, [], []
    if isinstance(raw, str):
        return raw, [], []
    if not isinstance(raw, list):
        raise RecordError(f"{where} ({role}) content is {_a(raw)}, expected a string or a list of parts")
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, part in enumerate(raw):
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, Mapping):
            raise RecordError(f"{where} content part {j} is {_a(part)}, "
                              'expected an object like {"type": "text", ...}')
        ptype = part.get("type")
        if ptype is None and _get(part, "text", "value") is not None:
            ptype = "text"
        if ptype == "text":
            value = _get(part, "text", "value")
            if not isinstance(value, str):
                raise RecordError(f"{where} content part {j} (text) has {_a(value)} as its text, expected a string")
            texts.append(value)
        elif ptype in ("reasoning", "thinking"):
            value = _get(part, "value", "text", "reasoning", "thinking")
            if not isinstance(value, str):
                raise RecordError(f"{where} content part {j} ({ptype}) has {_a(value)} as its text, expected a string")
            reasoning.append(value)
        elif ptype == "tool_call":
            found = _calls_from(_get(part, "value", "text", "tool_call"))
            if found is None:
                raise RecordError(f"{where} content part {j} (tool_call) is not a JSON object with a 'name'")
            calls.extend(found)
        elif ptype is None:
            raise RecordError(f"{where} content part {j} has no 'type'")
        else:
            raise RecordError(f"unsupported content part type {ptype!r} in {where}")
    return "".join(texts), reasoning, calls


def _train_flags(item: Mapping, where: str) -> tuple[bool | None, float | None]:
    """(trainable, loss_weight) from loss_weight / train / trainable / weight; they must agree when several are set."""
    flags: list[tuple[str, bool]] = []
    loss_weight = item.get("loss_weight")
    if loss_weight is not None:
        if not _is_number(loss_weight):
            raise RecordError(f"{where} loss_weight is {_a(loss_weight)}, expected a number")
        try:
            as_float = float(loss_weight)
        except OverflowError:  # an int of hundreds of digits
            as_float = math.inf
        if not math.isfinite(as_float):
            shown = str(loss_weight) if isinstance(loss_weight, float) else "a number too large for a float"
            raise RecordError(f"{where} loss_weight is {shown}, expected a finite number (0 = do not train)")
        loss_weight = as_float
        flags.append(("loss_weight", loss_weight > 0))
    for key in ("train", "trainable"):
        value = item.get(key)
        if value is not None:
            if not (isinstance(value, bool) or value in (0, 1)) or isinstance(value, str):
                raise RecordError(f"{where} {key} is {_a(value)}, expected true or false")
            flags.append((key, bool(value)))
    weight = item.get("weight")
    if weight is not None:
        if not (_is_number(weight) or isinstance(weight, bool)):
            raise RecordError(f"{where} weight is {_a(weight)}, expected a number")
        if isinstance(weight, float) and not math.isfinite(weight):
            raise RecordError(f"{where} weight is {weight}, expected a finite number (0 = do not train)")
        flags.append(("weight", weight > 0))
    if len({flag for _, flag in flags}) > 1:
        said = ", ".join(f"{key} says {'train' if flag else 'do not train'}" for key, flag in flags)
        raise RecordError(f"{where} has conflicting training flags ({said})")
    return (flags[0][1] if flags else None), loss_weight


def _message(item: Any, where: str) -> Message:
    """One message (role/content or from/value) normalized, or a RecordError saying what is wrong with it.

    >>> m = _message({"from": "gpt", "value": "Hi", "loss_weight": 0.0}, "message 1")
    >>> m.role, m.content, m.trainable, m.loss_weight
    ('assistant', 'Hi', False, 0.0)
    """
    if not isinstance(item, Mapping):
        raise RecordError(f"{where} is {_a(item)}, expected an object with a role and content")
    raw_role = _get(item, "role", "from")
    if raw_role is None:
        raise RecordError(f"{where} has no role (expected a 'role' or 'from' key)")
    if not isinstance(raw_role, str):
        raise RecordError(f"{where} role is {_a(raw_role)}, expected a string")
    role = ROLE_ALIASES.get(raw_role.strip().lower())
    if role is None:
        raise RecordError(f"{where} has unknown role {raw_role!r} ({_UNKNOWN_ROLE_HINT})")

    text, reasoning_parts, part_calls = _content(_get(item, "content", "value"), where, raw_role)
    calls = _message_tool_calls(item.get("tool_calls"), where) + part_calls
    if raw_role.strip().lower() == "function_call" and not calls and text is not None:
        calls = _calls_from(text) or []
        if calls:
            # a structured call, as OpenAI-style data has it: templates print it in their own tool-call format
            # (keeping the JSON as content too would render the call twice)
            text = ""

    reasoning_field = _get(item, *_REASONING_KEYS)
    if reasoning_field is not None and not isinstance(reasoning_field, str):
        raise RecordError(f"{where} reasoning is {_a(reasoning_field)}, expected a string")
    pieces = ([reasoning_field] if reasoning_field is not None else []) + reasoning_parts
    reasoning = "".join(pieces) if pieces else None

    if text is None:
        if role == "assistant" and calls:
            text = ""
        else:
            raise RecordError(f"{where} ({raw_role}) has no content")

    name = item.get("name")
    if name is not None and not isinstance(name, str):
        raise RecordError(f"{where} name is {_a(name)}, expected a string")
    call_id = item.get("tool_call_id")
    if call_id is not None and not isinstance(call_id, (str, int)):
        raise RecordError(f"{where} tool_call_id is {_a(call_id)}, expected a string")
    trainable, loss_weight = _train_flags(item, where)
    return Message(role=role, content=text, reasoning=reasoning, tool_calls=calls or None, name=name,
                   trainable=trainable, loss_weight=loss_weight,
                   tool_call_id=None if call_id is None else str(call_id))


def _messages(items: Any, key: str, label: str = "message", allow_empty: bool = False) -> list[Message]:
    """Every message of a list; the reasons of all bad messages are reported together."""
    if not isinstance(items, list):
        raise RecordError(f"'{key}' is {_a(items)}, expected a list of messages")
    if not items and not allow_empty:
        raise RecordError("no messages")
    out: list[Message] = []
    problems: list[str] = []
    for i, item in enumerate(items):
        try:
            out.append(_message(item, f"{label} {i}"))
        except RecordError as e:
            problems.extend(_reasons(e))
    if problems:
        raise _error(problems)
    return out


def _tools(value: Any) -> list[dict[str, Any]] | None:
    """Tool schemas from a list or its JSON text; empty means none.

    >>> _tools('[{"name": "add"}]'), _tools("[]"), _tools("")
    ([{'name': 'add'}], None, None)
    """
    if value is None or value == "":
        return None
    return _json_objects(value, "tools", "a list of tool schemas", "tool") or None


def _with_system(record: Mapping, messages: list[Message]) -> list[Message]:
    """Put a top-level ``system`` string in front, unless the messages already start with the same system text."""
    system = record.get("system")
    if system is None or system == "":
        return messages
    if not isinstance(system, str):
        raise RecordError(f"system is {_a(system)}, expected a string")
    if messages and messages[0].role == "system":
        if messages[0].content == system:
            return messages
        raise RecordError("record has both a 'system' field and a different leading system message; keep one")
    return [Message("system", system)] + messages


# ---------------------------------------------------------------------------------------------------------------
# the four formats: each returns (messages, tools)


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
    return Conversation(id=_record_id(record, source, index), messages=messages, tools=tools, source=source,
                        format=fmt)


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


# ---------------------------------------------------------------------------------------------------------------
# containers


class _LongLine:
    """A line longer than ``MAX_RECORD_BYTES``: skipped to its end without being kept (``_bounded_lines``)."""

    def __init__(self, size: int, head: bytes | str):
        self.size, self.head = size, head


def _bounded_lines(f: Any, limit: int | None = None) -> Iterator[bytes | str | _LongLine]:
    """The lines of a binary (or text) file, each read in at most ``limit`` bytes (characters). A longer line is
    read to its end in pieces that are dropped, and stands as a ``_LongLine``: a file with no line end at all
    (a device, a stream of zeros) never makes one line the size of the file."""
    limit = MAX_RECORD_BYTES if limit is None else limit
    newline: Any = None
    while True:
        line = f.readline(limit + 1)
        if not line:
            return
        if newline is None:
            newline = b"\n" if isinstance(line, bytes) else "\n"
        if len(line) > limit and not line.endswith(newline):
            size = len(line)
            while True:
                piece = f.readline(1 << 20)
                size += len(piece)
                if not piece or piece.endswith(newline):
                    break
            yield _LongLine(size, line[:1000])
        else:
            yield line


def _jsonl_text(raw: bytes | str, lineno: int) -> str:
    """A JSONL line as the text to parse: decoded (UnicodeDecodeError when it is not UTF-8), a BOM dropped on line 1,
    and only the line end stripped, so columns in reasons match the file."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    if lineno == 1:
        text = text.lstrip("\ufeff")
    return text.rstrip("\r\n")


def is_blank_line(raw: bytes | str | _LongLine, lineno: int) -> bool:
    """True when a JSONL line holds no record (whitespace only): it is skipped and takes no record number.

    >>> is_blank_line(b"  \\r\\n", 3), is_blank_line(b"\\xff\\n", 3), is_blank_line("{}", 1)
    (True, False, False)
    """
    if isinstance(raw, _LongLine):
        return False  # a record, rejected as too long
    try:
        return not _jsonl_text(raw, lineno).strip()
    except UnicodeDecodeError:
        return False  # a record, rejected as not UTF-8


def jsonl_item(raw: bytes | str | _LongLine, file: str, lineno: int, index: int,
               fmt: str | None) -> Conversation | Rejected | None:
    """One JSONL line (1-based ``lineno``) -> its Conversation or Rejected (``index``: the record's number in the
    file, for fallback ids), or None for a blank line. ``_iter_jsonl`` and the Ray engine both read lines with it.

    >>> jsonl_item(b'{"prompt": 1\\n', "data/chat.jsonl", 2, 1, None).reasons
    ["line 2: invalid JSON (Expecting ',' delimiter: column 13)"]
    """
    source = Source(file, line=lineno)
    stem = _stem(Source(file))
    if isinstance(raw, _LongLine):
        reason = (f"line {lineno}: {raw.size:,} bytes long, more than the {MAX_RECORD_BYTES:,} one record may "
                  "hold: not read (is the file JSON Lines, one record a line?)")
        return Rejected(f"{stem}-{index}", source, [reason], _excerpt(raw.head))
    try:
        text = _jsonl_text(raw, lineno)
    except UnicodeDecodeError as e:
        shown = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        reason = f"line {lineno}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
        return Rejected(f"{stem}-{index}", source, [reason], shown)
    if not text.strip():
        return None
    try:
        record = _loads(text)
    except json.JSONDecodeError as e:
        reason = f"line {lineno}: invalid JSON ({e.msg}: column {e.colno})"
        return Rejected(f"{stem}-{index}", source, [reason], text)
    except RecordError as e:  # too deep, a huge number, too much text: not kept whole
        return Rejected(f"{stem}-{index}", source, [f"line {lineno}: {e}"], _excerpt(text))
    return _convert(record, fmt, source, index, checked=True)


def _iter_jsonl(lines: Iterable[bytes | str | _LongLine], file: str, fmt: str | None
                ) -> Iterator[Conversation | Rejected]:
    """One item per non-blank line. Bytes are decoded line by line, so one bad line does not sink the others."""
    index = 0
    for lineno, raw in enumerate(lines, 1):
        item = jsonl_item(raw, file, lineno, index, fmt)
        if item is not None:
            yield item
            index += 1


# Byte-order marks of the encodings JSON may come in besides UTF-8 (longest first: UTF-32 LE starts like UTF-16 LE).
_BOMS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe", "utf-16"),
         (b"\xfe\xff", "utf-16"))


def _encoding(head: bytes, path: Path | str) -> str | None:
    """The encoding a byte-order mark names (None: UTF-8). Text that looks like UTF-16 without one is refused.

    Example: _encoding(b"\xff\xfe{\x00", p) -> "utf-16"; _encoding(b'{"a', p) -> None
    """
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    if len(head) >= 2 and ((head[0] == 0 and 32 <= head[1] < 127) or (head[1] == 0 and 32 <= head[0] < 127)):
        raise DataError(f"{path} looks like UTF-16 text without a byte-order mark (every other byte is 0): save it "
                        "as UTF-8")
    return None


def _open_data(path: Path) -> Any:
    """Open a data file for reading in binary, with a clear DataError when it cannot be read."""
    try:
        return open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None


def _iter_jsonl_file(path: Path, fmt: str | None) -> Iterator[Conversation | Rejected]:
    """Stream a JSON Lines file: UTF-8, or UTF-16/UTF-32 with a byte-order mark (decoded as it streams)."""
    f = _open_data(path)
    try:
        encoding = _encoding(f.peek(4)[:4], path)
    except BaseException:
        f.close()
        raise

    def items() -> Iterator[Conversation | Rejected]:
        source = io.TextIOWrapper(f, encoding=encoding, newline="") if encoding else f
        with source:
            try:
                yield from _iter_jsonl(_bounded_lines(source), str(path), fmt)
            except UnicodeDecodeError as e:
                raise DataError(f"{path} is not valid {encoding} text ({e.reason}): save it as UTF-8") from None
            except OSError as e:
                raise DataError(f"{path}: reading failed ({e.strerror or e})") from None

    return items()


def _iter_rows(rows: Iterable[Any], file: str, fmt: str | None) -> Iterator[Conversation | Rejected]:
    for i, record in enumerate(rows):
        yield _convert(record, fmt, Source(file, row=i), i)


def _records_in(value: Any, name: str) -> list[Any]:
    """The records of a parsed JSON document: a list, a dict holding one under data/train/examples, or one record."""
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping):
        try:
            detect_format(value)
            return [value]
        except RecordError:
            pass
        for key in _JSON_CONTAINER_KEYS:
            if isinstance(value.get(key), list):
                return value[key]
        return [value]  # rejected later, with the reason
    raise DataError(f"{name}: the top-level JSON value is {_a(value)}; expected a list of records or one record object")


def _first_line_is_object(text: str) -> bool:
    """True if the first non-blank line is a whole JSON object by itself: the text is JSON Lines. (A first line too
    deep or with too long a number to read counts too when it starts like an object: it is rejected as a line.)"""
    for line in text.split("\n"):
        if line.strip():
            try:
                return isinstance(_loads(line), dict)
            except json.JSONDecodeError:
                return False
            except RecordError:
                return line.lstrip().startswith("{")
    return False


def _json_error(name: str, e: json.JSONDecodeError, text: str) -> DataError:
    where = f"line {e.lineno}, column {e.colno}"
    if e.pos >= len(text.rstrip()):
        return DataError(f"{name} is not valid JSON: it ends before the JSON is complete ({e.msg} at {where}); "
                         "the file may be truncated")
    return DataError(f"{name} is not valid JSON: {e.msg} at {where}")


# A JSON string (escapes included) or one of the characters that shape an array: enough to find an array's items.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]', re.DOTALL)


def _split_json_array(text: str) -> Iterator[str]:
    """The texts of the items of a top-level JSON array, found without parsing them (strings skipped whole), so
    each can be read on its own. Example: '[{"a": [1, 2]}, 3]' -> '{"a": [1, 2]}', '3'."""
    depth = 0
    start = None
    for m in _JSON_TOKEN.finditer(text):
        token = m.group()
        if token[0] == '"':
            continue
        if token in "[{":
            depth += 1
            if depth == 1:
                start = m.end()
        elif token in "]}":
            depth -= 1
            if depth == 0:
                piece = text[start:m.start()].strip()
                if piece:
                    yield piece
                return
        elif depth == 1:  # a comma between two items
            yield text[start:m.start()].strip()
            start = m.end()
    if start is not None and text[start:].strip():  # the array never closes: what is left is one (broken) item
        yield text[start:].strip()


def _iter_json_items(text: str, name: str, fmt: str | None) -> Iterator[Conversation | Rejected]:
    """A JSON array read item by item: one item nested too deep (or with a huge number) is rejected alone."""
    stem = _stem(Source(name))
    for i, piece in enumerate(_split_json_array(text)):
        source = Source(name, row=i)
        try:
            record = _loads(piece)
        except json.JSONDecodeError as e:
            yield Rejected(f"{stem}-{i}", source, [f"record {i}: invalid JSON ({e.msg})"], _excerpt(piece))
        except RecordError as e:
            yield Rejected(f"{stem}-{i}", source, [f"record {i}: {e}"], _excerpt(piece))
        else:
            yield _convert(record, fmt, source, i, checked=True)


def _parse_json_text(text: str, name: str, fmt: str | None) -> Iterator[Conversation | Rejected]:
    """JSON first; JSON Lines when the text is several JSON objects, one a line (named .json or pasted). Text that
    is too deep or holds a number too long to parse whole is read record by record instead."""
    if not text.strip():
        raise DataError(f"{name} is empty")
    try:
        value = _loads(text)
    except json.JSONDecodeError as e:
        if not text.lstrip().startswith("[") and _first_line_is_object(text):
            return _iter_jsonl(text.split("\n"), name, fmt)  # not splitlines(): JSON strings may hold U+2028
        raise _json_error(name, e, text) from None
    except RecordError as e:
        if text.lstrip().startswith("["):
            return _iter_json_items(text, name, fmt)
        if _first_line_is_object(text) and "\n" in text.strip():
            return _iter_jsonl(text.split("\n"), name, fmt)
        return iter([Rejected(f"{_stem(Source(name))}-0", Source(name, row=0), [str(e)], _excerpt(text))])
    return _iter_rows(_records_in(value, name), name, fmt)


def _iter_json_file(path: Path, fmt: str | None) -> Iterator[Conversation | Rejected]:
    """A .json file, read whole (at most ``MAX_JSON_FILE_BYTES``): UTF-8, or UTF-16/32 with a byte-order mark. An
    empty file holds no records."""
    with _open_data(path) as f:
        try:
            data = f.read(MAX_JSON_FILE_BYTES + 1)
        except OSError as e:
            raise DataError(f"{path}: reading failed ({e.strerror or e})") from None
    return json_file_items(data, path, fmt)


def json_file_items(data: bytes, path: Path | str, fmt: str | None) -> Iterator[Conversation | Rejected]:
    """The records of a .json file's bytes (read with at most ``MAX_JSON_FILE_BYTES + 1`` bytes): the local loader
    and the Ray engine both parse them here."""
    if len(data) > MAX_JSON_FILE_BYTES:
        raise DataError(f"{path} is larger than {MAX_JSON_FILE_BYTES // 2**20} MiB: a .json file is read whole; "
                        "write the records as JSON Lines (.jsonl, one record a line) to stream them")
    encoding = _encoding(data[:4], path) or "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        shown = "UTF-8" if encoding == "utf-8-sig" else encoding.upper()
        raise DataError(f"{path} is not {shown} text (bad byte at offset {e.start}); save it as UTF-8") from None
    if not text.strip():
        return iter(())
    return _parse_json_text(text.lstrip("\ufeff"), str(path), fmt)


def _iter_parquet(path: Path, fmt: str | None) -> Iterator[Conversation | Rejected]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for a damaged or non-Parquet file
        raise DataError(f"{path} is not a readable Parquet file ({e})") from None

    def rows() -> Iterator[Conversation | Rejected]:
        i = 0
        try:
            for batch in pf.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
                for record in batch.to_pylist():
                    yield _convert(record, fmt, Source(str(path), row=i), i)
                    i += 1
        except (OSError, ValueError) as e:  # pyarrow.ArrowException subclasses these
            raise DataError(f"{path}: reading Parquet rows failed after row {i} ({e})") from None
        finally:
            pf.close()

    return rows()


def _is_saved_dataset(path: Path) -> bool:
    # state.json / dataset_dict.json are what save_to_disk writes; dataset_info.json alone is not enough, since
    # LLaMA-Factory keeps a config file of that name next to its data files.
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def _iter_saved_dataset(path: Path, fmt: str | None) -> Iterator[Conversation | Rejected]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # datasets raises FileNotFoundError / its own errors for a damaged folder
        raise DataError(f"{path}: cannot load the saved dataset ({e})") from None
    if isinstance(ds, datasets.DatasetDict):
        if not ds:
            raise DataError(f"{path}: the saved DatasetDict has no splits")
        ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
    return _iter_rows(ds, str(path), fmt)


def _check_readable_file(path: Path) -> None:
    """Refuse what is not a file of data: a device (``/dev/zero`` never ends), a socket. Regular files and pipes
    (``<(zcat data.jsonl.gz)``, a FIFO) are read, a JSON Lines one record a line in bounded pieces."""
    try:
        mode = os.stat(path).st_mode  # follows symbolic links: what would be read
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    if stat.S_ISREG(mode) or stat.S_ISFIFO(mode):
        return
    kind = ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    raise DataError(f"{path} is {kind}, not a file of data: refused")


def _iter_file(path: Path, fmt: str | None) -> Iterator[Conversation | Rejected]:
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        shown = repr(ext) if ext else "(no extension)"
        raise DataError(f"unsupported file type {shown} for {path}: supported are "
                        f"{', '.join(SUPPORTED_EXTENSIONS)} files, or a folder saved with datasets' save_to_disk")
    _check_readable_file(path)
    if ext in (".jsonl", ".ndjson"):
        return _iter_jsonl_file(path, fmt)
    if ext == ".json":
        return _iter_json_file(path, fmt)
    return _iter_parquet(path, fmt)


def _iter_folder(path: Path, fmt: str | None) -> Iterator[Conversation | Rejected]:
    """Every data file of a folder, in sorted order. A file that cannot be read (no permission, broken JSON, a
    device) is one rejected item with its reason; the other files load."""
    try:
        files = sorted(p for p in path.iterdir()
                       if p.suffix.lower() in SUPPORTED_EXTENSIONS and p.name != "dataset_info.json"
                       and not p.is_dir())
        # a FIFO or socket named *.jsonl would block: stat (which never opens) and skip it (devices are refused below)
        odd = {p for p in files if p.exists() and (stat.S_ISFIFO(p.stat().st_mode) or stat.S_ISSOCK(p.stat().st_mode))}
    except OSError as e:
        raise DataError(f"cannot list the folder {path}: {e.strerror or e}") from None
    if not files:
        raise DataError(f"{path} is a folder with no {', '.join(SUPPORTED_EXTENSIONS)} files and is not a dataset "
                        "saved with datasets' save_to_disk")

    def chain() -> Iterator[Conversation | Rejected]:
        for file in files:
            if file in odd:
                yield Rejected(file.name, Source(str(file)), ["not a regular file (a FIFO or socket): skipped, never "
                                                              "opened"], None)
                continue
            count = 0
            try:
                for item in _iter_file(file, fmt):
                    count += 1
                    yield item
            except DataError as e:
                where = f" after {count} records" if count else ""
                yield Rejected(f"{file.name}{'#rest' if count else ''}", Source(str(file)),
                               [f"the file could not be read{where}: {e}"], None)

    return chain()


def iter_records(path: str | os.PathLike, *, fmt: str | None = None) -> Iterator[Conversation | Rejected]:
    """Stream a data file (or folder): one Conversation or Rejected per input record, in order.

    Raises DataError at once when the path cannot be read at all (missing, unknown extension, broken JSON, a
    device). JSONL and Parquet are streamed; a .json file is parsed whole. In a folder, a file that cannot be read
    is one Rejected item with the reason.

    >>> import tempfile; d = tempfile.mkdtemp(); p = os.path.join(d, "chat.jsonl")
    >>> _ = open(p, "w").write('{"prompt": "Hi", "completion": "Yo"}\\n{"prompt": 1\\n')
    >>> [type(x).__name__ for x in iter_records(p)], list(iter_records(p))[1].reasons
    (['Conversation', 'Rejected'], ["line 2: invalid JSON (Expecting ',' delimiter: column 13)"])
    """
    fmt = _check_fmt(fmt)
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file not found: {path}")
    if p.is_dir():
        return _iter_saved_dataset(p, fmt) if _is_saved_dataset(p) else _iter_folder(p, fmt)
    return _iter_file(p, fmt)


def _collect(items: Iterator[Conversation | Rejected], fmt: str | None, limit: int | None) -> LoadResult:
    if limit is not None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        items = islice(items, limit)
    result = LoadResult()
    for item in items:
        (result.conversations if isinstance(item, Conversation) else result.rejected).append(item)
    counts = Counter(c.format for c in result.conversations if c.format)
    result.format = fmt or (counts.most_common(1)[0][0] if counts else None)
    return result


def load_data(path_or_records: str | os.PathLike | Iterable[Any] | Mapping, *, fmt: str | None = None,
              limit: int | None = None) -> LoadResult:
    """Load a file/folder path, or normalize in-memory records (Source "<memory>", row i); ``limit`` caps records read.

    >>> r = load_data([{"prompt": "Hi", "completion": "Yo"}, {"text": "raw"}])
    >>> len(r.conversations), r.rejected[0].id, r.format
    (1, 'memory-1', 'prompt_completion')
    """
    fmt = _check_fmt(fmt)
    if isinstance(path_or_records, (str, os.PathLike)):
        items = iter_records(path_or_records, fmt=fmt)
    elif isinstance(path_or_records, Mapping):
        items = _iter_rows([path_or_records], "<memory>", fmt)
    elif isinstance(path_or_records, Iterable) and not isinstance(path_or_records, (bytes, bytearray)):
        items = _iter_rows(path_or_records, "<memory>", fmt)
    else:
        raise DataError(f"cannot load {type(path_or_records).__name__}: give a path or a list of records")
    try:
        return _collect(items, fmt, limit)
    finally:
        close = getattr(items, "close", None)
        if close:
            close()  # release an open file when limit stopped early


def load_text(text: str | bytes, *, fmt: str | None = None, name: str = "<pasted>",
              limit: int | None = None) -> LoadResult:
    """Load pasted JSON (a list or one record) or JSON Lines text.

    >>> r = load_text('{"prompt": "a", "completion": "b"}\\n{"prompt": "c", "completion": "d"}')
    >>> [c.id for c in r.conversations], str(r.conversations[1].source)
    (['pasted-0', 'pasted-1'], '<pasted>:line 2')
    """
    fmt = _check_fmt(fmt)
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{name} is not UTF-8 text (bad byte at offset {e.start})") from None
    return _collect(_parse_json_text(text.lstrip("\ufeff"), name, fmt), fmt, limit)


def load_bytes(data: bytes, name: str, *, fmt: str | None = None, limit: int | None = None) -> LoadResult:
    """Load a file's bytes held in memory (an upload), by the extension of ``name``: JSON, JSONL or Parquet.

    Nothing is written to disk, and sources, fallback ids and messages name ``name`` (the user's file name).

    >>> r = load_bytes(b'{"prompt": "a", "completion": "b"}\\n', "chat.jsonl")
    >>> r.conversations[0].id, str(r.conversations[0].source)
    ('chat-0', 'chat.jsonl:line 1')
    """
    fmt = _check_fmt(fmt)
    ext = Path(name).suffix.lower()
    if ext in (".jsonl", ".ndjson"):
        items: Iterator[Conversation | Rejected] = _iter_jsonl(io.BytesIO(bytes(data)), name, fmt)
    elif ext == ".json":
        try:
            text = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise DataError(f"{name} is not UTF-8 text (bad byte at offset {e.start}); save it as UTF-8") from None
        items = _parse_json_text(text, name, fmt)
    elif ext == ".parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(io.BytesIO(bytes(data)))
        except Exception as e:  # pyarrow raises ArrowInvalid / OSError for a damaged or non-Parquet file
            raise DataError(f"{name} is not a readable Parquet file ({e})") from None
        rows = (r for batch in pf.iter_batches(batch_size=_PARQUET_BATCH_ROWS) for r in batch.to_pylist())
        items = _iter_rows(rows, name, fmt)
    else:
        shown = repr(ext) if ext else "(no extension)"
        raise DataError(f"unsupported file type {shown} for {name}: supported are .jsonl, .ndjson, .json, .parquet")
    return _collect(items, fmt, limit)
