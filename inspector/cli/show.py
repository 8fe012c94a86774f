"""``show``: print every token of one record's sample(s) (id, text, segment, message, label) and its findings.

Example: ``python -m inspector show demo.jsonl --index 2`` shows record 2; ``--id ID`` finds it by id.
"""

from __future__ import annotations

import argparse
import sys
from itertools import islice

from inspector.cli.config import add_label_options
from inspector.checks.context import CheckContext
from inspector.checks.catalog import Thresholds
from inspector.checks.run import evaluate
from inspector.errors import InspectorError
from inspector.cli.format import (COLOR_CHOICES, _finding_line, format_inline, format_sample,
                                  is_color_wanted)
from inspector.cli.options import EXIT_FINDINGS, EXIT_OK, _add_setup_options, _share
from inspector.cli.run import _options, _spec, load_spec

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
    color = is_color_wanted(args.color)
    for sample in oc.samples or []:
        print(format_inline(sample, ctx, color) if args.inline else format_sample(sample, ctx, color))
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


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="print the token table and findings of one record",
                       description="Print every token of one record's sample(s): id, text, segment, message and "
                                   "label, then the record's findings.")
    _add_setup_options(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--index", type=int, default=0, metavar="N", help="0-based record number (default: 0)")
    where.add_argument("--id", dest="record_id", metavar="ID", help="the record's id instead of its number")
    p.add_argument("--min-trainable-share", type=_share, default=Thresholds().min_trainable_share, metavar="F",
                   help="threshold of the low-trainable-share check")
    add_label_options(p)
    p.add_argument("--color", choices=COLOR_CHOICES, default="auto",
                   help="color tokens by label, trained green and masked gray as in the app: always, never, or auto "
                        "(default: when stdout is a terminal and NO_COLOR is unset)")
    p.add_argument("--inline", action="store_true",
                   help="compact view: the tokens in a row as text(label, id), as `axolotl preprocess --debug` prints "
                        "them, instead of one table row per token")
    p.set_defaults(handler=cmd_show)
