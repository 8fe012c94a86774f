"""SFT Inspector core: see, token by token, what a supervised fine-tuning run trains on.

A plain Python package (it never imports Streamlit) shared by the app, the CLI and the tests, one folder per
capability (each ``__init__`` says what lives there; README "How it is built" draws them):

- ``template/``: load any Hugging Face tokenizer and pick its chat template (``ChatSetup``); render in a sandbox;
- ``labels/``: find every message in the rendered text, build ``input_ids`` / ``labels`` (-100 where ignored) under
  each strategy, verify them independently, and weigh each token under each loss reduction;
- ``checks/``: the named pre-flight checks, one ``Outcome`` per record, the ``Report``;
- ``data/``: read JSON / JSONL / Parquet / ``datasets`` folders into ``Conversation``s (bad records rejected with
  reasons), export trainer-ready samples, the Ray engine;
- ``training_template/``: chat templates rewritten with ``{% generation %}`` tags for TRL;
- ``train/``: what a trainer does next: packing, the real loss with a model;
- ``views/``: what the app draws, as tables, HTML and Plotly figures;
- ``audit/``: read a trainer's own tokenized output and say where its labels differ from what should be trained;
- ``config/``: read a TRL, axolotl or LLaMA-Factory config into the inspector's options;
- ``integrations/``: a TRL callback that audits the batches the model really receives;
- ``cli/``: ``python -m inspector``;
- ``constants``, ``conversations``, ``errors``: the ground types every folder shares.
"""

from inspector.constants import IGNORE_INDEX

__all__ = ["IGNORE_INDEX"]
__version__ = "0.1.0"
