"""Gradient weights (teaching): how much each trained token counts under each loss reduction, computed exactly by
``inspector.weights`` — the seed preset, a batch of the loaded samples, and the log-probability decomposition."""

from dataclasses import replace

import pandas as pd
import streamlit as st

import ui
from inspector import viz, weights

st.title("Gradient weights")
ctx = ui.context()  # the preset needs no data: it shows even when the sidebar has a problem
st.markdown(
    "A trainer reduces the per-token losses to one number, $L = \\sum_t w_t \\, \\ell_t$, so $w_t$ is how hard "
    "token $t$ pulls on the parameters. Masked tokens (label -100) have $w_t = 0$; everything else depends on the "
    "reduction and on how dialogues are cut into samples. All numbers below are exact fractions computed by "
    "`inspector.weights`.")

# --- the preset --------------------------------------------------------------------------------------------------

st.header("Preset: session-level vs split-turn")
st.markdown(
    "A batch of two dialogues: one with a single answer **A**, one with three answers **A, B, C** (one token each, "
    "after one-token questions). **Session-level** keeps each dialogue as one sample; **split-turn** cuts the second "
    "dialogue into three samples [A], [A, B], [A, B, C] whose earlier answers stay labeled.")
reduction = st.selectbox("Reduction", weights.REDUCTION_NAMES, key="weights_preset_reduction",
                         format_func=lambda r: f"{r} — {weights.REDUCTION_LABELS[r]}")
example = weights.session_vs_split_example(reduction)
answers = ["A", "B", "C"]
cols = st.columns(3)
for col, a in zip(cols, answers):
    s = weights.format_fraction(example.session.by_answer[a])
    p = weights.format_fraction(example.split.by_answer[a])
    col.metric(f"Answer {a}: session-level → split-turn", f"{s} → {p}")
preset = viz.fractions_frame({"session-level": example.session.by_answer, "split-turn": example.split.by_answer},
                             keys=answers)
preset.index.name = "answer"
st.table(preset)
left, right = st.columns(2)
with left:
    st.markdown("**Session-level samples**")
    ui.html(viz.organized_batch_html(example.session))
with right:
    st.markdown("**Split-turn samples**")
    ui.html(viz.organized_batch_html(example.split))
if reduction == "sample_mean":
    st.caption("Each sample carries the same share of the loss, split evenly over its labeled tokens. Splitting "
               "repeats A in every sample of the second dialogue, so A gains weight and the last answer C loses it.")

with st.expander("The preset under every reduction"):
    rows = []
    for r in weights.REDUCTION_NAMES:
        ex = weights.session_vs_split_example(r)
        for org, batch in (("session-level", ex.session), ("split-turn", ex.split)):
            rows.append({"reduction": r, "organization": org,
                         **{a: weights.format_fraction(batch.by_answer[a]) for a in answers}})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.caption("The preset is one batch in one micro-batch, so both accumulation reductions equal token_mean "
               "here; the batch below lets you split it into micro-batches.")

# --- a batch of the loaded samples -----------------------------------------------------------------------------------

st.header("A batch of your samples")
ctx = ui.require_context(ctx)
analysis = ui.analyze(ctx)
conv_ids = list(dict.fromkeys(s.conversation_id for s in analysis.samples))
trained_ids = [c for c in conv_ids if any(s.num_trainable for s in analysis.samples_of(c))]
default = [c for c in ("demo-11-three-turns", "demo-04-reasoning", "demo-01-system-prompt") if c in trained_ids] \
    or trained_ids[:3]
picked = st.multiselect("Conversations in the batch", conv_ids, default=default, key="weights_batch")
size = st.number_input("Samples per micro-batch (for the accumulation reductions)", min_value=1, value=1,
                       key="weights_micro_batch")
batch = [s for c in picked for s in analysis.samples_of(c)]
if not batch:
    st.info("Pick at least one conversation.")
else:
    st.caption(f"{len(batch)} sample(s) under strategy **{ctx.options.strategy}**, in micro-batches of "
               f"{int(size)}.")
    result = viz.batch_weights(batch, int(size))
    for r, why in result["errors"].items():
        st.warning(f"{r}: {why}")
    if result["by_role"]:
        tab_role, tab_turn, tab_sample, tab_token = st.tabs(["Per role", "Per turn", "Per sample", "Per token"])
        with tab_role:
            st.table(viz.fractions_frame(result["by_role"], approx=True))
            st.caption("Sum of the weights of each role's tokens (template = markup such as end-of-turn tokens).")
        with tab_turn:
            frame = viz.fractions_frame(result["by_turn"], approx=True)
            frame.insert(0, "role", [result["turn_roles"].get(k, "") for k in frame.index])
            st.dataframe(frame, width="stretch")
            st.caption("An end-of-turn token counts for the answer it closes.")
        with tab_sample:
            st.table(viz.fractions_frame(result["by_sample"], approx=True))
        with tab_token:
            ids = [s.id for s in batch]
            sid = st.selectbox("Sample", ids, key="weights_token_sample")
            k = ids.index(sid)
            sample = batch[k]
            table = viz.token_table(sample, ui.decoder(ctx.setup.tokenizer))[["index", "token", "label", "role"]]
            for r, w in result["weights"].items():
                table[r] = [viz.weight_text(x) for x in w[k]]
            st.dataframe(table, hide_index=True, width="stretch", height=420)

# --- log-probability decomposition ------------------------------------------------------------------------------------

st.header("The dialogue's log-probability, term by term")
st.markdown(
    "The log-probability of a whole dialogue is a sum of one conditional term per turn. SFT keeps only the terms "
    "of the turns that are trained; the others are still read as context but are ~~crossed out~~ of the loss. "
    "Which terms count follows the labels of the current strategy.")
ids = [c.id for c in ctx.conversations]
start = ids.index("demo-11-three-turns") if "demo-11-three-turns" in ids else 0
cid = st.selectbox("Conversation", ids, index=start, key="weights_logprob_conv")
conv = ctx.conversations[ids.index(cid)]
terms = weights.log_prob_terms([(m.role, m.content) for m in conv.messages])
own = analysis.samples_of(cid)
if own:
    # the full dialogue: the last sample (split-turns builds one per answer, the last one holds every turn)
    trained = set().union(*(viz.trained_messages(s) for s in own))
    terms = [replace(t, counted=t.index in trained) for t in terms]
ui.html(viz.log_prob_html(terms))
st.dataframe(viz.log_prob_legend_table(terms), hide_index=True, width="stretch")
st.caption(f"Core formula: `{weights.log_prob_formula(terms)}` (masked terms in brackets).")
