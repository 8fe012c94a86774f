"""Measure what TRL's SFTTrainer trains on the real corpus data, with the audit: the numbers of docs/audit.md.

    SFT_CORPUS=/work/shared/corpus python scripts/audit_trl_corpus.py [--n 200] > /tmp/trl_audit.md

For each setting (tokenizer folder + publisher template from the corpus, TRL option), a tiny random Llama is given
to ``SFTTrainer``; its prepared ``train_dataset`` is saved with ``save_to_disk`` and audited with
``inspector.audit.run_audit`` against the publisher's template. Prints one markdown table row per setting with the
patterns found (records and tokens). Needs trl (requirements-trl.txt); no network.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SETTINGS = [  # (name, tokenizer folder, template file, SFTConfig options, data shape)
    ("Qwen2.5, assistant_only_loss", "qwen2", "Qwen-Qwen2.5-7B-Instruct.jinja", {"assistant_only_loss": True},
     "messages"),
    ("Qwen3, assistant_only_loss", "qwen2", "Qwen-Qwen3-0.6B.jinja", {"assistant_only_loss": True}, "messages"),
    ("Qwen2.5, completion_only_loss, conversational prompt/completion", "qwen2", "Qwen-Qwen2.5-7B-Instruct.jinja",
     {"completion_only_loss": True}, "prompt_completion"),
    ("Qwen2.5 tokenizer, completion_only_loss, plain-text prompt/completion", "qwen2",
     "Qwen-Qwen2.5-7B-Instruct.jinja", {"completion_only_loss": True}, "plain"),
    ("Llama 3.1, assistant_only_loss", "llama-bpe", "meta-llama-Llama-3.1-8B-Instruct.jinja",
     {"assistant_only_loss": True}, "messages"),
]


def records(corpus: Path, n: int) -> list:
    from inspector.data import load_data

    convs = []
    for name in ("v1_sft_demo.jsonl", "alpaca_en_demo.json", "identity.json"):
        convs += load_data(corpus / "data" / name).conversations
    convs = [c for c in convs if c.messages and c.messages[-1].role == "assistant" and not any(
        m.tool_calls for m in c.messages) and all(m.role in ("system", "user", "assistant") for m in c.messages)]
    return convs[:n]


def rows_for(convs: list, shape: str) -> list[dict]:
    out = []
    for c in convs:
        msgs = [{"role": m.role, "content": m.content} for m in c.messages]  # TRL has no per-message flags
        if shape == "messages":
            out.append({"messages": msgs})
        elif shape == "prompt_completion":
            out.append({"prompt": msgs[:-1], "completion": msgs[-1:]})
        else:
            out.append({"prompt": "\n".join(m["content"] for m in msgs[:-1]) + "\n", "completion": msgs[-1]["content"]})
    return out


def main() -> int:
    import datasets
    import trl
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    from inspector.audit.run import run_audit
    from inspector.template.tokenizer import load_setup

    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=200)
    args = p.parse_args()
    corpus = Path(os.environ["SFT_CORPUS"])
    convs = records(corpus, args.n)
    print(f"trl {trl.__version__}; {len(convs)} conversations from the corpus's LLaMA-Factory demo data "
          "(v1_sft_demo, alpaca_en_demo, identity)\n")
    print("| setting | result | samples | patterns (records / tokens) |")
    print("|---|---|---:|---|")
    for name, tok_name, tmpl_name, options, shape in SETTINGS:
        tok = AutoTokenizer.from_pretrained(str(corpus / "tokenizers" / tok_name))
        template = corpus / "templates" / tmpl_name
        tok.chat_template = template.read_text(encoding="utf-8")
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        config = LlamaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             num_key_value_heads=2, intermediate_size=32)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                trainer = SFTTrainer(model=LlamaForCausalLM(config), processing_class=tok,
                                     args=SFTConfig(output_dir=tmp, report_to=[], use_cpu=True, **options),
                                     train_dataset=datasets.Dataset.from_list(rows_for(convs, shape)))
            except Exception as exc:  # noqa: BLE001 - TRL refuses some templates: that is a result too
                print(f"| {name} | TRL refuses: {str(exc).splitlines()[0][:160]} | – | – |")
                continue
            trainer.train_dataset.save_to_disk(f"{tmp}/prepared")
            report, _ = run_audit(f"{tmp}/prepared", load_setup(str(corpus / "tokenizers" / tok_name),
                                                                str(template)))
        pats = "; ".join(f"{p.code} `{p.pattern}` {p.records}/{p.tokens}" for p in report.sorted_patterns()
                         if p.code not in ("not-tied",)) or "none"
        errors = report.count("error")
        print(f"| {name} | {'errors' if errors else 'no error'}, {report.differing_tokens:,} tokens differ | "
              f"{report.samples} | {pats} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
