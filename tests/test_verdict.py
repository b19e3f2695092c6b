"""Ship / keep running / stop: every decision path, SRM override, and the executive headline."""

from __future__ import annotations

import itertools
import json

import pytest

from armor_ab.roi.assumptions import RoiAssumptions
from armor_ab.roi.engine import EffectInput, compute_roi
from armor_ab.roi.verdict import decide

NO_SRM = {"p_value": 0.41, "flag": False}
SRM = {"p_value": 2e-6, "flag": True}


def primary(
    lo: float, hi: float, lift: float | None = None, status: str = "ok", fixed: list | None = None
) -> dict:
    """A results entry whose sequential CI is [lo, hi]; the fixed-horizon CI is narrower unless given."""
    lift = (lo + hi) / 2 if lift is None else lift
    return {
        "metric": "dwell_time_per_view",
        "variant": "armor",
        "lift_rel": lift,
        "ci_rel": fixed if fixed is not None else [lift - (hi - lo) / 3, lift + (hi - lo) / 3],
        "p_value": 0.001,
        "p_value_adjusted": 0.002,
        "sequential": {"ci_rel": [lo, hi], "p_value": 0.01},
        "bayesian": {"chance_to_win": 0.99, "expected_loss": 0.0},
        "status": status,
    }


def guardrail(lo: float, hi: float, passed: bool, margin: float = 0.02, status: str = "ok") -> dict:
    entry = primary(lo, hi, status=status)
    entry["metric"] = "inquiry_rate"
    entry["guardrail"] = {"margin": margin, "p_value": 0.01 if passed else 0.3, "passed": passed}
    return entry


def roi(p: float, npv: float = 84_000.0, horizon: int = 12) -> dict:
    """The parts of a compute_roi result the verdict reads."""
    return {"prob_roi_positive": p, "prob_npv_positive": p, "point": {"npv": npv}, "horizon_months": horizon}


GOOD = primary(0.050, 0.113, lift=0.081)
SAFE = [guardrail(-0.01, 0.02, passed=True)]


def call(**kw) -> dict:
    args = {
        "primary": GOOD,
        "guardrails": SAFE,
        "srm": NO_SRM,
        "roi": roi(0.97),
        "days_remaining": 6.0,
        "alpha": 0.05,
    }
    args.update(kw)
    out = decide(**args)
    assert set(out) == {"decision", "headline", "reasons", "days_remaining"}
    assert out["reasons"] and all(isinstance(r, str) and r for r in out["reasons"])
    json.dumps(out, allow_nan=False)
    return out


# ---------------------------------------------------------------- ship


def test_ship_headline_in_plain_words():
    out = call()
    assert out["decision"] == "ship"
    assert out["headline"] == (
        "Ship the ARMOR pages: +8.1% dwell time (95% CI +5.0% to +11.3%), 12-month NPV $84k (P(ROI>0) = 97%)"
    )
    assert out["days_remaining"] == 6.0


def test_ship_without_roi_block_says_so():
    out = call(roi=None)
    assert out["decision"] == "ship"
    assert "ROI not assessed" in out["headline"]
    assert any("ROI not assessed" in r for r in out["reasons"])


def test_ship_threshold_on_prob_roi_positive():
    assert call(roi=roi(0.80))["decision"] == "ship"
    uncertain = call(roi=roi(0.79))
    assert uncertain["decision"] == "keep_running"
    assert "whether it pays is unclear" in uncertain["headline"] and "79%" in uncertain["headline"]


def test_decision_follows_sequential_not_fixed_interval():
    # The fixed-horizon CI excludes 0 but the always-valid one does not: a daily peek must not ship.
    peeked = primary(-0.01, 0.09, lift=0.04, fixed=[0.01, 0.07])
    assert call(primary=peeked)["decision"] == "keep_running"


def test_alpha_sets_the_interval_label():
    assert "90% CI" in call(alpha=0.10)["headline"]


def test_undefined_roi_falls_back_to_npv_probability():
    zero_cost = {
        "prob_roi_positive": None,
        "prob_npv_positive": 0.95,
        "point": {"npv": 5000.0},
        "horizon_months": 6,
    }
    out = call(roi=zero_cost)
    assert out["decision"] == "ship"
    assert "6-month NPV $5.0k (P(ROI>0) = 95%)" in out["headline"]


def test_with_a_real_compute_roi_result():
    result = compute_roi(RoiAssumptions(), EffectInput(0.02, 0.001, 0.0003))
    out = call(roi=result)
    assert out["decision"] == "ship"
    assert "12-month NPV $168k" in out["headline"]
    losing = compute_roi(RoiAssumptions(monthly_operations_cost=50_000), EffectInput(0.02, 0.001, 0.0003))
    assert losing["prob_roi_positive"] < 0.2
    assert call(roi=losing)["decision"] == "stop"


# ---------------------------------------------------------------- SRM


def test_srm_overrides_ship():
    out = call(srm=SRM)
    assert out["decision"] == "keep_running"
    assert "sample ratio mismatch" in out["headline"].lower()
    assert "investigate assignment and tracking" in out["reasons"][0]


def test_srm_keeps_a_stop_and_still_says_investigate():
    out = call(srm=SRM, primary=primary(-0.06, -0.02))
    assert out["decision"] == "stop"
    assert "investigate assignment" in out["headline"] and "investigate" in out["reasons"][0]


def test_never_ship_with_srm_whatever_else():
    primaries = [
        GOOD,
        primary(-0.06, -0.02),
        primary(-0.01, 0.05),
        primary(-0.004, 0.005),
        primary(0.05, 0.1, status="x"),
    ]
    guards = [[], SAFE, [guardrail(-0.06, -0.03, passed=False)], [guardrail(-0.03, 0.01, passed=False)]]
    rois = [None, roi(0.99), roi(0.5), roi(0.05)]
    days = [None, 0.0, 10.0]
    for p, g, r, d in itertools.product(primaries, guards, rois, days):
        out = call(primary=p, guardrails=g, roi=r, days_remaining=d, srm=SRM)
        assert out["decision"] in ("keep_running", "stop")
        assert "investigate" in out["reasons"][0]


# ---------------------------------------------------------------- stop


def test_harm_stops():
    out = call(primary=primary(-0.06, -0.02, lift=-0.04))
    assert out["decision"] == "stop"
    assert out["headline"] == "Stop: the ARMOR pages lower dwell time (-4.0%, 95% CI -6.0% to -2.0%)"


def test_broken_guardrail_stops_even_a_winner():
    out = call(guardrails=[guardrail(-0.06, -0.03, passed=False)])
    assert out["decision"] == "stop"
    assert "inquiry rate" in out["headline"]
    assert "worse than the 2% tolerance" in out["reasons"][0]


def test_failed_guardrail_without_interval_is_broken():
    g = guardrail(-0.03, 0.01, passed=False)
    del g["sequential"]
    assert call(guardrails=[g])["decision"] == "stop"


def test_unproven_guardrail_blocks_ship_until_the_end():
    g = [guardrail(-0.03, 0.01, passed=False)]  # could still be within 2%: not shown yet
    out = call(guardrails=g)
    assert out["decision"] == "keep_running"
    assert "not yet shown safe" in out["headline"]
    assert call(guardrails=g, days_remaining=0)["decision"] == "stop"


def test_significant_effect_that_does_not_pay_stops():
    out = call(roi=roi(0.05, npv=-20_000))
    assert out["decision"] == "stop"
    assert "does not pay" in out["headline"] and "-$20k" in out["headline"]
    assert call(roi=roi(0.20))["decision"] == "stop"
    assert call(roi=roi(0.21))["decision"] == "keep_running"


def test_negligible_effect_stops():
    out = call(primary=primary(-0.005, 0.006))
    assert out["decision"] == "stop"
    assert "no meaningful effect" in out["headline"]
    # Just wider than the band: not yet known to be negligible.
    assert call(primary=primary(-0.005, 0.011))["decision"] == "keep_running"
    # The band is the caller's to set.
    assert call(primary=primary(-0.005, 0.011), negligible_rel=0.02)["decision"] == "stop"


def test_planned_duration_reached_without_significance_stops():
    out = call(primary=primary(-0.01, 0.05), days_remaining=0)
    assert out["decision"] == "stop"
    assert "planned duration reached" in out["headline"]
    # An overrun (negative days) counts as reached.
    overrun = call(primary=primary(-0.01, 0.05), days_remaining=-3)
    assert overrun["decision"] == "stop" and overrun["days_remaining"] == 0.0


# ---------------------------------------------------------------- keep running


def test_keep_running_reports_days():
    out = call(primary=primary(-0.01, 0.05, lift=0.02), days_remaining=9.2)
    assert out["decision"] == "keep_running"
    assert out["days_remaining"] == 9.2
    assert out["headline"] == (
        "Keep running: dwell time +2.0% so far (95% CI -1.0% to +5.0%), not conclusive yet; about 9 days left"
    )
    assert "no planned end date" in call(primary=primary(-0.01, 0.05), days_remaining=None)["headline"]


@pytest.mark.parametrize("status", ["insufficient_data", "error", None])
def test_not_ok_status_cannot_ship(status):
    p = primary(0.05, 0.11, status=status)
    out = call(primary=p)
    assert out["decision"] == "keep_running"
    assert "no usable" in out["headline"]
    assert call(primary=p, days_remaining=0)["decision"] == "stop"


def test_missing_sequential_interval_cannot_ship():
    p = dict(GOOD)
    p["sequential"] = {"ci_rel": [None, None], "p_value": None}
    assert call(primary=p)["decision"] == "keep_running"


# ---------------------------------------------------------------- misuse


@pytest.mark.parametrize(
    "kw",
    [
        {"alpha": 0.0},
        {"alpha": 1.5},
        {"days_remaining": float("nan")},
        {"srm": {"p_value": 0.5}},
        {"guardrails": [primary(0.0, 0.1)]},  # a guardrail entry without its guardrail block
        {"negligible_rel": -0.01},
    ],
)
def test_misuse_raises(kw):
    with pytest.raises(ValueError):
        call(**kw)
