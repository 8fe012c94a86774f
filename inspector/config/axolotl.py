"""axolotl: its training YAML (``axolotl train config.yml``), in inspector options.

What axolotl trains with ``datasets[].type: chat_template``: the turns whose role is in ``roles_to_train``
(default ``["assistant"]``; every role with ``train_on_inputs: true``), their located text only (not the
template's role headers), and the end-of-turn/EOS token after them as ``train_on_eos`` says (``turn`` by default;
``all``, ``last``, ``none``). Rows longer than ``sequence_len`` (default 512) are dropped
(``excess_length_strategy: drop``, the default) or cut (``truncate``). ``sample_packing: true`` packs whole rows
into ``sequence_len`` bins with per-sequence position ids (padding-free).

Example: {"base_model": "google/gemma-3-270m-it", "sequence_len": 2048, "chat_template": "chatml",
"datasets": [{"type": "chat_template", "train_on_eos": "last"}]} -> tokenizer "google/gemma-3-270m-it",
max_length 2048, the bundled ChatML template, train_on_eos "last".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspector.config.common import CHATML_TEMPLATE, TrainerConfig, as_bool, as_int, template_file_or_folder
from inspector.errors import ConfigError
from inspector.labels.engine import EOT_MODES, TRAINABLE_ROLES

MARKERS = ("base_model", "sequence_len", "sample_packing", "micro_batch_size", "chat_template_jinja",
           "train_on_inputs", "base_model_config", "tokenizer_config")
DEFAULT_SEQUENCE_LEN = 512
LOADER_LIST_KEYS = ("messages", "conversations", "conversation")  # what inspector.data.loaders reads itself
LOADER_ROLE_KEYS, LOADER_CONTENT_KEYS = ("role", "from"), ("content", "value")


def read(data: dict[str, Any], path: str) -> TrainerConfig:
    cfg = TrainerConfig("axolotl", path)
    name = path
    tokenizer = data.get("tokenizer_config") or data.get("base_model")
    if tokenizer:
        key = "tokenizer_config" if data.get("tokenizer_config") else "base_model"
        cfg.take(key, tokenizer, "tokenizer", str(tokenizer))
    if as_bool(data.get("trust_remote_code"), "trust_remote_code", name):
        cfg.ignore("trust_remote_code", True, "a file never turns this on: pass --trust-remote-code yourself")

    _template(cfg, data, Path(path).parent)

    n = as_int(data.get("sequence_len"), "sequence_len", name)
    excess = data.get("excess_length_strategy") or "drop"
    fate = {"drop": "axolotl drops every longer row (excess_length_strategy: drop, its default): each sample the "
                    "truncation checks flag is not trained at all",
            "truncate": "axolotl cuts longer rows as --max-length does",
            "raise": "axolotl stops with an error on a longer row"}.get(str(excess), f"excess_length_strategy {excess}")
    if n is None:
        cfg.take("sequence_len", "(unset)", "max_length", DEFAULT_SEQUENCE_LEN, why=f"axolotl's default; {fate}")
    else:
        cfg.take("sequence_len", n, "max_length", n, why=fate)

    packing = as_bool(data.get("sample_packing"), "sample_packing", name)
    if packing:
        cfg.take("sample_packing", True, "packing", "bfd", shown="pack --packing bfd",
                 why="used by `pack`; axolotl's multipack also bins whole rows, its bin choice may differ")
        cfg.take("sample_packing", True, "padding_free", True, shown="--padding-free",
                 why="per-sequence position ids, as axolotl's multipack")
    elif packing is False:
        cfg.take("sample_packing", False, "packing", None, shown="no packing")

    on_inputs = as_bool(data.get("train_on_inputs"), "train_on_inputs", name)
    _datasets(cfg, data.get("datasets"), bool(on_inputs), name)

    special = data.get("special_tokens")
    if isinstance(special, dict):
        for key in ("eos_token", "pad_token"):
            if special.get(key) is not None:
                cfg.unmapped(f"special_tokens.{key}", special[key], "the inspector uses the tokenizer's own token: "
                                                                    "set it in tokenizer_config.json to check with it")
    if data.get("eot_tokens"):
        cfg.ignore("eot_tokens", data["eot_tokens"], "the inspector finds each turn's end-of-turn marker in the "
                                                     "rendered template itself")
    return cfg


def _template(cfg: TrainerConfig, data: dict[str, Any], base: Path) -> None:
    name = data.get("chat_template")
    jinja = data.get("chat_template_jinja")
    if name is None and jinja:
        name = "jinja"
    if name is None or name == "tokenizer_default":
        cfg.keep("chat_template", name or "(unset)", "the tokenizer's own template",
                 why="" if name else "axolotl's default, tokenizer_default")
        return
    if isinstance(name, str) and name.startswith("tokenizer_default_fallback_"):
        cfg.keep("chat_template", name, "the tokenizer's own template",
                 why=f"axolotl falls back to {name.rsplit('_', 1)[-1]} only when the tokenizer has none")
        return
    if name == "chatml":
        cfg.take("chat_template", name, "chat_template", str(CHATML_TEMPLATE), shown="the bundled ChatML template")
        return
    if name == "jinja":
        if not jinja:
            raise ConfigError(f"{cfg.path}: chat_template is jinja but chat_template_jinja is empty")
        text = str(jinja)
        if "{" not in text and "\n" not in text:  # a path to a .jinja file, as axolotl allows
            found = template_file_or_folder(text, base)
            if found is None:
                raise ConfigError(f"{cfg.path}: chat_template_jinja {text!r} is not a template file (tried from the "
                                  "current folder and the config's folder)")
            cfg.take("chat_template_jinja", text, "chat_template", str(found))
            return
        cfg.template_text = text
        cfg.take("chat_template_jinja", text, "chat_template", "(inline)", shown="the config's inline Jinja template")
        return
    cfg.missing_template = f"axolotl's built-in template {name!r}"
    cfg.unmapped("chat_template", name, f"axolotl's built-in template {name!r} lives in axolotl's code: pass "
                                        "--chat-template FILE, or --use-tokenizer-template to check with the "
                                        "tokenizer's own template instead (it may differ)")


def _datasets(cfg: TrainerConfig, datasets: Any, on_inputs: bool, name: str) -> None:
    if not isinstance(datasets, list) or not datasets:
        if on_inputs:
            cfg.take("train_on_inputs", True, "strategy", "all-tokens")
        return
    for i, ds in enumerate(datasets):
        if not isinstance(ds, dict):
            raise ConfigError(f"{name}: datasets[{i}] is {type(ds).__name__}, expected a mapping")
    chat = [(i, ds) for i, ds in enumerate(datasets) if str(ds.get("type", "")).split(".")[0] == "chat_template"]
    for i, ds in enumerate(datasets):
        if ds.get("path"):
            cfg.ignore(f"datasets[{i}].path", ds["path"], "give the data file to check as DATA")
        kind = ds.get("type")
        if kind is not None and str(kind).split(".")[0] != "chat_template":
            cfg.unmapped(f"datasets[{i}].type", kind, "axolotl's own prompt format: the inspector renders records "
                                                      "with the chat template instead")
    if not chat:
        if on_inputs:
            cfg.take("train_on_inputs", True, "strategy", "all-tokens")
        return
    i, ds = chat[0]
    where = f"datasets[{i}]"
    if len(chat) > 1:
        cfg.ignore("datasets[1:]", f"{len(chat) - 1} more", f"settings are read from {where}, the first "
                                                            "chat_template dataset")
    cfg.take(f"{where}.type", ds.get("type"), "strategy", "assistant-only")
    roles = ds.get("roles_to_train")
    if on_inputs:
        cfg.take("train_on_inputs", True, "roles_to_train", TRAINABLE_ROLES,
                 shown=f"--roles-to-train {','.join(TRAINABLE_ROLES)}", why="every turn's text, not the headers")
    elif roles is not None:
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ConfigError(f"{name}: {where}.roles_to_train is {roles!r}, expected a list of role names")
        mapped = tuple(dict.fromkeys(_role(r) for r in roles))
        unknown = [r for r, m in zip(roles, mapped) if m is None]
        if unknown:
            raise ConfigError(f"{name}: {where}.roles_to_train has {', '.join(map(repr, unknown))}; the inspector "
                              f"knows {', '.join(TRAINABLE_ROLES)} (and their ShareGPT names)")
        cfg.take(f"{where}.roles_to_train", roles, "roles_to_train", mapped,
                 shown=f"--roles-to-train {','.join(mapped) or 'none'}")
    eos = ds.get("train_on_eos")
    if eos is not None:
        if eos not in EOT_MODES:
            raise ConfigError(f"{name}: {where}.train_on_eos is {eos!r}, expected one of {', '.join(EOT_MODES)}")
        cfg.take(f"{where}.train_on_eos", eos, "train_on_eos", eos)
    eot = ds.get("train_on_eot")
    if eot is not None and eot != (eos or "turn"):
        cfg.unmapped(f"{where}.train_on_eot", eot, "the inspector treats the end-of-turn marker and the EOS as one "
                                                   "token kind (train_on_eos): they differ only with eot_tokens")
    field = ds.get("field_messages")
    if field is not None:
        if field in LOADER_LIST_KEYS:
            cfg.keep(f"{where}.field_messages", field, "read as is", why="the loader reads this key itself")
        else:
            cfg.unmapped(f"{where}.field_messages", field, f"the loader reads {', '.join(LOADER_LIST_KEYS)}: rename "
                                                           "the key in the data")
    mapping = ds.get("message_property_mappings") or {}
    for key, fallback in (("message_field_role", "role"), ("message_field_content", "content")):
        if ds.get(key):
            mapping = {**mapping, fallback: ds[key]}
    if isinstance(mapping, dict):
        for prop, column in mapping.items():
            known = {"role": LOADER_ROLE_KEYS, "content": LOADER_CONTENT_KEYS}.get(prop)
            if known is not None and column in known:
                cfg.keep(f"{where}.message_property_mappings.{prop}", column, "read as is",
                         why="the loader reads this key itself")
            else:
                cfg.unmapped(f"{where}.message_property_mappings.{prop}", column,
                             "the loader reads role/from and content/value: rename the key in the data")
    for key in ("message_field_training", "message_field_training_detail"):
        if ds.get(key):
            cfg.unmapped(f"{where}.{key}", ds[key], "the loader reads per-message train / loss_weight flags, not "
                                                    "this key")


def _role(name: str) -> str | None:
    """axolotl role names -> the inspector's: "human" -> "user", "gpt" -> "assistant"."""
    from inspector.data.messages import ROLE_ALIASES

    role = ROLE_ALIASES.get(name.strip().lower())
    return role if role in TRAINABLE_ROLES else None
