"""Find where each message's text sits in a rendered conversation, without relying on ``{% generation %}`` tags.

Only 4 of 56 publisher templates carry generation tags, so the core locates text itself. For each message piece
(reasoning, content) it tries, in order, and records which method worked:

1. ``exact``: the piece as is, searched left to right from the end of the previous piece;
2. ``stripped``: the piece with surrounding whitespace removed (templates that ``| trim`` content);
3. ``sentinel``: render again with only this piece replaced by a sentinel word; the render is
   ``prefix + X + suffix`` around the sentinel, so ``X`` is what the template made of the piece (it split off
   reasoning, rewrote it, merged it into another turn). Short pieces (which could also match template markup,
   like an answer "user") are always confirmed this way.

An assistant *turn* is then the text the model generates at inference: from the end of the generation prompt
(``TemplateInfo.generation_prompt``) that precedes the turn, through its content and any tool-call markup, to the
end-of-turn marker that closes it.

Example (ChatML): "<|im_start|>assistant\\nHi!<|im_end|>\\n" -> content span "Hi!" (exact), turn body "Hi!",
end-of-turn "<|im_end|>".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .errors import RenderError
from .render import TemplateInfo

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
    method: str  # how the start was found: "generation-prompt" or "content"

    @property
    def has_eot(self) -> bool:
        return self.eot_end > self.eot_start


@dataclass
class Layout:
    spans: list[Span]
    turns: list[Turn]
    unlocated: list[tuple[int, str]]  # (message_index, why)


def _pieces(message: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning.strip():
        out.append(("reasoning", reasoning))
    content = message.get("content")
    if isinstance(content, str) and content.strip():
        out.append(("content", content))
    return out


def _sentinel_locate(text: str, messages: list[dict[str, Any]], i: int, kind: str,
                     rerender: Callable[[list[dict[str, Any]]], str]) -> tuple[int, int] | None:
    field = "reasoning_content" if kind == "reasoning" else "content"
    probe = [dict(m) for m in messages]
    probe[i][field] = SENTINEL
    try:
        other = rerender(probe)
    except RenderError:
        return None
    pos = other.find(SENTINEL)
    if pos < 0 or other.find(SENTINEL, pos + 1) >= 0:
        return None
    prefix, suffix = other[:pos], other[pos + len(SENTINEL):]
    if len(prefix) + len(suffix) > len(text) or not text.startswith(prefix) or not text.endswith(suffix):
        return None
    start, end = len(prefix), len(text) - len(suffix)
    return (start, end) if end > start else None


def locate(text: str, messages: list[dict[str, Any]], info: TemplateInfo,
           rerender: Callable[[list[dict[str, Any]]], str] | None = None) -> Layout:
    """Locate every message piece and every assistant turn of ``messages`` in ``text`` (see module docstring)."""
    spans: list[Span] = []
    unlocated: list[tuple[int, str]] = []
    cursor = 0
    for i, m in enumerate(messages):
        role = m.get("role", "")
        for kind, piece in _pieces(m):
            found: tuple[int, int, str] | None = None
            pos = text.find(piece, cursor)
            if pos >= 0:
                found = (pos, pos + len(piece), "exact")
            else:
                stripped = piece.strip()
                pos = text.find(stripped, cursor)
                if pos >= 0:
                    found = (pos, pos + len(stripped), "stripped")
            needs_confirm = found is None or len(piece.strip()) < SHORT_PIECE
            if needs_confirm and rerender is not None:
                loc = _sentinel_locate(text, messages, i, kind, rerender)
                if loc is not None and loc[0] >= cursor:
                    found = (loc[0], loc[1], "sentinel")
            if found is None:
                unlocated.append((i, f"{kind} of message {i} ({role}) not found in the rendered text"))
                continue
            spans.append(Span(i, role, kind, found[0], found[1], found[2]))
            cursor = found[1]
    turns = _assistant_turns(text, messages, spans, info, unlocated)
    return Layout(spans, turns, unlocated)


def _header_variants(gen_prompt: str | None) -> list[str]:
    if not gen_prompt:
        return []
    out = [gen_prompt]
    stripped = gen_prompt.rstrip()
    if stripped and stripped != gen_prompt:
        out.append(stripped)
    first_line = gen_prompt.split("\n", 1)[0]
    if first_line and first_line not in out:
        out.append(first_line + ("\n" if "\n" in gen_prompt else ""))
    return out


def _assistant_turns(text: str, messages: list[dict[str, Any]], spans: list[Span], info: TemplateInfo,
                     unlocated: list[tuple[int, str]]) -> list[Turn]:
    by_msg: dict[int, list[Span]] = {}
    for s in spans:
        by_msg.setdefault(s.message_index, []).append(s)
    # the first located position of every message, to bound the search of the turn before it
    firsts = sorted((min(s.start for s in ss), i) for i, ss in by_msg.items())
    headers = _header_variants(info.generation_prompt)
    turns: list[Turn] = []
    prev_end = 0
    for i, m in enumerate(messages):
        own = by_msg.get(i, [])
        if m.get("role") != "assistant":
            if own:
                prev_end = max(prev_end, max(s.end for s in own))
            continue
        next_bound = next((pos for pos, j in firsts if j > i), len(text))
        start, method = None, "content"
        first = min((s.start for s in own), default=None)
        search_to = first if first is not None else next_bound
        for h in headers:
            pos = text.rfind(h, prev_end, search_to) if first is not None else text.find(h, prev_end, search_to)
            if pos >= 0:
                start, method = pos + len(h), "generation-prompt"
                break
        if start is None:
            if first is None:
                unlocated.append((i, f"assistant turn {i} has no text to locate and no generation prompt precedes it"))
                continue
            start = first
        body_from = max((s.end for s in own), default=start)
        eot_start = eot_end = -1
        for marker in info.end_of_turn:
            pos = text.find(marker, body_from, next_bound)
            if pos >= 0 and (eot_start < 0 or pos < eot_start):
                eot_start, eot_end = pos, pos + len(marker)
        if eot_start < 0:
            eot_start = eot_end = body_from
            body_end = body_from
        else:
            body_end = eot_start
        turns.append(Turn(i, start, body_end, eot_start, eot_end, method))
        prev_end = max(eot_end, body_end)
    return turns
