"""ROI: every assumption editable as a likely value with an optional low/high (what-if through
POST /v1/roi, saved only when asked); the executive figures (expected NPV with its 95% interval,
P(NPV > 0), the expected loss of shipping against its tolerance, the break-even effect next to the
measured effect and the MDE, the discounted payback, incremental profit per month, and ROI % only
where it means something); the NPV distribution, the tornado, the verdict, and exports.

The verdict is decided by the API: the report's (``GET /v1/experiments/{key}/results``) for the saved
assumptions, and for a what-if the one ``POST /v1/roi`` returns, decided by the same rules with the edited ROI."""

from __future__ import annotations

import json

import streamlit as st

from armor_ab.dashboards.lib import assumptions, charts, export, figures, fmt, ui
from armor_ab.roi.assumptions import GROUPS

FIELDS = assumptions.fields()
GROUPED = assumptions.groups()
LABEL = {f.name: f.label for f in FIELDS}
UNIT_WORDS = {"share": "0 to 1", "count": "", "": ""}  # units shown after an input's label

ctx = ui.page()
exp_key = ctx.experiment_key
spec = ctx.spec
with ui.guard():
    report = ui.results(ctx.api, ctx.key, exp_key)
measured = figures.as_json(report.roi)  # the ROI block as served: the what-if posts its effect back
effect = (measured or {}).get("effect")
report_verdict = figures.as_json(report.verdict)  # decided by the API, with the saved assumptions
defaults = assumptions.defaults_from(spec.get("roi"))

# The form starts from the experiment's assumptions, and again whenever they (or the experiment) change.
signature = json.dumps([exp_key, defaults], sort_keys=True)
if st.session_state.get("roi_defaults") != signature:
    for k, v in assumptions.widget_values(defaults).items():
        st.session_state[k] = v
    st.session_state["roi_defaults"] = signature


def _reset() -> None:
    st.session_state.pop("roi_defaults", None)


def _style(f: assumptions.Field) -> tuple[float | int, str]:
    """(step, format): whole numbers for large figures, cents for small ones, shares to 0.001."""
    if f.integer:
        return 1, "%d"
    if f.unit == "share":
        return 0.01, "%0.3f"
    default = float(f.default or 0)
    if default >= 1_000:
        return 100.0 if default < 20_000 else 1_000.0, "%0.0f"
    if default >= 100:
        return 10.0, "%0.0f"
    return (0.01, "%0.3f") if 0 < default < 1 else (1.0, "%0.2f")


def _number(f: assumptions.Field, key: str, label: str, help_: str, target=st) -> None:  # noqa: ANN001
    cast = int if f.integer else float
    step, format_ = _style(f)
    target.number_input(
        label, key=key, help=help_,
        min_value=None if f.minimum is None else cast(f.minimum),
        max_value=None if f.maximum is None else cast(f.maximum),
        step=step, format=format_,
    )


def _label(f: assumptions.Field) -> str:
    unit = UNIT_WORDS.get(f.unit, f.unit)
    return f"{f.label} ({unit})" if unit and unit not in f.label and "(" not in f.label else f.label


def _field(f: assumptions.Field) -> None:
    if f.kind == "bool":
        st.checkbox(f.label, key=f"roi_{f.name}", help=f.help)
        return
    if not f.rangeable:
        _number(f, f"roi_{f.name}", _label(f), f.help)
        return
    c1, c2, c3 = st.columns([2, 1, 1])
    _number(f, f"roi_{f.name}", _label(f), f"{f.help} (likely value)", c1)
    _number(f, f"roi_{f.name}_low", "low", f"optional: the low end of {f.label.lower()}", c2)
    _number(f, f"roi_{f.name}_high", "high", f"optional: the high end of {f.label.lower()}", c3)


st.title(f"ROI · {report.name}")
top = st.container()
left, right = st.columns([5, 6], gap="large")

with left:
    st.subheader("Assumptions")
    st.caption("Each figure is its likely value; give a low and a high to make it uncertain (drawn from a "
               "PERT distribution in the simulation, and shown in the tornado).")
    with st.form("roi_form"):
        for group, group_fields in GROUPED.items():
            with st.expander(GROUPS[group], expanded=group in ("value", "one_off")):
                for f in group_fields:
                    _field(f)
        st.form_submit_button("Run what-if", type="primary")
    st.button("Reset to the experiment's assumptions", key="roi_reset", on_click=_reset)

values, problem = assumptions.collect(st.session_state)
validated = None
if problem is None:
    validated, problem = assumptions.validate(values)
edited = assumptions.changed(validated, defaults) if validated is not None else []

with ui.guard():
    if problem:
        top.error(f"Assumption not valid: {problem}")
        st.stop()
    if not figures.roi_ready(measured) or effect is None:
        reason = (measured or {}).get("reason") or "this experiment has no roi block yet"
        top.info(f"No measured ROI to show: {reason}. Edit the assumptions and save them (admin key) to add "
                 "the roi block; the report then prices the measured effect.")
        roi, verdict = None, report_verdict
    elif edited:
        roi = ui.roi(ctx.api, ctx.key, json.dumps(validated, sort_keys=True), json.dumps(effect, sort_keys=True),
                     exp_key)
        verdict = roi.pop("verdict", None) or report_verdict  # the API's verdict with the what-if ROI
    else:
        roi, verdict = measured, report_verdict

    with top:
        r = figures.reading(report, verdict)
        if r.srm_blocked:
            st.error(figures.srm_message(report.srm))
        ui.verdict_box(r.decision, r.headline, r.reasons)
        if edited:
            names = ", ".join(LABEL.get(n, n) for n in edited)
            st.info(f"What-if: {len(edited)} assumption(s) changed ({names}). Nothing is saved unless you save it. "
                    "The verdict above is the API's, with the what-if's ROI.")

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
            e = roi.get("effect") or {}
            ranged = [LABEL.get(n, n) for n in roi.get("ranged_assumptions") or []]
            st.subheader("Does it pay?")
            st.caption(
                f"Over {fmt.months(roi['horizon_months'])}, discounted. 95% intervals over the effect on inquiries per "
                f"visitor (measured {fmt.pct(e.get('lift_rel'))}, shrunk toward zero to "
                f"{fmt.pct(e.get('shrunk_lift_rel'))})"
                + (f" and the ranged assumptions ({', '.join(ranged)})." if ranged else "; no assumption is ranged."))
            key_figures = figures.roi_figures(roi)
            for start in range(0, len(key_figures), 3):
                for col, kf in zip(st.columns(3), key_figures[start:start + 3], strict=False):
                    col.metric(kf.label, kf.value, help=kf.help)
                    if kf.caption:
                        col.caption(kf.caption)
            if note := figures.roi_pct_note(roi):
                st.info(note)
            st.caption(figures.assumptions_text(roi))

            st.subheader("Break-even against the measured effect")
            st.altair_chart(charts.breakeven_chart(figures.breakeven_rows(report, roi)), key="roi_breakeven_chart",
                            width="stretch")
            st.caption(figures.breakeven_text(report, roi))

            st.subheader("NPV distribution")
            st.altair_chart(charts.histogram_chart(figures.histogram_rows(roi), "npv"), key="roi_histogram_chart",
                            width="stretch")
            st.subheader("Sensitivity")
            st.altair_chart(charts.tornado_chart(figures.tornado_rows(roi), "npv"), key="roi_tornado_chart",
                            width="stretch")
            st.caption("Each input moved to its low and high value with everything else at its likely value: the "
                       "effect to its 95% posterior interval, a ranged assumption to its range, a fixed one by the "
                       "step its label shows.")
            with st.expander("Where the costs come from (likely values)"):
                st.dataframe(figures.cost_rows(roi), hide_index=True, key="roi_costs")

            primary = next((figures.as_json(x) for x in report.results
                            if x.metric == report.primary_metric and x.variant == report.primary_variant), None)
            c1, c2 = st.columns(2)
            c1.download_button("Download CSV", export.roi_csv(exp_key, roi, verdict=verdict, whatif=bool(edited)),
                               file_name=f"{exp_key}-roi.csv", mime="text/csv", key="roi_csv")
            c2.download_button("Download one-page summary (PNG)",
                               export.summary_png(report.name, exp_key, roi, verdict, primary=primary,
                                                  alpha=report.alpha, whatif_changes=edited),
                               file_name=f"{exp_key}-roi-summary.png", mime="image/png", key="roi_png")
            for note in roi.get("notes") or []:
                st.caption(note)
