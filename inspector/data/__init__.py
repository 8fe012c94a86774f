"""Records in, validated samples out: read the formats people have, write what a trainer loads.

- ``loaders``: OpenAI ``messages``, ShareGPT ``conversations``, prompt/completion and Alpaca records from JSON,
  JSONL, Parquet or a ``datasets`` folder into ``Conversation``s; every record accepted or ``Rejected`` with the
  file, the line and the reason;
- ``export``: accepted samples (``input_ids``, ``attention_mask``, ``labels``, ``assistant_masks``) and rejected
  records with reasons, all or nothing; ``packed_export``: packed sequences;
- ``distributed``: the same check and export as a Ray Data pipeline.
"""

from inspector._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "loaders": ["FORMATS", "SUPPORTED_EXTENSIONS", "iter_records", "load_data", "load_text", "load_bytes",
                "normalize_record", "detect_format"],
    "export": ["EXPORT_FORMATS", "ExportError", "ExportWriter", "export_data", "export_outcomes"],
    "packed_export": ["write_packed"],
    "distributed": ["RayOptions", "run_check", "run_export"],
})
