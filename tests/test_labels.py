"""The label engine under every strategy, with tokenizers trained in-process and inline templates.

The checker ``assistant_only_problems`` is the independent reference the corpus conformance test reuses: it never
looks at the engine's own spans. It finds each message's text in the render itself and checks, from the labels
and token offsets alone, that assistant text is trained, that no user/system/tool character sits in a labeled
token unless that token is reported as straddling, that each turn's end-of-turn marker is trained and nothing after
it, and (where the conversation renders prefix-stably) that training starts exactly where the generation prompt
ends, as at inference.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pytest

from inspector.constants import IGNORE_INDEX
from inspector.conversations import Conversation, Message
from inspector.errors import ChatTemplateError, RenderError
from inspector.labels.engine import (
    CHATGLM2_FORMAT,
    STRATEGIES,
    LabelEngine,
    LabelOptions,
    Sample,
    tokenize_batch,
    truncate,
)
from inspector.labels.response_template import find_subsequence, response_template_labels
from inspector.template.tokenizer import ChatSetup

GOLDEN = Path(__file__).parent / "golden"


# --- the reference checker ---------------------------------------------------------------------------------------

def label_mask(sample: Sample) -> np.ndarray:
    return np.asarray(sample.labels) != IGNORE_INDEX


def char_cover(sample: Sample, token_mask: np.ndarray) -> np.ndarray:
    """Per character of ``sample.text``: does a token selected by ``token_mask`` cover it?"""
    n = len(sample.text)
    offs = np.clip(np.asarray(sample.offsets, dtype=np.int64).reshape(-1, 2), 0, n)
    diff = np.zeros(n + 1, dtype=np.int64)
    sel = offs[np.asarray(token_mask, dtype=bool)]
    np.add.at(diff, sel[:, 0], 1)
    np.add.at(diff, sel[:, 1], -1)
    return np.cumsum(diff)[:n] > 0


def labeled_runs(sample: Sample) -> list[tuple[int, int]]:
    """Contiguous runs [a, b) of labeled token positions. Example: labels [-100, 5, 6, -100, 7] -> [(1, 3), (4, 5)]."""
    m = np.concatenate(([0], label_mask(sample).astype(np.int8), [0]))
    d = np.diff(m)
    return list(zip(np.nonzero(d == 1)[0].tolist(), np.nonzero(d == -1)[0].tolist()))


def labeled_text(sample: Sample) -> list[str]:
    """The rendered text under each labeled run (from token offsets)."""
    offs = np.asarray(sample.offsets)
    return [sample.text[offs[a][0]:offs[b - 1][1]] for a, b in labeled_runs(sample)]


def _arg_values(tool_calls: list[dict] | None) -> list[str]:
    out = []
    for call in tool_calls or []:
        args = call.get("function", call).get("arguments")
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                args = {}
        out += [v for v in (args or {}).values() if isinstance(v, str) and len(v) >= 4]
    return out


def find_pieces(text: str, messages: Sequence[Message]) -> list[list[tuple[str, int, int]]]:
    """Per message, where its texts sit in ``text``, found by plain search in message order: (kind, start, end).

    Kinds: "content", "reasoning", "call" (a tool-call argument value). Texts the template does not render are absent.
    """
    out: list[list[tuple[str, int, int]]] = []
    cursor = 0
    for m in messages:
        found = []
        wanted = [("reasoning", (m.reasoning or "").strip()), ("content", (m.content or "").strip())]
        wanted += [("call", v) for v in _arg_values(m.tool_calls)] if m.role == "assistant" else []
        for kind, piece in wanted:
            if not piece:
                continue
            # tool results are often written JSON-escaped ("{\"temperature\": 7}") or re-serialized
            for form in (piece, json.dumps(piece)[1:-1]):
                pos = text.find(form, cursor)
                if pos >= 0:
                    found.append((kind, pos, pos + len(form)))
                    break
        out.append(found)
        if found:
            cursor = max(e for _, _, e in found)
    return out


def assistant_only_problems(sample: Sample, messages: Sequence[Message], *, expected_eot: Sequence[str] = (),
                            prefix_render: Callable[[int], str] | None = None) -> list[str]:
    """Everything wrong with an ``assistant-only`` sample, as sentences (empty list: correct).

    ``expected_eot``: the marker(s) that end an assistant turn in this template (any one of them);
    ``prefix_render(i, gen)`` renders ``messages[:i]`` with or without the generation prompt, for the start-of-turn
    check: where the conversation so far renders as a prefix of the full text, the generation prompt must not be
    trained and the first character after it must be (the model sees the prompt and generates the rest).
    """
    problems: list[str] = []
    ids, labels, text = sample.input_ids, sample.labels, sample.text
    if len(ids) != len(labels):
        return [f"{len(labels)} labels for {len(ids)} input ids"]
    wrong = [k for k, (i, lab) in enumerate(zip(ids, labels)) if lab != IGNORE_INDEX and lab != i]
    if wrong:
        problems.append(f"labels differ from input ids at {wrong[:5]}")
    lab = label_mask(sample)
    straddle = np.asarray(sample.straddles, dtype=bool)
    covered = char_cover(sample, lab)
    clean = char_cover(sample, lab & ~straddle)
    pieces = find_pieces(text, messages)
    starts = [min((s for _, s, _ in p), default=None) for p in pieces]
    ends = [max((e for _, _, e in p), default=None) for p in pieces]
    zones = np.zeros(len(text), dtype=bool)
    for i, m in enumerate(messages):
        if m.role != "assistant":
            for kind, s, e in pieces[i]:
                if clean[s:e].any():
                    problems.append(f"{m.role} text of message {i} is trained: {text[s:e][:40]!r}")
            continue
        if m.trainable is False:
            continue
        if (m.content or "").strip() and not any(k == "content" for k, _, _ in pieces[i]):
            problems.append(f"assistant content of message {i} not found in the render")
        for kind, s, e in pieces[i]:
            if not covered[s:e].all():
                problems.append(f"{kind} of assistant message {i} not fully trained: {text[s:e][:40]!r}")
        prev_end = max((e for e in ends[:i] if e is not None), default=0)
        nxt = min((s for s in starts[i + 1:] if s is not None), default=len(text))
        zones[prev_end:nxt] = True  # an answer with no text (its calls not rendered) may still train its closing
        if ends[i] is None:
            continue
        window = text[ends[i]:nxt]
        hits = [(window.find(mk), mk) for mk in expected_eot if mk in window]
        if not expected_eot and clean[ends[i]:nxt].any():
            # no end-of-turn marker: what follows the turn's text on the next line ("\n\nUser:") is not the turn
            last = ends[i] + int(np.nonzero(clean[ends[i]:nxt])[0][-1])
            if re.search(r"\n\s*\S", text[ends[i]:last + 1]):
                problems.append(f"text after assistant message {i} is trained: {text[ends[i]:last + 1][:30]!r}")
        if expected_eot and hits:
            pos, mk = min(hits, key=lambda h: (h[0] + len(h[1]), h[0]))
            a, b = ends[i] + pos, ends[i] + pos + len(mk)
            if not covered[a:b].all():
                problems.append(f"end-of-turn {mk!r} after assistant message {i} is not trained")
            after_next = messages[i + 1].role == "assistant" if i + 1 < len(messages) else False
            if clean[b:nxt].any() and not after_next:
                extra = text[b:nxt][np.nonzero(clean[b:nxt])[0][0]:][:30]
                problems.append(f"text after the end-of-turn of message {i} is trained: {extra!r}")
        if prefix_render is not None:
            try:
                before, prompt = prefix_render(i, False), prefix_render(i, True)
            except RenderError:
                before = prompt = ""
            if prompt and prompt.startswith(before) and text.startswith(prompt) and len(prompt) <= starts[i]:
                a = len(before.rstrip())
                if clean[a:len(prompt)].any():
                    problems.append(f"the generation prompt before assistant message {i} is trained: "
                                    f"{text[a:len(prompt)][:40]!r}")
                first = len(prompt) + (len(text[len(prompt):]) - len(text[len(prompt):].lstrip()))
                if first < len(text) and not covered[first]:
                    problems.append(f"assistant message {i} is not trained from the end of the generation prompt")
    outside = clean & ~zones
    if outside.any():
        k = int(np.nonzero(outside)[0][0])
        problems.append(f"trained text outside every assistant turn at char {k}: {text[k:k + 30]!r}")
    if sample.generation_mismatch:
        # The {% generation %} block may draw the line elsewhere in the markup (Laguna's block includes the
        # "<assistant>" header and the newline after the closing): reported, not wrong. A disagreement on message
        # text is wrong.
        offs = np.asarray(sample.offsets)
        text_chars = np.zeros(len(text), dtype=bool)
        for p in pieces:
            for _, s, e in p:
                text_chars[s:e] = True
        real = [p for p in sample.generation_mismatch if text_chars[offs[p][0]:offs[p][1]].any()]
        if real:
            problems.append(f"{{% generation %}} mask disagrees at tokens {real[:6]}: "
                            f"{[text[offs[p][0]:offs[p][1]] for p in real[:6]]}")
    return problems


def basic_problems(sample: Sample) -> list[str]:
    """Invariants of every strategy: one label per id, each label IGNORE_INDEX or the id itself, per-token lists
    aligned."""
    n = len(sample.input_ids)
    out = []
    if len(sample.labels) != n:
        out.append(f"{len(sample.labels)} labels for {n} ids")
    if any(lab != IGNORE_INDEX and lab != i for i, lab in zip(sample.input_ids, sample.labels)):
        out.append("a label is neither IGNORE_INDEX nor its input id")
    for name in ("segments", "message_index", "straddles", "offsets"):
        if len(getattr(sample, name)) != n:
            out.append(f"{name} has {len(getattr(sample, name))} entries for {n} tokens")
    if len(sample.attention_mask) != n:
        out.append("attention_mask length differs")
    return out


# --- fixtures: inline templates and conversations -----------------------------------------------------------------

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Llama-2 style: no end-of-turn special token of its own, EOS after each answer, "[/INST]" as the only header.
INST = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}"
    "{% elif m['role'] == 'assistant' %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}"
)
# No end-of-turn marker at all (the model never learns to stop): session must add EOS itself.
PLAIN = (
    "{% for m in messages %}{% if m['role'] == 'user' %}{{ 'Q: ' + m['content'] + '\n' }}"
    "{% else %}{{ 'A: ' + m['content'] + '\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}A:{% endif %}"
)
# ChatML with {% generation %} around each answer and its <|im_end|>, as TRL's assistant_only_loss expects.
CHATML_GEN = (
    "{% for message in messages %}{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
RAISES = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
)


def conv(*turns: tuple[str, str], cid: str = "c", **kw: Any) -> Conversation:
    return Conversation(cid, [Message(role, content, **kw.get(f"m{i}", {})) for i, (role, content) in enumerate(turns)])


TWO_TURNS = conv(("system", "You are terse."), ("user", "How can I help?"), ("assistant", "Hello!"),
                 ("user", "What describes software?"), ("assistant", "The text."))


@pytest.fixture(scope="module", params=["bpe", "unigram"])
def tok(request, tiny_tokenizer, tiny_unigram_tokenizer):
    return tiny_tokenizer if request.param == "bpe" else tiny_unigram_tokenizer


def setup_for(tokenizer, template: str = CHATML) -> ChatSetup:
    return ChatSetup(tokenizer, template, "override", "tiny")


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def supervised(sample: Sample) -> list[int]:
    return [i for i, lab in zip(sample.input_ids, sample.labels) if lab != IGNORE_INDEX]


def build(tokenizer, convs, template=CHATML, **options) -> list[Sample]:
    samples, errors = LabelEngine(setup_for(tokenizer, template)).build(convs, LabelOptions(**options))
    assert errors == []
    return samples


# --- the checker can fail ---------------------------------------------------------------------------------------

def test_checker_accepts_the_engine_and_rejects_corrupted_labels(tiny_tokenizer):
    (s,) = build(tiny_tokenizer, [TWO_TURNS])
    assert assistant_only_problems(s, TWO_TURNS.messages, expected_eot=("<|im_end|>",)) == []
    ids = s.input_ids
    im_end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    im_start = tiny_tokenizer.convert_tokens_to_ids("<|im_start|>")

    def with_labels(labels):
        return Sample(**{**s.__dict__, "labels": labels})

    everything = with_labels(list(ids))  # all-tokens: user and system text trained
    assert any("user text" in p for p in assistant_only_problems(everything, TWO_TURNS.messages))
    no_eot = with_labels([IGNORE_INDEX if i == im_end else lab for i, lab in zip(ids, s.labels)])
    assert any("end-of-turn" in p for p in assistant_only_problems(no_eot, TWO_TURNS.messages,
                                                                  expected_eot=("<|im_end|>",)))
    header = with_labels([i if i == im_start else lab for i, lab in zip(ids, s.labels)])
    probs = assistant_only_problems(header, TWO_TURNS.messages, expected_eot=("<|im_end|>",),
                                    prefix_render=lambda i, gen: LabelEngine(setup_for(tiny_tokenizer)).render(
                                        TWO_TURNS.template_messages()[:i], None, LabelOptions(),
                                        add_generation_prompt=gen).text)
    assert any("generation prompt" in p or "outside every assistant turn" in p for p in probs)
    first_answer = encode(tiny_tokenizer, "Hello!")
    cut = with_labels([IGNORE_INDEX if k == s.input_ids.index(first_answer[0]) else lab
                       for k, lab in enumerate(s.labels)])
    assert any("not fully trained" in p for p in assistant_only_problems(cut, TWO_TURNS.messages))
    wrong_id = with_labels([lab + 1 if lab != IGNORE_INDEX else lab for lab in s.labels])
    assert any("differ from input ids" in p for p in assistant_only_problems(wrong_id, TWO_TURNS.messages))


# --- assistant-only: the exact supervised tokens ---------------------------------------------------------------

def test_assistant_only_supervises_exactly_answers_and_im_end(tiny_tokenizer):
    tok = tiny_tokenizer  # byte-level BPE: a text encodes the same alone and in context
    (s,) = build(tok, [TWO_TURNS])
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert supervised(s) == encode(tok, "Hello!") + [im_end] + encode(tok, "The text.") + [im_end]
    assert s.text == ("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHow can I help?<|im_end|>\n"
                      "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nWhat describes software?<|im_end|>\n"
                      "<|im_start|>assistant\nThe text.<|im_end|>\n")
    assert assistant_only_problems(s, TWO_TURNS.messages, expected_eot=("<|im_end|>",)) == []
    assert labeled_text(s) == ["Hello!<|im_end|>", "The text.<|im_end|>"]
    assert [t.method for t in s.turns] == ["generation-prompt", "generation-prompt"]
    assert s.input_ids == encode(tok, s.text)  # one tokenization of the rendered text, as a trainer does it


def test_unigram_tokenizer_labels_the_same_text(tiny_unigram_tokenizer):
    # Metaspace encodes "Hello!" alone with a leading "▁": compare the trained text, not ids encoded alone
    (s,) = build(tiny_unigram_tokenizer, [TWO_TURNS])
    assert labeled_text(s) == ["Hello!<|im_end|>", "The text.<|im_end|>"]
    assert assistant_only_problems(s, TWO_TURNS.messages, expected_eot=("<|im_end|>",)) == []
    (last,) = build(tiny_unigram_tokenizer, [TWO_TURNS], strategy="last-turn")
    assert labeled_text(last) == ["The text.<|im_end|>"]
    first, second = build(tiny_unigram_tokenizer, [TWO_TURNS], strategy="split-turns")
    assert (labeled_text(first), labeled_text(second)) == (["Hello!<|im_end|>"], ["The text.<|im_end|>"])


def test_label_eot_false_leaves_the_end_of_turn_out(tiny_tokenizer):
    tok = tiny_tokenizer  # byte-level BPE: a text encodes the same alone and in context
    (s,) = build(tok, [TWO_TURNS], label_eot=False)
    assert supervised(s) == encode(tok, "Hello!") + encode(tok, "The text.")


def test_segments_and_message_index_follow_the_text(tiny_tokenizer):
    (s,) = build(tiny_tokenizer, [TWO_TURNS])
    by_segment = {}
    offs = np.asarray(s.offsets)
    for k, seg in enumerate(s.segments):
        by_segment.setdefault(seg, "")
        by_segment[seg] += s.text[offs[k][0]:offs[k][1]]
    assert by_segment["system"] == "You are terse."
    assert by_segment["user"] == "How can I help?What describes software?"
    assert by_segment["assistant"] == "Hello!The text."
    assert set(np.asarray(s.message_index)[[k for k, seg in enumerate(s.segments) if seg == "assistant"]]) == {2, 4}
    assert not np.asarray(s.straddles).any()  # every marker is a special token: nothing straddles


def test_untrainable_message_is_not_labeled(tiny_tokenizer):
    tok = tiny_tokenizer  # byte-level BPE: a text encodes the same alone and in context
    c = conv(("user", "How can I help?"), ("assistant", "Hello!"), ("user", "What describes software?"),
             ("assistant", "The text."), m1={"trainable": False})
    (s,) = build(tok, [c])
    assert supervised(s) == encode(tok, "The text.") + [tok.convert_tokens_to_ids("<|im_end|>")]
    (s,) = build(tok, [c], respect_trainable=False)
    assert len(labeled_runs(s)) == 2


def test_straddling_token_is_reported_and_only_it_covers_user_text(tiny_tokenizer):
    # "A: " answers right after "Q: ...\n": no special tokens, so byte-level BPE merges across boundaries
    c = conv(("user", "Hello"), ("assistant", "Hello! How can I help you today?"))
    (s,) = build(tiny_tokenizer, [c], template=PLAIN)
    assert assistant_only_problems(s, c.messages) == []
    assert "".join(labeled_text(s)).strip() == "Hello! How can I help you today?"


def test_generation_tags_agree_with_our_labels(tok):
    (s,) = build(tok, [TWO_TURNS], template=CHATML_GEN)
    assert s.generation_spans == [(s.text.index("Hello!"), s.text.index("Hello!") + len("Hello!<|im_end|>")),
                                  (s.text.index("The text."), s.text.index("The text.") + len("The text.<|im_end|>"))]
    assert s.generation_mismatch == []
    assert assistant_only_problems(s, TWO_TURNS.messages, expected_eot=("<|im_end|>",)) == []


def test_generation_tags_disagreement_is_reported(tok):
    # this template's block also wraps the header: our labels stop at the generation prompt, the mask does not
    tmpl = CHATML_GEN.replace("{{ '<|im_start|>assistant\n' }}{% generation %}",
                              "{% generation %}{{ '<|im_start|>assistant\n' }}")
    (s,) = build(tok, [TWO_TURNS], template=tmpl)
    header = encode(tok, "<|im_start|>assistant\n")
    assert len(s.generation_mismatch) == 2 * len(header)
    assert [s.input_ids[p] for p in s.generation_mismatch[:len(header)]] == header


def test_reasoning_and_tool_calls_are_trained_with_their_markup(tiny_tokenizer):
    tmpl = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' }}{% if m.reasoning_content %}"
            "{{ '<think>' + m.reasoning_content + '</think>' }}{% endif %}{{ m['content'] }}{% if m.tool_calls %}"
            "{% for c in m.tool_calls %}{{ '<call>' + c.function.name + '</call>' }}{% endfor %}{% endif %}"
            "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    c = Conversation("r", [Message("user", "How can I help?"),
                           Message("assistant", "Hello!", reasoning="The quick brown fox."),
                           Message("assistant", "", tool_calls=[{"type": "function",
                                                                 "function": {"name": "Unity", "arguments": {}}}]),
                           Message("tool", "rice"), Message("assistant", "The text.")])
    (s,) = build(tiny_tokenizer, [c], template=tmpl)
    assert labeled_text(s) == ["<think>The quick brown fox.</think>Hello!<|im_end|>",
                               "<call>Unity</call><|im_end|>", "The text.<|im_end|>"]


def test_dropped_reasoning_is_a_note_not_a_failure(tiny_tokenizer):
    c = Conversation("r", [Message("user", "How can I help?"), Message("assistant", "Hello!", reasoning="Hmm.")])
    (s,) = build(tiny_tokenizer, [c])  # CHATML never renders reasoning_content
    assert "reasoning of message 1 is not rendered by the template" in s.notes
    assert supervised(s) == encode(tiny_tokenizer, "Hello!") + [tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")]


def test_template_without_generation_prompt_uses_its_header(tiny_tokenizer):
    c = conv(("user", "How can I help?"), ("assistant", "Hello!"), ("user", "Text?"), ("assistant", "The text."))
    (s,) = build(tiny_tokenizer, [c], template=INST)
    assert labeled_text(s)[0].strip() == "Hello!</s>"
    assert assistant_only_problems(s, c.messages, expected_eot=("</s>",)) == []
    assert LabelEngine(setup_for(tiny_tokenizer, INST)).info().assistant_header == " [/INST]"


# --- the other strategies ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("template", [CHATML, INST, PLAIN, CHATML_GEN])
def test_invariants_every_strategy_and_template(tok, strategy, template):
    samples = build(tok, [TWO_TURNS, conv(("user", "Hi"), ("assistant", "Hello!"), cid="short")], template=template,
                    strategy=strategy)
    assert samples
    for s in samples:
        assert basic_problems(s) == []
        assert s.strategy == strategy
        assert sorted(s.to_record()) == ["assistant_masks", "attention_mask", "id", "input_ids", "labels"]


def test_all_tokens_copies_input_ids(tok):
    (s,) = build(tok, [TWO_TURNS], strategy="all-tokens")
    assert s.labels == s.input_ids


def test_last_turn_supervises_only_the_final_answer(tiny_tokenizer):
    tok = tiny_tokenizer  # byte-level BPE: a text encodes the same alone and in context
    (s,) = build(tok, [TWO_TURNS], strategy="last-turn")
    assert supervised(s) == encode(tok, "The text.") + [tok.convert_tokens_to_ids("<|im_end|>")]


def test_split_turns_one_sample_per_answer(tiny_tokenizer):
    tok = tiny_tokenizer  # byte-level BPE: a text encodes the same alone and in context
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    first, second = build(tok, [TWO_TURNS], strategy="split-turns")
    assert (first.id, second.id, first.turn_index, second.turn_index) == ("c#turn0", "c#turn1", 0, 1)
    assert first.text.endswith("Hello!<|im_end|>\n") and "The text." not in first.text
    assert supervised(first) == encode(tok, "Hello!") + [im_end]
    assert supervised(second) == encode(tok, "The text.") + [im_end]
    _, kept = build(tok, [TWO_TURNS], strategy="split-turns", keep_history_labels=True)
    assert supervised(kept) == encode(tok, "Hello!") + [im_end] + encode(tok, "The text.") + [im_end]


def test_session_with_the_template_matches_assistant_only_when_it_closes_turns(tok):
    (session,) = build(tok, [TWO_TURNS], strategy="session")
    (plain,) = build(tok, [TWO_TURNS])
    assert session.labels == plain.labels


def test_session_inserts_eos_where_the_template_writes_no_end(tok):
    (s,) = build(tok, [TWO_TURNS], template=PLAIN, strategy="session")
    eos = tok.eos_token_id
    assert s.input_ids.count(eos) == 2 and supervised(s).count(eos) == 2
    assert any("EOS inserted" in n for n in s.notes)
    pos = s.input_ids.index(eos)
    assert s.text[s.offsets[pos - 1][1]:].startswith("\nQ:")  # right after the first answer
    (s,) = build(tok, [TWO_TURNS], template=PLAIN)  # assistant-only adds nothing: the model never learns to stop
    assert eos not in s.input_ids


def test_session_with_chatglm2_format(tok):
    c = conv(("user", "Hello"), ("assistant", "How can I help?"), ("user", "Text"), ("assistant", "The text."))
    (s,) = build(tok, [c], strategy="session", turn_format=CHATGLM2_FORMAT)
    assert s.text == "[Round 0]\n\n问：Hello\n\n答：How can I help?\n[Round 1]\n\n问：Text\n\n答：The text.\n"
    eos = tok.eos_token_id
    assert s.input_ids[0] == tok.bos_token_id
    assert supervised(s) == encode(tok, "How can I help?\n") + [eos] + encode(tok, "The text.\n") + [eos]
    assert basic_problems(s) == []


def test_response_template_finds_the_marker_and_trains_what_follows(tiny_tokenizer):
    tok = tiny_tokenizer  # byte-level BPE: a text encodes the same alone and in context
    (s,) = build(tok, [conv(("user", "Hello"), ("assistant", "The text."))], strategy="response-template")
    assert s.extra["marker_found"] is True
    assert supervised(s) == encode(tok, "The text.") + [tok.convert_tokens_to_ids("<|im_end|>")] + encode(tok, "\n")


def test_response_template_that_tokenizes_differently_in_context_masks_everything(tiny_tokenizer):
    # "A:" alone vs "\nA:" in context: byte-level BPE merges the newline into the marker, the collator finds nothing
    c = conv(("user", "Hello"), ("assistant", "The text."))
    (s,) = build(tiny_tokenizer, [c], template=PLAIN, strategy="response-template", response_template=" A:")
    assert s.extra["marker_found"] is False
    assert s.labels == [IGNORE_INDEX] * len(s.input_ids)


def test_response_and_instruction_templates_multi_turn(tiny_tokenizer):
    tok = tiny_tokenizer  # byte-level BPE: a text encodes the same alone and in context
    (s,) = build(tok, [TWO_TURNS], strategy="response-template", response_template="<|im_start|>assistant\n",
                 instruction_template="<|im_start|>user\n")
    im_end, nl = tok.convert_tokens_to_ids("<|im_end|>"), encode(tok, "\n")
    assert supervised(s) == encode(tok, "Hello!") + [im_end] + nl + encode(tok, "The text.") + [im_end] + nl


def test_response_template_labels_worked_example():
    class Tok:
        def encode(self, text, add_special_tokens=False):
            return {"M": [7, 8], "I": [4]}[text]

    assert response_template_labels(Tok(), [5, 7, 8, 9, 2], "M")[0] == [IGNORE_INDEX] * 3 + [9, 2]
    assert response_template_labels(Tok(), [5, 9, 2], "M")[0] == [IGNORE_INDEX] * 3
    assert response_template_labels(Tok(), [4, 1, 7, 8, 9, 4, 3, 7, 8, 6], "M", "I")[0] == \
        [IGNORE_INDEX] * 4 + [9] + [IGNORE_INDEX] * 4 + [6]
    assert find_subsequence([1, 2, 3, 2, 3], [2, 3]) == 1 and find_subsequence([1, 2, 3, 2, 3], [2, 3], 2) == 3
    assert find_subsequence([1, 2], [3]) == -1


@pytest.mark.parametrize("side", ["right", "left"])
def test_max_length_truncation_records_what_was_cut(tok, side):
    (full,) = build(tok, [TWO_TURNS])
    (s,) = build(tok, [TWO_TURNS], max_length=10, truncation_side=side)
    assert len(s.input_ids) == 10 and basic_problems(s) == []
    keep = slice(0, 10) if side == "right" else slice(len(full.input_ids) - 10, None)
    assert s.input_ids == full.input_ids[keep] and s.labels == full.labels[keep]
    t = s.truncation
    assert (t.max_length, t.side, t.original_length, t.tokens_cut) == (10, side, len(full.input_ids),
                                                                        len(full.input_ids) - 10)
    assert t.labeled_cut == full.num_trainable - s.num_trainable
    # a message is cut when any of its characters lies in the cut part of the text
    boundary = full.offsets[10][0] if side == "right" else full.offsets[len(full.input_ids) - 10][0]
    spans = [(full.text.index(m.content), full.text.index(m.content) + len(m.content)) for m in TWO_TURNS.messages]
    expected = [i for i, (a, b) in enumerate(spans) if (b > boundary if side == "right" else a < boundary)]
    assert t.cut_messages == expected and expected
    (short,) = build(tok, [TWO_TURNS], max_length=1000)
    assert short.truncation is None


def test_truncate_rejects_a_non_positive_length(tiny_tokenizer):
    (s,) = build(tiny_tokenizer, [TWO_TURNS])
    with pytest.raises(ValueError):
        truncate(s, 0)


def test_unknown_strategy_is_a_clear_error(tiny_tokenizer):
    with pytest.raises(ValueError, match="Unknown strategy"):
        build(tiny_tokenizer, [TWO_TURNS], strategy="everything")


# --- a template that raises: one conversation fails, the batch goes on -------------------------------------------

def test_template_error_becomes_a_sample_error_and_the_rest_still_build(tiny_tokenizer):
    ok = conv(("user", "Hello"), ("assistant", "The text."), cid="ok")
    bad = conv(("system", "You are terse."), ("user", "Hello"), ("assistant", "The text."), cid="bad")
    samples, errors = LabelEngine(setup_for(tiny_tokenizer, RAISES)).build([ok, bad, ok], LabelOptions())
    assert [s.conversation_id for s in samples] == ["ok", "ok"]
    assert len(errors) == 1 and errors[0].conversation_id == "bad"
    assert "System role not supported" in errors[0].reason
    with pytest.raises(RenderError, match="System role not supported"):
        LabelEngine(setup_for(tiny_tokenizer, RAISES)).build_one(bad)


def test_bad_template_text_is_a_chat_template_error_with_its_line(tiny_tokenizer):
    with pytest.raises(ChatTemplateError, match="line 2"):
        LabelEngine(setup_for(tiny_tokenizer, "{{ bos_token }}\n{% for m in messages %}{{ m.content }}")).build(
            [TWO_TURNS])


# --- guard rails: batched, no per-token Python loops ------------------------------------------------------------

def test_one_tokenizer_call_per_build(tiny_tokenizer, monkeypatch):
    import inspector.labels.engine as labels_mod

    calls = []
    real = labels_mod.tokenize_batch
    monkeypatch.setattr(labels_mod, "tokenize_batch", lambda tok, texts: calls.append(len(texts)) or real(tok, texts))
    convs = [Conversation(f"c{k}", TWO_TURNS.messages) for k in range(7)]
    for strategy in STRATEGIES:
        calls.clear()
        samples = build(tiny_tokenizer, convs, strategy=strategy)
        assert calls == [len(samples)], strategy
    calls.clear()
    build(tiny_tokenizer, convs, strategy="session", turn_format=CHATGLM2_FORMAT)
    assert len(calls) == 1


def test_hot_paths_have_no_per_token_python_loops():
    """The per-token work in labels.py is numpy: no `for`/`while` statement or comprehension inside these
    functions iterates over ids, labels or offsets."""
    import ast
    import inspect

    import inspector.labels.engine as labels_mod
    import inspector.labels.response_template as marker_mod

    hot = [(labels_mod, "annotate"), (labels_mod, "_coverage"), (marker_mod, "subsequence_starts"),
           (marker_mod, "response_template_labels"), (labels_mod, "compare_generation_mask"), (labels_mod, "truncate")]
    token_names = {"ids", "labels", "offsets", "offs", "input_ids", "ids_arr", "haystack"}
    for module, name in hot:
        tree = ast.parse(inspect.getsource(getattr(module, name)))
        for node in ast.walk(tree):
            if isinstance(node, (ast.For, ast.comprehension)):
                iterated = {n.id for n in ast.walk(node.iter) if isinstance(n, ast.Name)}
                assert not iterated & token_names, f"{name} loops over tokens: {ast.unparse(node.iter)}"
            assert not isinstance(node, ast.While), f"{name} has a while loop"


def test_tokenize_batch_matches_the_slow_path(tiny_tokenizer):
    texts = [TWO_TURNS.messages[2].content, "Hello! How can I help you today?"]
    fast = tokenize_batch(tiny_tokenizer, texts)

    class Slow:  # no Rust backend: the tokenizer's own batched __call__
        def __call__(self, *a, **k):
            return tiny_tokenizer(*a, **k)

    slow = tokenize_batch(Slow(), texts)
    assert [ids for ids, _ in fast] == [ids for ids, _ in slow]
    assert all((a == b).all() for (_, a), (_, b) in zip(fast, slow))


# --- golden files: full label arrays for a few template x conversation pairs --------------------------------------

GOLDEN_CASES = {
    "chatml_assistant_only": (CHATML, "assistant-only", {}),
    "chatml_split_turns_keep_history": (CHATML, "split-turns", {"keep_history_labels": True}),
    "inst_session": (INST, "session", {}),
    "plain_session_eos_inserted": (PLAIN, "session", {}),
    "chatml_generation_tags": (CHATML_GEN, "assistant-only", {}),
    "chatml_chatglm2_format": (CHATML, "session", {"turn_format": CHATGLM2_FORMAT}),
}


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_labels(tiny_tokenizer, case):
    """Regenerate after an intended change with UPDATE_GOLDEN=1 (and review the diff)."""
    import os

    template, strategy, options = GOLDEN_CASES[case]
    samples = build(tiny_tokenizer, [TWO_TURNS], template=template, strategy=strategy, **options)
    got = {"case": case, "strategy": strategy, "messages": [m.to_template_dict() for m in TWO_TURNS.messages],
           "samples": [{"id": s.id, "text": s.text, "input_ids": s.input_ids, "labels": s.labels,
                        "labeled_text": labeled_text(s)} for s in samples]}
    path = GOLDEN / f"{case}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    assert path.exists(), f"missing golden file {path}: run with UPDATE_GOLDEN=1 and review it"
    assert json.loads(path.read_text(encoding="utf-8")) == got


def test_tool_call_text_the_template_writes_is_the_assistants(tiny_setup):
    """A call-only answer: the <tool_call> block the template writes is generated by the model, so it is trained
    and counted as the assistant's text (issue 9, 4.5), not as template markup; the end-of-turn marker stays
    template markup."""
    from inspector.template.tokenizer import ChatSetup

    template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content or '' }}"
                "{% for c in m.tool_calls or [] %}<tool_call>{{ c.function | tojson }}</tool_call>{% endfor %}"
                "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    setup = ChatSetup(tiny_setup.tokenizer, template, "override", "tiny")
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lisbon"}}}
    conv = Conversation("t", [Message("user", "Weather?"), Message("assistant", "", tool_calls=[call]),
                              Message("tool", "14 C"), Message("assistant", "It is 14 C.")])
    (sample,) = LabelEngine(setup).build_one(conv)
    offs = np.asarray(sample.offsets)
    start = sample.text.index("<tool_call>")
    end = sample.text.index("</tool_call>") + len("</tool_call>")
    inside = [k for k in range(len(sample.input_ids)) if offs[k][0] >= start and offs[k][1] <= end]
    assert inside and {sample.segments[k] for k in inside} == {"assistant"}
    assert {int(sample.message_index[k]) for k in inside} == {1}
    assert all(sample.labels[k] != IGNORE_INDEX for k in inside)
    eot = [k for k in range(len(sample.input_ids)) if sample.text[offs[k][0]:offs[k][1]] == "<|im_end|>"]
    assert {sample.segments[k] for k in eot} == {"template"}
