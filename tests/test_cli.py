"""The command line: exit codes 0/1/2 (a few real subprocesses), JSON output, export, show, help text for every
command and option, README entries, and identical results with --num-proc."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from inspector import cli
from inspector.cli.main import main as cli_main
from inspector.cli.format import is_color_wanted
from inspector.cli import run as cli_run
from inspector.checks import CHECKS

ROOT = Path(__file__).resolve().parents[1]

CLEAN = [
    {"id": "a", "messages": [{"role": "user", "content": "Hello! How can I help"},
                             {"role": "assistant", "content": "The quick brown fox."}]},
    {"id": "b", "prompt": "What describes software?", "completion": "Text: the lazy dog."},
]
WARN = [{"id": "uu", "messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hi?"},
                                  {"role": "assistant", "content": "Yo"}]}]
ZERO = [{"id": "zero", "messages": [{"role": "user", "content": "Hi"},
                                    {"role": "assistant", "content": "Yo", "loss_weight": 0}]}]


def write_jsonl(path: Path, records, extra_lines=()) -> str:
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def tiny_dir(tiny_tokenizer, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tiny-tokenizer")
    tiny_tokenizer.save_pretrained(str(path))
    return str(path)


def run_main(argv, capsys) -> tuple[int, str, str]:
    code = cli_main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def run_module(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "inspector", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)


# --- exit codes, from a real process ------------------------------------------------------------------------------

def test_exit_0_when_nothing_fires(tmp_path, tiny_dir):
    proc = run_module("check", write_jsonl(tmp_path / "clean.jsonl", CLEAN), "--tokenizer", tiny_dir)
    assert proc.returncode == 0, proc.stderr
    assert "No check fired." in proc.stdout
    assert "-> exit 0" in proc.stdout


def test_exit_1_and_json_only_on_stdout(tmp_path):
    data = write_jsonl(tmp_path / "zero.jsonl", CLEAN + ZERO)
    proc = run_module("check", data, "--json")  # the packaged default tokenizer
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)  # nothing but the report on stdout
    assert report["checks"]["no-trainable-tokens"]["findings"] == 1
    assert report["checks"]["no-trainable-tokens"]["examples"] == ["zero"]
    assert report["totals"]["records"] == 3
    assert report["result"] == {"fail_on": "error", "failed": True}


def test_exit_2_on_a_loading_error(tmp_path):
    proc = run_module("check", str(tmp_path / "missing.jsonl"))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1] == f"Error: data file not found: {tmp_path / 'missing.jsonl'}"


# --- in-process: main(argv) returns the exit code -------------------------------------------------------------

def test_fail_on_levels(tmp_path, tiny_dir, capsys):
    data = write_jsonl(tmp_path / "warn.jsonl", CLEAN + WARN)
    assert run_main(["check", data, "--tokenizer", tiny_dir], capsys)[0] == 0
    assert run_main(["check", data, "--tokenizer", tiny_dir, "--fail-on", "warning"], capsys)[0] == 1
    zero = write_jsonl(tmp_path / "zero.jsonl", ZERO)
    assert run_main(["check", zero, "--tokenizer", tiny_dir, "--fail-on", "never"], capsys)[0] == 0


def test_text_summary_lists_fired_checks_with_counts_and_examples(tmp_path, tiny_dir, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN + WARN + ZERO, ['{"broken'])
    code, out, err = run_main(["check", data, "--tokenizer", tiny_dir], capsys)
    assert code == 1
    assert "5 records: 4 conversations, 1 rejected by the loader" in out
    rows = {line.split()[1]: line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in ("error", "warning", "info") and len(line.split()) >= 5}
    assert rows["record-rejected"][:6] == ["error", "record-rejected", "1", "1", "20.0%", "d-4"]
    assert rows["no-trainable-tokens"][:6] == ["error", "no-trainable-tokens", "1", "1", "20.0%", "zero"]
    assert rows["role-order"][:6] == ["warning", "role-order", "1", "1", "20.0%", "uu"]
    assert "quiet: template-error" in out


def test_json_report_has_every_check(tmp_path, tiny_dir, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN + WARN)
    code, out, _ = run_main(["check", data, "--tokenizer", tiny_dir, "--json"], capsys)
    report = json.loads(out)
    assert code == 0
    assert set(report["checks"]) == set(CHECKS)
    assert {c: v["findings"] for c, v in report["checks"].items() if v["findings"]} == {"role-order": 1}
    assert report["checks"]["role-order"]["share"] == pytest.approx(1 / 3, abs=1e-6)
    assert report["settings"]["strategy"] == "assistant-only"


def test_options_reach_the_engine(tmp_path, tiny_dir, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN)
    code, out, _ = run_main(["check", data, "--tokenizer", tiny_dir, "--json", "--max-length", "5"], capsys)
    report = json.loads(out)
    assert code == 1 and report["checks"]["truncation-removes-labels"]["findings"] == 2
    code, out, _ = run_main(["check", data, "--tokenizer", tiny_dir, "--json", "--no-label-eot",
                             "--skip", "eot-not-labeled"], capsys)
    report = json.loads(out)
    assert code == 0 and report["checks"]["eot-not-labeled"]["skipped"] is True
    code, out, _ = run_main(["check", data, "--tokenizer", tiny_dir, "--json", "--strategy", "response-template",
                             "--response-template", "ant\n"], capsys)
    assert json.loads(out)["checks"]["response-marker-not-found"]["findings"] == 2


def test_chat_template_file(tmp_path, tiny_dir, capsys):
    # conversational prompt/completion: a plain-text pair is trained without a chat template, as TRL does
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": [{"role": "user", "content": "Hello!"}],
                                               "completion": [{"role": "assistant", "content": "quick brown fox."}]}])
    tmpl = tmp_path / "space.jinja"
    tmpl.write_text("{% for message in messages %}{% if message['role'] == 'assistant' %}"
                    "{{ '<|im_start|>assistant: ' + message['content'] + '<|im_end|>\n' }}{% else %}"
                    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}"
                    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant: ' }}{% endif %}",
                    encoding="utf-8")
    code, out, _ = run_main(["check", data, "--tokenizer", tiny_dir, "--chat-template", str(tmpl), "--json",
                             "--fail-on", "warning"], capsys)
    report = json.loads(out)
    assert code == 1 and report["settings"]["template_source"] == f"file:{tmpl}"
    assert report["checks"]["train-inference-mismatch"]["findings"] == 1
    assert report["checks"]["boundary-straddle"]["findings"] == 1


@pytest.mark.parametrize("argv, message", [
    (["check", "{data}", "--tokenizer", "/no/such/folder"], "Error: Tokenizer folder not found: /no/such/folder"),
    (["check", "{data}", "--chat-template", "/no/such.jinja"], "Error: Chat template file not found: /no/such.jinja"),
    (["check", "{tmp}/data.csv"], "Error: unsupported file type '.csv'"),
])
def test_loading_errors_exit_2_with_a_message(tmp_path, capsys, argv, message):
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN)
    (tmp_path / "data.csv").write_text("a,b\n", encoding="utf-8")
    argv = [a.format(data=data, tmp=tmp_path) for a in argv]
    code, out, err = run_main(argv, capsys)
    assert code == 2 and out == ""
    assert err.startswith(message)


@pytest.mark.parametrize("argv", [["check"], ["check", "x.jsonl", "--strategy", "nope"],
                                  ["check", "x.jsonl", "--max-length", "0"], ["check", "x.jsonl", "--skip", "nope"],
                                  ["export", "x.jsonl"], []])
def test_usage_errors_exit_2(capsys, argv):
    assert run_main(argv, capsys)[0] == 2


def test_help_exits_0(capsys):
    code, out, _ = run_main(["check", "--help"], capsys)
    assert code == 0 and "--fail-on" in out


def test_export_command(tmp_path, tiny_dir, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN + ZERO, ['{"broken'])
    out_dir = tmp_path / "out"
    code, out, _ = run_main(["export", data, "--tokenizer", tiny_dir, "--out", str(out_dir)], capsys)
    assert code == 0
    assert f"Wrote {out_dir / 'accepted.jsonl'}: 2 samples from 2 records" in out
    assert f"Wrote {out_dir / 'rejected.jsonl'}: 2 rejected records with reasons" in out
    code, _, err = run_main(["export", data, "--tokenizer", tiny_dir, "--out", str(out_dir)], capsys)
    assert code == 2 and "already holds" in err
    code, _, _ = run_main(["export", data, "--tokenizer", tiny_dir, "--out", str(out_dir), "--force",
                           "--format", "parquet", "--fail-on", "error"], capsys)
    assert code == 1
    assert (out_dir / "accepted.parquet").is_file() and not (out_dir / "accepted.jsonl").exists()


def test_show_prints_the_token_table(tmp_path, tiny_dir, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN + ZERO, ['{"broken'])
    code, out, _ = run_main(["show", data, "--tokenizer", tiny_dir, "--index", "0"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("sample a (conversation a, assistant-only): ")
    table = [(line[16:44].rstrip(), line.split()[-1]) for line in lines[2:] if re.match(r"^\s+\d+\s", line)]
    assert [tok for tok, _ in table[:3]] == ["'<|im_start|>'", "'user'", "'\\n'"]
    assert [tok for tok, label in table if label != "-100"] == ["'The'", "' quick'", "' brown'", "' fox'", "'.'",
                                                              "'<|im_end|>'"]
    assert "Findings: none" in out
    code, out, _ = run_main(["show", data, "--tokenizer", tiny_dir, "--id", "zero"], capsys)
    assert code == 0 and "no-trainable-tokens" in out
    code, out, _ = run_main(["show", data, "--tokenizer", tiny_dir, "--index", "3"], capsys)
    assert code == 1 and "rejected by the loader" in out
    code, _, err = run_main(["show", data, "--tokenizer", tiny_dir, "--index", "9"], capsys)
    assert code == 2 and "has no record number 9" in err


def test_checks_command_lists_every_code(capsys):
    code, out, _ = run_main(["checks"], capsys)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines() if line and not line.startswith(" ")] == list(CHECKS)
    code, out, _ = run_main(["checks", "--json"], capsys)
    assert [c["code"] for c in json.loads(out)] == list(CHECKS)


def test_num_proc_gives_identical_results(tmp_path, tiny_dir, capsys):
    records = (CLEAN + WARN + ZERO) * 4
    data = write_jsonl(tmp_path / "d.jsonl", [dict(r, id=f"{r['id']}-{i}") for i, r in enumerate(records)],
                       ['{"broken'])
    base = ["check", data, "--tokenizer", tiny_dir, "--json", "--chunk-size", "3"]
    _, one, _ = run_main(base, capsys)
    _, two, _ = run_main(base + ["--num-proc", "2"], capsys)
    assert json.loads(one) == json.loads(two)
    assert json.loads(one)["totals"]["records"] == 17


# --- structure: help text and README ------------------------------------------------------------------------------

def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_and_option_has_help():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in action._choices_actions}
    subs = _subparsers(parser)
    assert set(subs) == {"audit", "check", "export", "show", "checks", "pack", "training-template", "loss"}
    for name, sub in subs.items():
        assert helps.get(name), f"command {name} has no help"
        assert sub.description, f"command {name} has no description"
        for a in sub._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            assert a.help and a.help.strip(), f"{name} {a.option_strings or a.dest} has no help text"


def test_every_command_is_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    if "python -m inspector" not in readme:
        pytest.skip("README.md has no CLI section yet")
    for name in _subparsers(cli.build_parser()):
        assert f"python -m inspector {name}" in readme, f"README.md does not show `python -m inspector {name}`"


# --- hardening: no input reaches exit 3; exit 3 is the tool's own failure --------------------------------------------

def test_an_internal_error_exits_3_with_a_short_message_and_no_traceback(tmp_path, tiny_dir, capsys, monkeypatch):
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN)

    def broken(*args, **kwargs):
        raise IndexError("list index out of range")

    monkeypatch.setattr("inspector.cli.check.cmd_check", broken)
    code, out, err = run_main(["check", data, "--tokenizer", tiny_dir], capsys)
    assert code == cli.EXIT_INTERNAL == 3 and out == ""
    assert err.splitlines()[0] == "Internal error: IndexError: list index out of range"
    assert "please report it" in err and "--debug" in err and "Traceback" not in err
    for argv in (["--debug", "check", data], ["check", data, "--debug"]):
        code, _, err = run_main(argv + ["--tokenizer", tiny_dir], capsys)
        assert code == 3 and "Traceback (most recent call last)" in err and "Internal error: IndexError" in err


def test_show_with_an_index_past_any_file(tmp_path, tiny_dir, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN)
    code, out, err = run_main(["show", data, "--tokenizer", tiny_dir, "--index", "99999999999999999999999"], capsys)
    assert code == 2 and out == ""
    assert err.strip() == f"Error: {data} has no record number 99999999999999999999999 (numbers start at 0)"


def test_deeply_nested_json_in_options_is_a_clear_error(tmp_path, tiny_dir, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN)
    deep = tmp_path / "tokenizer_config.json"
    deep.write_text('{"chat_template": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    code, out, err = run_main(["check", data, "--tokenizer", tiny_dir, "--chat-template", str(deep)], capsys)
    assert code == 2 and err.startswith(f"Error: {deep} cannot be read as JSON: RecursionError")
    code, _, err = run_main(["check", data, "--template-var", "x=" + "[" * 100_000], capsys)
    assert code == 2 and "the value of x cannot be read as JSON (RecursionError)" in err


@pytest.mark.parametrize("name", ["empty.jsonl", "blank.jsonl", "zero.parquet", "empty.json", "list.json"])
def test_no_records_is_one_error_level_finding(tmp_path, tiny_dir, capsys, name):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / name
    if name == "zero.parquet":
        pq.write_table(pa.table({"prompt": pa.array([], pa.string()), "completion": pa.array([], pa.string())}), path)
    else:
        path.write_text({"blank.jsonl": "\n" * 100_000, "list.json": "[]"}.get(name, ""), encoding="utf-8")
    code, out, _ = run_main(["check", str(path), "--tokenizer", tiny_dir, "--json"], capsys)
    report = json.loads(out)
    assert code == 1 and report["totals"]["records"] == 0 and report["result"]["failed"]
    assert report["checks"]["no-records"]["findings"] == 1
    assert "the input holds no record" in report["checks"]["no-records"]["first"][0]["message"]
    code, out, _ = run_main(["check", str(path), "--tokenizer", tiny_dir], capsys)
    assert code == 1 and "no-records" in out and "checks fired: 1 error" in out
    assert run_main(["check", str(path), "--tokenizer", tiny_dir, "--fail-on", "never"], capsys)[0] == 0
    assert run_main(["check", str(path), "--tokenizer", tiny_dir, "--skip", "no-records"], capsys)[0] == 0


def test_lone_surrogate_ids_and_content_never_crash_printing(tmp_path, tiny_dir):
    """check, check --json, show and export on records with lone surrogates in the id and content, in one real
    process (stdout a pipe with the strict UTF-8 encoder, where printing such an id used to raise)."""
    data = tmp_path / "s.jsonl"
    data.write_text('{"id": "bad\\ud800", "messages": [{"role": "user", "content": "Hi"}, '
                    '{"role": "assistant", "content": "Yo"}]}\n'
                    '{"id": "c\\udc00", "messages": [{"role": "user", "content": "Hi \\ud83d"}]}\n'
                    + json.dumps(CLEAN[0]) + "\n", encoding="utf-8")
    runs = [["check", str(data), "--no-progress"], ["check", str(data), "--json"], ["show", str(data), "--index", "0"],
            ["show", str(data), "--id", "c\\udc00"],
            ["export", str(data), "--out", str(tmp_path / "out"), "--no-progress"]]
    code = ("import json, sys\nfrom inspector.cli.main import main as cli_main\n"
            "for argv in json.loads(sys.argv[1]):\n"
            "    code = cli_main(argv + ['--tokenizer', sys.argv[2]])\n"
            "    sys.stdout.flush()\n    print('=== exit %d' % code, flush=True)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(runs), tiny_dir], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    outputs = proc.stdout.split("=== exit ")
    codes = [int(part.split("\n", 1)[0]) for part in outputs[1:]]
    assert len(codes) == len(runs) and all(c in (0, 1) for c in codes), (codes, proc.stderr[-2000:])
    check, as_json, show, show_id = outputs[0], outputs[1].split("\n", 1)[1], outputs[2].split("\n", 1)[1], \
        outputs[3].split("\n", 1)[1]
    assert "bad\\ud800" in check
    assert json.loads(as_json)["totals"]["rejected_by_loader"] == 2
    assert "Record bad\\ud800" in show and "lone surrogate" in show
    assert "Record c\\udc00" in show_id
    rejected = (tmp_path / "out" / "rejected.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in rejected] == ["bad\\ud800", "c\\udc00"]


def test_a_full_disk_is_an_error_with_exit_2(tmp_path, tiny_dir, capsys, monkeypatch):
    import errno

    import inspector.data.export as export_mod

    data = write_jsonl(tmp_path / "d.jsonl", CLEAN)
    real_open = open

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(export_mod, "open", lambda *a, **k: Full(real_open(*a, **k)), raising=False)
    out_dir = tmp_path / "out"
    code, out, err = run_main(["export", data, "--tokenizer", tiny_dir, "--out", str(out_dir)], capsys)
    assert code == 2 and err.startswith("Error: No space left on the device")
    assert list(out_dir.iterdir()) == []


def test_sigterm_during_an_export_removes_its_partial_files(tmp_path, tiny_dir):
    import signal
    import time

    data = write_jsonl(tmp_path / "big.jsonl", [dict(CLEAN[0], id=f"r{i}") for i in range(200_000)])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "mine.txt").write_text("keep\n", encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "inspector", "export", data, "--tokenizer", tiny_dir, "--out",
                             str(out_dir), "--no-progress"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    staging = []
    while time.monotonic() < deadline and not staging and proc.poll() is None:
        staging = [p for p in out_dir.iterdir() if p.name.endswith(".partial")]
        time.sleep(0.05)
    assert staging, "the export never started writing"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert "Terminated (SIGTERM)" in err and "Traceback" not in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["mine.txt"]


def test_a_panicking_tokenizer_rejects_the_record_and_the_run_goes_on(tmp_path):
    from conftest import PANIC_TEXT, train_panicky_tokenizer

    tok_dir = tmp_path / "panicky"
    train_panicky_tokenizer().save_pretrained(str(tok_dir))
    bad = {"id": "boom", "messages": [{"role": "user", "content": PANIC_TEXT}, {"role": "assistant", "content": "Yo"}]}
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN + [bad])
    proc = run_module("check", data, "--tokenizer", str(tok_dir), "--json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["totals"]["records"] == 3 and report["totals"]["accepted_records"] == 2
    first = report["checks"]["tokenizer-error"]["first"][0]  # the tokenizer's fault, not the template's (issue 21)
    assert first["conversation_id"] == "boom" and "PanicException" in first["message"]
    assert "tokenizer" in first["hint"] and not report["checks"]["template-error"].get("first")


# --- done when: one of each bad record among 1,000 good ones ---------------------------------------------------------

def test_one_of_each_bad_record_among_a_thousand_good_ones(tmp_path):
    """A CLI run over a file that mixes one of each bad record of issue 13 with 1,000 good ones exits 0 or 1 (never
    a traceback), writes a complete export, and rejects exactly the bad records."""
    from conftest import PANIC_TEXT, train_panicky_tokenizer

    tok_dir = tmp_path / "panicky"  # a tokenizer whose pre-tokenizer regex panics on PANIC_TEXT
    train_panicky_tokenizer().save_pretrained(str(tok_dir))
    good = [json.dumps({"id": f"g{i}", "messages": [{"role": "user", "content": f"Hello! How can I help {i}"},
                                                    {"role": "assistant", "content": "The quick brown fox."}]})
            for i in range(1000)]
    ok = '[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]'
    bad = {
        "huge-number": '{"id": "huge-number", "messages": ' + ok + ', "n": ' + "9" * 5000 + "}",
        "deep-record": "[" * 100_000 + "]" * 100_000,
        "deep-content": '{"id": "deep-content", "messages": [{"role": "user", "content": ' + "[" * 100_000
                        + "]" * 100_000 + '}, {"role": "assistant", "content": "x"}]}',
        "surrogate-id": '{"id": "surrogate-id\\ud800", "messages": ' + ok + "}",
        "surrogate-content": '{"id": "surrogate-content", "messages": [{"role": "user", "content": "Hi \\ud83d"}, '
                             '{"role": "assistant", "content": "Yo"}]}',
        "nan-weight": '{"id": "nan-weight", "messages": [{"role": "user", "content": "Hi"}, '
                      '{"role": "assistant", "content": "Yo", "loss_weight": NaN}]}',
        "long-line": '{"id": "long-line", "messages": ' + ok + ', "pad": "' + "x" * (17 * 2**20) + '"}',
        "over-the-text-cap": json.dumps({"id": "over-the-text-cap", "messages": [
            {"role": "user", "content": "quick brown fox " * 1000}, {"role": "assistant", "content": "Yo"}]}),
        "tokenizer-panic": json.dumps({"id": "tokenizer-panic", "messages": [
            {"role": "user", "content": PANIC_TEXT}, {"role": "assistant", "content": "Yo"}]}),
        "invalid-json": '{"id": "invalid-json", "messages": [',
        "invalid-utf8": None,
    }
    lines: list[bytes] = []
    bad_lines = {}
    for i, line in enumerate(good):
        lines.append(line.encode())
        if i % 90 == 45 and len(bad_lines) < len(bad):
            name = list(bad)[len(bad_lines)]
            lines.append(bad[name].encode() if bad[name] is not None else b'{"id": "caf\xe9"}')
            bad_lines[len(lines)] = name  # 1-based line number
    assert len(bad_lines) == len(bad)
    data = tmp_path / "mixed.jsonl"
    data.write_bytes(b"\n".join(lines) + b"\n")
    out_dir = tmp_path / "out"
    proc = run_module("export", str(data), "--tokenizer", str(tok_dir), "--out", str(out_dir), "--no-progress",
                      "--max-chars", "10000", "--fail-on", "error")
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Internal error" not in proc.stderr, proc.stderr[-3000:]
    assert sorted(p.name for p in out_dir.iterdir()) == ["accepted.jsonl", "rejected.jsonl", "report.json"]
    accepted = [json.loads(line) for line in (out_dir / "accepted.jsonl").read_text(encoding="utf-8").splitlines()]
    rejected = [json.loads(line) for line in (out_dir / "rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    report = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
    assert sorted(r["id"] for r in accepted) == sorted(f"g{i}" for i in range(1000))
    assert sorted(int(r["source"].rsplit("line ", 1)[1]) for r in rejected) == sorted(bad_lines)
    assert all(r["reasons"] for r in rejected)
    assert report["totals"]["records"] == 1000 + len(bad) and report["totals"]["accepted_records"] == 1000
    by_line = {int(r["source"].rsplit("line ", 1)[1]): " ".join(r["reasons"]) for r in rejected}
    expected = {"huge-number": "5,000 digits", "deep-record": "too deeply", "deep-content": "too deeply",
                "surrogate-id": "lone surrogate", "surrogate-content": "lone surrogate", "nan-weight": "loss_weight",
                "long-line": "bytes long", "over-the-text-cap": "past the limit of 10,000",
                "tokenizer-panic": "PanicException", "invalid-json": "invalid JSON", "invalid-utf8": "not valid UTF-8"}
    for line, name in bad_lines.items():
        assert expected[name] in by_line[line], (name, by_line[line])


@pytest.mark.parametrize("opts", [
    {},
    {"strategy": "split-turns", "max_length": 2048, "truncation_side": "left"},
    {"strategy": "response-template", "response_template": "<|im_start|>assistant\n",
     "instruction_template": "<|im_start|>user", "label_eot": False},
    {"template_kwargs": {"enable_thinking": False, "mode": "true", "note": "a b 'c'", "n": 3}},
    {"strategy": "session", "turn_format": "chatglm2", "respect_trainable": False},
    {"strategy": "split-turns", "keep_history_labels": True},
])
@pytest.mark.parametrize("engine", ["local", "ray"])
def test_command_line_reads_back_as_the_same_settings(opts, engine):
    """The command the app shows (cli.command_line) parses, through the CLI's own parser, into the same label
    options, data, tokenizer, template and engine; a string that looks like JSON stays a string."""
    import shlex

    from inspector.labels.engine import LabelOptions

    if opts.get("turn_format") == "chatglm2":
        opts = dict(opts, turn_format=cli.SESSION_LAYOUTS["chatglm2"])
    options = LabelOptions(**opts)
    for command in ("check", "export"):
        line, left = cli.command_line(command, "my data/train.jsonl", tokenizer="Qwen/Qwen2.5-0.5B-Instruct",
                                      chat_template="chat_template.jinja", options=options, engine=engine,
                                      out="out dir", out_format="parquet")
        argv = shlex.split(line)
        assert argv[:3] == ["python", "-m", "inspector"] and left == []
        args = cli.build_parser().parse_args(argv[3:])
        assert (args.command if hasattr(args, "command") else argv[3]) == command
        assert args.data == "my data/train.jsonl" and args.tokenizer == "Qwen/Qwen2.5-0.5B-Instruct"
        assert args.chat_template == "chat_template.jinja" and args.engine == engine
        back = cli_run._options(args)
        for name in ("strategy", "max_length", "truncation_side", "label_eot", "response_template",
                     "instruction_template", "template_kwargs", "turn_format", "keep_history_labels",
                     "respect_trainable"):
            assert getattr(back, name) == getattr(options, name), name
        if command == "export":
            assert args.out == "out dir" and args.out_format == "parquet"


def test_command_line_names_what_the_cli_cannot_carry():
    from inspector.labels.engine import LabelOptions, TurnFormat

    own = TurnFormat(user="Q: {content}\n", assistant="A: {content}\n")
    line, left = cli.command_line("check", "d.jsonl", options=LabelOptions(strategy="session", turn_format=own))
    assert len(left) == 1 and "session layout" in left[0] and "--session-layout" not in line
    line, _ = cli.command_line("check", "d.jsonl")
    assert line == "python -m inspector check d.jsonl"  # defaults stay out of the command


def test_session_layout_keep_history_and_ignore_flags_reach_the_samples(tmp_path, capsys):
    """The three label options the app had and the CLI lacked: each changes what `show` prints."""
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "c", "messages": [
        {"role": "user", "content": "one?"}, {"role": "assistant", "content": "uno"},
        {"role": "user", "content": "two?"}, {"role": "assistant", "content": "dos", "loss_weight": 0},
        {"role": "user", "content": "three?"}, {"role": "assistant", "content": "tres"}]}) + "\n")

    def show(*extra: str) -> str:
        assert cli_main(["show", str(data), "--index", "0", *extra]) in (0, 1)
        return capsys.readouterr().out

    def trained(out: str) -> list[str]:  # "N trained" of every sample printed
        return re.findall(r"(\d+) trained", out)

    session = show("--strategy", "session", "--session-layout", "chatglm2")
    assert "'Round'" in session and "'问'" in session and "'Round'" not in show("--strategy", "session")
    kept, plain = show("--strategy", "split-turns", "--keep-history-labels"), show("--strategy", "split-turns")
    assert int(trained(kept)[-1]) > int(trained(plain)[-1])  # the last answer's sample also trains "uno"
    assert int(trained(show("--ignore-train-flags"))[0]) > int(trained(show())[0])  # "dos" trained too



def test_show_colors_by_label_and_prints_inline(tmp_path, tiny_dir, capsys, monkeypatch):
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN)
    base = ["show", data, "--tokenizer", tiny_dir, "--index", "0"]
    _, plain, _ = run_main(base + ["--color", "never"], capsys)
    assert "\x1b[" not in plain
    _, colored, _ = run_main(base + ["--color", "always"], capsys)
    plain_rows, colored_rows = plain.splitlines(), colored.splitlines()
    assert len(plain_rows) == len(colored_rows) and colored_rows[:2] == plain_rows[:2]  # headings stay plain
    rows = [(p, c) for p, c in zip(plain_rows, colored_rows) if re.match(r"^\s+\d+\s", p)]
    assert rows and all(c == ("\x1b[90m" if p.split()[-1] == "-100" else "\x1b[32m") + p + "\x1b[0m" for p, c in rows)
    the = next(p for p, _ in rows if "'The'" in p)
    assert f"\x1b[32m{the}\x1b[0m" in colored.splitlines() and f"\x1b[90m{rows[0][0]}\x1b[0m" == rows[0][1]
    # auto: captured stdout is no terminal -> plain; on a terminal colored unless NO_COLOR is set
    _, auto, _ = run_main(base, capsys)
    assert auto == plain

    class Terminal:
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert is_color_wanted("auto", Terminal()) and not is_color_wanted("never", Terminal())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not is_color_wanted("auto", Terminal()) and is_color_wanted("always", Terminal())
    _, inline, _ = run_main(base + ["--inline", "--color", "always"], capsys)
    head, words = inline.splitlines()[0], inline.splitlines()[1]
    assert head == plain_rows[0]
    assert words.startswith("\x1b[90m<|im_start|>(-100, ")
    assert "\x1b[90muser(-100, " in words and "\x1b[90m\\n(-100, " in words
    assert "\x1b[32mThe(" in words and "\x1b[32m quick(" in words
    ids = [int(p.split()[1]) for p, _ in rows]
    labels = [int(p.split()[-1]) for p, _ in rows]
    painted = words.split("\x1b[0m \x1b[")
    assert len(painted) == len(ids)
    assert all(w.rstrip("\x1b[0m").endswith(f"({lab}, {tid})") for w, lab, tid in zip(painted, labels, ids))
    _, inline_plain, _ = run_main(base + ["--inline", "--color", "never"], capsys)
    assert inline_plain.splitlines()[1].startswith("<|im_start|>(-100, ") and "\x1b[" not in inline_plain
