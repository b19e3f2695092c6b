"""How every figure is written on the dashboards: one place, so pages and tests agree.

Undefined values (None in the API's JSON, which never carries NaN) are written as an em dash.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

from armor_ab.reporting.wording import METRIC_WORDS

DASH = "—"

DECISION_LABELS = {"ship": "Ship", "keep_running": "Keep running", "stop": "Stop"}
STATUS_WORDS = {
    "ok": "ok",
    "too_few_units": "too few visitors",
    "zero_variance": "no variation yet",
    "zero_denominator": "no page views yet",
    "zero_baseline": "baseline is zero",
}


def _num(x: object) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return None
    return float(x)


def metric_label(metric: str) -> str:
    """``dwell_time_per_view`` -> "Dwell time per view"."""
    words = METRIC_WORDS.get(metric, metric.replace("_", " "))
    if metric == "dwell_time_per_view":
        words = "dwell time per view"
    return words[:1].upper() + words[1:]


def pct(x: object, digits: int = 1) -> str:
    """A relative change, always signed: 0.0945 -> "+9.4%", -0.14 -> "-14.0%" (unsigned shares: ``share``)."""
    v = _num(x)
    if v is None:
        return DASH
    return f"{v * 100:+,.{digits}f}%"


def interval(ci: object, fmt=pct) -> str:  # noqa: ANN001 - any one-argument formatter
    """A two-sided interval: [0.052, 0.136] -> "+5.2% to +13.6%"."""
    if not isinstance(ci, list | tuple) or len(ci) != 2 or _num(ci[0]) is None or _num(ci[1]) is None:
        return DASH
    return f"{fmt(ci[0])} to {fmt(ci[1])}"


def p_value(p: object) -> str:
    """0.336 -> "0.336"; 0.0123 -> "0.012"; 4e-06 -> "<0.001"."""
    v = _num(p)
    if v is None:
        return DASH
    if v < 0.001:
        return "<0.001"
    return f"{v:.3f}"


def probability(p: object) -> str:
    """A probability as a percentage with one decimal: 0.15 -> "15.0%"; 0.999994 -> ">99.9%"."""
    v = _num(p)
    if v is None:
        return DASH
    if v > 0.999:
        return ">99.9%"
    if v < 0.001:
        return "<0.1%"
    return f"{v * 100:.1f}%"


def count(n: object) -> str:
    """1513 -> "1,513"."""
    v = _num(n)
    return DASH if v is None else f"{round(v):,}"


def visitors(n: object) -> str:
    """A number of visitors: 50000.0 -> "50,000 visitors"; 1 -> "1 visitor"."""
    v = _num(n)
    if v is None:
        return DASH
    return f"{round(v):,} visitor{'' if round(v) == 1 else 's'}"


def per_day(n: object) -> str:
    """Traffic: 1071.4 -> "1,071 visitors/day"."""
    v = _num(n)
    return DASH if v is None else f"{round(v):,} visitors/day"


def money(x: object) -> str:
    """Whole dollars with separators: -1346814.75 -> "-$1,346,815"."""
    v = _num(x)
    if v is None:
        return DASH
    return f"{'-' if v < 0 else ''}${abs(v):,.0f}"


def money_short(x: object) -> str:
    """Compact dollars for headlines and charts: -1346814.75 -> "-$1.35M", 8400 -> "$8.4k"."""
    v = _num(x)
    if v is None:
        return DASH
    sign, a = ("-" if v < 0 else ""), abs(v)
    if a < 1_000:
        return f"{sign}${a:.0f}"
    if a < 1_000_000:
        return f"{sign}${a / 1_000:.1f}k"
    if a < 1_000_000_000:
        return f"{sign}${a / 1_000_000:.2f}M"
    return f"{sign}${a / 1_000_000_000:.2f}B"


def roi_pct(x: object) -> str:
    """An ROI in percent (the API's ``roi_pct`` is already x100): 152.3 -> "152%"; -22833.2 -> "-22,833%"."""
    v = _num(x)
    return DASH if v is None else f"{v:,.0f}%"


def months(x: object, horizon: int | None = None) -> str:
    """Payback months: 3.0 -> "3 months"; None -> "not within 12 months"."""
    v = _num(x)
    if v is None:
        return f"not within {horizon} months" if horizon else DASH
    return f"{v:.0f} month{'s' if round(v) != 1 else ''}"


def days(x: object, *, up: bool = False) -> str:
    """Whole days: 2.4 -> "2 days", 1.0 -> "1 day"; ``up`` rounds up (the days a plan still needs: 2.1 -> "3 days")."""
    v = _num(x)
    if v is None:
        return DASH
    n = math.ceil(v - 1e-9) if up else round(v)
    return f"{n:,} day{'' if n == 1 else 's'}"


def share(x: object) -> str:
    """A share or rate written as a percentage without a sign: 0.05 -> "5%", 0.025 -> "2.5%", 0.8 -> "80%"."""
    v = _num(x)
    if v is None:
        return DASH
    return f"{v * 100:,.1f}".rstrip("0").rstrip(".") + "%"


def number(x: object, digits: int = 0) -> str:
    """A plain figure with thousands separators: 53753.1 -> "53,753"."""
    v = _num(x)
    return DASH if v is None else f"{v:,.{digits}f}"


def input_format(x: object) -> str:
    """The printf format of a number input holding ``x`` (Streamlit's inputs take no separators): whole
    numbers from 100 up, cents from 1, four decimals below."""
    v = abs(_num(x) or 0.0)
    if v >= 100:
        return "%0.0f"
    if v >= 1 or v == 0:
        return "%0.2f"
    return "%0.4f"


METRIC_UNITS = {"dwell_time_per_view": "ms", "inquiry_rate": "share of visitors",
                "inquiry_value_per_visitor": "$ per visitor"}


def metric_unit(metric: str) -> str:
    """The unit a metric's raw values (the API's, and the power calculator's inputs) are in."""
    return METRIC_UNITS.get(metric, "ms" if metric.startswith("dwell_time") else "per visitor")


def metric_value(metric: str, x: object) -> str:
    """A metric's mean in its unit: dwell in seconds, rates as percentages, values in dollars."""
    v = _num(x)
    if v is None:
        return DASH
    if metric.startswith("dwell_time"):
        return f"{v / 1000:.1f} s"
    if metric == "inquiry_rate":
        return f"{v * 100:.2f}%"
    if metric == "inquiry_value_per_visitor":
        return f"${v:,.2f}"
    return f"{v:,.4g}" if abs(v) < 1 else number(v, 2)


def timestamp(iso: str | datetime | None) -> str:
    """An ISO timestamp (or a datetime) as "2026-11-14 14:58 UTC" (the API speaks UTC)."""
    if not iso:
        return DASH
    try:
        ts = iso if isinstance(iso, datetime) else datetime.fromisoformat(iso)
    except ValueError:
        return str(iso)
    return ts.strftime("%Y-%m-%d %H:%M") + (" UTC" if ts.utcoffset() is not None else "")


def status_words(status: str | None) -> str:
    return STATUS_WORDS.get(status or "", (status or DASH).replace("_", " "))


def decision(decision: str | None) -> str:
    return DECISION_LABELS.get(decision or "", DASH)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|<>$~])")
_MD_LINE_START = re.compile(r"^(\s*)([-+]|\d+\.)(?=\s)", re.M)  # list markers only


def md_escape(text: str) -> str:
    """Plain text for st.markdown: generated copy must not turn into links, headings, lists, LaTeX or HTML."""
    return _MD_LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), _MD_SPECIAL.sub(r"\\\1", text))
