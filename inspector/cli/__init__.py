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
reaches 3: a record the core cannot handle is rejected with the reason.

The modules: ``main`` (build_parser, main: exit codes, errors, SIGTERM), ``options`` (the shared option groups,
exit codes, ``command_line`` for the app), ``run`` (tokenizer spec, worker processes, ``run_outcomes``), ``format``
(the text report), and one module per command: ``check`` (check, export), ``show``, ``pack``, ``loss``,
``checks_list`` (checks), ``training_template`` (training-template). They only parse arguments, run the core and
print; every decision lives in ``inspector.checks`` and ``inspector.data``.

How to add a command ``NAME``: write ``inspector/cli/NAME.py`` with ``cmd_NAME(args) -> int`` (the exit code) and
``add_parser(sub: argparse._SubParsersAction) -> None``, which calls ``sub.add_parser("NAME", help=...)``, adds its
options (reuse ``options._add_setup_options`` etc.) and calls ``p.set_defaults(handler=cmd_NAME)``; then add the
module to ``COMMANDS`` in ``main.py`` (the order there is the order ``--help`` lists). ``main`` dispatches to
``args.handler``.
"""

from inspector._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "main": ["build_parser", "COMMANDS"],
    "options": ["command_line", "EXIT_OK", "EXIT_FINDINGS", "EXIT_ERROR", "EXIT_INTERNAL", "EXIT_TERMINATED"],
    "run": ["SetupSpec", "load_spec", "run_outcomes", "SESSION_LAYOUTS"],
    "format": ["format_report", "format_sample"],
    "pack": ["format_packing"],
})
