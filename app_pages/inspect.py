"""Inspect: one conversation, token by token — colored table, chips, sortable table, rendered text, compare."""

from dataclasses import replace

import streamlit as st

import ui
from inspector import viz
from inspector.errors import ChatTemplateError
from inspector.labels import STRATEGIES
from inspector.tokenizer import ChatSetup, resolve_template

st.title("Inspect")
ctx = ui.require_context()
tok = ctx.setup.tokenizer
ids = [c.id for c in ctx.conversations]

# another page asked to open a conversation here
request = st.session_state.pop(ui.OPEN_REQUEST_KEY, None)
if request in ids:
    st.session_state["inspect_selected"] = request
    st.session_state.pop("inspect_conv", None)
selected = st.session_state.get("inspect_selected")
conv_id = st.selectbox("Conversation", ids, index=ids.index(selected) if selected in ids else 0, key="inspect_conv")
st.session_state["inspect_selected"] = conv_id
conv = ctx.conversations[ids.index(conv_id)]

analysis = ui.analyze(ctx, [conv])
if analysis.note:
    st.caption(analysis.note)
if analysis.errors:
    for err in analysis.errors:
        st.error(f"The chat template raised on {err.conversation_id}: {err.reason}")
if not analysis.samples:
    st.warning("No training sample was built for this conversation.")
    st.stop()

samples = analysis.samples
if len(samples) > 1:
    sample_ids = [s.id for s in samples]
    sample_id = st.radio("Sample", sample_ids, horizontal=True, key="inspect_sample",
                         help="split-turns builds one sample per answer")
    sample = samples[sample_ids.index(sample_id)] if sample_id in sample_ids else samples[0]
else:
    sample = samples[0]

findings = analysis.findings_of(conv.id)
flags = viz.flags_by_position(findings, sample.id)
decode = ui.decoder(tok)
specials = ui.special_ids(tok)
table = viz.token_table(sample, decode, specials, flags)

n, k = len(table), int(table["trained"].sum())
cols = st.columns(5)
cols[0].metric("Tokens", f"{n:,}")
cols[1].metric("Trained", f"{k:,}")
cols[2].metric("Trained share", f"{k / n:.1%}" if n else "–")
cols[3].metric("Masked (-100)", f"{n - k:,}")
if sample.truncation is not None:
    cols[4].metric("Cut by max length", f"{sample.truncation.tokens_cut:,}",
                   help=f"{sample.truncation.labeled_cut} of them labeled; original length "
                        f"{sample.truncation.original_length}")
else:
    cols[4].metric("Cut by max length", "0")

errors = [f for f in findings if f.severity == "error"]
with st.expander(f"Checks: {len(findings)} finding(s)" if findings else "Checks: nothing found",
                 expanded=bool(errors)):
    if findings:
        ui.show_findings(findings)
    else:
        st.success("No check fired for this conversation.")
    for note in sample.notes:
        st.caption(f"Note: {note}")

tab_table, tab_chips, tab_sort, tab_text, tab_compare = st.tabs(
    ["Token table", "Chips", "Sortable table", "Rendered text", "Compare"])

with tab_table:
    ui.html(viz.legend_html() + viz.token_table_html(table))

with tab_chips:
    ui.html(viz.legend_html() + viz.chips_html(table))

with tab_sort:
    st.dataframe(table[["index", "token_id", "token", "label", "trained", "role", "message", "special", "flag"]],
                 hide_index=True, width="stretch", height=480)

with tab_text:
    ui.html(viz.segment_legend_html() + viz.rendered_html(sample.text, sample.spans, sample.offsets, sample.labels))
    with st.expander("Messages as loaded"):
        st.dataframe([{"#": i, "role": m.role, "content": m.content, "reasoning": m.reasoning or "",
                       "tool_calls": bool(m.tool_calls), "trainable": m.trainable}
                      for i, m in enumerate(conv.messages)], hide_index=True, width="stretch")

with tab_compare:
    mode = st.radio("Compare with", ("another strategy", "another chat template"), horizontal=True,
                    key="inspect_compare_mode")
    setup_b, opts_b, name_b = ctx.setup, ctx.options, ""
    if mode == "another strategy":
        others = [s for s in STRATEGIES if s != ctx.options.strategy]
        default = others.index("all-tokens") if "all-tokens" in others else 0
        strategy_b = st.selectbox("Strategy B", others, index=default, key="inspect_compare_strategy")
        opts_b = replace(ctx.options, strategy=strategy_b)
        name_b = strategy_b
    else:
        text_b = st.text_area("Template B (Jinja)", value=ctx.setup.template, height=200,
                              key=f"inspect_compare_template_{ctx.template_key}")
        try:
            text_b, _ = resolve_template(tok, text_b, override_is_path=False)
            setup_b = ChatSetup(tok, text_b, "override", ctx.setup.name)
        except ChatTemplateError as exc:
            st.error(f"Template B: {exc}")
            setup_b = None
        except Exception as exc:  # noqa: BLE001
            st.error(f"Template B does not compile: {type(exc).__name__}: {exc}")
            setup_b = None
        name_b = "template B"
    if setup_b is not None:
        other = ui.analyze(ctx, [conv], setup=setup_b, opts=opts_b)
        if other.errors:
            for err in other.errors:
                st.error(f"B: the chat template raised: {err.reason}")
        elif not other.samples:
            st.warning("B builds no sample for this conversation.")
        else:
            same_turn = [s for s in other.samples if s.turn_index == sample.turn_index]
            sample_b = (same_turn or other.samples)[-1 if sample.turn_index is None and len(other.samples) > 1
                                                    else 0]
            table_b = viz.token_table(sample_b, decode, specials,
                                      viz.flags_by_position(other.findings_of(conv.id), sample_b.id))
            cmp = viz.compare_table(table, table_b)
            counts = cmp["status"].value_counts().to_dict()
            name_a = ctx.options.strategy if mode == "another strategy" else "template A"
            c = st.columns(4)
            c[0].metric("Tokens A / B", f"{len(table)} / {len(table_b)}")
            c[1].metric("Label differs", counts.get("label differs", 0))
            c[2].metric("Only in A", counts.get("only in A", 0))
            c[3].metric("Only in B", counts.get("only in B", 0))
            st.caption(f"A = {name_a} ({sample.id}), B = {name_b} ({sample_b.id}). Rows marked ≠ differ.")
            only = st.checkbox("Only the differing tokens", key="inspect_compare_only")
            ui.html(viz.legend_html() + viz.compare_html(cmp, name_a, name_b, only_differences=only))
