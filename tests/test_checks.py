"""Every named check, both ways: one case that makes it fire and one where it stays quiet, plus exact positions and
messages for the headline checks, the accept rule and the report's counts.

Templates are written inline (ChatML variants, each broken in one way); tokenizers are the tiny BPE trained in
conftest.py, a copy of it whose post-processor adds BOS, and the packaged DeepSeek tokenizer.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from conftest import CHATML, PANIC_TEXT, train_panicky_tokenizer, train_tiny_tokenizer
from inspector.checks import (CHECKS, SEVERITIES, CheckContext, Finding, Report, Thresholds, check_conversation,
                              check_sample, evaluate, iter_outcomes, run_checks, tokenizer_adds_bos,
                              verification_findings)
from inspector.constants import IGNORE_INDEX
from inspector.conversations import Conversation, Message, Rejected, Source
from inspector.labels.engine import LabelEngine, LabelOptions
from inspector.template.tokenizer import ChatSetup

# --- templates, each wrong in one way ---------------------------------------------------------------------------

NO_EOT = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
# Llama-2 style header ending in a space: " quick" becomes one token across the header/answer boundary
SPACE = ("{% for message in messages %}{% if message['role'] == 'assistant' %}"
         "{{ '<|im_start|>assistant: ' + message['content'] + '<|im_end|>\n' }}"
         "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}"
         "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant: ' }}{% endif %}")
# R1 style: the generation prompt opens a <think> block that past turns in the history never show
THINK = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
         "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n<think>\n' }}{% endif %}")
GEN_CONTENT_ONLY = (
    "{% for message in messages %}{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] }}{% endgeneration %}{{ '<|im_end|>\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
GEN_WITH_EOT = GEN_CONTENT_ONLY.replace("{% endgeneration %}{{ '<|im_end|>\n' }}",
                                        "{{ '<|im_end|>' }}{% endgeneration %}{{ '\n' }}")
NO_TOOL = ("{% for message in messages %}{% if message['role'] != 'tool' %}"
           "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}"
           "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
NO_SYSTEM = ("{% for message in messages %}{% if message['role'] == 'system' %}"
             "{{ raise_exception('System role not supported') }}{% endif %}"
             "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}"
             "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
# GLM style: no closing marker, the next role token ends a turn, nothing closes the last answer
NEXT_ROLE = ("{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] }}{% endfor %}"
             "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}")
# renders reasoning inside <think> (CHATML itself drops it)
WITH_THINK = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
              "{% if message.reasoning_content %}{{ '<think>' + message.reasoning_content + '</think>' }}{% endif %}"
              "{{ message['content'] + '<|im_end|>\n' }}{% endfor %}"
              "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
# iterates arguments.items(), as five publisher templates do
ITEMS = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] }}"
         "{% for call in message.tool_calls or [] %}{{ call.function.name + '(' }}"
         "{% for k, v in call.function.arguments.items() %}{{ k + '=' + v }}{% endfor %}{{ ')' }}{% endfor %}"
         "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
BOS = "{{ bos_token }}" + CHATML
TWO_BOS = "{{ bos_token + bos_token }}" + CHATML


def conv(*pairs, id="c") -> Conversation:
    return Conversation(id, [Message(r, c) for r, c in pairs])


TWO_TURNS = conv(("user", "Hello! How can I help"), ("assistant", "The quick brown fox."),
                 ("user", "What describes software?"), ("assistant", "Text: the lazy dog."))
ONE_TURN = conv(("user", "Hello! How can I help"), ("assistant", "quick brown fox."))


@pytest.fixture(scope="module")
def bos_tokenizer():
    """The tiny BPE with a post-processor that adds BOS, as Llama 2's tokenizer does."""
    from tokenizers.processors import TemplateProcessing

    tok = train_tiny_tokenizer()
    bos = tok.convert_tokens_to_ids("<s>")
    tok._tokenizer.post_processor = TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bos)])
    return tok


class Env:
    def __init__(self, tiny, bos_tok, deepseek):
        self.tiny, self.bos_tok, self.deepseek = tiny, bos_tok, deepseek
        self._panicky = None

    @property
    def panicky(self):
        if self._panicky is None:
            self._panicky = train_panicky_tokenizer()
        return self._panicky

    def setup(self, template=CHATML, tok=None) -> ChatSetup:
        return ChatSetup(tok or self.tiny, template, "override", "tiny")


@pytest.fixture(scope="module")
def env(tiny_tokenizer, bos_tokenizer, deepseek_setup) -> Env:
    return Env(tiny_tokenizer, bos_tokenizer, deepseek_setup)


def run(setup: ChatSetup, convs, thresholds: Thresholds = Thresholds(), **opts) -> list[Finding]:
    return run_checks(convs, setup, LabelOptions(**opts), thresholds=thresholds)


def codes(findings) -> list[str]:
    return [f.code for f in findings]


def only(findings, code) -> list[Finding]:
    return [f for f in findings if f.code == code]


def sample_of(setup, c, **opts):
    samples, errors = LabelEngine(setup).build([c], LabelOptions(**opts))
    assert not errors
    return samples[0]


# --- every check, both ways -------------------------------------------------------------------------------------

LONG_PROMPT = "Hello! How can I help you today? I have chicken, bell peppers, and rice. " * 10


def _out_of_vocab(env: Env, bad: bool) -> list[Finding]:
    setup = env.setup()
    s = sample_of(setup, ONE_TURN)
    if bad:
        labels = list(s.labels)
        labels[-1] = len(env.tiny) + 5
        s = replace(s, labels=labels)
    return check_sample(s, ONE_TURN, CheckContext(setup))


def _unverified(env: Env, bad: bool) -> list[Finding]:
    """A sample whose labels were corrupted after building (one answer token set to -100): only the verifier,
    which never looks at the engine's spans, can tell."""
    setup = env.setup()
    s = sample_of(setup, ONE_TURN)
    if bad:
        labels = list(s.labels)
        first = next(k for k, lab in enumerate(labels) if lab != IGNORE_INDEX)
        labels[first] = IGNORE_INDEX
        s = replace(s, labels=labels)
    return verification_findings(s, ONE_TURN, CheckContext(setup))


def _call_conv(arguments) -> Conversation:
    call = {"type": "function", "function": {"name": "lookup", "arguments": arguments}}
    return Conversation("t", [Message("user", "Hello! How can I help"), Message("assistant", "", tool_calls=[call]),
                              Message("tool", "apples and pears 7"), Message("assistant", "Text: the lazy dog.")])


TOOL_LEAK = conv(("user", "Hello! How can I help"), ("assistant", "The quick brown fox."), ("tool", "apples and pears"),
                 ("assistant", "Text: the lazy dog."))
REASONING = Conversation("r", [Message("user", "Hello! How can I help"),
                               Message("assistant", "The quick brown fox.", reasoning="The text: apples and pears.")])


def _rejected(env: Env, bad: bool) -> list[Finding]:
    items = [Rejected("r-1", Source("d.jsonl", line=1), ["line 1: invalid JSON"])] if bad else [ONE_TURN]
    return [f for oc in evaluate(items, CheckContext(env.setup())) for f in oc.findings]


def _no_records(env: Env, bad: bool) -> list[Finding]:
    report = Report().add_all(iter_outcomes([] if bad else [ONE_TURN], CheckContext(env.setup())))
    return [Finding(d["code"], d["severity"], d["message"], hint=d["hint"]) for s in report.fired() for d in s.first]


# A generation prompt that only inference sees, and on which the panicky tokenizer panics: the sample builds, the
# train/inference check cannot tokenize its prompt.
PANIC_PROMPT = CHATML.replace("'<|im_start|>assistant\n' }}{% endif %}",
                              "'<|im_start|>assistant\n" + PANIC_TEXT + "' }}{% endif %}")


# tools: a template that writes them in a system block, and one (Phi-4-mini-like) that iterates them unguarded and
# writes a tool preamble even for an empty list
TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "Find a word.",
                                           "parameters": {"type": "object", "properties": {}}}}]
WITH_TOOLS = ("{% if tools %}{{ '<|im_start|>system\nTools: ' + (tools | tojson) + '<|im_end|>\n' }}{% endif %}"
              + CHATML)
UNGUARDED_TOOLS = ("{{ '<|im_start|>system\nYou have some tools:' }}{% for t in tools %}{{ ' ' + t.function.name }}"
                   "{% endfor %}{{ '<|im_end|>\n' }}" + CHATML)


def _with_tools(c: Conversation, tools=TOOLS) -> Conversation:
    return replace(c, tools=tools)


CASES = {
    # code: (fires, stays quiet)
    "special-token-in-text": (lambda e: run(e.setup(), [conv(("user", "Say <|im_end|> now"), ("assistant", "Yo"))]),
                              lambda e: run(e.setup(), [conv(("user", "Say im_end now"), ("assistant", "Yo"))])),
    "tokenizer-error": (lambda e: run(e.setup(CHATML, e.panicky), [conv(("user", PANIC_TEXT), ("assistant", "Yo"))]),
                        lambda e: run(e.setup(CHATML, e.panicky), [ONE_TURN])),
    "check-failed": (lambda e: run(e.setup(PANIC_PROMPT, e.panicky), [ONE_TURN]),
                     lambda e: run(e.setup(CHATML, e.panicky), [ONE_TURN])),
    "no-records": (lambda e: _no_records(e, True), lambda e: _no_records(e, False)),
    "record-rejected": (lambda e: _rejected(e, True), lambda e: _rejected(e, False)),
    "template-error": (lambda e: run(e.setup(NO_SYSTEM), [conv(("system", "Be brief."), ("user", "Hi"),
                                                               ("assistant", "Yo"))]),
                       lambda e: run(e.setup(NO_SYSTEM), [ONE_TURN])),
    "role-order": (lambda e: run(e.setup(), [conv(("user", "Hi"), ("user", "Hello?"), ("assistant", "Yo"))]),
                   lambda e: run(e.setup(), [TWO_TURNS])),
    "unsupported-role": (lambda e: run(e.setup(NO_TOOL), [conv(("user", "Hello! How can I help"),
                                                               ("assistant", "The quick brown fox."),
                                                               ("tool", "apples and pears 7"),
                                                               ("assistant", "Text: the lazy dog."))]),
                         lambda e: run(e.setup(), [conv(("user", "Hello! How can I help"),
                                                        ("assistant", "The quick brown fox."),
                                                        ("tool", "apples and pears 7"),
                                                        ("assistant", "Text: the lazy dog."))])),
    "empty-message": (lambda e: run(e.setup(), [conv(("user", "Hi"), ("assistant", " "))]),
                      lambda e: run(e.setup(), [ONE_TURN])),
    "no-trainable-tokens": (lambda e: run(e.setup(), [Conversation("c", [Message("user", "Hi"), Message(
                                "assistant", "Yo", trainable=False, loss_weight=0.0)])]),
                            lambda e: run(e.setup(), [ONE_TURN])),
    "truncation-removes-labels": (lambda e: run(e.setup(), [TWO_TURNS], max_length=5),
                                  lambda e: run(e.setup(), [TWO_TURNS], max_length=20)),
    "truncation-cuts-answer": (lambda e: run(e.setup(), [TWO_TURNS], max_length=20),
                               lambda e: run(e.setup(), [TWO_TURNS], max_length=1000)),
    "truncated": (lambda e: run(e.setup(), [conv(("user", LONG_PROMPT), ("assistant", "Yo"))], max_length=20,
                                truncation_side="left"),
                  lambda e: run(e.setup(), [conv(("user", LONG_PROMPT), ("assistant", "Yo"))])),
    "eot-not-labeled": (lambda e: run(e.setup(), [TWO_TURNS], label_eot=False),
                        lambda e: run(e.setup(), [TWO_TURNS])),
    "pad-equals-eos": (lambda e: run(e.deepseek, [TWO_TURNS]), lambda e: run(e.setup(), [TWO_TURNS])),
    "double-bos": (lambda e: run(e.setup(BOS, e.bos_tok), [ONE_TURN]),
                   lambda e: run(e.setup(CHATML, e.bos_tok), [ONE_TURN])),
    # the completion-only collator with an instruction template trains a tool result: it masks only from each
    # user marker to the next response marker
    "label-leak": (lambda e: run(e.setup(), [TOOL_LEAK], strategy="response-template",
                                 instruction_template="<|im_start|>user\n"),
                   lambda e: run(e.setup(), [TOOL_LEAK])),
    "boundary-straddle": (lambda e: run(e.setup(SPACE), [ONE_TURN]), lambda e: run(e.setup(), [ONE_TURN])),
    "train-inference-mismatch": (lambda e: run(e.setup(THINK), [TWO_TURNS]), lambda e: run(e.setup(), [TWO_TURNS])),
    "generation-mask-mismatch": (lambda e: run(e.setup(GEN_CONTENT_ONLY), [TWO_TURNS]),
                                 lambda e: run(e.setup(GEN_WITH_EOT), [TWO_TURNS])),
    "response-marker-not-found": (lambda e: run(e.setup(), [ONE_TURN], strategy="response-template",
                                                response_template="ant\n"),
                                  lambda e: run(e.setup(), [ONE_TURN], strategy="response-template")),
    "low-trainable-share": (lambda e: run(e.setup(), [conv(("user", LONG_PROMPT), ("assistant", "Yo"))]),
                            lambda e: run(e.setup(), [conv(("user", LONG_PROMPT), ("assistant", "Yo"))],
                                          thresholds=Thresholds(min_trainable_share=0.01))),
    "label-out-of-vocab": (lambda e: _out_of_vocab(e, True), lambda e: _out_of_vocab(e, False)),
    "label-verification": (lambda e: _unverified(e, True), lambda e: _unverified(e, False)),
    "response-marker-last-match": (lambda e: run(e.setup(), [TWO_TURNS], strategy="response-template"),
                                   lambda e: run(e.setup(), [ONE_TURN], strategy="response-template")),
    "eot-appended": (lambda e: run(e.setup(NEXT_ROLE), [TWO_TURNS]), lambda e: run(e.setup(), [TWO_TURNS])),
    "reasoning-dropped": (lambda e: run(e.setup(), [REASONING]), lambda e: run(e.setup(WITH_THINK), [REASONING])),
    "tool-call-adapted": (lambda e: run(e.setup(ITEMS), [_call_conv('{"fruit": "plums"}')]),
                          lambda e: run(e.setup(ITEMS), [_call_conv({"fruit": "plums"})])),
    "tools-not-rendered": (lambda e: run(e.setup(), [_with_tools(TWO_TURNS)], strategy="split-turns"),
                           lambda e: run(e.setup(WITH_TOOLS), [_with_tools(TWO_TURNS)], strategy="split-turns")),
    "tools-empty-list": (lambda e: run(e.setup(UNGUARDED_TOOLS), [ONE_TURN]),
                         lambda e: run(e.setup(UNGUARDED_TOOLS), [_with_tools(ONE_TURN)])),
    # packing (inspector.train.packing.check_packing), on real samples of the tiny tokenizer
    "cross-sample-prediction": (lambda e: _packed(e, "all-tokens"), lambda e: _packed(e, "all-tokens", True)),
    "cross-sample-attention": (lambda e: _packed(e), lambda e: _packed(e, padding_free=True)),
    "packing-truncates": (lambda e: _packed(e, max_length=10), lambda e: _packed(e, max_length=10,
                                                                                 strategy="bfd_split")),
    "packing-splits-sample": (lambda e: _packed(e, max_length=10, strategy="bfd_split"),
                              lambda e: _packed(e, max_length=10)),
    "packing-label-masked": (lambda e: _packed(e, "all-tokens", True), lambda e: _packed(e, padding_free=True)),
    "packing-padding": (lambda e: _packed(e, max_length=30), lambda e: _packed(e, max_length=30, padding_free=True)),
    "packing-attention": (lambda e: _packed(e), lambda e: _packed(e, max_length=5)),
}


def _packed(env: Env, labels: str = "assistant-only", padding_free: bool = False, **pack_opts) -> list[Finding]:
    from inspector.train.packing import PackOptions, check_packing, pack

    convs = [TWO_TURNS, conv(("user", "Hello! How can I help"), ("assistant", "quick brown fox."), id="d")]
    samples, errors = LabelEngine(env.setup()).build(convs, LabelOptions(strategy=labels))
    assert not errors
    return check_packing(pack(samples, PackOptions(**{"max_length": 200, "padding_free": padding_free,
                                                      **pack_opts})))


def test_every_check_has_a_case_both_ways():
    assert set(CASES) == set(CHECKS)


@pytest.mark.parametrize("code", list(CASES))
def test_check_fires(env, code):
    findings = CASES[code][0](env)
    assert code in codes(findings)
    f = only(findings, code)[0]
    assert f.severity == CHECKS[code].severity
    assert f.message and "\n" not in f.message
    assert f.hint


@pytest.mark.parametrize("code", list(CASES))
def test_check_stays_quiet(env, code):
    assert code not in codes(CASES[code][1](env))


def test_registry_is_complete():
    for code, c in CHECKS.items():
        assert c.code == code and c.severity in SEVERITIES
        assert c.title and c.description and c.hint


# --- exact behaviour of the headline checks ---------------------------------------------------------------------

def test_clean_chatml_conversation_has_no_findings(env):
    assert run(env.setup(), [TWO_TURNS]) == []


def test_eot_not_labeled_points_at_each_end_marker(env):
    setup = env.setup()
    s = sample_of(setup, TWO_TURNS, label_eot=False)
    im_end = env.tiny.convert_tokens_to_ids("<|im_end|>")
    ends = [i for i, t in enumerate(s.input_ids) if t == im_end]
    # the markers after the two answers: message 1 and message 3 (the user turns' markers are not turns)
    answer_ends = [ends[1], ends[3]]
    found = only(check_sample(s, TWO_TURNS, CheckContext(setup, LabelOptions(label_eot=False))), "eot-not-labeled")
    assert [(f.message_index, f.positions) for f in found] == [(1, [answer_ends[0]]), (3, [answer_ends[1]])]
    assert "'<|im_end|>'" in found[0].message


# plain text turns: nothing anywhere closes an answer
PLAIN_TURNS = ("{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\n\n' }}{% endfor %}"
               "{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}")


def test_open_last_answer_gets_the_templates_closing_appended(env):
    setup = env.setup(NO_EOT)
    findings = run(setup, [TWO_TURNS])
    # answer 1 is closed by the next turn's "<|im_start|>" (labeled, GLM style); the open last answer gets it appended
    assert only(findings, "eot-not-labeled") == []
    (f,) = only(findings, "eot-appended")
    assert f.message_index == 3 and f.details["text"] == "<|im_start|>"
    s = sample_of(setup, TWO_TURNS)
    start_id = env.tiny.convert_tokens_to_ids("<|im_start|>")
    assert s.input_ids[-1] == start_id and s.labels[-1] == start_id  # appended after the answer, labeled
    assert any("appended '<|im_start|>'" in n for n in s.notes)
    # not labeling end-of-turn tokens appends nothing
    assert only(run(setup, [TWO_TURNS], label_eot=False), "eot-appended") == []


def test_template_that_closes_nothing_fires_unless_session_appends_eos(env):
    setup = env.setup(PLAIN_TURNS)
    found = only(run(setup, [TWO_TURNS]), "eot-not-labeled")
    assert [f.message_index for f in found] == [1, 3]
    assert "writes no end-of-turn marker" in found[0].message
    assert only(run(setup, [TWO_TURNS]), "eot-appended") == []
    assert only(run(setup, [TWO_TURNS], strategy="session"), "eot-not-labeled") == []


def test_last_turn_strategy_does_not_ask_for_untrained_turn_markers(env):
    assert only(run(env.setup(), [TWO_TURNS], strategy="last-turn"), "eot-not-labeled") == []


def test_pad_equals_eos_lists_every_labeled_eos(env):
    setup = env.deepseek
    s = sample_of(setup, TWO_TURNS)
    eos = setup.tokenizer.eos_token_id
    assert setup.tokenizer.pad_token_id == eos
    expected = [i for i, lab in enumerate(s.labels) if lab == eos]
    assert len(expected) == 2  # one EOS after each answer, both labeled
    (f,) = only(check_sample(s, TWO_TURNS, CheckContext(setup)), "pad-equals-eos")
    assert f.positions == expected
    assert f"position(s) {expected[0]}, {expected[1]}" in f.message


def test_double_bos(env):
    assert tokenizer_adds_bos(env.bos_tok) and not tokenizer_adds_bos(env.tiny)
    (f,) = only(run(env.setup(BOS, env.bos_tok), [ONE_TURN]), "double-bos")
    assert f.positions == [0] and "tokenizer(text)" in f.message
    (f,) = only(run(env.setup(TWO_BOS), [ONE_TURN]), "double-bos")
    assert f.positions == [0, 1] and "two BOS" in f.message
    # the template writes BOS, the tokenizer adds none (the packaged DeepSeek setup): quiet
    assert only(run(env.deepseek, [ONE_TURN]), "double-bos") == []


def test_label_leak_names_the_leaked_turn_and_its_tokens(env):
    setup = env.setup()
    opts = dict(strategy="response-template", instruction_template="<|im_start|>user\n")
    s = sample_of(setup, TOOL_LEAK, **opts)
    (f,) = only(check_sample(s, TOOL_LEAK, CheckContext(setup, LabelOptions(**opts))), "label-leak")
    expected = [i for i in range(len(s.input_ids)) if s.segments[i] == "tool" and s.message_index[i] == 2]
    assert f.message_index == 2 and f.positions == expected and "tool message 2" in f.message
    assert all(s.labels[i] != IGNORE_INDEX for i in expected)


def test_response_marker_alone_trains_only_the_last_answer_as_trls_collator(env):
    setup = env.setup()
    s = sample_of(setup, TWO_TURNS, strategy="response-template")
    labeled = [i for i, lab in enumerate(s.labels) if lab != IGNORE_INDEX]
    # only the last answer (and its <|im_end|>, "\n") is trained: the collator keeps the LAST marker match
    assert env.tiny.decode([s.input_ids[i] for i in labeled]) == "Text: the lazy dog.<|im_end|>\n"
    (f,) = only(run(setup, [TWO_TURNS], strategy="response-template"), "response-marker-last-match")
    assert f.details == {"matches": 2, "kept": s.extra["marker_positions"][1]}
    assert "only the last answer is trained" in f.message and "1 earlier answer is silently dropped" in f.message
    assert f.positions == s.extra["marker_positions"][:1]


def test_label_leak_respects_a_message_marked_trainable(env):
    c = Conversation("c", [Message("user", "Hello! How can I help", trainable=True), Message("assistant", "Yo")])
    findings = run(env.setup(), [c])
    assert only(findings, "label-leak") == []
    assert only(run(env.setup(), [c], strategy="all-tokens"), "label-leak") == []


def test_boundary_straddle_and_mismatch_on_a_space_header(env):
    setup = env.setup(SPACE)
    s = sample_of(setup, ONE_TURN)
    k = next(i for i, (a, b) in enumerate(s.offsets.tolist()) if s.text[a:b] == " quick")
    findings = run(setup, [ONE_TURN])
    (st,) = only(findings, "boundary-straddle")
    assert st.positions == [k] and "' quick'" in st.message and "(' ' | 'quick')" in st.message
    (mm,) = only(findings, "train-inference-mismatch")
    assert mm.positions == [k]
    assert mm.details == {"position": k, "inference_token": env.tiny.convert_tokens_to_ids("Ġ"),
                          "training_token": s.input_ids[k]}


def test_train_inference_mismatch_reports_first_diverging_token(env):
    setup = env.setup(THINK)
    s = sample_of(setup, TWO_TURNS)
    found = only(run(setup, [TWO_TURNS]), "train-inference-mismatch")
    assert [f.message_index for f in found] == [1, 3]
    # the prompt ends "<|im_start|>assistant\n<think>\n": it parts from the training text where the answer starts
    first_answer = next(i for i, (a, b) in enumerate(s.offsets.tolist()) if s.text[a:b] == "The")
    assert found[0].positions == [first_answer]
    assert found[0].details["training_token"] == s.input_ids[first_answer]
    assert env.tiny.decode([found[0].details["inference_token"]]) == "<"
    # split-turns: each sample checks only its own turn
    split = only(run(setup, [TWO_TURNS], strategy="split-turns"), "train-inference-mismatch")
    assert [(f.sample_id, f.message_index) for f in split] == [("c#turn0", 1), ("c#turn1", 3)]


def test_train_inference_quiet_on_packaged_default(env):
    assert only(run(env.deepseek, [TWO_TURNS]), "train-inference-mismatch") == []


def test_generation_mask_mismatch_points_at_the_end_markers(env):
    setup = env.setup(GEN_CONTENT_ONLY)
    s = sample_of(setup, TWO_TURNS)
    im_end = env.tiny.convert_tokens_to_ids("<|im_end|>")
    labeled_ends = [i for i, t in enumerate(s.input_ids) if t == im_end and s.labels[i] != IGNORE_INDEX]
    (f,) = only(run(setup, [TWO_TURNS]), "generation-mask-mismatch")
    assert f.positions == labeled_ends


def test_response_marker_not_found_shows_both_tokenizations(env):
    (f,) = only(run(env.setup(), [ONE_TURN], strategy="response-template", response_template="ant\n"),
                "response-marker-not-found")
    alone = env.tiny.encode("ant\n", add_special_tokens=False)
    assert f.details["marker_ids"] == alone
    assert f.details["in_context_ids"] != alone
    assert "no-trainable-tokens" in codes(run(env.setup(), [ONE_TURN], strategy="response-template",
                                              response_template="ant\n"))


def test_response_marker_cut_off_by_truncation(env):
    findings = run(env.setup(), [ONE_TURN], strategy="response-template", response_template="ant\n", max_length=5)
    (f,) = only(findings, "response-marker-not-found")
    assert f.positions == [] and "after the tokens kept by max_length" in f.message


def test_truncation_counts_what_was_lost(env):
    s = sample_of(env.setup(), TWO_TURNS)
    total = s.num_trainable
    (f,) = only(run(env.setup(), [TWO_TURNS], max_length=20), "truncation-cuts-answer")
    kept = sum(1 for lab in s.labels[:20] if lab != IGNORE_INDEX)
    assert f.details["labeled_cut"] == total - kept
    assert f"cut {total - kept} of {total} labeled tokens" in f.message
    findings = run(env.setup(), [TWO_TURNS], max_length=5)
    (g,) = only(findings, "truncation-removes-labels")
    assert f"removed all {total} labeled tokens" in g.message
    (h,) = only(findings, "no-trainable-tokens")
    assert "truncation" in h.message
    assert only(findings, "eot-not-labeled") == []  # the cut is reported once, by truncation


def test_template_error_carries_the_templates_message(env):
    (f,) = only(run(env.setup(NO_SYSTEM), [conv(("system", "Be brief."), ("user", "Hi"), ("assistant", "Yo"))]),
                "template-error")
    assert "System role not supported" in f.message and f.conversation_id == "c"


def test_dropped_tool_message_is_reported_once_per_record(env):
    c = conv(("user", "Hello! How can I help"), ("assistant", "The quick brown fox."), ("tool", "apples and pears 7"),
             ("assistant", "Text: the lazy dog."), ("user", "more?"), ("assistant", "Probe answer"))
    found = only(run(env.setup(NO_TOOL), [c], strategy="split-turns"), "unsupported-role")
    assert [(f.message_index, f.code) for f in found] == [(2, "unsupported-role")]


def test_conversation_checks():
    bad = Conversation("x", [Message("user", "Hi"), Message("system", "late"), Message("narrator", "Once"),
                             Message("tool", "42"), Message("assistant", ""), Message("assistant", "ok"),
                             Message("user", "bye")])
    found = [(f.code, f.message_index) for f in check_conversation(bad)]
    assert found == [("unsupported-role", 2), ("empty-message", 4), ("role-order", 1), ("role-order", 3),
                     ("role-order", 5), ("role-order", 6)]
    ok = Conversation("y", [Message("system", "s"), Message("user", "q"),
                            Message("assistant", "", tool_calls=[{"type": "function", "function": {"name": "f"}}]),
                            Message("tool", "42"), Message("assistant", "it is 42")])
    assert check_conversation(ok) == []


def test_low_share_threshold_is_configurable(env):
    c = conv(("user", LONG_PROMPT), ("assistant", "Yo"))
    (f,) = only(run(env.setup(), [c]), "low-trainable-share")
    s = sample_of(env.setup(), c)
    assert f.details == {"trainable": s.num_trainable, "tokens": s.num_tokens,
                         "share": round(s.num_trainable / s.num_tokens, 6)}


def test_skip_turns_a_check_off(env):
    findings = run_checks([TWO_TURNS], env.deepseek, skip=["pad-equals-eos"])
    assert "pad-equals-eos" not in codes(findings)
    with pytest.raises(ValueError, match="Unknown check code"):
        CheckContext(env.deepseek, skip=["no-such-check"])


# --- outcomes, accept rule, report -------------------------------------------------------------------------------

def test_split_turns_record_is_rejected_as_a_whole(env):
    c = conv(("user", "Hi"), ("assistant", "Yo"), ("user", "More"), ("assistant", "No"))
    full, _ = LabelEngine(env.setup()).build([c], LabelOptions(strategy="split-turns"))
    limit = len(full[0].input_ids)  # turn 0 fits, turn 1's answer (at its end) is cut entirely
    (oc,) = evaluate([c], CheckContext(env.setup(), LabelOptions(strategy="split-turns", max_length=limit)),
                     keep_rows=True)
    assert oc.num_samples == 2 and not oc.accepted
    assert [r["id"] for r in oc.rows] == ["c#turn0", "c#turn1"]
    errors = [f for f in oc.findings if f.severity == "error"]
    assert [(f.code, f.sample_id) for f in errors] == [("no-trainable-tokens", "c#turn1"),
                                                      ("truncation-removes-labels", "c#turn1")]
    assert oc.reasons() == [f"{f.code}: {f.message} [c#turn1]" for f in errors]


def test_duplicate_ids_in_a_chunk_pair_samples_with_their_own_conversation(env):
    a = conv(("user", "Hi"), ("assistant", "Yo"), id="same")
    b = Conversation("same", [Message("user", "Hi"), Message("assistant", "No", trainable=False)])
    outs = evaluate([a, b], CheckContext(env.setup()))
    assert [oc.accepted for oc in outs] == [True, False]


def test_report_counts_shares_and_examples(env):
    items = [TWO_TURNS, conv(("user", "Hi"), ("user", "Hi?"), ("assistant", "Yo"), id="uu"),
             Rejected("bad", None, ["line 3: invalid JSON"]),
             Conversation("zero", [Message("user", "Hi"), Message("assistant", "Yo", trainable=False)])]
    report = Report().add_all(iter_outcomes(items, CheckContext(env.setup()), chunk_size=2))
    assert (report.records, report.conversations, report.rejected_by_loader, report.samples) == (4, 3, 1, 3)
    assert (report.accepted_records, report.rejected_records) == (2, 2)
    assert report.checks["role-order"].findings == 1 and report.checks["role-order"].examples == ["uu"]
    assert report.share("record-rejected") == 0.25
    assert [s.code for s in report.fired()] == ["record-rejected", "no-trainable-tokens", "role-order"]
    assert report.fails("error") and report.fails("warning") and not report.fails("never")
    d = report.to_dict()
    assert d["totals"]["findings"] == {"error": 2, "warning": 1, "info": 0}
    assert d["checks"]["no-trainable-tokens"]["examples"] == ["zero"]
    assert d["checks"]["no-trainable-tokens"]["first"][0]["code"] == "no-trainable-tokens"


def test_report_fails_on_warning_only_when_asked(env):
    report = Report().add_all(iter_outcomes([conv(("user", "Hi"), ("user", "Hi?"), ("assistant", "Yo"))],
                                            CheckContext(env.setup())))
    assert not report.fails("error") and report.fails("warning")


def test_positions_are_capped_but_counted(env):
    c = conv(("user", "Hi"), ("assistant", "Yo"), ("tool", LONG_PROMPT), ("assistant", "Yo"))
    th = Thresholds(max_positions=3)
    (f,) = only(run(env.setup(), [c], thresholds=th, strategy="response-template",
                    instruction_template="<|im_start|>user\n"), "label-leak")
    assert len(f.positions) == 3 and f.positions == sorted(f.positions)
    n = int(f.message.split(": ")[1].split(" labeled")[0])
    assert n > 3


def test_findings_do_not_depend_on_chunking(env):
    items = [TWO_TURNS, ONE_TURN, conv(("user", "Hi"), ("user", "Hi?"), ("assistant", "Yo"), id="uu")] * 3
    ctx = CheckContext(env.setup(SPACE))
    one = [f.to_dict() for oc in iter_outcomes(items, ctx, chunk_size=1) for f in oc.findings]
    many = [f.to_dict() for oc in iter_outcomes(items, ctx, chunk_size=256) for f in oc.findings]
    assert one == many and one


def test_checks_modules_import_no_streamlit():
    from pathlib import Path

    import inspector.checks as package

    modules = sorted(Path(package.__file__).parent.glob("*.py"))
    assert len(modules) > 1  # the package and its family modules
    for path in modules:
        assert "streamlit" not in path.read_text(encoding="utf-8"), path


def test_positions_are_within_the_sample(env):
    for code, (fire, _quiet) in CASES.items():
        for f in fire(env):
            assert all(isinstance(p, int) and p >= 0 for p in f.positions), (code, f)


def test_tools_the_template_never_writes_and_the_empty_list_fallback_are_named(env):
    """Issue 21: glaive-style records (tools) on a ChatML template without tool support; a template that raises on
    tools=None is rendered with tools=[] and the sample says so (its preamble is in the training text)."""
    (f,) = only(run(env.setup(), [_with_tools(ONE_TURN, TOOLS * 2)]), "tools-not-rendered")
    assert f.severity == "warning" and "2 tools" in f.message and "never sees declared" in f.message
    quiet = run(env.setup(WITH_TOOLS), [_with_tools(ONE_TURN)])
    assert "tools-not-rendered" not in codes(quiet) and "tools-empty-list" not in codes(quiet)
    (oc,) = evaluate([ONE_TURN], CheckContext(env.setup(UNGUARDED_TOOLS)), keep_rows=True)
    (f,) = only(oc.findings, "tools-empty-list")
    assert oc.accepted and f.severity == "info" and "tools=[]" in f.message and f.details["error"]
    (s,) = LabelEngine(env.setup(UNGUARDED_TOOLS)).build_one(ONE_TURN)
    assert s.text.startswith("<|im_start|>system\nYou have some tools:<|im_end|>") and s.extra["tools_fallback"]


def test_split_turns_leaves_out_answers_marked_not_to_train(env):
    c = Conversation("h", [Message("user", "Hi"), Message("assistant", "Yo", trainable=False, loss_weight=0.0),
                           Message("user", "More"), Message("assistant", "Sure")])
    (oc,) = evaluate([c], CheckContext(env.setup(), LabelOptions(strategy="split-turns")), keep_rows=True)
    assert oc.accepted and [r["id"] for r in oc.rows] == ["h#turn1"] and oc.num_samples == 1
    only_masked = Conversation("m", [Message("user", "Hi"), Message("assistant", "Yo", trainable=False)])
    (oc,) = evaluate([only_masked], CheckContext(env.setup(), LabelOptions(strategy="split-turns")))
    assert not oc.accepted and codes(oc.findings) == ["no-trainable-tokens"]


def test_mistral_inst_marker_default_is_not_found_in_context(corpus):
    """The classic completion-only collator failure: with no generation prompt (Mistral), the marker defaults to the
    header the template always writes, '[/INST]', whose SentencePiece ids alone differ from its ids in context."""
    from inspector.template.tokenizer import load_setup

    setup = load_setup(str(corpus / "tokenizers" / "llama-spm"),
                       str(corpus / "templates" / "mistralai-Ministral-3-14B-Reasoning-2512.jinja"))
    conv = Conversation("m", [Message("user", "Name a colour."), Message("assistant", "Blue.")])
    [sample] = LabelEngine(setup).build_one(conv, LabelOptions(strategy="response-template"))
    assert sample.extra["response_template"] == "[/INST]"
    assert sample.extra["marker_found"] is False
    assert all(label == IGNORE_INDEX for label in sample.labels)
    marker_alone = setup.tokenizer.encode("[/INST]", add_special_tokens=False)
    assert sample.extra["marker_ids"] == marker_alone
    from inspector.labels.response_template import find_subsequence

    assert find_subsequence(sample.input_ids, marker_alone) == -1
    assert find_subsequence(sample.input_ids, marker_alone[1:]) > 0  # only the first piece differs in context


def test_tool_calls_the_template_does_not_write_are_reported(env):
    # reads tool_calls (so they are not passed as text) but never writes them
    ignores_calls = ("{% for m in messages %}{% if m.tool_calls %}{% endif %}"
                     "{{ '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' }}{% endfor %}")
    found = only(run(env.setup(ignores_calls), [_call_conv({"fruit": "plums"})]), "unsupported-role")
    assert [f.message_index for f in found] == [1]
    assert "tool calls of message 1 are not in the rendered text" in found[0].message
    assert only(run(env.setup(ITEMS), [_call_conv({"fruit": "plums"})]), "unsupported-role") == []
