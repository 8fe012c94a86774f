"""Render conversations with a chat template, within limits (``probe.py`` learns the template's turn markers).

Rendering goes through transformers' own compiled template (a Jinja ``ImmutableSandboxedEnvironment`` with
``raise_exception``, ``strftime_now``, ``tojson`` and the ``{% generation %}`` tracker), so the text is exactly what
``apply_chat_template(..., tokenize=False)`` gives. On top of that each render has a time and an output-size limit,
checked between output chunks and on every call the template makes, so a hostile template ends with
``RenderTimeout`` instead of hanging the app.

The probe (``probe_template``) renders tiny conversations to learn, once per template and tokenizer:
- the generation prompt, the header a model sees before it answers (``add_generation_prompt=True`` minus ``False``);
- the end-of-turn marker(s) the template writes right after an assistant's content (after an answer followed by a
  user message, after the last answer, after a tool call), read up to the text that closes a user message
  (Cohere's "<|END_RESPONSE|><|END_OF_TURN_TOKEN|>") or else the first marker (GLM's next-role "<|user|>");
- the assistant header when the generation prompt adds nothing distinct (Mistral's "[/INST]").

Example (ChatML): generation_prompt "<|im_start|>assistant\\n", end_of_turn ("<|im_end|>",).
"""

from __future__ import annotations

import heapq
import itertools
import re
from functools import lru_cache
import threading
import time
from dataclasses import dataclass
from typing import Any

from inspector.errors import ChatTemplateError, RenderError, RenderTimeout
from inspector.template.clock import CpuBudget

DEFAULT_TIME_LIMIT = 5.0  # seconds for one render
DEFAULT_MAX_CHARS = 2_000_000  # characters of one rendered record, and of any value a template builds
DEFAULT_MAX_BYTES = 256 * 2**20  # bytes of new values one render may create
DEFAULT_MAX_TOKENS = 1_000_000  # tokens of one sample
MAX_TEMPLATE_CHARS = 200_000  # 12 times the largest publisher template in the corpus (gpt-oss, 16,738)
COMPILE_TIME_LIMIT = 10.0  # seconds to compile one template (a size-capped template takes about one)
DEFAULT_DATE_STRING = "26 Jul 2024"  # what Llama 3.x templates print when no date is given: keeps renders stable

GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


@dataclass(frozen=True)
class RenderLimits:
    """Limits of one record's render. ``time_limit``: seconds of CPU time of the rendering thread, in any thread (a
    busy or paused process does not use it up; a wall-clock backstop of 10 times the limit, at least 60 s, stops a
    render stuck outside the CPU: ``inspector.template.clock``). ``max_chars``: the size of
    the rendered text in UTF-8 bytes (checked while rendering, so before tokenizing; it also bounds the tokens, as
    no tokenizer makes more tokens than bytes), and of any string (characters) or list (items) the template builds
    or reads (``inspector.template.sandbox`` sizes every growing step before it runs). ``max_bytes``: the new values one
    render may create in all. ``max_tokens``: the tokens of one sample (checked by the label engine right after
    tokenizing; a record over it is refused with the reason). The defaults are far beyond any real conversation:
    2,000,000 characters is about 500,000 tokens of English.

    Example: render(msgs, "{% for i in range(10**5) %}{% for j in range(10**5) %}{% endfor %}{% endfor %}",
    limits=RenderLimits(time_limit=0.5)) raises RenderTimeout("Chat template ran longer than 0.5 s ...").
    """

    time_limit: float = DEFAULT_TIME_LIMIT
    max_chars: int = DEFAULT_MAX_CHARS
    max_bytes: int = DEFAULT_MAX_BYTES
    max_tokens: int = DEFAULT_MAX_TOKENS
    # the time ``strftime_now`` gives every render (ISO 8601, "2026-01-31T12:00:00"), so all renders of a run agree
    # and a run can be repeated; None: the clock at each call (transformers' own behaviour). See ``frozen_clock``.
    now: str | None = None


def run_now() -> str:
    """The current local time to the second, in the form ``RenderLimits.now`` takes: chosen once per run."""
    from datetime import datetime

    return datetime.now().replace(microsecond=0).isoformat()


@lru_cache(maxsize=16)
def frozen_clock(now: str) -> Any:
    """``strftime_now`` (the global transformers gives templates) stopped at ``now``: what every render of a run
    sees, so templates that print the date or time (Llama 3.x, Hunyuan, Apertus) render the same text in every
    render, the verifier and the training-template check. Passed as a template variable, which takes precedence
    over the global, and named like it (the sandbox sizes its output).

    Example: frozen_clock("2026-01-31T12:00:05")("%d %b %Y %H:%M:%S") -> "31 Jan 2026 12:00:05"
    """
    from datetime import datetime

    moment = datetime.fromisoformat(now)

    def strftime_now(format: str) -> str:
        return moment.strftime(format)

    return strftime_now


def too_many_tokens(count: int, limits: RenderLimits) -> str:
    """The reason for a sample over ``limits.max_tokens``. Example: too_many_tokens(1_200_000, RenderLimits())."""
    return (f"the rendered text has {count:,} tokens, more than the limit of {limits.max_tokens:,} per sample "
            "(RenderLimits.max_tokens, --max-tokens): refused")


@dataclass
class Rendered:
    """A rendered conversation: the text and, for templates with ``{% generation %}``, the char spans it marked."""

    text: str
    generation_spans: list[tuple[int, int]] | None = None
    tools_fallback: str | None = None  # LabelEngine.render: the error that made it render with tools=[] instead


def compile_template(template: str) -> Any:
    """Compile (cached) through transformers; a syntax error becomes ``ChatTemplateError`` with its line. Templates
    longer than ``MAX_TEMPLATE_CHARS`` are refused, and compiling has a time limit (``COMPILE_TIME_LIMIT``)."""
    import jinja2

    if len(template) > MAX_TEMPLATE_CHARS:
        raise ChatTemplateError(f"Chat template is {len(template):,} characters long, more than the limit of "
                                f"{MAX_TEMPLATE_CHARS:,} (the largest publisher templates are under 20,000): refused")
    try:
        return _compile_guarded(template)
    except jinja2.TemplateSyntaxError as exc:
        raise ChatTemplateError(f"Chat template does not parse (line {exc.lineno}): {exc.message}") from exc
    except jinja2.TemplateError as exc:
        raise ChatTemplateError(f"Chat template does not compile: {exc}") from exc
    except RenderTimeout as exc:
        raise ChatTemplateError(str(exc)) from exc
    except RenderError as exc:
        raise ChatTemplateError(f"Chat template does not compile: {exc}") from exc
    except Exception as exc:  # constant expressions are evaluated while compiling (e.g. {{ 10**5000 }})
        raise ChatTemplateError(f"Chat template does not compile: {type(exc).__name__}: {exc}") from exc


@lru_cache(maxsize=128)
def _compile_guarded(template: str) -> Any:
    """transformers' sandboxed environment (same filters, globals and ``{% generation %}`` tracker) with the memory
    guards of ``inspector.template.sandbox`` installed before compiling: Jinja folds constant expressions while compiling
    (``{{ (10**100000)**100000 }}``, ``{{ 'x'|center(10000000000) }}``), before any render limit applies. One
    environment per template, as transformers does, so each template keeps its own generation tracker.

    Compiling runs under a deadline of its own (``COMPILE_TIME_LIMIT``): checked every 256 tokens while parsing,
    enforced by the watchdog in the code generator, and checked once more at the end (CPython's own ``compile()``
    of the generated code runs to its end: the size cap bounds it). Folding builds small constants only."""
    from transformers.utils.chat_template_utils import _cached_compile_jinja_template

    from inspector.template import sandbox

    env = _cached_compile_jinja_template("").environment
    sandbox.install(env, _current_deadline, DEFAULT_MAX_CHARS)
    env.add_extension(_CompileDeadline)
    # Folding may build constants of up to 20,000 characters, 4 MB in all; a bigger one is refused while compiling
    # (Jinja then leaves the expression to the render, where the render's limits apply).
    deadline = _Deadline(COMPILE_TIME_LIMIT, 20_000, 4 * 2**20)
    deadline.what = ("Chat template took longer than {limit:g} s to compile and was stopped (is it this large? "
                     "CPU time).")
    previous = getattr(_LOCAL, "deadline", None)
    _LOCAL.deadline = deadline
    try:
        with _watched(deadline):
            compiled = env.from_string(template)
        deadline.check()
    finally:
        _LOCAL.deadline = previous
    sandbox.install_joins(compiled, _current_deadline, DEFAULT_MAX_CHARS)
    return compiled


def _compile_deadline_extension() -> type:
    from jinja2.ext import Extension

    class CompileDeadline(Extension):
        """Checks the compile deadline every 256 tokens while Jinja parses (the parser pulls tokens as it goes), so
        a slow parse stops at the limit without relying on the watchdog: its stop can be swallowed by a garbage
        collector callback that happens to run at that moment."""

        def filter_stream(self, stream):
            deadline = _current_deadline()
            for i, token in enumerate(stream):
                if deadline is not None and i & 255 == 0:
                    deadline.check()
                yield token

    return CompileDeadline


_CompileDeadline = _compile_deadline_extension()


def has_generation_tags(template: str) -> bool:
    """Whether the template has a real ``{% generation %}`` block: read with Jinja's own lexer, so the tag inside a
    comment, a ``{% raw %}`` block or a string literal does not count. Example: ``"{# {% generation %} #}hi"`` ->
    False; ``"{% generation %}{{ m }}{% endgeneration %}"`` -> True. A template the lexer refuses falls back to a
    plain search."""
    if not GENERATION_TAG.search(template):
        return False
    import jinja2

    try:
        previous = None
        for _line, kind, value in jinja2.Environment().lex(template):
            if kind == "name" and value == "generation" and previous == "block_begin":
                return True
            if kind != "whitespace":
                previous = kind
        return False
    except jinja2.TemplateSyntaxError:
        return True


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


class _Deadline(CpuBudget):
    """The time, size and allocation budget of one render (or compile), in the thread that renders.

    Time is CPU time of the rendering thread (``inspector.template.clock``: a busy or paused process does not use up
    a render's budget), with a wall-clock backstop for a render stuck outside the CPU. Checked cooperatively
    (between output chunks, and on every call, attribute and item access the template makes, see
    ``_install_call_hook``: a cheap comparison with ``end`` first) and enforced by the watchdog for loops that do
    none of these, e.g. ``{% for a in r %}{% for b in r %}{% endfor %}{% endfor %}`` over a list ``r``. ``spend``
    counts the bytes of the new values the render makes (``inspector.template.sandbox``), up to ``budget``.

    Example: _Deadline(0.5, max_chars=3).check_size("abcd") raises RenderTimeout ("... reached a string of 4 ...").
    """

    __slots__ = ("max_chars", "thread_id", "claim", "fired", "budget", "spent", "what")

    def __init__(self, limit: float, max_chars: int = DEFAULT_MAX_CHARS, budget: int = DEFAULT_MAX_BYTES):
        super().__init__(limit)
        self.max_chars = max_chars
        self.budget = budget
        self.spent = 0
        self.what = ("Chat template ran longer than {limit:g} s and was stopped (a loop without bound? The limit "
                     "counts CPU time of the rendering thread.)")
        self.thread_id = threading.get_ident()
        # Who stops this render: the watchdog or the render itself (leaving the watched region). Whoever pops
        # "stop" first wins; dict.pop is one atomic step under the GIL, so no lock is needed by the render thread.
        self.claim = {"stop": True}
        self.fired = False  # the watchdog has scheduled _AsyncTimeout in the rendering thread

    def message(self) -> str:
        return self.what.format(limit=self.limit)

    def check(self) -> None:
        if time.monotonic() > self.end and self.expired():
            raise RenderTimeout(self.message())

    def check_size(self, value: Any) -> None:
        """Stop a string or container that grew past ``max_chars`` (a doubling loop reaches gigabytes in seconds,
        long before the time limit)."""
        if isinstance(value, _SIZED) and len(value) > self.max_chars:
            kind = "string" if isinstance(value, str) else type(value).__name__
            unit = "characters" if isinstance(value, str) else "items"
            raise RenderTimeout(f"Chat template reached a {kind} of {len(value):,} {unit}, past the limit of "
                                f"{self.max_chars:,} per value (RenderLimits.max_chars), and was stopped.")

    def spend(self, nbytes: int, what: str = "") -> None:
        """Count ``nbytes`` of new values; stop the render once they pass the budget (a loop that keeps what it
        makes alive, each step small)."""
        self.spent += nbytes
        if self.spent > self.budget:
            raise RenderTimeout(f"Chat template created more than {self.budget:,} bytes of values in one render "
                                f"(last: {what or 'a value'}) and was stopped (RenderLimits.max_bytes).")


def _current_deadline() -> "_Deadline | None":
    """The budget of the render (or compile) running in this thread, read by the sandbox guards."""
    return getattr(_LOCAL, "deadline", None)


class _watched:
    """The watchdog covers ``deadline`` inside this block; a stop becomes ``RenderTimeout(deadline.message())``."""

    def __init__(self, deadline: "_Deadline"):
        self.deadline = deadline

    def __enter__(self):
        _WATCHDOG.watch(self.deadline)
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            _WATCHDOG.unwatch(self.deadline)
        except _AsyncTimeout:
            raise RenderTimeout(self.deadline.message()) from None
        if exc_type is not None and issubclass(exc_type, _AsyncTimeout):
            raise RenderTimeout(self.deadline.message()) from None
        return False


class _AsyncTimeout(RenderTimeout):
    """Raised inside a rendering thread by the watchdog; ``render`` turns it into a ``RenderTimeout`` with a
    message."""


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> bool:
    """Schedule ``exc`` to be raised in thread ``thread_id`` at its next bytecode (None: cancel one not yet raised).
    CPython only; elsewhere the cooperative checks are all there is."""
    try:
        import ctypes

        set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    except (ImportError, AttributeError):
        return False
    return set_async_exc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else None) == 1


class _Watchdog:
    """One daemon thread for the process that stops renders still running past their deadline.

    The cooperative checks see every call, attribute access and output chunk, but a loop over a list that prints
    nothing and calls nothing is pure bytecode. The watchdog raises ``_AsyncTimeout`` inside the rendering thread
    (any thread: Streamlit runs scripts in worker threads, where signals cannot be used).

    The rendering thread never takes a lock the watchdog holds while firing (an exception raised inside
    ``Condition.__enter__`` would leave the lock held for good). Instead each deadline has a one-shot claim: the
    watchdog fires only if it pops the claim first; ``unwatch`` pops it when the render leaves the watched region.
    If the watchdog won, ``unwatch`` waits until the exception is scheduled, cancels it if it was not raised yet, and
    raises it itself, so nothing is ever raised after ``render`` has returned.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.heap: list[tuple[float, int, _Deadline]] = []
        self.count = itertools.count()
        self.thread: threading.Thread | None = None

    def watch(self, deadline: _Deadline) -> None:
        with self.cond:
            heapq.heappush(self.heap, (deadline.end, next(self.count), deadline))
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="inspector-render-watchdog", daemon=True)
                self.thread.start()
            elif self.heap[0][2] is deadline:
                self.cond.notify()

    @staticmethod
    def unwatch(deadline: _Deadline) -> None:
        """Called by the rendering thread when it leaves the watched region; takes no lock."""
        if deadline.claim.pop("stop", None) is not None:
            return  # the watchdog will never fire for this render
        while not deadline.fired:  # the watchdog won and is about to schedule the exception
            time.sleep(0)
        _set_async_exc(deadline.thread_id, None)  # not raised yet: cancel it and raise it here instead
        raise _AsyncTimeout()

    def _run(self) -> None:
        with self.cond:
            while True:
                while self.heap and not self.heap[0][2].claim:
                    heapq.heappop(self.heap)
                if not self.heap:
                    self.cond.wait()
                    continue
                wait = self.heap[0][0] - time.monotonic()
                if wait > 0:
                    self.cond.wait(wait)
                    continue
                deadline = heapq.heappop(self.heap)[2]
                if not deadline.expired():  # CPU time left (the thread waited, or the process was paused)
                    heapq.heappush(self.heap, (deadline.end, next(self.count), deadline))
                    continue
                if deadline.claim.pop("stop", None) is not None:
                    _set_async_exc(deadline.thread_id, _AsyncTimeout)
                    deadline.fired = True


_WATCHDOG = _Watchdog()
_HOOK_LOCK = threading.Lock()  # installs hooks and per-template locks once per compiled environment


def render(messages: list[dict[str, Any]], template: str, tokenizer: Any = None, *, tools: list | None = None,
           add_generation_prompt: bool = False, variables: dict[str, Any] | None = None,
           track_generation: bool = False, limits: RenderLimits = RenderLimits(),
           prepared: bool = False) -> Rendered:
    """Render ``messages`` with ``template``. Raises ``RenderError`` (the template's own message) or
    ``RenderTimeout``. ``variables`` defaults to ``template_variables(tokenizer)``. ``prepared``: ``messages`` are
    ``template_messages(...)`` already (or a slice of them: the preparation is per message), so they are not made
    again; the train/inference check renders several prefixes of one conversation."""
    import jinja2
    compiled = compile_template(template)
    env = compiled.environment
    ctx = dict(variables if variables is not None else template_variables(tokenizer))
    ctx.update(messages=messages if prepared else template_messages(messages), tools=_template_data(tools),
               documents=None, add_generation_prompt=add_generation_prompt)
    if limits.now is not None:
        ctx["strftime_now"] = frozen_clock(limits.now)
    blocks: list[str] = []
    gen_spans: list[tuple[int, int]] = []
    deadline: _Deadline | None = None
    try:
        with _render_lock(env):
            deadline = _Deadline(limits.time_limit, limits.max_chars, limits.max_bytes)
            with _watch_calls(env, deadline):
                if track_generation:
                    with env.activate_tracker(blocks, gen_spans):
                        _drain(compiled.generate(**ctx), blocks, deadline, limits.max_chars)
                else:
                    _drain(compiled.generate(**ctx), blocks, deadline, limits.max_chars)
    except _AsyncTimeout:
        raise RenderTimeout(deadline.message() if deadline is not None else "Chat template was stopped.") from None
    except RenderError:
        raise
    except jinja2.TemplateError as exc:
        raise RenderError(f"Chat template raised: {exc}") from exc
    except MemoryError as exc:
        raise RenderError("Chat template ran out of memory and was stopped (a value growing without bound?).") from exc
    except Exception as exc:  # a template can trigger any Python error through filters and methods
        stop = _limit_in_context(exc)
        if stop is not None:  # Jinja's traceback rewriting failed on our stop (no line number at that bytecode)
            raise RenderTimeout(deadline.message() if isinstance(stop, _AsyncTimeout) else str(stop)) from None
        raise RenderError(f"Chat template failed: {type(exc).__name__}: {exc}") from exc
    text = "".join(blocks)
    return Rendered(text, [tuple(s) for s in gen_spans] if track_generation else None)


def _normalize(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What ``apply_chat_template`` does to messages before a template sees them (transformers 5.x: keys whose value
    is None are dropped, so ``content=None`` reaches the template as a missing key), so our text stays exactly
    transformers'. Example: [{"role": "assistant", "content": None}] -> [{"role": "assistant"}]."""
    normalize = _chat_normalizer()
    return messages if normalize is None else normalize(messages)


@lru_cache(maxsize=1)
def _chat_normalizer() -> Any:
    """transformers' ``_normalize_chat_messages`` (5.x), or None where an older version passes messages as they
    are. Looked up on first use: importing this module does not import transformers."""
    try:
        from transformers.utils.chat_template_utils import _normalize_chat_messages
    except ImportError:
        return None
    return _normalize_chat_messages


_PLAIN_SCALARS = frozenset((str, int, float, bool, type(None)))


def _is_plain(value: Any) -> bool:
    """True when ``value`` is made of exact JSON types only (dicts with str keys, lists, tuples, str, int, float,
    bool, None): the values transformers' ``_plain_template_data`` copies unchanged. Iterative (no recursion limit).

    Example: _is_plain([{"a": [1, "x", None]}]) -> True; _is_plain([{"a": b"x"}]) -> False
    """
    stack = [value]
    scalars = _PLAIN_SCALARS
    while stack:
        v = stack.pop()
        t = type(v)
        if t in scalars:
            continue
        if t is dict:
            for k, x in v.items():
                if type(k) is not str:
                    return False
                if type(x) not in scalars:
                    stack.append(x)
        elif t is list or t is tuple:
            stack.extend(x for x in v if type(x) not in scalars)
        else:
            return False
    return True


def _template_data(value: Any) -> Any:
    """``_plain_template_data(value)`` without the copy when the value is plain already (templates render in an
    immutable sandbox: they cannot change what they are given)."""
    if _is_plain(value):
        return value
    from transformers.utils.chat_template_utils import _plain_template_data

    return _plain_template_data(value)


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages exactly as ``apply_chat_template`` hands them to a template: message objects made dicts, keys
    whose value is None dropped (``_normalize``), everything rebuilt from plain JSON types (``_plain_template_data``),
    reasoning aliased to ``reasoning_content`` / ``thinking`` (``_alias_reasoning_fields``). Messages made of plain
    JSON types (every record the loaders read) skip the two deep copies: only each message's own dict is rebuilt.

    Example: [{"role": "assistant", "content": None, "reasoning": "r"}]
    -> [{"thinking": "r", "role": "assistant", "reasoning": "r", "reasoning_content": "r"}]
    """
    from transformers.utils.chat_template_utils import _alias_reasoning_fields, _plain_template_data

    if type(messages) is list and all(type(m) is dict for m in messages) and _is_plain(messages):
        if _chat_normalizer() is not None:  # transformers 5.x drops keys whose value is None
            messages = [{k: v for k, v in m.items() if v is not None} for m in messages]
        return _alias_reasoning_fields(messages)
    return _alias_reasoning_fields(_plain_template_data(_normalize(messages)))


def _limit_in_context(exc: BaseException) -> RenderTimeout | None:
    """The RenderTimeout another error was raised while handling, if any."""
    seen = 0
    ctx = exc.__context__
    while ctx is not None and seen < 20:
        if isinstance(ctx, RenderTimeout):
            return ctx
        ctx, seen = ctx.__context__, seen + 1
    return None


def _drain(gen, blocks: list[str], deadline: _Deadline, max_chars: int) -> int:
    """Collect the output, at most ``max_chars`` counted in UTF-8 bytes (a character of English is one, of Chinese
    three, an emoji four): no tokenizer makes more tokens than bytes (byte-level BPE and byte fallback make one per
    byte at most), so this also bounds what tokenizing the record can cost."""
    size = 0
    for i, chunk in enumerate(gen):
        blocks.append(chunk)
        size += len(chunk) if chunk.isascii() else len(chunk.encode("utf-8", "surrogatepass"))
        if size > max_chars:
            raise RenderTimeout(f"Chat template output grew past {max_chars:,} characters (UTF-8 bytes) and was "
                                "stopped (the rendered text of one record is limited to RenderLimits.max_chars, "
                                "--max-chars).")
        if i & 63 == 0:
            deadline.check()
    deadline.check()
    return size


_LOCAL = threading.local()  # the deadline of the render running in this thread, read by the hooks
_SIZED = (str, list, tuple, dict)
_BUILTIN_METHOD = type({}.get)
_DICT_ATTRS = frozenset(dir(dict))


class _watch_calls:
    """Watch one render: hooks on the compiled environment check the thread's deadline on every call, attribute and
    item access the template makes (so loops that print nothing still stop), and the watchdog covers the rest."""

    def __init__(self, env: Any, deadline: _Deadline):
        self.env, self.deadline = env, deadline

    def __enter__(self):
        _install_call_hook(self.env, _LOCAL)
        self.prev = getattr(_LOCAL, "deadline", None)
        _LOCAL.deadline = self.deadline
        _WATCHDOG.watch(self.deadline)
        return self

    def __exit__(self, *exc):
        try:
            _WATCHDOG.unwatch(self.deadline)
        finally:
            _LOCAL.deadline = self.prev
        return False


def _install_call_hook(env: Any, local: Any) -> None:
    """Wrap ``env.call``, ``env.getattr`` and ``env.getitem`` (every call, ``a.b`` and ``a[b]`` a sandboxed template
    makes goes through them) with the deadline and size checks of the thread's render. Renders that are not ours
    (no deadline in this thread) pass straight through."""
    if getattr(env, "_inspector_hooked", False):
        return
    with _HOOK_LOCK:
        if getattr(env, "_inspector_hooked", False):
            return
        from inspector.template.sandbox import check_call, cost

        original_call, original_getattr, original_getitem = env.call, env.getattr, env.getitem
        monotonic = time.monotonic

        def call(__context, __obj, *args, **kwargs):
            deadline = getattr(local, "deadline", None)
            if deadline is None:
                return original_call(__context, __obj, *args, **kwargs)
            deadline.check()
            for value in args:
                deadline.check_size(value)
            for value in kwargs.values():
                deadline.check_size(value)
            if type(__obj) is _BUILTIN_METHOD and type(getattr(__obj, "__self__", None)) is dict \
                    and __obj.__name__ == "get":
                # message.get('key'): the call templates make most. What the sandbox would do (dict.get is safely
                # callable, takes no context, grows nothing), without its checks: the same result, sized the same.
                kwargs.pop("_loop_vars", None)
                kwargs.pop("_block_vars", None)
                result = __obj(*args, **kwargs)
                deadline.check_size(result)
                return result
            args, size = check_call(__obj, args, kwargs, deadline.max_chars)  # sized before it runs
            result = original_call(__context, __obj, *args, **kwargs)
            deadline.check_size(result)
            if size is not None and result is not getattr(__obj, "__self__", None):
                deadline.spend(cost(result), getattr(__obj, "__name__", "a call"))
            return result

        def getattr_(obj, attribute):
            # message.role / message.get on a plain dict, what the sandbox would give (an item when dict has no such
            # attribute; dict.get is a safe attribute), without its checks; anything else goes through the sandbox
            if type(obj) is dict and attribute not in _DICT_ATTRS and attribute in obj:
                result = obj[attribute]
            elif type(obj) is dict and attribute == "get":
                result = obj.get
            else:
                result = original_getattr(obj, attribute)
            deadline = getattr(local, "deadline", None)
            if deadline is not None:  # inlined checks: templates read attributes and items thousands of times
                if monotonic() > deadline.end and deadline.expired():
                    raise RenderTimeout(deadline.message())
                if isinstance(result, _SIZED) and len(result) > deadline.max_chars:
                    deadline.check_size(result)
            return result

        def getitem(obj, argument):
            result = original_getitem(obj, argument)
            deadline = getattr(local, "deadline", None)
            if deadline is not None:
                if monotonic() > deadline.end and deadline.expired():
                    raise RenderTimeout(deadline.message())
                if isinstance(result, _SIZED) and len(result) > deadline.max_chars:
                    deadline.check_size(result)
                if type(argument) is slice and result is not obj:  # a slice is a copy
                    deadline.spend(cost(result), "a slice")
            return result

        # The environment is immutable for templates, not for us; the hooks only read a thread-local deadline.
        object.__setattr__(env, "call", call)
        object.__setattr__(env, "getattr", getattr_)
        object.__setattr__(env, "getitem", getitem)
        object.__setattr__(env, "_inspector_render_lock", threading.RLock())
        object.__setattr__(env, "_inspector_hooked", True)


def _render_lock(env: Any) -> Any:
    """One lock per compiled template. transformers' ``{% generation %}`` tracker keeps its state on the template's
    environment, which every thread rendering that template shares: two concurrent renders would mix their
    generation spans (or fail with "AssistantTracker should not be reused"). Renders hold the GIL anyway, so
    serializing renders of one template costs no parallelism."""
    _install_call_hook(env, _LOCAL)
    return env._inspector_render_lock
