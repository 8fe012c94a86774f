"""Verify a training template through transformers itself: render each conversation with
``tokenizer.apply_chat_template(..., chat_template=NEW, return_assistant_tokens_mask=True)`` (what TRL's
``assistant_only_loss`` runs) and compare, token by token, the assistant mask with our ``assistant-only`` labels;
the rendered text must be byte-identical to the original template's.

A conversation is verified when all hold: same text, mask == labels on every token, and our labels have no
error finding (checks and the perturbation verifier, as ``export`` runs them): a mask that agrees with labels
export would reject (no end-of-turn ever trained, a header trained across an empty turn) proves nothing. A template is verified
only when every conversation that renders is. Per-message trainable flags (``loss_weight: 0``) are reported apart:
no chat template can see them, so TRL would train those turns whatever the template says.

Example: ChatML with tags around "content<|im_end|>" -> every conversation 100% (the "\\n" after <|im_end|> is
not trained, by our labels nor by the mask).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable

from inspector.checks.context import CheckContext
from inspector.checks.labels import verification_findings
from inspector.checks.sample import check_sample
from inspector.constants import IGNORE_INDEX
from inspector.conversations import Conversation
from inspector.errors import RenderError
from inspector.labels.engine import LabelEngine, LabelOptions
from inspector.labels.adapt import adapt_tools
from inspector.template.render import frozen_clock
from inspector.template.tokenizer import ChatSetup

MAX_MISMATCHES = 8  # listed per conversation
NOT_COMPARABLE = "not comparable:"  # reasons that are no fault of the training template


@dataclass(frozen=True)
class Mismatch:
    """A token where the template's mask and our labels disagree."""

    index: int
    token: str
    ours: bool
    mask: bool


@dataclass
class ConversationCheck:
    """One conversation: ``agree`` of ``tokens`` positions equal; ``identical`` the new template renders the original
    text byte for byte; ``reason`` why it could not be compared (render error, text differs); ``flags``: tokens
    our labels leave out because of per-message flags the template cannot express."""

    conversation_id: str
    source: str | None
    tokens: int = 0
    agree: int = 0
    identical: bool | None = None  # None: not checked (the conversation does not render)
    reason: str | None = None
    mismatches: list[Mismatch] = field(default_factory=list)
    flags: int = 0
    # error findings on our own sample (checks and the perturbation verifier): "code: message". Export rejects
    # such a record, so agreeing with it proves nothing
    label_errors: list[str] = field(default_factory=list)
    # the closing our labels append after an open final answer (see LabelEngine._close_open_last_turn): not in the
    # rendered text, so no chat template can mark it; compared without it, reported here
    appended: str | None = None

    @property
    def verified(self) -> bool:
        return (self.reason is None and self.identical is True and self.tokens > 0 and self.agree == self.tokens
                and not self.label_errors)

    @property
    def comparable(self) -> bool:
        return not (self.reason or "").startswith(NOT_COMPARABLE)

    @property
    def agreement(self) -> float:
        return self.agree / self.tokens if self.tokens else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.conversation_id, "source": self.source, "tokens": self.tokens, "agree": self.agree,
                "agreement": round(self.agreement, 6), "identical_text": self.identical, "verified": self.verified,
                "reason": self.reason, "flag_tokens": self.flags, "label_errors": self.label_errors, "appended_closing": self.appended,
                "mismatches": [m.__dict__ for m in self.mismatches]}


@dataclass
class Verification:
    rows: list[ConversationCheck]

    @property
    def compared(self) -> list[ConversationCheck]:
        """The conversations that could be compared (the others fail in our engine or in transformers alike)."""
        return [r for r in self.rows if r.comparable]

    @property
    def verified(self) -> bool:
        rows = self.compared
        return bool(rows) and all(r.verified for r in rows)

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.compared)

    @property
    def agree(self) -> int:
        return sum(r.agree for r in self.compared)

    def summary(self) -> str:
        rows = self.compared
        ok = sum(r.verified for r in rows)
        share = f"{100 * self.agree / self.tokens:.2f}%" if self.tokens else "-"
        skipped = len(self.rows) - len(rows)
        appended = [r for r in rows if r.appended]
        errs = [r for r in rows if r.label_errors]
        return (f"{ok} of {len(rows)} conversations verified; {self.agree:,} of {self.tokens:,} tokens agree "
                f"({share})" + (f"; {skipped} not comparable" if skipped else "") +
                (f"; {len(errs)} reproduce labels that export rejects (first: {errs[0].label_errors[0]})"
                 if errs else "") +
                (f"; in {len(appended)} our labels also append {appended[0].appended!r} after the open final answer, "
                 f"which no chat template can write: trained with this template, the final answer's stop token is "
                 f"not learned" if appended else ""))

    def to_dict(self) -> dict[str, Any]:
        return {"verified": self.verified, "summary": self.summary(), "tokens": self.tokens, "agree": self.agree,
                "conversations": [r.to_dict() for r in self.rows]}


def _chat_kwargs(engine: LabelEngine, opts: LabelOptions) -> dict[str, Any]:
    """What our renders pass to the template besides messages and tools (special tokens, date, user variables)."""
    return dict(engine.variables(opts))


def _apply(tokenizer: Any, messages: list[dict], tools: list | None, template: str, kwargs: dict, *,
           now: str | None = None, **extra: Any):
    """``apply_chat_template`` as our engine renders: a tool-use template that fails on ``tools=None`` gets [], and
    ``strftime_now`` gives the run's frozen ``now`` (see ``_frozen_global``)."""
    with _frozen_global(template, now):
        try:
            return tokenizer.apply_chat_template(messages, tools=tools, chat_template=template, **extra, **kwargs)
        except Exception:
            if tools is not None:
                raise
            return tokenizer.apply_chat_template(messages, tools=[], chat_template=template, **extra, **kwargs)


class _frozen_global:
    """transformers' ``strftime_now`` stopped at ``now`` inside this block, for ``template``: transformers turns
    every template variable into plain data (a function passed as one becomes its repr), so the clock is swapped in
    the globals of the environment transformers compiled the template in (one environment per template, cached),
    then put back. Nothing changes when ``now`` is None."""

    def __init__(self, template: str, now: str | None):
        self.template, self.now, self.env, self.old = template, now, None, None

    def __enter__(self):
        if self.now is None:
            return self
        from transformers.utils.chat_template_utils import _compile_jinja_template

        self.env = _compile_jinja_template(self.template).environment
        self.old = self.env.globals.get("strftime_now")
        self.env.globals["strftime_now"] = frozen_clock(self.now)
        return self

    def __exit__(self, *exc):
        if self.env is not None:
            self.env.globals["strftime_now"] = self.old
        return False


def verify_training_template(setup: ChatSetup, training_template: str, conversations: Iterable[Conversation],
                             opts: LabelOptions | None = None) -> Verification:
    """Compare ``training_template``'s assistant mask (through transformers) with our labels, per conversation."""
    from inspector.training_template.build import training_options

    opts = training_options(opts)
    engine = LabelEngine(setup)
    given = list(conversations)
    convs = [replace(c, id=str(i)) for i, c in enumerate(given)]  # ids of the user's data need not be unique
    samples, errors = engine.build(convs, opts)
    has_flags = any(m.trainable is False for c in convs for m in c.messages)
    flagged = engine.build(convs, replace(opts, respect_trainable=True))[0] if has_flags else []
    by_id = {s.conversation_id: s for s in samples}
    flag_by_id = {s.conversation_id: s for s in flagged}
    failed = {e.conversation_id: e.reason for e in errors}
    kwargs = _chat_kwargs(engine, opts)
    now = opts.limits.now
    ctx = CheckContext(setup, opts)
    new_engine = LabelEngine(ChatSetup(setup.tokenizer, training_template, "training", setup.name))
    as_text = "tool_calls" not in setup.template
    tok = setup.tokenizer
    rows = []
    for conv, original_conv in zip(convs, given):
        row = ConversationCheck(original_conv.id, str(conv.source) if conv.source else None)
        rows.append(row)
        sample = by_id.get(conv.id)
        if sample is None:
            row.reason = f"{NOT_COMPARABLE} our engine cannot render it: {failed.get(conv.id, 'no sample')}"
            continue
        msgs = sample.messages if sample.messages is not None else conv.template_messages(tool_calls_as_text=as_text)
        tools = adapt_tools(conv.tools, engine.info(opts).tools_shape)[0] if conv.tools else conv.tools
        try:  # first within our render limits: transformers' own renders below have none
            new_engine.render(msgs, conv.tools, opts)
        except RenderError as exc:
            row.reason = f"the training template fails where the original renders: {exc}"
            continue
        try:
            original = _apply(tok, msgs, tools, setup.template, kwargs, now=now, tokenize=False)
        except Exception as exc:  # transformers raises what the template raises, and more
            row.reason = f"{NOT_COMPARABLE} apply_chat_template fails on it with the original template too " \
                         f"({type(exc).__name__}: {exc})"
            continue
        try:
            new_text = _apply(tok, msgs, tools, training_template, kwargs, now=now, tokenize=False)
            out = _apply(tok, msgs, tools, training_template, kwargs, now=now, tokenize=True, return_dict=True,
                         return_assistant_tokens_mask=True)
        except Exception as exc:
            row.reason = f"the training template fails where the original renders: {type(exc).__name__}: {exc}"
            continue
        row.identical = new_text == original
        if not row.identical:
            row.reason = "the training template renders different text than the original"
            continue
        if original != sample.text:
            row.reason = (f"{NOT_COMPARABLE} apply_chat_template renders it differently from our engine (it drops "
                          "message keys whose value is None), so its labels cannot be compared")
            continue
        ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
        appended = (sample.extra or {}).get("appended_closing")
        skip = set(appended["positions"]) if appended else set()
        keep = [i for i in range(len(sample.input_ids)) if i not in skip]  # the tokens of the rendered text
        if ids != [sample.input_ids[i] for i in keep]:
            row.reason = f"{NOT_COMPARABLE} apply_chat_template tokenizes the text differently from our engine"
            continue
        row.appended = appended["text"] if appended else None
        ours = [sample.labels[i] != IGNORE_INDEX for i in keep]
        row.tokens = len(ids)
        for k, (a, b) in enumerate(zip(ours, mask)):
            if a == bool(b):
                row.agree += 1
            elif len(row.mismatches) < MAX_MISMATCHES:
                s, e = (int(x) for x in sample.offsets[keep[k]])
                row.mismatches.append(Mismatch(k, sample.text[s:e], a, bool(b)))
        row.label_errors = _label_errors(sample, conv, ctx)
        flag = flag_by_id.get(conv.id)
        if flag is not None:
            row.flags = sum(1 for a, b in zip(sample.labels, flag.labels) if a != b)
    return Verification(rows)


def _label_errors(sample: Any, conv: Conversation, ctx: CheckContext) -> list[str]:
    """The error findings export would reject ``sample`` for: the sample checks and the perturbation verifier."""
    found = check_sample(sample, conv, ctx) + verification_findings(sample, conv, ctx)
    # a labeled token that reaches back into a turn's header (Tele-FLM, an empty answer: '><' across two
    # "<_bot>" headers) trains text the inference prompt gives: a mask that copies it is no proof either
    # (a space merged into the answer's first word, " Answer", is ordinary tokenizer behaviour: not counted)
    # (only around an empty answer: elsewhere it is a tokenizer merging markup, a warning of its own)
    msgs = sample.messages or []

    def empty_answer(i):
        m = msgs[i] if 0 <= i < len(msgs) else {}
        return m.get("role") == "assistant" and not any(str(m.get(k) or "").strip() for k in
                                                        ("content", "reasoning_content", "tool_calls"))

    into_header = [f for f in found if f.code == "boundary-straddle" and "spans the start" in f.message
                   and f.positions and sample.labels[f.positions[0]] != IGNORE_INDEX
                   and _header_part(f.message).strip() and f.message_index is not None
                   and (empty_answer(f.message_index) or empty_answer(f.message_index - 1))]
    # a record with no answer at all trains nothing whatever the template: the data's fault, not the template's
    no_answer = not any(m.role == "assistant" for m in conv.messages)
    return [f"{f.code}: {f.message}" for f in found if (f.severity == "error" or f in into_header)
            and not (no_answer and f.code == "no-trainable-tokens")]


def _header_part(message: str) -> str:
    """The text before the boundary in a boundary-straddle message: "... ('><' | ...)" -> the literal's value."""
    import ast
    import re

    m = re.search(r"\((.*?) \| ", message)
    try:
        return str(ast.literal_eval(m.group(1))) if m else ""
    except (ValueError, SyntaxError):
        return ""


def trl_checks(tokenizer: Any, training_template: str) -> dict[str, Any] | None:
    """TRL's own checks on a training template (None when trl is not installed): ``has_generation_markers`` and
    ``is_chat_template_stop_token_trained`` (the last trained token, ignoring whitespace, is an added token)."""
    try:
        from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained
    except Exception:  # not installed, or its torch import fails
        return None
    return {"has_generation_markers": has_generation_markers(training_template),
            "stop_token_trained": is_chat_template_stop_token_trained(tokenizer, chat_template=training_template)}


# --- one call for the CLI and the app ----------------------------------------------------------------------------

@dataclass
class TrainingTemplateReport:
    """A training template and its verification: what the CLI prints and the Export page shows."""

    training: Any  # training_template.TrainingTemplate
    verification: Verification
    trl: dict[str, Any] | None = None

    @property
    def verified(self) -> bool:
        return self.verification.verified and not self.training.problems

    def to_dict(self) -> dict[str, Any]:
        tt = self.training
        return {"verified": self.verified, "already_tagged": tt.already_tagged, "changed": tt.changed,
                "static_identical": tt.static_identical,
                "edits": [e.__dict__ for e in tt.edits],
                "problems": [{"line": p.line, "source": p.source, "message": p.message, "example": p.example}
                             for p in tt.problems],
                "unreached_lines": tt.unreached, "notes": tt.notes, "verification": self.verification.to_dict(),
                "trl": self.trl}


def demo_conversations() -> list[Conversation]:
    """The bundled demo conversations: what to work on when the user gives no data."""
    from inspector.data.loaders import load_data
    from inspector.template.tokenizer import DEMO_DIR

    return load_data(DEMO_DIR / "demo.jsonl").conversations


def export_training_template(setup: ChatSetup, conversations: Iterable[Conversation] | None = None,
                             opts: LabelOptions | None = None, *, trl: bool = False) -> TrainingTemplateReport:
    """Build the training template of ``setup.template`` from ``conversations`` (plus the probe conversations) and
    verify it on them. Without data: the bundled demo, verified together with the probe conversations. ``trl``:
    also run TRL's own checks (when trl is installed)."""
    from inspector.training_template.build import PROBE_CONVERSATIONS, build_training_template

    given = list(conversations) if conversations is not None else []
    data = given or demo_conversations()
    training = build_training_template(setup, data, opts)
    checked = given or data + list(PROBE_CONVERSATIONS)
    verification = verify_training_template(setup, training.template, checked, opts)
    return TrainingTemplateReport(training, verification, trl_checks(setup.tokenizer, training.template) if trl
                                  else None)


@dataclass(frozen=True)
class DiffLine:
    """One row of the side-by-side view: a line of each template (None where the other has no counterpart) and the
    (start, end) columns of the new line that were inserted or rewritten."""

    old_number: int | None
    old: str | None
    new_number: int | None
    new: str | None
    marks: tuple[tuple[int, int], ...] = ()


def side_by_side(training: Any) -> list[DiffLine]:
    """The original and the training template line by line, with what changed marked in the new lines.

    Example: "{{ m.content }}" -> "{% generation %}{{ m.content }}{% endgeneration %}": one row, marks (0, 16) and
    (31, 50).
    """
    import bisect
    import difflib

    old_lines, new_lines = training.original.split("\n"), training.template.split("\n")
    starts = [0]
    for line in new_lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    marks: dict[int, list[tuple[int, int]]] = {}
    for e in training.edits:
        pos = e.new_start
        while pos < e.new_end:
            row = bisect.bisect_right(starts, pos) - 1
            end = min(e.new_end, starts[row] + len(new_lines[row]))
            if end > pos:
                marks.setdefault(row, []).append((pos - starts[row], end - starts[row]))
            pos = max(end, starts[row] + len(new_lines[row]) + 1)
    rows: list[DiffLine] = []
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        for k in range(max(a1 - a0, b1 - b0)):
            i, j = a0 + k, b0 + k
            old = old_lines[i] if i < a1 else None
            new = new_lines[j] if j < b1 else None
            rows.append(DiffLine(i + 1 if old is not None else None, old, j + 1 if new is not None else None, new,
                                 tuple(marks.get(j, ())) if new is not None else ()))
    return rows
