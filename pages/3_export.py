"""Export: which records are accepted and which are rejected (with reasons), the trainer-ready files
(accepted JSONL / Parquet, rejected.jsonl, report.json) written by ``inspector.data.export``, the CLI commands that repeat
the run on the whole dataset (``inspector.cli.command_line``: locally or on Ray), and a training template for
TRL's ``assistant_only_loss`` (``inspector.training_template.check.export_training_template``) with its verification.

Rejected records loaded from a file are exported as a bounded excerpt of their JSON, never the whole record. The
training template costs several renders per conversation: it is built on a button, on the first
``TEMPLATE_RECORDS`` conversations, and cached.
"""

import json

import streamlit as st

from inspector.data import export
from inspector.views import template as template_viz
from inspector.cli import command_line
from inspector.errors import InspectorError
from inspector.labels.engine import LabelOptions
from inspector.training_template.check import export_training_template, side_by_side
from pages.common import analysis, page, show, ui

ICON = ":material/download:"
TEMPLATE_RECORDS = 300  # conversations the training template is built from and verified on (the CLI: all of them)
TRL_SNIPPET = """from transformers import AutoTokenizer
from trl import SFTConfig, SFTTrainer

tokenizer = AutoTokenizer.from_pretrained(MODEL)
tokenizer.chat_template = open("{file}", encoding="utf-8").read()  # the training template
trainer = SFTTrainer(model=MODEL, processing_class=tokenizer, train_dataset=dataset,  # a "messages" column
                     args=SFTConfig(assistant_only_loss=True, output_dir="out"))"""


@st.cache_resource(show_spinner="Building and verifying the training template…", max_entries=4)
def _training_template(key: str, _setup, _conversations: list, _opts: LabelOptions):
    """``export_training_template`` once per tokenizer, template, data and options; shared, never mutated."""
    return export_training_template(_setup, _conversations, _opts)


def command_line_section(ctx) -> None:
    """The CLI commands that repeat this page's run on the whole dataset: here, or on a Ray cluster."""
    st.subheader("The same run on the command line")
    st.markdown("The app reads at most a sample of a large dataset. These commands run the same checks with the same "
                "settings on every record, in CI (exit code 1 when an error-level check fires) or on a Ray "
                "cluster (`pip install -r requirements-ray.txt`; the report equals the local one).")
    data, tokenizer, template, todo = ui.cli_arguments(ctx)
    left: list[str] = []
    for title, command, engine in (("Check (exit code for CI)", "check", "local"),
                                   ("Export the accepted samples", "export", "local"),
                                   ("Export on Ray (a local Ray, or --ray-address HEAD:6379)", "export", "ray")):
        line, left = command_line(command, data, tokenizer=tokenizer, chat_template=template, options=ctx.options,
                                  engine=engine)
        st.markdown(f"**{title}**")
        st.code(line, language="bash")
    for note in todo:
        show.caption("", note)
    for what in left:
        show.warning("The CLI has no option for ", f"{what}: it runs with the default.")
    if template:
        st.download_button(f"Chat template ({ui.TEMPLATE_FILE})", ctx.setup.template.encode("utf-8"),
                           file_name=ui.TEMPLATE_FILE, mime="text/plain", key="export_dl_cli_template",
                           on_click="ignore")


def training_template_section(ctx) -> None:
    """The training template of the sidebar's chat template: build on a button, then its verdict, a download, the
    verification table and the two templates side by side with the inserted tags highlighted."""
    st.subheader("Training template for TRL's assistant_only_loss")
    st.markdown(
        "TRL's `SFTTrainer(assistant_only_loss=True)` trains only what the chat template wraps in "
        "`{% generation %}` … `{% endgeneration %}`, and most templates have no such tags. This rewrites the "
        "chat template in the sidebar so that the mask transformers returns is exactly the `assistant-only` labels "
        "(with the end-of-turn token), then verifies it through transformers' own `apply_chat_template(..., "
        "return_assistant_tokens_mask=True)`: the same text byte for byte and the same mask on every token.")
    convs = ctx.conversations[:TEMPLATE_RECORDS]
    opts = LabelOptions(template_kwargs=dict(ctx.options.template_kwargs), limits=ctx.options.limits)
    note = (f"Built from and verified on the first {len(convs):,} of {len(ctx.conversations):,} conversations "
            "(`python -m inspector training-template` verifies on all)." if len(ctx.conversations) > len(convs)
            else f"Built from and verified on the {len(convs):,} conversations loaded.")
    st.caption(note + " Always assistant-only with the end-of-turn token trained, whatever the sidebar's strategy: "
               "that is what assistant_only_loss trains. It takes several renders per conversation.")
    key = "|".join((ctx.data_key, ctx.tokenizer_key, ctx.template_key, str(len(convs)),
                    repr(sorted(opts.template_kwargs.items()))))
    if st.session_state.get("export_tt_key") != key:
        if not st.button("Build and verify the training template", key="export_tt_build", type="primary"):
            return
        st.session_state["export_tt_key"] = key
    try:
        report = _training_template(key, ctx.setup, convs, opts)
    except InspectorError as exc:
        show.error("The training template could not be built: ", exc)
        return
    except Exception as exc:  # noqa: BLE001 - a failure is a message, never a traceback
        show.error("The training template could not be built: ", f"{type(exc).__name__}: {exc}")
        return
    tt, v = report.training, report.verification
    if report.verified:
        st.success("**Verified**: " + show.md_text(v.summary()))
    else:
        show.error("**Not verified**: ", v.summary() if v.rows else "no conversation could be compared")
    kinds = {k: sum(e.kind == k for e in tt.edits) for k in ("wrap", "split", "conditional")}
    c = st.columns(4)
    c[0].metric("Edits", "none" if tt.already_tagged else f"{len(tt.edits)}",
                help=", ".join(f"{n} {k}" for k, n in kinds.items() if n) or None)
    c[1].metric("Conversations verified", f"{sum(r.verified for r in v.compared)} of {len(v.compared)}")
    c[2].metric("Tokens agree", f"{100 * v.agree / v.tokens:.2f}%" if v.tokens else "-")
    c[3].metric("Cannot wrap", f"{len(tt.problems)}")
    file_name = "chat_template.training.jinja"
    d = st.columns(2)
    d[0].download_button("Training template (.jinja)", tt.template.encode("utf-8"), file_name=file_name,
                         mime="text/plain", key="export_dl_training_template", on_click="ignore")
    d[1].download_button("Verification (JSON)", json.dumps(report.to_dict(), ensure_ascii=False, indent=2,
                                                           default=str).encode("utf-8"),
                         file_name="training_template_report.json", mime="application/json",
                         key="export_dl_training_report", on_click="ignore")
    flagged = [r for r in v.rows if r.flags]
    if flagged:
        show.warning("", f"{sum(r.flags for r in flagged):,} tokens in {len(flagged)} conversation(s) are masked "
                         "only by per-message flags (loss_weight 0, train false): no chat template can see them, so "
                         "TRL would train them. Drop those turns from the data, or train on the exported JSONL.")
    if tt.already_tagged:
        st.info("The chat template already has {% generation %} tags: left as it is, and verified as it is.")
    for problem in tt.problems:
        show.warning("Cannot wrap: ", str(problem))
    if tt.unreached:
        show.caption("No tags on lines your data never reached (verify on data that covers them): ",
                     ", ".join(map(str, tt.unreached)))
    for n in tt.notes:
        show.caption("Note: ", n)
    st.markdown("**Verification, per conversation**")
    st.dataframe(template_viz.verification_frame(v), hide_index=True, width="stretch",
                 height=min(35 * (len(v.rows) + 1) + 3, 420))
    wrong = [r for r in v.rows if r.mismatches]
    if wrong:
        with st.expander(f"Tokens that differ ({len(wrong)} conversation(s))"):
            for r in wrong:
                for m in r.mismatches[:3]:
                    show.caption("", f"{r.conversation_id}: token {m.index} {m.token!r}: ours "
                                     f"{'trained' if m.ours else 'masked'}, the template's mask "
                                     f"{'trained' if m.mask else 'masked'}")
    st.markdown("**The two templates side by side** (inserted tags and rewritten outputs highlighted)")
    changed_only = st.toggle("Only the changed lines", value=True, key="export_tt_changed_only")
    show.html(template_viz.side_by_side_html(side_by_side(tt), changed_only=changed_only))
    with st.expander("Use it with TRL"):
        st.code(TRL_SNIPPET.format(file=file_name), language="python")


with page("Export") as ctx:
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
    files = None
    if len(records) > analysis.AUTO_EXPORT_RECORDS and not st.session_state.get("export_asked"):
        st.caption(f"{len(records):,} records: the files are written when you ask.")
        if st.button("Write the export files", key="export_write"):
            st.session_state["export_asked"] = True
            st.rerun()
    else:
        try:
            files = analysis.export_files(ctx)
        except Exception as exc:  # noqa: BLE001 - an export failure is a message, never a traceback
            show.error("Export failed: ", f"{type(exc).__name__}: {exc}")
    if files is not None:
        d = st.columns(4)
        d[0].download_button("Accepted (JSONL)", files.get("accepted.jsonl", b""), file_name="accepted.jsonl",
                             mime="application/jsonl", key="export_dl_jsonl")
        d[1].download_button("Accepted (Parquet)", files.get("accepted.parquet", b""), file_name="accepted.parquet",
                             mime="application/vnd.apache.parquet", key="export_dl_parquet")
        d[2].download_button("Rejected (JSONL)", files.get(export.REJECTED_FILE, b""),
                             file_name=export.REJECTED_FILE, mime="application/jsonl", key="export_dl_rejected")
        d[3].download_button("Report (JSON)", files.get(export.REPORT_FILE, b""), file_name=export.REPORT_FILE,
                             mime="application/json", key="export_dl_report")
        with st.expander("report.json"):
            st.json(json.loads(files.get(export.REPORT_FILE, b"{}") or b"{}"), expanded=1)

    command_line_section(ctx)
    training_template_section(ctx)
