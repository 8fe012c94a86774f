"""Hooks into training frameworks, import-safe without them: ``trl`` (a TrainerCallback that audits the first
batches the model receives, and ``audit_trainer``)."""
