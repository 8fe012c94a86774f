"""The audit's findings: what a trainer's own labels get wrong, as data (``Finding`` with code, severity,
positions and the tokens themselves in ``details["tokens"]``).

    code                        sev      what fires it
    labels-shifted              error    labels equal input_ids moved by one position (the model shifts again)
    label-not-input             error    a label that is neither -100 nor the input id at its position
    nothing-trained             error    every token of the sample is masked
    prompt-trained              error    user / system / tool content is trained
    answer-not-trained          error    assistant content is not trained
    closing-not-trained         error    the closing of an answer (<|im_end|>, <|eot_id|>, EOS) is not trained
    eos-never-trained           error    the end-of-turn / EOS id occurs, but is never trained (pad == eos masking)
    packed-positions-continue   error    a packed sample's position_ids do not restart: it attends to the one before
    packed-layout               error    seq_lengths do not add up to the row's length
    extra-trained-tokens        warning  template text trained beyond the assistant turns (e.g. "\\n" after
                                         <|im_end|>): harmless to what the model says, but not what was asked
    answer-truncated            warning  the sample ends inside a trained answer (cut at max_length)
    double-bos                  warning  the sample starts with two BOS tokens
    text-differs                info     the trainer's text is not what the chat template renders (its own training
                                         template): the comparison anchors on the messages' contents instead
    not-tied                    info     no conversation could be tied to the sample: token-only checks ran

Example: TRL's Qwen2.5 training template trains the newline after every ``<|im_end|>`` ->
``Finding("extra-trained-tokens", "warning", "2 template tokens trained ...", positions=[39, 56],
details={"tokens": ["'\\n'", "'\\n'"], "pattern": "'\\n' after '<|im_end|>'"})``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

from inspector.checks.catalog import Check, Finding

_AUDIT_LIST = [
    Check("labels-shifted", "error", "Labels shifted by one",
          "The labels equal input_ids moved by one position (labels[i] == input_ids[i+1]): the pipeline shifted them "
          "and the model shifts again, so it learns to predict two tokens ahead.",
          "Give the model unshifted labels (labels[i] = input_ids[i] or -100); Hugging Face models shift inside."),
    Check("label-not-input", "error", "Label is not the input token",
          "A label that is neither -100 nor the input id at its position: the labels were built from other tokens "
          "(another tokenizer, another text, an offset).",
          "Build labels from the same input_ids: labels = input_ids with -100 where not trained."),
    Check("nothing-trained", "error", "Nothing trained",
          "Every token of the sample is masked: it adds no loss (and can make a batch's loss NaN).",
          "Check the masking and max_length; drop the sample if it has no answer."),
    Check("prompt-trained", "error", "Prompt content trained",
          "User, system or tool content is trained: the model learns to write its users' messages.",
          "Train assistant turns only (assistant_only_loss, completion_only_loss, train_on_inputs=false)."),
    Check("answer-not-trained", "error", "Answer content not trained",
          "Assistant content that should be trained is masked (the trainer's mask misses part of an answer, e.g. "
          "the opening <think> of a reasoning answer, or a whole earlier turn).",
          "Check the trainer's template / mask against the inspector's (python -m inspector show)."),
    Check("closing-not-trained", "error", "Closing of an answer not trained",
          "The end-of-turn token that closes an answer (<|im_end|>, <|eot_id|>, EOS) is not trained: the model "
          "never learns to stop.",
          "Train the end-of-turn token; a collator that masks pad ids must not share the id with EOS."),
    Check("eos-never-trained", "error", "End-of-turn / EOS never trained",
          "The end-of-turn or EOS id occurs in the sample but is never trained (typically pad == eos and a collator "
          "that masks every pad id).",
          "Use a pad token distinct from EOS, or mask padding by position (attention_mask), not by id."),
    Check("packed-positions-continue", "error", "Packed samples share positions",
          "In a packed row, position_ids do not restart where a sample starts: with a padding-free attention the "
          "sample attends to the samples before it.",
          "Use a padding-free collator that restarts position_ids per sample (TRL's, with packing bfd)."),
    Check("packed-layout", "error", "Packed row layout inconsistent",
          "seq_lengths do not add up to the row's number of tokens.",
          "Rebuild the packed dataset; the packing step and the tokens come from different runs."),
    Check("extra-trained-tokens", "warning", "Template text trained",
          "Tokens of the template's own markup (not any message's content) are trained beyond the answers and their "
          "closing, e.g. the newline after <|im_end|> or after the assistant header. Harmless to what the model "
          "says, but the model learns to emit them.",
          "Expected for some trainers' training templates (TRL's Qwen2.5); use a training template that wraps only "
          "the answer and its closing (python -m inspector training-template) if it matters."),
    Check("answer-truncated", "warning", "Answer truncated",
          "The sample ends inside a trained answer, without its closing: max_length cut it, and the model learns an "
          "answer that stops mid-way and never ends.",
          "Raise max_length, or drop / split long conversations."),
    Check("double-bos", "warning", "Double BOS",
          "The sample starts with two BOS tokens (the template writes one and the tokenizer adds another).",
          "Tokenize rendered text with add_special_tokens=False."),
    Check("text-differs", "info", "Trainer's text differs from the template's",
          "The trainer's tokens are not what the chat template renders for the conversation (it swapped in its own "
          "training template, or rendered another way): the audit anchors on the messages' contents in the decoded "
          "text instead of comparing token by token.",
          "Nothing to fix by itself; pass the template the trainer used (--chat-template) for a token-exact audit."),
    Check("not-tied", "info", "Not tied to a conversation",
          "No conversation could be tied to the sample (no messages / prompt column, no --reference match): only "
          "the token-level checks ran.",
          "Keep the messages column beside the tokens, or pass the raw data with --reference RAW."),
]
AUDIT_CHECKS: "OrderedDict[str, Check]" = OrderedDict((c.code, c) for c in _AUDIT_LIST)


def show_token(tokenizer: Any, token_id: int) -> str:
    """A token as text for a message. Example: 198 -> "'\\n'"."""
    try:
        return repr(tokenizer.decode([int(token_id)]))
    except BaseException:  # noqa: BLE001 - an id outside the vocabulary, or a panic in the Rust decoder
        return f"<id {int(token_id)}>"


def audit_finding(code: str, message: str, *, positions: Sequence[int] = (), tokens: Sequence[str] = (),
                  sample_id: str | None = None, limit: int = 64, **details: Any) -> Finding:
    """A Finding of the audit: registered severity and hint, at most ``limit`` positions and tokens (the message
    says how many there were)."""
    check = AUDIT_CHECKS[code]
    info = {"tokens": list(tokens)[:limit], **{k: v for k, v in details.items() if v is not None}}
    return Finding(code, check.severity, message, positions=[int(p) for p in list(positions)[:limit]],
                   hint=check.hint, sample_id=sample_id, conversation_id=sample_id, details=info)
