"""Packing: TRL's strategies on worked examples and against ``trl.data_utils.pack_dataset`` itself, the collator
against TRL's ``DataCollatorForLanguageModeling``, the attention facts against a tiny Llama run on CPU, the packing
checks both ways, and the invariants of the issue on the demo and the corpus data:

* every sample token appears in the packed output exactly once (bfd_split, wrapped), or its loss is reported by
  ``packing-truncates`` (bfd);
* position_ids restart at 0 at every seq_lengths boundary;
* the labels the loss reads equal the unpacked labels token for token, except where ``packing-label-masked`` names
  the position.
"""

from __future__ import annotations

import json
import random
from fractions import Fraction
from pathlib import Path

import pytest

from inspector.checks import CHECKS, PACKING_CODES
from inspector.constants import IGNORE_INDEX
from inspector.labels.engine import LabelEngine, LabelOptions
from inspector.data.loaders import load_data
from inspector.train.packing import (ATTENTION_FACTS, PACKING_STRATEGIES, PADDING, PackInput, PackOptions, attention_support,
                               check_packing, pack, pack_lengths, packing_findings, position_ids_from_seq_lengths,
                               weights_before_after)
from inspector.labels.weights import REDUCTION_NAMES, layout_weights, loss_targets

Q = IGNORE_INDEX
ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "inspector" / "demo" / "demo.jsonl"


def inputs(*lengths, labeled_from=0):
    """Samples whose token ids encode (sample, position) as 1000 * (s + 1) + p; labels from ``labeled_from`` on."""
    return [PackInput(f"s{s}", [1000 * (s + 1) + p for p in range(n)],
                      [1000 * (s + 1) + p if p >= labeled_from else Q for p in range(n)])
            for s, n in enumerate(lengths)]


def codes(findings):
    return [f.code for f in findings]


# --- TRL's worked examples -----------------------------------------------------------------------------------------

def test_trl_docstring_example_every_strategy():
    # pack_dataset's docstring: input_ids [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10], [11]], seq_length 4
    assert pack_lengths([5, 2, 3, 1], 4, "bfd") == [[(0, 0, 4)], [(2, 0, 3), (3, 0, 1)], [(1, 0, 2)]]
    assert pack_lengths([5, 2, 3, 1], 4, "bfd_split") == [[(0, 0, 4)], [(2, 0, 3), (0, 4, 5)], [(1, 0, 2), (3, 0, 1)]]
    assert pack_lengths([5, 2, 3, 1], 4, "wrapped") == [[(0, 0, 4)], [(0, 4, 5), (1, 0, 2), (2, 0, 1)],
                                                        [(2, 1, 3), (3, 0, 1)]]


def test_trl_docstring_example_ids_and_seq_lengths():
    samples = [PackInput(str(i), ids, ids) for i, ids in enumerate([[1, 2, 3, 4, 5], [6, 7], [8, 9, 10], [11]])]
    bfd = pack(samples, PackOptions(4, "bfd"))
    assert [s.input_ids for s in bfd.sequences] == [[1, 2, 3, 4], [8, 9, 10, 11], [6, 7]]
    assert [s.seq_lengths for s in bfd.sequences] == [[4], [3, 1], [2]]
    split = pack(samples, PackOptions(4, "bfd_split"))
    assert [s.input_ids for s in split.sequences] == [[1, 2, 3, 4], [8, 9, 10, 5], [6, 7, 11]]
    assert [s.seq_lengths for s in split.sequences] == [[4], [3, 1], [2, 1]]
    assert [s.position_ids for s in split.sequences] == [[0, 1, 2, 3], [0, 1, 2, 0], [0, 1, 0]]
    wrapped = pack(samples, PackOptions(4, "wrapped"))
    assert [s.input_ids for s in wrapped.sequences] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11]]
    assert [s.seq_lengths for s in wrapped.sequences] == [None, None, None]
    assert [s.position_ids for s in wrapped.sequences] == [[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2]]


def test_best_fit_takes_the_tightest_space_and_ties_keep_input_order():
    # longest first: 6 opens A (4 free), 5 opens B (5 free), 4 -> A (the tightest fit), the first 3 (sample 0, input
    # order among equals) -> B (2 left), the second 3 fits nowhere and opens C
    assert pack_lengths([3, 6, 4, 5, 3], 10, "bfd") == [[(1, 0, 6), (2, 0, 4)], [(3, 0, 5), (0, 0, 3)], [(4, 0, 3)]]
    # an empty sample is dropped
    assert pack_lengths([0, 2, 2], 3, "bfd") == [[(1, 0, 2)], [(2, 0, 2)]]


def test_map_batches_are_packed_on_their_own():
    samples = inputs(2, 2, 2, 2)
    one = pack(samples, PackOptions(4, map_batch_size=None))
    assert [[p.sample for p in s.pieces] for s in one.sequences] == [[0, 1], [2, 3]]
    three = pack(samples, PackOptions(4, map_batch_size=3))
    assert [[p.sample for p in s.pieces] for s in three.sequences] == [[0, 1], [2], [3]]


def test_position_ids_from_seq_lengths():
    assert position_ids_from_seq_lengths([3, 1, 2]) == [0, 1, 2, 0, 0, 1]
    assert position_ids_from_seq_lengths([]) == []


def test_options_are_validated():
    with pytest.raises(ValueError, match="unknown packing strategy 'greedy'"):
        PackOptions(8, "greedy")
    with pytest.raises(ValueError, match="max_length must be a whole number above 0"):
        PackOptions(0)
    with pytest.raises(ValueError, match="batch_size"):
        PackOptions(8, batch_size=0)
    with pytest.raises(ValueError, match="3 input_ids but 2 labels"):
        pack([{"input_ids": [1, 2, 3], "labels": [1, 2]}], PackOptions(8))


# --- against TRL itself ----------------------------------------------------------------------------------------------

def _trl_pack(lengths, max_length, strategy, map_batch_size):
    data_utils = pytest.importorskip("trl.data_utils", reason="trl is not installed (pip install -r "
                                                                 "requirements-trl.txt)")
    from datasets import Dataset

    ids = [[1000 * (s + 1) + p for p in range(n)] for s, n in enumerate(lengths)]
    labels = [[x if x % 3 else Q for x in row] for row in ids]
    ds = Dataset.from_dict({"input_ids": ids, "labels": labels})
    return data_utils.pack_dataset(ds, max_length, strategy, map_kwargs={"batch_size": map_batch_size})


RANDOM_CASES = [(seed, strategy) for seed in range(8) for strategy in PACKING_STRATEGIES]


@pytest.mark.parametrize("seed,strategy", RANDOM_CASES)
def test_same_result_as_trl_pack_dataset(seed, strategy):
    rng = random.Random(seed)
    max_length = rng.choice([4, 7, 16, 32])
    lengths = [rng.choice([0, 1, 2, 3, max_length - 1, max_length, max_length + 1, 2 * max_length + 3,
                           rng.randint(1, 3 * max_length)]) for _ in range(rng.randint(1, 40))]
    map_batch_size = rng.choice([3, 10, 1000])
    theirs = _trl_pack(lengths, max_length, strategy, map_batch_size)
    samples = [PackInput(str(s), [1000 * (s + 1) + p for p in range(n)],
                         [1000 * (s + 1) + p if (1000 * (s + 1) + p) % 3 else Q for p in range(n)])
               for s, n in enumerate(lengths)]
    ours = pack(samples, PackOptions(max_length, strategy, map_batch_size=map_batch_size))
    assert [s.input_ids for s in ours.sequences] == theirs["input_ids"]
    assert [s.labels for s in ours.sequences] == theirs["labels"]
    if strategy == "wrapped":
        assert "seq_lengths" not in theirs.column_names
    else:
        assert [s.seq_lengths for s in ours.sequences] == theirs["seq_lengths"]


def test_collator_matches_trl():
    pytest.importorskip("trl", reason="trl is not installed (pip install -r requirements-trl.txt)")
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    samples = inputs(5, 3, 6, 2, 7, labeled_from=0)
    for padding_free in (False, True):
        for multiple in (None, 4):
            opts = PackOptions(8, "bfd", padding_free=padding_free, batch_size=2, pad_to_multiple_of=multiple,
                               pad_token_id=7)
            packing = pack(samples, opts)
            collator = DataCollatorForLanguageModeling(pad_token_id=7, padding_free=padding_free,
                                                       pad_to_multiple_of=multiple)
            rows = iter(packing.rows)
            for members in packing.batches:
                batch = collator([{"input_ids": packing.sequences[i].input_ids, "labels": packing.sequences[i].labels,
                                   "seq_lengths": packing.sequences[i].seq_lengths} for i in members])
                for b in range(batch["input_ids"].shape[0]):
                    row = next(rows)
                    assert row.input_ids == batch["input_ids"][b].tolist()
                    assert row.labels == batch["labels"][b].tolist()
                    if padding_free:
                        assert row.position_ids == batch["position_ids"][b].tolist()
                        assert row.attention_mask is None and "attention_mask" not in batch
                    else:
                        assert row.attention_mask == batch["attention_mask"][b].tolist()
            assert next(rows, None) is None


# --- the attention facts, on a tiny Llama (sdpa and eager; flash needs a GPU) ----------------------------------------

@pytest.fixture(scope="module")
def tiny_llama():
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -r requirements-trl.txt)")
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    models = {}
    for impl in ("sdpa", "eager"):  # one config each: a model keeps the config object it was given
        config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
        config._attn_implementation = impl
        model = LlamaForCausalLM(config).eval()
        if models:
            model.load_state_dict(next(iter(models.values())).state_dict())
        models[impl] = model
    assert {k: m.config._attn_implementation for k, m in models.items()} == {"sdpa": "sdpa", "eager": "eager"}
    return torch, models


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_padding_free_position_ids_keep_samples_apart_padded_rows_do_not(tiny_llama, impl):
    torch, models = tiny_llama
    model = models[impl]
    a, b = [5, 9, 12, 3], [7, 8, 2]
    with torch.no_grad():
        alone = model(torch.tensor([b]), use_cache=False).logits[0]
        packing = pack([PackInput("a", a, a), PackInput("b", b, b)], PackOptions(16, padding_free=True))
        row = packing.rows[0]
        free = model(torch.tensor([row.input_ids]), position_ids=torch.tensor([row.position_ids]),
                     use_cache=False).logits[0]
        padded = pack([PackInput("a", a, a), PackInput("b", b, b)], PackOptions(16)).rows[0]
        mixed = model(torch.tensor([padded.input_ids]), attention_mask=torch.tensor([padded.attention_mask]),
                      use_cache=False).logits[0]
        # an attention_mask with restarting position_ids (TRL's return_position_ids): positions right, mask not
        ones = torch.ones(1, len(row.input_ids), dtype=torch.long)
        masked = model(torch.tensor([row.input_ids]), attention_mask=ones,
                       position_ids=torch.tensor([row.position_ids]), use_cache=False).logits[0]
    assert torch.allclose(free[len(a):], alone, atol=1e-5)  # b sees only b
    assert not torch.allclose(mixed[len(a):], alone, atol=1e-3)  # b attends to a
    assert not torch.allclose(masked[len(a):], alone, atol=1e-3)  # still: the mask is causal over the whole row
    facts = {(f.layout, f.implementations): f.apart for f in ATTENTION_FACTS}
    assert facts[("padding_free", "sdpa, eager, flex_attention")] is True
    assert facts[("padded", "sdpa, eager, flex_attention")] is False


def test_attention_support_per_layout():
    assert {r["apart"] for r in attention_support(PackOptions(8, "bfd", padding_free=True))} == {"yes", "depends"}
    assert {r["apart"] for r in attention_support(PackOptions(8, "bfd"))} == {"no"}
    wrapped = attention_support(PackOptions(8, "wrapped", padding_free=True))
    assert {r["apart"] for r in wrapped} == {"no", "depends"}
    assert all("wrapped writes no seq_lengths" in r["how"] for r in wrapped if r["apart"] == "no")
    assert all(r["source"].startswith("src/transformers/") for r in wrapped)


# --- the packing checks ----------------------------------------------------------------------------------------------

def test_cross_sample_prediction_padded_not_padding_free():
    samples = inputs(3, 2)  # every token labeled, as all-tokens does
    padded = check_packing(pack(samples, PackOptions(8)))
    (pred,) = [f for f in padded if f.code == "cross-sample-prediction"]
    assert (pred.sample_id, pred.positions) == ("s1", [0])
    assert pred.details["where"] == [{"previous_sample": "s0", "sequence": 0, "offset": 3, "token_id": 2000}]
    assert "continue s0" in pred.message
    free = check_packing(pack(samples, PackOptions(8, padding_free=True)))
    assert "cross-sample-prediction" not in codes(free)
    masked = [f for f in free if f.code == "packing-label-masked"]
    assert [(f.sample_id, f.positions) for f in masked] == [("s0", [0]), ("s1", [0])]


def test_cross_sample_prediction_quiet_when_sample_starts_are_masked():
    assert "cross-sample-prediction" not in codes(check_packing(pack(inputs(3, 2, labeled_from=1), PackOptions(8))))


def test_wrapped_padding_free_still_predicts_and_attends_across_samples():
    found = check_packing(pack(inputs(3, 2), PackOptions(8, "wrapped", padding_free=True)))
    assert ("cross-sample-prediction", "s1") in [(f.code, f.sample_id) for f in found]
    assert ("cross-sample-attention", "s1") in [(f.code, f.sample_id) for f in found]


def test_cross_sample_attention_names_the_earlier_samples():
    found = check_packing(pack(inputs(3, 2, 2, labeled_from=1), PackOptions(8)))
    att = [f for f in found if f.code == "cross-sample-attention"]
    assert [(f.sample_id, f.details["other_samples"]) for f in att] == [("s1", ["s0"]), ("s2", ["s0", "s1"])]
    free = check_packing(pack(inputs(3, 2, 2, labeled_from=1), PackOptions(8, padding_free=True)))
    assert "cross-sample-attention" not in codes(free)


def test_truncation_and_split_findings():
    samples = inputs(10, 2, labeled_from=6)
    bfd = check_packing(pack(samples, PackOptions(4)))
    (cut,) = [f for f in bfd if f.code == "packing-truncates"]
    assert cut.sample_id == "s0" and cut.positions == [4]
    assert cut.details == {"tokens_lost": 6, "labeled_lost": 4, "kept": 4}
    split = pack(samples, PackOptions(4, "bfd_split", padding_free=True))
    found = check_packing(split)
    (sp,) = [f for f in found if f.code == "packing-splits-sample"]
    assert sp.positions == [4, 8] and sp.details["labeled_without_context"] == 4
    (masked,) = [f for f in found if f.code == "packing-label-masked" and f.sample_id == "s0"]
    assert masked.positions == [8]  # position ids 0 at tokens 0, 4 and 8; only 8 is labeled
    assert "packing-truncates" not in codes(found)


def test_padding_share_and_its_finding():
    samples = inputs(8, 1, 8, 1)
    packing = pack(samples, PackOptions(8, map_batch_size=None))
    # bfd: [8], [8], [1, 1] -> one micro-batch padded to 8: 6 padding of 24 slots
    assert packing.stats.padding == 6 and packing.stats.row_tokens == 24
    assert "packing-padding" in codes(check_packing(packing))
    free = pack(samples, PackOptions(8, padding_free=True))
    assert free.stats.padding == 0 and "packing-padding" not in codes(check_packing(free))
    rounded = pack(samples, PackOptions(8, padding_free=True, pad_to_multiple_of=7))
    assert rounded.stats.padding == 3 and rounded.rows[0].position_ids[-3:] == [0, 0, 0]


def test_attention_explanation_only_when_samples_share_a_row():
    assert "packing-attention" in codes(check_packing(pack(inputs(3, 2), PackOptions(8))))
    assert "packing-attention" not in codes(check_packing(pack(inputs(3, 2), PackOptions(3))))


def test_every_packing_code_is_registered_and_fires_somewhere():
    assert PACKING_CODES <= set(CHECKS)
    fired = set()
    for opts in (PackOptions(6), PackOptions(6, "bfd_split", padding_free=True), PackOptions(6, "wrapped")):
        fired |= set(codes(check_packing(pack(inputs(9, 2, 1, 3), opts))))
    assert fired == PACKING_CODES


def test_findings_split_per_sample_and_dataset():
    packing = pack(inputs(10, 2, labeled_from=1), PackOptions(4))
    per_sample, dataset = packing_findings(packing)
    assert len(per_sample) == 2 and [f.code for f in per_sample[0]] == ["packing-truncates"]
    assert all(f.sample_id is None for f in dataset)


# --- weights --------------------------------------------------------------------------------------------------------

def test_loss_targets_drop_the_first_label():
    assert loss_targets([5, Q, 7]) == [Q, Q, 7]
    assert loss_targets([]) == []


def test_layout_weights_errors():
    with pytest.raises(ValueError, match="sits in two places"):
        layout_weights([2], [[(0, 0), (0, 1)], [(0, 1)]], [[Q, 1], [1]], "sum")
    with pytest.raises(ValueError, match="row 0: 2 slots for 1 labels"):
        layout_weights([2], [[(0, 0), (0, 1)]], [[1]], "sum")
    with pytest.raises(ValueError, match="not a token of the samples"):
        layout_weights([2], [[(0, 5)]], [[1]], "sum")


@pytest.mark.parametrize("reduction", [r for r in REDUCTION_NAMES if r != "sum"])
@pytest.mark.parametrize("strategy", PACKING_STRATEGIES)
def test_packed_weights_sum_to_one(reduction, strategy):
    packing = pack(inputs(9, 2, 5, 3, labeled_from=1), PackOptions(6, strategy, batch_size=2))
    w = weights_before_after(packing, reduction)
    assert sum(a for _, a in w.sample_totals()) == 1
    if strategy != "bfd":
        assert all(x is not None for row in w.after for x in row)  # nothing lost


def test_packed_weights_of_lost_tokens_are_none():
    w = weights_before_after(pack(inputs(9, 2, labeled_from=1), PackOptions(6)), "sum")
    assert w.after[0][6:] == [None, None, None] and w.before[0][6:] == [None, None, None]


# --- the invariants, on the demo and on the corpus ---------------------------------------------------------------

def check_invariants(packing):
    """The issue's 'done when', on one packing."""
    opts, samples = packing.options, packing.samples
    findings = check_packing(packing)
    by = {(f.code, f.sample_id): f for f in findings}
    seen = [[0] * len(x.input_ids) for x in samples]
    for seq in packing.sequences:
        assert len(seq.input_ids) <= opts.max_length
        # position_ids restart at every seq_lengths boundary
        bounds = [0]
        for n in (seq.seq_lengths or [seq.length]):
            bounds.append(bounds[-1] + n)
        assert bounds[-1] == seq.length
        for a, b in zip(bounds, bounds[1:]):
            assert seq.position_ids[a:b] == list(range(b - a))
        for t, (s, p) in enumerate(zip(seq.token_samples, seq.token_positions)):
            seen[s][p] += 1
            assert seq.input_ids[t] == samples[s].input_ids[p] and seq.labels[t] == samples[s].labels[p]
    for s, x in enumerate(samples):
        lost = [p for p, k in enumerate(seen[s]) if k == 0]
        assert all(k <= 1 for k in seen[s])
        if opts.strategy == "bfd" and lost:
            f = by[("packing-truncates", x.id)]
            assert f.details["tokens_lost"] == len(lost) and lost == list(range(f.details["kept"], len(seen[s])))
        else:
            assert not lost or not x.input_ids, (opts.strategy, x.id)
    # the labels the loss reads equal the unpacked ones, except where packing-label-masked names the position
    for row in packing.rows:
        for t, (s, p) in enumerate(zip(row.token_samples, row.token_positions)):
            if s == PADDING:
                assert row.labels[t] == Q
                continue
            if row.labels[t] != samples[s].labels[p]:
                f = by[("packing-label-masked", samples[s].id)]
                assert p in f.positions and row.labels[t] == Q and row.position_ids[t] == 0
    return findings


def _samples(setup, path, strategy, limit=None):
    data = load_data(path)
    convs = data.conversations[:limit] if limit else data.conversations
    samples, _ = LabelEngine(setup).build(convs, LabelOptions(strategy=strategy))
    return samples


@pytest.mark.parametrize("strategy", ["assistant-only", "all-tokens", "split-turns"])
def test_invariants_on_the_demo(deepseek_setup, strategy):
    samples = _samples(deepseek_setup, DEMO, strategy)
    for packing_strategy in PACKING_STRATEGIES:
        for padding_free in (False, True):
            for max_length in (256, 1024):
                packing = pack(samples, PackOptions(max_length, packing_strategy, padding_free=padding_free))
                found = check_invariants(packing)
                if packing_strategy == "bfd" and max_length == 256:
                    assert "packing-truncates" in codes(found)
                if strategy == "all-tokens" and not padding_free and max_length == 1024:
                    assert "cross-sample-prediction" in codes(found)


CORPUS_DATA = [("qwen2", "glaive_toolcall_en_demo.json"), ("phi-3", "alpaca_en_demo.json"),
               ("qwen2", "v1_sft_demo.jsonl"), ("qwen2", "reason_tool_use_demo_50.jsonl")]


@pytest.mark.parametrize("tokenizer,name", CORPUS_DATA)
def test_invariants_on_the_corpus(corpus, tokenizer, name):
    from inspector.template.tokenizer import load_setup

    setup = load_setup(str(corpus / "tokenizers" / tokenizer))
    samples = _samples(setup, corpus / "data" / name, "assistant-only")
    assert samples
    for packing_strategy in PACKING_STRATEGIES:
        for padding_free in (False, True):
            packing = pack(samples, PackOptions(512, packing_strategy, padding_free=padding_free, map_batch_size=200))
            check_invariants(packing)


def test_packed_records_are_json_rows():
    packing = pack(inputs(3, 2, 9), PackOptions(4, "wrapped"))
    rows = [json.loads(json.dumps(r)) for r in packing.records()]
    assert rows[0] == {"input_ids": [1000, 1001, 1002, 2000], "labels": [1000, 1001, 1002, 2000],
                       "position_ids": [0, 1, 2, 3], "seq_lengths": [4], "sample_ids": ["s0", "s1"],
                       "sample_lengths": [3, 1]}


def test_worked_example_in_the_docs_is_what_the_core_computes():
    from inspector.views.packing import worked_example, worked_example_markdown

    doc = (ROOT / "docs" / "packing.md").read_text(encoding="utf-8")
    assert worked_example_markdown() in doc
    ex = worked_example()
    w = ex["weights"]["sample_mean"]
    assert (w.before[0][2], w.after[0][2], w.before[2][2], w.after[2][2]) == (Fraction(1, 3), Fraction(1, 8),
                                                                              Fraction(1, 18), Fraction(1, 8))
    assert w.sample_totals()[2] == (Fraction(1, 3), Fraction(3, 4))
    seq = ex["packing"].sequences[0]
    assert [ex["samples"][p.sample].id for p in seq.pieces] == ["long", "short-1", "short-2"]
    assert seq.position_ids == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 0, 1, 2]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "from 1/3 to 1/8" in readme and "from 1/18 to 1/8" in readme
