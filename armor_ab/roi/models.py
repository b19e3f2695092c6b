"""The schema of ``compute_roi``'s answer (``RoiPublic``): what ``POST /v1/roi`` returns and the
report's ``roi`` block carries (the report's ``ReportRoi``, reporting/models.py, adds its own keys).

Every model forbids extra keys, so a key added to ``compute_roi`` without its declaration here fails
the tests that validate its output (tests/test_report_models.py). Undefined numbers are None, never
NaN (``compute_roi`` maps them).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from armor_ab.roi.assumptions import RoiAssumptions

Interval = list[float | None]  # [low, high]; None where undefined


class _Fixed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EffectPriorPublic(_Fixed):
    """The prior the effect was shrunk with, and whether it was applied."""

    mean_rel: float
    sd_rel: float
    source: str
    n_experiments: int | None
    sd_abs: float | None
    applied: bool
    reason: str | None


class RoiEffect(_Fixed):
    """The measured effect (``EffectInput``) and its shrunk version; postable back to ``POST /v1/roi``."""

    baseline_inquiries_per_visitor: float
    lift_abs: float
    lift_abs_se: float
    window_days: int | None
    lift_rel: float | None
    lift_rel_se: float | None
    ci_abs: Interval
    ci_rel: Interval
    shrunk_lift_abs: float | None
    shrunk_lift_abs_sd: float | None
    shrunk_lift_rel: float | None
    shrunk_ci_abs: Interval
    shrunk_ci_rel: Interval
    shrinkage: float | None
    prior: EffectPriorPublic


class DrawSummary(_Fixed):
    """Mean, median, sd and 95% interval over the Monte Carlo draws."""

    expected: float | None
    median: float | None
    sd: float | None
    ci: Interval


class MonthlySummary(_Fixed):
    """Mean, its se over draws, and 95% interval of a per-month figure."""

    expected: float | None
    se: float | None
    ci: Interval


class Payback(_Fixed):
    status: Literal["ok", "no_upfront_investment", "not_within_horizon"]
    median_months: float | None
    prob_within_horizon: float | None
    text: str


class RoiPct(_Fixed):
    """ROI % (NPV / PV of costs), shown only where it is not noise divided by almost nothing."""

    shown: bool
    reason: Literal["investment_not_material", "effect_within_1_se", "zero_cost"] | None
    text: str | None
    expected: float | None
    median: float | None = None  # only when shown
    ci: Interval


class Savings(_Fixed):
    counted: bool
    one_off: float
    monthly: float


class Costs(_Fixed):
    one_off: dict[str, float]
    monthly: dict[str, float]
    one_off_total: float
    monthly_total: float
    pv_costs: float
    pv_costs_expected: float
    savings: Savings
    at: str


class PointEstimate(_Fixed):
    """Deterministic: the shrunk effect and every assumption at its likely value."""

    npv: float | None
    incremental_profit_per_month: float | None


class Histogram(_Fixed):
    of: Literal["npv"]
    bin_edges: list[float]
    counts: list[int]


class TornadoItem(_Fixed):
    name: str
    label: str
    ranged: bool
    basis: str
    base_value: float
    low_value: float
    high_value: float
    npv_low: float
    npv_high: float
    swing: float


class Sensitivity(_Fixed):
    metric: Literal["npv"]
    base: float
    base_npv: float
    relative_step: float
    items: list[TornadoItem]


class RoiPublic(_Fixed):
    """``compute_roi``'s answer: NPV and its risk, break-even, payback, costs, sensitivity, notes."""

    status: Literal["ok"]
    draws: int
    seed: int
    effect: RoiEffect
    lift_rel: float | None
    horizon_months: int
    monthly_discount_rate: float
    npv: DrawSummary
    prob_npv_positive: float
    expected_loss: float
    max_expected_loss: float
    break_even_lift_abs: float | None
    break_even_lift_rel: float | None
    payback: Payback
    roi_pct: RoiPct
    incremental_profit_per_month: MonthlySummary
    incremental_inquiries_per_month: MonthlySummary
    costs: Costs
    point: PointEstimate
    histogram: Histogram
    sensitivity: Sensitivity
    ranged_assumptions: list[str]
    assumptions: RoiAssumptions
    notes: list[str]
