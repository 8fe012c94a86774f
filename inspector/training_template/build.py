"""Rewrite any chat template into a *training template*: the same Jinja with ``{% generation %}`` blocks around
exactly what our ``assistant-only`` labels train, so ``apply_chat_template(..., return_assistant_tokens_mask=True)``
(TRL's ``assistant_only_loss=True``) trains the same tokens our labels do.

How, without a list of model families:

1. ``jinja_source.TemplateSource`` maps every output of the template (text between tags, ``{{ }}`` tags and the
   operands of their ``+``/``~`` concatenations) to its place in the source.
2. An *instrumented* copy writes an invisible marker before and after each of those outputs, and renders the
   conversations (the user's data plus probe conversations: system prompt, several turns, reasoning, a tool call).
   Stripping the markers gives the original render, byte for byte, with the writer of every character known.
3. Our label engine, run with a one-character-per-token view of the tokenizer, says which characters are trained
   (char-exact, so the result does not depend on how one tokenizer merges ``<|im_end|>`` with a newline).
4. Each output is then always trained (wrap it), never trained (leave it), or trained for some messages only:
   the same ``{{ message.content }}`` writes user and assistant text. Those get ``{% if <cond> %}`` with a tagged
   and an untagged copy, where ``<cond>`` (``message.role == "assistant"``, or "the previous message was the
   assistant's" for next-role end markers like GLM's ``<|user|>``) is checked against every render. Literals and
   text are split where the trained part ends (``'<|im_end|>\\n'`` -> ``'<|im_end|>'`` + ``'\\n'``).
5. What cannot be wrapped is reported as a ``Problem`` with the line and an example, never guessed.

Example (ChatML): "{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>' + '\\n' }}" becomes
"{{ '<|im_start|>' + m.role + '\\n' }}{% if m.role == "assistant" %}{% generation %}{{ m.content + '<|im_end|>' }}
{% endgeneration %}{% else %}{{ m.content + '<|im_end|>' }}{% endif %}{{ '\\n' }}".

Templates that already have ``{% generation %}`` are returned as they are. ``template_check`` verifies any
result through transformers itself. What this leaves out: per-message trainable flags (``loss_weight: 0``), which
no chat template can see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

import numpy as np

from inspector.constants import IGNORE_INDEX
from inspector.conversations import Conversation, Message
from inspector.errors import ChatTemplateError, RenderError
from inspector.training_template.jinja_source import TemplateSource, Unit, apply_edits, same_tokens_apart_from, string_literal, var_tag
from inspector.labels.engine import LabelEngine, LabelOptions
from inspector.template.render import compile_template, has_generation_tags
from inspector.training_template.rewrite import Problem, TemplateEdit, Atom, decide, Occurrence, observe, rewrite
from inspector.template.tokenizer import ChatSetup

GENERATION_TAGS = ("generation", "endgeneration")

# Invisible markers of the instrumented render (Unicode plane 15, private use): open/close + one id char per
# output, and the answer of each condition probe.
_OPEN, _CLOSE, _YES, _NO = "\U000F0000", "\U000F0001", "\U000F0002", "\U000F0003"
_ID_BASE = 0xF1000
_MAX_ATOMS = 0xFFFFD - _ID_BASE
_MARKER = re.compile("([\U000F0000\U000F0001])([\U000F1000-\U000FFFFD])|([\U000F0002\U000F0003])")
_PRIVATE = re.compile("[\U000F0000-\U000FFFFD]")

_CALL = {"id": "call0w3a1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]

# Conversations rendered besides the user's data, so every kind of assistant output is reached at least once.
PROBE_CONVERSATIONS = (
    Conversation("probe-multi-turn", [
        Message("system", "You are a terse geography tutor."),
        Message("user", "What is the capital of France?"),
        Message("assistant", "Paris is the capital of France."),
        Message("user", "And of Italy?"),
        Message("assistant", "Rome is the capital of Italy.")]),
    Conversation("probe-reasoning", [
        Message("user", "How many legs do two cats have?"),
        Message("assistant", "Two cats have eight legs.", reasoning="Each cat has four legs; two times four is eight."),
        Message("user", "And three dogs?"),
        Message("assistant", "Three dogs have twelve legs.", reasoning="Each dog has four legs; three fours are twelve.")]),
    Conversation("probe-tool-call", [
        Message("system", "You can check the weather."),
        Message("user", "What is the weather like in the Norwegian capital?"),
        Message("assistant", "", tool_calls=[_CALL]),
        Message("tool", '{"temperature": 7, "sky": "overcast"}', name="get_weather", tool_call_id="call0w3a1"),
        Message("assistant", "It is 7 degrees and overcast there.")], tools=_TOOLS),
)


@dataclass
class TrainingTemplate:
    """The result of ``build_training_template``.

    ``template``: the training template (equal to ``original`` when it already had tags). ``problems``: what could
    not be wrapped (empty: every trained character is inside a generation block in the renders seen).
    ``static_identical``: the new template lexes to the original's tokens plus the tags (True), so it renders the
    same text for every input; False when outputs were split or duplicated (then only renders prove it); None
    when nothing changed. ``unreached``: lines of outputs no conversation rendered (they carry no tags).
    """

    original: str
    template: str
    edits: list[TemplateEdit] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    already_tagged: bool = False
    static_identical: bool | None = None
    unreached: list[int] = field(default_factory=list)
    conversations: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.template != self.original


# --- the one-character-per-token view of a tokenizer ---------------------------------------------------------------

class CharTokenizer:
    """The tokenizer with every character its own token, for char-exact labels from the engine's public API.

    Everything else (special tokens, added tokens the probe reads as markers, ids) comes from the real tokenizer.
    Example: CharTokenizer(tok)(["ab"])["offset_mapping"] -> [[(0, 1), (1, 2)]]
    """

    _tokenizer = None  # no fast backend: the engine then calls __call__ with offsets

    def __init__(self, tokenizer: Any):
        object.__setattr__(self, "_real", tokenizer)

    def __getattr__(self, name: str) -> Any:
        if name == "_real":
            raise AttributeError(name)
        return getattr(self._real, name)

    def __len__(self) -> int:
        return len(self._real)

    def __call__(self, texts, add_special_tokens: bool = False, return_offsets_mapping: bool = False, **_: Any):
        texts = [texts] if isinstance(texts, str) else list(texts)
        return {"input_ids": [[ord(c) for c in t] for t in texts],
                "offset_mapping": [[(i, i + 1) for i in range(len(t))] for t in texts]}


def trained_chars(setup: ChatSetup, conversations: list[Conversation], opts: LabelOptions
                  ) -> tuple[dict[str, tuple[str, np.ndarray]], dict[str, str]]:
    """Per conversation id: (rendered text, bool per character: trained under ``opts``), and the render errors. The
    result's ``messages[id]`` holds the messages the engine rendered, adapted to the template (tool-call arguments,
    content None), which the instrumented renders must use too."""
    char_setup = replace(setup, tokenizer=CharTokenizer(setup.tokenizer))
    samples, errors = LabelEngine(char_setup).build(conversations, opts)
    out = _Truth()
    for s in samples:
        offs = np.clip(np.asarray(s.offsets, dtype=np.int64).reshape(-1, 2), 0, len(s.text))
        labeled = offs[np.asarray(s.labels) != IGNORE_INDEX]
        edges = np.zeros(len(s.text) + 1, dtype=np.int64)  # +1 where a trained token starts, -1 where it ends
        np.add.at(edges, labeled[:, 0], 1)
        np.add.at(edges, labeled[:, 1], -1)
        out[s.conversation_id] = (s.text, np.cumsum(edges)[:-1] > 0)
        out.messages[s.conversation_id] = s.messages
    return out, {e.conversation_id: e.reason for e in errors}


class _Truth(dict):
    """conversation id -> (text, trained chars), plus the rendered messages of each in ``messages``."""

    def __init__(self):
        super().__init__()
        self.messages: dict[str, list] = {}


# --- instrumented render -----------------------------------------------------------------------------------------

def _atoms(src: TemplateSource) -> list[Atom]:
    atoms: list[Atom] = []
    for u in src.units:
        for k in range(max(1, len(u.operands)) if u.kind == "var" else 1):
            atoms.append(Atom(len(atoms), u, k))
    if len(atoms) > _MAX_ATOMS:
        raise ChatTemplateError(f"Chat template has {len(atoms):,} outputs: too many to instrument")
    return atoms


def message_features(unit: Unit) -> list[tuple[str, str]]:
    """Facts about the messages an output is written for, as (name, guarded Jinja test) pairs: the role, whether the
    message has content / reasoning / tool calls (for each enclosing loop variable), and ``loop.first``,
    ``loop.last`` and "the previous message is the assistant's" for the innermost loop. None of the tests raises,
    whatever the loop variable holds.

    Example: inside "{% for m in messages %}" -> [('m is the assistant', 'm.role == "assistant"'), ...]
    """
    out = []
    for name in reversed(unit.loops):
        out.append((f"{name} is the assistant", f'{name}.role == "assistant"'))
    if unit.innermost_loop:
        out.append(("the previous message is the assistant", '(loop.previtem is defined and loop.previtem is mapping '
                                                             'and loop.previtem.role == "assistant")'))
    for name in reversed(unit.loops):
        out.append((f"{name} has content", f'({name}.content is string and {name}.content != "")'))
        out.append((f"{name} has reasoning", f'({name}.reasoning_content is string and '
                                             f'{name}.reasoning_content != "")'))
        out.append((f"{name} has tool calls", f"({name}.tool_calls is sequence and {name}.tool_calls is not string "
                                              f"and {name}.tool_calls|length > 0)"))
    if unit.innermost_loop:
        out += [("first in loop", "loop.first"), ("last in loop", "loop.last")]
    return out


def instrument(src: TemplateSource, atoms: list[Atom], probes: dict[int, list[tuple[str, str]]]) -> str:
    """The template with a marker before and after every atom; ``probes``: per unit id, (name, test) pairs whose
    answers are written (as markers) right after the unit's first open marker."""
    edits: list[tuple[int, int, str]] = []
    by_unit: dict[int, list[Atom]] = {}
    for a in atoms:
        by_unit.setdefault(a.unit.id, []).append(a)
    for uid, unit_atoms in by_unit.items():
        unit = unit_atoms[0].unit
        conds = "".join(f"{{{{ {string_literal(_YES)} if ({c}) else {string_literal(_NO)} }}}}"
                        for _, c in probes.get(uid, []))
        if unit.kind == "data":
            tok = src.tokens[unit.first]
            a = unit_atoms[0]
            edits.append((tok.start, tok.start, var_tag(string_literal(_OPEN + chr(_ID_BASE + a.id))) + conds))
            edits.append((tok.end, tok.end, var_tag(string_literal(_CLOSE + chr(_ID_BASE + a.id)),
                                                    src.context(tok.end))))
            continue
        begin, end = src.tokens[unit.first], src.tokens[unit.last]
        parts = [" '' }}"]
        for i, a in enumerate(unit_atoms):
            op = unit.operands[a.operand]
            parts.append(var_tag(string_literal(_OPEN + chr(_ID_BASE + a.id))) + (conds if i == 0 else "")
                         + "{{ " + op.text + " }}" + var_tag(string_literal(_CLOSE + chr(_ID_BASE + a.id))))
        parts.append("{{ '' ")
        edits.append((begin.end, end.start, "".join(parts)))
    text, _ = apply_edits(src, edits)
    return text


def read_markers(text: str) -> tuple[str, list[Occurrence]]:
    """Strip the markers of an instrumented render: the clean text and each atom occurrence in it.

    Example: "\\U000F0000\\U000F1000Hi\\U000F0001\\U000F1000!" -> ("Hi!", [atom 0 at 0..2])
    """
    clean: list[str] = []
    occ: list[Occurrence] = []
    pos, n = 0, 0
    for m in _MARKER.finditer(text):
        clean.append(text[pos:m.start()])
        n += m.start() - pos
        pos = m.end()
        if m.group(3):
            if occ and occ[-1].end < 0:
                occ[-1].probes += (m.group(3) == _YES,)
            continue
        atom = ord(m.group(2)) - _ID_BASE
        if m.group(1) == _OPEN:
            occ.append(Occurrence(atom, n, -1))
        else:
            for o in reversed(occ):
                if o.atom == atom and o.end < 0:
                    o.end = n
                    break
    clean.append(text[pos:])
    return "".join(clean), [o for o in occ if o.end >= 0]


# --- the public entry point --------------------------------------------------------------------------------------

def training_options(opts: LabelOptions | None = None) -> LabelOptions:
    """The labels a chat template can reproduce: assistant-only, whole samples, per-message flags ignored."""
    return replace(opts or LabelOptions(), strategy="assistant-only", respect_trainable=False, max_length=None)


def build_training_template(setup: ChatSetup, conversations: Iterable[Conversation] | None = None,
                            opts: LabelOptions | None = None, *, probes: bool = True) -> TrainingTemplate:
    """The training template of ``setup.template``: ``{% generation %}`` blocks around what our assistant-only
    labels train in ``conversations`` (plus ``PROBE_CONVERSATIONS`` unless ``probes=False``).

    A template that already has ``{% generation %}`` comes back unchanged (``already_tagged``). Raises
    ``ChatTemplateError`` when the template does not parse; everything found in the renders is data
    (``problems``, ``notes``). Verify the result with ``template_check.verify_training_template``.
    """
    template = setup.template
    opts = training_options(opts)
    if has_generation_tags(template):
        return TrainingTemplate(template, template, already_tagged=True,
                                notes=["the template already has {% generation %} tags: left as it is"])
    src = TemplateSource(template)
    atoms = _atoms(src)
    given = list(conversations or []) + (list(PROBE_CONVERSATIONS) if probes else [])
    convs = [replace(c, id=str(i)) for i, c in enumerate(given)]  # ids of the user's data need not be unique
    truth, errors = trained_chars(setup, convs, opts)
    notes = [f"{given[int(i)].id}: not rendered ({why})" for i, why in errors.items()]
    firsts = {}
    for u in src.units:
        firsts.setdefault(u.output, u)
    features = {out_id: message_features(u) for out_id, u in firsts.items()}
    probe_at = {u.id: features[out_id] for out_id, u in firsts.items() if features[out_id]}
    renders = _instrumented_renders(setup, src, atoms, probe_at, convs, truth, opts, notes)
    if renders is None:  # a fact probe made the template fail: render without them
        renders = _instrumented_renders(setup, src, atoms, {}, convs, truth, opts, notes)
        features = {}
    seen = observe(src, atoms, renders or [])
    problems = list(seen.problems)
    decided = {out_id: decide(pieces, seen.occurrences[out_id], features.get(out_id, []), problems, src)
               for out_id, pieces in seen.pieces.items()}
    new, edits, only_tags = rewrite(src, decided, problems)
    static = None
    if edits:
        static = only_tags and same_tokens_apart_from(src.env, template, new, GENERATION_TAGS)
        if only_tags and not static:
            problems.append(Problem(None, "", "internal: inserting the tags changed how the template lexes"))
    try:
        compile_template(new)
    except ChatTemplateError as exc:
        problems.append(Problem(None, "", f"internal: the rewritten template does not compile: {exc}"))
    if edits and not has_generation_tags(new):
        notes.append("no {% generation %} tag matches TRL's has_generation_markers")
    unreached = sorted({u.line for u in src.units if u.id not in seen.reached})
    return TrainingTemplate(template, new, edits, _dedupe(problems), False, static, unreached, seen.rendered, notes)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    out: list[Problem] = []
    for p in problems:
        if p not in out:
            out.append(p)
    return out


def _instrumented_renders(setup: ChatSetup, src: TemplateSource, atoms: list[Atom],
                          probe_at: dict[int, list[tuple[str, str]]], convs: list[Conversation],
                          truth: dict[str, tuple[str, np.ndarray]], opts: LabelOptions, notes: list[str]
                          ) -> list[tuple[str, list[Occurrence], np.ndarray]] | None:
    """Render every conversation with the instrumented template; None when the probes broke a render."""
    instrumented = instrument(src, atoms, probe_at)
    engine = LabelEngine(ChatSetup(setup.tokenizer, instrumented, "instrumented", setup.name))
    as_text = "tool_calls" not in src.original
    out = []
    for conv in convs:
        if conv.id not in truth:
            continue
        text, trained = truth[conv.id]
        if _PRIVATE.search(text):
            notes.append(f"{conv.id}: skipped (its text holds private-use characters the markers need)")
            continue
        try:
            msgs = getattr(truth, "messages", {}).get(conv.id) or conv.template_messages(tool_calls_as_text=as_text)
            rendered = engine.render(msgs, conv.tools, opts).text
        except RenderError as exc:
            if probe_at:
                return None
            notes.append(f"{conv.id}: the instrumented template failed ({exc})")
            continue
        clean, occ = read_markers(rendered)
        if clean != text:
            if probe_at:
                return None
            notes.append(f"{conv.id}: skipped (the instrumented render differs from the original)")
            continue
        out.append((clean, occ, trained))
    return out
