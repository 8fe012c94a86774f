"""The audit on real trainers' outputs, recorded once (tests/data/trainers/, README there: versions and how to
regenerate): what axolotl 0.19, LLaMA-Factory 0.9.5 and TRL 1.16 really trained on 12 corpus conversations, audited
against the Qwen2.5 template they rendered with. Each trainer's measured difference must come out as the named
pattern with its exact count; no other pattern may appear.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from inspector.cli.main import main

TRAINERS = Path(__file__).parent / "data" / "trainers"
CORPUS = os.environ.get("SFT_CORPUS")
pytestmark = pytest.mark.skipif(not CORPUS, reason="SFT_CORPUS is not set: the recordings name corpus tokenizers")

# recording -> (exit code with the default --fail-on error, {(code, pattern): (records, tokens)})
EXPECTED = {
    # axolotl's turn end is the tokenizer's EOS (<|endoftext|> here), which the template never writes
    "axolotl_qwen25_default": (1, {("closing-not-trained", "'<|im_end|>' closing an answer"): (12, 21)}),
    # with eot_tokens: ["<|im_end|>"] axolotl trains exactly what should be trained
    "axolotl_qwen25_eot_im_end": (0, {}),
    # LLaMA-Factory's qwen template trains the newline after each answer's <|im_end|>
    "llamafactory_qwen": (0, {("extra-trained-tokens", "'\\n' after '<|im_end|>'"): (12, 21)}),
    # TRL swaps in its Qwen2.5 training template: both newlines around every answer trained
    "trl_qwen25_assistant_only": (0, {("extra-trained-tokens", "'\\n' after '<|im_end|>'"): (12, 21),
                                      ("extra-trained-tokens", "'\\n' after 'assistant'"): (12, 21)}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_audit_names_what_each_trainer_really_trains(name, capsys):
    corpus = Path(CORPUS)
    code = main(["audit", str(TRAINERS / f"{name}.jsonl"), "--tokenizer", str(corpus / "tokenizers" / "qwen2"),
                 "--chat-template", str(corpus / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja"), "--json"])
    report = json.loads(capsys.readouterr().out)
    want_code, want = EXPECTED[name]
    got = {(p["code"], p["pattern"]): (p["records"], p["tokens"]) for p in report["patterns"]}
    assert got == want
    totals = report["totals"]
    assert (totals["samples"], totals["tied"], totals["untied"]) == (12, 12, 0)
    assert totals["differing_tokens"] == sum(tokens for _, tokens in want.values())
    assert code == want_code
