"""SFT Inspector: see, token by token, what a supervised fine-tuning run trains on. Run ``streamlit run app.py``.

This file is the entry script and the first page, Inspect: one conversation, token by token (colored table,
chips, sortable table, rendered text, compare). The other pages are the files in ``pages/``; every page draws the
shared sidebar itself through ``pages.common.page`` (why: ``pages/common/__init__.py``). Every computation is in
``inspector/``.
"""

from dataclasses import replace

import streamlit as st

from inspector.views import viz
from inspector.checks import special_token_ids
from inspector.errors import ChatTemplateError
from inspector.labels.engine import STRATEGIES
from inspector.template.tokenizer import ChatSetup, resolve_template
from pages.common import analysis, model, page, show, ui

def _pick_by_number(ids: list[str], request: str | None) -> int:
    """The position of the conversation to show, picked by its number (1-based) or by typing its id."""
    where: dict[str, int] = {}
    for i, cid in enumerate(ids):  # ~10 ms for 100,000 ids
        where.setdefault(cid, i)
    if request in where:
        st.session_state["inspect_pos"] = where[request] + 1
    if not 1 <= st.session_state.get("inspect_pos", 0) <= len(ids):
        st.session_state["inspect_pos"] = 1

    def go_to() -> None:
        wanted = st.session_state.get("inspect_goto", "").strip()
        if wanted in where:
            st.session_state["inspect_pos"] = where[wanted] + 1
            st.session_state["inspect_goto_missing"] = None
        elif wanted:
            st.session_state["inspect_goto_missing"] = wanted

    c = st.columns([1, 2])
    number = c[0].number_input(f"Conversation (1-{len(ids):,})", min_value=1, max_value=len(ids), step=1,
                               key="inspect_pos")
    c[1].text_input("Go to an id", key="inspect_goto", on_change=go_to, placeholder=ids[0])
    missing = st.session_state.get("inspect_goto_missing")
    if missing:
        show.warning("No conversation has the id ", f"{missing!r}.")
    show.caption("", f"{ids[int(number) - 1]} · {len(ids):,} conversations: pick one by number, type its id, or "
                     "click it on the Dataset page.")
    return int(number) - 1


with page("Inspect") as ctx:
    tok = ctx.setup.tokenizer
    ids = [c.id for c in ctx.conversations]

    # another page (or the URL) asked to open a conversation here
    request = st.session_state.pop(ui.OPEN_REQUEST_KEY, None)
    if request is None and "inspect_conv" not in st.session_state:  # back from another page, or from a link
        request = st.session_state.get(ui.SELECTED_KEY)
    if len(ids) <= ui.PICK_LIST_MAX:
        if request in ids and st.session_state.get("inspect_conv") != request:
            st.session_state["inspect_conv"] = request
        if st.session_state.get("inspect_conv") not in ids:
            st.session_state["inspect_conv"] = ids[0]
        conv_id = st.selectbox("Conversation", ids, key="inspect_conv")
        position = ids.index(conv_id)
    else:  # a list of 100,000 ids would travel to the browser on every rerun: a number, and a box to jump to an id
        position = _pick_by_number(ids, request)
        conv_id = st.session_state["inspect_conv"] = ids[position]
    st.session_state[ui.SELECTED_KEY] = conv_id
    st.query_params["conv"] = conv_id
    conv = ctx.conversations[position]

    result = analysis.analyze(ctx, [conv])
    for err in result.errors:
        show.error("The chat template raised on this conversation: ", err.reason)
    if not result.samples:
        st.warning("No training sample was built for this conversation.")
        st.stop()

    samples = result.samples
    if len(samples) > 1:
        sample_ids = [s.id for s in samples]
        if st.session_state.get("inspect_sample") not in sample_ids:
            st.session_state["inspect_sample"] = sample_ids[0]
        sample_id = st.radio("Sample", sample_ids, horizontal=True, key="inspect_sample", format_func=show.md_text,
                             help="split-turns builds one sample per answer")
        sample = samples[sample_ids.index(sample_id)]
    else:
        sample = samples[0]

    findings = result.findings_of(conv.id)
    flags = viz.flags_by_position(findings, sample.id)
    decode = ui.decoder(tok)
    specials = special_token_ids(tok)
    table = viz.token_table(sample, decode, specials, flags)
    table, loss_note = model.loss_column(ctx, sample, table)  # when this session loaded a model (Loss page)

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
    if ctx.options.strategy == "session" and ctx.options.turn_format is None:
        plain = analysis.analyze(ctx, [conv], opts=replace(ctx.options, strategy="assistant-only"))
        if [s.labels for s in plain.samples] == [sample.labels]:
            st.caption("Here `session` labels exactly what `assistant-only` does: this template ends every answer "
                       "with an end token. Choose the ChatGLM2 layout in the sidebar to see where they differ.")

    errors = [f for f in findings if f.severity == "error"]
    with st.expander(f"Checks: {len(findings)} finding(s)" if findings else "Checks: nothing found",
                     expanded=bool(errors)):
        if findings:
            show.findings(findings)
        else:
            st.success("No check fired for this conversation.")
        for note in sample.notes:
            show.caption("Note: ", note)
    # the independent second opinion (inspector/labels/verify.py), always run on the conversation on screen
    verdict = analysis.verification(ctx, sample, conv)
    title = ("Verification: skipped" if verdict.skipped else
             f"Verification: {len(verdict.violations)} disagreement(s)" if verdict.violations else
             "Verification: the labels agree")
    with st.expander(title, expanded=bool(verdict.violations)):
        st.caption("Each field of the conversation (every message's content and reasoning, every tool call's name "
                   "and arguments, the tool descriptions) is replaced in turn by a sentinel and the template renders "
                   "again: the characters that change belong to that field. Text the model writes must be trained; "
                   "prompt text must be -100. This does not use how the engine found the turns.")
        if verdict.skipped:
            show.caption("Not verified: ", verdict.skipped)
        elif verdict.violations:
            for v in verdict.violations:
                show.error("label-verification: ", v.message())
        else:
            st.success(f"All {verdict.fields} fields checked: every character the model writes is trained, no "
                       f"prompt character is.")
        for note in verdict.notes:
            show.caption("Note: ", note)

    tab_table, tab_chips, tab_sort, tab_text, tab_compare = st.tabs(
        ["Token table", "Chips", "Sortable table", "Rendered text", "Compare"])

    with tab_table:
        if loss_note:
            show.caption("", loss_note)
        show.html(viz.legend_html() + viz.token_table_html(table))

    with tab_chips:
        show.html(viz.legend_html() + viz.chips_html(table))

    with tab_sort:
        st.dataframe(table[["index", "token_id", "token", "label", *(["loss", "top"] if "loss" in table else []),
                            "trained", "role", "message", "special", "flag"]], hide_index=True, width="stretch",
                     height=480)

    with tab_text:
        show.html(viz.segment_legend_html()
                  + viz.rendered_html(sample.text, sample.spans, sample.offsets, sample.labels))
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
            if st.session_state.get("inspect_compare_strategy") not in others:
                st.session_state["inspect_compare_strategy"] = "all-tokens" if "all-tokens" in others else others[0]
            strategy_b = st.selectbox("Strategy B", others, key="inspect_compare_strategy")
            opts_b = replace(ctx.options, strategy=strategy_b)
            name_b = strategy_b
        else:
            text_b = st.text_area("Template B (Jinja)", value=ctx.setup.template, height=200,
                                  key=f"inspect_compare_template_{ctx.template_key}")
            try:
                text_b, _ = resolve_template(tok, text_b, override_is_path=False)
                setup_b = ChatSetup(tok, text_b, "override", ctx.setup.name)
            except ChatTemplateError as exc:
                show.error("Template B: ", exc)
                setup_b = None
            except Exception as exc:  # noqa: BLE001
                show.error("Template B does not compile: ", f"{type(exc).__name__}: {exc}")
                setup_b = None
            name_b = "template B"
        if setup_b is not None:
            other = analysis.analyze(ctx, [conv], setup=setup_b, opts=opts_b)
            findings_b = other.findings_of(conv.id)
            with st.expander(f"Findings of B: {len(findings_b)}" if findings_b else "Findings of B: nothing found",
                             expanded=any(f.severity == "error" for f in findings_b)):
                if findings_b:
                    show.findings(findings_b)
                else:
                    st.success(f"No check fired for this conversation under {name_b}.")
            if other.errors:
                for err in other.errors:
                    show.error("B: the chat template raised: ", err.reason)
            elif not other.samples:
                st.warning("B builds no sample for this conversation.")
            else:
                same_turn = [s for s in other.samples if s.turn_index == sample.turn_index]
                sample_b = (same_turn or other.samples)[-1 if sample.turn_index is None and len(other.samples) > 1
                                                        else 0]
                table_b = viz.token_table(sample_b, decode, specials,
                                          viz.flags_by_position(findings_b, sample_b.id))
                cmp = viz.compare_table(table, table_b)
                counts = cmp["status"].value_counts().to_dict()
                name_a = ctx.options.strategy if mode == "another strategy" else "template A"
                c = st.columns(4)
                c[0].metric("Tokens A / B", f"{len(table)} / {len(table_b)}")
                c[1].metric("Label differs", counts.get("label differs", 0))
                c[2].metric("Only in A", counts.get("only in A", 0))
                c[3].metric("Only in B", counts.get("only in B", 0))
                show.caption("", f"A = {name_a} ({sample.id}), B = {name_b} ({sample_b.id}). Rows marked ≠ differ.")
                only = st.checkbox("Only the differing tokens", key="inspect_compare_only")
                show.html(viz.legend_html() + viz.compare_html(cmp, name_a, name_b, only_differences=only))
