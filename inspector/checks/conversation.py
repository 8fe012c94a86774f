"""Record-level checks: what a conversation *says*, before any rendering (check 11 of the catalog), and the findings
of records that never became samples.

- ``check_conversation``: ``unsupported-role`` (a role outside system/user/assistant/tool), ``empty-message``,
  ``role-order`` (two user messages in a row, a system message after the first, a tool result without a call, no
  final answer);
- ``rejected_finding``: a loader ``Rejected`` record as ``record-rejected``; ``error_finding``: a template that
  raised (``SampleError``) as ``template-error``.

Example: [user "Hi", user "Hello?", assistant "Yo"] -> ``role-order`` on message 1: "messages 0 and 1 are both
'user': roles do not alternate".
"""

from __future__ import annotations

from inspector.checks.catalog import Finding, finding
from inspector.checks.context import CheckContext, one_line
from inspector.constants import ROLES
from inspector.conversations import Conversation, Rejected
from inspector.labels.engine import SampleError


def check_conversation(conv: Conversation, ctx: CheckContext | None = None) -> list[Finding]:
    """Role order, unknown roles and empty messages: what the conversation *says*, before any rendering.

    Example: [user "Hi", user "Hello?", assistant "Yo"] -> one ``role-order`` finding on message 1.
    """
    out: list[Finding] = []
    cid = conv.id
    msgs = conv.messages
    enabled = ctx.enabled if ctx is not None else (lambda code: True)
    if enabled("unsupported-role"):
        for i, m in enumerate(msgs):
            if m.role not in ROLES:
                out.append(finding("unsupported-role", f"message {i} has role {m.role!r}, which is not one of "
                                   f"{', '.join(ROLES)}", conversation_id=cid, message_index=i))
    if enabled("empty-message"):
        for i, m in enumerate(msgs):
            if not (m.content or "").strip() and not m.tool_calls and not (m.reasoning or "").strip():
                out.append(finding("empty-message", f"message {i} ({m.role}) is empty", conversation_id=cid,
                                   message_index=i))
    if enabled("role-order") and msgs:
        out.extend(_role_order(conv))
    return out


def _role_order(conv: Conversation) -> list[Finding]:
    out: list[Finding] = []
    msgs = conv.messages

    def add(i: int, text: str) -> None:
        out.append(finding("role-order", text, conversation_id=conv.id, message_index=i))

    first_dialog = True
    prev: str | None = None
    for i, m in enumerate(msgs):
        role = m.role
        if role == "system":
            if i > 0:
                add(i, f"system message at position {i}: most templates only read a leading system message")
            continue
        if first_dialog:
            first_dialog = False
            if role != "user":
                add(i, f"the dialogue starts with {role!r}, not 'user' (message {i})")
        elif role == "tool":
            if prev not in ("assistant", "tool"):
                add(i, f"tool message {i} does not follow an assistant tool call (it follows {prev!r})")
        elif role == prev and role in ("user", "assistant"):
            add(i, f"messages {i - 1} and {i} are both {role!r}: roles do not alternate")
        prev = role
    last = msgs[-1].role
    if last != "assistant":
        add(len(msgs) - 1, f"the conversation ends with {last!r}: nothing after the last answer is trained")
    return out


def error_finding(err: SampleError) -> Finding:
    """A ``SampleError`` as a ``template-error`` finding (the template raised), or ``tokenizer-error`` when the
    tokenizer failed on the rendered text (a Rust panic in ``tokenizers``)."""
    code = "tokenizer-error" if getattr(err, "kind", "template") == "tokenizer" else "template-error"
    return finding(code, one_line(err.reason), conversation_id=err.conversation_id)


def rejected_finding(rej: Rejected) -> Finding:
    """A loader rejection as a ``record-rejected`` finding (reasons joined)."""
    return finding("record-rejected", one_line("; ".join(rej.reasons)), conversation_id=rej.id,
                   details={"source": str(rej.source) if rej.source else None})
