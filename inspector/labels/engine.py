"""Build training samples (``input_ids``, ``attention_mask``, ``labels``) the way trainers do, one strategy at a time.

Labels are unshifted, as Hugging Face causal-LM models expect: ``labels[i]`` is ``input_ids[i]`` where the loss
counts the token and ``IGNORE_INDEX`` (-100) where it does not; the model shifts them itself.

Strategies (``STRATEGIES``):
- ``assistant-only`` (default): every assistant turn (content, reasoning, tool-call markup) plus the end-of-turn
  marker that closes it; everything else -100. ``label_eot=False`` leaves the markers out.
- ``all-tokens``: labels copy input_ids, the tutorial default (user text trained too).
- ``last-turn``: only the final assistant turn.
- ``session``: the whole dialogue as one sample with an end token after every answer (ChatGLM2 style); with a
  ``TurnFormat`` the dialogue is laid out by that format instead of the chat template.
- ``split-turns``: one sample per assistant turn k, rendered from messages[:k+1], only turn k labeled
  (``keep_history_labels=True``: earlier answers stay labeled too).
- ``response-template``: the completion-only collator, exactly (TRL's ``DataCollatorForCompletionOnlyLM``): pad
  ids -100, then everything through the LAST match of the response marker's token ids masked (only the final
  answer of a multi-turn conversation is trained); when the marker tokenizes differently in context, nothing is
  found and every label is -100, exactly as the collator does.

Trainer settings (axolotl's): ``roles_to_train`` (default ``("assistant",)``) also labels the located text of
other roles' messages (never their headers); ``train_on_eos`` (None: ``label_eot`` decides) picks the end-of-turn
markers trained: ``turn`` after each trained turn, ``all`` after every turn, ``last`` the last trained turn's only,
``none``. Example (ChatML, user/assistant "A"/user/assistant "B", ``last``): "A", "B<|im_end|>" labeled.

A final answer the template leaves open (no closing after it, though other answers have one: GLM's next-role
``<|user|>``) gets the template's closing appended and labeled (``_close_open_last_turn``).

Example (ChatML, assistant-only): "<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\nHello!<|im_end|>\\n"
-> labeled tokens decode to "Hello!<|im_end|>"; all others are -100.

Texts are tokenized in one batched call with offsets; labels and annotations come from char-level arrays with
numpy, never a per-token Python loop.
"""

from __future__ import annotations

from itertools import chain, islice
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from inspector.constants import IGNORE_INDEX, SEGMENTS
from inspector.conversations import Conversation
from inspector.errors import RenderError, RenderTimeout
from inspector.template.render import RenderLimits, Rendered, render, template_variables, too_many_tokens
from inspector.template.probe import TemplateInfo, probe_template
from inspector.labels.adapt import adapt_tool_calls, adapt_tools
from inspector.labels.response_template import response_template_labels
from inspector.labels.plain_text import PLAIN_TEXT_STRATEGIES, adds_bos, plain_text_layout
from inspector.labels.spans import Layout, Span, Turn, locate
from inspector.template.clock import CpuBudget
from inspector.template.tokenizer import ChatSetup, is_tokenizer_failure

DEFAULT_RECORD_TIME_LIMIT = 30.0
STRATEGIES = ("assistant-only", "all-tokens", "last-turn", "session", "split-turns", "response-template")
EOT_MODES = ("turn", "all", "last", "none")  # LabelOptions.train_on_eos, axolotl's train_on_eos values
TRAINABLE_ROLES = ("system", "user", "assistant", "tool")  # LabelOptions.roles_to_train
SEG_CODE = {name: i for i, name in enumerate(SEGMENTS)}


def record_time_reason(opts: LabelOptions) -> str:
    """Why a record over ``--record-time-limit`` was rejected."""
    return (f"the conversation took longer than {opts.record_time_limit:g} s of CPU time to render and locate (the "
            f"per-record budget, --record-time-limit): rejected")


@dataclass(frozen=True)
class TurnFormat:
    """A hand-written turn layout for the ``session`` strategy, e.g. ChatGLM2's:
    user "[Round {round}]\\n\\n问：{content}\\n\\n答：", assistant "{content}\\n", eos after each answer."""

    user: str = "[Round {round}]\n\n问：{content}\n\n答："
    assistant: str = "{content}\n"
    system: str = "{content}\n"
    tool: str = "{content}\n"
    prefix: str = ""  # text before the first turn (e.g. a BOS written as text); the tokenizer's BOS is separate
    add_bos: bool = True  # prepend the tokenizer's BOS token id, as tokenizer.encode('') does for ChatGLM2
    eos_after_answer: bool = True


CHATGLM2_FORMAT = TurnFormat()


@dataclass(frozen=True)
class LabelOptions:
    strategy: str = "assistant-only"
    label_eot: bool = True
    max_length: int | None = None
    truncation_side: str = "right"  # "right" keeps the start (TRL's default), "left" keeps the end
    respect_trainable: bool = True  # per-message trainable flags / loss_weight 0 mask an assistant turn
    keep_history_labels: bool = False  # split-turns variant
    response_template: str | None = None  # default: the template's generation prompt
    instruction_template: str | None = None  # multi-turn completion-only collator
    turn_format: TurnFormat | None = None  # session strategy with a hand-written format
    template_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"enable_thinking": False}
    limits: RenderLimits = RenderLimits()
    # CPU seconds (of the thread that builds) one conversation may take to render and locate, every render of all
    # its samples (split-turns: every turn), and then to verify: a record over budget becomes a SampleError with the
    # reason (the verifier leaves the rest out, saying so), the others go on. None: no budget.
    record_time_limit: float | None = DEFAULT_RECORD_TIME_LIMIT
    roles_to_train: tuple[str, ...] = ("assistant",)  # roles whose turns are labeled (axolotl's roles_to_train)
    train_on_eos: str | None = None  # EOT_MODES; None: "turn" when label_eot else "none"


def eot_mode(opts: LabelOptions) -> str:
    """Which end-of-turn markers are trained: ``opts.train_on_eos``, or what ``label_eot`` says.
    Example: LabelOptions() -> "turn"; LabelOptions(label_eot=False) -> "none"."""
    if opts.train_on_eos is not None:
        return opts.train_on_eos
    return "turn" if opts.label_eot else "none"


def check_options(opts: LabelOptions) -> None:
    """Raise ValueError naming the bad value when ``opts`` asks for something the engine does not know."""
    bad = [(name, value, known) for name, value, known in (
        ("strategy", opts.strategy, STRATEGIES), ("train_on_eos", opts.train_on_eos, EOT_MODES + (None,)),
        *(("roles_to_train", r, TRAINABLE_ROLES) for r in opts.roles_to_train)) if value not in known]
    if bad or isinstance(opts.roles_to_train, str):
        name, value, known = bad[0] if bad else ("roles_to_train", opts.roles_to_train, TRAINABLE_ROLES)
        raise ValueError(f"Unknown {name} {value!r}; choose one of: {', '.join(k for k in known if k)}")


@dataclass
class Truncation:
    max_length: int
    side: str
    original_length: int
    tokens_cut: int
    labeled_cut: int
    cut_messages: list[int]  # messages whose tokens were cut (fully or partly)


_SEGMENT_NAMES = np.asarray(SEGMENTS, dtype=object)


class _TokenField:
    """A per-token list field of ``Sample`` that the engine stores as a numpy array and that reads as a list (made
    on the first read and kept). Samples a check or an export only passes through never build a Python list per
    token: less work, less memory, and far fewer objects for the garbage collector to walk when many samples are
    alive. ``segments`` is stored as codes into ``SEGMENTS``.

    Example: Sample(..., input_ids=np.array([5, 7]), ...).input_ids -> [5, 7] (a list, equal to one).
    """

    def __init__(self, names: np.ndarray | None = None):
        self.names = names  # codes -> names, for segments

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = name  # kept in the instance's __dict__ under the field's own name (a data descriptor wins)

    def __get__(self, obj: Any, owner: type | None = None) -> list:
        if obj is None:
            raise AttributeError(self.slot)  # a required dataclass field: no default
        value = obj.__dict__[self.slot]
        if isinstance(value, np.ndarray):
            value = (self.names[value] if self.names is not None else value).tolist()
            obj.__dict__[self.slot] = value
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.slot] = value


def _stored(sample: "Sample", name: str) -> Any:
    """A token field as stored (a numpy array, or a list once read or when given as one), without making a list."""
    return sample.__dict__[name]


@dataclass
class Sample:
    """One training sample and its token-level annotations (all per-token lists have the same length).
    ``input_ids``, ``labels`` and ``segments`` read as lists; ``ids_array()`` / ``labels_array()`` give them as
    numpy arrays without making the lists."""

    id: str
    conversation_id: str
    strategy: str
    text: str
    input_ids: list[int] = _TokenField()
    labels: list[int] = _TokenField()
    offsets: np.ndarray  # (n, 2) char offsets into ``text``
    segments: list[str] = _TokenField(_SEGMENT_NAMES)  # per token: one of SEGMENTS
    message_index: np.ndarray  # per token: message index, -1 for template markup
    straddles: np.ndarray  # per token: covers characters of more than one segment
    spans: list[Span] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    truncation: Truncation | None = None
    generation_spans: list[tuple[int, int]] | None = None  # from {% generation %}, when the template has them
    generation_mismatch: list[int] | None = None  # token positions where the template's mask disagrees with ours
    turn_index: int | None = None  # split-turns: which assistant turn this sample trains
    extra: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] | None = None  # what the template rendered (after adapting tool calls)
    dropped: list[tuple[int, str]] = field(default_factory=list)  # (message, piece) the template does not render
    adapted: list[str] = field(default_factory=list)  # how the messages were adapted to the template (tool calls)
    cpu_seconds: float = 0.0  # CPU time rendering and locating the record's samples took (--record-time-limit)

    @property
    def attention_mask(self) -> list[int]:
        return [1] * self.num_tokens

    @property
    def num_tokens(self) -> int:
        return len(_stored(self, "input_ids"))

    @property
    def num_trainable(self) -> int:
        return int((self.labels_array() != IGNORE_INDEX).sum())

    def ids_array(self) -> np.ndarray:
        """``input_ids`` as an int64 array (no list made)."""
        return np.asarray(_stored(self, "input_ids"), dtype=np.int64)

    def labels_array(self) -> np.ndarray:
        """``labels`` as an int64 array (no list made)."""
        return np.asarray(_stored(self, "labels"), dtype=np.int64)

    def to_record(self) -> dict[str, Any]:
        """The row a trainer loads: ids, mask, labels, and TRL's ``assistant_masks``."""
        labels = self.labels_array()
        return {"id": self.id, "input_ids": self.ids_array().tolist(), "attention_mask": self.attention_mask,
                "labels": labels.tolist(), "assistant_masks": (labels != IGNORE_INDEX).astype(np.int64).tolist()}


@dataclass
class SampleError:
    """A conversation that produced no sample (the template raised, nothing could be rendered)."""

    conversation_id: str
    strategy: str
    reason: str
    source: str | None = None
    kind: str = "template"  # "tokenizer": the tokenizer failed on the rendered text (a Rust panic), not the template


# --- tokenization -----------------------------------------------------------------------------------------------

def tokenize_batch(tokenizer: Any, texts: Sequence[str]) -> list[tuple[list[int], np.ndarray]]:
    """Tokenize rendered texts in one batched call, without adding special tokens (the template wrote them).

    Returns (ids, offsets) per text. Uses the fast (Rust) backend directly when there is one.
    """
    if not texts:
        return []
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is not None and hasattr(backend, "encode_batch"):
        encs = backend.encode_batch(list(texts), add_special_tokens=False)
        return [(e.ids, _offsets_array(e.offsets)) for e in encs]
    out = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    return [(ids, np.asarray(offs, dtype=np.int64).reshape(-1, 2)) for ids, offs in
            zip(out["input_ids"], out["offset_mapping"])]


def _offsets_array(offsets: list[tuple[int, int]]) -> np.ndarray:
    """[(0, 3), (3, 5)] -> array([[0, 3], [3, 5]]): one pass over the flattened pairs, which is cheaper than
    ``np.asarray`` over a list of tuples."""
    return np.fromiter(chain.from_iterable(offsets), dtype=np.int64, count=2 * len(offsets)).reshape(-1, 2)


def _coverage(mask_chars: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Number of marked chars inside each token's [start, end) span, via a prefix sum."""
    cum = np.concatenate(([0], np.cumsum(mask_chars, dtype=np.int64)))
    return cum[offsets[:, 1]] - cum[offsets[:, 0]]


def annotate(text: str, ids: Sequence[int], offsets: np.ndarray, layout: Layout,
             label_regions: list[tuple[int, int]], tool_call_messages: frozenset[int] | set[int] = frozenset()
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels (int64), per-token segment codes (into ``SEGMENTS``), message index and straddle flags from
    char-level arrays.

    A token is labeled when any of its characters lies in a label region; it straddles when its characters
    belong to more than one segment (e.g. ``"\\n\\nHello"`` merging markup and content), or when it is labeled but
    some of its characters lie outside every label region. The tool-call text a template writes for an assistant
    message in ``tool_call_messages`` (after the message's own text, up to the turn's end-of-turn marker) is that
    message's ``assistant`` segment: the model generates it.
    """
    n = len(text)
    offsets = np.clip(offsets, 0, n)
    seg = np.zeros(n, dtype=np.int8)
    msg = np.full(n, -1, dtype=np.int32)
    for s in layout.spans:
        seg[s.start:s.end] = SEG_CODE.get(s.role, 0)
        msg[s.start:s.end] = s.message_index
    for t in layout.turns:
        if t.message_index in tool_call_messages:
            start = max([t.start] + [s.end for s in layout.spans
                                     if s.message_index == t.message_index and s.kind in ("content", "reasoning")])
            calls = np.arange(start, max(start, t.body_end))
            calls = calls[seg[calls] == 0]
            seg[calls] = SEG_CODE["assistant"]
            msg[calls] = t.message_index
    lab = np.zeros(n, dtype=np.int8)
    for a, b in label_regions:
        lab[a:b] = 1
    ids_arr = np.asarray(ids, dtype=np.int64)
    lab_count = _coverage(lab, offsets)
    labeled = lab_count > 0
    labels = np.where(labeled, ids_arr, IGNORE_INDEX)
    starts, ends = offsets[:, 0], offsets[:, 1]
    nonempty = ends > starts
    last = np.where(nonempty, ends - 1, starts).clip(0, max(n - 1, 0))
    first = starts.clip(0, max(n - 1, 0))
    if n:
        seg_first, seg_last = seg[first], seg[last]
        tok_seg = np.where(seg_first != 0, seg_first, seg_last)
        tok_seg = np.where(nonempty, tok_seg, 0)
        msg_tok = np.where(seg[first] != 0, msg[first], msg[last])
        msg_tok = np.where(nonempty, msg_tok, -1)
        change = np.zeros(n, dtype=np.int8)
        change[1:] = seg[1:] != seg[:-1]
        cum = np.concatenate(([0], np.cumsum(change, dtype=np.int64)))
        # a change at char k (k in start+1..end-1) means the token spans two segments
        straddles = (cum[np.maximum(ends, starts + 1)] - cum[np.minimum(starts + 1, n)]) > 0
        # a labeled token that also covers characters outside every label region ("><" closing <|im_end|> and
        # opening the next header) straddles the label boundary: it is trained, half of it should not be
        straddles |= labeled & (lab_count < (ends - starts))
        straddles &= nonempty
    else:
        tok_seg = np.zeros(len(ids), dtype=np.int8)
        msg_tok = np.full(len(ids), -1)
        straddles = np.zeros(len(ids), dtype=bool)
    return labels, np.asarray(tok_seg, dtype=np.int8), msg_tok, straddles


# --- the engine ---------------------------------------------------------------------------------------------------

@dataclass
class _Job:
    """One text to tokenize and how to label it."""

    conv: Conversation
    sample_id: str
    messages: list[dict[str, Any]]
    rendered: Rendered
    layout: Layout
    regions: list[tuple[int, int]] | None  # None: label everything (all-tokens) / computed after tokenizing
    turn_index: int | None = None
    notes: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0  # CPU time the record had used when this sample was rendered and located


PIPELINE_CHUNK = 256  # conversations rendered while the previous chunk is tokenized


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of ``size`` items. Example: chunked(range(5), 2) -> [0, 1], [2, 3], [4]."""
    if size <= 0:
        raise ValueError("chunk size must be positive")
    it = iter(items)
    while True:
        chunk = list(islice(it, size))
        if not chunk:
            return
        yield chunk


class LabelEngine:
    """Renders, locates and labels conversations for one tokenizer + template. Stateless apart from caches of
    the template probe; never mutates the tokenizer.

    >>> engine = LabelEngine(setup)            # doctest: +SKIP
    >>> samples, errors = engine.build(conversations, LabelOptions(strategy="assistant-only"))  # doctest: +SKIP
    """

    def __init__(self, setup: ChatSetup):
        self.setup = setup
        self.tokenizer = setup.tokenizer
        self.template = setup.template

    # rendering helpers
    def variables(self, opts: LabelOptions) -> dict[str, Any]:
        """The template's variables (special tokens, date, ``opts.template_kwargs``), made once per set of template
        kwargs: ``render`` copies them, and reading the special tokens off the tokenizer costs more than a render's
        own setup. Do not change the dict returned."""
        try:
            key = tuple(sorted(opts.template_kwargs.items()))
            hash(key)
        except TypeError:  # an unhashable value (a list given as JSON): made for every render
            return template_variables(self.tokenizer, opts.template_kwargs)
        cache = self.__dict__.setdefault("_variables", {})
        if key not in cache:
            cache[key] = template_variables(self.tokenizer, opts.template_kwargs)
        return cache[key]

    def info(self, opts: LabelOptions = LabelOptions()) -> TemplateInfo:
        return probe_template(self.template, self.tokenizer, opts.template_kwargs or None, opts.limits)

    def render(self, messages: list[dict[str, Any]], tools: list | None, opts: LabelOptions, *,
               add_generation_prompt: bool = False, track: bool = False, prepared: bool = False) -> Rendered:
        """Render with this engine's template and variables; ``tools`` are put in the shape the template reads
        (see ``adapt_tools``). ``prepared``: the messages are ``template_messages(...)`` already (see ``render``)."""
        variables = self.variables(opts)
        if tools:
            tools = adapt_tools(tools, self.info(opts).tools_shape)[0]
        try:
            return render(messages, self.template, self.tokenizer, tools=tools, variables=variables,
                          add_generation_prompt=add_generation_prompt, track_generation=track, limits=opts.limits,
                          prepared=prepared)
        except RenderTimeout:
            raise  # a template that ran out of time once would only run out again
        except RenderError as exc:
            if tools is not None:
                raise
            # tool-use templates iterate `tools` without checking it is defined: retry with an empty list (the
            # sample says so: an empty list may write text of its own, e.g. a "you have some tools" system prompt)
            out = render(messages, self.template, self.tokenizer, tools=[], variables=variables,
                         add_generation_prompt=add_generation_prompt, track_generation=track, limits=opts.limits,
                         prepared=prepared)
            return replace(out, tools_fallback=str(exc))

    def template_messages(self, conv: Conversation, info: TemplateInfo) -> tuple[list[dict[str, Any]], list[str]]:
        """The messages the template sees, adapted to what it expects from a tool call (learned by the probe), and
        a note for every change. Arguments given as JSON text become an object (transformers' convention; templates
        that iterate ``arguments.items()`` need it) unless the template writes arguments as they are, which gets
        JSON text; a call-only message gets content None where the template writes calls only then.

        Example: arguments '{"city": "Paris"}' -> {"city": "Paris"}, note "... parsed into an object ...".
        """
        messages = conv.template_messages(tool_calls_as_text="tool_calls" not in self.template)
        notes: list[str] = []
        how = adapt_tools(conv.tools, info.tools_shape)[1] if conv.tools else ""
        if how:
            notes.append(f"tools {how}")
        for i, m in enumerate(messages):
            calls = m.get("tool_calls")
            if not calls:
                continue
            m["tool_calls"], how = adapt_tool_calls(calls, info.arguments_as_text)
            if how:
                notes.append(f"tool-call arguments of message {i} {how}")
            if info.call_content_none and not (m.get("content") or "").strip():
                m["content"] = None
                notes.append(f"message {i} (tool calls only) rendered with content None: this template writes the "
                             f"calls only then")
        return messages, notes

    def _job(self, conv: Conversation, messages: list[dict[str, Any]], opts: LabelOptions, info: TemplateInfo,
             sample_id: str, turn_index: int | None = None, adapted: Sequence[str] = (),
             budget: CpuBudget | None = None) -> _Job:
        """Render and locate one sample. ``budget``: the record's CPU time (``--record-time-limit``), shared by
        every sample of the record and checked before each render."""
        track = info.has_generation_tags
        if budget is None and opts.record_time_limit is not None:
            budget = CpuBudget(opts.record_time_limit)

        def over_budget() -> None:
            if budget is not None and budget.expired():
                raise RenderTimeout(record_time_reason(opts))

        over_budget()
        rendered = self.render(messages, conv.tools, opts, track=track)

        def rerender(msgs):
            over_budget()
            return self.render(msgs, conv.tools, opts).text

        layout = locate(rendered.text, messages, info, rerender)
        notes = list(adapted) + [why for _, why in layout.unlocated] + list(layout.notes)
        notes += [f"{kind} of message {i} is not rendered by the template" for i, kind in layout.dropped]
        job = _Job(conv, sample_id, messages, rendered, layout, None, turn_index, notes, list(adapted))
        job.cpu_seconds = budget.used() if budget is not None else 0.0
        return job

    def build(self, conversations: Iterable[Conversation], opts: LabelOptions = LabelOptions()
              ) -> tuple[list[Sample], list[SampleError]]:
        """Build samples for every conversation with ``opts.strategy``. A conversation whose template raises
        becomes a ``SampleError`` with the template's message; the others are unaffected."""
        samples: list[Sample] = []
        errors: list[SampleError] = []
        late_errors: list[SampleError] = []  # tokenizer refusals: reported after every render error, as before
        for chunk_samples, chunk_errors, chunk_late in self._stages(chunked(conversations, PIPELINE_CHUNK), opts):
            samples.extend(chunk_samples)
            errors.extend(chunk_errors)
            late_errors.extend(chunk_late)
        return samples, errors + late_errors

    def iter_build(self, chunks: Iterable[list[Conversation]], opts: LabelOptions = LabelOptions()
                   ) -> Iterator[tuple[list[Sample], list[SampleError]]]:
        """``build`` chunk by chunk: (samples, errors) for each list of conversations in ``chunks``, in order. While
        the caller works on one chunk's samples (e.g. runs the checks), the next chunk is already rendered and being
        tokenized in a worker thread (the Rust tokenizer releases the GIL), so the two overlap on two cores; the
        first chunk comes before the second is read. Each chunk's samples and errors are ``build(chunk, opts)``'s."""
        for samples, errors, late_errors in self._stages(chunks, opts, lazy_first=True):
            yield samples, errors + late_errors

    def _stages(self, chunks: Iterable[list[Conversation]], opts: LabelOptions, lazy_first: bool = False
                ) -> Iterator[tuple[list[Sample], list[SampleError], list[SampleError]]]:
        """The pipeline: render and locate chunk k+1 (this thread) while chunk k is tokenized (a worker thread),
        then finish chunk k. Yields (samples, render errors, tokenizer refusals) per chunk. ``lazy_first``: finish
        the first chunk before reading the second."""
        check_options(opts)
        info = self.info(opts)

        def jobs_of(conversations: Iterable[Conversation], errors: list[SampleError]) -> list[_Job]:
            jobs: list[_Job] = []
            for conv in conversations:
                if info.timeout:  # probing already ran out of time: rendering each record would too, at full cost
                    errors.append(SampleError(conv.id, opts.strategy, f"{info.timeout} (while probing the template)",
                                              str(conv.source) if conv.source else None))
                    continue
                try:
                    jobs.extend(self._jobs_for(conv, opts, info))
                except RenderError as exc:
                    errors.append(SampleError(conv.id, opts.strategy, str(exc), str(conv.source) if conv.source else None))
            return jobs

        def encode(jobs: list[_Job]):
            errors: list[SampleError] = []
            try:
                encoded = tokenize_batch(self.tokenizer, [j.rendered.text for j in jobs])
            except BaseException as exc:  # one text the tokenizer refuses must not sink the batch: find it
                if not is_tokenizer_failure(exc):  # a Rust panic derives from BaseException; Ctrl-C does not count
                    raise
                encoded, kept = [], []
                for job in jobs:
                    try:
                        encoded.extend(tokenize_batch(self.tokenizer, [job.rendered.text]))
                        kept.append(job)
                    except BaseException as exc:
                        if not is_tokenizer_failure(exc):
                            raise
                        errors.append(SampleError(job.conv.id, opts.strategy, f"the tokenizer refused the rendered "
                                                  f"text: {type(exc).__name__}: {exc}",
                                                  str(job.conv.source) if job.conv.source else None, "tokenizer"))
                jobs = kept
            over = {k for k, (ids, _) in enumerate(encoded) if len(ids) > opts.limits.max_tokens}
            for k in sorted(over):  # the token cap per sample (RenderLimits.max_tokens): refused with the reason
                conv = jobs[k].conv
                errors.append(SampleError(conv.id, opts.strategy, too_many_tokens(len(encoded[k][0]), opts.limits),
                                          str(conv.source) if conv.source else None))
            if over:
                keep = [k for k in range(len(jobs)) if k not in over]
                jobs, encoded = [jobs[k] for k in keep], [encoded[k] for k in keep]
            return jobs, encoded, errors

        if opts.strategy == "session" and opts.turn_format is not None:
            for chunk in chunks:
                errors: list[SampleError] = []
                yield self._session_format_samples([j.conv for j in jobs_of(chunk, errors)], opts), errors, []
            return

        def finish(done, errors: list[SampleError]):
            jobs, encoded, late = done
            return [self._finish(job, ids, offs, opts, info) for job, (ids, offs) in zip(jobs, encoded)], errors, late

        chunks = iter(chunks)
        first = next(chunks, None)
        if first is None:
            return
        first_errors: list[SampleError] = []
        first_jobs = jobs_of(first, first_errors)
        if lazy_first:  # the first chunk without reading ahead: a caller streaming records sees it at once
            yield finish(encode(first_jobs), first_errors)
            first = next(chunks, None)
            if first is None:
                return
            first_errors = []
            first_jobs = jobs_of(first, first_errors)
        second = next(chunks, None)
        if second is None:  # one chunk: nothing to overlap
            yield finish(encode(first_jobs), first_errors)
            return
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="inspector-tokenize") as pool:
            pending = (pool.submit(encode, first_jobs), first_errors)
            for chunk in chain([second], chunks):
                errors = []
                future = pool.submit(encode, jobs_of(chunk, errors))
                yield finish(pending[0].result(), pending[1])
                pending = (future, errors)
            yield finish(pending[0].result(), pending[1])

    def build_one(self, conv: Conversation, opts: LabelOptions = LabelOptions()) -> list[Sample]:
        """Samples of one conversation (several for split-turns). Raises ``RenderError`` when the template raises."""
        samples, errors = self.build([conv], opts)
        if errors:
            raise RenderError(errors[0].reason)
        return samples

    def _jobs_for(self, conv: Conversation, opts: LabelOptions, info: TemplateInfo) -> list[_Job]:
        if opts.strategy == "session" and opts.turn_format is not None:
            messages = conv.template_messages()
            return [_Job(conv, conv.id, messages, Rendered(""), Layout([], [], []), None)]
        if conv.plain_text and opts.strategy in PLAIN_TEXT_STRATEGIES:
            messages, text, spans, notes = plain_text_layout(conv)
            return [_Job(conv, conv.id, messages, Rendered(text), Layout(spans, [], []), None, notes=notes)]
        messages, notes = self.template_messages(conv, info)
        if opts.strategy == "split-turns":
            return self._split_turn_jobs(conv, messages, opts, info, notes)
        return [self._job(conv, messages, opts, info, conv.id, adapted=notes)]

    def _split_turn_jobs(self, conv: Conversation, messages: list[dict[str, Any]], opts: LabelOptions,
                         info: TemplateInfo, notes: list[str]) -> list[_Job]:
        """One job per assistant turn k, rendered from messages[:k+1]. The work grows with the square of the
        conversation (n answers render 1 + 2 + ... + n messages' worth of text, and every later step, tokenizing
        and the checks, follows the text), so the record is bounded as a whole: its samples together may hold at
        most ``opts.limits.max_chars`` UTF-8 bytes of text (``--max-chars``, the bound of one render) and their renders
        share one ``--record-time-limit`` of CPU time. A record past either is rejected with the reason.

        Example: 1,000 messages of 40 characters -> 500 samples of ~14,000,000 characters in all: rejected at the
        ~2,000,000th character (about sample 180), not after minutes of work."""
        budget = CpuBudget(opts.record_time_limit) if opts.record_time_limit is not None else None
        answers = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        jobs: list[_Job] = []
        size = 0
        for k, i in enumerate(answers):
            job = self._job(conv, messages[: i + 1], opts, info, f"{conv.id}#turn{k}", turn_index=k, adapted=notes,
                            budget=budget)
            text = job.rendered.text
            size += len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
            if size > opts.limits.max_chars:
                raise RenderTimeout(
                    f"split-turns: the samples of this record would hold more than {opts.limits.max_chars:,} bytes "
                    f"of text in all (reached at sample {k + 1} of {len(answers)}: one sample per answer, each "
                    f"rendering the conversation up to it, grows with the square of its length; the per-record bound "
                    f"is --max-chars): rejected, no sample of it was built")
            jobs.append(job)
        if not jobs:  # no assistant turn: one sample with nothing to train, so checks can say so
            jobs.append(self._job(conv, messages, opts, info, conv.id, turn_index=None, adapted=notes, budget=budget))
        for job in jobs:  # what the record used in all: the verifier gets the rest of the budget
            job.cpu_seconds = jobs[-1].cpu_seconds
        return jobs

    def _label_regions(self, job: _Job, opts: LabelOptions, info: TemplateInfo | None = None
                       ) -> list[tuple[int, int]]:
        turns = job.layout.turns
        msgs = job.messages
        conv_msgs = job.conv.messages
        all_turns = turns
        if "assistant" not in opts.roles_to_train:
            turns = []
        if opts.respect_trainable:
            turns = [t for t in turns if not (t.message_index < len(conv_msgs)
                                              and conv_msgs[t.message_index].trainable is False)]
        if opts.strategy in ("last-turn",) or (opts.strategy == "split-turns" and not opts.keep_history_labels):
            last_assistant = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
            turns = [t for t in turns if t.message_index == last_assistant]
        mode = eot_mode(opts)
        regions = []
        markers: list[tuple[int, int]] = []  # end-of-turn markers of trained turns, for "turn" and "last"
        for t in turns:  # a session turn without a marker gets an EOS inserted in _ensure_session_eos
            regions.append((t.start, t.body_end))
            if t.has_eot:
                markers.append((t.eot_start, t.eot_end))
        others = [r for r in opts.roles_to_train if r != "assistant"]
        if others or mode == "all":
            markers += self._other_role_regions(job, opts, info, regions, set(others), mode)
        if mode == "all":
            markers += [(t.eot_start, t.eot_end) for t in all_turns if t.has_eot]
        if mode in ("turn", "all"):
            regions.extend(markers)
        elif mode == "last" and markers:
            regions.append(max(markers))
        # trainable flags on non-assistant messages (rare): label their located pieces
        if opts.respect_trainable:
            for s in job.layout.spans:
                m = conv_msgs[s.message_index] if s.message_index < len(conv_msgs) else None
                if m is not None and m.role != "assistant" and m.trainable:
                    regions.append((s.start, s.end))
        return regions

    def _other_role_regions(self, job: _Job, opts: LabelOptions, info: TemplateInfo | None,
                            regions: list[tuple[int, int]], roles: set[str], mode: str) -> list[tuple[int, int]]:
        """Label the located text of every non-assistant message whose role is in ``roles`` (added to
        ``regions``); return the end-of-turn markers that close them (all non-assistant messages for ``mode``
        "all"): the template's closing written right after the message's last piece, whitespace apart."""
        text = job.rendered.text
        closings = [c for c in (info.end_of_turn if info is not None else ()) if c]
        ends: dict[int, int] = {}
        for s in job.layout.spans:
            if s.role == "assistant" or s.message_index >= len(job.conv.messages):
                continue
            trained = s.role in roles and not (opts.respect_trainable
                                                and job.conv.messages[s.message_index].trainable is False)
            if trained:
                regions.append((s.start, s.end))
            if trained or mode == "all":
                ends[s.message_index] = max(ends.get(s.message_index, 0), s.end)
        markers = []
        for end in ends.values():
            for closing in closings:
                at = text.find(closing, end)
                if at >= 0 and not text[end:at].strip():
                    markers.append((at, at + len(closing)))
                    break
        return markers

    def _finish(self, job: _Job, ids: list[int], offs: np.ndarray, opts: LabelOptions, info: TemplateInfo) -> Sample:
        text = job.rendered.text
        layout = job.layout
        notes = list(job.notes)
        open_turn = None
        if job.conv.plain_text and opts.strategy in PLAIN_TEXT_STRATEGIES:
            return self._finish_plain_text(job, ids, offs, opts)
        if opts.strategy == "all-tokens":
            regions = [(0, len(text))]
        else:
            regions = self._label_regions(job, opts, info)
            if opts.strategy in ("assistant-only", "last-turn", "split-turns") and eot_mode(opts) != "none":
                open_turn = self._open_last_turn(job, info, regions)
                if open_turn is not None and not text[open_turn.body_end:].strip():
                    regions.append((open_turn.body_end, len(text)))  # the answer's trailing newline, as mid turns
        ids = np.asarray(ids, dtype=np.int64)
        calls = frozenset(i for i, m in enumerate(job.messages) if m.get("tool_calls"))
        labels, segments, msg_idx, straddles = annotate(text, ids, offs, layout, regions, calls)
        if opts.strategy == "all-tokens":
            labels = ids.copy()
        arrays = _TokenArrays(ids, labels, offs, segments, msg_idx, straddles)
        extra: dict[str, Any] = {}
        if opts.strategy == "session":
            self._ensure_session_eos(job, arrays, notes)
        elif open_turn is not None:
            self._close_open_last_turn(open_turn, arrays, info, notes, extra, text)
        ids, labels, offs, segments, msg_idx, straddles = arrays.astuple()
        if opts.strategy == "response-template":
            labels, extra = response_template_labels(self.tokenizer, ids, opts.response_template or
                                                     info.generation_prompt or info.assistant_header,
                                                     opts.instruction_template)
        sample = Sample(job.sample_id, job.conv.id, opts.strategy, text, ids, labels, offs, segments, msg_idx,
                        straddles, layout.spans, layout.turns, notes, None, job.rendered.generation_spans,
                        turn_index=job.turn_index, extra=extra, messages=job.messages, dropped=list(layout.dropped),
                        adapted=job.adapted, cpu_seconds=job.cpu_seconds)
        if job.rendered.tools_fallback is not None:
            sample.extra["tools_fallback"] = job.rendered.tools_fallback
        if job.rendered.generation_spans is not None and opts.strategy == "assistant-only":
            sample.generation_mismatch = compare_generation_mask(sample, job.rendered.generation_spans)
        if opts.max_length is not None:
            sample = truncate(sample, opts.max_length, opts.truncation_side)
        return sample

    def _finish_plain_text(self, job: _Job, ids: list[int], offs: np.ndarray, opts: LabelOptions) -> Sample:
        """A plain-text prompt/completion sample as TRL builds it: ``tokenizer(prompt + completion)`` (its BOS, if
        the tokenizer adds one), the prompt's tokens masked, the completion's trained, then EOS, trained."""
        text = job.rendered.text
        spans = job.layout.spans
        regions = [] if opts.strategy == "all-tokens" else [(s.start, s.end) for s in spans if s.role == "assistant"]
        labels, segments, msg_idx, straddles = annotate(text, np.asarray(ids, dtype=np.int64), offs, job.layout,
                                                        regions if opts.strategy != "all-tokens" else [(0, len(text))])
        arrays = _TokenArrays(np.asarray(ids, dtype=np.int64), labels, offs, segments, msg_idx, straddles)
        tok = self.tokenizer
        bos, eos = getattr(tok, "bos_token_id", None), getattr(tok, "eos_token_id", None)
        if bos is not None and adds_bos(tok) and (not len(arrays.ids) or arrays.ids[0] != bos):
            arrays.insert(0, [bos], -1, labeled=opts.strategy == "all-tokens")
        answer = max((s.message_index for s in spans if s.role == "assistant"), default=-1)
        if eos is not None and (not len(arrays.ids) or arrays.ids[-1] != eos):
            arrays.insert(len(text), [eos], answer, labeled=True)
        ids_a, labels, offs, segments, msg_idx, straddles = arrays.astuple()
        if opts.strategy == "all-tokens":
            labels = ids_a.copy()
        sample = Sample(job.sample_id, job.conv.id, opts.strategy, text, ids_a, labels, offs, segments, msg_idx,
                        straddles, list(spans), [], list(job.notes), messages=job.messages)
        if opts.max_length is not None:
            sample = truncate(sample, opts.max_length, opts.truncation_side)
        return sample

    def _ensure_session_eos(self, job: _Job, arrays: "_TokenArrays", notes: list[str]) -> None:
        """Session samples need an end token after every answer. Where the template writes none, insert the
        tokenizer's EOS id after each answer, labeled (seed 000's construction)."""
        eos_id = getattr(self.tokenizer, "eos_token_id", None)
        missing = [t for t in job.layout.turns if not t.has_eot]
        if not missing or eos_id is None:
            return
        for t in sorted(missing, key=lambda t: t.body_end, reverse=True):
            arrays.insert(t.body_end, [eos_id], t.message_index)
        notes.append(f"the template writes no end token after {len(missing)} answer(s): EOS inserted and labeled")

    def _open_last_turn(self, job: _Job, info: TemplateInfo, regions: list[tuple[int, int]]) -> Turn | None:
        """The trained final answer when the template leaves it open (no closing after it, though the template
        closes other answers: ``info.end_of_turn`` is known), else None."""
        last = len(job.messages) - 1
        if last < 0 or not info.end_of_turn or job.messages[last].get("role") != "assistant":
            return None
        turn = next((t for t in job.layout.turns if t.message_index == last and not t.has_eot), None)
        if turn is None or not any(a < turn.body_end and b > turn.start for a, b in regions):
            return None  # no such turn, or not trained (loss_weight 0, last-turn's choice)
        return turn

    def _close_open_last_turn(self, turn: Turn, arrays: "_TokenArrays", info: TemplateInfo, notes: list[str],
                              extra: dict[str, Any], text: str) -> None:
        """Append the template's own closing after an open final answer, labeled: what the model emits at
        inference to end its turn. GLM-4's fine-tuning script does the same (it appends ``<|user|>``, id 151336,
        after the last answer and trains it). After whitespace the template writes behind the answer, as in the
        turns a next one follows. Templates that write no closing anywhere get nothing (``eot-not-labeled``)."""
        closing = info.end_of_turn[0]
        closing_ids = list(self.tokenizer.encode(closing, add_special_tokens=False))
        if not closing_ids:
            return
        at = len(text) if not text[turn.body_end:].strip() else turn.body_end
        pos = arrays.insert(at, closing_ids, turn.message_index)
        why = ("the next role token, which this template writes instead of a closing"
               if info.closing_opens_turn else "the closing this template writes after an answer a turn follows")
        notes.append(f"the template leaves the final answer open: appended {closing!r} (ids {closing_ids}, {why}) "
                     f"and labeled it, so the model learns to stop")
        extra["appended_closing"] = {"text": closing, "ids": closing_ids,
                                     "positions": list(range(pos, pos + len(closing_ids))),
                                     "message_index": turn.message_index, "opens_turn": info.closing_opens_turn}

    def _session_format_samples(self, convs: list[Conversation], opts: LabelOptions) -> list[Sample]:
        """Seed 000's layout for every conversation: each piece tokenized on its own (all pieces of all
        conversations in one batched call), answers labeled, EOS after each answer."""
        fmt = opts.turn_format or CHATGLM2_FORMAT
        per_conv = [format_pieces(conv, fmt) for conv in convs]
        encoded = tokenize_batch(self.tokenizer, [piece for pieces in per_conv for _, piece, _ in pieces])
        out, k = [], 0
        for conv, pieces in zip(convs, per_conv):
            out.append(self._session_format_sample(conv, opts, fmt, pieces, encoded[k:k + len(pieces)]))
            k += len(pieces)
        return out

    def _session_format_sample(self, conv: Conversation, opts: LabelOptions, fmt: TurnFormat,
                               pieces: list[tuple[str, str, int]], encoded: list[tuple[list[int], np.ndarray]]
                               ) -> Sample:
        tok = self.tokenizer
        eos_id = tok.eos_token_id
        bos_id = getattr(tok, "bos_token_id", None)
        ids: list[int] = []
        labels: list[int] = []
        offs: list[np.ndarray] = []
        segs: list[str] = []
        msgs: list[int] = []
        spans: list[Span] = []
        pos = 0
        if fmt.add_bos and bos_id is not None:
            ids.append(bos_id), labels.append(IGNORE_INDEX), segs.append("template"), msgs.append(-1)
            offs.append(np.zeros((1, 2), dtype=np.int64))
        for (role, piece, i), (p_ids, p_offs) in zip(pieces, encoded):
            trainable = role == "assistant" and not (opts.respect_trainable and conv.messages[i].trainable is False)
            ids.extend(p_ids)
            labels.extend(p_ids if trainable else [IGNORE_INDEX] * len(p_ids))
            offs.append(np.asarray(p_offs, dtype=np.int64).reshape(-1, 2) + pos)
            segs.extend([role if role in SEG_CODE else "template"] * len(p_ids))
            msgs.extend([i] * len(p_ids))
            if i >= 0:
                c = piece.find(conv.messages[i].content)
                if c >= 0:
                    spans.append(Span(i, role, "content", pos + c, pos + c + len(conv.messages[i].content), "format"))
            pos += len(piece)
            if role == "assistant" and fmt.eos_after_answer and eos_id is not None:
                ids.append(eos_id)
                labels.append(eos_id if trainable else IGNORE_INDEX)
                offs.append(np.asarray([[pos, pos]], dtype=np.int64))
                segs.append("template")
                msgs.append(i)
        text = "".join(piece for _, piece, _ in pieces)
        n = len(ids)
        offsets = np.concatenate(offs) if offs else np.zeros((0, 2), dtype=np.int64)
        sample = Sample(conv.id, conv.id, "session", text, ids, labels, offsets, segs, np.asarray(msgs, dtype=np.int64),
                        np.zeros(n, dtype=bool), spans, [], ["laid out with a TurnFormat"])
        if opts.max_length is not None:
            sample = truncate(sample, opts.max_length, opts.truncation_side)
        return sample


@dataclass
class _TokenArrays:
    """The per-token arrays of a sample being built, for inserting tokens that are not in the text (an EOS after
    an answer, a closing appended to an open last turn): they get an empty char span where they are inserted."""

    ids: np.ndarray
    labels: np.ndarray
    offsets: np.ndarray
    segments: np.ndarray  # codes into SEGMENTS
    message_index: np.ndarray
    straddles: np.ndarray

    def insert(self, at_char: int, token_ids: list[int], message_index: int, labeled: bool = True) -> int:
        """Insert labeled ``token_ids`` before the first token that starts at or after ``at_char``; returns the
        position of the first inserted token."""
        starts = np.asarray(self.offsets, dtype=np.int64).reshape(-1, 2)[:, 0]
        pos = int(np.searchsorted(starts, at_char, side="left"))
        k = len(token_ids)
        self.ids = np.insert(self.ids, pos, token_ids)
        self.labels = np.insert(self.labels, pos, token_ids if labeled else [IGNORE_INDEX] * k)
        self.offsets = np.insert(np.asarray(self.offsets, dtype=np.int64).reshape(-1, 2), pos,
                                 [[at_char, at_char]] * k, axis=0)
        self.segments = np.insert(self.segments, pos, [SEG_CODE["template"]] * k)
        self.message_index = np.insert(np.asarray(self.message_index), pos, [message_index] * k)
        self.straddles = np.insert(np.asarray(self.straddles, dtype=bool), pos, [False] * k)
        return pos

    def astuple(self):
        return self.ids, self.labels, self.offsets, self.segments, self.message_index, self.straddles


def format_pieces(conv: Conversation, fmt: TurnFormat) -> list[tuple[str, str, int]]:
    """The text pieces of a conversation laid out with a ``TurnFormat``: (role, text, message index).

    Example (ChatGLM2): [user "Hi", assistant "Hello!"] -> [("user", "[Round 0]\\n\\n问：Hi\\n\\n答：", 0),
    ("assistant", "Hello!\\n", 1)]
    """
    pieces: list[tuple[str, str, int]] = []
    if fmt.prefix:
        pieces.append(("template", fmt.prefix, -1))
    rnd = 0
    for i, m in enumerate(conv.messages):
        pattern = getattr(fmt, m.role, "{content}\n")
        pieces.append((m.role, pattern.format(round=rnd, content=m.content), i))
        if m.role == "assistant":
            rnd += 1
    return pieces


def compare_generation_mask(sample: Sample, generation_spans: list[tuple[int, int]]) -> list[int]:
    """Token positions where the ``{% generation %}`` mask (what ``return_assistant_tokens_mask`` gives) and our
    span-based labels disagree. Empty list: they agree."""
    n = len(sample.text)
    mask = np.zeros(n, dtype=np.int8)
    for a, b in generation_spans:
        mask[a:b] = 1
    offs = np.clip(sample.offsets, 0, n)
    gen = _coverage(mask, offs) > 0
    ours = sample.labels_array() != IGNORE_INDEX
    return np.nonzero(gen != ours)[0].tolist()


def truncate(sample: Sample, max_length: int, side: str = "right") -> Sample:
    """Cut a sample to ``max_length`` tokens as trainers do and record what was lost (tokens, labeled tokens,
    messages). ``side="right"`` keeps the start (TRL's ``truncation_mode="keep_start"``)."""
    n = sample.num_tokens
    if max_length <= 0:
        raise ValueError("max_length must be a positive number of tokens")
    if n <= max_length:
        return sample
    keep = slice(0, max_length) if side == "right" else slice(n - max_length, n)
    cut = np.ones(n, dtype=bool)
    cut[keep] = False
    labels = sample.labels_array()
    labeled_cut = int(((labels != IGNORE_INDEX) & cut).sum())
    cut_idx = np.asarray(sample.message_index)[cut]
    cut_msgs = np.unique(cut_idx[cut_idx >= 0]).astype(int).tolist()
    trunc = Truncation(max_length, side, n, int(cut.sum()), labeled_cut, cut_msgs)
    return replace(sample, input_ids=_stored(sample, "input_ids")[keep], labels=_stored(sample, "labels")[keep],
                   offsets=sample.offsets[keep], segments=_stored(sample, "segments")[keep],
                   message_index=np.asarray(sample.message_index)[keep],
                   straddles=np.asarray(sample.straddles)[keep], truncation=trunc,
                   generation_mismatch=None if sample.generation_mismatch is None else
                   [p - keep.start for p in sample.generation_mismatch if keep.start <= p < keep.stop])


def build_samples(setup: ChatSetup, conversations: Iterable[Conversation], strategy: str = "assistant-only",
                  **options: Any) -> tuple[list[Sample], list[SampleError]]:
    """One call: ``build_samples(setup, convs, "last-turn", max_length=512)``."""
    return LabelEngine(setup).build(conversations, LabelOptions(strategy=strategy, **options))
