"""The label engine on templates it was never tuned on (``unseen_templates.py``: our renditions of families that are
not in the corpus) and on conversations with edges: short answers that also occur as markup, answers equal to the
question, whitespace around text, unicode, reasoning, tool calls (one and two per message), reasoning written into
the content. The end-of-turn the probe learns must be the one read from the template by hand; for every pair that
renders, the perturbation verifier must agree with the labels and every trained answer must end in a labeled
end-of-turn (written by the template, or appended to an open final answer).
"""

from __future__ import annotations

import pytest

from inspector.checks import CheckContext, evaluate
from inspector.conversations import Conversation, Message
from inspector.labels.engine import LabelEngine, LabelOptions
from inspector.template.tokenizer import ChatSetup
from inspector.labels.verify import verify_sample
from unseen_templates import UNSEEN


def call(name, **arguments):
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city.",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]

CONVERSATIONS = [
    Conversation("plain", [Message("system", "You are a terse tutor."), Message("user", "What is 2 + 2?"),
                           Message("assistant", "2 + 2 is 4."), Message("user", "And 3 + 3?"),
                           Message("assistant", "3 + 3 is 6.")]),
    Conversation("short", [Message("user", "Is it raining?"), Message("assistant", "Yes."),
                           Message("user", "Sure?"), Message("assistant", "No")]),
    Conversation("echo", [Message("user", "ok"), Message("assistant", "ok"), Message("user", "user"),
                          Message("assistant", "assistant")]),
    Conversation("whitespace", [Message("user", "Tell me   a fact.  "),
                                Message("assistant", "\nWater boils at 100 C at sea level.  \n")]),
    Conversation("unicode", [Message("user", "Translate 'cat' to Japanese 🐱"), Message("assistant", "猫 (neko) 🐈")]),
    Conversation("reasoning", [Message("user", "How many legs do two cats have?"),
                               Message("assistant", "Eight.", reasoning="Each cat has four legs; 2 x 4 = 8."),
                               Message("user", "And a bird?"),
                               Message("assistant", "Two.", reasoning="Birds stand on two legs.")]),
    Conversation("tools", [Message("user", "Weather in Oslo?"),
                           Message("assistant", "", tool_calls=[call("get_weather", city="Oslo")]),
                           Message("tool", '{"temp": 7}', name="get_weather"),
                           Message("assistant", "It is 7 degrees in Oslo.")], tools=TOOLS),
    Conversation("two-calls", [Message("user", "Weather in Oslo and Rome?"),
                               Message("assistant", "Checking both.", tool_calls=[call("get_weather", city="Oslo"),
                                                                                  call("get_weather", city="Rome")]),
                               Message("tool", '{"temp": 7}', name="get_weather"),
                               Message("tool", '{"temp": 21}', name="get_weather"),
                               Message("assistant", "Oslo 7, Rome 21.")], tools=TOOLS),
    Conversation("think-in-content", [Message("user", "Capital of Peru?"),
                                      Message("assistant", "<think>\nPeru's capital is Lima.\n</think>\n\nLima.")]),
]

# pairs a template refuses (its own doing) or cannot express: (template, conversation) -> why
SKIP = {
    ("llama2", "tools"): "Llama 2's format has no tool role", ("llama2", "two-calls"): "no tool role",
    ("hunyuan-like", "tools"): "no tool role", ("hunyuan-like", "two-calls"): "no tool role",
}


# the end-of-turn each template writes after an answer, read from the template ("EOS": the tokenizer's eos_token)
CLOSING = {
    "llama2": "EOS", "zephyr": "EOS", "vicuna": "EOS", "alpaca": "EOS", "gemma3": "<end_of_turn>",
    "phi4": "<|im_end|>", "chatglm3": "<|user|>", "internlm2-tools": "<|im_end|>", "functionary-blocks": "<|stop|>",
    "mistral-tools": "EOS", "llama4": "<|eot|>", "seed-think": "<seed:eos>", "qwen3-like": "<|im_end|>",
    "hunyuan-like": "<|eos|>", "deepseek-v2": "EOS", "preview": "<|im_end|>", "granite-like": "<|end_of_text|>",
    "json-lines": '"}<|eot|>',
}


@pytest.fixture(scope="module")
def tokenizer(deepseek_setup):
    return deepseek_setup.tokenizer


@pytest.mark.parametrize("name", sorted(UNSEEN))
def test_unseen_template(tokenizer, name):
    setup = ChatSetup(tokenizer, UNSEEN[name], "override", name)
    engine = LabelEngine(setup)
    opts = LabelOptions()
    closing = tokenizer.eos_token if CLOSING[name] == "EOS" else CLOSING[name]
    assert engine.info(opts).end_of_turn[:1] == (closing,)
    ctx = CheckContext(setup, opts, verify="all")
    problems = []
    convs = [c for c in CONVERSATIONS if (name, c.id) not in SKIP]
    for oc in evaluate(convs, ctx, keep_samples=True):
        for f in oc.findings:
            if f.code in ("label-verification", "eot-not-labeled", "template-error", "label-leak", "no-trainable-tokens"):
                problems.append(f"{oc.record_id}: {f.code}: {f.message}")
        for s in oc.samples or []:
            result = verify_sample(engine, s, oc.conversation, opts)
            if result.skipped:
                problems.append(f"{oc.record_id}: not verified: {result.skipped}")
    assert not problems, "\n".join(problems)


def test_preview_of_the_answer_is_not_the_turn(tokenizer):
    """The template writes the final answer in a hint before the real turn; the turn is the one after the header."""
    setup = ChatSetup(tokenizer, UNSEEN["preview"], "override", "preview")
    c = CONVERSATIONS[0]
    (s,) = LabelEngine(setup).build_one(c, LabelOptions())
    hint = s.text.find("Aim for: 3 + 3 is 6.")
    real = s.text.rfind("3 + 3 is 6.")
    assert 0 <= hint < real
    labeled = [k for k, lab in enumerate(s.labels) if lab != -100]
    assert all(s.offsets[k][0] > hint + 20 or s.offsets[k][1] <= hint for k in labeled)  # the hint stays masked
    assert any(s.offsets[k][0] <= real < s.offsets[k][1] or s.offsets[k][0] == real for k in labeled)
