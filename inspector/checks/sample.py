"""``check_sample``: every sample-level check on one built sample, in one fixed order (``SAMPLE_CHECKS``).

The order is the order of a sample's findings in reports and exports: a new check goes at the end of
``SAMPLE_CHECKS`` unless it must come earlier, so existing outputs keep their order. The checks live by family:
``labels`` (what is trained), ``template`` (what the template rendered), ``tokenizer`` (special ids, vocabulary).

Example: a ChatML sample whose "<|im_end|>" is not labeled and that trains 3 of 400 tokens -> [eot-not-labeled,
low-trainable-share], each stamped with the sample's id, conversation id and turn.
"""

from __future__ import annotations

from inspector.checks.catalog import Finding
from inspector.checks.context import CheckContext, labeled_mask
from inspector.checks.labels import (check_eot, check_last_match, check_leak, check_marker, check_no_trainable,
                                     check_share, check_straddle, check_truncation)
from inspector.checks.template import (check_adapted, check_dropped, check_eot_appended, check_generation_mask,
                                       check_reasoning_dropped, check_tools_fallback,
                                       check_tools_rendered, check_train_inference)
from inspector.checks.tokenizer import check_double_bos, check_pad_eos, check_special_in_text, check_vocab
from inspector.conversations import Conversation
from inspector.labels.engine import Sample

SAMPLE_CHECKS = (check_no_trainable, check_truncation, check_eot, check_pad_eos, check_double_bos,
                 check_leak, check_straddle, check_train_inference, check_generation_mask, check_marker,
                 check_dropped, check_share, check_vocab, check_last_match, check_eot_appended,
                 check_reasoning_dropped, check_adapted, check_special_in_text, check_tools_rendered,
                 check_tools_fallback)


def check_sample(sample: Sample, conv: Conversation | None, ctx: CheckContext) -> list[Finding]:
    """Every sample-level check on one built sample. ``conv`` (the conversation it was built from) is needed by
    the train/inference, leak and dropped-message checks; without it they are skipped."""
    out: list[Finding] = []
    labeled = labeled_mask(sample)
    for fn in SAMPLE_CHECKS:
        out.extend(fn(sample, conv, ctx, labeled))
    for f in out:
        f.sample_id = sample.id
        f.conversation_id = sample.conversation_id
        if f.turn_index is None and sample.turn_index is not None:
            f.turn_index = sample.turn_index
    return out
