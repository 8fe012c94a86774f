"""Gradient weights: how much each trained token counts in the loss under each reduction, computed exactly by
``inspector.labels.weights`` — the seed preset, the packed worked example (``packing_viz.worked_example``), a batch of the
loaded samples, and the log-probability decomposition.

Reductions are named in words with their code name beside them; fractions with large denominators read as
percentages with the exact fraction on hover. Clicking a sample's bar shows its tokens' weights.
"""

from dataclasses import replace

import pandas as pd
import streamlit as st

from inspector.views import packing as pv
from inspector.views import viz
from inspector.labels import weights
from pages.common import analysis, page, show, ui

ICON = ":material/balance:"
OPTIONS_SHOWN = 2_000  # conversations offered in the batch picker (the first ones, plus those picked)

with page("Gradient weights", needs_data=False) as ctx:  # the preset needs no data
    st.markdown(
        "A trainer reduces the per-token losses to one number, $L = \\sum_t w_t \\, \\ell_t$, so $w_t$ is how hard "
        "token $t$ pulls on the parameters. Masked tokens (label -100) have $w_t = 0$; everything else depends on "
        "the reduction and on how dialogues are cut into samples. All numbers below are exact fractions computed "
        "by `inspector.labels.weights`.")

    # --- the preset ------------------------------------------------------------------------------------------------
    st.header("Preset: session-level vs split-turn")
    st.markdown(
        "A batch of two dialogues: one with a single answer **A**, one with three answers **A, B, C** (one token "
        "each, after one-token questions). **Session-level** keeps each dialogue as one sample; **split-turn** "
        "cuts the second dialogue into three samples [A], [A, B], [A, B, C] whose earlier answers stay labeled.")
    reduction = st.selectbox("Reduction", weights.REDUCTION_NAMES, key="weights_preset_reduction",
                             format_func=viz.reduction_title, help=weights.REDUCTION_LABELS.get(
                                 st.session_state.get("weights_preset_reduction", "sample_mean"), ""))
    st.caption(weights.REDUCTION_LABELS[reduction])
    example = weights.session_vs_split_example(reduction)
    answers = ["A", "B", "C"]
    cols = st.columns(3)
    for col, a in zip(cols, answers):
        s = weights.format_fraction(example.session.by_answer[a])
        p = weights.format_fraction(example.split.by_answer[a])
        col.metric(f"Answer {a}: session-level → split-turn", f"{s} → {p}")
    by_answer = {"session-level": example.session.by_answer, "split-turn": example.split.by_answer}
    left, right = st.columns([1, 2])
    with left:
        preset = viz.fractions_frame(by_answer, keys=answers)
        preset.index.name = "answer"
        st.table(preset)
    with right:
        st.plotly_chart(viz.weights_figure(by_answer, answers, "answer"), key="weights_preset_chart",
                        config={"displayModeBar": False})
    left, right = st.columns(2)
    with left:
        st.markdown("**Session-level samples**")
        show.html(viz.organized_batch_html(example.session))
    with right:
        st.markdown("**Split-turn samples**")
        show.html(viz.organized_batch_html(example.split))
    if reduction == "sample_mean":
        st.caption("Each sample carries the same share of the loss, split evenly over its labeled tokens. Splitting "
                   "repeats A in every sample of the second dialogue, so A gains weight and the last answer C loses "
                   "it.")

    with st.expander("The preset under every reduction"):
        rows = []
        for r in weights.REDUCTION_NAMES:
            ex = weights.session_vs_split_example(r)
            for org, batch in (("session-level", ex.session), ("split-turn", ex.split)):
                rows.append({"reduction": viz.reduction_title(r), "organization": org,
                             **{a: weights.format_fraction(batch.by_answer[a]) for a in answers}})
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        st.caption("The preset is one batch in one micro-batch, so both accumulation reductions equal the token "
                   "mean here; the batch below lets you split it into micro-batches.")

    # --- packing: the worked example ------------------------------------------------------------------------------
    st.header("Packed: two short answers and one long one")
    st.markdown(
        "Packing puts several samples in one training sequence, so a mean per sequence becomes a mean per *packed* "
        "sequence. Three samples, each a two-token prompt (masked) and an answer: `short-1` and `short-2` answer in "
        "one token, `long` in six. Unpacked, each is its own row (one row per micro-batch); packed with `bfd` at max "
        "length 16 they share one sequence of 14 tokens. Under the reduction chosen above, unpacked → packed:")
    packed = pv.worked_example()
    pw = packed["weights"][reduction]
    cols = st.columns(3)
    for col, (name, before, after) in zip(cols, [
            ("A short answer's token", pw.before[0][2], pw.after[0][2]),
            ("Each of the long answer's 6 tokens", pw.before[2][2], pw.after[2][2]),
            ("The long answer in total", *pw.sample_totals()[2])]):
        col.metric(f"{name}: unpacked → packed",
                   f"{weights.format_fraction(before)} → {weights.format_fraction(after)}")
    left, right = st.columns([3, 2])
    with left:
        frame = pv.worked_example_frame(packed)
        frame["reduction"] = [viz.reduction_title(r) for r in frame["reduction"]]
        st.table(frame.set_index("reduction"))
    with right:
        st.plotly_chart(pv.blocks_figure(packed["packing"]), key="weights_packed_blocks",
                        config={"displayModeBar": False})
    st.caption("A reduction that was already a mean over the tokens does not change; the ones that averaged per "
               "row now average over the packed row, so the long answer gains and the short ones lose. "
               "docs/packing.md works it through; the Packing page packs your own samples.")
    st.page_link(show.page_path("Packing"), label="Pack your samples on the Packing page",
                 icon=":material/view_agenda:", query_params=ui.url_params())

    # --- a batch of the loaded samples ---------------------------------------------------------------------------
    st.header("A batch of your samples")
    ctx = ui.require_context(ctx)
    all_ids = [c.id for c in ctx.conversations]
    by_id = {c.id: c for c in ctx.conversations}
    wanted = [c for c in ("demo-11-three-turns", "demo-04-reasoning", "demo-01-system-prompt") if c in by_id] \
        or all_ids[:3]
    if "weights_batch" not in st.session_state:
        st.session_state["weights_batch"] = wanted
    picked_now = [c for c in st.session_state["weights_batch"] if c in by_id]
    st.session_state["weights_batch"] = picked_now
    offered = list(dict.fromkeys(all_ids[:OPTIONS_SHOWN] + picked_now))
    picked = st.multiselect("Conversations in the batch", offered, key="weights_batch")
    if len(all_ids) > OPTIONS_SHOWN:
        st.caption(f"The first {OPTIONS_SHOWN:,} of {len(all_ids):,} conversations are offered here.")
    size = st.number_input("Samples per micro-batch (for the accumulation reductions)", min_value=1, value=1,
                           key="weights_micro_batch")
    result = analysis.analyze(ctx, [by_id[c] for c in picked]) if picked else None
    batch = [s for c in picked for s in result.samples_of(c)] if result else []
    if not batch:
        st.info("Pick at least one conversation.")
    else:
        st.caption(f"{len(batch)} sample(s) under strategy **{ctx.options.strategy}**, in micro-batches of "
                   f"{int(size)}.")
        out = viz.batch_weights(batch, int(size))
        for r, why in out["errors"].items():
            show.warning(f"{viz.reduction_title(r)}: ", why)
        if out["by_role"]:
            tab_role, tab_turn, tab_sample = st.tabs(["Per role", "Per turn", "Per sample"])
            with tab_role:
                show.html(viz.fractions_html(out["by_role"], index_name="role"))
                st.caption("Sum of the weights of each role's tokens (template = markup such as end-of-turn tokens).")
            with tab_turn:
                show.html(viz.fractions_html(out["by_turn"], index_name="turn", extra={"role": out["turn_roles"]}))
                st.caption("An end-of-turn token counts for the answer it closes.")
            with tab_sample:
                show.html(viz.fractions_html(out["by_sample"], index_name="sample"))
            st.markdown("**Share of the loss of each sample, per mean reduction** (click a bar to see that "
                        "sample's tokens; `sum` weighs every token 1, see the table)")
            means = {r: v for r, v in out["by_sample"].items() if r in weights.MEAN_REDUCTIONS}
            event = st.plotly_chart(viz.weights_figure(means, axis_title="sample"),
                                    key="weights_sample_chart", on_select="rerun", selection_mode="points",
                                    config={"displayModeBar": False})
            ids = [s.id for s in batch]
            points = (event or {}).get("selection", {}).get("points", []) if event else []
            clicked = points[0].get("customdata", [None])[0] if points else None
            if clicked in ids and clicked != st.session_state.get("weights_clicked"):
                st.session_state["weights_clicked"] = clicked
                st.session_state["weights_token_sample"] = clicked
            if st.session_state.get("weights_token_sample") not in ids:
                st.session_state["weights_token_sample"] = ids[0]
            sid = st.selectbox("Tokens of sample", ids, key="weights_token_sample")
            sample = batch[ids.index(sid)]
            table = viz.token_table(sample, ui.decoder(ctx.setup.tokenizer))[["index", "token", "label", "role"]]
            for r, w in out["weights"].items():
                table[viz.reduction_title(r)] = [viz.weight_text(x) for x in w[ids.index(sid)]]
            st.dataframe(table, hide_index=True, width="stretch", height=360)

    # --- log-probability decomposition ---------------------------------------------------------------------------
    st.header("The dialogue's log-probability, term by term")
    st.markdown(
        "The log-probability of a whole dialogue is a sum of one conditional term per turn. SFT keeps only the "
        "terms of the turns that are trained; the others are still read as context but are ~~crossed out~~ of the "
        "loss. Which terms count follows the labels of the current strategy.")
    if st.session_state.get("weights_logprob_conv") not in by_id:
        st.session_state["weights_logprob_conv"] = "demo-11-three-turns" if "demo-11-three-turns" in by_id \
            else all_ids[0]
    offered = list(dict.fromkeys(all_ids[:OPTIONS_SHOWN] + [st.session_state["weights_logprob_conv"]]))
    cid = st.selectbox("Conversation", offered, key="weights_logprob_conv")
    conv = by_id[cid]
    terms = weights.log_prob_terms([(m.role, m.content) for m in conv.messages])
    own = analysis.analyze(ctx, [conv]).samples_of(cid)
    if own:
        trained = set().union(*(viz.trained_messages(s) for s in own))
        terms = [replace(t, counted=t.index in trained) for t in terms]
    show.html(viz.log_prob_html(terms))
    st.dataframe(viz.log_prob_legend_table(terms), hide_index=True, width="stretch")
    st.caption(f"Core formula: `{weights.log_prob_formula(terms)}` (masked terms in brackets).")
