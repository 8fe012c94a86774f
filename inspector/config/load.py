"""Read a trainer config file and tell which trainer it is for, from its keys (or as the user says).

Example: {"base_model": "...", "sequence_len": 2048} -> "axolotl"; {"model_name_or_path": "...", "cutoff_len":
1024, "template": "qwen"} -> "llamafactory"; {"model_name_or_path": "...", "max_length": 512} -> "trl".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspector.config import axolotl, llamafactory, trl
from inspector.config.common import TRAINERS, TrainerConfig, parse_mapping, read_mapping
from inspector.errors import ConfigError

READERS = {"trl": trl.read, "axolotl": axolotl.read, "llamafactory": llamafactory.read}


def detect_trainer(data: dict[str, Any], name: str = "config") -> str:
    """Which trainer a config is for: axolotl's and LLaMA-Factory's marker keys first (both also use names TRL
    has), then TRL's; ConfigError when no key says."""
    scores = {"axolotl": sum(k in data for k in axolotl.MARKERS),
              "llamafactory": sum(k in data for k in llamafactory.MARKERS),
              "trl": sum(k in data for k in trl.MARKERS)}
    best = max(("axolotl", "llamafactory", "trl"), key=lambda t: scores[t])
    if scores[best] == 0:
        if "model_name_or_path" in data:
            return "trl"  # `trl sft --config` files may name only the model and dataset
        keys = ", ".join(map(str, list(data)[:8])) or "none"
        raise ConfigError(f"{name}: cannot tell which trainer this config is for (keys: {keys}); pass "
                          f"--config-format {'|'.join(TRAINERS)}")
    return best


def read_config(data: dict[str, Any], name: str, trainer: str | None = None) -> TrainerConfig:
    """A parsed config (a dict) read for ``trainer`` (detected from the keys when None)."""
    if trainer is not None and trainer not in READERS:
        raise ConfigError(f"unknown config format {trainer!r}; choose one of {', '.join(TRAINERS)}")
    return READERS[trainer or detect_trainer(data, name)](data, name)


def load_config(path: str | Path, trainer: str | None = None) -> TrainerConfig:
    """Read the config file at ``path`` (YAML, or JSON for .json) for ``trainer`` (detected when None)."""
    return read_config(read_mapping(path), str(path), trainer)


SERVER_PATH_KEYS = ("chat_template_path", "dataset_dir", "dataset")  # keys naming files a reader opens


def load_config_text(text: str, name: str, trainer: str | None = None, allow_paths: bool = True) -> TrainerConfig:
    """The same for a config's text (an upload in the app); ``name`` decides JSON (.json) or YAML. Relative paths
    in it are read from the current folder. ``allow_paths=False`` (an app that does not read server paths): keys
    naming files are ignored, with the reason, before any is looked at."""
    data = parse_mapping(text, name, is_json=name.lower().endswith(".json"))
    dropped = {}
    if not allow_paths:
        dropped = {k: data.pop(k) for k in SERVER_PATH_KEYS if k in data}
        jinja = data.get("chat_template_jinja")
        if isinstance(jinja, str) and "{" not in jinja and "\n" not in jinja:  # axolotl's template-file form
            dropped["chat_template_jinja"] = data.pop("chat_template_jinja")
    cfg = read_config(data, name, trainer)
    for key, value in dropped.items():
        cfg.ignore(key, value, "names a file on the server, and this server does not read its paths")
        if key in ("chat_template_path", "chat_template_jinja"):
            cfg.missing_template = f"the template file {value!r} (not read: server paths are off)"
    return cfg
