"""The catalog of checks: every named problem the inspector can find, and ``Finding``, the data that reports one.

Each check has a stable code (scripts and CI configs use it), a severity (error / warning / info), a title, what
fires it and a default fix hint. Findings are data, never exceptions: the CLI (``check --json``), the export and
the app's checks page all show the same ones. What the checks cover (numbers are the issue's):

    code                        sev      what fires it
    no-trainable-tokens         error    (1)  every label is IGNORE_INDEX: the sample trains on nothing
    truncation-removes-labels   error    (2)  max_length cut every labeled token
    truncation-cuts-answer      warning  (2)  max_length cut part of the labeled tokens (an answer loses its end)
    truncated                   info     (2)  max_length cut tokens, none of them labeled
    eot-not-labeled             error    (3)  a trained answer whose end-of-turn / EOS token is not labeled
    pad-equals-eos              warning  (4)  pad id == EOS id and EOS is labeled: pad-masking collators erase it
    double-bos                  warning  (5)  template writes BOS and ``tokenizer(text)`` adds one (or two in a row)
    label-leak                  error    (6)  user / system / tool text labeled under a masking strategy
    boundary-straddle           warning  (7)  a token spans a prompt/response boundary of a trained turn
    train-inference-mismatch    warning  (8)  the inference prompt for turn k is not a token prefix of the sample
    generation-mask-mismatch    warning  (9)  the template's ``{% generation %}`` mask disagrees with ours
    response-marker-not-found   error    (10) the response marker's ids are not in the sequence
    role-order                  warning  (11) roles do not alternate (user, user), system not first, ...
    unsupported-role            warning  (11) a role the core does not know, or a message the template drops
    empty-message               warning  (11) a message with no text (and no tool call)
    template-error              error    (11) the chat template raised (its own message)
    tokenizer-error             error    the tokenizer failed on the rendered text (a Rust panic in ``tokenizers``)
    low-trainable-share         warning  (12) 0 < trained tokens / tokens < ``Thresholds.min_trainable_share``
    label-out-of-vocab          error    (12) a label outside [0, len(tokenizer))
    special-token-in-text       warning  a special token's text written inside a message becomes that token
    label-verification          error    the independent verifier finds answer text unlabeled or prompt text labeled
    response-marker-last-match  error    the marker matches several times: the collator trains only the last answer
    eot-appended                info     the open final answer got the template's closing appended, labeled
    reasoning-dropped           info     the template does not render some assistant messages' reasoning
    tool-call-adapted           info     tool calls reshaped (JSON text <-> object) to what the template expects
    tools-not-rendered          warning  the record declares tools, the template writes none of them
    tools-empty-list            info     the template raised without tools: rendered with ``tools=[]`` instead
    record-rejected             error    the loader could not read the record (reasons from ``Rejected``)
    check-failed                error    a check could not run on the record (the tokenizer failed on its text)
    no-records                  error    the input holds no record at all (a report-level finding)
    (packing, run by ``inspector.train.packing.check_packing`` / ``pack``: ``PACKING_CODES``)
    cross-sample-prediction     error    a labeled token right after another sample's token in a packed row
    cross-sample-attention      warning  the layout lets a sample's tokens attend to another sample
    packing-truncates           warning  bfd cut a sample longer than max_length (tokens lost) or dropped it
    packing-splits-sample       warning  bfd_split / wrapped cut a sample across packed sequences
    packing-label-masked        info     the padding-free collator set labels to IGNORE_INDEX at position id 0
    packing-padding             info     the collated rows are more than ``max_padding_share`` padding
    packing-attention           info     which attention implementations keep packed samples apart here

Example: ``finding("no-trainable-tokens", "0 of 23 tokens are trained")`` -> ``Finding(code="no-trainable-tokens",
severity="error", message="0 of 23 tokens are trained", hint="Check the strategy, ...")``: the severity and the
hint come from the catalog entry; ``at_least("error", "warning")`` -> True (``--fail-on warning`` fails on it).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("error", "warning", "info")
SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Check:
    """A named check: ``code`` is stable (scripts and CI configs use it), ``hint`` is the default fix."""

    code: str
    severity: str
    title: str
    description: str
    hint: str


_CHECK_LIST = [
    Check("record-rejected", "error", "Record rejected by the loader",
          "The record could not be normalized into a conversation (bad JSON, unknown role, no content, ...).",
          "Fix the record as its reasons say; nothing from it reaches training."),
    Check("template-error", "error", "Chat template raised",
          "Rendering the conversation with the chat template raised an exception (its own message is shown).",
          "Read the template's message: most templates reject a role order or a role they do not support."),
    Check("tokenizer-error", "error", "Tokenizer failed on the text",
          "The tokenizer raised or panicked on the rendered text of this record (a panic inside the Rust "
          "`tokenizers` library, e.g. a pre-tokenizer regex that backtracks past its limit on a long run of one "
          "character). The template rendered fine.",
          "The tokenizer, not the template: check its pre-tokenizer (tokenizer.json, `pre_tokenizer` Split regex) "
          "or the record's text (very long runs of one character); other records are checked."),
    Check("role-order", "warning", "Roles out of order",
          "Roles do not alternate user/assistant: two user or two assistant messages in a row, a system message "
          "after the first message, a tool result without a tool call before it, or no final assistant message.",
          "Merge consecutive messages of the same role, move the system message first, end with the answer."),
    Check("unsupported-role", "warning", "Role not supported / message not rendered",
          "A role outside system/user/assistant/tool, or a message whose text the template does not render at all "
          "(the training text silently lacks it).",
          "Map the role onto system/user/assistant/tool, or use a template that renders this role."),
    Check("empty-message", "warning", "Empty message",
          "A message whose content is empty or only whitespace (and that has no tool call or reasoning).",
          "Drop the message or fill it; an empty answer trains the model to stop at once."),
    Check("no-trainable-tokens", "error", "No trainable tokens",
          "Every label is IGNORE_INDEX (-100): the sample contributes no loss (and, under mean reduction, can make "
          "a batch's loss NaN).",
          "Check the strategy, per-message train/loss_weight flags, max_length and the response marker."),
    Check("truncation-removes-labels", "error", "Truncation removes every label",
          "Cutting the sample at max_length removed all of its labeled tokens.",
          "Raise --max-length, truncate on the left (keep the end), or drop/split long records."),
    Check("truncation-cuts-answer", "warning", "Truncation cuts an answer",
          "Cutting at max_length removed labeled tokens: an answer loses its end (and its end-of-turn token).",
          "Raise --max-length or split long conversations (split-turns); a cut answer teaches the model not to stop."),
    Check("truncated", "info", "Truncated (no labels lost)",
          "Cutting at max_length removed tokens, none of them labeled (context only).",
          "Nothing to fix unless the cut context matters for the answer."),
    Check("eot-not-labeled", "error", "End-of-turn token not labeled",
          "A trained assistant turn whose end-of-turn marker (or EOS) is not labeled, or that has none at all: "
          "the model never learns to stop.",
          "Label the end-of-turn token (label_eot), or use a template that closes answers with one."),
    Check("pad-equals-eos", "warning", "Pad token equals EOS",
          "pad_token_id == eos_token_id and EOS is labeled: a collator that sets labels to -100 wherever "
          "input_ids == pad_token_id erases every EOS label.",
          "Use a pad token distinct from EOS, or pad labels by position with -100 (DataCollatorForSeq2Seq does)."),
    Check("double-bos", "warning", "Double BOS",
          "The template writes BOS and the tokenizer adds another when called with add_special_tokens=True "
          "(the default of tokenizer(text)), or the sample starts with two BOS tokens.",
          "Tokenize rendered text with add_special_tokens=False (apply_chat_template does), or drop BOS from the "
          "template."),
    Check("label-leak", "error", "Prompt text labeled",
          "User, system or tool content is labeled under a strategy that should mask it (e.g. a completion-only "
          "collator without an instruction template labels every later user turn).",
          "Use assistant-only masking, or give the completion-only collator an instruction template."),
    Check("boundary-straddle", "warning", "Token straddles a prompt/response boundary",
          "One token covers text on both sides of where a trained turn starts or ends (e.g. 'assistant: ' + 'Hi' "
          "tokenized as ' Hi'): its label mixes prompt and response, and inference tokenizes the prompt differently.",
          "End the assistant header with a special token or a newline, or start answers without a space."),
    Check("train-inference-mismatch", "warning", "Training render differs from inference",
          "For a trained assistant turn k, the prompt rendered from messages[:k] with add_generation_prompt=True is "
          "not a token prefix of the training sequence: the model is trained on a context it never sees at "
          "inference (templates that strip earlier reasoning, inject dates, or merge tokens across the boundary).",
          "Train one sample per turn (split-turns) with a template that keeps history as inference shows it, or "
          "fix the template."),
    Check("generation-mask-mismatch", "warning", "{% generation %} mask disagrees",
          "The template's {% generation %} blocks (return_assistant_tokens_mask) mark different tokens than the "
          "span-based labels.",
          "Trainers reading assistant_masks train on the template's mask: check which of the two is right."),
    Check("response-marker-not-found", "error", "Response marker not found",
          "Under the completion-only collator, the response marker's token ids do not occur in the sequence "
          "(it tokenizes differently in context than alone), so every label is -100.",
          "Pass the marker as token ids taken from a rendered sample, or use assistant-only masking."),
    Check("low-trainable-share", "warning", "Very low share of trained tokens",
          "Fewer than the threshold share of the sample's tokens are labeled (long prompts, short answers).",
          "Expected for long-context tasks; otherwise check the masking. Threshold: --min-trainable-share."),
    Check("label-out-of-vocab", "error", "Label outside the vocabulary",
          "A label that is neither IGNORE_INDEX nor a token id of the tokenizer (0 <= id < len(tokenizer)).",
          "The labels were built with another tokenizer, or shifted/offset by mistake."),
    Check("label-verification", "error", "Labels disagree with the verifier",
          "The independent verifier (each field of the conversation replaced in turn by a sentinel, the renders "
          "diffed) found text the model writes that is not labeled, or prompt text that is labeled. It does not "
          "rely on how the engine located the turns, so it catches layouts the engine got wrong.",
          "Report it with the template and the record (python -m inspector show DATA --index N); meanwhile check "
          "the labels of this template by hand or use a template with {% generation %} tags."),
    Check("response-marker-last-match", "error", "Only the last answer is trained",
          "Under the completion-only collator without an instruction template, the response marker matches "
          "several times; TRL's DataCollatorForCompletionOnlyLM keeps the last match, so every earlier answer of "
          "the conversation is silently dropped from training.",
          "Give the collator an instruction template (the user header), or use assistant-only masking."),
    Check("eot-appended", "info", "Closing appended to the final answer",
          "The template leaves the final answer open (it closes a turn only when a next one follows, or with the "
          "next role token as GLM does): its closing was appended after the answer and labeled, as the family's "
          "own fine-tuning does, so the model learns to stop.",
          "Nothing to fix; export the samples as built (they hold the appended token)."),
    Check("reasoning-dropped", "info", "Reasoning not rendered",
          "The template does not write the reasoning (reasoning_content / thinking parts) of some assistant "
          "messages, always or for turns before the last user message: those traces are not trained.",
          "Expected for templates that drop past reasoning; train one sample per turn (split-turns) to keep each "
          "turn's reasoning, or use a template that renders it."),
    Check("tool-call-adapted", "info", "Tool calls adapted to the template",
          "Tool-call arguments given as JSON text were parsed into an object (or an object written as JSON text, "
          "or a call-only message given content None) because the template expects that shape.",
          "Nothing to fix; the note on the sample says what was changed."),
    Check("tools-not-rendered", "warning", "Tools declared but never rendered",
          "The record has a tools list, but the rendered text is the same without it: the template does not write "
          "tool declarations (e.g. a ChatML template without tool support on function-calling data). The model "
          "is trained to call tools it never sees declared.",
          "Use a template that renders `tools` (the model's own tool-use template), or write the declarations into "
          "the system message yourself."),
    Check("tools-empty-list", "info", "Rendered with an empty tools list",
          "The record has no tools and the template raised when `tools` was undefined (it iterates it without a "
          "check), so the sample was rendered with `tools=[]`. Some templates write text of their own for an empty "
          "list (Phi-4-mini: a system prompt saying the model has tools).",
          "Look at the rendered text; if the tool preamble should not be there, give the records an explicit "
          "tools list or fix the template's `tools is defined` test."),
    Check("special-token-in-text", "warning", "Special token written inside message text",
          "A message's own text holds the text of a special token (an end-of-sentence, a turn marker such as "
          "<|im_start|>assistant): the tokenizer turns it into the real control token, so the model is trained on "
          "a turn boundary that is not there (or a user can forge one).",
          "Remove or escape the marker in the data (e.g. write it with a zero-width space), or filter such records."),
    Check("check-failed", "error", "Checking the record failed",
          "A check could not run on this record: the tokenizer failed on a text the check needed (e.g. a Rust "
          "panic in its pre-tokenizer regex), or an internal error. The record is rejected with the reason.",
          "Read the reason; if it names an internal error, please report it with the record."),
    Check("no-records", "error", "No records",
          "The input holds no record at all (an empty file, a Parquet file with zero rows, only blank lines, an "
          "empty list): nothing would be trained.",
          "Point DATA at the file that holds the records; check that it was written completely."),
]
_PACKING_CHECKS = [
    Check("cross-sample-prediction", "error", "Labeled token predicted from another sample",
          "In a packed row, a labeled token comes right after a token of another sample: labels are unshifted, so "
          "the loss trains the model to continue that sample with this token, whatever the attention does.",
          "Use the padding-free layout (its collator sets the label at every position id 0 to -100), mask each "
          "sample's first token, or do not pack."),
    Check("cross-sample-attention", "warning", "Packed samples attend to each other",
          "The layout gives the model no boundary between samples of one row (the padded layout's attention_mask "
          "marks only padding; wrapped writes no seq_lengths): a sample's tokens attend to the samples before it.",
          "Pack with bfd or bfd_split in the padding-free layout and an attention implementation that reads "
          "position_ids (flash_attention_2/3, sdpa, eager, flex_attention); TRL's SFTTrainer does so for bfd."),
    Check("packing-truncates", "warning", "Packing truncates a sample",
          "bfd keeps the first max_length tokens of a longer sample and drops the rest (answers lose their end), "
          "and drops empty samples.",
          "Raise --max-length, use bfd_split (keeps every token, in pieces), or split long conversations."),
    Check("packing-splits-sample", "warning", "Packing cuts a sample across sequences",
          "bfd_split or wrapped put one sample's tokens in several packed sequences: a later piece is trained "
          "without what precedes it (an answer without its question).",
          "Use bfd (truncates instead) with a larger --max-length, or split long conversations before packing."),
    Check("packing-label-masked", "info", "Packing masks labels at sample starts",
          "The padding-free collator sets the label of every token at position id 0 to -100: a sample's first "
          "token (never a loss term anyway) or the first token of a later piece of a split sample.",
          "Nothing to fix for whole samples; for split samples, the piece's first token is no longer trained."),
    Check("packing-padding", "info", "Packed rows carry much padding",
          "The share of padding in the collated rows (packing efficiency) is above the threshold.",
          "Use the padding-free layout, a smaller batch, or bfd (fills sequences tighter than wrapped's last row)."),
    Check("packing-attention", "info", "Attention and packed boundaries",
          "Which attention implementations keep the samples of a packed row apart with the inputs this layout "
          "gives the model, as read in transformers' source.",
          "Train with an implementation listed as keeping samples apart."),
]
_CHECK_LIST += _PACKING_CHECKS
PACKING_CODES = frozenset(c.code for c in _PACKING_CHECKS)
CHECKS: "OrderedDict[str, Check]" = OrderedDict((c.code, c) for c in _CHECK_LIST)


@dataclass
class Finding:
    """One problem found in one sample (or record). ``positions`` are token indices into the sample's
    ``input_ids`` (after truncation); ``message_index`` / ``turn_index`` point into the conversation."""

    code: str
    severity: str
    message: str
    positions: list[int] = field(default_factory=list)
    hint: str = ""
    sample_id: str | None = None
    conversation_id: str | None = None
    message_index: int | None = None
    turn_index: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {"code": self.code, "severity": self.severity, "message": self.message,
               "positions": list(self.positions), "hint": self.hint, "sample_id": self.sample_id,
               "conversation_id": self.conversation_id}
        if self.message_index is not None:
            out["message_index"] = self.message_index
        if self.turn_index is not None:
            out["turn_index"] = self.turn_index
        if self.details:
            out["details"] = self.details
        return out


def finding(code: str, message: str, **kw: Any) -> Finding:
    """A Finding with the registered severity and default hint of ``code``."""
    check = CHECKS[code]
    kw.setdefault("hint", check.hint)
    return Finding(code, check.severity, message, **kw)


def at_least(severity: str, threshold: str) -> bool:
    """True when ``severity`` is as bad as ``threshold`` or worse. Example: at_least("error", "warning") -> True."""
    return SEVERITY_RANK[severity] <= SEVERITY_RANK[threshold]


@dataclass(frozen=True)
class Thresholds:
    """Tunable limits. ``min_trainable_share``: below it (and above 0) ``low-trainable-share`` fires;
    ``max_positions``: positions kept per finding (the message still says how many there were)."""

    min_trainable_share: float = 0.05
    max_positions: int = 64
