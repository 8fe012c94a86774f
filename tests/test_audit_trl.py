"""The audit against TRL 1.16 itself: SFTTrainer on a tiny random Llama builds its real prepared dataset and its real
collated batches; the audit reads them as a user would (``train_dataset.save_to_disk`` + ``python -m inspector
audit``, or the callback inside ``trainer.train()``).

Measured here: with Qwen2.5's template TRL swaps in its own training template, which trains the newline after the
assistant header and after every <|im_end|>; with our exported training template there is no difference at all;
completion_only_loss on conversational prompt/completion trains the newline after <|im_end|>; plain-text
prompt/completion is trained as prompt + completion + EOS; bfd packing (padding-free) keeps every sample apart.
"""

from __future__ import annotations

import json
import subprocess
import numpy as np
import pytest

from conftest import CHATML

pytest.importorskip("trl", reason="trl is not installed (pip install -r requirements-trl.txt)")

CONVS = [
    {"messages": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"},
                  {"role": "user", "content": "Add 2 and 2"}, {"role": "assistant", "content": "4"}]},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "The quick brown fox?"},
                  {"role": "assistant", "content": "Jumps over the lazy dog."}]},
    {"messages": [{"role": "user", "content": "Probe question about apples"},
                  {"role": "assistant", "content": "I have chicken and rice."}]},
]


def run_audit_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m inspector audit ...`` in this process (the tokenizer's import costs seconds per process)."""
    import contextlib
    import io

    from inspector.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["audit", *args])
    return subprocess.CompletedProcess(["audit", *args], code, out.getvalue(), err.getvalue())


def tiny_model(tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=32, pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(config)


def trainer_for(tok, rows, tmp_path, callbacks=(), **config):
    import datasets
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True, max_steps=1,
                     per_device_train_batch_size=2, save_strategy="no", logging_strategy="no", **config)
    return SFTTrainer(model=tiny_model(tok), processing_class=tok, args=args,
                      train_dataset=datasets.Dataset.from_list(rows), callbacks=list(callbacks))


@pytest.fixture(scope="module")
def qwen(corpus):
    from transformers import AutoTokenizer

    folder = corpus / "tokenizers" / "qwen2"
    template = corpus / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja"
    tok = AutoTokenizer.from_pretrained(str(folder))
    tok.chat_template = template.read_text(encoding="utf-8")
    return tok, str(folder), str(template)


def fresh(tok):
    """A copy of ``tok``: TRL swaps its training template into the tokenizer object it is given."""
    import copy

    return copy.deepcopy(tok)


@pytest.fixture(scope="module")
def qwen_prepared(qwen, tmp_path_factory):
    """TRL's own prepared dataset with its swapped-in Qwen2.5 training template, saved as a user would."""
    tok, _, _ = qwen
    tmp = tmp_path_factory.mktemp("trl-qwen")
    trainer = trainer_for(fresh(tok), CONVS, tmp, assistant_only_loss=True)
    assert trainer.chat_template not in (None, tok.chat_template)  # TRL swapped in its training template
    trainer.train_dataset.save_to_disk(str(tmp / "prepared"))
    return trainer, tmp / "prepared"


def _newlines_after(ds, tok, after: str) -> tuple[int, int]:
    """Independent count, straight from TRL's rows: trained '\\n' tokens right after ``after``, and the rows with
    one."""
    nl = tok.encode("\n", add_special_tokens=False)[0]
    prev = tok.convert_tokens_to_ids(after) if after.startswith("<|") else tok.encode(after,
                                                                                    add_special_tokens=False)[-1]
    tokens = records = 0
    for row in ds:
        ids, labels = np.asarray(row["input_ids"]), np.asarray(row["labels"])
        hit = (ids[1:] == nl) & (ids[:-1] == prev) & (labels[1:] != -100)
        tokens += int(hit.sum())
        records += int(hit.any())
    return tokens, records


@pytest.mark.slow
def test_trl_swapped_qwen25_template_trains_newline_after_im_end(qwen, qwen_prepared):
    tok, folder, template = qwen
    trainer, prepared = qwen_prepared
    proc = run_audit_cli(str(prepared), "--tokenizer", folder, "--chat-template", template, "--json")
    assert proc.returncode == 0, proc.stderr  # warnings only: template text, not prompt content
    report = json.loads(proc.stdout)
    assert report["columns"]["labels_from"] == "labels" and report["totals"]["tied"] == len(CONVS)
    patterns = {p["pattern"]: p for p in report["patterns"]}
    want_tokens, want_records = _newlines_after(trainer.train_dataset, tok, "<|im_end|>")
    assert want_tokens > 0
    p = patterns["'\\n' after '<|im_end|>'"]
    assert (p["code"], p["tokens"], p["records"]) == ("extra-trained-tokens", want_tokens, want_records)
    header_tokens, _ = _newlines_after(trainer.train_dataset, tok, "assistant")
    assert patterns["'\\n' after 'assistant'"]["tokens"] == header_tokens
    assert not {c for c, v in report["codes"].items() if v["severity"] == "error"}
    assert run_audit_cli(str(prepared), "--tokenizer", folder, "--chat-template", template,
                         "--fail-on", "warning").returncode == 1


@pytest.mark.slow
def test_trl_prepared_labels_shifted_by_one_exit_1(qwen, qwen_prepared, tmp_path):
    import datasets

    _, folder, template = qwen
    trainer, _ = qwen_prepared
    shifted = trainer.train_dataset.map(lambda r: {"labels": r["input_ids"][1:] + [-100]})
    shifted.save_to_disk(str(tmp_path / "shifted"))
    proc = run_audit_cli(str(tmp_path / "shifted"), "--tokenizer", folder, "--chat-template", template, "--json")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["codes"]["labels-shifted"]["records"] == len(CONVS)
    first = report["patterns"][0]
    assert first["code"] == "labels-shifted" and "shifted left by one" in first["pattern"]
    assert isinstance(datasets.load_from_disk(str(tmp_path / "shifted")), datasets.Dataset)


def test_trl_with_our_exported_training_template_has_no_difference(tiny_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    from inspector.audit.run import run_audit
    from inspector.conversations import Conversation, Message
    from inspector.template.tokenizer import ChatSetup
    from inspector.training_template.build import build_training_template

    convs = [Conversation(f"c{i}", [Message(m["role"], m["content"]) for m in r["messages"]])
             for i, r in enumerate(CONVS)]
    setup = ChatSetup(tiny_tokenizer, CHATML, "override", "tiny")
    tt = build_training_template(setup, convs)
    tiny_tokenizer.save_pretrained(str(tmp_path / "tok"))
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    tok.chat_template = tt.template
    trainer = trainer_for(tok, CONVS, tmp_path, assistant_only_loss=True)
    trainer.train_dataset.save_to_disk(str(tmp_path / "prepared"))
    report, kept = run_audit(str(tmp_path / "prepared"), setup, keep=10)
    data = report.to_dict()
    assert data["totals"]["tied"] == len(CONVS) and data["compared_by"] == {"rendered": len(CONVS)}
    assert data["totals"]["differing_tokens"] == 0 and data["patterns"] == []
    assert all(np.array_equal(a.expected, a.row.trained) for a in kept)


@pytest.mark.slow
def test_trl_completion_only_loss_prompt_completion(qwen, tmp_path):
    from inspector.audit.run import run_audit
    from inspector.template.tokenizer import load_setup

    tok, folder, template = qwen
    setup = load_setup(folder, template)
    conversational = [{"prompt": [{"role": "user", "content": r["messages"][-2]["content"]}],
                       "completion": [{"role": "assistant", "content": r["messages"][-1]["content"]}]}
                      for r in CONVS]
    trainer = trainer_for(fresh(tok), conversational, tmp_path / "a", completion_only_loss=True)
    trainer.train_dataset.save_to_disk(str(tmp_path / "conv"))
    report = run_audit(str(tmp_path / "conv"), setup)[0].to_dict()
    patterns = {p["pattern"]: p for p in report["patterns"]}
    assert report["totals"]["tied"] == len(CONVS)
    assert patterns["'\\n' after '<|im_end|>'"]["records"] == len(CONVS)
    assert report["totals"]["findings"]["error"] == 0

    plain = [{"prompt": r["messages"][-2]["content"], "completion": " " + r["messages"][-1]["content"]}
             for r in CONVS]
    trainer = trainer_for(fresh(tok), plain, tmp_path / "b", completion_only_loss=True)
    trainer.train_dataset.save_to_disk(str(tmp_path / "plain"))
    report, kept = run_audit(str(tmp_path / "plain"), setup, keep=5)
    data = report.to_dict()
    assert data["tied_by"] == {"stored prompt/completion columns": len(CONVS)}
    assert data["compared_by"] == {"rendered": len(CONVS)}  # the engine builds them as TRL does, token for token
    assert data["patterns"] == [] and data["totals"]["differing_tokens"] == 0
    assert all("no chat template" in " ".join(a.notes) for a in kept)
    eos = tok.eos_token_id
    assert all(a.row.input_ids[-1] == eos and a.row.trained[-1] for a in kept)  # prompt + completion + EOS


def test_trl_packing_bfd_padding_free(tiny_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    from inspector.audit.run import audit_batch, run_audit
    from inspector.conversations import Conversation, Message
    from inspector.template.tokenizer import ChatSetup
    from inspector.training_template.build import build_training_template

    convs = [Conversation(f"c{i}", [Message(m["role"], m["content"]) for m in r["messages"]])
             for i, r in enumerate(CONVS)]
    setup = ChatSetup(tiny_tokenizer, CHATML, "override", "tiny")
    tiny_tokenizer.save_pretrained(str(tmp_path / "tok"))
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    tok.chat_template = build_training_template(setup, convs).template
    trainer = trainer_for(tok, CONVS, tmp_path, assistant_only_loss=True, packing=True, max_length=512,
                          padding_free=True)
    ds = trainer.train_dataset
    assert "seq_lengths" in ds.column_names and len(ds) < len(CONVS)
    ds.save_to_disk(str(tmp_path / "packed"))
    report = run_audit(str(tmp_path / "packed"), setup)[0].to_dict()
    assert report["columns"]["packing"] == "seq_lengths"
    assert report["totals"]["samples"] == len(CONVS)  # split back into the three samples
    assert report["tied_by"] == {"recovered from tokens": len(CONVS)}  # packed rows keep no messages
    assert report["totals"]["differing_tokens"] == 0 and report["patterns"] == []

    batch = next(iter(trainer.get_train_dataloader()))
    assert "position_ids" in batch and batch["input_ids"].shape[0] == 1
    collated = audit_batch(batch, setup).to_dict()
    assert collated["totals"]["samples"] == len(CONVS)
    # the padding-free collator masks the label at each position id 0: a sample's first token, never trained here
    assert collated["totals"]["findings"]["error"] == 0 and collated["totals"]["differing_tokens"] == 0


@pytest.mark.slow
def test_callback_in_a_real_one_step_training(qwen, tmp_path):
    from inspector.integrations.trl import AuditCallback, AuditFailed, audit_trainer

    tok, _, template = qwen
    callback = AuditCallback(batches=1, fail_on="error", chat_template=template)
    trainer = trainer_for(fresh(tok), CONVS, tmp_path / "ok", callbacks=[callback], assistant_only_loss=True)
    trainer.train()
    assert trainer.state.global_step == 1
    patterns = {p.pattern for p in callback.report.patterns.values()}
    assert "'\\n' after '<|im_end|>'" in patterns and callback.report.samples == 2

    stopper = AuditCallback(batches=1, fail_on="warning", chat_template=template)
    trainer = trainer_for(fresh(tok), CONVS, tmp_path / "stop", callbacks=[stopper], assistant_only_loss=True)
    with pytest.raises(AuditFailed, match="extra-trained-tokens"):
        trainer.train()
    assert trainer.state.global_step == 0
    report = audit_trainer(trainer, chat_template=template)
    assert report.count("warning") > 0 and report.count("error") == 0
