"""The app's pages. Streamlit runs every ``*.py`` file in this folder as a page, ordered by its number prefix
(``1_dataset.py`` is served at ``/dataset``); ``app.py`` beside the folder is the first page (Inspect).

Not pages: this ``__init__.py`` and the ``common/`` package (Streamlit only looks at the ``*.py`` files directly
in ``pages/``), which holds the Streamlit glue every page shares. See ``common/__init__.py`` for how to add a page.
"""
