"""The text report: a per-check summary with examples, the verdict line, and one sample as a token table.

Example: a report with 1 error in 3 samples prints the error's code, count and first finding, then the
verdict ``checks fired: 1 error, 0 warning, 0 info (--fail-on error) -> exit 1``.
"""

from __future__ import annotations

import textwrap

from inspector.checks.catalog import CHECKS, PACKING_CODES, SEVERITIES
from inspector.checks.context import CheckContext
from inspector.checks.report import Report
from inspector.cli.options import EXIT_FINDINGS, EXIT_OK

def _n(x: int) -> str:
    return f"{x:,}"


def _count(x: int, word: str, many: str | None = None) -> str:
    """``_count(1, "packed sequence")`` = "1 packed sequence", ``_count(1200, "sample")`` = "1,200 samples"."""
    return f"{x:,} {word if x == 1 else many or word + 's'}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _finding_line(f, indent: str = "") -> str:
    where = f.sample_id or f.conversation_id or ""
    lines = [f"{indent}{f.severity} {f.code} [{where}]: {f.message}"]
    if f.hint:
        lines.append(f"{indent}  hint: {f.hint}")
    return "\n".join(lines)


def format_report(report: Report, examples: int = 1) -> str:
    """The text summary: totals, one row per fired check (findings, records, share, example ids), quiet checks."""
    s = report.settings
    t = report.to_dict()["totals"]
    packed = (s.get("packing") or {}).get("max_length")  # pack: samples stay whole, sequences are max_length long
    length = (f"max_length {packed} (packed sequences; samples not truncated)" if packed and not s.get("max_length")
              else f"max_length {s.get('max_length') or 'none'}")
    head = [f"tokenizer {s.get('tokenizer')} (template: {s.get('template_source')}) · strategy {s.get('strategy')}"
            f" · {length}" + (f" · now {s['now']}" if s.get("now") else "")]
    share = _pct(t["trainable_share"]) if t["tokens"] else "-"
    head.append(f"{_n(t['records'])} records: {_n(t['conversations'])} conversations, {_n(t['rejected_by_loader'])} "
                f"rejected by the loader -> {_n(t['samples'])} samples, {_n(t['tokens'])} tokens, "
                f"{_n(t['trainable_tokens'])} trained ({share})")
    head.append(f"accepted {_n(t['accepted_records'])} of {_n(t['records'])} records (no error-level finding)")
    fired = report.fired()
    lines = head + [""]
    if fired:
        wcode = max(len("check"), *(len(x.code) for x in fired))
        lines.append(f"{'severity':<8}  {'check':<{wcode}}  {'findings':>8}  {'records':>7}  {'share':>6}  examples")
        for x in fired:
            ex = ", ".join(x.examples[:3]) + (", ..." if x.records > 3 else "")
            lines.append(f"{x.severity:<8}  {x.code:<{wcode}}  {_n(x.findings):>8}  {_n(x.records):>7}  "
                         f"{_pct(report.share(x.code)):>6}  {ex}")
    else:
        lines.append("No check fired.")
    if examples and fired:
        lines.append("")
        for x in fired:
            for d in x.first[:examples]:
                where = d.get("sample_id") or d.get("conversation_id") or ""
                lines.append(f"{x.code} [{where}]: {d['message']}")
                if d.get("hint"):
                    lines.append(f"  hint: {d['hint']}")
    quiet = [c for c in CHECKS if not report.checks[c].findings and c not in report.skipped
             and (c not in PACKING_CODES or "packing" in s)]
    if quiet:
        lines.append("")
        lines.extend(textwrap.wrap("quiet: " + ", ".join(quiet), 116, subsequent_indent="  ", break_on_hyphens=False))
    if report.skipped:
        lines.append("skipped: " + ", ".join(report.skipped))
    return "\n".join(lines)


def _verdict(report: Report, fail_on: str) -> str:
    counts = {sev: sum(1 for x in report.fired() if x.severity == sev) for sev in SEVERITIES}
    fired = ", ".join(f"{counts[s]} {s}" for s in SEVERITIES)
    code = EXIT_FINDINGS if report.fails(fail_on) else EXIT_OK
    return f"\nchecks fired: {fired} (--fail-on {fail_on}) -> exit {code}"


def _width(text: str) -> int:
    """Terminal columns: wide (CJK, fullwidth) characters take two. Example: '<｜User｜>' -> 10."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _fit(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` columns (ending in "…" when cut) and pad it to exactly ``width``."""
    if _width(text) > width:
        while _width(text) > width - 1:
            text = text[:-1]
        text += "…"
    return text + " " * (width - _width(text))


TRAINED_COLOR, MASKED_COLOR, RESET = "\x1b[32m", "\x1b[90m", "\x1b[0m"  # green, gray (as the app), back to normal
COLOR_CHOICES = ("auto", "always", "never")


def is_color_wanted(choice: str, stream=None) -> bool:
    """``--color``: always, never, or auto = the stream is a terminal and NO_COLOR is unset (https://no-color.org)."""
    import os
    import sys

    if choice != "auto":
        return choice == "always"
    stream = sys.stdout if stream is None else stream
    is_tty = getattr(stream, "isatty", lambda: False)()
    return bool(is_tty) and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def _paint(text: str, trained: bool, color: bool) -> str:
    return f"{TRAINED_COLOR if trained else MASKED_COLOR}{text}{RESET}" if color else text


def _pieces(sample, ctx: CheckContext) -> list[str]:
    """Each token's text in the sample (its characters), or the vocabulary entry when it covers none (special)."""
    offs = sample.offsets
    out = []
    for i, tid in enumerate(sample.input_ids):
        a, b = int(offs[i][0]), int(offs[i][1])
        out.append(sample.text[a:b] if b > a else ctx.tokenizer.convert_ids_to_tokens(int(tid)))
    return out


def _sample_head(sample) -> list[str]:
    n, k = sample.num_tokens, sample.num_trainable
    share = _pct(k / n) if n else "-"
    lines = [f"sample {sample.id} (conversation {sample.conversation_id}, {sample.strategy}): {_n(n)} tokens, "
             f"{_n(k)} trained ({share})"]
    if sample.truncation is not None:
        tr = sample.truncation
        lines.append(f"truncated at {tr.max_length} ({tr.side}): {tr.tokens_cut} tokens cut, {tr.labeled_cut} labeled")
    return lines


def format_sample(sample, ctx: CheckContext, color: bool = False) -> str:
    """One sample as a token table: position, id, text, segment, message, label (IGNORE_INDEX when ignored);
    ``*`` marks a token that straddles two segments. With ``color`` a trained row is green, a masked one gray."""
    from inspector.constants import IGNORE_INDEX

    lines = _sample_head(sample)
    lines.append(f"{'#':>5}  {'id':>7}  {'token':<28}  {'segment':<9}  {'msg':>3}  label")
    for i, (tid, piece) in enumerate(zip(sample.input_ids, _pieces(sample, ctx))):
        shown = _fit(repr(piece), 28)
        mi = int(sample.message_index[i])
        label = int(sample.labels[i])
        mark = " *" if bool(sample.straddles[i]) else ""
        row = (f"{i:>5}  {int(tid):>7}  {shown}  {sample.segments[i]:<9}  {mi if mi >= 0 else '-':>3}"
               f"  {label}{mark}")
        lines.append(_paint(row, label != IGNORE_INDEX, color))
    return "\n".join(lines)


def _escape(piece: str) -> str:
    """A token's text on one line: backslash, newline, tab and carriage return written as escapes."""
    return piece.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def format_inline(sample, ctx: CheckContext, color: bool = False) -> str:
    """The compact view (``show --inline``), as ``axolotl preprocess --debug`` prints a sample: every token in a
    row as ``text(label, id)``, separated by spaces.

    Example: "Hi" masked then " yo" trained -> ``Hi(-100, 17)  yo(42, 42)`` in plain text (the second token's own
    space kept); with ``color`` the first is wrapped in gray (ESC[90m ... ESC[0m), the second in green (ESC[32m)."""
    from inspector.constants import IGNORE_INDEX

    words = []
    for tid, label, piece in zip(sample.input_ids, sample.labels, _pieces(sample, ctx)):
        words.append(_paint(f"{_escape(piece)}({int(label)}, {int(tid)})", int(label) != IGNORE_INDEX, color))
    return "\n".join(_sample_head(sample) + [" ".join(words)])


# --- entry point --------------------------------------------------------------------------------------------------
