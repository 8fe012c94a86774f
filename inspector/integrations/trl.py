"""Audit, inside the training script, the batches the model will actually receive: after the collator (padding,
packing, completion masks), exactly as ``trainer.train()`` feeds them.

    from inspector.integrations.trl import AuditCallback
    trainer = SFTTrainer(model=..., args=..., train_dataset=ds, processing_class=tok,
                         callbacks=[AuditCallback(batches=2, fail_on="error")])
    trainer.train()   # logs the audit of the first 2 batches; raises AuditFailed on an error finding

or, before training: ``report = audit_trainer(trainer)``. Each collated row is tied to its conversation by
recovering the messages from the tokens (``inspector.audit.reference``); rows that cannot be tied still get the
token-level checks (shift, nothing trained, EOS never trained, truncation, packed positions).

Importing this module needs neither trl nor transformers: without transformers, ``AuditCallback`` is a plain class
with the same ``on_train_begin`` (transformers' callback handler only calls the methods it finds).

Example: TRL's Qwen2.5 training template -> the log says "extra-trained-tokens '\\n' after '<|im_end|>' — 2/2
records"; with ``fail_on="warning"`` the training stops before its first step with ``AuditFailed``.
"""

from __future__ import annotations

import logging
from typing import Any

from inspector.errors import InspectorError

try:  # transformers is optional: the callback base class when it is there
    from transformers import TrainerCallback as _Base
except Exception:  # noqa: BLE001 - not installed (or broken): a plain base class
    _Base = object

logger = logging.getLogger("inspector.audit")


class AuditFailed(InspectorError):
    """The audit of the trainer's batches found something at or above ``fail_on``; ``report`` holds it all."""

    def __init__(self, message: str, report: Any):
        super().__init__(message)
        self.report = report


def _setup(tokenizer: Any, chat_template: str | None) -> Any:
    from inspector.template.tokenizer import ChatSetup, read_template_file

    tok = getattr(tokenizer, "tokenizer", tokenizer)  # a processor wraps its tokenizer
    if chat_template is not None and "{" not in chat_template:
        chat_template = read_template_file(chat_template)
    template = chat_template or getattr(tok, "chat_template", None) or ""
    source = "given" if chat_template else "tokenizer"
    return ChatSetup(tokenizer=tok, template=template, template_source=source,
                     name=getattr(tok, "name_or_path", "trainer's tokenizer"))


def audit_dataloader(dataloader: Any, tokenizer: Any, *, batches: int = 1, chat_template: str | None = None) -> Any:
    """Audit the first ``batches`` batches of ``dataloader`` (collated, as the model receives them)."""
    from inspector.audit.compare import AuditContext
    from inspector.audit.run import audit_batch

    setup = _setup(tokenizer, chat_template)
    ctx = AuditContext(setup)
    report = None
    start = 0
    for k, batch in enumerate(dataloader):
        if k >= batches:
            break
        report = audit_batch(batch, setup, ctx, start=start, report=report)
        ids = batch["input_ids"]
        start += int(ids.shape[0]) if getattr(ids, "ndim", 1) > 1 else 1
    if report is None:
        from inspector.audit.report import AuditReport

        report = AuditReport(settings={"data": "train_dataloader (empty)"})
    report.settings["data"] = f"the first {batches} batch(es) of the trainer's train_dataloader"
    return report


def audit_trainer(trainer: Any, *, batches: int = 1, fail_on: str | None = None,
                  chat_template: str | None = None) -> Any:
    """Audit ``trainer``'s own ``get_train_dataloader()`` (first ``batches`` batches); raise ``AuditFailed`` when a
    finding at or above ``fail_on`` ("error" / "warning") exists. Returns the ``AuditReport``."""
    report = audit_dataloader(trainer.get_train_dataloader(), trainer.processing_class, batches=batches,
                              chat_template=chat_template)
    _verdict(report, fail_on)
    return report


def _verdict(report: Any, fail_on: str | None) -> None:
    from inspector.audit.report import format_report

    text = format_report(report, examples=1)
    if report.fails(fail_on):
        raise AuditFailed(f"the audit of the trainer's batches found findings at or above {fail_on!r}:\n{text}",
                          report)
    logger.info("%s", text)


class AuditCallback(_Base):
    """At ``on_train_begin``: audit the first ``batches`` batches of the trainer's ``train_dataloader`` and log the
    report (``report`` keeps it); raise ``AuditFailed`` (which stops ``trainer.train()``) on ``fail_on``."""

    def __init__(self, batches: int = 1, fail_on: str | None = "error", chat_template: str | None = None):
        self.batches = batches
        self.fail_on = fail_on
        self.chat_template = chat_template
        self.report: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        dataloader = kwargs.get("train_dataloader")
        tokenizer = kwargs.get("processing_class") or kwargs.get("tokenizer")
        if dataloader is None or tokenizer is None:
            logger.warning("inspector audit: the trainer passed no train_dataloader / processing_class; skipped")
            return control
        self.report = audit_dataloader(dataloader, tokenizer, batches=self.batches,
                                       chat_template=self.chat_template)
        _verdict(self.report, self.fail_on)
        return control
