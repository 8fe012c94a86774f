"""Running the checks: loaded records in, one ``Outcome`` per record out (accepted or not, findings, optional
trainer rows), streamed chunk by chunk so memory stays flat over any number of records.

- ``evaluate(items, ctx)``: one chunk of ``Conversation`` / ``Rejected`` records -> ``Outcome``s: build the samples
  (one batched call), run ``check_conversation``, ``check_sample`` and (on the records ``ctx.verify`` picks) the
  verifier; a record whose check fails becomes ``check-failed``, and the run goes on;
- ``chunks`` / ``text_size``: cut a stream into chunks of at most ``DEFAULT_CHUNK_SIZE`` records and
  ``DEFAULT_CHUNK_TEXT`` bytes of text;
- ``iter_outcomes``: the stream, the next chunk built while this one is checked;
- ``run_checks(conversations, setup, options)``: build and check in one call, every finding in a list.

Example: 3 records [user "Hi" + assistant "Hello", Rejected(reasons=["bad JSON"]), user "Hi" alone] -> 3
outcomes: accepted, rejected (``record-rejected``), rejected (``role-order``, then ``no-trainable-tokens``: the
conversation ends with 'user' and trains nothing). Left out: the running of chunks over processes (``cli``,
``data.distributed``) and the writing of files (``data.export``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from inspector.checks.catalog import Finding, Thresholds, finding
from inspector.checks.context import CheckContext, one_line
from inspector.checks.conversation import check_conversation, error_finding, rejected_finding
from inspector.checks.labels import verification_findings
from inspector.checks.sample import check_sample
from inspector.conversations import Conversation, Rejected
from inspector.errors import ChatTemplateError
from inspector.labels.engine import LabelEngine, LabelOptions, Sample, SampleError
from inspector.labels.verify import should_verify
from inspector.template.tokenizer import ChatSetup, is_tokenizer_failure

DEFAULT_CHUNK_SIZE = 256  # conversations per engine.build call when streaming
DEFAULT_CHUNK_TEXT = 4_000_000  # UTF-8 bytes of text per chunk (two records at the 2,000,000 limit): see chunks()


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
            kind = "tokenizer" if type(exc).__name__ == "PanicException" else "template"  # a Rust panic
            samples, errors = [], [SampleError(c.id, ctx.opts.strategy, f"building the sample failed: "
                                               f"{type(exc).__name__}: {exc}", str(c.source) if c.source else None,
                                               kind)]
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
    if err is not None and ctx.enabled("tokenizer-error" if err.kind == "tokenizer" else "template-error"):
        findings.append(error_finding(err))
    try:
        for s in samples:
            findings.extend(check_sample(s, conv, ctx))
            if verify:
                findings.extend(verification_findings(s, conv, ctx))
    except BaseException as exc:
        if not is_tokenizer_failure(exc):
            raise
        findings.append(finding("check-failed", one_line(f"checking the record failed: {type(exc).__name__}: "
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
