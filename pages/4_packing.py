"""Packing: the samples packed into training sequences the way TRL's ``SFTTrainer(packing=True)`` packs them
(``inspector.train.packing``), drawn by ``inspector.views.packing`` — the sequences as blocks coloured by sample, one
sequence token by token with its boundaries, ``position_ids`` and labels, the packing findings and attention facts,
the gradient weights unpacked vs packed, and the worked example of ``docs/packing.md``.

Samples are built whole (the sidebar's max length is the packed sequence length, as TRL's ``max_length``: samples
are not truncated before packing). The page packs the first ``MAX_PACKED`` conversations; the CLI's ``pack`` packs
them all.
"""

from dataclasses import replace
from pathlib import Path

import pandas as pd
import streamlit as st

from inspector.views import packing as pv
from inspector.views import viz
from inspector.labels import weights
from inspector.checks import evaluate, special_token_ids
from inspector.train.packing import (DEFAULT_BATCH_SIZE, PACKING_STRATEGIES, TRL_MAP_BATCH_SIZE, PackOptions,
                                     attention_support, default_padding_free, layout_inputs, pack, packing_findings,
                                     weights_before_after)
from pages.common import analysis, page, show, ui

ICON = ":material/view_agenda:"
MAX_PACKED = TRL_MAP_BATCH_SIZE  # conversations packed here: one datasets.map batch, which TRL packs on its own
DEFAULT_PACK_LENGTH = 1024  # TRL's SFTConfig.max_length default, when the sidebar sets no max length
LAYOUTS = {"padding-free": True, "padded": False}
AROUND = 3  # tokens shown on each side of a sample boundary when the table shows only the boundaries
DOC = Path(__file__).resolve().parents[1] / "docs" / "packing.md"
STRATEGY_HELP = {
    "bfd": "best fit decreasing (TRL's default): longest first, into the fullest sequence it fits; a sample longer "
           "than the packed length keeps its first tokens, the rest is lost",
    "bfd_split": "as bfd, but a long sample is cut into pieces that are packed like samples: nothing lost, later "
                 "pieces trained without their start",
    "wrapped": "everything concatenated and cut every max length tokens, across samples",
}


@st.cache_resource(show_spinner="Building the samples…", max_entries=4)
def _built(key: str, _context, _convs: list) -> analysis.Analysis:
    """Samples, template errors and findings of the conversations packed here, as the CLI's ``pack`` builds them
    (``checks.evaluate``). A resource, not data: up to ``MAX_PACKED`` conversations' samples are never pickled, and
    at most four settings are kept."""
    return analysis.from_outcomes(evaluate(_convs, _context, keep_samples=True))


@st.cache_resource(show_spinner="Packing…", max_entries=8)
def _packed(key: str, _samples: list, _options: PackOptions):
    """The packing of the samples and its findings (per sample, dataset-level); shared, never mutated."""
    packing = pack(_samples, _options)
    per_sample, dataset = packing_findings(packing)
    return packing, per_sample, dataset


@st.cache_resource(show_spinner="Computing the weights…", max_entries=16)
def _weights(key: str, reduction: str, _packing):
    """Every sample token's weight unpacked vs packed, the per-sample totals and the per-token frame."""
    comparison = weights_before_after(_packing, reduction)
    return comparison, pv.sample_weights_frame(comparison, _packing), pv.weights_frame(comparison, _packing)


def _clicked_block(event) -> tuple[int, int] | None:
    """(sequence, sample) of the block a click selected on the blocks chart (None: no block, or padding)."""
    points = ((event or {}).get("selection") or {}).get("points") or []
    if not points:
        return None
    point = points[0]
    sample = point.get("customdata")
    sample = sample[0] if isinstance(sample, (list, tuple)) else sample
    y = str(point.get("y", ""))
    if sample is None or int(sample) < 0 or not y.startswith("seq "):
        return None
    return int(y.split()[1]), int(sample)


def _trl_layout(strategy: str) -> str:
    """The layout TRL's SFTTrainer collates this strategy in (the radio's label)."""
    return "padding-free" if default_padding_free(strategy) else "padded"


def _follow_trl_layout() -> None:
    st.session_state["packing_layout"] = _trl_layout(st.session_state["packing_strategy"])


with page("Packing") as ctx:
    st.markdown(
        "Most SFT runs **pack**: several samples share one training sequence of at most *max length* tokens, so "
        "little is padding. Packing decides which tokens a token can attend to, which token each label is "
        "predicted from, what is cut or lost, and how much each token weighs in the loss. This page packs your "
        "samples exactly as TRL's `pack_dataset` does and shows all four.")

    # --- options ----------------------------------------------------------------------------------------------
    length = ctx.options.max_length or DEFAULT_PACK_LENGTH
    c = st.columns([1, 1, 1, 1])
    strategy = c[0].selectbox("Packing strategy", PACKING_STRATEGIES, key="packing_strategy",
                              help="\n".join(f"- **{k}**: {v}" for k, v in STRATEGY_HELP.items()),
                              on_change=_follow_trl_layout)
    st.session_state.setdefault("packing_layout", _trl_layout(strategy))
    layout = c[1].radio("Layout", list(LAYOUTS), key="packing_layout", horizontal=True,
                        help="padding-free: a micro-batch's sequences become one row, position_ids restart at every "
                             "sample, no attention mask. padded: one row per packed sequence, an attention mask over "
                             "the row. Picking a strategy sets TRL's layout for it (padding-free for bfd and "
                             "bfd_split, padded for wrapped); choose the other here.")
    batch_size = c[2].number_input("Packed sequences per micro-batch", min_value=1, max_value=4096,
                                   value=DEFAULT_BATCH_SIZE, key="packing_batch_size")
    c[3].metric("Packed sequence length", f"{length:,}",
                help="The sidebar's max length (TRL's max_length)" if ctx.options.max_length else
                f"The sidebar sets no max length: {DEFAULT_PACK_LENGTH:,}, TRL's default")
    st.caption(f"{STRATEGY_HELP[strategy][0].upper()}{STRATEGY_HELP[strategy][1:]}.")

    # --- build and pack -------------------------------------------------------------------------------------------
    convs = ctx.conversations[:MAX_PACKED]
    if len(ctx.conversations) > MAX_PACKED:
        st.info(f"The first {MAX_PACKED:,} of {len(ctx.conversations):,} conversations are packed here: one "
                f"datasets.map batch, which TRL packs on its own. `python -m inspector pack` packs them all.")
    opts = replace(ctx.options, max_length=None)  # TRL does not truncate before packing: bfd does
    opts_key = ui.options_key(opts)
    context = analysis.check_context(ctx.tokenizer_key, ctx.template_key, opts_key, ctx.setup, opts)
    result = _built("|".join((ctx.data_key, ctx.tokenizer_key, ctx.template_key, opts_key, str(len(convs)))),
                    context, convs)
    samples = result.samples
    if result.errors:
        show.warning(f"{len(result.errors)} conversation(s) could not be rendered and are left out; the first: ",
                     f"{result.errors[0].conversation_id}: {result.errors[0].reason}")
    if not samples:
        st.warning("No training sample was built from these conversations.")
        st.stop()
    tok = ctx.setup.tokenizer
    pad = next((i for i in (getattr(tok, "pad_token_id", None), getattr(tok, "eos_token_id", None)) if i is not None),
               0)
    popts = PackOptions(length, strategy, padding_free=LAYOUTS[layout], batch_size=int(batch_size),
                        pad_token_id=int(pad))
    key = "|".join((ctx.data_key, ctx.tokenizer_key, ctx.template_key, opts_key, str(len(convs)), repr(popts)))
    packing, per_sample, dataset = _packed(key, samples, popts)
    stats = packing.stats

    m = st.columns(6)
    m[0].metric("Samples", f"{stats.samples:,}", help=f"{stats.tokens:,} tokens, {stats.labeled:,} labeled")
    m[1].metric("Packed sequences", f"{stats.sequences:,}", help=f"in {stats.batches:,} micro-batch(es)")
    m[2].metric("Full", f"{stats.fill:.1%}", help="packed tokens / (sequences x packed length)")
    m[3].metric("Tokens lost", f"{stats.tokens_lost:,}",
                help=f"{stats.labeled_lost:,} of them labeled, in {stats.truncated_samples:,} truncated and "
                     f"{stats.dropped_samples:,} dropped samples")
    m[4].metric("Samples split", f"{stats.split_samples:,}", help="cut across packed sequences")
    m[5].metric("Padding", f"{stats.padding_share:.1%}",
                help=f"of the collated rows; without packing {stats.unpacked_padding_share:.1%}")
    st.caption(f"Padding without packing: {stats.unpacked_padding_share:.1%}. The model gets: "
               f"{layout_inputs(popts)}.")

    # --- the blocks -------------------------------------------------------------------------------------------------
    st.header("Packed sequences")
    st.caption("One bar per packed sequence, one block per sample (padding gray, the dashed line is the packed "
               "length). Click a block to see that sequence token by token.")
    n_seq = len(packing.sequences)
    if st.session_state.get("packing_seq") not in range(n_seq):  # the first sequence that holds several samples
        st.session_state["packing_seq"] = next((s.index for s in packing.sequences if len(s.pieces) > 1), 0)
    click = _clicked_block(st.session_state.get("packing_blocks"))
    if click is not None and click != st.session_state.get("packing_clicked") and click[0] < n_seq \
            and click[1] < len(packing.samples):
        st.session_state["packing_clicked"] = click
        st.session_state["packing_seq"] = click[0]
        st.session_state["packing_highlight"] = packing.samples[click[1]].id
    ids = [x.id for x in packing.samples]
    highlight = st.session_state.get("packing_highlight")
    if highlight not in ids:
        highlight = None
    st.plotly_chart(pv.blocks_figure(packing, highlight=highlight), key="packing_blocks", on_select="rerun",
                    selection_mode="points", config={"displayModeBar": False})
    if n_seq > 200:
        st.caption(f"The chart draws the first 200 of {n_seq:,} packed sequences; every one can be picked below.")

    # --- one sequence ------------------------------------------------------------------------------------------
    def seq_name(i: int) -> str:
        s = packing.sequences[i]
        return f"seq {i}: {len(s.pieces)} piece(s), {s.length:,} tokens"

    seq_index = st.selectbox("Packed sequence", range(n_seq), key="packing_seq", format_func=seq_name)
    seq = packing.sequences[seq_index]
    if highlight is not None:
        fate = packing.fates[ids.index(highlight)]
        where = ", ".join(f"seq {k} tokens {p.start}..{p.end - 1}" for k, p in fate.placed) or "nowhere (dropped)"
        show.caption("Selected sample: ", f"{highlight} ({fate.tokens:,} tokens, {fate.labeled:,} labeled): {where}"
                     + (f"; {fate.lost:,} tokens lost" if fate.lost else ""))
        conv_id = packing.samples[ids.index(highlight)].conversation_id
        if conv_id and st.button("Open its conversation in Inspect", key="packing_open"):
            ui.open_in_inspect(conv_id)
    pieces = pd.DataFrame([{"sample": packing.samples[p.sample].id, "offset": p.offset, "tokens": p.length,
                            "its tokens": f"{p.start}..{p.end - 1} of {packing.fates[p.sample].tokens}"}
                           for p in seq.pieces])
    st.dataframe(pieces, hide_index=True, width="stretch", height=min(35 * (len(pieces) + 1) + 3, 250))
    flags = [f for fs in per_sample for f in fs] + result.findings
    table = pv.sequence_table(packing, seq_index, samples, ui.decoder(tok), findings=flags)
    table["special"] = table["token_id"].isin(special_token_ids(tok))
    trained = int(table["trained"].sum())
    st.caption(f"{len(table):,} tokens, {trained:,} trained after the collator. A thick line marks where a sample "
               "(or a piece of one) starts; the label column is what the loss reads "
               + ("(the padding-free collator sets the label at every position id 0 to -100)."
                  if popts.padding_free else "(padded layout: packed labels unchanged)."))
    starts = table.index[table["boundary"]].tolist()
    if len(starts) > 1 and st.toggle("Only the tokens around each sample boundary", value=True,
                                      key="packing_around"):
        near = {t for b in starts for t in range(b - AROUND, b + AROUND + 1)}
        table = table[table["index"].isin(near)]
    show.html(viz.legend_html() + pv.sequence_table_html(table))

    # --- findings and attention -------------------------------------------------------------------------------
    st.header("What packing does here")
    found = [f for fs in per_sample for f in fs] + dataset
    with st.expander(f"Packing checks: {len(found)} finding(s)" if found else "Packing checks: nothing found",
                     expanded=True):
        if found:
            show.findings(found)
        else:
            st.success("No packing check fired.")
        st.caption("The usual checks of every sample are on the Inspect and Dataset pages.")
    st.markdown("**Which attention implementations keep the samples apart** with the inputs this layout gives "
                "(read in transformers' source):")
    st.table(pd.DataFrame(attention_support(popts)).set_index("implementations"))

    # --- weights before / after ---------------------------------------------------------------------------------
    st.header("Gradient weights, unpacked vs packed")
    reduction = st.selectbox("Reduction", weights.REDUCTION_NAMES, key="packing_reduction",
                             format_func=viz.reduction_title)
    st.caption(weights.REDUCTION_LABELS[reduction] + ". Unpacked: each sample its own row, "
               f"{int(batch_size)} rows per micro-batch; packed: the collated rows above; all samples are one "
               "optimizer step.")
    try:
        comparison, per_sample_w, per_token_w = _weights(key, reduction, packing)
    except ValueError as exc:
        show.warning(f"{viz.reduction_title(reduction)}: ", exc)
    else:
        st.plotly_chart(pv.weights_figure(comparison, packing), key="packing_weights_chart",
                        config={"displayModeBar": False})
        left, right = st.columns(2)
        with left:
            st.markdown("**Each sample's share**, exact")
            st.dataframe(per_sample_w[["sample_id", "labeled", "before", "after"]].rename(
                columns={"before": "unpacked", "after": "packed"}), hide_index=True, width="stretch", height=320)
        with right:
            pick = highlight if highlight in ids else ids[0]
            st.markdown("**Each token of the selected sample**, exact")
            show.caption("", pick)
            tokens = per_token_w[per_token_w["sample_id"] == pick]
            st.dataframe(tokens[["position", "token_id", "before", "after", "change"]].rename(
                columns={"before": "unpacked", "after": "packed"}), hide_index=True, width="stretch", height=320)

    # --- the worked example ------------------------------------------------------------------------------------
    st.header("Worked example: two short answers and one long one")
    st.markdown(
        "Three samples, each a two-token prompt (masked) and an answer: `short-1` and `short-2` answer in one token, "
        "`long` in six. Unpacked, each is its own row; packed with `bfd` at max length 16 they share one sequence "
        "of 14 tokens (`long` first), with `position_ids` 0..7, 0..2, 0..2. A reduction that averages per sequence "
        "now averages over the *packed* sequence: every answer token gets the same weight, so the long answer "
        "gains and the short ones lose. The weight of each token, unpacked → packed:")
    example = pv.worked_example()
    st.markdown(pv.worked_example_markdown())
    st.plotly_chart(pv.blocks_figure(example["packing"]), key="packing_example_blocks",
                    config={"displayModeBar": False})
    w = example["weights"]["sample_mean"]
    long_before, long_after = w.sample_totals()[2]
    frac = viz.fraction_text
    st.caption(f"Under mean per sample (sample_mean) a short answer's token weighs {frac(w.before[0][2])} unpacked, "
               f"each of the long answer's six {frac(w.before[2][2])}; packed, every answer token weighs "
               f"{frac(w.after[0][2])}, and the long answer's share of the objective goes from {frac(long_before)} "
               f"to {frac(long_after)}.")
    if DOC.is_file():
        with st.expander("Packing explained (docs/packing.md)"):
            st.markdown(DOC.read_text(encoding="utf-8").split("\n", 1)[1])
