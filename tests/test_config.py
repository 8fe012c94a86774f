"""Trainer configs (--config): the real example files of TRL, axolotl and LLaMA-Factory (tests/data/configs, sources
in its README) read into inspector options, the CLI running with them (explicit flags winning), and the label
options they brought: roles_to_train and train_on_eos, asserted token by token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import CHATML
from inspector.cli.main import build_parser, main as cli_main
from inspector.cli.options import command_line
from inspector.cli.run import _options
from inspector.config.load import detect_trainer, load_config, load_config_text
from inspector.constants import IGNORE_INDEX
from inspector.conversations import Conversation, Message
from inspector.errors import ConfigError
from inspector.labels.engine import LabelEngine, LabelOptions

CONFIGS = Path(__file__).parent / "data" / "configs"
AXOLOTL = CONFIGS / "axolotl" / "falcon-e-3b-ft.yaml"
GEMMA = CONFIGS / "axolotl" / "gemma-3-270m-qlora.yml"
LLAMAFACTORY = CONFIGS / "llamafactory" / "qwen3_lora_sft.yaml"
TRL = CONFIGS / "trl" / "example_config.yaml"

LONG_ANSWER = "The quick brown fox jumps over the lazy dog. I have chicken, bell peppers, and rice."
MESSAGES = [{"messages": [{"role": "user", "content": "Hello! How can I help you today?"},
                          {"role": "assistant", "content": LONG_ANSWER}]}]
PROMPT_COMPLETION = [{"prompt": "Hello! How can I help you today?", "completion": LONG_ANSWER}]


@pytest.fixture(scope="module")
def tiny_dir(tiny_tokenizer, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tiny-tokenizer")
    tiny_tokenizer.save_pretrained(str(path))
    return str(path)


def write_jsonl(path: Path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def derived(src: Path, dst: Path, **changes) -> str:
    """The real config at ``src`` with ``changes`` (None removes a key), written to ``dst``."""
    data = yaml.safe_load(src.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    dst.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(dst)


def run(argv, capsys):
    code = cli_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- reading the real files ----------------------------------------------------------------------------------------

def test_axolotl_real_file():
    cfg = load_config(AXOLOTL)
    assert cfg.trainer == "axolotl"
    assert cfg.options == {"tokenizer": "tiiuae/Falcon-E-3B-Base-prequantized", "max_length": 32768,
                           "packing": "bfd", "padding_free": True, "strategy": "assistant-only"}
    assert cfg.missing_template is None  # chat_template: tokenizer_default
    status = {s.key: s.status for s in cfg.settings}
    assert status["datasets[0].field_messages"] == "taken"  # conversations: the loader reads it
    assert status["datasets[0].message_property_mappings.role"] == "taken"  # from
    assert status["special_tokens.eos_token"] == "no-equivalent"
    assert status["datasets[0].path"] == "ignored"


def test_axolotl_named_template_has_no_equivalent():
    cfg = load_config(GEMMA)
    assert cfg.missing_template == "axolotl's built-in template 'gemma3'"
    (s,) = [s for s in cfg.settings if s.key == "chat_template"]
    assert s.status == "no-equivalent" and "--use-tokenizer-template" in s.why
    assert cfg.options["max_length"] == 2048


def test_llamafactory_real_file_and_dataset_info():
    cfg = load_config(LLAMAFACTORY)
    assert cfg.trainer == "llamafactory"
    assert cfg.missing_template == "LLaMA-Factory's template 'qwen3_nothink'"
    assert cfg.options["max_length"] == 2048 and cfg.options["strategy"] == "assistant-only"
    assert Path(cfg.options["data"]) == LLAMAFACTORY.parent / "data" / "identity.json"
    status = {s.key: (s.status, s.why) for s in cfg.settings}
    assert status["dataset.alpaca_en_demo"] == ("ignored", "file not found")  # not kept here: 860 KB
    assert status["trust_remote_code"][0] == "ignored"  # a file never turns remote code on


def test_llamafactory_mask_history_train_on_prompt_and_packing(tmp_path):
    base = yaml.safe_load(LLAMAFACTORY.read_text())
    cfg = load_config_text(yaml.safe_dump({**base, "mask_history": True}), "a.yaml")
    assert cfg.options["strategy"] == "last-turn"
    cfg = load_config_text(yaml.safe_dump({**base, "train_on_prompt": True}), "a.yaml")
    assert cfg.options["strategy"] == "all-tokens"
    with pytest.raises(ConfigError, match="cannot both be true"):
        load_config_text(yaml.safe_dump({**base, "train_on_prompt": True, "mask_history": True}), "a.yaml")
    cfg = load_config_text(yaml.safe_dump({**base, "neat_packing": True, "cutoff_len": 512}), "a.yaml")
    assert (cfg.options["max_length"], cfg.options["packing"], cfg.options["padding_free"]) == (511, "bfd", True)


def test_llamafactory_sharegpt_columns_the_loader_cannot_read():
    info = json.loads((LLAMAFACTORY.parent / "data" / "dataset_info.json").read_text())
    from inspector.config.llamafactory import _format_problems

    assert _format_problems(info["glaive_toolcall_en_demo"]) == []  # conversations, from/value, human/gpt
    assert _format_problems(info["mllm_demo"]) == []  # role/content tags
    assert _format_problems({"formatting": "sharegpt", "columns": {"messages": "dialog"}}) == [
        "column messages is 'dialog': the loader reads 'messages' or 'conversations' or 'conversation'; rename it"]


def test_trl_real_file():
    cfg = load_config(TRL)
    assert cfg.trainer == "trl"
    assert cfg.options == {"tokenizer": "Qwen/Qwen2.5-0.5B", "max_length": 1024, "strategy": "all-tokens"}
    assert cfg.strategy_if_prompt_completion == "assistant-only"


def test_trl_defaults_and_names_match_the_installed_sft_config():
    import dataclasses

    from inspector.config import trl as ours

    trl = pytest.importorskip("trl", reason="trl is not installed (pip install -r requirements-trl.txt)")

    fields = {f.name: f.default for f in dataclasses.fields(trl.SFTConfig)}
    for key, default in ours.DEFAULTS.items():
        assert key in fields, key
        assert fields[key] == default, key
    known = set(fields) | {f.name for f in dataclasses.fields(trl.ModelConfig)} | \
        {f.name for f in dataclasses.fields(trl.ScriptArguments)}
    assert set(ours.MARKERS) <= known


def test_trl_config_parsed_by_trl_itself_gives_the_same_values(tmp_path):
    """The config goes through TRL's own parser (TrlParser -> SFTConfig): what TRL will use is what we took."""
    trl = pytest.importorskip("trl", reason="trl is not installed (pip install -r requirements-trl.txt)")

    path = derived(TRL, tmp_path / "sft.yaml", max_length=333, packing=True, packing_strategy="bfd_split",
                   assistant_only_loss=True, truncation_mode="keep_end", output_dir=str(tmp_path / "out"),
                   use_cpu=True, bf16=False)  # training knobs this CPU machine needs; nothing we read
    parser = trl.TrlParser((trl.ScriptArguments, trl.SFTConfig, trl.ModelConfig))
    script, sft, model = parser.parse_args_and_config(["--config", path])
    ours = load_config(path).options
    assert ours["max_length"] == sft.max_length == 333
    assert ours["packing"] == sft.packing_strategy and sft.packing
    assert ours["padding_free"] is True and sft.padding_free is False  # SFTTrainer turns it on for bfd_split
    assert ours["strategy"] == "assistant-only" and sft.assistant_only_loss
    assert ours["truncation_side"] == "left" and sft.truncation_mode == "keep_end"
    assert ours["tokenizer"] == model.model_name_or_path


def test_detect_and_errors(tmp_path):
    assert detect_trainer({"base_model": "x", "sequence_len": 8}) == "axolotl"
    assert detect_trainer({"model_name_or_path": "x", "cutoff_len": 8, "template": "qwen"}) == "llamafactory"
    assert detect_trainer({"model_name_or_path": "x", "max_length": 8}) == "trl"
    with pytest.raises(ConfigError, match="cannot tell which trainer.*--config-format"):
        detect_trainer({"learning_rate": 1e-4}, "c.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sequence_len: [1,\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="sequence_len is 'long', expected a whole number"):
        load_config_text("base_model: x\nsequence_len: long\n", "c.yaml")
    with pytest.raises(ConfigError, match="train_on_eos is 'some'"):
        load_config_text("base_model: x\ndatasets: [{type: chat_template, train_on_eos: some}]\n", "c.yaml")


# --- the label options the configs bring, token by token -----------------------------------------------------------

def trained_pieces(setup, opts) -> list[str]:
    """The labeled runs of a 5-message ChatML conversation, decoded."""
    conv = Conversation("c", [Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello"),
                              Message("user", "Go"), Message("assistant", "Done")])
    (s,) = LabelEngine(setup).build_one(conv, opts)
    tok = setup.tokenizer
    runs, cur = [], []
    for i, label in zip(s.input_ids, s.labels):
        if label != IGNORE_INDEX:
            assert label == i
            cur.append(i)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    return runs + ([tok.decode(cur)] if cur else [])


def test_train_on_eos_modes(tiny_setup):
    assert tiny_setup.template == CHATML
    assert trained_pieces(tiny_setup, LabelOptions()) == ["Hello<|im_end|>", "Done<|im_end|>"]
    assert trained_pieces(tiny_setup, LabelOptions(train_on_eos="turn")) == ["Hello<|im_end|>", "Done<|im_end|>"]
    assert trained_pieces(tiny_setup, LabelOptions(train_on_eos="last")) == ["Hello", "Done<|im_end|>"]
    assert trained_pieces(tiny_setup, LabelOptions(train_on_eos="none")) == ["Hello", "Done"]
    assert trained_pieces(tiny_setup, LabelOptions(label_eot=False)) == ["Hello", "Done"]
    # all: the system's and users' closings too, though their text is not trained
    assert trained_pieces(tiny_setup, LabelOptions(train_on_eos="all")) == [
        "<|im_end|>", "<|im_end|>", "Hello<|im_end|>", "<|im_end|>", "Done<|im_end|>"]
    # last-turn keeps only the final answer; "all" still trains every closing
    assert trained_pieces(tiny_setup, LabelOptions(strategy="last-turn", train_on_eos="all")) == [
        "<|im_end|>", "<|im_end|>", "<|im_end|>", "<|im_end|>", "Done<|im_end|>"]


def test_roles_to_train(tiny_setup):
    assert trained_pieces(tiny_setup, LabelOptions(roles_to_train=("user", "assistant"))) == [
        "Hi<|im_end|>", "Hello<|im_end|>", "Go<|im_end|>", "Done<|im_end|>"]  # text, never the role header
    assert trained_pieces(tiny_setup, LabelOptions(roles_to_train=("user",))) == ["Hi<|im_end|>", "Go<|im_end|>"]
    assert trained_pieces(tiny_setup, LabelOptions(roles_to_train=("system", "user", "assistant", "tool"),
                                                   train_on_eos="last")) == ["Be brief.", "Hi", "Hello", "Go",
                                                                             "Done<|im_end|>"]
    with pytest.raises(ValueError, match="roles_to_train"):
        LabelEngine(tiny_setup).build_one(Conversation("c", [Message("user", "Hi")]),
                                          LabelOptions(roles_to_train=("robot",)))


# --- the CLI -------------------------------------------------------------------------------------------------------

def test_check_runs_with_the_axolotl_config(tmp_path, tiny_dir, capsys):
    """The real falcon-e config with the tokenizer, template and sequence_len changed: the check runs with the
    config's max length, strategy and template, and the cut answers give the truncation findings."""
    config = derived(AXOLOTL, tmp_path / "ax.yml", base_model=tiny_dir, chat_template="chatml", sequence_len=20)
    data = write_jsonl(tmp_path / "d.jsonl", MESSAGES * 3)
    code, out, err = run(["check", data, "--config", config, "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    s = report["settings"]
    assert (s["tokenizer"], s["max_length"], s["strategy"]) == (tiny_dir, 20, "assistant-only")
    assert s["template_source"].endswith("chatml.jinja")
    assert report["checks"]["truncation-cuts-answer"]["records"] == 3
    assert report["config"]["trainer"] == "axolotl"
    assert report["config"]["applied"]["max_length"] == 20
    # text output: what was taken goes to stderr
    code, out, err = run(["check", data, "--config", config], capsys)
    assert "sequence_len: 20 -> --max-length 20" in err
    assert "truncation-cuts-answer" in out


def test_explicit_flag_wins_over_the_config(tmp_path, tiny_dir, capsys):
    config = derived(AXOLOTL, tmp_path / "ax.yml", base_model=tiny_dir, chat_template="chatml", sequence_len=20)
    data = write_jsonl(tmp_path / "d.jsonl", MESSAGES)
    code, out, err = run(["check", data, "--config", config, "--max-len=4096", "--strategy", "last-turn"], capsys)
    assert code == 0, err
    assert "max_length 4096" in out and "strategy last-turn" in out
    assert "truncation-cuts-answer" not in out.split("quiet:")[0]
    assert "the command line wins: --max-length 4096 (the config says 20)" in err


def test_axolotl_train_on_eos_reaches_the_samples(tmp_path, tiny_dir, capsys):
    datasets = [{"path": "x", "type": "chat_template", "train_on_eos": "none"}]
    config = derived(AXOLOTL, tmp_path / "ax.yml", base_model=tiny_dir, chat_template="chatml", datasets=datasets)
    data = write_jsonl(tmp_path / "d.jsonl", MESSAGES)
    code, out, err = run(["check", data, "--config", config, "--json"], capsys)
    report = json.loads(out)
    assert report["checks"]["eot-not-labeled"]["records"] == 1  # none: the answer's <|im_end|> is not trained
    assert code == 1


def test_llamafactory_template_needs_consent(tmp_path, tiny_dir, capsys):
    cfg_dir = tmp_path / "lf"
    (cfg_dir / "data").mkdir(parents=True)
    for name in ("dataset_info.json", "identity.json"):
        (cfg_dir / "data" / name).write_bytes((LLAMAFACTORY.parent / "data" / name).read_bytes())
    config = derived(LLAMAFACTORY, cfg_dir / "sft.yaml", model_name_or_path=tiny_dir, trust_remote_code=None)
    code, out, err = run(["check", "--config", config], capsys)
    assert code == 2
    assert "template 'qwen3_nothink'" in err and "--use-tokenizer-template" in err
    code, out, err = run(["check", "--config", config, "--use-tokenizer-template", "--json"], capsys)
    assert code in (0, 1), err
    report = json.loads(out)
    assert report["settings"]["data"] == str(cfg_dir / "data" / "identity.json")  # DATA from dataset_info.json
    assert report["totals"]["records"] == len(json.loads((cfg_dir / "data" / "identity.json").read_text()))
    assert report["settings"]["max_length"] == 2048
    assert "tokenizer's own template" in report["config"]["template"]


def test_trl_strategy_follows_the_data(tmp_path, tiny_dir, capsys):
    config = derived(TRL, tmp_path / "sft.yaml", model_name_or_path=tiny_dir)
    for records, strategy in ((MESSAGES, "all-tokens"), (PROMPT_COMPLETION, "assistant-only")):
        data = write_jsonl(tmp_path / "d.jsonl", records)
        code, out, err = run(["check", data, "--config", config, "--json"], capsys)
        assert json.loads(out)["settings"]["strategy"] == strategy, err


def test_pack_takes_length_and_packing_from_the_config(tmp_path, tiny_dir, capsys):
    config = derived(AXOLOTL, tmp_path / "ax.yml", base_model=tiny_dir, chat_template="chatml", sequence_len=64)
    data = write_jsonl(tmp_path / "d.jsonl", MESSAGES * 2)
    code, out, err = run(["pack", data, "--config", config, "--json"], capsys)
    assert code in (0, 1), err
    options = json.loads(out)["packing"]["options"]
    assert (options["max_length"], options["strategy"], options["padding_free"]) == (64, "bfd", True)
    code, out, err = run(["pack", data], capsys)
    assert code == 2 and "pack needs --max-length" in err


def test_no_data_and_bad_config_are_usage_errors(tmp_path, tiny_dir, capsys):
    code, out, err = run(["check"], capsys)
    assert code == 2 and "no DATA" in err
    bad = tmp_path / "c.yaml"
    bad.write_text("learning_rate: 0.1\n", encoding="utf-8")
    code, out, err = run(["check", "x.jsonl", "--config", bad], capsys)
    assert code == 2 and "cannot tell which trainer" in err
    code, out, err = run(["check", "x.jsonl", "--config", tmp_path / "missing.yaml"], capsys)
    assert code == 2 and "config file not found" in err


def test_explicit_dests():
    from inspector.cli.config import explicit_dests

    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["check"]
    assert explicit_dests(sub, ["check", "d.jsonl", "--strategy", "last-turn", "--max-len=9", "--json"]) == {
        "strategy", "max_length", "json"}


def test_command_line_carries_the_new_label_options():
    """The app's "same run on the command line" repeats roles_to_train and train_on_eos, and they parse back."""
    import shlex

    opts = LabelOptions(roles_to_train=("user", "assistant"), train_on_eos="last")
    line, left = command_line("check", "d.jsonl", options=opts)
    assert left == []
    args = build_parser().parse_args(shlex.split(line)[3:])
    back = _options(args)
    assert (back.roles_to_train, back.train_on_eos) == (("user", "assistant"), "last")
    assert command_line("check", "d.jsonl")[0] == "python -m inspector check d.jsonl"  # defaults add nothing


def test_axolotl_inline_jinja_template_is_used(tmp_path, tiny_dir, capsys):
    """chat_template_jinja given inline (axolotl implies chat_template: jinja): the check renders with it."""
    marked = CHATML.replace("'<|im_start|>' + message['role']", "'<|im_start|>' + message['role'] + '!'")
    config = derived(AXOLOTL, tmp_path / "ax.yml", base_model=tiny_dir, chat_template=None, sequence_len=4096,
                     chat_template_jinja=marked)
    data = write_jsonl(tmp_path / "d.jsonl", MESSAGES)
    code, out, err = run(["check", data, "--config", config, "--json"], capsys)
    report = json.loads(out)
    assert code == 0, err
    source = report["settings"]["template_source"]
    assert source.startswith("file:")
    assert Path(source[len("file:"):]).read_text(encoding="utf-8") == marked  # removed when the process exits
    assert {s["key"]: s["status"] for s in report["config"]["settings"]}["chat_template_jinja"] == "taken"


def test_an_app_without_server_paths_opens_no_file_a_config_names(tmp_path):
    text = yaml.safe_dump({"model_name_or_path": "x", "max_length": 64, "chat_template_path": "/etc/hostname"})
    cfg = load_config_text(text, "sft.yaml", allow_paths=False)
    assert "chat_template" not in cfg.options and cfg.options["max_length"] == 64
    (s,) = [s for s in cfg.settings if s.key == "chat_template_path"]
    assert s.status == "ignored" and "does not read its paths" in s.why
    assert cfg.missing_template == "the template file '/etc/hostname' (not read: server paths are off)"
    lf = yaml.safe_load(LLAMAFACTORY.read_text())
    cfg = load_config_text(yaml.safe_dump({**lf, "dataset_dir": str(LLAMAFACTORY.parent / "data")}), "a.yaml",
                           allow_paths=False)
    assert "data" not in cfg.options
    cfg = load_config_text(yaml.safe_dump({"base_model": "x", "chat_template_jinja": "/srv/t.jinja"}), "a.yml",
                           allow_paths=False)
    assert cfg.template_text is None and "chat_template" not in cfg.options
