"""Altair chart builders for the pages: data in, ``alt.Chart`` out (inline data, unit-testable)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt

WIN, LOSS, NEUTRAL, BAND = "#2e7d32", "#c62828", "#4c78a8", "#9ecae9"


def _domain(values: Sequence[float | None], pad: float = 0.1) -> list[float]:
    finite = [v for v in values if v is not None]
    lo, hi = min([0.0, *finite]), max([0.0, *finite])
    span = (hi - lo) or 1.0
    return [lo - pad * span, hi + pad * span]


def timeseries_chart(rows: list[dict[str, Any]], alpha: float = 0.05, height: int = 320) -> alt.LayerChart:
    """The cumulative lift per day with its sequential (always-valid) and fixed-horizon CIs.

    The y-axis is fitted to the estimates, the fixed CIs and the sequential CIs of the later two
    thirds of the days: the first days' sequential intervals are very wide and would flatten the rest.
    """
    level = f"{(1 - alpha) * 100:g}%"
    later = rows[len(rows) // 3:]
    dom = _domain([r["lift"] for r in rows] + [r[k] for r in rows for k in ("ci_low", "ci_high")]
                  + [r[k] for r in later for k in ("seq_low", "seq_high")])
    seq_name, fixed_name, est_name = f"sequential {level} CI (always valid)", f"fixed-horizon {level} CI", "estimate"
    colors = alt.Scale(domain=[seq_name, fixed_name, est_name], range=[BAND, NEUTRAL, "#08306b"])
    bands = [{"date": r["date"], "band": name, "low": r[lo], "high": r[hi]}
             for r in rows for name, lo, hi in ((seq_name, "seq_low", "seq_high"), (fixed_name, "ci_low", "ci_high"))]
    x = alt.X("date:T", title="day", axis=alt.Axis(format="%b %d"))
    area = alt.Chart(alt.Data(values=bands)).mark_area(opacity=0.35, clip=True).encode(
        x=x, y=alt.Y("low:Q", title="lift vs control", axis=alt.Axis(format="%"), scale=alt.Scale(domain=dom)),
        y2="high:Q", color=alt.Color("band:N", scale=colors, legend=alt.Legend(title=None, orient="bottom")))
    tooltip = [alt.Tooltip("date:T", title="day", format="%b %d"), alt.Tooltip("lift:Q", title="lift", format="+.1%"),
               alt.Tooltip("ci_low:Q", title=f"{level} CI from", format="+.1%"),
               alt.Tooltip("ci_high:Q", title=f"{level} CI to", format="+.1%"),
               alt.Tooltip("seq_low:Q", title="always-valid CI from", format="+.1%"),
               alt.Tooltip("seq_high:Q", title="always-valid CI to", format="+.1%"),
               alt.Tooltip("visitors:Q", title="visitors", format=",")]
    line = alt.Chart(alt.Data(values=rows)).mark_line(point=True, clip=True).encode(
        x=x, y="lift:Q", color=alt.datum(est_name), tooltip=tooltip)
    zero = alt.Chart(alt.Data(values=[{"zero": 0}])).mark_rule(strokeDash=[4, 4], color="gray").encode(y="zero:Q")
    return alt.layer(area, line, zero).properties(height=height)


def histogram_chart(rows: list[dict[str, Any]], of: str = "npv", height: int = 280) -> alt.LayerChart:
    """The distribution of the NPV over the effect's posterior and the ranged assumptions; bins above zero
    in green."""
    title = "NPV ($)" if of == "npv" else of
    axis = alt.Axis(format="$,.0f", title=title)
    bars = alt.Chart(alt.Data(values=rows)).mark_rect(stroke="white", strokeWidth=0.5).encode(
        x=alt.X("start:Q", axis=axis), x2="end:Q", y=alt.Y("count:Q", title="simulated outcomes"), y2=alt.datum(0),
        color=alt.Color("positive:N", scale=alt.Scale(domain=[True, False], range=[WIN, LOSS]),
                        legend=alt.Legend(title="pays off", labelExpr="datum.value ? 'yes' : 'no'")),
        tooltip=[alt.Tooltip("start:Q", title="from", format="$,.0f"), alt.Tooltip("end:Q", title="to",
                                                                                   format="$,.0f"),
                 alt.Tooltip("count:Q", title="outcomes", format=","),
                 alt.Tooltip("share:Q", title="share", format=".1%")])
    zero = alt.Chart(alt.Data(values=[{"zero": 0}])).mark_rule(strokeDash=[4, 4], color="black").encode(x="zero:Q")
    return alt.layer(bars, zero).properties(height=height)


def tornado_chart(rows: list[dict[str, Any]], metric: str = "npv") -> alt.LayerChart:
    """One-at-a-time sensitivity: bars from the base NPV to the NPV at each input's low/high value."""
    title = "NPV ($)" if metric == "npv" else metric
    order = [r["label"] for r in rows]
    data = []
    for r in rows:
        data.append({"label": r["label"], "base": r["base"], "end": r["at_low"], "end_label": "low value",
                     "value": r["low_value"]})
        data.append({"label": r["label"], "base": r["base"], "end": r["at_high"], "end_label": "high value",
                     "value": r["high_value"]})
    bars = alt.Chart(alt.Data(values=data)).mark_bar().encode(
        y=alt.Y("label:N", sort=order, title=None, axis=alt.Axis(labelLimit=320)),
        x=alt.X("base:Q", axis=alt.Axis(format="$,.0f", title=title)), x2="end:Q",
        color=alt.Color("end_label:N", scale=alt.Scale(domain=["low value", "high value"], range=[LOSS, NEUTRAL]),
                        legend=alt.Legend(title="input at its", orient="bottom")),
        tooltip=[alt.Tooltip("label:N"), alt.Tooltip("end_label:N", title="at"), alt.Tooltip("value:Q", title="input value", format=",.4~g"),
                 alt.Tooltip("end:Q", title=title, format="$,.0f")])
    base = rows[0]["base"] if rows else 0.0
    rule = alt.Chart(alt.Data(values=[{"base": base}])).mark_rule(color="black").encode(x="base:Q")
    return alt.layer(bars, rule).properties(height=alt.Step(28))


def breakeven_chart(rows: list[dict[str, Any]]) -> alt.LayerChart:
    """Relative lift on inquiries per visitor: the measured and shrunk effects' intervals as bars, the
    break-even and the experiment's MDE as points, zero as a dashed rule."""
    order = [r["what"] for r in rows]
    colors = alt.Scale(domain=["Measured effect (95% CI)", "Shrunk effect (95% interval)", "Break-even",
                               "Experiment's MDE"], range=[BAND, NEUTRAL, LOSS, "#6a51a3"])
    base = alt.Chart(alt.Data(values=rows)).encode(
        y=alt.Y("what:N", sort=order, title=None, axis=alt.Axis(labelLimit=240)),
        color=alt.Color("what:N", scale=colors, legend=None))
    bars = base.mark_rule(strokeWidth=6).encode(
        x=alt.X("low:Q", axis=alt.Axis(format="+%", title="lift on inquiries per visitor")), x2="high:Q")
    dots = base.mark_point(filled=True, size=90).encode(
        x="value:Q", tooltip=[alt.Tooltip("what:N", title=" "), alt.Tooltip("value:Q", title="lift", format="+.1%"),
                              alt.Tooltip("low:Q", title="from", format="+.1%"),
                              alt.Tooltip("high:Q", title="to", format="+.1%")])
    zero = alt.Chart(alt.Data(values=[{"zero": 0}])).mark_rule(strokeDash=[4, 4], color="gray").encode(x="zero:Q")
    return alt.layer(bars, dots, zero).properties(height=alt.Step(34))


def segment_chart(points: list[dict[str, Any]]) -> alt.LayerChart:
    """Lift with its CI per segment value (exploratory)."""
    base = alt.Chart(alt.Data(values=points)).encode(y=alt.Y("value:N", title=None, sort=None,
                                                             axis=alt.Axis(labelLimit=200)))
    bars = base.mark_rule(strokeWidth=2, color=NEUTRAL).encode(
        x=alt.X("ci_low:Q", axis=alt.Axis(format="%", title="lift vs control")), x2="ci_high:Q")
    dots = base.mark_point(filled=True, size=70, color="#08306b").encode(
        x="lift:Q", tooltip=[alt.Tooltip("value:N", title="segment"), alt.Tooltip("lift:Q", title="lift", format="+.1%"),
                             alt.Tooltip("ci_low:Q", title="CI from", format="+.1%"),
                             alt.Tooltip("ci_high:Q", title="CI to", format="+.1%"),
                             alt.Tooltip("visitors:Q", title="visitors", format=",")])
    zero = alt.Chart(alt.Data(values=[{"zero": 0}])).mark_rule(strokeDash=[4, 4], color="gray").encode(x="zero:Q")
    return alt.layer(bars, dots, zero).properties(height=alt.Step(36))


def power_curve(rows: list[dict[str, Any]], current_mde: float | None = None, height: int = 240) -> alt.LayerChart:
    """Days needed (at the current traffic) against the MDE."""
    line = alt.Chart(alt.Data(values=rows)).mark_line(point=True).encode(
        x=alt.X("mde:Q", axis=alt.Axis(format="%", title="minimum detectable effect (relative)")),
        y=alt.Y("days:Q", title="days needed", scale=alt.Scale(type="log")),
        tooltip=[alt.Tooltip("mde:Q", title="MDE", format=".1%"), alt.Tooltip("days:Q", title="days needed", format=",.0f"),
                 alt.Tooltip("total_visitors:Q", title="total visitors", format=",")])
    layers: list[alt.Chart] = [line]
    if current_mde is not None:
        layers.append(alt.Chart(alt.Data(values=[{"mde": current_mde}])).mark_rule(color=LOSS).encode(x="mde:Q"))
    return alt.layer(*layers).properties(height=height)
