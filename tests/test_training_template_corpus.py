"""Training templates over every publisher template of the real corpus ($SFT_CORPUS): the text stays byte-identical,
the assistant mask transformers computes equals our labels on every token (or the template's row in
docs/conformance.md says why not), templates with their own tags are left as they are, and TRL's own checks accept
the result. The work is shared with the doc column (``training_corpus.training_outcome``, cached per session)."""

from __future__ import annotations

import pytest

from training_corpus import EXPECTED_NOT_VERIFIED, corpus_path, training_cell, training_outcome

TEMPLATES = sorted(p.name for p in (corpus_path() / "templates").glob("*.jinja")) if corpus_path() else []

# The paired tokenizer has no added token for the end-of-turn marker (TRL's stop-token check looks for one), or the
# check's dummy conversation cannot render without the template's own variables.
TRL_STOP_TOKEN_FAILS = {
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja": "<|im_end|> is plain text to the llama-bpe tokenizer",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja": "<|im_end|> is plain text to the llama-bpe tokenizer",
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja": "<｜end▁of▁sentence｜> is plain text to llama-bpe",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja": "<｜end▁of▁sentence｜> is plain text to qwen2",
    "fireworks-ai-llama-3-firefunction-v2.jinja": "raises 'functions' is undefined without its own variables",
}


def _skip_without_corpus(template: str) -> None:
    if template == "(no corpus)":
        pytest.skip("SFT_CORPUS is not set: point it at the shared real-world corpus (../shared/corpus)")


@pytest.mark.parametrize("template", TEMPLATES or ["(no corpus)"])
def test_corpus_training_template(template):
    _skip_without_corpus(template)
    out = training_outcome(template)
    tt, v = out.training, out.verification
    for row in v.rows:  # wherever both templates render, the text is the original's, byte for byte
        assert row.identical is not False, f"{template}/{row.conversation_id}: {row.reason}"
    if tt.already_tagged:
        assert tt.template == tt.original and not tt.edits
    if template in EXPECTED_NOT_VERIFIED:
        assert not out.verified, f"{template} is verified now: remove it from EXPECTED_NOT_VERIFIED"
        assert EXPECTED_NOT_VERIFIED[template] in training_cell(template)
        return
    bad = {r.conversation_id: (r.reason, [(m.index, m.token, m.ours, m.mask) for m in r.mismatches])
           for r in v.rows if r.comparable and not r.verified}
    assert out.verified, f"{template} ({out.tokenizer_name}): problems {tt.problems}, conversations {bad}"
    assert len(v.compared) >= 2, f"{template}: verified on too few conversations ({v.summary()})"


def test_at_least_50_corpus_templates_verified():
    if not TEMPLATES:
        pytest.skip("SFT_CORPUS is not set")
    verified = [t for t in TEMPLATES if training_outcome(t).verified]
    assert len(verified) >= 50, f"only {len(verified)} of {len(TEMPLATES)} verified"
    assert set(TEMPLATES) - set(verified) == set(EXPECTED_NOT_VERIFIED)


def test_the_doc_row_says_why_not(corpus):
    from test_conformance import DOC, _cell  # test_conformance writes the doc (and runs first)

    if not DOC.exists():
        pytest.skip("docs/conformance.md is not written yet")
    text = DOC.read_text(encoding="utf-8")
    for template, reason in EXPECTED_NOT_VERIFIED.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {template.removesuffix('.jinja')} |"))
        assert _cell(reason) in row, f"docs/conformance.md does not say why {template} is not verified"


@pytest.mark.parametrize("template", [t for t in TEMPLATES if t not in EXPECTED_NOT_VERIFIED] or ["(no corpus)"])
def test_trl_checks_accept_the_corpus_training_templates(template):
    _skip_without_corpus(template)
    pytest.importorskip("trl", reason="trl is not installed (requirements-trl.txt)")
    from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

    out = training_outcome(template)
    assert has_generation_markers(out.training.template)
    if out.tokenizer_name == "gpt-2":
        return  # the stand-in tokenizer has none of the template's markers as tokens: nothing for TRL to find
    trained = is_chat_template_stop_token_trained(out.tokenizer, chat_template=out.training.template)
    assert trained == (template not in TRL_STOP_TOKEN_FAILS), TRL_STOP_TOKEN_FAILS.get(template, template)
