"""Ship / keep running / stop from the report JSON: every branch, its pinned text, SRM, the modes."""

from __future__ import annotations

import copy
import itertools
import json

import pytest

from armor_ab.reporting.verdict import decide_report


def entry(lo: float, hi: float, lift: float | None = None, *, fixed: list | None = None, status: str = "ok",
          metric: str = "dwell_time_per_view") -> dict:
    """A primary results entry whose always-valid decision interval is [lo, hi]."""
    lift = (lo + hi) / 2 if lift is None else lift
    fixed = fixed if fixed is not None else [lift - (hi - lo) / 3, lift + (hi - lo) / 3]
    return {
        "metric": metric, "variant": "armor", "lift_rel": lift, "status": status,
        "ci_rel": fixed, "sequential": {"ci_rel": [lo, hi]},
        "decision": {"sequential_alpha": 0.05, "sequential_ci_rel": [lo, hi], "fixed_alpha": 0.05,
                     "fixed_ci_rel": fixed},
    }


def guard(state: str, lo: float, hi: float, margin: float = 0.02) -> dict:
    return {"metric": "inquiry_rate", "variant": "armor", "lift_rel": (lo + hi) / 2, "status": "ok",
            "guardrail": {"margin": margin, "state": state, "passed": state == "passed",
                          "sequential_lower": lo, "sequential_upper": hi}}


def roi(npv: float = 84_000.0, p: float = 0.97, loss: float = 300.0, tolerance: float = 1_000.0,
        status: str = "ok") -> dict:
    return {"status": status, "npv": {"expected": npv, "ci": [npv - 50_000, npv + 50_000]},
            "prob_npv_positive": p, "expected_loss": loss, "max_expected_loss": tolerance,
            "break_even_lift_rel": 0.02, "horizon_months": 12}


def report(**kw) -> dict:
    """A report as decide_report reads it: a winning primary, one passing guardrail, clean data."""
    base = {
        "alpha": 0.05, "mde": 0.05, "analysis": {"mode": "sequential"},
        "primary_metric": "dwell_time_per_view", "primary_variant": "armor",
        "results": [entry(0.050, 0.113, 0.081), guard("passed", -0.01, 0.03)],
        "power": {"mde": 0.05, "days_remaining": 6.0, "reached": False},
        "runtime": {"days_elapsed": 9.0, "min_runtime_days": 7.0, "min_sample_met": True},
        "data_quality": {"clean": True, "checks": [{"name": "srm", "status": "ok", "message": "ok"}]},
        "srm": {"flag": False, "p_value": 0.8},
        "roi": roi(),
    }
    base.update(kw)
    return base


def call(rep: dict | None = None, **kw) -> dict:
    out = decide_report(rep if rep is not None else report(**kw))
    assert set(out) == {"decision", "reason", "headline", "reasons", "days_remaining"}
    assert out["reasons"] and all(isinstance(r, str) and r for r in out["reasons"])
    json.dumps(out, allow_nan=False)
    return out


def with_primary(e: dict, *rest: dict) -> list[dict]:
    return [e, *rest]


# ---------------------------------------------------------------- ship


def test_ship_headline_in_plain_words() -> None:
    out = call()
    assert (out["decision"], out["reason"]) == ("ship", "ship")
    assert out["headline"] == (
        "Ship the ARMOR pages: +8.1% dwell time (always-valid 95% CI +5.0% to +11.3%); expected 12-month NPV "
        "$84k, P(NPV > 0) 97%, expected loss if wrong $300"
    )
    assert out["days_remaining"] == 6.0
    assert any("Guardrail inquiry rate: within the 2% tolerance" in r for r in out["reasons"])


def test_ship_without_roi_block_says_so() -> None:
    out = call(roi=None)
    assert out["decision"] == "ship"
    assert out["headline"].endswith("; ROI not assessed")


def test_reproducible_from_the_json() -> None:
    rep = report()
    assert decide_report(json.loads(json.dumps(rep))) == decide_report(rep)


# ---------------------------------------------------------------- the money bar


def test_expected_loss_above_tolerance_keeps_running_then_stops() -> None:
    out = call(roi=roi(loss=5_000.0))
    assert (out["decision"], out["reason"]) == ("keep_running", "roi_unclear")
    assert out["headline"] == ("Keep running: +8.1% dwell time is real, but the expected loss $5.0k is above the "
                               "$1.0k tolerance; about 6 days left")
    done = call(roi=roi(loss=5_000.0), power={"mde": 0.05, "days_remaining": 0.0, "reached": True})
    assert (done["decision"], done["reason"]) == ("stop", "roi_unclear")
    assert done["headline"].startswith("Stop: +8.1% dwell time is real, but by the maximum duration")


def test_non_positive_npv_does_not_ship() -> None:
    assert call(roi=roi(npv=-1_000.0, p=0.45))["reason"] == "roi_unclear"
    out = call(roi=roi(npv=-20_000.0, p=0.05, loss=21_000.0))
    assert (out["decision"], out["reason"]) == ("stop", "does_not_pay")
    assert out["headline"] == ("Stop: +8.1% dwell time is real but does not pay: expected 12-month NPV -$20k, "
                               "P(NPV > 0) 5%, expected loss if wrong $21k")


def test_roi_not_assessable_yet() -> None:
    out = call(roi={"status": "too_few_units", "reason": "no visitor's 3-day window has closed yet"})
    assert (out["decision"], out["reason"]) == ("keep_running", "roi_unavailable")
    assert "no visitor's 3-day window" in out["reasons"][-1]


# ---------------------------------------------------------------- stop


def test_harm_stops() -> None:
    out = call(results=[entry(-0.06, -0.02, -0.04)])
    assert (out["decision"], out["reason"]) == ("stop", "harm")
    assert out["headline"] == "Stop: the ARMOR pages lower dwell time (-4.0%, always-valid 95% CI -6.0% to -2.0%)"


def test_guardrail_breach_stops_whatever_the_primary_says() -> None:
    for primary in (entry(0.05, 0.11), entry(-0.01, 0.05), entry(-0.06, -0.02)):
        out = call(results=[primary, guard("breached", -0.08, -0.03)])
        assert (out["decision"], out["reason"]) == ("stop", "guardrail")
        assert out["headline"] == "Stop: guardrail — the ARMOR pages hurt inquiry rate beyond its tolerance"
        assert "worse than the 2% tolerance (always-valid interval -8.0% to -3.0%)" in out["reasons"][0]


def test_pending_guardrail_blocks_ship_until_the_maximum_duration() -> None:
    results = [entry(0.05, 0.11, 0.08), guard("pending", -0.03, 0.01)]
    out = call(results=results)
    assert (out["decision"], out["reason"]) == ("keep_running", "guardrail_pending")
    assert out["headline"] == ("Keep running: +8.0% dwell time, but a guardrail is not yet shown safe; "
                               "about 6 days left")
    done = call(results=results, power={"mde": 0.05, "days_remaining": 0, "reached": True})
    assert (done["decision"], done["reason"]) == ("stop", "guardrail_not_shown")


def test_futility_stops_when_the_mde_is_ruled_out() -> None:
    out = call(results=[entry(-0.02, 0.03, 0.004)])
    assert (out["decision"], out["reason"]) == ("stop", "futility")
    assert out["headline"] == ("Stop: no clear effect — dwell time +0.4%, and the interval rules out the +5.0% we "
                               "planned to detect (always-valid 95% CI -2.0% to +3.0%)")
    # The MDE still inside the interval: not futile yet.
    assert call(results=[entry(-0.02, 0.06)])["decision"] == "keep_running"


def test_maximum_duration_under_the_plan_stops() -> None:
    out = call(results=[entry(-0.01, 0.07, 0.03)], power={"mde": 0.05, "days_remaining": 0.0, "reached": True})
    assert (out["decision"], out["reason"]) == ("stop", "max_duration")
    assert out["headline"] == ("Stop: no clear effect — maximum duration reached under the plan (dwell time +3.0%, "
                               "always-valid 95% CI -1.0% to +7.0%)")


def test_no_usable_primary() -> None:
    out = call(results=[entry(0.05, 0.11, status="zero_variance")])
    assert (out["decision"], out["reason"]) == ("keep_running", "no_usable_result")
    assert out["headline"] == "Keep running: no usable dwell time result yet; about 6 days left"
    done = call(results=[entry(0.05, 0.11, status="zero_variance")], power={"days_remaining": 0, "reached": True})
    assert done["decision"] == "stop"


# ---------------------------------------------------------------- keep running


def test_keep_running_reports_days() -> None:
    out = call(results=[entry(-0.01, 0.07, 0.03)], power={"mde": 0.05, "days_remaining": 9.2, "reached": False})
    assert (out["decision"], out["reason"]) == ("keep_running", "not_conclusive")
    assert out["days_remaining"] == 9.2
    assert out["headline"] == ("Keep running: dwell time +3.0% so far (always-valid 95% CI -1.0% to +7.0%), "
                               "not conclusive yet; about 9 days left")


def test_minimum_runtime_and_sample_hold_every_verdict() -> None:
    early = {"days_elapsed": 3.0, "min_runtime_days": 7.0, "min_sample_met": True}
    for primary in (entry(0.05, 0.11, 0.08), entry(-0.06, -0.02), entry(-0.02, 0.03)):
        out = call(results=[primary], runtime=early)
        assert (out["decision"], out["reason"]) == ("keep_running", "min_runtime")
    out = call(runtime=early)
    assert out["headline"] == ("Keep running: the minimum runtime is 7 days (3.0 so far); about 6 days left")
    small = {"days_elapsed": 9.0, "min_runtime_days": 7.0, "min_sample_met": False,
             "min_sample_words": "the minimum sample is 100 visitors per variant (armor 40)"}
    assert call(runtime=small)["headline"] == (
        "Keep running: the minimum sample is 100 visitors per variant (armor 40); about 6 days left")


# ---------------------------------------------------------------- modes


def test_fixed_mode_waits_for_the_horizon_then_reads_the_fixed_interval() -> None:
    rep = report(analysis={"mode": "fixed"})
    out = call(rep)
    assert (out["decision"], out["reason"]) == ("keep_running", "fixed_horizon")
    assert out["headline"] == "Keep running: fixed-horizon test, read once at the planned sample; about 6 days left"
    # At the horizon the fixed interval decides, even where the always-valid one would not.
    at = report(analysis={"mode": "fixed"}, power={"mde": 0.05, "days_remaining": 0, "reached": True},
                results=[entry(-0.01, 0.09, 0.04, fixed=[0.01, 0.07])])
    out = call(at)
    assert out["decision"] == "ship"
    assert "fixed-horizon 95% CI +1.0% to +7.0%" in out["headline"]
    lost = copy.deepcopy(at)
    lost["results"] = [entry(-0.01, 0.09, 0.04, fixed=[-0.01, 0.07])]
    assert call(lost)["reason"] == "max_duration"


def test_hybrid_reads_always_valid_before_the_horizon() -> None:
    rep = report(analysis={"mode": "hybrid"}, results=[entry(0.01, 0.09, 0.05, fixed=[-0.02, 0.12])])
    assert call(rep)["decision"] == "ship"
    at = report(analysis={"mode": "hybrid"}, power={"mde": 0.05, "days_remaining": 0, "reached": True},
                results=[entry(0.01, 0.09, 0.05, fixed=[-0.02, 0.12])])
    assert call(at)["reason"] == "max_duration"


# ---------------------------------------------------------------- SRM and data quality


SRM = {"flag": True, "p_value": 2e-6}
FAIL = {"clean": False, "checks": [{"name": "srm", "status": "fail", "message": "Sample ratio mismatch: …"}]}


def test_srm_overrides_ship() -> None:
    out = call(srm=SRM, data_quality=FAIL)
    assert out["decision"] == "keep_running"
    assert out["headline"] == ("Do not ship yet: +8.1% dwell time, but data quality fails (srm); "
                               "investigate before acting")
    assert "investigate assignment and tracking" in out["reasons"][0]


def test_srm_keeps_a_stop_and_still_says_investigate() -> None:
    out = call(srm=SRM, data_quality=FAIL, results=[entry(-0.06, -0.02)])
    assert out["decision"] == "stop"
    assert out["headline"].endswith("; also, the traffic split is off: investigate assignment and tracking")


def test_never_ship_with_srm_whatever_else() -> None:
    primaries = [entry(0.05, 0.11), entry(-0.06, -0.02), entry(-0.01, 0.07), entry(0.05, 0.1, status="x")]
    guards = [[], [guard("passed", 0, 0.1)], [guard("breached", -0.1, -0.05)], [guard("pending", -0.03, 0.01)]]
    rois = [None, roi(), roi(npv=-5, p=0.4), roi(loss=1e6)]
    powers = [{"days_remaining": None, "reached": False}, {"days_remaining": 0.0, "reached": True}]
    for p, g, r, pw in itertools.product(primaries, guards, rois, powers):
        out = call(results=[p, *g], roi=r, power={"mde": 0.05, **pw}, srm=SRM, data_quality=FAIL)
        assert out["decision"] in ("keep_running", "stop")
        assert "investigate" in out["reasons"][0]


def test_warnings_do_not_block_ship() -> None:
    warn = {"clean": True, "checks": [{"name": "unknown_variants", "status": "warn", "message": "1 visitor"}]}
    assert call(data_quality=warn)["decision"] == "ship"


def test_misuse_raises() -> None:
    with pytest.raises(ValueError):
        call(alpha=1.5)
    with pytest.raises(ValueError):
        call(analysis={"mode": "bayes"})
    bad = guard("passed", 0, 0.1)
    del bad["guardrail"]["state"]
    with pytest.raises(ValueError):
        call(results=[entry(0.05, 0.11), bad])
