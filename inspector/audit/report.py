"""Aggregate row audits into one report: counts per finding code, per pattern (the same token trained the same way in
many records: "'\\n' after '<|im_end|>' trained in 40/40 records"), and the findings of each record.

Memory stays flat: only the first ``max_records`` records with findings are kept in full, and ``max_examples`` ids
per pattern. ``fails(fail_on)`` decides the exit code as ``check`` does.

Example: 3 rows, TRL's Qwen2.5 training template -> ``patterns[0] == {"code": "extra-trained-tokens",
"pattern": "'\\n' after '<|im_end|>'", "records": 3, "tokens": 6, ...}``, exit 0 with --fail-on error (a warning),
1 with --fail-on warning.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from inspector.checks.catalog import SEVERITIES, SEVERITY_RANK, at_least
from inspector.audit.compare import AuditContext, RowAudit, audit_rows
from inspector.audit.findings import AUDIT_CHECKS
from inspector.audit.read import TokenRow

DEFAULT_CHUNK_ROWS = 256


@dataclass
class Pattern:
    code: str
    severity: str
    pattern: str
    records: int = 0
    tokens: int = 0
    examples: list[str] = field(default_factory=list)
    first: dict[str, Any] | None = None

    def to_dict(self, samples: int) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "pattern": self.pattern, "records": self.records,
                "of": samples, "tokens": self.tokens, "examples": list(self.examples), "first": self.first}


@dataclass
class AuditReport:
    """What the audit found over all rows. ``samples``: rows after packed rows were split; ``tied``: samples with a
    conversation; ``methods``: how many were compared rendered / anchored / by tokens only."""

    settings: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, Any] = field(default_factory=dict)
    samples: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    expected_tokens: int = 0
    differing_tokens: int = 0
    tied: int = 0
    tie_sources: Counter = field(default_factory=Counter)
    methods: Counter = field(default_factory=Counter)
    untied: Counter = field(default_factory=Counter)
    codes: dict[str, dict[str, int]] = field(default_factory=dict)
    patterns: dict[tuple[str, str], Pattern] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    max_records: int = 200
    max_examples: int = 5
    records_with_findings: int = 0

    def add(self, audit: RowAudit) -> None:
        row = audit.row
        self.samples += 1
        self.tokens += row.num_tokens
        self.trained_tokens += int(row.trained.sum())
        self.methods[audit.method] += 1
        if audit.tie.conversation is not None:
            self.tied += 1
            self.tie_sources[audit.tie.source] += 1
        else:
            self.untied[audit.tie.reason or "unknown"] += 1
        if audit.expected is not None:
            self.expected_tokens += int(audit.expected.sum())
            self.differing_tokens += audit.differences
        seen: set[str] = set()
        seen_patterns: set[tuple[str, str]] = set()
        for f in audit.findings:
            c = self.codes.setdefault(f.code, {"findings": 0, "records": 0, "tokens": 0})
            c["findings"] += 1
            c["tokens"] += int(f.details.get("count", len(f.positions)))
            if f.code not in seen:
                seen.add(f.code)
                c["records"] += 1
            key = (f.code, str(f.details.get("pattern", f.code)))
            p = self.patterns.get(key)
            if p is None:
                p = self.patterns[key] = Pattern(f.code, f.severity, key[1], first=f.to_dict())
            p.tokens += int(f.details.get("count", len(f.positions)))
            if key not in seen_patterns:
                seen_patterns.add(key)
                p.records += 1
                if len(p.examples) < self.max_examples:
                    p.examples.append(row.id)
        if audit.findings:
            self.records_with_findings += 1
            if len(self.records) < self.max_records:
                self.records.append(record_dict(audit))

    def add_all(self, audits: Iterable[RowAudit]) -> "AuditReport":
        for a in audits:
            self.add(a)
        return self

    def count(self, severity: str) -> int:
        return sum(c["findings"] for code, c in self.codes.items() if AUDIT_CHECKS[code].severity == severity)

    def fails(self, fail_on: str | None) -> bool:
        if fail_on in (None, "never"):
            return False
        return any(c["findings"] and at_least(AUDIT_CHECKS[code].severity, fail_on) for code, c in self.codes.items())

    def sorted_patterns(self) -> list[Pattern]:
        """Errors first, then the patterns seen in most records."""
        return sorted(self.patterns.values(), key=lambda p: (SEVERITY_RANK[p.severity], -p.records, -p.tokens,
                                                              p.code, p.pattern))

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": dict(self.settings),
            "columns": dict(self.columns),
            "totals": {"samples": self.samples, "tokens": self.tokens, "trained_tokens": self.trained_tokens,
                       "expected_tokens": self.expected_tokens, "differing_tokens": self.differing_tokens,
                       "tied": self.tied, "untied": self.samples - self.tied,
                       "records_with_findings": self.records_with_findings,
                       "findings": {sev: self.count(sev) for sev in SEVERITIES}},
            "tied_by": dict(self.tie_sources),
            "compared_by": dict(self.methods),
            "untied_reasons": dict(self.untied.most_common(20)),
            "codes": {code: {"severity": AUDIT_CHECKS[code].severity, "title": AUDIT_CHECKS[code].title, **c}
                      for code, c in sorted(self.codes.items(), key=lambda kv: (
                          SEVERITY_RANK[AUDIT_CHECKS[kv[0]].severity], kv[0]))},
            "patterns": [p.to_dict(self.samples) for p in self.sorted_patterns()],
            "records": list(self.records),
        }


def record_dict(audit: RowAudit) -> dict[str, Any]:
    row = audit.row
    return {"id": row.id, "row": row.index, "part": row.part, "offset": row.offset, "tokens": row.num_tokens,
            "trained": int(row.trained.sum()), "tied_by": audit.tie.source if audit.tie.conversation is not None
            else None, "compared": audit.method, "differences": audit.differences, "notes": list(audit.notes),
            "findings": [f.to_dict() for f in audit.findings]}


def chunked_rows(rows: Iterable[TokenRow], size: int) -> Iterator[list[TokenRow]]:
    chunk: list[TokenRow] = []
    for r in rows:
        chunk.append(r)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def iter_audits(rows: Iterable[TokenRow], ctx: AuditContext, chunk_rows: int = DEFAULT_CHUNK_ROWS
                ) -> Iterator[RowAudit]:
    for chunk in chunked_rows(rows, chunk_rows):
        yield from audit_rows(chunk, ctx)


def format_report(report: AuditReport, examples: int = 3) -> str:
    """The text report the CLI prints."""
    lines = [f"Audit of {report.settings.get('data', 'the data')}"]
    lines += [f"  {line}" for line in report.columns.get("described", [])]
    t = report.samples
    lines.append(f"{t:,} samples, {report.tokens:,} tokens, {report.trained_tokens:,} trained by the trainer")
    tied = ", ".join(f"{n:,} {src}" for src, n in report.tie_sources.most_common())
    lines.append(f"tied to a conversation: {report.tied:,}/{t:,}" + (f" ({tied})" if tied else ""))
    for reason, n in report.untied.most_common(3):
        lines.append(f"  not tied ({n:,}): {reason}")
    if report.expected_tokens or report.tied:
        lines.append(f"compared: {', '.join(f'{n:,} {m}' for m, n in report.methods.most_common())}; "
                     f"{report.differing_tokens:,} tokens differ from what should be trained")
    pats = report.sorted_patterns()
    if not pats:
        lines.append("\nNo findings: the trainer trains what should be trained.")
        return "\n".join(lines)
    lines.append("\nPatterns (records of samples, tokens):")
    for p in pats:
        lines.append(f"  {p.severity:<7}  {p.code:<26} {p.pattern}  — {p.records:,}/{t:,} records, "
                     f"{p.tokens:,} tokens  e.g. {', '.join(p.examples[:examples])}")
    lines.append("\nFirst records with findings:")
    for rec in report.records[:examples]:
        lines.append(f"  {rec['id']} (row {rec['row']}, {rec['compared']}):")
        for f in rec["findings"][:6]:
            pos = f["positions"][:8]
            toks = f.get("details", {}).get("tokens", [])[:8]
            lines.append(f"    {f['severity']:<7} {f['code']}: {f['message']}")
            if pos:
                lines.append(f"            positions {pos}{'...' if len(f['positions']) > 8 else ''} tokens "
                             f"{' '.join(toks)}")
    return "\n".join(lines)
