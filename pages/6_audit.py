"""Audit: what a trainer's own tokenized output trains, against what should be trained — the patterns as a bar chart
(click a bar to open a record) and each record's tokens with the trainer's and the inspector's labels side by side.

The tokenized data comes from an upload (``.jsonl`` / ``.parquet`` / ``.arrow``: e.g. TRL's
``trainer.train_dataset.to_json(...)``), a path on the server (a ``save_to_disk`` folder too, when the sidebar may
read server paths), or the sidebar's own data as the inspector exports it, optionally with a simulated pipeline bug
to see what the audit says about it. The sidebar's data can serve as the reference (``--reference``). The core is
``inspector.audit``; the drawings are ``inspector.views.audit``; the CLI's ``audit`` reads any number of rows.
"""

import tempfile
from pathlib import Path

import numpy as np
import streamlit as st

from inspector.audit.read import Columns, TokenRow, open_tokenized
from inspector.audit.run import audit_token_rows
from inspector.constants import IGNORE_INDEX
from inspector.errors import InspectorError
from inspector.labels.engine import LabelEngine
from inspector.views import audit as av
from pages.common import page, show, ui

ICON = ":material/fact_check:"
MAX_ROWS = 2000  # samples audited in the app; the CLI reads them all
SOURCES = ("Sidebar data, as the inspector exports it", "Upload a tokenized file", "Path on the server")
BUGS = {
    "none": "no change: the inspector's own labels",
    "shift labels by one": "labels = input_ids[1:] where trained (a hand-written pipeline's classic bug)",
    "train the newline after each closing": "as TRL's Qwen2.5 training template does",
    "drop the closing": "the end-of-turn token masked (pad == eos masking)",
    "train the user turns": "every token labeled (no masking)",
}


def _simulate(ids: np.ndarray, labels: np.ndarray, bug: str, closing: frozenset) -> np.ndarray:
    labels = labels.copy()
    if bug == "shift labels by one":
        nxt = np.append(ids[1:], IGNORE_INDEX)
        labels = np.where(labels != IGNORE_INDEX, nxt, IGNORE_INDEX)
    elif bug == "train the newline after each closing":
        after = np.flatnonzero(np.isin(ids[:-1], list(closing)) & (labels[:-1] != IGNORE_INDEX)) + 1
        labels[after] = ids[after]
    elif bug == "drop the closing":
        labels[np.isin(ids, list(closing))] = IGNORE_INDEX
    elif bug == "train the user turns":
        labels = ids.copy()
    return labels


@st.cache_resource(show_spinner="Building the samples…", max_entries=4)
def _own_rows(key: str, _setup, _convs, _opts, bug: str) -> list[TokenRow]:
    from inspector.audit.compare import AuditContext

    samples, _ = LabelEngine(_setup).build(_convs[:MAX_ROWS], _opts)
    closing = AuditContext(_setup).closing_ids
    rows = []
    for i, s in enumerate(samples):
        ids = s.ids_array()
        labels = _simulate(ids, s.labels_array(), bug, closing)
        rows.append(TokenRow(s.id, i, ids, labels != IGNORE_INDEX, labels))
    return rows


@st.cache_resource(show_spinner="Reading the tokenized data…", max_entries=4)
def _file_rows(key: str, path: str) -> tuple[list[TokenRow], Columns]:
    data = open_tokenized(path)
    return list(data.rows(MAX_ROWS)), data.columns


@st.cache_resource(show_spinner="Auditing…", max_entries=8)
def _audited(key: str, _rows, _setup, _reference, columns: dict):
    return audit_token_rows(_rows, _setup, reference_items=_reference, keep=MAX_ROWS,
                            settings={"data": key.split("|")[0]}, columns=columns)


def _clicked(event) -> str | None:
    points = ((event or {}).get("selection") or {}).get("points") or []
    if not points:
        return None
    data = points[0].get("customdata")
    return str(data[0] if isinstance(data, (list, tuple)) else data) if data is not None else None


with page("Audit") as ctx:
    st.markdown(
        "Trainers do not train what the chat template says: each builds its own labels (TRL swaps in training "
        "templates, axolotl and LLaMA-Factory render their own way, hand-written pipelines shift or mask by "
        "mistake). This page reads a trainer's **own tokenized output** and says, token by token, where its "
        "labels differ from what should be trained.")
    c = st.columns([2, 2])
    sources = SOURCES if ui.server_paths_allowed() else SOURCES[:2]
    source = c[0].radio("Tokenized data", sources, key="audit_source")
    rows = None
    columns: dict = {}
    data_key = ""
    try:
        if source == SOURCES[0]:
            bug = c[1].selectbox("Simulate a pipeline bug", list(BUGS), key="audit_bug",
                                 help="\n".join(f"- **{k}**: {v}" for k, v in BUGS.items()))
            data_key = f"own:{ctx.data_key}:{ctx.tokenizer_key}:{ctx.template_key}:{ui.options_key(ctx.options)}"
            rows = _own_rows(f"{data_key}:{bug}", ctx.setup, ctx.conversations, ctx.options, bug)
            data_key += f":{bug}"
            columns = {"described": ["tokens: input_ids", "trained: labels != -100 (the inspector's own samples"
                                     + ("" if bug == "none" else f", with the simulated bug: {BUGS[bug]}") + ")"]}
        elif source == SOURCES[1]:
            up = c[1].file_uploader("Tokenized JSONL, Parquet or Arrow", type=["jsonl", "json", "parquet", "arrow"],
                                    key="audit_upload")
            if up is not None:
                data = up.getvalue()
                folder = Path(tempfile.gettempdir()) / "sft-inspector-audit" / ui.sha(data)
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"data{Path(up.name).suffix.lower()}"
                if not path.exists():
                    path.write_bytes(data)
                rows, cols = _file_rows(f"upload:{ui.sha(data)}", str(path))
                columns, data_key = cols.to_dict(), f"upload:{up.name}:{ui.sha(data)}"
        else:
            where = c[1].text_input("Folder or file", key="audit_path", placeholder="/runs/prepared")
            if where.strip():
                p = Path(where.strip()).expanduser()
                rows, cols = _file_rows(f"path:{p}:{p.stat().st_mtime_ns if p.exists() else 0}", str(p))
                columns, data_key = cols.to_dict(), f"path:{p}"
    except (InspectorError, OSError) as exc:
        show.error("Cannot read the tokenized data: ", exc)
        st.stop()
    if rows is None:
        st.info("Upload a tokenized file (e.g. `trainer.train_dataset.to_json('prepared.jsonl')`), or pick the "
                "sidebar's data.")
        st.stop()
    use_reference = st.checkbox("Tie rows to the sidebar's data (by id, else by order)", value=source != SOURCES[0],
                                key="audit_reference",
                                help="The CLI's --reference RAW. Without it, rows are tied by the messages column "
                                     "beside the tokens or recovered from the tokens.")
    reference = ctx.conversations if use_reference else None
    report, audits = _audited(f"{data_key}|{ctx.tokenizer_key}|{ctx.template_key}|{use_reference}", rows,
                              ctx.setup, reference, columns)

    for line in report.columns.get("described", []):
        st.caption(line)
    m = st.columns(5)
    m[0].metric("Samples", f"{report.samples:,}", help=f"{report.tokens:,} tokens")
    m[1].metric("Tied to a conversation", f"{report.tied:,}",
                help=", ".join(f"{n} {s}" for s, n in report.tie_sources.items()) or "none")
    m[2].metric("Tokens that differ", f"{report.differing_tokens:,}",
                help="trained by the trainer and not by the inspector, or the reverse")
    m[3].metric("Errors", f"{report.count('error'):,}")
    m[4].metric("Warnings", f"{report.count('warning'):,}")
    if len(rows) >= MAX_ROWS:
        st.info(f"The first {MAX_ROWS:,} samples are audited here; `python -m inspector audit` reads them all.")

    st.header("Patterns")
    frame = av.patterns_frame(report)
    if frame.empty:
        st.success("No findings: the trainer trains what should be trained.")
    else:
        st.caption("Records per pattern (errors red, warnings amber, info blue). Click a bar to open its first "
                   "record below.")
        st.plotly_chart(av.patterns_figure(frame), key="audit_patterns", on_select="rerun",
                        selection_mode="points", width="stretch")
        st.dataframe(frame, hide_index=True, width="stretch")

    st.header("Record")
    order = av.record_choices(audits)
    ids = [audits[i].row.id for i in order]
    clicked = _clicked(st.session_state.get("audit_patterns"))
    if clicked is not None and clicked in ids and clicked != st.session_state.get("audit_clicked"):
        st.session_state["audit_clicked"] = clicked
        st.session_state["audit_record"] = clicked
    if st.session_state.get("audit_record") not in ids:
        st.session_state["audit_record"] = ids[0]
    chosen = st.selectbox("Sample (those with findings first)", ids, key="audit_record")
    audit = audits[order[ids.index(chosen)]]
    tie = audit.tie
    st.caption(f"Tied: {tie.source if tie.conversation is not None else 'no'}"
               + (f" ({tie.reason})" if tie.reason else "") + f"; compared: {audit.method}; "
               f"{audit.differences} token(s) differ." + (" " + " ".join(audit.notes) if audit.notes else ""))
    findings = av.findings_frame(audit)
    if not findings.empty:
        st.dataframe(findings, hide_index=True, width="stretch")
    tokens = av.token_frame(audit, ui.decoder(ctx.setup.tokenizer))
    only_diff = st.toggle("Only tokens that differ (and their neighbours)", key="audit_only_diff",
                          value=bool(tokens["differs"].any()))
    if only_diff and tokens["differs"].any():
        near = np.convolve(tokens["differs"].to_numpy().astype(int), np.ones(5, dtype=int), mode="same") > 0
        tokens = tokens[near]
    show.html(av.audit_table_html(tokens))
