"""The named pre-flight checks and the Report: problems found in training samples, as data (``Finding``), never as
exceptions. The CLI (``check --json``), the export and the app's checks page all show the same findings.

What lives where:

- ``catalog``: every check (code, severity, title, description, hint) in ``CHECKS``, ``Finding`` and ``finding()``,
  ``Thresholds``, ``SEVERITIES`` / ``at_least``; the packing codes (``PACKING_CODES``, run by
  ``inspector.train.packing``);
- ``context``: ``CheckContext``, the tokenizer facts every check reads, computed once; helpers over token arrays;
- ``conversation``: record-level checks (role order, unknown roles, empty messages) and the findings of records
  that were rejected by the loader or that the template refused;
- ``labels``, ``template``, ``tokenizer``: the sample-level checks by family (what is trained; what the template
  rendered; special ids and the vocabulary);
- ``sample``: ``check_sample`` and ``SAMPLE_CHECKS``, the one ordered list of sample-level checks;
- ``run``: ``evaluate`` / ``iter_outcomes`` / ``run_checks``, records in, one ``Outcome`` each out, streamed in
  chunks;
- ``report``: ``Report``, outcomes aggregated into per-check counts (report.json, the CLI's summary, the exit code).

How to add a check:

1. add a ``Check(code, severity, title, description, hint)`` to ``_CHECK_LIST`` in ``catalog`` (the code is
   forever: scripts and CI configs use it);
2. write ``check_x(sample, conv, ctx, labeled) -> list[Finding]`` in the family module it belongs to, returning
   ``[]`` when ``not ctx.enabled(code)``, with ``finding(code, message, positions=...)``;
3. append it to ``SAMPLE_CHECKS`` in ``sample`` (the order of that list is the order of a sample's findings).
A check of the whole conversation goes into ``conversation.check_conversation`` instead of steps 2-3.

Example: ``evaluate([conv], CheckContext(setup))`` for a conversation whose only assistant turn has
``loss_weight: 0`` -> one ``Outcome`` (not accepted) with ``Finding("no-trainable-tokens", "error", "0 of 23 tokens
are trained ...", ...)``; ``Report().add_all(outcomes).to_dict()`` counts it.

Names are exported lazily: ``from inspector.checks import Report`` imports ``inspector.checks.report`` when first
asked for. Modules inside ``inspector/`` import from the defining module (``inspector.checks.report``).
"""

from inspector._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "catalog": ["SEVERITIES", "SEVERITY_RANK", "Check", "CHECKS", "PACKING_CODES", "Finding", "finding", "at_least",
                "Thresholds"],
    "context": ["CheckContext", "tokenizer_adds_bos", "special_token_ids"],
    "conversation": ["check_conversation", "error_finding", "rejected_finding"],
    "labels": ["verification_findings"],
    "sample": ["SAMPLE_CHECKS", "check_sample"],
    "template": ["MAX_PROMPT_CHECKS", "PROMPT_RENDER_BUDGET"],
    "run": ["DEFAULT_CHUNK_SIZE", "DEFAULT_CHUNK_TEXT", "Outcome", "evaluate", "iter_outcomes", "chunks", "text_size",
            "run_checks"],
    "report": ["CheckSummary", "Report", "report_settings"],
})
