"""The cash-flow model of shipping the ARMOR pages, vectorized over Monte Carlo draws.

Timing: month 0 is launch and carries the one-off costs (and the one-off content saving, when
counted); months t = 1..H carry the monthly flows, booked at month end and discounted by
``d_t = (1 + r) ** (-t / 12)`` (the monthly rate ``(1 + r) ** (1/12) - 1``, compounded).

* incremental margin in month t = monthly_visitors x lift x inquiry_to_order x margin_per_order
  x retention ** (t - 1)  (``lift``: extra inquiries per NEW visitor within the effect's window)
* net cash in month 0 = -one_off_total + one_off_saving
* net cash in month t = incremental margin_t - monthly_total + monthly_saving
* NPV = sum over t = 0..H of net cash_t x d_t
     = c0 + (monthly_saving - monthly_total) x A + margin_1 x B,
  with A = sum_{t=1..H} d_t and B = sum_{t=1..H} retention ** (t - 1) x d_t
* PV of costs = one_off_total + monthly_total x A
* discounted payback = the first month from which the cumulative DISCOUNTED net cash stays >= 0
  through the horizon; +inf when it ends the horizon below 0. (With no decay and a positive monthly
  net it is monotone, and "paid back within H" is the same event as NPV >= 0.)

Each input may be a float or an array over draws; everything broadcasts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from armor_ab.roi import costs

# Rows of the payback matrix handled at once: bounds memory at ~8 MB x (H + 1) / 121 per chunk.
_PAYBACK_CHUNK = 8192


def monthly_discount_rate(annual: float) -> float:
    return float((1.0 + annual) ** (1.0 / 12.0) - 1.0)


def _col(x: Any) -> np.ndarray:
    """A float or a vector of draws as a column (k x 1) for month matrices."""
    return np.atleast_1d(np.asarray(x, dtype=float))[:, None]


def factors(v: Mapping[str, Any], horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(d, w): discount factors d_t for t = 0..H and decay-weighted ones w_t = retention^(t-1) d_t
    (w_0 = 0), each k x (H + 1) with k = 1 or the number of draws."""
    t = np.arange(horizon + 1, dtype=float)
    d = (1.0 + _col(v["annual_discount_rate"])) ** (-t / 12.0)
    decay = _col(v["effect_retention_per_month"]) ** np.maximum(t - 1.0, 0.0)
    w = decay * d
    w[:, 0] = 0.0
    return d, w


def evaluate(v: Mapping[str, Any], lift: np.ndarray, horizon: int, handwritten: bool,
             *, payback: bool = True) -> dict[str, np.ndarray]:
    """Per-draw outputs for an array of lifts (inquiries per new visitor) and the values ``v``."""
    lift = np.atleast_1d(np.asarray(lift, dtype=float))
    n = lift.shape[0]

    def vec(x: Any) -> np.ndarray:
        return np.broadcast_to(np.asarray(x, dtype=float), (n,))

    one_off = vec(costs.total(costs.one_off(v)))
    monthly = vec(costs.total(costs.monthly(v)))
    saving = costs.savings(v, handwritten)
    save0, save_m = vec(saving["one_off"]), vec(saving["monthly"])
    inquiries = lift * vec(v["monthly_visitors"])
    margin1 = inquiries * vec(v["inquiry_to_order"]) * vec(v["margin_per_order"])

    d, w = factors(v, horizon)
    annuity = vec(d[:, 1:].sum(axis=1))
    weighted = vec(w.sum(axis=1))
    c0 = save0 - one_off
    net_fixed = save_m - monthly
    out = {
        "one_off": one_off,
        "monthly": monthly,
        "incremental_inquiries_per_month": inquiries,
        "incremental_margin_per_month": margin1,
        "incremental_profit_per_month": margin1 + net_fixed,
        "npv": c0 + net_fixed * annuity + margin1 * weighted,
        "pv_costs": one_off + monthly * annuity,
        "pv_benefits": save0 + save_m * annuity + margin1 * weighted,
        "annuity": annuity,
        "effect_annuity": weighted,
    }
    if payback:
        out["payback_months"] = _payback(c0, net_fixed, margin1, d, w)
    return out


def _payback(c0: np.ndarray, net_fixed: np.ndarray, margin1: np.ndarray, d: np.ndarray, w: np.ndarray) -> np.ndarray:
    """First month from which the cumulative discounted cash stays >= 0 to the horizon; +inf if never.

    Cumulative discounted cash at month t is ``c0 + net_fixed x cumsum(d)_t + margin_1 x cumsum(w)_t``
    (both sums from month 1). It need not be monotone (a counted one-off saving can be eaten by
    monthly costs; a decaying effect can fall below the costs), so every month is scanned.
    """
    d = d.copy()
    d[:, 0] = 0.0
    cum_d, cum_w = np.cumsum(d, axis=1), np.cumsum(w, axis=1)
    n = c0.shape[0]
    out = np.empty(n)
    for start in range(0, n, _PAYBACK_CHUNK):
        sl = slice(start, start + _PAYBACK_CHUNK)
        cd = cum_d if cum_d.shape[0] == 1 else cum_d[sl]
        cw = cum_w if cum_w.shape[0] == 1 else cum_w[sl]
        cash = c0[sl, None] + net_fixed[sl, None] * cd + margin1[sl, None] * cw
        stays = np.logical_and.accumulate((cash >= 0.0)[:, ::-1], axis=1)[:, ::-1]  # >= 0 at t and after
        out[sl] = np.where(stays[:, -1], stays.argmax(axis=1).astype(float), np.inf)
    return out
