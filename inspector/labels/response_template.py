"""The response-marker search of TRL's ``DataCollatorForCompletionOnlyLM`` (TRL 0.19), reproduced exactly, so users
can see why theirs fails: pad ids are set to -100 first, then everything up to the LAST match of the response
marker's token ids is masked. On a multi-turn conversation only the final answer is trained
(``response-marker-last-match``), and nothing at all when the marker tokenizes differently in context
(``response-marker-not-found``). Checked against 51 cases recorded from TRL itself
(``scripts/record_trl_collator.py``).

Example: ids [5, 7, 8, 9, 2] with the marker "M" = [7, 8] -> labels [-100, -100, -100, 9, 2].
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from inspector.constants import IGNORE_INDEX


def subsequence_starts(haystack: Sequence[int], needle: Sequence[int]) -> list[int]:
    """Every index where ``needle`` occurs in ``haystack`` (overlaps included), with numpy, no per-token loop.

    Example: ([1, 2, 3, 2, 3], [2, 3]) -> [1, 3]
    """
    n = len(needle)
    if n == 0 or len(haystack) < n:
        return []
    hay = np.asarray(haystack, dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(hay, n)
    return np.nonzero((windows == np.asarray(needle, dtype=np.int64)).all(axis=1))[0].tolist()


def find_subsequence(haystack: Sequence[int], needle: Sequence[int], start: int = 0) -> int:
    """First index >= start where ``needle`` occurs in ``haystack``, or -1. Example: ([1,2,3,2,3], [2,3]) -> 1."""
    starts = subsequence_starts(list(haystack)[start:], needle) if start else subsequence_starts(haystack, needle)
    return starts[0] + start if starts else -1


def response_template_labels(tokenizer: Any, ids: Sequence[int], response_template: str | None,
                             instruction_template: str | None = None) -> tuple[list[int], dict[str, Any]]:
    """Reproduce the completion-only collator exactly (TRL's ``DataCollatorForCompletionOnlyLM``, v0.4.7-v0.19.1).

    Labels start as its base collator makes them (``DataCollatorForLanguageModeling(mlm=False)``): a copy of
    ``ids`` with every pad id set to -100 — with pad == EOS, every EOS — and the markers are searched in those
    labels. With only a response template, the collator loops over every match of its ids without a ``break``,
    so the LAST match wins: everything up to and including the last marker is -100, and on a multi-turn
    conversation only the final answer is trained. With an instruction template too, the k-th instruction marker
    is paired with the end of the k-th response marker (by position) and each span between them is -100. When a
    marker's ids are not found (it tokenizes differently inside the text than alone), every label becomes -100.

    Example: ids [5, 7, 8, 9, 2], marker ids [7, 8] -> labels [-100, -100, -100, 9, 2];
    ids [7, 8, 9, 5, 7, 8, 6] -> [-100] * 6 + [6] (the second answer only).
    """
    labels = np.asarray(ids, dtype=np.int64).copy()
    extra: dict[str, Any] = {"response_template": response_template}
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is not None:
        pad_hits = labels == pad
        labels[pad_hits] = IGNORE_INDEX
        extra["pad_masked"] = int(pad_hits.sum())
    if not response_template:
        extra["marker_found"] = False
        extra["reason"] = "no response template given and the chat template has no generation prompt"
        return [IGNORE_INDEX] * len(labels), extra
    marker = tokenizer.encode(response_template, add_special_tokens=False)
    extra["marker_ids"] = marker
    resp_starts = subsequence_starts(labels, marker)
    extra["marker_found"] = bool(resp_starts)
    extra["marker_positions"] = resp_starts
    if instruction_template is None:
        if not resp_starts:
            return [IGNORE_INDEX] * len(labels), extra
        end = resp_starts[-1] + len(marker)  # the collator keeps the last match
        labels[:end] = IGNORE_INDEX
        return labels.tolist(), extra
    instr = tokenizer.encode(instruction_template, add_special_tokens=False)
    extra["instruction_ids"] = instr
    human = subsequence_starts(labels, instr)
    extra["instruction_positions"] = human
    if not resp_starts or not human:  # the collator warns and trains on nothing
        return [IGNORE_INDEX] * len(labels), extra
    resp_ends = [s + len(marker) for s in resp_starts]
    if human[0] > resp_ends[0]:  # the text opens with a response: its prompt starts at 0
        human = [0] + human
    for k, (start, end) in enumerate(zip(human, resp_ends)):  # pairs by position, as TRL does
        labels[(0 if k == 0 else start):end] = IGNORE_INDEX
    if len(resp_ends) < len(human):  # an instruction with no response after it: masked to the end
        labels[human[-1]:] = IGNORE_INDEX
    return labels.tolist(), extra
