"""Tie each tokenized row to the conversation it came from: the reference for what *should* be trained.

In this order of preference:
1. the conversation stored beside the tokens: TRL keeps ``messages`` (or ``prompt`` / ``completion``) in its
   prepared dataset; a plain-text ``prompt`` / ``completion`` pair (strings) is tied as such (TRL trains
   ``prompt + completion + EOS`` without a chat template, and writes the EOS text into ``completion``: it is cut off
   again here);
2. ``--reference RAW``: the raw data file, matched by the row's ``id`` column, else by row order (only for rows
   that are not packed; a wrong match is caught later, when the message contents are not found in the tokens);
3. recovered from the tokens alone: the decoded text is parsed with the template's own separators, learned by
   rendering a probe conversation of sentinels (``recover``), and accepted only if rendering the parsed messages
   reproduces exactly the same ``input_ids``.

Example: a row with ``messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]``
-> ``Tie(conversation=Conversation(id="row-0", ...), source="stored messages column")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from inspector.conversations import Conversation, Message, Rejected
from inspector.errors import InspectorError

SENTINELS = {"system": "\x01SYS\x01", "user": "\x01USR\x01", "assistant": "\x01AST\x01", "user2": "\x01US2\x01",
             "assistant2": "\x01AS2\x01"}


@dataclass
class Tie:
    """The conversation tied to a row (None when none could be) and how; ``plain_text``: a prompt/completion pair of
    strings, trained without a chat template."""

    conversation: Conversation | None
    source: str
    reason: str | None = None
    plain_text: bool = False


def _stored(row_id: str, ref: Mapping[str, Any], eos_text: str | None) -> Tie | None:
    from inspector.data.formats import normalize_record

    keys = ("messages", "conversations", "prompt", "completion", "instruction", "input", "output", "system", "tools")
    record = {k: ref[k] for k in keys if ref.get(k) is not None}
    if not record:
        return None
    plain = isinstance(record.get("prompt"), str) and isinstance(record.get("completion"), str)
    if plain and eos_text and record["completion"].endswith(eos_text):
        record["completion"] = record["completion"][: -len(eos_text)]
    record["id"] = row_id
    try:
        conv = normalize_record(record)
    except InspectorError as exc:
        return Tie(None, "stored columns", f"the stored {'/'.join(k for k in record if k != 'id')} could not be "
                   f"read: {exc}")
    which = "messages" if "messages" in record else "/".join(k for k in record if k != "id")
    return Tie(conv, f"stored {which} column" + ("s" if "/" in which else ""), plain_text=plain)


class Referencer:
    """Ties rows to conversations. ``reference``: the raw data (path) for --reference; ``setup`` + ``engine``:
    for recovery from tokens (None: no recovery)."""

    def __init__(self, reference: str | None = None, setup: Any = None, engine: Any = None,
                 items: list[Conversation | Rejected] | None = None):
        self.by_id: dict[str, Conversation | Rejected] = {}
        self.order: list[Conversation | Rejected] = []
        self.reference = reference if items is None else (reference or "the given records")
        if items is None and reference is not None:
            from inspector.data.loaders import iter_records

            items = list(iter_records(reference))
        for item in items or []:
            self.order.append(item)
            self.by_id.setdefault(item.id, item)
        self.setup = setup
        self.engine = engine
        tok = getattr(setup, "tokenizer", None)
        self.eos_text = getattr(tok, "eos_token", None) if tok is not None else None
        self._separators: dict[str, str] | None | bool = False

    def tie(self, row: Any) -> Tie:
        stored = _stored(row.id, row.reference, self.eos_text) if row.reference else None
        if stored is not None and stored.conversation is not None:
            return stored
        if self.reference is not None:
            item = self.by_id.get(row.id)
            how = "--reference by id"
            if item is None and row.part is None and row.index < len(self.order):
                item, how = self.order[row.index], "--reference by order"
            if isinstance(item, Conversation):
                return Tie(item, how)
            if isinstance(item, Rejected):
                return Tie(None, how, f"the reference record {item.id} was rejected: {'; '.join(item.reasons)}")
        recovered = self.recover(row) if self.engine is not None else None
        if recovered is not None:
            return Tie(recovered, "recovered from tokens")
        why = []
        if stored is not None:
            why.append(stored.reason or "")
        elif not row.reference:
            why.append("no messages / prompt column beside the tokens" + (" (a packed row keeps none)"
                                                                          if row.part is not None else ""))
        if self.reference is not None:
            why.append(f"no record of --reference with id {row.id!r}" + ("" if row.part is not None else
                                                                         " nor at this row's position"))
        else:
            why.append("no --reference given")
        if self.engine is not None:
            why.append("the tokens could not be parsed back into messages that render to the same ids")
        return Tie(None, "none", "; ".join(w for w in why if w))

    # --- recovery from tokens -------------------------------------------------------------------------------------

    def separators(self) -> dict[str, str] | None:
        """The template's text around each message, learned from one render of sentinel messages: ``head`` (before
        the first user message), ``sys_head`` / ``sys_user`` (with a system message), ``user_asst``,
        ``asst_user`` and ``tail``. None when the template does not render the sentinels in order."""
        if self._separators is not False:
            return self._separators  # type: ignore[return-value]
        from inspector.labels.engine import LabelOptions

        s = SENTINELS
        seps: dict[str, str] | None = None
        try:
            opts = LabelOptions()
            plain = self.engine.render([{"role": "user", "content": s["user"]},
                                        {"role": "assistant", "content": s["assistant"]},
                                        {"role": "user", "content": s["user2"]},
                                        {"role": "assistant", "content": s["assistant2"]}], None, opts).text
            with_sys = self.engine.render([{"role": "system", "content": s["system"]},
                                           {"role": "user", "content": s["user"]},
                                           {"role": "assistant", "content": s["assistant"]}], None, opts).text
            a, b, c, d = (plain.index(s[k]) for k in ("user", "assistant", "user2", "assistant2"))
            seps = {"head": plain[:a], "user_asst": plain[a + len(s["user"]):b],
                    "asst_user": plain[b + len(s["assistant"]):c], "tail": plain[d + len(s["assistant2"]):]}
            i, j = with_sys.index(s["system"]), with_sys.index(s["user"])
            seps["sys_head"] = with_sys[:i]
            seps["sys_user"] = with_sys[i + len(s["system"]):j]
            if not seps["user_asst"] or not seps["asst_user"]:
                seps = None
        except Exception:  # noqa: BLE001 - a template that raises or drops a sentinel: no recovery
            seps = None
        self._separators = seps
        return seps

    def recover(self, row: Any) -> Conversation | None:
        """Parse the decoded tokens into system/user/assistant messages with the learned separators; accept only if
        rendering them gives back exactly the row's ids."""
        seps = self.separators()
        if seps is None:
            return None
        tok = self.setup.tokenizer
        text = tok.decode(row.input_ids.tolist(), skip_special_tokens=False)
        messages: list[Message] = []
        if seps["sys_head"] and text.startswith(seps["sys_head"]) and seps["sys_head"] != seps["head"]:
            end = text.find(seps["sys_user"], len(seps["sys_head"]))
            if end < 0:
                return None
            messages.append(Message("system", text[len(seps["sys_head"]):end]))
            rest = text[end + len(seps["sys_user"]):]
        elif text.startswith(seps["head"]):
            rest = text[len(seps["head"]):]
        else:
            return None
        role = "user"
        while rest:
            sep = seps["user_asst"] if role == "user" else seps["asst_user"]
            end = rest.find(sep)
            if end < 0:
                if role == "assistant" and rest.endswith(seps["tail"]):
                    messages.append(Message("assistant", rest[: len(rest) - len(seps["tail"])] if seps["tail"]
                                            else rest))
                    rest = ""
                    break
                return None
            messages.append(Message(role, rest[:end]))
            rest = rest[end + len(sep):]
            role = "assistant" if role == "user" else "user"
        if not messages or messages[-1].role != "assistant":
            return None
        conv = Conversation(id=row.id, messages=messages, format="messages")
        try:
            samples = self.engine.build_one(conv)
        except Exception:  # noqa: BLE001
            return None
        if not samples or samples[0].input_ids != row.input_ids.tolist():
            return None
        return conv
