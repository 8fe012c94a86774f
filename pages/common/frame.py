"""The frame of every page: page config, the shared sidebar, the title, the sidebar's problems, and an error box
instead of a traceback for anything the page body does not handle.

It sits above both ``show`` (drawing helpers) and ``ui`` (the sidebar), which is why it is a module of its own:
``ui`` draws with ``show``, and nothing below imports this frame, so the glue has no import circle.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import streamlit as st

from . import ui
from .show import crash_box, is_panic


@contextmanager
def page(title: str, *, needs_data: bool = True) -> Iterator[Any]:
    """Frame of every page: page config, navigation, the shared sidebar, the title and the sidebar's problems in the
    main area; yields the sidebar's ``Context``. ``needs_data``: stop with a message when there is no usable
    tokenizer, template or data. An exception the body does not handle (a PanicException included) becomes an
    error box and the session goes on; Streamlit's own stop/rerun signals pass through."""
    st.set_page_config(page_title=f"{title} · SFT Inspector", layout="wide")
    try:
        ctx = ui.sidebar()
        st.title(title)
        ui.show_problems(ctx)
        if needs_data:
            ui.require_context(ctx)
    except Exception as exc:  # noqa: BLE001 - the sidebar must never show a traceback
        crash_box(exc, "The sidebar")
        st.stop()
    except BaseException as exc:
        if not is_panic(exc):
            raise
        crash_box(exc, "The sidebar")
        st.stop()
    try:
        yield ctx
    except Exception as exc:  # noqa: BLE001
        crash_box(exc)
    except BaseException as exc:
        if not is_panic(exc):
            raise  # st.stop(), st.rerun(), st.switch_page() signals, KeyboardInterrupt
        crash_box(exc)
