"""``python -m inspector pack``: exit codes 0/1/2, the JSON report, packed.jsonl + report.json, overwrite rules."""

from __future__ import annotations

import json

import pytest

from inspector.checks import CHECKS, PACKING_CODES
from test_cli import CLEAN, ZERO, run_main, run_module, tiny_dir, write_jsonl  # noqa: F401 (tiny_dir: a fixture)

ANSWER = "The quick brown fox jumps over the lazy dog. " * 8
LONG = [{"id": "long", "messages": [{"role": "user", "content": "Hello! How can I help"},
                                    {"role": "assistant", "content": ANSWER}]}]


def test_exit_codes_from_a_real_process(tmp_path):
    clean = write_jsonl(tmp_path / "clean.jsonl", CLEAN)
    proc = run_module("pack", clean, "--max-length", "64", "--padding-free")
    assert proc.returncode == 0, proc.stderr
    assert "packing bfd · padding-free layout · max_length 64" in proc.stdout
    zero = write_jsonl(tmp_path / "zero.jsonl", CLEAN + ZERO)
    proc = run_module("pack", zero, "--max-length", "64", "--json")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["checks"]["no-trainable-tokens"]["examples"] == ["zero"]
    proc = run_module("pack", clean)  # --max-length is required
    assert proc.returncode == 2 and "--max-length" in proc.stderr


def test_json_report(tmp_path, tiny_dir, capsys):  # noqa: F811
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN + LONG)
    code, out, _ = run_main(["pack", data, "--tokenizer", tiny_dir, "--max-length", "64", "--json",
                             "--strategy", "all-tokens", "--padded"], capsys)
    report = json.loads(out)
    assert code == 1  # all-tokens in the padded layout: cross-sample-prediction is an error
    p = report["packing"]
    assert p["samples"] == 3 and p["layout"] == "padded" and p["options"]["strategy"] == "bfd"
    assert p["tokens"] == p["packed_tokens"] + p["tokens_lost"] and p["tokens_lost"] > 0
    assert 0 < p["padding_share"] < 1 and p["sequences"] >= 2
    assert {r["apart"] for r in p["attention"]} == {"no"}
    assert set(report["checks"]) == set(CHECKS)
    fired = {c for c, v in report["checks"].items() if v["findings"]}
    assert {"cross-sample-prediction", "packing-truncates", "packing-attention"} <= fired
    assert report["checks"]["packing-truncates"]["examples"] == ["long"]
    assert report["settings"]["max_length"] is None and report["settings"]["packing"]["max_length"] == 64
    assert report["result"] == {"fail_on": "error", "failed": True}


def test_padding_free_bfd_has_no_cross_sample_error(tmp_path, tiny_dir, capsys):  # noqa: F811
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN + LONG)
    code, out, _ = run_main(["pack", data, "--tokenizer", tiny_dir, "--max-length", "40", "--json",
                             "--strategy", "all-tokens", "--padding-free", "--packing", "bfd_split"], capsys)
    report = json.loads(out)
    assert code == 0
    fired = {c for c, v in report["checks"].items() if v["findings"]}
    assert "cross-sample-prediction" not in fired and "cross-sample-attention" not in fired
    assert {"packing-splits-sample", "packing-label-masked"} <= fired
    assert report["packing"]["tokens_lost"] == 0 and report["packing"]["padding"] == 0


def test_out_writes_packed_rows_and_report(tmp_path, tiny_dir, capsys):  # noqa: F811
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN + LONG)
    out_dir = tmp_path / "out"
    args = ["pack", data, "--tokenizer", tiny_dir, "--max-length", "40", "--packing", "wrapped", "--out",
            str(out_dir)]
    code, out, _ = run_main(args, capsys)
    assert code == 0
    rows = [json.loads(line) for line in (out_dir / "packed.jsonl").read_text().splitlines()]
    assert f"Wrote {out_dir / 'packed.jsonl'}: {len(rows)} packed sequences" in out
    assert set(rows[0]) == {"input_ids", "labels", "position_ids", "seq_lengths", "sample_ids", "sample_lengths"}
    for row in rows:
        assert len(row["input_ids"]) == len(row["labels"]) == len(row["position_ids"]) == sum(row["seq_lengths"])
        assert sum(row["sample_lengths"]) == len(row["input_ids"]) <= 40
        assert row["position_ids"] == list(range(len(row["input_ids"])))  # wrapped: no restart
    seen = [sid for row in rows for sid in row["sample_ids"]]
    assert set(seen) == {"a", "b", "long"} and seen.count("long") >= 2  # wrapped cuts the long one
    report = json.loads((out_dir / "report.json").read_text())
    assert report["packing"]["sequences"] == len(rows)
    assert not list(out_dir.glob(".*partial"))
    code, _, err = run_main(args, capsys)  # files exist: refuse
    assert code == 2 and "already holds packed.jsonl, report.json" in err
    assert run_main(args + ["--force"], capsys)[0] == 0


def test_packed_rows_load_with_datasets(tmp_path, tiny_dir, capsys):  # noqa: F811
    datasets = pytest.importorskip("datasets")
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN + LONG)
    out_dir = tmp_path / "out"
    assert run_main(["pack", data, "--tokenizer", tiny_dir, "--max-length", "64", "--out", str(out_dir),
                     "--padding-free"], capsys)[0] == 0
    ds = datasets.load_dataset("json", data_files=str(out_dir / "packed.jsonl"), split="train")
    assert ds.num_rows >= 1 and all(sum(r) == len(i) for r, i in zip(ds["seq_lengths"], ds["input_ids"]))


def test_check_does_not_list_packing_codes_as_quiet(tmp_path, tiny_dir, capsys):  # noqa: F811
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN)
    _, out, _ = run_main(["check", data, "--tokenizer", tiny_dir], capsys)
    quiet = out[out.index("quiet:"):]
    assert not any(code in quiet for code in PACKING_CODES)
    _, out, _ = run_main(["pack", data, "--tokenizer", tiny_dir, "--max-length", "200"], capsys)
    assert "packing-truncates" in out[out.index("quiet:"):]


def test_bad_pack_options_are_usage_errors(tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN)
    for bad in (["--max-length", "0"], ["--max-length", "8", "--packing", "greedy"],
                ["--max-length", "8", "--batch-size", "0"]):
        code, _, err = run_main(["pack", data, *bad], capsys)
        assert code == 2 and "usage:" in err


def test_num_proc_gives_the_same_packing(tmp_path, tiny_dir, capsys):  # noqa: F811
    records = [dict(r, id=f"{r['id']}-{i}") for i, r in enumerate((CLEAN + LONG + ZERO) * 3)]
    data = write_jsonl(tmp_path / "d.jsonl", records, ['{"broken'])
    base = ["pack", data, "--tokenizer", tiny_dir, "--max-length", "64", "--json", "--chunk-size", "2",
            "--strategy", "all-tokens"]
    _, one, _ = run_main(base, capsys)
    _, two, _ = run_main(base + ["--num-proc", "2"], capsys)
    assert json.loads(one) == json.loads(two)
    assert json.loads(one)["packing"]["samples"] == 12 and json.loads(one)["totals"]["records"] == 13


def test_text_header_names_the_packed_length_and_counts_in_the_singular(tmp_path, tiny_dir, capsys):  # noqa: F811
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN)
    out_dir = tmp_path / "out"
    code, out, _ = run_main(["pack", data, "--tokenizer", tiny_dir, "--max-length", "1024", "--out", str(out_dir)],
                            capsys)
    assert code in (0, 1)
    head = out.splitlines()[0]
    assert "max_length 1024 (packed sequences; samples not truncated)" in head and "max_length none" not in out
    rows = (out_dir / "packed.jsonl").read_text().splitlines()
    assert len(rows) == 1  # two short samples fit one 1024-token sequence
    assert "-> 1 packed sequence (" in out and "in 1 micro-batch\n" in out
    assert f"Wrote {out_dir / 'packed.jsonl'}: 1 packed sequence\n" in out
    assert "1 packed sequences" not in out


@pytest.mark.parametrize("argv, padding_free", [
    ([], True), (["--packing", "bfd_split"], True), (["--packing", "wrapped"], False),
    (["--padded"], False), (["--packing", "wrapped", "--padding-free"], True)])
def test_layout_follows_trl_by_default(tmp_path, tiny_dir, capsys, argv, padding_free):  # noqa: F811
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN)
    code, out, _ = run_main(["pack", data, "--tokenizer", tiny_dir, "--max-length", "64", "--json", *argv], capsys)
    p = json.loads(out)["packing"]
    assert p["options"]["padding_free"] is padding_free
    assert p["layout"] == ("padding_free" if padding_free else "padded")
    attention = json.loads(out)["checks"]["packing-attention"]["first"][0]["message"]
    # a plain bfd run now reads as TRL trains it: some attention implementations keep the samples apart (wrapped
    # padding-free does not: its position_ids restart per packed sequence, not per sample)
    apart = padding_free and "wrapped" not in argv
    assert ("samples kept apart by" in attention) is apart
    assert ("no attention implementation keeps them apart" in attention) is (not apart)


def test_padded_and_padding_free_exclude_each_other(tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN)
    code, _, err = run_main(["pack", data, "--max-length", "8", "--padded", "--padding-free"], capsys)
    assert code == 2 and "not allowed with argument" in err


@pytest.mark.parametrize("extra", [["--pad-to-multiple-of", str(10**12)],
                                   ["--pad-to-multiple-of", str(10**9), "--padding-free"]])
def test_absurd_pad_multiple_is_a_usage_error_before_anything_is_loaded(tmp_path, capsys, extra):
    """Issue 21: 10**12 (10**9 padding-free) ran out of memory, exit 3."""
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN)
    code, _, err = run_main(["pack", data, "--tokenizer", str(tmp_path / "no-such-tokenizer"), "--max-length", "64",
                             *extra], capsys)
    assert code == 2 and "--pad-to-multiple-of" in err and "4,096" in err


@pytest.mark.parametrize("argv", [
    ["check", "a" * 6000],
    ["check", "d.jsonl", "--tokenizer", "t/" + "b" * 6000],
    ["check", "d.jsonl", "--chat-template", "c" * 300 + ".jinja"],
    ["export", "d.jsonl", "--out", "o" * 6000],
    ["loss", "d.jsonl", "--model", "m" * 6000],
    ["training-template", "--chat-template", "x.jinja", "--out", "/".join(["p" * 200] * 30)],
])
def test_a_path_no_file_system_holds_is_a_usage_error(capsys, argv):
    """Issue 21: a 6,000-character path failed as "File name too long", exit 3."""
    code, _, err = run_main(argv, capsys)
    assert code == 2 and "bytes long" in err and "Internal error" not in err
