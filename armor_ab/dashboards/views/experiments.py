"""Experiments: every experiment with its status, dates, visitors per variant, SRM flag and verdict."""

from __future__ import annotations

import streamlit as st

from armor_ab.dashboards.lib import figures, fmt, ui
from armor_ab.dashboards.lib.api import ApiError, ApiUnavailable

ctx = ui.page(needs_experiment=False)
st.title("Experiments")

if not ctx.experiments:
    st.info("No experiments yet: create one on the Design page (admin key) or `armor-ab experiment apply FILE`.")
    st.stop()

rows = []
with ui.guard():
    for exp in ctx.experiments:
        try:
            report = ui.results(ctx.api, ctx.key, exp.key)
            rows.append(figures.overview_row(exp, report))
        except ApiError as exc:  # one experiment's results failing must not hide the others
            rows.append(figures.overview_row(exp, None, problem=ui.error_text(exc)))
        except ApiUnavailable:
            raise

running = sum(r["Status"] == "running" for r in rows)
flagged = [r["Experiment"] for r in rows if r["SRM"].startswith("mismatch")]
c1, c2, c3 = st.columns(3)
c1.metric("Experiments", fmt.count(len(rows)))
c2.metric("Running", fmt.count(running))
c3.metric("Sample ratio mismatch", fmt.count(len(flagged)))
if flagged:
    st.error(f"Sample ratio mismatch in {', '.join(flagged)}: the traffic split differs from the plan. "
             "Do not ship on those results; investigate assignment and tracking.")

st.dataframe(
    rows,
    key="experiments_table",
    hide_index=True,
    width="stretch",
    column_config={
        "Total visitors": st.column_config.NumberColumn(format="localized"),
        "Headline": st.column_config.TextColumn(width="large"),
    },
)
st.caption("Verdicts read the always-valid (sequential) interval of the primary metric, so daily looks are safe. "
           "Pick an experiment in the sidebar, then open Results, ROI or Content.")
