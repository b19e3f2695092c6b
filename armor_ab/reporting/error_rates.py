"""Seeded simulations of the verdict's error rates under the looks users really take (daily).

Each run simulates daily sufficient statistics per arm (exact for normal per-visitor values: the
day's sum is normal and its within-day sum of squares an independent scaled chi-square), feeds the
cumulative sums of every day to the production ``decision_inputs`` (the same plan, intervals,
guardrails, SRM, data-quality checks, ROI and ``decide_report`` the API serves), and stops at the
first verdict that is not "keep running", as a product manager acting on the dashboard would.

    python -m armor_ab.reporting.error_rates --runs 1000          # the figures in docs/statistics.md

Scenarios:

* ``power``: the true lift equals the MDE on the primary metric and on inquiries; ROI assumptions
  whose break-even inquiry lift is at most MDE / 4. "ship" should come in >= power of runs.
* ``aa``: no effect anywhere. "ship" is a false positive.
* ``guardrail``: the guardrail metric's true change is exactly -margin; 14 daily looks; "passed"
  at any look is a false pass.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from armor_ab.experiments.models import ExperimentSpec
from armor_ab.reporting.report import decision_inputs
from armor_ab.roi.assumptions import RoiAssumptions
from armor_ab.roi.engine import MIN_DRAWS, EffectInput, compute_roi
from armor_ab.stats.frequentist import t_quantile
from armor_ab.stats.sql import ExperimentSums
from armor_ab.stats.suffstats import SUM_COLUMNS, VisitorSums
from armor_ab.store.experiments import ExperimentRecord

_IDX = {name: i for i, name in enumerate(SUM_COLUMNS)}
START = datetime(2026, 1, 5, tzinfo=UTC)


@dataclass(frozen=True)
class Scenario:
    name: str
    lift: float  # true relative lift of the primary metric (and of inquiries, which the ROI prices)
    guardrail_lift: float | None = None  # true relative change of the guardrail metric, if any
    visitors_per_day: int = 1_500
    max_days: int = 60
    looks: int | None = None  # stop after this many daily looks (guardrail scenario)
    mode: str = "sequential"
    with_roi: bool = True
    roi_cv: float = 1.0  # per-visitor cv of the priced inquiry metric (see ROI_CV)


# Per-visitor behaviour: primary "dwell per visitor" (cv 1), inquiries within the ROI window
# (mean 0.05, Poisson-like variance), the guardrail metric inquiries per visitor.
DWELL_MEAN, DWELL_SD = 60_000.0, 60_000.0
INQ_MEAN = 0.05
# The guardrail metric is simulated precise enough (cv 0.5) for 14 days of traffic to decide it:
# a guardrail that can never pass would make a false-pass rate of 0 meaningless.
GUARD_CV = 0.5
# The ROI's effect (inquiries within the ROI window) is simulated as precise as the primary metric
# (cv 1), as when the primary metric is an inquiry metric: a break-even at MDE / 4 only makes the
# money bar passable at the planned sample if the priced effect is measured about as well as the
# primary one. docs/statistics.md shows the rate with a noisier priced effect too.
ROI_CV = 1.0


def spec_for(s: Scenario, mde: float = 0.05, alpha: float = 0.05, margin: float = 0.02) -> ExperimentSpec:
    guardrails = [{"metric": "inquiries_per_visitor", "margin": margin}] if s.guardrail_lift is not None else []
    body = {
        "key": f"sim-{s.name}",
        "name": f"simulation {s.name}",
        "variants": [{"key": "control", "weight": 0.5}, {"key": "armor", "weight": 0.5}],
        "metrics": {"primary": "dwell_time_per_visitor", "guardrails": guardrails},
        "alpha": alpha,
        "mde": mde,
        # correction "none": the verdict never reads the adjusted p-values, and statsmodels' Holm
        # runs gc.collect() on every call (~50 ms), which thousands of looks cannot afford.
        "analysis": {"mode": s.mode, "cuped": False, "correction": "none"},
    }
    if s.with_roi:
        body["roi"] = break_even_assumptions(mde / 4).model_dump()
    return ExperimentSpec.model_validate(body)


def break_even_assumptions(break_even_rel: float) -> RoiAssumptions:
    """ROI assumptions whose break-even relative inquiry lift is ``break_even_rel`` (the default
    costs; the margin per order is solved for it, since NPV is linear in the margin)."""
    base = RoiAssumptions()

    def break_even(margin: float) -> float:
        roi = compute_roi(base.with_updates(margin_per_order=margin), EffectInput(INQ_MEAN, 0.0, 0.0, window_days=3),
                          draws=MIN_DRAWS)
        return roi["break_even_lift_rel"]

    lo, hi = 1.0, 1e7
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if break_even(mid) > break_even_rel else (lo, mid)
    return base.with_updates(margin_per_order=hi)


def _day_sums(rng: np.random.Generator, n: int, dwell_mean: float, inq_mean: float, guard_mean: float,
              roi_cv: float = ROI_CV) -> tuple:
    """One arm's sums for one day of ``n`` visitors: exact sufficient statistics of normal values."""
    out = [0.0] * len(SUM_COLUMNS)
    out[_IDX["n"]] = float(n)

    def moments(mean: float, sd: float) -> tuple[float, float]:
        s = rng.normal(n * mean, sd * math.sqrt(n))
        ss = sd * sd * rng.chisquare(n - 1) + s * s / n
        return s, ss

    s, ss = moments(dwell_mean, DWELL_SD)
    out[_IDX["s_dwell"]], out[_IDX["ss_dwell"]] = s, ss
    s, ss = moments(guard_mean, GUARD_CV * INQ_MEAN)
    out[_IDX["s_inq"]], out[_IDX["ss_inq"]] = s, ss
    if "s_wq" in _IDX:
        s, ss = moments(inq_mean, roi_cv * INQ_MEAN)
        out[_IDX["s_wq"]], out[_IDX["ss_wq"]] = s, ss
        out[_IDX["s_mature"]] = out[_IDX["ss_mature"]] = float(n)
        out[_IDX["x_wq__mature"]] = s
    return tuple(out)


def _sums(daily: dict[str, dict]) -> ExperimentSums:
    return ExperimentSums(cap=None, daily=daily, segments={}, multi_variant_visitors=0, deduplicated_in_sql=False)


def _fixed_pass(entry: dict, alpha: float) -> bool:
    """What a fixed-horizon non-inferiority test says at this look (the rule this replaced)."""
    g, lift, se, df = entry["guardrail"], entry.get("lift_rel"), entry.get("se_rel"), entry.get("df")
    if lift is None or not se or df is None:
        return False
    return (lift + g["margin"]) / se > t_quantile(1 - alpha, df)


def run_once(s: Scenario, seed: int, spec: ExperimentSpec) -> tuple[str, str, int, bool, bool]:
    """(decision, reason, looks taken, guardrail passed at some look, the fixed-horizon rule would
    have passed it at some look) of one simulated experiment."""
    rng = np.random.default_rng(seed)
    record = ExperimentRecord(spec=spec, status="running", bucket_version=0, created_at=START, updated_at=START,
                              started_at=START, stopped_at=None)
    daily: dict[str, dict] = {"control": {}, "armor": {}}
    guard = s.guardrail_lift if s.guardrail_lift is not None else 0.0
    passed = fixed_passed = False
    looks = s.looks or s.max_days
    for day in range(looks):
        n_c = int(rng.binomial(s.visitors_per_day, 0.5))
        for arm, n, lift, g in (("control", n_c, 0.0, 0.0), ("armor", s.visitors_per_day - n_c, s.lift, guard)):
            values = _day_sums(rng, n, DWELL_MEAN * (1 + lift), INQ_MEAN * (1 + lift), INQ_MEAN * (1 + g), s.roi_cv)
            daily[arm][(START + timedelta(days=day)).date()] = VisitorSums(values)
        report = decision_inputs(record, _sums(daily), now=START + timedelta(days=day + 1), lazy_roi=True)
        for e in report["results"]:
            if "guardrail" in e:
                passed = passed or e["guardrail"]["state"] == "passed"
                fixed_passed = fixed_passed or _fixed_pass(e, spec.alpha)
        verdict = report["verdict"]
        if s.looks is None and verdict["decision"] != "keep_running":
            return verdict["decision"], verdict["reason"], day + 1, passed, fixed_passed
    verdict = report["verdict"]
    return verdict["decision"], verdict["reason"], looks, passed, fixed_passed


SCENARIOS = {
    "power": Scenario("power", lift=0.05),
    "aa": Scenario("aa", lift=0.0),
    "guardrail": Scenario("guardrail", lift=0.0, guardrail_lift=-0.02, looks=14, with_roi=False),
    "guardrail_ok": Scenario("guardrail_ok", lift=0.0, guardrail_lift=0.0, looks=14, with_roi=False),
}


def simulate(name: str, runs: int, seed: int = 0, **overrides: object) -> dict:
    """Run one scenario ``runs`` times; the share of each decision and the error-rate figure."""
    base = SCENARIOS[name]
    s = Scenario(**{**base.__dict__, **overrides})
    spec = spec_for(s)
    t0 = time.perf_counter()
    decisions: Counter = Counter()
    reasons: Counter = Counter()
    looks, passes, fixed_passes = [], 0, 0
    for i in range(runs):
        d, r, n, passed, fixed_passed = run_once(s, seed * 1_000_003 + i, spec)
        decisions[d] += 1
        reasons[r] += 1
        looks.append(n)
        passes += passed
        fixed_passes += fixed_passed
    return {
        "scenario": name,
        "mode": s.mode,
        "roi_cv": s.roi_cv,
        "runs": runs,
        "seed": seed,
        "ship_rate": decisions["ship"] / runs,
        "guardrail_pass_rate": passes / runs,
        "fixed_horizon_guardrail_pass_rate": fixed_passes / runs,
        "decisions": dict(decisions),
        "reasons": dict(reasons),
        "median_looks": float(np.median(looks)),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mode", choices=["sequential", "fixed", "hybrid"], default="sequential")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--roi-cv", type=float, default=ROI_CV, help="per-visitor cv of the priced inquiry metric")
    parser.add_argument("--no-roi", action="store_true", help="experiments without a roi block (metrics only)")
    args = parser.parse_args(argv)
    for name in args.scenario or sorted(SCENARIOS):
        extra = {"with_roi": False} if args.no_roi else {}
        print(json.dumps(simulate(name, args.runs, args.seed, mode=args.mode, roi_cv=args.roi_cv, **extra)),
              flush=True)


if __name__ == "__main__":
    main()
