"""Cached work behind the pages: tokenizers and loaded data, labels and findings of a few conversations (Inspect,
Gradient weights), the streamed scan of a whole dataset (Dataset, Export) and the export files.

Caching: tokenizers and files read from a path with ``st.cache_resource`` (one object shared by every session,
never mutated: a template override travels in ``ChatSetup``); the scan per chunk of ``CHUNK_SIZE`` records with
``st.cache_resource`` too, as three small tables (``viz.scan_tables``), so a scan that is interrupted (the user
changes a setting or leaves the page) resumes where it stopped, and 100,000 conversations cost a few numbers
each, not their samples. Keys name what the hidden (``_``) arguments are: data, tokenizer, template, options.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from inspector.views import viz
from inspector.checks import CheckContext, Outcome, Report, evaluate, report_settings
from inspector.conversations import Conversation, LoadResult
from inspector.labels.engine import LabelOptions, Sample, SampleError
from inspector.template.tokenizer import ChatSetup, load_tokenizer
from inspector.labels.verify import Verification, verify_sample

from .keys import options_key, sha

CHUNK_SIZE = 256  # records per cached scan chunk (the progress bar's step)
EXCERPT_CHARS = 200  # a rejected record is shown and exported as at most this many characters of its JSON
LIVE_EVERY = 3.0  # seconds between two updates of the token shares shown while a scan runs
AUTO_EXPORT_RECORDS = 5_000  # above this many records, Export writes its files when asked, not on every visit


# --- what the app keeps of a load ----------------------------------------------------------------------------------

_KEYS_FOUND = re.compile(r"\s*\(keys found: .*\)", re.DOTALL)  # to the last ")": key names may hold one


def safe_text(value: Any) -> str:
    """Text that can be shown and written as UTF-8: a lone surrogate becomes its escape (\\ud83d)."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def excerpt(record: Any, limit: int) -> str:
    """A rejected record as at most ``limit`` characters of its JSON (ASCII-escaped), for display and export."""
    try:
        text = record if isinstance(record, str) else json.dumps(record, ensure_ascii=True, default=str)
    except (ValueError, TypeError, RecursionError):
        text = f"<{type(record).__name__} that cannot be shown>"
    text = safe_text(text)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text):,} characters)"


def for_app(result: LoadResult, *, server_file: bool, limit: int = EXCERPT_CHARS) -> LoadResult:
    """What the app keeps of a load: rejected records as a bounded excerpt (never a whole foreign file), texts that
    can be shown and written, and for files read from the server no list of the keys found in a non-SFT file."""
    rejected = []
    for r in result.rejected:
        reasons = [safe_text(_KEYS_FOUND.sub("", x) if server_file else x) for x in r.reasons]
        rejected.append(replace(r, id=safe_text(r.id), reasons=reasons, record=excerpt(r.record, limit)))
    return LoadResult(result.conversations, rejected, result.format)


# --- cached loaders ------------------------------------------------------------------------------------------------

@st.cache_resource(show_spinner="Loading the tokenizer…", max_entries=6)
def cached_tokenizer(name_or_path: str, trust_remote_code: bool = False, gguf_file: str | None = None) -> Any:
    """One tokenizer object per (name, trust_remote_code), shared by every session. Never mutate it."""
    return load_tokenizer(name_or_path, trust_remote_code=trust_remote_code, gguf_file=gguf_file)


@st.cache_resource(show_spinner="Reading the data…", max_entries=4)
def cached_load_path(path: str, stamp: str, limit: int, server_file: bool) -> LoadResult:
    """``load_data`` of a file or folder (``stamp``: size + mtime, so a changed file is read again), as ``for_app``
    keeps it. Shared by sessions reading the same path; never mutated."""
    from inspector.data.loaders import load_data

    return for_app(load_data(path, limit=limit), server_file=server_file)


@st.cache_resource(show_spinner=False, max_entries=8)
def check_context(tokenizer_key: str, template_key: str, opts_key: str, _setup: ChatSetup,
                  _opts: LabelOptions) -> CheckContext:
    """The checks' context (template probe, tokenizer facts), once per tokenizer, template and options."""
    return CheckContext(_setup, _opts)


@st.cache_data(show_spinner="Verifying the labels…", max_entries=64)
def _verify(data_key: str, tokenizer_key: str, template_key: str, opts_key: str, sample_id: str,
            _context: CheckContext, _sample: Sample, _conv: Conversation) -> Verification:
    return verify_sample(_context.engine, _sample, _conv, _context.opts)


def verification(ctx: Any, sample: Sample, conv: Conversation) -> Verification:
    """The perturbation verifier's verdict on the sample on screen (``inspector.labels.verify``): always run on Inspect."""
    tkey, template_key, okey = _keys(ctx, ctx.setup, ctx.options)
    context = check_context(tkey, template_key, okey, ctx.setup, ctx.options)
    return _verify(ctx.data_key, tkey, template_key, okey, sample.id, context, sample, conv)


def _keys(ctx: Any, setup: ChatSetup, opts: LabelOptions) -> tuple[str, str, str]:
    return ctx.tokenizer_key, sha(setup.template), options_key(opts)


# --- a few conversations: Inspect, Gradient weights ----------------------------------------------------------------

@dataclass
class Analysis:
    """Samples, template errors and findings of some conversations under the sidebar's settings."""

    samples: list[Sample]
    errors: list[SampleError]
    findings: list[Any]

    def samples_of(self, conv_id: str) -> list[Sample]:
        return [s for s in self.samples if s.conversation_id == conv_id]

    def findings_of(self, conv_id: str) -> list[Any]:
        return [f for f in self.findings if (f.conversation_id or "") == conv_id
                or (f.sample_id or "").split("#")[0] == conv_id]


@st.cache_data(show_spinner=False, max_entries=64)
def _evaluate_few(data_key: str, tokenizer_key: str, template_key: str, opts_key: str, conv_ids: tuple[str, ...],
                  _setup: ChatSetup, _convs: list[Conversation], _opts: LabelOptions) -> list[Outcome]:
    return evaluate(_convs, check_context(tokenizer_key, template_key, opts_key, _setup, _opts), keep_samples=True)


def analyze(ctx: Any, convs: list[Conversation], *, setup: ChatSetup | None = None,
            opts: LabelOptions | None = None) -> Analysis:
    """Build and check a few conversations (one on Inspect, a batch on Gradient weights)."""
    setup = setup or ctx.setup
    opts = opts or ctx.options
    tkey, template_key, okey = _keys(ctx, setup, opts)
    outcomes = _evaluate_few(ctx.data_key, tkey, template_key, okey, tuple(c.id for c in convs), setup, list(convs),
                             opts)
    return from_outcomes(outcomes)


def from_outcomes(outcomes: list[Outcome]) -> Analysis:
    """An ``Analysis`` of ``checks.evaluate(..., keep_samples=True)`` outcomes: their samples, findings (each with
    its conversation id) and template errors."""
    samples: list[Sample] = []
    errors: list[SampleError] = []
    findings: list[Any] = []
    for oc in outcomes:
        samples.extend(oc.samples or [])
        for f in oc.findings:
            if f.conversation_id is None:
                f.conversation_id = oc.record_id
            findings.append(f)
            if f.code in ("template-error", "tokenizer-error"):
                errors.append(SampleError(oc.record_id, "", f.message, oc.source))
    return Analysis(samples, errors, findings)


# --- the whole dataset: Dataset, Export -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Scan:
    """The whole dataset in three tables (``viz.scan_tables``): per sample, per record, per finding."""

    stats: pd.DataFrame
    records: pd.DataFrame
    findings: pd.DataFrame

    @cached_property
    def check_counts(self) -> pd.DataFrame:
        """``viz.check_counts`` of the findings, once per scan (not on every rerun of the page)."""
        return viz.check_counts(self.findings.to_dict("records"))


@st.cache_resource(show_spinner=False, max_entries=2048)
def _scan_chunk(data_key: str, tokenizer_key: str, template_key: str, opts_key: str, chunk: int,
                _setup: ChatSetup, _items: list[Any], _opts: LabelOptions) -> Scan:
    # start: the chunk's place in the dataset, so the verifier samples the same records as the CLI's --verify sample
    outcomes = evaluate(_items, check_context(tokenizer_key, template_key, opts_key, _setup, _opts),
                        keep_samples=True, start=chunk * CHUNK_SIZE)
    return Scan(*viz.scan_tables(outcomes))


def scan(ctx: Any, progress: bool = True) -> Scan:
    """Check every record (conversations, then the loader's rejections) in cached chunks, with a progress bar.
    Memory: three small tables per chunk. An interrupted scan resumes from the chunks already done."""
    items: list[Any] = list(ctx.conversations) + list(ctx.data.rejected if ctx.data else [])
    tkey, template_key, okey = _keys(ctx, ctx.setup, ctx.options)
    full = "|".join((ctx.data_key, tkey, template_key, okey))
    done: dict[str, Scan] = st.session_state.setdefault("ui_scans", {})
    if full in done:
        return done[full]
    chunks = [items[i:i + CHUNK_SIZE] for i in range(0, len(items), CHUNK_SIZE)]
    bar = st.progress(0.0, text=f"Scanning {len(items):,} records…") if progress and len(chunks) > 1 else None
    live = st.empty() if bar is not None else None
    totals = None
    shown_at = 0.0
    parts = []
    for k, chunk in enumerate(chunks):
        parts.append(_scan_chunk(ctx.data_key, tkey, template_key, okey, k, ctx.setup, chunk, ctx.options))
        if bar is not None:
            bar.progress((k + 1) / len(chunks), text=f"Scanned {min((k + 1) * CHUNK_SIZE, len(items)):,} of "
                                                     f"{len(items):,} records")
            # the token shares so far, every few seconds: something to read during a long scan (and the browser
            # loads its chart library meanwhile, so the page draws at once when the scan ends)
            shares = viz.overall_shares(parts[-1].stats).set_index("segment")["tokens"]
            totals = shares if totals is None else totals + shares
            if time.monotonic() - shown_at > LIVE_EVERY and k + 1 < len(chunks):
                shown_at = time.monotonic()
                frame = totals.reset_index()
                frame["share"] = frame["tokens"] / max(1, int(totals.drop("trained").sum()))
                live.plotly_chart(viz.overall_share_figure(frame), key=f"scan_live_{k}",
                                  config={"displayModeBar": False})
    if bar is not None:
        bar.empty()
        live.empty()
    result = Scan(*(pd.concat([getattr(p, name) for p in parts], ignore_index=True) if parts else empty
                    for name, empty in zip(("stats", "records", "findings"), viz.scan_tables([]))))
    done.clear()  # one finished scan per session
    done[full] = result
    return result


@st.cache_data(show_spinner="Writing the export files…", max_entries=4)
def _export_files(key: str, _items: list[Any], _context: CheckContext, _settings: dict[str, Any]
                  ) -> dict[str, bytes]:
    from inspector.data import export

    files: dict[str, bytes] = {}
    for fmt in export.EXPORT_FORMATS:
        with tempfile.TemporaryDirectory(prefix="sft-inspector-export-") as tmp:
            outcomes = (oc for i in range(0, len(_items), CHUNK_SIZE)
                        for oc in evaluate(_items[i:i + CHUNK_SIZE], _context, keep_rows=True, start=i))
            export.export_outcomes(outcomes, tmp, fmt=fmt, force=True, report=Report(settings=dict(_settings)))
            for path in Path(tmp).iterdir():
                files.setdefault(path.name, path.read_bytes())
    return files


def export_files(ctx: Any) -> dict[str, bytes]:
    """The trainer-ready files (accepted JSONL and Parquet, rejected.jsonl, report.json) as bytes, written by
    ``inspector.data.export`` into a private temporary folder that is removed at once; cached per settings."""
    items: list[Any] = list(ctx.conversations) + list(ctx.data.rejected)
    tkey, template_key, okey = _keys(ctx, ctx.setup, ctx.options)
    context = check_context(tkey, template_key, okey, ctx.setup, ctx.options)
    return _export_files("|".join((ctx.data_key, tkey, template_key, okey)), items, context,
                         report_settings(ctx.setup, ctx.options))
