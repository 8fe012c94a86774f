"""Training templates for every publisher template of the corpus, built and verified once per test session and
shared by ``test_training_template_corpus.py`` (the assertions) and ``test_conformance.py`` (the "training template"
column of docs/conformance.md).

Each template gets the tokenizer ``pairs.json`` suggests, the three conformance conversations (shaped as the
template needs: ``test_conformance.NEEDS``) and three written here: a single turn, three turns with a system prompt
and reasoning on the last, and two tool calls answered by two tool results.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.conversations import Conversation, Message
from inspector.labels.engine import LabelOptions
from inspector.training_template.check import Verification, verify_training_template
from inspector.template.tokenizer import ChatSetup
from inspector.training_template.build import TrainingTemplate, build_training_template

# Templates whose training template is not verified, and why (the same words go into docs/conformance.md).
EXPECTED_NOT_VERIFIED: dict[str, str] = {
    "LFM2.5-8B-A1B.jinja": "has its own {% generation %} tags, left as they are: they also train the newline after "
                           "<|im_end|>, which our labels do not",
    # issue 21: the mask copies our labels exactly, but those labels train no end-of-turn after a tool-call turn
    # (command-r-plus) or after any answer (rwkv-world, with gpt-2 as its tokenizer): export rejects the records
    "CohereForAI-c4ai-command-r-plus-tool_use.jinja": "the labels it reproduces train no end-of-turn after a tool "
                                                      "call (eot-not-labeled): export rejects those records",
    "llama-cpp-rwkv-world.jinja": "the labels it reproduces train no end-of-turn (eot-not-labeled): export rejects "
                                  "those records",
    "poolside-Laguna-S-2.1.jinja": "has its own {% generation %} tags, left as they are: they also train the role "
                                   "header <assistant>, which our labels do not",
    "poolside-Laguna-XS-2.1.jinja": "has its own {% generation %} tags, left as they are: they also train the role "
                                    "header <assistant>, which our labels do not",
    "poolside-Laguna-XS.2.jinja": "has its own {% generation %} tags, left as they are: they also train the role "
                                  "header <assistant>, which our labels do not",
}

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
                   "required": ["city"]}}}]


COHERE_TOOLS = [{"name": "get_weather", "description": "Get the current weather for a city.",
                 "parameter_definitions": {"city": {"type": "str", "description": "City name", "required": True}}}]


def written_conversations(needs: dict[str, Any]) -> list[Conversation]:
    """Three more conversations: one turn; three turns, system prompt, reasoning on the last; two tool calls."""
    def args(city: str) -> Any:
        return json.dumps({"city": city}) if needs.get("args_as_string") else {"city": city}

    calls = [{"id": f"call{i}abcde", "type": "function", "function": {"name": "get_weather", "arguments": args(c)}}
             for i, c in ((1, "Oslo"), (2, "Rome"))]
    return [
        Conversation("single", [Message("user", "Hi there"), Message("assistant", "Hello! How can I help?")]),
        Conversation("three-turns", [
            Message("system", "Be brief."), Message("user", "One in Spanish?"), Message("assistant", "Uno."),
            Message("user", "Two?"), Message("assistant", "Dos."), Message("user", "Three?"),
            Message("assistant", "Tres.", reasoning="Spanish for three is tres.")]),
        Conversation("two-calls", [
            Message("user", "Weather in Oslo and Rome?"),
            Message("assistant", None if needs.get("content_none") else "", tool_calls=calls),  # type: ignore[arg-type]
            Message("tool", '{"temperature": 7}', name="get_weather", tool_call_id="call1abcde"),
            Message("tool", '{"temperature": 20}', name="get_weather", tool_call_id="call2abcde"),
            Message("assistant", "Oslo 7, Rome 20 degrees.")], tools=COHERE_TOOLS if needs.get("cohere_tools")
            else TOOLS),
    ]


@dataclass
class CorpusTraining:
    template: str
    tokenizer_name: str
    tokenizer: Any
    training: TrainingTemplate
    verification: Verification

    @property
    def verified(self) -> bool:
        return self.verification.verified and not self.training.problems


def corpus_path() -> Path | None:
    value = os.environ.get("SFT_CORPUS")
    return Path(value) if value and Path(value, "templates").is_dir() else None


@functools.lru_cache(maxsize=None)
def _tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(corpus_path() / "tokenizers" / name))


@functools.lru_cache(maxsize=None)
def training_outcome(template: str) -> CorpusTraining:
    """Build and verify the training template of one corpus template (cached for the session)."""
    from test_conformance import NEEDS, conversations

    corpus = corpus_path()
    name = json.loads((corpus / "pairs.json").read_text()).get(template, "gpt-2")
    tok = _tokenizer(name)
    text = (corpus / "templates" / template).read_text(encoding="utf-8")
    needs = NEEDS.get(template, {})
    opts = LabelOptions(template_kwargs=needs.get("template_kwargs", {}))
    setup = ChatSetup(tok, text, "file", template)
    convs = conversations(needs) + written_conversations(needs)
    training = build_training_template(setup, convs, opts)
    return CorpusTraining(template, name, tok, training, verify_training_template(setup, training.template, convs,
                                                                                 opts))


def _not_comparable(v: Verification) -> str:
    counts: dict[str, int] = {}
    for r in v.rows:
        if not r.comparable:
            why = ("our engine cannot render" if "our engine cannot render" in r.reason else
                   "transformers fails with the original template too" if "original template too" in r.reason else
                   "transformers renders them differently (drops None values)" if "differently" in r.reason else
                   "transformers tokenizes differently")
            counts[why] = counts.get(why, 0) + 1
    return "; ".join(f"{n} not comparable: {why}" for why, n in counts.items())


def training_cell(template: str) -> str:
    """The "training template" cell of docs/conformance.md."""
    out = training_outcome(template)
    v = out.verification
    rows = v.compared
    extra = _not_comparable(v)
    if out.verified:
        kinds = {k: sum(e.kind == k for e in out.training.edits) for k in ("wrap", "split", "conditional")}
        edits = ", ".join(f"{n} {k}" for k, n in kinds.items() if n)
        how = "tags only, same tokens as the original" if out.training.static_identical else f"{edits}"
        return f"verified {len(rows)}/{len(rows)} ({how})" + (f"; {extra}" if extra else "")
    reason = EXPECTED_NOT_VERIFIED.get(template) or "; ".join(str(p) for p in out.training.problems) or \
        v.summary()
    return f"no: {reason} ({v.agree} of {v.tokens} tokens agree)"
