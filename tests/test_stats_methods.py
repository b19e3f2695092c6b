"""Every statistical method against an independent reference on the same inputs.

scipy / statsmodels where they implement the same test (to 1e-9 relative error), otherwise the
published formula computed step by step with ``math`` on tiny numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportions_ztest

from armor_ab.stats.bayesian import Prior, bayesian, posterior
from armor_ab.stats.estimate import estimate_pair
from armor_ab.stats.frequentist import FixedResult, non_inferiority, welch
from armor_ab.stats.multiple import adjust
from armor_ab.stats.power import sample_size
from armor_ab.stats.sequential import half_width, p_value, rho, sequential
from armor_ab.stats.srm import sequential_srm
from armor_ab.stats.status import Status
from armor_ab.stats.suffstats import CupedStats, RatioCupedStats, RatioStats, SampleStats

REL = 1e-9


def sample(x) -> SampleStats:
    x = np.asarray(x, dtype=float)
    return SampleStats(len(x), float(x.sum()), float((x * x).sum()))


def ratio(x, y) -> RatioStats:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return RatioStats(len(x), x.sum(), (x * x).sum(), y.sum(), (y * y).sum(), (x * y).sum())


def cuped(y, x) -> CupedStats:
    y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    return CupedStats(len(y), y.sum(), (y * y).sum(), x.sum(), (x * x).sum(), (x * y).sum())


def ratio_cuped(m, d, pm, pd) -> RatioCupedStats:
    m, d, pm, pd = (np.asarray(v, dtype=float) for v in (m, d, pm, pd))
    s = lambda a, b: float((a * b).sum())  # noqa: E731
    return RatioCupedStats(
        len(m), m.sum(), s(m, m), d.sum(), s(d, d), s(m, d),
        pm.sum(), s(pm, pm), pd.sum(), s(pd, pd), s(pm, pd),
        s(m, pm), s(m, pd), s(d, pm), s(d, pd),
    )


# ---- fixed horizon -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_welch_matches_scipy(seed: int, alpha: float) -> None:
    rng = np.random.default_rng(seed)
    a = rng.exponential(30_000, size=37 + seed)  # dwell-like values, unequal sizes and variances
    b = rng.exponential(36_000, size=53)
    got = welch(estimate_pair(sample(a), sample(b)), alpha)
    ref = stats.ttest_ind(b, a, equal_var=False)
    lo, hi = ref.confidence_interval(1 - alpha)
    assert got.status is Status.OK
    assert got.p_value == pytest.approx(ref.pvalue, rel=REL)
    assert got.df == pytest.approx(ref.df, rel=REL)
    assert got.lift_abs / got.se_abs == pytest.approx(ref.statistic, rel=REL)
    assert got.ci_abs[0] == pytest.approx(lo, rel=REL)
    assert got.ci_abs[1] == pytest.approx(hi, rel=REL)


def test_proportions_take_the_mean_path() -> None:
    rng = np.random.default_rng(4)
    a = (rng.random(5000) < 0.10).astype(float)
    b = (rng.random(5200) < 0.12).astype(float)
    got = welch(estimate_pair(sample(a), sample(b)))
    ref = stats.ttest_ind(b, a, equal_var=False)
    assert got.p_value == pytest.approx(ref.pvalue, rel=REL)
    assert list(got.ci_abs) == pytest.approx(list(ref.confidence_interval(0.95)), rel=REL)
    # The 0/1 variance is p(1 - p) n / (n - 1): the unpooled two-proportion z-test up to n/(n-1).
    pa, pb = a.mean(), b.mean()
    se = math.sqrt(pa * (1 - pa) / (len(a) - 1) + pb * (1 - pb) / (len(b) - 1))
    assert got.se_abs == pytest.approx(se, rel=REL)
    # And at this size it agrees with statsmodels' pooled z-test to three digits.
    _, p_pooled = proportions_ztest([b.sum(), a.sum()], [len(b), len(a)])
    assert got.p_value == pytest.approx(p_pooled, rel=2e-2)


def test_relative_lift_delta_method_by_hand() -> None:
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 5.0, 6.0, 9.0]
    got = welch(estimate_pair(sample(a), sample(b)), 0.05)
    # Step by step from the formulas.
    ma, mb = 10 / 4, 25 / 5
    va = sum((x - ma) ** 2 for x in a) / 3 / 4  # variance of the mean
    vb = sum((x - mb) ** 2 for x in b) / 4 / 5
    lift = mb / ma - 1
    var = vb / ma**2 + mb**2 * va / ma**4
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 4)
    crit = stats.t.ppf(0.975, df)
    assert got.lift_rel == pytest.approx(lift, rel=1e-12) == 1.0
    assert got.se_rel == pytest.approx(math.sqrt(var), rel=1e-12)
    assert list(got.ci_rel) == pytest.approx([lift - crit * math.sqrt(var), lift + crit * math.sqrt(var)], rel=1e-12)


def test_ratio_metric_delta_method() -> None:
    # Tiny numbers by hand: dwell (x) over views (y), one row per visitor.
    x, y = [10.0, 0.0, 30.0, 20.0], [1.0, 0.0, 2.0, 2.0]
    n, sx, sy = 4, 60.0, 5.0
    r = sx / sy
    mx, my = sx / n, sy / n
    cxx = sum((v - mx) ** 2 for v in x) / 3
    cyy = sum((v - my) ** 2 for v in y) / 3
    cxy = sum((u - mx) * (v - my) for u, v in zip(x, y, strict=True)) / 3
    var = (cxx / my**2 - 2 * mx * cxy / my**3 + mx**2 * cyy / my**4) / n
    pair = estimate_pair(ratio(x, y), ratio(x, y))
    assert pair.control.mean == pytest.approx(r, rel=1e-12)
    assert pair.control.var == pytest.approx(var, rel=1e-12)
    # Independently: the variance of the linearised values (x - r y) / mean(y).
    rng = np.random.default_rng(5)
    xs, ys = rng.exponential(20, 400) * 3, rng.poisson(3, 400).astype(float)
    lin = (xs - xs.sum() / ys.sum() * ys) / ys.mean()
    est = estimate_pair(ratio(xs, ys), ratio(xs, ys)).control
    assert est.var == pytest.approx(lin.var(ddof=1) / len(xs), rel=REL)


def test_cuped_matches_a_numpy_regression_adjustment() -> None:
    rng = np.random.default_rng(6)
    n_a, n_b = 300, 340
    xa, xb = rng.normal(10, 3, n_a), rng.normal(10, 3, n_b)
    ya = 2 + 0.8 * xa + rng.normal(0, 2, n_a)
    yb = 2.5 + 0.8 * xb + rng.normal(0, 2, n_b)
    pair = estimate_pair(cuped(ya, xa), cuped(yb, xb))
    # theta pooled within arms, then Var = var(y - theta x) / n per arm.
    cov = lambda u, v: ((u - u.mean()) * (v - v.mean())).sum()  # noqa: E731
    theta = (cov(ya, xa) + cov(yb, xb)) / (cov(xa, xa) + cov(xb, xb))
    xbar = np.concatenate([xa, xb]).mean()
    assert pair.cuped and pair.theta == pytest.approx(theta, rel=REL)
    assert pair.control.mean == pytest.approx(ya.mean() - theta * (xa.mean() - xbar), rel=REL)
    assert pair.treatment.var == pytest.approx((yb - theta * xb).var(ddof=1) / n_b, rel=REL)
    assert pair.control.raw_mean == pytest.approx(ya.mean(), rel=REL)
    # Welch on the adjusted arms: the lift is the covariate-adjusted difference.
    fixed = welch(pair)
    assert fixed.lift_abs == pytest.approx((yb.mean() - ya.mean()) - theta * (xb.mean() - xa.mean()), rel=REL)


def test_cuped_variance_reduction_is_about_rho_squared() -> None:
    rng = np.random.default_rng(7)
    rho_true, n = 0.7, 20_000
    arms = []
    for _ in range(2):
        x = rng.normal(size=n)
        y = rho_true * x + math.sqrt(1 - rho_true**2) * rng.normal(size=n)
        arms.append((y, x))
    adjusted = estimate_pair(cuped(*arms[0]), cuped(*arms[1]))
    raw = estimate_pair(sample(arms[0][0]), sample(arms[1][0]))
    ratio_ = adjusted.control.var / raw.control.var
    assert ratio_ == pytest.approx(1 - rho_true**2, abs=0.02)


def test_ratio_cuped_matches_linearised_regression() -> None:
    rng = np.random.default_rng(8)
    arms = []
    for lift in (1.0, 1.1):
        views = rng.poisson(4, 500).astype(float) + 1
        pre_views = rng.poisson(4, 500).astype(float)
        taste = rng.normal(1, 0.3, 500)
        pre_dwell = pre_views * 1000 * taste * rng.lognormal(0, 0.2, 500)
        dwell = views * 1000 * lift * taste * rng.lognormal(0, 0.2, 500)
        arms.append((dwell, views, pre_dwell, pre_views))
    pair = estimate_pair(ratio_cuped(*arms[0]), ratio_cuped(*arms[1]))
    lin, lin_pre, r_post, r_pre = [], [], [], []
    for m, d, pm, pd in arms:
        r, rp = m.sum() / d.sum(), pm.sum() / pd.sum()
        lin.append((m - r * d) / d.mean())
        lin_pre.append((pm - rp * pd) / pd.mean())
        r_post.append(r)
        r_pre.append(rp)
    theta = sum(((u - u.mean()) * (v - v.mean())).sum() for u, v in zip(lin, lin_pre, strict=True)) / sum(
        ((v - v.mean()) ** 2).sum() for v in lin_pre
    )
    pooled_pre = (arms[0][2].sum() + arms[1][2].sum()) / (arms[0][3].sum() + arms[1][3].sum())
    assert pair.cuped and pair.theta == pytest.approx(theta, rel=REL)
    for k, arm in enumerate((pair.control, pair.treatment)):
        assert arm.mean == pytest.approx(r_post[k] - theta * (r_pre[k] - pooled_pre), rel=REL)
        assert arm.var == pytest.approx((lin[k] - theta * lin_pre[k]).var(ddof=1) / 500, rel=REL)
    # The pre-period explains part of the ratio's noise here: the adjusted variance is smaller.
    plain = estimate_pair(ratio(*arms[0][:2]), ratio(*arms[1][:2]))
    assert pair.control.var < plain.control.var


def test_cuped_without_pre_period_data_falls_back() -> None:
    y = [1.0, 2.0, 3.0, 5.0]
    pair = estimate_pair(cuped(y, [0.0] * 4), cuped(y[::-1], [0.0] * 4))
    assert not pair.cuped and pair.theta == 0.0
    assert pair.control.var == pytest.approx(np.var(y, ddof=1) / 4, rel=1e-12)


# ---- sequential --------------------------------------------------------------------------------------


def test_sequential_interval_by_hand() -> None:
    # N = 200 units, estimate 0.3 with variance 0.01, alpha 0.05, tuning 100.
    n_total, est, var, alpha, tuning = 200, 0.3, 0.01, 0.05, 100.0
    la = -2 * math.log(alpha)  # 5.991464547107979
    rho2 = (la + math.log(la + 1)) / tuning
    sigma2 = var * n_total
    hw = math.sqrt(sigma2) * math.sqrt(2 * (n_total * rho2 + 1) / (n_total**2 * rho2) * math.log(math.sqrt(n_total * rho2 + 1) / alpha))
    p = min(1.0, math.sqrt(n_total * rho2 + 1) * math.exp(-(est**2) * n_total**2 * rho2 / (2 * sigma2 * (n_total * rho2 + 1))))
    assert rho(alpha, tuning) == pytest.approx(math.sqrt(rho2), rel=1e-12)
    assert half_width(var, n_total, alpha, tuning) == pytest.approx(hw, rel=1e-12)
    assert p_value(est, var, n_total, alpha, tuning) == pytest.approx(p, rel=1e-12)
    fixed = FixedResult(Status.OK, est, math.sqrt(var), None, 0.01, 100.0, 0.5, 0.2, None)
    seq = sequential(fixed, n_total, alpha, tuning)
    assert list(seq.ci_abs) == pytest.approx([est - hw, est + hw], rel=1e-12)
    hw_rel = half_width(0.04, n_total, alpha, tuning)
    assert list(seq.ci_rel) == pytest.approx([0.5 - hw_rel, 0.5 + hw_rel], rel=1e-12)
    # Wider than the fixed-horizon interval, which it must be to survive peeking.
    assert hw > stats.norm.ppf(0.975) * math.sqrt(var)


@pytest.mark.parametrize("est", [0.0, 0.05, 0.19, 0.2, 0.25, 0.4])
def test_sequential_p_value_inverts_the_interval(est: float) -> None:
    var, n_total, alpha = 0.002, 3000, 0.05
    hw = half_width(var, n_total, alpha)
    p = p_value(est, var, n_total, alpha)
    assert (p < alpha) == (abs(est) > hw)
    if 0 < p < 1:  # at |est| = hw exactly the p-value is alpha
        assert p_value(hw, var, n_total, alpha) == pytest.approx(alpha, rel=1e-12)


# ---- Bayesian ----------------------------------------------------------------------------------------


def _fixed(lift: float, se: float) -> FixedResult:
    return FixedResult(Status.OK, 1.0, 1.0, (0.0, 2.0), 0.5, 50.0, lift, se, (lift - 2 * se, lift + 2 * se))


def test_bayesian_flat_prior_by_hand() -> None:
    lift, se = 0.04, 0.03
    got = bayesian(_fixed(lift, se), Prior(proper=False), 0.05)
    z = lift / se
    phi = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    assert got.chance_to_win == pytest.approx(cdf, rel=1e-12)
    assert got.expected_loss == pytest.approx(se * phi - lift * (1 - cdf), rel=1e-10)
    assert got.risk_control == pytest.approx(se * phi + lift * cdf, rel=1e-10)
    q = stats.norm.ppf(0.975)
    assert list(got.ci_rel) == pytest.approx([lift - q * se, lift + q * se], rel=1e-12)
    # The loss formula is the integral E[max(0, -r)] under the posterior.
    loss, _ = integrate.quad(lambda r: -r * stats.norm.pdf(r, lift, se), -1, 0, epsabs=1e-14)
    assert got.expected_loss == pytest.approx(loss, rel=1e-7)


def test_bayesian_proper_prior_by_hand() -> None:
    lift, se, mu0, tau = 0.10, 0.05, 0.0, 0.1
    precision = 1 / se**2 + 1 / tau**2  # 400 + 100
    mean = (lift / se**2 + mu0 / tau**2) / precision  # 40 / 500 = 0.08
    sd = math.sqrt(1 / precision)
    assert posterior(lift, se, Prior(mu0, tau, True)) == pytest.approx((0.08, sd), rel=1e-12)
    got = bayesian(_fixed(lift, se), Prior(mu0, tau, True))
    assert got.mean == pytest.approx(mean, rel=1e-12)
    assert got.chance_to_win == pytest.approx(stats.norm.cdf(mean / sd), rel=1e-12)
    # Shrinkage: the posterior sits between the prior mean and the data.
    assert mu0 < got.mean < lift


# ---- SRM, multiple testing, guardrails, power ---------------------------------------------------------


def test_srm_chi_square_reference_and_sequential_flags() -> None:
    ok = sequential_srm({"a": 5040, "b": 4960}, {"a": 0.5, "b": 0.5}).to_dict()
    ref = stats.chisquare([5040, 4960], [5000, 5000])
    assert ok["chi_square_p_value"] == pytest.approx(ref.pvalue, rel=REL) and not ok["flag"]
    bad = sequential_srm({"a": 5000, "b": 5700}, {"a": 0.5, "b": 0.5}).to_dict()
    assert bad["p_value"] < 0.001 and bad["flag"]
    uneven = sequential_srm({"a": 2000, "b": 3000, "c": 5050}, {"a": 0.2, "b": 0.3, "c": 0.5}).to_dict()
    ref = stats.chisquare([2000, 3000, 5050], [2010, 3015, 5025])
    assert uneven["chi_square_p_value"] == pytest.approx(ref.pvalue, rel=REL)
    assert uneven["expected"] == {"a": 2010.0, "b": 3015.0, "c": 5025.0}
    stray = sequential_srm({"a": 10, "b": 10, "ghost": 3}, {"a": 0.5, "b": 0.5}).to_dict()
    assert not stray["flag"] and stray["observed"] == {"a": 10, "b": 10}
    empty = sequential_srm({}, {"a": 0.5, "b": 0.5}).to_dict()
    assert empty["p_value"] == 1.0 and not empty["flag"]
    with pytest.raises(ValueError):
        sequential_srm({"a": 1}, {"a": -1.0})


@pytest.mark.parametrize("method", ["holm", "fdr_bh"])
def test_multiple_testing_matches_statsmodels(method: str) -> None:
    rng = np.random.default_rng(9)
    p = list(rng.uniform(0, 0.2, 12))
    ref = multipletests(p, method=method)[1]
    got = adjust([*p[:5], None, *p[5:]], method)
    assert got[5] is None
    assert [g for g in got if g is not None] == pytest.approx(list(ref), rel=REL)


def test_multiple_testing_by_hand() -> None:
    p = [0.01, 0.04, 0.03]
    # Holm: sorted 0.01 x 3, 0.03 x 2, 0.04 x 1, made monotone.
    assert adjust(p, "holm") == pytest.approx([0.03, 0.06, 0.06])
    # Benjamini-Hochberg: 0.01 x 3/1, 0.03 x 3/2, 0.04 x 3/3, monotone from the top.
    assert adjust(p, "fdr_bh") == pytest.approx([0.03, 0.04, 0.04])
    assert adjust(p, "none") == p
    assert adjust([None, None], "holm") == [None, None]
    with pytest.raises(ValueError):
        adjust(p, "bonferroni")


def test_non_inferiority_by_hand() -> None:
    fixed = _fixed(-0.01, 0.008)  # df 50
    got = non_inferiority(fixed, 0.05, 0.05)
    t = (-0.01 + 0.05) / 0.008  # 5
    assert got.p_value == pytest.approx(stats.t.sf(t, 50), rel=1e-10)
    assert got.passed
    worse = non_inferiority(_fixed(-0.06, 0.008), 0.05, 0.05)
    assert not worse.passed and worse.p_value > 0.5
    unusable = non_inferiority(FixedResult(Status.ZERO_BASELINE, 1.0), 0.05)
    assert unusable.p_value is None and not unusable.passed and unusable.status is Status.ZERO_BASELINE
    with pytest.raises(ValueError):
        non_inferiority(fixed, 1.5)


def test_power_matches_statsmodels_and_the_closed_form() -> None:
    mean, sd, mde, alpha, power = 30_000.0, 45_000.0, 0.05, 0.05, 0.8
    got = sample_size(mean, sd, mde, alpha=alpha, power=power, visitors_per_day=2000)
    d = mde * mean / sd
    ref = NormalIndPower().solve_power(effect_size=d, alpha=alpha, power=power, ratio=1.0)
    assert got.n_per_variant == math.ceil(ref)
    closed = 2 * (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) ** 2 / d**2
    assert got.n_per_variant == pytest.approx(closed, rel=1e-3)
    assert got.total_visitors == 2 * got.n_per_variant
    assert got.days == pytest.approx(got.total_visitors / 2000, rel=1e-12)
    three = sample_size(mean, sd, mde, alpha=alpha, power=power, variants=3, visitors_per_day=2000)
    assert three.total_visitors == pytest.approx(3 * three.n_per_variant, abs=3)
    assert sample_size(0.0, 1.0, 0.05).status is Status.ZERO_BASELINE
    assert sample_size(1.0, 0.0, 0.05).status is Status.ZERO_VARIANCE
    with pytest.raises(ValueError):
        sample_size(1.0, 1.0, 0.0)
    with pytest.raises(ValueError):
        sample_size(1.0, 1.0, 0.05, power=1.0)


# ---- status codes ------------------------------------------------------------------------------------


def test_status_zero_variance() -> None:
    got = welch(estimate_pair(sample([3.0] * 10), sample([3.0] * 12)))
    assert got.status is Status.ZERO_VARIANCE and got.p_value is None and got.ci_rel is None
    # A constant that floating point cannot represent exactly: sum_sq - sum^2/n is not exactly 0.
    s = sample([0.1] * 1000)
    assert s.sum_sq - s.sum**2 / s.n != 0.0
    assert welch(estimate_pair(s, sample([0.1] * 999))).status is Status.ZERO_VARIANCE
    assert sequential(got, 22).ci_abs is None
    assert bayesian(got).chance_to_win is None


def test_status_too_few_units() -> None:
    got = welch(estimate_pair(sample([1.0]), sample([1.0, 2.0, 3.0])))
    assert got.status is Status.TOO_FEW_UNITS and got.lift_abs is None and got.p_value is None
    empty = welch(estimate_pair(SampleStats(0, 0.0, 0.0), SampleStats(0, 0.0, 0.0)))
    assert empty.status is Status.TOO_FEW_UNITS


def test_status_zero_baseline_keeps_the_absolute_test() -> None:
    got = welch(estimate_pair(sample([0.0] * 20), sample([0.0] * 15 + [1.0] * 5)))
    assert got.status is Status.ZERO_BASELINE
    assert got.lift_abs == pytest.approx(0.25) and got.p_value is not None and got.ci_abs is not None
    assert got.lift_rel is None and got.ci_rel is None
    seq = sequential(got, 40)
    assert seq.ci_abs is not None and seq.ci_rel is None
    assert bayesian(got).status is Status.ZERO_BASELINE


def test_status_zero_denominator() -> None:
    got = welch(estimate_pair(ratio([0.0, 0.0], [0.0, 0.0]), ratio([1.0, 2.0], [1.0, 1.0])))
    assert got.status is Status.ZERO_DENOMINATOR and got.p_value is None


def test_every_field_finite_or_none() -> None:
    cases = [
        (sample([3.0] * 10), sample([3.0] * 12)),
        (sample([0.0] * 10), sample([0.0] * 9 + [5.0])),
        (sample([1.0, 2.0]), sample([0.0, 0.0])),
        (ratio([0.0, 0.0], [0.0, 0.0]), ratio([0.0, 0.0], [0.0, 0.0])),
        (cuped([1.0, 1.0], [2.0, 2.0]), cuped([1.0, 1.0], [2.0, 2.0])),
    ]
    for a, b in cases:
        fixed = welch(estimate_pair(a, b))
        for result in (fixed, sequential(fixed, 20), bayesian(fixed)):
            for value in vars(result).values():
                values = value if isinstance(value, tuple) else (value,)
                assert all(v is None or not isinstance(v, float) or math.isfinite(v) for v in values)


def test_stats_merge_like_concatenated_data() -> None:
    rng = np.random.default_rng(10)
    x1, x2 = rng.normal(size=50), rng.normal(size=70)
    merged = sample(x1) + sample(x2)
    n, mean, cov = merged.moments()
    both = np.concatenate([x1, x2])
    assert n == 120 and mean[0] == pytest.approx(both.mean()) and cov[0, 0] == pytest.approx(both.var(ddof=1))
    y1, y2 = rng.normal(size=50), rng.normal(size=70)
    r = ratio(x1, y1) + ratio(x2, y2)
    whole = ratio(both, np.concatenate([y1, y2]))
    assert r.n == whole.n
    assert [r.sum_x, r.sum_x2, r.sum_y, r.sum_y2, r.sum_xy] == pytest.approx(
        [whole.sum_x, whole.sum_x2, whole.sum_y, whole.sum_y2, whole.sum_xy], rel=1e-12
    )
    with pytest.raises(TypeError):
        estimate_pair(sample([1.0, 2.0]), ratio([1.0, 2.0], [1.0, 1.0]))
    with pytest.raises(ValueError):
        welch(estimate_pair(sample([1.0, 2.0]), sample([1.0, 3.0])), alpha=1.5)
