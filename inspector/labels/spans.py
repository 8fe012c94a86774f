"""Find where each message's text sits in a rendered conversation, without relying on ``{% generation %}`` tags.

Only 4 of 56 publisher templates carry generation tags, so the core locates text itself. For each message piece
(reasoning, content) it tries, in order, and records which method worked:

1. ``exact``: the piece as is, searched left to right from the end of the previous piece (when an assistant piece
   occurs twice close together, the place an assistant header precedes: a template may preview the answer);
2. ``stripped``: the piece with surrounding whitespace removed (templates that ``| trim`` content);
3. ``marked``: when a search fails, is unsure (a short piece that could also be markup, like an answer "user") or
   there are tool calls, render ONCE more with every piece of every message wrapped in rare marker characters;
   if removing the markers gives back the text exactly, every piece's place is known from one render (linear in
   the conversation, whatever its length). Tool calls are located this way too (kind ``tool_call``: the call's
   name written before its argument values, through the last value), or, when the template reshapes the marked
   values, by a render without the calls (``diff``);
4. ``sentinel``: render again with only this piece replaced by a sentinel word; the render is
   ``prefix + X + suffix`` around the sentinel, so ``X`` is what the template made of the piece.

A piece that a render shows no trace of is *dropped* by the template (Qwen3 drops the reasoning of earlier turns):
recorded in ``Layout.dropped``, not a failure.

An assistant *turn* is then the text the model generates at inference: from the end of the generation prompt
(``TemplateInfo.generation_prompt``, or the part of it that ends at a line break or marker when past turns are
written differently, or the header the template always writes after a user message) that precedes the turn,
through its content, reasoning and tool calls (a call the template writes as a block of its own after the answer's
closing included), to the end-of-turn marker that closes it. Where no marker follows, the turn ends where the
render of the conversation up to this message parts from the full render, and at least after its tool calls.

Example (ChatML): "<|im_start|>assistant\nHi!<|im_end|>\n" -> content span "Hi!" (exact), turn body "Hi!",
end-of-turn "<|im_end|>".
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from inspector.errors import RenderError, RenderTimeout
from inspector.template.probe import TemplateInfo, _common_prefix_len

SHORT_PIECE = 16  # pieces shorter than this are confirmed with a sentinel render
SENTINEL = "zqxSENTINELxqz"


@dataclass(frozen=True)
class Span:
    """Where one piece of a message sits in the rendered text (``start``/``end`` are char offsets)."""

    message_index: int
    role: str
    kind: str  # "content" or "reasoning"
    start: int
    end: int
    method: str  # "exact", "stripped", "sentinel"


@dataclass(frozen=True)
class Turn:
    """One assistant turn: ``start..body_end`` is what the model generates before its end-of-turn marker,
    ``eot_start..eot_end`` the marker itself (equal when there is none)."""

    message_index: int
    start: int
    body_end: int
    eot_start: int
    eot_end: int
    method: str  # how the start was found: "generation-prompt", "header" (part of it) or "content"

    @property
    def has_eot(self) -> bool:
        return self.eot_end > self.eot_start


@dataclass
class Layout:
    """Everything located in one rendered text. ``unlocated``: pieces/turns that could not be found (a problem);
    ``dropped``: pieces the template does not render at all (e.g. Qwen3 drops the reasoning of earlier turns: the
    sentinel render shows no trace of them), which is the template's choice, not a failure; ``notes``: other facts
    worth showing (a turn without an end-of-turn marker)."""

    spans: list[Span]
    turns: list[Turn]
    unlocated: list[tuple[int, str]]  # (message_index, why)
    dropped: list[tuple[int, str]] = field(default_factory=list)  # (message_index, "reasoning"/"content")
    notes: list[str] = field(default_factory=list)


def _pieces(message: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning.strip():
        out.append(("reasoning", reasoning))
    content = message.get("content")
    if isinstance(content, str) and content.strip():
        out.append(("content", content))
    return out


# --- the marked render: every piece of every message located by one extra render -------------------------------

# Rare printable characters (Javanese punctuation and digits): no template filter, JSON encoder (transformers'
# tojson keeps non-ASCII) or Python repr (a template printing a list of arguments) changes them, and conversations
# that hold them are never marked. A piece ``v`` becomes ``OPEN id MID v CLOSE id END``, ``id`` in these digits.
_OPEN, _MID, _CLOSE, _END = "\ua9c1", "\ua9c2", "\ua9c3", "\ua9c4"
_DIGITS = "".join(chr(0xA9D0 + k) for k in range(10))
_MARK_RE = re.compile(f"([{_OPEN}{_CLOSE}])([{_DIGITS}]+)[{_MID}{_END}]")
_PRIVATE_RE = re.compile("[\ua9c1-\ua9c4\ua9d0-\ua9d9]")


def _mark_id(k: int) -> str:
    return "".join(_DIGITS[int(d)] for d in str(k))


def _wrap(value: str, k: int) -> str:
    """Markers around the stripped core of ``value`` (so ``| trim`` in a template keeps them).
    Example: "  Hi " -> "  ꧁꧐꧂Hi꧃꧐꧄ " (k = 0)."""
    core = value.strip()
    if not core:
        return value
    lead = value[: len(value) - len(value.lstrip())]
    trail = value[len(value.rstrip()):]
    ident = _mark_id(k)
    return f"{lead}{_OPEN}{ident}{_MID}{core}{_CLOSE}{ident}{_END}{trail}"


def _wrap_values(value: Any, k: int) -> Any:
    """Tool-call arguments with every string value marked (keys stay as they are: templates look them up)."""
    if isinstance(value, str):
        return _wrap(value, k)
    if isinstance(value, dict):
        return {key: _wrap_values(v, k) for key, v in value.items()}
    if isinstance(value, list):
        return [_wrap_values(v, k) for v in value]
    return value


PieceKey = tuple  # (message index, kind, call index): kind "content", "reasoning" or "tool_call"


def marked_messages(messages: list[dict[str, Any]], tool_calls: bool = True
                    ) -> tuple[list[dict[str, Any]], dict[int, PieceKey]]:
    """Copies of ``messages`` with every piece wrapped in markers, and which marker id is which piece.

    Pieces: each message's content and reasoning, and (``tool_calls=True``) each tool call's function name
    (kind ``tool_name``) and its string argument values (kind ``tool_call``, one id for all values of a call).
    Example: [{"role": "user", "content": "Hi"}] ->
    [{"role": "user", "content": "꧁꧐꧂Hi꧃꧐꧄"}], {0: (0, "content", 0)}.
    """
    out: list[dict[str, Any]] = []
    keys: dict[int, PieceKey] = {}
    for i, m in enumerate(messages):
        mm = dict(m)
        for kind, field_name in (("reasoning", "reasoning_content"), ("content", "content")):
            value = m.get(field_name)
            if isinstance(value, str) and value.strip():
                k = len(keys)
                keys[k] = (i, kind, 0)
                mm[field_name] = _wrap(value, k)
        calls = m.get("tool_calls")
        if tool_calls and isinstance(calls, list):
            new_calls = []
            for j, call in enumerate(calls):
                if not isinstance(call, dict):
                    new_calls.append(call)
                    continue
                fn = call.get("function") if isinstance(call.get("function"), dict) else None
                target = dict(fn) if fn is not None else dict(call)
                if isinstance(target.get("name"), str):
                    k = len(keys)
                    keys[k] = (i, "tool_name", j)
                    target["name"] = _wrap(target["name"], k)
                if "arguments" in target:
                    k = len(keys)
                    keys[k] = (i, "tool_call", j)
                    target["arguments"] = _wrap_values(target["arguments"], k)
                new_calls.append({**call, "function": target} if fn is not None else target)
            mm["tool_calls"] = new_calls
        out.append(mm)
    return out, keys


@dataclass
class MarkedLayout:
    """Where the marked render put each piece: ``found[key]`` lists (start, end) in the plain text, in order;
    ``absent``: pieces whose markers are nowhere (the template does not render them); ``broken``: pieces whose
    markers came out unpaired (the template cut the value, e.g. ``content.split('</think>')``)."""

    found: dict[PieceKey, list[tuple[int, int]]]
    absent: set[PieceKey]
    broken: set[PieceKey]
    tool_calls: bool
    keys: frozenset = frozenset()


def parse_marked(marked_text: str, keys: dict[int, PieceKey]) -> tuple[str, dict[PieceKey, list[tuple[int, int]]],
                                                                        set[PieceKey], set[PieceKey]]:
    """Strip the markers from a marked render: (plain text, found, absent, broken), positions in the plain text.
    The argument values of a call merge into one span (from the first to the last)."""
    plain: list[str] = []
    pos = 0  # length of the plain text so far
    last = 0
    open_at: dict[int, list[int]] = {}
    spans: dict[int, list[tuple[int, int]]] = {}
    seen: set[int] = set()
    broken: set[int] = set()
    for m in _MARK_RE.finditer(marked_text):
        chunk = marked_text[last:m.start()]
        plain.append(chunk)
        pos += len(chunk)
        last = m.end()
        ident = int("".join(str(ord(ch) - 0xA9D0) for ch in m.group(2)))
        seen.add(ident)
        if m.group(1) == _OPEN:
            open_at.setdefault(ident, []).append(pos)
        else:
            starts = open_at.get(ident)
            if not starts:
                broken.add(ident)
                continue
            spans.setdefault(ident, []).append((starts.pop(), pos))
    plain.append(marked_text[last:])
    broken |= {k for k, v in open_at.items() if v}
    found: dict[PieceKey, list[tuple[int, int]]] = {}
    for ident, occ in spans.items():
        key = keys.get(ident)
        if key is None:
            continue
        found[key] = sorted(occ)
    for key in [k for k in found if k[1] == "tool_call"]:  # argument values of one call: one span, first to last
        occ = found[key]
        found[key] = [(occ[0][0], max(b for _, b in occ))]
    absent = {key for ident, key in keys.items() if ident not in seen}
    return "".join(plain), found, absent, {keys[k] for k in broken if k in keys}


def marked_layout(text: str, messages: list[dict[str, Any]],
                  rerender: Callable[[list[dict[str, Any]]], str]) -> MarkedLayout | None:
    """Render once with every piece marked; None when the template does not give back exactly ``text`` once the
    markers are removed (it tested or reshaped a value), or when the data already holds marker characters.
    Tool calls are marked too when that still gives ``text`` back; else only content and reasoning."""
    if _PRIVATE_RE.search(text) or any(_PRIVATE_RE.search(str(m)) for m in messages):
        return None
    for with_calls in (True, False):
        if not with_calls and not any(m.get("tool_calls") for m in messages):
            return None
        probe, keys = marked_messages(messages, tool_calls=with_calls)
        if not keys:
            return None
        try:
            other = rerender(probe)
        except RenderTimeout:
            raise  # out of time: the record is rejected, no other render would do better
        except RenderError:
            continue
        plain, found, absent, broken = parse_marked(other, keys)
        if plain == text:
            return MarkedLayout(found, absent, broken, with_calls, frozenset(keys.values()))
    return None


class _LazyMarked:
    """The marked render, made on first use (most conversations never need it: long pieces are found by search)."""

    def __init__(self, text, messages, rerender):
        self.args = (text, messages, rerender)
        self.done = False
        self.value: MarkedLayout | None = None

    def get(self) -> MarkedLayout | None:
        if not self.done:
            self.done = True
            if self.args[2] is not None:
                self.value = marked_layout(*self.args)
        return self.value


def _sentinel_locate(text: str, messages: list[dict[str, Any]], i: int, kind: str,
                     rerender: Callable[[list[dict[str, Any]]], str]) -> tuple[str, tuple[int, int] | None]:
    """Render again with the piece replaced by ``SENTINEL``. Returns ("found", (start, end)) when the render is
    ``prefix + SENTINEL + suffix`` around the same prefix and suffix as ``text``; ("dropped", None) when the
    sentinel does not appear at all (the template does not render this piece); ("failed", None) otherwise."""
    field_name = "reasoning_content" if kind == "reasoning" else "content"
    probe = [dict(m) for m in messages]
    probe[i][field_name] = SENTINEL
    try:
        other = rerender(probe)
    except RenderTimeout:
        raise  # out of time: the record is rejected, no other render would do better
    except RenderError:
        return "failed", None
    pos = other.find(SENTINEL)
    if pos < 0:
        return "dropped", None
    if other.find(SENTINEL, pos + 1) >= 0:
        return "failed", None
    prefix, suffix = other[:pos], other[pos + len(SENTINEL):]
    if len(prefix) + len(suffix) > len(text) or not text.startswith(prefix) or not text.endswith(suffix):
        return "failed", None
    start, end = len(prefix), len(text) - len(suffix)
    return ("found", (start, end)) if end > start else ("failed", None)


def _occurrences(text: str, piece: str, cursor: int, limit: int = 4) -> list[int]:
    """Where ``piece`` occurs from ``cursor`` on: the first place, and the places close after it (within twice its
    length and a little markup: a preview written just before the real turn). Bounded, so a long conversation
    costs no quadratic search."""
    pos = text.find(piece, cursor)
    if pos < 0:
        return []
    out = [pos]
    window = pos + 2 * len(piece) + 512
    while len(out) < limit:
        pos = text.find(piece, pos + 1, window + len(piece))
        if pos < 0:
            break
        out.append(pos)
    return out


def _pick(starts: list[int], text: str, cursor: int, headers: list[tuple[str, bool]]) -> int:
    """Of several places an assistant piece occurs after ``cursor``, the first with an assistant header between
    the cursor and it: a template that previews the answer (in a hint, a summary) before the real turn writes it
    twice, and the turn is the one a header opens. Example: "Q<hint>A</hint><asst>A" -> the second "A"."""
    if len(starts) < 2 or not headers:
        return starts[0]
    for s in starts:
        if any(text.find(h, cursor, s) >= 0 for h, _ in headers[:3]):
            return s
    return starts[0]


def _extend_whitespace(text: str, start: int, end: int, piece: str) -> tuple[int, int]:
    """Grow a span found for ``piece.strip()`` by the piece's own leading/trailing whitespace where the text has it."""
    lead = piece[: len(piece) - len(piece.lstrip())]
    trail = piece[len(piece.rstrip()):]
    if lead and text.endswith(lead, 0, start):
        start -= len(lead)
    if trail and text.startswith(trail, end):
        end += len(trail)
    return start, end


def locate(text: str, messages: list[dict[str, Any]], info: TemplateInfo,
           rerender: Callable[[list[dict[str, Any]]], str] | None = None) -> Layout:
    """Locate every message piece and every assistant turn of ``messages`` in ``text`` (see module docstring).

    ``rerender(messages) -> text`` renders a changed copy of the conversation with the same template and
    variables; without it only the ``exact`` and ``stripped`` methods are used (and tool calls are not located).
    """
    spans: list[Span] = []
    unlocated: list[tuple[int, str]] = []
    dropped: list[tuple[int, str]] = []
    marked = _LazyMarked(text, messages, rerender)
    headers, _ = _candidates(info)
    cursor = 0
    for i, m in enumerate(messages):
        role = m.get("role", "")
        is_assistant = role == "assistant"
        msg_cursor = cursor
        for kind, piece in _pieces(m):
            found: tuple[int, int, str] | None = None
            if marked.value is not None:  # once made (a search failed or was unsure), it answers for every piece
                status, loc = _marked_piece(marked.value, (i, kind, 0), text, piece, msg_cursor, is_assistant,
                                            headers)
                if status == "found" and loc is not None:
                    spans.append(Span(i, role, kind, loc[0], loc[1], "marked"))
                    cursor = max(cursor, loc[1])
                    continue
                if status == "dropped":
                    dropped.append((i, kind))
                    continue
            starts = _occurrences(text, piece, cursor)
            if starts:
                pos = _pick(starts, text, cursor, headers) if is_assistant else starts[0]
                found = (pos, pos + len(piece), "exact")
            else:
                stripped = piece.strip()
                starts = _occurrences(text, stripped, cursor)
                if starts:
                    pos = _pick(starts, text, cursor, headers) if is_assistant else starts[0]
                    found = (pos, pos + len(stripped), "stripped")
            needs_confirm = found is None or len(piece.strip()) < SHORT_PIECE or len(starts) > 1
            if needs_confirm and found is not None and is_assistant and kind == "content":
                needs_confirm = not _is_whole_turn(text, found[0], found[1], cursor, info)
            if needs_confirm and rerender is not None:
                status, loc = _marked_piece(marked.get(), (i, kind, 0), text, piece, msg_cursor, is_assistant,
                                            headers)
                if status == "found" and loc is not None:
                    found = (loc[0], loc[1], "marked")
                elif status == "dropped":
                    dropped.append((i, kind))
                    continue
                elif status == "unknown":
                    status, loc = _sentinel_locate(text, messages, i, kind, rerender)
                    if status == "found" and loc is not None and loc[0] >= cursor:
                        found = (loc[0], loc[1], "sentinel")
                    elif status == "dropped":
                        dropped.append((i, kind))
                        continue
            if found is None:
                unlocated.append((i, f"{kind} of message {i} ({role}) not found in the rendered text"))
                continue
            spans.append(Span(i, role, kind, found[0], found[1], found[2]))
            cursor = max(cursor, found[1])
        calls = m.get("tool_calls")
        if is_assistant and rerender is not None and isinstance(calls, list) and calls:
            cursor = max(cursor, _locate_calls(text, messages, i, calls, marked, msg_cursor, headers, rerender,
                                               spans, dropped))
    notes: list[str] = []
    spans.sort(key=lambda s: (s.start, s.end))
    turns = _assistant_turns(text, messages, spans, info, unlocated, notes, rerender)
    return Layout(spans, turns, unlocated, dropped, notes)


def _marked_piece(layout: MarkedLayout | None, key: PieceKey, text: str, piece: str, cursor: int,
                  is_assistant: bool, headers: list[tuple[str, bool]]) -> tuple[str, tuple[int, int] | None]:
    """("found", span) / ("dropped", None) / ("unknown", None) for one piece, from the marked render."""
    if layout is None or key in layout.broken:
        return "unknown", None
    occ = layout.found.get(key)
    if occ is None:
        return ("dropped", None) if key in layout.absent else ("unknown", None)
    after = [o for o in occ if o[0] >= cursor] or occ
    if is_assistant and len(after) > 1:
        start = _pick([a for a, _ in after], text, cursor, headers)
        span = next(o for o in after if o[0] == start)
    else:
        span = after[0]
    if key[1] != "tool_call":
        span = _extend_whitespace(text, span[0], span[1], piece)
    return "found", span


def _marked_call(layout: MarkedLayout, i: int, j: int, cursor: int) -> tuple[int, int] | None:
    """Where call ``j`` of message ``i`` is written: its argument values, from the name written right before them
    (a name written after them is a reference, e.g. a tool result's header naming the tool it answers)."""
    if (i, "tool_call", j) in layout.broken or (i, "tool_name", j) in layout.broken:
        return None
    args = [o for o in layout.found.get((i, "tool_call", j), []) if o[0] >= cursor]
    names = [o for o in layout.found.get((i, "tool_name", j), []) if o[0] >= cursor]
    if args:
        start, end = args[0]
        before = [a for a, b in names if b <= start]
        return (before[-1] if before else start), end
    if names:
        return names[0]
    return None


def _locate_calls(text: str, messages: list[dict[str, Any]], i: int, calls: list, marked: _LazyMarked, cursor: int,
                  headers: list[tuple[str, bool]], rerender: Callable[[list[dict[str, Any]]], str],
                  spans: list[Span], dropped: list[tuple[int, str]]) -> int:
    """Spans of the tool calls of assistant message ``i`` (kind ``tool_call``): from the marked render, or, when
    it could not mark them, from a render without the calls (what differs is the calls). Returns the furthest end."""
    layout = marked.get()
    end = cursor
    if layout is not None and layout.tool_calls:
        located = False
        for j in range(len(calls)):
            loc = _marked_call(layout, i, j, cursor)
            if loc is not None:
                spans.append(Span(i, "assistant", "tool_call", loc[0], loc[1], "marked"))
                end = max(end, loc[1])
                located = True
        if located:
            return end
        if all((i, kind, j) in layout.absent or (i, kind, j) not in layout.keys
               for j in range(len(calls)) for kind in ("tool_call", "tool_name")):
            dropped.append((i, "tool_call"))
            return end
    region = tool_call_region(text, messages, i, rerender)
    if region is not None and region[1] > cursor:
        start = max(region[0], cursor)
        for h, _ in headers:  # a template may drop the whole call-only message without its calls: the region
            p = text.rfind(h, start, region[1])  # then holds the turn's header, and the call starts after it
            if p >= 0:
                start = p + len(h)
                break
        if region[1] > start:
            spans.append(Span(i, "assistant", "tool_call", start, region[1], "diff"))
            end = max(end, region[1])
    return end


@functools.lru_cache(maxsize=64)
def _candidates(info: TemplateInfo) -> tuple[list[tuple[str, bool]], list[str]]:
    """header_candidates and eot_candidates, computed once per template probe (TemplateInfo is frozen)."""
    return header_candidates(info), eot_candidates(info)


def _is_whole_turn(text: str, start: int, end: int, cursor: int, info: TemplateInfo) -> bool:
    """A short answer needs no sentinel render when it is the whole body of the first assistant turn after
    ``cursor``: the full assistant header right before it (and no earlier one after the cursor), an end-of-turn
    marker right after it. Example (ChatML): "...<|im_start|>assistant\nYes.<|im_end|>" -> True for "Yes."."""
    h = info.assistant_header
    if not h or not info.end_of_turn or not text.startswith(h, start - len(h)):
        return False
    if text.find(h, cursor) != start - len(h):
        return False
    return any(text.startswith(e, end) for e in info.end_of_turn)


def header_candidates(info: TemplateInfo) -> list[tuple[str, bool]]:
    """Texts that open an assistant turn, longest first, each with whether it is the whole header.

    The generation prompt may end with text the template writes differently in past turns (Qwen3.5's
    ``<think>\n``, gpt-oss-style channels, Apriel's "Here are my reasoning steps:"), so its prefixes that end at a
    line break or a marker are tried too. A prefix that also occurs between an answer and the next user message
    (``<|im_start|>`` alone) opens every turn, not only the assistant's, and is never used.

    Example (ChatML): "<|im_start|>assistant\n" -> [("<|im_start|>assistant\n", True), ("<|im_start|>assistant", False)]
    """
    h = info.assistant_header
    if not h:
        return []
    cuts = {len(h)} | {m.end() for m in re.finditer("\n", h)} | {m.end() for m in info.marker_re.finditer(h)}
    out: list[tuple[str, bool]] = []
    for k in sorted(cuts, reverse=True):
        for cand in (h[:k], h[:k].rstrip()):
            if not cand.strip() or any(c == cand for c, _ in out):
                continue
            if info.answer_to_user and cand in info.answer_to_user:
                continue
            out.append((cand, k == len(h) and cand == h))
    return out


def eot_candidates(info: TemplateInfo) -> list[str]:
    """The end-of-turn strings to search after a turn body: each learned closing, then its last marker alone
    (Kimi-K3 closes answers with "<|close|>response<|sep|><|close|>message<|sep|><|end_of_msg|>" and tool calls
    with "...<|close|>tools<|sep|>...<|end_of_msg|>": both end with "<|end_of_msg|>")."""
    out = list(info.end_of_turn)
    for closing in info.end_of_turn:
        last = None
        for last in info.marker_re.finditer(closing):
            pass
        if last is not None and last.end() == len(closing) and last.group(0) not in out:
            out.append(last.group(0))
    return out


def _turn_end_by_prefix(text: str, messages: list[dict[str, Any]], i: int, body_from: int, next_bound: int,
                        rerender: Callable[[list[dict[str, Any]]], str] | None) -> int:
    """Where turn ``i`` ends when no end-of-turn marker follows it: where the render of ``messages[:i+1]`` and the
    full render part (a tool call followed by its result inside the same model turn, a last answer without a
    closing marker), never inside a marker and never before ``body_from``."""
    if rerender is None:
        return body_from
    if i == len(messages) - 1:
        end = len(text)
    else:
        try:
            alone = rerender(messages[: i + 1])
        except RenderTimeout:
            raise  # out of time: the record is rejected, no other render would do better
        except RenderError:
            return body_from
        end = _common_prefix_len(text, alone)
    end = min(end, next_bound)
    seg = text[body_from:end]
    partial = re.search(r"(<[^<>]*|\[[A-Za-z_/]*)$", seg)  # they part inside a marker: end before it
    if partial:
        end = body_from + partial.start()
    end = body_from + len(text[body_from:end].rstrip())
    return max(body_from, end)


def _common_suffix_len(a: str, b: str, limit: int) -> int:
    n = min(len(a), len(b), limit)
    i = 0
    while i < n and a[len(a) - 1 - i] == b[len(b) - 1 - i]:
        i += 1
    return i


def tool_call_region(text: str, messages: list[dict[str, Any]], i: int,
                     rerender: Callable[[list[dict[str, Any]]], str] | None) -> tuple[int, int] | None:
    """Where the tool calls of assistant message ``i`` sit in ``text``: render again without them; the calls are
    what differs between the two renders (common prefix and suffix removed). None when the message has no calls or
    the render without them fails.

    Example: "...<|im_start|>assistant\n<tool_call>{...}</tool_call><|im_end|>..." vs the same without the call
    -> the span of "<tool_call>{...}</tool_call>" (up to markup shared by both).
    """
    if rerender is None or not messages[i].get("tool_calls"):
        return None
    probe = [dict(m) for m in messages]
    probe[i] = {k: v for k, v in messages[i].items() if k != "tool_calls"}
    try:
        other = rerender(probe)
    except RenderTimeout:
        raise  # out of time: the record is rejected, no other render would do better
    except RenderError:
        return None
    start = _common_prefix_len(text, other)
    end = len(text) - _common_suffix_len(text, other, min(len(text), len(other)) - start)
    return (start, end) if end > start else None


def _assistant_turns(text: str, messages: list[dict[str, Any]], spans: list[Span], info: TemplateInfo,
                     unlocated: list[tuple[int, str]], notes: list[str],
                     rerender: Callable[[list[dict[str, Any]]], str] | None = None) -> list[Turn]:
    by_msg: dict[int, list[Span]] = {}
    for s in spans:
        by_msg.setdefault(s.message_index, []).append(s)
    # the first located position of every message, to bound the search of the turn before it
    next_first: dict[int, int] = {}  # message i -> where the first located message after i starts
    bound = len(text)
    for i in range(len(messages) - 1, -1, -1):
        next_first[i] = bound
        if i in by_msg:
            bound = min(bound, min(s.start for s in by_msg[i]))
    headers, eots = _candidates(info)
    turns: list[Turn] = []
    prev_end = 0
    for i, m in enumerate(messages):
        own = by_msg.get(i, [])
        if m.get("role") != "assistant":
            if own:
                prev_end = max(prev_end, max(s.end for s in own))
            continue
        next_bound = next_first[i]
        start, method = None, "content"
        first = min((s.start for s in own), default=None)
        search_to = first if first is not None else next_bound
        for h, whole in headers:
            pos = text.rfind(h, prev_end, search_to) if first is not None else text.find(h, prev_end, search_to)
            if pos >= 0:
                start = pos + len(h)
                method = "generation-prompt" if whole and h == info.generation_prompt else "header"
                break
        if start is None:
            if first is None:
                unlocated.append((i, f"assistant turn {i} has no text to locate and no generation prompt precedes it"))
                continue
            start = first
        body_from = max([s.end for s in own] + [start])
        eot_start = eot_end = -1
        for marker in eots:
            pos = text.find(marker, body_from, next_bound)
            if pos < 0:
                continue
            end = pos + len(marker)
            if eot_start < 0 or end < eot_end or (end == eot_end and pos < eot_start):
                eot_start, eot_end = pos, end
        if eot_start < 0:
            body_end = _turn_end_by_prefix(text, messages, i, body_from, next_bound, rerender)
            calls = tool_call_region(text, messages, i, rerender)
            if calls is not None and body_from <= calls[1] <= next_bound:
                body_end = max(body_end, len(text[:calls[1]].rstrip()))  # Command R+ writes no closing after "Action:"
            eot_start = eot_end = body_end
            if eots:
                where = "the last answer" if i == len(messages) - 1 else f"assistant turn {i}"
                notes.append(f"no end-of-turn marker after {where}: the template writes none there")
        else:
            body_end = eot_start
        turns.append(Turn(i, start, body_end, eot_start, eot_end, method))
        prev_end = max(eot_end, body_end)
    return turns
