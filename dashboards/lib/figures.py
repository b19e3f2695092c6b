"""Figures extracted from the API's JSON (the results report, the ROI block): pure functions.

Pages render what these return; tests compare it with the JSON. Every text goes through ``fmt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from dashboards.lib import fmt

# ---- the verdict and SRM -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """What the dashboard says about an experiment: the verdict, never "ship" on a broken split."""

    decision: str | None  # ship | keep_running | stop | None (no verdict yet)
    headline: str
    reasons: tuple[str, ...]
    srm_blocked: bool  # a sample ratio mismatch is flagged: no ship reading, whatever the metrics say


def srm_message(srm: dict) -> str:
    """The SRM banner's text: observed vs expected visitors and what to do."""
    observed = srm.get("observed") or {}
    expected = srm.get("expected") or {}
    split = ", ".join(f"{k} {fmt.count(observed.get(k))} (expected {fmt.count(expected.get(k))})" for k in observed)
    return (f"Sample ratio mismatch (p = {fmt.p_value(srm.get('p_value'))}): {split}. The traffic split differs "
            "from the plan, so every result is suspect. Do not ship on these numbers; investigate assignment "
            "and tracking first.")


def reading(report: dict, verdict: dict | None = None) -> Reading:
    """The verdict to show (the report's, or a what-if's), with SRM overriding any "ship"."""
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


def significance(entry: dict) -> Significance:
    """Significance read from the always-valid (sequential) CI, as the verdict reads it."""
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
    return f"{(1 - alpha) * 100:g}% CI"


def results_rows(report: dict) -> list[dict[str, str]]:
    """One row per metric x variant, every cell formatted (the Results table)."""
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


def metric_caption(entry: dict, alpha: float) -> str:
    """The line under a metric card: CI, adjusted p-value, chance to win."""
    b = entry.get("bayesian") or {}
    return (f"{ci_label(alpha)} {fmt.interval(entry.get('ci_rel'))} · p (adjusted) "
            f"{fmt.p_value(entry.get('p_value_adjusted'))} · chance to win {fmt.probability(b.get('chance_to_win'))}")


def visitors_text(visitors: dict[str, int]) -> str:
    """{"control": 1513, "armor": 1487} -> "control 1,513 · armor 1,487"."""
    return " · ".join(f"{k} {fmt.count(v)}" for k, v in visitors.items()) or fmt.DASH


# ---- the experiments overview ------------------------------------------------------------------------


def overview_row(experiment: dict, report: dict | None, problem: str | None = None) -> dict[str, Any]:
    """One experiment's line on the Experiments page (``report`` None: no results, ``problem`` says why)."""
    spec = experiment.get("spec") or {}
    row: dict[str, Any] = {  # the columns, in the order shown
        "Experiment": experiment["key"],
        "Status": experiment.get("status", ""),
        "Verdict": fmt.DASH,
        "SRM": fmt.DASH,
        "Visitors": fmt.DASH,
        "Total visitors": None,
        "Started": fmt.timestamp(experiment.get("started_at")),
        "Stopped": fmt.timestamp(experiment.get("stopped_at")),
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


def series_options(report: dict) -> list[tuple[str, str]]:
    """(metric, variant) pairs that have a time series, primary first."""
    return [(s["metric"], s["variant"]) for s in report.get("timeseries") or []]


def timeseries_rows(report: dict, metric: str, variant: str) -> list[dict[str, Any]]:
    """Cumulative daily estimates of one metric x variant with their fixed and sequential CIs."""
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


def segment_keys(report: dict) -> list[str]:
    return list(dict.fromkeys(s["segment"] for s in report.get("segments") or []))


def segment_rows(report: dict, segment: str) -> list[dict[str, str]]:
    """One row per segment value x metric x variant (exploratory: not multiplicity-adjusted)."""
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


def segment_points(report: dict, segment: str, metric: str, variant: str) -> list[dict[str, Any]]:
    """Lift and CI per segment value of one metric x variant (the segment chart's data)."""
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


def power_defaults(report: dict | None) -> PowerDefaults:
    """The calculator's starting values: the report's baseline when it has one, else nothing."""
    power = (report or {}).get("power") or {}
    vpd = power.get("visitors_per_day")
    if power.get("status") == "ok" and power.get("baseline_mean") is not None:
        note = (f"Baseline from past data: control's {fmt.metric_label(power['metric']).lower()} over "
                f"{fmt.count(power.get('visitors'))} visitors; traffic {fmt.number(vpd)} visitors/day.")
        return PowerDefaults(power["baseline_mean"], power["baseline_sd"], vpd, True, power.get("metric"), note)
    why = fmt.status_words(power.get("status")) if power else "no experiment data"
    return PowerDefaults(None, None, vpd, False, power.get("metric"),
                         f"No baseline from data yet ({why}): enter the baseline mean and sd.")


def mde_for_visitors(n_per_variant: float, baseline_mean: float, baseline_sd: float, *, alpha: float = 0.05,
                     power: float = 0.8) -> float | None:
    """The relative MDE a two-arm test of ``n_per_variant`` per arm detects (closed form, equal split).

    Inverse of ``n = (z_{1-alpha/2} + z_power)^2 * 2 / d^2`` with ``d = mde * |mean| / sd``.
    """
    if n_per_variant <= 0 or baseline_mean == 0 or baseline_sd <= 0:
        return None
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    d = z * (2.0 / n_per_variant) ** 0.5
    return d * baseline_sd / abs(baseline_mean)


# ---- ROI ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyFigure:
    label: str
    value: str
    interval: str  # the 95% interval over the effect's uncertainty
    help: str


def roi_prob(roi: dict) -> float | None:
    p = roi.get("prob_roi_positive")
    return p if p is not None else roi.get("prob_npv_positive")


def roi_figures(roi: dict) -> list[KeyFigure]:
    """ROI, NPV, payback, incremental profit (point estimate and 95% interval) and P(ROI > 0)."""
    point = roi.get("point") or {}
    horizon = roi.get("horizon_months")

    def payback(x: object) -> str:
        return fmt.months(x, horizon)

    return [
        KeyFigure("ROI", fmt.roi_pct(point.get("roi_pct")), fmt.interval((roi.get("roi_pct") or {}).get("ci"),
                                                                         fmt.roi_pct),
                  f"(PV of benefits - PV of costs) / PV of costs over {horizon} months"),
        KeyFigure("NPV", fmt.money(point.get("npv")), fmt.interval((roi.get("npv") or {}).get("ci"), fmt.money),
                  f"net present value over {horizon} months"),
        KeyFigure("Payback", payback(point.get("payback_months")),
                  fmt.interval((roi.get("payback_months") or {}).get("ci"), payback),
                  "first month whose cumulative net cash is >= 0"),
        KeyFigure("Incremental profit / month", fmt.money(point.get("incremental_profit_per_month")),
                  fmt.interval((roi.get("incremental_profit_per_month") or {}).get("ci"), fmt.money),
                  "extra margin from extra inquiries, less serving and operations"),
        KeyFigure("P(ROI > 0)", fmt.probability(roi_prob(roi)), "",
                  "share of simulated effects for which the variant pays for itself"),
    ]


def histogram_rows(roi: dict) -> list[dict[str, Any]]:
    """Bars of the ROI (or NPV) distribution: start, end, count, and whether the bin is above zero."""
    h = roi.get("roi_histogram") or {}
    edges, counts = h.get("bin_edges") or [], h.get("counts") or []
    total = sum(counts) or 1
    return [{"start": lo, "end": hi, "count": c, "share": c / total, "positive": (lo + hi) / 2 > 0}
            for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=False)]


def tornado_rows(roi: dict, top: int = 10) -> list[dict[str, Any]]:
    """Per assumption: the ROI (or NPV) at its low and high value, largest swing first."""
    sens = roi.get("sensitivity") or {}
    metric = sens.get("metric", "roi_pct")
    rows = []
    for item in (sens.get("items") or [])[:top]:
        low, high = item.get(f"{metric}_low"), item.get(f"{metric}_high")
        if low is None or high is None:
            continue
        rows.append({"label": item["label"], "name": item["name"], "base": sens.get("base"),
                     "at_low": low, "at_high": high, "low_value": item["low_value"],
                     "high_value": item["high_value"], "swing": item.get("swing")})
    return rows


def whatif_verdict(report: dict, roi: dict | None) -> dict | None:
    """The verdict with a what-if ROI, by the same rules (``armor_ab.roi.verdict.decide``) as the report's."""
    from armor_ab.roi.verdict import decide

    variant = report.get("primary_variant")
    results = report.get("results") or []
    primary = next((r for r in results if r["metric"] == report.get("primary_metric") and r["variant"] == variant),
                   None)
    if primary is None or not report.get("srm"):
        return report.get("verdict")
    guardrails = [r for r in results if "guardrail" in r and r["variant"] == variant]
    return decide(primary=primary, guardrails=guardrails, srm=report["srm"], roi=roi,
                  days_remaining=(report.get("power") or {}).get("days_remaining"), alpha=report.get("alpha", 0.05))


def roi_ready(roi: dict | None) -> bool:
    """Whether the ROI block carries a computed distribution (not a status/reason stub)."""
    return bool(roi) and roi.get("status") in ("ok", "roi_undefined_zero_cost") and "point" in roi
