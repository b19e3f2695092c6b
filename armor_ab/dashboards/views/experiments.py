"""Experiments: every experiment with its status, dates, visitors per variant, SRM flag and verdict, its
live health (ok, warn, critical; paused and why) and its generated pages per review status."""

from __future__ import annotations

import streamlit as st

from armor_ab.dashboards.lib import figures, fmt, ui
from armor_ab.dashboards.lib import health as health_lib
from armor_ab.dashboards.lib.api import ApiError, ApiUnavailable

ctx = ui.page(needs_experiment=False)
st.title("Experiments")

if not ctx.experiments:
    st.info("No experiments yet: create one on the Design page (admin key) or `armor-ab experiment apply FILE`.")
    st.stop()

rows = []
alarms = []  # (key, health box) of every critical or paused experiment
with ui.guard():
    for exp in ctx.experiments:
        try:
            report = ui.results(ctx.api, ctx.key, exp.key)
            row = figures.overview_row(exp, report)
        except ApiError as exc:  # one experiment's results failing must not hide the others
            row = figures.overview_row(exp, None, problem=ui.error_text(exc))
        except ApiUnavailable:
            raise
        health, problem = ui.health_or_none(ctx, exp.key)
        row = health_lib.with_health(row, health, problem)
        if health is not None and (b := health_lib.box(health, name=exp.key)).level == "error":
            alarms.append(b)
        rows.append(row)

running = sum(r["Status"] == "running" for r in rows)
flagged = [r["Experiment"] for r in rows if r["SRM"].startswith("mismatch")]
c1, c2, c3, c4 = st.columns(4)
c1.metric("Experiments", fmt.count(len(rows)))
c2.metric("Running", fmt.count(running))
c3.metric("Sample ratio mismatch", fmt.count(len(flagged)))
c4.metric("Critical or paused", fmt.count(len(alarms)))
for b in alarms:
    st.error(health_lib.markdown(b))
if flagged:
    st.error(f"Sample ratio mismatch in {', '.join(flagged)}: the traffic split differs from the plan. "
             "Do not ship on those results; investigate assignment and tracking.")

count_columns = {c: st.column_config.NumberColumn(format="localized")
                 for c in ("Total visitors", "Pending", "Approved", "Rejected", "Stale", "Blocked")}
st.dataframe(
    rows,
    key="experiments_table",
    hide_index=True,
    width="stretch",
    column_config={
        **count_columns,
        "Blocked": st.column_config.NumberColumn(format="localized", help="generated pages that fail a blocking "
                                                 "guardrail check: never served, cannot be approved"),
        "Headline": st.column_config.TextColumn(width="large"),
        "Problems": st.column_config.TextColumn(width="large"),
    },
)
st.caption("Verdicts read the always-valid (sequential) interval of the primary metric, so daily looks are safe. "
           "Health is the API's live check (SRM, traffic, fallbacks, content verdicts, ingestion lag, bots, "
           "guardrail metrics): a critical experiment's ARMOR arms are paused until someone resumes them on the "
           "Design page. Pages: generated pages per review status; blocked: verdict fail. "
           "Pick an experiment in the sidebar, then open Results, ROI or Content.")
