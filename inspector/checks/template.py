"""Sample-level checks of what the chat template did: the training text against inference, against the
template's own ``{% generation %}`` mask, and against the messages it was given.

Every check here is ``check_x(sample, conv, ctx, labeled) -> list[Finding]``, run in order by ``check_sample``
(``inspector.checks.sample``).

- ``check_train_inference`` (8): the inference prompt of each trained turn must be a token prefix of the sample
  (``_TailStarts`` / ``_tokenize_tails`` keep it fast: only the prompt's tail after the last shared special token
  is tokenized again);
- ``check_generation_mask`` (9): the template's ``{% generation %}`` mask disagrees with the span-based labels;
- ``check_dropped`` (11): a message (or its tool calls) the template does not render (``unsupported-role``);
- notes on what the engine adapted: ``check_eot_appended`` (a closing appended to an open final answer),
  ``check_reasoning_dropped`` (reasoning the template does not write), ``check_adapted`` (tool calls reshaped);
- tools: ``check_tools_rendered`` (declared tools the template never writes) and ``check_tools_fallback`` (rendered
  with ``tools=[]`` because the template raised without them).

Example (a Qwen3-style template that drops earlier reasoning): the inference prompt for the second answer shows
the first answer's ``<think>`` block, the training text does not -> ``train-inference-mismatch`` at the token
where the two diverge.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inspector.checks.catalog import finding
from inspector.checks.context import CheckContext, one_line, plural, sample_messages, trained_turns
from inspector.errors import RenderError
from inspector.labels.engine import Sample, tokenize_batch
from inspector.template.render import template_messages

# train-inference-mismatch renders the prompt of each trained turn (the conversation so far): a record with
# thousands of turns would cost a quadratic number of rendered messages, so at most this many turns are checked,
# evenly spaced, the first and the last included
MAX_PROMPT_CHECKS = 32
PROMPT_RENDER_BUDGET = 40_000  # messages: fewer turns are checked in very long conversations (never fewer than 4)


def check_train_inference(sample, conv, ctx, labeled):
    """(8) For each trained assistant turn at message i: tokens of the render of messages[:i] with
    add_generation_prompt=True must be a prefix of the sample's input_ids. Reports the first diverging token.
    Example (Qwen3-style template that drops earlier reasoning): the prompt for turn 2 shows turn 1's <think>
    block, the training text does not -> diverges where the reasoning starts."""
    if not ctx.enabled("train-inference-mismatch") or conv is None:
        return []
    if sample.strategy == "session" and ctx.opts.turn_format is not None:
        return []  # laid out by a TurnFormat, not by the chat template
    tr = sample.truncation
    if tr is not None and tr.side == "left":
        return []  # the ids no longer start at the start of the render
    msgs = sample_messages(sample, conv, ctx)
    turns = trained_turns(sample, labeled)
    if sample.strategy == "split-turns":
        answers = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
        turns = [t for t in turns if answers and t.message_index == answers[-1]]
    budget = max(4, min(MAX_PROMPT_CHECKS, PROMPT_RENDER_BUDGET // max(len(msgs), 1)))
    if len(turns) > budget:  # each prompt is a render of the conversation so far: bound the work
        keep = np.unique(np.linspace(0, len(turns) - 1, budget).round().astype(int))
        turns = [turns[k] for k in keep.tolist()]
    out = []
    prompts, which = [], []
    prepared = template_messages(msgs) if turns else msgs  # made once: each prompt renders a prefix of them
    for t in turns:
        try:
            rendered = ctx.engine.render(prepared[: t.message_index], conv.tools, ctx.opts,
                                         add_generation_prompt=True, prepared=True)
        except RenderError as exc:
            out.append(finding("train-inference-mismatch",
                               f"assistant message {t.message_index}: the inference prompt (messages[:"
                               f"{t.message_index}] + generation prompt) does not render: {one_line(str(exc))}",
                               message_index=t.message_index))
            continue
        prompts.append(rendered.text)
        which.append(t)
    if not prompts:
        return out
    ids = sample.ids_array()
    tails = _TailStarts(sample, ctx)
    starts = [tails.start(prompt) for prompt in prompts]
    encoded = _tokenize_tails(ctx, [prompt[sample.offsets[k, 0]:] if k else prompt
                                    for prompt, k in zip(prompts, starts)], starts)
    for t, k, (p_ids, _offs) in zip(which, starts, encoded):
        p = np.asarray(p_ids, dtype=np.int64)
        if k:  # the first k tokens are the sample's own: put them back in front of the tail
            p = np.concatenate([ids[:k], p])
        m = min(len(p), len(ids))
        diff = np.nonzero(p[:m] != ids[:m])[0]
        if len(diff):
            j = int(diff[0])
            got_inf, got_train = int(p[j]), int(ids[j])
            text = (f"assistant message {t.message_index}: the inference prompt diverges from the training tokens at "
                    f"token {j}: inference {ctx.show(got_inf)}, training {ctx.show(got_train)}")
            details = {"position": j, "inference_token": got_inf, "training_token": got_train}
        elif len(p) > len(ids) and tr is None:
            j = len(ids)
            text = (f"assistant message {t.message_index}: the inference prompt ({len(p)} tokens) is longer than the "
                    f"training sequence ({len(ids)} tokens)")
            details = {"position": j, "inference_token": int(p[j]), "training_token": None}
        else:
            continue
        out.append(finding("train-inference-mismatch", text, positions=[j], message_index=t.message_index,
                           details=details))
    return out


class _TailStarts:
    """``start(prompt)``: token index k such that tokenize(prompt) == input_ids[:k] + tokenize(prompt[offsets[k][0]:]),
    or 0 (no shortcut: tokenize the whole prompt). k is the last added (special) token of the sample that lies inside
    the prompt, when the prompt is a text prefix of the sample: added tokens are split off before the rest of the
    tokenizer runs, so what precedes them is tokenized the same with or without the text that follows. The per-token
    facts are found once per sample, for all of its prompts.
    Example (ChatML): prompt "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n" inside the sample ->
    k = the index of the second <|im_start|>; only "<|im_start|>assistant\n" is tokenized again."""

    def __init__(self, sample: Sample, ctx: CheckContext):
        added = ctx.__dict__.get("_added_ids")
        if added is None:
            decoder = getattr(ctx.tokenizer, "added_tokens_decoder", None) or {}
            safe = getattr(ctx.tokenizer, "_tokenizer", None) is not None and not any(
                getattr(t, "single_word", False) for t in decoder.values())
            added = ctx._added_ids = frozenset(decoder) if safe else frozenset()
        self.sample = sample
        self.usable = bool(added) and sample.strategy != "session"  # session samples may carry EOS ids not in text
        if not self.usable:
            return
        is_added = ctx.__dict__.get("_is_added")  # a lookup table over token ids: True for an added token
        if is_added is None:
            top = max(max(added), ctx.vocab_size) + 1
            is_added = ctx._is_added = np.zeros(top, dtype=bool)
            is_added[np.fromiter(added, dtype=np.int64, count=len(added))] = True
        offs = np.asarray(sample.offsets)
        self.n = sample.num_tokens
        self.offs = offs
        nonempty = offs[:self.n, 0] < offs[:self.n, 1]
        ids = sample.ids_array()[:self.n]
        inside = (ids >= 0) & (ids < len(is_added))
        # candidates: added tokens with a non-empty span
        self.candidate = np.where(inside, is_added[np.where(inside, ids, 0)], False) & nonempty
        empty = np.flatnonzero(offs[:self.n, 1] <= offs[:self.n, 0])
        self.first_empty = int(empty[0]) if len(empty) else self.n  # tokens before it all come from the text

    def start(self, prompt: str) -> int:
        if not self.usable or not self.sample.text.startswith(prompt):
            return 0
        c, n, offs = len(prompt), self.n, self.offs
        hi = min(int(np.searchsorted(offs[:n, 1], c, side="right")), n)  # tokens ending at or before c
        if hi <= 1:
            return 0
        inside = np.flatnonzero(self.candidate[1:hi] & (offs[1:hi, 1] <= c))
        if not len(inside):
            return 0
        k = int(inside[-1]) + 1  # the last added token inside the prompt (never token 0)
        return k if self.first_empty >= k else 0  # every token before k must come from the text


def _tokenize_tails(ctx: CheckContext, texts: list[str], starts: list[int]) -> list[tuple[list[int], Any]]:
    """tokenize_batch with a small cache for tails (they repeat: "<|im_start|>assistant\n" in every sample)."""
    cache = ctx.__dict__.setdefault("_tail_cache", {})
    todo = [t for t, k in zip(texts, starts) if not (k and t in cache)]
    fresh = dict(zip(todo, tokenize_batch(ctx.tokenizer, todo))) if todo else {}
    out = []
    for t, k in zip(texts, starts):
        if k:
            if t not in cache:
                if len(cache) > 4096:
                    cache.clear()
                cache[t] = fresh[t]
            out.append(cache[t])
        else:
            out.append(fresh[t])
    return out


def check_generation_mask(sample, conv, ctx, labeled):
    """(9) ``Sample.generation_mismatch`` (set for templates with {% generation %} tags) is non-empty.
    Example: generation block around the content only, our labels include <|im_end|> -> fires at that token."""
    mism = sample.generation_mismatch
    if not ctx.enabled("generation-mask-mismatch") or not mism:
        return []
    k = int(mism[0])
    ours = "labels it" if labeled[k] else "does not label it"
    return [finding("generation-mask-mismatch",
                    f"the template's {{% generation %}} mask and the span-based labels disagree on "
                    f"{plural(len(mism), 'token')} (first: token {k} {ctx.show(sample.input_ids[k])}; the span-based "
                    f"mask {ours})", positions=[int(x) for x in mism[: ctx.thresholds.max_positions]])]


def check_dropped(sample, conv, ctx, labeled):
    """(11) Message content that the rendered text does not contain at all (the template drops the role)."""
    if not ctx.enabled("unsupported-role") or conv is None or not sample.text:
        return []
    if sample.strategy == "session" and ctx.opts.turn_format is not None:
        return []
    msgs = sample_messages(sample, conv, ctx)
    have = {s.message_index for s in sample.spans if s.kind == "content"}
    out = []
    for i, m in enumerate(msgs):
        content = m.get("content")
        if isinstance(content, str) and content.strip() and i not in have:
            out.append(finding("unsupported-role",
                               f"message {i} ({m['role']}) is not in the rendered text: the template drops or "
                               f"rewrites it", message_index=i))
    for i in sorted({i for i, kind in sample.dropped if kind == "tool_call"}):
        out.append(finding("unsupported-role",
                           f"the tool calls of message {i} are not in the rendered text: the template does not write "
                           f"them for this message (the training text has an answer without its call)",
                           message_index=i))
    return out


def check_eot_appended(sample, conv, ctx, labeled):
    """An open final answer closed with the template's closing (see ``LabelEngine._close_open_last_turn``)."""
    app = (sample.extra or {}).get("appended_closing")
    if not ctx.enabled("eot-appended") or not app:
        return []
    why = "the next role token, as GLM's own fine-tuning appends it" if app.get("opens_turn") else \
        "the closing the template writes when a next turn follows"
    return [finding("eot-appended",
                    f"assistant message {app['message_index']} (the final answer) has no closing in the rendered "
                    f"text: appended {app['text']!r} (ids {app['ids']}, {why}) and labeled it",
                    positions=list(app["positions"]), message_index=app["message_index"],
                    details={"text": app["text"], "ids": list(app["ids"])})]


def check_reasoning_dropped(sample, conv, ctx, labeled):
    """Reasoning the template does not write. Example: Qwen3 drops the reasoning of turns before the last user
    message -> "2 of 3 ... not rendered"."""
    if not ctx.enabled("reasoning-dropped"):
        return []
    dropped = sorted({i for i, kind in sample.dropped if kind == "reasoning"})
    if not dropped:
        return []
    msgs = sample.messages or []
    have = [i for i, m in enumerate(msgs) if isinstance(m.get("reasoning_content"), str)
            and m["reasoning_content"].strip()]
    total = max(len(have), len(dropped))
    return [finding("reasoning-dropped",
                    f"the template does not render the reasoning of {len(dropped)} of {total} assistant messages "
                    f"(message{'s' if len(dropped) != 1 else ''} {', '.join(map(str, dropped))}): "
                    f"{'it is' if len(dropped) == 1 else 'they are'} not trained",
                    message_index=dropped[0], details={"dropped": len(dropped), "with_reasoning": total,
                                                       "messages": dropped})]


def check_adapted(sample, conv, ctx, labeled):
    """The messages were adapted to the template (see ``LabelEngine.template_messages``)."""
    if not ctx.enabled("tool-call-adapted") or not sample.adapted:
        return []
    return [finding("tool-call-adapted", "; ".join(sample.adapted), details={"changes": list(sample.adapted)})]


def check_tools_rendered(sample, conv, ctx, labeled):
    """Tools the record declares but the template never writes: the render without them is the same text (one
    more render per sample with tools). Example: a ChatML template without tool support on glaive data -> "the
    record declares 3 tools but the template writes none of them"."""
    if not ctx.enabled("tools-not-rendered") or conv is None or not conv.tools or not sample.text:
        return []
    if sample.strategy == "session" and ctx.opts.turn_format is not None:
        return []
    try:
        if ctx.engine.render(sample_messages(sample, conv, ctx), None, ctx.opts).text != sample.text:
            return []
    except RenderError:
        return []  # it does not even render without them: it reads them
    n = len(conv.tools)
    return [finding("tools-not-rendered",
                    f"the record declares {plural(n, 'tool')} but the template writes none of them (the rendered "
                    f"text is the same without them): the model is trained to call tools it never sees declared",
                    details={"tools": n})]


def check_tools_fallback(sample, conv, ctx, labeled):
    """The template raised with ``tools`` undefined; the engine rendered with ``tools=[]`` (``Rendered.tools_fallback``).
    Example: Phi-4-mini-style ``{% for t in tools %}`` without a test -> "rendered with tools=[] instead"."""
    why = (sample.extra or {}).get("tools_fallback")
    if not ctx.enabled("tools-empty-list") or why is None:
        return []
    return [finding("tools-empty-list",
                    f"the template raised without tools ({one_line(why, 160)}); rendered with tools=[] instead: "
                    f"any text it writes for an empty tool list is in the training text",
                    details={"error": why})]
