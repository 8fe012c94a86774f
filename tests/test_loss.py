"""The real loss on a tiny random causal LM built here: per-token losses, top predictions, and every reduction's
batch loss against what transformers itself computes for the same labels (to 1e-5).

The model is a 2-layer Llama with the vocabulary of the tokenizer conftest trains; nothing is downloaded. The tests
that need torch skip without it (requirements-model.txt); the one on the real default model is in test_loss_gemma.py.
"""

from __future__ import annotations

import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from inspector.constants import IGNORE_INDEX
from inspector.conversations import Conversation, Message
from inspector.errors import MissingExtraError, ModelError
from inspector.labels.engine import LabelEngine, LabelOptions
from inspector.labels.weights import REDUCTION_NAMES

torch = pytest.importorskip("torch", reason="the real loss needs torch: pip install -r requirements-model.txt")

from inspector.train.loss import (TokenLosses, batch_loss, batch_losses, contributions, micro_batches_of,  # noqa: E402
                            score_sample, score_samples, segment_losses, strategy_losses, token_nll)

CONVERSATIONS = [
    Conversation("c0", [Message("user", "Hello! How can I help you today?"),
                        Message("assistant", "I have chicken, bell peppers, and rice.")]),
    Conversation("c1", [Message("system", "The quick brown fox."),
                        Message("user", "What describes software in the text?"),
                        Message("assistant", "Text: Q"),
                        Message("user", "How can I restore my Unity?"),
                        Message("assistant", "Answer the question about apples and pears.")]),
    Conversation("c2", [Message("user", "Probe question about apples."),
                        Message("assistant", "The lazy dog.")]),
]
TOL = 1e-5


def tiny_model(vocab_size: int, pad_id: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         initializer_range=0.3, pad_token_id=pad_id, tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    return tiny_model(len(tiny_tokenizer), tiny_tokenizer.pad_token_id)


def samples_of(setup, strategy, convs=CONVERSATIONS):
    samples, errors = LabelEngine(setup).build(convs, LabelOptions(strategy=strategy))
    assert errors == []
    return samples


# --- what transformers computes, for reference ----------------------------------------------------------------------

def padded(samples, pad_id):
    n = max(len(s.input_ids) for s in samples)
    ids = torch.tensor([list(s.input_ids) + [pad_id] * (n - len(s.input_ids)) for s in samples])
    mask = torch.tensor([[1] * len(s.input_ids) + [0] * (n - len(s.input_ids)) for s in samples])
    labels = torch.tensor([list(s.labels) + [IGNORE_INDEX] * (n - len(s.labels)) for s in samples])
    return ids, mask, labels


def hf_loss(model, samples, pad_id, **kwargs) -> float:
    """``model(...).loss`` for a right-padded batch of samples (labels -100 on the padding)."""
    ids, mask, labels = padded(samples, pad_id)
    with torch.no_grad():
        return float(model(input_ids=ids, attention_mask=mask, labels=labels, **kwargs).loss)


def trainer_count(samples) -> int:
    """num_items_in_batch as transformers' Trainer counts it for a causal LM: labels[..., 1:] != -100."""
    return sum(sum(1 for x in s.labels[1:] if x != IGNORE_INDEX) for s in samples)


def reference(reduction, model, samples, groups, pad_id) -> float:
    if reduction == "token_mean":
        return hf_loss(model, samples, pad_id)
    if reduction == "sum":
        return hf_loss(model, samples, pad_id, num_items_in_batch=1)
    if reduction == "sample_mean":
        losses = [hf_loss(model, [s], pad_id) for s in samples if trainer_count([s])]
        return sum(losses) / len(losses)
    micro = [[samples[i] for i in g] for g in groups]
    if reduction == "accumulated_token_mean":
        step = trainer_count(samples)
        return sum(hf_loss(model, mb, pad_id, num_items_in_batch=torch.tensor(step)) for mb in micro)
    if reduction == "naive_accumulation":
        losses = [hf_loss(model, mb, pad_id) for mb in micro if trainer_count(mb)]
        return sum(losses) / len(losses)
    raise AssertionError(reduction)


# --- per-token losses ---------------------------------------------------------------------------------------------

def test_token_losses_are_the_shifted_cross_entropy(model, tiny_setup):
    sample = samples_of(tiny_setup, "assistant-only")[1]
    scored = score_sample(model, sample, top_k=3)
    ids = torch.tensor([sample.input_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
    expected = torch.nn.functional.cross_entropy(logits[:-1], ids[0, 1:], reduction="none").numpy()
    assert math.isnan(scored.nll[0])  # nothing predicts position 0
    np.testing.assert_allclose(scored.nll[1:], expected, rtol=0, atol=TOL)
    np.testing.assert_allclose(scored.probs[1:], np.exp(-expected), rtol=1e-5)
    assert scored.cut == 0 and scored.num_tokens == len(sample.input_ids)


def test_top_predictions_are_the_most_likely_next_tokens(model, tiny_setup):
    sample = samples_of(tiny_setup, "assistant-only")[0]
    scored = score_sample(model, sample, top_k=4)
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=torch.tensor([sample.input_ids])).logits[0], -1).numpy()
    assert scored.top_ids.shape == (len(sample.input_ids), 4)
    assert list(scored.top_ids[0]) == [-1] * 4 and np.isnan(scored.top_probs[0]).all()
    for t in range(1, len(sample.input_ids)):
        order = np.argsort(-probs[t - 1])[:4]
        assert list(scored.top_ids[t]) == list(order)
        np.testing.assert_allclose(scored.top_probs[t], probs[t - 1][order], rtol=1e-5)
        assert (np.diff(scored.top_probs[t]) <= 0).all()
        # the actual token is the top prediction exactly when its probability is the highest
        if scored.top_ids[t][0] == sample.input_ids[t]:
            assert scored.probs[t] == pytest.approx(scored.top_probs[t][0], rel=1e-5)
        else:
            assert scored.probs[t] < scored.top_probs[t][0]


def test_masked_tokens_have_a_loss_but_no_weight(model, tiny_setup):
    (scored,) = score_samples(model, samples_of(tiny_setup, "assistant-only")[:1])
    masked = ~scored.is_target
    masked[0] = False
    assert masked.any() and np.isfinite(scored.nll[masked]).all()  # the user turn is scored...
    (c,) = contributions([scored], "token_mean")
    assert (c[masked] == 0).all() and (c[scored.is_target] > 0).all()  # ...and adds nothing to the logged loss
    assert c.sum() == pytest.approx(scored.loss_mean, abs=1e-12)


def test_position_zero_is_never_a_target(model, tiny_setup):
    """all-tokens labels the first token too, but no logit predicts it: the loss and the Trainer skip it."""
    (sample,) = samples_of(tiny_setup, "all-tokens", CONVERSATIONS[:1])
    assert sample.labels[0] != IGNORE_INDEX
    (scored,) = score_samples(model, [sample])
    assert scored.loss_labels[0] == IGNORE_INDEX and scored.loss_labels[1:] == list(sample.labels[1:])
    assert scored.num_targets == len(sample.input_ids) - 1 == trainer_count([sample])


@pytest.mark.parametrize("strategy", ["assistant-only", "all-tokens", "last-turn", "split-turns"])
def test_every_reduction_equals_transformers_loss(model, tiny_setup, tiny_tokenizer, strategy):
    samples = samples_of(tiny_setup, strategy)
    scored = score_samples(model, samples)
    groups = micro_batches_of(len(samples), 2)
    assert len(groups) >= 2  # the accumulation reductions differ from the plain ones here
    losses = batch_losses(scored, groups)
    assert list(losses) == list(REDUCTION_NAMES)
    for reduction in REDUCTION_NAMES:
        expected = reference(reduction, model, samples, groups, tiny_tokenizer.pad_token_id)
        # 1e-5 absolute for the means; the sum (~250 here) to 1e-5 relative: transformers adds in float32
        assert losses[reduction] == pytest.approx(expected, abs=TOL * max(1.0, abs(expected))), reduction
    # and the reductions do differ on this batch: the choice is visible in the logged number
    assert abs(losses["token_mean"] - losses["sample_mean"]) > 1e-4
    assert losses["sum"] == pytest.approx(sum(s.loss_sum for s in scored))


def test_token_mean_with_num_items_in_batch_is_the_same_number(model, tiny_setup, tiny_tokenizer):
    samples = samples_of(tiny_setup, "assistant-only")
    scored = score_samples(model, samples)
    n = torch.tensor(trainer_count(samples))
    assert batch_loss(scored, "token_mean") == pytest.approx(
        hf_loss(model, samples, tiny_tokenizer.pad_token_id, num_items_in_batch=n), abs=TOL)


def test_a_sample_without_targets_is_left_out_of_the_means(model, tiny_setup, tiny_tokenizer):
    convs = CONVERSATIONS[:2] + [Conversation("none", [Message("user", "Hello! How can I help you today?")])]
    samples = samples_of(tiny_setup, "assistant-only", convs)
    scored = score_samples(model, samples)
    assert scored[2].num_targets == 0 and scored[2].loss_mean is None
    losses = batch_losses(scored)
    assert losses["sample_mean"] == pytest.approx((scored[0].loss_mean + scored[1].loss_mean) / 2)
    assert losses["token_mean"] == pytest.approx(hf_loss(model, samples, tiny_tokenizer.pad_token_id), abs=TOL)
    nothing = batch_losses(scored[2:])
    assert nothing["sum"] == 0 and all(nothing[r] is None for r in REDUCTION_NAMES if r != "sum")


def test_long_samples_are_scored_up_to_max_tokens(model, tiny_setup):
    sample = samples_of(tiny_setup, "all-tokens")[1]
    full = score_sample(model, sample)
    short = score_sample(model, sample, max_tokens=10)
    assert short.num_tokens == 10 and short.cut == len(sample.input_ids) - 10
    np.testing.assert_allclose(short.nll[1:], full.nll[1:10], atol=TOL)  # causal: the prefix does not see the rest
    assert short.num_targets == 9
    with pytest.raises(ValueError):
        score_sample(model, sample, max_tokens=1)


def test_identical_texts_share_one_forward_pass(model, tiny_setup, monkeypatch):
    import inspector.train.loss as loss

    calls = []
    real = loss.token_nll
    monkeypatch.setattr(loss, "token_nll", lambda *a, **k: calls.append(1) or real(*a, **k))
    result = strategy_losses(model, tiny_setup, CONVERSATIONS, ("assistant-only", "all-tokens", "last-turn"))
    assert len(calls) == len(CONVERSATIONS)  # three strategies, one rendered text per conversation
    a, b = result["assistant-only"], result["all-tokens"]
    assert a.scored[0].nll is b.scored[0].nll  # the same l_t; only the labels differ
    assert b.num_targets > a.num_targets > result["last-turn"].num_targets
    assert a.losses["token_mean"] != b.losses["token_mean"]


def test_segment_losses_split_the_token_mean(model, tiny_setup):
    (scored,) = score_samples(model, samples_of(tiny_setup, "all-tokens", CONVERSATIONS[1:2]))
    parts = segment_losses(scored)
    assert {"user", "assistant", "system", "template"} <= set(parts)
    assert sum(p["targets"] for p in parts.values()) == scored.num_targets
    total = sum(p["target_sum"] for p in parts.values())
    assert total / scored.num_targets == pytest.approx(batch_loss([scored], "token_mean"))


def test_token_ids_outside_the_vocabulary_raise_model_error(model):
    with pytest.raises(ModelError, match="outside the model's vocabulary"):
        token_nll(model, [1, 2, model.config.vocab_size + 5])


def test_weights_match_fractions_of_the_targets(model, tiny_setup):
    from inspector.train.loss import loss_weights

    scored = score_samples(model, samples_of(tiny_setup, "assistant-only"))
    w = loss_weights(scored, "token_mean")
    n = sum(s.num_targets for s in scored)
    assert {x for row in w for x in row} == {Fraction(0), Fraction(1, n)}


# --- without torch ------------------------------------------------------------------------------------------------

NO_TORCH = "import sys; sys.modules['torch'] = None\n"


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH + code], capture_output=True, text=True, timeout=120)


def test_the_core_imports_without_torch_and_names_the_extra():
    proc = run_python(
        "import inspector.train.loss, inspector.views.loss, inspector.cli\n"
        "from inspector.train.model import has_model_extra, load_model\n"
        "from inspector.errors import MissingExtraError\n"
        "assert not has_model_extra()\n"
        "try:\n    load_model()\nexcept MissingExtraError as e:\n    print('MISSING', e.extra, e)\n")
    assert proc.returncode == 0, proc.stderr
    assert "MISSING model" in proc.stdout and "pip install -r requirements-model.txt" in proc.stdout


def test_require_torch_raises_the_named_exception(no_torch):
    from inspector.train.model import require_torch

    with pytest.raises(MissingExtraError) as exc:
        require_torch()
    assert exc.value.extra == "model" and "requirements-model.txt" in str(exc.value)


def test_token_losses_is_plain_data(model, tiny_setup):
    scored = score_sample(model, samples_of(tiny_setup, "assistant-only")[0])
    assert isinstance(scored, TokenLosses) and scored.nll.dtype == np.float64 and scored.top_ids.dtype == np.int64


# --- tables and figures (loss_view) -------------------------------------------------------------------------------

def test_token_loss_table_has_one_row_per_token_with_state_and_top(model, tiny_setup, tiny_tokenizer):
    from inspector.views.loss import token_loss_table
    from inspector.views.viz import visible_text

    scored = score_samples(model, samples_of(tiny_setup, "assistant-only"), top_k=3)
    contrib = contributions(scored, "token_mean")
    table = token_loss_table(scored[0], tiny_tokenizer, contrib[0])
    s = scored[0]
    assert len(table) == s.num_tokens and list(table["token_id"]) == s.input_ids
    assert table.loc[0, "state"] == "unpredicted" and table.loc[0, "top"] == ""
    states = table["state"].tolist()[1:]
    assert states == ["trained" if x else "masked" for x in s.is_target[1:]]
    np.testing.assert_allclose(table["loss"][1:], s.nll[1:])
    assert table["contribution"][table["state"] != "trained"].eq(0).all()
    assert sum(c.sum() for c in contrib) == pytest.approx(batch_loss(scored, "token_mean"))
    t = 5
    first = visible_text(tiny_tokenizer.decode([int(s.top_ids[t][0])]))
    assert table.loc[t, "top"].startswith(f"{first} {s.top_probs[t][0]:.2f} · ") and table.loc[t, "top"].count(" · ") == 2


def test_token_loss_figure_colors_trained_and_masked_cells_apart(model, tiny_setup, tiny_tokenizer):
    from inspector.views.loss import token_loss_figure, token_loss_table

    (scored,) = score_samples(model, samples_of(tiny_setup, "assistant-only")[:1])
    table = token_loss_table(scored, tiny_tokenizer)
    fig = token_loss_figure(table, columns=8)
    traces = {tr.name: tr for tr in fig.data if tr.type == "heatmap"}
    assert set(traces) == {"trained", "masked", "unpredicted"}
    flat = {name: [v for row in tr.z for v in row] for name, tr in traces.items()}
    for name in ("trained", "masked"):
        where = [k for k, v in enumerate(flat[name]) if v is not None]
        assert where == [k for k, st in enumerate(table["state"]) if st == name]
        assert [flat[name][k] for k in where] == pytest.approx(table["loss"][where].tolist())
    hover = [h for row in traces["trained"].customdata for h in row if h]
    assert len(hover) == len(table) and "top:" in hover[5] and "loss" in hover[5]
    text = next(tr for tr in fig.data if tr.type == "scatter")
    assert len(text.text) == len(table)


def test_reduction_and_sample_tables_carry_the_core_numbers(model, tiny_setup):
    from inspector.views.loss import reduction_figure, reduction_table, sample_loss_table

    scored = score_samples(model, samples_of(tiny_setup, "assistant-only"))
    groups = micro_batches_of(len(scored), 2)
    table = reduction_table(scored, groups)
    losses = batch_losses(scored, groups)
    assert table["reduction"].tolist() == list(REDUCTION_NAMES)
    assert table["loss"].tolist() == pytest.approx([losses[r] for r in REDUCTION_NAMES])
    assert table["trainer"].str.len().min() > 20
    per_sample = sample_loss_table(scored)
    assert per_sample["targets"].tolist() == [s.num_targets for s in scored]
    assert per_sample["loss_mean"].tolist() == pytest.approx([s.loss_mean for s in scored])
    fig = reduction_figure(table)
    assert [list(tr.x) for tr in fig.data] == [list(REDUCTION_NAMES[:4]), ["sum"]]


def test_strategy_table_and_figure(model, tiny_setup):
    from inspector.views.loss import strategy_figure, strategy_table

    results = strategy_losses(model, tiny_setup, CONVERSATIONS, ("assistant-only", "all-tokens"), micro_batch_size=2)
    table = strategy_table(results)
    assert len(table) == 2 * len(REDUCTION_NAMES)
    row = table[(table.strategy == "all-tokens") & (table.reduction == "token_mean")].iloc[0]
    assert row["loss"] == pytest.approx(results["all-tokens"].losses["token_mean"])
    assert row["targets"] == results["all-tokens"].num_targets
    fig = strategy_figure(table)
    assert [tr.name for tr in fig.data] == ["token_mean", "sample_mean"]


def test_worked_example_numbers_come_from_the_core(model, tiny_setup, tiny_tokenizer):
    from inspector.views.loss import worked_example, worked_example_markdown

    ex = worked_example(model, tiny_setup, CONVERSATIONS[1], model_name="tiny")
    a, b = ex.results["assistant-only"], ex.results["all-tokens"]
    assert a.scored[0].nll is b.scored[0].nll  # one forward pass
    assert sum(ex.counted["all-tokens"].values()) == b.num_targets == ex.num_tokens - 1
    assert ex.counted["assistant-only"].get("user", 0) == 0 and ex.counted["assistant-only"]["assistant"] > 0
    assert ex.closing["targets"] == 2  # the two <|im_end|> closing the answers
    md = worked_example_markdown(ex, tiny_tokenizer)
    assert f"**{a.losses['token_mean']:.3f}**" in md and f"**{b.losses['token_mean']:.3f}**" in md
    assert "`<|im_end|>`" in md and "Why they differ" in md


# --- loading a model folder, the cache, and the CLI -----------------------------------------------------------------

@pytest.fixture(scope="module")
def model_dir(model, tiny_tokenizer, tmp_path_factory) -> str:
    """The tiny model and its tokenizer (with its ChatML template) saved as a local model folder."""
    path = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return str(path)


def write_data(path) -> str:
    import json

    rows = [{"id": c.id, "messages": [{"role": m.role, "content": m.content} for m in c.messages]}
            for c in CONVERSATIONS]
    lines = [json.dumps(r) for r in rows] + ['{"id": "bad", "messages": []}']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_a_model_folder_loads_once_per_process(model_dir):
    from inspector.train.model import clear_model_cache, load_model

    clear_model_cache()
    first = load_model(model_dir)
    assert load_model(model_dir) is first
    assert first.architecture == "LlamaForCausalLM" and first.template_source == "tokenizer"
    assert first.vocab_size == first.model.config.vocab_size and first.num_parameters > 0
    assert not first.model.training
    setup = first.chat_setup()
    assert setup.tokenizer is first.tokenizer and "<|im_start|>" in setup.template


def test_cli_loss_json_equals_transformers(model, model_dir, tiny_setup, tiny_tokenizer, tmp_path, capsys):
    import json

    from inspector import cli
    from inspector.cli.main import main as cli_main

    data = write_data(tmp_path / "d.jsonl")
    code = cli_main(["loss", data, "--model", model_dir, "--json", "--micro-batch-size", "2", "--per-token"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    samples = samples_of(tiny_setup, "assistant-only")
    assert [s["id"] for s in out["samples"]] == [s.id for s in samples]
    assert [r["id"] for r in out["rejected"]] == ["bad"] and out["rejected"][0]["reasons"]
    assert out["batch"]["micro_batches"] == [[0, 1], [2]]
    pad = tiny_tokenizer.pad_token_id
    for reduction in REDUCTION_NAMES:
        expected = reference(reduction, model, samples, out["batch"]["micro_batches"], pad)
        assert out["batch"]["losses"][reduction] == pytest.approx(expected, abs=TOL * max(1.0, abs(expected)))
    first = out["samples"][0]
    assert first["labels"] == list(samples[0].labels) and first["token_losses"][0] is None
    assert first["loss_mean"] == pytest.approx(hf_loss(model, samples[:1], pad), abs=TOL)


def test_cli_loss_text_lists_samples_and_reductions(model_dir, tmp_path, capsys):
    from inspector import cli
    from inspector.cli.main import main as cli_main

    data = write_data(tmp_path / "d.jsonl")
    assert cli_main(["loss", data, "--model", model_dir, "--strategy", "all-tokens", "--score-tokens", "12"]) == 0
    out = capsys.readouterr().out
    assert "strategy all-tokens" in out and "rejected bad:" in out and "3 sample(s) cut" in out
    for c in CONVERSATIONS:
        assert c.id in out
    for reduction in REDUCTION_NAMES:
        assert f"\n{reduction} " in out


def test_cli_loss_exit_2_with_a_message(model_dir, tmp_path, capsys, monkeypatch):
    from inspector import cli
    from inspector.cli.main import main as cli_main

    data = write_data(tmp_path / "d.jsonl")
    assert cli_main(["loss", data, "--model", str(tmp_path / "no-such-model")]) == 2
    assert "Error: Model folder not found" in capsys.readouterr().err
    assert cli_main(["loss", data, "--model", model_dir, "--score-tokens", "1"]) == 2  # usage
    assert "2 or more" in capsys.readouterr().err
    assert cli_main(["loss", data, "--model", model_dir, "--chat-template", str(tmp_path / "x.jinja")]) == 2
    assert "Chat template file not found" in capsys.readouterr().err

    import inspector.train.model as model_module

    def missing():
        raise MissingExtraError("needs the model extra: pip install -r requirements-model.txt", extra="model")

    monkeypatch.setattr(model_module, "require_torch", missing)
    assert cli_main(["loss", data, "--model", str(tmp_path / "other")]) == 2
    assert "pip install -r requirements-model.txt" in capsys.readouterr().err


def test_cli_loss_without_torch_exits_2_naming_the_extra(tmp_path):
    data = write_data(tmp_path / "d.jsonl")
    proc = run_python(f"from inspector.cli.main import main; raise SystemExit(main(['loss', {data!r}]))")
    assert proc.returncode == 2, proc.stderr
    assert "pip install -r requirements-model.txt" in proc.stderr and "Traceback" not in proc.stderr


def test_scoring_never_exceeds_the_model_context(model, tiny_setup):
    from inspector.train.loss import context_length

    sample = samples_of(tiny_setup, "all-tokens")[1]
    assert context_length(model) == 256
    short = tiny_model(model.config.vocab_size, model.config.pad_token_id)
    short.config.max_position_embeddings = 16
    scored = score_sample(short, sample, max_tokens=1024)
    assert scored.num_tokens == 16 and scored.cut == len(sample.input_ids) - 16
