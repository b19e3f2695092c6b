"""The verdict's error rates under daily looks, seeded, on simulated sufficient statistics through the
production report and verdict (armor_ab.reporting.error_rates). N = 200 runs each here, bounds widened
to 3 standard errors of N; the 1,000-run figures are in docs/statistics.md."""

from __future__ import annotations

import math

import pytest

from armor_ab.reporting.error_rates import simulate

N = 200
ALPHA = 0.05


def _se(p: float, n: int = N) -> float:
    return math.sqrt(p * (1 - p) / n)


def test_power_at_the_mde_with_the_planned_sample() -> None:
    """True lift = MDE, daily looks, no guardrails, break-even at MDE / 4: "ship" in >= 75% (target 80%)."""
    r = simulate("power", N, seed=1)
    assert r["ship_rate"] >= 0.75 - 3 * _se(0.75), r


def test_aa_false_ship_rate_with_daily_looks() -> None:
    r = simulate("aa", N, seed=2)
    assert r["ship_rate"] <= ALPHA + 3 * _se(ALPHA), r


def test_guardrail_at_minus_margin_rarely_passes_with_14_daily_looks() -> None:
    r = simulate("guardrail", N, seed=3)
    assert r["guardrail_pass_rate"] <= 0.055 + 3 * _se(0.055), r
    # The simulation can tell: the fixed-horizon rule it replaced passes the same guardrail far more often.
    assert r["fixed_horizon_guardrail_pass_rate"] > r["guardrail_pass_rate"] + 0.05, r


@pytest.mark.parametrize("mode", ["fixed", "hybrid"])
def test_other_modes_keep_alpha_under_daily_looks(mode: str) -> None:
    r = simulate("aa", N, seed=4, mode=mode)
    assert r["ship_rate"] <= ALPHA + 3 * _se(ALPHA), r
