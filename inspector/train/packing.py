"""Packing: several samples in one training sequence, built the way TRL's ``pack_dataset`` builds it, and what that
changes for the labels, the attention and the loss.

TRL's ``SFTTrainer(packing=True)`` concatenates tokenized samples into sequences of at most ``max_length`` tokens
(``trl/data_utils.py``: ``pack_dataset``, ``_pack_bfd``, ``_pack_wrapped``). Strategies (``PACKING_STRATEGIES``):

- ``bfd`` (TRL's default), best fit decreasing: a sample longer than ``max_length`` keeps its first ``max_length``
  tokens (the rest is lost); samples go longest first (ties in input order) into the sequence whose free space fits
  them most tightly (among equals, the one that reached that free space first), or into a new sequence. Never split.
- ``bfd_split``: as ``bfd``, but a long sample is cut into pieces of ``max_length`` tokens (the last one shorter) that
  are packed like samples of their own: nothing is lost, but a later piece is trained without its sample's start.
- ``wrapped``: concatenate every sample and cut every ``max_length`` tokens, across sample boundaries.

Empty samples are dropped (bfd, bfd_split), and packing never mixes ``datasets.map`` batches: TRL packs each batch of
``map_batch_size`` samples (datasets' default 1000) on its own.

Worked example, TRL's own docstring (max_length 4; sample lengths 5, 2, 3, 1; ``s0[4:5]`` = tokens 4.. of sample 0)::

    bfd       -> [s0[0:4]]  [s2, s3]        [s1]         seq_lengths [4] [3, 1] [2]      (s0 loses 1 token)
    bfd_split -> [s0[0:4]]  [s2, s0[4:5]]   [s1, s3]     seq_lengths [4] [3, 1] [2, 1]
    wrapped   -> [s0[0:4]]  [s0[4:5], s1, s2[0:1]]  [s2[1:3], s3]        (no seq_lengths)

Each packed sequence carries TRL's ``seq_lengths`` (one per piece); its collator turns them into ``position_ids`` that
restart at 0 at every piece (``get_position_ids_from_packed_seq_lengths``); ``wrapped`` has none, so positions run
0..n-1 over the whole sequence. Labels are packed unchanged. The collator then forms micro-batches of ``batch_size``
packed sequences in one of two layouts (``LAYOUTS``; ``DataCollatorForLanguageModeling`` in
``trl/trainer/sft_trainer.py``):

- ``padded``: one row per packed sequence, right-padded to the batch's longest row (labels IGNORE_INDEX there), an
  ``attention_mask`` of 1s and 0s and no ``position_ids``: the model numbers the row 0..n-1.
- ``padding_free`` (``SFTTrainer`` turns it on for bfd and bfd_split whatever ``padding_free`` says): the batch's
  sequences become one row, ``position_ids`` from ``seq_lengths``, no attention_mask, and the label of every token at
  position id 0 set to IGNORE_INDEX (``labels[position_ids == 0] = -100``).

What this module reports (``check_packing``; codes registered in ``checks.CHECKS``):

- ``cross-sample-prediction``: a labeled token whose predecessor in the row belongs to another sample. Labels are
  unshifted: the model predicts token t from the tokens before it, so that label trains "after sample A comes B's
  first token", whatever the attention does (see ``ATTENTION_FACTS``).
- ``cross-sample-attention``: the layout gives the model no boundary between two samples of a row, so tokens of the
  later sample attend to the earlier one under every attention implementation.
- ``packing-truncates`` / ``packing-splits-sample``: tokens lost by bfd; samples cut across sequences.
- ``packing-label-masked``: labels the padding-free collator sets to IGNORE_INDEX (the only packed labels that differ
  from the unpacked ones).
- ``packing-padding``: the share of padding in the rows (packing efficiency); ``packing-attention``: which attention
  implementations keep the samples apart with the inputs this layout gives, as verified in transformers' source.

Left out: the gradient weights (``weights.layout_weights``; ``weights_before_after`` below wires them), figures
(``packing_viz``), files (``packed_export``). Shuffling (``shuffle_dataset``, the Trainer's random sampler) is not
modelled: sequences and micro-batches are formed in input order.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from itertools import chain
from typing import Any, NamedTuple

from inspector.checks.catalog import Finding, finding
from inspector.checks.report import Report
from inspector.constants import IGNORE_INDEX
from inspector.labels.weights import Slot, WeightsBeforeAfter, layout_weights, micro_batch_groups

PACKING_STRATEGIES = ("bfd", "bfd_split", "wrapped")
LAYOUTS = ("padded", "padding_free")
TRL_MAP_BATCH_SIZE = 1000  # datasets.Dataset.map(batched=True) default: TRL packs each such batch on its own
DEFAULT_BATCH_SIZE = 8  # transformers' TrainingArguments.per_device_train_batch_size
DEFAULT_MAX_PADDING_SHARE = 0.10
PADDING = -1  # token_samples / token_positions of a padding token


def default_padding_free(strategy: str) -> bool:
    """The layout TRL's SFTTrainer collates a packing strategy in: padding-free for bfd and bfd_split (it turns
    ``padding_free`` on by itself), padded rows for wrapped. Example: "bfd" -> True, "wrapped" -> False."""
    return strategy in ("bfd", "bfd_split")


# --- inputs and options ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PackInput:
    """What packing needs of a sample: its id, ``input_ids`` and unshifted ``labels`` (same length)."""

    id: str
    input_ids: list[int]
    labels: list[int]
    conversation_id: str | None = None

    @property
    def num_labeled(self) -> int:
        return len(self.labels) - self.labels.count(IGNORE_INDEX)


def _int_list(values: Any) -> list[int]:
    """``values`` as a list of Python ints, without a Python step per token where it already is one: a list whose
    first and last items are ints is kept as it is (what the label engine and JSON rows give), a numpy array goes
    through ``tolist`` (C speed), anything else through ``int`` per item (numpy scalars, floats, strings of digits).
    Example: [5, 9] -> the same list; np.array([5, 9]) -> [5, 9]; (5.0, "9") -> [5, 9]."""
    if type(values) is list and (not values or (type(values[0]) is int and type(values[-1]) is int)):
        return values
    if hasattr(values, "tolist") and getattr(values, "ndim", None) == 1 and getattr(values, "dtype", None) is not None \
            and values.dtype.kind in "iu":
        return values.tolist()
    return list(map(int, values))


def as_pack_input(sample: Any, index: int = 0) -> PackInput:
    """A ``labels.Sample``, a trainer row (``{"id", "input_ids", "labels"}``) or a ``PackInput`` as a ``PackInput``.

    Example: as_pack_input({"input_ids": [5, 9], "labels": [-100, 9]}, 3) -> PackInput("sample-3", [5, 9], [-100, 9]).
    """
    if isinstance(sample, PackInput):
        return sample
    get = sample.get if isinstance(sample, Mapping) else (lambda key, default=None: getattr(sample, key, default))
    ids, labels = _int_list(get("input_ids")), get("labels")
    labels = list(ids) if labels is None else _int_list(labels)
    if len(labels) != len(ids):
        raise ValueError(f"sample {index}: {len(ids)} input_ids but {len(labels)} labels")
    sid = get("id") or f"sample-{index}"
    return PackInput(str(sid), ids, labels, get("conversation_id") or str(sid))


@dataclass(frozen=True)
class PackOptions:
    """How to pack and collate. ``max_length`` is TRL's ``SFTConfig.max_length`` (the packed sequence length);
    ``batch_size`` packed sequences make a micro-batch; ``map_batch_size`` samples are packed together (None: all);
    ``pad_token_id`` fills padding; ``max_padding_share``: ``packing-padding`` fires above it."""

    max_length: int
    strategy: str = "bfd"
    padding_free: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    map_batch_size: int | None = TRL_MAP_BATCH_SIZE
    pad_to_multiple_of: int | None = None
    pad_token_id: int = 0
    max_padding_share: float = DEFAULT_MAX_PADDING_SHARE

    def __post_init__(self) -> None:
        if self.strategy not in PACKING_STRATEGIES:
            raise ValueError(f"unknown packing strategy {self.strategy!r}; choose one of: "
                             f"{', '.join(PACKING_STRATEGIES)}")
        for name in ("max_length", "batch_size", "map_batch_size", "pad_to_multiple_of"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a whole number above 0, got {value!r}")

    @property
    def layout(self) -> str:
        return "padding_free" if self.padding_free else "padded"


# --- packing lengths, as TRL does --------------------------------------------------------------------------------

Run = tuple[int, int, int]  # (sample, start, end): tokens start..end-1 of one sample


def _best_fit_decreasing(sizes: Sequence[int], capacity: int) -> list[list[int]]:
    """Bins of item indices, TRL's ``_pack_bfd`` loop without its segment tree: items longest first (a stable sort, so
    ties keep input order), each into the bin with the smallest free space that fits it (oldest such bin first), or a
    new bin. Example: sizes [4, 2, 3, 1], capacity 4 -> [[0], [2, 3], [1]]."""
    order = sorted(range(len(sizes)), key=sizes.__getitem__, reverse=True)  # stable: ties keep input order
    bins: list[list[int]] = []
    free: list[int] = []  # distinct free spaces 0 < space < capacity that some bin has, ascending
    waiting: dict[int, deque[int]] = {}  # free space -> bins that have it, oldest first
    for i in order:
        size = sizes[i]
        k = bisect_left(free, size)
        if k < len(free):
            space = free[k]
            b = waiting[space].popleft()
            if not waiting[space]:
                del free[k]
        else:
            space, b = capacity, len(bins)
            bins.append([])
        bins[b].append(i)
        space -= size
        if space > 0:
            queue = waiting.setdefault(space, deque())
            if not queue:
                insort(free, space)
            queue.append(b)
    return bins


def pack_lengths(lengths: Sequence[int], max_length: int, strategy: str = "bfd") -> list[list[Run]]:
    """Pack samples of the given lengths into sequences of at most ``max_length`` tokens, as TRL's ``pack_dataset``
    does on one ``map`` batch. Returns, per packed sequence, its runs ``(sample, start, end)`` in order.

    Example (TRL's docstring): pack_lengths([5, 2, 3, 1], 4, "bfd") -> [[(0, 0, 4)], [(2, 0, 3), (3, 0, 1)],
    [(1, 0, 2)]]; with "bfd_split" the second sequence is [(2, 0, 3), (0, 4, 5)] and the third [(1, 0, 2), (3, 0, 1)].
    """
    if strategy not in PACKING_STRATEGIES:
        raise ValueError(f"unknown packing strategy {strategy!r}; choose one of: {', '.join(PACKING_STRATEGIES)}")
    if max_length < 1:
        raise ValueError(f"max_length must be above 0, got {max_length}")
    if strategy == "wrapped":
        sequences: list[list[Run]] = []
        current: list[Run] = []
        fill = 0
        for s, n in enumerate(lengths):
            start = 0
            while start < n:
                take = min(n - start, max_length - fill)
                current.append((s, start, start + take))
                start, fill = start + take, fill + take
                if fill == max_length:
                    sequences.append(current)
                    current, fill = [], 0
        return sequences + ([current] if current else [])
    pieces: list[Run] = []  # TRL's examples after truncation or splitting; empty samples are filtered out first
    for s, n in enumerate(lengths):
        if n <= 0:
            continue
        if strategy == "bfd":
            pieces.append((s, 0, min(n, max_length)))
        else:
            pieces.extend((s, a, min(a + max_length, n)) for a in range(0, n, max_length))
    bins = _best_fit_decreasing([end - start for _, start, end in pieces], max_length)
    return [[pieces[i] for i in b] for b in bins]


def position_ids_from_seq_lengths(seq_lengths: Sequence[int]) -> list[int]:
    """Position ids that restart at 0 at every piece, as TRL's collator builds them.
    Example: [3, 1, 2] -> [0, 1, 2, 0, 0, 1]."""
    return list(chain.from_iterable(map(range, seq_lengths)))


# --- the packed result -------------------------------------------------------------------------------------------

class Piece(NamedTuple):
    """Tokens ``start..end-1`` of sample ``sample`` (an index into ``Packing.samples``), at ``offset`` in a sequence."""

    sample: int
    start: int
    end: int
    offset: int

    @property
    def length(self) -> int:
        return self.end - self.start


class PackedSequence:
    """One row of the packed dataset, as ``pack_dataset`` writes it, plus where every token came from.

    ``seq_lengths`` is TRL's column (None for wrapped, which writes none); ``position_ids`` are what the padding-free
    collator builds from it; ``token_samples[t]`` / ``token_positions[t]``: the sample of token t and its index there.
    ``input_ids`` and ``labels`` are built when the sequence is (copies of the samples' slices); the three per-token
    lists derived from the pieces are built on first read, so packing costs no Python step per token.

    Example: pieces [Piece(0, 0, 2, 0), Piece(1, 3, 4, 2)] -> seq_lengths [2, 1], position_ids [0, 1, 0],
    token_samples [0, 0, 1], token_positions [0, 1, 3].
    """

    __slots__ = ("index", "pieces", "input_ids", "labels", "seq_lengths", "_derived")

    def __init__(self, index: int, pieces: list[Piece], input_ids: list[int], labels: list[int],
                 seq_lengths: list[int] | None) -> None:
        self.index, self.pieces, self.input_ids, self.labels = index, pieces, input_ids, labels
        self.seq_lengths = seq_lengths
        self._derived: dict[str, list[int]] = {}

    @property
    def length(self) -> int:
        return len(self.input_ids)

    @property
    def position_ids(self) -> list[int]:
        if "position_ids" not in self._derived:
            self._derived["position_ids"] = position_ids_from_seq_lengths(
                self.seq_lengths if self.seq_lengths is not None else [self.length])
        return self._derived["position_ids"]

    @property
    def token_samples(self) -> list[int]:
        if "token_samples" not in self._derived:
            out: list[int] = []
            for p in self.pieces:
                out += [p.sample] * p.length
            self._derived["token_samples"] = out
        return self._derived["token_samples"]

    @property
    def token_positions(self) -> list[int]:
        if "token_positions" not in self._derived:
            self._derived["token_positions"] = list(chain.from_iterable(range(p.start, p.end) for p in self.pieces))
        return self._derived["token_positions"]

    def to_record(self, samples: Sequence[PackInput]) -> dict[str, Any]:
        """The packed.jsonl row: input_ids, labels, position_ids, seq_lengths (wrapped: the sequence's length, the one
        segment its positions describe), sample_ids (one per piece, in order) and sample_lengths (their tokens)."""
        return {"input_ids": list(self.input_ids), "labels": list(self.labels),
                "position_ids": list(self.position_ids),
                "seq_lengths": list(self.seq_lengths) if self.seq_lengths is not None else [self.length],
                "sample_ids": [samples[p.sample].id for p in self.pieces],
                "sample_lengths": [p.length for p in self.pieces]}


@dataclass
class SampleFate:
    """What packing did to one sample: where its tokens went (``placed``: (sequence, piece), in token order) and how
    many it lost (bfd keeps the first ``max_length`` tokens; an empty sample is dropped)."""

    sample: int
    id: str
    tokens: int
    labeled: int
    placed: list[tuple[int, Piece]] = field(default_factory=list)
    labeled_lost: int = 0

    @property
    def kept(self) -> int:
        return sum(p.length for _, p in self.placed)

    @property
    def lost(self) -> int:
        return self.tokens - self.kept

    @property
    def split(self) -> bool:
        return len(self.placed) > 1

    @property
    def dropped(self) -> bool:
        return not self.placed


@dataclass
class TrainerRow:
    """One row of one collated micro-batch, as the model receives it.

    ``labels`` are the ones the loss reads (after the collator); ``position_ids`` the ones the model uses (padded:
    0..n-1 over the row, which it builds itself); ``attention_mask`` is None in the padding-free layout;
    ``token_samples`` / ``token_positions`` are ``PADDING`` on padding; ``sequences`` / ``offsets``: the packed
    sequences in the row and where each starts.
    """

    batch: int
    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    attention_mask: list[int] | None
    token_samples: list[int]
    token_positions: list[int]
    sequences: list[int]
    offsets: list[int]

    @property
    def padding(self) -> int:
        return sum(1 for s in self.token_samples if s == PADDING)


@dataclass(frozen=True)
class PackingStats:
    """Totals. ``padding_share`` = padding / row slots of the collated rows; ``unpacked_padding_share``: the same
    without packing (samples cut to max_length, ``batch_size`` per batch, padded to the longest); ``fill``: packed
    tokens / (sequences x max_length); ``targets_*``: labeled tokens that are loss terms (a row's first token never
    is), unpacked and in the rows."""

    samples: int
    sequences: int
    batches: int
    tokens: int
    labeled: int
    packed_tokens: int
    tokens_lost: int
    labeled_lost: int
    truncated_samples: int
    split_samples: int
    dropped_samples: int
    padding: int
    row_tokens: int
    padding_share: float
    unpacked_padding_share: float
    fill: float
    targets_unpacked: int
    targets_packed: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class Packing:
    """The whole result: the inputs, the packed sequences, each sample's fate, the collated rows and the totals.
    ``batches[b]`` lists the sequences of micro-batch b. ``fates`` and ``rows`` (Python objects per sample and lists
    per token) are built on first read: ``pack`` itself only builds the sequences and the totals."""

    options: PackOptions
    samples: list[PackInput]
    sequences: list[PackedSequence]
    batches: list[list[int]]
    stats: PackingStats

    @cached_property
    def fates(self) -> list[SampleFate]:
        return _fates(self.samples, self.sequences)

    @cached_property
    def rows(self) -> list[TrainerRow]:
        return collate(self.sequences, self.options)[0]

    def records(self) -> Iterable[dict[str, Any]]:
        """packed.jsonl rows, one per packed sequence."""
        return (seq.to_record(self.samples) for seq in self.sequences)


def _sequence(index: int, runs: Sequence[Run], samples: Sequence[PackInput], strategy: str) -> PackedSequence:
    """One packed sequence from its runs: list slices and concatenation (C speed, no Python step per token)."""
    pieces, ids, labels = [], [], []
    for s, start, end in runs:
        x = samples[s]
        pieces.append(Piece(s, start, end, len(ids)))
        if start == 0 and end == len(x.input_ids):
            ids += x.input_ids
            labels += x.labels
        else:
            ids += x.input_ids[start:end]
            labels += x.labels[start:end]
    seq_lengths = None if strategy == "wrapped" else [p.end - p.start for p in pieces]
    return PackedSequence(index, pieces, ids, labels, seq_lengths)


def _labeled(labels: list[int]) -> int:
    return len(labels) - labels.count(IGNORE_INDEX)


def _fates(samples: Sequence[PackInput], sequences: Sequence[PackedSequence]) -> list[SampleFate]:
    """What packing did to each sample, from the sequences' pieces (labeled tokens counted over list slices)."""
    fates = [SampleFate(i, x.id, len(x.input_ids), x.num_labeled) for i, x in enumerate(samples)]
    for seq in sequences:
        for piece in seq.pieces:
            fates[piece.sample].placed.append((seq.index, piece))
    for fate in fates:
        if len(fate.placed) > 1:
            fate.placed.sort(key=lambda item: item[1].start)
        labels = samples[fate.sample].labels
        fate.labeled_lost = fate.labeled - sum(_labeled(labels[p.start:p.end]) for _, p in fate.placed)
    return fates


def _round_up(n: int, multiple: int | None) -> int:
    return n if not multiple else -(-n // multiple) * multiple


def collate(sequences: Sequence[PackedSequence], options: PackOptions) -> tuple[list[TrainerRow], list[list[int]]]:
    """Micro-batches of ``options.batch_size`` consecutive sequences, collated as TRL's collator does in the chosen
    layout. Returns the rows and, per micro-batch, its sequence indices.

    Example (padding-free, one batch of sequences [5, 9 | 7] and [4, 6] with seq_lengths [2, 1] and [2]) -> one row
    input_ids [5, 9, 7, 4, 6], position_ids [0, 1, 0, 0, 1], labels with positions 0, 2 and 3 set to IGNORE_INDEX.
    """
    size = options.batch_size
    batches = [[s.index for s in sequences[i:i + size]] for i in range(0, len(sequences), size)]
    rows: list[TrainerRow] = []
    for b, members in enumerate(batches):
        seqs = [sequences[i] for i in members]
        if options.padding_free:
            offsets = [sum(s.length for s in seqs[:k]) for k in range(len(seqs))]
            parts = [(s.input_ids, s.labels, s.position_ids, s.token_samples, s.token_positions) for s in seqs]
            ids, labels, pos, smp, tpos = ([x for part in parts for x in part[k]] for k in range(5))
            pad = _round_up(len(ids), options.pad_to_multiple_of) - len(ids)
            ids += [options.pad_token_id] * pad
            pos += [0] * pad
            smp += [PADDING] * pad
            tpos += [PADDING] * pad
            labels = [IGNORE_INDEX if p == 0 or s == PADDING else lab
                      for lab, p, s in zip(labels + [IGNORE_INDEX] * pad, pos, smp)]
            rows.append(TrainerRow(b, ids, labels, pos, None, smp, tpos, list(members), offsets))
            continue
        width = _round_up(max(s.length for s in seqs), options.pad_to_multiple_of)
        for s in seqs:
            pad = width - s.length
            rows.append(TrainerRow(b, s.input_ids + [options.pad_token_id] * pad, s.labels + [IGNORE_INDEX] * pad,
                                   list(range(width)), [1] * s.length + [0] * pad, s.token_samples + [PADDING] * pad,
                                   s.token_positions + [PADDING] * pad, [s.index], [0]))
    return rows, batches


def _blocks(n: int, size: int | None) -> list[range]:
    size = size or max(n, 1)
    return [range(a, min(a + size, n)) for a in range(0, n, size)]


def pack(samples: Iterable[Any], options: PackOptions) -> Packing:
    """Pack samples (``labels.Sample`` objects, trainer rows or ``PackInput``) as TRL does, and count.

    The sequences are list slices of the samples joined in C; the totals come from lengths, list counts and a look at
    each piece's first label (``_stats``); the per-sample fates and the collated rows are built when first read.

    >>> p = pack([{"id": "a", "input_ids": [1, 2, 3], "labels": [-100, 2, 3]},
    ...           {"id": "b", "input_ids": [4, 5], "labels": [-100, 5]}], PackOptions(max_length=8))
    >>> [(s.input_ids, s.seq_lengths, s.position_ids) for s in p.sequences]
    [([1, 2, 3, 4, 5], [3, 2], [0, 1, 2, 0, 1])]
    """
    inputs = [as_pack_input(s, i) for i, s in enumerate(samples)]
    sequences: list[PackedSequence] = []
    for block in _blocks(len(inputs), options.map_batch_size):
        lengths = [len(inputs[i].input_ids) for i in block]
        first = block.start
        for runs in pack_lengths(lengths, options.max_length, options.strategy):
            if first:
                runs = [(first + s, a, b) for s, a, b in runs]
            sequences.append(_sequence(len(sequences), runs, inputs, options.strategy))
    size = options.batch_size
    batches = [list(range(i, min(i + size, len(sequences)))) for i in range(0, len(sequences), size)]
    return Packing(options, inputs, sequences, batches, _stats(inputs, sequences, batches, options))


def _unpacked_padding(inputs: Sequence[PackInput], options: PackOptions) -> tuple[int, int]:
    """(padding, slots) without packing: samples cut to max_length, batch_size per batch, padded to the longest."""
    lengths = [min(len(x.input_ids), options.max_length) for x in inputs]
    padding = slots = 0
    for a in range(0, len(lengths), options.batch_size):
        batch = lengths[a:a + options.batch_size]
        width = _round_up(max(batch), options.pad_to_multiple_of)
        padding += sum(width - n for n in batch)
        slots += width * len(batch)
    return padding, slots


def _stats(inputs: Sequence[PackInput], sequences: Sequence[PackedSequence], batches: Sequence[Sequence[int]],
           options: PackOptions) -> PackingStats:
    """The totals without collating: the rows' padding from the batches' lengths, the loss terms from the labeled
    counts minus the labeled tokens at a row start (padded layout: each sequence's first token) or at position id 0
    (padding-free: each piece's first token; wrapped: each sequence's)."""
    lengths = [len(x.input_ids) for x in inputs]
    labeled = [x.num_labeled for x in inputs]
    tokens = sum(lengths)
    packed = sum(s.length for s in sequences)
    # per sample: pieces and tokens kept; labeled tokens packed (a whole sample's count is known: only the labels of
    # cut pieces are counted again)
    pieces_of = [0] * len(inputs)
    kept_of = [0] * len(inputs)
    labeled_packed = 0
    for seq in sequences:
        for p in seq.pieces:
            pieces_of[p.sample] += 1
            kept_of[p.sample] += p.end - p.start
            if p.end - p.start == lengths[p.sample]:
                labeled_packed += labeled[p.sample]
            else:
                labeled_packed += _labeled(inputs[p.sample].labels[p.start:p.end])
    padding = slots = 0
    for members in batches:
        seq_lengths = [sequences[i].length for i in members]
        if options.padding_free:
            total = sum(seq_lengths)
            width = _round_up(total, options.pad_to_multiple_of)
            padding, slots = padding + width - total, slots + width
        else:
            width = _round_up(max(seq_lengths), options.pad_to_multiple_of)
            padding += sum(width - n for n in seq_lengths)
            slots += width * len(seq_lengths)
    if options.padding_free and options.strategy != "wrapped":
        starts = sum(1 for s in sequences for p in s.pieces if s.labels[p.offset] != IGNORE_INDEX)
    else:
        starts = sum(1 for s in sequences if s.labels and s.labels[0] != IGNORE_INDEX)
    unpacked_padding, unpacked_slots = _unpacked_padding(inputs, options)
    return PackingStats(
        samples=len(inputs), sequences=len(sequences), batches=len(batches), tokens=tokens,
        labeled=sum(labeled), packed_tokens=packed, tokens_lost=tokens - packed,
        labeled_lost=sum(labeled) - labeled_packed,
        truncated_samples=sum(1 for n, k, c in zip(lengths, kept_of, pieces_of) if c and k < n),
        split_samples=sum(1 for c in pieces_of if c > 1), dropped_samples=sum(1 for c in pieces_of if not c),
        padding=padding, row_tokens=slots, padding_share=padding / slots if slots else 0.0,
        unpacked_padding_share=unpacked_padding / unpacked_slots if unpacked_slots else 0.0,
        fill=packed / (len(sequences) * options.max_length) if sequences else 0.0,
        targets_unpacked=sum(labeled) - sum(1 for x in inputs if x.labels and x.labels[0] != IGNORE_INDEX),
        targets_packed=labeled_packed - starts)


# --- gradient weights: unpacked vs packed -------------------------------------------------------------------------

Layout = tuple[list[list[Slot]], list[list[int]], list[list[int]]]  # rows, their labels, micro-batches of row indices


def unpacked_layout(packing: Packing) -> Layout:
    """The same samples without packing, as TRL trains them then: each its own row, cut to its first max_length
    tokens, ``batch_size`` rows per micro-batch."""
    n = packing.options.max_length
    rows = [[(s, p) for p in range(min(len(x.input_ids), n))] for s, x in enumerate(packing.samples)]
    labels = [list(x.labels[:n]) for x in packing.samples]
    return rows, labels, micro_batch_groups(len(rows), packing.options.batch_size)


def packed_layout(packing: Packing) -> Layout:
    """The collated rows (``Packing.rows``): their slots, the labels the loss reads, and the micro-batches."""
    rows = [[None if s == PADDING else (s, p) for s, p in zip(r.token_samples, r.token_positions)]
            for r in packing.rows]
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(packing.rows):
        groups.setdefault(r.batch, []).append(i)
    return rows, [list(r.labels) for r in packing.rows], list(groups.values())


def weights_before_after(packing: Packing, reduction: str) -> WeightsBeforeAfter:
    """The gradient weight of every sample token unpacked (``unpacked_layout``) and packed (``packed_layout``), under
    one of ``weights.REDUCTION_NAMES``; the samples form one optimizer step. Raises ValueError for a mean reduction
    when no token is a loss term.

    Example: samples with 1, 1 and 6 answer tokens, packed into one row, ``sample_mean``: the short answers' tokens go
    from 1/3 to 1/8, the long answer's from 1/18 to 1/8 (see ``packing_viz.worked_example``).
    """
    lengths = [len(x.input_ids) for x in packing.samples]
    (rows_b, labels_b, groups_b), (rows_a, labels_a, groups_a) = unpacked_layout(packing), packed_layout(packing)
    before = layout_weights(lengths, rows_b, labels_b, reduction, groups_b or None)
    after = layout_weights(lengths, rows_a, labels_a, reduction, groups_a or None)
    return WeightsBeforeAfter(reduction, before, after)


# --- attention: which implementations keep packed samples apart (verified in the sources named) -------------------

@dataclass(frozen=True)
class AttentionFact:
    """Whether ``implementations`` keep the samples of one row apart with the inputs of ``layout``.

    ``apart`` is True (they do), False (tokens attend across samples) or None (it depends on the kernel).
    Read in transformers 5.24 and TRL 1.16 (``source`` names the file and function).
    """

    layout: str
    implementations: str
    apart: bool | None
    how: str
    source: str


_MASKING = "src/transformers/masking_utils.py"
_FLASH = "src/transformers/modeling_flash_attention_utils.py"
ATTENTION_FACTS: tuple[AttentionFact, ...] = (
    AttentionFact(
        "padding_free", "flash_attention_2, flash_attention_3, kernels-community flash variants", True,
        "the varlen kernel runs once per sample: over the cu_seq_lens_q/k TRL's collator passes, or, without them, "
        "over the starts found in position_ids (batch of one row whose positions are not one increasing run)",
        f"{_FLASH}: _flash_attention_forward, _is_packed_sequence, prepare_fa_kwargs_from_position_ids; "
        "trl/trainer/sft_trainer.py: DataCollatorForLanguageModeling.torch_call"),
    AttentionFact(
        "padding_free", "sdpa, eager, flex_attention", True,
        "with no attention_mask and no cache (TRL's compute_loss passes use_cache=False), create_causal_mask finds the "
        "samples in position_ids (a new one wherever the position does not go up by 1) and ANDs a block-diagonal "
        "mask into the causal one",
        f"{_MASKING}: _preprocess_mask_arguments, find_packed_sequence_indices, packed_sequence_mask_function, "
        "create_causal_mask"),
    AttentionFact(
        "padding_free", "an attn_implementation not registered in ALL_MASK_ATTENTION_FUNCTIONS, or a model whose "
        "forward does not call create_causal_mask with position_ids (remote code)", None,
        "no mask is built for it (_preprocess_mask_arguments returns early): only the kernel itself can keep the "
        "samples apart", f"{_MASKING}: _preprocess_mask_arguments"),
    AttentionFact(
        "padded", "sdpa, eager, flex_attention", False,
        "an attention_mask is given, so packed sequences are never looked for: the mask is causal over the whole "
        "row (padding excluded), even when position_ids restart (TRL's return_position_ids); without them the model "
        "numbers the row 0..n-1",
        f"{_MASKING}: _preprocess_mask_arguments (only when attention_mask is None), create_causal_mask; "
        "models/llama/modeling_llama.py: LlamaModel.forward"),
    AttentionFact(
        "padded", "flash_attention_2, flash_attention_3, kernels-community flash variants", False,
        "the 2D attention_mask only marks padding: the kernel runs once per row (_upad_input), or, when the batch "
        "has no padding, flash_attention_mask returns None and the plain kernel runs over the whole row",
        f"{_FLASH}: _flash_attention_forward, _upad_input; {_MASKING}: flash_attention_mask"),
)


def attention_support(options: PackOptions) -> list[dict[str, Any]]:
    """The ``ATTENTION_FACTS`` of this layout as rows: implementations, keeps samples apart ("yes", "no", "depends"),
    how, source. wrapped writes no seq_lengths, so even the padding-free layout only separates whole packed sequences.

    Example: PackOptions(1024, "bfd", padding_free=True) -> [{"implementations": "flash_attention_2, ...",
    "apart": "yes", ...}, {"implementations": "sdpa, eager, flex_attention", "apart": "yes", ...}, {..."depends"}].
    """
    out = []
    for fact in ATTENTION_FACTS:
        if fact.layout != options.layout:
            continue
        apart = {True: "yes", False: "no", None: "depends"}[fact.apart]
        how = fact.how
        if options.strategy == "wrapped" and options.padding_free and fact.apart:
            apart = "no"
            how = ("wrapped writes no seq_lengths, so position_ids restart only where a packed sequence starts: " + how
                   + "; the samples inside one packed sequence are one sequence to it")
        out.append({"implementations": fact.implementations, "apart": apart, "how": how, "source": fact.source})
    return out


def layout_inputs(options: PackOptions) -> str:
    """What the collator hands the model in this layout, in one line."""
    if not options.padding_free:
        return ("one row per packed sequence, an attention_mask of 1s (0s on padding), no position_ids: positions run "
                "0..n-1 over the row")
    if options.strategy == "wrapped":
        return "one row per micro-batch, no attention_mask, position_ids restarting at each packed sequence only"
    return "one row per micro-batch, no attention_mask, position_ids restarting at 0 at every sample (seq_lengths)"


# --- checks: findings about packing ------------------------------------------------------------------------------

def _segments(row: TrainerRow, padding_free: bool) -> list[int]:
    """Per token, the attention segment a boundary-aware implementation gives it: padded rows are one segment;
    padding-free rows start a new one at every position id 0. Padding gets -1."""
    out, seg = [], -1
    for t, (s, p) in enumerate(zip(row.token_samples, row.position_ids)):
        if t == 0 or (padding_free and p == 0):
            seg += 1
        out.append(-1 if s == PADDING else seg)
    return out


def _sequence_at(row: TrainerRow, t: int) -> tuple[int, int]:
    """(packed sequence, offset in it) of token t of a row."""
    k = max(i for i, o in enumerate(row.offsets) if o <= t)
    return row.sequences[k], t - row.offsets[k]


def _row_findings(packing: Packing) -> dict[str, dict[int, dict[str, Any]]]:
    """code -> sample -> what was found, from the collated rows."""
    found: dict[str, dict[int, dict[str, Any]]] = {"cross-sample-prediction": {}, "cross-sample-attention": {},
                                                   "packing-label-masked": {}}
    samples = packing.samples
    for row in packing.rows:
        segs = _segments(row, packing.options.padding_free)
        seen: dict[int, list[int]] = {}  # segment -> samples in order of appearance
        for t, (s, p) in enumerate(zip(row.token_samples, row.token_positions)):
            if s == PADDING:
                continue
            members = seen.setdefault(segs[t], [])
            if s not in members:
                if members:
                    hit = found["cross-sample-attention"].setdefault(s, {"others": [], "sequences": []})
                    hit["others"] += [m for m in members if m not in hit["others"]]
                    hit["sequences"].append(_sequence_at(row, t)[0])
                members.append(s)
            if samples[s].labels[p] != IGNORE_INDEX and row.labels[t] == IGNORE_INDEX:
                found["packing-label-masked"].setdefault(s, {"positions": []})["positions"].append(p)
            prev = row.token_samples[t - 1] if t else PADDING
            if t and prev != s and prev != PADDING and row.labels[t] != IGNORE_INDEX:
                seq, offset = _sequence_at(row, t)
                hit = found["cross-sample-prediction"].setdefault(s, {"positions": [], "where": []})
                hit["positions"].append(p)
                hit["where"].append({"previous_sample": samples[prev].id, "sequence": seq, "offset": offset,
                                     "token_id": row.input_ids[t]})
    return found


def _names(ids: Sequence[str], limit: int = 3) -> str:
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def check_packing(packing: Packing) -> list[Finding]:
    """Every packing finding: per sample (in sample order: truncation, split, masked labels, cross-sample prediction
    and attention), then the dataset-level ones (padding, attention explanation). Positions are token indices into
    the sample's own ``input_ids``; ``details`` say where in the packed sequences.

    Example: padded layout, all-tokens labels, samples a and b in one sequence -> ``cross-sample-prediction`` on b's
    token 0 ("... right after the last token of a ..."), ``cross-sample-attention`` on b.
    """
    per_sample, dataset = packing_findings(packing)
    return [f for fs in per_sample for f in fs] + dataset


def packing_findings(packing: Packing) -> tuple[list[list[Finding]], list[Finding]]:
    """``check_packing`` split in two: the findings of each sample (``[s]`` for ``packing.samples[s]``) and the
    dataset-level ones (no sample)."""
    opts, samples = packing.options, packing.samples
    rows = _row_findings(packing)
    per_sample: list[list[Finding]] = []
    for fate in packing.fates:
        x = samples[fate.sample]
        kw = {"sample_id": x.id, "conversation_id": x.conversation_id}
        out: list[Finding] = []
        per_sample.append(out)
        if fate.dropped:
            out.append(finding("packing-truncates", f"{x.id} has no tokens: pack_dataset drops it", **kw))
        elif fate.lost:
            out.append(finding(
                "packing-truncates",
                f"bfd keeps the first {fate.kept} of the {fate.tokens} tokens of {x.id}: {fate.lost} tokens lost, "
                f"{fate.labeled_lost} of them labeled", positions=[fate.kept],
                details={"tokens_lost": fate.lost, "labeled_lost": fate.labeled_lost, "kept": fate.kept}, **kw))
        if fate.split:
            later = [p for _, p in fate.placed[1:]]
            labeled = sum(1 for p in later for lab in x.labels[p.start:p.end] if lab != IGNORE_INDEX)
            why = ("position_ids restart at 0 at each piece, so the model reads every piece as a sample of its own"
                   if opts.strategy == "bfd_split" else "each piece goes on in the next packed sequence")
            out.append(finding(
                "packing-splits-sample",
                f"{x.id} ({fate.tokens} tokens) is cut into {len(fate.placed)} pieces in packed sequences "
                f"{', '.join(str(k) for k, _ in fate.placed)}; {why}: tokens {later[0].start}.. are trained without "
                f"what precedes them ({labeled} labeled tokens)",
                positions=[p.start for p in later],
                details={"pieces": [{"sequence": k, "start": p.start, "end": p.end} for k, p in fate.placed],
                         "labeled_without_context": labeled}, **kw))
        masked = rows["packing-label-masked"].get(fate.sample)
        if masked:
            pos = sorted(masked["positions"])
            first = sum(1 for p in pos if p == 0)
            parts = (["its first token (never a loss term anyway)"] if first else []) + (
                [f"the first token of {len(pos) - first} later piece(s) (no longer trained)"] if len(pos) > first
                else [])
            out.append(finding(
                "packing-label-masked",
                f"the padding-free collator sets {len(pos)} label(s) of {x.id} to {IGNORE_INDEX} (position id 0): "
                + " and ".join(parts), positions=pos, details={"sample_start": first, "piece_start": len(pos) - first},
                **kw))
        pred = rows["cross-sample-prediction"].get(fate.sample)
        if pred:
            w = pred["where"][0]
            out.append(finding(
                "cross-sample-prediction",
                f"token {pred['positions'][0]} of {x.id} (id {w['token_id']}) is labeled and comes right after the "
                f"last token of {w['previous_sample']} (packed sequence {w['sequence']}, offset {w['offset']}): the "
                f"loss trains the model to continue {w['previous_sample']} with it; boundary-aware attention would "
                f"let that prediction see only {w['previous_sample']}, a mask over the whole row everything before it"
                + (f" ({len(pred['positions'])} such tokens)" if len(pred["positions"]) > 1 else ""),
                positions=pred["positions"], details={"where": pred["where"]}, **kw))
        att = rows["cross-sample-attention"].get(fate.sample)
        if att:
            others = [samples[m].id for m in att["others"]]
            why = ("the padded layout's attention_mask marks only padding"
                   if not opts.padding_free else "wrapped writes no seq_lengths, so position_ids do not restart there")
            out.append(finding(
                "cross-sample-attention",
                f"{x.id} follows {_names(others)} in packed sequence {att['sequences'][0]} and {why}: its tokens "
                "attend to the other samples under every attention implementation",
                details={"other_samples": others, "sequences": att["sequences"]}, **kw))
    return per_sample, _dataset_findings(packing)


def _dataset_findings(packing: Packing) -> list[Finding]:
    opts, st = packing.options, packing.stats
    out = []
    if st.row_tokens and st.padding_share > opts.max_padding_share:
        out.append(finding(
            "packing-padding",
            f"{st.padding_share:.1%} of the {st.row_tokens:,} token slots of the collated rows are padding "
            f"({opts.layout} layout, {opts.batch_size} packed sequences per micro-batch, {st.sequences} sequences); "
            f"without packing: {st.unpacked_padding_share:.1%}",
            details={"padding": st.padding, "row_tokens": st.row_tokens, "padding_share": round(st.padding_share, 6),
                     "unpacked_padding_share": round(st.unpacked_padding_share, 6)}))
    if any(len(seq.pieces) > 1 for seq in packing.sequences):
        rows = attention_support(opts)
        kept = [r["implementations"] for r in rows if r["apart"] == "yes"]
        not_kept = [r["implementations"] for r in rows if r["apart"] == "no"]
        text = f"{opts.layout} layout ({layout_inputs(opts)}): "
        text += ("samples kept apart by " + "; ".join(kept)) if kept else "no attention implementation keeps them apart"
        if not_kept and kept:
            text += "; not by " + "; ".join(not_kept)
        elif not_kept:
            text += " (" + "; ".join(not_kept) + ")"
        out.append(finding("packing-attention", text + " (transformers 5.24 source)",
                           details={"layout": opts.layout, "strategy": opts.strategy, "facts": rows}))
    return out


# --- the report --------------------------------------------------------------------------------------------------

def packing_summary(packing: Packing) -> dict[str, Any]:
    """The ``packing`` section of the report: options, totals, what the layout gives the model, attention facts."""
    return {"options": asdict(packing.options), "layout": packing.options.layout, **packing.stats.to_dict(),
            "inputs": layout_inputs(packing.options), "attention": attention_support(packing.options)}


def count_findings(report: Report, findings: Iterable[Finding]) -> None:
    """Count findings that belong to no input record (dataset-level) in ``report``: per check, ``findings`` and the
    first few in full; ``records`` and ``samples`` stay as they are."""
    for f in findings:
        s = report.checks[f.code]
        s.findings += 1
        if len(s.first) < report.max_examples:
            s.first.append(f.to_dict())
