"""How much each supervised token counts: gradient weights under the common loss reductions.

A causal-LM trainer computes one loss term per labeled token, ``l_t = -log p(label_t | tokens before t)``, and then
*reduces* those terms to the single number it differentiates: ``L = sum_t w_t * l_t``. The gradient is therefore
``sum_t w_t * grad(l_t)``, so ``w_t`` is exactly how strongly token ``t`` pulls on the parameters. Tokens whose label
is ``IGNORE_INDEX`` have no loss term: their weight is 0. Everything else about ``w_t`` is decided by the reduction,
and this module computes it exactly, with ``fractions.Fraction``.

Worked example. A batch of two samples; sample 0 has 1 labeled token (``a``), sample 1 has 3 (``b``, ``c``, ``d``)::

    labels = [[IGNORE_INDEX, 7], [IGNORE_INDEX, 3, 4, 5]]

* ``"sum"``: every labeled token weighs 1.                        a=1,   b=c=d=1
* ``"token_mean"``: divide by the 4 labeled tokens of the batch.  a=1/4, b=c=d=1/4
* ``"sample_mean"``: average each sample over its own labeled tokens, then average the 2 samples, so sample 0's only
  token gets 1/2 * 1/1 and each token of sample 1 gets 1/2 * 1/3.  a=1/2, b=c=d=1/6

Same tokens, same data, yet ``a`` counts twice as much as under ``token_mean``: a sample-level mean gives short
samples' tokens more weight, a token-level mean gives every token the same weight. The IGNORE_INDEX positions get 0
under every reduction.

Gradient accumulation adds a second level. Put sample 0 in micro-batch 0 and sample 1 in micro-batch 1:

* ``"accumulated_token_mean"`` (the corrected behaviour of transformers >= 4.46): divide by the 4 labeled tokens of the
  whole accumulated step, as if it were one batch.                a=1/4, b=c=d=1/4
* ``"naive_accumulation"`` (the older behaviour): token-mean inside each micro-batch, then average the 2 micro-batch
  losses.                                                          a=1/2, b=c=d=1/6

So the old accumulation silently turned a token mean into a (micro-batch) sample mean.

Choices made here:

* ``micro_batches`` is a partition of the sample indices (every index exactly once, no empty group). The default is
  one micro-batch holding every sample, under which both accumulation reductions equal ``"token_mean"``. Only the two
  accumulation reductions look at it; the other three treat ``labels_batch`` as one batch (it is still validated).
* A sample with no labeled token has no per-sample mean (0/0; plain PyTorch would give NaN). It gets weight 0 and the
  sample mean is taken over the samples that do have labeled tokens, as a trainer that drops such samples would do;
  likewise a micro-batch without labeled tokens is left out of ``"naive_accumulation"``. The remaining weights still
  sum to 1. A mean reduction over a batch without any labeled token raises ``ValueError``; ``"sum"`` gives all zeros.

The seed example (``session_vs_split_example``) shows the same effect on multi-turn data: how the turns of a dialogue
are cut into samples changes how much each answer is trained on, even though every answer is labeled either way.
``log_prob_terms`` spells out the objective itself: log P(dialogue) split into one conditional term per turn, with only
the assistant terms counted.
"""

from __future__ import annotations

import operator
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from inspector.constants import IGNORE_INDEX

# (name, human label), in the order a UI should offer them.
REDUCTIONS: tuple[tuple[str, str], ...] = (
    ("sample_mean", "Mean per sample, then mean over the samples"),
    ("token_mean", "Mean over all labeled tokens of the batch (Hugging Face default)"),
    ("accumulated_token_mean", "Gradient accumulation: mean over all labeled tokens of the accumulated step"),
    ("naive_accumulation", "Gradient accumulation (old): mean per micro-batch, then mean over micro-batches"),
    ("sum", "Sum over labeled tokens (weight 1 each)"),
)
REDUCTION_NAMES: tuple[str, ...] = tuple(name for name, _ in REDUCTIONS)
REDUCTION_LABELS: dict[str, str] = dict(REDUCTIONS)

MEAN_REDUCTIONS: frozenset[str] = frozenset(REDUCTION_NAMES) - {"sum"}

ORGANIZATIONS: tuple[str, ...] = ("session", "split")


# ---------------------------------------------------------------------------------------------------------------------
# Token weights
# ---------------------------------------------------------------------------------------------------------------------


def _labeled(label: int) -> bool:
    return label != IGNORE_INDEX


def _check_micro_batches(micro_batches: Sequence[Sequence[int]] | None, n_samples: int) -> list[list[int]]:
    """Validate a partition of ``range(n_samples)``; None means one micro-batch with every sample."""
    if micro_batches is None:
        return [list(range(n_samples))] if n_samples else []
    groups = [list(group) for group in micro_batches]
    seen: dict[int, int] = {}
    for g, group in enumerate(groups):
        if not group:
            raise ValueError(f"micro-batch {g} is empty: every micro-batch must hold at least one sample index")
        for j, raw in enumerate(group):
            try:
                i = operator.index(raw) if not isinstance(raw, bool) else None
            except TypeError:
                i = None
            if i is None or not 0 <= i < n_samples:
                raise ValueError(f"micro-batch {g} holds {raw!r}, which is not a sample index (0..{n_samples - 1})")
            group[j] = i
            if i in seen:
                raise ValueError(f"sample {i} is in micro-batch {seen[i]} and micro-batch {g}: list each sample once")
            seen[i] = g
    missing = [i for i in range(n_samples) if i not in seen]
    if missing:
        raise ValueError(f"samples {missing} are in no micro-batch: micro_batches must list every sample once")
    return groups


def token_weights(
    labels_batch: Sequence[Sequence[int]],
    reduction: str,
    micro_batches: Sequence[Sequence[int]] | None = None,
) -> list[list[Fraction]]:
    """The weight of every token's loss term in the objective, per sample and per token.

    ``labels_batch[s][t]`` is the label of token ``t`` of sample ``s`` (``IGNORE_INDEX`` = not trained). ``reduction``
    is one of ``REDUCTION_NAMES``. ``micro_batches`` groups sample indices into micro-batches for the accumulation
    reductions (default: one micro-batch with all samples). Returns a list shaped like ``labels_batch``; ignored
    tokens weigh 0, and for every mean reduction the weights sum to 1. See the module docstring for the rules on
    samples and micro-batches without labeled tokens.
    """
    if reduction not in REDUCTION_LABELS:
        raise ValueError(f"unknown reduction {reduction!r}; choose one of: {', '.join(REDUCTION_NAMES)}")
    samples = [list(sample) for sample in labels_batch]
    groups = _check_micro_batches(micro_batches, len(samples))
    counts = [sum(1 for label in sample if _labeled(label)) for sample in samples]
    total = sum(counts)
    if reduction in MEAN_REDUCTIONS and total == 0:
        raise ValueError(
            f"reduction {reduction!r} is a mean, but the batch has no labeled token (every label is IGNORE_INDEX): "
            "the mean is undefined"
        )

    # The weight every labeled token of a sample gets; ignored tokens get 0.
    per_token = [Fraction(0)] * len(samples)
    if reduction == "sum":
        per_token = [Fraction(1)] * len(samples)
    elif reduction in ("token_mean", "accumulated_token_mean"):
        per_token = [Fraction(1, total)] * len(samples)
    elif reduction == "sample_mean":
        trained = sum(1 for c in counts if c)
        per_token = [Fraction(1, trained * c) if c else Fraction(0) for c in counts]
    elif reduction == "naive_accumulation":
        group_counts = [sum(counts[i] for i in group) for group in groups]
        trained = sum(1 for c in group_counts if c)
        for group, group_count in zip(groups, group_counts):
            for i in group:
                per_token[i] = Fraction(1, trained * group_count) if group_count else Fraction(0)

    return [[per_token[s] if _labeled(label) else Fraction(0) for label in sample] for s, sample in enumerate(samples)]


# ---------------------------------------------------------------------------------------------------------------------
# Aggregation
# ---------------------------------------------------------------------------------------------------------------------


def aggregate(
    weights: Sequence[Sequence[Fraction]], keys: Sequence[Sequence[Hashable | None]]
) -> dict[Hashable, Fraction]:
    """Sum token weights by key: ``keys[s][t]`` names the group of token ``t`` of sample ``s``.

    Keys can be anything hashable: a turn index, a role, a segment, a token's text, a sample index. A key of None
    leaves that token out. Every other key appears in the result, even when its weights sum to 0 (a user turn under
    any reduction), in the order the keys are first met. ``keys`` must have the shape of ``weights``.
    """
    if len(keys) != len(weights):
        raise ValueError(f"keys has {len(keys)} samples but weights has {len(weights)}")
    out: dict[Hashable, Fraction] = {}
    for s, (sample_weights, sample_keys) in enumerate(zip(weights, keys)):
        if len(sample_keys) != len(sample_weights):
            raise ValueError(f"sample {s}: {len(sample_keys)} keys for {len(sample_weights)} token weights")
        for weight, key in zip(sample_weights, sample_keys):
            if key is None:
                continue
            out[key] = out.get(key, Fraction(0)) + weight
    return out


def sample_totals(weights: Sequence[Sequence[Fraction]]) -> list[Fraction]:
    """The summed weight of each sample: how much of the objective each sample carries."""
    return [sum(sample, Fraction(0)) for sample in weights]


# ---------------------------------------------------------------------------------------------------------------------
# The session-level vs split-turn example
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrganizedBatch:
    """One way of cutting a batch of dialogues into training samples, and the weights ``sample_mean`` gives it.

    ``tokens[s]`` names every token of sample ``s`` (one token per turn), ``roles[s]`` its role, ``labels[s]`` its
    label, ``weights[s]`` its weight, and ``by_answer`` sums the weights per answer name over the whole batch.
    """

    organization: str
    tokens: list[list[str]]
    roles: list[list[str]]
    labels: list[list[int]]
    weights: list[list[Fraction]]
    by_answer: dict[str, Fraction]


@dataclass(frozen=True)
class SessionVsSplit:
    """The same dialogues organized session-level and split-turn (see ``session_vs_split_example``)."""

    dialogues: list[list[str]]
    reduction: str
    session: OrganizedBatch
    split: OrganizedBatch


def organize_dialogues(dialogues: Sequence[Sequence[str]], organization: str) -> list[list[tuple[str, str]]]:
    """Cut dialogues into samples of (role, token name), one token per turn.

    Each dialogue is given as its answer names; before answer ``k`` (1-based) sits a user question named ``Qk``.
    ``"session"``: one sample per dialogue, Q1 A1 Q2 A2 ... . ``"split"``: one sample per answer, the k-th sample being
    the dialogue up to and including answer k. Every answer in every sample is trained (the earlier answers of a
    split sample stay labeled), every question is masked.
    """
    if organization not in ORGANIZATIONS:
        raise ValueError(f"unknown organization {organization!r}; choose one of: {', '.join(ORGANIZATIONS)}")
    samples: list[list[tuple[str, str]]] = []
    for answers in dialogues:
        turns = [t for k, answer in enumerate(answers, 1) for t in (("user", f"Q{k}"), ("assistant", answer))]
        if organization == "session":
            samples.append(turns)
        else:
            samples.extend(turns[: 2 * k] for k in range(1, len(answers) + 1))
    return samples


def _label_samples(samples: list[list[tuple[str, str]]]) -> list[list[int]]:
    """Give each token name an id (in order of first appearance) and label assistant tokens with it."""
    ids: dict[str, int] = {}
    labels = []
    for sample in samples:
        row = []
        for role, name in sample:
            token_id = ids.setdefault(name, len(ids))
            row.append(token_id if role == "assistant" else IGNORE_INDEX)
        labels.append(row)
    return labels


def organized_batch(
    dialogues: Sequence[Sequence[str]], organization: str, reduction: str = "sample_mean"
) -> OrganizedBatch:
    """Organize ``dialogues`` (see ``organize_dialogues``) and weigh the result with ``token_weights``."""
    samples = organize_dialogues(dialogues, organization)
    labels = _label_samples(samples)
    weights = token_weights(labels, reduction)
    tokens = [[name for _, name in sample] for sample in samples]
    roles = [[role for role, _ in sample] for sample in samples]
    answer_keys = [[name if role == "assistant" else None for role, name in sample] for sample in samples]
    return OrganizedBatch(
        organization=organization,
        tokens=tokens,
        roles=roles,
        labels=labels,
        weights=weights,
        by_answer={str(k): v for k, v in aggregate(weights, answer_keys).items()},
    )


def session_vs_split_example(reduction: str = "sample_mean") -> SessionVsSplit:
    """The gradient-weight example of the session-level seed, computed from scratch.

    A batch of two dialogues: the first has one answer, A; the second has three, A, B and C (one token each, each
    after a one-token question). "A" names the first answer of a dialogue, so both dialogues' A count as A.

    * Session-level: 2 samples, [Q1 A] and [Q1 A Q2 B Q3 C]. Under ``sample_mean`` each sample carries 1/2, split
      evenly over its labeled tokens: A = 1/2 + 1/6 = 2/3, B = 1/6, C = 1/6.
    * Split-turn: dialogue 2 becomes [Q1 A], [Q1 A Q2 B], [Q1 A Q2 B Q3 C], with the earlier answers still labeled,
      so the batch has 4 samples of 1/4 each: A = 1/4 + 1/4 + 1/8 + 1/12 = 17/24, B = 1/8 + 1/12 = 5/24, C = 1/12.

    The numbers above are what comes out; nothing here types them in. Splitting shifts weight to the first answer,
    which every split sample repeats, and away from the last one.
    """
    dialogues = [["A"], ["A", "B", "C"]]
    return SessionVsSplit(
        dialogues=dialogues,
        reduction=reduction,
        session=organized_batch(dialogues, "session", reduction),
        split=organized_batch(dialogues, "split", reduction),
    )


# ---------------------------------------------------------------------------------------------------------------------
# Layouts: the same samples cut into trainer rows (packing)
# ---------------------------------------------------------------------------------------------------------------------

Slot = tuple[int, int] | None  # (sample, token index in that sample) of a trainer row's token; None for padding


def loss_targets(labels: Sequence[int]) -> list[int]:
    """The labels of one trainer row that are loss terms: a causal LM shifts labels, so the row's first token
    predicts nothing (transformers' ``ForCausalLMLoss``; its Trainer counts ``labels[..., 1:]``).

    Example: [5, IGNORE_INDEX, 7] -> [IGNORE_INDEX, IGNORE_INDEX, 7].
    """
    return [IGNORE_INDEX, *labels[1:]] if len(labels) else []


def layout_weights(
    sample_lengths: Sequence[int],
    rows: Sequence[Sequence[Slot]],
    row_labels: Sequence[Sequence[int]],
    reduction: str,
    micro_batches: Sequence[Sequence[int]] | None = None,
) -> list[list[Fraction | None]]:
    """Every reduction of ``token_weights``, on the rows a trainer actually reduces, mapped back to the samples.

    ``rows[r][t]`` says which sample token sits at token ``t`` of row ``r`` (None: padding), ``row_labels[r]`` are the
    labels the loss reads there (after the collator); ``micro_batches`` groups row indices as in ``token_weights``.
    The rows are weighed on their ``loss_targets``. Returns ``out[s][p]``: the weight of token ``p`` of sample ``s``,
    None when the token is in no row (cut off). Unpacked, every sample is its own row; packed, a row holds several
    samples, so "mean per sample" becomes "mean per packed row".

    Example (sample_mean): samples with labels [-100, 1] and [-100, 2, 3], one row each -> [[0, 1/2], [0, 1/4, 1/4]];
    packed into one row [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)] -> [[0, 1/3], [0, 1/3, 1/3]].
    """
    if len(rows) != len(row_labels):
        raise ValueError(f"{len(rows)} rows but {len(row_labels)} rows of labels")
    targets = []
    for r, (row, labels) in enumerate(zip(rows, row_labels)):
        if len(row) != len(labels):
            raise ValueError(f"row {r}: {len(row)} slots for {len(labels)} labels")
        targets.append(loss_targets(list(labels)))
    weights = token_weights(targets, reduction, micro_batches)
    out: list[list[Fraction | None]] = [[None] * n for n in sample_lengths]
    for r, row in enumerate(rows):
        for t, slot in enumerate(row):
            if slot is None:
                continue
            s, p = slot
            if not (0 <= s < len(out) and 0 <= p < len(out[s])):
                raise ValueError(f"row {r}, token {t}: {slot} is not a token of the samples")
            if out[s][p] is not None:
                raise ValueError(f"token {p} of sample {s} sits in two places (row {r}, token {t} is the second)")
            out[s][p] = weights[r][t]
    return out


def micro_batch_groups(n: int, size: int) -> list[list[int]]:
    """Consecutive groups of ``size`` indices. Example: micro_batch_groups(5, 2) -> [[0, 1], [2, 3], [4]]."""
    if size < 1:
        raise ValueError(f"micro-batch size must be above 0, got {size}")
    return [list(range(a, min(a + size, n))) for a in range(0, n, size)]


@dataclass(frozen=True)
class WeightsBeforeAfter:
    """The weight of every sample token before and after a change of layout (unpacked -> packed), one reduction.

    ``before[s][p]`` / ``after[s][p]``: a Fraction, or None when that layout does not hold the token.
    """

    reduction: str
    before: list[list[Fraction | None]]
    after: list[list[Fraction | None]]

    def sample_totals(self) -> list[tuple[Fraction, Fraction]]:
        """(before, after) summed weight of each sample (None counts 0)."""
        return [(sum((w for w in b if w is not None), Fraction(0)), sum((w for w in a if w is not None), Fraction(0)))
                for b, a in zip(self.before, self.after)]

    def changed(self) -> list[tuple[int, int]]:
        """(sample, token) pairs whose weight differs between the two layouts."""
        return [(s, p) for s, (b, a) in enumerate(zip(self.before, self.after)) for p, (x, y) in enumerate(zip(b, a))
                if (x or Fraction(0)) != (y or Fraction(0)) or (x is None) != (y is None)]


# ---------------------------------------------------------------------------------------------------------------------
# The log-probability decomposition
# ---------------------------------------------------------------------------------------------------------------------

_SYMBOL_LETTERS = {"system": "s", "user": "x", "assistant": "y", "tool": "t"}


@dataclass(frozen=True)
class LogProbTerm:
    """One term ``log P(turn_index | turns conditioned_on)`` of log P(dialogue).

    ``counted`` is True only for assistant turns: the others are masked out of the SFT loss (their labels are
    IGNORE_INDEX) although the model still reads them as context. ``symbol`` is a short name for formulas: x1, x2 for
    user turns, y1, y2 for assistant turns, s1 for system, t1 for tool, ``<role>1`` for any other role.
    """

    index: int
    role: str
    text: str
    conditioned_on: tuple[int, ...] = field(default=())
    counted: bool = False
    symbol: str = ""


def log_prob_terms(turns: Sequence[tuple[str, str]]) -> list[LogProbTerm]:
    """Split log P(dialogue) into per-turn terms: log P(turn_k | turns 0..k-1) for every k.

    ``turns`` is a list of (role, text). The sum of all terms is the log-probability of the whole concatenated
    dialogue; SFT keeps only the assistant terms, which one forward pass over the concatenation computes at once.
    """
    terms: list[LogProbTerm] = []
    per_role: dict[str, int] = {}
    for k, turn in enumerate(turns):
        if len(turn) != 2:
            raise ValueError(f"turn {k} is {turn!r}: expected a (role, text) pair")
        role, text = turn
        per_role[role] = per_role.get(role, 0) + 1
        terms.append(
            LogProbTerm(
                index=k,
                role=role,
                text=text,
                conditioned_on=tuple(range(k)),
                counted=role == "assistant",
                symbol=f"{_SYMBOL_LETTERS.get(role, role)}{per_role[role]}",
            )
        )
    return terms


def log_prob_formula(terms: Sequence[LogProbTerm]) -> str:
    """The decomposition as one line, masked terms in brackets.

    Example: ``log P(x1, y1) = [log P(x1)] + log P(y1 | x1)``.
    """
    symbols = {t.index: t.symbol for t in terms}
    parts = []
    for t in terms:
        given = ", ".join(symbols.get(i, f"turn{i}") for i in t.conditioned_on)
        part = f"log P({t.symbol} | {given})" if given else f"log P({t.symbol})"
        parts.append(part if t.counted else f"[{part}]")
    return f"log P({', '.join(t.symbol for t in terms)}) = " + " + ".join(parts)


# ---------------------------------------------------------------------------------------------------------------------
# Display
# ---------------------------------------------------------------------------------------------------------------------


def format_fraction(f: Fraction | int) -> str:
    """Exact text for a weight: ``Fraction(17, 24)`` -> "17/24", 1 -> "1", 0 -> "0"."""
    if isinstance(f, bool) or not isinstance(f, (int, Fraction)):
        raise TypeError(f"format_fraction takes a Fraction or an int, not {type(f).__name__}")
    f = Fraction(f)
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"
