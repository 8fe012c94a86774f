"""The conversations every trainer recording is made from: one fixed, small selection of the real corpus.

The record scripts (``record_trl_sft.py``, ``record_axolotl.py``, ``record_llamafactory.py``) and
``compare_trainers.py`` all read :func:`build_conversations`, so every trainer sees exactly the same messages, and
our own labels (``python -m inspector export``) are built from the same file (:func:`main` writes it).

The selection, from ``$SFT_CORPUS/data`` (LLaMA-Factory's demo data sets):

- ``alpaca-*``: 3 single-turn answers from ``alpaca_en_demo.json`` (the one with an ``input`` joins it to the
  instruction with a blank line, as LLaMA-Factory's alpaca converter does);
- ``identity-*``: 2 single-turn answers from ``identity.json``;
- ``glaive-*``: 4 multi-turn chats from ``glaive_toolcall_en_demo.json`` (only records whose turns are all
  human/gpt: 2 to 5 answers each);
- ``reason-*``: 3 reasoning answers from ``reason_tool_use_demo_50.jsonl`` (system + user + assistant, no tool
  calls); the assistant content is written ``<think>\\n{reasoning}\\n</think>\\n\\n{answer}``, the form Qwen3's
  template parses and axolotl/LLaMA-Factory receive as plain content.

A worked example of one record::

    {"id": "alpaca-0", "messages": [{"role": "user", "content": "Give three tips for staying healthy."},
                                    {"role": "assistant", "content": "1. Eat a balanced diet ..."}]}

Run ``SFT_CORPUS=/work/shared/corpus python scripts/trainer_conversations.py OUT.jsonl`` to write the set.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ALPACA = [1, 3, 5]
IDENTITY = [0, 6]
GLAIVE = [181, 40, 123, 192]
REASON = [28, 46, 39]


def corpus_dir() -> Path:
    root = os.environ.get("SFT_CORPUS")
    if not root:
        raise SystemExit("set SFT_CORPUS to the corpus folder (e.g. /work/shared/corpus)")
    return Path(root)


def _text(parts) -> str:
    return "".join(p["value"] for p in parts if p["type"] == "text")


def _reasoning(parts) -> str:
    return "".join(p["value"] for p in parts if p["type"] == "reasoning")


def build_conversations() -> list[dict]:
    data = corpus_dir() / "data"
    out: list[dict] = []
    alpaca = json.loads((data / "alpaca_en_demo.json").read_text(encoding="utf-8"))
    for i in ALPACA:
        r = alpaca[i]
        prompt = r["instruction"] + ("\n\n" + r["input"] if r["input"] else "")
        out.append({"id": f"alpaca-{i}", "messages": [{"role": "user", "content": prompt},
                                                      {"role": "assistant", "content": r["output"]}]})
    identity = json.loads((data / "identity.json").read_text(encoding="utf-8"))
    for i in IDENTITY:
        r = identity[i]
        out.append({"id": f"identity-{i}", "messages": [{"role": "user", "content": r["instruction"]},
                                                        {"role": "assistant", "content": r["output"]}]})
    glaive = json.loads((data / "glaive_toolcall_en_demo.json").read_text(encoding="utf-8"))
    for i in GLAIVE:
        turns = glaive[i]["conversations"]
        assert all(t["from"] in ("human", "gpt") for t in turns), i
        role = {"human": "user", "gpt": "assistant"}
        out.append({"id": f"glaive-{i}", "messages": [{"role": role[t["from"]], "content": t["value"]}
                                                      for t in turns]})
    lines = (data / "reason_tool_use_demo_50.jsonl").read_text(encoding="utf-8").splitlines()
    for i in REASON:
        r = json.loads(lines[i])
        messages = []
        for m in r["messages"]:
            if m["role"] == "assistant":
                content = f"<think>\n{_reasoning(m['content']).strip()}\n</think>\n\n{_text(m['content']).strip()}"
            else:
                content = _text(m["content"])
            messages.append({"role": m["role"], "content": content})
        out.append({"id": f"reason-{i}", "messages": messages})
    return out


def main() -> None:
    path = Path(sys.argv[1])
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in build_conversations()),
                    encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
