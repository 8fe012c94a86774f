"""The sidebar's "Trainer config" box: upload the training run's config (TRL, axolotl, LLaMA-Factory; or name its
path where the server allows paths), read it with ``inspector.config``, and show which settings were taken,
ignored, or have no equivalent. ``ui.sidebar`` applies the taken ones to its widgets once per config (what the user
changes afterwards stays: the widget wins, as a flag wins over ``--config`` on the command line).

Example: an axolotl YAML with ``sequence_len: 512`` and ``chat_template: chatml`` -> the box lists
"sequence_len: 512 -> --max-length 512" and the sidebar's max length becomes 512, its template the ChatML text.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from inspector.config.common import MAX_CONFIG_BYTES, NO_EQUIVALENT, TAKEN, TrainerConfig
from inspector.errors import InspectorError

from . import show

CONFIG_TYPES = ["yaml", "yml", "json"]
UPLOAD_KEY, STORE_KEY = "sb_config_upload", "ui_config_file"
CONSENT_KEY = "sb_config_tokenizer_template"
CONSENT_LABEL = "Use the tokenizer's own template where the config names one the inspector does not have"


def _remember() -> None:
    f = st.session_state.get(UPLOAD_KEY)
    if f is None:
        st.session_state.pop(STORE_KEY, None)
    else:
        st.session_state[STORE_KEY] = (Path(f.name).name, f.getvalue())


def _read(paths_allowed: bool) -> tuple[str, bytes] | None:
    """(name, bytes) of the uploaded config, or of the file at the path typed in (server paths only)."""
    st.file_uploader("Training config (.yaml, .yml, .json)", type=CONFIG_TYPES, key=UPLOAD_KEY, on_change=_remember)
    if STORE_KEY in st.session_state:
        return st.session_state[STORE_KEY]
    if not paths_allowed:
        return None
    if "sb_config_path" not in st.session_state:
        st.session_state["sb_config_path"] = ""
    path = st.text_input("or its path on this machine", key="sb_config_path").strip()
    if not path:
        return None
    p = Path(path).expanduser()
    try:
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise InspectorError(f"{path} is larger than {MAX_CONFIG_BYTES // 2**20} MiB: not a training config")
        return str(p), p.read_bytes()
    except OSError as exc:
        show.error("", f"Trainer config: cannot read {path}: {exc.strerror or exc}")
        return None
    except InspectorError as exc:
        show.error("", f"Trainer config: {exc}")
        return None


def section(paths_allowed: bool) -> tuple[TrainerConfig | None, str, bool]:
    """Draw the box; return (the config read, a digest that changes with the file, the template consent)."""
    from inspector.config.load import load_config_text

    with st.expander("Trainer config (TRL, axolotl, LLaMA-Factory)", expanded=STORE_KEY in st.session_state):
        source = _read(paths_allowed)
        if CONSENT_KEY not in st.session_state:
            st.session_state[CONSENT_KEY] = False
        agreed = bool(st.checkbox(CONSENT_LABEL, key=CONSENT_KEY,
                                  help="LLaMA-Factory's template names and axolotl's built-in templates (but chatml) "
                                       "live in the trainer's code; the tokenizer's own template may differ."))
        if source is None:
            st.caption("Upload the config your training run uses: its max length, strategy, template and tokenizer "
                       "fill the sidebar.")
            return None, "", agreed
        name, data = source
        if len(data) > MAX_CONFIG_BYTES:
            show.error("", f"Trainer config: {name} is larger than {MAX_CONFIG_BYTES // 2**20} MiB: not a config")
            return None, "", agreed
        try:
            cfg = load_config_text(data.decode("utf-8-sig"), name, allow_paths=paths_allowed)
        except UnicodeDecodeError:
            show.error("", f"Trainer config: {name} is not UTF-8 text")
            return None, "", agreed
        except InspectorError as exc:
            show.error("", f"Trainer config: {exc}")
            return None, "", agreed
        show.caption("Read as: ", f"{cfg.trainer} config {Path(name).name}")
        for s in cfg.by_status(TAKEN):
            show.caption("taken: ", s.line())
        others = [s for s in cfg.settings if s.status != TAKEN]
        if others:
            st.markdown("**Not taken**")
            for s in others:
                show.caption("no equivalent: " if s.status == NO_EQUIVALENT else "ignored: ", s.line())
        return cfg, hashlib.sha256(data).hexdigest()[:16], agreed
