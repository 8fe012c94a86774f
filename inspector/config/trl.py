"""TRL: the YAML/JSON that ``trl sft --config FILE`` reads (``SFTConfig`` fields plus the script's model and
dataset arguments), in inspector options.

What TRL trains (SFTTrainer, trl 1.x): conversational data on every token unless ``assistant_only_loss: true``
(then the assistant turns, through the template's ``{% generation %}`` tags); prompt-completion data on the
completion only unless ``completion_only_loss: false``. Samples are cut to ``max_length`` (default 1024) from the
end (``truncation_mode: keep_start``) or the start (``keep_end``); with ``packing: true`` they are packed instead
(``packing_strategy`` bfd by default, and then padding-free).

Example: {"model_name_or_path": "Qwen/Qwen2.5-0.5B", "max_length": 512, "assistant_only_loss": true} ->
options tokenizer="Qwen/Qwen2.5-0.5B", max_length=512, strategy="assistant-only".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspector.config.common import TrainerConfig, as_bool, as_int, template_file_or_folder
from inspector.errors import ConfigError

# SFTConfig's defaults for the fields read here (tests compare them with the installed trl.SFTConfig)
DEFAULTS = {"max_length": 1024, "packing": False, "packing_strategy": "bfd", "padding_free": False,
            "assistant_only_loss": False, "completion_only_loss": None, "dataset_text_field": "text",
            "chat_template_path": None, "eos_token": None, "pad_token": None, "truncation_mode": "keep_start"}
# keys that tell a TRL config apart (SFTConfig / ModelConfig / ScriptArguments names no other trainer uses)
MARKERS = ("assistant_only_loss", "completion_only_loss", "dataset_text_field", "chat_template_path",
           "packing_strategy", "padding_free", "dataset_name", "max_length", "truncation_mode")
PACKING_STRATEGIES = ("bfd", "bfd_split", "wrapped")


def read(data: dict[str, Any], path: str) -> TrainerConfig:
    cfg = TrainerConfig("trl", path)
    name = path
    model = data.get("model_name_or_path")
    if model:
        cfg.take("model_name_or_path", model, "tokenizer", str(model))
    elif "model_name_or_path" in data:
        cfg.ignore("model_name_or_path", model, "empty")

    template = data.get("chat_template_path")
    if template:
        found = template_file_or_folder(str(template), Path(path).parent)
        if found is None:
            raise ConfigError(f"{name}: chat_template_path {template!r} is neither a template file nor a folder "
                              "holding one (tried from the current folder and the config's folder)")
        cfg.take("chat_template_path", template, "chat_template", str(found))

    max_length = data.get("max_length", DEFAULTS["max_length"])
    if max_length is None:
        cfg.ignore("max_length", None, "null: TRL does not truncate")
    else:
        n = as_int(max_length, "max_length", name)
        cfg.take("max_length", max_length if "max_length" in data else "(unset)", "max_length", n,
                 why="" if "max_length" in data else "TRL's default")
    mode = data.get("truncation_mode")
    if mode is not None:
        if mode not in ("keep_start", "keep_end"):
            raise ConfigError(f"{name}: truncation_mode is {mode!r}, expected keep_start or keep_end")
        side = "right" if mode == "keep_start" else "left"
        cfg.take("truncation_mode", mode, "truncation_side", side)

    assistant_only = as_bool(data.get("assistant_only_loss"), "assistant_only_loss", name)
    completion_only = as_bool(data.get("completion_only_loss"), "completion_only_loss", name)
    if assistant_only:
        cfg.take("assistant_only_loss", True, "strategy", "assistant-only",
                 why="TRL needs {% generation %} tags in the template for it: see `training-template`")
    else:
        cfg.take("assistant_only_loss", False if "assistant_only_loss" in data else "(unset)", "strategy",
                 "all-tokens", why="TRL trains every token of conversational data")
    if completion_only is False:
        cfg.take("completion_only_loss", False, "strategy", cfg.options["strategy"],
                 why="prompt-completion records are trained like the rest")
    elif not assistant_only:
        cfg.strategy_if_prompt_completion = "assistant-only"
        cfg.take("completion_only_loss", completion_only if "completion_only_loss" in data else "(unset)",
                 "strategy", "all-tokens", shown="--strategy assistant-only for prompt-completion records",
                 why="TRL trains their completion only")

    packing = as_bool(data.get("packing"), "packing", name)
    strategy = data.get("packing_strategy", DEFAULTS["packing_strategy"])
    if strategy not in PACKING_STRATEGIES:
        raise ConfigError(f"{name}: packing_strategy is {strategy!r}, expected one of {', '.join(PACKING_STRATEGIES)}")
    padding_free = as_bool(data.get("padding_free"), "padding_free", name)
    if packing:
        cfg.take("packing", True, "packing", strategy, why="used by `pack`; `check` and `export` cut samples at "
                                                          "max_length as bfd does")
        if "packing_strategy" in data:
            cfg.take("packing_strategy", strategy, "packing", strategy)
        free = padding_free if padding_free is not None else strategy in ("bfd", "bfd_split")
        cfg.take("padding_free", padding_free if padding_free is not None else "(unset)", "padding_free", free,
                 shown="--padding-free" if free else "padded rows",
                 why="" if padding_free is not None else f"TRL's SFTTrainer {'turns it on' if free else 'keeps rows padded'}"
                                                         f" for {strategy}")
    else:
        if "packing" in data:
            cfg.take("packing", False, "packing", None, shown="no packing")
        if "packing_strategy" in data:
            cfg.ignore("packing_strategy", strategy, "packing is off")
        if padding_free:
            cfg.unmapped("padding_free", True, "padding-free batches without packing: TRL does not enforce "
                                               "max_length then; the inspector models padding-free only in `pack`")
    multiple = data.get("pad_to_multiple_of")
    if isinstance(multiple, int) and not isinstance(multiple, bool) and multiple > 0:
        cfg.take("pad_to_multiple_of", multiple, "pad_to_multiple_of", multiple, why="used by `pack`")
    elif multiple is not None:
        cfg.ignore("pad_to_multiple_of", multiple, "not a number of tokens: `pack` does not round rows")

    field = data.get("dataset_text_field")
    if field is not None and field != DEFAULTS["dataset_text_field"]:
        cfg.unmapped("dataset_text_field", field, "plain-text (language-modeling) records: the inspector reads "
                                                  "conversations (messages, prompt/completion, ShareGPT, Alpaca)")
    for key in ("eos_token", "pad_token"):
        if data.get(key) is not None:
            cfg.unmapped(key, data[key], "the inspector uses the tokenizer's own token: set it in the tokenizer's "
                                         "tokenizer_config.json to check with it")
    if data.get("dataset_name"):
        cfg.ignore("dataset_name", data["dataset_name"], "a hub dataset: give the data file to check as DATA")
    return cfg
