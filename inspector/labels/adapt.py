"""Messages adapted to what a chat template reads: tool declarations wrapped (``{"type": "function", "function":
{...}}``) or bare, as the template's probe says, and tool-call arguments as an object or as JSON text. The engine says
on the sample what it changed, so a user sees why the rendered text differs from their record.

Example: a call with ``"arguments": "{\\"a\\": 1}"`` for a template that iterates ``arguments.items()`` ->
``"arguments": {"a": 1}``, noted "were JSON text: parsed into an object before rendering (...)".
"""

from __future__ import annotations

from typing import Any


def adapt_tools(tools: list[Any], shape: str | None) -> tuple[list[Any], str]:
    """Tool declarations in the shape the template reads, and what was done ("" when nothing). ``shape``
    "wrapped": OpenAI's {"type": "function", "function": {...}} (what transformers documents); "bare": the function
    spec alone, {"name", "description", "parameters"}; None: either works.

    Example: [{"name": "f", "parameters": {}}], "wrapped" -> [{"type": "function", "function": {"name": "f",
    "parameters": {}}}], "were bare function specs: wrapped as {"type": "function", "function": ...}, ...".
    """
    def wrapped(t):
        return isinstance(t, dict) and isinstance(t.get("function"), dict)

    if shape == "wrapped" and any(isinstance(t, dict) and not wrapped(t) and "name" in t for t in tools):
        out = [t if wrapped(t) or not isinstance(t, dict) else {"type": "function", "function": t} for t in tools]
        return out, ('were bare function specs: wrapped as {"type": "function", "function": ...}, the shape this '
                     'template reads')
    if shape == "bare" and any(wrapped(t) for t in tools):
        return [t["function"] if wrapped(t) else t for t in tools], \
            "were wrapped as {\"type\": \"function\", ...}: given as bare function specs, the shape this template reads"
    return tools, ""


def adapt_tool_calls(calls: list[Any], as_text: bool) -> tuple[list[Any], str]:
    """Tool calls with their arguments in the shape a template wants, and what was done ("" when nothing).

    ``as_text=False``: arguments given as JSON text holding an object are parsed (other strings stay as they are).
    ``as_text=True``: arguments given as an object are written as JSON text.
    Example: [{"function": {"name": "f", "arguments": '{"a": 1}'}}], False -> [{"function": {"name": "f",
    "arguments": {"a": 1}}}], "were JSON text: parsed into an object before rendering (...)".
    """
    import json

    out, changed = [], False
    for call in calls:
        if not isinstance(call, dict):
            out.append(call)
            continue
        nested = isinstance(call.get("function"), dict)
        fn = dict(call["function"] if nested else call)
        args = fn.get("arguments")
        if not as_text and isinstance(args, str):
            try:
                parsed = json.loads(args)
            except (ValueError, RecursionError):
                parsed = None
            if isinstance(parsed, dict):
                fn["arguments"], changed = parsed, True
        elif as_text and isinstance(args, (dict, list)):
            fn["arguments"], changed = json.dumps(args, ensure_ascii=False), True
        out.append({**call, "function": fn} if nested else fn)
    if not changed:
        return out, ""
    if as_text:
        return out, "were an object: given as JSON text, since this template writes arguments as they are"
    return out, ("were JSON text: parsed into an object before rendering, as transformers' chat templates expect "
                 "(templates iterate arguments.items())")


# --- strategies that work on token ids ---------------------------------------------------------------------------
