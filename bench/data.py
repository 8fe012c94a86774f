"""Seeded, deterministic conversations for the benchmark: the shapes SFT data really has, at any size.

Four profiles, mixed by fixed weights (``PROFILE_WEIGHTS``):

- ``ner``: Pile-NER / UniversalNER style: one long passage ("Text: ..."), "I've read this text.", then 1-7 short
  questions ("What describes person in the text?") with very short JSON-list answers (``["Ada Lovelace"]``, ``[]``).
  Long user turns, tiny answers: the case where masking the prompt matters most.
- ``chat``: the reverse: short questions, long answers (paragraphs, lists, sometimes a fenced code block).
- ``balanced``: medium turns on both sides.
- ``terse``: short on both sides (one-line Q&A, sometimes an answer shorter than 16 characters).

1 to 8 user/assistant exchanges per conversation, a system prompt in about a third of them. Text is built from a
fixed English word list with names, numbers, punctuation and a little non-ASCII, so tokenizers see ordinary prose.

Records are OpenAI ``messages`` dicts (what ``formats.normalize_record`` reads), so the same data can go through the
loaders, be written to JSONL for a streamed check, or be turned straight into ``Conversation`` objects.

Example: list(generate_records(2, seed=0)) -> two records like
{"id": "bench-0", "messages": [{"role": "user", "content": "Text: ..."}, {"role": "assistant", ...}, ...]}
and the same two records on every call and every machine (``random.Random(seed)`` only, no global state).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PROFILE_WEIGHTS = {"ner": 0.35, "chat": 0.30, "balanced": 0.20, "terse": 0.15}
SYSTEM_SHARE = 0.33
MAX_EXCHANGES = 8

WORDS = (
    "the of and to in is was for that with as on by at from his her this which are be or an had not but have it "
    "were their has one all they been more also who its new can two would after first time about other into only "
    "some over such when there these may year most where many between used during three later including under "
    "city state system model data training language number people world school group company music team work "
    "government part area series game film season history book university album national general record field "
    "water research process energy market design network power service value result level method source report "
    "question answer problem example different important small large early high public local known several based "
    "following second same well each while since though against without within across along around through "
    "however because although therefore usually often never always quickly slowly carefully simply directly "
    "describe explain compare measure build release support develop announce publish receive collect produce "
    "river mountain island village station bridge harbor forest valley coast museum library hospital factory "
    "engine software hardware protocol compiler database server client library framework version update patch "
    "weather summer winter morning evening century decade festival election council court treaty border "
    "protein cell gene enzyme molecule sample experiment signal frequency current voltage circuit sensor"
).split()
NAMES = (
    "Ada Lovelace|Alan Turing|Grace Hopper|Marie Curie|Nikola Tesla|Katherine Johnson|Linus Torvalds|Unity|Android|"
    "Microsoft|Apple Inc.|Toyota|Siemens|Nestlé|Zürich|São Paulo|Kraków|München|Reykjavík|Ōsaka|Montréal|"
    "Amazon River|Mount Kenya|Lake Baikal|Nile|Danube|Python|Rust|PostgreSQL|Kubernetes|BRCA1|COVID-19|NASA|UNESCO|"
    "World Health Organization|European Union|Premier League|Tour de France|Nobel Prize|Olympic Games|Beethoven|"
    "Frida Kahlo|Haruki Murakami|Chimamanda Adichie|北京|東京|Δέλτα|Москва"
).split("|")
ENTITY_TYPES = ("person", "organization", "location", "date", "software", "event", "product", "disease",
                "chemical compound", "programming language", "award", "sports team", "country", "measurement")
QUESTIONS = ("How does {a} affect {b}?", "What is the difference between {a} and {b}?", "Can you explain {a}?",
             "Why would a {a} need a {b}?", "Summarize the history of {a}.", "Write a short note about {a} and {b}.",
             "Is {a} related to {b}? Please be specific.", "Give me three facts about {a}.")
SYSTEMS = ("You are a helpful assistant.", "You are a careful research assistant. Answer concisely and cite the text.",
           "You are an expert annotator for named entity recognition. Output a JSON list.",
           "Always answer in English, in plain prose, without markdown.",
           "You are a coding assistant. Prefer short, correct examples.")
SHORT_ANSWERS = ("Yes.", "No.", "42", "Paris.", "I don't know.", "Correct.", "True", "See above.", "[]")
CODE = ('```python\ndef {f}(items):\n    total = 0\n    for x in items:\n        total += x * {n}\n    return total\n```',
        '```sql\nSELECT {f}, COUNT(*) FROM records WHERE year > {n} GROUP BY {f};\n```',
        '```bash\nfor f in *.jsonl; do wc -l "$f"; done  # {n} files\n```')


def _sentence(rng: random.Random, lo: int = 6, hi: int = 22) -> str:
    n = rng.randint(lo, hi)
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.06:
            out.append(rng.choice(NAMES))
        elif r < 0.09:
            out.append(str(rng.choice((rng.randint(2, 99), rng.randint(1800, 2025), round(rng.random() * 100, 1)))))
        else:
            out.append(rng.choice(WORDS))
    s = " ".join(out)
    if rng.random() < 0.15:
        k = s.find(" ", len(s) // 2)
        if k > 0:
            s = s[:k] + "," + s[k:]
    return s[0].upper() + s[1:] + rng.choice(".....!?;")


def _paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(_sentence(rng) for _ in range(sentences))


def _text(rng: random.Random, paragraphs: tuple[int, int], sentences: tuple[int, int]) -> str:
    return "\n\n".join(_paragraph(rng, rng.randint(*sentences)) for _ in range(rng.randint(*paragraphs)))


def _long_answer(rng: random.Random) -> str:
    parts = [_paragraph(rng, rng.randint(2, 5))]
    if rng.random() < 0.4:
        parts.append("\n".join(f"{k + 1}. {_sentence(rng, 4, 12)}" for k in range(rng.randint(2, 6))))
    if rng.random() < 0.2:
        parts.append(rng.choice(CODE).format(f=rng.choice(WORDS), n=rng.randint(2, 9)))
    parts.append(_paragraph(rng, rng.randint(1, 4)))
    return "\n\n".join(parts)


def _question(rng: random.Random) -> str:
    return rng.choice(QUESTIONS).format(a=rng.choice(WORDS + NAMES[:20]), b=rng.choice(WORDS))


def _ner(rng: random.Random, exchanges: int) -> list[dict[str, str]]:
    msgs = [{"role": "user", "content": "Text: " + _text(rng, (1, 3), (4, 12))},
            {"role": "assistant", "content": "I've read this text."}]
    for etype in rng.sample(ENTITY_TYPES, min(exchanges - 1, len(ENTITY_TYPES))):
        found = rng.sample(NAMES, rng.choice((0, 0, 1, 1, 1, 2, 3)))
        msgs.append({"role": "user", "content": f"What describes {etype} in the text?"})
        msgs.append({"role": "assistant", "content": json.dumps(found, ensure_ascii=False)})
    return msgs


def _exchanges(rng: random.Random, exchanges: int, user, assistant) -> list[dict[str, str]]:
    msgs: list[dict[str, str]] = []
    for _ in range(exchanges):
        msgs.append({"role": "user", "content": user(rng)})
        msgs.append({"role": "assistant", "content": assistant(rng)})
    return msgs


def generate_record(rng: random.Random, index: int) -> dict[str, Any]:
    """One record from ``rng`` (the caller's seeded generator): {"id": "bench-<index>", "messages": [...]}."""
    profile = rng.choices(list(PROFILE_WEIGHTS), weights=list(PROFILE_WEIGHTS.values()))[0]
    exchanges = rng.randint(1, MAX_EXCHANGES)
    if profile == "ner":
        msgs = _ner(rng, exchanges)
    elif profile == "chat":
        msgs = _exchanges(rng, exchanges, _question, _long_answer)
    elif profile == "balanced":
        msgs = _exchanges(rng, exchanges, lambda r: _paragraph(r, r.randint(1, 4)),
                          lambda r: _paragraph(r, r.randint(1, 4)))
    else:
        msgs = _exchanges(rng, exchanges, lambda r: _sentence(r, 3, 12),
                          lambda r: r.choice(SHORT_ANSWERS) if r.random() < 0.4 else _sentence(r, 3, 14))
    if rng.random() < SYSTEM_SHARE:
        msgs.insert(0, {"role": "system", "content": rng.choice(SYSTEMS)})
    return {"id": f"bench-{index}", "profile": profile, "messages": msgs}


def generate_records(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``n`` records, deterministic for a given ``seed``. Streams: memory does not grow with ``n``."""
    rng = random.Random(seed)
    for i in range(n):
        yield generate_record(rng, i)


def write_jsonl(path: str | os.PathLike, n: int, seed: int = 0) -> int:
    """Write ``n`` generated records to ``path`` as JSON Lines (streamed); returns the number of bytes written."""
    size = 0
    with open(path, "w", encoding="utf-8") as f:
        for rec in generate_records(n, seed):
            line = json.dumps(rec, ensure_ascii=False) + "\n"
            f.write(line)
            size += len(line.encode("utf-8"))
    return size


DEMO_FILE = Path(__file__).resolve().parent.parent / "inspector" / "demo" / "demo.jsonl"


def load_conversations(n: int, seed: int = 0, with_demo: bool = True) -> tuple[list[Any], int]:
    """``n`` generated conversations (normalized by ``loaders.load_data``) plus the demo set when it exists.

    Returns (conversations, number of demo conversations included). Rejected records would be a bug in this
    generator, so they raise.
    """
    from inspector.data.loaders import load_data

    result = load_data(list(generate_records(n, seed)), fmt="messages")
    if result.rejected:
        raise ValueError(f"generated records rejected: {result.rejected[0].reasons}")
    convs = list(result.conversations)
    n_demo = 0
    if with_demo and DEMO_FILE.is_file():
        demo = load_data(str(DEMO_FILE))
        convs.extend(demo.conversations)
        n_demo = len(demo.conversations)
    return convs, n_demo


def describe(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts that show the mix: profiles, exchanges, system prompts, mean user/assistant characters."""
    from collections import Counter

    prof = Counter(r.get("profile") for r in records)
    user = [len(m["content"]) for r in records for m in r["messages"] if m["role"] == "user"]
    asst = [len(m["content"]) for r in records for m in r["messages"] if m["role"] == "assistant"]
    return {"records": len(records), "profiles": dict(sorted(prof.items())),
            "with_system": sum(1 for r in records if r["messages"][0]["role"] == "system"),
            "mean_user_chars": round(sum(user) / max(len(user), 1)),
            "mean_assistant_chars": round(sum(asst) / max(len(asst), 1)),
            "short_answers": sum(1 for x in asst if x < 16)}
