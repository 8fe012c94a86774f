"""Dataset: token shares, lengths, trained share and check counts over every loaded conversation.

Built for 100,000 conversations: the scan streams in cached chunks with a progress bar; the charts are binned
histograms, a length-vs-trained-share scatter (WebGL when large), and the N worst samples by a chosen measure;
the table is sorted and paged on the server. The page's height does not grow with the number of conversations.
Clicking a bar or a point, or selecting a table row, opens that conversation in Inspect.
"""

import streamlit as st

from inspector.views import viz
from pages.common import analysis, page, show, ui

ICON = ":material/bar_chart:"
PAGE_SIZES = (50, 100, 500)


def _open(conversation_id, marker: str) -> None:
    """Open a selected conversation in Inspect, once per new selection."""
    if conversation_id is None:
        st.session_state.pop(marker, None)
        return
    if conversation_id != st.session_state.get(marker):
        st.session_state[marker] = conversation_id
        ui.open_in_inspect(str(conversation_id))


def _picked(event, rows=None):
    """The conversation id of the first selected bar (customdata) or point (its row in ``rows``)."""
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    if not points:
        return None
    point = points[0]
    custom = point.get("customdata")
    if custom:
        return custom[0] if isinstance(custom, (list, tuple)) else custom
    if rows is not None and point.get("point_index") is not None and point["point_index"] < len(rows):
        return rows.iloc[int(point["point_index"])]["conversation_id"]
    return None


def _bin_list(event, stats, column: str, key: str) -> None:
    """Under a histogram: the samples of the clicked bar, a list to pick one from and open it in Inspect."""
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    custom = points[0].get("customdata") if points else None
    if not custom:
        st.session_state.pop(f"{key}_opened", None)
        return
    rows = viz.samples_in_bin(stats, column, custom)
    st.markdown(f"**{len(rows):,} sample{'' if len(rows) == 1 else 's'} in this bar**")
    if rows.empty:
        return
    labels = {f"{r.sample_id} · {int(r.tokens):,} tokens · {r.trained_share:.0%} trained": r.conversation_id
              for r in rows.itertuples()}
    picked = st.selectbox("Open in Inspect", list(labels), index=None, key=key,
                          placeholder="pick a sample of this bar to inspect it")
    _open(labels[picked] if picked else None, f"{key}_opened")


with page("Dataset") as ctx:
    data = analysis.scan(ctx)
    stats, records, findings = data.stats, data.records, data.findings

    total_tokens = int(stats["tokens"].sum())
    trained = int(stats["trained"].sum())
    template_errors = int(findings["code"].isin(("template-error", "tokenizer-error")).sum())
    c = st.columns(6)
    c[0].metric("Conversations", f"{len(ctx.conversations):,}")
    c[1].metric("Samples", f"{len(stats):,}", help=f"strategy {ctx.options.strategy}")
    c[2].metric("Tokens", f"{total_tokens:,}")
    c[3].metric("Trained share", f"{trained / total_tokens:.1%}" if total_tokens else "–")
    c[4].metric("Rejected by the loader", f"{len(ctx.data.rejected):,}")
    c[5].metric("Template errors", f"{template_errors:,}")

    left, right = st.columns([1, 1])
    with left:
        st.subheader("Token shares, overall")
        st.plotly_chart(viz.overall_share_figure(viz.overall_shares(stats)), key="dataset_overall",
                        config={"displayModeBar": False})
        st.caption("template = markup the chat template writes (headers, separators, end tokens); trained = labeled "
                   "tokens (label != -100), counted across every role.")
    with right:
        st.subheader("Checks")
        counts = data.check_counts
        if counts.empty:
            st.success("No check fired.")
        else:
            st.dataframe(counts, hide_index=True, width="stretch", height=min(35 * (len(counts) + 1) + 3, 280))
            st.caption("The Findings tab below lists them; Export shows which records they reject.")

    tab_dist, tab_worst, tab_table, tab_findings = st.tabs(
        ["Distributions", "Worst samples", "All samples", "Findings"])

    with tab_dist:
        h1, h2 = st.columns(2)
        with h1:
            st.markdown("**Lengths** (tokens per sample before truncation; the red line is the max length; click "
                        "a bar to list its samples)")
            event = st.plotly_chart(viz.length_histogram(stats, ctx.options.max_length), key="dataset_lengths",
                                    config={"displayModeBar": False}, on_select="rerun", selection_mode="points")
            _bin_list(event, stats, "original_tokens", "dataset_lengths_pick")
        with h2:
            shares = {"trained": "trained_share", **{s: f"{s}_share" for s in ("assistant", "user", "system",
                                                                             "tool", "template")}}
            which = st.selectbox("Share per sample of", list(shares), key="dataset_share_of")
            event = st.plotly_chart(viz.share_histogram(stats, shares[which]), key="dataset_shares",
                                    config={"displayModeBar": False}, on_select="rerun", selection_mode="points")
            _bin_list(event, stats, shares[which], "dataset_shares_pick")
        st.markdown("**Length vs trained share** (one point per sample; click one to inspect it)")
        event = st.plotly_chart(viz.length_share_scatter(stats), key="dataset_scatter", on_select="rerun",
                                selection_mode="points")
        _open(_picked(event, stats), "dataset_scatter_opened")

    with tab_worst:
        a, b = st.columns([2, 1])
        measure = a.selectbox("Rank samples by", list(viz.WORST_MEASURES), key="dataset_worst_measure")
        n = b.number_input("How many", min_value=5, max_value=100, value=20, step=5, key="dataset_worst_n")
        worst = viz.worst_samples(stats, measure, int(n), records)
        st.markdown("**Token shares of the worst samples** (click a bar to inspect it)")
        event = st.plotly_chart(viz.share_bars(worst), key="dataset_worst_chart", on_select="rerun",
                                selection_mode="points", config={"displayModeBar": False})
        _open(_picked(event), "dataset_worst_opened")

    with tab_table:
        table = stats[["sample_id", "conversation_id", "tokens", "trained", "trained_share", "template", "system",
                       "user", "assistant", "tool", "truncated", "tokens_cut"]].copy()
        per_record = records.set_index("record")
        table["errors"] = table["conversation_id"].map(per_record["errors"]).fillna(0).astype("int64")
        table["warnings"] = table["conversation_id"].map(per_record["warnings"]).fillna(0).astype("int64")
        a, b, c2, d = st.columns([2, 1, 1, 1])
        sort = a.selectbox("Sort by", ["(dataset order)", *table.columns[2:]], key="dataset_sort")
        descending = b.toggle("Largest first", value=True, key="dataset_sort_desc")
        size = c2.selectbox("Rows per page", PAGE_SIZES, key="dataset_page_size")
        pages = max(1, -(-len(table) // size))
        number = d.number_input(f"Page (of {pages:,})", min_value=1, max_value=pages, value=1, key="dataset_page")
        if sort != "(dataset order)":
            table = table.sort_values(sort, ascending=not descending, kind="stable")
        shown = table.iloc[(int(number) - 1) * size: int(number) * size]
        selection = st.dataframe(
            shown, hide_index=True, width="stretch", height=min(35 * (len(shown) + 1) + 3, 458),
            on_select="rerun", selection_mode="single-row", key="dataset_table",
            column_config={"trained_share": st.column_config.ProgressColumn(
                "trained share", format="percent", min_value=0.0, max_value=1.0)})
        st.caption(f"Rows {(int(number) - 1) * size + 1:,}–{min(int(number) * size, len(table)):,} of "
                   f"{len(table):,} samples. Select a row to inspect it.")
        rows = selection.selection.rows if selection is not None else []
        _open(shown.iloc[rows[0]]["conversation_id"] if rows else None, "dataset_table_opened")

    with tab_findings:
        if counts.empty:
            st.success("No check fired.")
        else:
            code = st.selectbox("Show the findings of", counts["code"].tolist(), key="dataset_check")
            shown = findings[findings["code"] == code]
            st.dataframe(shown[["conversation_id", "sample_id", "message"]].head(1000), hide_index=True,
                         width="stretch", height=360)
            if len(shown) > 1000:
                st.caption(f"The first 1,000 of {len(shown):,} findings; Export's report.json counts them all.")
            hint = shown["hint"].iloc[0] if len(shown) else ""
            if hint:
                show.caption("Fix: ", hint)
