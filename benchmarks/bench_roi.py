"""Time ``compute_roi`` (vectorized numpy) against a plain-Python loop over the same draws.

Run: ``.venv/bin/python benchmarks/bench_roi.py [--draws 20000] [--runs 7]``. Prints a markdown
table. Both sides use the same draws (the shrunk effect and three PERT-ranged assumptions, from
the same seed), produce the same summaries (checked against each other before timing) and reuse
the same sensitivity code, so the ratio measures the Monte Carlo itself: per-draw month loops and
Python-level percentiles versus array operations.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

from armor_ab.roi.assumptions import RoiAssumptions
from armor_ab.roi.engine import EffectInput, compute_roi
from armor_ab.roi.sensitivity import tornado
from armor_ab.roi.shrinkage import DEFAULT_PRIOR, shrink

ASSUMPTIONS = RoiAssumptions(
    monthly_visitors={"low": 40_000, "likely": 50_000, "high": 60_000},
    margin_per_order={"low": 1_000, "likely": 1_500, "high": 2_000},
    engineering_cost={"low": 15_000, "likely": 60_000, "high": 90_000},  # payback is a real month
    effect_retention_per_month=0.95,
)
EFFECT = EffectInput(baseline_inquiries_per_visitor=0.02, lift_abs=0.0005, lift_abs_se=0.0004, window_days=3)


def _percentile_linear(sorted_x: list[float], p: float) -> float:
    # numpy's default ("linear") definition, so the two sides can be compared exactly.
    pos = p * (len(sorted_x) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_x) - 1)
    return sorted_x[lo] + (sorted_x[hi] - sorted_x[lo]) * (pos - lo)


def _percentile_inverted(sorted_x: list[float], p: float) -> float:
    return sorted_x[max(0, math.ceil(p * len(sorted_x)) - 1)]


def plain_python(a: RoiAssumptions, e: EffectInput, draws: int, seed: int) -> dict:
    """The same Monte Carlo written as a per-draw loop over months, no array maths."""
    post = shrink(e.lift_abs, e.lift_abs_se, e.baseline_inquiries_per_visitor, DEFAULT_PRIOR)
    rng = np.random.default_rng(seed)
    lifts = rng.normal(post.mean, post.sd, size=draws).tolist()
    drawn = a.draw(rng, draws)
    columns = {k: (v.tolist() if isinstance(v, np.ndarray) else [v] * draws) for k, v in drawn.items()}
    npvs, losses, paybacks, profits = [], [], [], []
    for i, lift in enumerate(lifts):
        v = {k: col[i] for k, col in columns.items()}
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
        margin = v["monthly_visitors"] * lift * v["inquiry_to_order"] * v["margin_per_order"]
        npv, cumulative, payback = 0.0, 0.0, math.inf
        for t in range(a.horizon_months + 1):
            d = (1 + v["annual_discount_rate"]) ** (-t / 12)
            cash = -one_off if t == 0 else margin * v["effect_retention_per_month"] ** (t - 1) - monthly
            npv += cash * d
            cumulative += cash * d
            if cumulative < 0:
                payback = math.inf
            elif payback == math.inf:
                payback = t
        npvs.append(npv)
        losses.append(max(0.0, -npv))
        paybacks.append(payback)
        profits.append(margin - monthly)
    s = sorted(npvs)
    out = {"npv": [sum(npvs) / draws, *(_percentile_linear(s, p) for p in (0.025, 0.5, 0.975))],
           "prob_npv_positive": sum(x > 0 for x in npvs) / draws, "expected_loss": sum(losses) / draws,
           "payback_median": _percentile_inverted(sorted(paybacks), 0.5),
           "payback_prob": sum(math.isfinite(x) for x in paybacks) / draws,
           "profit_mean": sum(profits) / draws}
    lo, hi = min(npvs), max(npvs)
    counts = [0] * 40
    for x in npvs:
        counts[min(39, int((x - lo) / (hi - lo) * 40))] += 1
    out["counts"] = counts
    out["sensitivity"] = tornado(a, post)
    return out


def _check_same(vec: dict, ref: dict) -> None:
    got = [vec["npv"]["expected"], vec["npv"]["ci"][0], vec["npv"]["median"], vec["npv"]["ci"][1]]
    assert np.allclose(got, ref["npv"], rtol=1e-9), (got, ref["npv"])
    assert vec["prob_npv_positive"] == ref["prob_npv_positive"]
    assert math.isclose(vec["expected_loss"], ref["expected_loss"], rel_tol=1e-9)
    assert math.isclose(vec["incremental_profit_per_month"]["expected"], ref["profit_mean"], rel_tol=1e-9)
    median = vec["payback"]["median_months"]
    assert (math.inf if median is None else median) == ref["payback_median"], (vec["payback"], ref["payback_median"])
    assert vec["payback"]["prob_within_horizon"] == ref["payback_prob"]
    # Bin edges may differ in the last ulp, so allow a draw or two to change bins.
    assert sum(abs(x - y) for x, y in zip(vec["histogram"]["counts"], ref["counts"], strict=True)) <= 4


def _time(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm-up: imports, allocator, caches
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.runs < 5:
        parser.error("--runs must be >= 5 (the figure is a median)")

    _check_same(
        compute_roi(ASSUMPTIONS, EFFECT, draws=args.draws, seed=args.seed),
        plain_python(ASSUMPTIONS, EFFECT, args.draws, args.seed),
    )
    vec = _time(lambda: compute_roi(ASSUMPTIONS, EFFECT, draws=args.draws, seed=args.seed), args.runs)
    ref = _time(lambda: plain_python(ASSUMPTIONS, EFFECT, args.draws, args.seed), args.runs)
    v_med, r_med = statistics.median(vec), statistics.median(ref)

    print(
        f"ROI Monte Carlo, {args.draws:,} draws, 3 ranged assumptions, horizon {ASSUMPTIONS.horizon_months} months, "
        f"median of {args.runs} runs (Python {platform.python_version()}, numpy {np.__version__})\n"
    )
    print("| implementation | median ms | min ms | max ms | speed-up |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| compute_roi (numpy, vectorized) | {v_med:.1f} | {min(vec):.1f} | {max(vec):.1f} | {r_med / v_med:.1f}x |"
    )
    print(f"| plain-Python loop, same draws | {r_med:.1f} | {min(ref):.1f} | {max(ref):.1f} | 1.0x |")


if __name__ == "__main__":
    main()
