"""Chat templates are code from strangers: each hostile template ends with a clear error within the time limit, in
any thread, and leaves the engine, the CLI and the app usable.

Renders use a small limit (``LIMITS``: 0.5 s, 1,000,000 characters) so the suite stays fast. ``SLACK`` is what a
stop may take past the limit: the watchdog fires at the deadline, but one C-level step (joining a big string) runs
to its end first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conftest import CHATML
from inspector.conversations import Conversation, Message
from inspector.errors import ChatTemplateError, InspectorError, RenderError, RenderTimeout
from inspector.labels.engine import STRATEGIES, LabelEngine, LabelOptions, SampleError
from inspector.template.render import RenderLimits, render
from inspector.template.probe import probe_template
from inspector.template.tokenizer import ChatSetup

ROOT = Path(__file__).resolve().parents[1]
LIMITS = RenderLimits(time_limit=0.5, max_chars=1_000_000)
SLACK = 2.0
NORMAL = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
NORMAL_TEXT = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"

# A loop over a plain list calls nothing, reads no attribute and prints nothing: only the watchdog can stop it.
SILENT_LIST_LOOP = ("{% set r = range(100000)|list %}{% for a in r %}{% for b in r %}{% endfor %}{% endfor %}")
TIMED_OUT = "ran longer than 0.5 s"

# id -> (template, expected exception, a fragment of its message)
HOSTILE = {
    "range-1e9": ("{% for i in range(10**9) %}x{% endfor %}", RenderError, "Range too big"),
    "range-1e9-silent": ("{% for i in range(10**9) %}{% endfor %}", RenderError, "Range too big"),
    "nested-ranges-print-nothing": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", RenderTimeout, TIMED_OUT),
    "nested-ranges-set-only": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% set x = j %}{% endfor %}{% endfor %}done",
        RenderTimeout, TIMED_OUT),
    "nested-list-loop-no-calls": (SILENT_LIST_LOOP, RenderTimeout, TIMED_OUT),
    "nested-list-loop-with-if": (
        "{% set r = range(100000)|list %}{% for a in r %}{% for b in r %}{% if b == -1 %}x{% endif %}{% endfor %}"
        "{% endfor %}", RenderTimeout, TIMED_OUT),
    "lipsum-asks-for-gigabytes": ("{{ lipsum(n=10**7) }}", RenderTimeout, "asked for a string (lipsum)"),
    "output-flood": ("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", RenderTimeout,
                     "output grew past 1,000,000 characters"),
    "namespace-string-doubling": (
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
        "{{ ns.s|length }}", RenderTimeout, "asked for a string (~) of 1,048,576 characters"),
    "namespace-list-doubling": (
        "{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = ns.l + ns.l %}{% endfor %}"
        "{{ ns.l|length }}", RenderTimeout, "asked for a list (+) of 1,048,576 items"),
    "macro-doubling-argument": ("{% macro f(s) %}{{ f(s ~ s) }}{% endmacro %}{{ f('x') }}", RenderTimeout,
                                "asked for a string (~) of 1,048,576 characters"),
    "top-level-doubling": ("{% set s = 'x' * 64 %}" + "{% set s = s ~ s %}" * 40 + "{{ s|length }}",
                           RenderTimeout, "asked for a string (~) of 1,048,576 characters"),
    "macro-recursion": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", RenderError, "RecursionError"),
    "recursive-loop": ("{% for x in [[1]] recursive %}{{ loop([x]) }}{% endfor %}", RenderError, "RecursionError"),
    "mro": ("{{ ''.__class__.__mro__ }}", RenderError, "access to attribute '__class__' of 'str' object is unsafe"),
    "subclasses": ("{{ ''.__class__.__mro__[1].__subclasses__() }}", RenderError, "is unsafe"),
    "cycler-globals": ("{{ cycler.__init__.__globals__ }}", RenderError, "access to attribute '__init__'"),
    "joiner-globals": ("{% set j = joiner() %}{{ j.__init__.__globals__['os'] }}", RenderError,
                       "access to attribute '__init__' of 'Joiner' object is unsafe"),
    "namespace-class": ("{% set ns = namespace() %}{{ ns.__class__.__init__.__globals__ }}", RenderError,
                        "is unsafe"),
    "namespace-underscore": ("{% set ns = namespace(_x=1) %}{{ ns }}", RenderError,
                             "cannot store underscore-prefixed attributes"),
    "list-append": ("{% set l = [] %}{% for i in range(10) %}{% set _ = l.append(i) %}{% endfor %}", RenderError,
                    "access to attribute 'append' of 'list' object is unsafe"),
    "mutate-messages": ("{% set _ = messages.append({'role': 'user'}) %}x", RenderError,
                        "access to attribute 'append' of 'list' object is unsafe"),
    "dict-update": ("{% set d = {} %}{{ d.update({'a': 1}) }}", RenderError, "is unsafe"),
    "import": ("{% import 'os' as os %}", RenderError, "no loader for this environment"),
    "raise_exception": ("{{ raise_exception('Only user/assistant roles are supported!') }}", RenderError,
                        "Chat template raised: Only user/assistant roles are supported!"),
    "deep-json": ("{% set ns = namespace(l=[]) %}{% for i in range(5000) %}{% set ns.l = [ns.l] %}{% endfor %}"
                  "{{ ns.l|tojson }}", RenderError, "RecursionError"),
}


def _timed(fn):
    t0 = time.monotonic()
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - returned to the test, which asserts its type
        return exc, time.monotonic() - t0
    return None, time.monotonic() - t0


def _render_normal() -> str:
    return render(NORMAL, CHATML, limits=LIMITS).text


def _busy_python(seconds: float) -> int:
    """Pure-Python work: a stray watchdog exception would be raised here."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += sum(range(200))
    return n


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_template_ends_with_a_clear_error_in_time(name):
    template, expected, fragment = HOSTILE[name]
    exc, elapsed = _timed(lambda: render(NORMAL, template, limits=LIMITS))
    assert isinstance(exc, expected), f"{name}: {exc!r}"
    assert fragment in str(exc), str(exc)
    assert elapsed < LIMITS.time_limit + SLACK, f"{name} took {elapsed:.2f} s"
    # the engine stays usable at once, in the same thread
    assert _render_normal() == NORMAL_TEXT


def test_a_stopped_render_leaves_nothing_behind():
    exc, _ = _timed(lambda: render(NORMAL, SILENT_LIST_LOOP, limits=LIMITS))
    assert isinstance(exc, RenderTimeout)
    _busy_python(LIMITS.time_limit + 0.3)  # a late watchdog exception would surface here
    assert _render_normal() == NORMAL_TEXT


def test_renders_finishing_right_at_the_deadline_never_leak_the_stop():
    """Race the watchdog: limits so short that some renders finish just before it fires and some just after. Each
    render returns or raises RenderTimeout; nothing is ever raised in the code that runs afterwards."""
    template = "{% for i in range(3000) %}{% if i == -1 %}x{% endif %}{% endfor %}ok"
    outcomes = {"ok": 0, "timeout": 0}
    for k in range(400):
        limits = RenderLimits(time_limit=0.00005 * (k % 40 + 1), max_chars=1000)
        try:
            assert render([], template, limits=limits).text == "ok"
            outcomes["ok"] += 1
        except RenderTimeout:
            outcomes["timeout"] += 1
        _busy_python(0.0005)
    assert outcomes["ok"] + outcomes["timeout"] == 400
    assert outcomes["timeout"] > 0 and outcomes["ok"] > 0, outcomes
    _busy_python(0.1)


def test_the_global_escape_renders_nothing():
    # transformers' raise_exception is a plain function; the sandbox hides its __globals__ (renders as undefined)
    assert render(NORMAL, "{{ raise_exception.__globals__ }}{{ self.__init__ }}", limits=LIMITS).text == ""


def test_the_time_limit_is_configurable():
    exc, elapsed = _timed(lambda: render(NORMAL, SILENT_LIST_LOOP, limits=RenderLimits(time_limit=0.2)))
    assert isinstance(exc, RenderTimeout) and "ran longer than 0.2 s" in str(exc)
    assert elapsed < 0.2 + SLACK
    exc, _ = _timed(lambda: render(NORMAL, "{% for i in range(50) %}x{% endfor %}", limits=RenderLimits(max_chars=49)))
    assert isinstance(exc, RenderTimeout) and "output grew past 49 characters" in str(exc)


def test_default_limit_is_a_few_seconds():
    assert 1 <= RenderLimits().time_limit <= 10
    assert LabelOptions().limits == RenderLimits()


def test_time_limit_works_in_a_worker_thread():
    """Streamlit runs each script in a worker thread, where signals cannot be used."""
    results: dict[str, tuple] = {}

    def run(key: str, template: str) -> None:
        results[key] = _timed(lambda: render(NORMAL, template, limits=LIMITS))
        results[key + "-after"] = (_render_normal(),)

    threads = [threading.Thread(target=run, args=(k, t)) for k, t in
               (("silent", SILENT_LIST_LOOP), ("ranges", HOSTILE["nested-ranges-print-nothing"][0]),
                ("normal", CHATML))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    for key in ("silent", "ranges"):
        exc, elapsed = results[key]
        assert isinstance(exc, RenderTimeout), (key, exc)
        # two renders share the GIL, so each gets about half the CPU; the limit is wall-clock time
        assert elapsed < LIMITS.time_limit + SLACK, (key, elapsed)
    assert results["normal"][0] is None
    assert all(results[k + "-after"] == (NORMAL_TEXT,) for k in ("silent", "ranges", "normal"))


def test_a_hostile_render_does_not_stop_another_threads_render():
    """The stop is aimed at the thread whose render ran out of time, never at another one."""
    done = threading.Event()
    errors: list[BaseException] = []
    count = [0]

    def steady() -> None:
        try:
            while not done.is_set():
                # its own budget is generous: under load the hostile loop holds the GIL, and a slow render here
                # must not be mistaken for a stop aimed at the wrong thread
                assert render(NORMAL, CHATML, limits=RenderLimits(time_limit=60)).text == NORMAL_TEXT
                count[0] += 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=steady)
    t.start()
    try:
        for _ in range(3):
            exc, _ = _timed(lambda: render(NORMAL, SILENT_LIST_LOOP, limits=RenderLimits(time_limit=0.2)))
            assert isinstance(exc, RenderTimeout)
    finally:
        done.set()
        t.join(timeout=30)
    assert errors == [] and count[0] > 0



def test_a_stop_inside_a_generation_block_leaves_the_tracker_usable():
    """The watchdog may stop a render inside transformers' {% generation %} tracker; the next tracked render of the
    same template gets its own spans (the tracker was reset, not left active)."""
    template = ("{% for m in messages %}{% if m['role'] == 'assistant' %}{% generation %}"
                "{% if m['content'] == 'boom' %}" + SILENT_LIST_LOOP + "{% endif %}{{ m['content'] }}"
                "{% endgeneration %}{% else %}{{ m['content'] }}{% endif %}|{% endfor %}")
    boom = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "boom"}]
    exc, _ = _timed(lambda: render(boom, template, track_generation=True, limits=RenderLimits(time_limit=0.2)))
    assert isinstance(exc, RenderTimeout)
    ok = render(NORMAL, template, track_generation=True, limits=LIMITS)
    assert ok.text == "Hi|Hello!|" and ok.generation_spans == [(3, 9)]

# --- compile-time problems (constant folding happens in compile_template, before any limit applies) ---------------

def test_constant_folding_error_is_a_named_error():
    exc, _ = _timed(lambda: render(NORMAL, "{{ 10**5000 }}", limits=LIMITS))
    assert isinstance(exc, InspectorError), repr(exc)


def test_huge_power_is_refused_quickly():
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from inspector.template.render import render, RenderLimits\n"
            "try:\n    render([], '{{ (10**100000)**100000 }}', limits=RenderLimits(0.5))\n"
            "except Exception as e:\n    print(type(e).__name__)\n" % str(ROOT))
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=6)
    except subprocess.TimeoutExpired:
        pytest.fail("the render of (10**100000)**100000 was still running after 6 s")
    assert out.stdout.strip() in ("RenderError", "RenderTimeout", "ChatTemplateError"), out.stdout + out.stderr


# --- memory: every step that grows a value is sized before it runs (inspector.template.sandbox) -----------------------------
# Each of these asked for gigabytes in one C-level step (or a few) before any time limit could fire: 6.3 GB for the
# forty doublings, 3.1 GB for |indent, 4.0 GB for tojson(indent=...). With the default limits each is refused at
# once, naming what it asked for.

MEMORY_BOMBS = {
    "tilde-doubling-40": ("{% set s = 'x' %}" + "{% set s = s ~ s %}" * 40 + "{{ s|length }}", "a string (~)"),
    "plus-doubling-40": ("{% set s = 'x' %}" + "{% set s = s + s %}" * 40 + "{{ s|length }}", "a str (+)"),
    "list-doubling-40": ("{% set l = [1] %}" + "{% set l = l + l %}" * 40 + "{{ l|length }}", "a list (+)"),
    "printf-width": ("{{ '%10000000000s' % 'x' }}", "a string (the % format) of 10,000,000,0"),
    "printf-precision": ("{{ '%.1000000000f' % 1.0 }}", "a string (the % format)"),
    "printf-star-width": ("{{ '%*s' % (10**10, 'x') }}", "a string (the % format)"),
    "ljust": ("{{ 'x'.ljust(10**10) }}", "a string (ljust) of 10,000,000,000 characters"),
    "rjust": ("{{ 'x'.rjust(10**10) }}", "a string (rjust)"),
    "center-method": ("{{ 'x'.center(10**10) }}", "a string (center)"),
    "zfill": ("{{ '1'.zfill(10**10) }}", "a string (zfill) of 10,000,000,000 characters"),
    "format-width": ("{{ '{:>10000000000}'.format('x') }}", "a string (format)"),
    "format-width-from-argument": ("{{ '{0:{1}}'.format('x', 10**10) }}", "a string (format)"),
    "format-map": ("{{ '{a:>10000000000}'.format_map({'a': 'x'}) }}", "a string (format_map)"),
    "center-filter": ("{{ 'x'|center(10**10) }}", "a value (|center) of 10,000,000,000 characters"),
    "center-filter-folded-while-compiling": ("{{ 'x'|center(10000000000) }}", "a value (|center)"),
    "filter-block": ("{% filter center(10**9) %}x{% endfilter %}", "a value (|center)"),
    "expandtabs": ("{{ ('\t' * 10).expandtabs(10**9) }}", "a string (expandtabs)"),
    "replace-filter": ("{{ ('x' * 10**6)|replace('x', 'y' * 1000) }}", "a value (|replace) of 1,000,000,000"),
    "replace-filter-10M": ("{{ ('x' * 10**7)|replace('x', 'y' * 1000) }}", "repeats a str 10,000,000 times"),
    "replace-method": ("{{ ('x' * 10**6).replace('x', 'y' * 1000) }}", "a string (replace)"),
    "indent": ("{{ ('x\n' * 1000)|indent(10**9) }}", "a value (|indent)"),
    "indent-first-line": ("{{ 'x'|indent(10**9, true) }}", "a value (|indent)"),
    "tojson-indent": ("{{ messages|tojson(indent=10**9) }}", "a value (|tojson)"),
    "wordwrap": ("{{ ('x ' * 1000)|wordwrap(1, wrapstring='y' * 100000) }}", "a value (|wordwrap)"),
    "urlize": ("{{ ('a.com ' * 200000)|urlize(target='y' * 10000) }}", "a value (|urlize)"),
    "escape-twice": ("{{ ('<' * 1000000)|e|e }}", "a value (|e)"),
    "translate": ("{{ ('a' * 1000).translate({97: 'y' * 1000000}) }}", "a string (translate)"),
    "batch-fill": ("{{ ['x']|batch(10**9, 'y')|list|length }}", "a value (|batch)"),
    "slice": ("{{ ['x']|slice(10**9)|list|length }}", "a value (|slice)"),
    "sum-of-lists": ("{{ ([[1] * 1000000] * 100)|sum(start=[])|length }}", "a value (|sum)"),
    "lipsum": ("{{ lipsum(n=10**7) }}", "a string (lipsum)"),
    "strftime": ("{{ strftime_now('%c' * 1000000) }}", "a string (strftime_now)"),
    # a list holding one long string many times is small, printing or joining it is not
    "print-shared-list": ("{% set s = 'x' * 1000000 %}{{ [s] * 1000 }}", "a printed list"),
    "join-shared-list": ("{% set s = 'x' * 1000000 %}{{ ([s] * 1000)|join }}", "a value (|join)"),
    "join-method": ("{% set s = 'x' * 1000000 %}{{ ''.join([s] * 1000) }}", "a string (join)"),
    "string-filter": ("{% set s = 'x' * 1000000 %}{{ ([s] * 1000)|string|length }}", "a value (|string)"),
    "pprint": ("{% set s = 'x' * 100000 %}{{ ([s] * 100)|pprint }}", "a value (|pprint)"),
    "tilde-of-a-list": ("{{ (['x' * 100000] * 100) ~ '' }}", "a string (~)"),
    "block-set": ("{% set s = 'x' * 1000000 %}{% set b %}{% for i in range(1000) %}{{ s }}{% endfor %}"
                  "{% endset %}{{ b|length }}", "a block of output"),
    # each step is small; what the loop keeps alive adds up (RenderLimits.max_bytes)
    "kept-alive-strings": ("{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
                           "{% set ns.l = ns.l + [('x' * 1000000) ~ i] %}{% endfor %}{{ ns.l|length }}",
                           "bytes of values in one render"),
    "kept-alive-split": ("{% set ns = namespace(l=[]) %}{% set t = 'a,' * 900000 %}{% for i in range(100000) %}"
                         "{% set ns.l = ns.l + [t.split(',')] %}{% endfor %}{{ ns.l|length }}",
                         "bytes of values in one render"),
}


@pytest.mark.parametrize("name", list(MEMORY_BOMBS))
def test_memory_bomb_is_refused_before_it_allocates(name):
    template, fragment = MEMORY_BOMBS[name]
    exc, elapsed = _timed(lambda: render(NORMAL, template))  # the default limits
    assert isinstance(exc, RenderTimeout), f"{name}: {exc!r}"
    assert fragment in str(exc), str(exc)
    assert elapsed < RenderLimits().time_limit, f"{name} took {elapsed:.2f} s: stopped by the clock, not its size"
    assert _render_normal() == NORMAL_TEXT


def test_memory_bombs_stay_within_a_memory_limit():
    """Every bomb in one process whose address space is capped at 1.5 GB above what it holds after loading: a
    step that allocated before being refused would end in MemoryError (the render's "ran out of memory"), not in
    the refusal, and the peak resident memory stays far below the gigabytes each asked for."""
    code = textwrap.dedent(f"""
        import json, re, resource, sys
        sys.path.insert(0, {str(ROOT)!r})
        from inspector.template.render import render
        from inspector.errors import InspectorError
        render([], "{{{{ 'warm' }}}}")
        vm = int(re.search(r"VmSize:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + 1_500_000_000, vm + 1_500_000_000))
        start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = {{}}
        for name, template in json.loads(sys.stdin.read()).items():
            try:
                render({NORMAL!r}, template)
                out[name] = "rendered"
            except InspectorError as exc:
                out[name] = type(exc).__name__ + ": " + str(exc)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"results": out, "grew_mb": (peak - start) / 1024}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps({k: t for k, (t, _) in MEMORY_BOMBS.items()}),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, (_template, fragment) in MEMORY_BOMBS.items():
        result = report["results"][name]
        assert result.startswith("RenderTimeout") and fragment in result, (name, result)
    assert report["grew_mb"] < 600, report["grew_mb"]


def test_the_rendered_text_of_one_record_is_capped_before_tokenizing(tiny_tokenizer):
    """Output just under the old 20M-character cap took 86 s and 3 GB for 3 records. The rendered text of a record
    is now capped at RenderLimits.max_chars (2,000,000 by default): the record is refused with the reason before
    it is tokenized, and the others are built."""
    flood = "{{ 'x' * 1999990 }}" + CHATML
    exc, _ = _timed(lambda: render(NORMAL, flood))
    assert isinstance(exc, RenderTimeout) and "output grew past 2,000,000 characters" in str(exc), repr(exc)
    engine = LabelEngine(ChatSetup(tiny_tokenizer, CHATML, "override", "tiny"))
    samples, errors = engine.build([_conv("short"), _conv("long", user="Hello! " * 40)],
                                   LabelOptions(limits=RenderLimits(max_chars=200)))
    assert [s.conversation_id for s in samples] == ["short"]
    assert [e.conversation_id for e in errors] == ["long"] and "past the limit of 200" in errors[0].reason


def test_the_token_count_of_one_sample_is_capped(tiny_tokenizer):
    engine = LabelEngine(ChatSetup(tiny_tokenizer, CHATML, "override", "tiny"))
    n = len(engine.build([_conv("short")], LabelOptions())[0][0].input_ids)
    samples, errors = engine.build([_conv("short"), _conv("long", user="quick brown fox " * 30)],
                                   LabelOptions(limits=RenderLimits(max_tokens=n)))
    assert [s.conversation_id for s in samples] == ["short"]
    assert [e.conversation_id for e in errors] == ["long"]
    assert f"more than the limit of {n:,} per sample" in errors[0].reason
    assert RenderLimits().max_tokens == 1_000_000 and RenderLimits().max_chars == 2_000_000


def test_a_template_over_the_size_limit_is_refused_at_once():
    """20,000 macros took 24 s to compile (40,000: 90 s and 1.1 GB); templates are capped at 200,000 characters,
    twelve times the largest publisher template."""
    from inspector.template.render import MAX_TEMPLATE_CHARS, compile_template

    macros = "".join("{%% macro m%d() %%}x{%% endmacro %%}" % i for i in range(20_000))
    exc, elapsed = _timed(lambda: compile_template(macros))
    assert isinstance(exc, ChatTemplateError) and "more than the limit of 200,000" in str(exc), repr(exc)
    assert elapsed < 1.0
    assert MAX_TEMPLATE_CHARS == 200_000


def test_compiling_has_a_time_limit(monkeypatch):
    import inspector.template.render as render_mod

    monkeypatch.setattr(render_mod, "COMPILE_TIME_LIMIT", 0.05)
    big_literal = "{{ [" + "1," * 90_000 + "] }}"  # under the size cap; parsing it alone takes most of a second
    exc, elapsed = _timed(lambda: render_mod.compile_template(big_literal))
    assert isinstance(exc, ChatTemplateError), repr(exc)
    assert "took longer than 0.05 s to compile" in str(exc)
    assert elapsed < 0.05 + SLACK
    assert _render_normal() == NORMAL_TEXT


def test_constant_folding_builds_only_small_constants():
    """Jinja folds constant filter calls while compiling; a folded constant over 20,000 characters is left to the
    render (and its limits): 1,000 copies of a 1,999,999-character |center compile at once, then render as an
    output-limit error instead of holding gigabytes of generated code."""
    from inspector.template.render import compile_template

    template = "{{ 'x'|center(1999999) }}" * 1000
    exc, elapsed = _timed(lambda: compile_template(template))
    assert exc is None and elapsed < 5, (exc, elapsed)
    exc, _ = _timed(lambda: render(NORMAL, template))
    assert isinstance(exc, RenderTimeout) and "output grew past" in str(exc), repr(exc)


def test_ordinary_templates_are_not_refused():
    """The guards let through what real templates do with long conversations: concatenation per message, tojson
    of tools, split/strip of a long answer, a printed list of tool calls."""
    long_answer = "The quick brown fox.\n" * 60_000  # 1,260,000 characters
    call = {"function": {"name": "f", "arguments": {"a": 1}}}
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": long_answer, "tool_calls": [call]}]
    template = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'].split('</think>')[-1]"
                "|trim + '<|im_end|>\n' }}{% if m.tool_calls %}{{ m.tool_calls|tojson(indent=2) }}"
                "{{ m.tool_calls }}{% endif %}{% endfor %}{{ messages[-1]['content']|length }}")
    text = render(messages, template).text
    assert text.endswith(str(len(long_answer))) and long_answer.strip() in text


# --- the label engine ------------------------------------------------------------------------------------------

def _conv(cid: str, user: str = "Hi", answer: str = "Hello!") -> Conversation:
    return Conversation(cid, [Message("user", user), Message("assistant", answer)])


BOOM_TEMPLATE = ("{% for m in messages %}{% if m['content'] == 'boom' %}" + SILENT_LIST_LOOP + "{% endif %}"
                 "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
RAISING_TEMPLATE = "{{ raise_exception('Conversations must alternate user/assistant') }}"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_label_engine_turns_a_hostile_conversation_into_a_sample_error(tiny_tokenizer, strategy):
    engine = LabelEngine(ChatSetup(tiny_tokenizer, BOOM_TEMPLATE, "override", "tiny"))
    opts = LabelOptions(strategy=strategy, limits=RenderLimits(time_limit=0.3))
    t0 = time.monotonic()
    samples, errors = engine.build([_conv("good"), _conv("bad", user="boom"), _conv("good2")], opts)
    assert time.monotonic() - t0 < 10
    assert [e.conversation_id for e in errors] == ["bad"]
    assert isinstance(errors[0], SampleError) and "ran longer than 0.3 s" in errors[0].reason
    assert sorted({s.conversation_id for s in samples}) == ["good", "good2"]
    assert all(len(s.labels) == len(s.input_ids) for s in samples)


def test_label_engine_with_an_always_raising_template(tiny_tokenizer):
    engine = LabelEngine(ChatSetup(tiny_tokenizer, RAISING_TEMPLATE, "override", "tiny"))
    samples, errors = engine.build([_conv("a"), _conv("b")], LabelOptions(limits=LIMITS))
    assert samples == []
    assert [(e.conversation_id, e.reason) for e in errors] == [
        ("a", "Chat template raised: Conversations must alternate user/assistant"),
        ("b", "Chat template raised: Conversations must alternate user/assistant")]


def test_label_engine_with_an_always_looping_template(tiny_tokenizer):
    engine = LabelEngine(ChatSetup(tiny_tokenizer, SILENT_LIST_LOOP, "override", "tiny"))
    samples, errors = engine.build([_conv("a")], LabelOptions(limits=RenderLimits(time_limit=0.1)))
    assert samples == [] and [e.conversation_id for e in errors] == ["a"]
    assert "ran longer than 0.1 s" in errors[0].reason
    assert _render_normal() == NORMAL_TEXT


def test_probe_of_a_hostile_template_reports_instead_of_raising(tiny_tokenizer):
    info = probe_template(SILENT_LIST_LOOP + "{# probe #}", tiny_tokenizer, limits=RenderLimits(time_limit=0.1))
    assert info.generation_prompt is None and info.end_of_turn == ()
    assert any("ran longer than 0.1 s" in n for n in info.notes), info.notes


def test_a_template_that_does_not_parse_is_a_chat_template_error(tiny_tokenizer):
    engine = LabelEngine(ChatSetup(tiny_tokenizer, "{% for m in messages %}{{ m.content }}", "override", "tiny"))
    with pytest.raises(ChatTemplateError, match=r"does not parse \(line 1\)"):
        engine.build([_conv("a")], LabelOptions(limits=LIMITS))


def test_a_timed_out_render_is_not_retried(tiny_tokenizer, monkeypatch):
    import inspector.labels.engine as labels_mod

    calls: list[bool] = []
    real = labels_mod.render

    def counting(*args, **kwargs):
        try:
            return real(*args, **kwargs)
        except RenderTimeout:
            calls.append(True)
            raise

    monkeypatch.setattr(labels_mod, "render", counting)
    engine = LabelEngine(ChatSetup(tiny_tokenizer, BOOM_TEMPLATE, "override", "tiny"))
    _, errors = engine.build([_conv("bad", user="boom")], LabelOptions(limits=RenderLimits(time_limit=0.1)))
    assert len(errors) == 1
    assert len(calls) == 1


# --- the CLI ---------------------------------------------------------------------------------------------------



@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from conftest import train_tiny_tokenizer

    path = tmp_path_factory.mktemp("tiny-tokenizer")
    train_tiny_tokenizer("bpe").save_pretrained(str(path))
    return path


@pytest.fixture()
def data_file(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [{"messages": [{"role": "user", "content": c}, {"role": "assistant", "content": "Hello!"}]}
            for c in ("Hi", "boom", "Hey")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "inspector", *args], capture_output=True, text=True, env=env,
                          cwd=str(ROOT), timeout=timeout)


def test_cli_reports_a_raising_template(tmp_path, tiny_dir, data_file):
    tmpl = tmp_path / "hostile.jinja"
    tmpl.write_text(RAISING_TEMPLATE, encoding="utf-8")
    out = _run_cli("check", str(data_file), "--tokenizer", str(tiny_dir), "--chat-template", str(tmpl),
                   "--json", "--no-progress")
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    summary = report["checks"]["template-error"]
    assert summary["findings"] == 3 and summary["records"] == 3
    assert summary["first"][0]["message"] == "Chat template raised: Conversations must alternate user/assistant"
    assert report["totals"]["accepted_records"] == 0


def test_cli_exits_2_with_a_clear_message_on_a_template_that_does_not_parse(tmp_path, tiny_dir, data_file):
    tmpl = tmp_path / "broken.jinja"
    tmpl.write_text("{% for m in messages %}\n{{ m.content }", encoding="utf-8")
    out = _run_cli("check", str(data_file), "--tokenizer", str(tiny_dir), "--chat-template", str(tmpl),
                   "--no-progress")
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.strip().splitlines()[-1].startswith("Error: Chat template does not parse (line 2)")
    assert "Traceback" not in out.stderr


def test_cli_check_with_a_looping_template_reports_it_and_goes_on(tmp_path, tiny_dir, data_file, monkeypatch,
                                                                   capsys):
    """In-process (the CLI has no time-limit option, see the report): the looping record becomes a
    template-error finding, the other records are checked, and the exit code is 1."""
    from inspector import cli
    from inspector.cli.main import main as cli_main
    from inspector.cli import run as cli_run

    tmpl = tmp_path / "hostile.jinja"
    tmpl.write_text(BOOM_TEMPLATE, encoding="utf-8")
    real_options = cli_run._options

    def fast_options(args):
        from dataclasses import replace

        return replace(real_options(args), limits=RenderLimits(time_limit=0.3))

    monkeypatch.setattr(cli_run, "_options", fast_options)
    code = cli_main(["check", str(data_file), "--tokenizer", str(tiny_dir), "--chat-template", str(tmpl), "--json",
                     "--no-progress"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    summary = report["checks"]["template-error"]
    assert summary["examples"] == ["data-1"]
    assert "ran longer than 0.3 s" in summary["first"][0]["message"]
    assert report["totals"]["samples"] == 2
    assert _render_normal() == NORMAL_TEXT


def test_cli_trust_remote_code_is_off_by_default_and_explicit():
    from inspector import cli
    from inspector.cli.main import main as cli_main

    parser = cli.build_parser()
    for command in ("check", "export", "show"):
        extra = ["--out", "x"] if command == "export" else []
        assert parser.parse_args([command, "data.jsonl", *extra]).trust_remote_code is False
        assert parser.parse_args([command, "data.jsonl", *extra, "--trust-remote-code"]).trust_remote_code is True
    help_text = _run_cli("check", "--help", timeout=60).stdout
    assert "--trust-remote-code" in help_text
    assert "off by default" in help_text


def test_cli_passes_trust_remote_code_false_to_the_loader(monkeypatch, tiny_dir):
    import inspector.template.tokenizer as tok_mod
    from inspector import cli
    from inspector.cli.main import main as cli_main

    seen: list[bool] = []
    real = tok_mod.load_tokenizer

    def spy(name, *, trust_remote_code=False, **kw):
        seen.append(trust_remote_code)
        return real(name, trust_remote_code=trust_remote_code, **kw)

    monkeypatch.setattr(tok_mod, "load_tokenizer", spy)
    cli.load_spec(cli.SetupSpec(str(tiny_dir)))
    cli.load_spec(cli.SetupSpec(str(tiny_dir), trust_remote_code=True))
    assert seen == [False, True]


# --- the app ---------------------------------------------------------------------------------------------------

APP = ROOT / "app.py"
needs_app = pytest.mark.skipif(not APP.is_file(), reason="app.py does not exist yet")


def _app_test(timeout: float = 120):
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(APP), default_timeout=timeout)


def _edit_template(at, text: str):
    """Switch the sidebar to its Jinja editor and type ``text`` into it."""
    at.sidebar.radio(key="sb_template_source").set_value("Edit (Jinja)").run()
    areas = [a for a in at.sidebar.text_area if a.label == "Jinja chat template"]
    assert areas, f"no template editor in the sidebar; text areas: {[a.label for a in at.sidebar.text_area]}"
    areas[0].input(text).run()
    return at


def _shown(at) -> str:
    from pages.common.show import plain  # the app escapes user-supplied text as markdown: read it as shown

    return "\n".join(plain(str(e.value)) for e in at.error)


@pytest.fixture()
def fast_app_limits(monkeypatch):
    """The app builds LabelOptions in ``pages.common.ui._options_section`` without a time limit of its own
    (default 5 s); give the renders a 0.3 s limit so a looping template costs seconds here, not minutes."""
    import dataclasses

    from pages.common import ui

    real = ui._options_section
    monkeypatch.setattr(ui, "_options_section",
                        lambda: dataclasses.replace(real(), limits=RenderLimits(time_limit=0.3)))


@needs_app
@pytest.mark.parametrize("template, fragment", [
    (RAISING_TEMPLATE, "Chat template raised: Conversations must alternate user/assistant"),
    ("{% for m in messages %}{{ m.content }", "Chat template does not parse (line 1)"),
    (SILENT_LIST_LOOP, "Chat template ran longer than 0.3 s and was stopped"),
    ("{{ ''.__class__.__mro__ }}", "access to attribute '__class__' of 'str' object is unsafe"),
])
def test_app_shows_an_error_for_a_hostile_template_and_keeps_working(fast_app_limits, template, fragment):
    at = _app_test().run()
    assert not at.exception
    t0 = time.monotonic()
    _edit_template(at, template)
    assert time.monotonic() - t0 < 60
    assert not at.exception, [e.value for e in at.exception]
    assert fragment in _shown(at), _shown(at)
    # back to the tokenizer's own template: no error, and the rendered preview is there again
    at.sidebar.radio(key="sb_template_source").set_value("The tokenizer's own").run()
    assert not at.exception and not at.error, _shown(at)
    assert any(c.value.startswith("<｜begin▁of▁sentence｜>") for c in at.sidebar.code)


@needs_app
def test_app_trust_remote_code_is_off_by_default_and_visible_when_on():
    at = _app_test().run()
    box = at.sidebar.checkbox(key="sb_trust_remote_code")
    assert box.label == "trust_remote_code" and box.value is False
    assert not any("trust_remote_code is ON" in str(w.value) for w in at.sidebar.warning)
    box.check().run()
    assert any("trust_remote_code is ON" in str(w.value) for w in at.sidebar.warning)
    assert not at.exception
