"""What a trainer config says, in the inspector's own terms: the result every reader (``trl``, ``axolotl``,
``llamafactory``) returns, and reading the file itself.

A ``TrainerConfig`` holds ``options``: inspector option names (the CLI's argparse names: ``max_length``,
``strategy``, ``chat_template``, ``tokenizer``, ``train_on_eos``, ``roles_to_train``, ``packing``,
``padding_free``, ``data``, ...) with the values the config gives them, and ``settings``: one ``Setting`` per key
the reader looked at, saying what became of it: ``taken`` (-> which option and value), ``ignored`` (and why), or
``no-equivalent`` (the inspector cannot model it, and what to do instead).

Example (axolotl): ``sequence_len: 512`` -> options["max_length"] = 512 and
Setting("sequence_len", 512, "taken", "--max-length 512"); ``learning_rate: 2e-4`` is not looked at (it does not
change what is trained); ``chat_template: llama3`` -> Setting(..., "no-equivalent", "axolotl's built-in template
'llama3' ...") and ``missing_template`` set, so the CLI asks for ``--use-tokenizer-template`` or a template file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspector.errors import ConfigError

TRAINERS = ("trl", "axolotl", "llamafactory")
TAKEN, IGNORED, NO_EQUIVALENT = "taken", "ignored", "no-equivalent"
MAX_CONFIG_BYTES = 4 * 2**20  # a training config is a few KB; anything larger is not one
CHATML_TEMPLATE = Path(__file__).with_name("chatml.jinja")


@dataclass
class Setting:
    """One config key and what the inspector made of it. ``option``: the inspector option it set, as the CLI
    writes it (``--max-length 2048``), or None."""

    key: str
    value: Any
    status: str  # TAKEN, IGNORED or NO_EQUIVALENT
    option: str | None = None
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "status": self.status, "option": self.option,
                "why": self.why}

    def line(self) -> str:
        """One line for a terminal: "sequence_len: 512 -> --max-length 512"."""
        head = f"{self.key}: {_short(self.value)}"
        if self.status == TAKEN:
            return f"{head} -> {self.option}" + (f" ({self.why})" if self.why else "")
        return f"{head}: {self.why}"


@dataclass
class TrainerConfig:
    """A trainer config read into inspector options. ``missing_template``: the config names a chat template the
    inspector does not have (LLaMA-Factory's template names, axolotl's built-in ones other than chatml); the
    caller must get the user's consent to use the tokenizer's own template instead (``--use-tokenizer-template``)
    or a template file. ``template_text``: an inline Jinja template (axolotl's ``chat_template_jinja``)."""

    trainer: str
    path: str
    options: dict[str, Any] = field(default_factory=dict)
    settings: list[Setting] = field(default_factory=list)
    missing_template: str | None = None
    template_text: str | None = None
    # TRL's default strategy depends on the data: every token of conversational data, the completion only of
    # prompt-completion data. The strategy for prompt-completion records when it differs from options["strategy"].
    strategy_if_prompt_completion: str | None = None

    def take(self, key: str, value: Any, option: str, option_value: Any, shown: str | None = None,
             why: str = "") -> None:
        """Record ``key: value`` as taken: ``options[option] = option_value``, shown as ``shown``."""
        self.options[option] = option_value
        flag = "--" + option.replace("_", "-")
        self.settings.append(Setting(key, value, TAKEN, shown or f"{flag} {option_value}", why))

    def keep(self, key: str, value: Any, shown: str, why: str = "") -> None:
        """Record ``key: value`` as taken where it needs no option (the inspector already does this)."""
        self.settings.append(Setting(key, value, TAKEN, shown, why))

    def ignore(self, key: str, value: Any, why: str) -> None:
        self.settings.append(Setting(key, value, IGNORED, None, why))

    def unmapped(self, key: str, value: Any, why: str) -> None:
        self.settings.append(Setting(key, value, NO_EQUIVALENT, None, why))

    def by_status(self, status: str) -> list[Setting]:
        return [s for s in self.settings if s.status == status]

    def to_dict(self) -> dict[str, Any]:
        return {"trainer": self.trainer, "path": self.path, "options": dict(self.options),
                "missing_template": self.missing_template,
                "strategy_if_prompt_completion": self.strategy_if_prompt_completion,
                "settings": [s.to_dict() for s in self.settings]}

    def summary(self) -> str:
        """The lines a terminal shows: what was taken, ignored, and has no equivalent."""
        lines = [f"config {self.path} ({self.trainer}):"]
        for status, title in ((TAKEN, "taken"), (IGNORED, "ignored"), (NO_EQUIVALENT, "no equivalent")):
            items = self.by_status(status)
            if items:
                lines.append(f"  {title}:")
                lines.extend(f"    {s.line()}" for s in items)
        return "\n".join(lines)


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def read_mapping(path: str | Path) -> dict[str, Any]:
    """The config file as a dict: JSON for ``.json``, YAML (PyYAML's safe loader) otherwise. Raises
    ``ConfigError`` naming the file and the reason."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"config file not found: {path}")
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES // 2**20} MiB: not a training config")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    return parse_mapping(text, str(path), is_json=p.suffix.lower() == ".json")


def parse_mapping(text: str, name: str, is_json: bool = False) -> dict[str, Any]:
    """``text`` (YAML or JSON) as a dict. Example: "sequence_len: 512" -> {"sequence_len": 512}."""
    if is_json:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ConfigError(f"{name} is not valid JSON: {exc}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{name} is not valid YAML: {' '.join(str(exc).split())}") from None
        except RecursionError:
            raise ConfigError(f"{name} is nested too deeply to be a training config") from None
    if data is None:
        raise ConfigError(f"{name} is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{name} holds {type(data).__name__}, expected a mapping of settings (key: value)")
    return data


def as_int(value: Any, key: str, name: str) -> int | None:
    """A positive whole number setting, None when unset; ConfigError when it is something else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{name}: {key} is {value!r}, expected a whole number of tokens")
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"{name}: {key} is {value!r}, expected a whole number of tokens") from None
    if n <= 0:
        raise ConfigError(f"{name}: {key} is {n}, expected a number above 0")
    return n


def as_bool(value: Any, key: str, name: str) -> bool | None:
    """A true/false setting (YAML booleans, or "true"/"false" text), None when unset."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(f"{name}: {key} is {value!r}, expected true or false")


def template_file_or_folder(value: str, base: Path) -> Path | None:
    """A chat template the config names by path: a file, or a tokenizer folder holding chat_template.jinja /
    tokenizer_config.json; relative paths are tried from the current folder, then the config's folder."""
    for root in (Path.cwd(), base):
        p = (root / Path(value).expanduser())
        if p.is_file():
            return p
        if p.is_dir():
            for name in ("chat_template.jinja", "chat_template.json", "tokenizer_config.json"):
                if (p / name).is_file():
                    return p / name
    return None
