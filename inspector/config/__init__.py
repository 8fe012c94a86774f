"""Trainer configs: read the config a training run will use (TRL, axolotl, LLaMA-Factory) into inspector options,
so a pre-flight check runs with the run's own max length, strategy and template instead of settings typed again.

- ``common``: ``TrainerConfig`` (options + one ``Setting`` per key: taken -> which option, ignored and why, no
  equivalent) and reading YAML/JSON;
- ``load``: ``load_config`` (a file) / ``read_config`` (a dict), which tell the trainer from the keys;
- ``trl``: ``trl sft --config`` files (SFTConfig fields);
- ``axolotl``: axolotl's YAML (``chat_template``, ``sequence_len``, ``datasets[].roles_to_train`` /
  ``train_on_eos`` ...);
- ``llamafactory``: LLaMA-Factory's YAML and the ``dataset_info.json`` entries its ``dataset`` names.

Example: axolotl ``sequence_len: 512`` + ``datasets: [{type: chat_template, train_on_eos: last}]`` ->
options {"max_length": 512, "strategy": "assistant-only", "train_on_eos": "last", ...}.
"""

from inspector._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "common": ["TrainerConfig", "Setting", "TRAINERS", "read_mapping", "parse_mapping"],
    "load": ["load_config", "load_config_text", "detect_trainer", "read_config"],
})
