"""Figures extracted from the API's answers (the results report, the ROI block): pure functions.

They take the client's models (``ExperimentReport``, ...) or the served JSON itself and compute no
statistic, plan or verdict: those come from the API (the report's ``verdict`` and ``power`` blocks,
``POST /v1/power``, ``POST /v1/roi``). Pages render what these return; tests compare it with the JSON.
Every text goes through ``fmt``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from armor_ab.api.schemas import ExperimentPublic
from armor_ab.dashboards.lib import fmt
from armor_ab.reporting.models import ExperimentReport

Report = ExperimentReport | dict  # the client's model, or the served JSON itself (tests, what-ifs)


def as_json(x: Any) -> Any:
    """The served JSON of a model the API client returned (optional keys the API left out stay out);
    JSON (dicts, lists, None) passes through. The pure functions below read JSON, so they work on both."""
    if isinstance(x, BaseModel):
        return x.model_dump(mode="json", exclude_unset=True)
    return x

# ---- the verdict and SRM -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """What the dashboard says about an experiment: the verdict, never "ship" on a broken split."""

    decision: str | None  # ship | keep_running | stop | None (no verdict yet)
    headline: str
    reasons: tuple[str, ...]
    srm_blocked: bool  # a sample ratio mismatch is flagged: no ship reading, whatever the metrics say


def srm_message(srm: Any) -> str:
    """The SRM banner's text: observed vs expected visitors and what to do."""
    srm = as_json(srm)
    observed = srm.get("observed") or {}
    expected = srm.get("expected") or {}
    split = ", ".join(f"{k} {fmt.count(observed.get(k))} (expected {fmt.count(expected.get(k))})" for k in observed)
    return (f"Sample ratio mismatch (p = {fmt.p_value(srm.get('p_value'))}): {split}. The traffic split differs "
            "from the plan, so every result is suspect. Do not ship on these numbers; investigate assignment "
            "and tracking first.")


def reading(report: Report, verdict: Any = None) -> Reading:
    """The verdict to show (the report's, or a what-if's), with SRM overriding any "ship"."""
    report, verdict = as_json(report), as_json(verdict)
    verdict = verdict if verdict is not None else report.get("verdict") or {}
    srm_flag = bool((report.get("srm") or {}).get("flag"))
    decision = verdict.get("decision")
    headline = verdict.get("headline") or verdict.get("reason") or "No verdict yet."
    reasons = tuple(verdict.get("reasons") or ())
    if srm_flag and decision == "ship":  # the verdict module already refuses this; never show it anyway
        decision = "keep_running"
        headline = "Do not ship yet: the traffic split between variants is off (sample ratio mismatch)"
    return Reading(decision, headline, reasons, srm_flag)


# ---- results per metric x variant --------------------------------------------------------------------


@dataclass(frozen=True)
class Significance:
    label: str
    color: str  # a Streamlit badge colour


def significance(entry: Any) -> Significance:
    """Significance read from the always-valid (sequential) CI, as the verdict reads it."""
    entry = as_json(entry)
    if entry.get("status") != "ok":
        return Significance(f"No result: {fmt.status_words(entry.get('status'))}", "gray")
    ci = (entry.get("sequential") or {}).get("ci_rel")
    if isinstance(ci, list) and len(ci) == 2 and None not in ci:
        if ci[0] > 0:
            return Significance("Significant: better", "green")
        if ci[1] < 0:
            return Significance("Significant: worse", "red")
    return Significance("Not significant", "gray")


def ci_label(alpha: float) -> str:
    return f"{fmt.share(1 - alpha)} CI"


def results_rows(report: Report) -> list[dict[str, str]]:
    """One row per metric x variant, every cell formatted (the Results table)."""
    report = as_json(report)
    ci_name = ci_label(report.get("alpha", 0.05))
    rows = []
    for e in report.get("results") or []:
        metric = e["metric"]
        rows.append({
            "Metric": fmt.metric_label(metric),
            "Variant": e["variant"],
            f"{e.get('baseline', 'control')} mean": fmt.metric_value(metric, e.get("baseline_mean")),
            "Variant mean": fmt.metric_value(metric, e.get("mean")),
            "Lift": fmt.pct(e.get("lift_rel")),
            ci_name: fmt.interval(e.get("ci_rel")),
            "p-value": fmt.p_value(e.get("p_value")),
            "p (adjusted)": fmt.p_value(e.get("p_value_adjusted")),
            "Sequential CI": fmt.interval((e.get("sequential") or {}).get("ci_rel")),
            "Chance to win": fmt.probability((e.get("bayesian") or {}).get("chance_to_win")),
            "Significance": significance(e).label,
            "CUPED": "on" if e.get("cuped") else "off",
        })
    return rows


def metric_caption(entry: Any, alpha: float) -> str:
    """The line under a metric card: CI, adjusted p-value, chance to win."""
    entry = as_json(entry)
    b = entry.get("bayesian") or {}
    return (f"{ci_label(alpha)} {fmt.interval(entry.get('ci_rel'))} · p (adjusted) "
            f"{fmt.p_value(entry.get('p_value_adjusted'))} · chance to win {fmt.probability(b.get('chance_to_win'))}")


def visitors_text(visitors: dict[str, int]) -> str:
    """{"control": 1513, "armor": 1487} -> "control 1,513 · armor 1,487"."""
    return " · ".join(f"{k} {fmt.count(v)}" for k, v in visitors.items()) or fmt.DASH


# ---- the experiments overview ------------------------------------------------------------------------


def overview_row(experiment: ExperimentPublic, report: Report | None, problem: str | None = None) -> dict[str, Any]:
    """One experiment's line on the Experiments page (``report`` None: no results, ``problem`` says why)."""
    report = as_json(report)
    spec = experiment.spec or {}
    row: dict[str, Any] = {  # the columns, in the order shown
        "Experiment": experiment.key,
        "Status": experiment.status,
        "Verdict": fmt.DASH,
        "SRM": fmt.DASH,
        "Visitors": fmt.DASH,
        "Total visitors": None,
        "Started": fmt.timestamp(experiment.started_at),
        "Stopped": fmt.timestamp(experiment.stopped_at),
        "Name": spec.get("name", ""),
        "Headline": problem or "",
    }
    if report is not None:
        visitors = report.get("visitors") or {}
        srm = report.get("srm") or {}
        r = reading(report)
        row.update({
            "Visitors": visitors_text(visitors),
            "Total visitors": int(sum(visitors.values())),
            "SRM": f"mismatch (p = {fmt.p_value(srm.get('p_value'))})" if srm.get("flag") else "ok",
            "Verdict": fmt.decision(r.decision),
            "Headline": r.headline,
        })
    return row


# ---- over time and by segment ------------------------------------------------------------------------


def series_options(report: Report) -> list[tuple[str, str]]:
    """(metric, variant) pairs that have a time series, primary first."""
    report = as_json(report)
    return [(s["metric"], s["variant"]) for s in report.get("timeseries") or []]


def timeseries_rows(report: Report, metric: str, variant: str) -> list[dict[str, Any]]:
    """Cumulative daily estimates of one metric x variant with their fixed and sequential CIs."""
    report = as_json(report)
    for s in report.get("timeseries") or []:
        if s["metric"] == metric and s["variant"] == variant:
            rows = []
            for p in s["points"]:
                if p.get("lift_rel") is None:
                    continue
                ci = p.get("ci_rel") or [None, None]
                seq = p.get("sequential_ci_rel") or [None, None]
                rows.append({"date": p["date"], "lift": p["lift_rel"], "ci_low": ci[0], "ci_high": ci[1],
                             "seq_low": seq[0], "seq_high": seq[1], "visitors": p["n"] + p["baseline_n"],
                             "p_value": p.get("p_value")})
            return rows
    return []


def segment_keys(report: Report) -> list[str]:
    report = as_json(report)
    return list(dict.fromkeys(s["segment"] for s in report.get("segments") or []))


def segment_rows(report: Report, segment: str) -> list[dict[str, str]]:
    """One row per segment value x metric x variant (exploratory: not multiplicity-adjusted)."""
    report = as_json(report)
    rows = []
    for s in report.get("segments") or []:
        if s["segment"] != segment or s.get("value") is None:
            continue
        for r in s["results"]:
            rows.append({
                segment: s["value"],
                "Metric": fmt.metric_label(r["metric"]),
                "Variant": r["variant"],
                "Visitors": visitors_text(s.get("visitors") or {}),
                "Lift": fmt.pct(r.get("lift_rel")),
                "CI": fmt.interval(r.get("ci_rel")),
                "p-value": fmt.p_value(r.get("p_value")),
                "Status": fmt.status_words(r.get("status")),
            })
    return rows


def segment_points(report: Report, segment: str, metric: str, variant: str) -> list[dict[str, Any]]:
    """Lift and CI per segment value of one metric x variant (the segment chart's data)."""
    report = as_json(report)
    out = []
    for s in report.get("segments") or []:
        if s["segment"] != segment or s.get("value") is None:
            continue
        for r in s["results"]:
            if r["metric"] == metric and r["variant"] == variant and r.get("lift_rel") is not None:
                ci = r.get("ci_rel") or [None, None]
                out.append({"value": str(s["value"]), "lift": r["lift_rel"], "ci_low": ci[0], "ci_high": ci[1],
                            "visitors": r["n"] + r["baseline_n"]})
    return out


# ---- power -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerDefaults:
    baseline_mean: float | None
    baseline_sd: float | None
    visitors_per_day: float | None
    from_data: bool  # the baseline comes from the experiment's control data
    metric: str | None
    note: str


def power_defaults(report: Report | None) -> PowerDefaults:
    """The calculator's starting values: the report's baseline when it has one, else nothing."""
    report = as_json(report)
    power = (report or {}).get("power") or {}
    vpd = power.get("visitors_per_day")
    if power.get("status") == "ok" and power.get("baseline_mean") is not None:
        note = (f"Baseline from past data: control's {fmt.metric_label(power['metric']).lower()} over "
                f"{fmt.visitors(power.get('visitors'))}; traffic {fmt.per_day(vpd)}.")
        return PowerDefaults(power["baseline_mean"], power["baseline_sd"], vpd, True, power.get("metric"), note)
    why = fmt.status_words(power.get("status")) if power else "no experiment data"
    return PowerDefaults(None, None, vpd, False, power.get("metric"),
                         f"No baseline from data yet ({why}): enter the baseline mean and sd.")


def mde_for_days(plan: Callable[[float], Any], days: float, lo: float = 1e-4, hi: float = 5.0) -> float:
    """The smallest relative MDE whose plan fits in ``days``: bisection over the API's plans
    (``plan(mde)``: ``POST /v1/power``, a ``PowerPlanPublic`` or its JSON), since the planned days fall as
    the MDE grows. Nothing is computed here but the search. Returns ``hi`` when even that does not fit."""
    def fits(mde: float) -> bool:
        p = as_json(plan(mde))
        return p.get("status") == "ok" and p.get("days") is not None and p["days"] <= days

    if not fits(hi):
        return hi
    for _ in range(30):
        mid = (lo * hi) ** 0.5
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
        if hi / lo < 1.001:
            break
    return hi


# ---- ROI ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyFigure:
    label: str
    value: str
    caption: str  # the line under the figure: its 95% interval, a tolerance, a probability
    help: str


def _finite(x: object) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return None
    return float(x)


def roi_ready(roi: dict | None) -> bool:
    """Whether the ROI block carries a computed distribution (not a status/reason stub)."""
    return bool(roi) and roi.get("status") == "ok" and isinstance(roi.get("npv"), dict) and "expected" in roi["npv"]


def _ci(roi: dict, name: str) -> str:
    text = fmt.interval((roi.get(name) or {}).get("ci"), fmt.money)
    return "" if text == fmt.DASH else f"95% interval {text}"


def small_pct(x: object) -> str:
    """A relative lift with two decimals below 1% (break-evens are often tiny): 0.0022 -> "+0.22%"."""
    v = _finite(x)
    return fmt.pct(v, 2 if v is not None and abs(v) < 0.01 else 1)


def per_1000(x: object) -> str:
    """Extra inquiries per visitor, written per 1,000 visitors: 0.00015 -> "0.15 per 1,000 visitors"."""
    v = _finite(x)
    return fmt.DASH if v is None else f"{v * 1000:,.2f} per 1,000 visitors"


def payback_figure(roi: dict) -> KeyFigure:
    """Discounted payback: the median month and the chance within the horizon; never "0 months" for
    an investment that was never entered."""
    p = roi.get("payback") or {}
    horizon = roi.get("horizon_months")
    status = p.get("status")
    chance = f"P(paid back within {horizon} months) = {fmt.probability(p.get('prob_within_horizon'))}"
    help_ = "first month from which the cumulative discounted cash stays above zero (median over the draws)"
    if status == "no_upfront_investment":
        text = p.get("text") or "no up-front investment entered"
        head, _, rest = text.partition(":")
        return KeyFigure("Discounted payback", head[:1].upper() + head[1:], rest.strip(), help_)
    if status == "ok":
        return KeyFigure("Discounted payback", fmt.months(p.get("median_months")), f"median · {chance}", help_)
    return KeyFigure("Discounted payback", f"Not within {horizon} months", f"median · {chance}", help_)


def roi_figures(roi: dict) -> list[KeyFigure]:
    """The executive figures: expected NPV, P(NPV > 0), expected loss, break-even, payback, incremental
    profit per month, and ROI % only when the result says it is meaningful."""
    horizon = roi.get("horizon_months")
    npv = roi.get("npv") or {}
    loss, tolerance = roi.get("expected_loss"), roi.get("max_expected_loss")
    if _finite(loss) is not None and _finite(tolerance) is not None:
        within = "within" if loss <= tolerance else "above"
        loss_caption = f"{within} the tolerance of {fmt.money(tolerance)}"
    else:
        loss_caption = ""
    out = [
        KeyFigure("Expected NPV", fmt.money(npv.get("expected")), _ci(roi, "npv"),
                  f"net present value over {horizon} months, averaged over the effect's uncertainty and the "
                  "ranged assumptions"),
        KeyFigure("P(NPV > 0)", fmt.probability(roi.get("prob_npv_positive")), "",
                  "share of simulated outcomes in which shipping pays for itself within the horizon"),
        KeyFigure("Expected loss if shipped", fmt.money(loss), loss_caption,
                  "the average money lost over the outcomes in which shipping does not pay: E[max(0, -NPV)]"),
        KeyFigure("Break-even effect", small_pct(roi.get("break_even_lift_rel")),
                  per_1000(roi.get("break_even_lift_abs")),
                  "the lift on inquiries per visitor at which NPV is zero (likely values of the assumptions)"),
        payback_figure(roi),
        KeyFigure("Incremental profit / month", fmt.money((roi.get("incremental_profit_per_month") or {})
                                                          .get("expected")),
                  _ci(roi, "incremental_profit_per_month"),
                  "extra margin from extra inquiries, less the monthly running costs (month 1)"),
    ]
    r = roi.get("roi_pct") or {}
    if r.get("shown"):
        ci = fmt.interval(r.get("ci"), fmt.roi_pct)
        out.append(KeyFigure("ROI", fmt.roi_pct(r.get("expected")), f"95% interval {ci}",
                             f"NPV / PV of costs over {horizon} months"))
    return out


def roi_pct_note(roi: dict) -> str | None:
    """Why ROI % is not shown, with the NPV range to read instead; None when it is shown."""
    r = roi.get("roi_pct") or {}
    if r.get("shown"):
        return None
    why = r.get("text") or "ROI % not shown."
    return f"{why} NPV 95% interval: {fmt.interval((roi.get('npv') or {}).get('ci'), fmt.money)}."


def mde_of(report: Report, roi: Any = None) -> float | None:
    """The experiment's relative MDE: the ROI block's ``mde``, else ``report["mde"]``, else the power block's
    (a number, or a dict with ``rel``)."""
    report, roi = as_json(report), as_json(roi)
    for candidate in ((roi or {}).get("mde"), report.get("mde"), (report.get("power") or {}).get("mde")):
        if isinstance(candidate, dict):
            candidate = candidate.get("rel", candidate.get("mde_rel", candidate.get("value")))
        if _finite(candidate) is not None:
            return float(candidate)  # type: ignore[arg-type]
    return None


def breakeven_rows(report: Report, roi: Any) -> list[dict[str, Any]]:
    """Relative lifts on inquiries per visitor: the measured effect's CI, the shrunk effect's interval,
    the break-even and the experiment's MDE (the break-even chart's data)."""
    report, roi = as_json(report), as_json(roi)
    e = roi.get("effect") or {}
    rows = []
    ci, shrunk = e.get("ci_rel") or [None, None], e.get("shrunk_ci_rel") or [None, None]
    if e.get("lift_rel") is not None and None not in ci:
        rows.append({"what": "Measured effect (95% CI)", "value": e["lift_rel"], "low": ci[0], "high": ci[1]})
    if e.get("shrunk_lift_rel") is not None and None not in shrunk:
        rows.append({"what": "Shrunk effect (95% interval)", "value": e["shrunk_lift_rel"], "low": shrunk[0],
                     "high": shrunk[1]})
    if roi.get("break_even_lift_rel") is not None:
        be = roi["break_even_lift_rel"]
        rows.append({"what": "Break-even", "value": be, "low": be, "high": be})
    mde = mde_of(report, roi)
    if mde is not None:
        rows.append({"what": "Experiment's MDE", "value": mde, "low": mde, "high": mde})
    return rows


def breakeven_text(report: Report, roi: Any) -> str:
    """One line: break-even next to the measured and shrunk effects and the MDE."""
    report, roi = as_json(report), as_json(roi)
    e = roi.get("effect") or {}
    parts = [f"Break-even {small_pct(roi.get('break_even_lift_rel'))} ({per_1000(roi.get('break_even_lift_abs'))})",
             f"measured effect {fmt.pct(e.get('lift_rel'))} (95% CI {fmt.interval(e.get('ci_rel'))})",
             f"shrunk {fmt.pct(e.get('shrunk_lift_rel'))} (95% interval {fmt.interval(e.get('shrunk_ci_rel'))})",
             f"experiment's MDE {fmt.share(mde_of(report, roi))}"]
    return " · ".join(parts)


COST_LABELS = {
    "engineering": "Engineering and integration", "fine_tuning": "Fine-tuning (all runs)",
    "first_generation": "First generation of the pages", "review": "Review",
    "generation": "Generation (new pages and on demand)", "maintenance": "Maintenance",
    "retraining": "Re-training (amortised)", "storage_cdn": "Storage and CDN", "other": "Other running costs",
}


def cost_rows(roi: dict) -> list[dict[str, str]]:
    """The itemised costs (and the content savings when counted), formatted: one row per item."""
    c = roi.get("costs") or {}
    rows = [{"When": "one-off", "Item": COST_LABELS.get(k, k), "Amount": fmt.money(v)}
            for k, v in (c.get("one_off") or {}).items()]
    rows.append({"When": "one-off", "Item": "Total up-front investment", "Amount": fmt.money(c.get("one_off_total"))})
    rows += [{"When": "per month", "Item": COST_LABELS.get(k, k), "Amount": fmt.money(v)}
             for k, v in (c.get("monthly") or {}).items()]
    rows.append({"When": "per month", "Item": "Total running costs", "Amount": fmt.money(c.get("monthly_total"))})
    rows.append({"When": f"over {roi.get('horizon_months')} months", "Item": "Present value of all costs",
                 "Amount": fmt.money(c.get("pv_costs"))})
    saving = c.get("savings") or {}
    if saving.get("counted"):
        rows.append({"When": "one-off", "Item": "Content saving (hand-writing avoided)",
                     "Amount": fmt.money(saving.get("one_off"))})
        rows.append({"When": "per month", "Item": "Content saving (hand-writing avoided)",
                     "Amount": fmt.money(saving.get("monthly"))})
    return rows


def histogram_rows(roi: dict) -> list[dict[str, Any]]:
    """Bars of the NPV distribution: start, end, count, and whether the bin is above zero."""
    h = roi.get("histogram") or {}
    edges, counts = h.get("bin_edges") or [], h.get("counts") or []
    total = sum(counts) or 1
    return [{"start": lo, "end": hi, "count": c, "share": c / total, "positive": (lo + hi) / 2 > 0}
            for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=False)]


def _tag(item: dict) -> str:
    if item.get("ranged"):
        return ""
    return " (±5 pts)" if "points" in (item.get("basis") or "") else " (±25%)"


def tornado_rows(roi: dict, top: int = 10) -> list[dict[str, Any]]:
    """Per input: the NPV at its low and high value, largest swing first. Inputs without a range of their
    own swing by a default step, which their label says."""
    sens = roi.get("sensitivity") or {}
    rows = []
    for item in (sens.get("items") or [])[:top]:
        low, high = item.get("npv_low"), item.get("npv_high")
        if low is None or high is None:
            continue
        rows.append({"label": item["label"] + _tag(item), "name": item["name"], "base": sens.get("base"),
                     "at_low": low, "at_high": high, "low_value": item["low_value"],
                     "high_value": item["high_value"], "swing": item.get("swing"), "ranged": item.get("ranged")})
    return rows


def _likely(x: Any) -> Any:
    return x.get("likely") if isinstance(x, dict) else x


def assumptions_text(roi: dict) -> str:
    """The main assumptions and the effect in one line (likely values of ranges), every figure formatted:
    "Assumptions (likely values): 50,000 new visitors/month, inquiry-to-order 20%, ..."."""
    a = roi.get("assumptions") or {}
    e = roi.get("effect") or {}
    c = roi.get("costs") or {}
    return (f"Assumptions (likely values): {fmt.count(_likely(a.get('monthly_visitors')))} new visitors/month, "
            f"inquiry-to-order {fmt.share(_likely(a.get('inquiry_to_order')))}, margin "
            f"{fmt.money(_likely(a.get('margin_per_order')))}/order, one-off costs {fmt.money(c.get('one_off_total'))}, "
            f"running costs {fmt.money(c.get('monthly_total'))}/month, horizon {fmt.months(a.get('horizon_months'))}. "
            f"Effect {fmt.pct(e.get('lift_rel'))} measured, {fmt.pct(e.get('shrunk_lift_rel'))} after shrinkage.")
