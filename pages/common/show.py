"""The page frame and output helpers: ``page()`` draws the navigation, the shared sidebar and the title and turns an
unexpected exception into an error box; ``error``/``warning``/``info``/``caption`` show user-supplied text (ids,
file names, template messages, ``raise_exception`` text) as text, never as markdown.

Why escape: Streamlit renders the body of ``st.error``, ``st.caption``, expander labels and radio options as
markdown, so a record id ``![x](http://host/id.png)`` would make every viewer's browser fetch that image. Every
character markdown (or Streamlit's own ``:icon:`` / ``:color[...]`` syntax) gives a meaning to is escaped with a
backslash, which markdown shows as the plain character.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.source_util import page_sort_key

ROOT = Path(__file__).resolve().parents[2]  # the folder of app.py
ENTRY_PAGE = "app.py"  # the first page: Inspect
APP_ICON = ":material/table_view:"

# --- text, never markdown -----------------------------------------------------------------------------------------

_ALWAYS = re.compile(r"([\\`*_\[\]<>!|~$:&])")  # markdown / HTML / Streamlit syntax anywhere in a line
_LINE_START = re.compile(r"(?m)^(\s*)([#=+\-]|\d+[.)])")  # headings, lists, setext underlines at a line start


def md_text(value: Any) -> str:
    """``value`` as markdown source that renders as exactly its text.

    Example: md_text("![x](http://h/i.png)") -> "\\\\!\\\\[x\\\\](http\\\\://h/i.png)", shown as ![x](http://h/i.png).
    """
    text = _ALWAYS.sub(r"\\\1", str(value))
    return _LINE_START.sub(lambda m: m.group(1) + (m.group(2)[:-1] + "\\" + m.group(2)[-1] if m.group(2)[0].isdigit()
                                                   else "\\" + m.group(2)), text)


def plain(markdown: str) -> str:
    """The text a reader sees for ``md_text`` output (backslash escapes removed); for tests and logs."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def _say(kind: str, prefix: str, detail: Any = "", where: Any = None) -> None:
    """``prefix`` is our own markdown; ``detail`` is user-supplied and shown as text."""
    body = prefix + (md_text(detail) if detail != "" else "")
    target = where if where is not None else st
    getattr(target, kind)(body)


def error(prefix: str, detail: Any = "", where: Any = None) -> None:
    _say("error", prefix, detail, where)


def warning(prefix: str, detail: Any = "", where: Any = None) -> None:
    _say("warning", prefix, detail, where)


def info(prefix: str, detail: Any = "", where: Any = None) -> None:
    _say("info", prefix, detail, where)


def caption(prefix: str, detail: Any = "", where: Any = None) -> None:
    _say("caption", prefix, detail, where)


def html(body: str) -> None:
    """Draw HTML built by ``inspector.views.viz`` (every data text in it is escaped there)."""
    st.html(body)


def findings(items: list[Any], limit: int = 50) -> None:
    """Findings as colored alerts: errors red, warnings yellow, info blue; their texts as text."""
    for f in items[:limit]:
        where = f" [{f.sample_id}]" if f.sample_id and f.sample_id != f.conversation_id else ""
        body = f"**{md_text(f.code)}**{md_text(where)}: {md_text(f.message)}"
        if f.hint:
            body += f"  \n_Fix:_ {md_text(f.hint)}"
        {"error": st.error, "warning": st.warning}.get(f.severity, st.info)(body)
    if len(items) > limit:
        st.caption(f"…and {len(items) - limit} more.")


# --- navigation -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PageEntry:
    path: str  # relative to app.py, as st.page_link and st.switch_page take it
    title: str
    icon: str | None = None


@lru_cache(maxsize=1)
def page_list() -> tuple[PageEntry, ...]:
    """Inspect (``app.py``), then every ``pages/*.py`` in Streamlit's order. A page's title is the first line of its
    docstring up to the colon ("Dataset: token shares ..." -> "Dataset"), its icon an optional module-level
    ``ICON = ":material/...:"``; so a new page file lists itself."""
    entries = [PageEntry(ENTRY_PAGE, "Inspect", APP_ICON)]
    for file in sorted((ROOT / "pages").glob("*.py"), key=page_sort_key):
        if file.name == "__init__.py" or file.name.startswith("."):
            continue
        tree = ast.parse(file.read_text(encoding="utf-8"))
        doc = (ast.get_docstring(tree) or file.stem).strip().splitlines()[0]
        icon = None
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "ICON" for t in node.targets):
                icon = ast.literal_eval(node.value)
        entries.append(PageEntry(f"pages/{file.name}", doc.split(":")[0].strip(), icon))
    return tuple(entries)


def page_path(title: str) -> str:
    """The file of the page titled ``title``. Example: page_path("Inspect") -> "app.py"."""
    return next(p.path for p in page_list() if p.title == title)


def draw_nav(query: dict[str, str]) -> None:
    """Links to every page at the top of the sidebar; each link carries the view in its query string."""
    with st.sidebar:
        for p in page_list():
            st.page_link(p.path, label=p.title, icon=p.icon, query_params=query)
        st.divider()


# --- the page frame -------------------------------------------------------------------------------------------------

def is_panic(exc: BaseException) -> bool:
    """A Rust panic raised through pyo3 (``pyo3_runtime.PanicException``, e.g. a tokenizer's regex engine giving
    up): it derives from BaseException, so ``except Exception`` misses it."""
    return type(exc).__name__ == "PanicException"


def crash_box(exc: BaseException, what: str = "This page") -> None:
    """An unexpected failure as a clear error box (the text of the exception as text), never a traceback."""
    if is_panic(exc):
        error(f"{what} stopped: the tokenizer crashed on this input (PanicException). Try another tokenizer, or "
              "leave out the record that triggers it. Details: ", exc)
    else:
        error(f"{what} stopped on an unexpected error ({type(exc).__name__}): ", exc)
