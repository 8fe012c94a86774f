"""The audit: read a trainer's own tokenized output and say where its labels differ from what should be trained.

- ``read``: tokenized datasets (save_to_disk folder, Arrow, Parquet, JSONL) and collated batches -> ``TokenRow``s
  (input_ids + the trained mask from labels / assistant_masks / completion_mask, padding dropped, packed rows split);
- ``reference``: tie each row to its conversation (stored column, ``--reference RAW``, recovered from tokens);
- ``compare``: the trainer's mask against the inspector's, token by token or anchored on message contents;
- ``findings``: the audit's finding codes (``AUDIT_CHECKS``);
- ``report``: aggregation by pattern and per record; ``run``: the whole audit in one call.

Example: ``run_audit("trl_prepared/", setup)[0].to_dict()["patterns"][0]["pattern"]`` -> "'\\n' after
'<|im_end|>'" for TRL's Qwen2.5 training template.
"""

from inspector._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "read": ["TokenRow", "Columns", "open_tokenized", "rows_from_batch", "decide_columns"],
    "reference": ["Referencer", "Tie"],
    "compare": ["AuditContext", "RowAudit", "audit_rows", "token_findings"],
    "findings": ["AUDIT_CHECKS", "audit_finding"],
    "report": ["AuditReport", "format_report", "iter_audits"],
    "run": ["run_audit", "audit_batch", "audit_token_rows"],
})
