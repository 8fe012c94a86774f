"""``pack``: pack samples as TRL does (bfd, bfd_split, wrapped), collate them and run the packing checks.

Example: three samples of 5, 4 and 3 tokens with ``--max-length 8`` -> bfd packs [5, 3] and [4].
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from inspector.cli.config import add_config_options
from inspector.checks.context import CheckContext
from inspector.errors import InspectorError
from inspector.checks.run import Outcome
from inspector.checks.report import Report, report_settings
from inspector.cli.format import _count, _n, _pct, _verdict, format_report
from inspector.cli.options import EXIT_FINDINGS, EXIT_OK, FAIL_ON, _add_run_options, _add_setup_options, _positive_int
from inspector.cli.run import _items, _options, _progress, _skip, _spec, _thresholds, load_spec, run_outcomes

MAX_PAD_MULTIPLE = 1 << 20  # tokens: no row is longer than this, whatever the options


class UsageError(InspectorError):
    """An option value the command cannot use (exit 2)."""


def _pad_bound(args: argparse.Namespace) -> int:
    """The largest sensible --pad-to-multiple-of: the longest collated row (max_length, or max_length x batch_size
    padding-free), at least 4,096 and at most ``MAX_PAD_MULTIPLE``. Example: --max-length 2048 --batch-size 8
    --padding-free -> 16,384; --max-length 512 -> 4,096."""
    row = args.max_length * (args.batch_size if _padding_free(args) else 1)
    return min(max(row, 4096), MAX_PAD_MULTIPLE)


def _padding_free(args: argparse.Namespace) -> bool:
    """--padding-free / --padded as given, else TRL's default for the strategy (padding-free for bfd, bfd_split)."""
    from inspector.train.packing import default_padding_free

    return default_padding_free(args.packing) if args.padding_free is None else args.padding_free


def check_pad_multiple(args: argparse.Namespace) -> None:
    """Refuse an absurd --pad-to-multiple-of before anything loads (10**12 ran out of memory, exit 3)."""
    bound = _pad_bound(args)
    if args.pad_to_multiple_of is not None and args.pad_to_multiple_of > bound:
        raise UsageError(f"--pad-to-multiple-of {args.pad_to_multiple_of:,} is more than {bound:,} tokens (the longest "
                         f"collated row, --max-length{' x --batch-size padding-free' if _padding_free(args) else ''}"
                         f", at least 4,096 and at most {MAX_PAD_MULTIPLE:,}): every row would be mostly padding; use "
                         f"e.g. 8 or 64")


def cmd_pack(args: argparse.Namespace) -> int:
    from dataclasses import asdict, replace

    from inspector.data.packed_export import write_packed
    from inspector.train.packing import (PackInput, PackOptions, count_findings, pack, packing_findings,
                                         packing_summary)

    check_pad_multiple(args)
    spec = _spec(args)
    setup = load_spec(spec)
    opts = replace(_options(args), max_length=None)  # TRL does not truncate before packing: bfd does
    thresholds, skip = _thresholds(args), _skip(args)
    ctx = CheckContext(setup, opts, thresholds, skip)
    tok = setup.tokenizer
    pad = next((i for i in (getattr(tok, "pad_token_id", None), getattr(tok, "eos_token_id", None)) if i is not None),
               0)
    padding_free = _padding_free(args)
    popts = PackOptions(max_length=args.max_length, strategy=args.packing, padding_free=padding_free,
                        batch_size=args.batch_size, map_batch_size=args.map_batch_size,
                        pad_to_multiple_of=args.pad_to_multiple_of, pad_token_id=int(pad))
    report = Report(settings={"data": args.data, **report_settings(setup, opts, thresholds), "packing": asdict(popts)},
                    skipped=skip)
    if getattr(args, "config_report", None):
        report.extra["config"] = args.config_report
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
            print(f"Wrote {out / 'packed.jsonl'}: {_count(written['sequences'], 'packed sequence')}")
            print(f"Wrote {out / 'report.json'}")
        print(_verdict(report, args.fail_on))
    return EXIT_FINDINGS if report.fails(args.fail_on) else EXIT_OK


def format_packing(summary: dict[str, Any]) -> str:
    """The packing block of ``pack``'s text output: what was packed into what, what was lost, padding."""
    o = summary["options"]
    return "\n".join([
        f"packing {o['strategy']} · {summary['layout'].replace('_', '-')} layout · max_length {o['max_length']} · "
        f"{o['batch_size']} sequences per micro-batch",
        f"{_count(summary['samples'], 'sample')}, {_count(summary['tokens'], 'token')} -> "
        f"{_count(summary['sequences'], 'packed sequence')} ({_pct(summary['fill'])} full) in "
        f"{_count(summary['batches'], 'micro-batch', 'micro-batches')}",
        f"lost: {_count(summary['tokens_lost'], 'token')} ({_n(summary['labeled_lost'])} labeled) of "
        f"{_n(summary['truncated_samples'])} truncated and {_n(summary['dropped_samples'])} dropped samples; "
        f"{_count(summary['split_samples'], 'sample')} split across sequences",
        f"padding: {_pct(summary['padding_share'])} of the collated rows (without packing: "
        f"{_pct(summary['unpacked_padding_share'])})",
        f"the model gets: {summary['inputs']}",
    ])


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pack", help="pack samples as TRL does and check what packing does to labels and attention",
                       description="Build every sample (not truncated), pack them as TRL's pack_dataset does into "
                                   "sequences of --max-length tokens, collate them as TRL does (padding-free for bfd and "
                                   "bfd_split, padded for wrapped; --padded / --padding-free for the other) and run "
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
    layout = g.add_mutually_exclusive_group()
    layout.add_argument("--padding-free", dest="padding_free", action="store_const", const=True, default=None,
                        help="collate padding-free: one row per micro-batch, position_ids from seq_lengths, labels "
                             "-100 at position id 0 (default for bfd and bfd_split, as TRL's SFTTrainer does)")
    layout.add_argument("--padded", dest="padding_free", action="store_const", const=False,
                        help="collate padded rows, one per packed sequence with an attention mask (default for "
                             "wrapped, as in TRL; with bfd it shows what a padded collator, not TRL's, would do)")
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
    add_config_options(p)
    p.set_defaults(handler=cmd_pack)
