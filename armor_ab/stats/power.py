"""Sample size and duration for a planned power (statsmodels NormalIndPower).

Two-sided z-test of a difference in means, effect size d = mde * |baseline mean| / baseline sd
(``mde`` relative). NormalIndPower solves power(n) = target for the control arm's n with
n_treatment = ratio * n_control; in closed form (ignoring the far tail)
n_control = (z_{1-alpha/2} + z_{power})^2 (1 + 1/ratio) / d^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from statsmodels.stats.power import NormalIndPower

from armor_ab.stats.status import Status


@dataclass(frozen=True)
class PowerPlan:
    status: Status
    n_per_variant: int | None = None  # control arm (every arm when the split is equal)
    total_visitors: int | None = None  # all arms together
    days: float | None = None  # at the given traffic, when known
    effect_size: float | None = None

    def to_dict(self) -> dict:
        return {
            "status": self.status.value,
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
