"""A second opinion on labels that needs no knowledge of the template's layout: verify a sample by perturbation.

The label engine finds message text in the render (search, a marked render, sentinels) and decides where each
assistant turn starts and ends; that is a heuristic. This module checks its result independently. It renders the
conversation again with *one field at a time* replaced by a distinct sentinel — each message's content and
reasoning, each tool call's name and arguments, the tool descriptions — and diffs the render against the original.
The characters that change are the characters that depend on that field. Then, per token of the sample:

- a token holding a character that depends on a field of an assistant message the strategy trains must be labeled
  (where the template writes the field more than once, e.g. a tool result's header naming the tool, each copy is
  labeled all through or not at all, and at least one all through: the model writes it once);
- a token holding a character that depends on a system/user/tool field, the tools, or an assistant message the
  strategy does not train (and no character of a trained field) must be -100;
- a token that lies in the *inference prompt* of a trained turn must be -100: for an assistant message i, the
  prompt a server would send is ``render(messages[:i], add_generation_prompt=True)``; the characters it shares with
  the training render, after the text of the messages before i, are the header the model is given (a header written
  as plain text, e.g. ``<sep>assistant: ``, is tokenized like any text and easily labeled by mistake).

Every token that breaks a rule is reported, grouped by message and field (``label-verification``, error), with the
token positions (the prompt rule as field "generation prompt", rule "prompt-labeled"). The end-of-turn marker
depends on no field, so it is not judged here; the ``eot-not-labeled``
check covers it. Nothing here reads the engine's spans or turns.

Example (ChatML): user "Hi", assistant "Hello!"; replacing the assistant content by a sentinel changes exactly the
characters of "Hello!"; if a corrupted sample left the token "Hello" at -100, the verifier reports "assistant message
1, content: 1 token not labeled (position 7)".

Cost: one render per non-empty field, so it runs on a sample of records in CI (``--verify sample``) and on the one
conversation shown in the app. What it leaves out: strategies that do not label by role (``all-tokens``,
``response-template``, and ``session`` laid out with a ``TurnFormat``), and characters that depend on the mere
presence of a message rather than on its text (headers, separators).
"""

from __future__ import annotations

import copy
import difflib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from inspector.constants import IGNORE_INDEX
from inspector.errors import RenderError
from inspector.template.clock import CpuBudget

VERIFIED_STRATEGIES = ("assistant-only", "last-turn", "split-turns", "session")
VERIFY_MODES = ("none", "sample", "all")
SAMPLE_FIRST = 16  # --verify sample: the first records of a run ...
SAMPLE_EVERY = 256  # ... and then one record in this many


def should_verify(mode: str, index: int) -> bool:
    """Whether the record at 0-based position ``index`` of a run is verified under ``mode``.

    Example: should_verify("sample", 3) -> True; should_verify("sample", 300) -> False; ("sample", 512) -> True.
    """
    if mode == "all":
        return True
    if mode == "sample":
        return index < SAMPLE_FIRST or index % SAMPLE_EVERY == 0
    return False


@dataclass(frozen=True)
class Field:
    """One field of a conversation that the template may write. ``message_index`` is -1 for the tools list."""

    message_index: int
    role: str  # the message's role, or "tools"
    name: str  # "content", "reasoning", "tool_calls[0].name", "tool_calls[0].arguments", "tools"

    def describe(self) -> str:
        if self.message_index < 0:
            return "the tool declarations"
        return f"{self.role} message {self.message_index}, {self.name}"


@dataclass
class Dependencies:
    """Which characters of the rendered text depend on which field. ``regions[f]``: [start, end) char ranges;
    ``unverifiable``: fields whose perturbed render raised or could not be aligned (with why); ``side_effects``:
    fields whose perturbation also changed text elsewhere (a template that tests the value), left out there."""

    text: str
    regions: dict[Field, list[tuple[int, int]]] = field(default_factory=dict)
    unverifiable: list[tuple[Field, str]] = field(default_factory=list)
    side_effects: list[Field] = field(default_factory=list)


def _sentinel(k: int, original: str = "") -> str:
    """A text no template writes by itself, whose first and last characters differ from ``original``'s, so the
    diff starts and ends exactly at the field. Digits and '§' survive case filters and JSON encoding."""
    s = f"§{k}§4471§{k}§"
    core = original.strip()
    if core and (core[0] == s[0] or core[-1] == s[-1]):
        s = f"¤{k}¤4471¤{k}¤"
    return s


@dataclass
class Perturbation:
    """One field replaced by sentinel text: ``apply(messages, tools) -> (messages, tools)`` returns changed copies,
    ``marks`` the sentinel texts it writes (what to look for in the perturbed render)."""

    field: Field
    marks: list[str]
    apply: Callable[[Sequence[dict[str, Any]], list | None], tuple[list[dict[str, Any]], list | None]]


def _set_path(i: int, path: tuple, value: Any) -> Callable:
    def apply(msgs, tools):
        msgs = list(msgs)
        msgs[i] = target = copy.deepcopy(msgs[i])
        for p in path[:-1]:
            target = target[p]
        target[path[-1]] = value
        return msgs, tools
    return apply


def perturbations(messages: Sequence[dict[str, Any]], tools: list | None) -> list[Perturbation]:
    """One perturbation per non-empty field: each message's content and reasoning, each tool call's name and
    arguments, and the tool descriptions. Example: [user "Hi"] -> [Perturbation(Field(0, "user", "content"),
    ["§0§4471§0§"], ...)]."""
    out: list[Perturbation] = []

    def add(fld: Field, i: int, path: tuple, original: Any) -> None:
        mark = _sentinel(len(out), original if isinstance(original, str) else "")
        if isinstance(original, str):
            out.append(Perturbation(fld, [mark], _set_path(i, path, mark)))
        else:  # arguments given as an object: a sentinel key and value, so keys count as argument text too
            key = _sentinel(len(out) + 100_000)
            out.append(Perturbation(fld, [key, mark], _set_path(i, path, {key: mark})))

    for i, m in enumerate(messages):
        role = str(m.get("role", ""))
        for name, key in (("content", "content"), ("reasoning", "reasoning_content")):
            value = m.get(key)
            if isinstance(value, str) and value.strip():
                add(Field(i, role, name), i, (key,), value)
        calls = m.get("tool_calls")
        for j, call in enumerate(calls if isinstance(calls, list) else []):
            if not isinstance(call, dict):
                continue
            nested = isinstance(call.get("function"), dict)
            fn = call["function"] if nested else call
            base = ("tool_calls", j, "function") if nested else ("tool_calls", j)
            name, args = fn.get("name"), fn.get("arguments")
            if isinstance(name, str) and name.strip():
                add(Field(i, role, f"tool_calls[{j}].name"), i, base + ("name",), name)
            if (isinstance(args, str) and args.strip()) or (isinstance(args, dict) and args):
                add(Field(i, role, f"tool_calls[{j}].arguments"), i, base + ("arguments",), args)
    described = [t for t in tools or [] if isinstance(_tool_fn(t).get("description"), str)]
    if described:
        marks = [_sentinel(len(out) + n, _tool_fn(t)["description"]) for n, t in enumerate(described)]

        def apply(msgs, tls):
            tls = copy.deepcopy(list(tls or []))
            it = iter(marks)
            for t in tls:
                fn = _tool_fn(t)
                if isinstance(fn.get("description"), str):
                    fn["description"] = next(it)
            return list(msgs), tls
        out.append(Perturbation(Field(-1, "tools", "tools"), marks, apply))
    return out


def _tool_fn(tool: Any) -> dict:
    if isinstance(tool, dict):
        return tool["function"] if isinstance(tool.get("function"), dict) else tool
    return {}


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    lo, hi = 0, n
    while lo < hi:  # binary search on equal prefixes: C-speed slices instead of a per-character loop
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: str, b: str, limit: int) -> int:
    lo, hi = 0, min(len(a), len(b), limit)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid:] == b[len(b) - mid:]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def diff_regions(text: str, other: str, sentinel_marks: Sequence[str]) -> tuple[list[tuple[int, int]], bool] | None:
    """Char ranges of ``text`` that changed into a sentinel in ``other``, and whether anything else changed too.

    ``sentinel_marks``: the sentinel texts (or recognizable parts of them) that ``other`` holds where the field was.
    None when no sentinel is in ``other`` (the template does not write the field: no character depends on it).

    Example: ("<u>Hi</u>", "<u>§0§</u>", ["§0§"]) -> ([(3, 5)], False)
    """
    p = _common_prefix(text, other)
    s = _common_suffix(text, other, min(len(text), len(other)) - p)
    t_mid, o_mid = text[p:len(text) - s], other[p:len(other) - s]
    hits = sorted({(pos, mark) for mark in sentinel_marks for pos in _all(o_mid, mark)})
    if not hits:
        return None
    if len(hits) == 1 and hits[0][0] == 0 and len(hits[0][1]) == len(o_mid):
        return ([(p, p + len(t_mid))] if t_mid else []), False
    # several places (or more than the field changed): if every place writes the field the same way, the
    # pieces between the sentinels are the same in both texts and each place has the same length
    mark_len = {len(m) for _, m in hits}
    if len(mark_len) == 1 and not _overlapping(hits):
        pieces, last = [], 0
        for pos, mark in hits:
            pieces.append(o_mid[last:pos])
            last = pos + len(mark)
        pieces.append(o_mid[last:])
        k = len(hits)
        rest = len(t_mid) - sum(map(len, pieces))
        if rest >= 0 and rest % k == 0:
            width = rest // k
            regions, cur, ok = [], 0, True
            xs = set()
            for piece in pieces[:-1]:
                if not t_mid.startswith(piece, cur):
                    ok = False
                    break
                cur += len(piece)
                regions.append((p + cur, p + cur + width))
                xs.add(t_mid[cur:cur + width])
                cur += width
            if ok and t_mid.startswith(pieces[-1], cur) and cur + len(pieces[-1]) == len(t_mid) and len(xs) <= 1:
                return [r for r in regions if r[1] > r[0]], False
    # general case: a character diff of the middles, keeping the changes that produced a sentinel
    if len(t_mid) * max(len(o_mid), 1) > 4e8:
        return None
    sm = difflib.SequenceMatcher(None, t_mid, o_mid, autojunk=False)
    regions, side = [], False
    for tag, a1, a2, b1, b2 in sm.get_opcodes():
        if tag == "equal":
            continue
        if any(pos < b2 and pos + len(mark) > b1 for pos, mark in hits):
            if a2 > a1:
                regions.append((p + a1, p + a2))
        else:
            side = True
    return _merge(regions), side


def _all(text: str, needle: str) -> list[int]:
    out, pos = [], text.find(needle)
    while pos >= 0:
        out.append(pos)
        pos = text.find(needle, pos + 1)
    return out


def _overlapping(hits: list[tuple[int, str]]) -> bool:
    return any(a + len(m) > b for (a, m), (b, _) in zip(hits, hits[1:]))


def _merge(regions: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(regions):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


MAX_FIELDS = 256  # fields perturbed per sample: each is a full render, so a 3,000-message record would be quadratic
RENDER_BUDGET = 20_000  # messages rendered in all per sample: with long conversations, fewer fields are perturbed


def fields_budget(num_messages: int, max_fields: int = MAX_FIELDS) -> int:
    """How many fields to perturb for a conversation of ``num_messages``: all up to ``max_fields`` while the
    renders stay within ``RENDER_BUDGET`` messages, never fewer than 8.
    Example: 10 messages -> 256; 200 -> 100; 3,000 -> 8."""
    return max(8, min(max_fields, RENDER_BUDGET // max(num_messages, 1)))


def field_dependencies(text: str, messages: Sequence[dict[str, Any]], tools: list | None,
                       render: Callable[[list[dict[str, Any]], list | None], str], *,
                       max_fields: int = MAX_FIELDS, deadline: CpuBudget | None = None) -> Dependencies:
    """Perturb each field in turn and diff (see module docstring). ``render(messages, tools) -> text`` must render
    exactly as the sample was rendered (same template, variables and generation-prompt flag).

    Work is bounded: at most ``fields_budget(len(messages), max_fields)`` fields (evenly spaced over the
    conversation, the first and the last included), and none started once ``deadline`` (a ``CpuBudget``: CPU time
    of this thread) has expired; what was left out is in
    ``Dependencies.unverifiable``."""
    deps = Dependencies(text)
    perts = perturbations(messages, tools)
    max_fields = fields_budget(len(messages), max_fields)
    if len(perts) > max_fields:
        keep = set(np.unique(np.linspace(0, len(perts) - 1, max_fields).round().astype(int)).tolist())
        for k, pert in enumerate(perts):
            if k not in keep:
                deps.unverifiable.append((pert.field, f"left out: at most {max_fields} fields are verified per "
                                                      f"sample"))
        perts = [p for k, p in enumerate(perts) if k in keep]
    for n, pert in enumerate(perts):
        if deadline is not None and deadline.expired():
            deps.unverifiable.extend((p.field, "left out: the per-record time budget ran out") for p in perts[n:])
            break
        fld = pert.field
        msgs2, tools2 = pert.apply(messages, tools)
        try:
            other = render(msgs2, tools2)
        except RenderError as exc:
            deps.unverifiable.append((fld, f"the template raised when the field was replaced: {exc}"))
            continue
        res = diff_regions(text, other, pert.marks)
        if res is None:
            continue  # the template does not write this field
        regions, side = res
        if regions:
            deps.regions[fld] = regions
        if side:
            deps.side_effects.append(fld)
    return deps


@dataclass
class Violation:
    """Tokens that break one rule for one field: ``kind`` "not-labeled" (an assistant field the strategy trains),
    "labeled" (a prompt field, or an assistant turn the strategy does not train) or "prompt-labeled" (the
    inference prompt of a trained turn, ``Field(i, "assistant", "generation prompt")``)."""

    field: Field
    kind: str
    positions: list[int]

    def message(self, total: int | None = None) -> str:
        n = len(self.positions)
        what = "not labeled" if self.kind == "not-labeled" else "labeled"
        why = ("its text is written by the model and this strategy trains it" if self.kind == "not-labeled"
               else "the inference prompt (add_generation_prompt=True) ends there: the model is given these tokens "
                    "and never writes them" if self.kind == "prompt-labeled"
               else "it is prompt text, which this strategy masks")
        first = ", ".join(map(str, self.positions[:8])) + (" ..." if n > 8 else "")
        return f"{self.field.describe()}: {n} token{'s' if n != 1 else ''} {what} (positions {first}); {why}"


def trained_messages(messages: Sequence[dict[str, Any]], strategy: str, trainable: Sequence[bool | None],
                     keep_history_labels: bool = False, respect_trainable: bool = True) -> set[int]:
    """Indices of the messages whose text the strategy labels.

    Example: roles [user, assistant, user, assistant], "last-turn" -> {3}; "assistant-only" -> {1, 3}.
    """
    def flag(i):
        return trainable[i] if respect_trainable and i < len(trainable) else None

    answers = [i for i, m in enumerate(messages) if m.get("role") == "assistant" and flag(i) is not False]
    if strategy == "last-turn" or (strategy == "split-turns" and not keep_history_labels):
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
        out = {last} if last is not None and flag(last) is not False else set()
    else:
        out = set(answers)
    out |= {i for i, m in enumerate(messages) if m.get("role") != "assistant" and flag(i) is True}
    return out


PROMPT_FIELD = "generation prompt"


def prompt_regions(text: str, messages: Sequence[dict[str, Any]], tools: list | None, trained: set[int],
                   deps: Dependencies, render: Callable[..., str], *, deadline: CpuBudget | None = None
                   ) -> tuple[list[tuple[int, int, int]], list[str]]:
    """The inference prompt of each trained assistant turn, as ``(message_index, start, end)`` char ranges of
    ``text``, and notes on the turns it could not judge.

    ``render(messages, tools, add_generation_prompt) -> text``. The range ends where the training render and
    ``render(messages[:i], tools, True)`` part (cut back to the last whitespace or closing character when the
    prompt is not wholly a prefix, so a marker shared only in part is not judged); it starts after the last character that depends on a field of an
    earlier message (or where ``render(messages[:i], tools, False)`` parts, if later), so the earlier turns,
    whose end-of-turn markers may rightly be trained, are left out.

    Example (ChatML): user "Hi", assistant "Hello": the prompt of message 1 is ``<|im_start|>user\nHi<|im_end|>\n
    <|im_start|>assistant\n``; the range is ``<|im_end|>\n<|im_start|>assistant\n`` (after "Hi").
    """
    out: list[tuple[int, int, int]] = []
    notes: list[str] = []
    turns = [i for i in sorted(trained) if 0 < i < len(messages) and messages[i].get("role") == "assistant"
             and messages[i - 1].get("role") != "assistant"]
    budget = max(4, fields_budget(len(messages)) // 8)  # two renders of the conversation so far per turn: bounded
    if len(turns) > budget:
        keep = set(np.unique(np.linspace(0, len(turns) - 1, budget).round().astype(int)).tolist())
        notes.append(f"{len(turns) - len(keep)} of {len(turns)} turns: the inference prompt not verified (at most "
                     f"{budget} per sample)")
        turns = [t for k, t in enumerate(turns) if k in keep]
    for i in turns:
        if deadline is not None and deadline.expired():
            notes.append(f"assistant message {i}: the inference prompt was not verified (the per-record time budget "
                         f"ran out)")
            continue
        try:
            prompt = render(list(messages[:i]), tools, True)
        except RenderError as exc:
            notes.append(f"assistant message {i}: the inference prompt does not render ({exc}); not verified")
            continue
        end = _common_prefix(text, prompt)
        start = max((b for f, regions in deps.regions.items() if f.message_index < i for _, b in regions), default=0)
        try:
            start = max(start, _common_prefix(text, render(list(messages[:i]), tools, False)))
        except RenderError:
            pass
        if end < len(prompt):  # the prompt parts from the training text: keep only whole pieces of the shared part
            end = _last_break(text, start, end)  # (Cohere: "<|START_THINKING|>" vs "<|START_TEXT|>" share "<|START_")
        if end > start:
            out.append((i, start, end))
    return out, notes


_BREAKS = frozenset(" \t\r\n>]}):")


def _last_break(text: str, start: int, end: int) -> int:
    """The end of the last whitespace or closing character (``>]}):``) in ``text[start:end]``, or ``start``: where
    a prompt that parts from the training text mid-marker is cut back to. Example: ("<|A|><|START_", 0, 13) -> 5."""
    for k in range(end - 1, start - 1, -1):
        if text[k] in _BREAKS:
            return k + 1
    return start


def verify_labels(deps: Dependencies, offsets: np.ndarray, labels: Sequence[int], trained: set[int],
                  prompts: Sequence[tuple[int, int, int]] = ()) -> list[Violation]:
    """Compare labels with the field dependencies (rules in the module docstring). ``offsets``: (n, 2) char
    offsets of the sample's tokens in ``deps.text``; tokens without characters (an inserted EOS) are skipped.
    ``prompts``: the inference prompts of the trained turns (``prompt_regions``); a labeled token wholly inside
    one, with no character of a trained field, breaks the prompt rule."""
    n = len(deps.text)
    offs = np.clip(np.asarray(offsets, dtype=np.int64).reshape(-1, 2), 0, n)
    labeled = np.asarray(labels, dtype=np.int64) != IGNORE_INDEX
    train_chars = np.zeros(n + 1, dtype=np.int64)  # prefix sums of "depends on a trained field"
    tcount = np.zeros(n, dtype=np.int8)
    per_field: list[tuple[Field, np.ndarray, bool]] = []
    for fld, regions in deps.regions.items():
        is_trained = fld.message_index in trained
        chars = np.zeros(n, dtype=np.int8)
        for a, b in regions:
            chars[a:b] = 1
        if is_trained:
            tcount |= chars
        per_field.append((fld, chars, is_trained))
    train_chars[1:] = np.cumsum(tcount)
    has_trained = (train_chars[offs[:, 1]] - train_chars[offs[:, 0]]) > 0
    out: list[Violation] = []
    for fld, chars, is_trained in per_field:
        if is_trained:
            bad = _unlabeled_copies(deps.regions[fld], offs, labeled, n)
            kind = "not-labeled"
        else:
            cum = np.concatenate(([0], np.cumsum(chars, dtype=np.int64)))
            touches = (cum[offs[:, 1]] - cum[offs[:, 0]]) > 0
            bad = touches & labeled & ~has_trained
            kind = "labeled"
        if bad.any():
            out.append(Violation(fld, kind, np.nonzero(bad)[0].tolist()))
    for i, a, b in prompts:
        inside = (offs[:, 0] >= a) & (offs[:, 1] <= b) & (offs[:, 1] > offs[:, 0])
        bad = inside & labeled & ~has_trained
        if bad.any():
            out.append(Violation(Field(i, "assistant", PROMPT_FIELD), "prompt-labeled", np.nonzero(bad)[0].tolist()))
    return out


def _unlabeled_copies(regions: list[tuple[int, int]], offs: np.ndarray, labeled: np.ndarray, n: int) -> np.ndarray:
    """Tokens that break the rule for a trained field written at ``regions``. The model writes the field once, but
    a template may also copy it into prompt text (a tool result's header naming the tool it answers, a preview
    of the answer before the turn): each copy must be labeled all through or not at all, and at least one copy
    all through. Example: name written in the call (labeled) and in the result's header (-100) -> no violation."""
    bad = np.zeros(len(offs), dtype=bool)
    whole = False
    copies = []
    for a, b in regions:
        touches = (offs[:, 0] < b) & (offs[:, 1] > a) & (offs[:, 1] > offs[:, 0])
        if not touches.any():
            continue
        copies.append(touches)
        if labeled[touches].all():
            whole = True
        elif labeled[touches].any():
            bad |= touches & ~labeled  # a copy cut in the middle
    if not whole:
        for touches in copies:
            bad |= touches & ~labeled
    return bad


@dataclass
class Verification:
    """The verifier's verdict on one sample: ``violations`` (empty: the labels agree with every field it could
    perturb), ``fields`` (how many fields were perturbed), ``notes`` (fields it could not judge, and why), and
    ``skipped`` (why the sample was not verified at all, e.g. a strategy that does not label by role)."""

    sample_id: str
    violations: list[Violation] = field(default_factory=list)
    fields: int = 0
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.skipped is None and not self.violations


_RECORD = threading.local()  # [conversation, turn index, budget] of the record this thread verifies


def _record_budget(conversation: Any, sample: Any, limit: float | None) -> CpuBudget | None:
    """The CPU budget the verifier has for the record of ``sample``: what is left of ``--record-time-limit`` after
    building its samples (``sample.cpu_seconds``), shared by all its samples (split-turns verifies one per answer,
    in turn order), so the work on one record stays bounded as a whole. A new budget starts at another
    conversation, or at a sample that is not a later turn of the same one (the record verified again)."""
    if limit is None:
        return None
    turn = getattr(sample, "turn_index", None)
    current = getattr(_RECORD, "value", None)
    if current is None or current[0] is not conversation or turn is None or current[1] is None or turn <= current[1]:
        current = [conversation, turn, CpuBudget(max(limit - getattr(sample, "cpu_seconds", 0.0), 0.0))]
        _RECORD.value = current
    current[1] = turn
    return current[2]


def verify_sample(engine: Any, sample: Any, conversation: Any, opts: Any) -> Verification:
    """Verify one built sample (``labels.Sample``) of ``conversation`` by perturbation, rendering with the
    engine's template and variables (``opts``: the ``LabelOptions`` the sample was built with)."""
    out = Verification(sample.id)
    if sample.strategy not in VERIFIED_STRATEGIES or (sample.strategy == "session" and opts.turn_format is not None):
        out.skipped = f"the {sample.strategy} strategy does not label by role"
        return out
    if sample.messages is None:
        out.skipped = "the sample does not say which messages it was rendered from"
        return out
    tools = conversation.tools

    def render(msgs, tls):
        return engine.render(list(msgs), tls, opts).text

    try:
        again = render(sample.messages, tools)
    except RenderError as exc:
        out.skipped = f"the conversation does not render again: {exc}"
        return out
    if again != sample.text:
        out.skipped = "rendering the conversation again gives another text (the template is not deterministic)"
        return out
    deadline = _record_budget(conversation, sample, getattr(opts, "record_time_limit", None))
    deps = field_dependencies(sample.text, sample.messages, tools, render, deadline=deadline)
    trainable = [m.trainable for m in conversation.messages]
    trained = trained_messages(sample.messages, sample.strategy, trainable, opts.keep_history_labels,
                               opts.respect_trainable)
    prompts, prompt_notes = prompt_regions(
        sample.text, sample.messages, tools, trained, deps,
        lambda msgs, tls, gen: engine.render(list(msgs), tls, opts, add_generation_prompt=gen).text,
        deadline=deadline)
    out.violations = verify_labels(deps, sample.offsets, sample.labels, trained, prompts)
    out.fields = len(perturbations(sample.messages, tools))
    left_out = [f for f, why in deps.unverifiable if why.startswith("left out")]
    out.notes = [f"{f.describe()}: not verified ({why})" for f, why in deps.unverifiable
                 if not why.startswith("left out")]
    if left_out:
        out.notes.append(f"{len(left_out)} of {out.fields} fields not verified: "
                         f"{dict(deps.unverifiable)[left_out[0]][len('left out: '):]}")
    out.notes += prompt_notes
    out.notes += [f"{f.describe()}: replacing it also changes text elsewhere (the template tests its value); only "
                  f"the text that became the sentinel was judged" for f in deps.side_effects]
    return out
