"""The statistics the verdict stands on: sequential SRM, the sequential sample plan, always-valid
guardrails, and their error rates in seeded simulations (small here; full runs in docs/statistics.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from armor_ab.stats.estimate import estimate_pair
from armor_ab.stats.frequentist import welch
from armor_ab.stats.power import alphas, plan_for_mode, sample_size, sequential_sample_size
from armor_ab.stats.sequential import half_width, sequential_guardrail
from armor_ab.stats.srm import chi_square_p, log_bayes_factor, sequential_srm
from armor_ab.stats.suffstats import SampleStats

HALF = {"control": 0.5, "armor": 0.5}


# ---------------------------------------------------------------- SRM


@pytest.mark.parametrize("counts", [[5100, 4900], [5000, 5000], [40, 60], [2000, 3000, 5050]])
def test_bayes_factor_matches_scipy_dirichlet_multinomial(counts: list[int]) -> None:
    n = np.array(counts)
    p0 = np.array([0.5, 0.5]) if len(counts) == 2 else np.array([0.2, 0.3, 0.5])
    ref = stats.dirichlet_multinomial.logpmf(n, 100 * p0, n.sum()) - stats.multinomial.logpmf(n, n.sum(), p0)
    assert log_bayes_factor(n, p0)[0] == pytest.approx(ref, abs=1e-8)


def test_one_stray_visitor_is_no_srm() -> None:
    # 5,000 / 5,000 plus one visitor in an arm the experiment doesn't have: the unknown arm is not
    # part of the test at all (the report warns about it separately).
    r = sequential_srm({"control": 5000, "armor": 5000, "ghost": 1}, HALF)
    assert not r.flag and r.p_value == 1.0
    assert r.observed == {"control": 5000, "armor": 5000}


def test_srm_flags_a_real_mismatch_and_uses_the_running_minimum() -> None:
    bad = sequential_srm({"control": 5000, "armor": 5600}, HALF)
    assert bad.flag and bad.p_value < 1e-3
    assert bad.chi_square_p_value == pytest.approx(stats.chisquare([5000, 5600]).pvalue)
    # Once the evidence was there at a look, a later look can't take it back.
    looks = [{"control": 5000, "armor": 5600}, {"control": 5500, "armor": 5600}]
    assert sequential_srm(looks, HALF).p_value == pytest.approx(bad.p_value)
    assert sequential_srm(looks[-1:], HALF).p_value > bad.p_value


def test_zero_weight_arm_with_visitors_is_certain_mismatch() -> None:
    r = sequential_srm({"a": 10, "b": 10, "c": 1}, {"a": 0.5, "b": 0.5, "c": 0.0})
    assert r.flag and r.p_value == 0.0


def test_chi_square_p_matches_scipy() -> None:
    assert chi_square_p([2000, 3000, 5050], [0.2, 0.3, 0.5]) == pytest.approx(
        stats.chisquare([2000, 3000, 5050], [2010, 3015, 5025]).pvalue)
    assert chi_square_p([0, 0], [0.5, 0.5]) == 1.0


def test_sequential_srm_false_positive_rate_with_daily_looks() -> None:
    """A/A split, 30 daily looks: the chi-square test peeked daily flags far above its threshold, the
    sequential one stays under it (seeded)."""
    rng = np.random.default_rng(5)
    runs, days, per_day, threshold = 400, 30, 400, 0.05
    seq = chi = 0
    for _ in range(runs):
        a = np.cumsum(rng.binomial(per_day, 0.5, size=days))
        looks = [{"control": int(x), "armor": int((d + 1) * per_day - x)} for d, x in enumerate(a)]
        seq += sequential_srm(looks, HALF, threshold).flag
        chi += any(chi_square_p([lk["control"], lk["armor"]], [0.5, 0.5]) < threshold for lk in looks)
    assert seq / runs <= threshold
    assert chi / runs > 2 * threshold


# ---------------------------------------------------------------- the sample plan


def _cv_se(cv: float, n_pair: float, mde: float) -> float:
    return cv * math.sqrt(2 / n_pair + (1 + mde) ** 2 * 2 / n_pair)


def test_sequential_plan_inverts_the_interval_width() -> None:
    plan = sequential_sample_size(10.0, 10.0, 0.05, alpha=0.05, power=0.8, visitors_per_day=1000)
    n = plan.total_visitors
    z = stats.norm.ppf(0.8)
    for pair, ok in ((n, True), (n - 2, False)):
        se = _cv_se(1.0, pair, 0.05)
        assert bool(0.05 - half_width(se * se, pair, 0.05) >= z * se) is ok
    assert plan.method == "sequential" and plan.days == pytest.approx(n / 1000)
    fixed = sample_size(10.0, 10.0, 0.05)
    assert 1.8 < n / fixed.total_visitors < 2.6  # the always-valid interval costs about twice the sample


def test_sequential_plan_reaches_its_power_in_simulation() -> None:
    """At the planned N, with the true lift at the MDE, the always-valid lower bound is above 0 in
    about ``power`` of runs (seeded, normal data at the sufficient-statistics level)."""
    plan = sequential_sample_size(1.0, 1.0, 0.1, alpha=0.05, power=0.8)
    n = plan.n_per_variant
    rng = np.random.default_rng(9)
    wins = 0
    runs = 2000
    for _ in range(runs):
        arms = []
        for mean in (1.0, 1.1):
            s = rng.normal(n * mean, math.sqrt(n))
            arms.append(SampleStats(n, s, rng.chisquare(n - 1) + s * s / n))
        f = welch(estimate_pair(*arms))
        lo = f.lift_rel - half_width(f.se_rel**2, 2 * n, 0.05)
        wins += lo > 0
    assert wins / runs == pytest.approx(0.8, abs=0.035)


def test_plan_for_each_mode_and_alpha_split() -> None:
    assert alphas("sequential", 0.05, 1, 0.5) == (0.05, 0.05)
    assert alphas("fixed", 0.05, 2, 0.5) == (0.025, 0.025)
    assert alphas("hybrid", 0.05, 1, 0.3) == pytest.approx((0.015, 0.035))
    seq = plan_for_mode("sequential", 1.0, 1.0, 0.05, alpha_sequential=0.05, alpha_fixed=0.05)
    fixed = plan_for_mode("fixed", 1.0, 1.0, 0.05, alpha_sequential=0.05, alpha_fixed=0.05)
    hybrid = plan_for_mode("hybrid", 1.0, 1.0, 0.05, alpha_sequential=0.025, alpha_fixed=0.025)
    assert fixed.total_visitors == sample_size(1.0, 1.0, 0.05).total_visitors
    assert fixed.total_visitors < hybrid.total_visitors < seq.total_visitors
    with pytest.raises(ValueError):
        alphas("bayes", 0.05, 1, 0.5)


# ---------------------------------------------------------------- guardrails


def _fixed(lift: float, se: float, n: int = 10_000):
    """A fixed-horizon result with the given relative lift and se (mean metric, control mean 1)."""
    c = SampleStats(n, float(n), n * (se * se * n / 2) + n)  # var per visitor = se^2 n / 2
    t = SampleStats(n, n * (1 + lift), n * (se * se * n / 2) + n * (1 + lift) ** 2)
    return welch(estimate_pair(c, t))


def test_guardrail_states() -> None:
    assert sequential_guardrail(_fixed(0.0, 0.002), 20_000, 0.02).state == "passed"
    assert sequential_guardrail(_fixed(-0.06, 0.002), 20_000, 0.02).state == "breached"
    pending = sequential_guardrail(_fixed(-0.02, 0.005), 20_000, 0.02)
    assert pending.state == "pending" and pending.lower < -0.02 < pending.upper
    d = pending.to_dict()
    assert d["passed"] is False and d["sequential_lower"] == pending.lower
