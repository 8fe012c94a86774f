"""What a trainer does with the samples next: pack them, and compute the real loss with a model.

- ``packing``: TRL's ``bfd`` / ``bfd_split`` / ``wrapped`` packing, padded or padding-free collation, and the
  packing checks (cross-sample attention and prediction, truncation, padding);
- ``loss``: per-token loss of a causal LM on the labels, under each reduction (needs the ``model`` extra);
- ``model``: load that model on the CPU (a hub id, a folder or a GGUF file).
"""

from inspector._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "packing": ["PACKING_STRATEGIES", "PackInput", "PackOptions", "Packing", "pack", "collate", "packing_findings",
                "packing_summary"],
    "loss": ["TokenLosses", "batch_losses", "score_samples", "strategy_losses"],
    "model": ["DEFAULT_MODEL", "LoadedModel", "load_model"],
})
