"""The CLI checks paths and options before it loads a tokenizer or a model: a typo is reported at once (exit 2),
and the slow loaders are never called."""

from __future__ import annotations

import pytest

import inspector.template.tokenizer as tokenizer_module
import inspector.train.model as model_module
from inspector.cli.main import main
from test_cli import CLEAN, write_jsonl


@pytest.fixture
def no_loading(monkeypatch):
    """Every tokenizer or model load is recorded (and refused): the tests assert none happened."""
    calls: list[str] = []

    def refuse(name, *args, **kwargs):
        calls.append(str(name))
        raise AssertionError(f"loaded {name} before the arguments were checked")

    monkeypatch.setattr(tokenizer_module, "load_tokenizer", refuse)
    monkeypatch.setattr(model_module, "load_model", refuse)
    return calls


@pytest.mark.parametrize("command", [["check"], ["export", "--out", "x"], ["show"], ["pack", "--max-length", "64"],
                                     ["loss"], ["training-template", "--chat-template", __file__]])
def test_missing_data_is_reported_before_any_loading(command, tmp_path, capsys, no_loading):
    missing = str(tmp_path / "nonexistent.jsonl")
    code = main([command[0], missing, *command[1:]])
    err = capsys.readouterr().err
    assert code == 2 and f"Error: data file not found: {missing}" in err
    assert no_loading == []


def test_other_bad_paths_and_options_come_first(tmp_path, capsys, no_loading):
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN)
    (tmp_path / "d.csv").write_text("a,b\n")
    cases = {
        ("check", str(tmp_path / "d.csv")): "unsupported file type '.csv'",
        ("check", data, "--chat-template", str(tmp_path / "none.jinja")): "Chat template file not found",
        ("check", data, "--tokenizer", str(tmp_path / "no-folder")): "Tokenizer folder not found",
        ("pack", data, "--max-length", "8", "--tokenizer", str(tmp_path / "m.gguf")): "GGUF file not found",
        ("show", data, "--index", "-1"): "--index must be 0 or more",
    }
    for argv, message in cases.items():
        assert main(list(argv)) == 2
        assert message in capsys.readouterr().err
    assert no_loading == []


def test_a_hub_id_and_good_paths_pass_through_to_the_loader(tmp_path, capsys, no_loading):
    data = write_jsonl(tmp_path / "d.jsonl", CLEAN)
    assert main(["check", data, "--tokenizer", "Org/model"]) == 3  # reached the (refusing) loader: internal error
    assert no_loading == ["Org/model"]
