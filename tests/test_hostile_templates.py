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
import threading
import time
from pathlib import Path

import pytest

from conftest import CHATML
from inspector.conversations import Conversation, Message
from inspector.errors import ChatTemplateError, InspectorError, RenderError, RenderTimeout
from inspector.labels import STRATEGIES, LabelEngine, LabelOptions, SampleError
from inspector.render import RenderLimits, probe_template, render
from inspector.tokenizer import ChatSetup

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
    "lipsum-loop-inside-a-global": ("{{ lipsum(n=10**7) }}", RenderTimeout, TIMED_OUT),
    "output-flood": ("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", RenderTimeout,
                     "output grew past 1,000,000 characters"),
    "namespace-string-doubling": (
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
        "{{ ns.s|length }}", RenderTimeout, "built a string of 1,048,576 characters"),
    "namespace-list-doubling": (
        "{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = ns.l + ns.l %}{% endfor %}"
        "{{ ns.l|length }}", RenderTimeout, "built a list of 1,048,576 items"),
    "macro-doubling-argument": ("{% macro f(s) %}{{ f(s ~ s) }}{% endmacro %}{{ f('x') }}", RenderTimeout,
                                "built a string of 1,048,576 characters"),
    "top-level-doubling": ("{% set s = 'x' * 64 %}" + "{% set s = s ~ s %}" * 40 + "{{ s|length }}",
                           RenderTimeout, TIMED_OUT),
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
    exc, _ = _timed(lambda: render(NORMAL, "{{ 'x' * 50 }}", limits=RenderLimits(max_chars=49)))
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
            "from inspector.render import render, RenderLimits\n"
            "try:\n    render([], '{{ (10**100000)**100000 }}', limits=RenderLimits(0.5))\n"
            "except Exception as e:\n    print(type(e).__name__)\n" % str(ROOT))
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=6)
    except subprocess.TimeoutExpired:
        pytest.fail("the render of (10**100000)**100000 was still running after 6 s")
    assert out.stdout.strip() in ("RenderError", "RenderTimeout", "ChatTemplateError"), out.stdout + out.stderr


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
    import inspector.labels as labels_mod

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

def _cli_available() -> bool:
    return (ROOT / "inspector" / "cli.py").is_file()


needs_cli = pytest.mark.skipif(not _cli_available(), reason="inspector/cli.py does not exist yet")


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


@needs_cli
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


@needs_cli
def test_cli_exits_2_with_a_clear_message_on_a_template_that_does_not_parse(tmp_path, tiny_dir, data_file):
    tmpl = tmp_path / "broken.jinja"
    tmpl.write_text("{% for m in messages %}\n{{ m.content }", encoding="utf-8")
    out = _run_cli("check", str(data_file), "--tokenizer", str(tiny_dir), "--chat-template", str(tmpl),
                   "--no-progress")
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.strip().splitlines()[-1].startswith("Error: Chat template does not parse (line 2)")
    assert "Traceback" not in out.stderr


@needs_cli
def test_cli_check_with_a_looping_template_reports_it_and_goes_on(tmp_path, tiny_dir, data_file, monkeypatch,
                                                                   capsys):
    """In-process (the CLI has no time-limit option, see the report): the looping record becomes a
    template-error finding, the other records are checked, and the exit code is 1."""
    from inspector import cli

    tmpl = tmp_path / "hostile.jinja"
    tmpl.write_text(BOOM_TEMPLATE, encoding="utf-8")
    real_options = cli._options

    def fast_options(args):
        from dataclasses import replace

        return replace(real_options(args), limits=RenderLimits(time_limit=0.3))

    monkeypatch.setattr(cli, "_options", fast_options)
    code = cli.main(["check", str(data_file), "--tokenizer", str(tiny_dir), "--chat-template", str(tmpl), "--json",
                     "--no-progress"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    summary = report["checks"]["template-error"]
    assert summary["examples"] == ["data-1"]
    assert "ran longer than 0.3 s" in summary["first"][0]["message"]
    assert report["totals"]["samples"] == 2
    assert _render_normal() == NORMAL_TEXT


@needs_cli
def test_cli_trust_remote_code_is_off_by_default_and_explicit():
    from inspector import cli

    parser = cli.build_parser()
    for command in ("check", "export", "show"):
        extra = ["--out", "x"] if command == "export" else []
        assert parser.parse_args([command, "data.jsonl", *extra]).trust_remote_code is False
        assert parser.parse_args([command, "data.jsonl", *extra, "--trust-remote-code"]).trust_remote_code is True
    help_text = _run_cli("check", "--help", timeout=60).stdout
    assert "--trust-remote-code" in help_text
    assert "off by default" in help_text


@needs_cli
def test_cli_passes_trust_remote_code_false_to_the_loader(monkeypatch, tiny_dir):
    import inspector.tokenizer as tok_mod
    from inspector import cli

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
    """The app builds LabelOptions in ``pages.common.ui._options_section`` without a time limit of its own (default 5 s); give
    the renders a 0.3 s limit so a looping template costs seconds here, not minutes."""
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
