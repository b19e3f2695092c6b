"""One-at-a-time sensitivity of the ROI (tornado chart data) at the point estimate of the effect.

Each assumption moves to a low and a high value while everything else stays put: +/-25% by
default; rates and counts get ranges that stay meaningful (a share cannot exceed 1, a discount
rate moves by percentage points, months stay whole). The effect itself moves to its 95% CI bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import NormalDist

import numpy as np

from armor_ab.roi.assumptions import RoiAssumptions
from armor_ab.roi.cashflow import CashFlowModel

RELATIVE_STEP = 0.25
DISCOUNT_RATE_STEP = 0.05  # +/- 5 percentage points: a plausible spread of costs of capital
_Z95 = NormalDist().inv_cdf(0.975)

LABELS = {
    "effect": "Effect (95% CI bounds)",
    "monthly_visitors": "Monthly visitors",
    "inquiry_to_order": "Inquiry-to-order rate",
    "margin_per_order": "Margin per order",
    "content_hours_saved_per_page": "Content hours saved per page",
    "pages": "Pages",
    "hourly_rate": "Hourly rate",
    "content_refresh_months": "Content refresh interval (months)",
    "finetune_gpu_hours": "Fine-tuning GPU-hours",
    "gpu_hour_price": "GPU-hour price",
    "serving_gpu_hours_per_month": "Serving GPU-hours per month",
    "cost_per_1000_generations": "Cost per 1,000 generations",
    "generations_per_month": "Generations per month",
    "monthly_operations_cost": "Monthly operations cost",
    "horizon_months": "Horizon (months)",
    "annual_discount_rate": "Annual discount rate",
}


def _scaled(value: float) -> tuple[float, float]:
    return value * (1 - RELATIVE_STEP), value * (1 + RELATIVE_STEP)


def _months(value: int, upper: int) -> tuple[int, int]:
    return max(1, round(value * (1 - RELATIVE_STEP))), min(upper, round(value * (1 + RELATIVE_STEP)))


_RANGES: dict[str, Callable[[float], tuple[float, float]]] = {
    "inquiry_to_order": lambda v: (v * (1 - RELATIVE_STEP), min(1.0, v * (1 + RELATIVE_STEP))),
    "annual_discount_rate": lambda v: (max(0.0, v - DISCOUNT_RATE_STEP), min(1.0, v + DISCOUNT_RATE_STEP)),
    "horizon_months": lambda v: _months(int(v), 120),
    "content_refresh_months": lambda v: _months(int(v), 10_000),
}


def _varied_fields(a: RoiAssumptions, model: CashFlowModel) -> list[str]:
    """The assumptions that actually enter the ROI under the configured serving method."""
    names = [
        "monthly_visitors",
        "inquiry_to_order",
        "margin_per_order",
        "content_hours_saved_per_page",
        "pages",
        "hourly_rate",
        "finetune_gpu_hours",
        "gpu_hour_price",
        "monthly_operations_cost",
        "horizon_months",
        "annual_discount_rate",
    ]
    if a.content_refresh_months is not None:
        names.append("content_refresh_months")
    if model.serving_cost_method == "gpu_hours":
        names.append("serving_gpu_hours_per_month")
    elif model.serving_cost_method == "per_1000_generations":
        names += ["cost_per_1000_generations", "generations_per_month"]
    return names


def _point(model: CashFlowModel, lift: float) -> tuple[float, float | None]:
    out = model.evaluate(np.array([lift]))
    roi = float(out["roi_pct"][0])
    return float(out["npv"][0]), (roi if np.isfinite(roi) else None)


def tornado(a: RoiAssumptions, lift_abs: float, lift_abs_se: float) -> dict:
    """Tornado rows sorted by swing (largest first); the swing is in ROI points, or in NPV if ROI is undefined."""
    base_model = CashFlowModel.from_assumptions(a)
    base_npv, base_roi = _point(base_model, lift_abs)
    metric = "roi_pct" if base_roi is not None else "npv"

    rows: list[tuple[str, float, float, float, tuple[float, float | None], tuple[float, float | None]]] = []
    rows.append(
        (
            "effect",
            lift_abs,
            lift_abs - _Z95 * lift_abs_se,
            lift_abs + _Z95 * lift_abs_se,
            _point(base_model, lift_abs - _Z95 * lift_abs_se),
            _point(base_model, lift_abs + _Z95 * lift_abs_se),
        )
    )
    for name in _varied_fields(a, base_model):
        value = getattr(a, name)
        low, high = _RANGES.get(name, _scaled)(value)
        at_low = _point(CashFlowModel.from_assumptions(a.with_updates(**{name: low})), lift_abs)
        at_high = _point(CashFlowModel.from_assumptions(a.with_updates(**{name: high})), lift_abs)
        rows.append((name, value, low, high, at_low, at_high))

    items = []
    for name, value, low, high, (npv_lo, roi_lo), (npv_hi, roi_hi) in rows:
        if metric == "roi_pct" and roi_lo is not None and roi_hi is not None:
            swing = abs(roi_hi - roi_lo)
        elif metric == "roi_pct":
            swing = None  # ROI undefined at one end (all costs zero there): cannot rank it
        else:
            swing = abs(npv_hi - npv_lo)
        items.append(
            {
                "name": name,
                "label": LABELS[name],
                "base_value": float(value),
                "low_value": float(low),
                "high_value": float(high),
                "npv_low": npv_lo,
                "npv_high": npv_hi,
                "roi_pct_low": roi_lo,
                "roi_pct_high": roi_hi,
                "swing": swing,
            }
        )
    # Rounded so that float noise between equal swings (visitors vs margin: both scale the
    # margin) cannot reorder them from one run to the next; ties then sort by name.
    items.sort(key=lambda row: (row["swing"] is None, -round(row["swing"] or 0.0, 6), row["name"]))
    return {
        "metric": metric,
        "base": base_roi if metric == "roi_pct" else base_npv,
        "base_npv": base_npv,
        "base_roi_pct": base_roi,
        "items": items,
    }
