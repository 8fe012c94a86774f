"""One call for the whole audit: open the tokenized data, tie, compare, aggregate.

Example: ``run_audit("prepared/", load_setup("tok/"))`` -> an ``AuditReport`` whose ``patterns`` say which tokens
the trainer trains that it should not (and the reverse); ``keep=N`` also returns the first N ``RowAudit``s with
their masks side by side (the app's token table).
"""

from __future__ import annotations

from typing import Any

from typing import Iterable

from inspector.audit.compare import AuditContext, RowAudit
from inspector.audit.read import TokenRow, open_tokenized, rows_from_batch
from inspector.audit.reference import Referencer
from inspector.audit.report import DEFAULT_CHUNK_ROWS, AuditReport, iter_audits


def audit_settings(data: str, setup: Any, reference: str | None) -> dict[str, Any]:
    return {"data": str(data), "tokenizer": getattr(setup, "name", None),
            "template_source": getattr(setup, "template_source", None), "reference": reference}


def run_audit(data: str, setup: Any, *, reference: str | None = None, limit: int | None = None,
              keep: int = 0, chunk_rows: int = DEFAULT_CHUNK_ROWS, max_records: int = 200
              ) -> tuple[AuditReport, list[RowAudit]]:
    """Audit the tokenized dataset at ``data`` (``limit``: its first N rows). Raises ``DataError`` when it cannot be
    read; everything found in it is in the report."""
    tokenized = open_tokenized(data)
    ctx = AuditContext(setup, keep_tokens=keep > 0)
    ctx.referencer = Referencer(reference, setup, ctx.engine)  # recovery from tokens uses the same engine
    report = AuditReport(settings=audit_settings(data, setup, reference), columns=tokenized.columns.to_dict(),
                         max_records=max_records)
    kept: list[RowAudit] = []
    for audit in iter_audits(tokenized.rows(limit), ctx, chunk_rows):
        report.add(audit)
        if len(kept) < keep:
            kept.append(audit)
    report.settings["rows"] = tokenized.rows_read
    return report, kept


def audit_batch(batch: Any, setup: Any, ctx: AuditContext | None = None, start: int = 0,
                report: AuditReport | None = None) -> AuditReport:
    """Audit one collated batch (tensors as the model receives them) into ``report`` (a new one by default)."""
    ctx = ctx or AuditContext(setup)
    cols, rows = rows_from_batch(batch, start)
    report = report or AuditReport(settings=audit_settings("batch", setup, None), columns=cols.to_dict())
    report.add_all(iter_audits(rows, ctx))
    return report


def audit_token_rows(rows: Iterable[TokenRow], setup: Any, *, reference_items: list | None = None, keep: int = 0,
                     settings: dict[str, Any] | None = None, columns: dict[str, Any] | None = None
                     ) -> tuple[AuditReport, list[RowAudit]]:
    """Audit rows already in memory (the app's rows built from its own samples, or read from an upload);
    ``reference_items``: conversations to tie them to, by id, else by order."""
    ctx = AuditContext(setup, keep_tokens=keep > 0)
    ctx.referencer = Referencer(None, setup, ctx.engine, items=reference_items)
    report = AuditReport(settings=settings or audit_settings("rows", setup, None), columns=columns or {})
    kept: list[RowAudit] = []
    for audit in iter_audits(rows, ctx):
        report.add(audit)
        if len(kept) < keep:
            kept.append(audit)
    return report, kept
