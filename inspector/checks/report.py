"""The report: outcomes aggregated into per-check counts, without keeping the outcomes.

``Report().add_all(iter_outcomes(...))`` counts, for every check of the catalog, its findings, the records and
samples with at least one, and keeps the first example ids and findings; ``merge`` adds the report of the records
that follow (the Ray engine merges one per shard); ``to_dict`` is report.json; ``fails(fail_on)`` is the exit code.
``report_settings`` says what a report was made with.

Example: 4 records, "r1" rejected by the loader -> ``checks["record-rejected"]``: findings 1, records 1,
share 0.25, examples ["r1"]; ``fails("error")`` -> True (the CLI exits 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from inspector.checks.catalog import CHECKS, SEVERITIES, SEVERITY_RANK, Thresholds, at_least, finding
from inspector.checks.run import Outcome
from inspector.labels.engine import LabelOptions
from inspector.template.tokenizer import ChatSetup


@dataclass
class CheckSummary:
    """Per-check totals: ``findings`` (how many), ``records`` (input records with at least one), ``share``
    (records / all records), the first ``examples`` ids and the first findings in full."""

    code: str
    severity: str
    title: str
    findings: int = 0
    records: int = 0
    samples: int = 0
    examples: list[str] = field(default_factory=list)
    first: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Report:
    """Aggregates outcomes without keeping them: memory stays flat over any number of records.

    ``share`` of a check is the fraction of input records with at least one of its findings; for every strategy
    but split-turns a record is one sample, so this is the share of samples.
    """

    settings: dict[str, Any] = field(default_factory=dict)
    records: int = 0
    conversations: int = 0
    rejected_by_loader: int = 0
    samples: int = 0
    tokens: int = 0
    trainable_tokens: int = 0
    accepted_records: int = 0
    checks: dict[str, CheckSummary] = field(default_factory=dict)
    max_examples: int = 5
    skipped: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the export summary, merged into to_dict()

    def __post_init__(self) -> None:
        for c in CHECKS.values():
            self.checks.setdefault(c.code, CheckSummary(c.code, c.severity, c.title))

    def add(self, outcome: Outcome) -> None:
        self.records += 1
        if outcome.rejected is not None:
            self.rejected_by_loader += 1
        else:
            self.conversations += 1
        self.samples += outcome.num_samples
        self.tokens += outcome.num_tokens
        self.trainable_tokens += outcome.num_trainable
        if outcome.accepted:
            self.accepted_records += 1
        seen_codes: set[str] = set()
        seen_samples: set[tuple[str, str | None]] = set()
        for f in outcome.findings:
            s = self.checks[f.code]
            s.findings += 1
            if (f.code, f.sample_id) not in seen_samples:
                seen_samples.add((f.code, f.sample_id))
                s.samples += 1
            if f.code not in seen_codes:
                seen_codes.add(f.code)
                s.records += 1
                if len(s.examples) < self.max_examples:
                    s.examples.append(f.sample_id or f.conversation_id or outcome.record_id)
            if len(s.first) < self.max_examples:
                s.first.append(f.to_dict())

    def add_all(self, outcomes: Iterable[Outcome]) -> "Report":
        for oc in outcomes:
            self.add(oc)
        return self

    def merge(self, other: "Report") -> "Report":
        """Add ``other``, the report of the records that follow this report's in input order: counts add up, and
        examples and first findings are this report's, then ``other``'s, cut to ``max_examples``. Merging the reports
        of consecutive parts in order gives the report of the whole (the Ray engine merges one per shard).

        Example: examples ["a", "b"] merged with ["c", "d", "e", "f"] (max 5) -> ["a", "b", "c", "d", "e"].
        """
        for name in ("records", "conversations", "rejected_by_loader", "samples", "tokens", "trainable_tokens",
                     "accepted_records"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for code, theirs in other.checks.items():
            mine = self.checks[code]
            mine.findings += theirs.findings
            mine.records += theirs.records
            mine.samples += theirs.samples
            mine.examples.extend(theirs.examples[:max(0, self.max_examples - len(mine.examples))])
            mine.first.extend(theirs.first[:max(0, self.max_examples - len(mine.first))])
        return self

    def share(self, code: str) -> float:
        return self.checks[code].records / self.records if self.records else 0.0

    def _sync_no_records(self) -> None:
        """``no-records`` is a finding of the whole input: one when nothing was read, none as soon as a record was."""
        s = self.checks["no-records"]
        if self.records == 0 and "no-records" not in self.skipped:
            if not s.findings:
                s.findings = 1
                s.first = [finding("no-records", "the input holds no record (an empty file, only blank lines, zero "
                                   "rows or an empty list): nothing would be trained").to_dict()]
        else:
            s.findings, s.first = 0, []

    def fired(self) -> list[CheckSummary]:
        """Checks with at least one finding, errors first, then in registry order."""
        self._sync_no_records()
        order = {c: i for i, c in enumerate(CHECKS)}
        out = [s for s in self.checks.values() if s.findings]
        return sorted(out, key=lambda s: (SEVERITY_RANK[s.severity], order[s.code]))

    def count(self, severity: str) -> int:
        """Findings at exactly ``severity``."""
        self._sync_no_records()
        return sum(s.findings for s in self.checks.values() if s.severity == severity)

    def fails(self, fail_on: str | None) -> bool:
        """True when a finding at or above ``fail_on`` ("error" / "warning"; None or "never": never) exists."""
        if fail_on in (None, "never"):
            return False
        self._sync_no_records()
        return any(s.findings and at_least(s.severity, fail_on) for s in self.checks.values())

    @property
    def rejected_records(self) -> int:
        return self.records - self.accepted_records

    def to_dict(self) -> dict[str, Any]:
        self._sync_no_records()
        return {
            "settings": dict(self.settings),
            "totals": {
                "records": self.records, "conversations": self.conversations,
                "rejected_by_loader": self.rejected_by_loader, "samples": self.samples, "tokens": self.tokens,
                "trainable_tokens": self.trainable_tokens,
                "trainable_share": round(self.trainable_tokens / self.tokens, 6) if self.tokens else 0.0,
                "accepted_records": self.accepted_records, "rejected_records": self.rejected_records,
                "findings": {sev: self.count(sev) for sev in SEVERITIES},
            },
            "checks": {code: {"severity": s.severity, "title": s.title, "findings": s.findings,
                              "records": s.records, "samples": s.samples,
                              "share": round(self.share(code), 6), "examples": list(s.examples),
                              "first": list(s.first), "skipped": code in self.skipped}
                       for code, s in self.checks.items()},
            **self.extra,
        }


def report_settings(setup: ChatSetup, options: LabelOptions, thresholds: Thresholds = Thresholds()) -> dict[str, Any]:
    """What a report was made with (shown by the CLI, stored in report.json)."""
    return {"tokenizer": setup.name, "template_source": setup.template_source, "strategy": options.strategy,
            "max_length": options.max_length, "truncation_side": options.truncation_side,
            "label_eot": options.label_eot, "min_trainable_share": thresholds.min_trainable_share,
            # the time strftime_now gave the renders: shown where the template reads it
            "now": options.limits.now if "strftime_now" in setup.template else None}
