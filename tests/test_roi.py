"""ROI engine: hand-computed cash flows, analytic Monte Carlo checks, sensitivity, JSON safety."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.stats import norm

from armor_ab.roi.assumptions import RoiAssumptions
from armor_ab.roi.engine import MIN_DRAWS, EffectInput, compute_roi, what_if

# ---------------------------------------------------------------- an independent hand model


def hand(a: RoiAssumptions, lift: float) -> dict:
    """NPV, ROI and payback by plain loops over months, written from the spec, not the engine."""
    monthly_rate = (1 + a.annual_discount_rate) ** (1 / 12) - 1
    if a.serving_gpu_hours_per_month is not None:
        serving = a.serving_gpu_hours_per_month * a.gpu_hour_price
    elif a.cost_per_1000_generations is not None:
        serving = a.cost_per_1000_generations * a.generations_per_month / 1000
    else:
        serving = 0.0
    saving = a.content_hours_saved_per_page * a.pages * a.hourly_rate
    pv_benefits = pv_costs = 0.0
    cumulative, payback = 0.0, None
    for t in range(a.horizon_months + 1):
        benefit = cost = 0.0
        if t == 0:
            cost += a.finetune_gpu_hours * a.gpu_hour_price
        else:
            benefit += a.monthly_visitors * lift * a.inquiry_to_order * a.margin_per_order
            cost += serving + a.monthly_operations_cost
        refresh = a.content_refresh_months
        if t == 0 or (refresh is not None and t % refresh == 0 and t < a.horizon_months):
            benefit += saving
        factor = 1 / (1 + monthly_rate) ** t
        pv_benefits += benefit * factor
        pv_costs += cost * factor
        cumulative += benefit - cost
        # Paid back at the first month from which the cumulative cash never goes negative again.
        if cumulative < 0:
            payback = None
        elif payback is None:
            payback = t
    npv = pv_benefits - pv_costs
    return {"npv": npv, "pv_costs": pv_costs, "roi_pct": npv / pv_costs * 100, "payback": payback}


# Fine-tuning far above the content saving, so payback is a real month rather than month 0.
COSTLY = RoiAssumptions(finetune_gpu_hours=2000, gpu_hour_price=3.0)


def effect(lift: float, se: float = 0.0, baseline: float = 0.02) -> EffectInput:
    return EffectInput(baseline_inquiries_per_visitor=baseline, lift_abs=lift, lift_abs_se=se)


# ---------------------------------------------------------------- zero-SE: exact values


def test_literal_small_case():
    # S = 1*10*50 = 500; F = 10*20 = 200; serving 2*1000/1000 = 2; ops 98 -> 100/month;
    # margin 1000*0.01*0.5*100 = 500/month. r = 0: NPV = 500 - 200 + 3*(500 - 100) = 1500,
    # PV costs = 200 + 3*100 = 500, ROI = 300%, cumulative cash at month 0 = +300 -> payback 0.
    a = RoiAssumptions(
        monthly_visitors=1000, inquiry_to_order=0.5, margin_per_order=100,
        content_hours_saved_per_page=1, pages=10, hourly_rate=50,
        finetune_gpu_hours=10, gpu_hour_price=20, cost_per_1000_generations=2, generations_per_month=1000,
        monthly_operations_cost=98, horizon_months=3, annual_discount_rate=0.0,
    )  # fmt: skip
    r = compute_roi(a, effect(0.01))
    assert r["point"]["npv"] == pytest.approx(1500)
    assert r["costs"]["pv_costs"] == pytest.approx(500)
    assert r["point"]["roi_pct"] == pytest.approx(300)
    assert r["point"]["payback_months"] == 0
    assert r["point"]["incremental_inquiries_per_month"] == pytest.approx(10)
    assert r["point"]["incremental_profit_per_month"] == pytest.approx(400)


@pytest.mark.parametrize(
    ("a", "lift", "payback"),
    [
        (RoiAssumptions(), 0.001, 0),  # content saving 1200 > fine-tuning 96: paid back at launch
        # -4800 at month 0, +996/month after: first month with cumulative >= 0 is 5 (4800/996 = 4.8)
        (COSTLY, 0.0001, 5),
        # +246/month: 4800 / 246 = 19.5 -> month 20, inside a 36-month horizon
        (COSTLY.with_updates(annual_discount_rate=0.25, horizon_months=36), 0.00005, 20),
        (COSTLY, 0.00002, None),  # net -204/month: never recovers
        # savings at months 0, 4, 8: cumulative -1812 at month 3, -4800 + 4*996 + 1200 = +384 at month 4
        (COSTLY.with_updates(content_refresh_months=4), 0.0001, 4),
    ],
)
def test_zero_se_matches_hand_loops(a, lift, payback):
    want = hand(a, lift)
    r = compute_roi(a, effect(lift))
    assert want["payback"] == payback  # the case is what its comment says
    assert r["point"]["npv"] == pytest.approx(want["npv"], rel=1e-12)
    assert r["point"]["roi_pct"] == pytest.approx(want["roi_pct"], rel=1e-12)
    assert r["costs"]["pv_costs"] == pytest.approx(want["pv_costs"], rel=1e-12)
    assert r["point"]["payback_months"] == payback
    assert r["point"]["payback_status"] == ("ok" if payback is not None else "not_within_horizon")
    # With no sampling error every draw is the point estimate.
    assert r["npv"]["mean"] == pytest.approx(want["npv"], rel=1e-12)
    assert r["npv"]["ci"] == pytest.approx([want["npv"], want["npv"]], rel=1e-12)
    assert r["payback_months"]["prob_within_horizon"] == (1.0 if payback is not None else 0.0)
    assert r["payback_months"]["median"] == payback
    assert r["prob_roi_positive"] == (1.0 if want["npv"] > 0 else 0.0)


def test_payback_counts_a_cumulative_of_exactly_zero():
    # Binary-exact figures: -1000 at month 0, then 0.25*1000*0.5*4 - 250 = +250/month, so the
    # cumulative cash is exactly 0 at month 4, which counts as paid back ("first month >= 0").
    a = RoiAssumptions(
        monthly_visitors=1000, inquiry_to_order=0.5, margin_per_order=4, content_hours_saved_per_page=0,
        finetune_gpu_hours=400, gpu_hour_price=2.5, cost_per_1000_generations=None, monthly_operations_cost=250,
    )  # fmt: skip
    assert hand(a, 0.25)["payback"] == 4
    assert compute_roi(a, effect(0.25))["point"]["payback_months"] == 4


def test_monthly_discount_rate_and_refresh_schedule():
    a = RoiAssumptions(annual_discount_rate=0.12, content_refresh_months=5, horizon_months=15)
    r = compute_roi(a, effect(0.001))
    assert r["monthly_discount_rate"] == pytest.approx(1.12 ** (1 / 12) - 1)
    assert r["costs"]["content_saving_months"] == [0, 5, 10]  # 15 is the horizon: excluded
    assert "recurs every 5 months" in " ".join(r["notes"])


def test_break_even_lift_gives_zero_npv():
    r = compute_roi(COSTLY, effect(0.0001))
    be = r["break_even_lift_abs"]
    assert hand(COSTLY, be)["npv"] == pytest.approx(0, abs=1e-6)
    assert r["break_even_lift_rel"] == pytest.approx(be / 0.02)


# ---------------------------------------------------------------- serving cost methods


@pytest.mark.parametrize(
    ("update", "method", "per_month"),
    [
        ({}, "per_1000_generations", 0.8 * 5000 / 1000),
        ({"serving_gpu_hours_per_month": 100}, "gpu_hours", 100 * 2.5),  # wins over per-1000
        ({"serving_gpu_hours_per_month": 100, "cost_per_1000_generations": None}, "gpu_hours", 250),
        ({"cost_per_1000_generations": 3.0, "generations_per_month": 20_000}, "per_1000_generations", 60),
        ({"cost_per_1000_generations": None}, "none", 0.0),
    ],
)
def test_serving_cost_either_method(update, method, per_month):
    a = RoiAssumptions().with_updates(**update)
    r = compute_roi(a, effect(0.001))
    assert r["serving_cost_method"] == method
    assert r["costs"]["serving_per_month"] == pytest.approx(per_month)
    assert r["point"]["npv"] == pytest.approx(hand(a, 0.001)["npv"], rel=1e-12)
    # Serving cost is the only difference from a free-serving run: NPV moves by its PV exactly.
    free = compute_roi(
        a.with_updates(serving_gpu_hours_per_month=None, cost_per_1000_generations=None), effect(0.001)
    )
    rate = r["monthly_discount_rate"]
    annuity = sum((1 + rate) ** -t for t in range(1, 13))
    assert free["point"]["npv"] - r["point"]["npv"] == pytest.approx(per_month * annuity, abs=1e-6)


# ---------------------------------------------------------------- Monte Carlo vs analytic


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_monte_carlo_matches_analytic_normal(seed):
    a, mu, se, n = COSTLY, 0.0005, 0.0004, 20_000
    # NPV is linear in the lift: NPV(L) = intercept + slope * L, from the hand model.
    intercept = hand(a, 0.0)["npv"]
    slope = (hand(a, 1e-3)["npv"] - intercept) / 1e-3
    pv_costs = hand(a, 0.0)["pv_costs"]
    npv_mean, npv_sd = intercept + slope * mu, slope * se
    r = compute_roi(a, effect(mu, se), draws=n, seed=seed)

    z = norm.ppf(0.975)
    # Standard error of a sample quantile: sqrt(p(1-p)/n) / density at the quantile.
    q_se = math.sqrt(0.025 * 0.975 / n) / norm.pdf(z) * npv_sd
    assert r["npv"]["mean"] == pytest.approx(npv_mean, abs=4 * npv_sd / math.sqrt(n))
    assert r["npv"]["median"] == pytest.approx(npv_mean, abs=4 * 1.2533 * npv_sd / math.sqrt(n))
    assert r["npv"]["ci"][0] == pytest.approx(npv_mean - z * npv_sd, abs=4 * q_se)
    assert r["npv"]["ci"][1] == pytest.approx(npv_mean + z * npv_sd, abs=4 * q_se)
    # ROI is NPV scaled by a lift-free denominator.
    assert r["roi_pct"]["ci"][0] == pytest.approx(
        (npv_mean - z * npv_sd) / pv_costs * 100, abs=4 * q_se / pv_costs * 100
    )
    assert r["roi_pct"]["mean"] == pytest.approx(
        npv_mean / pv_costs * 100, abs=4 * npv_sd / math.sqrt(n) / pv_costs * 100
    )

    p = norm.cdf(npv_mean / npv_sd)
    assert r["prob_roi_positive"] == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / n))
    assert r["prob_npv_positive"] == r["prob_roi_positive"]

    inq_sd = a.monthly_visitors * se
    assert r["incremental_inquiries_per_month"]["mean"] == pytest.approx(
        a.monthly_visitors * mu, abs=4 * inq_sd / math.sqrt(n)
    )
    profit_sd = slope / sum((1.08 ** (-t / 12)) for t in range(1, 13)) * se
    assert r["incremental_profit_per_month"]["ci"][1] - r["incremental_profit_per_month"]["ci"][
        0
    ] == pytest.approx(2 * z * profit_sd, rel=0.05)

    # Payback within the horizon <=> cumulative cash at month H >= 0, linear in the lift too.
    cash_h0 = -(COSTLY.finetune_gpu_hours * COSTLY.gpu_hour_price) + 1200 - 12 * (4 + 500)
    per_lift = 12 * a.monthly_visitors * a.inquiry_to_order * a.margin_per_order
    p_pay = norm.sf((-cash_h0 / per_lift - mu) / se)
    pay = r["payback_months"]
    assert pay["prob_within_horizon"] == pytest.approx(p_pay, abs=4 * math.sqrt(p_pay * (1 - p_pay) / n))
    assert pay["mean"] is None  # some draws never pay back: the mean is undefined
    assert pay["ci"][1] is None  # and the 97.5th percentile is "never"
    assert 0 <= pay["ci"][0] <= pay["mean_given_payback"] <= 12


def test_histogram_covers_every_draw():
    r = compute_roi(COSTLY, effect(0.0005, 0.0004), draws=MIN_DRAWS, seed=3)
    h = r["roi_histogram"]
    assert h["of"] == "roi_pct"
    assert len(h["counts"]) == 40 and len(h["bin_edges"]) == 41
    assert sum(h["counts"]) == MIN_DRAWS
    assert all(b > a for a, b in zip(h["bin_edges"], h["bin_edges"][1:], strict=False))
    assert h["bin_edges"][0] <= r["roi_pct"]["ci"][0] and h["bin_edges"][-1] >= r["roi_pct"]["ci"][1]
    # Roughly normal: the fullest bin sits near the mean.
    peak = int(np.argmax(h["counts"]))
    assert h["bin_edges"][peak - 2] <= r["roi_pct"]["mean"] <= h["bin_edges"][peak + 3]


def test_seeded_determinism():
    a, e = COSTLY, effect(0.0005, 0.0004)
    first = compute_roi(a, e, seed=11)
    assert compute_roi(a, e, seed=11) == first
    assert json.dumps(compute_roi(a, e, seed=11), sort_keys=True) == json.dumps(first, sort_keys=True)
    assert compute_roi(a, e, seed=12)["npv"]["mean"] != first["npv"]["mean"]


# ---------------------------------------------------------------- sensitivity


def test_sensitivity_sorted_and_brackets_base():
    a, mu, se = COSTLY, 0.0005, 0.0004
    s = compute_roi(a, effect(mu, se))["sensitivity"]
    assert s["metric"] == "roi_pct"
    assert s["base"] == pytest.approx(hand(a, mu)["roi_pct"], rel=1e-12)
    swings = [round(item["swing"], 6) for item in s["items"]]  # equal swings may differ by float noise
    assert swings == sorted(swings, reverse=True)
    for item in s["items"]:
        lo, hi = sorted([item["roi_pct_low"], item["roi_pct_high"]])
        assert lo - 1e-9 <= s["base"] <= hi + 1e-9, item["name"]
        assert item["swing"] == pytest.approx(abs(item["roi_pct_high"] - item["roi_pct_low"]))
    by_name = {item["name"]: item for item in s["items"]}
    # Only the inputs of the configured serving method are varied.
    assert "serving_gpu_hours_per_month" not in by_name and "generations_per_month" in by_name
    # Effect at its 95% CI bounds, ROI from the hand model.
    z = norm.ppf(0.975)
    eff = by_name["effect"]
    assert eff["low_value"] == pytest.approx(mu - z * se) and eff["high_value"] == pytest.approx(mu + z * se)
    assert eff["roi_pct_low"] == pytest.approx(hand(a, mu - z * se)["roi_pct"], rel=1e-9)
    assert s["items"][0]["name"] == "effect"  # the wide CI dominates here
    # +/-25% by default, and the hand model agrees at the ends.
    vis = by_name["monthly_visitors"]
    assert (vis["low_value"], vis["high_value"]) == (37_500, 62_500)
    assert vis["roi_pct_high"] == pytest.approx(hand(a.with_updates(monthly_visitors=62_500), mu)["roi_pct"])
    # Rates and counts stay meaningful.
    assert (by_name["annual_discount_rate"]["low_value"], by_name["annual_discount_rate"]["high_value"]) == (
        pytest.approx(0.03),
        pytest.approx(0.13),
    )
    assert (by_name["horizon_months"]["low_value"], by_name["horizon_months"]["high_value"]) == (9, 15)


def test_sensitivity_caps_share_and_lists_gpu_serving():
    a = RoiAssumptions(inquiry_to_order=0.9, serving_gpu_hours_per_month=50)
    by_name = {i["name"]: i for i in compute_roi(a, effect(0.001, 0.0002))["sensitivity"]["items"]}
    assert by_name["inquiry_to_order"]["high_value"] == 1.0
    assert "serving_gpu_hours_per_month" in by_name and "generations_per_month" not in by_name


# ---------------------------------------------------------------- what-if, undefined cases, misuse


def test_what_if_equals_edited_assumptions():
    a, e = RoiAssumptions(), effect(0.001, 0.0005)
    assert what_if(a, e, pages=400, seed=5) == compute_roi(a.with_updates(pages=400), e, seed=5)
    more = what_if(a, e, margin_per_order=3000)["point"]["npv"]
    assert more > compute_roi(a, e)["point"]["npv"]


def test_zero_cost_roi_is_undefined_not_nan():
    free = RoiAssumptions(finetune_gpu_hours=0, cost_per_1000_generations=None, monthly_operations_cost=0)
    r = compute_roi(free, effect(0.001, 0.001))
    assert r["status"] == "roi_undefined_zero_cost"
    assert r["prob_roi_positive"] is None and r["point"]["roi_pct"] is None
    assert r["roi_pct"] == {"mean": None, "median": None, "ci": [None, None]}
    assert r["prob_npv_positive"] == pytest.approx(norm.cdf(1.0 + 1200 / (15_000 * _annuity())), abs=0.015)
    assert r["roi_histogram"]["of"] == "npv"
    assert r["sensitivity"]["metric"] == "npv"
    json.dumps(r, allow_nan=False)


def _annuity(rate: float = 0.08, months: int = 12) -> float:
    return sum((1 + rate) ** (-t / 12) for t in range(1, months + 1))


@pytest.mark.parametrize(
    ("a", "e"),
    [
        (RoiAssumptions(), effect(0.001, 0.0005)),
        (COSTLY, effect(-0.001, 0.0)),  # never pays back: None, not inf
        (COSTLY, effect(0.0, 0.0, baseline=0.0)),  # no baseline: relative figures None
        (RoiAssumptions(margin_per_order=0), effect(0.001, 0.0005)),  # lift earns nothing: no break-even
        (
            RoiAssumptions(finetune_gpu_hours=0, cost_per_1000_generations=None, monthly_operations_cost=0),
            effect(0.0, 0.0),
        ),
    ],
)
def test_json_safe(a, e):
    r = compute_roi(a, e)
    text = json.dumps(r, allow_nan=False)
    assert json.loads(text) == r


def test_never_paid_back_reports_none():
    r = compute_roi(COSTLY, effect(-0.001))
    pay = r["payback_months"]
    assert pay == {
        "mean": None,
        "median": None,
        "ci": [None, None],
        "prob_within_horizon": 0.0,
        "mean_given_payback": None,
    }
    assert r["point"]["payback_months"] is None


def test_misuse_raises():
    a = RoiAssumptions()
    with pytest.raises(ValueError):
        compute_roi(a, effect(0.001), draws=MIN_DRAWS - 1)
    with pytest.raises(ValueError):
        compute_roi(a, effect(0.001), draws=20_000.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        compute_roi(a, effect(0.001), seed=None)  # type: ignore[arg-type]
    assert compute_roi(a, effect(0.001, 1e-4), draws=np.int64(MIN_DRAWS), seed=np.int64(3)) == compute_roi(
        a, effect(0.001, 1e-4), draws=MIN_DRAWS, seed=3
    )
    with pytest.raises(ValueError):
        EffectInput(0.02, 0.001, -0.1)
    with pytest.raises(ValueError):
        EffectInput(0.02, float("nan"), 0.1)
    with pytest.raises(ValueError):
        EffectInput(-0.02, 0.001, 0.1)
    with pytest.raises(TypeError):
        compute_roi({"pages": 3}, effect(0.001))  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        a.with_updates(gpu_hour_price=-1)
    with pytest.raises(ValidationError):  # model_copy skips validation; compute_roi re-validates
        compute_roi(a.model_copy(update={"monthly_visitors": -5}), effect(0.001))
    with pytest.raises(ValidationError):
        a.with_updates(no_such_field=1)


def test_yaml_roi_block_still_loads():
    from pathlib import Path

    import yaml

    block = yaml.safe_load(
        Path(__file__).parents[1].joinpath("experiments/catalog-interleaved.yaml").read_text()
    )["roi"]
    a = RoiAssumptions.model_validate(block)
    assert a.content_refresh_months is None
    assert compute_roi(a, effect(0.001, 0.0005))["status"] == "ok"


def test_payback_is_not_an_early_crossing_that_is_lost_again() -> None:
    """A month-0 content saving above the fine-tuning cost must not read as payback when losses follow."""
    a = RoiAssumptions(monthly_visitors=1000, content_hours_saved_per_page=1, pages=10, hourly_rate=50,
                       finetune_gpu_hours=10, gpu_hour_price=2, monthly_operations_cost=400, horizon_months=12)
    losing = compute_roi(a, EffectInput(0.05, 0.0, 0.0))
    assert hand(a, 0.0)["payback"] is None
    assert losing["point"]["payback_months"] is None
    dear = a.model_copy(update={"finetune_gpu_hours": 1000})  # month 0 deep in the red, then profits
    slow = compute_roi(dear, EffectInput(0.05, 0.003, 0.0))
    expected = hand(dear, 0.003)["payback"]
    assert expected is not None and expected > 0
    assert slow["point"]["payback_months"] == expected
