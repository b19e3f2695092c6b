"""Sample size and duration for a planned power: for the test the verdict actually runs.

Fixed horizon (``sample_size``, statsmodels NormalIndPower):
Two-sided z-test of a difference in means, effect size d = mde * |baseline mean| / baseline sd
(``mde`` relative). NormalIndPower solves power(n) = target for the control arm's n with
n_treatment = ratio * n_control; in closed form (ignoring the far tail)
n_control = (z_{1-alpha/2} + z_{power})^2 (1 + 1/ratio) / d^2.

Sequential (``sequential_sample_size``): the verdict reads the always-valid interval, which at the
fixed-horizon n is about 3 standard errors wide instead of 1.96, so a fixed-horizon plan loses
about half of the real wins. The plan inverts the interval's width instead: with se(N) the
standard error of the relative lift after N visitors in the two arms compared and hw(N) the
half-width of the (1 - alpha) confidence sequence there (``armor_ab.stats.sequential``), it is the
smallest N with

    mde - hw(N) >= z_{power} se(N),

i.e. when the true lift is the MDE, the interval's lower bound is above 0 at N with probability
``power``. Looks before N can only add wins, so daily looks meet the power at least. hw(N) +
z se(N) decreases in N (see docs/statistics.md), so N is found by doubling then bisection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from statsmodels.stats.power import NormalIndPower

from armor_ab.stats.sequential import DEFAULT_TUNING, half_width
from armor_ab.stats.status import Status


@dataclass(frozen=True)
class PowerPlan:
    status: Status
    n_per_variant: int | None = None  # control arm (every arm when the split is equal)
    total_visitors: int | None = None  # all arms together
    days: float | None = None  # at the given traffic, when known
    effect_size: float | None = None
    method: str = "fixed"  # fixed | sequential: the test the plan is for

    def to_dict(self) -> dict:
        return {
            "status": self.status.value,
            "method": self.method,
            "n_per_variant": self.n_per_variant,
            "total_visitors": self.total_visitors,
            "days": self.days,
            "effect_size": self.effect_size,
        }


def _check(name: str, value: float, lo: float, hi: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and lo < value < hi):
        raise ValueError(f"{name} must be in ({lo}, {hi}), got {value!r}")


def sample_size(
    baseline_mean: float,
    baseline_sd: float,
    mde: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    variants: int = 2,
    visitors_per_day: float | None = None,
    control_share: float | None = None,
    ratio: float = 1.0,
) -> PowerPlan:
    """Visitors needed per variant, in total, and days at ``visitors_per_day`` (all variants together).

    ``control_share`` is the control's share of traffic (default: an equal split over ``variants``)
    and ``ratio`` the treatment/control size ratio; the total is what it takes for the control arm
    to reach its n.
    """
    _check("mde", mde, 0.0, math.inf)
    _check("alpha", alpha, 0.0, 1.0)
    _check("power", power, 0.0, 1.0)
    _check("ratio", ratio, 0.0, math.inf)
    if not (isinstance(variants, int) and variants >= 2):
        raise ValueError(f"variants must be an integer >= 2, got {variants!r}")
    if visitors_per_day is not None:
        _check("visitors_per_day", visitors_per_day, 0.0, math.inf)
    share = 1.0 / variants if control_share is None else control_share
    _check("control_share", share, 0.0, 1.0 + 1e-12)
    if not (math.isfinite(baseline_mean) and math.isfinite(baseline_sd) and baseline_sd >= 0):
        raise ValueError(f"baseline mean and sd must be finite, sd >= 0; got {baseline_mean!r}, {baseline_sd!r}")
    if baseline_mean == 0:
        return PowerPlan(Status.ZERO_BASELINE)
    if baseline_sd == 0:
        return PowerPlan(Status.ZERO_VARIANCE)
    effect = mde * abs(baseline_mean) / baseline_sd
    n = NormalIndPower().solve_power(effect_size=effect, nobs1=None, alpha=alpha, power=power, ratio=ratio)
    n_control = int(math.ceil(float(n)))
    total = int(math.ceil(n_control / share))
    days = total / visitors_per_day if visitors_per_day else None
    return PowerPlan(Status.OK, n_control, total, days, effect)


def sequential_sample_size(
    baseline_mean: float,
    baseline_sd: float,
    mde: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    tuning: float = DEFAULT_TUNING,
    control_share: float = 0.5,
    treatment_share: float = 0.5,
    visitors_per_day: float | None = None,
) -> PowerPlan:
    """Visitors needed for the always-valid interval to exclude 0 at the MDE with ``power``.

    Shares are of all traffic; the total is what it takes for the two compared arms to reach N.
    """
    _check("mde", mde, 0.0, math.inf)
    _check("alpha", alpha, 0.0, 1.0)
    _check("power", power, 0.0, 1.0)
    _check("control_share", control_share, 0.0, 1.0 + 1e-12)
    _check("treatment_share", treatment_share, 0.0, 1.0 + 1e-12)
    if visitors_per_day is not None:
        _check("visitors_per_day", visitors_per_day, 0.0, math.inf)
    if not (math.isfinite(baseline_mean) and math.isfinite(baseline_sd) and baseline_sd >= 0):
        raise ValueError(f"baseline mean and sd must be finite, sd >= 0; got {baseline_mean!r}, {baseline_sd!r}")
    if baseline_mean == 0:
        return PowerPlan(Status.ZERO_BASELINE, method="sequential")
    if baseline_sd == 0:
        return PowerPlan(Status.ZERO_VARIANCE, method="sequential")
    cv = baseline_sd / abs(baseline_mean)
    pair = control_share + treatment_share
    fc, ft = control_share / pair, treatment_share / pair
    z = NormalDist().inv_cdf(power)

    def short(n: float) -> bool:  # True while N visitors are not yet enough
        se = cv * math.sqrt(1.0 / (ft * n) + (1.0 + mde) ** 2 / (fc * n))
        return mde - half_width(se * se, n, alpha, tuning) < z * se

    lo, hi = 4.0, 8.0
    while short(hi):
        lo, hi = hi, hi * 2.0
        if hi > 1e13:
            return PowerPlan(Status.OK, None, None, None, mde / cv, method="sequential")
    while hi - lo > 1.0:
        mid = math.floor((lo + hi) / 2.0)
        lo, hi = (mid, hi) if short(mid) else (lo, mid)
    n_pair = hi
    n_control = int(math.ceil(n_pair * fc))
    total = int(math.ceil(n_pair / pair))
    days = total / visitors_per_day if visitors_per_day else None
    return PowerPlan(Status.OK, n_control, total, days, mde / cv, method="sequential")


def alphas(mode: str, alpha: float, treatments: int, sequential_share: float) -> tuple[float, float]:
    """(alpha of the always-valid looks, alpha of the fixed-horizon test) per treatment arm.

    Several treatment arms split alpha over the arms (Bonferroni), so "some arm won" stays at alpha.
    ``hybrid`` splits each arm's alpha between the looks before the horizon and the one test at it.
    """
    if mode not in ("sequential", "fixed", "hybrid"):
        raise ValueError(f"mode must be sequential, fixed or hybrid, got {mode!r}")
    per_arm = alpha / max(1, treatments)
    if mode == "hybrid":
        return per_arm * sequential_share, per_arm * (1.0 - sequential_share)
    return per_arm, per_arm


def plan_for_mode(
    mode: str,
    baseline_mean: float,
    baseline_sd: float,
    mde: float,
    *,
    alpha_sequential: float,
    alpha_fixed: float,
    power: float = 0.8,
    tuning: float = DEFAULT_TUNING,
    control_share: float = 0.5,
    treatment_share: float = 0.5,
    visitors_per_day: float | None = None,
) -> PowerPlan:
    """The plan of the test the verdict runs: the always-valid interval's (``sequential``), or the
    fixed-horizon test's at the horizon (``fixed`` and ``hybrid``)."""
    if mode == "sequential":
        return sequential_sample_size(
            baseline_mean, baseline_sd, mde, alpha=alpha_sequential, power=power, tuning=tuning,
            control_share=control_share, treatment_share=treatment_share, visitors_per_day=visitors_per_day,
        )
    if mode not in ("fixed", "hybrid"):
        raise ValueError(f"mode must be sequential, fixed or hybrid, got {mode!r}")
    plan = sample_size(
        baseline_mean, baseline_sd, mde, alpha=alpha_fixed, power=power, control_share=control_share,
        ratio=treatment_share / control_share, visitors_per_day=visitors_per_day,
    )
    return PowerPlan(plan.status, plan.n_per_variant, plan.total_visitors, plan.days, plan.effect_size, method="fixed")
