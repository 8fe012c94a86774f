from fractions import Fraction as F

import pytest

from inspector.constants import IGNORE_INDEX
from inspector.labels.weights import (
    MEAN_REDUCTIONS,
    REDUCTION_LABELS,
    REDUCTION_NAMES,
    REDUCTIONS,
    aggregate,
    format_fraction,
    log_prob_formula,
    log_prob_terms,
    organize_dialogues,
    sample_totals,
    session_vs_split_example,
    token_weights,
)

X = IGNORE_INDEX

# Two samples with 1 and 3 labeled tokens, with masked prompt tokens in front.
UNEQUAL = [[X, 7], [X, X, 3, 4, 5]]


def total(weights):
    return sum(sample_totals(weights), F(0))


# --- reductions table ---------------------------------------------------------------------------------------------


def test_reductions_table():
    assert REDUCTION_NAMES[:5] == (
        "sample_mean",
        "token_mean",
        "accumulated_token_mean",
        "naive_accumulation",
        "sum",
    )
    assert all(isinstance(label, str) and label for _, label in REDUCTIONS)
    assert set(REDUCTION_LABELS) == set(REDUCTION_NAMES)
    assert "sum" not in MEAN_REDUCTIONS


# --- seed 000: session-level vs split-turn --------------------------------------------------------------------------


def test_seed_session_level():
    ex = session_vs_split_example()
    assert ex.session.by_answer == {"A": F(2, 3), "B": F(1, 6), "C": F(1, 6)}
    assert len(ex.session.tokens) == 2


def test_seed_split_turn():
    ex = session_vs_split_example()
    assert ex.split.by_answer == {"A": F(17, 24), "B": F(5, 24), "C": F(1, 12)}
    # dialogue 1 -> [A]; dialogue 2 -> [A], [A, B], [A, B, C] with earlier answers labeled
    answers = [[t for t, r in zip(tok, rol) if r == "assistant"] for tok, rol in zip(ex.split.tokens, ex.split.roles)]
    assert answers == [["A"], ["A"], ["A", "B"], ["A", "B", "C"]]
    assert all(label != X for labels, roles in zip(ex.split.labels, ex.split.roles)
               for label, role in zip(labels, roles) if role == "assistant")


def test_seed_weights_sum_to_one_and_questions_weigh_zero():
    ex = session_vs_split_example()
    for batch in (ex.session, ex.split):
        assert total(batch.weights) == 1
        for weights, roles, labels in zip(batch.weights, batch.roles, batch.labels):
            for w, role, label in zip(weights, roles, labels):
                if role == "user":
                    assert label == X and w == 0


def test_organize_dialogues_session_keeps_one_sample_per_dialogue():
    assert organize_dialogues([["A"], ["A", "B"]], "session") == [
        [("user", "Q1"), ("assistant", "A")],
        [("user", "Q1"), ("assistant", "A"), ("user", "Q2"), ("assistant", "B")],
    ]
    with pytest.raises(ValueError, match="organization"):
        organize_dialogues([["A"]], "shuffled")


# --- token_weights -------------------------------------------------------------------------------------------------


def test_token_mean_vs_sample_mean_on_unequal_lengths():
    assert token_weights(UNEQUAL, "token_mean") == [[0, F(1, 4)], [0, 0, F(1, 4), F(1, 4), F(1, 4)]]
    assert token_weights(UNEQUAL, "sample_mean") == [[0, F(1, 2)], [0, 0, F(1, 6), F(1, 6), F(1, 6)]]


def test_sum_gives_one_per_labeled_token():
    assert token_weights(UNEQUAL, "sum") == [[0, 1], [0, 0, 1, 1, 1]]


def test_ignore_index_tokens_weigh_zero_under_every_reduction():
    for reduction in REDUCTION_NAMES:
        weights = token_weights(UNEQUAL, reduction)
        for labels, ws in zip(UNEQUAL, weights):
            for label, w in zip(labels, ws):
                if label == IGNORE_INDEX:
                    assert w == 0, reduction
                else:
                    assert w > 0, reduction


def test_weights_are_fractions_shaped_like_labels():
    weights = token_weights(UNEQUAL, "sample_mean")
    assert [len(w) for w in weights] == [len(s) for s in UNEQUAL]
    assert all(isinstance(w, F) for ws in weights for w in ws)


@pytest.mark.parametrize("reduction", sorted(MEAN_REDUCTIONS))
def test_mean_reductions_sum_to_one(reduction):
    batch = [[X, 1, 2], [3], [X, X, 4, 5, 6, X], [7, 8]]
    assert total(token_weights(batch, reduction)) == 1
    assert total(token_weights(batch, reduction, micro_batches=[[0, 3], [1], [2]])) == 1


# Micro-batch 0: sample 0 (1 labeled token). Micro-batch 1: samples 1 and 2 (2 + 3 = 5 labeled tokens).
ACCUM = [[X, 1], [X, 2, 3], [4, 5, 6]]
ACCUM_GROUPS = [[0], [1, 2]]


def test_accumulated_token_mean_over_unequal_micro_batches():
    # 6 labeled tokens in the accumulated step: 1/6 each.
    assert token_weights(ACCUM, "accumulated_token_mean", ACCUM_GROUPS) == [
        [0, F(1, 6)],
        [0, F(1, 6), F(1, 6)],
        [F(1, 6), F(1, 6), F(1, 6)],
    ]


def test_naive_accumulation_over_unequal_micro_batches():
    # Each micro-batch carries 1/2: 1/2 for the lone token, 1/2 * 1/5 = 1/10 for each of the other five.
    weights = token_weights(ACCUM, "naive_accumulation", ACCUM_GROUPS)
    assert weights == [[0, F(1, 2)], [0, F(1, 10), F(1, 10)], [F(1, 10), F(1, 10), F(1, 10)]]
    assert sample_totals(weights) == [F(1, 2), F(1, 5), F(3, 10)]


def test_accumulation_default_is_one_micro_batch():
    expected = token_weights(ACCUM, "token_mean")
    assert token_weights(ACCUM, "accumulated_token_mean") == expected
    assert token_weights(ACCUM, "naive_accumulation") == expected


def test_docstring_example_accumulation_one_sample_per_micro_batch():
    assert token_weights(UNEQUAL, "naive_accumulation", [[0], [1]]) == token_weights(UNEQUAL, "sample_mean")
    assert token_weights(UNEQUAL, "accumulated_token_mean", [[0], [1]]) == token_weights(UNEQUAL, "token_mean")


def test_unknown_reduction_raises():
    with pytest.raises(ValueError, match="unknown reduction 'mean'"):
        token_weights(UNEQUAL, "mean")


def test_sample_without_labels_gets_zero_and_others_still_sum_to_one():
    batch = [[X, X], [X, 1], [2, 3]]
    assert token_weights(batch, "sample_mean") == [[0, 0], [0, F(1, 2)], [F(1, 4), F(1, 4)]]
    # A micro-batch without labels is left out of the naive average.
    assert token_weights(batch, "naive_accumulation", [[0], [1, 2]]) == [[0, 0], [0, F(1, 3)], [F(1, 3), F(1, 3)]]


def test_batch_without_labels():
    for reduction in MEAN_REDUCTIONS:
        with pytest.raises(ValueError, match="no labeled token"):
            token_weights([[X, X], [X]], reduction)
    assert token_weights([[X, X], [X]], "sum") == [[0, 0], [0]]


@pytest.mark.parametrize(
    "groups, message",
    [
        ([[0], [0, 1]], "sample 0 is in micro-batch 0 and micro-batch 1"),
        ([[0]], r"samples \[1\] are in no micro-batch"),
        ([[0, 1], []], "micro-batch 1 is empty"),
        ([[0, 2], [1]], "micro-batch 0 holds 2"),
    ],
)
def test_invalid_micro_batches(groups, message):
    with pytest.raises(ValueError, match=message):
        token_weights(UNEQUAL, "naive_accumulation", groups)


# --- aggregate -----------------------------------------------------------------------------------------------------


def test_aggregate_by_role_turn_and_name():
    weights = token_weights(UNEQUAL, "sample_mean")
    roles = [["user", "assistant"], ["user", "user", "assistant", "assistant", "assistant"]]
    assert aggregate(weights, roles) == {"user": 0, "assistant": 1}
    turns = [[0, 1], [0, 0, 1, 1, 3]]
    assert aggregate(weights, turns) == {0: 0, 1: F(1, 2) + F(1, 3), 3: F(1, 6)}
    names = [[None, "a"], [None, None, "b", "a", None]]
    assert aggregate(weights, names) == {"a": F(1, 2) + F(1, 6), "b": F(1, 6)}


def test_aggregate_shape_mismatch():
    weights = token_weights(UNEQUAL, "sum")
    with pytest.raises(ValueError):
        aggregate(weights, [["a", "b"]])
    with pytest.raises(ValueError, match="sample 1"):
        aggregate(weights, [["a", "b"], ["c"]])


# --- seed 001: log-probability decomposition ------------------------------------------------------------------------


def test_log_prob_terms_count_only_assistant_turns():
    turns = [
        ("system", "Be brief."),
        ("user", "What is the weather like"),
        ("assistant", "In which city?"),
        ("user", "In London"),
        ("assistant", "It is currently raining."),
    ]
    terms = log_prob_terms(turns)
    assert [t.counted for t in terms] == [False, False, True, False, True]
    assert [t.conditioned_on for t in terms] == [(), (0,), (0, 1), (0, 1, 2), (0, 1, 2, 3)]
    assert [(t.role, t.text) for t in terms] == turns
    assert [t.symbol for t in terms] == ["s1", "x1", "y1", "x2", "y2"]
    assert log_prob_formula(log_prob_terms(turns[1:3])) == "log P(x1, y1) = [log P(x1)] + log P(y1 | x1)"
    assert log_prob_formula(terms).endswith("+ log P(y2 | s1, x1, y1, x2)")


def test_log_prob_terms_rejects_non_pairs():
    with pytest.raises(ValueError, match="turn 0"):
        log_prob_terms([("user",)])


# --- format_fraction -----------------------------------------------------------------------------------------------


def test_format_fraction():
    assert format_fraction(F(17, 24)) == "17/24"
    assert format_fraction(F(1)) == "1"
    assert format_fraction(F(0)) == "0"
    assert format_fraction(1) == "1"
    assert format_fraction(F(4, 8)) == "1/2"
    with pytest.raises(TypeError):
        format_fraction(0.5)
