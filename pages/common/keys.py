"""Stable keys for session state and caches: one text key per set of label options, a short hash per template or
file. ``ui`` (the sidebar), ``analysis`` (cached labels and scans) and ``model`` (the Loss page) all key their caches
with these, so this module imports none of them.

Example: ``sha("{{ messages }}")`` -> a 16-hex-digit key; two ``LabelOptions`` that differ only in ``max_length``
give two different ``options_key`` texts, so their cached samples never mix.
"""

from __future__ import annotations

import hashlib

from inspector.labels.engine import LabelOptions


def options_key(opts: LabelOptions) -> str:
    """A stable text key for label options (LabelOptions holds a dict, so it is not hashable itself)."""
    return repr((opts.strategy, opts.label_eot, opts.max_length, opts.truncation_side, opts.respect_trainable,
                 opts.keep_history_labels, opts.response_template, opts.instruction_template, opts.turn_format,
                 sorted(opts.template_kwargs.items()), opts.roles_to_train, opts.train_on_eos))


def sha(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:16]
