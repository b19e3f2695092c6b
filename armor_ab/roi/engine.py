"""Monte Carlo ROI of shipping the ARMOR variant, propagating the uncertainty of the measured effect.

``compute_roi`` draws the lift from the estimator's sampling distribution Normal(lift_abs,
lift_abs_se), runs every draw through the cash-flow model (``armor_ab.roi.cashflow``) and
summarises. Business assumptions are taken as fixed; their influence is shown one at a time by the
sensitivity (tornado) block. Pure function, no I/O; the result is JSON-able with no NaN/inf.

Definitions (t = months 0..H, d_t = (1 + annual_discount_rate) ** (-t / 12)):

* incremental inquiries/month = monthly_visitors x lift
* incremental profit/month = inquiries x inquiry_to_order x margin_per_order
  - serving cost - monthly operations cost
* PV of benefits = content savings (month 0, or recurring) + sum_{t=1..H} incremental margin x d_t
* PV of costs = fine-tuning cost (month 0) + sum_{t=1..H} (serving + operations) x d_t
* NPV = PV of benefits - PV of costs
* ROI % = (PV of benefits - PV of costs) / PV of costs x 100 = NPV / PV of costs x 100;
  undefined (None, status ``roi_undefined_zero_cost``) when PV of costs is 0.
  Content savings count as a benefit, not as negative cost, so the denominator does not depend on
  them; PV of costs does not depend on the lift either, which keeps ROI linear in the lift and
  P(ROI > 0) = P(NPV > 0).
* payback months = first month t whose cumulative undiscounted net cash (months 0..t) is >= 0;
  None when not reached within H.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from numbers import Integral

import numpy as np

from armor_ab.roi.assumptions import RoiAssumptions
from armor_ab.roi.cashflow import CashFlowModel
from armor_ab.roi.sensitivity import tornado

DEFAULT_DRAWS = 20_000
MIN_DRAWS = 10_000  # below this the 2.5/97.5 percentiles wobble by more than ~3% of a sd
MAX_DRAWS = 2_000_000
HISTOGRAM_BINS = 40


@dataclass(frozen=True)
class EffectInput:
    """The measured effect of the variant on inquiries per visitor (treatment minus control)."""

    baseline_inquiries_per_visitor: float
    lift_abs: float
    lift_abs_se: float

    def __post_init__(self) -> None:
        for name in ("baseline_inquiries_per_visitor", "lift_abs", "lift_abs_se"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"EffectInput.{name} must be finite, got {getattr(self, name)!r}")
        if self.baseline_inquiries_per_visitor < 0:
            raise ValueError("EffectInput.baseline_inquiries_per_visitor must be >= 0")
        if self.lift_abs_se < 0:
            raise ValueError("EffectInput.lift_abs_se must be >= 0")


def _num(x: float) -> float | None:
    """A JSON-safe float: None for NaN/inf, which mean "undefined" here."""
    x = float(x)
    return x if math.isfinite(x) else None


def _summary(x: np.ndarray) -> dict:
    lo, median, hi = np.quantile(x, [0.025, 0.5, 0.975])
    return {"mean": _num(x.mean()), "median": _num(median), "ci": [_num(lo), _num(hi)]}


def _payback_summary(months: np.ndarray) -> dict:
    """Payback over draws; never within the horizon counts as +inf, so it sorts last.

    Percentiles use the inverted CDF so they are real months (no interpolating between month 3
    and "never"); a percentile that lands on "never" is None. The mean is defined only when every
    draw pays back; ``mean_given_payback`` is the mean over those that do.
    """
    paid = np.isfinite(months)
    lo, median, hi = np.quantile(months, [0.025, 0.5, 0.975], method="inverted_cdf")
    return {
        "mean": _num(months.mean()) if paid.all() else None,
        "median": _num(median),
        "ci": [_num(lo), _num(hi)],
        "prob_within_horizon": float(paid.mean()),
        "mean_given_payback": _num(months[paid].mean()) if paid.any() else None,
    }


def _histogram(x: np.ndarray) -> dict:
    counts, edges = np.histogram(x, bins=HISTOGRAM_BINS)
    return {"bin_edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def compute_roi(
    assumptions: RoiAssumptions, effect: EffectInput, *, draws: int = DEFAULT_DRAWS, seed: int = 0
) -> dict:
    """ROI distribution, point estimates and tornado data for one set of assumptions and one effect.

    For a what-if, pass edited assumptions: ``assumptions.with_updates(pages=80)`` (validated) or
    ``assumptions.model_copy(update=...)`` (re-validated here, since model_copy does not).
    Equal inputs and seed give an identical result.
    """
    if not isinstance(assumptions, RoiAssumptions):
        raise TypeError(f"assumptions must be RoiAssumptions, got {type(assumptions).__name__}")
    if not isinstance(effect, EffectInput):
        raise TypeError(f"effect must be EffectInput, got {type(effect).__name__}")
    if isinstance(draws, bool) or not isinstance(draws, Integral) or not MIN_DRAWS <= draws <= MAX_DRAWS:
        raise ValueError(f"draws must be an int in [{MIN_DRAWS}, {MAX_DRAWS}], got {draws!r}")
    # An explicit integer seed is what makes equal inputs give an identical result.
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    draws, seed = int(draws), int(seed)
    assumptions = RoiAssumptions.model_validate(assumptions.model_dump())

    model = CashFlowModel.from_assumptions(assumptions)
    rng = np.random.default_rng(seed)
    lift = rng.normal(effect.lift_abs, effect.lift_abs_se, size=draws)
    sim = model.evaluate(lift)
    point = model.evaluate(np.array([effect.lift_abs]))

    roi_defined = model.pv_costs > 0
    status = "ok" if roi_defined else "roi_undefined_zero_cost"
    npv_positive = float((sim["npv"] > 0).mean())
    hist_of = "roi_pct" if roi_defined else "npv"
    point_payback = _num(point["payback_months"][0])
    break_even = model.break_even_lift()
    baseline = effect.baseline_inquiries_per_visitor

    notes = [
        "Content saving is one-off at month 0."
        if assumptions.content_refresh_months is None
        else f"Content saving recurs every {assumptions.content_refresh_months} months within the horizon.",
        "Only the effect is uncertain in the simulation; see sensitivity for the assumptions.",
    ]
    if not roi_defined:
        notes.append("ROI is undefined because every cost is zero; NPV is reported instead.")
    if model.serving_cost_method == "none":
        notes.append("No serving cost configured: serving is treated as free.")
    if effect.lift_abs_se == 0:
        notes.append("Effect has zero standard error: the distribution collapses to the point estimate.")

    return {
        "status": status,
        "draws": draws,
        "seed": seed,
        "effect": asdict(effect),
        "lift_rel": _num(effect.lift_abs / baseline) if baseline > 0 else None,
        "horizon_months": assumptions.horizon_months,
        "monthly_discount_rate": model.monthly_discount_rate,
        "serving_cost_method": model.serving_cost_method,
        "costs": {
            "finetune_one_off": model.finetune_cost,
            "content_saving_per_occurrence": model.content_saving,
            "content_saving_months": list(model.content_saving_months),
            "serving_per_month": model.serving_cost_per_month,
            "operations_per_month": model.operations_cost_per_month,
            "pv_costs": model.pv_costs,
            "pv_content_savings": model.pv_fixed_benefits,
        },
        "point": {
            "incremental_inquiries_per_month": _num(effect.lift_abs * assumptions.monthly_visitors),
            "incremental_profit_per_month": _num(point["profit_per_month"][0]),
            "npv": _num(point["npv"][0]),
            "roi_pct": _num(point["roi_pct"][0]),
            "payback_months": point_payback,
            "payback_status": "ok" if point_payback is not None else "not_within_horizon",
        },
        "incremental_inquiries_per_month": _summary(lift * assumptions.monthly_visitors),
        "incremental_profit_per_month": _summary(sim["profit_per_month"]),
        "npv": _summary(sim["npv"]),
        "roi_pct": _summary(sim["roi_pct"])
        if roi_defined
        else {"mean": None, "median": None, "ci": [None, None]},
        "payback_months": _payback_summary(sim["payback_months"]),
        "prob_roi_positive": npv_positive if roi_defined else None,
        "prob_npv_positive": npv_positive,
        "break_even_lift_abs": _num(break_even) if break_even is not None else None,
        "break_even_lift_rel": _num(break_even / baseline)
        if break_even is not None and baseline > 0
        else None,
        "roi_histogram": {"of": hist_of, **_histogram(sim[hist_of])},
        "sensitivity": tornado(assumptions, effect.lift_abs, effect.lift_abs_se),
        "assumptions": assumptions.model_dump(),
        "notes": notes,
    }


def what_if(
    assumptions: RoiAssumptions,
    effect: EffectInput,
    *,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    **updates: object,
) -> dict:
    """``compute_roi`` with some assumptions edited (validated), e.g. ``what_if(a, e, pages=80)``."""
    return compute_roi(assumptions.with_updates(**updates), effect, draws=draws, seed=seed)
