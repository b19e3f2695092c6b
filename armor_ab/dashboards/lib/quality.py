"""The Results page's data-quality lines and its lift-by-days-since-exposure chart: pure functions
over the report JSON (the API computes every figure; this only picks and formats)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import altair as alt

from armor_ab.dashboards.lib import fmt
from armor_ab.dashboards.lib.figures import Report, as_json

# Streamlit badges, not emoji: they render the same in every browser and font setup.
BADGES = {"ok": ":green-badge[ok]", "warn": ":orange-badge[warning]", "fail": ":red-badge[fail]"}


@dataclass(frozen=True)
class QualityLine:
    name: str
    status: str  # ok | warn | fail
    text: str  # icon, check name, message


def quality_lines(report: Report) -> list[QualityLine]:
    """One line per data-quality check, in the report's order."""
    report = as_json(report)
    out = []
    for c in (report.get("data_quality") or {}).get("checks") or []:
        status = c.get("status", "ok")
        name = str(c.get("name", "")).replace("_", " ")
        out.append(QualityLine(c.get("name", ""), status, f"{BADGES.get(status, status)} **{name}**: "
                                                           f"{fmt.md_escape(str(c.get('message', '')))}"))
    return out


def plan_text(report: Report) -> str | None:
    """The sample plan in words: which test it is for, visitors and days at the observed traffic."""
    report = as_json(report)
    power = report.get("power") or {}
    total = power.get("total_visitors")
    if not total:
        return None
    method = {"sequential": "always-valid (sequential) interval", "fixed": "fixed-horizon test"}.get(
        power.get("method"), "test")
    mode = power.get("mode", "sequential")
    days = power.get("planned_days")
    parts = [f"Plan ({mode} analysis): {fmt.visitors(total)} for the {method} to detect a "
             f"{fmt.share(power.get('mde'))} lift with {fmt.share(power.get('power'))} power"]
    if days is not None:
        parts.append(f"about {fmt.days(days, up=True)} at the observed {fmt.per_day(power.get('visitors_per_day'))}")
    return "; ".join(parts) + "."


def age_rows(report: Report, metric: str, variant: str) -> list[dict[str, Any]]:
    """Lift by days since first exposure for one metric x variant, with its fixed-horizon CI."""
    report = as_json(report)
    for s in report.get("by_age") or []:
        if s["metric"] == metric and s["variant"] == variant:
            rows = []
            for p in s["points"]:
                if p.get("lift_rel") is None:
                    continue
                ci = p.get("ci_rel") or [None, None]
                rows.append({"age": p["age_days"], "lift": p["lift_rel"], "ci_low": ci[0], "ci_high": ci[1],
                             "visitors": p["n"] + p["baseline_n"]})
            return rows
    return []


def age_chart(rows: list[dict[str, Any]], height: int = 260) -> alt.LayerChart:
    """Lift on the k-th day after first exposure: a novelty effect fades from left to right."""
    x = alt.X("age:Q", title="days since first exposure", axis=alt.Axis(tickMinStep=1, format="d"))
    band = alt.Chart(alt.Data(values=rows)).mark_area(opacity=0.3, color="#9ecae9").encode(
        x=x, y=alt.Y("ci_low:Q", title="lift vs control (that day)", axis=alt.Axis(format="%")), y2="ci_high:Q")
    tooltip = [alt.Tooltip("age:Q", title="day since exposure", format="d"),
               alt.Tooltip("lift:Q", title="lift", format="+.1%"),
               alt.Tooltip("ci_low:Q", title="CI from", format="+.1%"), alt.Tooltip("ci_high:Q", title="CI to", format="+.1%"),
               alt.Tooltip("visitors:Q", title="visitors", format=",")]
    line = alt.Chart(alt.Data(values=rows)).mark_line(point=True, color="#08306b").encode(
        x=x, y="lift:Q", tooltip=tooltip)
    zero = alt.Chart(alt.Data(values=[{"zero": 0}])).mark_rule(strokeDash=[4, 4], color="gray").encode(y="zero:Q")
    return alt.layer(band, line, zero).properties(height=height)
