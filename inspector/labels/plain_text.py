"""Plain-text prompt/completion records, as TRL's ``SFTTrainer`` trains them: ``tokenizer(prompt + completion)``
(with the BOS the tokenizer adds, if any), the prompt's tokens masked, the completion's trained, then EOS, trained —
no chat template. The engine builds such records this way (``LabelEngine._finish_plain_text``) and says so in the
sample's notes; a conversational prompt/completion (lists of messages) keeps the chat template.

Example: prompt "2+2=", completion " 4" -> text "2+2= 4"; the user span is chars 0-4, the assistant span 4-6; the
sample is the tokens of "2+2= 4" + EOS, labels -100 over "2+2=".
"""

from __future__ import annotations

from typing import Any

from inspector.conversations import Conversation
from inspector.labels.spans import Span

# strategies that model SFTTrainer's own data path, where a plain-text pair is never chat-formatted; the
# completion-only collator (response-template) and session layouts keep formatting it with the template
PLAIN_TEXT_STRATEGIES = ("assistant-only", "last-turn", "split-turns", "all-tokens")
PLAIN_TEXT_NOTE = ("plain-text prompt/completion: built as prompt + completion + EOS without a chat template, as "
                   "TRL's SFTTrainer trains it")


def adds_bos(tokenizer: Any) -> bool:
    """Does ``tokenizer(text)`` put BOS in front (Llama 2 / 3: yes; Qwen: no)?"""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    try:
        return tokenizer("a")["input_ids"][:1] == [bos]
    except Exception:  # noqa: BLE001 - a tokenizer that cannot be called on text: no BOS added
        return False


def plain_text_layout(conv: Conversation) -> tuple[list[dict[str, Any]], str, list[Span], list[str]]:
    """(messages, text, spans, notes) of a plain-text record: the prompt followed by the completion. A system message
    beside them is not part of what TRL trains: it is left out, and a note says so."""
    user = next(i for i, m in enumerate(conv.messages) if m.role == "user")
    answer = next(i for i, m in enumerate(conv.messages) if m.role == "assistant")
    prompt, completion = conv.messages[user].content, conv.messages[answer].content
    text = prompt + completion
    spans = [Span(user, "user", "content", 0, len(prompt), "format"),
             Span(answer, "assistant", "content", len(prompt), len(text), "format")]
    notes = [PLAIN_TEXT_NOTE]
    if any(m.role == "system" for m in conv.messages):
        notes.append("the system message is not part of a plain-text prompt/completion sample: left out")
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}], text, spans, notes
