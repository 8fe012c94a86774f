"""The Streamlit glue every page shares: the sidebar, cached loaders, session state, navigation, and output helpers
that show user-supplied text as text.

Why this layout: a ``pages/`` folder beside ``app.py`` makes Streamlit run the app as a classic multipage app (every
``pages/*.py`` is a page, ``app.py`` the first one). The app never calls ``st.navigation``, so the process never
switches between the classic mode and ``st.navigation``'s: a deep link such as ``/dataset`` is served the same way
on a fresh server and on a warm one. Each page therefore draws the shared sidebar itself, through ``page()``, and
the sidebar keeps its values across pages in session state (``ui``), mirrored in the URL (``st.query_params``).

Modules, each importing only those listed before it (no import circle): ``keys`` (stable cache and session
keys: ``options_key``, ``sha``), ``show`` (navigation, error boxes and findings drawn as text), ``analysis`` (cached
tokenizers, labels and findings of one conversation, the streamed scan of the whole dataset, export files), ``ui``
(the sidebar, its limits and the ``Context`` it builds), ``frame`` (``page()``: the frame of every page, sidebar
included), ``model`` (the Loss page's model, loaded only on request, and Inspect's loss column).

Adding a page is one file: ``pages/4_packing.py`` with a docstring whose first line is "Packing: what it shows" and
a body inside ``with page("Packing") as ctx:``; the navigation lists it from that docstring (``show.page_list``).
"""

from . import analysis, frame, keys, show, ui
from .frame import page

__all__ = ["analysis", "frame", "keys", "page", "show", "ui"]
