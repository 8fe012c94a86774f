"""SFT Inspector: see, token by token, what a supervised fine-tuning run trains on.

Run with ``streamlit run app.py``. This file only sets up the page, draws the shared sidebar (``ui.sidebar``)
and hands over to the page chosen in the navigation. The pages live in ``app_pages/`` (a folder named ``pages/``
would switch Streamlit into its legacy multipage mode) and every computation in ``inspector/``.
"""

import streamlit as st

import ui

st.set_page_config(page_title="SFT Inspector", page_icon=":material/table_view:", layout="wide")

PAGES = [
    st.Page(ui.PAGE_FILES["inspect"], title="Inspect", icon=":material/table_view:", default=True),
    st.Page(ui.PAGE_FILES["dataset"], title="Dataset", icon=":material/bar_chart:"),
    st.Page(ui.PAGE_FILES["weights"], title="Gradient weights", icon=":material/balance:"),
    st.Page(ui.PAGE_FILES["export"], title="Export", icon=":material/download:"),
]

page = st.navigation(PAGES)
ui.sidebar()  # drawn here, in the entrypoint, so its widgets keep their values on every page
page.run()
