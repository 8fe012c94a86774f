"""The layouts where span finding once guessed wrong without knowing (issue 15), each with a template written for it,
and the perturbation verifier that catches such guesses without knowing the layout.

Classes: (1) a tool call written as its own role block after an empty assistant message; (2) a thinking switch that
moves where a tool-call turn sits; (3) templates that leave the last answer open (GLM's next-role closing, and a
family that closes a turn only when another follows); (4) tool-call arguments given as JSON text to a template that
iterates ``arguments.items()``; (5) reasoning the template drops; (6) the completion-only collator's last match.
For (1) and (2) the verifier is shown to flag the engine's old mistake: the tests take the fast path's fix out
(``spans._locate_calls``) and watch the verifier name the unlabeled call.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import inspector.labels.spans as spans
from conftest import train_tiny_tokenizer
from inspector.checks import CheckContext, evaluate, verification_findings
from inspector.constants import IGNORE_INDEX
from inspector.conversations import Conversation, Message
from inspector.labels.engine import LabelEngine, LabelOptions
from inspector.labels.response_template import response_template_labels
from inspector.template.tokenizer import ChatSetup
from inspector.labels.verify import (Field, diff_regions, fields_budget, should_verify, trained_messages, verify_sample)

SPECIAL = ("<|im_start|>", "<|im_end|>", "<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|observation|>",
           "<|end|>", "<|tool_calls|>", "<|eot|>")

# (1) the call is a separate "function call" block after the (empty) assistant message
CALL_BLOCK = """{%- for m in messages -%}
{%- if m.role == 'user' -%}<|im_start|>user
{{ m.content }}<|im_end|>
{% elif m.role == 'assistant' -%}<|im_start|>assistant
{{ m.content }}<|im_end|>
{% for tc in m.tool_calls or [] -%}<|im_start|>function call
{{ tc.function.name }}: {{ tc.function.arguments | tojson }}<|im_end|>
{% endfor -%}
{%- elif m.role == 'tool' -%}<|im_start|>function response
{{ m.content }}<|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}<|im_start|>assistant
{% endif -%}"""

# (2) with thinking on, the calls move behind the closed answer; with thinking off they open it
THINKING_SWITCH = """{%- for m in messages -%}
{%- if m.role == 'user' -%}<|user|>{{ m.content }}<|end|>
{%- elif m.role == 'assistant' -%}
{%- if enable_thinking -%}<|assistant|><think>{{ m.reasoning_content or '' }}</think>{{ m.content }}<|end|>
{%- for tc in m.tool_calls or [] -%}<|tool_calls|>{{ tc.function.name }}{{ tc.function.arguments | tojson }}<|end|>{%- endfor -%}
{%- else -%}<|assistant|>{%- for tc in m.tool_calls or [] -%}<|tool_calls|>{{ tc.function.name }}{{ tc.function.arguments | tojson }}{%- endfor -%}{{ m.content }}<|end|>
{%- endif -%}
{%- elif m.role == 'tool' -%}<|observation|>{{ m.content }}<|end|>
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}<|assistant|>{%- if enable_thinking -%}<think>{%- endif -%}{%- endif -%}"""

# (3a) GLM style: no closing of its own; the next role token ends a turn; nothing follows the last answer
NEXT_ROLE = """{%- for m in messages -%}
{%- if m.role == 'user' -%}<|user|>
{{ m.content }}
{%- elif m.role == 'assistant' -%}<|assistant|>
{{ m.content }}
{%- for tc in m.tool_calls or [] -%}{{ tc.function.name }}
{{ tc.function.arguments | tojson }}{%- endfor -%}
{%- elif m.role == 'tool' -%}<|observation|>
{{ m.content }}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"""

# (3b) a closing written only when another message follows
CLOSE_IF_NEXT = ("{%- for m in messages -%}{{ '<|' + m.role + '|>' + m.content }}{% if not loop.last %}"
                 "{{ '<|eot|>' }}{% endif %}{%- endfor -%}{% if add_generation_prompt %}{{ '<|eot|><|assistant|>' }}"
                 "{% endif %}")

# (4) iterates arguments.items(), as five publisher templates do
ITEMS = ("{% for m in messages %}{{ '<|im_start|>' + m.role + '\n' + m.content }}"
         "{% for call in m.tool_calls or [] %}{{ call.function.name + '(' }}"
         "{% for k, v in call.function.arguments.items() %}{{ k + '=' + v }}{% endfor %}{{ ')' }}{% endfor %}"
         "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
WITH_THINK = ("{% for m in messages %}{{ '<|im_start|>' + m.role + '\n' }}"
              "{% if m.reasoning_content %}{{ '<think>' + m.reasoning_content + '</think>' }}{% endif %}"
              "{{ m.content + '<|im_end|>\n' }}{% endfor %}"
              "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
GOLDEN = Path(__file__).parent / "golden" / "trl_completion_collator.json"


@pytest.fixture(scope="module")
def tok():
    return train_tiny_tokenizer("bpe", special=SPECIAL)


def call(arguments) -> dict:
    return {"type": "function", "function": {"name": "get_weather", "arguments": arguments}}


TOOL_CONV = Conversation("tool", [
    Message("system", "You check the weather."),
    Message("user", "What is the weather in Paris?"),
    Message("assistant", "", tool_calls=[call({"city": "Paris"})], reasoning="I should call the tool."),
    Message("tool", "Sunny, 21 C"),
    Message("assistant", "It is sunny in Paris.", reasoning="The tool said sunny."),
    Message("user", "Thanks!"),
    Message("assistant", "You're welcome.")])


def engine(tok, template: str) -> LabelEngine:
    return LabelEngine(ChatSetup(tok, template, "override", "tiny"))


def labeled_text(sample) -> str:
    """The text of every labeled token that has text, joined with '|' between runs."""
    out, prev = [], None
    for k, (a, b) in enumerate(sample.offsets):
        if sample.labels[k] != IGNORE_INDEX and b > a:
            if prev is not None and k != prev + 1:
                out.append("|")
            out.append(sample.text[a:b])
            prev = k
    return "".join(out)


def verified(eng, sample, conv, opts):
    result = verify_sample(eng, sample, conv, opts)
    assert result.skipped is None, result.skipped
    return result


def messages_of(violations) -> set[tuple[int, str, str]]:
    return {(v.field.message_index, v.field.name, v.kind) for v in violations}


# --- (1) and (2): tool calls the fast path once missed ---------------------------------------------------------

def _without_call_locating(monkeypatch):
    """Take the fast path's tool-call fix out: no call is located, as before issue 15."""
    monkeypatch.setattr(spans, "_locate_calls", lambda text, messages, i, calls, marked, cursor, *rest: cursor)


@pytest.mark.parametrize("template,kwargs,expected", [
    (CALL_BLOCK, {}, '<|im_end|>\n<|im_start|>function call\nget_weather: {"city": "Paris"}<|im_end|>'),
    (THINKING_SWITCH, {"enable_thinking": True},
     'I should call the tool.</think><|end|><|tool_calls|>get_weather{"city": "Paris"}<|end|>'),
    (THINKING_SWITCH, {"enable_thinking": False}, '<|tool_calls|>get_weather{"city": "Paris"}<|end|>'),
])
def test_tool_call_turn_is_labeled_and_verified(tok, template, kwargs, expected):
    eng, opts = engine(tok, template), LabelOptions(template_kwargs=kwargs)
    (s,) = eng.build_one(TOOL_CONV, opts)
    assert expected in labeled_text(s)
    assert "Sunny, 21 C" not in labeled_text(s)  # the tool result stays masked
    assert verified(eng, s, TOOL_CONV, opts).ok


@pytest.mark.parametrize("template,kwargs", [(CALL_BLOCK, {}), (THINKING_SWITCH, {"enable_thinking": True})])
def test_verifier_flags_the_unlabeled_call_when_the_fast_path_fix_is_removed(tok, monkeypatch, template, kwargs):
    _without_call_locating(monkeypatch)
    eng, opts = engine(tok, template), LabelOptions(template_kwargs=kwargs)
    (s,) = eng.build_one(TOOL_CONV, opts)
    assert "get_weather" not in labeled_text(s)  # the old mistake: the call is masked
    result = verified(eng, s, TOOL_CONV, opts)
    assert {(2, "tool_calls[0].name", "not-labeled"), (2, "tool_calls[0].arguments", "not-labeled")} <= \
        messages_of(result.violations)
    findings = verification_findings(s, TOOL_CONV, CheckContext(eng.setup, opts))
    assert findings and all(f.code == "label-verification" and f.severity == "error" for f in findings)
    name = next(f for f in findings if f.details["field"] == "tool_calls[0].name")
    assert name.message_index == 2 and name.positions
    assert all(s.labels[p] == IGNORE_INDEX for p in name.positions)
    assert "get_weather" in tok.decode([s.input_ids[p] for p in name.positions])


# --- (3): open last turns -------------------------------------------------------------------------------------

def test_glm_style_open_last_answer_gets_the_next_role_token(tok):
    eng = engine(tok, NEXT_ROLE)
    (s,) = eng.build_one(TOOL_CONV, LabelOptions())
    user_id = tok.convert_tokens_to_ids("<|user|>")
    assert s.input_ids[-1] == user_id and s.labels[-1] == user_id  # appended after the final answer, labeled
    assert s.extra["appended_closing"]["opens_turn"] is True
    # answers a turn follows are closed by the template itself: <|observation|> after the call, <|user|> after 4
    text = labeled_text(s)
    assert '{"city": "Paris"}<|observation|>' in text and "It is sunny in Paris.<|user|>" in text
    findings = [f for oc in evaluate([TOOL_CONV], CheckContext(eng.setup, verify="all")) for f in oc.findings]
    codes = {f.code for f in findings}
    assert "eot-appended" in codes and "eot-not-labeled" not in codes and "label-verification" not in codes
    (f,) = [f for f in findings if f.code == "eot-appended"]
    assert f.positions == [len(s.input_ids) - 1] and f.details["text"] == "<|user|>"
    assert f.severity == "info"


def test_closing_written_only_before_a_next_turn_is_appended_after_the_last(tok):
    eng = engine(tok, CLOSE_IF_NEXT)
    c = Conversation("c", [Message("user", "Hello there"), Message("assistant", "The quick brown fox."),
                           Message("user", "And then?"), Message("assistant", "The lazy dog.")])
    (s,) = eng.build_one(c, LabelOptions())
    eot = tok.convert_tokens_to_ids("<|eot|>")
    assert labeled_text(s) == "The quick brown fox.<|eot|>|The lazy dog."
    assert s.input_ids[-1] == eot and s.labels[-1] == eot
    assert s.extra["appended_closing"]["opens_turn"] is False
    assert any("appended '<|eot|>'" in n and "learns to stop" in n for n in s.notes)
    # split-turns: every sample ends on its own answer, each gets the closing
    samples = eng.build_one(c, LabelOptions(strategy="split-turns"))
    assert [x.input_ids[-1] for x in samples] == [eot, eot]


# --- (4): arguments as JSON text ------------------------------------------------------------------------------

def test_json_text_arguments_are_parsed_for_a_template_that_iterates_items(tok):
    eng = engine(tok, ITEMS)
    c = replace(TOOL_CONV, messages=[m if not m.tool_calls else replace(m, tool_calls=[call('{"city": "Paris"}')])
                                     for m in TOOL_CONV.messages])
    (s,) = eng.build_one(c, LabelOptions())  # would raise (str has no .items()) without the adaptation
    assert "get_weather(city=Paris)" in labeled_text(s)
    assert s.messages[2]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert c.messages[2].tool_calls[0]["function"]["arguments"] == '{"city": "Paris"}'  # input untouched
    assert any("were JSON text: parsed into an object" in n for n in s.adapted)
    findings = [f for oc in evaluate([c], CheckContext(eng.setup)) for f in oc.findings]
    assert [f.code for f in findings if f.code == "tool-call-adapted"] == ["tool-call-adapted"]
    # a string that is not a JSON object stays as it is (and this template then raises, as apply_chat_template)
    bad = replace(c, messages=[m if not m.tool_calls else replace(m, tool_calls=[call("city=Paris")])
                               for m in c.messages])
    assert eng.build([bad], LabelOptions())[1]


def test_templates_that_want_json_text_get_it(tok):
    text_template = ("{% for m in messages %}{{ '<|im_start|>' + m.role + '\n' + m.content }}"
                     "{% for c in m.tool_calls or [] %}{{ c.function.name + ' ' + c.function.arguments }}{% endfor %}"
                     "{{ '<|im_end|>\n' }}{% endfor %}")
    eng = engine(tok, text_template)
    assert eng.info().arguments_as_text
    (s,) = eng.build_one(TOOL_CONV, LabelOptions())
    assert 'get_weather {"city": "Paris"}' in labeled_text(s)
    assert any("given as JSON text" in n for n in s.adapted)


# --- (5): reasoning the template drops ------------------------------------------------------------------------

def test_dropped_reasoning_is_an_info_finding_with_counts(tok):
    findings = [f for oc in evaluate([TOOL_CONV], CheckContext(ChatSetup(tok, CHATML, "o", "t"))) for f in oc.findings]
    (f,) = [f for f in findings if f.code == "reasoning-dropped"]
    assert f.severity == "info" and f.details == {"dropped": 2, "with_reasoning": 2, "messages": [2, 4]}
    assert "2 of 2" in f.message and "not trained" in f.message
    shown = [f for oc in evaluate([TOOL_CONV], CheckContext(ChatSetup(tok, WITH_THINK, "o", "t")))
             for f in oc.findings if f.code == "reasoning-dropped"]
    assert shown == []


# --- (6): the completion-only collator, exactly ----------------------------------------------------------------

class IdTok:
    """encode() of single-letter markers: "M" -> [7, 8], "I" -> [4]; pad id 0."""

    pad_token_id = 0

    def encode(self, text, add_special_tokens=False):
        return {"M": [7, 8], "I": [4]}[text]


def test_collator_keeps_the_last_response_match():
    labels, extra = response_template_labels(IdTok(), [7, 8, 9, 5, 7, 8, 6, 2], "M")
    assert labels == [IGNORE_INDEX] * 6 + [6, 2] and extra["marker_positions"] == [0, 4]


def test_collator_masks_pad_ids_before_searching():
    # pad id 0 is -100 before the search (DataCollatorForLanguageModeling): with pad == EOS, no EOS is trained
    labels, extra = response_template_labels(IdTok(), [7, 8, 9, 0, 0], "M")
    assert labels == [IGNORE_INDEX, IGNORE_INDEX, 9, IGNORE_INDEX, IGNORE_INDEX] and extra["pad_masked"] == 2


def test_collator_matches_trl_0_19_1_on_recorded_cases():
    """Cases recorded by running TRL 0.19.1's own DataCollatorForCompletionOnlyLM (scripts/record_trl_collator.py,
    in a separate environment with transformers 4.x): ids, markers and the labels the collator returned."""
    cases = json.loads(GOLDEN.read_text())
    assert len(cases) >= 10

    class Tok:
        def __init__(self, pad, vocab):
            self.pad_token_id, self.vocab = pad, vocab

        def encode(self, text, add_special_tokens=False):
            return self.vocab[text]

    for case in cases:
        tok = Tok(case["pad_token_id"], {k: v for k, v in case["markers"].items()})
        got, _ = response_template_labels(tok, case["input_ids"], case["response_template"],
                                          case.get("instruction_template"))
        assert got == case["labels"], case["name"]


def test_multi_turn_response_template_trains_only_the_last_answer(tok):
    eng = engine(tok, CHATML)
    c = Conversation("c", [Message("user", "Hello there"), Message("assistant", "The quick brown fox."),
                           Message("user", "And then?"), Message("assistant", "The lazy dog.")])
    (s,) = eng.build_one(c, LabelOptions(strategy="response-template"))
    assert labeled_text(s) == "The lazy dog.<|im_end|>\n"
    codes = [f.code for oc in evaluate([c], CheckContext(eng.setup, LabelOptions(strategy="response-template")))
             for f in oc.findings]
    assert "response-marker-last-match" in codes and "label-leak" not in codes


# --- the verifier itself ----------------------------------------------------------------------------------------

def test_diff_regions_single_multiple_and_side_effects():
    assert diff_regions("<u>Hi</u>", "<u>§0§</u>", ["§0§"]) == ([(3, 5)], False)
    # written twice the same way: both places
    assert diff_regions("A Hi B Hi C", "A §0§ B §0§ C", ["§0§"]) == ([(2, 4), (7, 9)], False)
    # not written at all
    assert diff_regions("<u>Hi</u>", "<u>Hi</u>", ["§0§"]) is None
    # the template also tests the value (a branch elsewhere changes): that change is not the field's
    regions, side = diff_regions("[long] Hi", "[short] §0§", ["§0§"])
    assert side and regions == [(7, 9)]


def test_mutations_are_each_named(tok):
    """Corrupt a correct sample in known ways; the verifier names the message, the field and the rule."""
    eng, opts = engine(tok, WITH_THINK), LabelOptions()
    (s,) = eng.build_one(TOOL_CONV, opts)
    assert verified(eng, s, TOOL_CONV, opts).ok
    msg = np.asarray(s.message_index)
    labels = np.asarray(s.labels)

    def tokens_of(i, segment):
        return [k for k in range(len(labels)) if msg[k] == i and s.segments[k] == segment]

    def mutated(fn):
        new = labels.copy()
        fn(new)
        return messages_of(verified(eng, replace(s, labels=new.tolist()), TOOL_CONV, opts).violations)

    answer = tokens_of(6, "assistant")
    assert mutated(lambda x: x.__setitem__(answer[0], IGNORE_INDEX)) == {(6, "content", "not-labeled")}
    user = tokens_of(5, "user")
    assert mutated(lambda x: x.__setitem__(user[0], s.input_ids[user[0]])) == {(5, "content", "labeled")}
    system = tokens_of(0, "system")
    assert mutated(lambda x: x.__setitem__(system, np.asarray(s.input_ids)[system])) == {(0, "content", "labeled")}
    a = s.text.find("The tool said sunny.")
    reasoning = [k for k in range(len(labels)) if s.offsets[k][0] >= a and s.offsets[k][1] <= a + 20]
    assert reasoning and mutated(lambda x: x.__setitem__(reasoning, IGNORE_INDEX)) == {(4, "reasoning", "not-labeled")}
    tool = tokens_of(3, "tool")
    assert mutated(lambda x: x.__setitem__(tool, np.asarray(s.input_ids)[tool])) == {(3, "content", "labeled")}

    def shift(x):  # the mask moved one token right: the first token of each answer untrained, one after trained
        mask = x != IGNORE_INDEX
        moved = np.concatenate(([False], mask[:-1]))
        x[:] = np.where(moved, np.asarray(s.input_ids), IGNORE_INDEX)
    found = mutated(shift)
    assert (6, "content", "not-labeled") in found or (4, "content", "not-labeled") in found


# Reka-Edge-like: the header "<sep>assistant: " is plain text (no special token), thinking opens every answer
REKA_LIKE = ("{% for m in messages %}{% if m.role == 'user' %}{{ '<sep>human: ' + m.content }}"
             "{% elif m.role == 'assistant' %}{{ '<sep>assistant: ' }}"
             "{% if enable_thinking %}{{ '<think>\n' + (m.reasoning_content or '') + '\n</think>\n' }}{% endif %}"
             "{% for tc in m.tool_calls or [] %}{{ '<tool_call>' + tc.function | tojson + '</tool_call>' }}{% endfor %}"
             "{{ m.content + '<|eot|>' }}{% elif m.role == 'tool' %}{{ '<sep>tool: ' + m.content }}{% endif %}"
             "{% endfor %}{% if add_generation_prompt %}{{ '<sep>assistant: ' }}"
             "{% if enable_thinking %}{{ '<think>\n' }}{% endif %}{% endif %}")


def test_labeled_inference_prompt_of_a_tool_call_turn_is_a_verification_error(tok):
    """Issue 21: tokens of render(messages[:i], add_generation_prompt=True) that the training render shares (the
    plain-text header "<sep>assistant: <think>\n" before a tool call) must be -100; the verifier proves it."""
    eng, opts = engine(tok, REKA_LIKE), LabelOptions(template_kwargs={"enable_thinking": True})
    (s,) = eng.build_one(TOOL_CONV, opts)
    assert verified(eng, s, TOOL_CONV, opts).ok  # the engine masks the header; the earlier <|eot|> stay trained
    head = s.text.index("<sep>assistant: <think>\n")
    end = head + len("<sep>assistant: <think>\n")
    header = [k for k, (a, b) in enumerate(s.offsets) if a >= head and b <= end and b > a]
    assert header and all(s.labels[k] == IGNORE_INDEX for k in header)
    labels = list(s.labels)
    for k in header:  # the mistake seen on Reka Edge: the header before the call is trained
        labels[k] = s.input_ids[k]
    bad = replace(s, labels=labels)
    result = verified(eng, bad, TOOL_CONV, opts)
    assert messages_of(result.violations) == {(2, "generation prompt", "prompt-labeled")}
    assert result.violations[0].positions == header
    findings = verification_findings(bad, TOOL_CONV, CheckContext(eng.setup, opts))
    assert [f.code for f in findings] == ["label-verification"] and findings[0].severity == "error"
    assert "inference prompt" in findings[0].message
    labels = list(s.labels)  # the same header before the last answer: message 6
    last = s.text.rindex("<sep>assistant: ")
    k = next(k for k, (a, b) in enumerate(s.offsets) if a >= last and b > a)
    labels[k] = s.input_ids[k]
    assert messages_of(verified(eng, replace(s, labels=labels), TOOL_CONV, opts).violations) == \
        {(6, "generation prompt", "prompt-labeled")}


def test_trained_messages_per_strategy():
    msgs = [{"role": "user"}, {"role": "assistant"}, {"role": "user"}, {"role": "assistant"}]
    assert trained_messages(msgs, "assistant-only", [None] * 4) == {1, 3}
    assert trained_messages(msgs, "last-turn", [None] * 4) == {3}
    assert trained_messages(msgs, "assistant-only", [None, False, None, None]) == {3}
    assert trained_messages(msgs, "split-turns", [None] * 4, keep_history_labels=True) == {1, 3}
    assert trained_messages(msgs, "assistant-only", [True, None, None, None]) == {0, 1, 3}


def test_verifier_skips_strategies_that_do_not_label_by_role(tok):
    eng = engine(tok, CHATML)
    for strategy in ("all-tokens", "response-template"):
        opts = LabelOptions(strategy=strategy)
        (s,) = eng.build_one(TOOL_CONV, opts)
        assert "does not label by role" in verify_sample(eng, s, TOOL_CONV, opts).skipped


def test_verifier_work_is_bounded_on_very_long_records(tok):
    eng = engine(tok, CHATML)
    msgs = [Message("user" if k % 2 == 0 else "assistant", f"turn {k}") for k in range(2000)]
    c = Conversation("long", msgs)
    (s,) = eng.build_one(c, LabelOptions())
    result = verify_sample(eng, s, c, LabelOptions())
    assert result.ok and result.fields == 2000
    assert fields_budget(2000) == 10 and any("1990 of 2000 fields not verified" in n for n in result.notes)


def test_sample_mode_verifies_the_first_records_and_a_spread_of_the_rest():
    picked = [i for i in range(2000) if should_verify("sample", i)]
    assert picked[:16] == list(range(16)) and 256 in picked and 300 not in picked
    assert not should_verify("none", 0) and should_verify("all", 1999)
    assert Field(-1, "tools", "tools").describe() == "the tool declarations"
