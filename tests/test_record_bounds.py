"""Work per record stays near-linear in its length (issue 13: 3,000 short messages once took 61 s and blocked an app
session). Counted, not timed: the number of renders one record costs, and how many messages they render in all.
"""

from __future__ import annotations

import pytest

import inspector.labels.engine as labels_module
from conftest import CHATML
from inspector.checks import CheckContext, evaluate
from inspector.conversations import Conversation, Message
from inspector.labels.engine import LabelEngine, LabelOptions
from inspector.template.tokenizer import ChatSetup


def many(n: int) -> Conversation:
    """n short messages: every answer is shorter than the search threshold and also occurs in other answers."""
    return Conversation("many", [Message("user" if k % 2 == 0 else "assistant", f"a{k % 7}") for k in range(n)])


@pytest.fixture
def counted(monkeypatch):
    calls: list[int] = []
    real = labels_module.render

    def render(messages, *args, **kwargs):
        calls.append(len(messages))
        return real(messages, *args, **kwargs)

    monkeypatch.setattr(labels_module, "render", render)
    return calls


@pytest.mark.parametrize("n", [200, 2000])
def test_labeling_a_record_costs_a_constant_number_of_renders(tiny_tokenizer, counted, n):
    engine = LabelEngine(ChatSetup(tiny_tokenizer, CHATML, "override", "tiny"))
    (s,) = engine.build_one(many(n), LabelOptions())
    assert len(s.turns) == n // 2
    assert len(counted) <= 3  # the render itself and one marked render, whatever the number of short answers


@pytest.mark.parametrize("n", [200, 3000])
def test_checking_and_verifying_a_record_renders_a_bounded_number_of_messages(tiny_tokenizer, counted, n):
    ctx = CheckContext(ChatSetup(tiny_tokenizer, CHATML, "override", "tiny"), verify="all")
    (oc,) = evaluate([many(n)], ctx)
    assert not [f for f in oc.findings if f.severity == "error"]
    # labels: ~2 renders; train/inference: at most 32 prompts; verifier: at most ~20,000 messages of renders
    assert sum(counted) <= 2 * n + 32 * n + 20_000 + 8 * n
    assert len(counted) <= 2 + 32 + 256 + 1


def test_a_record_over_the_time_budget_is_rejected_with_the_reason(tiny_tokenizer):
    engine = LabelEngine(ChatSetup(tiny_tokenizer, CHATML, "override", "tiny"))
    samples, errors = engine.build([many(50)], LabelOptions(record_time_limit=1e-9))
    assert not samples and len(errors) == 1
    assert "per-record budget" in errors[0].reason and "--record-time-limit" in errors[0].reason
    # the other records go on
    samples, errors = engine.build([many(4), many(50)], LabelOptions(record_time_limit=1e-9))
    assert errors and all("per-record budget" in e.reason for e in errors)
