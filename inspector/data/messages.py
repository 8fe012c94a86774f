"""One message, in whatever names its format uses -> a ``Message``: role, content parts, tool calls, reasoning, flags.

Every record format holds messages (prompt/completion and Alpaca some of the time), and reads them here:

    {"role": "user", "content": "Hi"}                -> Message("user", "Hi")
    {"from": "gpt", "value": "Yo", "weight": 0}      -> Message("assistant", "Yo", trainable=False)
    {"role": "assistant", "content": [{"type": "reasoning", "text": "2+2"}, {"type": "text", "text": "4"}]}
                                                     -> Message("assistant", "4", reasoning="2+2")

Roles are matched case-insensitively through ``ROLE_ALIASES`` (ShareGPT's human / gpt / function_call / observation
included). ``_messages`` reads a whole list and reports the reasons of every bad message together ("message 0 has no
role (expected a 'role' or 'from' key); message 2 (gpt) has no content"). Message numbers in reasons are 0-based
positions in the record's list (``message 2`` is ``messages[2]``). The parts of a list content are concatenated as
they are, nothing added between them, since the point is to show exactly what is trained on; image, audio and video
parts are rejected with a reason, never dropped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from inspector.constants import ROLES
from inspector.conversations import Message
from inspector.data.records import _a, _error, _get, _is_number, _loads, _reasons
from inspector.errors import RecordError

# Every role name a record may use, mapped onto constants.ROLES (matched case-insensitively).
ROLE_ALIASES = {
    "system": "system",
    "user": "user", "human": "user",
    "assistant": "assistant", "gpt": "assistant", "model": "assistant", "bot": "assistant",
    "function_call": "assistant",  # ShareGPT: an assistant turn whose value is the call
    "tool": "tool", "function": "tool", "observation": "tool", "ipython": "tool",
}
assert set(ROLE_ALIASES.values()) == set(ROLES)

_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")
_UNKNOWN_ROLE_HINT = "expected one of system, user, assistant, tool or their ShareGPT names"


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
