"""Sample-level checks of the labels themselves: is anything trained, is the right text trained, and does every
trained answer end with a labeled stop.

Every check here is ``check_x(sample, conv, ctx, labeled) -> list[Finding]`` (``labeled``: the boolean mask
labels != IGNORE_INDEX, computed once per sample); ``check_sample`` (``inspector.checks.sample``) runs them in
order.

- ``check_no_trainable`` (1), ``check_truncation`` (2), ``check_eot`` (3), ``check_leak`` (6),
  ``check_straddle`` (7), ``check_share`` (12);
- the completion-only collator: ``check_marker`` (10, the response marker's ids are not in the sequence) and
  ``check_last_match`` (the marker matches several times and only the last answer is trained);
- ``verification_findings``: the independent perturbation verifier (``inspector.labels.verify``) as findings.

Example (ChatML, label_eot=False): "Hello!" labeled, its "<|im_end|>" at token 12 labeled -100 -> ``check_eot``
gives ``eot-not-labeled`` at position 12: the model never learns to stop.
"""

from __future__ import annotations

import numpy as np

from inspector.checks.catalog import Finding, finding
from inspector.checks.context import (PROMPT_SEGMENT, CheckContext, first_positions, kept_chars, overlapping, plural,
                                      segment_codes, trained_turns)
from inspector.constants import IGNORE_INDEX, SEGMENTS
from inspector.conversations import Conversation
from inspector.labels.engine import Sample
from inspector.labels.verify import verify_sample


def check_no_trainable(sample, conv, ctx, labeled):
    """(1) ``labels`` all IGNORE_INDEX. Example: labels [-100, -100, -100] -> fires, naming the likely cause."""
    if not ctx.enabled("no-trainable-tokens") or labeled.any():
        return []
    n = sample.num_tokens
    why = ""
    if sample.truncation is not None and sample.truncation.labeled_cut:
        why = f": truncation at max_length={sample.truncation.max_length} removed all " \
              f"{sample.truncation.labeled_cut} labeled tokens"
    elif sample.strategy == "response-template" and not sample.extra.get("marker_found", True):
        why = ": the response marker was not found in the sequence"
    elif conv is not None and not any(m.role == "assistant" for m in conv.messages):
        why = ": the conversation has no assistant message"
    elif conv is not None and all(m.trainable is False for m in conv.messages if m.role == "assistant"):
        why = ": every assistant message is marked not to train (train=false / loss_weight 0)"
    elif not sample.turns:
        why = ": no assistant turn was located in the rendered text"
    return [finding("no-trainable-tokens", f"0 of {n} tokens are trained (every label is {IGNORE_INDEX}){why}")]


def check_truncation(sample, conv, ctx, labeled):
    """(2) What max_length cut. Example: 120 tokens cut to 100, 12 of 30 labeled tokens lost -> cuts-answer."""
    tr = sample.truncation
    if tr is None:
        return []
    n = sample.num_tokens
    pos = [n - 1] if tr.side == "right" else [0]
    msgs = f" (messages {', '.join(map(str, tr.cut_messages))})" if tr.cut_messages else ""
    if tr.labeled_cut and not labeled.any():
        code = "truncation-removes-labels"
        text = (f"truncation at max_length={tr.max_length} ({tr.side}) removed all {tr.labeled_cut} labeled tokens "
                f"of {tr.original_length}{msgs}")
    elif tr.labeled_cut:
        code = "truncation-cuts-answer"
        total = tr.labeled_cut + int(labeled.sum())
        lost = "its end-of-turn token" if tr.side == "right" else "its start"
        text = (f"truncation at max_length={tr.max_length} ({tr.side}) cut {tr.labeled_cut} of {total} labeled "
                f"tokens{msgs}; the cut answer loses {lost}")
    else:
        code = "truncated"
        text = f"truncation at max_length={tr.max_length} ({tr.side}) cut {tr.tokens_cut} unlabeled tokens{msgs}"
    if not ctx.enabled(code):
        return []
    first_cut = min(tr.cut_messages) if tr.cut_messages else None
    return [finding(code, text, positions=pos, message_index=first_cut,
                    details={"max_length": tr.max_length, "original_length": tr.original_length,
                             "tokens_cut": tr.tokens_cut, "labeled_cut": tr.labeled_cut})]


def check_eot(sample, conv, ctx, labeled):
    """(3) A trained turn must label its end-of-turn marker, or the EOS right after it when the template writes
    none. Example (ChatML, label_eot=False): "Hello!" labeled, "<|im_end|>" -100 -> fires at the marker."""
    if not ctx.enabled("eot-not-labeled"):
        return []
    offs = np.asarray(sample.offsets)
    ids = sample.ids_array()
    kept_start, kept_end = kept_chars(sample)
    out = []
    for t in trained_turns(sample, labeled):
        if sample.truncation is not None and (max(t.eot_end, t.body_end) > kept_end or t.start < kept_start):
            continue  # the cut is reported by the truncation checks
        if t.has_eot:
            marker = overlapping(offs, t.eot_start, t.eot_end)
            missing = marker & ~labeled
            if missing.any():
                pos = first_positions(missing, ctx.thresholds.max_positions)
                out.append(finding(
                    "eot-not-labeled",
                    f"assistant message {t.message_index}: its end-of-turn {sample.text[t.eot_start:t.eot_end]!r} "
                    f"is not labeled ({ctx.show(ids[pos[0]])} at token {pos[0]}); the model never learns to stop",
                    positions=pos, message_index=t.message_index))
            continue
        # no marker in the text: fine only when a labeled EOS follows the body (session strategy inserts one) or
        # the template's closing was appended to the open final answer (eot-appended)
        after = np.nonzero(offs[:, 0] >= t.body_end)[0] if len(offs) else []
        nxt = int(after[0]) if len(after) else None
        if nxt is not None and ctx.eos_id is not None and ids[nxt] == ctx.eos_id and labeled[nxt]:
            continue
        appended = (sample.extra or {}).get("appended_closing")
        if appended and appended["message_index"] == t.message_index and all(
                0 <= p < len(ids) and labeled[p] for p in appended["positions"]):
            continue
        body = np.nonzero(overlapping(offs, t.start, t.body_end))[0]
        pos = [int(body[-1])] if len(body) else []
        out.append(finding(
            "eot-not-labeled",
            f"assistant message {t.message_index}: the template writes no end-of-turn marker after it and no "
            f"labeled EOS follows; the model never learns to stop",
            positions=pos, message_index=t.message_index,
            hint="Use a template that closes each answer with an end-of-turn token, or the session strategy "
                 "(which appends a labeled EOS after every answer)."))
    return out


def check_leak(sample, conv, ctx, labeled):
    """(6) Labeled user/system/tool content under a masking strategy (every strategy but all-tokens). Tokens that
    straddle a boundary and messages explicitly marked trainable are left out.
    Example (completion-only collator, two turns): the second user question is labeled -> fires on that message."""
    if not ctx.enabled("label-leak") or sample.strategy == "all-tokens" or not labeled.any():
        return []
    codes = segment_codes(sample)
    prompt = PROMPT_SEGMENT[codes]
    leak = labeled & prompt & ~np.asarray(sample.straddles, dtype=bool)
    if not leak.any():
        return []
    msg_idx = np.asarray(sample.message_index)
    out = []
    for mi in sorted(set(msg_idx[leak].tolist())):
        mi = int(mi)
        if conv is not None and 0 <= mi < len(conv.messages) and conv.messages[mi].trainable:
            continue  # the record asks for it
        where = leak & (msg_idx == mi)
        role = SEGMENTS[int(codes[where][0])]
        n = int(where.sum())
        pos = first_positions(where, ctx.thresholds.max_positions)
        out.append(finding("label-leak", f"{role} message {mi} is trained under {sample.strategy}: "
                                         f"{plural(n, 'labeled token')}, first at token {pos[0]} "
                                         f"{ctx.show(sample.input_ids[pos[0]])}",
                           positions=pos, message_index=mi))
    return out


def check_straddle(sample, conv, ctx, labeled):
    """(7) A token that covers chars on both sides of a trained turn's start or end.
    Example: header "assistant: " + answer "quick" tokenized as ' quick' -> that token straddles the start."""
    if not ctx.enabled("boundary-straddle"):
        return []
    offs = np.asarray(sample.offsets)
    if not len(offs):
        return []
    out = []
    for t in trained_turns(sample, labeled):
        marker = overlapping(offs, t.eot_start, t.eot_end) if t.has_eot else np.zeros(len(offs), dtype=bool)
        end = t.eot_end if t.has_eot and (labeled & marker).any() else t.body_end
        for where, p in (("start", t.start), ("end", end)):
            hit = np.nonzero((offs[:, 0] < p) & (offs[:, 1] > p))[0]
            for k in hit.tolist():
                a, b = int(offs[k, 0]), int(offs[k, 1])
                out.append(finding(
                    "boundary-straddle",
                    f"token {k} {sample.text[a:b]!r} spans the {where} of assistant message {t.message_index} "
                    f"({sample.text[a:p]!r} | {sample.text[p:b]!r}); it is "
                    f"{'labeled' if labeled[k] else 'not labeled'}",
                    positions=[k], message_index=t.message_index))
    return out


def check_marker(sample, conv, ctx, labeled):
    """(10) Completion-only collator: the marker's ids alone are not found in the sequence.
    Example: marker "ant\\n" alone -> ['ant', '\\n'] but in context "assistant" is one token -> not found."""
    if not ctx.enabled("response-marker-not-found") or sample.strategy != "response-template":
        return []
    extra = sample.extra or {}
    if extra.get("marker_found", True):
        return []
    marker = extra.get("response_template")
    if not marker:
        return [finding("response-marker-not-found", f"no response marker: {extra.get('reason', 'none given')}")]
    alone = list(extra.get("marker_ids") or ctx.tokenizer.encode(marker, add_special_tokens=False))
    at = sample.text.find(marker)
    offs = np.asarray(sample.offsets)
    if at < 0 or not len(offs):
        return [finding("response-marker-not-found",
                        f"the response marker {marker!r} (ids {alone}) does not occur in the rendered text")]
    cover = np.nonzero(overlapping(offs, at, at + len(marker)))[0]
    if not len(cover):
        return [finding("response-marker-not-found",
                        f"the response marker {marker!r} (ids {alone}) is not in the sequence, and its text first "
                        f"occurs after the tokens kept by max_length: the collator finds nothing and trains nothing",
                        details={"marker": marker, "marker_ids": alone})]
    in_context = [int(sample.input_ids[k]) for k in cover]
    return [finding("response-marker-not-found",
                    f"the response marker {marker!r} tokenizes as {alone} alone but as {in_context} in context "
                    f"(tokens {int(cover[0])}-{int(cover[-1])}): the collator finds nothing and trains nothing",
                    positions=[int(k) for k in cover],
                    details={"marker": marker, "marker_ids": alone, "in_context_ids": in_context})]


def check_share(sample, conv, ctx, labeled):
    """(12) 0 < trained/total < threshold. Example: 3 of 400 tokens trained (0.75%) with threshold 5% -> fires."""
    n = sample.num_tokens
    k = int(labeled.sum())
    if not ctx.enabled("low-trainable-share") or not n or not k:
        return []
    share = k / n
    limit = ctx.thresholds.min_trainable_share
    if share >= limit:
        return []
    return [finding("low-trainable-share",
                    f"{k} of {n} tokens are trained ({share:.1%}, below {limit:.1%})",
                    details={"trainable": k, "tokens": n, "share": round(share, 6)})]


def check_last_match(sample, conv, ctx, labeled):
    """Completion-only collator without an instruction template: the marker matches N > 1 times and the collator
    keeps the last match. Example: two answers, marker "<|im_start|>assistant\n" -> only the second is trained."""
    extra = sample.extra or {}
    if (not ctx.enabled("response-marker-last-match") or sample.strategy != "response-template"
            or ctx.opts.instruction_template is not None):
        return []
    pos = list(extra.get("marker_positions") or [])
    if len(pos) < 2:
        return []
    return [finding("response-marker-last-match",
                    f"the response marker {extra.get('response_template')!r} matches {len(pos)} times and no "
                    f"instruction template is given: the collator keeps the last match (token {pos[-1]}), so only "
                    f"the last answer is trained and {plural(len(pos) - 1, 'earlier answer')} "
                    f"{'is' if len(pos) == 2 else 'are'} silently dropped",
                    positions=pos[:-1][: ctx.thresholds.max_positions],
                    details={"matches": len(pos), "kept": pos[-1]})]


def verification_findings(sample: Sample, conv: Conversation, ctx: CheckContext) -> list[Finding]:
    """Run the perturbation verifier (``inspector.labels.verify``) on one sample: one ``label-verification`` finding per
    message field whose tokens break a rule, positions included."""
    if not ctx.enabled("label-verification"):
        return []
    result = verify_sample(ctx.engine, sample, conv, ctx.opts)
    out = []
    for v in result.violations:
        out.append(finding("label-verification", v.message(),
                           positions=v.positions[: ctx.thresholds.max_positions],
                           message_index=v.field.message_index if v.field.message_index >= 0 else None,
                           sample_id=sample.id, conversation_id=sample.conversation_id,
                           turn_index=sample.turn_index,
                           details={"field": v.field.name, "role": v.field.role, "rule": v.kind,
                                    "tokens": len(v.positions)}))
    return out
