"""The Audit page's drawings as plain data: the pattern table and its Plotly bar chart, one record's token table with
the trainer's and the inspector's labels side by side (differences highlighted), and its findings.

Example: a RowAudit whose trainer trains the "\\n" after <|im_end|> -> ``token_frame`` has a row
``{"index": 39, "token": "↵", "trainer": "trained", "inspector": "masked", "differs": True, "role": "template"}``
and ``audit_table_html`` draws that row with ``data-differs="true"`` on a red background.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import pandas as pd

from inspector.views.viz import (SEGMENT_COLORS, _CELL, _e, _figure, _state_style, plotly_text, token_table_frame,
                                 visible_text)

SEVERITY_COLORS = {"error": "#dc2626", "warning": "#d97706", "info": "#2563eb"}
DIFF_STYLE = "background-color:#fecaca;color:#7f1d1d;"
MAX_PATTERNS = 30


def patterns_frame(report: Any) -> pd.DataFrame:
    """One row per pattern, errors first, then the most frequent: code, severity, pattern, records, tokens, the
    first example record."""
    rows = [{"code": p.code, "severity": p.severity, "pattern": p.pattern, "records": p.records,
             "of": report.samples, "tokens": p.tokens, "example": p.examples[0] if p.examples else ""}
            for p in report.sorted_patterns()]
    return pd.DataFrame(rows, columns=["code", "severity", "pattern", "records", "of", "tokens", "example"])


def patterns_figure(frame: pd.DataFrame, max_patterns: int = MAX_PATTERNS) -> Any:
    """Horizontal bars: records per pattern, coloured by severity; each bar's ``customdata`` is its first example
    record id (a click opens it)."""
    import plotly.graph_objects as go

    df = frame.head(max_patterns).iloc[::-1]
    labels = [plotly_text(f"{c}: {visible_text(p)}"[:90]) for c, p in zip(df["code"], df["pattern"])]
    fig = _figure(max(220, 28 * len(df) + 90), xaxis={"title": "records"})
    for sev, color in SEVERITY_COLORS.items():
        part = df["severity"] == sev
        if not part.any():
            continue
        fig.add_trace(go.Bar(x=df["records"][part].tolist(), y=[l for l, k in zip(labels, part) if k],
                             orientation="h", name=sev, marker_color=color,
                             customdata=df["example"][part].tolist(),
                             text=[f"{r}/{o} · {t} tokens" for r, o, t in zip(df["records"][part], df["of"][part],
                                                                            df["tokens"][part])],
                             hovertext=[plotly_text(f"e.g. {e}") for e in df["example"][part]],
                             hovertemplate="%{y}<br>%{text}<br>%{hovertext}<extra></extra>"))
    fig.update_layout(barmode="stack", yaxis={"automargin": True, "categoryorder": "array",
                                              "categoryarray": labels})
    return fig


def token_frame(audit: Any, decode: Callable[[int], str]) -> pd.DataFrame:
    """Every token of one audited sample: the trainer's label state and the inspector's, side by side."""
    row = audit.row
    ids = row.input_ids.tolist()
    trained = row.trained.tolist()
    expected = audit.expected.tolist() if audit.expected is not None else [None] * len(ids)
    roles = audit.roles or ["?"] * len(ids)
    flags: dict[int, list[str]] = {}
    for f in audit.findings:
        for p in f.positions:
            flags.setdefault(p, []).append(f.code)
    out = []
    for k, (i, t, e) in enumerate(zip(ids, trained, expected)):
        out.append({"index": k, "token_id": i, "token": visible_text(decode(i)),
                    "trainer": "trained" if t else "masked",
                    "inspector": "-" if e is None else ("trained" if e else "masked"),
                    "differs": e is not None and bool(t) != bool(e), "role": roles[k] if k < len(roles) else "?",
                    "label": int(row.labels[k]) if row.labels is not None else None,
                    "findings": ", ".join(flags.get(k, []))})
    return pd.DataFrame(out)


def audit_table_html(df: pd.DataFrame, max_rows: int = 4000) -> str:
    """The token table: #, id, token, trainer, inspector, role, findings; rows where the two labels differ are
    highlighted (``data-differs="true"``). Every text is escaped."""
    head = "".join(f'<th style="{_CELL}text-align:left;background:#ffffff">{h}</th>'
                   for h in ("#", "token id", "token", "trainer", "inspector", "role", "findings"))
    body = []
    for r in df.head(max_rows).to_dict("records"):
        style = DIFF_STYLE if r["differs"] else ""
        cells = [str(r["index"]), str(r["token_id"])]
        role_bg = SEGMENT_COLORS.get(r["role"], "#ffffff")
        body.append(
            f'<tr class="sfti-row" data-differs="{str(r["differs"]).lower()}" style="{style}">'
            + "".join(f'<td style="{_CELL}{style}">{c}</td>' for c in cells)
            + f'<td class="sfti-token" style="{_CELL}{style}">{_e(r["token"])}</td>'
            + f'<td class="sfti-trainer" style="{_CELL}{_state_style(r["trainer"])}">{r["trainer"]}</td>'
            + f'<td class="sfti-inspector" style="{_CELL}'
            + (_state_style(r["inspector"]) if r["inspector"] != "-" else "") + f'">{r["inspector"]}</td>'
            + f'<td style="{_CELL}"><span style="background-color:{role_bg};color:#111827;padding:0 4px;'
              f'border-radius:3px">{_e(r["role"])}</span></td>'
            + f'<td style="{_CELL}{style}">{_e(r["findings"])}</td></tr>')
    return token_table_frame(head, body, len(df), max_rows, "sfti-audit")


def findings_frame(audit: Any) -> pd.DataFrame:
    rows = [{"severity": f.severity, "code": f.code, "message": f.message,
             "positions": ", ".join(map(str, f.positions[:20])) + ("…" if len(f.positions) > 20 else ""),
             "tokens": " ".join(f.details.get("tokens", [])[:20])} for f in audit.findings]
    return pd.DataFrame(rows, columns=["severity", "code", "message", "positions", "tokens"])


def record_choices(audits: Sequence[Any]) -> list[int]:
    """Indexes of the audited samples: those whose labels differ first, then those with other findings (not
    info), then the rest, each in input order."""
    def rank(a: Any) -> int:
        if a.differences > 0:
            return 0
        return 1 if any(f.severity != "info" for f in a.findings) else 2

    return sorted(range(len(audits)), key=lambda i: (rank(audits[i]), i))
