"""One-at-a-time sensitivity of the NPV (tornado chart data).

The base case is the NPV at the shrunk (posterior mean) effect with every assumption at its likely
value. Each row moves one input while everything else stays put:

* the effect: to its posterior 95% interval bounds;
* a ranged assumption (``{low, likely, high}``): to its own low and high;
* a fixed assumption: +/-25% (``RELATIVE_STEP``), kept inside its bounds (a share cannot exceed 1);
  the annual discount rate and the effect's monthly retention move by 5 points instead, and the
  horizon by 25% rounded to whole months. Fixed assumptions at 0 (a 25% swing of nothing) and the
  content-saving inputs when savings are not counted (they do not enter) are left out. Rows from a
  default swing say so (``ranged: False``, ``basis``): their width is a convention, not a belief.

The swing is |NPV(high) - NPV(low)|, in money; rows sort by it, largest first.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np

from armor_ab.roi import cashflow
from armor_ab.roi.assumptions import LABELS, RANGEABLE, SPECS, RoiAssumptions
from armor_ab.roi.shrinkage import Posterior

RELATIVE_STEP = 0.25
POINT_STEP = 0.05  # +/- 5 percentage points: discount rate, effect retention
_Z95 = NormalDist().inv_cdf(0.975)
_SAVINGS = ("content_hours_saved_per_page", "copywriting_hourly_rate")

__all__ = ["LABELS", "RELATIVE_STEP", "tornado"]


def _clip(name: str, x: float) -> float:
    spec = SPECS[name]
    lo = spec.ge if spec.ge is not None else spec.gt
    if lo is not None:
        x = max(lo, x)
    if spec.le is not None:
        x = min(spec.le, x)
    return x


def _default_swing(name: str, value: float) -> tuple[float, float, str]:
    if name in ("annual_discount_rate", "effect_retention_per_month"):
        return _clip(name, value - POINT_STEP), _clip(name, value + POINT_STEP), "±5 points (fixed value)"
    return (_clip(name, value * (1 - RELATIVE_STEP)), _clip(name, value * (1 + RELATIVE_STEP)),
            f"±{RELATIVE_STEP:.0%} (fixed value)")


def _npv(values: dict[str, float], lift: float, horizon: int, handwritten: bool) -> float:
    return float(cashflow.evaluate(values, np.array([lift]), horizon, handwritten, payback=False)["npv"][0])


def tornado(a: RoiAssumptions, posterior: Posterior) -> dict[str, Any]:
    """Tornado rows (NPV at each input's low and high), sorted by swing, largest first."""
    base = a.likely_values()
    h, hw = a.horizon_months, a.content_would_be_handwritten
    lift = posterior.mean
    base_npv = _npv(base, lift, h, hw)

    items: list[dict[str, Any]] = []

    def add(name: str, value: float, low: float, high: float, at_low: float, at_high: float, ranged: bool,
            basis: str) -> None:
        items.append({"name": name, "label": LABELS[name], "ranged": ranged, "basis": basis,
                      "base_value": float(value), "low_value": float(low), "high_value": float(high),
                      "npv_low": at_low, "npv_high": at_high, "swing": abs(at_high - at_low)})

    lo, hi = lift - _Z95 * posterior.sd, lift + _Z95 * posterior.sd
    add("effect", lift, lo, hi, _npv(base, lo, h, hw), _npv(base, hi, h, hw), True, "posterior 95% interval")

    ranges = a.ranges()
    for name in RANGEABLE:
        if name in _SAVINGS and not hw:
            continue
        value = base[name]
        if name in ranges:
            low, high, ranged, basis = ranges[name].low, ranges[name].high, True, "range"
        elif value == 0:
            continue
        else:
            low, high, basis = _default_swing(name, value)
            ranged = False
        add(name, value, low, high, _npv({**base, name: low}, lift, h, hw), _npv({**base, name: high}, lift, h, hw),
            ranged, basis)

    h_lo, h_hi = max(1, round(h * (1 - RELATIVE_STEP))), min(120, round(h * (1 + RELATIVE_STEP)))
    add("horizon_months", h, h_lo, h_hi, _npv(base, lift, h_lo, hw), _npv(base, lift, h_hi, hw), False,
        f"±{RELATIVE_STEP:.0%} (fixed value)")

    # Rounded so that float noise between equal swings (visitors vs margin: both scale the margin)
    # cannot reorder them from one run to the next; ties then sort by name.
    items.sort(key=lambda row: (-round(row["swing"], 6), row["name"]))
    return {"metric": "npv", "base": base_npv, "base_npv": base_npv, "relative_step": RELATIVE_STEP,
            "items": items}
