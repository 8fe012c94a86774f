"""The chat setup: load a tokenizer and its chat template, and render conversations with it safely.

- ``tokenizer``: any Hugging Face tokenizer (hub id, local folder, ``tokenizer.json``, GGUF, SentencePiece,
  Tekken) and the template to use (its own, or Jinja text a user gives): a ``ChatSetup``;
- ``render``: render messages with the template, with limits on time and size;
- ``probe``: render tiny conversations once to learn the template's turn markers (``TemplateInfo``);
- ``sandbox``: the bounded Jinja sandbox every render runs in (memory and work sized before each step).

Nothing here knows about labels: ``inspector.labels`` builds samples on top of these renders.
"""

from inspector._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "tokenizer": ["ChatSetup", "DEFAULT_TOKENIZER", "DEMO_DIR", "load_setup", "load_tokenizer", "resolve_template",
                  "is_tokenizer_failure"],
    "render": ["RenderLimits", "Rendered", "compile_template", "has_generation_tags", "render"],
    "probe": ["TemplateInfo", "probe_template"],
})
