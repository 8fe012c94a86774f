"""What the app draws, as plain data: pandas tables, escaped HTML strings and Plotly figures. No Streamlit here:
the pages only hand these to Streamlit, and the tests check them exactly.

- ``viz``: token tables (label or -100, role, visible whitespace), dataset charts, gradient-weight tables;
- ``packing``: packed sequences as blocks, tables and weights before/after packing;
- ``loss``: per-token loss tables and figures;
- ``template``: a training template's verification, side by side with the original.
"""
