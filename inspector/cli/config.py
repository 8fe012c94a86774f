"""``--config FILE``: run ``check``, ``export`` or ``pack`` with the settings of the trainer config the training run
will use (TRL, axolotl, LLaMA-Factory; ``inspector.config`` reads it), explicit flags winning over the config.

    python -m inspector check train.jsonl --config axolotl.yml
    python -m inspector check --config llamafactory.yaml --use-tokenizer-template   # DATA from dataset_info.json
    python -m inspector pack train.jsonl --config trl_sft.yaml --max-length 4096     # the flag wins

What was taken, ignored and has no equivalent is printed to stderr (with ``--json``: under "config" in the
report). Also here: ``--roles-to-train`` and ``--train-on-eos``, the label options some configs set (axolotl's
``roles_to_train`` / ``train_on_eos``), usable without a config too.

Example: axolotl ``sequence_len: 16`` with ``check DATA --config a.yml`` -> args.max_length = 16 and stderr shows
"sequence_len: 16 -> --max-length 16 (...)"; with ``--max-length 64`` too, 64 stays and the line says it was
overridden.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from inspector.config.common import TRAINERS, TrainerConfig
from inspector.errors import ConfigError, InspectorError
from inspector.labels.engine import EOT_MODES, TRAINABLE_ROLES

FLAGS = {"data": "DATA"}  # how the summary names an option that is not --option-name


def _roles(text: str) -> tuple[str, ...]:
    roles = tuple(dict.fromkeys(r.strip() for r in text.split(",") if r.strip()))
    unknown = [r for r in roles if r not in TRAINABLE_ROLES]
    if unknown or not roles:
        raise argparse.ArgumentTypeError(f"expected roles from {', '.join(TRAINABLE_ROLES)} separated by commas, "
                                         f"got {text!r}")
    return roles


def add_label_options(p: argparse.ArgumentParser) -> None:
    """``--roles-to-train`` and ``--train-on-eos`` (LabelOptions.roles_to_train / train_on_eos)."""
    g = p.add_argument_group("trainer label settings (axolotl's roles_to_train / train_on_eos)")
    g.add_argument("--roles-to-train", type=_roles, default=("assistant",), metavar="ROLE[,ROLE]",
                   help="roles whose turns are trained (default: assistant); e.g. user,assistant trains the users' "
                        "text too (not the template's role headers)")
    g.add_argument("--train-on-eos", choices=EOT_MODES, default=None,
                   help="which end-of-turn tokens are trained: turn = after each trained turn (default, as "
                        "--no-label-eot says), all = after every turn, last = only the last trained turn's, none")


def add_config_options(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--config-format``, ``--use-tokenizer-template`` and the label options; DATA becomes optional
    (a LLaMA-Factory config can name it) and ``pack``'s ``--max-length`` may come from the config."""
    add_label_options(p)
    g = p.add_argument_group("trainer config")
    g.add_argument("--config", metavar="FILE",
                   help="the training run's config (TRL `trl sft --config` YAML/JSON, axolotl YAML, LLaMA-Factory "
                        "YAML): its max length, strategy, template, tokenizer and packing settings are used; flags "
                        "given here win; what was taken, ignored and has no equivalent goes to stderr")
    g.add_argument("--config-format", choices=TRAINERS, metavar="TRAINER",
                   help=f"which trainer the config is for ({', '.join(TRAINERS)}; default: told by its keys)")
    g.add_argument("--use-tokenizer-template", action="store_true",
                   help="when the config names a template the inspector does not have (LLaMA-Factory's template "
                        "names, axolotl's built-in ones but chatml), check with the tokenizer's own chat template")
    for action in p._actions:
        if action.dest == "data" and not action.option_strings:
            action.nargs, action.default = "?", None
            action.help += "; may come from --config (LLaMA-Factory's dataset)"
        elif action.dest == "max_length" and action.required:
            action.required = False
            action.help += "; required unless --config sets it"


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def explicit_dests(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The argparse dests the command line sets itself (``--max-length 64``, ``--max-len=64`` as an abbreviation),
    so a config fills only the rest. Example: ["check", "d.jsonl", "--strategy", "last-turn"] -> {"strategy"}."""
    options = parser._option_string_actions
    out: set[str] = set()
    for token in argv:
        if token == "--":
            break
        if not token.startswith("-") or token == "-":
            continue
        key = token.split("=", 1)[0]
        action = options.get(key)
        if action is None and key.startswith("--"):
            hits = {a for k, a in options.items() if k.startswith(key)}
            action = hits.pop() if len(hits) == 1 else None
        if action is not None:
            out.add(action.dest)
    return out


def apply_config(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str] | None) -> None:
    """Fill ``args`` from ``--config`` where the command line did not set a value, and say what was done (stderr,
    or ``args.config_report`` for the JSON report). Raises ConfigError when the config cannot be followed."""
    if not hasattr(args, "config"):
        return
    if not args.config:
        _require(args)
        return
    from inspector.config.load import load_config

    argv = list(sys.argv[1:] if argv is None else argv)
    sub = _command_parser(parser, args.command)
    explicit = explicit_dests(sub, argv)
    if args.data is not None:
        explicit.add("data")
    cfg = load_config(args.config, args.config_format)
    applied: dict[str, Any] = {}
    overridden: dict[str, Any] = {}
    unused: dict[str, Any] = {}
    for option, value in cfg.options.items():
        dest = option  # TrainerConfig.options are named as the argparse dests
        if not hasattr(args, dest):
            unused[option] = value  # e.g. packing for `check`: the setting's own line says `pack` uses it
            continue
        if dest in explicit:
            overridden[option] = {"config": value, "command_line": _plain(getattr(args, dest))}
            continue
        if option == "packing" and value is None:
            continue  # the config does not pack; `pack` still packs, with its own default
        if option == "chat_template" and cfg.template_text is not None:
            value = _inline_template(cfg.template_text)
        setattr(args, dest, value)
        applied[option] = _plain(value)
    if cfg.strategy_if_prompt_completion and "strategy" not in explicit and args.data is not None:
        if _first_format(args) == "prompt_completion":
            args.strategy = cfg.strategy_if_prompt_completion
            applied["strategy"] = args.strategy
    template_note = _template_choice(cfg, args, explicit)
    _require(args)
    args.config_report = {**cfg.to_dict(), "applied": applied, "overridden": overridden,
                          "not_used_by_this_command": unused, "template": template_note}
    if not getattr(args, "json", False):
        print(_summary(cfg, applied, overridden, template_note), file=sys.stderr)


def _template_choice(cfg: TrainerConfig, args: argparse.Namespace, explicit: set[str]) -> str | None:
    if cfg.missing_template is None or "chat_template" in explicit:
        return None
    if not args.use_tokenizer_template:
        raise ConfigError(f"{cfg.path} names {cfg.missing_template}, which the inspector does not have (it is defined "
                          "in the trainer's own code). Pass --use-tokenizer-template to check with the tokenizer's own "
                          "chat template instead (it may differ from the trainer's), or --chat-template FILE.")
    return f"the tokenizer's own template instead of {cfg.missing_template} (--use-tokenizer-template)"


def _require(args: argparse.Namespace) -> None:
    if getattr(args, "data", "") is None:
        raise ConfigError("no DATA: give the data file to check, or a --config that names a local one "
                          "(LLaMA-Factory's dataset with its dataset_info.json)")
    if args.command == "pack" and getattr(args, "max_length", 0) is None:
        raise ConfigError("pack needs --max-length N (the packed sequence length), or a --config that sets it")


def _first_format(args: argparse.Namespace) -> str | None:
    """The format of DATA's first record (TRL's default loss depends on it), None when it cannot be read."""
    from inspector.data.loaders import iter_records

    try:
        first = next(iter(iter_records(args.data, fmt=args.data_format)), None)
    except InspectorError:
        return None  # the command itself reports an unreadable file
    return getattr(first, "format", None)


def _inline_template(text: str) -> str:
    """Write an inline template (axolotl's chat_template_jinja) to a temporary file, removed at exit: the
    tokenizer setup reads templates from files (worker processes load it again)."""
    fd, path = tempfile.mkstemp(prefix="inspector-config-", suffix=".jinja")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    atexit.register(lambda: Path(path).unlink(missing_ok=True))
    return path


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _summary(cfg: TrainerConfig, applied: dict[str, Any], overridden: dict[str, Any], template: str | None) -> str:
    lines = [cfg.summary()]
    for option, both in overridden.items():
        flag = FLAGS.get(option, "--" + option.replace("_", "-"))
        lines.append(f"  the command line wins: {flag} {both['command_line']} (the config says {_shown(both['config'])})")
    if template:
        lines.append(f"  template: {template}")
    return "\n".join(lines)


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)
