"""Record what TRL's own ``DataCollatorForCompletionOnlyLM`` returns, as golden cases for our reproduction.

TRL removed the collator after 0.19.1 and that release needs transformers 4.x, so this script runs in a separate
environment, not the project's:

    python -m venv /tmp/trl019 && /tmp/trl019/bin/pip install torch==2.13.0 "transformers<4.53" trl==0.19.1
    /tmp/trl019/bin/python scripts/record_trl_collator.py > tests/golden/trl_completion_collator.json

Each case: input ids, the markers as token ids (a tokenizer that maps each marker text to fixed ids), the pad id,
and the labels the collator produced. ``tests/test_verify.py`` checks ``inspector.labels.response_template.response_template_labels`` against
every case.
"""

from __future__ import annotations

import json
import random
import sys


def main() -> None:
    import trl
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast
    from trl import DataCollatorForCompletionOnlyLM

    vocab = {f"t{k}": k for k in range(40)}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t39")))

    def collate(ids, response, instruction, pad):
        tok.pad_token, tok.eos_token = f"t{pad}", f"t{pad}"
        collator = DataCollatorForCompletionOnlyLM(response, instruction_template=instruction, tokenizer=tok)
        batch = collator([{"input_ids": ids}])
        return batch["labels"][0].tolist()

    cases = []
    markers = {"R": [7, 8], "I": [4], "R1": [9], "I2": [5, 6]}

    def add(name, ids, response, instruction=None, pad=0):
        labels = collate(ids, markers[response], markers[instruction] if instruction else None, pad)
        cases.append({"name": name, "input_ids": ids, "response_template": response,
                      "instruction_template": instruction, "pad_token_id": pad, "markers": markers,
                      "labels": labels, "trl": trl.__version__})

    add("one answer", [4, 1, 2, 7, 8, 10, 11, 3], "R")
    add("two answers, no instruction: last match wins", [4, 1, 7, 8, 10, 3, 4, 2, 7, 8, 11, 3], "R")
    add("three answers, instruction given", [4, 1, 7, 8, 10, 3, 4, 2, 7, 8, 11, 3, 4, 2, 7, 8, 12, 3], "R", "I")
    add("marker not found", [4, 1, 2, 7, 10, 11, 3], "R")
    add("instruction not found", [1, 2, 7, 8, 10, 3], "R", "I")
    add("response before the first instruction", [7, 8, 10, 3, 4, 2, 7, 8, 11, 3], "R", "I")
    add("more instructions than responses", [4, 1, 7, 8, 10, 3, 4, 2, 12], "R", "I")
    add("pad id inside the text is masked first (pad == eos)", [4, 1, 7, 8, 10, 0, 4, 2, 7, 8, 11, 0], "R", "I")
    add("pad id inside, response only", [4, 1, 7, 8, 10, 0], "R")
    add("overlapping markers", [4, 7, 8, 8, 7, 8, 10, 3], "R")
    add("one-token markers", [5, 6, 1, 9, 10, 5, 6, 2, 9, 11], "R1", "I2")
    rng = random.Random(15)
    for k in range(40):
        ids = [rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0]) for _ in range(rng.randint(3, 30))]
        response = rng.choice(["R", "R1"])
        instruction = rng.choice([None, "I", "I2"])
        add(f"random {k}", ids, response, instruction, pad=rng.choice([0, 3, 12]))
    json.dump(cases, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
