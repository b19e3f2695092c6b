"""Results: the experiment's live health on top; lift with its CI, adjusted p-value, significance and
chance to win per metric and variant; the estimate over time; SRM; CUPED on/off; segments."""

from __future__ import annotations

import streamlit as st

from armor_ab.dashboards.lib import charts, figures, fmt, quality, ui

ctx = ui.page()
exp_key = ctx.experiment_key
spec_cuped = bool((ctx.spec.get("analysis") or {}).get("cuped", True))

with ui.guard():
    cuped = st.sidebar.toggle("CUPED (pre-period variance reduction)", value=spec_cuped, key="results_cuped",
                              help="Adjust each visitor's metric by their behaviour before the experiment.")
    report = ui.results(ctx.api, ctx.key, exp_key, None if cuped == spec_cuped else cuped)

st.title(f"Results · {report.name}")
st.caption(f"{exp_key} · {report.status} · {fmt.timestamp(report.window.start)} to "
           f"{fmt.timestamp(report.window.end)} · visitors {figures.visitors_text(report.visitors)} · "
           f"CUPED {'on' if report.cuped_requested else 'off'} · {report.correction} correction")
ui.health_box(ctx, exp_key)  # live health: ok, warn or critical, and a pause with its cause

if report.srm.flag:
    st.error(figures.srm_message(report.srm))
r = figures.reading(report)  # the API's verdict (report.verdict), never "ship" on a broken split
ui.verdict_box(r.decision, r.headline, r.reasons)

st.subheader("Data quality")
for line in quality.quality_lines(report):
    st.markdown(line.text)

# One card per metric x variant: lift, CI, adjusted p, significance, chance to win.
alpha = report.alpha
entries = report.results
for start in range(0, len(entries), 3):
    cols = st.columns(3)
    for col, e in zip(cols, entries[start:start + 3], strict=False):
        with col, st.container(border=True):
            st.metric(f"{fmt.metric_label(e.metric)} · {e.variant} vs {e.baseline}", fmt.pct(e.lift_rel))
            sig = figures.significance(e)
            ui.badge(sig.label, sig.color)
            st.caption(figures.metric_caption(e, alpha))

st.subheader("All metrics")
st.dataframe(figures.results_rows(report), key="results_table", hide_index=True, width="stretch")
st.caption("Significance reads the sequential (always-valid) interval, which stays valid when you look every day; "
           "p (adjusted) is the fixed-horizon p-value after the multiple-comparison correction.")

st.subheader("Over time")
options = figures.series_options(report)
if options:
    labels = {f"{fmt.metric_label(m)} · {v}": (m, v) for m, v in options}
    chosen = st.selectbox("Metric", list(labels), key="results_series")
    rows = figures.timeseries_rows(report, *labels[chosen])
    if rows:
        st.altair_chart(charts.timeseries_chart(rows, alpha), key="results_timeseries_chart", width="stretch")
        st.caption("Cumulative estimate per day. The light band is the always-valid interval the verdict uses.")
    else:
        st.info("No daily estimate yet.")

st.subheader("Lift by days since exposure")
if options:
    age_rows = quality.age_rows(report, *labels[chosen])
    if age_rows:
        st.altair_chart(quality.age_chart(age_rows), key="results_age_chart", width="stretch")
        st.caption("The lift on each visitor's k-th day after first exposure (complete days only). New pictures "
                   "that only look new show as a lift that fades from left to right: a novelty effect.")
    else:
        st.info("No complete day after first exposure yet.")

st.subheader("Segments")
keys = figures.segment_keys(report)
if keys:
    seg = st.selectbox("Segment", keys, key="results_segment")
    if options:
        m, v = labels[chosen]
        points = figures.segment_points(report, seg, m, v)
        if points:
            st.altair_chart(charts.segment_chart(points), key="results_segment_chart", width="stretch")
    st.dataframe(figures.segment_rows(report, seg), key="results_segment_table", hide_index=True, width="stretch")
    st.caption("Exploratory: segment intervals are not corrected for the many comparisons.")
else:
    st.info("No segment attributes in the events yet (properties such as device or category).")

power = report.power
if power.total_visitors:
    st.subheader("Progress")
    if plan := quality.plan_text(report):
        st.caption(plan)
    done = min(1.0, power.visitors / power.total_visitors)
    st.progress(done, text=f"{fmt.count(power.visitors)} of {fmt.visitors(power.total_visitors)} planned "
                           f"(MDE {fmt.share(power.mde)}, power {fmt.share(power.power)}); "
                           f"about {fmt.days(power.days_remaining, up=True)} left")
