"""Records in, validated samples out: read the formats people have, write what a trainer loads.

- ``loaders``: the entry points (``iter_records``, ``load_data``, ``load_text``, ``load_bytes``): every record
  accepted as a ``Conversation`` or ``Rejected`` with the file, the line and the reason. They put together
  ``files`` (JSON, JSONL, Parquet, ``datasets`` folders, within byte bounds), ``formats`` (OpenAI ``messages``,
  ShareGPT ``conversations``, prompt/completion, Alpaca -> ``Conversation``), ``messages`` (one message in any of
  their names) and ``records`` (a record's bounds, id and reasons). A new data format: see loaders' docstring;
- ``export``: accepted samples (``input_ids``, ``attention_mask``, ``labels``, ``assistant_masks``) and rejected
  records with reasons, all or nothing; ``packed_export``: packed sequences;
- ``distributed``: the same check and export as a Ray Data pipeline.
"""

from inspector._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "loaders": ["iter_records", "load_data", "load_text", "load_bytes"],
    "formats": ["FORMATS", "normalize_record", "detect_format"],
    "files": ["SUPPORTED_EXTENSIONS"],
    "export": ["EXPORT_FORMATS", "ExportError", "ExportWriter", "export_data", "export_outcomes"],
    "packed_export": ["write_packed"],
    "distributed": ["RayOptions", "run_check", "run_export"],
})
