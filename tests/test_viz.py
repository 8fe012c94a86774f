"""inspector.views.viz: what the app draws, as plain data — exact rows, escaped HTML, exact shares and weights."""

from __future__ import annotations

import ast
from fractions import Fraction as F
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from inspector.views import viz
from inspector.constants import IGNORE_INDEX, SEGMENTS
from inspector.conversations import Conversation, Message
from inspector.labels.engine import LabelEngine, LabelOptions
from inspector.labels.spans import Span

X = IGNORE_INDEX


@pytest.fixture(scope="module")
def chat(tiny_setup):
    """A ChatML sample whose user text holds markup: '<b>bold</b>' must reach HTML escaped."""
    conv = Conversation("c1", [Message("user", "Hello! <b>bold</b>"), Message("assistant", "How can I help you today?")])
    (sample,) = LabelEngine(tiny_setup).build_one(conv)
    return sample


@pytest.fixture(scope="module")
def decode(tiny_tokenizer):
    return lambda i: tiny_tokenizer.decode([i])


def fake_sample(ids, labels, segments, message_index, text=None, offsets=None, sid="s", cid="c", truncation=None):
    n = len(ids)
    text = text if text is not None else "x" * n
    offsets = offsets if offsets is not None else [[i, i + 1] for i in range(n)]
    return SimpleNamespace(id=sid, conversation_id=cid, input_ids=list(ids), labels=list(labels), segments=segments,
                           message_index=np.asarray(message_index), text=text,
                           offsets=np.asarray(offsets).reshape(-1, 2), truncation=truncation)


# --- token texts --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, shown", [
    ("Hi there\n", "Hi·there↵"),
    (" a\n\tb", "·a↵⇥b"),
    ("\r\n", "␍↵"),
    ("", "∅"),
    ("\x00\x7f", "\\x00\\x7f"),
    ("<｜User｜>", "<｜User｜>"),
])
def test_visible_text(text, shown):
    assert viz.visible_text(text) == shown


def test_token_texts_use_the_rendered_text_and_decode_empty_or_repeated_offsets():
    assert viz.token_texts("Hi!", [[0, 2], [2, 3], [3, 3]], [1, 2, 7], {7: "</s>"}.get) == ["Hi", "!", "</s>"]
    # byte-level pieces of one character share its offsets: the second piece is decoded on its own
    assert viz.token_texts("é", [[0, 1], [0, 1]], [5, 6], {6: "\ufffd"}.get) == ["é", "\ufffd"]
    assert viz.token_texts("ab", [[0, 0]], [9]) == [""]


def test_token_table_rows_match_the_sample(chat, decode, tiny_tokenizer):
    im_start, im_end = tiny_tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    df = viz.token_table(chat, decode, special_ids=[im_start, im_end])
    assert list(df.columns) == ["index", "token_id", "token", "label", "trained", "role", "message", "special",
                                "state", "flag"]
    assert df["token_id"].tolist() == chat.input_ids
    assert df["label"].tolist() == chat.labels
    assert df["index"].tolist() == list(range(len(chat.input_ids)))
    trained = df[df["trained"]]
    # exactly the answer and the <|im_end|> that closes it are trained, as the engine says
    assert "".join(trained["token"]).replace("·", " ") == "How can I help you today?<|im_end|>"
    assert set(trained["state"]) == {"trained"}
    assert set(df.loc[~df["trained"], "state"]) == {"masked"}
    assert df.loc[0, "token"] == "<|im_start|>" and bool(df.loc[0, "special"])
    assert df.loc[2, "token"] == "↵"
    assert df.loc[df["token"] == "Hello", "role"].tolist() == ["user"]
    assert df.loc[df["token"] == "Hello", "message"].tolist() == [0]
    assert df.loc[0, "message"] is pd_na()


def pd_na():
    import pandas as pd

    return pd.NA


def test_flags_win_over_trained_and_carry_their_reasons(chat, decode):
    first_trained = chat.labels.index(next(x for x in chat.labels if x != X))
    findings = [SimpleNamespace(code="label-leak", message="user text <labeled>", positions=[first_trained, 1],
                                sample_id=chat.id),
                SimpleNamespace(code="other", message="not this sample", positions=[2], sample_id="else")]
    flags = viz.flags_by_position(findings, chat.id)
    assert flags == {first_trained: ["label-leak: user text <labeled>"], 1: ["label-leak: user text <labeled>"]}
    df = viz.token_table(chat, decode, flags=flags)
    assert df.loc[first_trained, "state"] == "flagged"
    assert df.loc[1, "state"] == "flagged"
    assert df.loc[2, "state"] == "masked"
    assert df.loc[first_trained, "flag"] == "label-leak: user text <labeled>"
    # dict findings work too
    assert viz.flags_by_position([{"code": "a", "message": "b", "positions": [3]}]) == {3: ["a: b"]}


# --- HTML ---------------------------------------------------------------------------------------------------------

def test_token_table_html_colors_and_escapes(chat, decode):
    flags = {1: ['label-leak: "quoted" <x>']}
    df = viz.token_table(chat, decode, flags=flags)
    out = viz.token_table_html(df)
    assert out.count('class="sfti-row"') == len(chat.input_ids)
    n_masked = chat.labels.count(X)
    assert out.count('data-label="-100"') == n_masked
    assert out.count('class="sfti-label" data-label="-100" data-state="masked" '
                     'style="padding:1px 8px;border-bottom:1px solid #ffffff;white-space:pre;'
                     'background-color:#e5e7eb;') == n_masked
    trained_cells = out.count('data-state="trained" style="padding:1px 8px;border-bottom:1px solid #ffffff;'
                              'white-space:pre;background-color:#bbf7d0;')
    assert trained_cells == len(chat.labels) - n_masked
    # data text is escaped: the user's "<b>" never becomes a tag, the reason's quotes never close the attribute
    assert ">&lt;<" in out  # the "<" token of "<b>"
    assert 'title="#1 id' in out and "label-leak: &quot;quoted&quot; &lt;x&gt;" in out
    assert '<tr class="sfti-row" data-state="flagged"' in out
    assert "Showing the first" not in out
    assert "Showing the first 3 of" in viz.token_table_html(df, max_rows=3)


def test_html_views_never_contain_raw_data_markup(tiny_setup, decode):
    evil = '<script>alert(1)</script><img src=x onerror="y">'
    conv = Conversation("e", [Message("user", evil), Message("assistant", evil)])
    (sample,) = LabelEngine(tiny_setup).build_one(conv)
    df = viz.token_table(sample, decode)
    for out in (viz.token_table_html(df), viz.chips_html(df),
                viz.rendered_html(sample.text, sample.spans, sample.offsets, sample.labels),
                viz.compare_html(viz.compare_table(df, df))):
        assert "<script" not in out and "<img" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in viz.rendered_html(sample.text, sample.spans)


def test_chips_break_lines_after_newline_tokens(chat, decode):
    df = viz.token_table(chat, decode)
    out = viz.chips_html(df)
    assert out.count('class="sfti-chip"') == len(chat.input_ids)
    assert out.count("<br>") == sum("↵" in t for t in df["token"])
    assert out.count('data-state="trained"') == len(chat.labels) - chat.labels.count(X)


def test_char_segments_and_trained_chars():
    spans = [Span(0, "user", "content", 3, 5, "exact")]
    assert viz.char_segments("<u>Hi", spans) == ["template"] * 3 + ["user"] * 2
    assert viz.trained_chars("Hi!", [[0, 2], [2, 3]], [X, 5]).tolist() == [False, False, True]
    assert viz._runs(["a", "a", "b"]) == [(0, 2, "a"), (2, 3, "b")]
    assert viz._runs([]) == []


def test_rendered_html_colors_segments_and_underlines_trained_text(chat):
    out = viz.rendered_html(chat.text, chat.spans, chat.offsets, chat.labels)
    assert '<span class="sfti-seg" data-segment="user" data-trained="false" style="background-color:#dbeafe;">' \
           "Hello! &lt;b&gt;bold&lt;/b&gt;</span>" in out
    assert 'data-segment="assistant" data-trained="true"' in out
    assert "How can I help you today?</span>" in out
    # every character is shown exactly once
    import html as _html
    import re

    assert _html.unescape(re.sub(r"<[^>]+>", "", out)) == chat.text


# --- compare ------------------------------------------------------------------------------------------------------

def test_align_tokens():
    assert viz.align_tokens([1, 2, 3], [1, 3, 4]) == [(0, 0), (1, None), (2, 1), (None, 2)]
    assert viz.align_tokens([], [5]) == [(None, 0)]


def test_compare_assistant_only_with_all_tokens(tiny_setup, decode):
    conv = Conversation("c", [Message("user", "Hello!"), Message("assistant", "How can I help?")])
    engine = LabelEngine(tiny_setup)
    (a,) = engine.build_one(conv, LabelOptions(strategy="assistant-only"))
    (b,) = engine.build_one(conv, LabelOptions(strategy="all-tokens"))
    cmp = viz.compare_table(viz.token_table(a, decode), viz.token_table(b, decode))
    assert len(cmp) == len(a.input_ids)
    assert cmp["status"].value_counts().to_dict() == {"label differs": a.labels.count(X),
                                                      "same": len(a.labels) - a.labels.count(X)}
    assert cmp["label_b"].tolist() == b.input_ids
    out = viz.compare_html(cmp, "assistant-only", "all-tokens", only_differences=True)
    assert out.count('class="sfti-cmp-row"') == a.labels.count(X)
    assert "label assistant-only" in out


def test_compare_marks_tokens_only_on_one_side():
    a = fake_sample([1, 2, 3], [X, 2, 3], ["user", "assistant", "assistant"], [0, 1, 1])
    b = fake_sample([1, 3], [X, 3], ["user", "assistant"], [0, 1])
    cmp = viz.compare_table(viz.token_table(a), viz.token_table(b))
    assert cmp["status"].tolist() == ["same", "only in A", "same"]
    assert cmp["index_b"].tolist()[1] is pd_na()


# --- ratios -------------------------------------------------------------------------------------------------------

def two_samples():
    s1 = fake_sample([1] * 10, [X] * 7 + [5, 5, 5], ["template"] * 4 + ["user"] * 3 + ["assistant"] * 3,
                     [-1] * 4 + [0] * 3 + [1] * 3, sid="a", cid="a")
    s2 = fake_sample([1] * 10, [X] * 8 + [5, 5], ["template"] * 6 + ["user"] * 2 + ["assistant"] * 2,
                     [-1] * 6 + [0] * 2 + [1] * 2, sid="b", cid="b",
                     truncation=SimpleNamespace(tokens_cut=4, original_length=14))
    return s1, s2


def test_sample_stats_and_overall_shares():
    s1, s2 = two_samples()
    row = viz.sample_stats(s1)
    assert row == {"sample_id": "a", "conversation_id": "a", "tokens": 10, "trained": 3, "trained_share": 0.3,
                   "template": 4, "system": 0, "user": 3, "assistant": 3, "tool": 0, "truncated": False,
                   "tokens_cut": 0, "original_tokens": 10}
    stats = viz.stats_table([s1, s2])
    assert stats["original_tokens"].tolist() == [10, 14]
    assert stats["user_share"].tolist() == [0.3, 0.2]
    overall = viz.overall_shares(stats)
    assert overall.set_index("segment")["tokens"].to_dict() == {"template": 10, "system": 0, "user": 5,
                                                               "assistant": 5, "tool": 0, "trained": 5}
    assert overall.set_index("segment")["share"].to_dict() == {"template": 0.5, "system": 0.0, "user": 0.25,
                                                              "assistant": 0.25, "tool": 0.0, "trained": 0.25}
    long = viz.shares_long(stats)
    assert len(long) == 2 * len(SEGMENTS)
    assert long[(long.sample_id == "b") & (long.segment == "template")]["share"].tolist() == [0.6]


def test_empty_dataset_has_zero_shares():
    stats = viz.stats_table([])
    assert stats.empty
    assert viz.overall_shares(stats)["share"].tolist() == [0.0] * (len(SEGMENTS) + 1)


def test_charts_are_plotly_figures_of_bounded_size():
    import plotly.graph_objects as go

    stats = viz.stats_table(two_samples())
    bars = viz.share_bars(stats)
    assert isinstance(bars, go.Figure) and bars.layout.barmode == "stack"
    assert [t.name for t in bars.data] == list(SEGMENTS)
    assert list(bars.data[0].y) == ["a", "b"]
    assert [row[0] for row in bars.data[0].customdata] == ["a", "b"]  # a click opens the conversation
    assert list(bars.data[SEGMENTS.index("template")].x) == [0.4, 0.6]
    hist = viz.length_histogram(stats, max_length=12, bins=7)
    assert sum(hist.data[0].y) == 2 and len(hist.data[0].y) == 7
    assert hist.layout.shapes[0].x0 == 12  # the max-length line
    assert hist.layout.yaxis.dtick == 1 and hist.layout.yaxis.tickformat == ",d"  # integer ticks on counts
    share = viz.share_histogram(stats, "trained_share", bins=10)
    assert sum(share.data[0].y) == 2 and share.layout.xaxis.tickformat == ".0%"
    overall = viz.overall_share_figure(viz.overall_shares(stats))
    assert list(overall.data[0].y) == [*SEGMENTS, "trained"]


def test_histograms_are_binned_on_the_server():
    h = viz.histogram_counts([1, 2, 2, 9], bins=4, value_range=(0, 12))
    assert h["left"].tolist() == [0, 3, 6, 9] and h["count"].tolist() == [3, 0, 0, 1]


def test_large_scatter_uses_webgl_and_keeps_its_size():
    import pandas as pd

    n = 5000
    stats = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "original_tokens": range(n),
                          "trained_share": [i / n for i in range(n)]})
    big = viz.length_share_scatter(stats)
    assert big.data[0].type == "scattergl" and len(big.data[0].x) == n
    small = viz.length_share_scatter(stats.head(10))
    assert small.data[0].type == "scatter" and list(small.data[0].text) == [f"s{i}" for i in range(10)]
    # the histograms of 100k samples are a few dozen bars
    many = pd.DataFrame({"original_tokens": range(100_000), "trained_share": [0.5] * 100_000})
    assert len(viz.length_histogram(many).data[0].x) == 40


def test_worst_samples_rank_by_a_measure():
    s1, s2 = two_samples()
    stats = viz.stats_table([s1, s2])
    assert viz.worst_samples(stats, "lowest trained share", 1)["sample_id"].tolist() == ["b"]
    assert viz.worst_samples(stats, "most tokens cut by max length", 2)["sample_id"].tolist() == ["b", "a"]
    assert viz.worst_samples(stats, "highest template share", 1)["sample_id"].tolist() == ["b"]
    import pandas as pd

    records = pd.DataFrame({"record": ["a", "b"], "errors": [2, 0]})
    worst = viz.worst_samples(stats, "most error findings", 2, records)
    assert worst["sample_id"].tolist() == ["a", "b"] and worst["errors"].tolist() == [2, 0]


def test_scan_tables_one_row_per_sample_record_and_finding(deepseek_setup):
    from inspector.checks import CheckContext, evaluate
    from inspector.conversations import Rejected
    from inspector.data.loaders import load_data
    from inspector.template.tokenizer import DEMO_DIR

    convs = load_data(DEMO_DIR / "demo.jsonl").conversations
    items = convs + [Rejected("bad-1", None, ["line 3: invalid JSON"])]
    outcomes = evaluate(items, CheckContext(deepseek_setup, LabelOptions(max_length=1024)), keep_samples=True)
    stats, records, findings = viz.scan_tables(outcomes)
    assert len(stats) == sum(oc.num_samples for oc in outcomes)
    assert records["record"].tolist() == [oc.record_id for oc in outcomes]
    assert records["accepted"].tolist() == [oc.accepted for oc in outcomes]
    assert records.set_index("record").loc["bad-1", "reasons"] == "line 3: invalid JSON"
    assert records.set_index("record").loc["bad-1", "stage"] == "load"
    assert len(findings) == sum(len(oc.findings) for oc in outcomes)
    assert records["errors"].sum() == (findings["severity"] == "error").sum()


def test_check_counts_errors_first():
    fs = [SimpleNamespace(code="pad-equals-eos", severity="warning", conversation_id="a", sample_id="a"),
          SimpleNamespace(code="pad-equals-eos", severity="warning", conversation_id="b", sample_id="b"),
          SimpleNamespace(code="no-trainable-tokens", severity="error", conversation_id="c", sample_id="c"),
          {"code": "truncated", "severity": "info", "conversation_id": "c", "sample_id": "c"}]
    df = viz.check_counts(fs)
    assert df.to_dict("records") == [
        {"code": "no-trainable-tokens", "severity": "error", "findings": 1, "conversations": 1},
        {"code": "pad-equals-eos", "severity": "warning", "findings": 2, "conversations": 2},
        {"code": "truncated", "severity": "info", "findings": 1, "conversations": 1}]


# --- gradient weights ------------------------------------------------------------------------------------------------

def test_fractions_frame_shows_the_seed_preset():
    from inspector.labels.weights import session_vs_split_example

    ex = session_vs_split_example()
    df = viz.fractions_frame({"session-level": ex.session.by_answer, "split-turn": ex.split.by_answer})
    assert df.to_dict("index") == {"A": {"session-level": "2/3", "split-turn": "17/24"},
                                   "B": {"session-level": "1/6", "split-turn": "5/24"},
                                   "C": {"session-level": "1/6", "split-turn": "1/12"}}
    floats = viz.fractions_frame({"x": {"A": F(1, 4)}}, as_text=False)
    assert floats.loc["A", "x"] == 0.25
    assert viz.fraction_text(F(2, 1)) == "2" and viz.fraction_text(0) == "0"
    assert viz.weight_text(F(1, 6)) == "1/6"
    assert viz.weight_text(F(6817, 98280)) == "6817/98280 ≈ 6.94%"
    assert viz.fractions_frame({"x": {"A": F(1, 98280)}}, approx=True).loc["A", "x"] == "1/98280 ≈ 0.00%"


def test_weights_read_as_words_percentages_and_exact_fractions_on_hover():
    assert viz.reduction_title("sample_mean") == "mean per sample (sample_mean)"
    assert viz.weight_cell_html(F(1, 6)) == "1/6"
    assert viz.weight_cell_html(F(6817, 98280)) == '<span class="sfti-approx" title="6817/98280">6.94%</span>'
    out = viz.fractions_html({"sample_mean": {"A": F(2, 3), "<b>": F(6817, 98280)}}, index_name="answer",
                             extra={"role": {"A": "assistant"}})
    assert "mean per sample<br><code>sample_mean</code>" in out
    assert '<td class="sfti-weight" data-reduction="sample_mean" style="padding:1px 8px;border-bottom:1px solid ' \
           '#ffffff;white-space:pre;text-align:right">2/3</td>' in out
    assert "&lt;b&gt;" in out and "<b>" not in out
    fig = viz.weights_figure({"sample_mean": {"A": F(2, 3), "B": F(6817, 98280)}, "sum": {"A": 1, "B": 2}})
    assert [t.name for t in fig.data] == ["mean per sample (sample_mean)", "sum (sum)"]
    assert list(fig.data[0].text) == ["2/3", "6.9%"] and fig.data[0].customdata[1][1] == "6817/98280"
    assert list(fig.data[0].x) == ["A", "B"]


def test_organized_batch_html_shows_each_samples_weights():
    from inspector.labels.weights import session_vs_split_example

    out = viz.organized_batch_html(session_vs_split_example().split)
    assert out.count('data-token="A"') == 4 and out.count('data-token="C"') == 1
    assert "<small>1/12</small>" in out and "<small>1/8</small>" in out


def test_turn_keys_and_trained_messages():
    from inspector.labels.spans import Turn

    # <bos> | user | <header> | <think> | answer | <eos>: the turn of message 1 covers chars 3..6
    s = fake_sample([1] * 6, [X, X, X, 4, 5, 6], ["template", "user", "template", "template", "assistant", "template"],
                    [-1, 0, -1, -1, 1, -1])
    s.turns = [Turn(1, 3, 5, 5, 6, "generation-prompt")]
    assert viz.turn_keys(s) == [None, 0, None, 1, 1, 1]
    assert viz.trained_messages(s) == {1}
    s.turns = []
    assert viz.turn_keys(s) == [None, 0, None, None, 1, None]


def test_per_turn_weights_of_a_real_reasoning_sample(deepseek_setup):
    """<think> is markup the template writes inside the answer: its weight goes to the answer, not the question."""
    conv = Conversation("r", [Message("user", "2+2?"), Message("assistant", "4.", reasoning="Two and two.")])
    (sample,) = LabelEngine(deepseek_setup).build_one(conv)
    out = viz.batch_weights([sample])
    assert out["by_turn"]["sum"] == {"r · message 0": 0, "r · message 1": sample.num_trainable}
    assert viz.trained_messages(sample) == {1}


def test_batch_weights_sums_per_role_turn_and_sample():
    from inspector.labels.weights import token_weights

    s1, s2 = two_samples()
    out = viz.batch_weights([s1, s2], micro_batch_size=1)
    assert out["errors"] == {}
    assert out["weights"]["sample_mean"] == token_weights([s1.labels, s2.labels], "sample_mean")
    assert out["by_sample"]["sample_mean"] == {"a": F(1, 2), "b": F(1, 2)}
    assert out["by_sample"]["token_mean"] == {"a": F(3, 5), "b": F(2, 5)}
    # one sample per micro-batch: the old accumulation is a per-micro-batch mean, the fixed one a token mean
    assert out["by_sample"]["naive_accumulation"] == {"a": F(1, 2), "b": F(1, 2)}
    assert out["by_sample"]["accumulated_token_mean"] == {"a": F(3, 5), "b": F(2, 5)}
    assert out["by_role"]["sum"] == {"template": 0, "user": 0, "assistant": 5}
    assert out["by_turn"]["sample_mean"] == {"a · message 0": 0, "a · message 1": F(1, 2), "b · message 0": 0,
                                             "b · message 1": F(1, 2)}
    assert out["turn_roles"] == {"a · message 0": "user", "a · message 1": "assistant", "b · message 0": "user",
                                 "b · message 1": "assistant"}
    both = viz.batch_weights([s1, s2], micro_batch_size=2)
    assert both["micro_batches"] == [[0, 1]]
    assert both["by_sample"]["naive_accumulation"] == {"a": F(3, 5), "b": F(2, 5)}


def test_batch_weights_without_labels_reports_the_mean_reductions():
    s = fake_sample([1, 2], [X, X], ["user", "user"], [0, 0])
    out = viz.batch_weights([s])
    assert set(out["errors"]) == {"sample_mean", "token_mean", "accumulated_token_mean", "naive_accumulation"}
    assert out["by_role"]["sum"] == {"user": 0}


def test_log_prob_html_crosses_out_the_masked_terms():
    from inspector.labels.weights import log_prob_terms

    terms = log_prob_terms([("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2")])
    out = viz.log_prob_html(terms)
    assert out.count("<s ") == 2 and out.count("</s>") == 2
    assert ">log P(x1)</s>" in out
    assert ">log P(y1 | x1)</span>" in out
    assert ">log P(x2 | x1, y1)</s>" in out
    assert out.index("log P(x1, y1, x2, y2) = ") > 0
    table = viz.log_prob_legend_table(terms)
    assert table["in the loss"].tolist() == [False, True, False, True]


def test_viz_imports_no_streamlit():
    tree = ast.parse(Path(viz.__file__).read_text(encoding="utf-8"))
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "streamlit" not in names


def test_batch_weights_never_weigh_the_first_token():
    """all-tokens labels position 0 too, but nothing predicts the first token: it has no loss term."""
    s = fake_sample([1, 2, 3], [1, 2, 3], ["user", "user", "assistant"], [0, 0, 1])
    out = viz.batch_weights([s])
    assert out["weights"]["token_mean"] == [[0, F(1, 2), F(1, 2)]]
    assert out["weights"]["sum"] == [[0, 1, 1]]


def test_user_ids_reach_plotly_labels_escaped():
    """Plotly draws a subset of HTML in labels and hovers: an id must show as typed, never become a link."""
    evil = '<a href="http://host/x">id</a>'
    stats = pd.DataFrame({"sample_id": [evil], "conversation_id": [evil], "tokens": [4], "original_tokens": [4],
                          "trained_share": [0.5], **{s: [1 if s in ("user", "assistant") else 0] for s in SEGMENTS}})
    bars = viz.share_bars(stats)
    assert all("<a" not in y for trace in bars.data for y in trace.y)
    assert bars.data[0].customdata[0][0] == evil  # the click still opens the real id
    scatter = viz.length_share_scatter(stats)
    assert scatter.data[0].text[0] == '&lt;a href="http://host/x"&gt;id&lt;/a&gt;'
    fig = viz.weights_figure({"sum": {evil: F(1)}})
    assert fig.data[0].x[0].startswith("&lt;a") and fig.data[0].customdata[0][0] == evil


def test_a_histogram_bar_lists_exactly_the_samples_it_counts():
    import pandas as pd

    rng = np.random.default_rng(0)
    stats = pd.DataFrame({"sample_id": [f"s{i}" for i in range(300)], "conversation_id": [f"c{i}" for i in range(300)],
                          "original_tokens": rng.integers(1, 500, 300),
                          "trained_share": np.r_[rng.random(297), 0.0, 1.0, 1.0]})
    stats.loc[0, "original_tokens"] = int(stats["original_tokens"].max())  # a tie on the top edge
    for fig, column in ((viz.length_histogram(stats, max_length=450), "original_tokens"),
                        (viz.share_histogram(stats, "trained_share"), "trained_share")):
        bar = fig.data[0]
        members = [viz.samples_in_bin(stats, column, c) for c in bar.customdata]
        assert [len(m) for m in members] == list(bar.y)  # each bar lists as many samples as it counts
        ids = [i for m in members for i in m["sample_id"]]
        assert sorted(ids) == sorted(stats["sample_id"]) and len(set(ids)) == len(ids)  # each sample in one bar
    top = viz.share_histogram(stats, "trained_share").data[0].customdata[-1]
    assert {"s298", "s299"} <= set(viz.samples_in_bin(stats, "trained_share", top)["sample_id"])  # 100% included
    as_sent = {str(i): float(v) for i, v in enumerate(top)}  # how Streamlit's selection event carries the row
    assert viz.samples_in_bin(stats, "trained_share", as_sent).equals(viz.samples_in_bin(stats, "trained_share", top))
