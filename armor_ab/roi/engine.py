"""Monte Carlo value of shipping the ARMOR pages: NPV, its risk, break-even and payback.

``compute_roi`` shrinks the measured effect toward zero (``armor_ab.roi.shrinkage``), draws the
effect from its posterior jointly with every ranged business assumption (PERT,
``armor_ab.roi.ranges``), runs each draw through the cash-flow model (``armor_ab.roi.cashflow``,
costs in ``armor_ab.roi.costs``) and summarises what an executive needs: expected NPV with its 95%
interval, P(NPV > 0), the expected loss of shipping, the break-even effect, the discounted
payback, and ROI % only where it means something. Pure function, no I/O; the result is JSON-able
with no NaN/inf (undefined is None plus a status and a reason). Formulas: ``docs/roi.md``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from numbers import Integral
from statistics import NormalDist

import numpy as np

from armor_ab.roi import cashflow, costs
from armor_ab.roi.assumptions import LABELS, RoiAssumptions
from armor_ab.roi.sensitivity import tornado
from armor_ab.roi.shrinkage import DEFAULT_PRIOR, EffectPrior, Posterior, prior_from_history, shrink

__all__ = ["DEFAULT_DRAWS", "EffectInput", "EffectPrior", "compute_roi", "prior_from_history", "what_if"]

DEFAULT_DRAWS = 20_000
MIN_DRAWS = 10_000  # below this the 2.5/97.5 percentiles wobble by more than ~3% of a sd
MAX_DRAWS = 2_000_000
HISTOGRAM_BINS = 40
MAX_WINDOW_DAYS = 365
_Z95 = NormalDist().inv_cdf(0.975)


@dataclass(frozen=True)
class EffectInput:
    """The measured effect of the variant on inquiries per visitor (treatment minus control).

    ``lift_abs`` is the extra inquiries per visitor within ``window_days`` days of the visitor's
    first exposure, over visitors whose window has closed: a per-visitor figure that does not grow
    with the length of the test. ``window_days`` None is accepted for a transition only (a
    warning, and a note in the result): the lift is then read as if it were per new visitor.
    """

    baseline_inquiries_per_visitor: float
    lift_abs: float
    lift_abs_se: float
    window_days: int | None = None

    def __post_init__(self) -> None:
        for name in ("baseline_inquiries_per_visitor", "lift_abs", "lift_abs_se"):
            x = getattr(self, name)
            if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
                raise ValueError(f"EffectInput.{name} must be a finite number, got {x!r}")
        if self.baseline_inquiries_per_visitor < 0:
            raise ValueError("EffectInput.baseline_inquiries_per_visitor must be >= 0")
        if self.lift_abs_se < 0:
            raise ValueError("EffectInput.lift_abs_se must be >= 0")
        w = self.window_days
        if w is None:
            warnings.warn("EffectInput.window_days not given: the lift must be inquiries per visitor within a "
                          "fixed window of first exposure (docs/roi.md)", DeprecationWarning, stacklevel=3)
        elif isinstance(w, bool) or not isinstance(w, Integral) or not 1 <= w <= MAX_WINDOW_DAYS:
            raise ValueError(f"EffectInput.window_days must be an int in [1, {MAX_WINDOW_DAYS}], got {w!r}")


def _num(x: float | np.floating) -> float | None:
    """A JSON-safe float: None for NaN/inf, which mean "undefined" here."""
    x = float(x)
    return x if math.isfinite(x) else None


def _summary(x: np.ndarray) -> dict:
    lo, median, hi = np.quantile(x, [0.025, 0.5, 0.975])
    return {"expected": _num(x.mean()), "median": _num(median), "sd": _num(x.std()), "ci": [_num(lo), _num(hi)]}


def _histogram(x: np.ndarray) -> dict:
    counts, edges = np.histogram(x, bins=HISTOGRAM_BINS)
    return {"of": "npv", "bin_edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def _chance(p: float) -> str:
    if p > 0.995:
        return ">99%"
    if p < 0.005:
        return "<1%"
    return f"{p * 100:.0f}%"


def _months_words(m: float) -> str:
    return f"{m:.0f} month{'' if round(m) == 1 else 's'}"


def _payback(months: np.ndarray, one_off: float, one_off_saving: float, horizon: int) -> dict:
    """Discounted payback over draws: the median month and P(paid back within the horizon).

    With no up-front investment (one-off costs 0, or covered by the one-off content saving) there
    is nothing to pay back: no month is reported, never "0 months".
    """
    if one_off <= 0:
        return {"status": "no_upfront_investment", "median_months": None, "prob_within_horizon": None,
                "text": "no up-front investment entered"}
    if one_off <= one_off_saving:
        return {"status": "no_upfront_investment", "median_months": None, "prob_within_horizon": None,
                "text": "no net up-front investment: the one-off content saving covers the one-off costs"}
    prob = float(np.isfinite(months).mean())
    # Inverted CDF: a real month, or "never" (inf) when more than half the draws never pay back.
    median = float(np.quantile(months, 0.5, method="inverted_cdf"))
    within = f"{_chance(prob)} chance of paying back within {horizon} months"
    if math.isfinite(median):
        return {"status": "ok", "median_months": median, "prob_within_horizon": prob,
                "text": f"{_months_words(median)} (median, discounted); {within}"}
    return {"status": "not_within_horizon", "median_months": None, "prob_within_horizon": prob,
            "text": f"not within {horizon} months (median); {within}"}


def _roi_pct(npv: np.ndarray, pv_costs: np.ndarray, investment: float, a: RoiAssumptions, post: Posterior) -> dict:
    """ROI % = NPV / PV of costs x 100, shown only where it is not noise divided by almost nothing."""
    hidden = {"shown": False, "expected": None, "ci": [None, None]}
    if investment < a.material_investment or investment <= 0:
        return {**hidden, "reason": "investment_not_material",
                "text": f"ROI % not shown: the up-front investment (${investment:,.0f}) is below the "
                        f"${a.material_investment:,.0f} materiality threshold, so a percentage would divide the "
                        "effect's noise by almost nothing. Read the NPV range instead."}
    if post.sd > 0 and abs(post.mean) < post.sd:
        return {**hidden, "reason": "effect_within_1_se",
                "text": "ROI % not shown: the shrunk effect is less than one standard error from zero, so the "
                        "percentage would mostly be noise. Read the NPV range instead."}
    if not np.all(pv_costs > 0):
        return {**hidden, "reason": "zero_cost", "text": "ROI % not shown: some draws have no costs at all."}
    roi = npv / pv_costs * 100.0
    lo, hi = np.quantile(roi, [0.025, 0.975])
    return {"shown": True, "reason": None, "text": None, "expected": _num(roi.mean()), "median":
            _num(np.median(roi)), "ci": [_num(lo), _num(hi)]}


def compute_roi(
    assumptions: RoiAssumptions,
    effect: EffectInput,
    *,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    prior: EffectPrior | None = None,
) -> dict:
    """The executive figures of shipping, for one set of assumptions and one measured effect.

    ``prior`` None uses ``DEFAULT_PRIOR`` (sd 0.1 on the relative lift); pass
    ``prior_from_history(...)`` to use your own past experiments. For a what-if, pass edited
    assumptions (``assumptions.with_updates(pages=80)``). Equal inputs and seed give an identical result.
    """
    if not isinstance(assumptions, RoiAssumptions):
        raise TypeError(f"assumptions must be RoiAssumptions, got {type(assumptions).__name__}")
    if not isinstance(effect, EffectInput):
        raise TypeError(f"effect must be EffectInput, got {type(effect).__name__}")
    if prior is None:
        prior = DEFAULT_PRIOR
    elif not isinstance(prior, EffectPrior):
        raise TypeError(f"prior must be EffectPrior or None, got {type(prior).__name__}")
    if isinstance(draws, bool) or not isinstance(draws, Integral) or not MIN_DRAWS <= draws <= MAX_DRAWS:
        raise ValueError(f"draws must be an int in [{MIN_DRAWS}, {MAX_DRAWS}], got {draws!r}")
    # An explicit integer seed is what makes equal inputs give an identical result.
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    draws, seed = int(draws), int(seed)
    a = RoiAssumptions.model_validate(assumptions.model_dump())  # model_copy(update=...) skips validation
    h, hw = a.horizon_months, a.content_would_be_handwritten
    baseline = effect.baseline_inquiries_per_visitor

    post = shrink(effect.lift_abs, effect.lift_abs_se, baseline, prior)
    rng = np.random.default_rng(seed)
    lift = rng.normal(post.mean, post.sd, size=draws)  # first: the effect's stream never depends on the ranges
    values = a.draw(rng, draws)
    sim = cashflow.evaluate(values, lift, h, hw)
    likely = a.likely_values()
    point = cashflow.evaluate(likely, np.array([post.mean]), h, hw)
    at_zero = cashflow.evaluate(likely, np.array([0.0]), h, hw, payback=False)

    one_off_items = {k: float(v) for k, v in costs.one_off(likely).items()}
    monthly_items = {k: float(v) for k, v in costs.monthly(likely).items()}
    saving = {k: float(v) for k, v in costs.savings(likely, hw).items()}
    one_off_total, monthly_total = costs.total(one_off_items), costs.total(monthly_items)

    # Break-even at the likely values: NPV(L) = NPV(0) + L x (visitors x inquiry-to-order x margin x B).
    slope = likely["monthly_visitors"] * likely["inquiry_to_order"] * likely["margin_per_order"] * float(
        point["effect_annuity"][0])
    break_even = -float(at_zero["npv"][0]) / slope if slope > 0 else None

    npv = sim["npv"]
    ranges = a.ranges()
    tau_abs = post.prior_sd_abs
    lift_rel = effect.lift_abs / baseline if baseline > 0 else None
    ci_abs = [effect.lift_abs - _Z95 * effect.lift_abs_se, effect.lift_abs + _Z95 * effect.lift_abs_se]
    shrunk_ci = [post.mean - _Z95 * post.sd, post.mean + _Z95 * post.sd]

    def rel(x: float | None) -> float | None:
        return _num(x / baseline) if x is not None and baseline > 0 else None

    effect_block = {
        **asdict(effect),
        "lift_rel": rel(effect.lift_abs),
        "lift_rel_se": rel(effect.lift_abs_se),
        "ci_abs": [_num(x) for x in ci_abs],
        "ci_rel": [rel(x) for x in ci_abs],
        "shrunk_lift_abs": _num(post.mean),
        "shrunk_lift_abs_sd": _num(post.sd),
        "shrunk_lift_rel": rel(post.mean),
        "shrunk_ci_abs": [_num(x) for x in shrunk_ci],
        "shrunk_ci_rel": [rel(x) for x in shrunk_ci],
        "shrinkage": _num(post.shrinkage),
        "prior": {**prior.to_dict(), "sd_abs": None if tau_abs is None else _num(tau_abs), "applied": post.applied,
                  "reason": post.reason},
    }

    notes = []
    if effect.window_days is None:
        notes.append("The effect's window (window_days) was not given: the lift is read as extra inquiries per "
                     "new visitor, which is only right if it was measured over a fixed per-visitor window.")
    else:
        notes.append(f"Effect: extra inquiries per visitor within {effect.window_days} days of first exposure, "
                     "times the monthly NEW visitors in scope.")
    if post.applied and post.shrinkage > 0:
        notes.append(f"The measured effect is shrunk toward zero by {post.shrinkage:.0%} (prior sd "
                     f"{prior.sd_rel:.1%} of the baseline, {prior.source}).")
    elif not post.applied:
        notes.append(f"No shrinkage: {post.reason}.")
    if not hw:
        notes.append("Content savings not counted: the pages would not otherwise be written by hand "
                     "(content_would_be_handwritten is false).")
    if ranges:
        notes.append("Drawn from PERT ranges, independently of each other and of the effect: "
                     + ", ".join(LABELS[n] for n in ranges) + ".")
    else:
        notes.append("No assumption is given as a range: only the effect is uncertain in the simulation.")
    if likely["effect_retention_per_month"] < 1:
        notes.append(f"The effect keeps {likely['effect_retention_per_month']:.0%} of its size from one month "
                     "to the next.")
    if effect.lift_abs_se == 0:
        notes.append("Effect has zero standard error: its distribution collapses to the point estimate.")

    return {
        "status": "ok",
        "draws": draws,
        "seed": seed,
        "effect": effect_block,
        "lift_rel": _num(lift_rel) if lift_rel is not None else None,
        "horizon_months": h,
        "monthly_discount_rate": cashflow.monthly_discount_rate(likely["annual_discount_rate"]),
        "npv": _summary(npv),
        "prob_npv_positive": float((npv > 0).mean()),
        "expected_loss": float(np.maximum(0.0, -npv).mean()),
        "max_expected_loss": float(a.max_expected_loss),
        "break_even_lift_abs": _num(break_even) if break_even is not None else None,
        "break_even_lift_rel": rel(break_even),
        "payback": _payback(sim["payback_months"], one_off_total, saving["one_off"], h),
        "roi_pct": _roi_pct(npv, sim["pv_costs"], one_off_total, a, post),
        "incremental_profit_per_month": _summary_se(sim["incremental_profit_per_month"]),
        "incremental_inquiries_per_month": _summary_se(sim["incremental_inquiries_per_month"]),
        "costs": {
            "one_off": one_off_items,
            "monthly": monthly_items,
            "one_off_total": one_off_total,
            "monthly_total": monthly_total,
            "pv_costs": float(point["pv_costs"][0]),
            "pv_costs_expected": float(sim["pv_costs"].mean()),
            "savings": {"counted": hw, "one_off": saving["one_off"], "monthly": saving["monthly"]},
            "at": "likely values",
        },
        "point": {  # deterministic: the shrunk effect and every assumption at its likely value
            "npv": _num(point["npv"][0]),
            "incremental_profit_per_month": _num(point["incremental_profit_per_month"][0]),
        },
        "histogram": _histogram(npv),
        "sensitivity": tornado(a, post),
        "ranged_assumptions": list(ranges),
        "assumptions": a.model_dump(mode="json"),
        "notes": notes,
    }


def _summary_se(x: np.ndarray) -> dict:
    s = _summary(x)
    return {"expected": s["expected"], "se": s["sd"], "ci": s["ci"]}


def what_if(
    assumptions: RoiAssumptions,
    effect: EffectInput,
    *,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    prior: EffectPrior | None = None,
    **updates: object,
) -> dict:
    """``compute_roi`` with some assumptions edited (validated), e.g. ``what_if(a, e, pages=80)``."""
    return compute_roi(assumptions.with_updates(**updates), effect, draws=draws, seed=seed, prior=prior)
