"""Design: the experiment's live health, with Pause (a cause) and Resume for a running one (admin); create
or edit an experiment as YAML (saved through the API, downloadable), and a power calculator: MDE <->
visitors needed <-> days at the current traffic."""

from __future__ import annotations

import streamlit as st

from armor_ab.dashboards.lib import charts, figures, fmt, specs, ui
from armor_ab.dashboards.lib import health as pause_words
from armor_ab.dashboards.lib.api import ApiError, ApiUnavailable
from armor_ab.reporting.models import PowerPlanPublic

EDIT, NEW = "Edit the selected experiment", "New experiment"
FORWARD, BACKWARD = "MDE → visitors and days", "Days → detectable effect (MDE)"
CURVE_MDES = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2)

ctx = ui.page(needs_experiment=False)
st.title("Design")


def _pause(key: str) -> None:
    cause = (st.session_state.get("design_pause_cause") or "").strip()
    if not cause:
        st.session_state["design_pause_msg"] = ("error", "Give a cause for the pause: it goes into the "
                                                         "experiment's history.")
        return
    try:
        state = ctx.client.pause(key, cause)
    except (ApiUnavailable, ApiError) as exc:
        st.session_state["design_pause_msg"] = ("error", ui.error_text(exc))
        return
    ui.clear_cache()
    st.session_state["design_pause_cause"] = ""
    st.session_state["design_pause_msg"] = ("ok", pause_words.paused_text(state))


def _resume(key: str) -> None:
    note = (st.session_state.get("design_resume_note") or "").strip() or None
    try:
        state = ctx.client.resume(key, note)
    except (ApiUnavailable, ApiError) as exc:
        st.session_state["design_pause_msg"] = ("error", ui.error_text(exc))
        return
    ui.clear_cache()
    st.session_state["design_resume_note"] = ""
    st.session_state["design_pause_msg"] = ("ok", pause_words.resumed_text(state))


if ctx.experiment is not None:
    health = ui.health_box(ctx, ctx.experiment_key)  # live health, and a pause with its cause
    if msg := st.session_state.pop("design_pause_msg", None):
        (st.success if msg[0] == "ok" else st.error)(msg[1])
    if ctx.experiment.status == "running" and ctx.admin:
        paused = bool(health is not None and health.paused)
        c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
        if paused:
            c1.text_input("Note for the resume (optional, kept in the history)", key="design_resume_note")
            c2.button("Resume", key="design_resume", type="primary", on_click=_resume, args=(ctx.experiment_key,),
                      help="Its ARMOR arms serve their generated pages again.")
        else:
            c1.text_input("Cause of a pause (kept in the history)", key="design_pause_cause",
                          placeholder="e.g. a wrong spec on the pump pages")
            c2.button("Pause", key="design_pause", on_click=_pause, args=(ctx.experiment_key,),
                      help="Its ARMOR arms serve control's copy until someone resumes it; assignment is unchanged "
                           "and the analysis leaves out the visitors of the pause.")

# A save asks for the editor to show the saved experiment: applied before the widgets exist.
if after := st.session_state.pop("design_after_save", None):
    st.session_state["design_mode"] = EDIT
    st.session_state["design_loaded"] = after["loaded"]
    st.session_state["design_msg"] = after["msg"]

tab_spec, tab_power = st.tabs(["Experiment (YAML)", "Power calculator"])

with tab_spec, ui.guard():
    mode = st.radio("Experiment", [EDIT, NEW] if ctx.experiment else [NEW], key="design_mode", horizontal=True,
                    label_visibility="collapsed")
    editing = mode == EDIT and ctx.experiment is not None
    source = f"edit:{ctx.experiment_key}:{ctx.experiment.updated_at}" if editing else "new"
    if st.session_state.get("design_loaded") != source:
        st.session_state["design_yaml"] = specs.to_yaml(ctx.spec) if editing else specs.TEMPLATE
        st.session_state["design_loaded"] = source
    if editing:
        st.caption(f"`{ctx.experiment_key}` is {ctx.experiment.status} (bucket version "
                   f"{ctx.experiment.bucket_version}). Changing the variants or weights of a running experiment "
                   "needs a new bucket version, which re-assigns visitors.")
    text = st.text_area("Experiment YAML (the same model as experiments/*.yaml)", key="design_yaml", height=440)
    spec, problem = specs.validate_yaml(text)
    if problem:
        st.warning(f"Not valid yet: {problem}")
    else:
        st.success(f"Valid: {specs.summary(spec)}")
    if msg := st.session_state.pop("design_msg", None):
        st.success(msg)
    new_bucket = st.checkbox("Re-seed assignment (new bucket version)", key="design_new_bucket",
                             disabled=not editing)
    c1, c2, c3, c4 = st.columns(4)
    save = c1.button("Save through the API", key="design_save", type="primary",
                     disabled=not ctx.admin or problem is not None,
                     help=None if ctx.admin else "needs an admin key")
    c2.download_button("Download YAML", text.encode("utf-8"), key="design_download", mime="application/yaml",
                       file_name=f"{(spec or {}).get('key') or ctx.experiment_key or 'experiment'}.yaml")
    if editing and ctx.admin:
        status = ctx.experiment.status
        if c3.button("Start", key="design_start", disabled=status == "running"):
            ctx.client.start(ctx.experiment_key)
            ui.clear_cache()
            st.rerun()
        if c4.button("Stop", key="design_stop", disabled=status != "running"):
            ctx.client.stop(ctx.experiment_key)
            ui.clear_cache()
            st.rerun()
    if save and spec is not None:
        saved = ctx.client.save_yaml(text, key=ctx.experiment_key if editing else None,
                                     new_bucket_version=bool(new_bucket))
        ui.clear_cache()
        st.session_state[ui.SESSION_EXPERIMENT] = saved.key
        st.query_params["experiment"] = saved.key
        st.session_state["design_after_save"] = {
            "loaded": f"edit:{saved.key}:{saved.updated_at}",
            "msg": f"Saved `{saved.key}` ({saved.status}, bucket version {saved.bucket_version}).",
        }
        st.rerun()

with tab_power, ui.guard():
    report = ui.results(ctx.api, ctx.key, ctx.experiment_key) if ctx.experiment else None
    d = figures.power_defaults(report)
    spec_now = ctx.spec
    signature = f"{ctx.experiment_key}:{d.from_data}"
    if st.session_state.get("power_defaults") != signature:
        st.session_state.update({
            "power_mean": float(d.baseline_mean) if d.baseline_mean is not None else 40_000.0,
            "power_sd": float(d.baseline_sd) if d.baseline_sd is not None else 30_000.0,
            "power_vpd": float(d.visitors_per_day) if d.visitors_per_day else 1_000.0,
            "power_alpha": float(spec_now.get("alpha", 0.05)),
            "power_power": float((spec_now.get("analysis") or {}).get("power", 0.8)),
            "power_variants": int(len(spec_now.get("variants") or [0, 0])),
            "power_mde_pct": float(spec_now.get("mde", 0.05)) * 100,
            "power_days": 14.0,
            "power_defaults": signature,
        })
    (st.info if d.from_data else st.warning)(d.note)
    metric = d.metric or spec_now.get("metrics", {}).get("primary", "dwell_time_per_view")
    c1, c2, c3 = st.columns(3)
    unit = fmt.metric_unit(metric)
    mean = c1.number_input(f"Baseline mean ({fmt.metric_label(metric).lower()}, {unit})", key="power_mean",
                           format=fmt.input_format(d.baseline_mean if d.baseline_mean is not None else 40_000.0))
    sd = c2.number_input(f"Baseline sd per visitor ({unit})", key="power_sd", min_value=0.0,
                         format=fmt.input_format(d.baseline_sd if d.baseline_sd is not None else 30_000.0))
    vpd = c3.number_input("Visitors per day (all variants)", key="power_vpd", min_value=1.0, format="%0.0f")
    c1, c2, c3 = st.columns(3)
    alpha = c1.number_input("Alpha", key="power_alpha", min_value=0.001, max_value=0.5, format="%0.3f")
    power_target = c2.number_input("Power", key="power_power", min_value=0.5, max_value=0.99, format="%0.2f")
    variants = c3.number_input("Variants (control included)", key="power_variants", min_value=2, max_value=20, step=1)
    direction = st.radio("Solve for", [FORWARD, BACKWARD], key="power_mode", horizontal=True)

    analysis_mode = str((spec_now.get("analysis") or {}).get("mode", "sequential"))

    def plan(mde: float) -> PowerPlanPublic:
        params = (("baseline_mean", mean), ("baseline_sd", sd), ("mde", round(mde, 6)), ("alpha", alpha),
                  ("power", power_target), ("variants", int(variants)), ("visitors_per_day", vpd),
                  ("mode", analysis_mode))
        return ui.power(ctx.api, ctx.key, params)

    if direction == FORWARD:
        mde = st.number_input("Minimum detectable effect (relative, %)", key="power_mde_pct", min_value=0.1,
                              max_value=500.0, step=0.5, format="%0.1f") / 100
    else:
        days = st.number_input("Days you can run", key="power_days", min_value=1.0, step=1.0, format="%0.0f")
        mde = figures.mde_for_days(plan, days) if mean and sd > 0 else 0.0
    if mde <= 0:
        st.warning("Enter a non-zero baseline mean and a positive sd.")
        st.stop()
    result = plan(mde)
    if result.status != "ok":
        st.warning(f"No plan: {fmt.status_words(result.status)}.")
        st.stop()
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Detectable effect (MDE)", fmt.share(mde))
    m2.metric("Visitors per variant", fmt.count(result.n_per_variant))
    m3.metric("Total visitors", fmt.count(result.total_visitors))
    m4.metric("Days at this traffic", fmt.days(result.days, up=True))
    st.caption(f"At {fmt.per_day(vpd)}, alpha {fmt.share(alpha)}, power {fmt.share(power_target)}, "
               f"{fmt.count(variants)} variants.")
    if report and report.power.visitors:
        st.caption(f"So far: {fmt.visitors(report.power.visitors)} in {fmt.days(report.power.days_elapsed)}.")
    curve = []
    for x in sorted({*CURVE_MDES, round(mde, 4)}):
        p = plan(x)
        if p.status == "ok" and p.days:
            curve.append({"mde": x, "days": p.days, "total_visitors": p.total_visitors})
    if curve:
        st.altair_chart(charts.power_curve(curve, mde), key="power_curve_chart", width="stretch")
    test = {"sequential": "the always-valid (sequential) interval the verdict reads",
            "fixed": "a fixed-horizon test read once", "hybrid": "the fixed-horizon test at the hybrid horizon"}
    st.caption(f"Planned for {test.get(analysis_mode, analysis_mode)} ({analysis_mode} analysis) at the given "
               "alpha and power, equal split; the sample size comes from the API (POST /v1/power), the days "
               "from the traffic above.")
