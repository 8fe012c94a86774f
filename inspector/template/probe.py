"""Probe a chat template: render tiny conversations once per template and tokenizer and learn its turn markers
(``TemplateInfo``): the generation prompt, the end-of-turn marker(s) after an answer, how tool calls, tool
declarations and reasoning are expected, and which variables the template reads. ``labels/spans.py`` uses them to
find every message in a rendered conversation without ``{% generation %}`` tags.

Example: ChatML -> ``TemplateInfo(generation_prompt="<|im_start|>assistant\\n", eots=("<|im_end|>",), ...)``.
"""

from __future__ import annotations

import re
from functools import cached_property, lru_cache
from dataclasses import dataclass, field
from typing import Any
from inspector.errors import RenderError, RenderTimeout
from inspector.template.render import RenderLimits, compile_template, has_generation_tags, render, template_variables


PROBE_USER = "Probe question 7 about apples?"
PROBE_USER_2 = "Probe follow-up 9 about pears?"
PROBE_ANSWER = "Probe answer 3 about apples."
PROBE_TOOL_RESULT = "Probe result 5 about plums."
PROBE_CALL_ID = "pr0beCa11"  # 9 alphanumeric characters: Mistral's templates reject any other id
PROBE_TOOLS = [{"type": "function", "function": {
    "name": "probe_lookup", "description": "Look up a fruit.",
    "parameters": {"type": "object", "properties": {"fruit": {"type": "string"}}, "required": ["fruit"]}}}]
PROBE_CALL = {"id": PROBE_CALL_ID, "type": "function",
              "function": {"name": "probe_lookup", "arguments": {"fruit": "plums"}}}

# What a turn marker looks like when the tokenizer does not list it as a special token: <|im_end|>, <end_of_turn>,
# <｜end▁of▁sentence｜>, </s>, [/INST]. Markers written as plain text in other shapes (MiniMax's "[e~[") are learned
# from the template itself (the text that closes a user message).
_GENERIC_MARKER = r"<[^<>\s]{1,48}>|\[[A-Za-z_/]{2,24}\]"


def marker_regex(known: list[str] | tuple[str, ...] = ()) -> re.Pattern:
    """A regex for turn markers: the tokenizer's added tokens (longest first), then the generic shapes above.

    Example: marker_regex(["<|im_end|>"]).findall("Hi<|im_end|>\\n<|im_start|>") -> ["<|im_end|>", "<|im_start|>"]
    """
    return _marker_regex(tuple(sorted({t for t in known if t and t.strip()}, key=len, reverse=True)))


@lru_cache(maxsize=64)
def _marker_regex(tokens: tuple[str, ...]) -> re.Pattern:
    # cached: a tokenizer has up to ~100k added tokens, and spans ask for this pattern several times per sample
    return re.compile("|".join([re.escape(t) for t in tokens] + [_GENERIC_MARKER]))


@dataclass(frozen=True)
class TemplateInfo:
    """What probing a template taught us.

    ``generation_prompt``: what ``add_generation_prompt=True`` adds (None when it adds nothing distinct, as in
    Mistral's and Phi-3.5's templates, which always write the assistant header after a user message).
    ``end_of_turn``: the marker strings that close an assistant turn, in the order learned: after an answer that a
    user message follows, after the last answer, after a tool call (several when they differ, e.g. gpt-oss
    ``<|end|>``, ``<|return|>``, ``<|call|>``); empty when the template writes none (the model would never learn to
    stop). Templates without a closing marker whose next role marker stops generation (GLM's ``<|user|>``,
    ``<|observation|>``) get that marker. ``assistant_header``: the text that opens an assistant turn (the
    generation prompt, or the text always written after a user message). ``answer_to_user``: the text between an
    answer and the next user message (closing + next header), used to tell an assistant header from markup that
    every turn shares. ``variables``: what the template reads besides ``messages``.
    """

    generation_prompt: str | None
    end_of_turn: tuple[str, ...]
    has_generation_tags: bool
    bos_in_template: bool
    notes: tuple[str, ...] = field(default_factory=tuple)
    assistant_header: str | None = None
    answer_to_user: str | None = None
    needs_tools_list: bool = False
    variables: tuple[str, ...] = field(default_factory=tuple)
    marker_tokens: tuple[str, ...] = field(default_factory=tuple)  # added tokens of the tokenizer, longest first
    timeout: str | None = None  # set when probing hit the render limit: the engine then renders nothing more
    # how the template wants tool calls (learned from a probe call): arguments as JSON text (it prints them as they
    # are, so an object would come out as a Python repr), and content None on a call-only message (it writes the
    # calls only then: DeepSeek-R1-Distill)
    arguments_as_text: bool = False
    call_content_none: bool = False
    # the shape of tool declarations the template reads: "wrapped" ({"type": "function", "function": {...}}), "bare"
    # (the function spec alone) or None (either renders)
    tools_shape: str | None = None
    # the first end-of-turn marker is the next turn's opener (GLM's "<|user|>"), not a closing of its own
    closing_opens_turn: bool = False

    @cached_property
    def marker_re(self) -> re.Pattern:
        return marker_regex(self.marker_tokens)  # once per probed template: the pattern can hold ~100k tokens


def template_variables_used(template: str) -> tuple[str, ...]:
    """Names a template reads that it does not set itself (besides ``messages``), sorted.

    Example: "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}" -> ("bos_token",)
    """
    from jinja2 import meta

    env = compile_template(template).environment
    try:
        names = meta.find_undeclared_variables(env.parse(template))
    except Exception:  # parse errors were reported by compile_template already
        return ()
    # names a template assigns in an inner scope (loop bodies, macros) show up as undeclared too: leave out the
    # names whose first appearance is an assignment (`set x =`, `for x in`, a macro parameter)
    first_assigned = set()
    decl = r"(?:\{%-?\s*(?:set|for)\s+(?:\w+\s*,\s*)*|\{%-?\s*macro\s+\w+\s*\([^)]*?)"
    for name in names:
        first = re.search(rf"\b{re.escape(name)}\b", template)
        declared = re.search(decl + rf"\b{re.escape(name)}\b", template)
        if first and declared and declared.end() - len(name) <= first.start():
            first_assigned.add(name)
    skip = {"messages", "raise_exception", "range", "namespace", "loop"} | first_assigned
    return tuple(sorted(n for n in names if n not in skip))


def _leading_marker(tail: str, marker_re: re.Pattern) -> str | None:
    m = marker_re.match(tail.lstrip())
    return m.group(0) if m else None


def _closing(tail: str, user_closing: str, marker_re: re.Pattern, opener: str = "") -> str | None:
    """The markup that closes an answer, from the text that follows it (``tail``).

    Templates usually close every message the same way: when the text that closes a user message (``user_closing``)
    occurs in the tail, the closing runs up to and including it (Cohere: "<|END_RESPONSE|><|END_OF_TURN_TOKEN|>"),
    and on over markers written right after it that do not open the next message (``opener``: the text before a
    user message): a template whose answers end ``"}<|eot|>`` where user messages end ``"}``.
    Otherwise it is the first marker of the tail (DeepSeek "<｜end▁of▁sentence｜>", GLM's next-role "<|user|>").

    Example: tail "<|im_end|>\n<|im_start|>user\n", user_closing "<|im_end|>\n" -> "<|im_end|>"
    """
    uc = user_closing.strip()
    if uc and uc in tail:
        closing = tail[: tail.find(uc) + len(uc)]
        while True:
            m = marker_re.match(tail, len(closing))
            if m is None or m.group(0) in opener:
                break
            closing = tail[: m.end()]
        return closing.strip() or None
    return _leading_marker(tail, marker_re)


def _cut_at_opener(after_user: str, before_user: str, tokenizer: Any, marker_re: re.Pattern) -> str:
    """The part of ``after_user`` (what the template writes after a user message) that closes the message: up to
    the turn opener, the first marker the template writes (after any BOS), e.g. ``<|im_start|>`` or
    ``<|START_OF_TURN_TOKEN|>``. Tool-use templates append whole instructions after the last user message.

    Example: after_user "<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>Write 'Action:'...",
    before_user "<BOS_TOKEN><|START_OF_TURN_TOKEN|><|USER_TOKEN|>" -> "<|END_OF_TURN_TOKEN|>"
    """
    head = before_user
    bos = str(getattr(tokenizer, "bos_token", "") or "") if tokenizer is not None else ""
    if bos and head.startswith(bos):
        head = head[len(bos):]
    m = marker_re.match(head.lstrip())
    if m is None:
        return after_user
    pos = after_user.find(m.group(0))
    return after_user[:pos] if pos > 0 else after_user


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    step = 256
    while i < n and a[i:i + step] == b[i:i + step]:
        i += step
    i = min(i, n)
    while i > 0 and a[:i] != b[:i]:
        i -= 1
    return i


_PROBE_CACHE: dict[tuple, TemplateInfo] = {}


def probe_template(template: str, tokenizer: Any = None, variables: dict[str, Any] | None = None,
                   limits: RenderLimits = RenderLimits()) -> TemplateInfo:
    """Learn the generation prompt and the end-of-turn markers of ``template`` (see module docstring). Cached per
    template, tokenizer and variables."""
    key = (template, _tokenizer_key(tokenizer), tuple(sorted((k, repr(v)) for k, v in (variables or {}).items())),
           limits.now)
    info = _PROBE_CACHE.get(key)
    if info is None:
        info = _probe(template, tokenizer, variables, limits)
        if len(_PROBE_CACHE) > 512:
            _PROBE_CACHE.clear()
        _PROBE_CACHE[key] = info
    return info


def _tokenizer_key(tok: Any) -> tuple:
    if tok is None:
        return ()
    return (id(tok), getattr(tok, "name_or_path", ""), len(tok), str(getattr(tok, "eos_token", None)))


def added_token_strings(tokenizer: Any) -> list[str]:
    """Added/special token strings of the tokenizer, longest first."""
    if tokenizer is None:
        return []
    toks = set(getattr(tokenizer, "added_tokens_encoder", {}) or {})
    for key in ("eos_token", "bos_token", "pad_token"):
        v = getattr(tokenizer, key, None)
        if v:
            toks.add(str(v))
    return sorted(toks, key=len, reverse=True)


def _probe(template: str, tokenizer: Any, extra: dict[str, Any] | None, limits: RenderLimits) -> TemplateInfo:
    variables = template_variables(tokenizer, extra)
    notes: list[str] = []
    known = added_token_strings(tokenizer)
    marker_re = marker_regex(known)
    state: dict[str, Any] = {"tools": None}

    def r(msgs, gen=False, tools=None):
        if state.get("timeout"):  # one timeout is enough: every further probe would cost the full limit again
            raise RenderTimeout(state["timeout"])
        use = tools if tools is not None else state["tools"]
        try:
            return render(msgs, template, tokenizer, tools=use, add_generation_prompt=gen, variables=variables,
                          limits=limits).text
        except RenderTimeout as exc:
            state["timeout"] = str(exc)
            raise
        except RenderError:
            if use is not None:
                raise
            # tool-use templates iterate `tools` without checking it is defined: the engine passes [] then too
            text = render(msgs, template, tokenizer, tools=[], add_generation_prompt=gen, variables=variables,
                          limits=limits).text
            state["tools"] = []
            return text

    user = [{"role": "user", "content": PROBE_USER}]
    answer = {"role": "assistant", "content": PROBE_ANSWER}
    gen_prompt = header = None
    user_closing = opener = ""
    try:
        without, with_gen = r(user), r(user, True)
        if with_gen.startswith(without) and len(with_gen) > len(without):
            gen_prompt = header = with_gen[len(without):]
        else:
            notes.append("the generation prompt is not an addition to the rendered prompt")
        pos = without.rfind(PROBE_USER)
        if pos >= 0:
            user_closing = _cut_at_opener(without[pos + len(PROBE_USER):], without[:pos], tokenizer, marker_re)
            opener = without[:pos]
        pos = with_gen.rfind(PROBE_USER)
        if header is None and pos >= 0:
            # the template always writes the assistant header after a user message: Mistral "[/INST]", Phi-3.5
            # "<|end|>\n<|assistant|>\n", Command R7B "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>..."
            after = with_gen[pos + len(PROBE_USER):]
            rest = after[len(_cut_at_opener(after, with_gen[:pos], tokenizer, marker_re)):]
            header = rest if rest.strip() else after if after.strip() else None
    except RenderError as exc:
        notes.append(f"probe with one user message failed: {exc}")

    eots: list[str] = []

    def add(marker: str | None) -> None:
        # a closing that only extends one already learned (Phi-3.5 ends the last answer "<|end|>\n<|endoftext|>")
        # adds nothing: the search stops at the shorter one
        if marker and not any(marker.startswith(e) for e in eots):
            eots.append(marker)

    answer_to_user = None
    try:
        text = r(user + [answer, {"role": "user", "content": PROBE_USER_2}])
        a = text.find(PROBE_ANSWER)
        b = text.find(PROBE_USER_2, a + 1)
        if a >= 0 and b >= 0:
            answer_to_user = text[a + len(PROBE_ANSWER):b]
            add(_closing(answer_to_user, user_closing, marker_re, opener))
    except RenderError as exc:
        notes.append(f"probe with a second user message failed: {exc}")
    try:
        text = r(user + [answer])
        a = text.find(PROBE_ANSWER)
        if a >= 0:
            add(_closing(text[a + len(PROBE_ANSWER):], user_closing, marker_re, opener))
    except RenderError as exc:
        notes.append(f"probe ending on an answer failed: {exc}")
    _probe_tool_closing(r, user, marker_re, answer_to_user, eots, add)
    args_as_text, content_none = _probe_tool_shape(r, user)
    tools_shape = _probe_tools_shape(r, user)
    opens_turn = False
    if eots and user_closing is not None:
        try:
            one = r(user)
            at = one.rfind(PROBE_USER)
            opens_turn = at > 0 and eots[0] in one[:at] and not eots[0].startswith(user_closing.strip() or "\0")
        except RenderError:
            pass

    bos = str(getattr(tokenizer, "bos_token", "") or "") if tokenizer is not None else ""
    bos_in_template = False
    if bos:
        try:
            bos_in_template = r(user).startswith(bos)
        except RenderError:
            pass
    if not eots:
        notes.append("no end-of-turn marker follows an assistant answer")
    if state["tools"] == []:
        notes.append("needs `tools` to be a list (renders fail when it is undefined): given [] when there are none")
    return TemplateInfo(gen_prompt, tuple(eots), has_generation_tags(template), bos_in_template, tuple(notes),
                        header, answer_to_user, state["tools"] == [], template_variables_used(template), tuple(known),
                        state.get("timeout"), arguments_as_text=args_as_text, call_content_none=content_none,
                        closing_opens_turn=opens_turn, tools_shape=tools_shape)


def _probe_tool_shape(r, user) -> tuple[bool, bool]:
    """(arguments_as_text, call_content_none): how the template wants a tool call.

    Arguments: transformers asks for an object, and templates that iterate ``arguments.items()`` need one; a
    template that concatenates ``arguments`` to text raises on an object, and one that prints them as they are
    writes an object as a Python repr ("{'fruit': 'plums'}"): those want JSON text. Content: the loader gives ""
    for a call-only message; a template that writes the call only for content None, or writes an extra empty
    piece for "" (DeepSeek-R1-Distill), gets None (the shorter render wins; a template printing "None" loses).
    """
    import json

    def attempt(content, args):
        fn = dict(PROBE_CALL["function"], arguments=args)
        call = {"role": "assistant", "content": content, "tool_calls": [dict(PROBE_CALL, function=fn)]}
        try:
            return r(user + [call], tools=PROBE_TOOLS)
        except RenderError:
            return None

    obj = PROBE_CALL["function"]["arguments"]
    for args_as_text in (False, True):  # an object first: what transformers documents
        args = json.dumps(obj) if args_as_text else obj
        empty, none = attempt("", args), attempt(None, args)
        ok_empty, ok_none = (t is not None and "plums" in t and "{'fruit': 'plums'}" not in t for t in (empty, none))
        if ok_empty or ok_none:
            return args_as_text, ok_none and (not ok_empty or len(none) < len(empty))
    return False, False


def _probe_tools_shape(r, user) -> str | None:
    """"wrapped" when the template renders OpenAI-shaped tool declarations but raises on bare function specs
    (it reads ``tool.function.name``), "bare" for the reverse (Command R+ reads ``tool.name``), else None."""
    def renders(tools):
        try:
            text = r(user, tools=tools)
        except RenderError:
            return False
        return "probe_lookup" in text

    wrapped, bare = renders(PROBE_TOOLS), renders([t["function"] for t in PROBE_TOOLS])
    if wrapped and not bare:
        return "wrapped"
    if bare and not wrapped:
        return "bare"
    return None


def _probe_tool_closing(r, user, marker_re, answer_to_user, eots, add) -> None:
    """The marker that ends a tool-call turn, when it is not one already learned: gpt-oss ``<|call|>``, GLM's
    ``<|observation|>``, Llama 3.1's ``<|eom_id|>``. Templates without tool support are skipped quietly."""
    call = {"role": "assistant", "content": "", "tool_calls": [PROBE_CALL]}
    result = {"role": "tool", "content": PROBE_TOOL_RESULT, "tool_call_id": PROBE_CALL_ID, "name": "probe_lookup"}
    try:
        ends_on_call = r(user + [call], tools=PROBE_TOOLS)
        with_result = r(user + [call, result], tools=PROBE_TOOLS)
    except RenderError:
        return
    if "plums" not in ends_on_call:  # the template does not render tool calls
        return
    base = ends_on_call.rstrip()
    if with_result.startswith(base):
        cut = len(base)
    else:  # the last call renders differently: compare up to where they part, at a marker boundary
        cut = _common_prefix_len(ends_on_call, with_result)
        while cut > 0 and with_result[cut - 1] not in ">]\n ":
            cut -= 1
        if "plums" not in with_result[:cut]:  # they part before the call is written: nothing to learn
            return
    before, after = with_result[:cut], with_result[cut:]
    if any(before.rstrip().endswith(e) for e in eots):
        return
    nxt = _leading_marker(after, marker_re)
    if nxt and not (answer_to_user and nxt in answer_to_user) and after.lstrip().startswith(nxt):
        add(nxt)  # the next role marker stops generation (GLM <|observation|>, Gemma 4 <|tool_response>)
        return
    m = None
    for m in marker_re.finditer(base):
        pass
    if m is not None and m.end() == len(base) and not (answer_to_user and m.group(0) in answer_to_user):
        add(m.group(0))  # the call's own closing marker (gpt-oss <|call|>, Llama 3.1 <|eom_id|>)
