"""Export: run the checks, show which records are accepted and which are rejected (with reasons), and download the
trainer-ready files (accepted JSONL / Parquet, rejected.jsonl, report.json) written by ``inspector.export``."""

import json
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

import ui

st.title("Export")
ctx = ui.require_context()
checks, why_checks = ui.checks_module()
export, why_export = ui.export_module()


@st.cache_data(show_spinner="Writing the export files…", max_entries=8)
def export_files(key: str, _outcomes: list, _settings: dict) -> dict[str, bytes]:
    """The export files as bytes, written by ``inspector.export`` into a temporary folder (once per key)."""
    files: dict[str, bytes] = {}
    for fmt in export.EXPORT_FORMATS:
        with tempfile.TemporaryDirectory(prefix="sft-inspector-export-") as tmp:
            report = checks.Report(settings=dict(_settings))
            export.export_outcomes(iter(_outcomes), tmp, fmt=fmt, force=True, report=report)
            for path in Path(tmp).iterdir():
                files.setdefault(path.name, path.read_bytes())
    return files


if checks is None:
    st.warning(why_checks)
analysis = ui.analyze(ctx, progress=True, include_rejected=True)

if analysis.outcomes is None:
    # no checks yet: every sample is offered, nothing is judged
    rows = [s.to_record() for s in analysis.samples]
    st.metric("Samples", len(rows))
    st.download_button("Download samples (JSONL)", "\n".join(json.dumps(r) for r in rows).encode(),
                       file_name="samples.jsonl", mime="application/jsonl", key="export_dl_fallback")
    st.stop()

outcomes = analysis.outcomes
for oc in outcomes:  # the cached outcomes are copies: fill the trainer rows from the kept samples
    if oc.rows is None and oc.samples is not None:
        oc.rows = [s.to_record() for s in oc.samples]
accepted = [oc for oc in outcomes if oc.accepted]
rejected = [oc for oc in outcomes if not oc.accepted]

c = st.columns(4)
c[0].metric("Records", f"{len(outcomes):,}")
c[1].metric("Accepted", f"{len(accepted):,}")
c[2].metric("Rejected", f"{len(rejected):,}")
c[3].metric("Accepted samples", f"{sum(oc.num_samples for oc in accepted):,}")
st.caption(f"Strategy **{ctx.options.strategy}**, max length {ctx.options.max_length or 'none'}. "
           + (export.ACCEPT_RULE.capitalize() + "." if export is not None else ""))

tab_rej, tab_acc = st.tabs([f"Rejected ({len(rejected)})", f"Accepted ({len(accepted)})"])
with tab_rej:
    if rejected:
        st.dataframe(pd.DataFrame([{"record": oc.record_id, "source": oc.source or "",
                                    "stage": "load" if oc.rejected is not None else "checks",
                                    "reasons": " | ".join(oc.reasons())} for oc in rejected]),
                     hide_index=True, width="stretch")
    else:
        st.success("Every record passed the checks.")
with tab_acc:
    st.dataframe(pd.DataFrame([{"record": oc.record_id, "samples": oc.num_samples, "tokens": oc.num_tokens,
                                "trained": oc.num_trainable,
                                "warnings": " | ".join(f"{f.code}" for f in oc.findings if f.severity == "warning")}
                               for oc in accepted]), hide_index=True, width="stretch")

st.subheader("Download")
if export is None:
    st.warning(why_export)
    st.stop()
settings = checks.report_settings(ctx.setup, ctx.options)
key = "|".join([ctx.data_key, ctx.tokenizer_key, ctx.template_key, ctx.options_key])
try:
    files = export_files(key, outcomes, settings)
except Exception as exc:  # noqa: BLE001 - an export failure is a message, never a traceback
    st.error(f"Export failed: {type(exc).__name__}: {exc}")
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
