"""Training templates: templates written here (ChatML, Llama-3-like, one literal writing the end-of-turn marker and
the next header, text between tags, whitespace control, CRLF) get tags exactly around what our labels train; what
cannot be wrapped is reported; verification through transformers catches wrong templates; TRL's own checks pass.

Each test asserts the trained text itself, char for char, from transformers' own ``{% generation %}`` tracker
(``render(..., track_generation=True)`` runs it), the way nanochat asserts its supervised tokens.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from conftest import CHATML
from inspector.constants import IGNORE_INDEX
from inspector.conversations import Conversation, Message
from inspector.training_template.jinja_source import (Context, TemplateSource, block_tag, chat_environment, normalize_newlines,
                                    parse_expression, positioned_tokens, same_tokens_apart_from, string_literal)
from inspector.labels.engine import LabelEngine, LabelOptions
from inspector.template.render import render
from inspector.training_template.check import side_by_side, trl_checks, verify_training_template
from inspector.template.tokenizer import ChatSetup
from inspector.training_template.rewrite import find_condition
from inspector.training_template.build import (CharTokenizer, build_training_template, read_markers,
                                         training_options)

LLAMA3 = ("{{- bos_token }}{%- for message in messages %}\n"
          "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim "
          "+ '<|eot_id|>' }}\n{%- endfor %}\n{%- if add_generation_prompt %}\n"
          "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n")

# The end-of-turn marker and the next header come out of one literal; the header names the next role.
EOT_AND_HEADER = ("{{- '<|im_start|>' + messages[0].role + '\\n' }}{%- for m in messages %}{{- m.content }}"
                  "{{- '<|im_end|>\\n<|im_start|>' + (loop.nextitem.role if loop.nextitem is defined else 'end') "
                  "+ '\\n' }}{%- endfor %}")

# Markup as text between tags (trim_blocks eats the newline after a block tag, not after {{ }}).
TEXT_MARKUP = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
               "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

# Indented, lstrip_blocks and trim_blocks at work, reasoning and tool calls rendered.
INDENTED = """{%- for m in messages %}
    {% if m.role == 'assistant' %}
<|im_start|>assistant
        {% if m.reasoning_content %}
<think>{{ m.reasoning_content }}</think>
        {% endif %}
{{ m.content }}
        {%- for call in m.tool_calls or [] %}
<tool_call>{{ call.function | tojson }}</tool_call>
        {%- endfor %}<|im_end|>
    {% else %}
<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
    {% endif %}
{%- endfor %}
{%- if add_generation_prompt %}
<|im_start|>assistant
{% endif %}"""

CALL = {"id": "call0w3a1", "type": "function", "function": {"name": "lookup", "arguments": {"q": "apples"}}}
CONVS = [
    Conversation("multi", [Message("system", "Be brief."), Message("user", "Hello! How can I help"),
                           Message("assistant", "The quick brown fox."), Message("user", "What describes software?"),
                           Message("assistant", "Text: the lazy dog.")]),
    Conversation("reasoning", [Message("user", "Probe question about apples?"),
                               Message("assistant", "Answer the question.", reasoning="I have chicken and rice.")]),
    Conversation("tool", [Message("user", "Probe question about pears?"),
                          Message("assistant", "", tool_calls=[CALL]),
                          Message("tool", "apples and pears", name="lookup"),
                          Message("assistant", "The lazy dog.")]),
]


def setup_for(tok, template: str) -> ChatSetup:
    return ChatSetup(tok, template, "override", "tiny")


def messages(conv: Conversation, template: str) -> list[dict]:
    return conv.template_messages(tool_calls_as_text="tool_calls" not in template)  # as the engine renders


def trained_pieces(tok, template: str, conv: Conversation) -> list[str]:
    """The text inside generation blocks when ``template`` renders ``conv`` (transformers' own tracker), adjacent
    blocks joined."""
    r = render(messages(conv, template), template, tok, tools=conv.tools, track_generation=True)
    runs: list[list[int]] = []
    for a, b in r.generation_spans:
        if runs and runs[-1][1] == a:
            runs[-1][1] = b
        elif b > a:
            runs.append([a, b])
    return [r.text[a:b] for a, b in runs]


def our_trained_text(tok, template: str, conv: Conversation) -> list[str]:
    """Our assistant-only labels, char-exact: the trained runs of the text."""
    (s,), _ = LabelEngine(ChatSetup(CharTokenizer(tok), template, "override")).build([conv], training_options())
    mask = np.asarray(s.labels) != IGNORE_INDEX
    runs, start = [], None
    for i, m in enumerate(list(mask) + [False]):
        if m and start is None:
            start = i
        if not m and start is not None:
            runs.append(s.text[start:i])
            start = None
    return runs


def joined(pieces: list[str]) -> str:
    return "|".join(pieces)


# --- written templates ---------------------------------------------------------------------------------------------

def test_chatml_wraps_content_and_end_marker_not_the_newline(tiny_tokenizer):
    tt = build_training_template(setup_for(tiny_tokenizer, CHATML), CONVS[:1])
    assert not tt.problems and tt.changed and not tt.already_tagged
    assert [e.kind for e in tt.edits] == ["conditional"]
    assert "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}" in tt.template
    # adjacent blocks are fine: what matters is the text inside them, against our labels
    assert joined(trained_pieces(tiny_tokenizer, tt.template, CONVS[0])) == \
        "The quick brown fox.<|im_end|>|Text: the lazy dog.<|im_end|>"
    assert our_trained_text(tiny_tokenizer, CHATML, CONVS[0]) == \
        ["The quick brown fox.<|im_end|>", "Text: the lazy dog.<|im_end|>"]
    v = verify_training_template(setup_for(tiny_tokenizer, CHATML), tt.template, CONVS[:1])
    assert v.verified and v.rows[0].identical and v.rows[0].agree == v.rows[0].tokens > 0


def test_llama3_like_template_splits_header_from_trimmed_content(tiny_tokenizer):
    setup = setup_for(tiny_tokenizer, LLAMA3)
    tt = build_training_template(setup, CONVS)
    assert not tt.problems
    assert "{% generation %}{{ message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}" in tt.template
    assert joined(trained_pieces(tiny_tokenizer, tt.template, CONVS[0])) == \
        "The quick brown fox.<|eot_id|>|Text: the lazy dog.<|eot_id|>"
    assert verify_training_template(setup, tt.template, CONVS).verified


def test_one_literal_writing_end_marker_and_next_header_is_split(tiny_tokenizer):
    setup = setup_for(tiny_tokenizer, EOT_AND_HEADER)
    conv = CONVS[0]
    text = render(conv.template_messages(), EOT_AND_HEADER, tiny_tokenizer).text
    assert "fox.<|im_end|>\n<|im_start|>user\n" in text  # one output writes both
    tt = build_training_template(setup, [conv])
    assert not tt.problems
    assert "'<|im_end|>'" in tt.template and "'\\n<|im_start|>'" in tt.template  # the literal, cut in two
    assert trained_pieces(tiny_tokenizer, tt.template, conv) == our_trained_text(tiny_tokenizer, EOT_AND_HEADER, conv)
    assert joined(trained_pieces(tiny_tokenizer, tt.template, conv)) == \
        "The quick brown fox.<|im_end|>|Text: the lazy dog.<|im_end|>"
    assert verify_training_template(setup, tt.template, [conv]).verified


def test_markup_written_as_text_between_tags(tiny_tokenizer):
    setup = setup_for(tiny_tokenizer, TEXT_MARKUP)
    tt = build_training_template(setup, CONVS)
    assert not tt.problems
    # the trained "<|im_end|>" is cut out of the text "<|im_end|>\n"; "+%}" keeps the newline trim_blocks would eat
    assert "{% endif +%}" in tt.template or "{% endgeneration +%}" in tt.template
    for conv in CONVS:
        assert render(messages(conv, TEXT_MARKUP), tt.template, tiny_tokenizer, tools=conv.tools).text == \
            render(messages(conv, TEXT_MARKUP), TEXT_MARKUP, tiny_tokenizer, tools=conv.tools).text
        assert trained_pieces(tiny_tokenizer, tt.template, conv) == \
            our_trained_text(tiny_tokenizer, TEXT_MARKUP, conv)
    assert verify_training_template(setup, tt.template, CONVS).verified


def test_indented_template_with_reasoning_and_tool_calls(tiny_tokenizer):
    setup = setup_for(tiny_tokenizer, INDENTED)
    tt = build_training_template(setup, CONVS)
    assert not tt.problems, tt.problems
    for conv in CONVS:
        assert trained_pieces(tiny_tokenizer, tt.template, conv) == our_trained_text(tiny_tokenizer, INDENTED, conv)
    assert "I have chicken and rice." in joined(trained_pieces(tiny_tokenizer, tt.template, CONVS[1]))
    assert '"lookup"' in joined(trained_pieces(tiny_tokenizer, tt.template, CONVS[2]))
    assert verify_training_template(setup, tt.template, CONVS).verified


def test_pure_insertions_are_proven_identical_for_every_input(tiny_tokenizer):
    tmpl = ("{%- for m in messages %}{%- if m.role == 'assistant' %}{{- '<|im_start|>assistant\\n' }}{{- m.content }}"
            "{{- '<|im_end|>' }}{{- '\\n' }}{%- else %}{{- '<|im_start|>' + m.role + '\\n' + m.content + "
            "'<|im_end|>\\n' }}{%- endif %}{%- endfor %}")
    tt = build_training_template(setup_for(tiny_tokenizer, tmpl), CONVS)
    assert {e.kind for e in tt.edits} == {"wrap"}
    assert tt.static_identical is True  # same tokens as the original apart from the tags
    assert "{%- generation %}{{- m.content }}{{- '<|im_end|>' }}{%- endgeneration %}" in tt.template


def test_macro_output_is_cut_at_a_fixed_place(tiny_tokenizer):
    tmpl = ("{% macro turn(m) %}{{ m.role }}: {{ m.content }}<|im_end|>\n{% endmacro %}"
            "{% for m in messages %}{{ turn(m) }}{% endfor %}")
    setup = setup_for(tiny_tokenizer, tmpl)
    tt = build_training_template(setup, CONVS[:1])
    assert not tt.problems
    assert "_tt[11:-1]" in tt.template  # after "assistant: ", before the "\n"
    assert joined(trained_pieces(tiny_tokenizer, tt.template, CONVS[0])) == \
        "The quick brown fox.<|im_end|>|Text: the lazy dog.<|im_end|>"
    assert verify_training_template(setup, tt.template, CONVS[:1]).verified


def test_crlf_template_keeps_its_line_endings(tiny_tokenizer):
    tmpl = TEXT_MARKUP.replace("{% for m in messages %}", "{% for m in messages %}\r\n").replace("\n", "\r\n")
    tmpl = tmpl.replace("\r\r\n", "\r\n")
    setup = setup_for(tiny_tokenizer, tmpl)
    tt = build_training_template(setup, CONVS[:1])
    assert not tt.problems and tt.changed
    assert tt.template.count("\r\n") == tmpl.count("\r\n") and "\n" not in tt.template.replace("\r\n", "")
    assert verify_training_template(setup, tt.template, CONVS[:1]).verified


def test_template_with_tags_is_left_as_it_is(tiny_tokenizer):
    tagged = CHATML.replace("{{ '<|im_start|>' + message['role']", "{% generation %}{{ '<|im_start|>' + "
                            "message['role']").replace("'<|im_end|>\n' }}", "'<|im_end|>\n' }}{% endgeneration %}")
    tt = build_training_template(setup_for(tiny_tokenizer, tagged), CONVS[:1])
    assert tt.already_tagged and tt.template == tagged and not tt.edits
    v = verify_training_template(setup_for(tiny_tokenizer, tagged), tt.template, CONVS[:1])
    assert not v.verified  # its own tags train every message: the mismatches say where
    assert v.rows[0].mismatches and all(m.mask and not m.ours for m in v.rows[0].mismatches)


# --- what cannot be wrapped is said, not guessed ----------------------------------------------------------------

def test_output_written_inside_a_filter_block_is_a_problem(tiny_tokenizer):
    tmpl = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{% filter trim %}{{ m.content }}{% endfilter %}"
            "<|im_end|>\n{% endfor %}")
    tt = build_training_template(setup_for(tiny_tokenizer, tmpl), CONVS[:1])
    assert any("written by no output" in p.message and "The quick brown" in p.example for p in tt.problems)
    v = verify_training_template(setup_for(tiny_tokenizer, tmpl), tt.template, CONVS[:1])
    assert not v.verified and v.rows[0].identical


def test_one_value_holding_several_turns_is_a_problem(tiny_tokenizer):
    tmpl = ("{% macro dialogue() %}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
            "{% endfor %}{% endmacro %}{{ dialogue() }}")
    tt = build_training_template(setup_for(tiny_tokenizer, tmpl), CONVS[:1])
    (p,) = tt.problems
    assert p.line == 3 and p.source == "dialogue()" and "cut at no fixed place" in p.message
    assert "]<|im_end|>\n<|im_start|>" in p.example or "][" not in p.example


def test_output_trained_by_no_fact_about_the_message_is_a_problem(tiny_tokenizer):
    tmpl = ("{% for i in range(messages | length) %}<|im_start|>{{ messages[i].role }}\n{{ messages[i].content }}"
            "<|im_end|>\n{% endfor %}")
    tt = build_training_template(setup_for(tiny_tokenizer, tmpl), CONVS[:1])
    assert any(p.source == "messages[i].content" and "no fact about the message" in p.message for p in tt.problems)


def test_unreached_outputs_carry_no_tags_and_are_listed(tiny_tokenizer):
    tt = build_training_template(setup_for(tiny_tokenizer, CHATML), CONVS[:1], probes=False)
    assert tt.unreached == [3]  # the generation prompt: no conversation renders it
    assert tt.conversations == 1


# --- verification --------------------------------------------------------------------------------------------------

def test_verification_catches_a_wrong_mask_and_a_changed_text(tiny_tokenizer):
    setup = setup_for(tiny_tokenizer, CHATML)
    whole_turns = CHATML.replace("{{ '<|im_start|>'", "{% generation %}{{ '<|im_start|>'").replace(
        "'<|im_end|>\n' }}", "'<|im_end|>\n' }}{% endgeneration %}")
    v = verify_training_template(setup, whole_turns, CONVS[:1])
    row = v.rows[0]
    assert not v.verified and row.identical and 0 < row.agree < row.tokens
    assert row.mismatches[0].token in tiny_tokenizer.convert_ids_to_tokens([0, 1]) or row.mismatches[0].mask
    changed = build_training_template(setup, CONVS[:1]).template.replace("'<|im_end|>'", "'<|im_end|> '")
    row = verify_training_template(setup, changed, CONVS[:1]).rows[0]
    assert not row.identical and "different text" in row.reason


def test_per_message_flags_are_reported_apart(tiny_tokenizer):
    conv = Conversation("flags", [Message("user", "Hello! How can I help"),
                                  Message("assistant", "The quick brown fox.", trainable=False, loss_weight=0.0),
                                  Message("user", "What describes software?"),
                                  Message("assistant", "Text: the lazy dog.")])
    setup = setup_for(tiny_tokenizer, CHATML)
    tt = build_training_template(setup, [conv])
    row = verify_training_template(setup, tt.template, [conv]).rows[0]
    assert row.verified and row.flags > 0  # the template trains what it can; the flagged turn is counted apart


def test_conversations_the_engine_cannot_render_are_not_compared(tiny_tokenizer):
    tmpl = "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system') }}{% endif %}" + \
        CHATML.split("{% for message in messages %}", 1)[1].replace("message", "m").replace("{% endfor %}", "", 1) + \
        "{% endfor %}"
    setup = setup_for(tiny_tokenizer, tmpl)
    v = verify_training_template(setup, build_training_template(setup, CONVS).template, CONVS)
    rows = {r.conversation_id: r for r in v.rows}
    assert not rows["multi"].comparable and "no system" in rows["multi"].reason
    assert v.verified and len(v.compared) == 2


# --- the parts ---------------------------------------------------------------------------------------------------

def test_positioned_lexer_matches_jinja_and_spans_hold_the_values():
    env = chat_environment()
    for tmpl in (CHATML, LLAMA3, EOT_AND_HEADER, TEXT_MARKUP, INDENTED, "{{ {'a': {'b': '}}'}} }}{# c #}x\n"):
        source, _ = normalize_newlines(tmpl)
        toks = positioned_tokens(env.lexer, source)
        assert [(t.type, t.value) for t in toks] == [(k, v) for _, k, v in env.lexer.tokeniter(tmpl, None)]
        assert all(source[t.start:t.end] == t.value for t in toks if t.type == "data")


def test_normalize_newlines_maps_positions():
    assert normalize_newlines("a\r\nb\n") == ("a\nb", [0, 1, 3, 4])
    assert normalize_newlines("a\rb") == ("a\nb", [0, 1, 2, 3])


def test_units_and_concatenation_operands():
    src = TemplateSource(LLAMA3)
    chain = next(u for u in src.units if u.is_chain)
    assert [o.text for o in chain.operands] == ["'<|start_header_id|>'", "message['role']",
                                                "'<|end_header_id|>\\n\\n'", "message['content'] | trim",
                                                "'<|eot_id|>'"]
    assert [o.literal for o in chain.operands][2] == "<|end_header_id|>\n\n"
    assert chain.loops == ("message",) and chain.innermost_loop == "message" and chain.line == 2
    # `a + b` of two expressions is not cut: it may add numbers or lists
    assert not TemplateSource("{{ a + b }}").units[0].is_chain
    assert TemplateSource("{{ a ~ b }}").units[0].is_chain


def test_block_tag_keeps_the_text_around_it():
    assert block_tag("generation") == "{% generation %}"
    assert block_tag("endgeneration", right=Context("", False, "\n<|im_start|>", False)) == "{% endgeneration +%}"
    assert block_tag("if c", left=Context("x\n  ", False, "", False)) == "{%+ if c %}"
    # an opening generation tag is shielded instead, so TRL's regex (which allows "-", not "+") finds it
    assert block_tag("generation", left=Context("x\n  ", False, "", False)) == "{{ '' }}{% generation %}"
    assert block_tag("generation", right=Context("", False, "\nHi", False)) == "{% generation %}{{ '' }}"
    assert block_tag("endgeneration", right=Context("", False, "  ", True)) == "{% endgeneration -%}"
    env = chat_environment()
    assert same_tokens_apart_from(env, "a\nb", "a{% generation +%}\nb", ("generation",))
    assert not same_tokens_apart_from(env, "a\nb", "a{% generation %}\nb", ("generation",))  # trim_blocks ate it


def test_string_literal_round_trips():
    for value in ["<|im_end|>\n", "it's \\ \"quoted\"\t", "｜end▁of▁sentence｜"]:
        assert parse_expression(chat_environment(), string_literal(value)).value == value


def test_char_tokenizer_and_markers(tiny_tokenizer):
    out = CharTokenizer(tiny_tokenizer)(["ab"], add_special_tokens=False, return_offsets_mapping=True)
    assert out["offset_mapping"] == [[(0, 1), (1, 2)]]
    assert CharTokenizer(tiny_tokenizer).eos_token == tiny_tokenizer.eos_token
    text, occ = read_markers("\U000F0000\U000F1000Hi\U000F0001\U000F1000!\U000F0000\U000F1001\U000F0002"
                             "\U000F0003x\U000F0001\U000F1001")
    assert text == "Hi!x"
    assert [(o.atom, o.start, o.end, o.probes) for o in occ] == [(0, 0, 2, ()), (1, 3, 4, (True, False))]


def test_find_condition_prefers_one_fact():
    feats = [("m is the assistant", 'm.role == "assistant"'), ("m has reasoning", "m.reasoning_content")]
    answers = [(True, False), (False, False), (True, True)]
    assert find_condition((1, 0, 1), answers, feats) == 'm.role == "assistant"'
    assert find_condition((0, 0, 1), answers, feats) == "m.reasoning_content"
    assert find_condition((1, None, 0), answers, feats) == "not m.reasoning_content"
    assert find_condition((0, 1, 0), answers, feats) == 'not m.role == "assistant"'


def test_side_by_side_marks_the_inserted_tags(tiny_tokenizer):
    tt = build_training_template(setup_for(tiny_tokenizer, LLAMA3), CONVS[:1])
    rows = side_by_side(tt)
    assert [r.old for r in rows] == LLAMA3.split("\n")
    changed = [r for r in rows if r.marks]
    assert changed and all(r.new != r.old for r in changed)
    for r in changed:
        assert any("generation" in r.new[a:b] or "if" in r.new[a:b] for a, b in r.marks)


# --- TRL's own checks ----------------------------------------------------------------------------------------------

def test_trl_accepts_the_training_template(tiny_tokenizer):
    pytest.importorskip("trl", reason="trl is not installed (requirements-trl.txt)")
    from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

    tt = build_training_template(setup_for(tiny_tokenizer, CHATML))
    assert not has_generation_markers(CHATML) and has_generation_markers(tt.template)
    assert not is_chat_template_stop_token_trained(tiny_tokenizer, chat_template=CHATML)  # no mask at all
    assert is_chat_template_stop_token_trained(tiny_tokenizer, chat_template=tt.template)  # <|im_end|> is trained
    assert trl_checks(tiny_tokenizer, tt.template) == {"has_generation_markers": True, "stop_token_trained": True}


def test_trl_tokenizes_a_dataset_row_with_our_labels(tiny_tokenizer):
    """What SFTTrainer(assistant_only_loss=True) runs per row: apply_chat_template with the template and
    return_assistant_tokens_mask; the mask equals our labels."""
    pytest.importorskip("trl", reason="trl is not installed (requirements-trl.txt)")
    from trl.data_utils import is_conversational

    conv = CONVS[0]
    row = {"messages": conv.template_messages()}
    assert is_conversational(row)
    tt = build_training_template(setup_for(tiny_tokenizer, CHATML), [conv])
    out = tiny_tokenizer.apply_chat_template(row["messages"], chat_template=tt.template, tokenize=True,
                                             return_dict=True, return_assistant_tokens_mask=True)
    (sample,), _ = LabelEngine(setup_for(tiny_tokenizer, CHATML)).build([conv], LabelOptions())
    assert out["input_ids"] == sample.input_ids
    assert out["assistant_masks"] == [int(x != IGNORE_INDEX) for x in sample.labels]
    assert json.dumps(out["assistant_masks"])  # plain ints, as a datasets column


# --- the command line ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_files(tiny_tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("training-template")
    tiny_tokenizer.save_pretrained(str(path / "tok"))
    (path / "chatml.jinja").write_text(CHATML, encoding="utf-8")
    (path / "filter.jinja").write_text("{% for m in messages %}<|im_start|>{{ m.role }}\n{% filter trim %}"
                                       "{{ m.content }}{% endfilter %}<|im_end|>\n{% endfor %}", encoding="utf-8")
    records = [{"id": c.id, "messages": c.template_messages()} for c in CONVS[:2]]
    (path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n{not json\n", encoding="utf-8")
    return path


def run_cli(argv, capsys):
    from inspector import cli
    from inspector.cli.main import main as cli_main

    code = cli_main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_a_verified_template_and_exits_0(cli_files, capsys):
    code, out, err = run_cli(["training-template", str(cli_files / "data.jsonl"), "--chat-template",
                              str(cli_files / "chatml.jinja"), "--tokenizer", str(cli_files / "tok")], capsys)
    assert code == 0, err
    written = (cli_files / "chatml.training.jinja").read_text(encoding="utf-8")  # default: beside the template
    assert "{% generation %}" in written
    assert "Wrote" in out and "1 conditional" in out
    assert "multi" in out and "reasoning" in out and "verified" in out
    assert "rejected data-2" in out  # the broken line is reported, the rest is used
    assert out.rstrip().endswith("-> exit 0") and "VERIFIED: 2 of 2 conversations verified" in out


def test_cli_json_and_exit_1_when_a_part_cannot_be_wrapped(cli_files, tmp_path, capsys):
    out_file = tmp_path / "t.jinja"
    code, out, _ = run_cli(["training-template", str(cli_files / "data.jsonl"), "--chat-template",
                            str(cli_files / "filter.jinja"), "--tokenizer", str(cli_files / "tok"), "--out",
                            str(out_file), "--json"], capsys)
    assert code == 1
    report = json.loads(out)  # nothing but the report on stdout
    assert report["exit"] == 1 and report["verified"] is False and report["out"] == str(out_file)
    assert report["problems"] and "written by no output" in report["problems"][0]["message"]
    assert [c["id"] for c in report["verification"]["conversations"]] == ["multi", "reasoning"]
    assert report["rejected"][0]["id"] == "data-2"
    assert out_file.exists()


def test_cli_default_data_is_the_demo(cli_files, capsys):
    code, out, _ = run_cli(["training-template", "--chat-template", str(cli_files / "chatml.jinja"),
                            "--tokenizer", str(cli_files / "tok"), "--out", str(cli_files / "demo.jinja")], capsys)
    assert code == 0
    assert "demo-01-system-prompt" in out and "probe-tool-call" in out
    assert "masked only by per-message flags" in out  # demo-06 has loss_weight 0


@pytest.mark.parametrize("argv, message", [
    (["training-template", "--chat-template", "missing.jinja"], "Chat template file not found"),
    (["training-template", "--chat-template", "{chatml}", "--tokenizer", "/no/such/tokenizer"], "not found"),
    (["training-template", "/no/data.jsonl", "--chat-template", "{chatml}", "--tokenizer", "{tok}"], "not found"),
    (["training-template", "--chat-template", "{chatml}", "--tokenizer", "{tok}", "--out", "/no/dir/t.jinja"],
     "cannot write"),
])
def test_cli_errors_exit_2(cli_files, capsys, argv, message):
    argv = [a.format(chatml=cli_files / "chatml.jinja", tok=cli_files / "tok") for a in argv]
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and out == "" and message in err


def test_cli_usage_errors_exit_2_from_a_real_process(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "inspector", "training-template"], capture_output=True, text=True,
                          cwd=root, env=dict(os.environ, PYTHONPATH=str(root)), timeout=120)
    assert proc.returncode == 2 and "--chat-template" in proc.stderr


def test_trl_sft_trainer_trains_exactly_our_labels(tiny_tokenizer, tmp_path):
    """End to end: TRL's SFTTrainer(assistant_only_loss=True) with the exported template builds, row by row, the
    labels our engine builds; with the original template it refuses (no generation markers, no known family)."""
    pytest.importorskip("trl", reason="trl is not installed (requirements-trl.txt)")
    import datasets
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    convs = CONVS[:2]
    tt = build_training_template(setup_for(tiny_tokenizer, CHATML), convs)
    dataset = datasets.Dataset.from_list([{"messages": messages(c, CHATML)} for c in convs])
    config = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=32)
    args = SFTConfig(output_dir=str(tmp_path), assistant_only_loss=True, report_to=[], use_cpu=True)
    tiny_tokenizer.save_pretrained(str(tmp_path / "tok"))  # fresh copies: the session tokenizer is never changed
    trained_tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    trained_tok.chat_template = tt.template
    trainer = SFTTrainer(model=LlamaForCausalLM(config), processing_class=trained_tok, args=args,
                         train_dataset=dataset)
    samples, _ = LabelEngine(setup_for(tiny_tokenizer, CHATML)).build(convs, LabelOptions())
    for row, sample in zip(trainer.train_dataset, samples):
        assert row["input_ids"] == sample.input_ids
        assert row["labels"] == sample.labels
    plain_tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    plain_tok.chat_template = CHATML
    with pytest.raises(ValueError, match="not training-compatible"):
        SFTTrainer(model=LlamaForCausalLM(config), processing_class=plain_tok, args=args, train_dataset=dataset)


# --- whitespace control, every way round -------------------------------------------------------------------------

def _template(body: str, strip_open: bool, strip_close: bool, var_strip: bool, newlines: bool, indent: int,
              eot_newline: bool, gen_prompt: bool) -> str:
    """A ChatML-like template written one of many ways: data or {{ }} markup, one line for every role or a branch per
    role, with or without whitespace control and indentation (so trim_blocks/lstrip_blocks act everywhere)."""
    o, c = ("{%-" if strip_open else "{%"), ("-%}" if strip_close else "%}")
    vo, vc = ("{{-" if var_strip else "{{"), ("-}}" if var_strip else "}}")
    nl = "\n" + " " * indent if newlines else ""
    tail = "\\n" if eot_newline else ""
    if body == "expression":
        inner = f"{vo} '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>{tail}' {vc}"
    elif body == "text":
        inner = "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>" + ("\n" if eot_newline else "")
    else:
        inner = (f"{o} if m.role == 'assistant' {c}{nl}{vo} '<|im_start|>assistant\\n' {vc}{nl}{vo} m.content {vc}"
                 f"{nl}{vo} '<|im_end|>{tail}' {vc}{nl}{o} else {c}{nl}{vo} '<|im_start|>' + m.role + '\\n' + "
                 f"m.content + '<|im_end|>{tail}' {vc}{nl}{o} endif {c}")
    out = f"{o} for m in messages {c}{nl}{inner}{nl}{o} endfor {c}"
    if gen_prompt:
        out += f"{nl}{o} if add_generation_prompt {c}{nl}<|im_start|>assistant\n{o} endif {c}"
    return out


def test_whitespace_control_every_way_round(tiny_tokenizer):
    from hypothesis import HealthCheck, given, settings, strategies as st

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(["expression", "text", "branch"]), st.booleans(), st.booleans(), st.booleans(),
           st.booleans(), st.integers(0, 4), st.booleans(), st.booleans())
    def check(body, strip_open, strip_close, var_strip, newlines, indent, eot_newline, gen_prompt):
        tmpl = _template(body, strip_open, strip_close, var_strip, newlines, indent, eot_newline, gen_prompt)
        setup = setup_for(tiny_tokenizer, tmpl)
        tt = build_training_template(setup, CONVS, probes=False)
        assert not tt.problems, (tmpl, tt.problems)
        if {e.kind for e in tt.edits} <= {"wrap"}:
            assert tt.static_identical, tmpl
        assert re.search(r"\{%-?\s*generation\s*-?%\}", tt.template), tt.template  # TRL's has_generation_markers
        v = verify_training_template(setup, tt.template, CONVS)
        assert all(r.identical for r in v.rows), (tmpl, tt.template)
        assert v.verified, (tmpl, tt.template, [(r.conversation_id, r.reason, r.mismatches) for r in v.rows])
        for conv in CONVS:
            assert trained_pieces(tiny_tokenizer, tt.template, conv) == our_trained_text(tiny_tokenizer, tmpl, conv)

    check()


def test_a_looping_template_stops_at_the_render_limit(tiny_tokenizer):
    import time

    from inspector.template.render import RenderLimits
    from inspector.training_template.check import export_training_template

    spin = ("{% for m in messages %}{{ m.content }}{% if m.role == 'assistant' %}{% for i in range(100000) %}"
            "{% for j in range(100000) %}{% endfor %}{% endfor %}{% endif %}{% endfor %}")
    opts = LabelOptions(limits=RenderLimits(time_limit=0.3))
    start = time.monotonic()
    report = export_training_template(setup_for(tiny_tokenizer, spin), CONVS[:1], opts)
    assert time.monotonic() - start < 30
    assert not report.verified and not report.verification.compared
    assert "longer than 0.3 s" in report.verification.rows[0].reason


def test_conversations_sharing_an_id_are_each_checked(tiny_tokenizer):
    twins = [Conversation("same", CONVS[0].messages), Conversation("same", CONVS[1].messages)]
    setup = setup_for(tiny_tokenizer, CHATML)
    v = verify_training_template(setup, build_training_template(setup, twins).template, twins)
    assert [r.conversation_id for r in v.rows] == ["same", "same"]
    assert v.verified and v.rows[0].tokens != v.rows[1].tokens


# --- issue 21: the verdict carries the label errors of the samples it reproduces ---------------------------------

def test_verdict_is_not_verified_when_export_would_reject_the_labels_it_copies(tiny_tokenizer):
    """GLM-4 tool template (vLLM examples): the mask agreed with labels that never train an end-of-turn, and the
    verdict said VERIFIED while export rejected every record. Here: labels without the end-of-turn."""
    setup, opts = setup_for(tiny_tokenizer, CHATML), LabelOptions(label_eot=False)
    tt = build_training_template(setup, CONVS[:1], opts)
    v = verify_training_template(setup, tt.template, CONVS[:1], opts)
    row = v.rows[0]
    assert row.identical and row.agree == row.tokens > 0  # the mask copies our labels exactly ...
    assert not v.verified and not row.verified  # ... but those labels are rejected by export
    assert any(e.startswith("eot-not-labeled") for e in row.label_errors)
    assert "export rejects" in v.summary() and row.to_dict()["label_errors"] == row.label_errors
    good = verify_training_template(setup, build_training_template(setup, CONVS[:1]).template, CONVS[:1])
    assert good.verified and not good.rows[0].label_errors


def test_degenerate_empty_answer_that_trains_across_two_headers_does_not_pass():
    """Tele-FLM: headers written as plain text, an empty assistant turn; a tokenizer that merges '><' labels a
    token holding the end of one "<_bot>" header and the start of the next."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.Split(pattern="x^", behavior="isolated")  # no pre-split: merges cross '>'
    raw.decoder = decoders.BPEDecoder()
    raw.train_from_iterator(["<_user>Hi<_bot><_bot>Yes<_user>" * 20, "the lazy dog. Hello! How can I help"] * 5,
                            trainers.BpeTrainer(vocab_size=120, special_tokens=["</s>"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>")
    tele = ("{% for m in messages %}{% if m.role == 'user' %}{{ '<_user>' + m.content }}{% else %}"
            "{{ '<_bot>' + m.content }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<_bot>' }}{% endif %}")
    conv = Conversation("deg", [Message("user", "Hi"), Message("assistant", ""), Message("assistant", "Yes"),
                                Message("user", "Hi"), Message("assistant", "Yes")])
    setup = setup_for(tok, tele)
    tt = build_training_template(setup, [conv])
    v = verify_training_template(setup, tt.template, [conv])
    (row,) = v.rows
    assert row.identical and row.agree == row.tokens > 0  # the mask copies our labels: no proof by itself
    assert not v.verified, v.summary()
    assert any(e.startswith(("boundary-straddle", "label-verification")) for e in row.label_errors), row.label_errors


@pytest.mark.parametrize("hidden", ["{# use {% generation %} here #}", "{% raw %}{% generation %}{% endraw %}",
                                    "{{ '' if false else '' }}{% set note = '{% generation %}' %}"])
def test_tag_in_a_comment_raw_block_or_string_is_not_already_tagged(tiny_tokenizer, hidden):
    template = hidden + CHATML
    tt = build_training_template(setup_for(tiny_tokenizer, template), CONVS[:1])
    assert not tt.already_tagged and not any("already has" in n for n in tt.notes)
    if "raw" not in hidden:  # (a raw block writes its text: the rewriter's instrumented render says so instead)
        assert tt.changed and "{% generation %}{{" in tt.template
        assert verify_training_template(setup_for(tiny_tokenizer, template), tt.template, CONVS[:1]).verified
