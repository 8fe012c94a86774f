"""The packing step of the benchmark: ``inspector.train.packing.pack`` against TRL's ``pack_dataset`` on the same
samples, in one run.

The samples are the assistant-only labels our engine builds for ``--pack-n`` generated conversations (20,000 by
default) with the first tokenizer, as plain rows ``{"id", "input_ids", "labels"}`` of Python lists, the form a
trainer's tokenized dataset hands over. Per strategy (bfd, bfd_split, wrapped), ``--pack-max-length`` 1024, TRL's
default ``map`` batch of 1,000 samples on both sides, in rounds (ours, TRL, TRL's map alone, ours, ...), fastest
of ``--repeat`` kept:

- ours: ``pack(rows, PackOptions(max_length, strategy))`` and its totals (``Packing.stats``): the sequences with their
  input_ids, labels and seq_lengths (position_ids, per-sample fates and collated rows are built when read);
- TRL: ``pack_dataset(Dataset.from_dict(columns), max_length, strategy)``: from the same Python lists to the packed
  dataset (TRL packs an Arrow table, so the lists must become one);
- TRL's map alone (for reference, no ratio): ``pack_dataset`` on a Dataset built before the clock starts.

Before the ratios count, the outputs are compared (outside the timed region): every packed sequence's input_ids,
labels and seq_lengths, and the position_ids TRL's collator builds from seq_lengths
(``DataCollatorForLanguageModeling.get_position_ids_from_packed_seq_lengths``; wrapped: 0..n-1), must be identical.

Printed as ``ratio pack/TRL (packing vs TRL pack_dataset, bfd) = 2.10  target >= 1.00  MET`` (speed over speed).
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any, Callable

PACK_STRATEGIES = ("bfd", "bfd_split", "wrapped")
PACK_TARGET = 1.0
DEFAULT_PACK_N = 20_000
QUICK_PACK_N = 200
DEFAULT_PACK_MAX_LENGTH = 1024


@dataclass
class PackTiming:
    strategy: str
    ours: float | None = None
    trl: float | None = None
    trl_map: float | None = None
    identical: str = "not compared"

    @property
    def ratio(self) -> float | None:
        return self.trl / self.ours if self.ours and self.trl else None


@dataclass
class PackRun:
    samples: int = 0
    tokens: int = 0
    max_length: int = DEFAULT_PACK_MAX_LENGTH
    tokenizer: str = ""
    build_seconds: float = 0.0
    load: tuple[str, str] = ("", "")
    timings: list[PackTiming] = field(default_factory=list)
    skipped: str | None = None


def _clock(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    gc.freeze()  # the harness's rows stay out of the collector's passes, as in the other steps
    try:
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out
    finally:
        gc.unfreeze()


def _compare(ours: Any, theirs: Any, strategy: str, position_ids: Callable | None) -> str:
    """'identical (N sequences)' or where the first difference is."""
    seqs = ours.sequences
    if len(seqs) != len(theirs):
        return f"DIFFERENT: {len(seqs)} sequences, TRL {len(theirs)}"
    for name in ("input_ids", "labels") + (("seq_lengths",) if strategy != "wrapped" else ()):
        col = theirs[name]
        bad = next((k for k, s in enumerate(seqs) if getattr(s, name) != col[k]), None)
        if bad is not None:
            return f"DIFFERENT: {name} of packed sequence {bad}"
    if strategy == "wrapped":
        if "seq_lengths" in theirs.column_names:
            return "DIFFERENT: TRL wrote seq_lengths for wrapped"
        trl_pos = [list(range(len(x))) for x in theirs["input_ids"]]
    elif position_ids is not None:
        trl_pos = [t.tolist() for t in position_ids(theirs["seq_lengths"])]
    else:
        trl_pos = None
    if trl_pos is not None:
        bad = next((k for k, s in enumerate(seqs) if s.position_ids != trl_pos[k]), None)
        if bad is not None:
            return f"DIFFERENT: position_ids of packed sequence {bad}"
    return f"identical ({len(seqs):,} sequences" + (", position_ids included)" if trl_pos is not None else ")")


def bench_packing(setup: Any, tokenizer: str, convs: list, max_length: int, repeat: int,
                  load_average: Callable[[], str]) -> PackRun:
    """Time ours and TRL's packing on the samples of ``convs`` (see the module docstring)."""
    run = PackRun(max_length=max_length, tokenizer=tokenizer)
    try:
        import datasets
        from trl.data_utils import pack_dataset
    except Exception as exc:
        run.skipped = f"trl is not installed ({type(exc).__name__}: {exc}; pip install -r requirements-trl.txt)"
        return run
    try:
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
        position_ids = DataCollatorForLanguageModeling.get_position_ids_from_packed_seq_lengths
    except Exception:  # an older or newer TRL: compare without its position ids
        position_ids = None
    from inspector.labels.engine import LabelEngine, LabelOptions
    from inspector.train.packing import PackOptions, pack

    t0 = time.perf_counter()
    samples, _errors = LabelEngine(setup).build(convs, LabelOptions())
    rows = [{"id": s.id, "input_ids": s.ids_array().tolist(), "labels": s.labels_array().tolist()} for s in samples]
    del samples
    run.build_seconds = time.perf_counter() - t0
    run.samples, run.tokens = len(rows), sum(len(r["input_ids"]) for r in rows)
    columns = {"input_ids": [r["input_ids"] for r in rows], "labels": [r["labels"] for r in rows]}
    datasets.disable_progress_bars()
    prebuilt = datasets.Dataset.from_dict(columns)
    run.load = (load_average(), "")
    for strategy in PACK_STRATEGIES:
        t = PackTiming(strategy)
        steps = (("ours", lambda: _with_stats(pack(rows, PackOptions(max_length, strategy)))),
                 ("trl", lambda: pack_dataset(datasets.Dataset.from_dict(columns), max_length, strategy)),
                 ("trl_map", lambda: pack_dataset(prebuilt, max_length, strategy)))
        for rnd in range(max(repeat, 1)):
            outs = {}
            for name, fn in steps:
                dt, outs[name] = _clock(fn)
                best = getattr(t, name)
                setattr(t, name, dt if best is None else min(best, dt))
            if rnd == 0:
                t.identical = _compare(outs["ours"], outs["trl"], strategy, position_ids)
            del outs
        run.timings.append(t)
    run.load = (run.load[0], load_average())
    return run


def _with_stats(packing: Any) -> Any:
    packing.stats  # the totals are part of what ours delivers
    return packing


def ratio_line(t: PackTiming) -> str:
    what = f"packing vs TRL pack_dataset, {t.strategy}"
    if t.ratio is None:
        return f"ratio pack/TRL ({what}) = n/a  target >= {PACK_TARGET:.2f}  NOT MEASURED"
    ok = t.ratio >= PACK_TARGET and t.identical.startswith("identical")
    return (f"ratio pack/TRL ({what}) = {t.ratio:.2f}  target >= {PACK_TARGET:.2f}  "
            f"{'MET' if ok else 'MISSED'}")


def print_packing(run: PackRun) -> None:
    if run.skipped:
        print(f"\n== packing: SKIPPED: {run.skipped}")
        return
    print(f"\n== packing: {run.samples:,} samples ({run.tokens:,} tokens, {run.tokenizer}, assistant-only; built in "
          f"{run.build_seconds:.1f} s), max_length {run.max_length}, load average {run.load[0]} -> {run.load[1]}")
    for t in run.timings:
        print(f"   {t.strategy:<9} ours {t.ours:.3f} s, TRL {t.trl:.3f} s (its map alone {t.trl_map:.3f} s); "
              f"{t.identical}")
    for t in run.timings:
        print("   " + ratio_line(t))


def packing_markdown(run: PackRun | None) -> list[str]:
    if run is None:
        return []
    if run.skipped:
        return ["## Packing vs TRL", "", f"skipped: {run.skipped}", ""]
    lines = ["## Packing vs TRL", "",
             f"{run.samples:,} samples ({run.tokens:,} tokens; assistant-only labels from {run.tokenizer}), "
             f"max_length {run.max_length}, map batches of 1,000; load average {run.load[0]} at the start, "
             f"{run.load[1]} at the end. Ours: `pack(rows, PackOptions(...))` and its totals; TRL: "
             "`pack_dataset(Dataset.from_dict(columns), ...)` from the same lists; TRL's map alone on a prebuilt "
             "Dataset for reference (see bench/packing.py).", "",
             "| strategy | ours s | TRL s | TRL map alone s | ratio (TRL s / ours s) | outputs |", "|---|---:|---:|---:|---:|---|"]
    for t in run.timings:
        lines.append(f"| {t.strategy} | {t.ours:.3f} | {t.trl:.3f} | {t.trl_map:.3f} | "
                     f"{t.ratio:.2f} | {t.identical} |")
    return lines + [""]


def packing_targets(run: PackRun | None) -> list[str]:
    if run is None or run.skipped:
        return []
    return [f"- pack/TRL {t.strategy} >= {PACK_TARGET:g}: " + ratio_line(t).rsplit("  ", 1)[1]
            + ("" if t.ratio is None else f" ({t.ratio:.2f})") for t in run.timings]
