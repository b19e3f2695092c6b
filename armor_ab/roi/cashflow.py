"""The deterministic cash-flow model of shipping the ARMOR variant, vectorized over effect draws.

Timing convention: month 0 is launch; months 1..H (H = ``horizon_months``) carry the recurring
flows, booked at month end and discounted by ``(1 + r) ** (-t / 12)``, which is the same as
compounding at the monthly rate ``(1 + r) ** (1 / 12) - 1``.

* Month 0: fine-tuning cost (GPU-hours x price), a cost, and the content saving
  (hours per page x pages x hourly rate), a benefit. The saving is one-off by default: the
  catalog copy is written once either way. With ``content_refresh_months = k`` it recurs at
  months k, 2k, ... strictly before H, since a rewrite at the horizon would serve months outside it.
* Months 1..H: incremental margin = visitors x lift x inquiry-to-order x margin (a benefit, negative
  when the lift is), and serving plus operations cost (costs).

Everything except the incremental margin is fixed, and the margin is linear in the lift, so each
output is ``fixed part + lift x coefficient``; the Monte Carlo only varies the lift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from armor_ab.roi.assumptions import RoiAssumptions

# Rows of the payback matrix handled at once: bounds memory at ~8 MB x (H + 1) / 121 per chunk.
_PAYBACK_CHUNK = 8192


@dataclass(frozen=True)
class CashFlowModel:
    """The assumption-only parts of the cash flows, computed once per set of assumptions."""

    horizon_months: int
    monthly_discount_rate: float
    serving_cost_method: str  # "gpu_hours" | "per_1000_generations" | "none"
    serving_cost_per_month: float
    operations_cost_per_month: float
    finetune_cost: float
    content_saving: float  # per occurrence
    content_saving_months: tuple[int, ...]
    margin_per_unit_lift: float  # monthly incremental margin per 1.0 of lift (inquiries per visitor)
    annuity: float  # sum of discount factors over months 1..H
    pv_fixed_benefits: float  # PV of content savings
    pv_costs: float  # PV of fine-tuning, serving and operations
    fixed_cumulative: tuple[float, ...]  # undiscounted cumulative fixed net cash, months 0..H

    @classmethod
    def from_assumptions(cls, a: RoiAssumptions) -> CashFlowModel:
        h = a.horizon_months
        months = np.arange(h + 1)
        discount = (1.0 + a.annual_discount_rate) ** (-months / 12.0)

        if a.serving_gpu_hours_per_month is not None:
            method, serving = "gpu_hours", a.serving_gpu_hours_per_month * a.gpu_hour_price
        elif a.cost_per_1000_generations is not None:
            method = "per_1000_generations"
            serving = a.cost_per_1000_generations * a.generations_per_month / 1000.0
        else:
            method, serving = "none", 0.0

        finetune = a.finetune_gpu_hours * a.gpu_hour_price
        saving = a.content_hours_saved_per_page * a.pages * a.hourly_rate
        step = a.content_refresh_months
        saving_months = (0,) if step is None else tuple(range(0, h, step))

        fixed_benefit = np.zeros(h + 1)
        fixed_benefit[list(saving_months)] = saving
        fixed_cost = np.full(h + 1, serving + a.monthly_operations_cost)
        fixed_cost[0] = finetune

        return cls(
            horizon_months=h,
            monthly_discount_rate=float((1.0 + a.annual_discount_rate) ** (1.0 / 12.0) - 1.0),
            serving_cost_method=method,
            serving_cost_per_month=float(serving),
            operations_cost_per_month=float(a.monthly_operations_cost),
            finetune_cost=float(finetune),
            content_saving=float(saving),
            content_saving_months=saving_months,
            margin_per_unit_lift=float(a.monthly_visitors * a.inquiry_to_order * a.margin_per_order),
            annuity=float(discount[1:].sum()),
            pv_fixed_benefits=float(fixed_benefit @ discount),
            pv_costs=float(fixed_cost @ discount),
            fixed_cumulative=tuple(np.cumsum(fixed_benefit - fixed_cost).tolist()),
        )

    @property
    def recurring_cost_per_month(self) -> float:
        return self.serving_cost_per_month + self.operations_cost_per_month

    @property
    def npv_at_zero_lift(self) -> float:
        return self.pv_fixed_benefits - self.pv_costs

    def break_even_lift(self) -> float | None:
        """The lift (inquiries per visitor) at which NPV is 0; None if the lift earns nothing."""
        slope = self.margin_per_unit_lift * self.annuity
        return None if slope == 0 else -self.npv_at_zero_lift / slope

    def evaluate(self, lift: np.ndarray) -> dict[str, np.ndarray]:
        """Per-draw outputs for an array of lifts; ROI is NaN when PV of costs is 0 (caller reports it)."""
        lift = np.atleast_1d(np.asarray(lift, dtype=float))
        margin = lift * self.margin_per_unit_lift
        pv_benefits = self.pv_fixed_benefits + margin * self.annuity
        npv = pv_benefits - self.pv_costs
        roi = npv / self.pv_costs * 100.0 if self.pv_costs > 0 else np.full_like(npv, np.nan)
        return {
            "margin_per_month": margin,
            "profit_per_month": margin - self.recurring_cost_per_month,
            "npv": npv,
            "roi_pct": roi,
            "payback_months": self.payback(margin),
        }

    def payback(self, margin: np.ndarray) -> np.ndarray:
        """First month from which cumulative undiscounted net cash stays >= 0 to the horizon, per
        draw; +inf if it ends the horizon below 0.

        Cumulative net cash at month t is ``fixed_cumulative[t] + margin * t`` (margin starts at
        month 1). It is not monotone (a month-0 content saving can exceed the fine-tuning cost and
        then be eaten by monthly costs), so "paid back" means from that month on, not a first
        crossing that is lost again; every month is scanned.
        """
        fixed = np.asarray(self.fixed_cumulative)
        months = np.arange(self.horizon_months + 1, dtype=float)
        out = np.empty(margin.shape[0])
        for start in range(0, margin.shape[0], _PAYBACK_CHUNK):
            chunk = margin[start : start + _PAYBACK_CHUNK]
            paid = fixed[None, :] + chunk[:, None] * months[None, :] >= 0.0
            stays = np.logical_and.accumulate(paid[:, ::-1], axis=1)[:, ::-1]  # paid at t and after
            first = stays.argmax(axis=1).astype(float)
            out[start : start + _PAYBACK_CHUNK] = np.where(stays[:, 0] | stays.any(axis=1), first, np.inf)
        return out
