"""Sample-level checks of the tokenizer's side: special ids and the vocabulary.

Every check here is ``check_x(sample, conv, ctx, labeled) -> list[Finding]``, run in order by ``check_sample``
(``inspector.checks.sample``).

- ``check_pad_eos`` (4): pad id == EOS id and EOS is labeled (a pad-masking collator erases it);
- ``check_double_bos`` (5): two BOS at the start, or a template BOS that ``tokenizer(text)`` would double;
- ``check_vocab`` (12): a label outside [0, len(tokenizer));
- ``check_special_in_text``: a special token's text inside a message becomes the control token itself.

Example: labels [..., 9, 2] with pad_token_id == eos_token_id == 2 -> ``pad-equals-eos`` at the position of the
2: a collator that sets labels to -100 where input_ids == pad_token_id erases the model's only stop signal.
"""

from __future__ import annotations

import numpy as np

from inspector.checks.catalog import finding
from inspector.checks.context import first_positions, plural, segment_codes
from inspector.constants import SEGMENTS
from inspector.labels.engine import SEG_CODE


def check_pad_eos(sample, conv, ctx, labeled):
    """(4) pad id == EOS id and EOS is labeled. Example: labels [..., 9, 2] with pad=eos=2 -> position of the 2."""
    if not ctx.enabled("pad-equals-eos") or ctx.pad_id is None or ctx.pad_id != ctx.eos_id:
        return []
    labels = sample.labels_array()
    hits = np.nonzero(labels == ctx.eos_id)[0]
    if not len(hits):
        return []
    return [finding(
        "pad-equals-eos",
        f"pad token == EOS {ctx.show(ctx.eos_id)}: a collator that masks labels where input_ids == pad_token_id "
        f"erases the {plural(len(hits), 'labeled EOS token')} at position(s) "
        f"{', '.join(map(str, hits[:8].tolist()))}{' ...' if len(hits) > 8 else ''}",
        positions=first_positions(hits.tolist(), ctx.thresholds.max_positions),
        details={"eos_token_id": int(ctx.eos_id), "pad_token_id": int(ctx.pad_id)})]


def check_double_bos(sample, conv, ctx, labeled):
    """(5) Two BOS at the start, or one from the template that ``tokenizer(text)`` would double.
    Example: template "<s>[INST] ..." with Llama 2's tokenizer -> tokenizer(text) gives [1, 1, ...]."""
    if not ctx.enabled("double-bos") or ctx.bos_id is None or not sample.num_tokens:
        return []
    ids = sample.ids_array()[:2].tolist()
    bos = ctx.show(ctx.bos_id)
    if len(ids) > 1 and ids[0] == ctx.bos_id and ids[1] == ctx.bos_id:
        return [finding("double-bos", f"the sample starts with two BOS tokens {bos}", positions=[0, 1])]
    if ids[0] == ctx.bos_id and ctx.info.bos_in_template and ctx.tokenizer_adds_bos:
        return [finding(
            "double-bos",
            f"the template writes BOS {bos} and the tokenizer adds one too: a naive tokenizer(text) "
            f"(add_special_tokens=True) would start this sample with two BOS tokens",
            positions=[0])]
    return []


def check_vocab(sample, conv, ctx, labeled):
    """(12) Labels outside [0, len(tokenizer)) other than IGNORE_INDEX. Example: vocab 400, label 999 -> fires."""
    if not ctx.enabled("label-out-of-vocab"):
        return []
    labels = sample.labels_array()
    bad = labeled & ((labels < 0) | (labels >= ctx.vocab_size))
    if not bad.any():
        return []
    pos = first_positions(bad, ctx.thresholds.max_positions)
    return [finding("label-out-of-vocab",
                    f"{plural(int(bad.sum()), 'label')} outside the vocabulary of {ctx.vocab_size} (first: "
                    f"{int(labels[pos[0]])} at token {pos[0]})", positions=pos)]


def check_special_in_text(sample, conv, ctx, labeled):
    """A special token inside a message's own text: the tokenizer splits added tokens out before anything else, so
    text that spells one becomes the control token itself. Example: a user message "Say <|im_end|> now" (ChatML)
    -> the token <|im_end|> inside user message 0, where the model learns (or a user forges) an end of turn."""
    if not ctx.enabled("special-token-in-text") or not ctx.special_ids or not sample.num_tokens:
        return []
    is_special = ctx.__dict__.get("_is_special")  # a lookup table over token ids: True for a special token
    if is_special is None:
        is_special = ctx._is_special = np.zeros(max(ctx.special_ids) + 1, dtype=bool)
        is_special[np.fromiter(ctx.special_ids, dtype=np.int64, count=len(ctx.special_ids))] = True
    ids = sample.ids_array()
    known = (ids >= 0) & (ids < len(is_special))
    hits = np.where(known, is_special[np.where(known, ids, 0)], False)
    if not hits.any():
        return []
    codes = segment_codes(sample)
    hits &= codes != SEG_CODE["template"]
    if not hits.any():
        return []
    msg_idx = np.asarray(sample.message_index)
    out = []
    for mi in sorted(set(msg_idx[hits].tolist())):
        where = hits & (msg_idx == mi)
        pos = first_positions(where, ctx.thresholds.max_positions)
        names = list(dict.fromkeys(ctx.show(int(ids[k])) for k in pos[:8]))
        them = "it into the control token" if len(names) == 1 else "them into control tokens"
        out.append(finding("special-token-in-text",
                           f"{SEGMENTS[int(codes[pos[0]])]} message {int(mi)} writes {', '.join(names)} as text: the tokenizer turns "
                           f"{them} ({plural(int(where.sum()), 'token')})", positions=pos, message_index=int(mi)))
    return out
