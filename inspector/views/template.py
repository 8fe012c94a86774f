"""What the Export page draws of a training template (``template_check``), as plain data and escaped HTML. No
Streamlit here.

- ``verification_frame``: one row per conversation of a ``Verification`` — tokens, agreement, whether the text is
  byte-identical, the result in words.
- ``side_by_side_html``: the original and the training template line by line (``template_check.side_by_side``), the
  inserted ``{% generation %}`` tags and rewritten outputs highlighted in the new lines; optionally only the changed
  lines with a few lines of context around them.

Example: a DiffLine(3, "{{ m.content }}", 3, "{% generation %}{{ m.content }}{% endgeneration %}", ((0, 16), (31,
50))) becomes a row whose right cell reads ``<mark ...>{% generation %}</mark>{{ m.content }}<mark ...>{%
endgeneration %}</mark>``. Every template text is escaped: a template can hold markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from inspector.views.viz import _CELL, _e

MARK_COLOR = "#bbf7d0"  # inserted tags and rewritten outputs: the "trained" green of the token views
CHANGED_ROW = "#fefce8"  # a line that differs between the two templates
_LINE_NO = "color:#6b7280;text-align:right;user-select:none;"


def verification_frame(verification: Any) -> pd.DataFrame:
    """One row per conversation: conversation, source, tokens, agree (share, "-" when nothing was compared), text
    ("same", "differs", "-" when it did not render), result ("verified", the reason, or "N+ tokens differ") and
    flag tokens (masked only by per-message flags, which no chat template can express)."""
    rows = []
    for r in verification.rows:
        result = "verified" if r.verified else r.reason or (f"{len(r.mismatches)}+ tokens differ" if r.mismatches
                                                            else f"label errors: {r.label_errors[0]}")
        rows.append({"conversation": r.conversation_id, "source": r.source or "", "tokens": r.tokens,
                     "agree": f"{100 * r.agreement:.2f}%" if r.tokens else "-",
                     "text": "same" if r.identical else "differs" if r.identical is False else "-",
                     "result": result, "flag tokens": r.flags})
    return pd.DataFrame(rows, columns=["conversation", "source", "tokens", "agree", "text", "result", "flag tokens"])


def _marked(line: str, marks: Sequence[tuple[int, int]]) -> str:
    """``line`` escaped, with the columns in ``marks`` wrapped in <mark>."""
    out, pos = [], 0
    for a, b in sorted(marks):
        a, b = max(a, pos), min(b, len(line))
        if b <= a:
            continue
        out.append(_e(line[pos:a]))
        out.append(f'<mark class="sfti-tag" style="background-color:{MARK_COLOR};color:#14532d;padding:0">'
                   f'{_e(line[a:b])}</mark>')
        pos = b
    out.append(_e(line[pos:]))
    return "".join(out)


def _is_changed(row: Any) -> bool:
    return bool(row.marks) or row.old != row.new


def side_by_side_html(rows: Sequence[Any], changed_only: bool = False, context: int = 2) -> str:
    """The two templates side by side: line number and text of the original, line number and text of the training
    template with its marks highlighted. A changed line has a pale yellow background and ``data-changed="true"``.
    ``changed_only``: only the changed lines and ``context`` lines around each, a "⋯" row where lines are left out.
    """
    keep = range(len(rows))
    if changed_only:
        changed = [i for i, r in enumerate(rows) if _is_changed(r)]
        keep = sorted({j for i in changed for j in range(i - context, i + context + 1) if 0 <= j < len(rows)})
    cell = f"{_CELL}font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;vertical-align:top;"
    wrap = "white-space:pre-wrap;word-break:break-all;"
    head = (f'<tr><th style="{cell}"></th><th style="{cell}text-align:left;width:50%">original</th>'
            f'<th style="{cell}"></th><th style="{cell}text-align:left;width:50%">training template</th></tr>')
    body, last = [], -1
    for i in keep:
        if i != last + 1:
            body.append(f'<tr class="sfti-gap"><td colspan="4" style="{cell}color:#6b7280;text-align:center">⋯</td>'
                        f'</tr>')
        last = i
        r = rows[i]
        changed = _is_changed(r)
        bg = f"background-color:{CHANGED_ROW};" if changed else ""
        old = "" if r.old is None else _e(r.old)
        new = "" if r.new is None else _marked(r.new, r.marks)
        body.append(
            f'<tr class="sfti-diff-row" data-changed="{str(changed).lower()}" style="{bg}">'
            f'<td style="{cell}{_LINE_NO}">{"" if r.old_number is None else r.old_number}</td>'
            f'<td class="sfti-old" style="{cell}{wrap}">{old}</td>'
            f'<td style="{cell}{_LINE_NO}">{"" if r.new_number is None else r.new_number}</td>'
            f'<td class="sfti-new" style="{cell}{wrap}">{new}</td></tr>')
    if changed_only and keep and last != len(rows) - 1:
        body.append(f'<tr class="sfti-gap"><td colspan="4" style="{cell}color:#6b7280;text-align:center">⋯</td></tr>')
    if not body:
        body.append(f'<tr><td colspan="4" style="{cell}">No line changed.</td></tr>')
    return (f'<div class="sfti-side-by-side" style="max-height:70vh;overflow:auto">'
            f'<table style="border-collapse:collapse;width:100%;table-layout:fixed">'
            f'<colgroup><col style="width:3em"><col><col style="width:3em"><col></colgroup>'
            f'<thead>{head}</thead><tbody>{"".join(body)}</tbody></table></div>')
