"""``build_parser`` and ``main``: the parser is built from ``COMMANDS`` (each module's ``add_parser``), and
``main`` turns what a command does into an exit code: 0 nothing at or above ``--fail-on``, 1 findings, 2 a named
error (``Error: ...``), 3 an internal error (``Internal error: ...``), 130 Ctrl-C, 143 SIGTERM.

Example: ``main(["check", "demo.jsonl", "--fail-on", "never"])`` prints the report and returns 0.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import traceback
from typing import Sequence

from inspector.cli.config import apply_config
from inspector.errors import InspectorError
from inspector.template.render import run_now
from inspector.cli import audit, check, checks_list, loss, pack, show, training_template
from inspector.cli.options import EXIT_ERROR, EXIT_INTERNAL, EXIT_OK, EXIT_TERMINATED, _add_debug
from inspector.cli.validate import check_args

# every command module, in the order `--help` lists them; a new command is one module and one entry here
COMMANDS = (check, show, pack, loss, checks_list, training_template, audit)

REPORT_BUGS = ("This is a bug in SFT Inspector, not a problem with your data: please report it (an issue in the "
               "project's repository) with the command you ran; run it again with --debug to see the traceback.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inspector",
        description="SFT Inspector: see what a supervised fine-tuning run trains on, and check it before training.",
        epilog="Exit codes: 0 nothing at or above --fail-on fired, 1 something did, 2 usage or loading error, "
               "3 the tool itself failed (a bug: please report it).")
    _add_debug(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    for sp in sub.choices.values():
        _add_debug(sp, argparse.SUPPRESS)
    return parser


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
    too_long = _too_long_path(args)
    if too_long:
        print(f"Error: {too_long}", file=sys.stderr)
        return EXIT_ERROR
    if hasattr(args, "now") and args.now is None:
        args.now = run_now()  # one "now" for the whole run, whatever reads the options
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        apply_config(parser, args, argv)
        check_args(args)  # paths and options first: loading a tokenizer takes seconds
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
        if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:  # a long path caught late: still usage
            print(f"Error: a path is too long for this system: {_short(str(exc), 200)}", file=sys.stderr)
            return EXIT_ERROR
        if getattr(args, "debug", False):
            traceback.print_exception(exc, file=sys.stderr)
        print(f"Internal error: {type(exc).__name__}: {_short(str(exc))}", file=sys.stderr)
        print(REPORT_BUGS, file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


PATH_OPTIONS = {"data": "DATA", "tokenizer": "--tokenizer", "chat_template": "--chat-template", "out": "--out",
                "model": "--model"}
MAX_NAME_BYTES, MAX_PATH_BYTES = 255, 4096  # Linux NAME_MAX and PATH_MAX: longer fails in open() as "too long"


def _too_long_path(args: argparse.Namespace) -> str | None:
    """A usage error for a path argument that no file system holds (a 6,000-character DATA would otherwise fail
    deep inside as "File name too long", exit 3). Example: DATA of 6,000 "a" -> "DATA is 6,000 bytes long ..."."""
    for dest, name in PATH_OPTIONS.items():
        value = getattr(args, dest, None)
        if not isinstance(value, str):
            continue
        raw = os.fsencode(value)
        longest = max((len(part) for part in raw.split(b"/")), default=0)
        if len(raw) > MAX_PATH_BYTES or longest > MAX_NAME_BYTES:
            return (f"{name} is {len(raw):,} bytes long (a path may have {MAX_PATH_BYTES:,} bytes and each name in it "
                    f"{MAX_NAME_BYTES}): no file can have that path; check the argument")
    return None


def _short(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
