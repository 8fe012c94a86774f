"""The real loss: a causal LM's loss on every token of a sample, and the number a trainer logs for a batch.

A causal LM reads left to right; its logits at position t-1 are its prediction for token t. The loss term of
position t is the negative log-likelihood (in nats)

    l_t = -log p(input_ids[t] | input_ids[:t])

and a trainer keeps the terms whose label is not IGNORE_INDEX. Labels are unshifted (``labels[t]`` is
``input_ids[t]`` or IGNORE_INDEX); the shift happens inside the loss: transformers' ``ForCausalLMLoss`` pairs
``logits[:-1]`` with ``labels[1:]``. So position 0 is never a target, even when its label is set (the BOS under
all-tokens): nothing comes before it. ``TokenLosses.loss_labels`` is the label row the loss really sees (position 0
set to IGNORE_INDEX), and every count here is over it, as transformers' Trainer counts ``num_items_in_batch`` over
``labels[..., 1:]``. Every position still gets its l_t, trained or not: a masked token the model cannot predict is
as visible as trained markup it already predicts perfectly (which costs nothing and teaches nothing).

The logged loss of a batch is ``L = sum_t w_t * l_t``, with ``w_t`` from ``weights.token_weights`` over those
labels. What computes each reduction in transformers / PyTorch (``TRAINER_EQUIVALENTS``; tests/test_loss.py checks
every line against transformers on a random model, to 1e-5):

* ``token_mean``: ``model(input_ids, labels=labels).loss`` over the padded batch, the mean over all of its targets
  (``ForCausalLMLoss``; the same with ``num_items_in_batch`` = the batch's targets).
* ``sample_mean``: the mean, over the samples that have a target, of each sample's own ``model(...).loss``.
* ``accumulated_token_mean``: the Trainer's gradient accumulation (transformers >= 4.46): the sum over micro-batches
  of ``ForCausalLMLoss(..., num_items_in_batch=targets of the whole step)``.
* ``naive_accumulation``: the old accumulation: the mean over micro-batches of each micro-batch's own mean.
* ``sum``: cross-entropy with ``reduction="sum"`` (``num_items_in_batch=1``).

Worked example: "<bos> Hi ! <eot>" with l = [-, 4.1, 0.7, 0.1]. Assistant-only trains "!" and "<eot>": targets 2
and 3, sum 0.8, token mean 0.4. All-tokens labels all four, but position 0 is no target: (4.1 + 0.7 + 0.1) / 3 =
1.63. Same model, same forward pass, same l_t; only which terms are counted changed.

Long samples: at most ``max_tokens`` tokens are scored (``DEFAULT_MAX_TOKENS``: the first ones, as right truncation
keeps them), because one forward pass holds max_tokens x vocabulary x 4 bytes of logits (1 GB for Gemma's 262,144
tokens at 1,024). ``TokenLosses.cut`` says how many were left out; losses and reductions cover the scored tokens
only. Forward passes run one at a time per process, on the CPU.

Left out: loading models (``model``), tables and figures (``loss_view``), gradients and training.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from functools import cached_property
from fractions import Fraction
from typing import Any, Iterable, Sequence

import numpy as np

from inspector.constants import IGNORE_INDEX
from inspector.conversations import Conversation
from inspector.errors import ModelError
from inspector.labels.engine import LabelEngine, LabelOptions, Sample, SampleError
from inspector.train.model import LoadedModel, require_torch
from inspector.template.tokenizer import ChatSetup
from inspector.labels.weights import REDUCTION_NAMES, loss_targets, token_weights

DEFAULT_MAX_TOKENS = 1024
DEFAULT_TOP_K = 5
_ROWS_PER_STEP = 128  # log-softmax over this many positions at a time: bounds the extra memory to rows x vocabulary
_FORWARD_LOCK = threading.Lock()

TRAINER_EQUIVALENTS: dict[str, str] = {
    "token_mean": "model(input_ids, labels=labels).loss on the padded batch (ForCausalLMLoss, mean over targets)",
    "sample_mean": "mean over samples of each sample's own model(...).loss",
    "accumulated_token_mean": "Trainer with gradient accumulation (transformers >= 4.46): sum over micro-batches of "
                              "ForCausalLMLoss(num_items_in_batch = targets of the step)",
    "naive_accumulation": "older gradient accumulation: mean over micro-batches of each micro-batch's mean loss",
    "sum": "cross_entropy(reduction='sum'), i.e. ForCausalLMLoss(num_items_in_batch=1)",
}


@dataclass(frozen=True, eq=False)
class TokenLosses:
    """The loss of every scored position of one sample.

    ``nll[t]`` is l_t (NaN at position 0, which nothing predicts); ``top_ids[t]`` / ``top_probs[t]`` are the model's
    ``k`` most likely tokens for position t and their probabilities (-1 / NaN at position 0). ``input_ids`` and
    ``labels`` are the scored part of ``sample``; ``cut`` counts the tokens past ``max_tokens`` that were not scored.
    """

    sample: Sample
    input_ids: list[int]
    labels: list[int]
    nll: np.ndarray
    top_ids: np.ndarray
    top_probs: np.ndarray
    cut: int = 0

    @property
    def sample_id(self) -> str:
        return self.sample.id

    @property
    def num_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def loss_labels(self) -> list[int]:
        """The labels the loss sees: position 0 is never a target. Example: [5, 9, -100, 2] -> [-100, 9, -100, 2]."""
        return loss_targets(self.labels)

    @cached_property
    def is_target(self) -> np.ndarray:
        """Per position: is it a loss term (computed once; pages read it per token)."""
        return np.asarray(self.loss_labels, dtype=np.int64) != IGNORE_INDEX

    @property
    def num_targets(self) -> int:
        return int(self.is_target.sum())

    @property
    def loss_sum(self) -> float:
        """Sum of l_t over the targets (0.0 without any)."""
        return float(self.nll[self.is_target].sum())

    @property
    def loss_mean(self) -> float | None:
        """Mean of l_t over the targets: what ``model(input_ids, labels=labels).loss`` returns for this sample alone
        (None without a target; PyTorch would say NaN)."""
        n = self.num_targets
        return self.loss_sum / n if n else None

    @property
    def probs(self) -> np.ndarray:
        """p(input_ids[t] | before t) = exp(-l_t); NaN at position 0."""
        return np.exp(-self.nll)


# --- scoring ------------------------------------------------------------------------------------------------------

def _network(model: Any) -> tuple[Any, int]:
    """The torch module and how many token ids it scores, from a ``LoadedModel`` or a bare transformers model."""
    if isinstance(model, LoadedModel):
        return model.model, model.vocab_size
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(out, "weight", None)
    return model, int(weight.shape[0]) if weight is not None else int(model.config.vocab_size)


def context_length(model: Any) -> int | None:
    """The longest sequence the model takes (``max_position_embeddings``), or None when its config does not say."""
    net, _ = _network(model)
    value = getattr(getattr(net, "config", None), "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 1 else None


def token_nll(model: Any, input_ids: Sequence[int], top_k: int = DEFAULT_TOP_K
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One forward pass over ``input_ids``: (nll, top_ids, top_probs) per position, position 0 empty.

    Example: ids [2, 17, 9] -> nll [nan, -log p(17 | 2), -log p(9 | 2 17)]. Raises ``ModelError`` when an id is
    outside the model's vocabulary (the tokenizer is not the model's).
    """
    torch = require_torch()
    net, vocab_size = _network(model)
    ids = [int(i) for i in input_ids]
    n, k = len(ids), max(0, min(int(top_k), vocab_size))
    nll = np.full(n, np.nan)
    top_ids = np.full((n, k), -1, dtype=np.int64)
    top_probs = np.full((n, k), np.nan)
    outside = sorted({i for i in ids if not 0 <= i < vocab_size})
    if outside:
        raise ModelError(f"token id(s) {outside[:5]} are outside the model's vocabulary of {vocab_size}: the "
                         "tokenizer does not belong to this model (use the model's own tokenizer)")
    if n < 2:
        return nll, top_ids, top_probs
    with _FORWARD_LOCK, torch.inference_mode():
        x = torch.tensor([ids], dtype=torch.long)
        logits = net(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False).logits[0]
        targets = x[0, 1:]
        for a in range(0, n - 1, _ROWS_PER_STEP):
            b = min(a + _ROWS_PER_STEP, n - 1)
            logp = torch.log_softmax(logits[a:b].float(), dim=-1)
            nll[a + 1:b + 1] = (-logp.gather(1, targets[a:b, None])[:, 0]).double().numpy()
            if k:
                values, indices = logp.topk(k, dim=-1)
                top_probs[a + 1:b + 1] = values.exp().double().numpy()
                top_ids[a + 1:b + 1] = indices.numpy()
        del logits
    return nll, top_ids, top_probs


def score_samples(model: Any, samples: Iterable[Sample], *, top_k: int = DEFAULT_TOP_K,
                  max_tokens: int = DEFAULT_MAX_TOKENS, cache: dict | None = None) -> list[TokenLosses]:
    """Score every sample: one forward pass per distinct token sequence (strategies that label the same rendered
    text differently share it). ``cache`` (a dict the caller keeps) carries those passes across calls.
    ``model`` is a ``LoadedModel`` or a transformers causal LM. At most ``max_tokens`` tokens per sample are scored,
    and never more than the model's context length."""
    if max_tokens < 2:
        raise ValueError(f"max_tokens must be at least 2, got {max_tokens}")
    cache = {} if cache is None else cache
    max_tokens = min(max_tokens, context_length(model) or max_tokens)
    out = []
    for sample in samples:
        ids = [int(i) for i in sample.input_ids[:max_tokens]]
        key = (tuple(ids), int(top_k))
        if key not in cache:
            cache[key] = token_nll(model, ids, top_k)
        nll, top_ids, top_probs = cache[key]
        out.append(TokenLosses(sample=sample, input_ids=ids, labels=[int(x) for x in sample.labels[:max_tokens]],
                               nll=nll, top_ids=top_ids, top_probs=top_probs, cut=len(sample.input_ids) - len(ids)))
    return out


def score_sample(model: Any, sample: Sample, *, top_k: int = DEFAULT_TOP_K,
                 max_tokens: int = DEFAULT_MAX_TOKENS) -> TokenLosses:
    return score_samples(model, [sample], top_k=top_k, max_tokens=max_tokens)[0]


# --- reductions ---------------------------------------------------------------------------------------------------

def micro_batches_of(n_samples: int, size: int) -> list[list[int]]:
    """Consecutive micro-batches of ``size`` samples. Example: micro_batches_of(5, 2) -> [[0, 1], [2, 3], [4]]."""
    size = max(1, int(size))
    return [list(range(i, min(i + size, n_samples))) for i in range(0, n_samples, size)]


def loss_weights(scored: Sequence[TokenLosses], reduction: str,
                 micro_batches: Sequence[Sequence[int]] | None = None) -> list[list[Fraction]]:
    """``weights.token_weights`` over the labels the loss sees (``TokenLosses.loss_labels``)."""
    return token_weights([s.loss_labels for s in scored], reduction, micro_batches)


def contributions(scored: Sequence[TokenLosses], reduction: str,
                  micro_batches: Sequence[Sequence[int]] | None = None) -> list[np.ndarray]:
    """w_t * l_t per token: what each token adds to the logged loss (0 for a token that is no target). Summed over
    the batch they give ``batch_loss``. Raises ``ValueError`` for a mean over a batch without targets."""
    out = []
    for s, weights in zip(scored, loss_weights(scored, reduction, micro_batches)):
        w = np.array([float(x) for x in weights], dtype=np.float64)
        out.append(np.where(w != 0, w * np.nan_to_num(s.nll, nan=0.0), 0.0))
    return out


def batch_loss(scored: Sequence[TokenLosses], reduction: str,
               micro_batches: Sequence[Sequence[int]] | None = None) -> float:
    """The loss a trainer logs for this batch under ``reduction``: sum_t w_t * l_t.

    Example: two samples with target losses [1.0] and [2.0, 3.0]: token_mean 2.0, sample_mean (1.0 + 2.5) / 2 =
    1.75, sum 6.0.
    """
    return float(sum(c.sum() for c in contributions(scored, reduction, micro_batches)))


def batch_losses(scored: Sequence[TokenLosses], micro_batches: Sequence[Sequence[int]] | None = None
                 ) -> dict[str, float | None]:
    """Every reduction's logged loss, in ``REDUCTION_NAMES`` order; None for a mean over a batch without targets."""
    out: dict[str, float | None] = {}
    for r in REDUCTION_NAMES:
        try:
            out[r] = batch_loss(scored, r, micro_batches)
        except ValueError:
            out[r] = None
    return out


def segment_losses(scored: TokenLosses) -> dict[str, dict[str, float | int | None]]:
    """Per segment (template, system, user, assistant, tool): every scored position's count, mean l_t, and how many
    are targets with their summed and mean l_t. Position 0 is left out (no prediction).

    Example (all-tokens): {"user": {"tokens": 20, "mean": 3.1, "targets": 20, "target_sum": 62.0,
    "target_mean": 3.1}, ...}
    """
    segments = list(scored.sample.segments[:scored.num_tokens])
    target = scored.is_target
    out: dict[str, dict[str, float | int | None]] = {}
    for seg in dict.fromkeys(segments[1:]):
        pos = np.array([t for t in range(1, scored.num_tokens) if segments[t] == seg], dtype=np.int64)
        hit = pos[target[pos]]
        out[seg] = {"tokens": len(pos), "mean": float(scored.nll[pos].mean()), "targets": len(hit),
                    "target_sum": float(scored.nll[hit].sum()),
                    "target_mean": float(scored.nll[hit].mean()) if len(hit) else None}
    return out


# --- strategies side by side --------------------------------------------------------------------------------------

@dataclass
class StrategyLoss:
    """One strategy's samples of a set of conversations, scored, and the loss each reduction logs for them as one
    batch (``micro_batches`` for the accumulation reductions)."""

    strategy: str
    scored: list[TokenLosses]
    errors: list[SampleError]
    losses: dict[str, float | None]
    micro_batches: list[list[int]] = field(default_factory=list)

    @property
    def num_targets(self) -> int:
        return sum(s.num_targets for s in self.scored)


def strategy_losses(model: Any, setup: ChatSetup, conversations: Sequence[Conversation],
                    strategies: Sequence[str] = ("assistant-only", "all-tokens"), *,
                    options: LabelOptions = LabelOptions(), micro_batch_size: int = 1, top_k: int = DEFAULT_TOP_K,
                    max_tokens: int = DEFAULT_MAX_TOKENS, cache: dict | None = None) -> dict[str, StrategyLoss]:
    """Build the conversations' samples under each strategy, score them (one forward pass per distinct text) and
    reduce them: how the logged number changes when only the labels change."""
    cache = {} if cache is None else cache
    engine = LabelEngine(setup)
    out: dict[str, StrategyLoss] = {}
    for strategy in strategies:
        samples, errors = engine.build(conversations, replace(options, strategy=strategy))
        scored = score_samples(model, samples, top_k=top_k, max_tokens=max_tokens, cache=cache)
        groups = micro_batches_of(len(scored), micro_batch_size)
        out[strategy] = StrategyLoss(strategy, scored, errors, batch_losses(scored, groups or None), groups)
    return out
