"""Conformance over the real corpus: ``assistant-only`` labels for every publisher chat template in $SFT_CORPUS.

Each template gets the tokenizer ``pairs.json`` suggests and three conversations: plain multi-turn with a system
prompt, one with ``reasoning_content``, one with a tool call and its result (tools passed). Every sample is checked
with the independent reference in ``test_labels.assistant_only_problems`` (texts found by plain search, the
end-of-turn marker written down below by reading each template, the start of each turn compared with a render of
the conversation so far plus the generation prompt), and against the ``{% generation %}`` mask where the template
has one. The outcome is written to docs/conformance.md.

A template that renders but gets wrong labels fails the test, unless it is listed in ``KNOWN_ISSUES`` with the
reason (the same reason is printed in the doc). A conversation the template refuses to render fails the test unless
``EXPECTED_RENDER_ERRORS`` says why that is the template's own doing (it raises on a role, or transformers' sandbox
cannot run it), so a rendering regression cannot hide.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from inspector.conversations import Conversation, Message
from inspector.labels.engine import LabelEngine, LabelOptions
from inspector.template.tokenizer import ChatSetup
from inspector.labels.verify import verify_sample
from test_labels import assistant_only_problems
from training_corpus import training_cell

DOC = Path(__file__).resolve().parent.parent / "docs" / "conformance.md"


@dataclass
class ToolMessage(Message):
    """A tool result carrying the id of the call it answers (Mistral, Kimi, Solar, Gemma 4 read ``tool_call_id``).

    ``Message`` has no such field yet; see the lead request in the engine report.
    """

    tool_call_id: str | None = None

    def to_template_dict(self, tool_calls_as_text: bool = False) -> dict[str, Any]:
        out = super().to_template_dict(tool_calls_as_text)
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
                   "required": ["city"]}}}]
# Command R+ lists tools in Cohere's own shape (name, description, parameter_definitions).
COHERE_TOOLS = [{"name": "get_weather", "description": "Get the current weather for a city.",
                 "parameter_definitions": {"city": {"type": "str", "description": "City name", "required": True}}}]
CALL_ID = "call0w3a1"  # 9 alphanumeric characters, as Mistral's templates require


def conversations(needs: dict[str, Any]) -> list[Conversation]:
    """The three test conversations, shaped as a template needs (``needs`` key: cohere_tools). Tool-call arguments
    are an object and a call-only message has content "", as the loader gives them: the engine adapts both to what
    the template wants."""
    args: Any = {"city": "Oslo"}
    call = {"id": CALL_ID, "type": "function", "function": {"name": "get_weather", "arguments": args}}
    plain = Conversation("plain", [
        Message("system", "You are a terse geography tutor."),
        Message("user", "What is the capital of France?"),
        Message("assistant", "Paris is the capital of France."),
        Message("user", "And of Italy?"),
        Message("assistant", "Rome is the capital of Italy.")])
    reasoning = Conversation("reasoning", [
        Message("user", "How many legs do two cats have?"),
        Message("assistant", "Two cats have eight legs.", reasoning="Each cat has four legs, four times two is eight."),
        Message("user", "And three dogs?"),
        Message("assistant", "Three dogs have twelve legs.",
                reasoning="Each dog has four legs, four times three is twelve.")])
    tool = Conversation("tool", [
        Message("system", "You can check the weather."),
        Message("user", "What is the weather like in the Norwegian capital?"),
        Message("assistant", "", tool_calls=[call]),
        ToolMessage("tool", '{"temperature": 7, "sky": "overcast"}', name="get_weather", tool_call_id=CALL_ID),
        Message("assistant", "It is 7 degrees and overcast there.")],
        tools=COHERE_TOOLS if needs.get("cohere_tools") else TOOLS)
    return [plain, reasoning, tool]


# What each template needs beyond `messages` to render these conversations (shown in the notes column).
# (Tool-call arguments as JSON text and content None on a call-only message are no longer needs: the engine learns
# them from the template and adapts the messages, noted on the sample: see LabelEngine.template_messages.)
NEEDS: dict[str, dict[str, Any]] = {
    "CohereForAI-c4ai-command-r-plus-tool_use.jinja": {"cohere_tools": True},
    "fireworks-ai-llama-3-firefunction-v2.jinja": {"template_kwargs": {
        "functions": json.dumps([t["function"] for t in TOOLS]), "datetime": "2024-07-26"}},
}
NEEDS_TEXT: dict[str, str] = {
    "CohereForAI-c4ai-command-r-plus-tool_use.jinja": "tools in Cohere's shape (name, description, "
                                                      "parameter_definitions)",
    "fireworks-ai-llama-3-firefunction-v2.jinja": "`functions` (JSON text of the function specs) and `datetime` "
                                                  "(a date string), passed through LabelOptions.template_kwargs",
}

# What a reader of the doc should know about a template's own layout (shown in the notes column).
TEMPLATE_NOTES: dict[str, str] = {
    "GLM-4.6.jinja": "no closing marker: the next role token (<|user|>, <|observation|>) stops generation, as GLM's "
                     "own fine-tuning trains it; nothing closes the last answer",
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja": "writes tool calls only for content None, a key that "
                                                      "transformers 5.x drops before rendering (then the template "
                                                      "raises): with content \"\" the call is not in the training "
                                                      "text (reported as unsupported-role); the template closes a "
                                                      "tool-call block only after a second call",
    "google-gemma-4-31B-it.jinja": "a tool call and its result share the model turn: the call is trained up to "
                                   "<|tool_response>, the response is not, the answer after it is",
    "CohereForAI-c4ai-command-r-plus-tool_use.jinja": "an \"Action:\" tool-call turn is not closed by the template",
    "openai-gpt-oss-120b.jinja": "an answer with reasoning is two messages (analysis, final) in one trained turn; "
                                 "the last answer ends with <|return|>, a call with <|call|>",
    "muse-glimmer.jinja": "reasoning and answer are two messages (to=self, to=user) in one trained turn",
    "llama-cpp-rwkv-world.jinja": "plain text turns (User:/Assistant:) with no end-of-turn marker: the model never "
                                  "learns to stop",
}

# Conversations a template refuses, and why that is the template's doing. Substring of the error expected.
EXPECTED_RENDER_ERRORS: dict[str, dict[str, tuple[str, str]]] = {
    "google-gemma-2-2b-it.jinja": {
        "plain": ("System role not supported", "raises on a system message (its own raise_exception)"),
        "tool": ("System role not supported", "raises on a system message (its own raise_exception)")},
    "Kimi-K2-Instruct.jinja": {
        "tool": ("unsafe", "calls list.append, which transformers' sandboxed Jinja forbids: apply_chat_template "
                           "fails the same way on tool calls")},
    "llama-cpp-deepseek-r1.jinja": {
        "tool": ("generator", "pipes `map(...)` into `tojson`, which transformers' tojson cannot serialize: "
                              "apply_chat_template fails the same way when tools are passed")},
}

# End-of-turn marker(s) written down by reading each template: the string that closes an assistant turn (the last
# one, when a closing has several parts). Any one of them may close a given turn.
EXPECTED_EOT: dict[str, tuple[str, ...]] = {
    "Apriel-1.6-15b-Thinker-fixed.jinja": ("<|end|>",),  # none after the last answer
    "Cohere2MoE.jinja": ("<|END_OF_TURN_TOKEN|>",),  # after <|END_TEXT|> / <|END_ACTION|>
    "CohereForAI-c4ai-command-r-plus-tool_use.jinja": ("<|END_OF_TURN_TOKEN|>",),  # none after "Action:" calls
    "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja": ("<|END_OF_TURN_TOKEN|>",),  # after <|END_RESPONSE|>
    "GLM-4.6.jinja": ("<|user|>", "<|observation|>"),  # no closing: the next role token stops generation
    "GigaChat3.1-10B-A1.8B.jinja": ("<|message_sep|>",),
    "HuggingFaceTB-SmolLM3-3B.jinja": ("<|im_end|>",),
    "Kimi-K2-Instruct.jinja": ("<|im_end|>",),
    "Kimi-K3.jinja": ("<|end_of_msg|>",),  # after <|close|>response<|sep|><|close|>message<|sep|>
    "LFM2-8B-A1B.jinja": ("<|im_end|>",),
    "LFM2.5-8B-A1B.jinja": ("<|im_end|>",),
    "MiMo-VL.jinja": ("<|im_end|>",),
    "MiniMax-M1.jinja": ("<end_of_sentence>",),
    "MiniMax-M3.jinja": ("[e~[",),
    "Mistral-Small-3.2-24B-Instruct-2506.jinja": ("</s>",),
    "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16.jinja": ("<|im_end|>",),
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja": ("<|im_end|>",),
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja": ("<|im_end|>",),
    "Qwen-QwQ-32B.jinja": ("<|im_end|>",),
    "Qwen-Qwen2.5-7B-Instruct.jinja": ("<|im_end|>",),
    "Qwen-Qwen3-0.6B.jinja": ("<|im_end|>",),
    "Qwen3-Coder.jinja": ("<|im_end|>",),
    "Qwen3.5-4B.jinja": ("<|im_end|>",),
    "Spark2.5.jinja": ("<｜end▁of▁sentence｜>",),
    "StepFun3.5-Flash.jinja": ("<|im_end|>",),
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja": ("<｜end▁of▁sentence｜>",),  # none after a single call
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja": ("<｜end▁of▁sentence｜>",),
    "deepseek-ai-DeepSeek-V3.1.jinja": ("<｜end▁of▁sentence｜>",),
    "deepseek-ai-DeepSeek-V3.2.jinja": ("<｜end▁of▁sentence｜>",),
    "deepseek-ai-DeepSeek-V4-Flash-0731.jinja": ("<｜end▁of▁sentence｜>",),
    "deepseek-ai-DeepSeek-V4.jinja": ("<｜end▁of▁sentence｜>",),
    "fireworks-ai-llama-3-firefunction-v2.jinja": ("<|eot_id|>",),
    "google-gemma-2-2b-it.jinja": ("<end_of_turn>",),
    "google-gemma-4-31B-it-interleaved.jinja": ("<turn|>",),
    "google-gemma-4-31B-it.jinja": ("<turn|>", "<|tool_response>"),  # a call is followed by the tool response
    "ibm-granite-granite-3.3-2B-Instruct.jinja": ("<|end_of_text|>",),
    "ibm-granite-granite-4.1.jinja": ("<|end_of_text|>",),
    "inclusionai-ling-3.0-flash.jinja": ("<|role_end|>",),
    "llama-cpp-deepseek-r1.jinja": ("<｜end▁of▁sentence｜>",),
    "llama-cpp-rwkv-world.jinja": (),  # "User: ...\n\nAssistant: ...": no marker at all
    "meetkai-functionary-medium-v3.1.jinja": ("<|eot_id|>", "<|eom_id|>"),  # <|eom_id|> after a call
    "meetkai-functionary-medium-v3.2.jinja": ("<|eot_id|>",),
    "meta-llama-Llama-3.1-8B-Instruct.jinja": ("<|eot_id|>",),
    "meta-llama-Llama-3.2-3B-Instruct.jinja": ("<|eot_id|>",),
    "microsoft-Phi-3.5-mini-instruct.jinja": ("<|end|>",),
    "mistralai-Ministral-3-14B-Reasoning-2512.jinja": ("</s>",),
    "moonshotai-Kimi-K2.jinja": ("<|im_end|>",),
    "muse-glimmer.jinja": ("<|eot|>",),
    "openai-gpt-oss-120b.jinja": ("<|end|>", "<|return|>", "<|call|>"),  # <|return|> last, <|call|> after a call
    "poolside-Laguna-S-2.1.jinja": ("</assistant>",),
    "poolside-Laguna-XS-2.1.jinja": ("</assistant>",),
    "poolside-Laguna-XS.2.jinja": ("</assistant>",),
    "tencent-Hy3.jinja": ("<｜hy_eos:opensource｜>",),  # none after the last answer
    "unsloth-Apriel-1.5.jinja": ("<|end|>",),
    "unsloth-mistral-Devstral-Small-2507.jinja": ("</s>",),
    "upstage-Solar-Open-100B.jinja": ("<|end|>", "<|calls|>"),  # <|calls|> after a call
}

# Templates whose labels are known to be wrong, with the reason. Keep empty unless a fix is impossible.
KNOWN_ISSUES: dict[str, str] = {}


def _corpus_templates() -> list[str]:
    path = os.environ.get("SFT_CORPUS")
    if not path or not Path(path, "templates").is_dir():
        return []
    return sorted(p.name for p in Path(path, "templates").glob("*.jinja"))


@dataclass
class Outcome:
    template: str
    tokenizer: str
    rendered: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)
    end_of_turn: tuple[str, ...] = ()
    methods: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    straddles: int = 0
    generation_mismatch: list[str] = field(default_factory=list)
    info: Any = None
    verifier: dict[str, list[str]] = field(default_factory=dict)  # conversation -> violations (empty: agrees)
    verifier_notes: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return bool(self.verifier) and not any(self.verifier.values())

    @property
    def renders(self) -> str:
        return "yes" if not self.errors else "no" if not self.rendered else f"{len(self.rendered)}/3"

    @property
    def correct(self) -> bool:
        return bool(self.rendered) and not any(self.problems.values())


OUTCOMES: dict[str, Outcome] = {}


@pytest.fixture(scope="module")
def corpus_tokenizers(corpus):
    from transformers import AutoTokenizer

    pairs = json.loads((corpus / "pairs.json").read_text())
    cache: dict[str, Any] = {}

    def get(template: str):
        name = pairs.get(template, "gpt-2")
        if name not in cache:
            cache[name] = AutoTokenizer.from_pretrained(str(corpus / "tokenizers" / name))
        return name, cache[name]

    return get


def run_template(corpus: Path, template: str, get_tokenizer) -> Outcome:
    tok_name, tok = get_tokenizer(template)
    text = (corpus / "templates" / template).read_text(encoding="utf-8")
    needs = NEEDS.get(template, {})
    opts = LabelOptions(template_kwargs=needs.get("template_kwargs", {}))
    engine = LabelEngine(ChatSetup(tok, text, "file", template))
    info = engine.info(opts)
    out = Outcome(template, tok_name, end_of_turn=info.end_of_turn, info=info)
    convs = conversations(needs)
    samples, errors = engine.build(convs, opts)
    for err in errors:
        out.errors[err.conversation_id] = err.reason
    by_id = {c.id: c for c in convs}
    for s in samples:
        conv = by_id[s.conversation_id]
        out.rendered.append(s.conversation_id)

        def prefix_render(i, gen, conv=conv, msgs=s.messages):
            return engine.render(msgs[:i], conv.tools, opts, add_generation_prompt=gen).text

        result = verify_sample(engine, s, conv, opts)
        out.verifier[s.conversation_id] = [result.skipped] if result.skipped else \
            [v.message() for v in result.violations]
        out.verifier_notes += [n for n in result.notes if n not in out.verifier_notes]

        out.problems[s.conversation_id] = assistant_only_problems(
            s, conv.messages, expected_eot=EXPECTED_EOT.get(template, ()), prefix_render=prefix_render)
        out.straddles += int(s.straddles.sum())
        if s.generation_mismatch:
            out.generation_mismatch.append(s.conversation_id)
        out.methods |= {sp.method for sp in s.spans} | {t.method for t in s.turns}
        for note in s.notes:
            if note not in out.notes:
                out.notes.append(note)
    return out


TEMPLATES = _corpus_templates()


@pytest.mark.parametrize("template", TEMPLATES or ["(no corpus)"])
def test_template_conformance(corpus, corpus_tokenizers, template):
    if template == "(no corpus)":
        pytest.skip("SFT_CORPUS is not set")
    assert template in EXPECTED_EOT, f"read {template} and write its end-of-turn marker(s) into EXPECTED_EOT"
    out = run_template(corpus, template, corpus_tokenizers)
    OUTCOMES[template] = out
    for marker in EXPECTED_EOT[template]:  # the probe learned the same markers (a closing may end with one)
        assert any(e.endswith(marker) for e in out.end_of_turn), f"{template}: probe found {out.end_of_turn}"
    if not EXPECTED_EOT[template]:
        assert out.end_of_turn == (), f"{template}: probe found {out.end_of_turn} where the template writes none"
    expected_errors = EXPECTED_RENDER_ERRORS.get(template, {})
    for conv_id, reason in out.errors.items():
        assert conv_id in expected_errors and expected_errors[conv_id][0] in reason, \
            f"{template} failed to render {conv_id!r}: {reason}"
    assert out.rendered, f"{template} rendered none of the conversations"
    wrong = {k: v for k, v in out.problems.items() if v}
    if template in KNOWN_ISSUES:
        assert wrong, f"{template} is listed in KNOWN_ISSUES but its labels are now correct: remove it"
        return
    assert not wrong, f"{template} ({out.tokenizer}): wrong labels: {wrong}"
    disagree = {k: v for k, v in out.verifier.items() if v}
    assert not disagree, f"{template} ({out.tokenizer}): the perturbation verifier disagrees: {disagree}"


# --- the document ----------------------------------------------------------------------------------------------

STANDARD_VARIABLES = {"add_generation_prompt", "bos_token", "eos_token", "pad_token", "unk_token", "loop_messages"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "\\n")


def _marker_cell(markers: tuple[str, ...]) -> str:
    return " ".join(f"`{_cell(m)}`" for m in markers) if markers else "none"


def outcome_notes(out: Outcome) -> list[str]:
    notes: list[str] = []
    if out.template in TEMPLATE_NOTES:
        notes.append(TEMPLATE_NOTES[out.template])
    if out.template in NEEDS_TEXT:
        notes.append("needs " + NEEDS_TEXT[out.template])
    info = out.info
    if info is not None:
        reads = [v for v in info.variables if v not in STANDARD_VARIABLES]
        if reads:
            notes.append("reads " + ", ".join(f"`{v}`" for v in reads) + " (from its source)")
        if info.needs_tools_list:
            notes.append("fails when `tools` is undefined: rendered with `tools=[]`")
        if info.generation_prompt is None:
            notes.append("no generation prompt distinct from the prompt: turns start after the header it always "
                         f"writes (`{_cell((info.assistant_header or '').strip())}`)")
        if info.has_generation_tags:
            notes.append("has `{% generation %}`: " + (
                "its mask differs from ours only in markup (it also marks the role header and/or the newline after "
                "the closing), reported as `generation_mismatch`" if out.generation_mismatch else "agrees with ours"))
    for conv_id, (_, why) in EXPECTED_RENDER_ERRORS.get(out.template, {}).items():
        notes.append(f"{conv_id} conversation: {why}")
    seen = set()
    for note in out.notes:
        if "is not rendered by the template" in note:
            kind = note.split(" of message")[0]
            note = f"does not render {kind} of some messages (drops it)"
        if note not in seen:
            seen.add(note)
            notes.append(note)
    if out.straddles:
        notes.append(f"{out.straddles} boundary-straddling tokens (reported; the `{out.tokenizer}` tokenizer has no "
                     f"single tokens for this template's markers)" if out.tokenizer == "gpt-2" else
                     f"{out.straddles} boundary-straddling tokens (reported)")
    if out.template in KNOWN_ISSUES:
        notes.append("KNOWN ISSUE: " + KNOWN_ISSUES[out.template])
    for conv_id, problems in out.problems.items():
        for p in problems:
            notes.append(f"WRONG ({conv_id}): {p}")
    for conv_id, problems in out.verifier.items():
        for p in problems:
            notes.append(f"VERIFIER ({conv_id}): {p}")
    notes += [f"verifier: {n}" for n in out.verifier_notes]
    return notes


def write_doc(outcomes: list[Outcome], path: Path = DOC) -> str:
    total = len(outcomes)
    all3 = sum(1 for o in outcomes if o.renders == "yes")
    some = sum(1 for o in outcomes if o.rendered and o.renders != "yes")
    correct = sum(1 for o in outcomes if o.correct)
    verified = sum(1 for o in outcomes if o.verified)
    lines = [
        "# Conformance: assistant-only labels over the corpus templates",
        "",
        "Written by `tests/test_conformance.py` (run `SFT_CORPUS=../shared/corpus python -m pytest "
        "tests/test_conformance.py`); do not edit by hand.",
        "",
        "Each publisher chat template in `$SFT_CORPUS/templates` is rendered with the tokenizer `pairs.json` suggests "
        "and three conversations: plain multi-turn with a system prompt, one with `reasoning_content`, one with a "
        "tool call and its result (tools passed). *Labels correct* means the independent check in "
        "`tests/test_labels.py` passed for every conversation that renders: every assistant text (content, "
        "reasoning, tool-call arguments) is trained; no user/system/tool character sits in a labeled token unless "
        "that token is reported as straddling; the end-of-turn marker (read from the template by hand, column 5) is "
        "trained and nothing after it; where the conversation so far renders as a prefix, training starts exactly "
        "where the generation prompt ends; and a `{% generation %}` mask, where the template has one, agrees on all "
        "message text. *Verifier*: the perturbation verifier (`inspector/labels/verify.py`: each field replaced in turn by "
        "a sentinel, the renders diffed, nothing taken from the engine's spans) agrees with the labels on every "
        "conversation that renders. *Span methods*: how message text was found (`exact`, `stripped`, `marked` "
        "render, `sentinel` render; tool calls `marked` or `diff`) and how turns start (`generation-prompt`, "
        "`header` = part of it, `content`).",
        "",
        f"**Summary: {total} templates; {all3} render all three conversations, {some} render some of them; labels "
        f"correct for {correct} of the {all3 + some} that render; the verifier agrees on {verified}; known issues: "
        f"{len(KNOWN_ISSUES)}.**",
        "",
        *training_intro([training_cell(o.template) for o in outcomes]),
        "| template | tokenizer | renders? | labels correct? | verifier | end-of-turn marker | span methods | "
        "training template | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for o in sorted(outcomes, key=lambda o: o.template.lower()):
        ok = "yes" if o.correct else "no" if o.rendered else "n/a"
        ver = "agrees" if o.verified else "n/a" if not o.rendered else "DISAGREES"
        lines.append(f"| {o.template.removesuffix('.jinja')} | {o.tokenizer} | {o.renders} | {ok} | {ver} | "
                     f"{_marker_cell(EXPECTED_EOT.get(o.template, o.end_of_turn))} | {', '.join(sorted(o.methods))} | "
                     f"{_cell(training_cell(o.template))} | {'; '.join(_cell(n) for n in outcome_notes(o))} |")
    lines += ["", "Known issues (also in `KNOWN_ISSUES` in the test):", ""]
    lines += [f"- {k}: {v}" for k, v in KNOWN_ISSUES.items()] or ["- none"]
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text


def training_intro(cells: list[str]) -> list[str]:
    verified = sum(c.startswith("verified") for c in cells)
    return ["*Training template* (`python -m inspector training-template`, `tests/test_training_template_corpus.py`): "
            "the template rewritten with `{% generation %}` blocks, verified through transformers' "
            "`apply_chat_template(return_assistant_tokens_mask=True)` on these three conversations and three more "
            "(one turn; three turns with reasoning; two tool calls): the text byte-identical to the original's and "
            "the mask equal to our labels on every token (conversations neither side can render are counted apart). "
            f"**Verified for {verified} of {len(cells)} templates.**", ""]


def test_write_conformance_doc(corpus, corpus_tokenizers):
    """Runs after the per-template tests (file order) and writes docs/conformance.md from their outcomes."""
    outcomes = [OUTCOMES.get(t) or run_template(corpus, t, corpus_tokenizers) for t in TEMPLATES]
    text = write_doc(outcomes)
    assert text.count("\n| ") == len(TEMPLATES) + 1  # header + one row per template
    assert all(o.verified for o in outcomes if o.rendered)
    for t in TEMPLATES:
        assert f"| {t.removesuffix('.jinja')} |" in text
