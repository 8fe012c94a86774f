"""The recorded outputs of real trainers (tests/data/trainers/, made by scripts/record_*.py) and the measured facts
about what each trains, asserted on the recorded data.

The recordings need neither TRL, axolotl nor LLaMA-Factory: every line holds the trainer's own input_ids / labels /
attention_mask for one corpus conversation. The structural checks run everywhere; the checks that need to name
tokens read the corpus tokenizer from $SFT_CORPUS and skip with a reason when it is not set.

A worked example of a fact checked here: TRL's swapped-in Qwen2.5 training template trains the newline after each
answer's <|im_end|>: in ``<|im_start|>assistant\\nHi<|im_end|>\\n`` the labels are ``[-100, -100, \\n, Hi,
<|im_end|>, \\n]`` (the header newline too), where the original template's assistant-only mask stops at <|im_end|>.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspector.constants import IGNORE_INDEX

DATA = Path(__file__).resolve().parent / "data" / "trainers"
FILES = sorted(DATA.glob("*.jsonl"))


def _load(name: str) -> list[dict]:
    path = DATA / f"{name}.jsonl"
    if not path.exists():
        pytest.skip(f"{path.name} was not recorded (see tests/data/trainers/README.md)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def qwen_ids(corpus):
    """Token ids of the ChatML pieces in the corpus Qwen2.5 tokenizer (the one every qwen recording used)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(corpus / "tokenizers" / "qwen2" / "tokenizer.json"))
    ids = {name: tok.token_to_id(name) for name in ("<|im_start|>", "<|im_end|>", "<|endoftext|>")}
    ids["nl"] = tok.encode("\n", add_special_tokens=False).ids[0]
    ids["assistant"], ids["user"] = (tok.encode(w, add_special_tokens=False).ids[0] for w in ("assistant", "user"))
    ids["empty_think"] = tok.encode("<think>\n\n</think>\n\n", add_special_tokens=False).ids
    ids["think_open"] = tok.encode("<think>\n", add_special_tokens=False).ids
    ids["tok"] = tok
    return ids


def chatml_turns(ids: list[int], q: dict) -> list[tuple[str, int, int]]:
    """(role, header start, index of the closing <|im_end|>) for every ``<|im_start|>role\\n ... <|im_end|>``."""
    turns = []
    role_of = {q["assistant"]: "assistant", q["user"]: "user"}
    for i, t in enumerate(ids):
        if t == q["<|im_start|>"]:
            end = ids.index(q["<|im_end|>"], i)
            turns.append((role_of.get(ids[i + 1], "system"), i, end))
    return turns


def trained(rec: dict) -> list[bool]:
    return [label != IGNORE_INDEX for label in rec["labels"]]


# --- every recording ---------------------------------------------------------------------------------------------

def test_recordings_exist_and_stay_small():
    assert {p.name.split("_")[0] for p in FILES} >= {"trl"}
    assert sum(p.stat().st_size for p in DATA.iterdir()) < 1_000_000


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_recording_is_well_formed(path):
    """Unshifted labels: each is -100 or the input id at the same position; one attention 1 per token; the record
    names its source, tokenizer, config and versions."""
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        ids, labels = rec["input_ids"], rec["labels"]
        assert len(ids) == len(labels) == len(rec["attention_mask"]) > 0
        assert all(m == 1 for m in rec["attention_mask"])
        assert all(label in (IGNORE_INDEX, t) for label, t in zip(labels, ids)), rec["id"]
        assert any(label != IGNORE_INDEX for label in labels), rec["id"]
        assert rec["trainer"] in path.stem and rec["versions"] and rec["tokenizer"] and "config" in rec
        assert rec.get("messages") or (rec.get("prompt") and rec.get("completion"))


def test_trl_refusals_are_recorded():
    refusals = json.loads((DATA / "trl_refusals.json").read_text(encoding="utf-8"))
    assert {r["case"] for r in refusals} == {"llama31_assistant_only", "qwen2_gguf_template_assistant_only",
                                             "qwen3_corpus_template_assistant_only"}
    assert all("not training-compatible" in r["error"] for r in refusals)


# --- TRL ---------------------------------------------------------------------------------------------------------

def test_trl_qwen25_trains_both_newlines_around_every_answer(qwen_ids):
    """TRL's qwen2_5_training.jinja: each answer's header newline and the newline after its <|im_end|> are trained,
    with the content and <|im_end|>; nothing of the system/user turns is."""
    q, answers = qwen_ids, 0
    for rec in _load("trl_qwen25_assistant_only"):
        ids, on = rec["input_ids"], trained(rec)
        expected = [False] * len(ids)
        for role, start, end in chatml_turns(ids, q):
            if role == "assistant":
                answers += 1
                assert ids[start + 2] == q["nl"] and ids[end + 1] == q["nl"]
                expected[start + 2:end + 2] = [True] * (end - start)
        assert on == expected, rec["id"]
    assert answers == 21


def test_trl_qwen3_trains_newline_after_im_end_and_inserts_empty_think(qwen_ids):
    """TRL's qwen3_training.jinja: the newline after each answer's <|im_end|> is trained, the header newline is not;
    every answer before the last user turn gets an empty ``<think>\\n\\n</think>\\n\\n``, trained."""
    q, inserted, records_with = qwen_ids, 0, 0
    n = len(q["empty_think"])
    for rec in _load("trl_qwen3_assistant_only"):
        ids, on = rec["input_ids"], trained(rec)
        turns = chatml_turns(ids, q)
        last_user = max(start for role, start, _ in turns if role == "user")
        found = 0
        for role, start, end in turns:
            if role != "assistant":
                continue
            assert not on[start + 2] and on[end] and on[end + 1] and ids[end + 1] == q["nl"]
            if start < last_user:  # the original template renders earlier answers without any think block
                assert ids[start + 3:start + 3 + n] == q["empty_think"] and all(on[start + 3:start + 3 + n])
                found += 1
        inserted += found
        records_with += bool(found)
    assert (inserted, records_with) == (9, 4)


def test_trl_conversational_completion_only_trains_last_answer_and_newline(qwen_ids):
    q = qwen_ids
    for rec in _load("trl_qwen25_completion_only"):
        ids, on = rec["input_ids"], trained(rec)
        _, start, end = chatml_turns(ids, q)[-1]
        assert end == len(ids) - 2 and ids[-1] == q["nl"]
        assert on == [False] * (start + 3) + [True] * (len(ids) - start - 3), rec["id"]


def test_trl_plain_text_completion_has_no_template_and_trains_eos(qwen_ids):
    """Plain-text prompt/completion: prompt + completion + EOS, no ChatML at all; the EOS is trained."""
    q = qwen_ids
    for rec in _load("trl_text_completion_only"):
        ids, on = rec["input_ids"], trained(rec)
        assert q["<|im_start|>"] not in ids and q["<|im_end|>"] not in ids
        assert ids[-1] == q["<|endoftext|>"] and on[-1]
        text = q["tok"].decode(ids, skip_special_tokens=False)
        assert text == rec["prompt"] + rec["completion"] + "<|endoftext|>"


# --- LLaMA-Factory -----------------------------------------------------------------------------------------------

def _answer_spans(ids: list[int], q: dict, content_from: int = 3) -> list[tuple[int, int]]:
    """(first content position, position after the trained newline) of each ChatML answer."""
    return [(start + content_from, end + 2) for role, start, end in chatml_turns(ids, q) if role == "assistant"]


def test_llamafactory_qwen_trains_answer_im_end_and_newline(qwen_ids):
    """``template: qwen``: each answer's content, <|im_end|> and the newline after it are trained; the header
    newline and every system/user token are not (train_on_prompt false)."""
    answers = 0
    for rec in _load("llamafactory_qwen"):
        expected = [False] * len(rec["input_ids"])
        for a, b in _answer_spans(rec["input_ids"], qwen_ids):
            expected[a:b] = [True] * (b - a)
            answers += 1
        assert trained(rec) == expected, rec["id"]
    assert answers == 21


@pytest.mark.parametrize("name", ["llamafactory_qwen_mask_history", "llamafactory_qwen3_mask_history"])
def test_llamafactory_mask_history_trains_only_the_last_answer(qwen_ids, name):
    for rec in _load(name):
        a, b = _answer_spans(rec["input_ids"], qwen_ids)[-1]
        assert trained(rec) == [False] * a + [True] * (b - a), rec["id"]
        assert b == len(rec["input_ids"])


def test_llamafactory_qwen3_writes_an_empty_think_into_every_plain_answer(qwen_ids):
    """``template: qwen3``: every answer without reasoning starts with a trained ``<think>\\n\\n</think>\\n\\n``, earlier
    answers included (18 answers in 9 records); with mask_history the earlier answers have none; a reasoning answer's
    opening ``<think>`` is trained."""
    n = len(qwen_ids["empty_think"])
    counts = {}
    for name in ("llamafactory_qwen3", "llamafactory_qwen3_mask_history"):
        plain = reasoning = 0
        for rec in _load(name):
            ids, on = rec["input_ids"], trained(rec)
            spans = _answer_spans(ids, qwen_ids)
            for k, (a, b) in enumerate(spans):
                if ids[a:a + n] == qwen_ids["empty_think"]:
                    assert all(on[a:a + n]), rec["id"]
                    plain += 1
                elif ids[a:a + len(qwen_ids["think_open"])] == qwen_ids["think_open"]:
                    assert on[a], rec["id"]
                    reasoning += 1
                else:
                    assert name.endswith("mask_history") and k < len(spans) - 1, rec["id"]
        counts[name] = (plain, reasoning)
    assert counts == {"llamafactory_qwen3": (18, 3), "llamafactory_qwen3_mask_history": (9, 3)}


def test_llamafactory_llama3_has_no_date_header_and_trains_eot(corpus):
    """``template: llama3``: no 'Cutting Knowledge Date' system block (Llama 3.1's own template writes one); each
    answer's content and <|eot_id|> are trained, the header's ``\\n\\n`` and nothing after <|eot_id|> is."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(corpus / "tokenizers" / "llama-bpe" / "tokenizer.json"))
    start, end_h, eot = (tok.token_to_id(t) for t in ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"))
    assistant = tok.encode("assistant", add_special_tokens=False).ids
    answers = 0
    for rec in _load("llamafactory_llama3"):
        ids = rec["input_ids"]
        assert "Cutting Knowledge" not in tok.decode(ids, skip_special_tokens=False)
        expected = [False] * len(ids)
        for i, t in enumerate(ids):
            if t == start and ids[i + 1:i + 1 + len(assistant)] == assistant:
                a = i + 1 + len(assistant) + 2  # <|end_header_id|> and '\n\n' stay masked
                assert ids[a - 2] == end_h
                b = ids.index(eot, a) + 1
                expected[a:b] = [True] * (b - a)
                answers += 1
        assert trained(rec) == expected, rec["id"]
    assert answers == 21


def test_trl_and_llamafactory_agree_on_qwen3_and_differ_by_one_newline_on_qwen25():
    """Measured: TRL's qwen3_training.jinja and LLaMA-Factory's ``template: qwen3`` give identical input_ids and
    labels on all 12 conversations; on Qwen2.5 the ids agree and TRL trains one token more per answer (the header
    newline)."""
    for trl_name, lf_name, extra in [("trl_qwen3_assistant_only", "llamafactory_qwen3", 0),
                                     ("trl_qwen25_assistant_only", "llamafactory_qwen", 1)]:
        for t, lf in zip(_load(trl_name), _load(lf_name)):
            assert t["id"] == lf["id"] and t["input_ids"] == lf["input_ids"]
            answers = sum(m["role"] == "assistant" for m in t["messages"])
            assert sum(trained(t)) - sum(trained(lf)) == extra * answers, t["id"]
            assert all(a or not b for a, b in zip(trained(t), trained(lf))), t["id"]


# --- axolotl -----------------------------------------------------------------------------------------------------

def _chatml_answer_facts(recs: list[dict], q: dict) -> dict:
    """Per recording: answers whose content is all trained, trained <|im_end|> / newline after it / header newline,
    trained tokens of system/user turns, trained tokens outside every turn, and reasoning answers whose opening
    ``<think>\\n`` tokens are all trained."""
    facts = dict(answers=0, content=0, im_end=0, newline_after=0, header_newline=0, prompt=0, outside=0,
                 think=0, think_opening_trained=0)
    n = len(q["think_open"])
    for rec in recs:
        ids, on = rec["input_ids"], trained(rec)
        covered = [False] * len(ids)
        for role, start, end in chatml_turns(ids, q):
            stop = min(end + 2, len(ids))
            covered[start:stop] = [True] * (stop - start)
            if role != "assistant":
                facts["prompt"] += sum(on[start:stop])
                continue
            facts["answers"] += 1
            facts["content"] += all(on[start + 3:end])
            facts["im_end"] += on[end]
            facts["newline_after"] += end + 1 < len(ids) and on[end + 1]
            facts["header_newline"] += on[start + 2]
            if ids[start + 3:start + 3 + n] == q["think_open"]:
                facts["think"] += 1
                facts["think_opening_trained"] += all(on[start + 3:start + 3 + n])
        facts["outside"] += sum(o for o, c in zip(on, covered) if not c)
    return facts


AXOLOTL_FACTS = {
    # measured on the recordings (tests/data/trainers/README.md); the corpus qwen2 tokenizer's EOS is <|endoftext|>
    "axolotl_qwen25_default": dict(answers=21, content=21, im_end=0, newline_after=0, header_newline=0, prompt=0,
                                   outside=0, think=3, think_opening_trained=3),
    "axolotl_qwen25_train_on_eos_all": dict(answers=21, content=21, im_end=0, newline_after=0, header_newline=0,
                                            prompt=0, outside=0, think=3, think_opening_trained=3),
    "axolotl_qwen25_roles_user_assistant": dict(answers=21, content=21, im_end=0, newline_after=0,
                                                header_newline=0, prompt=444, outside=0, think=3,
                                                think_opening_trained=3),
    "axolotl_qwen25_eot_im_end": dict(answers=21, content=21, im_end=21, newline_after=0, header_newline=0,
                                      prompt=0, outside=0, think=3, think_opening_trained=3),
    # Qwen3-0.6B's (corpus) template: the reasoning answers' opening "<think>\n" is never trained
    "axolotl_qwen3_default": dict(answers=21, content=9, im_end=0, newline_after=0, header_newline=0, prompt=0,
                                  outside=0, think=3, think_opening_trained=0),
    "axolotl_qwen3_eot_im_end": dict(answers=21, content=9, im_end=21, newline_after=0, header_newline=0, prompt=0,
                                     outside=0, think=3, think_opening_trained=0),
    "axolotl_qwen3_split_thinking": dict(answers=21, content=9, im_end=0, newline_after=0, header_newline=0,
                                         prompt=0, outside=0, think=3, think_opening_trained=0),
}


@pytest.mark.parametrize("name", ["axolotl_qwen3_default", "axolotl_qwen3_eot_im_end",
                                  "axolotl_qwen3_split_thinking"])
def test_axolotl_qwen3_masks_the_opening_think_and_the_empty_think(qwen_ids, name):
    """With the Qwen3 template axolotl trains a reasoning answer from its first reasoning token: the opening
    ``<think>\n`` is masked (3 of 3), the rest trained; the empty ``<think>\n\n</think>\n\n`` the template writes
    into the last plain answers is masked too (9 of 9)."""
    opening, empty = qwen_ids["think_open"], qwen_ids["empty_think"]
    counts = {"reasoning": 0, "empty": 0}
    for rec in _load(name):
        ids, on = rec["input_ids"], trained(rec)
        for a, b in _answer_spans(ids, qwen_ids):
            end = b - 2  # the answer's <|im_end|>
            for kind, head in (("empty", empty), ("reasoning", opening)):
                if ids[a:a + len(head)] == head:
                    assert not any(on[a:a + len(head)]) and all(on[a + len(head):end]), rec["id"]
                    counts[kind] += 1
                    break
    assert counts == {"reasoning": 3, "empty": 9}



@pytest.mark.parametrize("name", sorted(AXOLOTL_FACTS))
def test_axolotl_chat_template_trains_what_was_measured(qwen_ids, name):
    assert _chatml_answer_facts(_load(name), qwen_ids) == AXOLOTL_FACTS[name]


def test_axolotl_llama31_trains_content_but_not_eot(corpus):
    """Llama 3.1's own template (date header included) with axolotl's defaults: every answer's content is trained,
    its <|eot_id|> is not (the llama-bpe EOS is <|end_of_text|>, which the template never writes), nothing else is."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(corpus / "tokenizers" / "llama-bpe" / "tokenizer.json"))
    start, eot = tok.token_to_id("<|start_header_id|>"), tok.token_to_id("<|eot_id|>")
    assistant = tok.encode("assistant", add_special_tokens=False).ids
    answers = 0
    for rec in _load("axolotl_llama31_default"):
        ids = rec["input_ids"]
        assert "Cutting Knowledge" in tok.decode(ids, skip_special_tokens=False)
        expected = [False] * len(ids)
        for i, t in enumerate(ids):
            if t == start and ids[i + 1:i + 1 + len(assistant)] == assistant:
                a = i + 1 + len(assistant) + 2
                b = ids.index(eot, a)
                expected[a:b] = [True] * (b - a)
                answers += 1
        assert trained(rec) == expected, rec["id"]
    assert answers == 21
