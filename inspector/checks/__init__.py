"""Pre-flight checks: named problems found in training samples, as data (``Finding``), never as exceptions.

Each check has a stable code, a severity (error / warning / info), a one-line message, the token positions it
concerns and a fix hint. The CLI (``check --json``), the export and the app's checks page all show the same
findings. What the checks cover (numbers are the issue's):

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
    low-trainable-share         warning  (12) 0 < trained tokens / tokens < ``Thresholds.min_trainable_share``
    label-out-of-vocab          error    (12) a label outside [0, len(tokenizer))
    special-token-in-text       warning  a special token's text written inside a message becomes that token
    record-rejected             error    the loader could not read the record (reasons from ``Rejected``)
    check-failed                error    a check could not run on the record (the tokenizer failed on its text)
    no-records                  error    the input holds no record at all (a report-level finding)
    (packing, run by ``packing.check_packing`` / ``pack``: ``PACKING_CODES``)
    cross-sample-prediction     error    a labeled token right after another sample's token in a packed row
    cross-sample-attention      warning  the layout lets a sample's tokens attend to another sample
    packing-truncates           warning  bfd cut a sample longer than max_length (tokens lost) or dropped it
    packing-splits-sample       warning  bfd_split / wrapped cut a sample across packed sequences
    packing-label-masked        info     the padding-free collator set labels to IGNORE_INDEX at position id 0
    packing-padding             info     the collated rows are more than ``max_padding_share`` padding
    packing-attention           info     which attention implementations keep packed samples apart here

Example: a conversation whose only assistant turn has ``loss_weight: 0`` ->
``Finding("no-trainable-tokens", "error", "0 of 23 tokens are trained ...", sample_id="demo-4", ...)``.

Entry points: ``run_checks(conversations, setup, options)`` builds and checks in one call; ``evaluate(items, ctx)``
turns one chunk of loaded records (``Conversation`` or ``Rejected``) into ``Outcome``s (accepted or not, findings,
optional trainer rows); ``iter_outcomes`` streams chunks; ``Report`` aggregates outcomes into per-check counts.
Left out: the running of chunks over processes (``cli``) and the writing of files (``export``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from inspector.constants import IGNORE_INDEX, ROLES, SEGMENTS
from inspector.conversations import Conversation, Rejected
from inspector.errors import ChatTemplateError, RenderError
from inspector.labels.engine import STRATEGIES, LabelEngine, LabelOptions, Sample, SampleError, tokenize_batch  # noqa: F401
from inspector.labels.engine import SEG_CODE, _stored
from inspector.template.tokenizer import ChatSetup, is_tokenizer_failure
from inspector.labels.verify import VERIFY_MODES, should_verify, verify_sample

SEVERITIES = ("error", "warning", "info")
SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}
DEFAULT_CHUNK_SIZE = 256  # conversations per engine.build call when streaming
DEFAULT_CHUNK_TEXT = 4_000_000  # UTF-8 bytes of text per chunk (two records at the 2,000,000 limit): see chunks()
# train-inference-mismatch renders the prompt of each trained turn (the conversation so far): a record with
# thousands of turns would cost a quadratic number of rendered messages, so at most this many turns are checked,
# evenly spaced, the first and the last included
MAX_PROMPT_CHECKS = 32
PROMPT_RENDER_BUDGET = 40_000  # messages: fewer turns are checked in very long conversations (never fewer than 4)


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


# --- context: what every check needs, computed once per tokenizer + template + options ---------------------------

class CheckContext:
    """The tokenizer facts and template probe the checks use, computed once. ``skip``: codes not to run."""

    def __init__(self, setup: ChatSetup, opts: LabelOptions = LabelOptions(), thresholds: Thresholds = Thresholds(),
                 skip: Iterable[str] = (), engine: LabelEngine | None = None, verify: str = "sample"):
        if verify not in VERIFY_MODES:
            raise ValueError(f"Unknown verify mode {verify!r}; choose one of: {', '.join(VERIFY_MODES)}")
        self.verify = verify
        unknown = [c for c in skip if c not in CHECKS]
        if unknown:
            raise ValueError(f"Unknown check code(s): {', '.join(unknown)}; see `python -m inspector checks`")
        if opts.strategy not in STRATEGIES:
            raise ValueError(f"Unknown strategy {opts.strategy!r}; choose one of: {', '.join(STRATEGIES)}")
        self.setup = setup
        self.opts = opts
        self.thresholds = thresholds
        self.skip = frozenset(skip)
        self.engine = engine or LabelEngine(setup)
        self.tokenizer = setup.tokenizer
        self.info = self.engine.info(opts)
        tok = self.tokenizer
        self.vocab_size = len(tok)
        self.eos_id = getattr(tok, "eos_token_id", None)
        self.pad_id = getattr(tok, "pad_token_id", None)
        self.bos_id = getattr(tok, "bos_token_id", None)
        self.tokenizer_adds_bos = tokenizer_adds_bos(tok)
        self.tool_calls_as_text = "tool_calls" not in setup.template
        self.special_ids = special_token_ids(tok)

    def enabled(self, code: str) -> bool:
        return code not in self.skip

    def show(self, token_id: int) -> str:
        """A token for messages: its text and id. Example: 369 -> "' quick' (id 369)". Kept per id (messages name
        the same EOS / BOS in every sample)."""
        token_id = int(token_id)
        shown = self.__dict__.setdefault("_shown", {})
        if token_id not in shown:
            try:
                text = self.tokenizer.decode([token_id])
            except BaseException as exc:  # an id outside the vocabulary (or a panic in the Rust decoder)
                if not is_tokenizer_failure(exc):
                    raise
                text = "?"
            if len(shown) > 4096:
                shown.clear()
            shown[token_id] = f"{text!r} (id {token_id})"
        return shown[token_id]


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """True when ``tokenizer(text)`` (add_special_tokens=True) puts BOS in front. Example: Llama 2 -> True."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    try:
        with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
        without = tokenizer("a", add_special_tokens=False)["input_ids"]
    except BaseException as exc:  # a Rust panic derives from BaseException
        if not is_tokenizer_failure(exc):
            raise
        return False
    return len(with_special) > len(without) and with_special[0] == bos and (not without or without[0] != bos)


def special_token_ids(tokenizer: Any) -> frozenset[int]:
    """Ids of the tokenizer's special tokens: the named ones (BOS, EOS, pad, ...) and every added token marked
    special. Example (ChatML tiny tokenizer): {id of <|im_start|>, id of <|im_end|>, id of <s>, ...}."""
    ids = set(getattr(tokenizer, "all_special_ids", None) or [])
    for token_id, token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(token, "special", False):
            ids.add(int(token_id))
    return frozenset(ids)


# --- helpers over token arrays -----------------------------------------------------------------------------------

def _labeled(sample: Sample) -> np.ndarray:
    return sample.labels_array() != IGNORE_INDEX


_PROMPT_SEGMENT = np.asarray([name in ("user", "system", "tool") for name in SEGMENTS])  # by segment code


def _segment_codes(sample: Sample) -> np.ndarray:
    """The per-token segments as codes into ``SEGMENTS`` (what the engine stores), without making the name list."""
    stored = _stored(sample, "segments")
    if isinstance(stored, np.ndarray):
        return stored
    return np.asarray([SEG_CODE[x] for x in stored], dtype=np.int8)


def _overlapping(offsets: np.ndarray, a: int, b: int) -> np.ndarray:
    """Tokens whose [start, end) overlaps chars [a, b). Example: offsets [[0,2],[2,5]], (1, 3) -> [True, True]."""
    if len(offsets) == 0:
        return np.zeros(0, dtype=bool)
    return (offsets[:, 0] < b) & (offsets[:, 1] > a)


def _positions(mask: np.ndarray | Sequence[int], limit: int) -> list[int]:
    idx = np.nonzero(np.asarray(mask))[0] if not isinstance(mask, list) else np.asarray(mask)
    return [int(i) for i in idx[:limit]]


_LAST = threading.local()  # the last (sample, labeled, turns) of _trained_turns in this thread


def _trained_turns(sample: Sample, labeled: np.ndarray) -> list[Any]:
    """Assistant turns of the sample that have at least one labeled token in their body or end marker. Three checks
    ask for them with the same ``labeled`` array: the answer is kept for the next call (per thread)."""
    last = getattr(_LAST, "value", None)
    if last is not None and last[0] is sample and last[1] is labeled:
        return last[2]
    out = _find_trained_turns(sample, labeled)
    _LAST.value = (sample, labeled, out)
    return out


def _find_trained_turns(sample: Sample, labeled: np.ndarray) -> list[Any]:
    offs = np.asarray(sample.offsets)
    out = []
    for t in sample.turns:
        end = max(t.body_end, t.eot_end)
        if end <= t.start:
            continue
        if bool((labeled & _overlapping(offs, t.start, end)).any()):
            out.append(t)
    return out


def _kept_chars(sample: Sample) -> tuple[int, int]:
    """Char range of the text the (possibly truncated) sample still holds."""
    offs = np.asarray(sample.offsets)
    if len(offs) == 0:
        return 0, 0
    return int(offs[:, 0].min()), int(offs[:, 1].max())


def _sample_messages(sample: Sample, conv: Conversation, ctx: CheckContext) -> list[dict[str, Any]]:
    """The messages the engine rendered for this sample (split-turns: up to its own answer)."""
    if sample.messages is not None:
        return sample.messages
    msgs = conv.template_messages(tool_calls_as_text=ctx.tool_calls_as_text)
    if sample.strategy == "split-turns" and sample.turn_index is not None:
        answers = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
        if sample.turn_index < len(answers):
            return msgs[: answers[sample.turn_index] + 1]
    return msgs


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# --- conversation-level checks (11) ------------------------------------------------------------------------------

def check_conversation(conv: Conversation, ctx: CheckContext | None = None) -> list[Finding]:
    """Role order, unknown roles and empty messages: what the conversation *says*, before any rendering.

    Example: [user "Hi", user "Hello?", assistant "Yo"] -> one ``role-order`` finding on message 1.
    """
    out: list[Finding] = []
    cid = conv.id
    msgs = conv.messages
    enabled = ctx.enabled if ctx is not None else (lambda code: True)
    if enabled("unsupported-role"):
        for i, m in enumerate(msgs):
            if m.role not in ROLES:
                out.append(finding("unsupported-role", f"message {i} has role {m.role!r}, which is not one of "
                                   f"{', '.join(ROLES)}", conversation_id=cid, message_index=i))
    if enabled("empty-message"):
        for i, m in enumerate(msgs):
            if not (m.content or "").strip() and not m.tool_calls and not (m.reasoning or "").strip():
                out.append(finding("empty-message", f"message {i} ({m.role}) is empty", conversation_id=cid,
                                   message_index=i))
    if enabled("role-order") and msgs:
        out.extend(_role_order(conv))
    return out


def _role_order(conv: Conversation) -> list[Finding]:
    out: list[Finding] = []
    msgs = conv.messages

    def add(i: int, text: str) -> None:
        out.append(finding("role-order", text, conversation_id=conv.id, message_index=i))

    first_dialog = True
    prev: str | None = None
    for i, m in enumerate(msgs):
        role = m.role
        if role == "system":
            if i > 0:
                add(i, f"system message at position {i}: most templates only read a leading system message")
            continue
        if first_dialog:
            first_dialog = False
            if role != "user":
                add(i, f"the dialogue starts with {role!r}, not 'user' (message {i})")
        elif role == "tool":
            if prev not in ("assistant", "tool"):
                add(i, f"tool message {i} does not follow an assistant tool call (it follows {prev!r})")
        elif role == prev and role in ("user", "assistant"):
            add(i, f"messages {i - 1} and {i} are both {role!r}: roles do not alternate")
        prev = role
    last = msgs[-1].role
    if last != "assistant":
        add(len(msgs) - 1, f"the conversation ends with {last!r}: nothing after the last answer is trained")
    return out


# --- sample-level checks -----------------------------------------------------------------------------------------

def check_sample(sample: Sample, conv: Conversation | None, ctx: CheckContext) -> list[Finding]:
    """Every sample-level check on one built sample. ``conv`` (the conversation it was built from) is needed by
    the train/inference, leak and dropped-message checks; without it they are skipped."""
    out: list[Finding] = []
    labeled = _labeled(sample)
    for fn in _SAMPLE_CHECKS:
        out.extend(fn(sample, conv, ctx, labeled))
    for f in out:
        f.sample_id = sample.id
        f.conversation_id = sample.conversation_id
        if f.turn_index is None and sample.turn_index is not None:
            f.turn_index = sample.turn_index
    return out


def _check_no_trainable(sample, conv, ctx, labeled):
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


def _check_truncation(sample, conv, ctx, labeled):
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


def _check_eot(sample, conv, ctx, labeled):
    """(3) A trained turn must label its end-of-turn marker, or the EOS right after it when the template writes
    none. Example (ChatML, label_eot=False): "Hello!" labeled, "<|im_end|>" -100 -> fires at the marker."""
    if not ctx.enabled("eot-not-labeled"):
        return []
    offs = np.asarray(sample.offsets)
    ids = sample.ids_array()
    kept_start, kept_end = _kept_chars(sample)
    out = []
    for t in _trained_turns(sample, labeled):
        if sample.truncation is not None and (max(t.eot_end, t.body_end) > kept_end or t.start < kept_start):
            continue  # the cut is reported by the truncation checks
        if t.has_eot:
            marker = _overlapping(offs, t.eot_start, t.eot_end)
            missing = marker & ~labeled
            if missing.any():
                pos = _positions(missing, ctx.thresholds.max_positions)
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
        body = np.nonzero(_overlapping(offs, t.start, t.body_end))[0]
        pos = [int(body[-1])] if len(body) else []
        out.append(finding(
            "eot-not-labeled",
            f"assistant message {t.message_index}: the template writes no end-of-turn marker after it and no "
            f"labeled EOS follows; the model never learns to stop",
            positions=pos, message_index=t.message_index,
            hint="Use a template that closes each answer with an end-of-turn token, or the session strategy "
                 "(which appends a labeled EOS after every answer)."))
    return out


def _check_pad_eos(sample, conv, ctx, labeled):
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
        f"erases the {_count(len(hits), 'labeled EOS token')} at position(s) "
        f"{', '.join(map(str, hits[:8].tolist()))}{' ...' if len(hits) > 8 else ''}",
        positions=_positions(hits.tolist(), ctx.thresholds.max_positions),
        details={"eos_token_id": int(ctx.eos_id), "pad_token_id": int(ctx.pad_id)})]


def _check_double_bos(sample, conv, ctx, labeled):
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


def _check_leak(sample, conv, ctx, labeled):
    """(6) Labeled user/system/tool content under a masking strategy (every strategy but all-tokens). Tokens that
    straddle a boundary and messages explicitly marked trainable are left out.
    Example (completion-only collator, two turns): the second user question is labeled -> fires on that message."""
    if not ctx.enabled("label-leak") or sample.strategy == "all-tokens" or not labeled.any():
        return []
    codes = _segment_codes(sample)
    prompt = _PROMPT_SEGMENT[codes]
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
        pos = _positions(where, ctx.thresholds.max_positions)
        out.append(finding("label-leak", f"{role} message {mi} is trained under {sample.strategy}: "
                                         f"{_count(n, 'labeled token')}, first at token {pos[0]} "
                                         f"{ctx.show(sample.input_ids[pos[0]])}",
                           positions=pos, message_index=mi))
    return out


def _check_straddle(sample, conv, ctx, labeled):
    """(7) A token that covers chars on both sides of a trained turn's start or end.
    Example: header "assistant: " + answer "quick" tokenized as ' quick' -> that token straddles the start."""
    if not ctx.enabled("boundary-straddle"):
        return []
    offs = np.asarray(sample.offsets)
    if not len(offs):
        return []
    out = []
    for t in _trained_turns(sample, labeled):
        marker = _overlapping(offs, t.eot_start, t.eot_end) if t.has_eot else np.zeros(len(offs), dtype=bool)
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


def _check_train_inference(sample, conv, ctx, labeled):
    """(8) For each trained assistant turn at message i: tokens of the render of messages[:i] with
    add_generation_prompt=True must be a prefix of the sample's input_ids. Reports the first diverging token.
    Example (Qwen3-style template that drops earlier reasoning): the prompt for turn 2 shows turn 1's <think>
    block, the training text does not -> diverges where the reasoning starts."""
    if not ctx.enabled("train-inference-mismatch") or conv is None:
        return []
    if sample.strategy == "session" and ctx.opts.turn_format is not None:
        return []  # laid out by a TurnFormat, not by the chat template
    tr = sample.truncation
    if tr is not None and tr.side == "left":
        return []  # the ids no longer start at the start of the render
    msgs = _sample_messages(sample, conv, ctx)
    turns = _trained_turns(sample, labeled)
    if sample.strategy == "split-turns":
        answers = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
        turns = [t for t in turns if answers and t.message_index == answers[-1]]
    budget = max(4, min(MAX_PROMPT_CHECKS, PROMPT_RENDER_BUDGET // max(len(msgs), 1)))
    if len(turns) > budget:  # each prompt is a render of the conversation so far: bound the work
        keep = np.unique(np.linspace(0, len(turns) - 1, budget).round().astype(int))
        turns = [turns[k] for k in keep.tolist()]
    out = []
    prompts, which = [], []
    for t in turns:
        try:
            rendered = ctx.engine.render(msgs[: t.message_index], conv.tools, ctx.opts, add_generation_prompt=True)
        except RenderError as exc:
            out.append(finding("train-inference-mismatch",
                               f"assistant message {t.message_index}: the inference prompt (messages[:"
                               f"{t.message_index}] + generation prompt) does not render: {_one_line(str(exc))}",
                               message_index=t.message_index))
            continue
        prompts.append(rendered.text)
        which.append(t)
    if not prompts:
        return out
    ids = sample.ids_array()
    tails = _TailStarts(sample, ctx)
    starts = [tails.start(prompt) for prompt in prompts]
    encoded = _tokenize_tails(ctx, [prompt[sample.offsets[k, 0]:] if k else prompt
                                    for prompt, k in zip(prompts, starts)], starts)
    for t, k, (p_ids, _offs) in zip(which, starts, encoded):
        p = np.asarray(p_ids, dtype=np.int64)
        if k:  # the first k tokens are the sample's own: put them back in front of the tail
            p = np.concatenate([ids[:k], p])
        m = min(len(p), len(ids))
        diff = np.nonzero(p[:m] != ids[:m])[0]
        if len(diff):
            j = int(diff[0])
            got_inf, got_train = int(p[j]), int(ids[j])
            text = (f"assistant message {t.message_index}: the inference prompt diverges from the training tokens at "
                    f"token {j}: inference {ctx.show(got_inf)}, training {ctx.show(got_train)}")
            details = {"position": j, "inference_token": got_inf, "training_token": got_train}
        elif len(p) > len(ids) and tr is None:
            j = len(ids)
            text = (f"assistant message {t.message_index}: the inference prompt ({len(p)} tokens) is longer than the "
                    f"training sequence ({len(ids)} tokens)")
            details = {"position": j, "inference_token": int(p[j]), "training_token": None}
        else:
            continue
        out.append(finding("train-inference-mismatch", text, positions=[j], message_index=t.message_index,
                           details=details))
    return out


class _TailStarts:
    """``start(prompt)``: token index k such that tokenize(prompt) == input_ids[:k] + tokenize(prompt[offsets[k][0]:]),
    or 0 (no shortcut: tokenize the whole prompt). k is the last added (special) token of the sample that lies inside
    the prompt, when the prompt is a text prefix of the sample: added tokens are split off before the rest of the
    tokenizer runs, so what precedes them is tokenized the same with or without the text that follows. The per-token
    facts are found once per sample, for all of its prompts.
    Example (ChatML): prompt "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n" inside the sample ->
    k = the index of the second <|im_start|>; only "<|im_start|>assistant\n" is tokenized again."""

    def __init__(self, sample: Sample, ctx: CheckContext):
        added = ctx.__dict__.get("_added_ids")
        if added is None:
            decoder = getattr(ctx.tokenizer, "added_tokens_decoder", None) or {}
            safe = getattr(ctx.tokenizer, "_tokenizer", None) is not None and not any(
                getattr(t, "single_word", False) for t in decoder.values())
            added = ctx._added_ids = frozenset(decoder) if safe else frozenset()
        self.sample = sample
        self.usable = bool(added) and sample.strategy != "session"  # session samples may carry EOS ids not in text
        if not self.usable:
            return
        is_added = ctx.__dict__.get("_is_added")  # a lookup table over token ids: True for an added token
        if is_added is None:
            top = max(max(added), ctx.vocab_size) + 1
            is_added = ctx._is_added = np.zeros(top, dtype=bool)
            is_added[np.fromiter(added, dtype=np.int64, count=len(added))] = True
        offs = np.asarray(sample.offsets)
        self.n = sample.num_tokens
        self.offs = offs
        nonempty = offs[:self.n, 0] < offs[:self.n, 1]
        ids = sample.ids_array()[:self.n]
        inside = (ids >= 0) & (ids < len(is_added))
        # candidates: added tokens with a non-empty span
        self.candidate = np.where(inside, is_added[np.where(inside, ids, 0)], False) & nonempty
        empty = np.flatnonzero(offs[:self.n, 1] <= offs[:self.n, 0])
        self.first_empty = int(empty[0]) if len(empty) else self.n  # tokens before it all come from the text

    def start(self, prompt: str) -> int:
        if not self.usable or not self.sample.text.startswith(prompt):
            return 0
        c, n, offs = len(prompt), self.n, self.offs
        hi = min(int(np.searchsorted(offs[:n, 1], c, side="right")), n)  # tokens ending at or before c
        if hi <= 1:
            return 0
        inside = np.flatnonzero(self.candidate[1:hi] & (offs[1:hi, 1] <= c))
        if not len(inside):
            return 0
        k = int(inside[-1]) + 1  # the last added token inside the prompt (never token 0)
        return k if self.first_empty >= k else 0  # every token before k must come from the text


def _tokenize_tails(ctx: CheckContext, texts: list[str], starts: list[int]) -> list[tuple[list[int], Any]]:
    """tokenize_batch with a small cache for tails (they repeat: "<|im_start|>assistant\n" in every sample)."""
    cache = ctx.__dict__.setdefault("_tail_cache", {})
    todo = [t for t, k in zip(texts, starts) if not (k and t in cache)]
    fresh = dict(zip(todo, tokenize_batch(ctx.tokenizer, todo))) if todo else {}
    out = []
    for t, k in zip(texts, starts):
        if k:
            if t not in cache:
                if len(cache) > 4096:
                    cache.clear()
                cache[t] = fresh[t]
            out.append(cache[t])
        else:
            out.append(fresh[t])
    return out


def _check_generation_mask(sample, conv, ctx, labeled):
    """(9) ``Sample.generation_mismatch`` (set for templates with {% generation %} tags) is non-empty.
    Example: generation block around the content only, our labels include <|im_end|> -> fires at that token."""
    mism = sample.generation_mismatch
    if not ctx.enabled("generation-mask-mismatch") or not mism:
        return []
    k = int(mism[0])
    ours = "labels it" if labeled[k] else "does not label it"
    return [finding("generation-mask-mismatch",
                    f"the template's {{% generation %}} mask and the span-based labels disagree on "
                    f"{_count(len(mism), 'token')} (first: token {k} {ctx.show(sample.input_ids[k])}; the span-based "
                    f"mask {ours})", positions=[int(x) for x in mism[: ctx.thresholds.max_positions]])]


def _check_marker(sample, conv, ctx, labeled):
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
    cover = np.nonzero(_overlapping(offs, at, at + len(marker)))[0]
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


def _check_dropped(sample, conv, ctx, labeled):
    """(11) Message content that the rendered text does not contain at all (the template drops the role)."""
    if not ctx.enabled("unsupported-role") or conv is None or not sample.text:
        return []
    if sample.strategy == "session" and ctx.opts.turn_format is not None:
        return []
    msgs = _sample_messages(sample, conv, ctx)
    have = {s.message_index for s in sample.spans if s.kind == "content"}
    out = []
    for i, m in enumerate(msgs):
        content = m.get("content")
        if isinstance(content, str) and content.strip() and i not in have:
            out.append(finding("unsupported-role",
                               f"message {i} ({m['role']}) is not in the rendered text: the template drops or "
                               f"rewrites it", message_index=i))
    for i in sorted({i for i, kind in sample.dropped if kind == "tool_call"}):
        out.append(finding("unsupported-role",
                           f"the tool calls of message {i} are not in the rendered text: the template does not write "
                           f"them for this message (the training text has an answer without its call)",
                           message_index=i))
    return out


def _check_share(sample, conv, ctx, labeled):
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


def _check_vocab(sample, conv, ctx, labeled):
    """(12) Labels outside [0, len(tokenizer)) other than IGNORE_INDEX. Example: vocab 400, label 999 -> fires."""
    if not ctx.enabled("label-out-of-vocab"):
        return []
    labels = sample.labels_array()
    bad = labeled & ((labels < 0) | (labels >= ctx.vocab_size))
    if not bad.any():
        return []
    pos = _positions(bad, ctx.thresholds.max_positions)
    return [finding("label-out-of-vocab",
                    f"{_count(int(bad.sum()), 'label')} outside the vocabulary of {ctx.vocab_size} (first: "
                    f"{int(labels[pos[0]])} at token {pos[0]})", positions=pos)]


def _check_special_in_text(sample, conv, ctx, labeled):
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
    codes = _segment_codes(sample)
    hits &= codes != SEG_CODE["template"]
    if not hits.any():
        return []
    msg_idx = np.asarray(sample.message_index)
    out = []
    for mi in sorted(set(msg_idx[hits].tolist())):
        where = hits & (msg_idx == mi)
        pos = _positions(where, ctx.thresholds.max_positions)
        names = list(dict.fromkeys(ctx.show(int(ids[k])) for k in pos[:8]))
        them = "it into the control token" if len(names) == 1 else "them into control tokens"
        out.append(finding("special-token-in-text",
                           f"{SEGMENTS[int(codes[pos[0]])]} message {int(mi)} writes {', '.join(names)} as text: the tokenizer turns "
                           f"{them} ({_count(int(where.sum()), 'token')})", positions=pos, message_index=int(mi)))
    return out


def _check_last_match(sample, conv, ctx, labeled):
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
                    f"the last answer is trained and {_count(len(pos) - 1, 'earlier answer')} "
                    f"{'is' if len(pos) == 2 else 'are'} silently dropped",
                    positions=pos[:-1][: ctx.thresholds.max_positions],
                    details={"matches": len(pos), "kept": pos[-1]})]


def _check_eot_appended(sample, conv, ctx, labeled):
    """An open final answer closed with the template's closing (see ``LabelEngine._close_open_last_turn``)."""
    app = (sample.extra or {}).get("appended_closing")
    if not ctx.enabled("eot-appended") or not app:
        return []
    why = "the next role token, as GLM's own fine-tuning appends it" if app.get("opens_turn") else \
        "the closing the template writes when a next turn follows"
    return [finding("eot-appended",
                    f"assistant message {app['message_index']} (the final answer) has no closing in the rendered "
                    f"text: appended {app['text']!r} (ids {app['ids']}, {why}) and labeled it",
                    positions=list(app["positions"]), message_index=app["message_index"],
                    details={"text": app["text"], "ids": list(app["ids"])})]


def _check_reasoning_dropped(sample, conv, ctx, labeled):
    """Reasoning the template does not write. Example: Qwen3 drops the reasoning of turns before the last user
    message -> "2 of 3 ... not rendered"."""
    if not ctx.enabled("reasoning-dropped"):
        return []
    dropped = sorted({i for i, kind in sample.dropped if kind == "reasoning"})
    if not dropped:
        return []
    msgs = sample.messages or []
    have = [i for i, m in enumerate(msgs) if isinstance(m.get("reasoning_content"), str)
            and m["reasoning_content"].strip()]
    total = max(len(have), len(dropped))
    return [finding("reasoning-dropped",
                    f"the template does not render the reasoning of {len(dropped)} of {total} assistant messages "
                    f"(message{'s' if len(dropped) != 1 else ''} {', '.join(map(str, dropped))}): "
                    f"{'it is' if len(dropped) == 1 else 'they are'} not trained",
                    message_index=dropped[0], details={"dropped": len(dropped), "with_reasoning": total,
                                                       "messages": dropped})]


def _check_adapted(sample, conv, ctx, labeled):
    """The messages were adapted to the template (see ``LabelEngine.template_messages``)."""
    if not ctx.enabled("tool-call-adapted") or not sample.adapted:
        return []
    return [finding("tool-call-adapted", "; ".join(sample.adapted), details={"changes": list(sample.adapted)})]


_SAMPLE_CHECKS = (_check_no_trainable, _check_truncation, _check_eot, _check_pad_eos, _check_double_bos,
                  _check_leak, _check_straddle, _check_train_inference, _check_generation_mask, _check_marker,
                  _check_dropped, _check_share, _check_vocab, _check_last_match, _check_eot_appended,
                  _check_reasoning_dropped, _check_adapted, _check_special_in_text)


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


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def error_finding(err: SampleError) -> Finding:
    """A ``SampleError`` (the template raised) as a ``template-error`` finding."""
    return finding("template-error", _one_line(err.reason), conversation_id=err.conversation_id)


def rejected_finding(rej: Rejected) -> Finding:
    """A loader rejection as a ``record-rejected`` finding (reasons joined)."""
    return finding("record-rejected", _one_line("; ".join(rej.reasons)), conversation_id=rej.id,
                   details={"source": str(rej.source) if rej.source else None})


# --- running checks ----------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What became of one input record: a loader rejection, or a conversation with its samples and findings.

    The accept rule (export): a record is accepted when it became a conversation, produced at least one sample,
    and none of its findings is an error. For ``split-turns`` a record is accepted or rejected as a whole: one
    answer's error rejects every sample of the record, so each record lands in exactly one output file. (Samples of
    answers the record marks not to train are dropped first, see ``_drop_masked_turns``.)
    """

    record_id: str
    source: str | None
    findings: list[Finding]
    conversation: Conversation | None = None
    rejected: Rejected | None = None
    samples: list[Sample] | None = None  # kept when evaluate(keep_samples=True)
    rows: list[dict[str, Any]] | None = None  # Sample.to_record() of each sample, when evaluate(keep_rows=True)
    num_samples: int = 0
    num_tokens: int = 0
    num_trainable: int = 0

    @property
    def accepted(self) -> bool:
        return (self.conversation is not None and self.num_samples > 0
                and not any(f.severity == "error" for f in self.findings))

    def reasons(self) -> list[str]:
        """Why the record is rejected: the loader's reasons, or its error findings as "code: message"."""
        if self.rejected is not None:
            return list(self.rejected.reasons)
        out = [f"{f.code}: {f.message}" + (f" [{f.sample_id}]" if f.sample_id and f.sample_id != self.record_id
                                           else "")
               for f in self.findings if f.severity == "error"]
        if not out and self.num_samples == 0:
            out.append("no sample was built")
        return out


def _dedupe(findings: list[Finding]) -> list[Finding]:
    """Split-turns samples repeat the history: drop a message-level finding already reported for the record."""
    seen: set[tuple] = set()
    out = []
    for f in findings:
        key = (f.code, f.message_index, f.message) if f.code in ("unsupported-role", "special-token-in-text") \
            else None
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        out.append(f)
    return out


def _build(convs: list[Conversation], ctx: CheckContext, built: tuple[list[Sample], list[SampleError]] | None = None
           ) -> tuple[dict[int, list[Sample]], dict[int, SampleError]]:
    """Samples and errors per position in ``convs``. One batched build when ids are unique in the chunk (or
    ``built``, that build made ahead by ``LabelEngine.iter_build``), one build per conversation otherwise (so samples
    are never paired with the wrong conversation), and also when the batched build fails: one record the engine
    cannot build (a tokenizer panic, an internal error) must not sink the others, so each is built alone and the one
    that fails gets a ``SampleError`` with the reason."""
    by_pos: dict[int, list[Sample]] = {i: [] for i in range(len(convs))}
    errs: dict[int, SampleError] = {}
    ids = [c.id for c in convs]
    if len(set(ids)) == len(ids):
        try:
            samples, errors = built if built is not None else ctx.engine.build(convs, ctx.opts)
        except BaseException as exc:
            if not is_tokenizer_failure(exc) or isinstance(exc, ChatTemplateError):
                raise
        else:
            pos = {cid: i for i, cid in enumerate(ids)}
            for s in samples:
                by_pos[pos[s.conversation_id]].append(s)
            for e in errors:
                errs[pos[e.conversation_id]] = e
            return by_pos, errs
    for i, c in enumerate(convs):
        try:
            samples, errors = ctx.engine.build([c], ctx.opts)
        except BaseException as exc:
            if not is_tokenizer_failure(exc) or isinstance(exc, ChatTemplateError):
                raise
            samples, errors = [], [SampleError(c.id, ctx.opts.strategy, f"building the sample failed: "
                                               f"{type(exc).__name__}: {exc}", str(c.source) if c.source else None)]
        by_pos[i] = samples
        if errors:
            errs[i] = errors[0]
    return by_pos, errs


def _drop_masked_turns(samples: list[Sample], conv: Conversation, opts: LabelOptions) -> list[Sample]:
    """Split-turns: a sample whose own answer is marked not to train (``loss_weight: 0``) trains nothing by the
    record's choice; drop it when the record has other samples. When none is left, keep them all, so the record
    is still reported (``no-trainable-tokens``).

    Example: answers [loss_weight 0, loss_weight 1] -> samples [#turn0 (0 labels), #turn1] -> [#turn1].
    """
    if opts.strategy != "split-turns" or not opts.respect_trainable or len(samples) < 2:
        return samples
    answers = [m for m in conv.messages if m.role == "assistant"]

    def masked(s: Sample) -> bool:
        k = s.turn_index
        return (k is not None and k < len(answers) and answers[k].trainable is False and s.num_trainable == 0)

    kept = [s for s in samples if not masked(s)]
    return kept or samples


def evaluate(items: Sequence[Conversation | Rejected], ctx: CheckContext, *, keep_rows: bool = False,
             keep_samples: bool = False, start: int = 0) -> list[Outcome]:
    """One chunk of loaded records -> one ``Outcome`` each, in order: build samples (one batched call), run every
    check. ``keep_rows`` stores the trainer rows (for export), ``keep_samples`` the Sample objects (for the app).
    ``start``: the position of the chunk's first record in the run, which decides the records the verifier checks
    under ``ctx.verify == "sample"``."""
    return _evaluate(items, ctx, keep_rows=keep_rows, keep_samples=keep_samples, start=start)


def _evaluate(items: Sequence[Conversation | Rejected], ctx: CheckContext, *, keep_rows: bool = False,
              keep_samples: bool = False, start: int = 0,
              built: tuple[list[Sample], list[SampleError]] | None = None) -> list[Outcome]:
    convs = [x for x in items if isinstance(x, Conversation)]
    by_pos, errs = _build(convs, ctx, built)
    out: list[Outcome] = []
    k = 0
    for index, item in enumerate(items, start):
        if isinstance(item, Rejected):
            fs = [rejected_finding(item)] if ctx.enabled("record-rejected") else []
            out.append(Outcome(item.id, str(item.source) if item.source else None, fs, rejected=item))
            continue
        conv = item
        samples, err = _drop_masked_turns(by_pos[k], conv, ctx.opts), errs.get(k)
        k += 1
        findings = _check_record(conv, samples, err, ctx, should_verify(ctx.verify, index))
        oc = Outcome(conv.id, str(conv.source) if conv.source else None, findings, conversation=conv,
                     num_samples=len(samples), num_tokens=sum(s.num_tokens for s in samples),
                     num_trainable=sum(s.num_trainable for s in samples))
        if keep_rows:
            oc.rows = [s.to_record() for s in samples]
        if keep_samples:
            oc.samples = list(samples)
        out.append(oc)
    return out


def _check_record(conv: Conversation, samples: list[Sample], err: SampleError | None, ctx: CheckContext,
                  verify: bool = False) -> list[Finding]:
    """Every finding of one record (with the verifier's when ``verify``). A check that fails on it (the tokenizer
    panics on the inference prompt, an internal error) becomes a ``check-failed`` finding, so the record is
    rejected with the reason and the run goes on."""
    findings = check_conversation(conv, ctx)
    if err is not None and ctx.enabled("template-error"):
        findings.append(error_finding(err))
    try:
        for s in samples:
            findings.extend(check_sample(s, conv, ctx))
            if verify:
                findings.extend(verification_findings(s, conv, ctx))
    except BaseException as exc:
        if not is_tokenizer_failure(exc):
            raise
        findings.append(finding("check-failed", _one_line(f"checking the record failed: {type(exc).__name__}: "
                                                          f"{exc}"), conversation_id=conv.id))
    return _dedupe(findings)


def text_size(item: Conversation | Rejected) -> int:
    """About the UTF-8 bytes of a record's text (an upper bound of the tokens it makes): characters of its messages,
    times 4 for text that is not ASCII (``str.isascii`` is one step). A rejected record counts its raw text."""
    if isinstance(item, Rejected):
        return len(item.record) if isinstance(item.record, str) else 0
    n = 0
    for m in item.messages:
        for text in (m.content, m.reasoning):
            if text:
                n += len(text) if text.isascii() else 4 * len(text)
    return n


def chunks(items: Iterable[Conversation | Rejected], size: int = DEFAULT_CHUNK_SIZE,
           max_text: int = DEFAULT_CHUNK_TEXT) -> Iterator[list[Conversation | Rejected]]:
    """Lists of at most ``size`` records whose text (``text_size``) adds up to at most ``max_text``, or one record:
    a chunk is built and tokenized at once, so a run of very long records is taken a few at a time. Ordinary data
    fills chunks by count. Example: sizes [3, 3, 3], size 10, max_text 5 -> [r0], [r1], [r2]."""
    chunk: list[Conversation | Rejected] = []
    total = 0
    for item in items:
        n = text_size(item)
        if chunk and total + n > max_text:
            yield chunk
            chunk, total = [], 0
        chunk.append(item)
        total += n
        if len(chunk) >= size:  # yield at once: a stream is not read further than the chunk
            yield chunk
            chunk, total = [], 0
    if chunk:
        yield chunk


def iter_outcomes(items: Iterable[Conversation | Rejected], ctx: CheckContext, *,
                  chunk_size: int = DEFAULT_CHUNK_SIZE, keep_rows: bool = False, start: int = 0
                  ) -> Iterator[Outcome]:
    """Stream outcomes chunk by chunk (``chunks``): memory holds two chunks, whatever the number of records. The next
    chunk is built (``LabelEngine.iter_build``: its tokenization runs in a worker thread) while this one is checked;
    the outcomes are those of ``evaluate`` on each chunk. When building fails (a tokenizer panic, an internal error),
    the chunks read so far are built again record by record (``_build``), so the record that fails is rejected
    with the reason and the others go on. ``start``: the position of the first item in the run."""
    source = chunks(items, chunk_size)
    pending: list[list[Conversation | Rejected]] = []

    def conversations() -> Iterator[list[Conversation]]:
        for chunk in source:
            pending.append(chunk)
            yield [x for x in chunk if isinstance(x, Conversation)]

    while True:
        builder = ctx.engine.iter_build(conversations(), ctx.opts)
        while True:
            try:
                built = next(builder, None)
            except BaseException as exc:
                if not is_tokenizer_failure(exc) or isinstance(exc, ChatTemplateError) or not pending:
                    raise  # (nothing read yet: the failure is not a record's)
                break
            if built is None:
                return
            chunk = pending.pop(0)
            yield from _evaluate(chunk, ctx, keep_rows=keep_rows, start=start, built=built)
            start += len(chunk)
        while pending:  # the builder failed: what it had read is built again, one record at a time where needed
            chunk = pending.pop(0)
            yield from _evaluate(chunk, ctx, keep_rows=keep_rows, start=start)
            start += len(chunk)


def run_checks(conversations: Iterable[Conversation | Rejected], setup: ChatSetup,
               options: LabelOptions = LabelOptions(), *, thresholds: Thresholds = Thresholds(),
               skip: Iterable[str] = (), engine: LabelEngine | None = None) -> list[Finding]:
    """Build samples for ``conversations`` (loader ``Rejected`` entries are accepted too) and return every finding.

    >>> run_checks(load_data("demo.jsonl").conversations, load_setup())  # doctest: +SKIP
    [Finding(code='pad-equals-eos', severity='warning', ...), ...]
    """
    ctx = CheckContext(setup, options, thresholds, skip, engine)
    return [f for oc in iter_outcomes(conversations, ctx) for f in oc.findings]


# --- the report ----------------------------------------------------------------------------------------------------

@dataclass
class CheckSummary:
    """Per-check totals: ``findings`` (how many), ``records`` (input records with at least one), ``share``
    (records / all records), the first ``examples`` ids and the first findings in full."""

    code: str
    severity: str
    title: str
    findings: int = 0
    records: int = 0
    samples: int = 0
    examples: list[str] = field(default_factory=list)
    first: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Report:
    """Aggregates outcomes without keeping them: memory stays flat over any number of records.

    ``share`` of a check is the fraction of input records with at least one of its findings; for every strategy
    but split-turns a record is one sample, so this is the share of samples.
    """

    settings: dict[str, Any] = field(default_factory=dict)
    records: int = 0
    conversations: int = 0
    rejected_by_loader: int = 0
    samples: int = 0
    tokens: int = 0
    trainable_tokens: int = 0
    accepted_records: int = 0
    checks: dict[str, CheckSummary] = field(default_factory=dict)
    max_examples: int = 5
    skipped: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the export summary, merged into to_dict()

    def __post_init__(self) -> None:
        for c in CHECKS.values():
            self.checks.setdefault(c.code, CheckSummary(c.code, c.severity, c.title))

    def add(self, outcome: Outcome) -> None:
        self.records += 1
        if outcome.rejected is not None:
            self.rejected_by_loader += 1
        else:
            self.conversations += 1
        self.samples += outcome.num_samples
        self.tokens += outcome.num_tokens
        self.trainable_tokens += outcome.num_trainable
        if outcome.accepted:
            self.accepted_records += 1
        seen_codes: set[str] = set()
        seen_samples: set[tuple[str, str | None]] = set()
        for f in outcome.findings:
            s = self.checks[f.code]
            s.findings += 1
            if (f.code, f.sample_id) not in seen_samples:
                seen_samples.add((f.code, f.sample_id))
                s.samples += 1
            if f.code not in seen_codes:
                seen_codes.add(f.code)
                s.records += 1
                if len(s.examples) < self.max_examples:
                    s.examples.append(f.sample_id or f.conversation_id or outcome.record_id)
            if len(s.first) < self.max_examples:
                s.first.append(f.to_dict())

    def add_all(self, outcomes: Iterable[Outcome]) -> "Report":
        for oc in outcomes:
            self.add(oc)
        return self

    def merge(self, other: "Report") -> "Report":
        """Add ``other``, the report of the records that follow this report's in input order: counts add up, and
        examples and first findings are this report's, then ``other``'s, cut to ``max_examples``. Merging the reports
        of consecutive parts in order gives the report of the whole (the Ray engine merges one per shard).

        Example: examples ["a", "b"] merged with ["c", "d", "e", "f"] (max 5) -> ["a", "b", "c", "d", "e"].
        """
        for name in ("records", "conversations", "rejected_by_loader", "samples", "tokens", "trainable_tokens",
                     "accepted_records"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for code, theirs in other.checks.items():
            mine = self.checks[code]
            mine.findings += theirs.findings
            mine.records += theirs.records
            mine.samples += theirs.samples
            mine.examples.extend(theirs.examples[:max(0, self.max_examples - len(mine.examples))])
            mine.first.extend(theirs.first[:max(0, self.max_examples - len(mine.first))])
        return self

    def share(self, code: str) -> float:
        return self.checks[code].records / self.records if self.records else 0.0

    def _sync_no_records(self) -> None:
        """``no-records`` is a finding of the whole input: one when nothing was read, none as soon as a record was."""
        s = self.checks["no-records"]
        if self.records == 0 and "no-records" not in self.skipped:
            if not s.findings:
                s.findings = 1
                s.first = [finding("no-records", "the input holds no record (an empty file, only blank lines, zero "
                                   "rows or an empty list): nothing would be trained").to_dict()]
        else:
            s.findings, s.first = 0, []

    def fired(self) -> list[CheckSummary]:
        """Checks with at least one finding, errors first, then in registry order."""
        self._sync_no_records()
        order = {c: i for i, c in enumerate(CHECKS)}
        out = [s for s in self.checks.values() if s.findings]
        return sorted(out, key=lambda s: (SEVERITY_RANK[s.severity], order[s.code]))

    def count(self, severity: str) -> int:
        """Findings at exactly ``severity``."""
        self._sync_no_records()
        return sum(s.findings for s in self.checks.values() if s.severity == severity)

    def fails(self, fail_on: str | None) -> bool:
        """True when a finding at or above ``fail_on`` ("error" / "warning"; None or "never": never) exists."""
        if fail_on in (None, "never"):
            return False
        self._sync_no_records()
        return any(s.findings and at_least(s.severity, fail_on) for s in self.checks.values())

    @property
    def rejected_records(self) -> int:
        return self.records - self.accepted_records

    def to_dict(self) -> dict[str, Any]:
        self._sync_no_records()
        return {
            "settings": dict(self.settings),
            "totals": {
                "records": self.records, "conversations": self.conversations,
                "rejected_by_loader": self.rejected_by_loader, "samples": self.samples, "tokens": self.tokens,
                "trainable_tokens": self.trainable_tokens,
                "trainable_share": round(self.trainable_tokens / self.tokens, 6) if self.tokens else 0.0,
                "accepted_records": self.accepted_records, "rejected_records": self.rejected_records,
                "findings": {sev: self.count(sev) for sev in SEVERITIES},
            },
            "checks": {code: {"severity": s.severity, "title": s.title, "findings": s.findings,
                              "records": s.records, "samples": s.samples,
                              "share": round(self.share(code), 6), "examples": list(s.examples),
                              "first": list(s.first), "skipped": code in self.skipped}
                       for code, s in self.checks.items()},
            **self.extra,
        }


def report_settings(setup: ChatSetup, options: LabelOptions, thresholds: Thresholds = Thresholds()) -> dict[str, Any]:
    """What a report was made with (shown by the CLI, stored in report.json)."""
    return {"tokenizer": setup.name, "template_source": setup.template_source, "strategy": options.strategy,
            "max_length": options.max_length, "truncation_side": options.truncation_side,
            "label_eot": options.label_eot, "min_trainable_share": thresholds.min_trainable_share,
            # the time strftime_now gave the renders: shown where the template reads it
            "now": options.limits.now if "strftime_now" in setup.template else None}
