"""``checks``: list every named check with its stable code, severity and description.

Example: ``python -m inspector checks --json`` prints a list of ``{code, severity, description}``.
"""

from __future__ import annotations

import argparse
import json
import textwrap

from inspector.checks.catalog import CHECKS
from inspector.cli.options import EXIT_OK

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


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("checks", help="list the checks: code, severity, what fires them",
                       description="List every named check with its stable code, severity and description.")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(handler=cmd_checks)
