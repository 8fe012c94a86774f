"""What the Packing page will draw: blocks per sample, one sequence's token table, weights before and after."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.constants import IGNORE_INDEX
from inspector.labels.engine import LabelEngine, LabelOptions
from inspector.data.loaders import load_data
from inspector.train.packing import PADDING, PackInput, PackOptions, check_packing, pack, weights_before_after
from inspector.views.packing import (PADDING_COLOR, blocks_figure, blocks_frame, sample_color, sample_weights_frame,
                                   sequence_table, weights_figure, weights_frame, worked_example)
from inspector.views.viz import token_table_html

Q = IGNORE_INDEX
DEMO = Path(__file__).resolve().parents[1] / "inspector" / "demo" / "demo.jsonl"


def small(**kw):
    samples = [PackInput("a", [1, 2, 3], [Q, 2, 3]), PackInput("b", [4, 5], [Q, 5]), PackInput("c", [6] * 7, [6] * 7)]
    return pack(samples, PackOptions(**{"max_length": 5, **kw}))


def test_blocks_frame_pieces_and_padding():
    p = small()  # bfd at 5: c (cut to 5) | a + b
    df = blocks_frame(p)
    rows = [(r.sequence, r.kind, r.sample_id, r.start, r.length, r.tokens) for r in df.itertuples()]
    assert rows == [(0, "sample", "c", 0, 5, "0..4 of 7"), (1, "sample", "a", 0, 3, "0..2 of 3"),
                    (1, "sample", "b", 3, 2, "0..1 of 2")]
    assert df.loc[0, "truncated"] and not df.loc[1, "truncated"]
    assert list(df["color"]) == [sample_color(2), sample_color(0), sample_color(1)]
    wrapped = blocks_frame(small(strategy="wrapped"))  # 12 tokens: 5 | 5 | 2, the last padded to 5
    pad = wrapped[wrapped["kind"] == "padding"]
    assert list(zip(pad["sequence"], pad["start"], pad["length"])) == [(2, 2, 3)]
    assert set(pad["sample"]) == {PADDING} and set(pad["color"]) == {PADDING_COLOR}
    assert wrapped[wrapped["sample_id"] == "c"]["split"].all()


def test_blocks_figure():
    fig = blocks_figure(small(strategy="wrapped"), highlight="a")
    bars = {t.name: t for t in fig.data}
    assert set(bars) == {"sample", "padding"}
    assert list(bars["sample"].text) == ["a", "b", "c", "c"]  # a b | c[0:5] | c[5:7]
    assert list(bars["sample"].base) == [0, 3, 0, 0] and list(bars["sample"].x) == [3, 2, 5, 2]
    assert list(bars["sample"].marker.line.width) == [3, 0.5, 0.5, 0.5]
    assert list(bars["padding"].base) == [2] and list(bars["padding"].x) == [3]
    assert "3 packed sequences (wrapped, padded)" in fig.layout.title.text


def test_sequence_table_with_real_samples(deepseek_setup):
    convs = load_data(DEMO).conversations[:3]
    samples, _ = LabelEngine(deepseek_setup).build(convs, LabelOptions(strategy="all-tokens"))
    p = pack(samples, PackOptions(1024))
    findings = check_packing(p)
    seq = p.sequences[0]
    df = sequence_table(p, 0, samples=samples, findings=findings)
    assert len(df) == seq.length
    assert list(df["sample_position"]) == seq.token_positions
    assert list(df["packed_label"]) == seq.labels
    assert list(df["position_id"]) == list(range(seq.length))  # padded layout: the model counts over the row
    assert list(df.index[df["boundary"]]) == [piece.offset for piece in seq.pieces]
    second = seq.pieces[1]
    row = df.iloc[second.offset]  # the second sample's first token is labeled (all-tokens): flagged
    assert row["state"] == "flagged" and "cross-sample-prediction" in row["flag"]
    assert row["role"] == samples[second.sample].segments[0]
    html = token_table_html(df)
    assert html.count('class="sfti-row"') == seq.length
    free = pack(samples, PackOptions(1024, padding_free=True))
    df = sequence_table(free, 0, samples=samples)
    assert list(df["position_id"]) == free.sequences[0].position_ids
    assert df.iloc[free.sequences[0].pieces[1].offset]["label"] == Q  # the collator masked it
    with pytest.raises(IndexError):
        sequence_table(free, 99)


def test_sequence_table_decodes_without_samples():
    df = sequence_table(small(), 1, decode=lambda i: f"<{i}>")
    assert list(df["token"]) == ["<1>", "<2>", "<3>", "<4>", "<5>"]
    assert list(df["sample_id"]) == ["a"] * 3 + ["b"] * 2


def test_weights_frames_and_figure():
    ex = worked_example()
    w, p = ex["weights"]["sample_mean"], ex["packing"]
    df = weights_frame(w, p)
    assert list(df["before"]) == ["1/3", "1/3"] + ["1/18"] * 6
    assert set(df["after"]) == {"1/8"} and list(df["change"]) == ["down", "down"] + ["up"] * 6
    totals = sample_weights_frame(w, p)
    assert list(totals["after"]) == ["1/8", "1/8", "3/4"]
    fig = weights_figure(w, p)
    assert [t.name for t in fig.data] == ["unpacked", "packed"]
    assert list(fig.data[1].text) == ["1/8", "1/8", "3/4"]


def test_weights_frame_marks_cut_tokens():
    p = small()
    w = weights_before_after(p, "sum")
    df = weights_frame(w, p, only_weighted=False)
    c = df[df["sample_id"] == "c"]
    assert list(c["after"])[5:] == ["cut", "cut"] and list(c["before"])[5:] == ["cut", "cut"]


def test_sequence_table_html_shows_boundaries_position_ids_and_escapes_ids():
    from inspector.views.packing import sequence_table_html

    samples = [PackInput("a", [1, 2, 3], [Q, 2, 3]), PackInput("<b>&", [4, 5], [Q, 5])]
    p = pack(samples, PackOptions(8, padding_free=True))
    df = sequence_table(p, 0, decode=lambda i: f"t{i}")
    html = sequence_table_html(df)
    rows = html.split('<tr class="sfti-row"')[1:]
    assert len(rows) == 5
    assert [r.split('data-boundary="')[1][:4] for r in rows] == ["true", "fals", "fals", "true", "fals"]
    positions = [r.split('class="sfti-position"')[1].split(">")[1].split("<")[0] for r in rows]
    assert positions == ["0", "1", "2", "0", "1"]  # padding-free: position ids restart at the second sample
    labels = [r.split('data-label="')[1].split('"')[0] for r in rows]
    assert labels == [str(Q), "2", "3", str(Q), "5"]  # b's first label is the collator's -100
    assert "border-top:3px solid " + sample_color(1) in rows[3] and "border-top" not in rows[0]
    assert "&lt;b&gt;&amp;" in html and "<b>" not in html
    assert 'class="sfti-tokens' in html  # Inspect's table class: the same look and the same browser checks
    assert "Showing the first 2 of 5 tokens" in sequence_table_html(df, max_rows=2)


def test_worked_example_frame_is_the_documented_table():
    from inspector.views.packing import EXAMPLE_COLUMNS, worked_example_frame
    from inspector.labels.weights import REDUCTION_NAMES

    df = worked_example_frame()
    assert list(df["reduction"]) == list(REDUCTION_NAMES)
    mean = df.set_index("reduction").loc["sample_mean"]
    assert [mean[c] for c in EXAMPLE_COLUMNS] == ["1/3 → 1/8", "1/3 → 1/8", "1/18 → 1/8", "1/3 → 3/4"]
    assert df.set_index("reduction").loc["sum", EXAMPLE_COLUMNS[3]] == "6 → 6"


def test_blocks_figure_can_be_clicked_in_the_browser():
    """plotly.js styles the text of selected bars from ``selected``/``unselected``: with a per-bar opacity and
    neither given, a click throws in the browser and the app never hears of it (test_browser clicks a block)."""
    for trace in blocks_figure(small(strategy="wrapped"), highlight="a").data:
        assert trace.selected.textfont.color and trace.unselected.textfont.color


def test_figures_show_markup_in_sample_ids_as_text():
    samples = [PackInput('<a href="http://host/">x</a>', [1, 2, 3], [Q, 2, 3]), PackInput("b&c", [4, 5], [Q, 5])]
    p = pack(samples, PackOptions(8))
    blocks = blocks_figure(p).data[0]
    assert list(blocks.text) == ['&lt;a href="http://host/"&gt;x&lt;/a&gt;', "b&amp;c"]
    assert all("<a " not in h for h in blocks.hovertext)
    bars = weights_figure(weights_before_after(p, "sum"), p).data[0]
    assert list(bars.x) == ['&lt;a href="http://host/"&gt;x&lt;/a&gt;', "b&amp;c"]
