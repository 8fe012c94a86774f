"""What the Packing page draws, as plain data and Plotly figures. No Streamlit here.

- ``blocks_frame`` / ``blocks_figure``: the packed sequences as blocks coloured by sample (padding gray), one line per
  sequence, so a cut, a truncated or a split sample shows at a glance.
- ``sequence_table``: one packed sequence token by token, with the columns of ``viz.token_table`` (so
  ``viz.token_table_html`` draws it) plus the sample each token came from, its position there, the ``position_ids``
  the model gets, the piece boundaries and the label the loss reads after the collator; ``sequence_table_html``
  draws it as Inspect's coloured token table with those columns added and a line at every sample boundary.
- ``weights_frame`` / ``sample_weights_frame`` / ``weights_figure``: every token's gradient weight unpacked vs packed
  (``packing.weights_before_after``), exact fractions as text.
- ``worked_example`` / ``worked_example_frame`` / ``worked_example_markdown``: two short answers and one long one,
  unpacked vs packed, the table ``docs/packing.md`` shows (a test checks the document holds exactly this table) and
  the Gradient weights and Packing pages draw.

Example: blocks_frame(pack([a (3 tokens), b (2 tokens)], PackOptions(8))) -> rows (sequence 0, sample a, start 0,
length 3) and (sequence 0, sample b, start 3, length 2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from typing import Any

import pandas as pd

from inspector.constants import IGNORE_INDEX
from inspector.train.packing import PADDING, Packing, PackInput, PackOptions, pack, weights_before_after
from inspector.views.viz import (_CELL, MAX_HTML_TOKENS, SEGMENT_COLORS, _e, _state_style, _token_title,
                  flags_by_position, fraction_text, plotly_text, token_state, token_table_frame, token_texts,
                  visible_text)
from inspector.labels.weights import REDUCTION_LABELS, REDUCTION_NAMES, WeightsBeforeAfter

# light hues, readable with black text, neighbours far apart; sample i gets PALETTE[i % len(PALETTE)]
PALETTE = ("#93c5fd", "#fca5a5", "#86efac", "#fcd34d", "#c4b5fd", "#f9a8d4", "#67e8f9", "#fdba74", "#a5b4fc",
           "#bef264", "#5eead4", "#fda4af", "#d8b4fe", "#fde68a", "#7dd3fc", "#bbf7d0", "#f0abfc", "#fed7aa",
           "#99f6e4", "#e9d5ff")
PADDING_COLOR = "#e5e7eb"


def sample_color(sample: int) -> str:
    """The block colour of sample index ``sample``; padding (``PADDING``) is gray."""
    return PADDING_COLOR if sample == PADDING else PALETTE[sample % len(PALETTE)]


# --- blocks ---------------------------------------------------------------------------------------------------------

def blocks_frame(packing: Packing) -> pd.DataFrame:
    """One row per block: every piece of every packed sequence, then the padding the collator adds to its row
    (padded layout: up to the micro-batch's longest row; padding-free: only ``pad_to_multiple_of``, on the batch's
    last sequence). Columns: sequence, batch, kind ("sample" / "padding"), sample (index, ``PADDING`` for padding),
    sample_id, start (offset in the sequence), length, tokens (e.g. "0..1023 of 1156"), labeled, truncated, split,
    color."""
    fates = packing.fates
    batch_of = {i: b for b, members in enumerate(packing.batches) for i in members}
    rows_of = {}  # sequence -> padding in its row (padded) / after it (padding-free: the batch's last sequence)
    for row in packing.rows:
        rows_of[row.sequences[-1]] = row.padding
    records = []
    for seq in packing.sequences:
        for piece in seq.pieces:
            fate = fates[piece.sample]
            x = packing.samples[piece.sample]
            records.append({
                "sequence": seq.index, "batch": batch_of[seq.index], "kind": "sample", "sample": piece.sample,
                "sample_id": x.id, "start": piece.offset, "length": piece.length,
                "tokens": f"{piece.start}..{piece.end - 1} of {fate.tokens}",
                "labeled": sum(1 for lab in x.labels[piece.start:piece.end] if lab != IGNORE_INDEX),
                "truncated": fate.lost > 0, "split": fate.split, "color": sample_color(piece.sample)})
        pad = rows_of.get(seq.index, 0)
        if pad:
            records.append({"sequence": seq.index, "batch": batch_of[seq.index], "kind": "padding",
                            "sample": PADDING, "sample_id": "", "start": seq.length, "length": pad, "tokens": "",
                            "labeled": 0, "truncated": False, "split": False, "color": PADDING_COLOR})
    columns = ["sequence", "batch", "kind", "sample", "sample_id", "start", "length", "tokens", "labeled", "truncated",
               "split", "color"]
    return pd.DataFrame(records, columns=columns)


def blocks_figure(packing: Packing, highlight: str | None = None, max_sequences: int = 200) -> Any:
    """The packed sequences as horizontal bars (sequence 0 on top), one block per piece coloured by sample, padding
    gray, a dashed line at max_length. ``highlight``: a sample id drawn with a thick outline, the others faded.
    Shows the first ``max_sequences`` sequences (the title says so when there are more)."""
    import plotly.graph_objects as go

    df = blocks_frame(packing)
    df = df[df["sequence"] < max_sequences]
    fig = go.Figure()
    for kind, part in df.groupby("kind", sort=False):
        outline = [3 if highlight and sid == highlight else 0.5 for sid in part["sample_id"]]
        opacity = [1.0 if not highlight or sid == highlight or kind == "padding" else 0.35 for sid in part["sample_id"]]
        hover = [f"{plotly_text(r.sample_id)}<br>tokens {r.tokens}<br>{r.labeled} labeled"
                 + (" · truncated" if r.truncated else "") + (" · split" if r.split else "")
                 if kind == "sample" else f"padding: {r.length} tokens" for r in part.itertuples()]
        fig.add_trace(go.Bar(
            x=part["length"], base=part["start"], y=[f"seq {s}" for s in part["sequence"]], orientation="h",
            marker={"color": list(part["color"]), "line": {"color": "#111827", "width": outline},
                    "opacity": opacity},
            text=[plotly_text(sid) if kind == "sample" else "" for sid in part["sample_id"]], textposition="inside",
            insidetextanchor="middle", hovertext=hover, hoverinfo="text", name=str(kind), showlegend=False,
            customdata=list(part["sample"]),
            # plotly.js styles selected text from these; with a per-bar opacity array and none given, a click
            # throws "Cannot read properties of undefined (reading 'textfont')" and the app never hears of it
            selected={"textfont": {"color": "#111827"}}, unselected={"textfont": {"color": "#4b5563"}}))
    n = packing.stats.sequences
    title = f"{n} packed sequence{'' if n == 1 else 's'} ({packing.options.strategy}, {packing.options.layout.replace('_', '-')})"
    if n > max_sequences:
        title += f": the first {max_sequences}"
    fig.add_vline(x=packing.options.max_length, line_dash="dash", line_color="#6b7280")
    fig.update_layout(barmode="overlay", title=title, xaxis_title="token offset in the packed sequence",
                      yaxis={"autorange": "reversed", "categoryorder": "array",
                             "categoryarray": [f"seq {s}" for s in range(min(n, max_sequences))]},
                      height=max(220, 28 * min(n, max_sequences) + 120), margin={"l": 60, "r": 20, "t": 50, "b": 40},
                      plot_bgcolor="#ffffff")
    return fig


# --- one sequence, token by token --------------------------------------------------------------------------------

def _trainer_labels(packing: Packing, index: int) -> tuple[list[int], list[int]]:
    """(labels the loss reads, position_ids the model gets) for the tokens of packed sequence ``index``."""
    for row in packing.rows:
        if index in row.sequences:
            a = row.offsets[row.sequences.index(index)]
            n = packing.sequences[index].length
            return row.labels[a:a + n], row.position_ids[a:a + n]
    raise IndexError(f"packed sequence {index} is in no collated row")


def sequence_table(packing: Packing, index: int, samples: Sequence[Any] | None = None,
                   decode: Callable[[int], str] | None = None, findings: Iterable[Any] = ()) -> pd.DataFrame:
    """One row per token of packed sequence ``index``.

    Columns of ``viz.token_table`` (index, token_id, token, label, trained, role, message, special, state, flag) where
    ``label`` is the label the loss reads after the collator and ``state`` follows it; plus sample (index), sample_id,
    sample_position, position_id (what the model gets), packed_label (as packed = unpacked), boundary (the first
    token of a piece: position ids restart there when the layout passes them) and color. ``samples``: the original
    ``labels.Sample`` objects, in packing order, for token texts and roles; ``decode`` otherwise; ``findings``: those
    of ``check_packing`` (and any others), whose positions into a sample flag the token.
    """
    if not 0 <= index < len(packing.sequences):
        raise IndexError(f"there is no packed sequence {index} (0..{len(packing.sequences) - 1})")
    seq = packing.sequences[index]
    labels, positions = _trainer_labels(packing, index)
    findings = list(findings)
    flags = {s: flags_by_position(findings, x.id) for s, x in enumerate(packing.samples)
             if s in set(seq.token_samples)}
    texts: dict[int, list[str]] = {}
    rows = []
    starts = {p.offset for p in seq.pieces}
    for t, (s, p) in enumerate(zip(seq.token_samples, seq.token_positions)):
        original = samples[s] if samples is not None else None
        if s not in texts:
            ids = packing.samples[s].input_ids
            texts[s] = (token_texts(original.text, original.offsets, ids, decode) if original is not None
                        else [decode(i) if decode else str(i) for i in ids])
        reasons = flags.get(s, {}).get(p, [])
        segments = getattr(original, "segments", None)
        message = getattr(original, "message_index", None)
        rows.append({
            "index": t, "token_id": seq.input_ids[t], "token": visible_text(texts[s][p]), "label": labels[t],
            "trained": labels[t] != IGNORE_INDEX, "role": segments[p] if segments is not None else "",
            "message": int(message[p]) if message is not None and int(message[p]) >= 0 else None,
            "special": False, "state": token_state(labels[t], bool(reasons)), "flag": "; ".join(reasons),
            "sample": s, "sample_id": packing.samples[s].id, "sample_position": p, "position_id": positions[t],
            "packed_label": seq.labels[t], "boundary": t in starts, "color": sample_color(s)})
    df = pd.DataFrame(rows)
    if len(df):
        df["message"] = df["message"].astype("Int64")
    return df


def sequence_table_html(df: pd.DataFrame, max_rows: int = MAX_HTML_TOKENS) -> str:
    """``sequence_table`` as Inspect's coloured token table (``viz.token_table_html``: rows by state, the label cell
    trained/masked, reasons on hover, every text escaped) with three more columns: the sample (in its block colour),
    the token's position in it and the position id the model gets. A boundary row (a piece starts there) has a thick
    top line in its sample's colour and ``data-boundary="true"``.

    Example: two samples a (3 tokens), b (2), padding-free -> rows 0..4, position ids 0 1 2 0 1, rows 0 and 3 are
    boundaries.
    """
    heads = ("#", "token id", "token", "label", "role", "sample", "pos in sample", "position id")
    head = "".join(f'<th style="{_CELL}text-align:left;background:#ffffff">{h}</th>' for h in heads)
    body = []
    for row in df.head(max_rows).to_dict("records"):
        style = _state_style(row["state"])
        token_style = "font-weight:700;" if row["special"] else ""
        role_bg = SEGMENT_COLORS.get(row["role"], "#ffffff")
        label_state = token_state(row["label"], False)
        edge = f"border-top:3px solid {row['color']};" if row["boundary"] and row["index"] else ""
        title = _token_title(row) + f" | sample {row['sample_id']} token {row['sample_position']}" \
            + f" | position id {row['position_id']}"
        chip = f"background-color:{row['color']};color:#111827;padding:0 4px;border-radius:3px"
        body.append(
            f'<tr class="sfti-row" data-state="{row["state"]}" data-boundary="{str(bool(row["boundary"])).lower()}" '
            f'data-sample="{_e(row["sample_id"])}" title="{_e(title)}" style="{style}">'
            f'<td style="{_CELL}{style}{edge}">{row["index"]}</td>'
            f'<td style="{_CELL}{style}{edge}">{row["token_id"]}</td>'
            f'<td class="sfti-token" style="{_CELL}{style}{edge}{token_style}">{_e(row["token"])}</td>'
            f'<td class="sfti-label" data-label="{row["label"]}" data-state="{label_state}" '
            f'style="{_CELL}{_state_style(label_state)}{edge}">{row["label"]}</td>'
            f'<td style="{_CELL}{style}{edge}"><span style="background-color:{role_bg};color:#111827;padding:0 4px;'
            f'border-radius:3px">{_e(row["role"])}</span></td>'
            f'<td class="sfti-sample" style="{_CELL}{style}{edge}"><span style="{chip}">{_e(row["sample_id"])}'
            f'</span></td>'
            f'<td style="{_CELL}{style}{edge}">{row["sample_position"]}</td>'
            f'<td class="sfti-position" style="{_CELL}{style}{edge}">{row["position_id"]}</td></tr>')
    return token_table_frame(head, body, len(df), max_rows, "sfti-packed")


# --- gradient weights before and after -------------------------------------------------------------------------------

def weights_frame(comparison: WeightsBeforeAfter, packing: Packing, only_weighted: bool = True) -> pd.DataFrame:
    """One row per sample token: sample_id, position, token_id, label, before and after (exact text; "cut" when the
    layout does not hold the token), before_value / after_value (floats, 0 when cut) and change ("up", "down", "same",
    "cut"). ``only_weighted`` keeps the tokens with a non-zero weight in either layout."""
    rows = []
    for s, (x, before, after) in enumerate(zip(packing.samples, comparison.before, comparison.after)):
        for p, (b, a) in enumerate(zip(before, after)):
            if only_weighted and not (b or a):
                continue
            bv, av = float(b or 0), float(a or 0)
            change = "cut" if a is None and b is not None else ("up" if av > bv else "down" if av < bv else "same")
            rows.append({"sample_id": x.id, "sample": s, "position": p, "token_id": x.input_ids[p],
                         "label": x.labels[p], "before": "cut" if b is None else fraction_text(b),
                         "after": "cut" if a is None else fraction_text(a), "before_value": bv, "after_value": av,
                         "change": change})
    columns = ["sample_id", "sample", "position", "token_id", "label", "before", "after", "before_value",
               "after_value", "change"]
    return pd.DataFrame(rows, columns=columns)


def sample_weights_frame(comparison: WeightsBeforeAfter, packing: Packing) -> pd.DataFrame:
    """One row per sample: sample_id, labeled tokens, its total weight before and after (exact text and float)."""
    rows = []
    for x, (b, a) in zip(packing.samples, comparison.sample_totals()):
        rows.append({"sample_id": x.id, "labeled": x.num_labeled, "before": fraction_text(b),
                     "after": fraction_text(a), "before_value": float(b), "after_value": float(a)})
    return pd.DataFrame(rows, columns=["sample_id", "labeled", "before", "after", "before_value", "after_value"])


def weights_figure(comparison: WeightsBeforeAfter, packing: Packing, max_samples: int = 60) -> Any:
    """Grouped bars per sample: its share of the objective unpacked vs packed, exact fractions on the bars."""
    import plotly.graph_objects as go

    df = sample_weights_frame(comparison, packing).head(max_samples)
    fig = go.Figure()
    for col, name, color in (("before", "unpacked", "#9ca3af"), ("after", "packed", "#2563eb")):
        fig.add_trace(go.Bar(x=[plotly_text(x) for x in df["sample_id"]], y=df[f"{col}_value"], name=name,
                             marker_color=color, text=df[col], textposition="outside", hovertext=df[col],
                             hoverinfo="x+text+name"))
    fig.update_layout(barmode="group", title=f"Weight of each sample: {REDUCTION_LABELS[comparison.reduction]}",
                      yaxis_title="summed gradient weight", xaxis_title="sample", plot_bgcolor="#ffffff",
                      margin={"l": 60, "r": 20, "t": 80, "b": 60},
                      legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"})
    return fig


# --- the worked example ------------------------------------------------------------------------------------------

def worked_example_samples() -> list[PackInput]:
    """Two short answers and one long one, each after a two-token prompt (ids: prompt 1, 2; answers 10.., 20..)."""
    q = IGNORE_INDEX
    return [PackInput("short-1", [1, 2, 10], [q, q, 10]), PackInput("short-2", [1, 2, 11], [q, q, 11]),
            PackInput("long", [1, 2, 20, 21, 22, 23, 24, 25], [q, q, 20, 21, 22, 23, 24, 25])]


def worked_example(options: PackOptions | None = None) -> dict[str, Any]:
    """The example of ``docs/packing.md``: the three samples packed with bfd into one sequence of at most 16 tokens
    (padding-free, one sequence per micro-batch), and every reduction's weights before and after.

    Returns {"samples", "packing", "weights": {reduction: WeightsBeforeAfter}}. Under ``sample_mean`` the short
    answers' tokens fall from 1/3 to 1/8 and the long answer's rise from 1/18 to 1/8 (its total from 1/3 to 3/4).
    """
    options = options or PackOptions(16, "bfd", padding_free=True, batch_size=1)
    samples = worked_example_samples()
    packing = pack(samples, options)
    return {"samples": samples, "packing": packing,
            "weights": {r: weights_before_after(packing, r) for r in REDUCTION_NAMES}}


def _arrow(before: Fraction | None, after: Fraction | None) -> str:
    text = [("cut" if w is None else fraction_text(w)) for w in (before, after)]
    return f"{text[0]} → {text[1]}"


EXAMPLE_COLUMNS = ("short-1's answer token", "short-2's answer token", "each of long's 6 answer tokens",
                   "long's answer in total")


def worked_example_frame(example: dict[str, Any] | None = None) -> pd.DataFrame:
    """The worked example's table as data: one row per reduction (its code name), per ``EXAMPLE_COLUMNS`` the weight
    unpacked → packed as exact text. Example: the ``sample_mean`` row reads "1/3 → 1/8", "1/3 → 1/8", "1/18 → 1/8",
    "1/3 → 3/4"."""
    ex = example or worked_example()
    rows = []
    for r in REDUCTION_NAMES:
        w = ex["weights"][r]
        cells = (_arrow(w.before[0][2], w.after[0][2]), _arrow(w.before[1][2], w.after[1][2]),
                 _arrow(w.before[2][2], w.after[2][2]), _arrow(*w.sample_totals()[2]))
        rows.append({"reduction": r, **dict(zip(EXAMPLE_COLUMNS, cells))})
    return pd.DataFrame(rows, columns=["reduction", *EXAMPLE_COLUMNS])


def worked_example_markdown() -> str:
    """The worked example's table, as ``docs/packing.md`` shows it: per reduction, the weight of each short answer's
    token, of each of the long answer's tokens and of the long answer in total, unpacked → packed."""
    lines = ["| reduction | " + " | ".join(EXAMPLE_COLUMNS) + " |", "|---|---|---|---|---|"]
    for row in worked_example_frame().to_dict("records"):
        lines.append(f"| `{row['reduction']}` | " + " | ".join(row[c] for c in EXAMPLE_COLUMNS) + " |")
    return "\n".join(lines)
