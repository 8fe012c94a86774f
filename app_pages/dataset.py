"""Dataset: token shares per role, trained share, lengths and check counts over every loaded conversation.

Selecting a row of the table or a bar of the share chart opens that conversation in Inspect.
"""

import streamlit as st

import ui
from inspector import viz

st.title("Dataset")
ctx = ui.require_context()
analysis = ui.analyze(ctx, progress=True)
if analysis.note:
    st.caption(analysis.note)
stats = viz.stats_table(analysis.samples)

# findings per conversation, for the table
per_conv: dict[str, dict[str, int]] = {}
for f in analysis.findings:
    cid = f.conversation_id or (f.sample_id or "").split("#")[0]
    d = per_conv.setdefault(cid, {"error": 0, "warning": 0, "info": 0})
    d[f.severity] = d.get(f.severity, 0) + 1

total_tokens = int(stats["tokens"].sum())
trained = int(stats["trained"].sum())
c = st.columns(6)
c[0].metric("Conversations", f"{len(ctx.conversations):,}")
c[1].metric("Samples", f"{len(stats):,}", help=f"strategy {ctx.options.strategy}")
c[2].metric("Tokens", f"{total_tokens:,}")
c[3].metric("Trained share", f"{trained / total_tokens:.1%}" if total_tokens else "–")
c[4].metric("Rejected records", f"{len(ctx.data.rejected):,}")
c[5].metric("Template errors", f"{len(analysis.errors):,}")

for err in analysis.errors[:10]:
    st.error(f"The chat template raised on {err.conversation_id}: {err.reason}")


def _open(conversation_id: str | None, marker: str) -> None:
    """Open a selected conversation in Inspect, once per new selection."""
    last = st.session_state.get(marker)
    if conversation_id is None:
        st.session_state.pop(marker, None)
        return
    if conversation_id != last:
        st.session_state[marker] = conversation_id
        ui.open_in_inspect(conversation_id)


left, right = st.columns([1, 2])
with left:
    st.subheader("Token shares, overall")
    overall = viz.overall_shares(stats)
    st.dataframe(overall.assign(share=overall["share"].map(lambda x: f"{x:.1%}")), hide_index=True,
                 width="stretch")
    st.caption("template = markup the chat template writes (headers, separators, end tokens); trained = labeled "
               "tokens (label != -100), counted across every role.")
with right:
    st.subheader("Per sample (click a bar to inspect)")
    event = st.altair_chart(viz.share_chart(stats), width="stretch", on_select="rerun", key="dataset_share_chart")
    picked = (event.get("selection", {}) or {}).get("pick") or [] if event else []
    _open(picked[0].get("conversation_id") if picked and isinstance(picked[0], dict) else None,
          "dataset_chart_opened")

st.subheader("Samples (select a row to inspect)")
table = stats[["sample_id", "conversation_id", "tokens", "trained", "trained_share", "template", "system", "user",
               "assistant", "tool", "truncated", "tokens_cut"]].copy()
table["errors"] = [per_conv.get(cid, {}).get("error", 0) for cid in table["conversation_id"]]
table["warnings"] = [per_conv.get(cid, {}).get("warning", 0) for cid in table["conversation_id"]]
selection = st.dataframe(
    table, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row", key="dataset_table",
    column_config={"trained_share": st.column_config.ProgressColumn("trained share", format="percent",
                                                                    min_value=0.0, max_value=1.0)})
rows = selection.selection.rows if selection is not None else []
_open(table.iloc[rows[0]]["conversation_id"] if rows else None, "dataset_table_opened")

h1, h2 = st.columns(2)
with h1:
    st.subheader("Lengths")
    st.altair_chart(viz.length_histogram(stats, ctx.options.max_length), width="stretch")
    st.caption("Tokens per sample before truncation; the red line is the max length.")
with h2:
    st.subheader("Trained share per sample")
    st.altair_chart(viz.trained_share_histogram(stats), width="stretch")

st.subheader("Checks")
counts = viz.check_counts(analysis.findings)
if counts.empty:
    st.success("No check fired." if analysis.outcomes is not None else "Checks are not available.")
else:
    st.dataframe(counts, hide_index=True, width="stretch")
    code = st.selectbox("Show the findings of", counts["code"].tolist(), key="dataset_check")
    shown = [f for f in analysis.findings if f.code == code]
    st.dataframe([{"conversation": f.conversation_id, "sample": f.sample_id, "message": f.message}
                  for f in shown], hide_index=True, width="stretch")
