"""Same input, same report (issue 21): limits count CPU work, not the clock; integer and split-turns bounds; one
frozen "now" per run.

The pause tests run the CLI in a subprocess with a template that does real work in every render (a loop of
multiplications, ~0.15 s of CPU a render, under a 0.6 s limit; --verify none, as a verifier render that fails only
leaves a field unverified, which the report does not show), stop the process with SIGSTOP for longer than every
limit several times while it runs, and compare its report with the report of an undisturbed run: with limits on the
wall clock, the render that is paused is rejected (``template-error``), and the reports differ.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import CHATML
from inspector.conversations import Conversation, Message
from inspector.errors import RenderTimeout
from inspector.labels.engine import LabelEngine, LabelOptions
from inspector.template.clock import CpuBudget, backstop
from inspector.template.render import RenderLimits, frozen_clock, render
from inspector.template.tokenizer import ChatSetup

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "inspector" / "demo" / "demo.jsonl"
BUSY = "{% for i in range(30000) %}{% set x = i * 2 %}{% endfor %}"  # ~0.15 s of CPU, whatever the conversation
RENDER_LIMIT, RECORD_LIMIT = "0.6", "1.5"
PAUSE = 1.8  # longer than every limit
NOW = "2026-01-31T12:00:00"


def _busy(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


# --- the clock ------------------------------------------------------------------------------------------------------

def test_a_budget_counts_the_threads_cpu_time_not_waiting():
    budget = CpuBudget(0.2)
    time.sleep(0.4)  # twice the limit on the wall clock, no CPU
    assert not budget.expired()
    assert budget.used() < 0.1
    _busy(0.25)
    assert budget.expired()


def test_a_budget_counts_only_its_own_thread():
    budget = CpuBudget(0.2)
    worker = threading.Thread(target=_busy, args=(0.4,))
    worker.start()
    worker.join()
    assert not budget.expired()  # another thread's work is not this thread's


def test_the_backstop_is_generous():
    assert backstop(0.5) == 60.0 and backstop(5) == 60.0 and backstop(30) == 300.0


def test_a_render_that_waits_is_not_stopped_and_one_that_works_is():
    limits = RenderLimits(time_limit=0.2)
    msgs = [{"role": "user", "content": "hi"}]
    # a loop of ~0.8 s of CPU: stopped by its own CPU time
    with pytest.raises(RenderTimeout, match="ran longer than 0.2 s"):
        render(msgs, "{% for i in range(400) %}{% for j in range(400) %}{% set x = j * 2 %}{% endfor %}{% endfor %}"
               + CHATML, limits=limits)
    # a render of ~0.3 s of CPU under a 0.8 s limit, paused (the whole process, SIGSTOP) for 1.2 s in the middle:
    # on the wall clock it ran 1.5 s and was stopped; on its own CPU clock it finishes
    loop = "{% for i in range(300) %}{% for j in range(300) %}{% set x = j * 2 %}{% endfor %}{% endfor %}"
    render(msgs, loop + CHATML)  # compiled
    pid = os.getpid()
    helper = subprocess.Popen(["sh", "-c", f"sleep 0.1; kill -STOP {pid}; sleep 1.2; kill -CONT {pid}"])
    time.sleep(0.02)
    start = time.monotonic()
    text = render(msgs, loop + CHATML, limits=RenderLimits(time_limit=0.8)).text
    helper.wait()
    assert time.monotonic() - start > 1.0, "the pause did not happen during the render"
    assert text.startswith("<|im_start|>user\nhi")


# --- bounds -----------------------------------------------------------------------------------------------------

def test_a_big_integer_power_is_refused_before_it_runs():
    start = time.process_time()
    with pytest.raises(RenderTimeout) as exc:
        render([{"role": "user", "content": "x"}], "{% set b = 3 ** 9999 %}{% set c = b ** 2000 %}{{ c }}")
    assert time.process_time() - start < 1.0
    assert "bits (**)" in str(exc.value) and "limit of 40,000 bits" in str(exc.value)


@pytest.mark.parametrize("template, what", [
    ("{% set b = 7 ** 9000 %}{% set c = b * b * b %}{{ c % 10 }}", "(*)"),
    ("{{ (1).to_bytes(10**10, 'big')|length }}", "to_bytes"),
    ("{% set s = 'ab' * 10 %}{{ (s * 200000)|length }}", "repeats"),
])
def test_other_growing_integer_and_sequence_steps_are_refused(template, what):
    with pytest.raises(RenderTimeout) as exc:
        render([{"role": "user", "content": "x"}], template)
    assert what in str(exc.value)


def test_ordinary_integer_arithmetic_still_works():
    text = render([{"role": "user", "content": "x"}], "{{ (3 ** 999 * 3 ** 999) % 1000 }} {{ 2 ** 100 }}").text
    assert text == f"{(3 ** 1998) % 1000} {2 ** 100}"


def _many(n: int) -> Conversation:
    return Conversation("many", [Message("user" if k % 2 == 0 else "assistant", f"message number {k} says hi")
                                 for k in range(n)])


def test_split_turns_on_a_long_record_is_bounded_as_a_whole(tiny_tokenizer):
    engine = LabelEngine(ChatSetup(tiny_tokenizer, CHATML, "override", "tiny"))
    start = time.process_time()
    samples, errors = engine.build([_many(1000), _many(6)], LabelOptions(strategy="split-turns"))
    assert time.process_time() - start < 10  # was minutes
    assert [e.conversation_id for e in errors] == ["many"] and len(samples) == 3  # the short record goes on
    reason = errors[0].reason
    assert "more than 2,000,000 bytes" in reason and "--max-chars" in reason and "of 500" in reason
    # the bound is --max-chars: a smaller one cuts sooner
    samples, errors = engine.build([_many(40)], LabelOptions(strategy="split-turns",
                                                              limits=RenderLimits(max_chars=5_000)))
    assert not samples and "more than 5,000 bytes" in errors[0].reason


def test_split_turns_renders_share_one_record_time_budget(tiny_tokenizer, monkeypatch):
    import inspector.labels.engine as engine_module

    real = engine_module.render

    def slow(*args, **kwargs):  # each render costs 0.05 s of CPU: 20 answers cost 1 s, over a 0.5 s budget
        _busy(0.05)
        return real(*args, **kwargs)

    engine = LabelEngine(ChatSetup(tiny_tokenizer, CHATML, "override", "tiny"))
    engine.info(LabelOptions())  # probe first, unslowed
    monkeypatch.setattr(engine_module, "render", slow)
    samples, errors = engine.build([_many(40)], LabelOptions(strategy="split-turns", record_time_limit=0.5))
    assert not samples and "--record-time-limit" in errors[0].reason and "CPU time" in errors[0].reason
    samples, errors = engine.build([_many(4)], LabelOptions(strategy="split-turns", record_time_limit=0.5))
    assert len(samples) == 2 and not errors


# --- frozen now -------------------------------------------------------------------------------------------------

CLOCK_TEMPLATE = "{{ 'Now: ' + strftime_now('%Y-%m-%d %H:%M:%S') + '\n' }}" + CHATML


def test_every_render_of_a_run_sees_the_same_now():
    msgs = [{"role": "user", "content": "hi"}]
    limits = RenderLimits(now=NOW)
    first = render(msgs, CLOCK_TEMPLATE, limits=limits).text
    time.sleep(1.1)
    assert render(msgs, CLOCK_TEMPLATE, limits=limits).text == first
    assert first.startswith("Now: 2026-01-31 12:00:00\n")
    assert frozen_clock(NOW)("%d %b %Y") == "31 Jan 2026"
    # without a frozen now, transformers' clock
    assert render(msgs, CLOCK_TEMPLATE).text.startswith(f"Now: {time.strftime('%Y-%m-%d')}")


# --- the CLI: paused runs give the same report, --now repeats a run --------------------------------------------

@pytest.fixture(scope="module")
def cli_files(tiny_tokenizer, tmp_path_factory):
    root = tmp_path_factory.mktemp("cpu_limits")
    tok = root / "tok"
    tiny_tokenizer.save_pretrained(tok)
    (root / "busy.jinja").write_text(BUSY + CHATML, encoding="utf-8")
    (root / "clock.jinja").write_text(CLOCK_TEMPLATE, encoding="utf-8")
    return root


def _command(command: str, files: Path, template: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "inspector", command, str(DEMO), "--tokenizer", str(files / "tok"),
            "--chat-template", str(files / template), "--render-timeout", RENDER_LIMIT,
            "--record-time-limit", RECORD_LIMIT, "--now", NOW, "--limit", "6", "--verify", "none", *extra]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run(cmd: list[str], pause_at: tuple[float, ...] = ()) -> tuple[subprocess.CompletedProcess, int, float]:
    """Run ``cmd``; stop it (SIGSTOP) for PAUSE seconds each time its CPU time reaches one of ``pause_at`` (seconds:
    past the start-up, where the renders are). Returns the result, the number of pauses made while it ran, and
    the CPU seconds it used."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    done = 0

    def pause() -> None:
        nonlocal done
        for at in pause_at:
            try:
                while _cpu_seconds(proc.pid) < at:
                    if proc.poll() is not None:
                        return
                    time.sleep(0.01)
            except (OSError, IndexError):
                return
            proc.send_signal(signal.SIGSTOP)
            time.sleep(PAUSE)
            proc.send_signal(signal.SIGCONT)
            done += 1

    helper = threading.Thread(target=pause)
    helper.start()
    out, err = proc.communicate(timeout=300)
    helper.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), done, cpu


def _same_report_when_paused(cmd: list[str], read) -> None:
    calm, _, cpu = _run(cmd)
    assert calm.returncode in (0, 1), calm.stderr
    expected = read(calm)
    assert "ran longer than" not in json.dumps(expected)  # no render of the undisturbed run hit the limit
    # three pauses in the second half of the run's work (the first half is mostly start-up: imports, loading)
    paused, done, _ = _run(cmd, pause_at=(0.6 * cpu, 0.75 * cpu, 0.9 * cpu))
    assert read(paused) == expected
    assert paused.returncode == calm.returncode, paused.stderr
    assert done >= 2, "the run ended before it could be paused twice"


@pytest.mark.slow
def test_check_gives_the_same_report_when_the_process_is_paused(cli_files):
    _same_report_when_paused(_command("check", cli_files, "busy.jinja", "--json"), lambda r: json.loads(r.stdout))


@pytest.mark.slow
def test_export_gives_the_same_files_when_the_process_is_paused(cli_files, tmp_path):
    out = tmp_path / "out"

    def read(result):
        files = {p.name: p.read_text(encoding="utf-8") for p in sorted(out.iterdir()) if p.is_file()}
        return files

    _same_report_when_paused(_command("export", cli_files, "busy.jinja", "--out", str(out), "--force"), read)


@pytest.mark.slow
def test_pack_gives_the_same_report_when_the_process_is_paused(cli_files):
    _same_report_when_paused(_command("pack", cli_files, "busy.jinja", "--json", "--max-length", "256"),
                             lambda r: json.loads(r.stdout))


def test_now_is_chosen_once_per_run_shown_and_settable(cli_files, tmp_path):
    def export(now: str | None, name: str) -> tuple[dict, str]:
        out = tmp_path / name
        cmd = _command("export", cli_files, "clock.jinja", "--out", str(out))
        cmd[cmd.index("none")] = "all"
        cmd[cmd.index("6")] = "3"
        if now is None:
            cmd.remove("--now"), cmd.remove(NOW)
        else:
            cmd[cmd.index(NOW)] = now
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert result.returncode in (0, 1), result.stderr
        return json.loads((out / "report.json").read_text()), (out / "accepted.jsonl").read_text()

    report_a, rows_a = export(NOW, "a")
    time.sleep(1.1)
    report_b, rows_b = export(NOW, "b")
    assert rows_a == rows_b and report_a["settings"]["now"] == NOW
    assert report_a["totals"] == report_b["totals"]
    report_c, rows_c = export(None, "c")  # no flag: the start of the run, shown
    assert report_c["settings"]["now"][:10] == time.strftime("%Y-%m-%d")
    assert rows_c != rows_a  # the time is in the rendered text


def test_training_template_renders_with_the_runs_now(cli_files, tmp_path):
    out = tmp_path / "clock.training.jinja"
    cmd = [sys.executable, "-m", "inspector", "training-template", str(DEMO), "--tokenizer", str(cli_files / "tok"),
           "--chat-template", str(cli_files / "clock.jinja"), "--now", NOW, "--limit", "4", "--out", str(out),
           "--json"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["verification"]["verified"], report["verification"]["summary"]


# --- the app: the Dataset page's scan -----------------------------------------------------------------------------

_PAUSER = """
import os, signal, sys, time
pid, pause, points = int(sys.argv[1]), float(sys.argv[2]), [float(x) for x in sys.argv[3:]]
def cpu():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
base = cpu()
for point in points:
    while cpu() - base < point:
        time.sleep(0.01)
    os.kill(pid, signal.SIGSTOP)
    time.sleep(pause)
    os.kill(pid, signal.SIGCONT)
    print("paused", flush=True)
"""


def _scan_page(marker: str, pause_at: tuple[float, ...] = ()) -> tuple[dict, int, float]:
    """Scan the bundled demo on the Dataset page with the busy template (``marker``: a comment that makes the
    template text, and so the scan's cache key, new); with ``pause_at``, a helper process stops this process
    (SIGSTOP) for PAUSE seconds at those CPU seconds of the scan. Returns what the page shows, the pauses made and
    the CPU seconds the scan took."""
    import resource

    from streamlit.testing.v1 import AppTest

    from pages.common.show import plain

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600).run()
    at.sidebar.radio(key="sb_template_source").set_value("Edit (Jinja)").run()
    area = [a for a in at.sidebar.text_area if a.label == "Jinja chat template"][0]
    area.input(BUSY + "{# " + marker + " #}" + CHATML).run()
    assert not at.exception
    helper = None
    if pause_at:
        helper = subprocess.Popen([sys.executable, "-c", _PAUSER, str(os.getpid()), str(PAUSE),
                                   *map(str, pause_at)], stdout=subprocess.PIPE, text=True)
    before = resource.getrusage(resource.RUSAGE_SELF)
    at.switch_page("pages/1_dataset.py").run()
    after = resource.getrusage(resource.RUSAGE_SELF)
    done = 0
    if helper is not None:
        helper.kill()
        done = helper.communicate()[0].count("paused")
    assert not at.exception, [e.value for e in at.exception]
    shown = {"metrics": {m.label: m.value for m in at.metric},
             "tables": [d.value.to_dict("list") for d in at.dataframe],
             "errors": [plain(str(e.value)) for e in at.error], "warnings": [str(w.value) for w in at.warning]}
    return shown, done, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


@pytest.mark.slow
def test_the_dataset_page_scan_gives_the_same_result_when_the_process_is_paused(monkeypatch):
    import dataclasses

    from pages.common import ui

    real = ui._options_section
    monkeypatch.setattr(ui, "_options_section", lambda: dataclasses.replace(
        real(), limits=RenderLimits(time_limit=float(RENDER_LIMIT), now=NOW), record_time_limit=float(RECORD_LIMIT)))
    calm, _, cpu = _scan_page("calm")
    assert calm["metrics"].get("Conversations") == "12", calm
    assert "ran longer than" not in json.dumps(calm, default=str)
    paused, done, _ = _scan_page("paused", pause_at=(0.3 * cpu, 0.55 * cpu, 0.8 * cpu))
    assert paused == calm
    assert done >= 2, "the scan ended before it could be paused twice"
