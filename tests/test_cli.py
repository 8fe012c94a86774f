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
    code = cli.main(argv)
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


# --- in-process: cli.main(argv) returns the exit code -------------------------------------------------------------

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
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "Hello!", "completion": "quick brown fox."}])
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
    assert {"check", "export", "show", "checks", "loss"} <= set(subs)
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
