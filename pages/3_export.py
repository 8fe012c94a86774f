"""Export: which records are accepted and which are rejected (with reasons), and the trainer-ready files
(accepted JSONL / Parquet, rejected.jsonl, report.json) written by ``inspector.export``.

Rejected records loaded from a file are exported as a bounded excerpt of their JSON, never the whole record.
"""

import json

import streamlit as st

from inspector import export
from pages.common import analysis, page, show

ICON = ":material/download:"

with page("Export", icon=ICON) as ctx:
    data = analysis.scan(ctx)
    records = data.records
    accepted = records[records["accepted"]]
    rejected = records[~records["accepted"]]

    c = st.columns(4)
    c[0].metric("Records", f"{len(records):,}")
    c[1].metric("Accepted", f"{len(accepted):,}")
    c[2].metric("Rejected", f"{len(rejected):,}")
    c[3].metric("Accepted samples", f"{int(accepted['samples'].sum()):,}")
    st.caption(f"Strategy **{ctx.options.strategy}**, max length {ctx.options.max_length or 'none'}, end-of-turn "
               f"{'labeled' if ctx.options.label_eot else 'not labeled'}. {export.ACCEPT_RULE.capitalize()}.")
    eot = int(rejected["reasons"].str.contains("eot-not-labeled", regex=False).sum())
    if not ctx.options.label_eot and eot:
        st.warning(f"{eot:,} record(s) are rejected because the end-of-turn token is not labeled (the sidebar's "
                   "toggle): the model would never learn to stop. Turn it back on to export them.")

    tab_rej, tab_acc = st.tabs([f"Rejected ({len(rejected):,})", f"Accepted ({len(accepted):,})"])
    with tab_rej:
        if len(rejected):
            st.dataframe(rejected[["record", "source", "stage", "reasons"]], hide_index=True, width="stretch",
                         height=min(35 * (len(rejected) + 1) + 3, 420))
        else:
            st.success("Every record passed the checks.")
    with tab_acc:
        st.dataframe(accepted[["record", "samples", "tokens", "trained", "warnings"]], hide_index=True,
                     width="stretch", height=min(35 * (len(accepted) + 1) + 3, 420))

    st.subheader("Download")
    if len(records) > analysis.AUTO_EXPORT_RECORDS and not st.session_state.get("export_asked"):
        st.caption(f"{len(records):,} records: the files are written when you ask.")
        if st.button("Write the export files", key="export_write"):
            st.session_state["export_asked"] = True
            st.rerun()
        st.stop()
    try:
        files = analysis.export_files(ctx)
    except Exception as exc:  # noqa: BLE001 - an export failure is a message, never a traceback
        show.error("Export failed: ", f"{type(exc).__name__}: {exc}")
        st.stop()
    d = st.columns(4)
    d[0].download_button("Accepted (JSONL)", files.get("accepted.jsonl", b""), file_name="accepted.jsonl",
                         mime="application/jsonl", key="export_dl_jsonl")
    d[1].download_button("Accepted (Parquet)", files.get("accepted.parquet", b""), file_name="accepted.parquet",
                         mime="application/vnd.apache.parquet", key="export_dl_parquet")
    d[2].download_button("Rejected (JSONL)", files.get(export.REJECTED_FILE, b""), file_name=export.REJECTED_FILE,
                         mime="application/jsonl", key="export_dl_rejected")
    d[3].download_button("Report (JSON)", files.get(export.REPORT_FILE, b""), file_name=export.REPORT_FILE,
                         mime="application/json", key="export_dl_report")
    with st.expander("report.json"):
        st.json(json.loads(files.get(export.REPORT_FILE, b"{}") or b"{}"), expanded=1)
