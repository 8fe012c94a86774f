"""render.py: the sandboxed render (limits, errors) and the template probe (generation prompt, end-of-turn markers,
assistant header), on inline templates shaped like the publishers' ones."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.errors import ChatTemplateError, RenderError, RenderTimeout
from inspector.template.render import DEFAULT_DATE_STRING, RenderLimits, compile_template, has_generation_tags, render, template_variables
from inspector.template.probe import marker_regex, probe_template, template_variables_used

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
USER = [{"role": "user", "content": "Hi"}]


class Tok:
    """Just what the probe reads from a tokenizer: special token strings and a length."""

    bos_token, eos_token, pad_token = "<s>", "</s>", "</s>"
    added_tokens_encoder = {"<s>": 1, "</s>": 2}
    name_or_path = "fake"

    def __len__(self):
        return 3


def test_render_matches_apply_chat_template_text(tiny_tokenizer):
    msgs = USER + [{"role": "assistant", "content": "Hello!"}]
    ours = render(msgs, CHATML, tiny_tokenizer, add_generation_prompt=False).text
    assert ours == tiny_tokenizer.apply_chat_template(msgs, chat_template=CHATML, tokenize=False)
    assert ours == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"


def test_variables_special_tokens_date_and_strftime():
    tmpl = "{{ bos_token }}|{{ eos_token }}|{{ date_string }}|{{ strftime_now('%Y') | length }}|{{ flag }}"
    text = render(USER, tmpl, Tok(), variables=template_variables(Tok(), {"flag": "on"})).text
    assert text == f"<s>|</s>|{DEFAULT_DATE_STRING}|4|on"


def test_template_raise_exception_is_a_render_error_with_its_message():
    tmpl = "{{ raise_exception('Conversation roles must alternate user/assistant') }}"
    with pytest.raises(RenderError, match="Conversation roles must alternate user/assistant"):
        render(USER, tmpl)


def test_syntax_error_is_a_chat_template_error_with_its_line():
    with pytest.raises(ChatTemplateError, match=r"line 3"):
        compile_template("{{ bos_token }}\n{% for m in messages %}\n{{ m.content }\n{% endfor %}")


def test_endless_loop_is_stopped_by_the_time_limit():
    tmpl = "{% for i in range(100000) %}{% for j in range(100000) %}{% if i < 0 %}x{% endif %}{% endfor %}{% endfor %}"
    with pytest.raises(RenderTimeout, match="longer than"):
        render(USER, tmpl, limits=RenderLimits(time_limit=0.3))


def test_runaway_output_is_stopped_by_the_size_limit():
    tmpl = "{% for i in range(1000) %}{% for j in range(1000) %}{{ 'xxxxxxxxxx' }}{% endfor %}{% endfor %}"
    with pytest.raises(RenderTimeout, match="characters"):
        render(USER, tmpl, limits=RenderLimits(time_limit=30, max_chars=100_000))


def test_generation_spans_are_tracked():
    tmpl = "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}|{% endfor %}"
    assert has_generation_tags(tmpl) and not has_generation_tags(CHATML)
    r = render(USER + [{"role": "assistant", "content": "Yo"}], tmpl, track_generation=True)
    assert (r.text, r.generation_spans) == ("Hi|Yo|", [(0, 2), (3, 5)])


def test_marker_regex_worked_example():
    assert marker_regex(["<|im_end|>"]).findall("Hi<|im_end|>\n<|im_start|>[INST]") == \
        ["<|im_end|>", "<|im_start|>", "[INST]"]


def test_template_variables_used_lists_what_the_template_reads():
    tmpl = ("{{ bos_token }}{% set sys = 'x' %}{% for m in messages %}{{ m.content }}{% endfor %}"
            "{% if enable_thinking %}{% endif %}{% if tools %}{% endif %}")
    assert template_variables_used(tmpl) == ("bos_token", "enable_thinking", "tools")


# --- the probe ---------------------------------------------------------------------------------------------------

def test_probe_chatml():
    info = probe_template(CHATML)
    assert (info.generation_prompt, info.end_of_turn, info.assistant_header) == \
        ("<|im_start|>assistant\n", ("<|im_end|>",), "<|im_start|>assistant\n")
    assert info.answer_to_user == "<|im_end|>\n<|im_start|>user\n"
    assert not info.needs_tools_list and not info.has_generation_tags


def test_probe_closing_with_several_markers_follows_the_user_closing():
    # Cohere: answers close with <|END_RESPONSE|><|END_OF_TURN_TOKEN|>, user messages with <|END_OF_TURN_TOKEN|>
    tmpl = ("{% for m in messages %}<|START_OF_TURN_TOKEN|>{% if m.role == 'user' %}<|USER_TOKEN|>{{ m.content }}"
            "{% else %}<|CHATBOT_TOKEN|><|START_RESPONSE|>{{ m.content }}<|END_RESPONSE|>{% endif %}"
            "<|END_OF_TURN_TOKEN|>{% endfor %}{% if add_generation_prompt %}<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"
            "{% endif %}")
    info = probe_template(tmpl)
    assert info.end_of_turn == ("<|END_RESPONSE|><|END_OF_TURN_TOKEN|>",)
    assert info.generation_prompt == "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"


def test_probe_next_role_marker_as_stop_and_tool_call_closing():
    # GLM: no closing marker; <|user|> / <|observation|> after an answer stop generation
    tmpl = ("{% for m in messages %}{% if m.role == 'user' %}<|user|>\n{{ m.content }}{% elif m.role == 'tool' %}"
            "<|observation|>\n{{ m.content }}{% else %}<|assistant|>\n{{ m.content }}{% for c in m.tool_calls or [] %}"
            "<tool_call>{{ c.function.arguments | tojson }}</tool_call>{% endfor %}{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    info = probe_template(tmpl)
    assert info.end_of_turn == ("<|user|>", "<|observation|>")
    assert info.generation_prompt == "<|assistant|>"


def test_probe_last_turn_and_tool_call_closings_differ():
    # gpt-oss: <|end|> between turns, <|return|> after the last answer, <|call|> after a tool call
    tmpl = ("{% for m in messages %}<|start|>{{ m.role }}<|message|>{% if m.tool_calls %}"
            "{{ m.tool_calls[0].function.arguments | tojson }}<|call|>{% else %}{{ m.content }}"
            "{% if m.role == 'assistant' and loop.last %}<|return|>{% else %}<|end|>{% endif %}{% endif %}"
            "{% endfor %}{% if add_generation_prompt %}<|start|>assistant{% endif %}")
    info = probe_template(tmpl)
    assert info.end_of_turn == ("<|end|>", "<|return|>", "<|call|>")


def test_probe_without_a_distinct_generation_prompt_learns_the_header():
    # Mistral: "[/INST]" is always written after a user message; answers end with EOS
    tmpl = ("{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}[INST]{{ m.content }}[/INST]"
            "{% else %}{{ m.content }}{{ eos_token }}{% endif %}{% endfor %}")
    info = probe_template(tmpl, Tok())
    assert info.generation_prompt is None and info.assistant_header == "[/INST]"
    assert info.end_of_turn == ("</s>",) and info.bos_in_template
    assert "the generation prompt is not an addition to the rendered prompt" in info.notes


def test_probe_gives_tools_a_list_when_the_template_needs_one():
    tmpl = "{% for t in tools %}{{ t }}{% endfor %}" + CHATML
    info = probe_template(tmpl)
    assert info.needs_tools_list and info.end_of_turn == ("<|im_end|>",)


def test_probe_of_a_template_without_markers():
    tmpl = ("{% for m in messages %}{{ ('User: ' if m.role == 'user' else 'Assistant: ') + m.content + '\n\n' }}"
            "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}")
    info = probe_template(tmpl)
    assert info.end_of_turn == () and "no end-of-turn marker follows an assistant answer" in info.notes


def test_probe_is_cached():
    assert probe_template(CHATML) is probe_template(CHATML)


def _transformers_messages(messages):
    """What apply_chat_template hands a template (transformers 5.x), step by step."""
    from transformers.utils.chat_template_utils import (_alias_reasoning_fields, _normalize_chat_messages,
                                                        _plain_template_data)

    return _alias_reasoning_fields(_plain_template_data(_normalize_chat_messages(messages)))


def _json_values():
    from hypothesis import strategies as st

    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5))
    odd = st.one_of(st.binary(max_size=3), st.dates(), st.builds(lambda x: np.int64(x), st.integers(-5, 5)),
                    st.builds(lambda x: np.bool_(x), st.booleans()))
    leaf = st.one_of(scalars, scalars, scalars, odd)
    return st.recursive(leaf, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.tuples(inner, inner),
        st.dictionaries(st.sampled_from(["content", "text", "type", "arguments", "name", "x"]), inner, max_size=3)),
        max_leaves=12)


def test_template_messages_equal_what_transformers_hands_the_template():
    """render.template_messages skips transformers' two deep copies for plain JSON data: on any message list
    (None values, reasoning under its three names, tuples, nested tool calls, and non-JSON values such as bytes,
    dates and numpy scalars that must become transformers' placeholders) the result equals transformers' own, key
    order included."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from inspector.template.render import template_messages

    message = st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "tool"])},
        optional={"content": _json_values(), "reasoning": st.one_of(st.none(), st.text(max_size=3)),
                  "thinking": st.one_of(st.none(), st.text(max_size=3)),
                  "reasoning_content": st.one_of(st.none(), st.text(max_size=3)),
                  "tool_calls": st.lists(st.fixed_dictionaries({"function": st.fixed_dictionaries(
                      {"name": st.text(max_size=3), "arguments": _json_values()})}), max_size=2)})

    @settings(max_examples=400, deadline=None)
    @given(st.lists(message, max_size=4))
    def check(messages):
        ours, theirs = template_messages(messages), _transformers_messages(messages)
        assert ours == theirs
        assert [list(m) for m in ours] == [list(m) for m in theirs]

    check()


@pytest.mark.parametrize("statement", ["messages[0].update({'content': 'changed'})", "messages.append({})",
                                       "messages[0]['content'].append('x')", "tools.pop()"])
def test_a_template_cannot_change_the_messages_it_is_given(statement):
    """Plain messages reach the template without a copy: the immutable sandbox refuses every change to them, so
    the caller's data (the engine renders the same messages again and again) stays as it was."""
    messages = [{"role": "user", "content": ["a"]}]
    tools = [{"type": "function", "function": {"name": "f"}}]
    before = repr((messages, tools))
    with pytest.raises(RenderError):
        render(messages, "{% set _ = " + statement + " %}{{ messages[0]['content'] }}", tools=tools,
               variables={})
    assert repr((messages, tools)) == before


def test_dict_attribute_fast_path_gives_what_the_sandbox_gives():
    """message.role, message.get(...) on plain dicts skip the sandbox's generic checks: the values must be the ones
    the sandbox gives (a key, dict.get, a dict method named like a key, a missing key, a key named 'get')."""
    import jinja2.sandbox

    template = ("{% for m in messages %}{{ m.role }}|{{ m.get('content') }}|{{ m.get('nope', 'dflt') }}|"
                "{{ m.nope is defined }}|{{ m.items is defined }}|{{ m.items == 'shadowed' }}|"
                "{{ m.pop is defined }}|{{ m['get'] if 'get' in m }}\n{% endfor %}")
    messages = [{"role": "user", "content": "Hi", "items": "shadowed"}, {"role": "assistant", "content": "Yo",
                                                                       "get": "x"}]
    plain = jinja2.sandbox.ImmutableSandboxedEnvironment().from_string(template).render(messages=messages)
    ours = render(messages, template).text
    assert ours == plain
    assert "user|Hi|dflt|False|True|" in ours and "|x\n" in ours
