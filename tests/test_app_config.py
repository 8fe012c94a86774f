"""The sidebar's Trainer config box under AppTest: an uploaded real axolotl config (tests/data/configs) fills the
sidebar (tokenizer, max length, template, train_on_eos) and lists what was taken; a LLaMA-Factory config whose
template the inspector does not have stops at a message until the user agrees to the tokenizer's own template."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = Path(__file__).parent / "data" / "configs"
TIMEOUT = 60


@pytest.fixture(scope="module")
def tiny_dir(tiny_tokenizer, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tiny-tokenizer")
    tiny_tokenizer.save_pretrained(str(path))
    return str(path)


def widget(at: AppTest, kind: str, key: str):
    return next(w for w in getattr(at, kind) if w.key == key)


def upload_config(at: AppTest, name: str, data: dict) -> AppTest:
    widget(at, "file_uploader", "sb_config_upload").set_value(
        (name, yaml.safe_dump(data).encode(), "application/octet-stream")).run()
    return at


def texts(at: AppTest, kind: str) -> list[str]:
    """The sidebar's texts of one kind, markdown escapes removed (user text is shown escaped)."""
    return [e.value.replace("\\", "") for e in getattr(at.sidebar, kind)]


def test_uploaded_axolotl_config_fills_the_sidebar(tiny_dir, monkeypatch):
    monkeypatch.setenv("SFT_INSPECTOR_SERVER_PATHS", "on")
    data = yaml.safe_load((CONFIGS / "axolotl" / "falcon-e-3b-ft.yaml").read_text())
    data.update(base_model=tiny_dir, chat_template="chatml", sequence_len=48)
    data["datasets"][0]["train_on_eos"] = "last"
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    upload_config(at, "falcon.yaml", data)
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["sb_tok_name"] == tiny_dir
    assert widget(at, "number_input", "sb_max_length").value == 48
    assert widget(at, "selectbox", "sb_train_on_eos").value == "last"
    assert widget(at, "radio", "sb_template_source").value == "Edit (Jinja)"
    editor = next(w for w in at.text_area if w.key.startswith("sb_template_text_"))
    assert editor.value == (ROOT / "inspector" / "config" / "chatml.jinja").read_text()
    captions = " ".join(texts(at, "caption"))
    assert "sequence_len: 48 -> --max-length 48" in captions
    assert "datasets[0].train_on_eos: last -> --train-on-eos last" in captions
    assert "special_tokens.eos_token" in captions  # listed as having no equivalent
    assert not [e for e in texts(at, "error") if "Chat template" in e]
    # the user's own change stays: the config is applied once
    widget(at, "number_input", "sb_max_length").set_value(256).run()
    assert widget(at, "number_input", "sb_max_length").value == 256


def test_llamafactory_template_needs_consent(tiny_dir, monkeypatch):
    monkeypatch.setenv("SFT_INSPECTOR_SERVER_PATHS", "on")
    data = yaml.safe_load((CONFIGS / "llamafactory" / "qwen3_lora_sft.yaml").read_text())
    data.update(model_name_or_path=tiny_dir, cutoff_len=64)
    data.pop("dataset")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    upload_config(at, "sft.yaml", data)
    assert not at.exception, [e.value for e in at.exception]
    assert any("qwen3_nothink" in e and "Chat template" in e for e in texts(at, "error")), texts(at, "error")
    widget(at, "checkbox", "sb_config_tokenizer_template").check().run()
    assert not [e for e in texts(at, "error") if "Chat template" in e], texts(at, "error")
    assert widget(at, "number_input", "sb_max_length").value == 64


def test_a_broken_config_is_a_message(monkeypatch):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    widget(at, "file_uploader", "sb_config_upload").set_value(("c.yaml", b"sequence_len: [1,\n",
                                                               "application/octet-stream")).run()
    assert not at.exception
    assert any(e.startswith("Trainer config: c.yaml is not valid YAML") for e in texts(at, "error")), \
        texts(at, "error")
