"""Compare, token by token, what each recorded trainer trains with what the inspector's own export trains.

For every recording ``tests/data/trainers/<trainer>_<case>.jsonl`` the script builds our labels for the same
conversations (``python -m inspector export ... --strategy assistant-only``, run in-process through
``inspector.cli.main``) with the same tokenizer and the original chat template the trainer started from, then lines
the two token sequences up (``difflib.SequenceMatcher`` on the ids) and counts:

- on tokens both sequences share: tokens the trainer trains and we do not ("trainer only"), and the reverse;
- on tokens only the trainer's sequence has (its own or swapped-in template text): how many it trains.

Each difference is keyed by the token's text and its left neighbour, e.g. ``'\\n' after '<|im_end|>'``, with the
number of tokens and of records, so a statement like "TRL trains the newline after every <|im_end|>" comes with its
count. A worked example with tiny numbers: ours ``[a b <e> \\n]`` trained ``[0 1 1 0]``, the trainer's
``[a b <e> \\n]`` trained ``[0 1 1 1]`` -> one "trainer only" token, ``'\\n' after '<e>'``, in 1 record.

    SFT_CORPUS=/work/shared/corpus python scripts/compare_trainers.py [--json OUT.json]

Prints a table per recording; the numbers in tests/data/trainers/README.md come from this output.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from collections import Counter, defaultdict
from difflib import SequenceMatcher
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from trainer_conversations import build_conversations, corpus_dir  # noqa: E402

DATA = ROOT / "tests" / "data" / "trainers"
QWEN25 = "Qwen-Qwen2.5-7B-Instruct.jinja"
LLAMA31 = "meta-llama-Llama-3.1-8B-Instruct.jinja"
IGNORE = -100

# recording file stem -> (tokenizer folder, the original template our export uses)
REFERENCE = {
    "trl_qwen25_assistant_only": ("qwen2", QWEN25),
    "trl_qwen3_assistant_only": ("qwen2", "trl:qwen3.jinja"),
    "trl_qwen25_completion_only": ("qwen2", QWEN25),
    "trl_text_completion_only": ("qwen2", QWEN25),
}


def reference_for(stem: str) -> tuple[str, str]:
    if stem in REFERENCE:
        return REFERENCE[stem]
    if "qwen3" in stem:
        return "qwen2", "trl:qwen3.jinja"
    if "llama3" in stem:
        return "llama-bpe", LLAMA31
    return "qwen2", QWEN25


def template_path(name: str) -> Path:
    if name.startswith("trl:"):
        import trl

        return Path(trl.__file__).parent / "chat_templates" / name[4:]
    return corpus_dir() / "templates" / name


def our_labels(tokenizer: str, template: str, convs: list[dict], cache: dict) -> dict[str, dict]:
    """id -> our exported sample (input_ids, labels), from the inspector's export command run in-process."""
    key = (tokenizer, template)
    if key not in cache:
        from inspector import cli

        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "convs.jsonl"
            data.write_text("".join(json.dumps(c) + "\n" for c in convs), encoding="utf-8")
            argv = ["export", str(data), "--tokenizer", str(corpus_dir() / "tokenizers" / tokenizer),
                    "--chat-template", str(template_path(template)), "--strategy", "assistant-only",
                    "--out", str(Path(tmp) / "out"), "--no-progress"]
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                code = cli.main(argv)
            if code not in (0, 1):
                raise SystemExit(f"export failed ({code}): {argv}")
            rows = [json.loads(x) for x in (Path(tmp) / "out" / "accepted.jsonl").read_text().splitlines()]
        cache[key] = {r["id"]: r for r in rows}
    return cache[key]


def _name(tok, i: int) -> str:
    return repr(tok.convert_ids_to_tokens(i).replace("Ċ", "\n").replace("Ġ", " "))


def compare_record(tok, ours: dict, theirs: dict) -> dict:
    """Counts of the differences between our labels and the trainer's on one conversation."""
    a, b = ours["input_ids"], theirs["input_ids"]
    ta = [x != IGNORE for x in ours["labels"]]
    tb = [x != IGNORE for x in theirs["labels"]]
    out = {"same_ids": a == b, "ours_trained": sum(ta), "trainer_trained": sum(tb), "trainer_only": Counter(),
           "ours_only": Counter(), "extra_trained": Counter(), "extra_untrained": 0, "missing_trained": Counter()}
    for op, i1, i2, j1, j2 in SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            for i, j in zip(range(i1, i2), range(j1, j2)):
                prev = _name(tok, b[j - 1]) if j else "<start>"
                if tb[j] and not ta[i]:
                    out["trainer_only"][f"{_name(tok, b[j])} after {prev}"] += 1
                elif ta[i] and not tb[j]:
                    out["ours_only"][f"{_name(tok, a[i])} after {prev}"] += 1
            continue
        for j in range(j1, j2):  # text only the trainer's sequence has
            prev = _name(tok, b[j - 1]) if j else "<start>"
            if tb[j]:
                out["extra_trained"][f"{_name(tok, b[j])} after {prev}"] += 1
            else:
                out["extra_untrained"] += 1
        for i in range(i1, i2):  # our text the trainer's sequence lacks
            if ta[i]:
                out["missing_trained"][f"{_name(tok, a[i])}"] += 1
    return out


def compare_file(path: Path, convs: list[dict], cache: dict) -> dict:
    from transformers import AutoTokenizer

    records = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    tokenizer, template = reference_for(path.stem)
    tokenizer = records[0].get("tokenizer", tokenizer)
    if str(records[0].get("chat_template", "")).endswith(".jinja"):  # the trainer started from this template
        template = records[0]["chat_template"]
    tok = AutoTokenizer.from_pretrained(str(corpus_dir() / "tokenizers" / tokenizer))
    by_id = {c["id"]: c for c in convs}
    ours = our_labels(tokenizer, template, [by_id[r["id"]] for r in records if r["id"] in by_id], cache)
    total = {"file": path.name, "records": len(records), "reference_template": template, "same_ids": 0,
             "ours_trained": 0, "trainer_trained": 0, "extra_untrained": 0}
    counters = {k: Counter() for k in ("trainer_only", "ours_only", "extra_trained", "missing_trained")}
    in_records = {k: Counter() for k in counters}
    for rec in records:
        if rec["id"] not in ours:
            continue
        diff = compare_record(tok, ours[rec["id"]], rec)
        for k in ("same_ids", "ours_trained", "trainer_trained", "extra_untrained"):
            total[k] += int(diff[k])
        for k in counters:
            counters[k].update(diff[k])
            in_records[k].update(set(diff[k]))
    for k in counters:
        total[k] = {pat: {"tokens": n, "records": in_records[k][pat]} for pat, n in counters[k].most_common()}
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="recordings (default: every tests/data/trainers/*.jsonl)")
    parser.add_argument("--json", help="also write the full comparison here")
    args = parser.parse_args()
    convs = build_conversations()
    cache: dict = {}
    results = []
    for path in [Path(f) for f in args.files] or sorted(DATA.glob("*.jsonl")):
        res = compare_file(path, convs, cache)
        results.append(res)
        print(f"\n== {res['file']}  (vs ours with {res['reference_template']})")
        print(f"   records {res['records']}, identical input_ids {res['same_ids']}, trained tokens: "
              f"trainer {res['trainer_trained']}, ours {res['ours_trained']}")
        sums = {k: sum(v["tokens"] for v in res[k].values()) for k in ("trainer_only", "ours_only", "extra_trained",
                                                                         "missing_trained")}
        print(f"   totals: trainer-only trained {sums['trainer_only']}, ours-only trained {sums['ours_only']}, "
              f"trained text only the trainer has {sums['extra_trained']}, our trained text it lacks "
              f"{sums['missing_trained']}")
        for k, label in [("trainer_only", "trained by the trainer, not by us"),
                         ("ours_only", "trained by us, not by the trainer"),
                         ("extra_trained", "trainer-only text, trained"),
                         ("missing_trained", "our trained text the trainer's sequence lacks")]:
            for pat, n in list(res[k].items())[:8]:
                print(f"   {label}: {pat}: {n['tokens']} tokens in {n['records']} records")
        print(f"   trainer-only text, untrained: {res['extra_untrained']} tokens")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
