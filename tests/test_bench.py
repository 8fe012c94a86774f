"""The benchmark script runs end to end on a small input and prints what it promises. No timing is asserted.

``python bench/run.py --quick`` on a few dozen conversations and a small streamed check: every step line, the
three ratio lines per tokenizer, and the streamed check's memory line. The generator is deterministic.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def test_generator_is_deterministic_and_mixed():
    from bench.data import describe, generate_records

    a = list(generate_records(200, seed=3))
    assert a == list(generate_records(200, seed=3))
    assert a != list(generate_records(200, seed=4))
    d = describe(a)
    assert set(d["profiles"]) == {"ner", "chat", "balanced", "terse"}
    assert 0 < d["with_system"] < 200
    exchanges = [sum(m["role"] == "user" for m in r["messages"]) for r in a]
    assert min(exchanges) == 1 and max(exchanges) == 8
    # Pile-NER shape: a long passage first, then short questions with short JSON-list answers
    ner = [[m for m in r["messages"] if m["role"] != "system"] for r in a if r["profile"] == "ner"]
    assert ner and all(m[0]["content"].startswith("Text: ") and len(m[0]["content"]) > 200 for m in ner)
    answers = [x["content"] for m in ner for x in m[3::2]]
    assert answers and all(x.startswith("[") and x.endswith("]") and len(x) < 120 for x in answers)
    # and the reverse: short questions, long answers
    chat = [r["messages"][-1]["content"] for r in a if r["profile"] == "chat"]
    assert chat and min(len(x) for x in chat) > 200


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    corpus = os.environ.get("SFT_CORPUS")
    tokenizers = "deepseek,qwen2" if corpus and (Path(corpus) / "tokenizers" / "qwen2").is_dir() else "deepseek"
    results = tmp_path_factory.mktemp("bench") / "RESULTS.md"
    env = dict(os.environ)
    if not corpus:
        env["SFT_CORPUS"] = str(tmp_path_factory.mktemp("no-corpus"))
    proc = subprocess.run([sys.executable, "bench/run.py", "--quick", "--n", "24", "--stream-n", "50",
                           "--pack-n", "40", "--tokenizers", tokenizers, "--results", str(results)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    return proc, tokenizers.split(","), results


def test_quick_run_prints_steps_and_ratios(quick_run):
    proc, tokenizers, _ = quick_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for name in tokenizers:
        assert f"== {name}:" in out
    for step in ("1. floor", "2. transformers apply_chat_template", "3. inspector assistant-only labels",
                 "4. inspector full pre-flight check"):
        assert out.count(step) == len(tokenizers), step
    for ratio in ("3/2", "3/1", "4/1"):
        lines = re.findall(rf"^ +ratio {re.escape(ratio)} \(.*\) = .*target >= .*(MET|MISSED|NOT MEASURED)$", out,
                           flags=re.M)
        assert len(lines) == len(tokenizers), (ratio, out)
    assert re.search(r"streamed 50-conversation check peak RSS [\d,]+ MiB < 1\.5 GB: (MET|MISSED)", out), out
    assert "rendered text identical for both templates" in out


def test_quick_run_packs_against_trl(quick_run):
    proc, _, results = quick_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    try:
        import trl.data_utils  # noqa: F401
    except ImportError:
        assert "== packing: SKIPPED: trl is not installed" in out
        return
    for strategy in ("bfd", "bfd_split", "wrapped"):
        assert re.search(rf"^ +{strategy} +ours [\d.]+ s, TRL [\d.]+ s .*; identical \(\d+ sequences, position_ids "
                         r"included\)$", out, flags=re.M), (strategy, out)
        assert re.search(rf"^ +ratio pack/TRL \(packing vs TRL pack_dataset, {strategy}\) = [\d.]+  target >= 1\.00  "
                         r"(MET|MISSED)$", out, flags=re.M), (strategy, out)
    assert "## Packing vs TRL" in results.read_text(encoding="utf-8")


def test_quick_run_writes_results_ending_with_the_ratios(quick_run):
    proc, tokenizers, results = quick_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = results.read_text(encoding="utf-8")
    assert "- command: `python bench/run.py --quick" in text and "cores (nproc)" in text
    tail = text.rstrip("\n").splitlines()[-3 * len(tokenizers):]
    assert [re.match(r"- \S+: ratio (\S+) ", line).group(1) for line in tail] == ["3/2", "3/1", "4/1"] * len(tokenizers)
