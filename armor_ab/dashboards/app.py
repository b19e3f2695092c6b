"""armor-ab dashboards: the entrypoint of ``streamlit run`` (``armor-ab dashboard`` starts it).

Pages: Experiments (overview), Design (YAML editor and power calculator), Results (statistics),
ROI (what-if and export), Content (variants side by side, review). Each page reads and writes
only through the HTTP API; see ``armor_ab/dashboards/lib``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).resolve().parent / "views"  # not "pages/": that name would switch on Streamlit's legacy page discovery

st.set_page_config(page_title="armor-ab", page_icon=":material/science:", layout="wide")
nav = st.navigation(
    [
        st.Page(VIEWS / "experiments.py", title="Experiments", icon=":material/table_view:", url_path="experiments", default=True),
        st.Page(VIEWS / "design.py", title="Design", icon=":material/edit_note:", url_path="design"),
        st.Page(VIEWS / "results.py", title="Results", icon=":material/monitoring:", url_path="results"),
        st.Page(VIEWS / "roi.py", title="ROI", icon=":material/payments:", url_path="roi"),
        st.Page(VIEWS / "content.py", title="Content", icon=":material/image:", url_path="content"),
    ]
)
nav.run()
