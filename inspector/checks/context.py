"""What every check needs, computed once per tokenizer + template + options (``CheckContext``), and the helpers
over a sample's token arrays that several check families share.

``CheckContext(setup, opts)`` reads the tokenizer's facts (vocabulary size, BOS / EOS / pad ids, whether
``tokenizer(text)`` adds BOS, the special-token ids) and probes the template once; a check reads them as
``ctx.eos_id``, ``ctx.show(id)``, ``ctx.enabled(code)``.

The helpers work on numpy arrays over the sample's tokens. Example: offsets [[0, 2], [2, 5], [5, 6]] (character
spans of 3 tokens), a turn at chars [1, 5) -> ``overlapping(offsets, 1, 5)`` = [True, True, False];
``first_positions(np.array([False, True, True]), 1)`` = [1] (positions kept per finding); ``plural(2, "token")`` =
"2 tokens".
"""

from __future__ import annotations

import threading
from typing import Any, Iterable, Sequence

import numpy as np

from inspector.checks.catalog import CHECKS, Thresholds
from inspector.constants import IGNORE_INDEX, SEGMENTS
from inspector.conversations import Conversation
from inspector.labels.engine import SEG_CODE, STRATEGIES, LabelEngine, LabelOptions, Sample, _stored
from inspector.labels.verify import VERIFY_MODES
from inspector.template.tokenizer import ChatSetup, is_tokenizer_failure


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


def labeled_mask(sample: Sample) -> np.ndarray:
    return sample.labels_array() != IGNORE_INDEX


PROMPT_SEGMENT = np.asarray([name in ("user", "system", "tool") for name in SEGMENTS])  # by segment code


def segment_codes(sample: Sample) -> np.ndarray:
    """The per-token segments as codes into ``SEGMENTS`` (what the engine stores), without making the name list."""
    stored = _stored(sample, "segments")
    if isinstance(stored, np.ndarray):
        return stored
    return np.asarray([SEG_CODE[x] for x in stored], dtype=np.int8)


def overlapping(offsets: np.ndarray, a: int, b: int) -> np.ndarray:
    """Tokens whose [start, end) overlaps chars [a, b). Example: offsets [[0,2],[2,5]], (1, 3) -> [True, True]."""
    if len(offsets) == 0:
        return np.zeros(0, dtype=bool)
    return (offsets[:, 0] < b) & (offsets[:, 1] > a)


def first_positions(mask: np.ndarray | Sequence[int], limit: int) -> list[int]:
    idx = np.nonzero(np.asarray(mask))[0] if not isinstance(mask, list) else np.asarray(mask)
    return [int(i) for i in idx[:limit]]


_LAST = threading.local()  # the last (sample, labeled, turns) of trained_turns in this thread


def trained_turns(sample: Sample, labeled: np.ndarray) -> list[Any]:
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
        if bool((labeled & overlapping(offs, t.start, end)).any()):
            out.append(t)
    return out


def kept_chars(sample: Sample) -> tuple[int, int]:
    """Char range of the text the (possibly truncated) sample still holds."""
    offs = np.asarray(sample.offsets)
    if len(offs) == 0:
        return 0, 0
    return int(offs[:, 0].min()), int(offs[:, 1].max())


def sample_messages(sample: Sample, conv: Conversation, ctx: CheckContext) -> list[dict[str, Any]]:
    """The messages the engine rendered for this sample (split-turns: up to its own answer)."""
    if sample.messages is not None:
        return sample.messages
    msgs = conv.template_messages(tool_calls_as_text=ctx.tool_calls_as_text)
    if sample.strategy == "split-turns" and sample.turn_index is not None:
        answers = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
        if sample.turn_index < len(answers):
            return msgs[: answers[sample.turn_index] + 1]
    return msgs


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
