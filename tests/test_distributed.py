"""The Ray engine (``--engine ray``, ``inspector/data/distributed.py``) gives what the local engine gives.

On a local Ray (``ray.init(num_cpus=2)``, started once for the module): the report of ``check`` is equal to the local
one (counts, codes, examples, first findings) on the demo, on a folder that mixes every container and every kind of
bad line, and on the corpus data; the export's shards, read in name order, are the local ``accepted.jsonl`` /
``rejected.jsonl`` row for row (Parquet too); a worker killed in the middle of an export is restarted by Ray and
nothing is lost or written twice. Without Ray the tests that need it skip; the error naming the extra, the report
merge and the evaluator's position bookkeeping are tested without a cluster.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.data import generate_records  # noqa: E402
from inspector.checks import CheckContext, Report, iter_outcomes  # noqa: E402
from inspector.cli.main import main  # noqa: E402
from inspector.errors import InspectorError  # noqa: E402
from inspector.data.loaders import iter_records  # noqa: E402

DEMO = REPO / "inspector" / "demo" / "demo.jsonl"


# --- data --------------------------------------------------------------------------------------------------------

def write_mixed(folder: Path, generated: int = 600) -> Path:
    """Every container and every kind of bad record, over several files (so files start at positions > 0) and more
    than 512 records (so --verify sample picks records by global position past the first file)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = DEMO.read_bytes().split(b"\n")
    (folder / "a.jsonl").write_bytes(
        b"\xef\xbb\xbf" + lines[0] + b"\n\n   \n" + b"\n".join(lines[1:6])
        + b'\n{"prompt": 1\n\xff\xfe not utf-8\n{"prompt": "hi", "completion": "yo"}\r\n\xc2\xa0\n{"messages": []}\n'
        + b'[1, 2]\n{"prompt": "x", "completion": "y"}')  # no newline at the end
    demo = [json.loads(x) for x in lines[6:] if x.strip()]
    (folder / "b.json").write_text(json.dumps(demo[:3]), encoding="utf-8")
    rows = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(40)] + [{"prompt": None, "completion": "x"}]
    pq.write_table(pa.Table.from_pylist(rows), folder / "c.parquet")
    with open(folder / "d.ndjson", "w", encoding="utf-8") as f:
        for r in generate_records(generated, seed=5):
            f.write(json.dumps(r) + "\n")
        f.write('{"messages": [{"role": "narrator", "content": "x"}]}\n')
        for r in demo[3:]:
            f.write(json.dumps(r) + "\n")
    (folder / "notes.txt").write_text("not data: skipped by both engines")
    return folder


def write_generated(path: Path, n: int, seed: int = 1) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in generate_records(n, seed=seed):
            f.write(json.dumps(r) + "\n")
    return path


def cli_json(capsys, *args: str) -> tuple[int, dict]:
    code = main(["check", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def lines_of(pattern: str) -> list[str]:
    return [line for f in sorted(glob.glob(pattern)) for line in open(f, encoding="utf-8")]


# --- without a cluster -------------------------------------------------------------------------------------------

def test_missing_ray_names_the_extra(monkeypatch, capsys):
    from inspector.data import distributed

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(InspectorError, match=r"sft-inspector\[ray\].*requirements-ray.txt"):
        distributed.require_ray()
    assert main(["check", str(DEMO), "--engine", "ray", "--verify", "none"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: --engine ray needs Ray Data") and "pip install 'sft-inspector[ray]'" in err


def test_ray_failing_to_start_is_exit_2_and_leaves_no_folders(monkeypatch, tmp_path, capsys):
    """Issue 21: Ray failing to start was exit 3 ("This is a bug") and left accepted/ and rejected/ without a
    report.json. Now: a clear exit 2, and the output folder holds nothing of the run."""
    import ray

    def refuse(*args, **kwargs):
        raise OSError("[Errno 28] No space left on device: '/tmp/ray/session_x'")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    out = tmp_path / "out"
    assert main(["export", str(DEMO), "--engine", "ray", "--verify", "none", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: cannot start or reach Ray (a local Ray): [Errno 28] No space left") and \
        "Internal error" not in err
    assert not (out / "accepted").exists() and not (out / "rejected").exists() and not (out / "report.json").exists()


def test_an_unreachable_cluster_fails_fast():
    from inspector.data.distributed import _check_reachable

    with pytest.raises(InspectorError, match=r"cannot reach the Ray cluster at 127.0.0.1:1 .*is it running"):
        _check_reachable("127.0.0.1:1")
    _check_reachable("auto")  # left to Ray


def test_merged_part_reports_equal_the_whole(deepseek_setup, tmp_path):
    """Report.merge: the reports of consecutive parts, merged in order, are the report of the whole."""
    items = list(iter_records(write_mixed(tmp_path / "mixed", generated=40)))
    ctx = CheckContext(deepseek_setup, verify="none")
    outcomes = list(iter_outcomes(items, ctx))
    whole = Report(max_examples=3).add_all(outcomes).to_dict()
    for cuts in ([0, len(outcomes)], [0, 1, 2, 30, len(outcomes)], list(range(0, len(outcomes) + 1, 7)) + [None]):
        merged = Report(max_examples=3)
        for a, b in zip(cuts, cuts[1:]):
            merged.merge(Report(max_examples=3).add_all(outcomes[a:b]))
        assert merged.to_dict() == whole
    assert whole["checks"]["record-rejected"]["examples"] == ["a-6", "a-7", "a-9"]  # the first three, in order


def test_evaluator_passes_global_positions_to_the_verifier(deepseek_setup, monkeypatch):
    """A batch arrives in any order and may hold runs far apart: each run is evaluated from its own first position,
    so --verify sample picks the records it picks locally (the first 16 and every 256th)."""
    import pickle

    import inspector.checks.run as checks_run  # the module whose _check_record calls verification_findings
    from inspector.data import distributed
    from inspector.checks import finding

    verified: list[str] = []

    def fake_verify(sample, conv, ctx):
        verified.append(conv.id)
        return [finding("label-verification", "verified", conversation_id=conv.id)]

    monkeypatch.setattr(checks_run, "verification_findings", fake_verify)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")  # the actor sets it when unset: keep this process as it is
    ctx = CheckContext(deepseek_setup, verify="sample")
    records = list(generate_records(20, seed=2))
    positions = [511, 4, 512, 256, 15, 16, 3, 257, 513, 17]  # three runs: 3-4, 15-17, 256-257, 511-513
    batch = pa.table({"position": positions, "file": [0] * 10, "line": [p + 1 for p in positions],
                      "index": positions, "kind": [distributed.LINE] * 10,
                      "payload": [json.dumps(dict(records[i], id=f"r{p}")).encode() for i, p in
                                  enumerate(positions)]})
    job = distributed._Job((distributed.InputFile("/x/gen.jsonl", "gen.jsonl", "jsonl"),), None, ctx.opts,
                           ctx.thresholds, (), "sample", chunk_size=2)
    out = distributed._Evaluator(deepseek_setup, job)(batch)
    assert out["start"] == [3, 15, 256, 511] and out["count"] == [2, 3, 2, 3]
    assert sorted(verified) == sorted(["r3", "r4", "r15", "r256", "r512"])
    merged = Report()
    for part in out["partial"]:
        merged.merge(pickle.loads(part))
    assert merged.records == 10 and merged.checks["label-verification"].findings == 5


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
def test_long_lines_are_skipped_as_the_local_loader_skips_them(chunk):
    """A line longer than the per-record limit is never kept whole: the Ray reader gives a ``_LongLine`` of the
    same size where ``files._bounded_lines`` does (the edge at exactly the limit included), and byte ranges
    still give every line once."""
    import io

    from inspector.data.distributed import _iter_lines, range_lines
    from inspector.data.files import _bounded_lines, _LongLine

    data = b"ab\n" + b"x" * 8 + b"\n" + b"y" * 9 + b"\n" + b"\n" + b"z" * 30 + b"\nlast" + b"w" * 20

    def shape(lines):
        return [("long", x.size, x.head[:3]) if isinstance(x, _LongLine) else x for x in lines]

    local = shape(_bounded_lines(io.BytesIO(data), limit=8))
    assert shape(_iter_lines(io.BytesIO(data), chunk=chunk, limit=8)) == local
    assert [x[0] if isinstance(x, tuple) else x for x in local] == [b"ab\n", b"x" * 8 + b"\n", "long", b"\n",
                                                                      "long", "long"]
    assert sum(x[1] if isinstance(x, tuple) else len(x) for x in local) == len(data)
    import inspector.data.distributed as d

    old = d.MAX_RECORD_BYTES
    d.MAX_RECORD_BYTES = 8
    try:
        for cut in range(len(data) + 1):  # two byte ranges, cut anywhere: every line once, in order
            got = shape(range_lines(io.BytesIO(data), 0, cut)) + shape(range_lines(io.BytesIO(data), cut, len(data)))
            assert got == local, cut
    finally:
        d.MAX_RECORD_BYTES = old


def test_what_ray_reports_goes_to_stderr_not_into_the_json(capsys):
    """Ray prints cluster reports ("A worker died ...") from a background thread at any moment; once the engine
    has run they go to stderr, so stdout holds only the report."""
    pytest.importorskip("ray")
    import ray._private.worker as worker

    from inspector.data.distributed import _ray_reports_to_stderr

    _ray_reports_to_stderr()
    _ray_reports_to_stderr()  # wrapped once
    worker.print_to_stdstream({"lines": ["A worker died or was killed"], "pid": "raylet", "is_err": False},
                              ignore_prefix=False)
    out, err = capsys.readouterr()
    assert out == "" and "A worker died or was killed" in err


# --- on a local Ray ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -r requirements-ray.txt")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_check_on_demo_equals_local(ray_cluster, capsys):
    args = [str(DEMO), "--max-length", "1024"]
    code, local = cli_json(capsys, *args)
    code_ray, remote = cli_json(capsys, *args, "--engine", "ray", "--ray-workers", "2")
    assert code == code_ray == 1
    assert remote == local
    assert remote["totals"]["records"] == 12 and remote["checks"]["no-trainable-tokens"]["examples"] == [
        "demo-05-no-assistant", "demo-06-loss-weight-zero"]


def test_check_on_20k_generated_conversations_equals_local(ray_cluster, tmp_path, capsys):
    """20,000 generated conversations (five profiles, system prompts, terse and long answers), cut into eight byte
    ranges for two workers: the same report as the local engine, the verifier's sample included."""
    data = str(write_generated(tmp_path / "gen20k.jsonl", 20_000, seed=3))
    code, local = cli_json(capsys, data)
    code_ray, remote = cli_json(capsys, data, "--engine", "ray", "--ray-workers", "2")
    assert code == code_ray and remote == local
    assert local["totals"]["records"] == 20_000 and local["totals"]["samples"] == 20_000
    assert local["checks"]["low-trainable-share"]["records"] > 0  # the generator's terse answers fire it


def test_check_on_mixed_folder_equals_local(ray_cluster, tmp_path, capsys):
    """Bad lines (invalid JSON, not UTF-8, not an object, no messages), blank lines, a BOM, no final newline, a .json
    list, Parquet rows, a limit inside the last file, small batches and chunks: the same report."""
    data = str(write_mixed(tmp_path / "mixed"))
    reports = []
    for extra in ([], ["--limit", "300", "--strategy", "split-turns"]):
        _, local = cli_json(capsys, data, *extra)
        _, remote = cli_json(capsys, data, *extra, "--engine", "ray", "--ray-workers", "2", "--ray-batch-size", "97",
                             "--chunk-size", "10")
        assert remote == local
        reports.append(remote)
    full, limited = reports
    assert full["totals"]["rejected_by_loader"] == 6 and full["totals"]["records"] == 660
    assert full["checks"]["record-rejected"]["first"][1]["message"].startswith("line 10: not valid UTF-8")
    assert limited["totals"]["records"] == 300


def test_export_shards_are_the_local_files_in_order(ray_cluster, tmp_path, capsys):
    data = str(write_mixed(tmp_path / "mixed", generated=150))
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert main(["export", data, "--out", str(local)]) == 0
    assert main(["export", data, "--out", str(remote), "--engine", "ray", "--ray-workers", "2",
                 "--ray-batch-size", "50"]) == 0
    out = capsys.readouterr().out
    n = json.loads((local / "report.json").read_text())["export"]["accepted_records"]
    assert n > 150 and f"Wrote {remote / 'accepted'}: {n} samples from {n} records" in out
    assert lines_of(str(remote / "accepted" / "part-*.jsonl")) == lines_of(str(local / "accepted.jsonl"))
    assert lines_of(str(remote / "rejected" / "part-*.jsonl")) == lines_of(str(local / "rejected.jsonl"))
    a, b = (json.loads((d / "report.json").read_text()) for d in (local, remote))
    assert b.pop("export")["accepted_shards"] == len(glob.glob(str(remote / "accepted" / "*")))
    a.pop("export")
    assert a == b
    # an existing export is refused without --force, replaced with it
    assert main(["export", data, "--out", str(remote), "--engine", "ray"]) == 2
    assert "already holds accepted/, rejected/, report.json: pass --force" in capsys.readouterr().err
    assert main(["export", data, "--out", str(remote), "--engine", "ray", "--ray-workers", "2", "--force",
                 "--format", "parquet"]) == 0
    assert main(["export", data, "--out", str(local), "--force", "--format", "parquet"]) == 0
    assert not glob.glob(str(remote / "accepted" / "*.jsonl")) and glob.glob(str(remote / "rejected" / "*.jsonl"))
    shards = pq.ParquetDataset(sorted(glob.glob(str(remote / "accepted" / "*.parquet")))).read()
    assert shards.to_pylist() == pq.read_table(local / "accepted.parquet").to_pylist()


def test_loading_errors_exit_2_with_the_loader_message(ray_cluster, tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope.jsonl"), "--engine", "ray"]) == 2
    assert "Error: data file not found:" in capsys.readouterr().err
    (tmp_path / "x.csv").write_text("a,b\n")
    assert main(["check", str(tmp_path / "x.csv"), "--engine", "ray"]) == 2
    assert "unsupported file type '.csv'" in capsys.readouterr().err
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "state.json").write_text("{}")
    assert main(["check", str(saved), "--engine", "ray"]) == 2
    assert "save_to_disk, which --engine ray does not read" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text('[{"prompt": "a", "completion": "b"}')  # raised inside a Ray read task
    assert main(["check", str(broken), "--engine", "ray"]) == 2
    assert f"\nError: {broken} is not valid JSON: it ends before" in "\n" + capsys.readouterr().err


def test_a_file_of_a_folder_that_cannot_be_read_is_one_rejected_record_as_locally(ray_cluster, tmp_path, capsys):
    """In a folder, a broken .json file and a Parquet file that is not one are each one rejected record with the
    reason; the good file's records go on: the report equals the local engine's."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.json").write_text('[{"prompt": "a", "completion": "b"}')
    (folder / "b.parquet").write_bytes(b"PAR1 not really")
    (folder / "c.jsonl").write_text('{"prompt": "2 + 2?", "completion": "4"}\n' * 3)
    (folder / "d.jsonl").write_text('{"prompt": "utf-16", "completion": "ok"}\n\n{"prompt": 1\n', encoding="utf-16")
    (folder / "e.jsonl").write_bytes('{"prompt": "no BOM"}\n'.encode("utf-16-le"))
    code, local = cli_json(capsys, str(folder))
    code_ray, remote = cli_json(capsys, str(folder), "--engine", "ray", "--ray-workers", "2")
    assert code == code_ray == 1 and remote == local
    assert local["totals"]["records"] == 8 and local["totals"]["conversations"] == 4
    assert local["checks"]["record-rejected"]["examples"] == ["a.json", "b.parquet", "d-1", "e.jsonl"]


@pytest.mark.skipif(not os.environ.get("SFT_CORPUS"), reason="SFT_CORPUS is not set (the corpus data folder)")
def test_check_on_corpus_data_equals_local(ray_cluster, corpus, capsys):
    """The corpus data folder: five files (JSON and JSONL, ShareGPT with tools, parts with loss_weight, reasoning,
    Alpaca), 1,940 records, with Qwen 2.5's tokenizer and template."""
    args = [str(corpus / "data"), "--tokenizer", str(corpus / "tokenizers" / "qwen2"), "--max-length", "512"]
    _, local = cli_json(capsys, *args)
    _, remote = cli_json(capsys, *args, "--engine", "ray", "--ray-workers", "2")
    assert remote == local and local["totals"]["records"] == 1940


def _descendant_evaluators() -> list:
    import psutil

    me = psutil.Process()
    return [p for p in me.children(recursive=True) if "_Evaluator" in " ".join(p.cmdline())]


def test_a_killed_worker_is_retried_and_nothing_is_lost_or_duplicated(ray_cluster, tmp_path):
    """SIGKILL one of the two actors once the first shards are written: Ray restarts it, its batch runs again, and
    the export is the local one, row for row, with nothing a dead attempt wrote left behind."""
    from inspector.data.distributed import RayOptions, run_export
    from inspector.template.tokenizer import load_setup

    data = write_generated(tmp_path / "gen.jsonl", 1200)
    ctx = CheckContext(load_setup(), verify="sample")
    local = tmp_path / "local"
    assert main(["export", str(data), "--out", str(local)]) == 0
    out = tmp_path / "ray"
    result: dict = {}

    def run():
        try:
            result["summary"] = run_export(str(data), ctx, Report(), str(out), chunk_size=25,
                                           options=RayOptions(workers=2, batch_size=50))
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 120
    killed = None
    while time.time() < deadline and thread.is_alive():
        if glob.glob(str(out / "accepted" / "part-*.jsonl")):
            workers = _descendant_evaluators()
            if workers:
                killed = workers[0]
                killed.send_signal(signal.SIGKILL)
                break
        time.sleep(0.05)
    assert killed is not None, "no worker was found mid-run to kill"
    shards_at_kill = len(glob.glob(str(out / "accepted" / "part-*.jsonl")))
    thread.join(timeout=300)
    assert "error" not in result, result.get("error")
    assert shards_at_kill < 24  # it died mid-run (at least 24 batches of up to 50)
    assert not killed.is_running() or killed.status() == "zombie"
    assert lines_of(str(out / "accepted" / "part-*.jsonl")) == lines_of(str(local / "accepted.jsonl"))
    assert lines_of(str(out / "rejected" / "part-*.jsonl")) == lines_of(str(local / "rejected.jsonl"))
    names = sorted(os.listdir(out / "accepted"))  # no .partial file of the dead attempt left
    assert len(names) == result["summary"]["accepted_shards"] and all(n.startswith("part-") for n in names)
    a, b = (json.loads((d / "report.json").read_text()) for d in (local, out))
    assert (a["totals"], a["checks"]) == (b["totals"], b["checks"])  # settings: run_export got a bare Report


def test_byte_ranges_give_every_line_once_with_its_number(tmp_path):
    """Read tasks cut JSONL files at byte offsets: any cut points give every line exactly once, and the counting pass
    numbers lines and records as the loader does (blank lines take a line number, not a record number)."""
    import random

    import pyarrow.fs as pafs

    from inspector.data import distributed as d

    path = tmp_path / "x.jsonl"
    data = (b"\xef\xbb\xbf{}\n\n  \n" + b"".join(b'{"a": %d}\n' % i if i % 5 else b"\n" for i in range(60))
            + b"\r\n\xc2\xa0\n\xff\n{}")
    path.write_bytes(data)
    expected = data.split(b"\n")
    expected = [x + b"\n" for x in expected[:-1]] + ([expected[-1]] if expected[-1] else [])
    fs = pafs.LocalFileSystem()
    files = [d.InputFile(str(path), "x.jsonl", "jsonl")]
    local = [(x.source.line, x.id) for x in iter_records(path)]
    rng = random.Random(0)
    for cuts in ([], [1], [3, 4, 5], sorted(rng.sample(range(1, len(data)), 12)), list(range(1, len(data)))):
        bounds = [0, *cuts, len(data)]
        ranges = [d._Range(0, a, b, b - a) for a, b in zip(bounds, bounds[1:])]
        with open(path, "rb") as f:
            assert [line for r in ranges for line in d.range_lines(f, r.begin, r.end)] == expected
        counts = {k: d._count_range(fs, files[0], r, None) for k, r in enumerate(ranges)}
        starts = d._starts(files, ranges, counts)
        got = [(line, index) for k, r in enumerate(ranges)
               for index, line, _, _ in d._range_records(fs, files[0], r, starts[k], None)]
        assert [(line, f"x-{index}") for line, index in got] == [(line, f"x-{i}") for i, (line, _) in enumerate(local)]
    assert d.split_bytes(236 << 20, 2) == 30932992 and d.split_bytes(1000, 2) == 64 << 10
