"""Plain-words formatting of lifts, intervals and money for executive headlines."""

from __future__ import annotations

METRIC_WORDS = {
    "dwell_time_per_view": "dwell time",
    "dwell_time_per_visitor": "dwell time per visitor",
    "inquiry_rate": "inquiry rate",
    "inquiries_per_visitor": "inquiries per visitor",
    "inquiry_value_per_visitor": "inquiry value per visitor",
}


def metric_words(metric: object) -> str:
    return METRIC_WORDS.get(str(metric), str(metric).replace("_", " "))


def subject(variant: object) -> str:
    """Who the headline talks about: "the ARMOR pages" for the ARMOR variant, else the variant key."""
    if variant is None or "armor" in str(variant).lower():
        return "the ARMOR pages"
    return f"variant '{variant}'"


def pct(x: float) -> str:
    """A relative change as a signed percentage: 0.081 -> "+8.1%"."""
    return f"{x * 100:+.1f}%"


def ci_words(ci: tuple[float, float], alpha: float) -> str:
    return f"{(1 - alpha) * 100:g}% CI {pct(ci[0])} to {pct(ci[1])}"


def money(x: float) -> str:
    """Compact dollars: 840 -> "$840", 8_400 -> "$8.4k", 84_000 -> "$84k", 1.2e6 -> "$1.2M".

    Thresholds sit where rounding would roll over (9,990 -> "$10k", not "$10.0k").
    """
    sign, x = ("-" if x < 0 else ""), abs(x)
    if x < 999.5:
        body = f"{x:.0f}"
    elif x < 9_950:
        body = f"{x / 1_000:.1f}k"
    elif x < 999_500:
        body = f"{x / 1_000:.0f}k"
    elif x < 9_950_000:
        body = f"{x / 1_000_000:.1f}M"
    else:
        body = f"{x / 1_000_000:.0f}M"
    return f"{sign}${body}"


def probability(p: float) -> str:
    return f"{p * 100:.0f}%"


def days(d: float | None) -> str:
    if d is None:
        return "no planned end date"
    return f"about {d:.0f} day{'s' if round(d) != 1 else ''} left"
