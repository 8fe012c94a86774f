"""Compare what the trainer trains (its mask) with what should be trained (the tied conversation), row by row.

Two ways, chosen per row:
- ``rendered``: the inspector's engine renders the tied conversation with the chat template and gets exactly the
  trainer's ``input_ids``: the trainer's mask is compared token by token with the engine's labels (assistant-only,
  closing labeled), each token knowing its segment (template / system / user / assistant / tool);
- ``anchored``: the trainer's text is something else (its own training template, a plain prompt + completion): the
  tokens are decoded and each message's content is found in the text, in order. Assistant content must be trained,
  system / user / tool content must not, and the closing special token right after each answer must be trained.
  Tokens that straddle a content boundary are left out of the comparison.

Then the differences become findings: trained but not expected -> ``prompt-trained`` (in a prompt message) or
``extra-trained-tokens`` (template text, one finding per pattern "token after previous token"); expected but not
trained -> ``closing-not-trained`` or ``answer-not-trained``. Token-level checks (shift, labels that are not the
input ids, nothing trained, EOS never trained, truncated answer, double BOS, packed positions) run on every row, tied
or not.

Example (ChatML, TRL's Qwen2.5 training template): ids of "...<|im_start|>assistant\\nHello<|im_end|>\\n" with
"\\nHello<|im_end|>\\n" trained -> expected "Hello<|im_end|>"; two extra tokens: "'\\n' after 'assistant'" and
"'\\n' after '<|im_end|>'".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from inspector.checks.catalog import Finding
from inspector.checks.context import special_token_ids
from inspector.constants import IGNORE_INDEX
from inspector.labels.engine import LabelEngine, LabelOptions, tokenize_batch
from inspector.audit.findings import audit_finding, show_token
from inspector.audit.read import TokenRow
from inspector.audit.reference import Referencer, Tie

PROMPT_ROLES = ("system", "user", "tool")
ROLE_NAMES = ("template", "system", "user", "assistant", "tool")
ROLE_CODE = {r: i for i, r in enumerate(ROLE_NAMES)}
SHIFT_SHARE = 0.9  # share of trained labels equal to the neighbour's id that names a shift


class AuditContext:
    """What every row's audit needs, made once: tokenizer facts, the engine, the referencer."""

    def __init__(self, setup: Any, referencer: Referencer | None = None, opts: LabelOptions | None = None,
                 max_positions: int = 64, keep_tokens: bool = False):
        self.setup = setup
        self.tokenizer = setup.tokenizer
        self.engine = LabelEngine(setup)
        self.opts = opts or LabelOptions()
        self.referencer = referencer or Referencer(None, setup, self.engine)
        self.max_positions = max_positions
        self.keep_tokens = keep_tokens
        tok = self.tokenizer
        self.eos_id = getattr(tok, "eos_token_id", None)
        self.bos_id = getattr(tok, "bos_token_id", None)
        self.pad_id = getattr(tok, "pad_token_id", None)
        self.special_ids = frozenset(special_token_ids(tok))
        closing = {self.eos_id} if self.eos_id is not None else set()
        try:
            for marker in self.engine.info(self.opts).end_of_turn:
                ids = tok.encode(marker, add_special_tokens=False)
                if len(ids) == 1:
                    closing.add(ids[0])
        except Exception:  # noqa: BLE001 - a template the probe cannot render: EOS only
            pass
        self.closing_ids = frozenset(closing)
        self._shown: dict[int, str] = {}

    def show(self, token_id: int) -> str:
        token_id = int(token_id)
        if token_id not in self._shown:
            if len(self._shown) > 8192:
                self._shown.clear()
            self._shown[token_id] = show_token(self.tokenizer, token_id)
        return self._shown[token_id]

    def tokens(self, ids: np.ndarray, positions: Sequence[int]) -> list[str]:
        return [self.show(ids[p]) for p in list(positions)[: self.max_positions]]


@dataclass
class RowAudit:
    """One sample's audit: how it was tied and compared, its findings, and (``keep_tokens``) the masks side by side:
    ``trained`` (the trainer's), ``expected`` (the inspector's; None when not tied) and ``roles`` per token."""

    row: TokenRow
    tie: Tie
    method: str  # "rendered", "anchored", "tokens" (token checks only)
    findings: list[Finding] = field(default_factory=list)
    expected: np.ndarray | None = None
    roles: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def differences(self) -> int:
        if self.expected is None:
            return 0
        return int((self.expected != self.row.trained).sum())


# --- token-level checks ------------------------------------------------------------------------------------------

def token_findings(row: TokenRow, ctx: AuditContext) -> tuple[list[Finding], bool]:
    """Checks that need no conversation. Returns (findings, labels_are_shifted)."""
    out: list[Finding] = []
    ids, trained, sid = row.input_ids, row.trained, row.id
    n = ids.shape[0]
    shifted = False
    for code, message, positions in row.problems:
        out.append(audit_finding(code, message, positions=positions, sample_id=sid, pattern=code))
    if n and not trained.any():
        out.append(audit_finding("nothing-trained", f"0 of {n} tokens are trained", sample_id=sid,
                                 pattern="every token masked"))
        return out, shifted
    if row.labels is not None:
        where = np.flatnonzero(trained)
        lab = row.labels[where]
        same = lab == ids[where]
        if not same.all():
            left = where[where < n - 1]
            right = where[where > 0]
            share_left = float((row.labels[left] == ids[left + 1]).mean()) if left.size else 0.0
            share_right = float((row.labels[right] == ids[right - 1]).mean()) if right.size else 0.0
            share_same = float(same.mean())
            best = max(share_left, share_right)
            if best >= SHIFT_SHARE and best > share_same:
                shifted = True
                direction = "left" if share_left >= share_right else "right"
                formula = "labels[i] == input_ids[i+1]" if direction == "left" else "labels[i] == input_ids[i-1]"
                out.append(audit_finding(
                    "labels-shifted", f"labels are shifted {direction} by one: {formula} for {100 * best:.0f}% of "
                    f"the {where.size} trained positions (the model shifts again: it learns to predict "
                    f"{'two tokens ahead' if direction == 'left' else 'the token it was just given'})",
                    positions=where[:ctx.max_positions].tolist(), tokens=ctx.tokens(ids, where), sample_id=sid,
                    pattern=f"labels shifted {direction} by one", direction=direction))
            else:
                bad = where[~same]
                out.append(audit_finding(
                    "label-not-input", f"{bad.size} trained labels are not the input id at their position",
                    positions=bad.tolist(), tokens=ctx.tokens(ids, bad), sample_id=sid,
                    pattern="label is not the input id",
                    labels=[int(row.labels[p]) for p in bad[:ctx.max_positions]]))
    if not shifted:
        if ctx.bos_id is not None and n >= 2 and ids[0] == ids[1] == ctx.bos_id:
            out.append(audit_finding("double-bos", "the sample starts with two BOS tokens", positions=[0, 1],
                                     tokens=ctx.tokens(ids, [0, 1]), sample_id=sid, pattern="two BOS"))
        run = np.flatnonzero(~trained)
        start = int(run[-1]) + 1 if run.size else 0
        if trained[-1] and not np.isin(ids[start:], list(ctx.closing_ids)).any():
            out.append(audit_finding(
                "answer-truncated", f"the sample ends inside a trained answer ({n - start} trained tokens up to the "
                f"end, last {ctx.show(ids[-1])}, no closing)", positions=[n - 1], tokens=ctx.tokens(ids, [n - 1]),
                sample_id=sid, pattern="ends inside a trained answer"))
    return out, shifted


def _eos_never_trained(row: TokenRow, ctx: AuditContext) -> Finding | None:
    ids, trained = row.input_ids, row.trained
    if not trained.any() or not ctx.closing_ids:
        return None
    present = np.isin(ids, list(ctx.closing_ids))
    if present.any() and not (present & trained).any():
        pos = np.flatnonzero(present)
        pad = " (pad == eos: a collator that masks every pad id erases it)" if (
            ctx.pad_id is not None and ctx.pad_id == ctx.eos_id) else ""
        return audit_finding("eos-never-trained", f"{pos.size} end-of-turn / EOS tokens, none trained{pad}",
                             positions=pos.tolist(), tokens=ctx.tokens(ids, pos), sample_id=row.id,
                             pattern=f"{ctx.show(ids[pos[0]])} never trained")
    return None


# --- where each token belongs ------------------------------------------------------------------------------------

def _offsets(ctx: AuditContext, ids: np.ndarray) -> tuple[str, np.ndarray]:
    """The decoded text and each token's [start, end) in it: by tokenizing the decoded text again when that gives
    the same ids (exact), else from each token decoded alone."""
    tok = ctx.tokenizer
    id_list = ids.tolist()
    text = tok.decode(id_list, skip_special_tokens=False)
    try:
        again, offs = tokenize_batch(tok, [text])[0]
        if list(again) == id_list:
            return text, np.asarray(offs, dtype=np.int64).reshape(-1, 2)
    except BaseException:  # noqa: BLE001 - a tokenizer that panics on its own output: fall back
        pass
    pieces = [tok.decode([i], skip_special_tokens=False) for i in id_list]
    ends = np.cumsum([len(p) for p in pieces], dtype=np.int64)
    starts = np.concatenate(([0], ends[:-1])) if len(pieces) else np.zeros(0, dtype=np.int64)
    return "".join(pieces), np.stack([starts, ends], axis=1) if len(pieces) else np.zeros((0, 2), dtype=np.int64)


def _message_spans(text: str, conv: Any) -> tuple[list[tuple[str, int, int, int]], list[int]]:
    """(role, message index, start, end) of each message's content (and reasoning) found in ``text``, in order;
    and the indexes of messages whose content was not found."""
    spans: list[tuple[str, int, int, int]] = []
    missing: list[int] = []
    cursor = 0
    for i, m in enumerate(conv.messages):
        pieces = [p for p in (m.reasoning, m.content) if p and p.strip()]
        for piece in pieces:
            at = text.find(piece, cursor)
            found = piece
            if at < 0:
                found = piece.strip()
                at = text.find(found, cursor)
            if at < 0:
                missing.append(i)
                continue
            spans.append((m.role if m.role in ROLE_CODE else "user", i, at, at + len(found)))
            cursor = at + len(found)
    return spans, missing


def _anchored(row: TokenRow, conv: Any, ctx: AuditContext) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                      list[int], list[int]]:
    """Expected mask, per-token role codes, don't-care mask, closing positions and unfound messages."""
    ids = row.input_ids
    n = ids.shape[0]
    text, offs = _offsets(ctx, ids)
    spans, missing = _message_spans(text, conv)
    size = len(text) + 1
    cum = {}
    for code in range(len(ROLE_NAMES)):
        chars = np.zeros(size, dtype=np.int64)
        for role, _, a, b in spans:
            if ROLE_CODE[role] == code:
                chars[a:b] = 1
        cum[code] = np.concatenate(([0], np.cumsum(chars)))
    length = offs[:, 1] - offs[:, 0]
    roles = np.zeros(n, dtype=np.int64)
    unsure = np.zeros(n, dtype=bool)
    for code in range(1, len(ROLE_NAMES)):
        cover = cum[code][offs[:, 1]] - cum[code][offs[:, 0]]
        roles[(cover == length) & (length > 0)] = code
        unsure |= (cover > 0) & (cover < length)
    expected = roles == ROLE_CODE["assistant"]
    closings: list[int] = []
    starts = offs[:, 0]
    for role, _, a, b in spans:
        if role != "assistant":
            continue
        k = int(np.searchsorted(starts, b))
        steps = 0
        while k < n and int(ids[k]) not in ctx.special_ids and steps < 2 and not text[offs[k, 0]:offs[k, 1]].strip():
            k += 1
            steps += 1
        if k < n and (int(ids[k]) in ctx.special_ids or int(ids[k]) in ctx.closing_ids) and roles[k] == 0:
            expected[k] = True
            closings.append(k)
    return expected, roles, unsure, closings, missing


def _runs(positions: np.ndarray) -> list[np.ndarray]:
    if positions.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(positions) != 1) + 1
    return np.split(positions, cuts)


def _differences(row: TokenRow, ctx: AuditContext, expected: np.ndarray, roles: np.ndarray, care: np.ndarray,
                 closings: set[int]) -> list[Finding]:
    ids, trained, sid = row.input_ids, row.trained, row.id
    out: list[Finding] = []
    extra = np.flatnonzero(trained & ~expected & care)
    missing = np.flatnonzero(~trained & expected & care)
    by_pattern: dict[tuple[str, str], list[int]] = {}
    for p in extra.tolist():
        role = ROLE_NAMES[roles[p]]
        if role in PROMPT_ROLES:
            by_pattern.setdefault(("prompt-trained", f"{role} content"), []).append(p)
        else:
            prev = ctx.show(ids[p - 1]) if p > 0 else "the start"
            where = "" if role == "template" else f" ({role})"
            by_pattern.setdefault(("extra-trained-tokens", f"{ctx.show(ids[p])} after {prev}{where}"), []).append(p)
    for run in _runs(missing):
        for p in run.tolist():
            if p in closings:
                by_pattern.setdefault(("closing-not-trained", f"{ctx.show(ids[p])} closing an answer"), []).append(p)
        rest = [p for p in run.tolist() if p not in closings]
        if rest:
            role = ROLE_NAMES[roles[rest[0]]] if roles[rest[0]] else "assistant"
            if role == "template":
                role = "assistant"
            key = (f"{''.join(ctx.show(ids[p])[1:-1] for p in rest)!r} in {role} content" if len(rest) <= 2
                   else f"{role} content")
            by_pattern.setdefault(("answer-not-trained", key), []).extend(rest)
    for (code, pattern), positions in by_pattern.items():
        n = len(positions)
        if code == "extra-trained-tokens":
            message = f"{n} template token{'s' if n > 1 else ''} trained beyond the answers: {pattern}"
        elif code == "prompt-trained":
            message = f"{n} token{'s' if n > 1 else ''} of {pattern} trained"
        elif code == "closing-not-trained":
            message = f"{n} answer closing{'s' if n > 1 else ''} not trained: {pattern}"
        else:
            message = f"{n} token{'s' if n > 1 else ''} of assistant content not trained ({pattern})"
        out.append(audit_finding(code, message, positions=positions, tokens=ctx.tokens(ids, positions),
                                 sample_id=sid, pattern=pattern, count=n))
    return out


# --- one chunk of rows -------------------------------------------------------------------------------------------

def audit_rows(rows: Sequence[TokenRow], ctx: AuditContext) -> list[RowAudit]:
    """Audit a chunk of rows; conversations are rendered in one batched engine call."""
    ties = [ctx.referencer.tie(r) for r in rows]
    convs = {}
    for r, t in zip(rows, ties):
        if t.conversation is not None:
            convs.setdefault(t.conversation.id, t.conversation)
    built: dict[str, Any] = {}
    if convs:
        samples, _errors = ctx.engine.build(list(convs.values()), ctx.opts)
        for s in samples:
            built.setdefault(s.conversation_id, s)
    return [_audit_row(r, t, built, ctx) for r, t in zip(rows, ties)]


def _audit_row(row: TokenRow, tie: Tie, built: dict[str, Any], ctx: AuditContext) -> RowAudit:
    findings, shifted = token_findings(row, ctx)
    audit = RowAudit(row, tie, "tokens", findings)
    conv = tie.conversation
    if conv is None:
        findings.append(audit_finding("not-tied", f"not tied to a conversation: {tie.reason}", sample_id=row.id,
                                      pattern=_reason_pattern(tie.reason or "")))
    elif shifted:
        audit.notes.append("labels are shifted: the comparison with the conversation is left out")
    else:
        sample = built.get(conv.id)
        n = row.num_tokens
        if sample is not None and sample.num_tokens == n and np.array_equal(sample.ids_array(), row.input_ids):
            audit.method = "rendered"
            expected = sample.labels_array() != IGNORE_INDEX
            roles = np.asarray([ROLE_CODE.get(s, 0) for s in sample.segments], dtype=np.int64)
            closings = {int(p) for p in np.flatnonzero(expected & (roles == 0))}
            care = np.ones(n, dtype=bool)
            if tie.plain_text:
                audit.notes.append("plain-text prompt/completion: prompt + completion + EOS, no chat template")
        else:
            expected, roles, unsure, closing_list, missing = _anchored(row, conv, ctx)
            closings = set(closing_list)
            care = ~unsure
            found = len({i for i, m in enumerate(conv.messages) if (m.content or m.reasoning or "").strip()}
                        - set(missing))
            if found == 0:
                why = (f"the {tie.source}'s message contents are not in the decoded tokens"
                       + (" (the trainer dropped or reordered rows?)" if "order" in tie.source else ""))
                audit.tie = Tie(None, tie.source, why)
                findings.append(audit_finding("not-tied", f"not tied to a conversation: {why}", sample_id=row.id,
                                              pattern="contents not found in the tokens"))
                _finish(audit, ctx)
                return audit
            audit.method = "anchored"
            if missing:
                audit.notes.append(f"messages {missing[:10]} not found in the decoded text: left out")
            if not tie.plain_text:
                findings.append(audit_finding(
                    "text-differs", "the trainer's tokens are not what the chat template renders for this "
                    "conversation: compared by the messages' contents", sample_id=row.id,
                    pattern="compared by contents"))
            else:
                audit.notes.append("plain-text prompt/completion: prompt + completion (+ EOS), no chat template")
        findings += _differences(row, ctx, expected, roles, care, closings)
        audit.expected = expected
        if ctx.keep_tokens:
            audit.roles = [ROLE_NAMES[r] for r in roles.tolist()]
    _finish(audit, ctx)
    return audit


def _finish(audit: RowAudit, ctx: AuditContext) -> None:
    if not any(f.code == "closing-not-trained" for f in audit.findings):
        f = _eos_never_trained(audit.row, ctx)
        if f is not None:
            audit.findings.append(f)


def _reason_pattern(reason: str) -> str:
    if "no messages / prompt column" in reason and "no --reference" in reason:
        return "no stored conversation, no --reference"
    return reason.split(";")[0][:80]
