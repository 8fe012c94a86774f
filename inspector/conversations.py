"""Conversations as the core sees them, and the records they were read from.

Every data format (OpenAI ``messages``, ShareGPT ``conversations``, prompt/completion, Alpaca) is normalized into a
``Conversation``: a list of ``Message`` with one of the roles in ``constants.ROLES``, plus the ``tools`` a template
may list, plus where it came from. Normalizing is ``formats.normalize_record``; this module holds only the shapes.

Example: {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}
-> Conversation(messages=[Message("user", "Hi"), Message("assistant", "Hello!")])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Source:
    """Where a record came from: the file and the 1-based line (JSONL) or 0-based row/index (JSON, Parquet)."""

    file: str
    line: int | None = None
    row: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else f"record {self.row}" if self.row is not None else ""
        return f"{self.file}:{where}" if where else self.file


@dataclass
class Message:
    """One normalized message.

    ``content`` is plain text (list-of-parts content is joined). ``reasoning`` holds reasoning parts or a
    ``reasoning_content`` field, passed to templates as ``reasoning_content``. ``trainable`` is the per-message
    flag (LLaMA-Factory's ``loss_weight`` > 0, or an explicit ``train``/``weight`` key); None means "decided by the
    strategy". ``tool_calls`` and ``name`` are passed through to the template as they are.
    """

    role: str
    content: str
    reasoning: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    name: str | None = None
    trainable: bool | None = None
    loss_weight: float | None = None
    tool_call_id: str | None = None  # a tool result's link to the call it answers (Mistral, Kimi, Gemma 4 read it)

    def to_template_dict(self, tool_calls_as_text: bool = False) -> dict[str, Any]:
        """The dict a chat template sees: role, content, and the optional fields that are set.

        ``tool_calls_as_text``: for templates that never read ``tool_calls``, a call-only message gets the calls
        as JSON content, so the call is still rendered (and trained) instead of vanishing.
        """
        content = self.content
        if tool_calls_as_text and self.tool_calls and not content:
            import json

            calls = [c.get("function", c) if isinstance(c, dict) else c for c in self.tool_calls]
            content = json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)
        out: dict[str, Any] = {"role": self.role, "content": content}
        if self.reasoning is not None:
            out["reasoning_content"] = self.reasoning
        if self.tool_calls and not tool_calls_as_text:
            out["tool_calls"] = self.tool_calls
        if self.name is not None:
            out["name"] = self.name
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


@dataclass
class Conversation:
    """A normalized record: messages, optional tool schemas, a stable id and its source."""

    id: str
    messages: list[Message]
    tools: list[dict[str, Any]] | None = None
    source: Source | None = None
    format: str | None = None  # the detected input format: "messages", "sharegpt", "prompt_completion", "alpaca"
    # a prompt/completion pair of plain strings: trainers (TRL) train prompt + completion + EOS without a chat template
    plain_text: bool = False

    def template_messages(self, tool_calls_as_text: bool = False) -> list[dict[str, Any]]:
        return [m.to_template_dict(tool_calls_as_text) for m in self.messages]


@dataclass
class Rejected:
    """A record that could not become a conversation, with every reason found. Nothing is dropped silently."""

    id: str
    source: Source | None
    reasons: list[str]
    record: Any = None  # the raw record (or the raw line text when it was not valid JSON)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": str(self.source) if self.source else None,
            "reasons": list(self.reasons),
            "record": self.record,
        }


@dataclass
class LoadResult:
    """What a load produced: accepted conversations and rejected records. Together they cover every input record."""

    conversations: list[Conversation] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    format: str | None = None

    @property
    def total(self) -> int:
        return len(self.conversations) + len(self.rejected)
