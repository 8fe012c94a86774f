"""``check`` and ``export``: build every sample, run the named checks, print the report (``check``) or write
accepted / rejected / report files (``export``).

Example: ``python -m inspector check demo.jsonl --fail-on warning`` exits 1 when a warning fired.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from inspector.cli.config import add_config_options
from inspector.checks.report import Report
from inspector.cli.format import _n, _verdict, format_report
from inspector.cli.options import EXIT_FINDINGS, EXIT_OK, FAIL_ON, _add_engine_options, _add_run_options, _add_setup_options
from inspector.cli.run import _items, _one_tokenizer_thread, _prepare, _progress, _ray_options, run_outcomes

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


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    add_config_options(p)
    p.set_defaults(handler=cmd_check)

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
    add_config_options(p)
    p.set_defaults(handler=cmd_export)
