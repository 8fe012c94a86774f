"""Record what LLaMA-Factory's own SFT data preprocessing produces, on the shared corpus conversations, as test data
(so the tests need no LLaMA-Factory).

LLaMA-Factory pins its own torch/transformers, so this runs in a separate virtualenv, not the project's::

    python3 -m venv /work/venvs/llamafactory && /work/venvs/llamafactory/bin/pip install llamafactory==0.9.5
    SFT_CORPUS=/work/shared/corpus HF_HUB_OFFLINE=1 /work/venvs/llamafactory/bin/python scripts/record_llamafactory.py

For each case the script writes the conversations as a local ShareGPT-style dataset (``dataset_info.json`` with
role/content tags; a leading system message becomes LLaMA-Factory's ``system``), then runs what
``llamafactory-cli train`` runs before training: ``get_train_args`` -> ``load_tokenizer`` ->
``get_template_and_fix_tokenizer`` -> ``get_dataset(stage="sft")``, with LLaMA-Factory's own template (``template:
qwen`` / ``qwen3`` / ``llama3``, not the tokenizer's), and writes the prepared rows' ``input_ids``, ``labels``
(unshifted, -100 = ignored) and ``attention_mask`` with the source messages, the tokenizer, the arguments and the
versions to ``tests/data/trainers/llamafactory_<case>.jsonl``.

Cases: ``qwen`` (Qwen2.5 tokenizer, ``template: qwen``, train_on_prompt false), ``qwen_mask_history``
(``mask_history: true``: only the last answer trained), ``qwen3`` (``template: qwen3``, reasoning inline as
``<think>...</think>``), ``qwen3_mask_history``, ``llama3`` (Llama 3 tokenizer, ``template: llama3``).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trainer_conversations import build_conversations, corpus_dir  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "trainers"

CASES = [
    ("qwen", "qwen2", {"template": "qwen"}),
    ("qwen_mask_history", "qwen2", {"template": "qwen", "mask_history": True}),
    ("qwen3", "qwen2", {"template": "qwen3"}),
    ("qwen3_mask_history", "qwen2", {"template": "qwen3", "mask_history": True}),
    ("llama3", "llama-bpe", {"template": "llama3"}),
]

DATASET_INFO = {"corpus_convs": {"file_name": "convs.json", "formatting": "sharegpt",
                                 "columns": {"messages": "messages"},
                                 "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                          "assistant_tag": "assistant", "system_tag": "system"}}}


def _versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("llamafactory", "transformers", "tokenizers", "datasets", "torch")}


def main() -> None:
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    OUT.mkdir(parents=True, exist_ok=True)
    versions = _versions()
    convs = build_conversations()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "convs.json").write_text(json.dumps([{"messages": c["messages"]} for c in convs]), encoding="utf-8")
        (root / "dataset_info.json").write_text(json.dumps(DATASET_INFO), encoding="utf-8")
        for case, tokenizer, options in CASES:
            args = {"model_name_or_path": str(corpus_dir() / "tokenizers" / tokenizer), "stage": "sft",
                    "do_train": True, "finetuning_type": "full", "dataset": "corpus_convs",
                    "dataset_dir": str(root), "cutoff_len": 4096, "output_dir": str(root / f"out-{case}"),
                    "overwrite_cache": True, "preprocessing_num_workers": None, "report_to": "none",
                    "train_on_prompt": False, **options}
            model_args, data_args, training_args, _, _ = get_train_args(dict(args))
            tokenizer_module = load_tokenizer(model_args)
            template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
            train = get_dataset(template, model_args, data_args, training_args, "sft",
                                **tokenizer_module)["train_dataset"]
            rows = list(train)
            if len(rows) != len(convs):
                raise SystemExit(f"{case}: LLaMA-Factory kept {len(rows)} of {len(convs)} conversations")
            shown = {k: v for k, v in args.items() if k not in ("model_name_or_path", "dataset_dir", "output_dir")}
            lines = []
            for conv, row in zip(convs, rows):
                rec = {"id": conv["id"], "trainer": "llamafactory", "case": case, "tokenizer": tokenizer,
                       "chat_template": f"llamafactory:{options['template']}", "config": shown,
                       "versions": versions, "messages": conv["messages"], "input_ids": list(row["input_ids"]),
                       "labels": list(row["labels"]), "attention_mask": list(row["attention_mask"])}
                lines.append(json.dumps(rec, ensure_ascii=False, separators=(",", ":")))
            (OUT / f"llamafactory_{case}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
            print(f"llamafactory_{case}: {len(lines)} records")


if __name__ == "__main__":
    main()
