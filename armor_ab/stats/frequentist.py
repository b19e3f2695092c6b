"""Fixed-horizon tests: Welch's t-test on the difference, delta-method relative lift, non-inferiority.

Absolute lift (treatment - control) d = m_t - m_c with se = sqrt(V_t + V_c), where V is the
variance of each arm's estimate (var / n for a mean). Welch-Satterthwaite degrees of freedom
df = (V_t + V_c)^2 / (V_t^2 / (n_t - 1) + V_c^2 / (n_c - 1)); two-sided p = 2 P(T_df > |d| / se);
CI d +/- t_{df, 1-alpha/2} se. For a plain mean this is exactly scipy.stats.ttest_ind(equal_var=False).
A proportion (inquiry_rate) is the mean of a 0/1 variable and takes the same path.

Relative lift r = m_t / m_c - 1 by the delta method (arms independent):
Var(r) = V_t / m_c^2 + m_t^2 V_c / m_c^4, CI r +/- t_{df, 1-alpha/2} sqrt(Var(r)) (gbstats uses the
same Welch df for its relative intervals).

The t quantiles come from scipy.special (stdtr / stdtrit): the same functions scipy.stats.t uses,
without its per-call overhead, which matters in the simulations and the daily time series.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special

from armor_ab.stats.estimate import PairEstimate
from armor_ab.stats.status import Status


@dataclass(frozen=True)
class FixedResult:
    """Fixed-horizon comparison of treatment against control; None wherever the status says undefined."""

    status: Status
    lift_abs: float | None = None
    se_abs: float | None = None
    ci_abs: tuple[float, float] | None = None
    p_value: float | None = None
    df: float | None = None
    lift_rel: float | None = None
    se_rel: float | None = None
    ci_rel: tuple[float, float] | None = None


def welch_df(var_c: float, n_c: int, var_t: float, n_t: int) -> float:
    """Welch-Satterthwaite degrees of freedom from the variances of the two estimates."""
    den = var_c**2 / (n_c - 1) + var_t**2 / (n_t - 1)
    return (var_c + var_t) ** 2 / den


def t_two_sided_p(t: float, df: float) -> float:
    return float(min(1.0, 2.0 * special.stdtr(df, -abs(t))))


def t_quantile(q: float, df: float) -> float:
    return float(special.stdtrit(df, q))


def check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, int | float) and 0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def relative_lift(pair: PairEstimate) -> tuple[float, float] | None:
    """(r, se(r)) by the delta method, or None when the control mean is 0."""
    c, t = pair.control, pair.treatment
    if c.mean == 0.0:
        return None
    lift = t.mean / c.mean - 1.0
    var = t.var / c.mean**2 + t.mean**2 * c.var / c.mean**4
    return lift, math.sqrt(var)


def welch(pair: PairEstimate, alpha: float = 0.05) -> FixedResult:
    """Two-sided Welch test and (1 - alpha) intervals, absolute and relative."""
    check_alpha(alpha)
    if pair.status is not Status.OK:
        return FixedResult(pair.status)
    c, t = pair.control, pair.treatment
    var = c.var + t.var
    if var <= 0.0:
        return FixedResult(Status.ZERO_VARIANCE, lift_abs=t.mean - c.mean)
    se = math.sqrt(var)
    df = welch_df(c.var, c.n, t.var, t.n)
    lift = t.mean - c.mean
    crit = t_quantile(1.0 - alpha / 2.0, df)
    p = t_two_sided_p(lift / se, df)
    rel = relative_lift(pair)
    if rel is None:
        return FixedResult(Status.ZERO_BASELINE, lift, se, (lift - crit * se, lift + crit * se), p, df)
    r, se_r = rel
    return FixedResult(
        Status.OK, lift, se, (lift - crit * se, lift + crit * se), p, df, r, se_r, (r - crit * se_r, r + crit * se_r)
    )


@dataclass(frozen=True)
class NonInferiority:
    """One-sided test of H0: relative lift <= -margin against H1: relative lift > -margin."""

    status: Status
    margin: float
    p_value: float | None
    passed: bool

    def to_dict(self) -> dict:
        return {"margin": self.margin, "p_value": self.p_value, "passed": self.passed, "status": self.status.value}


def non_inferiority(fixed: FixedResult, margin: float, alpha: float = 0.05) -> NonInferiority:
    """Passed when the data reject "worse by more than ``margin`` (relative)" at level alpha.

    t = (r + margin) / se(r), p = P(T_df > t), with the Welch df of the two-sided test.
    """
    check_alpha(alpha)
    if not (isinstance(margin, int | float) and 0.0 <= margin < 1.0):
        raise ValueError(f"margin must be in [0, 1), got {margin!r}")
    if fixed.status is not Status.OK or fixed.lift_rel is None or fixed.se_rel is None or fixed.df is None:
        return NonInferiority(fixed.status, margin, None, False)
    if fixed.se_rel == 0.0:  # a zero-variance ratio cannot happen with status OK, but never divide by 0
        return NonInferiority(Status.ZERO_VARIANCE, margin, None, False)
    t = (fixed.lift_rel + margin) / fixed.se_rel
    p = float(special.stdtr(fixed.df, -t))
    return NonInferiority(Status.OK, margin, p, p < alpha)
