"""Record what axolotl's own data preparation produces for ``type: chat_template``, on the shared corpus
conversations, as test data (so the tests need no axolotl).

axolotl pins its own torch/transformers, so this runs in a separate virtualenv, not the project's::

    python3 -m venv /work/venvs/axolotl && /work/venvs/axolotl/bin/pip install axolotl==0.19.0
    SFT_CORPUS=/work/shared/corpus HF_HUB_OFFLINE=1 /work/venvs/axolotl/bin/python scripts/record_axolotl.py

For each case the script writes an axolotl YAML config (a local dataset of the conversations, ``type:
chat_template``, the chat template given as ``chat_template_jinja``), loads it with axolotl's ``load_cfg`` and runs
``load_datasets`` (what ``axolotl preprocess`` and ``axolotl train`` run), then writes the prepared rows'
``input_ids``, ``labels`` (unshifted, -100 = ignored) and ``attention_mask`` with the source messages, the tokenizer,
the config and the versions to ``tests/data/trainers/axolotl_<case>.jsonl``. ``base_model`` is a throw-away folder
holding the corpus tokenizer and a 1-layer config (no weights are loaded: preparing data needs none).

Cases: ``qwen25_default`` (Qwen2.5 template, axolotl's defaults: roles_to_train [assistant], train_on_eos turn),
``qwen25_train_on_eos_all``, ``qwen25_roles_user_assistant`` (roles_to_train [user, assistant]),
``qwen25_eot_im_end`` / ``qwen3_eot_im_end`` (``eot_tokens: [<|im_end|>]``: the corpus qwen2 tokenizer's EOS is
``<|endoftext|>``, which the template never writes, so by default no turn end is trained), ``qwen3_default``
(Qwen3 template, reasoning written inline as ``<think>...</think>``), ``qwen3_split_thinking`` (``split_thinking:
true``: axolotl moves the inline reasoning to ``reasoning_content``), ``llama31_default`` (Llama 3 tokenizer, Llama
3.1 template). Name cases on the command line to record only those.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trainer_conversations import build_conversations, corpus_dir  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "trainers"
QWEN25 = "Qwen-Qwen2.5-7B-Instruct.jinja"
QWEN3 = "Qwen-Qwen3-0.6B.jinja"
LLAMA31 = "meta-llama-Llama-3.1-8B-Instruct.jinja"

# (case, tokenizer folder, template, dataset options, top-level config options)
CASES = [
    ("qwen25_default", "qwen2", QWEN25, {}, {}),
    ("qwen25_train_on_eos_all", "qwen2", QWEN25, {"train_on_eos": "all"}, {}),
    ("qwen25_roles_user_assistant", "qwen2", QWEN25, {"roles_to_train": ["user", "assistant"]}, {}),
    ("qwen25_eot_im_end", "qwen2", QWEN25, {}, {"eot_tokens": ["<|im_end|>"]}),
    ("qwen3_default", "qwen2", QWEN3, {}, {}),
    ("qwen3_eot_im_end", "qwen2", QWEN3, {}, {"eot_tokens": ["<|im_end|>"]}),
    ("qwen3_split_thinking", "qwen2", QWEN3, {"split_thinking": True}, {}),
    ("llama31_default", "llama-bpe", LLAMA31, {}, {}),
]


def _versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("axolotl", "transformers", "tokenizers", "datasets", "torch")}


def _model_dir(tokenizer: str, root: Path) -> Path:
    """A base_model folder: the corpus tokenizer files plus a tiny Llama config (axolotl reads the config)."""
    from transformers import AutoTokenizer, LlamaConfig

    path = root / f"model-{tokenizer}"
    if not path.exists():
        shutil.copytree(corpus_dir() / "tokenizers" / tokenizer, path)
        size = len(AutoTokenizer.from_pretrained(str(path)))
        LlamaConfig(vocab_size=size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    num_key_value_heads=2, intermediate_size=32).save_pretrained(path)
    return path


def _config(case: str, model: Path, template: str, data: Path, options: dict, top: dict, root: Path) -> dict:
    dataset = {"path": str(data), "ds_type": "json", "type": "chat_template", "field_messages": "messages",
               **options}
    return {"base_model": str(model), "datasets": [dataset], "chat_template": "jinja",
            "chat_template_jinja": (corpus_dir() / "templates" / template).read_text(encoding="utf-8"),
            "dataset_prepared_path": str(root / f"prepared-{case}"), "output_dir": str(root / f"out-{case}"),
            "sequence_len": 4096, "val_set_size": 0, "shuffle_merged_datasets": False,
            "micro_batch_size": 1, "gradient_accumulation_steps": 1, "num_epochs": 1, "learning_rate": 1e-5,
            "dataset_processes": 1, **top}


def main() -> None:
    import yaml
    from axolotl.cli.args import PreprocessCliArgs
    from axolotl.cli.config import load_cfg
    from axolotl.common.datasets import load_datasets

    OUT.mkdir(parents=True, exist_ok=True)
    versions = _versions()
    convs = build_conversations()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "convs.jsonl"
        data.write_text("".join(json.dumps({"messages": c["messages"]}) + "\n" for c in convs), encoding="utf-8")
        for case, tokenizer, template, options, top in CASES:
            if sys.argv[1:] and case not in sys.argv[1:]:
                continue
            config = _config(case, _model_dir(tokenizer, root), template, data, options, top, root)
            cfg_path = root / f"{case}.yml"
            cfg_path.write_text(yaml.safe_dump(config), encoding="utf-8")
            cfg = load_cfg(str(cfg_path))
            train = load_datasets(cfg=cfg, cli_args=PreprocessCliArgs()).train_dataset
            rows = list(train)
            if len(rows) != len(convs):
                raise SystemExit(f"{case}: axolotl kept {len(rows)} of {len(convs)} conversations")
            shown = {k: v for k, v in config["datasets"][0].items() if k not in ("path",)}
            lines = []
            for conv, row in zip(convs, rows):
                rec = {"id": conv["id"], "trainer": "axolotl", "case": case, "tokenizer": tokenizer,
                       "chat_template": template, "config": {"datasets": [shown], "chat_template": "jinja (the file "
                       "named in chat_template)", "sequence_len": 4096, **top}, "versions": versions,
                       "messages": conv["messages"], "input_ids": list(row["input_ids"]),
                       "labels": list(row["labels"]), "attention_mask": list(row["attention_mask"])}
                lines.append(json.dumps(rec, ensure_ascii=False, separators=(",", ":")))
            (OUT / f"axolotl_{case}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
            print(f"axolotl_{case}: {len(lines)} records")


if __name__ == "__main__":
    main()
