"""Time ``compute_roi`` (vectorized numpy) against a plain-Python loop over the same draws.

Run: ``.venv/bin/python benchmarks/bench_roi.py [--draws 20000] [--runs 7]``. Prints a markdown
table. Both sides draw the same lifts from the same seed, produce the same summaries (checked
against each other before timing) and reuse the same sensitivity code, so the ratio measures the
Monte Carlo itself: per-draw month loops and Python-level percentiles versus array operations.
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

ASSUMPTIONS = RoiAssumptions(finetune_gpu_hours=2000, gpu_hour_price=3.0)  # payback is a real month
EFFECT = EffectInput(baseline_inquiries_per_visitor=0.02, lift_abs=0.0005, lift_abs_se=0.0004)


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
    lifts = np.random.default_rng(seed).normal(e.lift_abs, e.lift_abs_se, size=draws).tolist()
    discount = [(1 + a.annual_discount_rate) ** (-t / 12) for t in range(a.horizon_months + 1)]
    if a.serving_gpu_hours_per_month is not None:
        serving = a.serving_gpu_hours_per_month * a.gpu_hour_price
    elif a.cost_per_1000_generations is not None:
        serving = a.cost_per_1000_generations * a.generations_per_month / 1000
    else:
        serving = 0.0
    saving = a.content_hours_saved_per_page * a.pages * a.hourly_rate
    finetune = a.finetune_gpu_hours * a.gpu_hour_price
    npvs, rois, paybacks = [], [], []
    for lift in lifts:
        margin = a.monthly_visitors * lift * a.inquiry_to_order * a.margin_per_order
        pv_b = pv_c = 0.0
        cumulative, payback = 0.0, math.inf
        for t in range(a.horizon_months + 1):
            refresh = a.content_refresh_months
            benefit = saving if t == 0 or (refresh and t % refresh == 0 and t < a.horizon_months) else 0.0
            cost = finetune if t == 0 else serving + a.monthly_operations_cost
            if t > 0:
                benefit += margin
            pv_b += benefit * discount[t]
            pv_c += cost * discount[t]
            cumulative += benefit - cost
            if payback == math.inf and cumulative >= 0:
                payback = t
        npvs.append(pv_b - pv_c)
        rois.append((pv_b - pv_c) / pv_c * 100)
        paybacks.append(payback)
    out = {}
    for name, xs in (("npv", npvs), ("roi_pct", rois)):
        s = sorted(xs)
        out[name] = [sum(xs) / len(xs), *(_percentile_linear(s, p) for p in (0.025, 0.5, 0.975))]
    s = sorted(paybacks)
    out["payback"] = [_percentile_inverted(s, p) for p in (0.025, 0.5, 0.975)]
    out["prob_roi_positive"] = sum(r > 0 for r in rois) / len(rois)
    lo, hi = min(rois), max(rois)
    counts = [0] * 40
    for r in rois:
        counts[min(39, int((r - lo) / (hi - lo) * 40))] += 1
    out["counts"] = counts
    out["sensitivity"] = tornado(a, e.lift_abs, e.lift_abs_se)
    return out


def _check_same(vec: dict, ref: dict) -> None:
    for name in ("npv", "roi_pct"):
        got = [vec[name]["mean"], vec[name]["ci"][0], vec[name]["median"], vec[name]["ci"][1]]
        assert np.allclose(got, ref[name], rtol=1e-9), (name, got, ref[name])
    got_pay = [
        vec["payback_months"]["ci"][0],
        vec["payback_months"]["median"],
        vec["payback_months"]["ci"][1],
    ]
    assert got_pay == [None if math.isinf(x) else x for x in ref["payback"]], (got_pay, ref["payback"])
    assert vec["prob_roi_positive"] == ref["prob_roi_positive"]
    # Bin edges may differ in the last ulp, so allow a draw or two to change bins.
    assert sum(abs(x - y) for x, y in zip(vec["roi_histogram"]["counts"], ref["counts"], strict=True)) <= 4


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
        f"ROI Monte Carlo, {args.draws:,} draws, horizon {ASSUMPTIONS.horizon_months} months, "
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
