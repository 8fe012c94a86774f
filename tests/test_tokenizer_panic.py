"""Tokenizers that fail on what they are given. A tokenizer whose pre-tokenizer regex backtracks makes the Rust
`tokenizers` library panic, and Python sees ``pyo3_runtime.PanicException``, which derives from BaseException, so
every ``except Exception`` misses it. Wherever the core calls a tokenizer, such a panic rejects the one record (or
refuses the tokenizer) with the reason. A tokenizer folder whose file never ends is refused before it is read.

The tokenizer is trained here (conftest.train_panicky_tokenizer): the tiny BPE behind a
``Split(Regex("(a+)+b"))`` pre-tokenizer, which panics on ``"a" * 40 + "!"`` and tokenizes other text as usual.
"""

from __future__ import annotations

import pytest

from conftest import CHATML, PANIC_TEXT, train_panicky_tokenizer
from inspector.checks import CheckContext, evaluate, iter_outcomes
from inspector.conversations import Conversation, Message
from inspector.errors import TokenizerLoadError
from inspector.labels.engine import STRATEGIES, LabelEngine, LabelOptions, tokenize_batch
from inspector.template.tokenizer import ChatSetup, is_tokenizer_failure, load_tokenizer


@pytest.fixture(scope="module")
def panicky():
    return train_panicky_tokenizer()


def _panic_type(tok) -> type[BaseException]:
    try:
        tok._tokenizer.encode(PANIC_TEXT)
    except BaseException as exc:  # noqa: BLE001 - the point: it is not an Exception
        return type(exc)
    pytest.fail("the tokenizer did not panic")


def _conv(cid: str, user: str) -> Conversation:
    return Conversation(cid, [Message("user", user), Message("assistant", "The quick brown fox.")])


def test_the_tokenizer_really_panics_with_a_base_exception(panicky):
    panic = _panic_type(panicky)
    assert panic.__name__ == "PanicException" and not issubclass(panic, Exception) and issubclass(panic, BaseException)
    with pytest.raises(panic, match="retry-limit-in-match"):
        tokenize_batch(panicky, ["fine", PANIC_TEXT])
    assert tokenize_batch(panicky, ["Hello! How can I help"])[0][0]  # ordinary text tokenizes
    assert is_tokenizer_failure(panic("x")) and is_tokenizer_failure(ValueError())
    assert not is_tokenizer_failure(KeyboardInterrupt()) and not is_tokenizer_failure(SystemExit(1))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_engine_rejects_the_one_record(panicky, strategy):
    engine = LabelEngine(ChatSetup(panicky, CHATML, "tokenizer", "panicky"))
    convs = [_conv("a", "Hello! How can I help"), _conv("boom", PANIC_TEXT), _conv("b", "What describes software?")]
    samples, errors = engine.build(convs, LabelOptions(strategy=strategy))
    assert [e.conversation_id for e in errors] == ["boom"]
    assert "PanicException" in errors[0].reason and "retry-limit-in-match" in errors[0].reason
    assert {s.conversation_id for s in samples} == {"a", "b"}


def test_the_checks_reject_the_record_with_the_reason(panicky):
    ctx = CheckContext(ChatSetup(panicky, CHATML, "tokenizer", "panicky"))
    outcomes = evaluate([_conv("a", "Hello! How can I help"), _conv("boom", PANIC_TEXT)], ctx, keep_rows=True)
    assert [oc.accepted for oc in outcomes] == [True, False]
    assert any("PanicException" in r for r in outcomes[1].reasons())


def test_a_panic_while_building_one_record_in_a_batch_falls_back_to_one_at_a_time(panicky, monkeypatch):
    """A panic that escapes the engine (here: in its batched build) costs the batch one record, not all of them."""
    ctx = CheckContext(ChatSetup(panicky, CHATML, "tokenizer", "panicky"))
    panic = _panic_type(panicky)
    real_build = ctx.engine.build

    def build(convs, opts):
        if any(c.id == "boom" for c in convs):
            raise panic("boom while building")
        return real_build(convs, opts)

    monkeypatch.setattr(ctx.engine, "build", build)
    outcomes = evaluate([_conv("a", "Hi"), _conv("boom", "Hi"), _conv("b", "Hi")], ctx)
    assert [oc.accepted for oc in outcomes] == [True, False, True]
    assert outcomes[1].reasons() == ["tokenizer-error: building the sample failed: PanicException: boom while "
                                     "building"]


def test_a_panic_in_the_streamed_build_falls_back_and_the_stream_goes_on(panicky, monkeypatch):
    """The streamed check (``iter_outcomes``) builds chunks ahead with ``iter_build``; a panic there costs one
    record: the chunks read so far are built again record by record, and the stream goes on with the next chunk."""
    ctx = CheckContext(ChatSetup(panicky, CHATML, "tokenizer", "panicky"))
    panic = _panic_type(panicky)
    real_build, real_iter = ctx.engine.build, ctx.engine.iter_build

    def build(convs, opts):
        if any(c.id == "boom" for c in convs):
            raise panic("boom while building")
        return real_build(convs, opts)

    def iter_build(chunks, opts):
        for built in real_iter(chunks, opts):
            if any(s.conversation_id == "x4" for s in built[0]):  # the chunk [boom, x4]
                raise panic("boom while building")
            yield built

    monkeypatch.setattr(ctx.engine, "build", build)
    monkeypatch.setattr(ctx.engine, "iter_build", iter_build)
    convs = [_conv(f"x{i}", "Hi") for i in range(6)]
    convs.insert(4, _conv("boom", "Hi"))
    outcomes = list(iter_outcomes(convs, ctx, chunk_size=2))
    assert [oc.record_id for oc in outcomes] == [c.id for c in convs]
    assert [oc.accepted for oc in outcomes] == [True, True, True, True, False, True, True]
    assert outcomes[4].reasons() == ["tokenizer-error: building the sample failed: PanicException: boom while "
                                     "building"]


def test_a_panic_while_loading_refuses_the_tokenizer(panicky, monkeypatch, tmp_path):
    from transformers import AutoTokenizer

    panic = _panic_type(panicky)

    def from_pretrained(*args, **kwargs):
        raise panic("called `Result::unwrap()` on an `Err` value")

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", from_pretrained)
    with pytest.raises(TokenizerLoadError, match="PanicException"):
        load_tokenizer(str(tmp_path))


def test_ctrl_c_while_tokenizing_is_not_swallowed(panicky, monkeypatch):
    import inspector.labels.engine as labels_mod

    def interrupted(tokenizer, texts):
        raise KeyboardInterrupt

    monkeypatch.setattr(labels_mod, "tokenize_batch", interrupted)
    engine = LabelEngine(ChatSetup(panicky, CHATML, "tokenizer", "panicky"))
    with pytest.raises(KeyboardInterrupt):
        engine.build([_conv("a", "Hi")], LabelOptions())


def test_a_tokenizer_folder_whose_file_never_ends_is_refused(tmp_path, panicky):
    """transformers reads tokenizer.json whole: a link to /dev/zero would take the process down."""
    folder = tmp_path / "tok"
    panicky.save_pretrained(str(folder))
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer.json").symlink_to("/dev/zero")
    with pytest.raises(TokenizerLoadError, match=r"tokenizer\.json is not a regular file"):
        load_tokenizer(str(folder))
