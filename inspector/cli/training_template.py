"""``training-template``: rewrite a chat template with ``{% generation %}`` tags so TRL's assistant_only_loss
trains exactly our assistant-only labels, and verify it through transformers.

Example: exit 0 when mask == labels on every token of DATA, 1 when not, 2 on a usage or loading error.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from inspector.data.formats import FORMATS
from inspector.errors import InspectorError
from inspector.labels.engine import LabelOptions
from inspector.template.render import RenderLimits, run_now
from inspector.template.tokenizer import DEFAULT_TOKENIZER
from inspector.cli.options import EXIT_FINDINGS, EXIT_OK, _add_now, _positive_int, _template_var
from inspector.cli.run import _spec, load_spec

def cmd_training_template(args: argparse.Namespace) -> int:
    from inspector.data.loaders import load_data
    from inspector.training_template.check import export_training_template

    setup = load_spec(_spec(args))
    data = load_data(args.data, fmt=args.data_format, limit=args.limit) if args.data else None
    if data is not None and not data.conversations:
        raise InspectorError(f"{args.data}: no usable conversation ({len(data.rejected)} records rejected: "
                             f"{'; '.join(r.reasons[0] for r in data.rejected[:3])})")
    opts = LabelOptions(template_kwargs=dict(args.template_var), limits=RenderLimits(now=args.now or run_now()))
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
        result = "verified" if r.verified else r.reason or (f"{len(r.mismatches)}+ tokens differ" if r.mismatches
                                                            else f"label errors: {r.label_errors[0]}")
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


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    _add_now(p)
    p.add_argument("--data-format", choices=FORMATS, metavar="FMT", help="force the record format of DATA")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="read only the first N records of DATA")
    p.add_argument("--out", metavar="FILE", help="where to write the training template (default: "
                                                 "<template name>.training.jinja beside the template)")
    p.add_argument("--json", action="store_true", help="print one JSON report to stdout, nothing else")
    p.set_defaults(handler=cmd_training_template)
