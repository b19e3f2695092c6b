"""ROI engine: every formula against a hand computation, the Monte Carlo against closed forms,
shrinkage, ranges, the "no misleading figures" rules, old keys, determinism, JSON safety, the API."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import integrate
from scipy.stats import norm

from armor_ab.roi.assumptions import DeprecatedAssumptionWarning, RoiAssumptions
from armor_ab.roi.engine import MIN_DRAWS, EffectInput, EffectPrior, compute_roi, prior_from_history, what_if
from armor_ab.roi.ranges import Range
from armor_ab.roi.shrinkage import DEFAULT_PRIOR, PRIOR_FLOOR_SD_REL, shrink

Z = norm.ppf(0.975)
NO_SHRINK = EffectPrior(1e6, "test: flat")  # tau >> se: the posterior is the measurement

# ---------------------------------------------------------------- an independent hand model


def hand(a: RoiAssumptions, lift: float) -> dict:
    """Costs, NPV and discounted payback by plain loops over months, written from docs/roi.md."""
    v = a.likely_values()
    variants = v["pages"] * v["generated_variants_per_page"]
    new_variants = v["new_pages_per_month"] * v["generated_variants_per_page"]
    run = v["finetune_gpu_hours"] * v["gpu_hour_price"]
    one_off = (v["engineering_cost"] + v["finetune_runs"] * run + variants * v["cost_per_generation"]
               + variants * v["review_minutes_per_page"] / 60 * v["reviewer_hourly_rate"])
    monthly = ((new_variants + v["on_demand_generations_per_1000_visitors"] * v["monthly_visitors"] / 1000)
               * v["cost_per_generation"]
               + new_variants * v["review_minutes_per_page"] / 60 * v["reviewer_hourly_rate"]
               + v["engineering_cost"] * v["maintenance_share_per_year"] / 12
               + v["retrains_per_year"] * run / 12 + v["storage_cdn_per_month"] + v["other_monthly_cost"])
    per_page = v["content_hours_saved_per_page"] * v["copywriting_hourly_rate"]
    save0 = v["pages"] * per_page if a.content_would_be_handwritten else 0.0
    save_m = v["new_pages_per_month"] * per_page if a.content_would_be_handwritten else 0.0
    margin1 = v["monthly_visitors"] * lift * v["inquiry_to_order"] * v["margin_per_order"]
    npv = pv_costs = cumulative = 0.0
    payback = None
    for t in range(a.horizon_months + 1):
        d = (1 + v["annual_discount_rate"]) ** (-t / 12)
        if t == 0:
            cash, cost = save0 - one_off, one_off
        else:
            cash = margin1 * v["effect_retention_per_month"] ** (t - 1) + save_m - monthly
            cost = monthly
        npv += cash * d
        pv_costs += cost * d
        cumulative += cash * d
        # Paid back at the first month from which the cumulative discounted cash never goes negative again.
        if cumulative < 0:
            payback = None
        elif payback is None:
            payback = t
    return {"one_off": one_off, "monthly": monthly, "npv": npv, "pv_costs": pv_costs, "payback": payback,
            "profit1": margin1 + save_m - monthly, "save0": save0}


def effect(lift: float, se: float = 0.0, baseline: float = 0.02, window: int = 3) -> EffectInput:
    return EffectInput(baseline_inquiries_per_visitor=baseline, lift_abs=lift, lift_abs_se=se, window_days=window)


def linear(a: RoiAssumptions) -> tuple[float, float]:
    """NPV = intercept + slope x lift (fixed assumptions), from the hand model."""
    intercept = hand(a, 0.0)["npv"]
    return intercept, (hand(a, 1e-3)["npv"] - intercept) / 1e-3


# ---------------------------------------------------------------- costs and cash flows: exact values


def test_literal_small_case():
    # One-off: engineering 1000; fine-tuning 2 runs x 10 h x $3 = 60; first generation 20 pages x 2
    # variants x $0.5 = 20; review 40 variants x 6 min / 60 x $50 = 200 -> 1280.
    # Monthly: generation (4 new x 2 + 10 per 1000 x 1000 visitors / 1000 = 18) x $0.5 = 9; review
    # 8 x 6 / 60 x 50 = 40; maintenance 1000 x 0.24 / 12 = 20; re-training 6 x 30 / 12 = 15; storage 7;
    # other 9 -> 100. Margin: 1000 visitors x 0.01 x 0.5 x $100 = 500/month. r = 0, H = 3:
    # NPV = -1280 + 3 x (500 - 100) = -80; PV of costs = 1280 + 300 = 1580.
    a = RoiAssumptions(
        monthly_visitors=1000, inquiry_to_order=0.5, margin_per_order=100, horizon_months=3, annual_discount_rate=0,
        engineering_cost=1000, finetune_gpu_hours=10, gpu_hour_price=3, finetune_runs=2, pages=20,
        generated_variants_per_page=2, cost_per_generation=0.5, review_minutes_per_page=6, reviewer_hourly_rate=50,
        new_pages_per_month=4, on_demand_generations_per_1000_visitors=10, maintenance_share_per_year=0.24,
        retrains_per_year=6, storage_cdn_per_month=7, other_monthly_cost=9,
    )  # fmt: skip
    r = compute_roi(a, effect(0.01), prior=NO_SHRINK)
    c = r["costs"]
    assert c["one_off"] == pytest.approx({"engineering": 1000, "fine_tuning": 60, "first_generation": 20,
                                          "review": 200})
    assert c["monthly"] == pytest.approx({"generation": 9, "review": 40, "maintenance": 20, "retraining": 15,
                                          "storage_cdn": 7, "other": 9})
    assert (c["one_off_total"], c["monthly_total"]) == (pytest.approx(1280), pytest.approx(100))
    assert c["pv_costs"] == pytest.approx(1580)
    assert c["savings"] == {"counted": False, "one_off": 0.0, "monthly": 0.0}
    assert r["npv"]["expected"] == pytest.approx(-80, rel=1e-9)
    assert r["incremental_profit_per_month"]["expected"] == pytest.approx(400, rel=1e-9)
    assert r["incremental_inquiries_per_month"]["expected"] == pytest.approx(10, rel=1e-9)
    assert r["payback"]["status"] == "not_within_horizon" and r["payback"]["prob_within_horizon"] == 0.0
    # Break-even: (1280 + 3 x 100) / (3 x 1000 x 0.5 x 100) = 0.010533 extra inquiries per visitor.
    assert r["break_even_lift_abs"] == pytest.approx(1580 / 150_000)
    assert r["break_even_lift_rel"] == pytest.approx(1580 / 150_000 / 0.02)
    # Savings counted: one-off 20 x 2 h x $40 = 1600, monthly 4 x 80 = 320.
    s = compute_roi(a.with_updates(content_would_be_handwritten=True, content_hours_saved_per_page=2,
                                   copywriting_hourly_rate=40), effect(0.01), prior=NO_SHRINK)
    assert s["costs"]["savings"] == {"counted": True, "one_off": 1600.0, "monthly": 320.0}
    assert s["npv"]["expected"] == pytest.approx(-80 + 1600 + 3 * 320)


HANDWRITTEN = RoiAssumptions(content_would_be_handwritten=True, pages=400, content_hours_saved_per_page=2)


@pytest.mark.parametrize(
    ("a", "lift"),
    [
        (RoiAssumptions(), 0.001),
        (RoiAssumptions(), 0.00002),  # costs exceed the margin: never paid back
        (RoiAssumptions(annual_discount_rate=0.25, horizon_months=36), 0.00003),
        (RoiAssumptions(effect_retention_per_month=0.8), 0.0004),  # the effect fades
        (RoiAssumptions(on_demand_generations_per_1000_visitors=200, cost_per_generation=0.05), 0.001),
        (HANDWRITTEN, 0.0001),
    ],
)
def test_zero_se_matches_hand_loops(a, lift):
    want = hand(a, lift)
    r = compute_roi(a, effect(lift), prior=NO_SHRINK)
    assert r["effect"]["shrunk_lift_abs"] == pytest.approx(lift, rel=1e-12)
    assert r["costs"]["one_off_total"] == pytest.approx(want["one_off"], rel=1e-12)
    assert r["costs"]["monthly_total"] == pytest.approx(want["monthly"], rel=1e-12)
    assert r["costs"]["pv_costs"] == pytest.approx(want["pv_costs"], rel=1e-12)
    # With no sampling error and no ranges every draw is the hand value.
    assert r["npv"]["expected"] == pytest.approx(want["npv"], rel=1e-9)
    assert r["npv"]["ci"] == pytest.approx([want["npv"], want["npv"]], rel=1e-9)
    assert r["point"]["npv"] == pytest.approx(want["npv"], rel=1e-9)
    assert r["incremental_profit_per_month"]["expected"] == pytest.approx(want["profit1"], rel=1e-9)
    assert r["prob_npv_positive"] == (1.0 if want["npv"] > 0 else 0.0)
    assert r["expected_loss"] == pytest.approx(max(0.0, -want["npv"]), rel=1e-9, abs=1e-9)
    pay = r["payback"]
    if want["save0"] >= want["one_off"]:
        assert pay["status"] == "no_upfront_investment" and pay["median_months"] is None
    elif want["payback"] is None:
        assert pay["status"] == "not_within_horizon" and pay["median_months"] is None
        assert pay["prob_within_horizon"] == 0.0
    else:
        assert pay["status"] == "ok" and pay["median_months"] == want["payback"] and pay["prob_within_horizon"] == 1.0


def test_a_decaying_effect_can_pay_back_and_lose_it_again():
    # A strong first month that fades fast while the running costs stay: the cumulative discounted
    # cash crosses zero and falls back below it, so the hand loop's "stays >= 0" says never.
    a = RoiAssumptions(effect_retention_per_month=0.3, other_monthly_cost=3_000, horizon_months=24)
    lift = 0.002
    want = hand(a, lift)
    cash1 = -want["one_off"] + (want["profit1"]) * 1.08 ** (-1 / 12)
    assert cash1 > 0 and want["payback"] is None and want["npv"] < 0
    r = compute_roi(a, effect(lift), prior=NO_SHRINK)
    assert r["payback"]["status"] == "not_within_horizon"


def test_monthly_effect_uses_new_visitors_times_the_window_lift():
    """The unit fix: extra inquiries per month = monthly new visitors x lift per visitor in the window.

    Nothing about the test's length enters: the same per-visitor lift from a 3-day or a 7-day
    window read over a test of any length prices the same way (the window is the lift's definition).
    """
    a = RoiAssumptions(monthly_visitors=80_000)
    r3 = compute_roi(a, effect(0.002, window=3), prior=NO_SHRINK)
    r7 = compute_roi(a, effect(0.002, window=7), prior=NO_SHRINK)
    assert r3["incremental_inquiries_per_month"]["expected"] == pytest.approx(160, rel=1e-12)
    assert r3["npv"] == r7["npv"]
    assert r3["effect"]["window_days"] == 3 and "within 3 days of first exposure" in " ".join(r3["notes"])


# ---------------------------------------------------------------- shrinkage and the prior


@pytest.mark.parametrize(("lift", "se", "baseline", "sd_rel"), [
    (0.003, 0.0012, 0.02, 0.1), (-0.001, 0.002, 0.05, 0.05), (0.004, 0.0001, 0.03, 0.2)])
def test_shrinkage_is_the_normal_normal_posterior(lift, se, baseline, sd_rel):
    tau = sd_rel * baseline
    precision = 1 / se**2 + 1 / tau**2
    mean, sd = (lift / se**2) / precision, math.sqrt(1 / precision)  # the textbook form
    post = shrink(lift, se, baseline, EffectPrior(sd_rel))
    assert post.mean == pytest.approx(mean, rel=1e-12) and post.sd == pytest.approx(sd, rel=1e-12)
    assert post.shrinkage == pytest.approx(se**2 / (se**2 + tau**2), rel=1e-12)
    r = compute_roi(RoiAssumptions(), effect(lift, se, baseline), prior=EffectPrior(sd_rel, "history", 12))
    e = r["effect"]
    assert e["shrunk_lift_abs"] == pytest.approx(mean, rel=1e-12)
    assert e["shrunk_lift_abs_sd"] == pytest.approx(sd, rel=1e-12)
    assert e["shrunk_lift_rel"] == pytest.approx(mean / baseline, rel=1e-12)
    assert e["shrunk_ci_abs"] == pytest.approx([mean - Z * sd, mean + Z * sd], rel=1e-12)
    assert e["shrinkage"] == pytest.approx(post.shrinkage)
    assert e["prior"] == {"mean_rel": 0.0, "sd_rel": sd_rel, "source": "history", "n_experiments": 12,
                          "sd_abs": pytest.approx(tau), "applied": True, "reason": None}
    assert abs(e["shrunk_lift_abs"]) < abs(lift)


def test_default_prior_and_unshrinkable_cases():
    r = compute_roi(RoiAssumptions(), effect(0.003, 0.0012))
    assert r["effect"]["prior"]["sd_rel"] == DEFAULT_PRIOR.sd_rel == 0.1
    assert r["effect"]["prior"]["source"] == "default"
    assert shrink(0.003, 0.0, 0.02, DEFAULT_PRIOR).mean == 0.003  # no noise: nothing to shrink
    zero = compute_roi(RoiAssumptions(), effect(0.003, 0.001, baseline=0.0))
    assert zero["effect"]["prior"]["applied"] is False and zero["effect"]["shrunk_lift_abs"] == 0.003
    assert zero["break_even_lift_rel"] is None and zero["effect"]["lift_rel"] is None
    assert any("No shrinkage" in n for n in zero["notes"])
    with pytest.raises(ValueError):
        EffectPrior(0.0)
    with pytest.raises(ValueError):
        EffectPrior(float("nan"))


def test_prior_from_history_is_the_method_of_moments():
    past = [(0.05, 0.02), (-0.03, 0.04), (0.12, 0.03), (0.01, 0.01), (0.08, 0.05)]
    want = math.sqrt(np.mean([x * x - s * s for x, s in past]))
    p = prior_from_history(past)
    assert p.sd_rel == pytest.approx(want, rel=1e-12) and p.source == "history" and p.n_experiments == 5
    # Noise explains everything: the floor, not zero.
    noisy = prior_from_history([(0.01, 0.05), (-0.02, 0.06), (0.0, 0.04)])
    assert noisy.sd_rel == PRIOR_FLOOR_SD_REL
    # Unusable pairs are skipped; too few usable ones give the default back, saying so.
    few = prior_from_history([(0.05, 0.02), (float("nan"), 0.1), (0.1, -1.0)])
    assert few.sd_rel == DEFAULT_PRIOR.sd_rel and few.source.startswith("default") and few.n_experiments == 1
    # A prior from history changes the shrinkage the way the formula says.
    e = effect(0.003, 0.0012)
    assert compute_roi(RoiAssumptions(), e, prior=p)["effect"]["shrunk_lift_abs"] == pytest.approx(
        shrink(0.003, 0.0012, 0.02, p).mean)


# ---------------------------------------------------------------- Monte Carlo against closed forms


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_monte_carlo_matches_the_normal_closed_form(seed):
    a, n = RoiAssumptions(), 20_000
    lift, se = 0.0004, 0.0003
    post = shrink(lift, se, 0.02, DEFAULT_PRIOR)
    intercept, slope = linear(a)
    mean, sd = intercept + slope * post.mean, slope * post.sd  # NPV ~ Normal(mean, sd^2)
    r = compute_roi(a, effect(lift, se), draws=n, seed=seed)

    q_se = math.sqrt(0.025 * 0.975 / n) / norm.pdf(Z) * sd  # se of a sample 2.5% quantile
    assert r["npv"]["expected"] == pytest.approx(mean, abs=4 * sd / math.sqrt(n))
    assert r["npv"]["median"] == pytest.approx(mean, abs=4 * 1.2533 * sd / math.sqrt(n))
    assert r["npv"]["sd"] == pytest.approx(sd, rel=4 / math.sqrt(2 * n))
    assert r["npv"]["ci"][0] == pytest.approx(mean - Z * sd, abs=4 * q_se)
    assert r["npv"]["ci"][1] == pytest.approx(mean + Z * sd, abs=4 * q_se)

    p = norm.cdf(mean / sd)
    assert r["prob_npv_positive"] == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / n))
    # Expected loss E[max(0, -NPV)] = sd phi(mean/sd) - mean Phi(-mean/sd) ...
    closed = sd * norm.pdf(mean / sd) - mean * norm.cdf(-mean / sd)
    # ... which a numerical integral of the normal density agrees with.
    quad, _ = integrate.quad(lambda x: -x * norm.pdf(x, mean, sd), mean - 12 * sd, 0.0)
    assert quad == pytest.approx(closed, rel=1e-8)
    loss_sd = math.sqrt(np.mean(np.maximum(0, -np.random.default_rng(9).normal(mean, sd, 200_000)) ** 2))
    assert r["expected_loss"] == pytest.approx(closed, abs=4 * loss_sd / math.sqrt(n))
    assert r["max_expected_loss"] == a.max_expected_loss == 2_000.0

    # Monthly profit is linear too: sd = visitors x inquiry-to-order x margin x posterior sd.
    profit = r["incremental_profit_per_month"]
    assert profit["se"] == pytest.approx(50_000 * 0.2 * 1_500 * post.sd, rel=4 / math.sqrt(2 * n))
    assert profit["ci"][1] - profit["ci"][0] == pytest.approx(2 * Z * profit["se"], rel=0.05)

    # No decay and a positive monthly net: the cumulative discounted cash rises, so "paid back within
    # the horizon" is the event NPV >= 0, the same draws.
    assert r["payback"]["prob_within_horizon"] == r["prob_npv_positive"]


def test_expected_loss_against_quad_when_the_effect_is_uncertain_both_ways():
    a = RoiAssumptions()
    lift, se = 0.0001, 0.0004  # NPV straddles zero
    post = shrink(lift, se, 0.02, DEFAULT_PRIOR)
    intercept, slope = linear(a)
    mean, sd = intercept + slope * post.mean, slope * post.sd
    quad, _ = integrate.quad(lambda x: max(0.0, -x) * norm.pdf(x, mean, sd), mean - 12 * sd, mean + 12 * sd,
                             points=[0.0])
    r = compute_roi(a, effect(lift, se), draws=200_000, seed=4)
    assert 0.2 < r["prob_npv_positive"] < 0.8
    assert r["expected_loss"] == pytest.approx(quad, rel=0.02)


def test_histogram_covers_every_draw():
    r = compute_roi(RoiAssumptions(), effect(0.0005, 0.0004), draws=MIN_DRAWS, seed=3)
    h = r["histogram"]
    assert h["of"] == "npv"
    assert len(h["counts"]) == 40 and len(h["bin_edges"]) == 41 and sum(h["counts"]) == MIN_DRAWS
    assert all(b > a for a, b in zip(h["bin_edges"], h["bin_edges"][1:], strict=False))
    assert h["bin_edges"][0] <= r["npv"]["ci"][0] and h["bin_edges"][-1] >= r["npv"]["ci"][1]


def test_seeded_determinism():
    a = RoiAssumptions(margin_per_order={"low": 1000, "likely": 1500, "high": 2500})
    e = effect(0.0005, 0.0004)
    first = compute_roi(a, e, seed=11)
    assert compute_roi(a, e, seed=11) == first
    assert json.dumps(compute_roi(a, e, seed=11), sort_keys=True) == json.dumps(first, sort_keys=True)
    assert compute_roi(a, e, seed=12)["npv"]["expected"] != first["npv"]["expected"]


# ---------------------------------------------------------------- break-even


def test_break_even_gives_zero_npv():
    a = RoiAssumptions(effect_retention_per_month=0.9)
    r = compute_roi(a, effect(0.0005, 0.0002))
    be = r["break_even_lift_abs"]
    assert hand(a, be)["npv"] == pytest.approx(0, abs=1e-6)
    assert r["break_even_lift_rel"] == pytest.approx(be / 0.02)
    # Savings larger than every cost: pays even with no effect, a negative break-even.
    rich = compute_roi(HANDWRITTEN.with_updates(pages=4_000), effect(0.0005, 0.0002))
    assert rich["break_even_lift_abs"] < 0
    # A lift that earns nothing has no break-even.
    none = compute_roi(RoiAssumptions(margin_per_order=0), effect(0.0005, 0.0002))
    assert none["break_even_lift_abs"] is None and none["break_even_lift_rel"] is None


# ---------------------------------------------------------------- no misleading figures


def test_roi_pct_hidden_when_the_investment_is_not_material():
    # The demo's old cost base: fine-tuning only (~$96), no engineering.
    a = RoiAssumptions(engineering_cost=0, finetune_runs=1, pages=0, new_pages_per_month=0, retrains_per_year=0,
                       storage_cdn_per_month=0)
    r = compute_roi(a, effect(0.003, 0.0005))
    assert r["costs"]["one_off_total"] == pytest.approx(96) and 96 < a.material_investment
    assert r["roi_pct"] == {"shown": False, "reason": "investment_not_material", "expected": None,
                            "ci": [None, None], "text": r["roi_pct"]["text"]}
    assert "$96" in r["roi_pct"]["text"] and "$5,000" in r["roi_pct"]["text"]
    # Lowering the threshold shows it.
    assert compute_roi(a.with_updates(material_investment=50), effect(0.003, 0.0005))["roi_pct"]["shown"]


def test_roi_pct_hidden_when_the_shrunk_effect_is_within_one_se():
    r = compute_roi(RoiAssumptions(), effect(0.0004, 0.0006))
    e = r["effect"]
    assert abs(e["shrunk_lift_abs"]) < e["shrunk_lift_abs_sd"]
    assert r["roi_pct"]["shown"] is False and r["roi_pct"]["reason"] == "effect_within_1_se"
    assert r["roi_pct"]["expected"] is None and r["roi_pct"]["ci"] == [None, None]


def test_roi_pct_shown_is_npv_over_pv_costs():
    a = RoiAssumptions()
    r = compute_roi(a, effect(0.003, 0.0006))
    assert r["roi_pct"]["shown"] is True and r["roi_pct"]["reason"] is None
    pv = hand(a, 0.0)["pv_costs"]
    assert r["roi_pct"]["expected"] == pytest.approx(r["npv"]["expected"] / pv * 100, rel=1e-9)
    assert r["roi_pct"]["ci"] == pytest.approx([x / pv * 100 for x in r["npv"]["ci"]], rel=1e-9)


def test_payback_with_no_upfront_investment_is_never_zero_months():
    free = RoiAssumptions(engineering_cost=0, finetune_runs=0, pages=0)
    r = compute_roi(free, effect(0.003, 0.0005))
    assert r["costs"]["one_off_total"] == 0
    assert r["payback"] == {"status": "no_upfront_investment", "median_months": None, "prob_within_horizon": None,
                            "text": "no up-front investment entered"}
    covered = compute_roi(HANDWRITTEN.with_updates(pages=4_000), effect(0.003, 0.0005))
    assert covered["payback"]["status"] == "no_upfront_investment"
    assert covered["payback"]["text"].startswith("no net up-front investment")
    assert "0 month" not in json.dumps([r["payback"], covered["payback"]])


def test_payback_text_and_the_chance_within_the_horizon():
    a = RoiAssumptions(engineering_cost=50_000)
    r = compute_roi(a, effect(0.0008, 0.0003))
    pay = r["payback"]
    assert pay["status"] == "ok" and pay["median_months"] == float(round(pay["median_months"]))
    assert pay["text"].startswith(f"{pay['median_months']:.0f} months (median, discounted)")
    assert "within 12 months" in pay["text"]
    never = compute_roi(a, effect(0.0001, 0.0001))
    assert never["payback"]["status"] == "not_within_horizon" and never["payback"]["median_months"] is None
    assert never["payback"]["text"].startswith("not within 12 months")


# ---------------------------------------------------------------- ranges


def test_ranges_validate_and_dump():
    a = RoiAssumptions(margin_per_order={"low": 1000, "likely": 1500, "high": 2500})
    assert a.margin_per_order == Range(low=1000, likely=1500, high=2500)
    assert a.model_dump()["margin_per_order"] == {"low": 1000.0, "likely": 1500.0, "high": 2500.0}
    assert a.likely_values()["margin_per_order"] == 1500.0 and list(a.ranges()) == ["margin_per_order"]
    assert RoiAssumptions(margin_per_order={"low": 5, "likely": 5, "high": 5}).ranges() == {}  # degenerate: fixed
    with pytest.raises(ValidationError, match="low <= likely <= high"):
        RoiAssumptions(margin_per_order={"low": 2000, "likely": 1500, "high": 2500})
    with pytest.raises(ValidationError, match="must be <= 1"):  # bounds apply to every part
        RoiAssumptions(inquiry_to_order={"low": 0.1, "likely": 0.2, "high": 1.5})
    with pytest.raises(ValidationError, match="must be >= 0"):
        RoiAssumptions(engineering_cost={"low": -1, "likely": 2, "high": 3})
    with pytest.raises(ValidationError):
        RoiAssumptions(margin_per_order={"low": 1, "likely": 2})  # all three or a number
    with pytest.raises(ValidationError):
        RoiAssumptions(horizon_months={"low": 6, "likely": 12, "high": 24})  # not rangeable
    with pytest.raises(ValidationError):
        RoiAssumptions(margin_per_order=float("inf"))


def test_pert_draws_have_the_pert_mean_and_stay_in_range():
    r = Range(low=10, likely=20, high=60)
    x = r.draw(np.random.default_rng(0), 200_000)
    assert x.min() >= 10 and x.max() <= 60
    assert x.mean() == pytest.approx((10 + 4 * 20 + 60) / 6, abs=0.05) == pytest.approx(r.mean, abs=0.05)
    # PERT variance with lambda 4: (mean - low)(high - mean) / 7.
    assert x.var() == pytest.approx((r.mean - 10) * (60 - r.mean) / 7, rel=0.02)


def test_ranges_widen_the_spread_and_lead_the_tornado():
    fixed = RoiAssumptions()
    ranged = fixed.with_updates(margin_per_order={"low": 500, "likely": 1500, "high": 3000},
                                engineering_cost={"low": 10_000, "likely": 20_000, "high": 80_000})
    e = effect(0.003, 0.0003)
    rf, rr = compute_roi(fixed, e), compute_roi(ranged, e)
    assert rr["npv"]["sd"] > 1.5 * rf["npv"]["sd"]
    assert rr["ranged_assumptions"] == ["margin_per_order", "engineering_cost"]
    assert any("PERT" in n and "Margin per order" in n for n in rr["notes"])
    by = {i["name"]: i for i in rr["sensitivity"]["items"]}
    m = by["margin_per_order"]
    assert m["ranged"] is True and m["basis"] == "range" and (m["low_value"], m["high_value"]) == (500, 3000)
    post = shrink(0.003, 0.0003, 0.02, DEFAULT_PRIOR)
    assert m["npv_high"] == pytest.approx(hand(fixed.with_updates(margin_per_order=3000), post.mean)["npv"])
    assert by["engineering_cost"]["npv_low"] == pytest.approx(
        hand(fixed.with_updates(engineering_cost=10_000), post.mean)["npv"])
    # Fixed ones keep the default +/-25% swing and say so.
    v = by["monthly_visitors"]
    assert v["ranged"] is False and (v["low_value"], v["high_value"]) == (37_500, 62_500) and "25%" in v["basis"]
    # The ranged margin now swings more than the fixed visitors (same lever, wider range).
    assert m["swing"] > v["swing"]
    # The expected NPV with ranges is the mean over joint draws: the PERT mean of the margin lifts it.
    assert rr["npv"]["expected"] > rr["point"]["npv"]


# ---------------------------------------------------------------- sensitivity


def test_tornado_sorted_brackets_base_and_moves_the_effect_to_its_posterior_interval():
    a = RoiAssumptions(inquiry_to_order=0.9, other_monthly_cost=100)
    lift, se = 0.0005, 0.0004
    s = compute_roi(a, effect(lift, se))["sensitivity"]
    post = shrink(lift, se, 0.02, DEFAULT_PRIOR)
    assert s["metric"] == "npv" and s["base"] == pytest.approx(hand(a, post.mean)["npv"], rel=1e-9)
    swings = [round(i["swing"], 6) for i in s["items"]]
    assert swings == sorted(swings, reverse=True)
    for item in s["items"]:
        lo, hi = sorted([item["npv_low"], item["npv_high"]])
        assert lo - 1e-6 <= s["base"] <= hi + 1e-6, item["name"]
    by = {i["name"]: i for i in s["items"]}
    eff = by["effect"]
    assert (eff["low_value"], eff["high_value"]) == pytest.approx((post.mean - Z * post.sd, post.mean + Z * post.sd))
    assert eff["npv_low"] == pytest.approx(hand(a, post.mean - Z * post.sd)["npv"], rel=1e-9)
    assert by["inquiry_to_order"]["high_value"] == 1.0  # a share stays a share
    assert by["annual_discount_rate"]["low_value"] == pytest.approx(0.03)
    assert (by["horizon_months"]["low_value"], by["horizon_months"]["high_value"]) == (9, 15)
    assert by["horizon_months"]["npv_high"] == pytest.approx(hand(a.with_updates(horizon_months=15),
                                                                  post.mean)["npv"], rel=1e-9)
    # Inputs that do not enter are left out: savings not counted, fixed values of 0.
    assert "copywriting_hourly_rate" not in by and "on_demand_generations_per_1000_visitors" not in by
    assert "material_investment" not in by and "max_expected_loss" not in by
    assert "copywriting_hourly_rate" in {i["name"] for i in compute_roi(
        HANDWRITTEN, effect(lift, se))["sensitivity"]["items"]}


# ---------------------------------------------------------------- old keys, what-if, misuse, JSON


OLD_BLOCK = {"monthly_visitors": 50000, "inquiry_to_order": 0.2, "margin_per_order": 1500,
             "content_hours_saved_per_page": 0.5, "pages": 40, "hourly_rate": 60, "finetune_gpu_hours": 38.4,
             "gpu_hour_price": 2.5, "cost_per_1000_generations": 0.8, "generations_per_month": 5000,
             "monthly_operations_cost": 500, "horizon_months": 12, "annual_discount_rate": 0.08}


def test_old_yaml_keys_still_load_with_a_warning():
    with pytest.warns(DeprecatedAssumptionWarning, match="hourly_rate -> copywriting_hourly_rate"):
        a = RoiAssumptions.model_validate(OLD_BLOCK)
    assert a.copywriting_hourly_rate == 60 and a.cost_per_generation == pytest.approx(0.0008)
    assert a.on_demand_generations_per_1000_visitors == pytest.approx(100)  # 5000 a month / 50,000 visitors
    assert a.other_monthly_cost == 500 and a.content_would_be_handwritten is False
    # Monthly generation cost is what the old per-1000 price charged: 5000 x 0.8 / 1000 = 4, plus the new pages.
    assert compute_roi(a, effect(0.001))["costs"]["monthly"]["generation"] == pytest.approx(4 + 5 * 0.0008)
    with pytest.warns(DeprecatedAssumptionWarning):
        gpu = RoiAssumptions.model_validate({"serving_gpu_hours_per_month": 100, "content_refresh_months": 3,
                                             "cost_per_1000_generations": None})
    assert gpu.other_monthly_cost == 250 and gpu.on_demand_generations_per_1000_visitors == 0
    assert gpu.cost_per_generation == 0
    # The new keys win over mapped old ones, and a dump has only new keys (no warning when read back).
    with pytest.warns(DeprecatedAssumptionWarning):
        both = RoiAssumptions.model_validate({"hourly_rate": 10, "copywriting_hourly_rate": 70})
    assert both.copywriting_hourly_rate == 70
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RoiAssumptions.model_validate(both.model_dump())


def test_the_demo_yaml_roi_block_loads_with_its_ranges():

    import yaml

    from armor_ab.assets import DEMO_EXPERIMENT

    block = yaml.safe_load(DEMO_EXPERIMENT.read_text())["roi"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # new keys only
        a = RoiAssumptions.model_validate(block)
    assert set(a.ranges()) == {"monthly_visitors", "margin_per_order", "engineering_cost"}
    assert compute_roi(a, effect(0.003, 0.001))["status"] == "ok"


def test_what_if_equals_edited_assumptions():
    a, e = RoiAssumptions(), effect(0.001, 0.0005)
    assert what_if(a, e, pages=400, seed=5) == compute_roi(a.with_updates(pages=400), e, seed=5)
    assert what_if(a, e, margin_per_order=3000)["npv"]["expected"] > compute_roi(a, e)["npv"]["expected"]


def test_missing_window_warns_and_says_so():
    with pytest.warns(DeprecationWarning, match="window_days"):
        e = EffectInput(0.02, 0.001, 0.0005)
    r = compute_roi(RoiAssumptions(), e)
    assert r["effect"]["window_days"] is None and any("window_days" in n for n in r["notes"])


def test_misuse_raises():
    a = RoiAssumptions()
    with pytest.raises(ValueError):
        compute_roi(a, effect(0.001), draws=MIN_DRAWS - 1)
    with pytest.raises(ValueError):
        compute_roi(a, effect(0.001), draws=20_000.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        compute_roi(a, effect(0.001), seed=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        compute_roi(a, effect(0.001), prior=0.1)  # type: ignore[arg-type]
    assert compute_roi(a, effect(0.001, 1e-4), draws=np.int64(MIN_DRAWS), seed=np.int64(3)) == compute_roi(
        a, effect(0.001, 1e-4), draws=MIN_DRAWS, seed=3)
    for bad in [(0.02, 0.001, -0.1, 3), (0.02, float("nan"), 0.1, 3), (-0.02, 0.001, 0.1, 3), (0.02, 0.001, 0.1, 0),
                (0.02, 0.001, 0.1, 2.5), (0.02, 0.001, 0.1, True)]:
        with pytest.raises(ValueError):
            EffectInput(*bad)
    with pytest.raises(TypeError):
        compute_roi({"pages": 3}, effect(0.001))  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        a.with_updates(gpu_hour_price=-1)
    with pytest.raises(ValidationError):  # model_copy skips validation; compute_roi re-validates
        compute_roi(a.model_copy(update={"monthly_visitors": -5}), effect(0.001))
    with pytest.raises(ValidationError):
        a.with_updates(no_such_field=1)
    with pytest.raises(ValidationError):
        a.with_updates(max_expected_loss=float("nan"))


@pytest.mark.parametrize(
    ("a", "e"),
    [
        (RoiAssumptions(), effect(0.001, 0.0005)),
        (RoiAssumptions(), effect(-0.001, 0.0)),  # never pays back: None, not inf
        (RoiAssumptions(), effect(0.0, 0.0, baseline=0.0)),  # no baseline: relative figures None
        (RoiAssumptions(margin_per_order=0), effect(0.001, 0.0005)),  # lift earns nothing: no break-even
        (RoiAssumptions(engineering_cost=0, finetune_runs=0, pages=0, new_pages_per_month=0, retrains_per_year=0,
                        storage_cdn_per_month=0, maintenance_share_per_year=0), effect(0.0, 0.0)),  # no costs at all
        (RoiAssumptions(margin_per_order={"low": 0, "likely": 0, "high": 10}), effect(0.001, 0.001)),
    ],
)
def test_json_safe(a, e):
    r = compute_roi(a, e)
    text = json.dumps(r, allow_nan=False)
    assert json.loads(text) == r
    for key in ("status", "effect", "npv", "prob_npv_positive", "expected_loss", "max_expected_loss",
                "break_even_lift_abs", "break_even_lift_rel", "payback", "roi_pct", "incremental_profit_per_month",
                "costs", "horizon_months", "histogram", "sensitivity", "assumptions", "notes"):
        assert key in r, key
    assert set(r["npv"]) >= {"expected", "median", "ci"} and set(r["incremental_profit_per_month"]) == {
        "expected", "se", "ci"}
    assert set(r["payback"]) == {"status", "median_months", "prob_within_horizon", "text"}
    assert set(r["roi_pct"]) >= {"shown", "reason", "expected", "ci"}
    assert set(r["costs"]) >= {"one_off", "monthly", "one_off_total", "monthly_total", "pv_costs"}
    assert {"window_days", "shrunk_lift_abs", "shrunk_lift_abs_sd", "shrinkage", "prior"} <= set(r["effect"])


# ---------------------------------------------------------------- POST /v1/roi


def test_post_roi_takes_the_new_assumptions_effect_and_prior(tmp_path):
    from fastapi.testclient import TestClient

    from armor_ab.api.app import create_app
    from armor_ab.services.state import ServerSettings
    from tests.helpers.platform import seed_database

    db = tmp_path / "roi.duckdb"
    keys = seed_database(db)
    auth = {"Authorization": f"Bearer {keys['read']}"}
    a = RoiAssumptions(margin_per_order={"low": 1000, "likely": 1500, "high": 2000})
    e = effect(0.003, 0.001)
    with TestClient(create_app(ServerSettings(db_path=db))) as client:
        body = {"assumptions": a.model_dump(mode="json"), "effect": {**e.__dict__}, "draws": 10_000, "seed": 2}
        got = client.post("/v1/roi", json=body, headers=auth)
        assert got.status_code == 200, got.text
        assert got.json() == json.loads(json.dumps(compute_roi(a, e, draws=10_000, seed=2)))
        # The result's effect block posts back as it is, with its prior (extra keys ignored).
        prior = EffectPrior(0.05, "history", 8)
        first = compute_roi(a, e, draws=10_000, prior=prior)
        again = client.post("/v1/roi", json={"assumptions": first["assumptions"], "effect": first["effect"],
                                             "draws": 10_000}, headers=auth).json()
        assert again["effect"]["prior"]["sd_rel"] == 0.05 and again["npv"] == first["npv"]
        # A top-level prior wins over the effect's.
        top = client.post("/v1/roi", json={**body, "prior": {"sd_rel": 0.2}}, headers=auth).json()
        assert top["effect"]["prior"]["sd_rel"] == 0.2 and top["effect"]["prior"]["source"] == "request"
        # Bad input: 422 in the one error shape, naming the field.
        bad_range = {**body, "assumptions": {"margin_per_order": {"low": 3, "likely": 2, "high": 4}}}
        r = client.post("/v1/roi", json=bad_range, headers=auth)
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
        assert r.json()["error"]["field"].startswith("assumptions.margin_per_order")
        for bad in ({**body, "effect": {**body["effect"], "window_days": 0}},
                    {**body, "prior": {"sd_rel": -1}},
                    {**body, "assumptions": {"inquiry_to_order": 1.5}}):
            r = client.post("/v1/roi", json=bad, headers=auth)
            assert r.status_code == 422 and set(r.json()["error"]) >= {"code", "message", "field"}, r.text
