"""What the app draws, as plain data: token tables, colored HTML, ratio tables and chart specs. No Streamlit here.

Every function takes plain values (a ``Sample``, lists, dicts) and returns plain values (a ``DataFrame``, an HTML
string, a Plotly figure), so the pages only hand them to Streamlit and the tests can check them exactly. Charts
stay small at any number of conversations: histograms are binned here, "worst N" charts hold N bars, and the one
chart with a point per sample (length vs trained share) draws with WebGL when it is large.

Token states, in the order they win: ``flagged`` (a check points at the token; red, reason on hover), ``trained``
(label = input id; green), ``masked`` (label = IGNORE_INDEX; gray).

Example: visible_text("Hi there\\n") -> "Hi·there↵"; a trained token "Hi" becomes
``<tr data-state="trained" style="background-color:#bbf7d0"...><td>0</td><td>13347</td><td>Hi</td>...``.

Every text that reaches HTML goes through ``html.escape`` (token texts, reasons, ids): data can hold markup.
Left out: Streamlit widgets, caching and session state (``pages/common/``), computing labels (``labels``), weights
(``weights``) and findings (``checks``).
"""

from __future__ import annotations

import difflib
import html
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd

from inspector.constants import IGNORE_INDEX, SEGMENTS

# --- colors ---------------------------------------------------------------------------------------------------------

STATE_COLORS = {  # background, text
    "trained": ("#bbf7d0", "#14532d"),
    "masked": ("#e5e7eb", "#4b5563"),
    "flagged": ("#fecaca", "#7f1d1d"),
}
SEGMENT_COLORS = {  # background of a segment in the rendered text and in the role column
    "template": "#f3f4f6",
    "system": "#ede9fe",
    "user": "#dbeafe",
    "assistant": "#dcfce7",
    "tool": "#ffedd5",
}
DIFF_COLOR = "#fde68a"  # compare view: a token whose label (or the token itself) differs
VISIBLE = {" ": "·", "\n": "↵", "\t": "⇥", "\r": "␍"}
MAX_HTML_TOKENS = 4000  # longer samples: the HTML views show the first MAX_HTML_TOKENS tokens and say so

_TABLE_STYLE = ("border-collapse:collapse;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px;"
                "width:100%")
_CELL = "padding:1px 8px;border-bottom:1px solid #ffffff;white-space:pre;"
_MONO = "font-family:ui-monospace,SFMono-Regular,Menlo,monospace;"


def plotly_text(value: Any) -> str:
    """A data text (an id, a turn name) for a Plotly label, hover or tick: Plotly draws a subset of HTML there (a
    sample id ``<a href="http://host/">x</a>`` would become a link) and decodes ``&lt;``/``&gt;``/``&amp;``, so
    escaping them shows the text as it is. Example: plotly_text("<b>a</b> & b") -> "&lt;b&gt;a&lt;/b&gt; &amp; b"."""
    return html.escape(str(value), quote=False)


def _e(value: Any) -> str:
    """Escape any value for HTML text and attributes."""
    return html.escape(str(value), quote=True)


# --- token texts --------------------------------------------------------------------------------------------------

def visible_text(text: str) -> str:
    """Make whitespace and control characters visible.

    Example: visible_text(" a\\n\\tb") -> "·a↵⇥b"; visible_text("") -> "∅"; visible_text("\\x00") -> "\\\\x00".
    """
    if text == "":
        return "∅"
    out = []
    for ch in text:
        if ch in VISIBLE:
            out.append(VISIBLE[ch])
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def token_texts(text: str, offsets: np.ndarray | Sequence[Sequence[int]], ids: Sequence[int],
                decode: Callable[[int], str] | None = None) -> list[str]:
    """The exact text of every token: its slice of the rendered ``text``.

    A token without characters (an inserted EOS, offsets (k, k)) or sharing its characters with the previous token
    (byte-level pieces of one character) is shown as ``decode(id)`` (e.g. "<eos>" or "\\ufffd"), or "" without it.

    Example: text "Hi!", offsets [[0, 2], [2, 3], [3, 3]], decode {7: "</s>"}.get -> ["Hi", "!", "</s>"].
    """
    offs = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    out: list[str] = []
    prev: tuple[int, int] | None = None
    for k, (a, b) in enumerate(offs.tolist()):
        if b > a and (a, b) != prev:
            out.append(text[a:b])
        else:
            out.append(decode(int(ids[k])) if decode is not None else "")
        prev = (a, b)
    return out


def token_state(label: int, flagged: bool) -> str:
    """ "flagged", "trained" or "masked". Example: token_state(IGNORE_INDEX, False) -> "masked"."""
    if flagged:
        return "flagged"
    return "masked" if label == IGNORE_INDEX else "trained"


def flags_by_position(findings: Iterable[Any], sample_id: str | None = None) -> dict[int, list[str]]:
    """Map token position -> ["code: message", ...] for findings that point at tokens of one sample.

    ``findings`` are objects (or dicts) with ``code``, ``message``, ``positions`` and ``sample_id``; those of another
    sample are skipped when ``sample_id`` is given. Example: [Finding("label-leak", ..., positions=[4, 5])] ->
    {4: ["label-leak: ..."], 5: ["label-leak: ..."]}.
    """
    out: dict[int, list[str]] = {}
    for f in findings:
        get = f.get if isinstance(f, Mapping) else (lambda key, _f=f: getattr(_f, key, None))
        if sample_id is not None and get("sample_id") not in (None, sample_id):
            continue
        reason = f"{get('code')}: {get('message')}"
        for p in get("positions") or []:
            out.setdefault(int(p), [])
            if reason not in out[int(p)]:
                out[int(p)].append(reason)
    return out


def token_table(sample: Any, decode: Callable[[int], str] | None = None, special_ids: Iterable[int] = (),
                flags: Mapping[int, list[str]] | None = None) -> pd.DataFrame:
    """One row per token of a ``Sample``: index, token_id, token (visible), label, trained, role, message, special,
    state and flag (the reasons, "" when none).

    Example (ChatML, assistant-only): the row of "Hello" has label = its id, trained True, role "assistant"; the row
    of "<|im_start|>" has label -100, trained False, role "template", special True.
    """
    ids = list(sample.input_ids)
    labels = list(sample.labels)
    texts = token_texts(sample.text, sample.offsets, ids, decode)
    special = set(int(i) for i in special_ids)
    flags = flags or {}
    msg = np.asarray(sample.message_index).tolist() if len(ids) else []
    rows = {
        "index": list(range(len(ids))),
        "token_id": ids,
        "token": [visible_text(t) for t in texts],
        "label": labels,
        "trained": [lab != IGNORE_INDEX for lab in labels],
        "role": list(sample.segments),
        "message": [int(m) if m is not None and int(m) >= 0 else None for m in msg],
        "special": [i in special for i in ids],
        "state": [token_state(lab, k in flags) for k, lab in enumerate(labels)],
        "flag": ["; ".join(flags.get(k, [])) for k in range(len(ids))],
    }
    df = pd.DataFrame(rows)
    df["message"] = df["message"].astype("Int64")
    return df


# --- HTML views of one sample --------------------------------------------------------------------------------------

def _state_style(state: str) -> str:
    bg, fg = STATE_COLORS[state]
    return f"background-color:{bg};color:{fg};"


def _token_title(row: Mapping[str, Any]) -> str:
    label = "IGNORE_INDEX (-100): not trained" if row["label"] == IGNORE_INDEX else f"label {row['label']}: trained"
    parts = [f"#{row['index']} id {row['token_id']}", label, f"role {row['role']}"]
    if row.get("flag"):
        parts.append(str(row["flag"]))
    return " | ".join(parts)


def legend_html() -> str:
    """The color key shown above the token views."""
    items = [("trained", "trained (label = token id)"), ("masked", "masked (label -100)"),
             ("flagged", "flagged by a check (hover for the reason)")]
    chips = "".join(f'<span style="{_state_style(s)}padding:1px 6px;margin-right:8px;border-radius:3px">'
                    f'{_e(t)}</span>' for s, t in items)
    return f'<div class="sfti-legend" style="font-size:13px;margin:4px 0">{chips}</div>'


def token_table_html(df: pd.DataFrame, max_rows: int = MAX_HTML_TOKENS) -> str:
    """The colored token table: index, token id, token text, label, role. Rows are colored by state, flagged rows
    carry their reasons in a ``title`` (shown on hover); special tokens are bold. Every text is escaped.

    When ``df`` has a ``loss`` column (a model's l_t per token, NaN where none), a "loss" cell follows the label,
    with the ``top`` predictions (when given) on hover. Example: loss 2.31 -> ``<td class="sfti-loss"
    data-loss="2.3100" title="top: ▁the 0.41 · ▁a 0.12">2.31</td>``; position 0 shows "–"."""
    has_loss = "loss" in df.columns
    head = "".join(f'<th style="{_CELL}text-align:left;background:#ffffff">{h}</th>'
                   for h in ("#", "token id", "token", "label", *(("loss",) if has_loss else ()), "role"))
    body = []
    for row in df.head(max_rows).to_dict("records"):
        style = _state_style(row["state"])
        token_style = "font-weight:700;" if row["special"] else ""
        role_bg = SEGMENT_COLORS.get(row["role"], "#ffffff")
        # the label cell always shows trained/masked, so a flagged (red) row still says what it trains
        label_state = token_state(row["label"], False)
        body.append(
            f'<tr class="sfti-row" data-state="{row["state"]}" title="{_e(_token_title(row))}" style="{style}">'
            f'<td style="{_CELL}{style}">{row["index"]}</td>'
            f'<td style="{_CELL}{style}">{row["token_id"]}</td>'
            f'<td class="sfti-token" style="{_CELL}{style}{token_style}">{_e(row["token"])}</td>'
            f'<td class="sfti-label" data-label="{row["label"]}" data-state="{label_state}" '
            f'style="{_CELL}{_state_style(label_state)}">{row["label"]}</td>'
            + (_loss_cell(row, style) if has_loss else "")
            + f'<td style="{_CELL}{style}"><span style="background-color:{role_bg};color:#111827;padding:0 4px;'
            f'border-radius:3px">{_e(row["role"])}</span></td></tr>')
    return token_table_frame(head, body, len(df), max_rows)


def token_table_frame(head: str, body: Sequence[str], total: int, max_rows: int, extra_class: str = "") -> str:
    """The scrolling frame every token table shares: header cells, body rows, and a note when rows were cut."""
    more = f'<p class="sfti-more">Showing the first {max_rows} of {total} tokens.</p>' if total > max_rows else ""
    return (f'<div class="sfti-table-wrap" style="max-height:75vh;overflow:auto">'
            f'<table class="sfti-tokens{" " + extra_class if extra_class else ""}" style="{_TABLE_STYLE}">'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>{more}')


def _loss_cell(row: Mapping[str, Any], style: str) -> str:
    loss = row.get("loss")
    if loss is None or not np.isfinite(loss):
        return f'<td class="sfti-loss" data-loss="" style="{_CELL}{style}">–</td>'
    top = f"top: {row['top']}" if row.get("top") else ""
    return (f'<td class="sfti-loss" data-loss="{float(loss):.4f}" title="{_e(top)}" style="{_CELL}{style}'
            f'text-align:right">{float(loss):.2f}</td>')


def chips_html(df: pd.DataFrame, max_tokens: int = MAX_HTML_TOKENS) -> str:
    """The compact view: one colored chip per token in reading order; a line break after each newline token."""
    parts = []
    for row in df.head(max_tokens).to_dict("records"):
        style = _state_style(row["state"])
        weight = "font-weight:700;" if row["special"] else ""
        parts.append(f'<span class="sfti-chip" data-state="{row["state"]}" title="{_e(_token_title(row))}" '
                     f'style="{style}{weight}{_MONO}display:inline-block;margin:1px;padding:0 3px;border-radius:3px;'
                     f'font-size:13px;white-space:pre">{_e(row["token"])}</span>')
        if "↵" in row["token"]:
            parts.append("<br>")
    more = f"<p>Showing the first {max_tokens} of {len(df)} tokens.</p>" if len(df) > max_tokens else ""
    return f'<div class="sfti-chips" style="line-height:1.9">{"".join(parts)}</div>{more}'


def char_segments(text: str, spans: Iterable[Any]) -> list[str]:
    """The segment of every character: the role of the message span covering it, else "template".

    Example: text "<u>Hi", spans [Span(0, "user", "content", 3, 5, "exact")] -> ["template"] * 3 + ["user"] * 2.
    """
    seg = ["template"] * len(text)
    for s in spans:
        role = s.role if s.role in SEGMENTS else "template"
        seg[s.start:s.end] = [role] * max(0, min(s.end, len(text)) - s.start)
    return seg


def trained_chars(text: str, offsets: np.ndarray | Sequence[Sequence[int]], labels: Sequence[int]) -> np.ndarray:
    """Boolean per character: covered by a trained token. Example: "Hi!", offsets [[0,2],[2,3]], labels [-100, 5]
    -> [False, False, True]."""
    mask = np.zeros(len(text), dtype=bool)
    offs = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    for (a, b), lab in zip(offs.tolist(), labels):
        if lab != IGNORE_INDEX and b > a:
            mask[a:b] = True
    return mask


def _runs(keys: Sequence[Any]) -> list[tuple[int, int, Any]]:
    """Runs of equal keys. Example: ["a", "a", "b"] -> [(0, 2, "a"), (2, 3, "b")]."""
    out = []
    start = 0
    for k in range(1, len(keys) + 1):
        if k == len(keys) or keys[k] != keys[start]:
            if k > start:
                out.append((start, k, keys[start]))
            start = k
    return out


def rendered_html(text: str, spans: Iterable[Any], offsets: Any = None, labels: Sequence[int] | None = None,
                  max_chars: int = 200_000) -> str:
    """The rendered template text, each character colored by its segment (template markup, system, user,
    assistant, tool). With ``offsets``/``labels``, trained characters are underlined in green. Escaped;
    whitespace kept (``white-space: pre-wrap``)."""
    text = text[:max_chars]
    segs = char_segments(text, spans)
    trained = trained_chars(text, offsets, labels) if offsets is not None and labels is not None else \
        np.zeros(len(text), dtype=bool)
    keys = [(s, bool(t)) for s, t in zip(segs, trained.tolist())]
    parts = []
    for a, b, (seg, is_trained) in _runs(keys):
        style = f"background-color:{SEGMENT_COLORS[seg]};"
        if seg == "template":
            style += "color:#6b7280;"
        if is_trained:
            style += "text-decoration:underline;text-decoration-color:#16a34a;text-decoration-thickness:2px;"
        parts.append(f'<span class="sfti-seg" data-segment="{seg}" data-trained="{str(is_trained).lower()}" '
                     f'style="{style}">{_e(text[a:b])}</span>')
    return (f'<div class="sfti-rendered" style="{_MONO}white-space:pre-wrap;word-break:break-word;font-size:13px;'
            f'border:1px solid #e5e7eb;padding:8px;border-radius:4px">{"".join(parts)}</div>')


def segment_legend_html() -> str:
    chips = "".join(f'<span style="background-color:{c};padding:1px 6px;margin-right:6px;border-radius:3px">'
                    f'{_e(s)}</span>' for s, c in SEGMENT_COLORS.items())
    return (f'<div style="font-size:13px;margin:4px 0">{chips}<span style="text-decoration:underline;'
            f'text-decoration-color:#16a34a;text-decoration-thickness:2px">trained</span></div>')


# --- compare two samples -------------------------------------------------------------------------------------------

def align_tokens(ids_a: Sequence[int], ids_b: Sequence[int]) -> list[tuple[int | None, int | None]]:
    """Pair the tokens of two sequences: equal runs pair up, the rest is one-sided.

    Example: ([1, 2, 3], [1, 3, 4]) -> [(0, 0), (1, None), (2, 1), (None, 2)].
    """
    sm = difflib.SequenceMatcher(a=list(ids_a), b=list(ids_b), autojunk=False)
    pairs: list[tuple[int | None, int | None]] = []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            pairs.extend((i1 + k, j1 + k) for k in range(i2 - i1))
        else:
            pairs.extend((i, None) for i in range(i1, i2))
            pairs.extend((None, j) for j in range(j1, j2))
    return pairs


def compare_table(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Two token tables (from ``token_table``) side by side, aligned on token ids.

    Columns: index_a, index_b, token, label_a, label_b, role, status with status one of "same", "label differs",
    "only in A", "only in B". Example: the same conversation under assistant-only (A) and all-tokens (B): user
    tokens have label_a -100, label_b = id -> "label differs".
    """
    pairs = align_tokens(a["token_id"].tolist(), b["token_id"].tolist())
    ra, rb = a.to_dict("records"), b.to_dict("records")
    rows = []
    for i, j in pairs:
        x = ra[i] if i is not None else None
        y = rb[j] if j is not None else None
        if x is not None and y is not None:
            status = "same" if x["label"] == y["label"] else "label differs"
        else:
            status = "only in A" if y is None else "only in B"
        src = x if x is not None else y
        rows.append({"index_a": i, "index_b": j, "token_id": src["token_id"], "token": src["token"],
                     "label_a": None if x is None else x["label"], "label_b": None if y is None else y["label"],
                     "role": src["role"], "status": status})
    df = pd.DataFrame(rows, columns=["index_a", "index_b", "token_id", "token", "label_a", "label_b", "role",
                                     "status"])
    for col in ("index_a", "index_b", "label_a", "label_b"):
        df[col] = df[col].astype("Int64")
    return df


def compare_html(df: pd.DataFrame, name_a: str = "A", name_b: str = "B", max_rows: int = MAX_HTML_TOKENS,
                 only_differences: bool = False) -> str:
    """Side-by-side table of ``compare_table``: each side colored trained/masked, differing rows outlined in
    amber and marked with a "≠" column."""
    def cell(label: Any) -> str:
        if label is None or label is pd.NA:
            return f'<td class="sfti-cmp" data-label="" style="{_CELL}color:#9ca3af">—</td>'
        state = token_state(int(label), False)
        return f'<td class="sfti-cmp" data-label="{int(label)}" style="{_CELL}{_state_style(state)}">{int(label)}</td>'

    head = "".join(f'<th style="{_CELL}text-align:left">{_e(h)}</th>'
                   for h in ("", "#A", "#B", "token", f"label {name_a}", f"label {name_b}", "role"))
    body = []
    view = df[df["status"] != "same"] if only_differences else df
    for row in view.head(max_rows).to_dict("records"):
        diff = row["status"] != "same"
        row_style = f"outline:2px solid {DIFF_COLOR};background-color:{DIFF_COLOR};" if diff else ""
        mark = "≠" if diff else ""
        ia = "" if row["index_a"] is pd.NA or row["index_a"] is None else row["index_a"]
        ib = "" if row["index_b"] is pd.NA or row["index_b"] is None else row["index_b"]
        body.append(f'<tr class="sfti-cmp-row" data-status="{_e(row["status"])}" title="{_e(row["status"])}" '
                    f'style="{row_style}"><td style="{_CELL}font-weight:700">{mark}</td>'
                    f'<td style="{_CELL}">{ia}</td><td style="{_CELL}">{ib}</td>'
                    f'<td style="{_CELL}">{_e(row["token"])}</td>{cell(row["label_a"])}{cell(row["label_b"])}'
                    f'<td style="{_CELL}">{_e(row["role"])}</td></tr>')
    more = f"<p>Showing the first {max_rows} of {len(view)} rows.</p>" if len(view) > max_rows else ""
    return (f'<div style="max-height:640px;overflow:auto"><table class="sfti-compare" style="{_TABLE_STYLE}">'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>{more}')


# --- ratios over a dataset -----------------------------------------------------------------------------------------

def sample_stats(sample: Any) -> dict[str, Any]:
    """Token counts of one sample: total, trained, per segment, and truncation.

    Example: a sample of 10 tokens, 4 template, 3 user, 3 assistant of which 3 trained ->
    {"tokens": 10, "trained": 3, "trained_share": 0.3, "template": 4, "user": 3, "assistant": 3, ...}.
    """
    n = len(sample.input_ids)
    segs = Counter(sample.segments)
    trained = n - list(sample.labels).count(IGNORE_INDEX)
    trunc = getattr(sample, "truncation", None)
    row: dict[str, Any] = {"sample_id": sample.id, "conversation_id": sample.conversation_id, "tokens": n,
                           "trained": trained, "trained_share": trained / n if n else 0.0}
    for s in SEGMENTS:
        row[s] = int(segs.get(s, 0))
    row["truncated"] = trunc is not None
    row["tokens_cut"] = trunc.tokens_cut if trunc is not None else 0
    row["original_tokens"] = trunc.original_length if trunc is not None else n
    return row


STATS_COLUMNS = ["sample_id", "conversation_id", "tokens", "trained", "trained_share", *SEGMENTS, "truncated",
                 "tokens_cut", "original_tokens"]


def stats_table(samples: Iterable[Any]) -> pd.DataFrame:
    """``sample_stats`` of every sample, one row each, plus the share of each segment (columns ``<segment>_share``)."""
    df = pd.DataFrame([sample_stats(s) for s in samples], columns=STATS_COLUMNS)
    for s in SEGMENTS:
        df[f"{s}_share"] = (df[s] / df["tokens"].where(df["tokens"] > 0)).fillna(0.0)
    return df


def overall_shares(stats: pd.DataFrame) -> pd.DataFrame:
    """Token shares over the whole dataset: one row per segment plus "trained", with tokens and share.

    Example: two samples with template 4+6, user 3+2, assistant 3+2 (20 tokens) -> template 10 (0.5), user 5 (0.25),
    assistant 5 (0.25), system 0, tool 0.
    """
    total = int(stats["tokens"].sum()) if len(stats) else 0
    rows = [{"segment": s, "tokens": int(stats[s].sum()) if len(stats) else 0} for s in SEGMENTS]
    rows.append({"segment": "trained", "tokens": int(stats["trained"].sum()) if len(stats) else 0})
    df = pd.DataFrame(rows)
    df["share"] = df["tokens"] / total if total else 0.0
    return df


def shares_long(stats: pd.DataFrame) -> pd.DataFrame:
    """Per-sample segment counts in long form (sample_id, conversation_id, segment, tokens, share)."""
    rows = []
    for r in stats.to_dict("records"):
        for s in SEGMENTS:
            rows.append({"sample_id": r["sample_id"], "conversation_id": r["conversation_id"], "segment": s,
                         "tokens": r[s], "share": r[s] / r["tokens"] if r["tokens"] else 0.0})
    return pd.DataFrame(rows, columns=["sample_id", "conversation_id", "segment", "tokens", "share"])


# --- a scan of the whole dataset, as tables ------------------------------------------------------------------------

RECORD_COLUMNS = ["record", "source", "stage", "accepted", "samples", "tokens", "trained", "errors", "warnings",
                  "reasons"]
FINDING_COLUMNS = ["code", "severity", "conversation_id", "sample_id", "message", "hint"]


def scan_tables(outcomes: Iterable[Any]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Three tables from ``checks.Outcome``s built with ``keep_samples=True``: per-sample stats (``stats_table``),
    one row per input record (``RECORD_COLUMNS``: accepted or not, with the reasons) and one row per finding
    (``FINDING_COLUMNS``). The samples themselves are not kept: a dataset of any size becomes a few numbers a row.

    Example: the demo's 12 records -> stats of 12 samples, 12 record rows (10 accepted), one row per finding.
    """
    samples: list[Any] = []
    records: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    for oc in outcomes:
        samples.extend(oc.samples or [])
        sev = [f.severity for f in oc.findings]
        records.append({"record": oc.record_id, "source": oc.source or "",
                        "stage": "load" if oc.rejected is not None else "checks", "accepted": bool(oc.accepted),
                        "samples": oc.num_samples, "tokens": oc.num_tokens, "trained": oc.num_trainable,
                        "errors": sev.count("error"), "warnings": sev.count("warning"),
                        "reasons": "" if oc.accepted else " | ".join(oc.reasons())})
        for f in oc.findings:
            findings.append({"code": f.code, "severity": f.severity,
                             "conversation_id": f.conversation_id or oc.record_id, "sample_id": f.sample_id or "",
                             "message": f.message, "hint": f.hint})
    return (stats_table(samples), pd.DataFrame(records, columns=RECORD_COLUMNS),
            pd.DataFrame(findings, columns=FINDING_COLUMNS))


# (label, column, ascending): the measures the Dataset page ranks samples by
WORST_MEASURES: dict[str, tuple[str, bool]] = {
    "lowest trained share": ("trained_share", True),
    "most error findings": ("errors", False),
    "most tokens cut by max length": ("tokens_cut", False),
    "highest template share": ("template_share", False),
    "longest (tokens before truncation)": ("original_tokens", False),
}


def worst_samples(stats: pd.DataFrame, measure: str, n: int = 20, records: pd.DataFrame | None = None
                  ) -> pd.DataFrame:
    """The ``n`` samples that rank worst by ``measure`` (a key of ``WORST_MEASURES``), ties in dataset order.
    "most error findings" reads the per-record ``errors`` column of ``records`` (``scan_tables``).

    Example: trained shares [0.5, 0.0, 0.9] by "lowest trained share", n=2 -> the rows of 0.0 and 0.5.
    """
    column, ascending = WORST_MEASURES[measure]
    df = stats
    if column not in df.columns:
        errors = (records.set_index("record")[column] if records is not None and len(records)
                  else pd.Series(dtype="int64"))
        df = df.assign(**{column: df["conversation_id"].map(errors).fillna(0).astype("int64")})
    return df.sort_values(column, ascending=ascending, kind="stable").head(max(0, int(n)))


def _figure(height: int, **layout: Any) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(height=height, template="plotly_white", margin={"l": 10, "r": 10, "t": 36, "b": 10},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0}, **layout)
    return fig


def _count_axis(max_count: int, title: str) -> dict[str, Any]:
    """An axis of counts: integer ticks only (a step of 1 below 10), starting at 0."""
    axis: dict[str, Any] = {"title": title, "rangemode": "tozero", "tickformat": ",d"}
    if max_count < 10:
        axis["dtick"] = 1
    return axis


def share_bars(rows: pd.DataFrame, title: str = "") -> Any:
    """Stacked horizontal bars: the segment shares of each sample in ``rows`` (a ``stats_table`` slice), first row
    on top. Every bar carries its conversation id as ``customdata``, so a click can open it."""
    n = len(rows)
    fig = _figure(90 + 26 * max(n, 1), barmode="stack", title=title or None, clickmode="event+select",
                  xaxis={"title": "share of tokens", "tickformat": ".0%", "range": [0, 1]},
                  yaxis={"autorange": "reversed", "type": "category", "automargin": True})
    y = [plotly_text(v) for v in rows["sample_id"].astype(str)]  # ids are user text: Plotly draws tags in labels
    custom = np.stack([rows["conversation_id"].astype(str).to_numpy(), rows["tokens"].to_numpy()], axis=-1) \
        if n else None
    for s in SEGMENTS:
        share = (rows[s] / rows["tokens"].where(rows["tokens"] > 0)).fillna(0.0).to_numpy() if n else []
        fig.add_bar(name=s, y=y, x=share, orientation="h", marker_color=STRONG_COLORS[s], customdata=custom,
                    hovertemplate=f"%{{y}}<br>{s}: %{{x:.1%}} of %{{customdata[1]:,}} tokens<extra></extra>")
    return fig


def overall_share_figure(overall: pd.DataFrame) -> Any:
    """One bar per segment (and "trained"): its share of every token in the dataset, tokens on hover."""
    df = overall
    fig = _figure(230, showlegend=False, xaxis={"title": "share of all tokens", "tickformat": ".0%",
                                                "rangemode": "tozero"},
                  yaxis={"autorange": "reversed", "automargin": True})
    fig.add_bar(y=df["segment"].tolist(), x=df["share"].tolist(), orientation="h",
                marker_color=[STRONG_COLORS.get(s, "#16a34a") for s in df["segment"]],
                text=[f"{x:.1%}" for x in df["share"]], textposition="auto", customdata=df["tokens"].tolist(),
                hovertemplate="%{y}: %{x:.2%} (%{customdata:,} tokens)<extra></extra>")
    return fig


def histogram_counts(values: Sequence[float] | np.ndarray, bins: int = 40,
                     value_range: tuple[float, float] | None = None) -> pd.DataFrame:
    """Bin ``values`` on the server: columns left, right, count (integer bins when the values are integers).

    Example: histogram_counts([1, 2, 2, 9], bins=4, value_range=(0, 12)) -> left [0, 3, 6, 9], count [2, 0, 0, 1]...
    """
    arr = np.asarray(values, dtype=float)
    if value_range is None:
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1
        value_range = (lo, hi)
    counts, edges = np.histogram(arr, bins=bins, range=value_range)
    return pd.DataFrame({"left": edges[:-1], "right": edges[1:], "count": counts.astype("int64")})


def _bin_data(h: pd.DataFrame) -> np.ndarray:
    """Per bar: [left, right, 1 for the last bin] (np.histogram's last bin holds its right edge too)."""
    last = np.zeros(len(h))
    if len(h):
        last[-1] = 1
    return np.stack([h["left"], h["right"], last], axis=-1)


def samples_in_bin(stats: pd.DataFrame, column: str, customdata: Sequence[float]) -> pd.DataFrame:
    """The samples a histogram bar counts, from the bar's ``customdata`` ([left, right, is_last]): ``column`` in
    [left, right), or [left, right] for the last bar, as ``np.histogram`` bins them.

    Example: lengths [3, 5, 9] and the bar [4, 9, 1] (the last) -> the samples of length 5 and 9. A selection
    event from the browser gives the row as {"0": 4, "1": 9, "2": 1}: read the same way."""
    if isinstance(customdata, Mapping):
        customdata = [customdata[str(i)] for i in range(len(customdata))]
    left, right = float(customdata[0]), float(customdata[1])
    is_last = len(customdata) > 2 and bool(customdata[2])
    values = stats[column].astype(float)
    inside = (values >= left) & ((values <= right) if is_last else (values < right))
    return stats[inside]


def length_histogram(stats: pd.DataFrame, max_length: int | None = None, column: str = "original_tokens",
                     bins: int = 40) -> Any:
    """Histogram of sample lengths (before truncation by default), binned here so the figure stays small at any
    number of samples, with a red line at ``max_length``."""
    lengths = stats[column].to_numpy()
    hi = max(float(lengths.max()) if len(lengths) else 1.0, float(max_length or 0)) + 1
    h = histogram_counts(lengths, bins=bins, value_range=(0.0, hi))
    fig = _figure(280, showlegend=False, bargap=0.05, clickmode="event+select",
                  xaxis={"title": "tokens per sample", "rangemode": "tozero"},
                  yaxis=_count_axis(int(h["count"].max()) if len(h) else 0, "samples"))
    fig.add_bar(x=((h["left"] + h["right"]) / 2).tolist(), y=h["count"].tolist(),
                width=(h["right"] - h["left"]).tolist(),
                marker_color=STRONG_COLORS["user"], customdata=_bin_data(h),
                hovertemplate="%{customdata[0]:,.0f}–%{customdata[1]:,.0f} tokens: %{y:,} samples<extra></extra>")
    if max_length:
        fig.add_vline(x=max_length, line_color="#dc2626", line_width=2,
                      annotation_text=f"max length {max_length:,}", annotation_position="top right")
    return fig


def share_histogram(stats: pd.DataFrame, column: str = "trained_share", bins: int = 20) -> Any:
    """Histogram of a per-sample share (0-100 %), e.g. the trained share (a bar at 0 % = samples training on
    nothing) or a segment's share (``<segment>_share``)."""
    h = histogram_counts(stats[column].to_numpy(), bins=bins, value_range=(0.0, 1.0 + 1e-9))
    color = STRONG_COLORS.get(column.removesuffix("_share"), "#16a34a")
    fig = _figure(280, showlegend=False, bargap=0.05, clickmode="event+select",
                  xaxis={"title": column.replace("_", " "), "tickformat": ".0%", "range": [0, 1]},
                  yaxis=_count_axis(int(h["count"].max()) if len(h) else 0, "samples"))
    fig.add_bar(x=((h["left"] + h["right"]) / 2).tolist(), y=h["count"].tolist(),
                width=(h["right"] - h["left"]).tolist(),
                marker_color=color, customdata=_bin_data(h),
                hovertemplate="%{customdata[0]:.0%}–%{customdata[1]:.0%}: %{y:,} samples<extra></extra>")
    return fig


WEBGL_ABOVE = 2_000  # scatter plots with more points than this draw with WebGL (Scattergl)
LABELS_UP_TO = 20_000  # above this many points, hover shows numbers only (no sample id per point)


def length_share_scatter(stats: pd.DataFrame, webgl_above: int = WEBGL_ABOVE) -> Any:
    """One point per sample: length before truncation (x) against trained share (y); WebGL above ``webgl_above``
    points. A point's index in the figure is its row in ``stats`` (``point_index`` of a selection)."""
    import plotly.graph_objects as go

    n = len(stats)
    trace = go.Scattergl if n > webgl_above else go.Scatter
    fig = _figure(340, showlegend=False, clickmode="event+select",
                  xaxis={"title": "tokens per sample (before truncation)", "rangemode": "tozero"},
                  yaxis={"title": "trained share", "tickformat": ".0%", "range": [-0.03, 1.03]})
    text = [plotly_text(v) for v in stats["sample_id"].astype(str)] if n <= LABELS_UP_TO else None
    fig.add_trace(trace(x=stats["original_tokens"].to_numpy(), y=stats["trained_share"].to_numpy(), mode="markers",
                        text=text, marker={"size": 6 if n <= webgl_above else 4, "opacity": 0.6 if n > 500 else 0.9,
                                           "color": STRONG_COLORS["assistant"]},
                        hovertemplate=("%{text}<br>" if text else "") +
                        "%{x:,} tokens, %{y:.1%} trained<extra></extra>"))
    return fig


STRONG_COLORS = {"template": "#9ca3af", "system": "#8b5cf6", "user": "#3b82f6", "assistant": "#22c55e",
                 "tool": "#f97316", "trained": "#15803d"}


def check_counts(findings: Iterable[Any]) -> pd.DataFrame:
    """Findings per check: code, severity, findings, conversations (distinct). Errors first, then by count."""
    rows: dict[str, dict[str, Any]] = {}
    for f in findings:
        get = f.get if isinstance(f, Mapping) else (lambda key, _f=f: getattr(_f, key, None))
        code = get("code")
        r = rows.setdefault(code, {"code": code, "severity": get("severity"), "findings": 0, "_convs": set()})
        r["findings"] += 1
        r["_convs"].add(get("conversation_id") or get("sample_id"))
    order = {"error": 0, "warning": 1, "info": 2}
    out = [{"code": r["code"], "severity": r["severity"], "findings": r["findings"], "conversations": len(r["_convs"])}
           for r in rows.values()]
    out.sort(key=lambda r: (order.get(r["severity"], 3), -r["findings"], r["code"]))
    return pd.DataFrame(out, columns=["code", "severity", "findings", "conversations"])


# --- gradient weights ----------------------------------------------------------------------------------------------

def fraction_text(value: Fraction | int) -> str:
    """Exact text of a weight. Example: Fraction(17, 24) -> "17/24", Fraction(2, 1) -> "2"."""
    f = Fraction(value)
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def weight_text(value: Fraction | int, approx_above: int = 48) -> str:
    """An exact weight, with its percentage when the denominator is large enough to be hard to read.

    Example: Fraction(1, 6) -> "1/6"; Fraction(6817, 98280) -> "6817/98280 ≈ 6.94%"; 0 -> "0".
    """
    f = Fraction(value)
    text = fraction_text(f)
    return f"{text} ≈ {float(f):.2%}" if f.denominator > approx_above else text


def fractions_frame(table: Mapping[str, Mapping[Any, Fraction]], keys: Sequence[Any] | None = None,
                    as_text: bool = True, approx: bool = False) -> pd.DataFrame:
    """A table of exact weights: one row per key, one column per name in ``table``.

    Example: {"session": {"A": 2/3, "B": 1/6}, "split": {"A": 17/24, "B": 5/24}} -> rows A, B with columns
    session "2/3", "1/6" and split "17/24", "5/24" (``as_text=False`` gives floats instead; ``approx=True`` adds
    the percentage to fractions with large denominators, see ``weight_text``).
    """
    if keys is None:
        seen: dict[Any, None] = {}
        for col in table.values():
            for k in col:
                seen.setdefault(k, None)
        keys = list(seen)
    data = {}
    for name, col in table.items():
        vals = [col.get(k, Fraction(0)) for k in keys]
        text = weight_text if approx else fraction_text
        data[name] = [text(v) for v in vals] if as_text else [float(v) for v in vals]
    return pd.DataFrame(data, index=pd.Index([str(k) for k in keys], name="key"))


def weights_by(weights: Sequence[Sequence[Fraction]], keys: Sequence[Sequence[Any]]) -> dict[Any, Fraction]:
    """Sum weights per key (``None`` keys skipped); same as ``weights.aggregate`` without the import cycle."""
    out: dict[Any, Fraction] = {}
    for ws, ks in zip(weights, keys):
        for w, k in zip(ws, ks):
            if k is None:
                continue
            out[k] = out.get(k, Fraction(0)) + w
    return out


def log_prob_html(terms: Sequence[Any]) -> str:
    """The dialogue's log-probability as a sum of per-turn terms, masked terms crossed out (``<s>``).

    Example: terms of [(user, x), (assistant, y)] -> "log P(x1, y1) = <s>log P(x1)</s> + log P(y1 | x1)".
    """
    symbols = {t.index: t.symbol for t in terms}
    parts = []
    for t in terms:
        given = ", ".join(symbols.get(i, f"turn{i}") for i in t.conditioned_on)
        term = f"log P({t.symbol} | {given})" if given else f"log P({t.symbol})"
        if t.counted:
            parts.append(f'<span class="sfti-term" data-counted="true" style="color:#166534;font-weight:600" '
                         f'title="{_e(t.role)}: trained">{_e(term)}</span>')
        else:
            parts.append(f'<s class="sfti-term" data-counted="false" style="color:#9ca3af" '
                         f'title="{_e(t.role)}: masked (-100), context only">{_e(term)}</s>')
    head = _e(f"log P({', '.join(t.symbol for t in terms)})")
    return (f'<div class="sfti-logprob" style="{_MONO}font-size:14px;line-height:1.8">{head} = '
            f'{" + ".join(parts)}</div>')


def log_prob_legend_table(terms: Sequence[Any], max_chars: int = 80) -> pd.DataFrame:
    """The terms as a table: symbol, role, counted, and the start of the turn's text."""
    return pd.DataFrame([{"symbol": t.symbol, "role": t.role, "in the loss": bool(t.counted),
                          "text": t.text if len(t.text) <= max_chars else t.text[: max_chars - 1] + "…"}
                         for t in terms])


def turn_keys(sample: Any) -> list[int | None]:
    """The message each token belongs to, for per-turn sums: its message index; for template markup inside an
    assistant turn (its header part, ``<think>``, the end-of-turn token that closes it) that turn's message; None
    for other markup.

    Example: message_index [-1, 0, -1, -1, 1, -1] with one turn of message 1 covering tokens 3..5 (``<think>``,
    the answer, ``<eos>``) -> [None, 0, None, 1, 1, 1].
    """
    keys: list[int | None] = [int(m) if m is not None and int(m) >= 0 else None
                              for m in np.asarray(sample.message_index).tolist()]
    offs = np.asarray(sample.offsets, dtype=np.int64).reshape(-1, 2)
    for t in getattr(sample, "turns", None) or []:
        end = max(t.eot_end, t.body_end)
        inside = (offs[:, 0] >= t.start) & (offs[:, 1] <= end)  # an inserted EOS (k, k) at the end too
        for k in np.nonzero(inside)[0].tolist():
            if keys[k] is None:
                keys[k] = int(t.message_index)
    return keys


def trained_messages(sample: Any) -> set[int]:
    """Messages with at least one trained token (markup of an assistant turn counts for that turn)."""
    return {k for k, lab in zip(turn_keys(sample), sample.labels) if k is not None and lab != IGNORE_INDEX}


def batch_weights(samples: Sequence[Any], micro_batch_size: int = 1) -> dict[str, Any]:
    """Every reduction's token weights for a batch of samples, summed per role, per turn and per sample.

    ``micro_batch_size`` groups consecutive samples into micro-batches for the two accumulation reductions.
    Returns {"weights": {reduction: per-token weights}, "errors": {reduction: why}, "by_role", "by_turn",
    "by_sample": {reduction: {key: Fraction}}, "turn_names": {key: label}}. A mean over a batch without any
    labeled token has no value: that reduction lands in "errors".
    """
    from inspector.labels.weights import REDUCTION_NAMES, aggregate, loss_targets, token_weights

    # the loss terms a trainer computes: labels shifted, so a sample's first token is never a target (under
    # all-tokens its label is set, yet nothing predicts it)
    labels = [loss_targets(list(s.labels)) for s in samples]
    size = max(1, int(micro_batch_size))
    groups = [list(range(i, min(i + size, len(samples)))) for i in range(0, len(samples), size)]
    roles = [list(s.segments) for s in samples]
    turns = []
    names: dict[Any, str] = {}
    for s in samples:
        keys = []
        for k, lab in zip(turn_keys(s), s.labels):
            if k is None:  # markup outside every message and turn: its own row, when it is trained at all
                keys.append(f"{s.conversation_id} · template markup" if lab != IGNORE_INDEX else None)
                if lab != IGNORE_INDEX:
                    names.setdefault(keys[-1], "template")
                continue
            key = f"{s.conversation_id} · message {k}"
            keys.append(key)
            if key not in names:
                seg = next((g for g, m in zip(s.segments, np.asarray(s.message_index).tolist()) if m == k), "")
                names[key] = seg
        turns.append(keys)
    sample_keys = [[s.id] * len(s.labels) for s in samples]
    out: dict[str, Any] = {"weights": {}, "errors": {}, "by_role": {}, "by_turn": {}, "by_sample": {},
                           "turn_roles": names, "micro_batches": groups}
    for r in REDUCTION_NAMES:
        try:
            w = token_weights(labels, r, groups if samples else None)
        except ValueError as exc:
            out["errors"][r] = str(exc)
            continue
        out["weights"][r] = w
        out["by_role"][r] = aggregate(w, roles)
        out["by_turn"][r] = aggregate(w, turns)
        out["by_sample"][r] = aggregate(w, sample_keys)
    return out


REDUCTION_WORDS = {  # short names in words for table headers and legends; weights.REDUCTION_LABELS says more
    "sample_mean": "mean per sample",
    "token_mean": "mean over the batch's tokens",
    "accumulated_token_mean": "mean over the step's tokens",
    "naive_accumulation": "mean per micro-batch (old)",
    "sum": "sum",
}
APPROX_ABOVE = 48  # a fraction whose denominator is larger reads as a percentage (exact value on hover)


def reduction_title(name: str) -> str:
    """A reduction in words with its code name. Example: "sample_mean" -> "mean per sample (sample_mean)"."""
    return f"{REDUCTION_WORDS.get(name, name)} ({name})"


def weight_cell_html(value: Fraction | int) -> str:
    """One weight for an HTML table: the exact fraction when it is easy to read, else a percentage with the exact
    fraction on hover. Example: 1/6 -> "1/6"; 6817/98280 -> '<span title="6817/98280">6.94%</span>'."""
    f = Fraction(value)
    if f.denominator <= APPROX_ABOVE:
        return _e(fraction_text(f))
    return f'<span class="sfti-approx" title="{_e(fraction_text(f))}">{float(f):.2%}</span>'


def _keys_of(table: Mapping[str, Mapping[Any, Fraction]], keys: Sequence[Any] | None) -> list[Any]:
    """The row keys of a weights table: ``keys`` when given, else every key of every column, in first-seen order."""
    if keys is not None:
        return list(keys)
    seen: dict[Any, None] = {}
    for col in table.values():
        for k in col:
            seen.setdefault(k, None)
    return list(seen)


def fractions_html(table: Mapping[str, Mapping[Any, Fraction]], keys: Sequence[Any] | None = None,
                   index_name: str = "", extra: Mapping[str, Mapping[Any, str]] | None = None) -> str:
    """``fractions_frame`` as an HTML table: columns are reductions in words with the code name beside them, cells
    are ``weight_cell_html`` (exact, or a percentage with the exact fraction on hover); ``extra`` adds text columns
    first (e.g. each turn's role). Every text is escaped."""
    rows_keys = _keys_of(table, keys)
    extra = extra or {}
    head = f'<th style="{_CELL}text-align:left">{_e(index_name)}</th>' + "".join(
        f'<th style="{_CELL}text-align:left">{_e(name)}</th>' for name in extra) + "".join(
        f'<th style="{_CELL}text-align:right;white-space:normal" title="{_e(name)}">'
        f'{_e(REDUCTION_WORDS.get(name, name))}<br><code>{_e(name)}</code></th>' for name in table)
    rows = []
    for key in rows_keys:
        cells = "".join(f'<td style="{_CELL}">{_e(col.get(key, ""))}</td>' for col in extra.values())
        cells += "".join(f'<td class="sfti-weight" data-reduction="{_e(name)}" style="{_CELL}text-align:right">'
                         f'{weight_cell_html(col.get(key, Fraction(0)))}</td>' for name, col in table.items())
        rows.append(f'<tr data-key="{_e(key)}"><td style="{_CELL}">{_e(key)}</td>{cells}</tr>')
    return (f'<div style="overflow:auto;max-height:480px"><table class="sfti-weights" style="{_TABLE_STYLE}">'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def weights_figure(table: Mapping[str, Mapping[Any, Fraction]], keys: Sequence[Any] | None = None,
                   axis_title: str = "") -> Any:
    """Grouped bars: one group per key (answer, role, turn, sample), one bar per reduction (named in words). The
    bar text is the exact fraction, or a percentage for large denominators; the hover shows both. Each bar carries
    its key as ``customdata[0]``, so a click can select it."""
    rows_keys = _keys_of(table, keys)
    names = [str(k) for k in rows_keys]
    fig = _figure(340, barmode="group", clickmode="event+select",
                  xaxis={"title": axis_title, "type": "category"},
                  yaxis={"title": "weight (share of the loss)", "tickformat": ".0%", "rangemode": "tozero"})
    palette = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#64748b"]
    for k, (name, col) in enumerate(table.items()):
        exact = [fraction_text(col.get(key, Fraction(0))) for key in rows_keys]
        values = [float(col.get(key, Fraction(0))) for key in rows_keys]
        text = [e if Fraction(e).denominator <= APPROX_ABOVE else f"{v:.1%}" for e, v in zip(exact, values)]
        title = reduction_title(name) if name in REDUCTION_WORDS else name
        fig.add_bar(name=title, x=[plotly_text(n) for n in names], y=values, text=text, textposition="outside",
                    marker_color=palette[k % len(palette)],
                    customdata=[[n, e] for n, e in zip(names, exact)],
                    hovertemplate=f"{_e(title)}<br>%{{x}}: %{{customdata[1]}} "
                                  "(%{y:.2%})<extra></extra>")
    return fig


def organized_batch_html(batch: Any) -> str:
    """The samples of a ``weights.OrganizedBatch`` as rows of chips: questions gray (masked), answers green with
    their exact weight underneath."""
    rows = []
    for s, (tokens, roles, weights) in enumerate(zip(batch.tokens, batch.roles, batch.weights)):
        chips = []
        for name, role, w in zip(tokens, roles, weights):
            state = "trained" if role == "assistant" else "masked"
            chips.append(f'<span class="sfti-w" data-token="{_e(name)}" style="{_state_style(state)}{_MONO}'
                         f'display:inline-block;text-align:center;min-width:52px;margin:2px;padding:2px 4px;'
                         f'border-radius:4px"><b>{_e(name)}</b><br><small>{_e(fraction_text(w))}</small></span>')
        rows.append(f'<div style="margin:2px 0"><span style="display:inline-block;width:80px;color:#6b7280">'
                    f'sample {s + 1}</span>{"".join(chips)}</div>')
    return f'<div class="sfti-batch" data-organization="{_e(batch.organization)}">{"".join(rows)}</div>'
