"""SFT Inspector core: see, token by token, what a supervised fine-tuning run trains on.

A plain Python package (it never imports Streamlit) shared by the app, the CLI and the tests:

- ``loaders``: read JSON/JSONL/Parquet/``datasets`` folders into ``Conversation``s, rejecting bad records with reasons;
- ``tokenizer``: load any Hugging Face tokenizer and pick its chat template (or an override);
- ``render`` / ``spans``: render with the template in a sandbox, then find every message and assistant turn;
- ``labels``: ``input_ids`` / ``labels`` (-100 where ignored) under each strategy;
- ``weights``: the gradient weight each token gets under each loss reduction;
- ``packing``: pack samples as TRL does (bfd, bfd_split, wrapped), collate them padded or padding-free, and check
  what that does to labels, attention and weights (``packing_viz``: what a page draws; ``packed_export``: files).
"""

from inspector.constants import IGNORE_INDEX

__all__ = ["IGNORE_INDEX"]
__version__ = "0.1.0"
