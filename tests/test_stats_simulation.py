"""Seeded simulations: error rates and coverage of the tests as implemented.

Data are simulated at the sufficient-statistics level with numpy (sums, sums of squares per arm,
per day where it matters); the statistics under test are the production functions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from armor_ab.stats.estimate import estimate_pair
from armor_ab.stats.frequentist import welch
from armor_ab.stats.sequential import sequential
from armor_ab.stats.suffstats import CupedStats, RatioStats, SampleStats

ALPHA = 0.05


def _binomial_99(n: int, p: float) -> tuple[float, float]:
    lo, hi = stats.binom.interval(0.99, n, p)
    return lo, hi


def _sample_stats(x: np.ndarray) -> list[SampleStats]:
    """One SampleStats per row of x (experiments x units)."""
    return [SampleStats(x.shape[1], float(s), float(q)) for s, q in zip(x.sum(1), (x * x).sum(1), strict=True)]


def _ratio_stats(num: np.ndarray, den: np.ndarray) -> list[RatioStats]:
    sums = [num.sum(1), (num * num).sum(1), den.sum(1), (den * den).sum(1), (num * den).sum(1)]
    return [RatioStats(num.shape[1], *(float(s[i]) for s in sums)) for i in range(num.shape[0])]


def _arms(kind: str, rng: np.random.Generator, sims: int, n: int) -> list:
    if kind == "mean":  # dwell per visitor: skewed
        return _sample_stats(rng.exponential(30_000, size=(sims, n)))
    if kind == "proportion":  # inquiry rate
        return _sample_stats((rng.random((sims, n)) < 0.1).astype(float))
    views = rng.poisson(3, size=(sims, n)).astype(float)  # dwell per view: a sum of per-view times
    dwell = np.where(views > 0, rng.gamma(np.maximum(views, 1), 30_000), 0.0)
    return _ratio_stats(dwell, views)


@pytest.mark.parametrize("kind", ["mean", "proportion", "ratio"])
def test_aa_false_positive_rate(kind: str) -> None:
    sims, n = 2000, 400
    rng = np.random.default_rng({"mean": 11, "proportion": 12, "ratio": 13}[kind])
    control, treatment = _arms(kind, rng, sims, n), _arms(kind, rng, sims, n)
    rejections = sum(welch(estimate_pair(c, t), ALPHA).p_value < ALPHA for c, t in zip(control, treatment, strict=True))
    lo, hi = _binomial_99(sims, ALPHA)
    assert lo <= rejections <= hi, f"{kind}: {rejections} / {sims} false positives"


def test_fixed_horizon_ci_coverage() -> None:
    sims, n = 4000, 400
    rng = np.random.default_rng(21)
    mu_c, mu_t = 30_000.0, 33_000.0
    control = _sample_stats(rng.exponential(mu_c, size=(sims, n)))
    treatment = _sample_stats(rng.exponential(mu_t, size=(sims, n)))
    covered_abs = covered_rel = 0
    for c, t in zip(control, treatment, strict=True):
        r = welch(estimate_pair(c, t), ALPHA)
        covered_abs += r.ci_abs[0] <= mu_t - mu_c <= r.ci_abs[1]
        covered_rel += r.ci_rel[0] <= mu_t / mu_c - 1 <= r.ci_rel[1]
    assert covered_abs / sims == pytest.approx(0.95, abs=0.015)
    assert covered_rel / sims == pytest.approx(0.95, abs=0.015)


def test_daily_peeking_sequential_keeps_alpha_fixed_horizon_does_not() -> None:
    """30 days, checked every day, no true effect: stop at the first p < alpha."""
    sims, days, per_day, sigma = 2000, 30, 100, 1.0
    rng = np.random.default_rng(31)

    def daily_cumulative():
        # Exact sufficient statistics of per_day normal draws: the sum is normal, the within-day
        # sum of squares is sigma^2 chi2(per_day - 1) and independent of it.
        s = rng.normal(0.0, sigma * math.sqrt(per_day), size=(sims, days))
        within = sigma**2 * rng.chisquare(per_day - 1, size=(sims, days))
        return np.cumsum(s, 1), np.cumsum(within + s * s / per_day, 1)

    (sc, qc), (st, qt) = daily_cumulative(), daily_cumulative()
    fixed_hits = seq_hits = 0
    for i in range(sims):
        fixed_stop = seq_stop = False
        for d in range(days):
            n = per_day * (d + 1)
            fixed = welch(estimate_pair(SampleStats(n, sc[i, d], qc[i, d]), SampleStats(n, st[i, d], qt[i, d])), ALPHA)
            fixed_stop = fixed_stop or fixed.p_value < ALPHA
            seq_stop = seq_stop or sequential(fixed, 2 * n, ALPHA).p_value < ALPHA
            if fixed_stop and seq_stop:
                break
        fixed_hits += fixed_stop
        seq_hits += seq_stop
    _, hi = _binomial_99(sims, ALPHA)
    assert seq_hits / sims <= ALPHA, f"sequential: {seq_hits} / {sims}"
    assert fixed_hits > hi, f"fixed horizon peeked daily: {fixed_hits} / {sims}"


def test_cuped_cuts_variance_by_rho_squared() -> None:
    sims, n, rho, effect = 1000, 500, 0.6, 0.1
    rng = np.random.default_rng(41)

    def arm(shift: float) -> list[CupedStats]:
        x = rng.normal(size=(sims, n))
        y = shift + rho * x + math.sqrt(1 - rho**2) * rng.normal(size=(sims, n))
        sums = [y.sum(1), (y * y).sum(1), x.sum(1), (x * x).sum(1), (x * y).sum(1)]
        return [CupedStats(n, *(float(s[i]) for s in sums)) for i in range(sims)]

    control, treatment = arm(0.0), arm(effect)
    adjusted, raw, covered = [], [], 0
    for c, t in zip(control, treatment, strict=True):
        a = welch(estimate_pair(c, t), ALPHA)
        plain = welch(estimate_pair(SampleStats(c.n, c.sum_y, c.sum_y2), SampleStats(t.n, t.sum_y, t.sum_y2)), ALPHA)
        adjusted.append(a.lift_abs)
        raw.append(plain.lift_abs)
        covered += a.ci_abs[0] <= effect <= a.ci_abs[1]
    adjusted, raw = np.array(adjusted), np.array(raw)
    # Var(adjusted) / Var(raw) = 1 - rho^2 = 0.64; with 1000 draws each variance is good to ~5%.
    assert adjusted.var() / raw.var() == pytest.approx(1 - rho**2, abs=0.08)
    # Unbiased, and its intervals (with the smaller variance) still cover.
    assert adjusted.mean() == pytest.approx(effect, abs=3 * adjusted.std() / math.sqrt(sims))
    assert covered / sims == pytest.approx(0.95, abs=0.02)
