"""Record what TRL's ``SFTTrainer`` really feeds the model, on the shared corpus conversations, as test data.

Runs in the project's own environment (trl 1.16, transformers 5.x, torch CPU); a tiny random Llama is built only
because ``SFTTrainer`` needs a model to start. For every case the trainer's prepared ``train_dataset`` row goes
through the trainer's own ``data_collator`` (one row per batch, so no padding), and the collated ``input_ids``,
``attention_mask`` and ``labels`` (unshifted, -100 = ignored) are written, one JSON line per conversation, to
``tests/data/trainers/trl_<case>.jsonl`` with the source messages, the tokenizer, the template, the config and the
package versions::

    SFT_CORPUS=/work/shared/corpus python scripts/record_trl_sft.py

Cases (see tests/data/trainers/README.md for what they showed):

- ``qwen25_assistant_only``: the corpus Qwen2.5 tokenizer with the corpus ``Qwen-Qwen2.5-7B-Instruct.jinja``
  (byte-identical to trl's ``qwen2_5.jinja``), ``assistant_only_loss=True``; TRL swaps in its
  ``qwen2_5_training.jinja``.
- ``qwen3_assistant_only``: the same tokenizer with the Qwen3 template trl ships (``trl:qwen3.jinja``, today's
  Qwen3-0.6B template); TRL swaps in ``qwen3_training.jinja``.
- ``qwen2_gguf_template_assistant_only`` / ``qwen3_corpus_template_assistant_only``: the qwen2 tokenizer folder's
  own (GGUF-converted) template and the corpus's older Qwen3-0.6B template: TRL knows neither and refuses.
- ``qwen25_completion_only``: conversational prompt/completion (prompt = every message before the last answer,
  completion = the last answer), ``completion_only_loss`` left at its default (on for prompt/completion).
- ``text_completion_only``: plain-text prompt/completion (user text / answer text of the single-turn records).
- ``llama31_assistant_only``: Llama 3 tokenizer + Llama 3.1's template: TRL refuses it; the refusal message is
  written to ``trl_refusals.json`` instead of samples (as are the two refusals above).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trainer_conversations import build_conversations, corpus_dir  # noqa: E402

QWEN25 = "Qwen-Qwen2.5-7B-Instruct.jinja"  # byte-identical to trl's chat_templates/qwen2_5.jinja
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "trainers"


def _versions() -> dict:
    import datasets
    import tokenizers
    import torch
    import transformers
    import trl

    return {"trl": trl.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
            "datasets": datasets.__version__, "torch": torch.__version__}


def _tokenizer(name: str, template: str | None):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(corpus_dir() / "tokenizers" / name))
    if template:
        tok.chat_template = template_path(template).read_text(encoding="utf-8")
    return tok


def template_path(template: str) -> Path:
    """``trl:qwen3.jinja`` is a template shipped inside the installed trl package; any other name is a corpus
    template (``$SFT_CORPUS/templates/<name>``)."""
    if template.startswith("trl:"):
        import trl

        return Path(trl.__file__).parent / "chat_templates" / template[4:]
    return corpus_dir() / "templates" / template


def _trainer(tok, rows: list[dict], config: dict, workdir: str):
    import datasets
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, intermediate_size=32))
    args = SFTConfig(output_dir=workdir, report_to=[], use_cpu=True, dataset_num_proc=None, **config)
    return SFTTrainer(model=model, processing_class=tok, args=args, train_dataset=datasets.Dataset.from_list(rows))


def _trl_template_name(text: str) -> str:
    """The file name, in trl's chat_templates/, of the training template TRL swapped in."""
    import trl

    for path in sorted((Path(trl.__file__).parent / "chat_templates").glob("*.jinja")):
        if path.read_text(encoding="utf-8") == text:
            return path.name
    return "unnamed"


def _record(case: str, tokenizer: str, template: str | None, rows: list[dict], source: list[dict], config: dict,
            versions: dict, workdir: str) -> dict | None:
    tok = _tokenizer(tokenizer, template)
    try:
        trainer = _trainer(tok, rows, config, workdir)
    except Exception as exc:  # noqa: BLE001 - a refusal is the finding
        return {"case": case, "tokenizer": tokenizer, "chat_template": template, "config": config,
                "versions": versions, "error": f"{type(exc).__name__}: {exc}"}
    swapped = _trl_template_name(trainer.chat_template) if trainer.chat_template else None
    lines = []
    for src, row in zip(source, trainer.train_dataset):
        batch = trainer.data_collator([row])
        ids = batch["input_ids"][0].tolist()
        assert ids == list(row["input_ids"]), "the collator changed the ids of a single row"
        rec = {"id": src["id"], "trainer": "trl", "case": case, "tokenizer": tokenizer,
               "chat_template": template or "tokenizer", "trl_training_template": swapped,
               "config": config, "versions": versions, **{k: v for k, v in src.items() if k != "id"},
               "input_ids": ids, "labels": batch["labels"][0].tolist(),
               "attention_mask": batch["attention_mask"][0].tolist()}
        lines.append(json.dumps(rec, ensure_ascii=False, separators=(",", ":")))
    (OUT / f"trl_{case}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"trl_{case}: {len(lines)} records (training template swapped in: {swapped})")
    return None


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    versions = _versions()
    convs = build_conversations()
    chats = [{"id": c["id"], "messages": c["messages"]} for c in convs]
    pc = [{"id": c["id"], "prompt": c["messages"][:-1], "completion": c["messages"][-1:]} for c in convs]
    single = [c for c in convs if len(c["messages"]) == 2]
    text_pc = [{"id": c["id"], "prompt": c["messages"][0]["content"], "completion": c["messages"][1]["content"]}
               for c in single]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "id"} for r in rows]  # noqa: E731
    refusals = []
    with tempfile.TemporaryDirectory() as work:
        for case, tokenizer, template, source, config in [
            ("qwen25_assistant_only", "qwen2", QWEN25, chats, {"assistant_only_loss": True}),
            ("qwen3_assistant_only", "qwen2", "trl:qwen3.jinja", chats, {"assistant_only_loss": True}),
            ("qwen25_completion_only", "qwen2", QWEN25, pc, {}),
            ("text_completion_only", "qwen2", QWEN25, text_pc, {}),
            ("qwen2_gguf_template_assistant_only", "qwen2", None, chats, {"assistant_only_loss": True}),
            ("qwen3_corpus_template_assistant_only", "qwen2", "Qwen-Qwen3-0.6B.jinja", chats,
             {"assistant_only_loss": True}),
            ("llama31_assistant_only", "llama-bpe", "meta-llama-Llama-3.1-8B-Instruct.jinja", chats,
             {"assistant_only_loss": True}),
        ]:
            refusal = _record(case, tokenizer, template, strip(source), source, config, versions, work)
            if refusal:
                print(f"trl_{case}: refused: {refusal['error'][:200]}")
                refusals.append(refusal)
    (OUT / "trl_refusals.json").write_text(json.dumps(refusals, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
