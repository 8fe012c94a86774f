"""LLaMA-Factory: its training YAML (``llamafactory-cli train config.yaml``), in inspector options, with the
datasets it names looked up in ``dataset_dir/dataset_info.json``.

What LLaMA-Factory trains (``stage: sft``): every answer, with the template's end token after it, the prompts
masked; ``train_on_prompt: true`` trains the prompts too (every token); ``mask_history: true`` only the last
answer. Samples are cut to ``cutoff_len`` (default 2048; one less with packing). Its ``template`` names (qwen,
llama3, ...) are Python objects in LLaMA-Factory's code, not Jinja: the inspector has no equivalent and checks
with the tokenizer's own template only when the user agrees (``--use-tokenizer-template``).

Example: {"model_name_or_path": "Qwen/Qwen3-4B", "template": "qwen3", "cutoff_len": 1024, "dataset": "identity"}
-> tokenizer "Qwen/Qwen3-4B", max_length 1024, data "<dataset_dir>/identity.json", missing_template set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from inspector.config.common import TrainerConfig, as_bool, as_int
from inspector.errors import ConfigError

MARKERS = ("cutoff_len", "template", "stage", "finetuning_type", "train_on_prompt", "mask_history",
           "neat_packing", "dataset_dir", "lora_target")
DEFAULT_CUTOFF_LEN = 2048
# dataset_info.json's defaults, and what inspector.data.loaders reads itself
ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}
SHAREGPT_COLUMNS = {"messages": "conversations", "system": "system", "tools": "tools"}
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
LOADER_READS = {"messages": ("messages", "conversations", "conversation"), "system": ("system",),
                "tools": ("tools",), "prompt": ("instruction",), "query": ("input",), "response": ("output",),
                "role_tag": ("role", "from"), "content_tag": ("content", "value")}
TAG_ROLES = {"user_tag": "user", "assistant_tag": "assistant", "observation_tag": "tool", "function_tag": "assistant",
             "system_tag": "system"}


def read(data: dict[str, Any], path: str) -> TrainerConfig:
    cfg = TrainerConfig("llamafactory", path)
    name = path
    model = data.get("model_name_or_path")
    if model:
        cfg.take("model_name_or_path", model, "tokenizer", str(model))
    if as_bool(data.get("trust_remote_code"), "trust_remote_code", name):
        cfg.ignore("trust_remote_code", True, "a file never turns this on: pass --trust-remote-code yourself")
    stage = data.get("stage")
    if stage is not None and stage != "sft":
        cfg.unmapped("stage", stage, "the inspector models supervised fine-tuning (stage: sft) only")

    template = data.get("template")
    if template:
        cfg.missing_template = f"LLaMA-Factory's template {template!r}"
        cfg.unmapped("template", template, f"LLaMA-Factory's template {template!r} is Python code in LLaMA-Factory, "
                                           "not a Jinja template: pass --use-tokenizer-template to check with the "
                                           "tokenizer's own template (it may differ), or --chat-template FILE")
    else:
        cfg.keep("template", "(unset)", "the tokenizer's own template",
                 why="LLaMA-Factory parses the tokenizer's template when none is named")

    packing = as_bool(data.get("packing"), "packing", name)
    neat = as_bool(data.get("neat_packing"), "neat_packing", name)
    packing = bool(packing or neat)
    n = as_int(data.get("cutoff_len"), "cutoff_len", name)
    length = n if n is not None else DEFAULT_CUTOFF_LEN
    if packing:
        length -= 1  # LLaMA-Factory's DataArguments.__post_init__ does the same
    cfg.take("cutoff_len", n if n is not None else "(unset)", "max_length", length,
             why=("" if n is not None else "LLaMA-Factory's default; ") + ("minus 1 with packing, as LLaMA-Factory "
                 "does; " if packing else "") + "LLaMA-Factory shares the cut between each turn's prompt and answer, "
                 "the inspector cuts the sample's end: the lengths agree, which tokens go may differ")

    on_prompt = as_bool(data.get("train_on_prompt"), "train_on_prompt", name)
    history = as_bool(data.get("mask_history"), "mask_history", name)
    if on_prompt and history:
        raise ConfigError(f"{name}: mask_history and train_on_prompt cannot both be true (LLaMA-Factory refuses it)")
    if on_prompt:
        cfg.take("train_on_prompt", True, "strategy", "all-tokens")
    elif history:
        cfg.take("mask_history", True, "strategy", "last-turn", why="only the last answer is trained")
    else:
        cfg.take("train_on_prompt", False if "train_on_prompt" in data else "(unset)", "strategy", "assistant-only",
                 why="every answer and its end token")

    if packing:
        cfg.take("neat_packing" if neat else "packing", True, "packing", "bfd", shown="pack --packing bfd",
                 why="used by `pack`; LLaMA-Factory's knapsack packing may fill sequences differently")
        cfg.take("neat_packing", bool(neat) if "neat_packing" in data else "(unset)", "padding_free", bool(neat),
                 shown="--padding-free" if neat else "padded rows",
                 why="sequences isolated from each other" if neat else "packed sequences attend to each other")
    _datasets(cfg, data, Path(path).parent)
    return cfg


def _datasets(cfg: TrainerConfig, data: dict[str, Any], base: Path) -> None:
    names = data.get("dataset")
    if not names:
        return
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not isinstance(names, list):
        raise ConfigError(f"{cfg.path}: dataset is {names!r}, expected names separated by commas")
    folder = str(data.get("dataset_dir") or "data")
    info_path = next((p / "dataset_info.json" for p in (Path.cwd() / folder, base / folder, base)
                      if (p / "dataset_info.json").is_file()), None)
    if info_path is None:
        cfg.ignore("dataset", ",".join(names), f"no {folder}/dataset_info.json found (tried from the current folder "
                                               "and the config's folder): give the data file to check as DATA")
        return
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{info_path} cannot be read as JSON: {exc}") from None
    if not isinstance(info, dict):
        raise ConfigError(f"{info_path} holds {type(info).__name__}, expected a mapping of dataset names")
    for ds_name in names:
        key = f"dataset.{ds_name}"
        entry = info.get(ds_name)
        if not isinstance(entry, dict):
            raise ConfigError(f"{cfg.path}: dataset {ds_name!r} is not in {info_path}")
        file_name = entry.get("file_name")
        if not file_name:
            hub = entry.get("hf_hub_url") or entry.get("ms_hub_url") or entry.get("script_url") or "?"
            cfg.ignore(key, hub, "not a local file: give the data file to check as DATA")
            continue
        file = info_path.parent / str(file_name)
        if entry.get("ranking"):
            cfg.unmapped(key, str(file), "preference data (ranking: true): the inspector checks SFT data")
            continue
        problems = _format_problems(entry)
        if problems:
            cfg.unmapped(key, str(file), "; ".join(problems))
            continue
        if not file.exists():
            cfg.ignore(key, str(file), "file not found")
            continue
        if "data" not in cfg.options:
            cfg.take(key, str(file), "data", str(file), shown=f"DATA {file}",
                     why=f"{entry.get('formatting', 'alpaca')} records, read as they are")
        else:
            cfg.ignore(key, str(file), f"one DATA per run: check it on its own ({cfg.options['data']} is checked)")


def _format_problems(entry: dict[str, Any]) -> list[str]:
    """What in a dataset_info.json entry the loader would read differently. Example: columns {"prompt": "q"} ->
    ["column prompt is 'q': the loader reads 'instruction'"]."""
    formatting = entry.get("formatting", "alpaca")
    if formatting not in ("alpaca", "sharegpt"):
        return [f"formatting {formatting!r}: the loader reads alpaca and sharegpt records"]
    defaults = ALPACA_COLUMNS if formatting == "alpaca" else SHAREGPT_COLUMNS
    out = []
    columns = entry.get("columns") or {}
    for col, value in {**defaults, **columns}.items():
        reads = LOADER_READS.get(col)
        if reads is None:
            if col in columns and col not in ("images", "videos", "audios"):
                out.append(f"column {col} ({value!r}): the loader does not read it")
            continue
        if value not in reads:
            out.append(f"column {col} is {value!r}: the loader reads {' or '.join(map(repr, reads))}; rename it")
    if formatting == "sharegpt":
        from inspector.data.messages import ROLE_ALIASES

        tags = {**SHAREGPT_TAGS, **(entry.get("tags") or {})}
        for tag in ("role_tag", "content_tag"):
            if tags[tag] not in LOADER_READS[tag]:
                out.append(f"tag {tag} is {tags[tag]!r}: the loader reads {' or '.join(map(repr, LOADER_READS[tag]))}")
        for tag, role in TAG_ROLES.items():
            if ROLE_ALIASES.get(str(tags[tag]).lower()) != role:
                out.append(f"tag {tag} is {tags[tag]!r}: the loader does not read it as {role}")
    return out
