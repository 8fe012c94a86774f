"""Render conversations with a chat template, and learn the template's turn markers by probing it.

Rendering goes through transformers' own compiled template (a Jinja ``ImmutableSandboxedEnvironment`` with
``raise_exception``, ``strftime_now``, ``tojson`` and the ``{% generation %}`` tracker), so the text is exactly what
``apply_chat_template(..., tokenize=False)`` gives. On top of that each render has a time and an output-size limit,
checked between output chunks and on every call the template makes, so a hostile template ends with
``RenderTimeout`` instead of hanging the app.

The probe (``probe_template``) renders tiny conversations to learn, once per template and tokenizer:
- the generation prompt, the header a model sees before it answers (``add_generation_prompt=True`` minus ``False``);
- the end-of-turn marker(s) the template writes right after an assistant's content.

Example (ChatML): generation_prompt "<|im_start|>assistant\\n", end_of_turn ("<|im_end|>",).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import ChatTemplateError, RenderError, RenderTimeout

DEFAULT_TIME_LIMIT = 5.0  # seconds for one render
DEFAULT_MAX_CHARS = 20_000_000  # output size limit for one render
DEFAULT_DATE_STRING = "26 Jul 2024"  # what Llama 3.x templates print when no date is given: keeps renders stable

GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


@dataclass(frozen=True)
class RenderLimits:
    time_limit: float = DEFAULT_TIME_LIMIT
    max_chars: int = DEFAULT_MAX_CHARS


@dataclass
class Rendered:
    """A rendered conversation: the text and, for templates with ``{% generation %}``, the char spans it marked."""

    text: str
    generation_spans: list[tuple[int, int]] | None = None


def compile_template(template: str) -> Any:
    """Compile (cached) through transformers; a syntax error becomes ``ChatTemplateError`` with its line."""
    import jinja2
    from transformers.utils.chat_template_utils import _compile_jinja_template

    try:
        return _compile_jinja_template(template)
    except jinja2.TemplateSyntaxError as exc:
        raise ChatTemplateError(f"Chat template does not parse (line {exc.lineno}): {exc.message}") from exc
    except jinja2.TemplateError as exc:
        raise ChatTemplateError(f"Chat template does not compile: {exc}") from exc


def has_generation_tags(template: str) -> bool:
    return bool(GENERATION_TAG.search(template))


def template_variables(tokenizer: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The variables a template may read besides ``messages``: special tokens, a fixed date, user extras.

    ``add_generation_prompt`` and ``tools`` are passed by ``render``; ``strftime_now`` is a global of the sandbox.
    """
    out: dict[str, Any] = {"date_string": DEFAULT_DATE_STRING}
    for key in ("bos_token", "eos_token", "pad_token", "unk_token", "sep_token", "cls_token", "mask_token"):
        value = getattr(tokenizer, key, None) if tokenizer is not None else None
        if value is not None:
            out[key] = str(value)
    if extra:
        out.update(extra)
    return out


class _Deadline:
    __slots__ = ("end", "limit")

    def __init__(self, limit: float):
        self.limit = limit
        self.end = time.monotonic() + limit

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise RenderTimeout(f"Chat template ran longer than {self.limit:g} s and was stopped (a loop without bound?).")


def render(messages: list[dict[str, Any]], template: str, tokenizer: Any = None, *, tools: list | None = None,
           add_generation_prompt: bool = False, variables: dict[str, Any] | None = None,
           track_generation: bool = False, limits: RenderLimits = RenderLimits()) -> Rendered:
    """Render ``messages`` with ``template``. Raises ``RenderError`` (the template's own message) or
    ``RenderTimeout``. ``variables`` defaults to ``template_variables(tokenizer)``."""
    import jinja2
    from transformers.utils.chat_template_utils import _alias_reasoning_fields, _plain_template_data

    compiled = compile_template(template)
    env = compiled.environment
    ctx = dict(variables if variables is not None else template_variables(tokenizer))
    ctx.update(messages=_alias_reasoning_fields(_plain_template_data(messages)), tools=_plain_template_data(tools),
               documents=None, add_generation_prompt=add_generation_prompt)
    deadline = _Deadline(limits.time_limit)
    blocks: list[str] = []
    gen_spans: list[tuple[int, int]] = []
    size = 0
    try:
        with _watch_calls(env, deadline):
            if track_generation:
                with env.activate_tracker(blocks, gen_spans):
                    size = _drain(compiled.generate(**ctx), blocks, deadline, limits.max_chars)
            else:
                size = _drain(compiled.generate(**ctx), blocks, deadline, limits.max_chars)
    except RenderError:
        raise
    except jinja2.TemplateError as exc:
        raise RenderError(f"Chat template raised: {exc}") from exc
    except (RecursionError, MemoryError, OverflowError) as exc:
        raise RenderError(f"Chat template failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # a template can trigger any Python error through filters and methods
        raise RenderError(f"Chat template failed: {type(exc).__name__}: {exc}") from exc
    del size
    text = "".join(blocks)
    return Rendered(text, [tuple(s) for s in gen_spans] if track_generation else None)


def _drain(gen, blocks: list[str], deadline: _Deadline, max_chars: int) -> int:
    size = 0
    for i, chunk in enumerate(gen):
        blocks.append(chunk)
        size += len(chunk)
        if size > max_chars:
            raise RenderTimeout(f"Chat template output grew past {max_chars:,} characters and was stopped.")
        if i & 63 == 0:
            deadline.check()
    deadline.check()
    return size


class _watch_calls:
    """Check the deadline on every call the template makes (``range``, filters, methods), so loops that print
    nothing still stop. Installs a per-thread hook on the shared compiled environment."""

    _local = None

    def __init__(self, env: Any, deadline: _Deadline):
        self.env, self.deadline = env, deadline

    def __enter__(self):
        import threading

        cls = type(self)
        if cls._local is None:
            cls._local = threading.local()
        _install_call_hook(self.env, cls._local)
        self.prev = getattr(cls._local, "deadline", None)
        cls._local.deadline = self.deadline
        return self

    def __exit__(self, *exc):
        type(self)._local.deadline = self.prev
        return False


def _install_call_hook(env: Any, local: Any) -> None:
    if getattr(env, "_inspector_hooked", False):
        return
    original_call = env.call

    def call(__context, __obj, *args, **kwargs):
        deadline = getattr(local, "deadline", None)
        if deadline is not None:
            deadline.check()
        return original_call(__context, __obj, *args, **kwargs)

    # The environment is immutable for templates, not for us; this hook only reads a thread-local deadline.
    object.__setattr__(env, "call", call)
    object.__setattr__(env, "_inspector_hooked", True)


# --- probing the template -------------------------------------------------------------------------------------

PROBE_USER = "Probe question 7 about apples?"
PROBE_USER_2 = "Probe follow-up 9 about pears?"
PROBE_ANSWER = "Probe answer 3 about apples."
_MARKER_RE = re.compile(r"\s*(<[^<>\s]{1,48}>|\[[A-Z_/]{2,24}\])")


@dataclass(frozen=True)
class TemplateInfo:
    """What probing a template taught us. ``end_of_turn`` lists the marker strings that close an assistant turn
    (several when the last turn closes differently, e.g. gpt-oss ``<|return|>`` vs ``<|end|>``); empty when the
    template writes none (the model would never learn to stop)."""

    generation_prompt: str | None
    end_of_turn: tuple[str, ...]
    has_generation_tags: bool
    bos_in_template: bool
    notes: tuple[str, ...] = field(default_factory=tuple)


def _leading_marker(tail: str, known: list[str]) -> str | None:
    stripped = tail.lstrip()
    for tok in known:  # longest first
        if tok and stripped.startswith(tok):
            return tok
    m = _MARKER_RE.match(tail)
    return m.group(1) if m else None


_PROBE_CACHE: dict[tuple, TemplateInfo] = {}


def probe_template(template: str, tokenizer: Any = None, variables: dict[str, Any] | None = None,
                   limits: RenderLimits = RenderLimits()) -> TemplateInfo:
    """Learn the generation prompt and the end-of-turn markers of ``template`` (see module docstring). Cached per
    template, tokenizer and variables."""
    key = (template, _tokenizer_key(tokenizer), tuple(sorted((k, repr(v)) for k, v in (variables or {}).items())))
    info = _PROBE_CACHE.get(key)
    if info is None:
        info = _probe(template, tokenizer, variables, limits)
        if len(_PROBE_CACHE) > 512:
            _PROBE_CACHE.clear()
        _PROBE_CACHE[key] = info
    return info


def _tokenizer_key(tok: Any) -> tuple:
    if tok is None:
        return ()
    return (id(tok), getattr(tok, "name_or_path", ""), len(tok), str(getattr(tok, "eos_token", None)))


def added_token_strings(tokenizer: Any) -> list[str]:
    """Added/special token strings of the tokenizer, longest first."""
    if tokenizer is None:
        return []
    toks = set(getattr(tokenizer, "added_tokens_encoder", {}) or {})
    for key in ("eos_token", "bos_token", "pad_token"):
        v = getattr(tokenizer, key, None)
        if v:
            toks.add(str(v))
    return sorted(toks, key=len, reverse=True)


def _probe(template: str, tokenizer: Any, extra: dict[str, Any] | None, limits: RenderLimits) -> TemplateInfo:
    variables = template_variables(tokenizer, extra)
    notes: list[str] = []
    known = added_token_strings(tokenizer)

    def r(msgs, gen=False):
        return render(msgs, template, tokenizer, add_generation_prompt=gen, variables=variables, limits=limits).text

    user = [{"role": "user", "content": PROBE_USER}]
    gen_prompt = None
    try:
        without, with_gen = r(user), r(user, True)
        if with_gen.startswith(without) and len(with_gen) > len(without):
            gen_prompt = with_gen[len(without):]
        else:
            notes.append("the generation prompt is not an addition to the rendered prompt")
    except RenderError as exc:
        notes.append(f"probe without a system message failed: {exc}")
    eots: list[str] = []
    convs = [user + [{"role": "assistant", "content": PROBE_ANSWER}],
             user + [{"role": "assistant", "content": PROBE_ANSWER}, {"role": "user", "content": PROBE_USER_2}]]
    for msgs in convs:
        try:
            text = r(msgs)
        except RenderError as exc:
            notes.append(f"probe failed: {exc}")
            continue
        pos = text.find(PROBE_ANSWER)
        if pos < 0:
            continue
        tail = text[pos + len(PROBE_ANSWER):]
        nxt = tail.find(PROBE_USER_2)
        if nxt >= 0:
            tail = tail[:nxt]
        marker = _leading_marker(tail, known)
        if marker and marker not in eots:
            eots.append(marker)
    bos = str(getattr(tokenizer, "bos_token", "") or "") if tokenizer is not None else ""
    bos_in_template = False
    if bos:
        try:
            bos_in_template = r(user).startswith(bos)
        except RenderError:
            pass
    if not eots:
        notes.append("no end-of-turn marker follows an assistant answer")
    return TemplateInfo(gen_prompt, tuple(eots), has_generation_tags(template), bos_in_template, tuple(notes))
