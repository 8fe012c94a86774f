"""Training templates for TRL's ``assistant_only_loss``: a chat template rewritten with ``{% generation %}`` tags
around exactly what our ``assistant-only`` labels train, then verified through transformers itself.

- ``jinja_source``: the template's source as positioned tokens, to edit it without reformatting;
- ``rewrite``: where each assistant turn is written in the source, and the edits that tag it;
- ``build``: ``build_training_template`` (observe renders, decide, rewrite);
- ``check``: ``export_training_template`` renders with ``return_assistant_tokens_mask=True`` and compares the mask
  with our labels token by token.
"""

from inspector._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "build": ["TrainingTemplate", "build_training_template", "PROBE_CONVERSATIONS"],
    "check": ["TrainingTemplateReport", "export_training_template", "verify_training_template"],
})
