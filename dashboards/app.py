"""armor-ab dashboards: the entrypoint of ``streamlit run`` (``armor-ab dashboard`` starts it).

Pages: Experiments (overview), Design (YAML editor and power calculator), Results (statistics),
ROI (what-if and export), Content (variants side by side, review). Each page reads and writes
only through the HTTP API; see ``dashboards/lib``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run dashboards/app.py` puts only dashboards/ on the path
    sys.path.insert(0, str(ROOT))

PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="armor-ab", page_icon="🧪", layout="wide")
nav = st.navigation(
    [
        st.Page(PAGES / "experiments.py", title="Experiments", icon="📋", url_path="experiments", default=True),
        st.Page(PAGES / "design.py", title="Design", icon="✏️", url_path="design"),
        st.Page(PAGES / "results.py", title="Results", icon="📈", url_path="results"),
        st.Page(PAGES / "roi.py", title="ROI", icon="💰", url_path="roi"),
        st.Page(PAGES / "content.py", title="Content", icon="🖼️", url_path="content"),
    ]
)
nav.run()
