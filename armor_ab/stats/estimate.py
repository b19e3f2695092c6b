"""Per-arm point estimates and their variances, with CUPED regression adjustment.

Every metric is a smooth function f of the per-visitor means of a few variables (a mean: f = m;
a ratio of sums: f = m_x / m_y). With S the sample covariance of the variables and g the gradient
of f at the arm's means, the delta method gives Var(f) = g' S g / n.

CUPED (Deng, Xu, Kohavi & Walker 2013, "Improving the sensitivity of online controlled experiments
by utilizing pre-experiment data") adjusts the post-exposure estimate with the same statistic over
the pre-exposure window:

    adjusted = f_post(arm) - theta * (f_pre(arm) - f_pre(pooled)),
    theta    = Cov(f_post, f_pre) / Var(f_pre),

theta pooled within arms over the two arms compared (so a treatment effect on the mean cannot leak
into it), and treated as a constant. Centring on the pooled pre-value keeps the adjusted means on
the metric's scale, so relative lifts stay meaningful. For a mean metric this is the textbook
theta = cov(y, x) / var(x) and Var = (var_y - 2 theta cov_xy + theta^2 var_x) / n, which is
(1 - rho^2) var_y / n at the optimum; for a ratio metric f_post and f_pre are ratios and the
covariances come from the delta method (the 4-variable form gbstats uses for ratio metrics).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from armor_ab.stats.status import Status
from armor_ab.stats.suffstats import CupedStats, MetricStats, RatioCupedStats, RatioStats, SampleStats


@dataclass(frozen=True)
class ArmEstimate:
    """One arm's estimate of a metric; every field finite (0 when undefined, with a status saying so)."""

    n: int
    mean: float  # the estimate used for inference (CUPED-adjusted when theta != 0)
    var: float  # variance of ``mean`` (already divided by n)
    raw_mean: float  # the unadjusted estimate, what a dashboard shows as "the mean"


@dataclass(frozen=True)
class PairEstimate:
    """Control and treatment estimated together (CUPED's theta is shared)."""

    control: ArmEstimate
    treatment: ArmEstimate
    status: Status  # OK, TOO_FEW_UNITS or ZERO_DENOMINATOR; the tests add the rest
    cuped: bool  # whether the adjustment was applied (asked for and possible)
    theta: float


def _post_pre(
    stats: MetricStats, mean: np.ndarray
) -> tuple[float | None, np.ndarray | None, float | None, np.ndarray | None]:
    """(f_post, grad_post, f_pre, grad_pre) at ``mean``; None where a denominator is 0."""
    k = len(mean)
    if isinstance(stats, SampleStats):
        return mean[0], np.array([1.0]), None, None
    if isinstance(stats, CupedStats):
        return mean[0], np.array([1.0, 0.0]), mean[1], np.array([0.0, 1.0])
    if isinstance(stats, RatioStats | RatioCupedStats):
        m, d = mean[0], mean[1]
        post = grad_post = pre = grad_pre = None
        if d != 0:
            post, grad_post = m / d, np.zeros(k)
            grad_post[0], grad_post[1] = 1.0 / d, -m / d**2
        if isinstance(stats, RatioCupedStats) and mean[3] != 0:
            pm, pd = mean[2], mean[3]
            pre, grad_pre = pm / pd, np.zeros(k)
            grad_pre[2], grad_pre[3] = 1.0 / pd, -pm / pd**2
        return post, grad_post, pre, grad_pre
    raise TypeError(f"not a metric statistics object: {type(stats).__name__}")


def _quad(g: np.ndarray, cov: np.ndarray, h: np.ndarray | None = None) -> float:
    return float(g @ cov @ (g if h is None else h))


def estimate_pair(control: MetricStats, treatment: MetricStats) -> PairEstimate:
    """Estimates for both arms; CUPED applies when both carry pre-period stats with pre-variance."""
    if type(control) is not type(treatment):
        raise TypeError(f"control and treatment stats differ: {type(control).__name__} vs {type(treatment).__name__}")
    wants_cuped = isinstance(control, CupedStats | RatioCupedStats)
    arms = [control.moments(), treatment.moments()]
    if min(n for n, _, _ in arms) < 2:
        empty = [ArmEstimate(n, 0.0, 0.0, 0.0) for n, _, _ in arms]
        return PairEstimate(empty[0], empty[1], Status.TOO_FEW_UNITS, False, 0.0)

    parts = [_post_pre(control, mean) for _, mean, _ in arms]
    if any(p[0] is None for p in parts):
        raw = [ArmEstimate(n, 0.0, 0.0, 0.0) for n, _, _ in arms]
        return PairEstimate(raw[0], raw[1], Status.ZERO_DENOMINATOR, False, 0.0)

    theta, pooled_pre = 0.0, 0.0
    if wants_cuped and all(p[2] is not None for p in parts):
        num = sum((n - 1) * _quad(p[1], cov, p[3]) for (n, _, cov), p in zip(arms, parts, strict=True))
        den = sum((n - 1) * _quad(p[3], cov) for (n, _, cov), p in zip(arms, parts, strict=True))
        total = arms[0][0] + arms[1][0]
        pooled_mean = (arms[0][0] * arms[0][1] + arms[1][0] * arms[1][1]) / total
        pooled = _post_pre(control, pooled_mean)[2]
        # A pre-period with no variance (no client sends pre-exposure events) carries no information.
        if den > 0 and pooled is not None and np.isfinite(num / den):
            theta, pooled_pre = num / den, pooled

    out = []
    for (n, _, cov), (post, g_post, pre, g_pre) in zip(arms, parts, strict=True):
        if theta != 0.0:
            g = g_post - theta * g_pre
            mean = post - theta * (pre - pooled_pre)
        else:
            g, mean = g_post, post
        out.append(ArmEstimate(n, float(mean), max(_quad(g, cov), 0.0) / n, float(post)))
    return PairEstimate(out[0], out[1], Status.OK, theta != 0.0, float(theta))
