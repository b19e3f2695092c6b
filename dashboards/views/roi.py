"""ROI: every assumption editable (what-if through POST /v1/roi, saved only when asked), the key figures
with their 95% intervals and P(ROI > 0), the ROI distribution, the tornado, the verdict, and exports."""

from __future__ import annotations

import json

import streamlit as st

from dashboards.lib import assumptions, charts, export, figures, fmt, ui

FIELDS = assumptions.fields()

ctx = ui.page()
exp_key = ctx.experiment_key
spec = dict((ctx.experiment or {}).get("spec") or {})
with ui.guard():
    report = ui.results(ctx.api, ctx.key, exp_key)
measured = report.get("roi")
effect = (measured or {}).get("effect")
defaults = assumptions.defaults_from(spec.get("roi"))

# The form starts from the experiment's assumptions, and again whenever they (or the experiment) change.
signature = json.dumps([exp_key, defaults], sort_keys=True)
if st.session_state.get("roi_defaults") != signature:
    for f in FIELDS:
        v = defaults[f.name]
        st.session_state[f"roi_{f.name}"] = None if v is None else (int(v) if f.integer else float(v))
    st.session_state["roi_defaults"] = signature


def _reset() -> None:
    st.session_state.pop("roi_defaults", None)


st.title(f"ROI · {report['name']}")
top = st.container()
left, right = st.columns([1, 2], gap="large")

with left:
    st.subheader("Assumptions")
    with st.form("roi_form"):
        for f in FIELDS:
            st.number_input(
                f.label, key=f"roi_{f.name}", help=f.help + (" (leave empty: not used)" if f.optional else ""),
                min_value=None if f.minimum is None else (int if f.integer else float)(f.minimum),
                max_value=None if f.maximum is None else (int if f.integer else float)(f.maximum),
                step=1 if f.integer else (0.01 if f.maximum == 1 else 1.0),
                format="%d" if f.integer else ("%0.3f" if f.maximum == 1 else "%0.2f"),
            )
        st.form_submit_button("Run what-if", type="primary")
    st.button("Reset to the experiment's assumptions", key="roi_reset", on_click=_reset)

values = {f.name: st.session_state.get(f"roi_{f.name}") for f in FIELDS}
edited = assumptions.changed(values, defaults)
validated, problem = assumptions.validate(values)

with ui.guard():
    if problem:
        top.error(f"Assumption not valid: {problem}")
        st.stop()
    if not figures.roi_ready(measured) or effect is None:
        reason = (measured or {}).get("reason") or "this experiment has no roi block yet"
        top.info(f"No measured ROI to show: {reason}. Edit the assumptions and save them (admin key) to add "
                 "the roi block; the report then prices the measured effect.")
        roi, verdict = None, report.get("verdict")
    elif edited:
        roi = ui.roi(ctx.api, ctx.key, json.dumps(validated, sort_keys=True), json.dumps(effect, sort_keys=True))
        verdict = figures.whatif_verdict(report, roi)
    else:
        roi, verdict = measured, report.get("verdict")

    with top:
        r = figures.reading(report, verdict)
        if r.srm_blocked:
            st.error(figures.srm_message(report["srm"]))
        ui.verdict_box(r.decision, r.headline, r.reasons)
        if edited:
            names = ", ".join(f.label for f in FIELDS if f.name in edited)
            st.info(f"What-if: {len(edited)} assumption(s) changed ({names}). Nothing is saved unless you save it.")

    with left:
        if edited or not spec.get("roi"):
            if st.button("Save these assumptions to the experiment", key="roi_save", disabled=not ctx.admin,
                         help=None if ctx.admin else "needs an admin key"):
                ctx.client.save_spec({**spec, "roi": validated})
                ui.clear_cache()
                st.session_state.pop("roi_defaults", None)
                st.session_state["roi_saved"] = f"Saved the assumptions to {exp_key}."
                st.rerun()
        if msg := st.session_state.pop("roi_saved", None):
            st.success(msg)

    if roi is not None:
        with right:
            st.subheader("Key figures")
            st.caption(f"Point estimates at the measured effect, with 95% intervals over its uncertainty "
                       f"(effect on inquiries per visitor {fmt.pct(roi.get('lift_rel'))}).")
            key_figures = figures.roi_figures(roi)
            for row in (key_figures[:3], key_figures[3:]):
                for col, kf in zip(st.columns(3), row, strict=False):
                    col.metric(kf.label, kf.value, help=kf.help)
                    if kf.interval:
                        col.caption(f"95% interval {kf.interval}")
            st.subheader("ROI distribution")
            st.altair_chart(charts.histogram_chart(figures.histogram_rows(roi), roi["roi_histogram"]["of"]),
                            key="roi_histogram_chart", width="stretch")
            st.subheader("Sensitivity")
            st.altair_chart(charts.tornado_chart(figures.tornado_rows(roi), roi["sensitivity"]["metric"]),
                            key="roi_tornado_chart", width="stretch")
            st.caption("Each assumption moved to a low and a high value with everything else fixed; "
                       "the effect moves to its 95% interval bounds.")
            primary = next((e for e in report.get("results") or []
                            if e["metric"] == report.get("primary_metric")
                            and e["variant"] == report.get("primary_variant")), None)
            c1, c2 = st.columns(2)
            c1.download_button("Download CSV", export.roi_csv(exp_key, roi, verdict=verdict, whatif=bool(edited)),
                               file_name=f"{exp_key}-roi.csv", mime="text/csv", key="roi_csv")
            c2.download_button("Download one-page summary (PNG)",
                               export.summary_png(report["name"], exp_key, roi, verdict, primary=primary,
                                                  alpha=report.get("alpha", 0.05), whatif_changes=edited),
                               file_name=f"{exp_key}-roi-summary.png", mime="image/png", key="roi_png")
            for note in roi.get("notes") or []:
                st.caption(note)
