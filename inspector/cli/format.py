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
            f" · {length}"]
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


def format_sample(sample, ctx: CheckContext) -> str:
    """One sample as a token table: position, id, text, segment, message, label (IGNORE_INDEX when ignored);
    ``*`` marks a token that straddles two segments."""
    from inspector.constants import IGNORE_INDEX

    n, k = sample.num_tokens, sample.num_trainable
    share = _pct(k / n) if n else "-"
    lines = [f"sample {sample.id} (conversation {sample.conversation_id}, {sample.strategy}): {_n(n)} tokens, "
             f"{_n(k)} trained ({share})"]
    if sample.truncation is not None:
        tr = sample.truncation
        lines.append(f"truncated at {tr.max_length} ({tr.side}): {tr.tokens_cut} tokens cut, {tr.labeled_cut} labeled")
    lines.append(f"{'#':>5}  {'id':>7}  {'token':<28}  {'segment':<9}  {'msg':>3}  label")
    offs = sample.offsets
    for i, tid in enumerate(sample.input_ids):
        a, b = int(offs[i][0]), int(offs[i][1])
        piece = sample.text[a:b] if b > a else ctx.tokenizer.convert_ids_to_tokens(int(tid))
        shown = _fit(repr(piece), 28)
        mi = int(sample.message_index[i])
        label = sample.labels[i]
        mark = " *" if bool(sample.straddles[i]) else ""
        lines.append(f"{i:>5}  {int(tid):>7}  {shown}  {sample.segments[i]:<9}  {mi if mi >= 0 else '-':>3}"
                     f"  {label if label != IGNORE_INDEX else IGNORE_INDEX}{mark}")
    return "\n".join(lines)


# --- entry point --------------------------------------------------------------------------------------------------
