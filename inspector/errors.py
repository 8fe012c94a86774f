"""Named exceptions for input the core cannot use.

Problems *found in* usable input (a leak, a missing end-of-turn label) are data: see ``checks.Finding``. These
exceptions are for input that stops the work, and each message says how to fix it. The CLI and the app turn them
into messages; the core never prints.
"""


class InspectorError(Exception):
    """Base class: everything the core raises on purpose."""


class DataError(InspectorError):
    """A data file cannot be read at all (missing, not JSON/JSONL/Parquet, unknown format).

    A single bad record does not raise: it becomes a ``Rejected`` entry with its reason.
    """


class RecordError(InspectorError):
    """One record cannot be normalized into a conversation. Carries the reason shown to the user."""


class TokenizerLoadError(InspectorError):
    """A tokenizer cannot be loaded (no network for a hub id, missing files, GGUF without torch, ...)."""


class ChatTemplateError(InspectorError):
    """No usable chat template (none on the tokenizer and none given), or the template text does not compile."""


class RenderError(InspectorError):
    """The chat template raised while rendering a conversation (its own ``raise_exception`` message included)."""


class RenderTimeout(RenderError):
    """The chat template ran past the time or output-size limit (a loop without bound, a runaway string)."""


class MissingExtraError(InspectorError):
    """An optional extra is not installed (e.g. torch for the real loss). ``extra`` names it; the message says which
    ``pip install`` brings it."""

    def __init__(self, message: str, extra: str = "model"):
        super().__init__(message)
        self.extra = extra


class ModelError(InspectorError):
    """A model cannot be loaded (no network for a hub id, missing folder or file, not a causal LM) or cannot score a
    sample (a token id beyond its vocabulary: the tokenizer does not belong to the model)."""


class ConfigError(InspectorError):
    """A trainer config (``--config``) cannot be used: not found, not YAML/JSON, a value of the wrong kind, or a
    setting the inspector cannot follow without the user's say (a template it does not have)."""
